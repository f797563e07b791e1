"""The verified long tail against a real local index on 127.0.0.1 (slopsquatting: a week-old name is refused, an
old one whose wheel ships the module is accepted), its cache, and, marked network, against the real PyPI."""

from __future__ import annotations

import gzip
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloche.ecosystems.python.importmap import ImportMap, LongTail
from cloche.ecosystems.python.resolve import Refusal, Resolution, Resolver
from cloche.ecosystems.python.resolve.long_tail import only_on
from cloche.ecosystems.python.resolve.pypi_json import PypiJson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _pyindex import LocalPypi
from _pywheels import build_wheel


def _data(tail: list[str]) -> ImportMap:
    blob = gzip.compress(("\n".join(sorted(tail)) + "\n").encode())
    return ImportMap({"requests": ["requests"]}, {}, ["requests"], long_tail=LongTail(lambda: blob))


@pytest.fixture
def index(tmp_path: Path) -> Iterator[LocalPypi]:
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    pypi = LocalPypi()
    old = build_wheel(wheels, "oldtimer", "2.0", {"oldtimer/__init__.py": "X = 1\n"})
    fresh = build_wheel(wheels, "freshname", "0.1", {"freshname/__init__.py": "X = 1\n"})
    other = build_wheel(wheels, "decoy", "1.0", {"something_else/__init__.py": ""})
    pypi.add("oldtimer", "2.0", 400, old)
    pypi.add("freshname", "0.1", 7, fresh)
    pypi.add("decoy", "1.0", 900, other)
    pypi.add("sdistonly", "1.0", 900, None)
    toast = build_wheel(wheels, "wintoast", "0.9", {"wintoast/__init__.py": ""})
    pypi.add("wintoast", "0.9", 2000, toast, ("Environment :: Win32 (MS Windows)", "Operating System :: Microsoft"))
    anywhere = build_wheel(wheels, "anyos", "1.0", {"anyos/__init__.py": ""})
    pypi.add("anyos", "1.0", 2000, anywhere, ("Operating System :: Microsoft :: Windows", "Operating System :: POSIX"))
    with pypi.running():
        yield pypi


def _resolver(index: LocalPypi, cache: Path | None, tail: list[str]) -> Resolver:
    return Resolver(_data(tail), PypiJson(index.json_url, cache), min_age_days=90)


TAIL = ["oldtimer", "freshname", "decoy_mod\tdecoy", "sdistonly", "ghost", "wintoast", "anyos"]


def test_old_project_whose_wheel_ships_the_module_is_accepted(index: LocalPypi, tmp_path: Path) -> None:
    answer = _resolver(index, tmp_path / "facts", TAIL).resolve("oldtimer.sub")
    assert isinstance(answer, Resolution)
    assert (answer.distribution, answer.source) == ("oldtimer", "long tail")
    assert "400 days ago" in answer.reason and "oldtimer-2.0-py3-none-any.whl ships oldtimer" in answer.reason
    # One JSON document and range requests on the wheel, never the whole file.
    assert index.requests[0] == "/pypi/oldtimer/json" and all(r.startswith("/files/") for r in index.requests[1:])


def test_week_old_name_is_refused(index: LocalPypi, tmp_path: Path) -> None:
    answer = _resolver(index, tmp_path / "facts", TAIL).resolve("freshname")
    assert isinstance(answer, Refusal)
    assert "first released 7 days ago" in answer.reason and "90 days" in answer.reason
    assert not any(r.startswith("/files/") for r in index.requests)  # refused before the wheel is even read


@pytest.mark.parametrize(
    ("module", "why"),
    [
        ("decoy_mod", "decoy-1.0-py3-none-any.whl does not ship decoy_mod"),
        ("sdistonly", "has no wheel whose files could be checked"),
        ("ghost", "PyPI has no project named 'ghost'"),
        ("zzqx_not_real_42", "no known project outside the ranking"),
    ],
)
def test_unverifiable_names_are_refused(index: LocalPypi, tmp_path: Path, module: str, why: str) -> None:
    answer = _resolver(index, tmp_path / "facts", TAIL).resolve(module)
    assert isinstance(answer, Refusal) and why in answer.reason


