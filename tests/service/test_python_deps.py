"""Python dependencies through the whole service: detect, install once in the install jail, persist, share.

A local wheel folder stands in for the index (no registry needed); the jail, uv and the store are real.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest

from cloche import Client
from conftest import ServerProcess, running_server

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "ecosystems" / "python"))
from _pywheels import build_wheel

from tests_support import run_file


@pytest.fixture
def wheel_dir(offline_wheels: Path) -> Path:
    return offline_wheels


@pytest.fixture
def registry_server(offline_server: ServerProcess) -> ServerProcess:
    """The shared server whose Python installs come from the offline wheels (for the conftest `cloche`)."""
    return offline_server


def test_requirements_install_once_then_reuse(cloche: Client) -> None:
    with cloche.create() as box:
        box.write("requirements.txt", "six==1.15.0\n")
        first = run_file(box, "main.py", "import six\nprint(six.__version__)\n")
        assert first.stdout == "1.15.0\n"
        assert first.output == "Installing six==1.15.0...\n1.15.0\n"
        assert first.install is not None
        assert first.install.source == "requirements.txt"
        assert [(p.name, p.version) for p in first.install.installed] == [("six", "1.15.0")]
        second = box.exec(filename="main.py")
        assert second.output == "1.15.0\n"
        assert second.install is not None
        assert second.install.installed == []
        assert second.install.reused_environment is True
        # A shell command sees the same environment.
        shell = box.exec(command="python3 -c 'import six; print(six.__file__)'")
        assert shell.stdout.startswith("/opt/cloche/env/python/")


def test_different_pins_coexist_and_equal_locks_share(cloche: Client, registry_server: ServerProcess) -> None:
    boxes = [cloche.create() for _ in range(3)]
    try:
        for box, pin in zip(boxes, ["1.15.0", "1.16.0", "1.15.0"], strict=True):
            box.write("requirements.txt", f"six=={pin}\n")
            box.write("main.py", "import six\nprint(six.__version__)\n")
        assert boxes[0].exec(filename="main.py").stdout == "1.15.0\n"
        assert boxes[1].exec(filename="main.py").stdout == "1.16.0\n"
        third = boxes[2].exec(filename="main.py")
        assert third.stdout == "1.15.0\n"
        assert third.install is not None and third.install.reused_environment is True
        assert third.install.duration_ms < 1000  # a recent resolution and a store hit: no resolver, no build
        assert [p.version for p in third.install.installed] == ["1.15.0"]
        assert boxes[0].exec(filename="main.py").stdout == "1.15.0\n"
        first_env = boxes[0].exec(filename="main.py").install
        assert first_env is not None and first_env.environment == third.install.environment
    finally:
        for box in boxes:
            box.delete()


def test_transitive_dependencies_and_lock_hashes(cloche: Client) -> None:
    with cloche.create() as box:
        box.write("requirements.txt", "requests>=2\n")
        result = run_file(box, "main.py", "import requests, idna\nprint(requests.__version__)\n")
        assert {p.name for p in result.install.installed} == {"requests", "idna"}  # type: ignore[union-attr]
        record = box.client.request("GET", f"/v1/sandboxes/{box.id}/runs/{result.run_id}").json()
        assert record["stdout"] == "2.31.0\n"


def test_bad_requirement_fails_cleanly_and_recovers(cloche: Client) -> None:
    with cloche.create() as box:
        box.write("requirements.txt", "six==1.15.0\n")
        box.write("main.py", "import six\nprint('ran', six.__version__)\n")
        assert box.exec(filename="main.py").stdout == "ran 1.15.0\n"
        box.write("requirements.txt", "six==1.15.0\nnot-a-real-package==9.9\n")
        failed = box.exec(filename="main.py")
        assert failed.status == "install_failed"
        assert failed.exit_code is None
        assert "not-a-real-package" in failed.output
        assert failed.install is not None and "not-a-real-package" in (failed.install.error or "")
        assert "ran" not in failed.stdout
        # The previous environment is intact and still bound: a shell command that prepares nothing still sees it
        # (a `python -c` would be prepared under the same broken manifest, and fail the same way).
        assert box.exec(command="pip freeze").stdout == "six==1.15.0\n"
        again = box.exec(command="python3 -c 'import six'")
        assert again.status == "install_failed" and "not-a-real-package" in again.output
        box.write("requirements.txt", "six==1.15.0\n")
        fixed = box.exec(filename="main.py")
        assert fixed.status == "succeeded"
        assert fixed.stdout == "ran 1.15.0\n"


def test_inline_script_metadata(cloche: Client) -> None:
    script = '# /// script\n# dependencies = ["six==1.16.0"]\n# ///\nimport six\nprint(six.__version__)\n'
    with cloche.create() as box:
        box.write("tool.py", script)
        result = box.exec(filename="tool.py")
        assert result.stdout == "1.16.0\n", result.output
        assert result.install is not None and result.install.source == "inline"


def test_pyproject_src_layout_stays_live(cloche: Client) -> None:
    pyproject = '[project]\nname = "app"\nversion = "0"\ndependencies = ["six==1.16.0"]\n'
    with cloche.create() as box:
        box.write("pyproject.toml", pyproject)
        box.write("src/app/__init__.py", "")
        box.write("src/app/core.py", "import six\nMESSAGE = 'v1 ' + six.__version__\n")
        box.write("main.py", "from app.core import MESSAGE\nprint(MESSAGE)\n")
        first = box.exec(filename="main.py")
        assert first.stdout == "v1 1.16.0\n", first.output
        assert first.install is not None and first.install.source == "pyproject.toml"
        box.write("src/app/core.py", "import six\nMESSAGE = 'v2 ' + six.__version__\n")
        second = box.exec(filename="main.py")
        assert second.stdout == "v2 1.16.0\n"
        assert second.install is not None and second.install.installed == []


def test_import_scan_installs_known_and_reports_unknown(cloche: Client) -> None:
    with cloche.create() as box:
        box.write("helpers.py", "import yaml\n")
        box.write(
            "main.py",
            "import helpers, attr\ntry:\n    import totally_invented_pkg\nexcept ImportError:\n    pass\n"
            "print(helpers.yaml.safe_load('x'), attr.VERSION)\n",
        )
        result = box.exec(filename="main.py")
        assert result.status == "succeeded", result.output
        assert result.stdout == "{'k': 'x'} attrs\n"
        assert result.install is not None and result.install.source == "scan"
        assert {p.name for p in result.install.installed} == {"pyyaml", "attrs"}  # PEP 503 names, as locked
        # Editing the code without touching its imports installs nothing and resolves nothing.
        box.write("main.py", "import helpers, attr\nprint('edited', attr.VERSION)\n")
        again = box.exec(filename="main.py")
        assert again.stdout == "edited attrs\n"
        assert again.install is not None and again.install.installed == [] and again.install.reused_environment
        # An import nothing vouches for is reported, never guessed.
        guessed = run_file(box, "guess.py", "import totally_invented_pkg\n", status="failed")
        assert [u.module for u in guessed.unresolved_imports] == ["totally_invented_pkg"]
        assert "requirements.txt" in (guessed.unresolved_imports[0].hint or "")


def test_unlisted_imports_are_reported_not_installed(cloche: Client) -> None:
    with cloche.create() as box:
        box.write("requirements.txt", "six==1.16.0\n")
        result = run_file(box, "main.py", "import six\nimport yaml\n", status="failed")
        assert "No module named 'yaml'" in result.stderr
        assert [(u.module, u.suggested) for u in result.unlisted_imports] == [("yaml", "pyyaml")]
        assert "not listed" in result.output


def test_environments_are_read_only_to_programs(cloche: Client) -> None:
    attack = (
        "import six, pathlib\n"
        "p = pathlib.Path(six.__file__)\n"
        "try:\n    p.write_text('POISONED = 1')\n    print('wrote')\n"
        "except OSError as e:\n    print('refused', e.errno)\n"
    )
    with cloche.create() as attacker, cloche.create() as victim:
        attacker.write("requirements.txt", "six==1.16.0\n")
        attacker.write("main.py", attack)
        assert attacker.exec(filename="main.py").stdout.startswith("refused")
        victim.write("requirements.txt", "six==1.16.0\n")
        victim.write("main.py", "import six\nprint(six.__version__, hasattr(six, 'POISONED'))\n")
        assert victim.exec(filename="main.py").stdout == "1.16.0 False\n"


def test_concurrent_first_execs_build_once(cloche: Client, registry_server: ServerProcess, wheel_dir: Path) -> None:
    build_wheel(wheel_dir, "six", "1.14.0", {"six.py": "__version__ = '1.14.0'\n"})
    boxes = [cloche.create() for _ in range(3)]
    results: list[str] = []
    try:
        for box in boxes:
            box.write("requirements.txt", "six==1.14.0\n")
            box.write("main.py", "import six\nprint(six.__version__)\n")

        def run(box: object) -> None:
            with registry_server.client() as other:
                results.append(other.sandbox(box.id).exec(filename="main.py").stdout)  # type: ignore[attr-defined]

        threads = [threading.Thread(target=run, args=(b,)) for b in boxes]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert results == ["1.14.0\n"] * 3
        keys = {b.exec(filename="main.py").install.environment for b in boxes}  # type: ignore[union-attr]
        assert len(keys) == 1
    finally:
        for box in boxes:
            box.delete()


def test_build_scripts_cannot_poison_shared_cache(
    cloche: Client, registry_server: ServerProcess, wheel_dir: Path
) -> None:
    from _pywheels import build_poisoning_sdist

    build_poisoning_sdist(wheel_dir)
    with cloche.create() as victim, cloche.create() as attacker:
        victim.write("requirements.txt", "six==1.16.0\n")
        victim.write("main.py", "import six\nprint(six.__version__)\n")
        assert victim.exec(filename="main.py").stdout == "1.16.0\n"
        attacker.write("requirements.txt", "buildpoison==1.0\n")
        attacker.write("main.py", "import buildpoison\nprint(buildpoison.VALUE)\n")
        built = attacker.exec(filename="main.py")
        assert built.stdout == "built\n", built.output
        # The source build ran with a private cache: nothing it wrote reached the shared one or the tool mounts.
        poisoned = [p for p in (registry_server.data_dir / "cache").rglob("POISONED")]
        assert poisoned == []
        assert not (wheel_dir / "POISONED").exists()
        assert list((registry_server.data_dir / "jail").rglob("POISONED")) == []
        again = victim.exec(filename="main.py")
        assert again.stdout == "1.16.0\n" and again.install is not None and again.install.installed == []


def test_gc_removes_only_unreferenced_environments(offline_wheels: Path) -> None:
    import os
    import subprocess

    with running_server({"CLOCHE_PYTHON_WHEEL_DIR": str(offline_wheels)}) as server:
        with server.client() as client:
            keep, drop = client.create(), client.create()
            for box, pin in ((keep, "1.15.0"), (drop, "1.16.0")):
                box.write("requirements.txt", f"six=={pin}\n")
                box.write("main.py", "import six\n")
                box.exec(filename="main.py")
            drop.delete()
        envs = server.data_dir / "envs"

        def entries() -> list[str]:
            return sorted(p.name for p in envs.iterdir() if not p.name.startswith(".") and not p.name.endswith("-pyc"))

        assert len(entries()) == 2
        cli = [sys.executable, "-c", "from cloche.cli.main import main; main()", "gc"]
        done = subprocess.run(
            [*cli, "--data-dir", str(server.data_dir), "--grace-seconds", "0"],
            capture_output=True,
            text=True,
            env=dict(os.environ),
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
        assert len(entries()) == 1  # the dropped sandbox's environment (and its bytecode companion) went
        assert "environment(s) removed" in done.stdout
        with server.client() as client:
            assert client.sandbox(keep.id).exec(command="python3 -c 'import six; print(six.__version__)'").stdout == (
                "1.15.0\n"
            )


def test_declared_hashes_are_binding(cloche: Client, wheel_dir: Path) -> None:
    import hashlib

    good = hashlib.sha256((wheel_dir / "six-1.16.0-py3-none-any.whl").read_bytes()).hexdigest()
    with cloche.create() as box:
        box.write("main.py", "import six\nprint(six.__version__)\n")
        box.write("requirements.txt", f"six==1.16.0 --hash=sha256:{'0' * 64}\n")
        refused = box.exec(filename="main.py")
        assert refused.status == "install_failed"
        assert "six==1.16.0" in refused.output and "hash mismatch" in refused.output
        box.write("requirements.txt", f"six==1.16.0 --hash=sha256:{good}\n")
        assert box.exec(filename="main.py").stdout == "1.16.0\n"


def test_bytecode_companion_is_built_then_used(cloche: Client, registry_server: ServerProcess) -> None:
    import time

    probe = "import sys, os, attr\nprint(sys.pycache_prefix, os.path.exists(attr.__cached__))\n"
    with cloche.create() as box:
        box.write("requirements.txt", "attrs==23.2.0\n")
        first = run_file(box, "main.py", probe)
        key = first.install.environment if first.install else None
        assert key is not None
        companion = registry_server.data_dir / "envs" / f"{key}-pyc"
        deadline = time.monotonic() + 60
        while not (companion / "cloche-env.json").exists() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert (companion / "cloche-env.json").exists(), "the bytecode companion was never built"
        # Later runs read the precompiled bytecode from the read-only companion; workspace code is never cached.
        assert box.exec(filename="main.py").stdout == "/opt/cloche/pycache True\n"
        # The standard library's bytecode is in the companion too, or every run would recompile it from source.
        stdlib = box.exec(command="python3 -c 'import json.decoder as d, os; print(os.path.exists(d.__cached__))'")
        assert stdlib.stdout == "True\n"
        box.write("helper.py", "X = 1\n")
        box.write(
            "main.py",
            "import helper\nprint(helper.X, helper.__cached__ and __import__('os').path.exists(helper.__cached__))\n",
        )
        assert box.exec(filename="main.py").stdout == "1 False\n"


def test_workspace_folders_named_like_environment_paths_are_never_hidden(cloche: Client) -> None:
    # Folders named like what environments hold (deps/, lib/, bin/, node_modules/) are the user's own and import,
    # while the third-party package still comes from the environment.
    with cloche.create() as box:
        box.write("requirements.txt", "six==1.15.0\n")
        for folder in ("deps", "lib", "bin", "node_modules", "opt"):
            box.write(f"{folder}/util.py", f"WHO = {folder!r}\n")
        box.write(
            "main.py",
            "import six\nfrom deps import util as d\nfrom lib import util as l\nfrom bin import util as b\n"
            "from node_modules import util as n\nfrom opt import util as o\n"
            "print(d.WHO, l.WHO, b.WHO, n.WHO, o.WHO, six.__version__)\n",
        )
        result = box.exec(filename="main.py")
        assert result.status == "succeeded", result.output
        assert result.stdout == "deps lib bin node_modules opt 1.15.0\n"
        where = box.exec(command="ls deps && python3 -c 'import six, sys; print(sys.prefix, six.__file__)'").stdout
        assert where.startswith("util.py\n/opt/cloche/env/python /opt/cloche/env/python/lib/"), where
