"""Scanned imports whose project the shipped data vouches for but which runs only on another operating system
(``win32api`` -> pywin32): reported in ``unresolved_imports`` with why, left out of the install and the check."""

from __future__ import annotations

import pytest

from cloche import Client
from cloche.ecosystems.python import platform_only
from cloche.ecosystems.python.needs import ImportNeed
from cloche.ecosystems.python.resolve.long_tail import runs_elsewhere
from cloche.ecosystems.python.resolve.pypi_json import ProjectFacts
from cloche.ecosystems.python.resolve.wheel_files import file_platform
from tests_support import run_file


def _file(name: str, kind: str = "bdist_wheel") -> dict[str, str]:
    return {"filename": name, "packagetype": kind}


def test_what_each_release_file_runs_on() -> None:
    assert file_platform(_file("pywin32-312-cp311-cp311-win_amd64.whl")) == "Windows"
    assert file_platform(_file("pyobjc_core-11.0-cp311-cp311-macosx_10_9_universal2.whl")) == "macOS"
    assert file_platform(_file("numpy-2.1.0-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl")) == "Linux"
    assert file_platform(_file("six-1.16.0-py2.py3-none-any.whl")) == "any"
    assert file_platform(_file("dlib-20.0.0.tar.gz", "sdist")) == "source"
    assert file_platform(_file("not a wheel")) is None


def test_a_project_runs_elsewhere_by_its_classifiers_or_its_files() -> None:
    by_classifier = ProjectFacts("win10toast", True, platforms=("Operating System :: Microsoft",), files_for=("any",))
    assert "win10toast runs only on Windows (its PyPI classifiers" in (runs_elsewhere(by_classifier) or "")
    by_files = ProjectFacts("winonly", True, version="1.0", files_for=("Windows",))
    assert "runs only on Windows (1.0 has wheels for Windows only)" in (runs_elsewhere(by_files) or "")
    for files in (("Windows", "source"), ("Linux", "Windows"), ("any",), ()):
        assert runs_elsewhere(ProjectFacts("x", True, files_for=files)) is None
    assert runs_elsewhere(ProjectFacts("x", True, platforms=("Operating System :: OS Independent",))) is None


def test_the_lock_records_what_was_left_out_for_the_report_and_the_check() -> None:
    refused = {"win32api": ("pywin32", "pywin32 runs only on Windows (its PyPI classifiers: ...)")}
    lock = platform_only.annotate("requests==2.32.3 \\\n    --hash=sha256:aa\n", refused)
    [entry] = platform_only.unresolved(lock)
    assert entry["module"] == "win32api" and "runs only on Windows" in (entry["hint"] or "")
    needs = [ImportNeed(m, (), None, True) for m in ("win32api", "win32api.sub", "requests", "win32apix")]
    assert [n.module for n in platform_only.installable(needs, lock)] == ["requests", "win32apix"]
    assert platform_only.unresolved("requests==2.32.3\n") == ()
    assert platform_only.refusals(None, [{"module": "win32api", "package": "pywin32"}]) == {}


@pytest.mark.network
def test_a_mapped_windows_only_import_is_reported_not_installed(client: Client) -> None:
    """pywin32 has only Windows wheels: the install used to fail whole; now the script's other needs install and
    win32api is reported with the reason."""
    with client.create() as box:
        box.write("main.py", "import requests\nimport win32api\n")
        result = box.exec(filename="main.py", timeout_seconds=300)
        assert result.status == "failed" and "No module named 'win32api'" in result.output
        install = result.install
        assert install is not None and install.error is None and install.verified is True
        assert "requests" in {p.name.lower() for p in install.installed}
        assert "pywin32" not in {p.name.lower() for p in install.installed}
        [refused] = [u for u in result.unresolved_imports if u.module == "win32api"]
        assert "pywin32 runs only on Windows" in refused.hint


@pytest.mark.network
def test_a_guarded_windows_only_import_is_reported_too(client: Client) -> None:
    with client.create() as box:
        result = run_file(
            box,
            "main.py",
            "try:\n    import win32api\nexcept ImportError:\n    pass\nimport six\nprint('ok')\n",
            timeout_seconds=300,
        )
        assert result.stdout == "ok\n", result.output
        [refused] = [u for u in result.unresolved_imports if u.module == "win32api"]
        assert "runs only on Windows" in refused.hint
