"""Prebuilt substitutes for projects that publish only a source archive: the reviewed table, the lock rewrite, and
real installs through the install jail (dlib -> dlib-bin, directly and as face_recognition's dependency)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cloche import Client
from cloche.ecosystems.base import ImportFailure
from cloche.ecosystems.python import prebuilt
from cloche.ecosystems.python.importmap import ImportMap, parse_prebuilt
from cloche.ecosystems.python.resolve import Resolver
from cloche.ecosystems.python.resolve.pypi_json import PypiJson
from cloche.ecosystems.python.resolve.wheel_files import provides
from cloche.ecosystems.release_age import MinimumAge
from tests_support import run_file

SHIPPED = ImportMap.load()
LOCK = (
    "click==8.1.7 \\\n    --hash=sha256:aa\n"
    "dlib==20.0.0 \\\n    --hash=sha256:bb\n"
    "face-recognition==1.3.0 \\\n    --hash=sha256:cc\n"
)


def test_the_shipped_table_names_projects_substitutes_and_modules() -> None:
    assert {"dlib", "psycopg2"} <= set(SHIPPED.prebuilt)
    for project, entry in SHIPPED.prebuilt.items():
        assert entry.project == project and entry.distribution != project and entry.reason


def test_entries_need_every_field_and_a_substitute_of_another_name() -> None:
    with pytest.raises(ValueError, match="non-empty"):
        parse_prebuilt('[prebuilt.dlib]\ndist = "dlib-bin"\nreason = "r"\n')
    with pytest.raises(ValueError, match="itself"):
        parse_prebuilt('[prebuilt.Dlib]\ndist = "dlib"\nmodule = "dlib"\nreason = "r"\n')
    with pytest.raises(ValueError, match="import name"):
        parse_prebuilt('[prebuilt.dlib]\ndist = "dlib-bin"\nmodule = "dl ib"\nreason = "r"\n')


def test_a_pinned_source_only_project_is_found_and_replaced_with_its_declared_version() -> None:
    [entry] = prebuilt.pinned(LOCK, SHIPPED.prebuilt)
    assert (entry.project, entry.distribution) == ("dlib", "dlib-bin")
    assert prebuilt.pinned("click==8.1.7\n", SHIPPED.prebuilt) == []
    wanted, overrides = prebuilt.requirements(["face_recognition", "DLib==19.24.2"], [entry])
    assert wanted == ["face_recognition", "dlib-bin==19.24.2"]
    assert overrides == "dlib ; sys_platform == 'never'\n"
    assert prebuilt.requirements(["face_recognition"], [entry])[0] == ["face_recognition", "dlib-bin"]


def test_the_lock_records_the_substitution_for_the_report() -> None:
    [entry] = prebuilt.pinned(LOCK, SHIPPED.prebuilt)
    lock = prebuilt.annotate("dlib-bin==20.0.1 \\\n    --hash=sha256:dd\n", [entry])
    [step] = prebuilt.steps(lock, ())
    assert (step.action, step.module, step.requirement, step.outcome) == (
        "prebuilt",
        "dlib",
        "dlib-bin==20.0.1",
        "fixed",
    )
    assert "in place of dlib" in step.detail
    failure = ImportFailure("face_recognition", "ModuleNotFoundError: No module named 'dlib'")
    assert prebuilt.steps(lock, (failure,))[0].outcome == "failed"
    assert prebuilt.steps(LOCK, ()) == ()


@pytest.mark.network
def test_every_substitute_is_established_and_its_wheel_ships_the_module(tmp_path: Path) -> None:
    """The reviewed claims, checked against PyPI: an old project whose Linux wheel ships the module."""
    pypi = PypiJson("https://pypi.org/pypi", tmp_path)
    try:
        for entry in SHIPPED.prebuilt.values():
            facts = pypi.project(entry.distribution)
            assert facts.found and facts.first_upload is not None and facts.wheel_url is not None
            assert MinimumAge(365).refusal(facts.name, facts.first_upload, "substitutes") is None
            assert provides(pypi.wheel_modules(facts.wheel_url), entry.module), entry
            assert prebuilt.ships_module(pypi, entry) is None
    finally:
        pypi.close()


def test_importing_the_module_itself_resolves_to_the_substitute() -> None:
    answer = Resolver(SHIPPED).resolve_offline("dlib")
    assert answer is not None and (answer.distribution, answer.source) == ("dlib-bin", "override")
    assert "prebuilt substitute for dlib" in answer.reason


@pytest.mark.network
def test_import_dlib_installs_the_prebuilt_wheel(client: Client) -> None:
    with client.create() as box:
        result = run_file(
            box, "main.py", "import dlib\nprint(dlib.__name__, bool(dlib.__version__))\n", timeout_seconds=300
        )
        assert result.stdout == "dlib True\n"
        install = result.install
        assert install is not None and install.verified is True
        installed = {p.name.lower() for p in install.installed}
        assert "dlib-bin" in installed and "dlib" not in installed
        [resolved] = install.resolved
        assert (resolved.module, resolved.package) == ("dlib", "dlib-bin")


@pytest.mark.network
def test_a_dependency_that_publishes_only_sources_gets_the_substitute(client: Client) -> None:
    """face_recognition requires dlib: the override drops it from face_recognition's requirements, dlib-bin stands in,
    and the newest face_recognition is kept (a wheels-only lock would settle on 0.2.2)."""
    with client.create() as box:
        result = run_file(
            box, "main.py", "import face_recognition\nprint(face_recognition.__name__)\n", timeout_seconds=450
        )
        install = result.install
        assert install is not None and install.verified is True
        versions = {p.name.lower().replace("_", "-"): p.version for p in install.installed}
        assert "dlib-bin" in versions and "dlib" not in versions
        assert versions["face-recognition"].startswith("1.")
        assert [s.module for s in install.recovery if s.action == "prebuilt"] == ["dlib"]