def test_a_project_for_another_operating_system_is_refused_with_that_reason(index: LocalPypi, tmp_path: Path) -> None:
    resolver = _resolver(index, tmp_path / "facts", TAIL)
    answer = resolver.resolve("wintoast")
    assert isinstance(answer, Refusal)
    assert "wintoast runs only on Windows" in answer.reason and "Operating System :: Microsoft" in answer.reason
    assert not any(r.startswith("/files/") for r in index.requests)  # refused before the wheel is read
    # A project that names Linux's family too is not refused for its platform.
    assert isinstance(resolver.resolve("anyos"), Resolution)


@pytest.mark.parametrize(
    ("classifiers", "only"),
    [
        (("Operating System :: Microsoft :: Windows :: Windows 10",), "Windows"),
        (("Environment :: Win32 (MS Windows)",), "Windows"),
        (("Operating System :: MacOS :: MacOS X", "Environment :: MacOS X"), "macOS"),
        (("Operating System :: OS Independent",), None),
        (("Operating System :: Microsoft :: Windows", "Operating System :: MacOS"), None),
        ((), None),
    ],
)
def test_only_on_reads_the_operating_system_classifiers(classifiers: tuple[str, ...], only: str | None) -> None:
    assert only_on(classifiers) == only


def test_answers_are_cached_on_disk(index: LocalPypi, tmp_path: Path) -> None:
    cache = tmp_path / "facts" / "python"
    assert isinstance(_resolver(index, cache, TAIL).resolve("oldtimer"), Resolution)
    asked = len(index.requests)
    again = _resolver(index, cache, TAIL).resolve("oldtimer")  # a new process would read the same files
    assert isinstance(again, Resolution) and len(index.requests) == asked
    assert any(cache.iterdir())
    assert {oct(p.stat().st_mode & 0o777) for p in (cache, cache.parent)} == {"0o700"}  # the server's own


def test_unreachable_index_refuses_with_the_cause(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # nothing listens once it is closed
    resolver = Resolver(_data(TAIL), PypiJson(f"http://127.0.0.1:{port}/pypi", tmp_path / "facts", timeout=2))
    started = time.monotonic()
    answer = resolver.resolve("oldtimer")
    assert isinstance(answer, Refusal) and "could not be asked" in answer.reason
    assert time.monotonic() - started < 5


def test_without_a_pypi_client_nothing_is_verified() -> None:
    answer = Resolver(_data(TAIL)).resolve("oldtimer")
    assert isinstance(answer, Refusal) and "checks with PyPI are off" in answer.reason


def test_resolve_all_keeps_order_and_mixes_layers(index: LocalPypi, tmp_path: Path) -> None:
    answers = _resolver(index, tmp_path / "facts", TAIL).resolve_all(["requests", "freshname", "oldtimer"])
    assert list(answers) == ["requests", "freshname", "oldtimer"]
    assert [type(a).__name__ for a in answers.values()] == ["Resolution", "Refusal", "Resolution"]


@pytest.mark.network
@pytest.mark.parametrize(("module", "project"), [("pywebcopy", "pywebcopy"), ("fer", "fer")])
def test_long_tail_of_the_real_pypi(tmp_path: Path, module: str, project: str) -> None:
    """Established projects outside the top 15,000 that pigar's index lists, verified against PyPI itself."""
    data = ImportMap.load()
    assert not data.is_known_distribution(project)
    answer = Resolver(data, PypiJson("https://pypi.org/pypi", tmp_path)).resolve(module)
    assert isinstance(answer, Resolution), answer
    assert (answer.distribution.lower(), answer.source) == (project, "long tail")
