"""A sandbox's needs as a union of sources: which detection an exec installs, and what it records."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from cloche.ecosystems.base import Detection, Needs
from cloche.ecosystems.go.ecosystem import GoEcosystem
from cloche.ecosystems.python.accumulate import PythonNeeds
from cloche.ecosystems.python.ecosystem import PythonEcosystem
from cloche.errors import ClocheError
from cloche.service.sandbox_needs import DECLARED, entry_source, plan
from cloche.store.metadata import SandboxNeed

NOW = datetime(2026, 1, 1, tzinfo=UTC)
PYTHON = PythonEcosystem()
NEEDS = PythonNeeds()


def scanned(*names: str) -> Detection:
    return Detection("python", "scan", names, f"fp-{'-'.join(names)}")


def stored(source: str, *requirements: str) -> SandboxNeed:
    return SandboxNeed("sb", "python", source, list(requirements), [], [], NOW)


def test_a_lone_entry_keeps_its_own_detection_and_is_recorded_once() -> None:
    entry = scanned("PyYAML")
    first = plan(PYTHON, [], {"main.py": entry}, None)
    assert first.detection is entry and first.alone is None
    assert first.writes == {entry_source("main.py"): Needs(("PyYAML",))}
    again = plan(PYTHON, [stored(entry_source("main.py"), "PyYAML")], {"main.py": entry}, None)
    assert again.detection is entry and again.writes == {}


def test_an_entry_with_other_sources_gets_the_union_and_can_fall_back_to_its_own() -> None:
    others = [stored(entry_source("a.py"), "six"), stored(DECLARED, "humanize==4.9.0")]
    entry = scanned("PyYAML")
    found = plan(PYTHON, others, {"b.py": entry}, None)
    assert found.detection is not None and found.alone is entry
    assert sorted(found.detection.requested) == ["PyYAML", "humanize==4.9.0", "six"]
    # A command with no entry sees the same union under the same fingerprint: no second resolve.
    both = [*others, stored(entry_source("b.py"), "PyYAML")]
    command = plan(PYTHON, both, {}, None)
    assert command.detection is not None and command.detection.fingerprint == found.detection.fingerprint


def test_several_entries_and_a_typed_install_in_one_command() -> None:
    found = plan(PYTHON, [], {"a.py": scanned("six"), "b.py": scanned("PyYAML")}, Needs(("humanize",)))
    assert found.detection is not None and sorted(found.detection.requested) == ["PyYAML", "humanize", "six"]
    assert set(found.writes) == {entry_source("a.py"), entry_source("b.py"), DECLARED}


def test_nothing_needed_is_no_environment() -> None:
    assert plan(PYTHON, [stored(DECLARED, "six")], {}, Needs()).detection is None


def test_go_keeps_one_entrys_environment() -> None:
    go = GoEcosystem(None)
    entry = Detection("go", "go.mod", ("example.com/x",), "fp")
    found = plan(go, [], {"main.go": entry}, None)
    assert found.detection is entry and found.writes == {}


def test_typed_python_packages_newest_pin_wins_and_removal(tmp_path: Path) -> None:
    (tmp_path / "reqs.txt").write_text("six==1.15.0\n-c pins.txt\n")
    (tmp_path / "pins.txt").write_text("idna<4\n")
    declared = NEEDS.declare(Needs(), tmp_path, ["humanize", "Six==1.16.0"], [], False)
    assert declared.requirements == ("humanize", "Six==1.16.0")
    declared = NEEDS.declare(declared, tmp_path, [], ["reqs.txt"], False)
    assert declared.requirements == ("humanize", "six==1.15.0") and declared.constraints == ("idna<4",)
    declared = NEEDS.declare(declared, tmp_path, ["humanize"], [], True)
    assert declared.requirements == ("six==1.15.0",)
    assert NEEDS.package("Foo.Bar[x]>=1") == "foo-bar"
    with pytest.raises(ClocheError):
        NEEDS.declare(declared, tmp_path, ["git+https://example.com/x"], [], False)
    with pytest.raises(ClocheError):
        NEEDS.declare(declared, tmp_path, ["not a name=="], [], False)
