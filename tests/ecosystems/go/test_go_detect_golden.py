"""Golden detection cases for go (see tests/ecosystems/golden.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from cloche.ecosystems.go.detect import detect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from golden import cases, check

FIXTURES = Path(__file__).parent / "fixtures"


def test_cases_exist() -> None:
    assert len(cases(FIXTURES)) >= 4


@pytest.mark.parametrize("name", cases(FIXTURES))
def test_golden(name: str, tmp_path: Path) -> None:
    check(FIXTURES, name, tmp_path, detect, "main.go")
