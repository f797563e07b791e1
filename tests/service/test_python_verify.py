"""Verify, then seal: after a build, the entry's imports are checked in the install jail, and what fails is
repaired step by step (next provider, undeclared runtime need, version back-off), each step reported.

A local wheel folder of tiny real wheels stands in for the index; each failure class is a wheel that really
exhibits it. The projects are picked from the shipped import map and overrides, not named here, so the
tests follow the data.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

from cloche import Client, SandboxHandle
from cloche.ecosystems.python.importmap import ImportMap
from cloche.ecosystems.python.resolve import Resolver
from cloche.models import InstallReport, RecoveryStep
from conftest import ServerProcess, running_server

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "ecosystems" / "python"))
from _pywheels import build_wheel

from tests_support import run_file

SHIPPED = ImportMap.load()
RESOLVER = Resolver(SHIPPED)


def _mapped_modules(count: int) -> list[tuple[str, str]]:
    """(module, project) pairs of top-level imports the shipped data maps, each project distinct."""
    picked: dict[str, tuple[str, str]] = {}
    for module in sorted(SHIPPED.modules):
        resolution = RESOLVER.resolve_offline(module)
        if not module.isidentifier() or resolution is None or resolution.source not in ("override", "map"):
            continue
        picked.setdefault(canonicalize_name(resolution.distribution), (module, resolution.distribution))
        if len(picked) == count:
            break
    return list(picked.values())


DRIFT, NEED, BROKEN, EXTRA, DEEP, SHARED = _mapped_modules(6)


def _second_provider() -> tuple[str, str, str] | None:
    """(module, first provider, second provider) for a module the generated map gives two projects."""
    data = resources.files("cloche.ecosystems.python").joinpath("data/import_map.json").read_text(encoding="utf-8")
    for module in sorted(json.loads(data)["modules"]):
        resolution = RESOLVER.resolve_offline(module)
        providers = SHIPPED.providers(module)
        mapped = resolution is not None and resolution.source == "map" and resolution.distribution == providers[0]
        if module.isidentifier() and mapped and len(providers) >= 2:
            return module, providers[0], providers[1]
    return None


@pytest.fixture(scope="module")
def wheels() -> Iterator[Path]:
    def place(root: Path) -> dict[str, str]:
        folder = root / "wheels"
        folder.mkdir()
        # API drift: the newest release lacks a name the script imports; the previous series has it.
        module, project = DRIFT
        build_wheel(folder, project, "5.0.0", {f"{module}/__init__.py": "OTHER = 1\n"})
        build_wheel(folder, project, "4.9.0", {f"{module}/__init__.py": "def wanted():\n    return 'old'\n"})
        # A submodule removed two series ago: the back-off keeps stepping back until a release has it.
        module, project = DEEP
        for version in ("5.0.0", "4.0.0"):
            build_wheel(folder, project, version, {f"{module}/__init__.py": ""})
        build_wheel(folder, project, "3.0.0", {f"{module}/__init__.py": "", f"{module}/legacy.py": "U = 'old'\n"})
        # An undeclared runtime need: the package imports pkg_resources and declares nothing.
        module, project = NEED
        build_wheel(folder, project, "1.0.0", {f"{module}/__init__.py": "import pkg_resources\nOK = pkg_resources.X\n"})
        build_wheel(
            folder, "setuptools", "69.0.0", {"pkg_resources/__init__.py": "X = 'ok'\n", "setuptools/__init__.py": ""}
        )
        # Two scripts, one lock: the newest release serves a plain import, not a name only the previous series has.
        module, project = SHARED
        build_wheel(folder, project, "2.0.0", {f"{module}/__init__.py": "NEW = 'new'\n"})
        build_wheel(folder, project, "1.5.0", {f"{module}/__init__.py": "NEW = 'old'\nLEGACY = 'legacy'\n"})
        # Nothing can repair: no release has the name.
        module, project = BROKEN
        build_wheel(folder, project, "1.0.0", {f"{module}/__init__.py": "OTHER = 1\n"})
        # An extra: the package's import asks for "pip install <project>[fast]" when the extra is missing.
        module, project = EXTRA
        asks = "try:\n    from fastdep import SPEED\nexcept ImportError as e:\n"
        asks += f"    raise ImportError('this needs: pip install \"{project}[fast]\"') from e\n"
        build_wheel(folder, project, "2.0.0", {f"{module}/__init__.py": asks}, extras={"fast": ("fastdep",)})
        build_wheel(folder, "fastdep", "1.0.0", {"fastdep.py": "SPEED = 'fast'\n"})
        second = _second_provider()
        if second is not None:  # the first provider by rank does not ship the module; the second does
            module, first, following = second
            build_wheel(folder, first, "1.0.0", {"unrelated_pkg/__init__.py": ""})
            build_wheel(folder, following, "1.0.0", {f"{module}/__init__.py": "VALUE = 'second'\n"})
        return {"CLOCHE_PYTHON_WHEEL_DIR": str(folder)}

    with running_server(place) as srv:
        yield srv  # type: ignore[misc]


@pytest.fixture
def cloche(wheels: ServerProcess) -> Iterator[Client]:
    with wheels.client() as client:
        yield client


def _names(install: InstallReport) -> set[str]:
    return {canonicalize_name(p.name) for p in install.installed}


def _names_of(*projects: str) -> set[str]:
    return {canonicalize_name(p) for p in projects}


def repaired(box: SandboxHandle, code: str, stdout: str, action: str) -> tuple[InstallReport, RecoveryStep]:
    """Run ``code``; it must succeed after exactly one repair of kind ``action``, verified and sealed."""
    result = run_file(box, "main.py", code)
    assert result.stdout == stdout
    install = result.install
    assert install is not None and install.verified is True
    [step] = install.recovery
    assert (step.action, step.outcome) == (action, "fixed")
    assert f"Recovery for '{step.module}' ({action}): {step.requirement} fixed" in result.output
    return install, step


def test_version_backoff_finds_the_release_with_the_imported_name(cloche: Client) -> None:
    module, project = DRIFT
    with cloche.create() as box:
        install, step = repaired(box, f"from {module} import wanted\nprint(wanted())\n", "old\n", "version_backoff")
        assert step.module == module and step.requirement == f"{project}<5" and "lacks wanted" in step.detail
        assert [(canonicalize_name(p.name), p.version) for p in install.installed] == [
            (_names_of(project).pop(), "4.9.0")
        ]
        # Sealed and bound: the next exec reuses it without checking again.
        second = box.exec(filename="main.py")
        assert second.stdout == "old\n"
        assert second.install is not None and second.install.reused_environment and second.install.verified is None


def test_version_backoff_steps_back_series_by_series_for_a_removed_submodule(cloche: Client) -> None:
    module, project = DEEP
    with cloche.create() as box:
        result = run_file(box, "main.py", f"from {module}.legacy import U\nprint(U)\n")
        assert result.stdout == "old\n"
        install = result.install
        assert install is not None and install.verified is True
        steps = [(s.action, s.requirement, s.outcome) for s in install.recovery]
        assert steps == [
            ("version_backoff", f"{project}<5", "failed"),
            ("version_backoff", f"{project}<4", "fixed"),
        ]
        assert [p.version for p in install.installed] == ["3.0.0"]


def test_undeclared_runtime_need_is_installed(cloche: Client) -> None:
    module, project = NEED
    with cloche.create() as box:
        install, step = repaired(box, f"import {module}\nprint({module}.OK)\n", "ok\n", "runtime_need")
        assert step.requirement == "setuptools" and "pkg_resources" in step.detail
        assert _names(install) == _names_of(project, "setuptools")


def test_an_extra_the_package_asks_for_is_added(cloche: Client) -> None:
    module, project = EXTRA
    with cloche.create() as box:
        install, step = repaired(box, f"import {module}\nprint({module}.SPEED)\n", "fast\n", "extra")
        assert step.module == module and step.requirement == f"{project}[fast]"
        assert _names(install) == _names_of(project, "fastdep")


def test_next_provider_by_rank_is_tried(cloche: Client) -> None:
    second = _second_provider()
    if second is None:
        pytest.skip("the shipped import map names no module with two ranked providers")
    module, first, following = second
    with cloche.create() as box:
        install, step = repaired(box, f"import {module}\nprint({module}.VALUE)\n", "second\n", "next_provider")
        assert step.requirement == following and first in step.detail
        assert _names(install) == _names_of(following)


def test_an_unrepairable_environment_runs_but_is_never_sealed_or_bound(cloche: Client, wheels: ServerProcess) -> None:
    module, project = BROKEN
    with cloche.create() as box:
        box.write("main.py", f"from {module} import missing_name\n")
        first = box.exec(filename="main.py")
        assert first.status == "failed"  # the run happened: the user sees Python's own ImportError
        assert "ImportError" in first.stderr and "missing_name" in first.stderr
        install = first.install
        assert install is not None and install.verified is False and install.error is None
        [failure] = install.import_failures
        assert failure.module == module and failure.names == ["missing_name"]
        assert f"Note: '{module}' does not import in the environment" in first.output
        assert all(s.outcome != "fixed" for s in install.recovery)
        assert install.environment is not None and install.environment.endswith("-unverified")
        # The verdict is kept by the lock the build started from: the next exec runs in the same unverified
        # environment without building and repairing again, and still says it is not verified.
        second = box.exec(filename="main.py")
        assert second.install is not None and second.install.verified is False
        assert second.install.reused_environment and second.install.environment == install.environment
        assert [f.module for f in second.install.import_failures] == [module]
        # Never bound: a command sees no Python environment of this sandbox.
        listed = box.exec(command="python3 -c 'import sys; print(sys.prefix)'")
        assert listed.stdout.strip() == "/usr"
    # The store holds it only apart, marked unverified; no entry under a lock's own key has the project.
    metas = {
        p.name: json.loads((p / "cloche-env.json").read_text()) for p in (wheels.data_dir / "envs").glob("python-*")
    }
    holding = {name: meta for name, meta in metas.items() if f"{project}==" in meta.get("lock", "")}
    assert holding and all(name.endswith("-unverified") and meta["verified"] is False for name, meta in holding.items())


def test_a_repair_is_remembered_across_a_restart(cloche: Client, wheels: ServerProcess) -> None:
    """The repaired lock is found again by the lock the build started from: no rebuild, no second repair."""
    module, _ = DRIFT
    code = f"from {module} import wanted\nprint(wanted())\n"
    with cloche.create() as box:  # repaired here, or reused from the first back-off test's repair
        box.write("main.py", code)
        first = box.exec(filename="main.py")
        assert first.stdout == "old\n" and first.install is not None and first.install.verified is not False
    wheels.stop()
    wheels.start()
    with wheels.client() as client, client.create() as box:
        box.write("main.py", code)
        again = box.exec(filename="main.py")
        assert again.status == "succeeded" and again.stdout == "old\n", again.output
        assert again.install is not None and again.install.reused_environment
        assert again.install.recovery == [] and again.install.verified is None


def test_an_environment_in_the_store_is_checked_for_another_scripts_imports(cloche: Client) -> None:
    """The first script seals the newest release under the lock's key; a second script resolving to the same lock
    but taking a name that release lacks is checked against it, and gets a repaired environment of its own."""
    module, _ = SHARED
    with cloche.create() as first:
        first.write("main.py", f"import {module}\nprint({module}.NEW)\n")
        plain = first.exec(filename="main.py")
        assert plain.status == "succeeded" and plain.stdout == "new\n", plain.output
    with cloche.create() as second:
        second.write("main.py", f"from {module} import LEGACY\nprint(LEGACY)\n")
        drifted = second.exec(filename="main.py")
        assert drifted.status == "succeeded" and drifted.stdout == "legacy\n", drifted.output
        assert drifted.install is not None and drifted.install.verified is True
        assert [(s.action, s.outcome) for s in drifted.install.recovery] == [("version_backoff", "fixed")]
    with cloche.create() as third:  # the first script again: the store's entry serves it, checked once already
        third.write("main.py", f"import {module}\nprint({module}.NEW)\n")
        again = third.exec(filename="main.py")
        assert again.stdout == "new\n" and again.install is not None and again.install.reused_environment
