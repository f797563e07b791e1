"""Golden detection cases for Go, Java and Node (see golden.py); Python's, with its import map, are in
python/test_py_detect_golden.py."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from golden import cases, check

from cloche.ecosystems.go.detect import detect as detect_go
from cloche.ecosystems.java.detect import detect as detect_java
from cloche.ecosystems.node.detect import detect as detect_node

HERE = Path(__file__).parent
# language -> (its detect, the entry a case runs unless its case.json names another)
LANGUAGES: dict[str, tuple[Callable[[Path, str], Any], str]] = {
    "go": (detect_go, "main.go"),
    "java": (detect_java, "Main.java"),
    "node": (detect_node, "main.js"),
}
CASES = [(language, name) for language in LANGUAGES for name in cases(HERE / language / "fixtures")]


@pytest.mark.parametrize("language", sorted(LANGUAGES))
def test_every_language_has_golden_cases(language: str) -> None:
    assert len(cases(HERE / language / "fixtures")) >= 4


@pytest.mark.parametrize(("language", "name"), CASES, ids=[f"{language}-{name}" for language, name in CASES])
def test_golden(language: str, name: str, tmp_path: Path) -> None:
    detect, entry = LANGUAGES[language]
    check(HERE / language / "fixtures", name, tmp_path, detect, entry)
