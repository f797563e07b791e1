"""The pieces of verify-then-seal that need no jail: which imports are checked, what counts as a failure, and
how far a version back-off steps."""

from __future__ import annotations

from pathlib import Path

from cloche.ecosystems.python.detect import detect
from cloche.ecosystems.python.recovery import Answer, _earlier_bound, _series_bound, runtime_needs
from cloche.ecosystems.python.resolve import Resolver

RESOLVER = Resolver()


def test_scanned_needs_keep_from_import_names_and_skip_guarded_imports(tmp_path: Path) -> None:
    code = "from yaml import safe_load, dump\nimport yaml.constructor\n"
    code += "try:\n    import bs4\nexcept ImportError:\n    pass\n"
    (tmp_path / "main.py").write_text(code)
    found = detect(tmp_path, "main.py", resolver=RESOLVER)
    needs = {n.module: n for n in found.imports}
    assert set(needs) == {"yaml", "yaml.constructor"}  # bs4 is guarded: it may fail by design
    assert needs["yaml"].names == ("dump", "safe_load") and needs["yaml"].chosen
    assert needs["yaml"].distribution == RESOLVER.resolve_offline("yaml").distribution  # type: ignore[union-attr]


def test_declared_needs_cover_only_what_the_manifest_lists(tmp_path: Path) -> None:
    (tmp_path / "requirements.txt").write_text("PyYAML==6.0.1\n")
    (tmp_path / "main.py").write_text("import yaml\nimport bs4\n")
    found = detect(tmp_path, "main.py", resolver=RESOLVER)
    assert [(n.module, n.chosen, n.alternatives) for n in found.imports] == [("yaml", False, ())]
    assert [u.module for u in found.unlisted] == ["bs4"]  # reported, not checked


def test_what_counts_as_a_failure() -> None:
    assert not Answer("a", "missing_module", "a").ok
    assert not Answer("a", "missing_names", names=("x",)).ok
    assert not Answer("a", "import_error", error="ImportError: cannot import name 'x' from 'b'").ok
    assert Answer("a", "import_error", error="ImportError: libGL.so.1: cannot open shared object file").ok
    assert Answer("a", "raised", error="KeyError: 'DISPLAY'").ok


def test_backoff_steps_to_the_previous_series() -> None:
    assert _series_bound("3.1.2") == "3"
    assert _series_bound("1.0.0") == "1"
    assert _series_bound("0.24.2") == "0.24"
    assert _series_bound("0.0.9") is None
    assert _series_bound("not a version") is None
    # When the previous series lacks the name too, the next round steps one series further back.
    assert _earlier_bound("5") == "4"
    assert _earlier_bound("0.24") == "0.23"
    assert _earlier_bound("1") is None
    assert _earlier_bound("0.1") is None


def test_runtime_needs_are_reviewed_data() -> None:
    needs = runtime_needs()
    assert needs["pkg_resources"].distribution == "setuptools"
    assert all(o.reason.strip() for o in needs.values())
