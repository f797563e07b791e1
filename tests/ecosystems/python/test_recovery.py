"""The pieces of verify-then-seal that need no jail: which imports are checked, what counts as a failure, and
how far a version back-off steps."""

from __future__ import annotations

from pathlib import Path

from cloche.ecosystems.base import Lock
from cloche.ecosystems.python.detect import detect
from cloche.ecosystems.python.needs import ImportNeed
from cloche.ecosystems.python.recovery import (
    Answer,
    _earlier_bound,
    _series_bound,
    _State,
    runtime_needs,
    skipped_series,
)
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
    # Raised at import time because a dependency lacks an attribute (bokeh 2 on numpy 2): a back-off can fix it.
    drift = Answer("bokeh.io", "raised", error="AttributeError: module 'numpy' has no attribute 'bool8'. Did you mean")
    assert not drift.ok and drift.dependency_drift() == ("bool8", "numpy")
    cannot = Answer("flask", "import_error", error="ImportError: cannot import name 'url_quote' from 'werkzeug.urls'")
    assert cannot.dependency_drift() == ("url_quote", "werkzeug.urls")
    # The standard library's removals and a package's own attributes are not a dependency's drift.
    assert Answer("a", "raised", error="AttributeError: module 'collections' has no attribute 'Callable'").ok
    assert Answer("a.b", "raised", error="AttributeError: module 'a.c' has no attribute 'x'").ok


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


def test_backoff_is_for_the_package_s_own_drift_not_for_another_package_it_needs() -> None:
    need = ImportNeed("keras.models", ("load_model",), "keras", True)
    state = _State([need], ["keras"], RESOLVER)
    lock = Lock("keras==3.15.1\n", ())
    lacks_backend = Answer("keras.models", "missing_module", "tensorflow", error="No module named 'tensorflow'")
    assert state._backoff(need, lacks_backend, lock) is None
    removed = Answer("keras.models", "missing_module", "keras.models", error="No module named 'keras.models'")
    repair = state._backoff(need, removed, lock)
    assert repair is not None and repair.requirement == "keras<3"


def test_two_imports_failing_on_one_dependency_back_it_off_once_per_round() -> None:
    needs = [ImportNeed("bokeh.io", (), "bokeh", True), ImportNeed("bokeh.models.widgets", ("Panel",), "bokeh", True)]
    state = _State(needs, ["bokeh<3"], RESOLVER)
    lock = Lock("bokeh==2.4.3\nnumpy==2.4.6\n", ())
    error = "AttributeError: module 'numpy' has no attribute 'bool8'"
    first = state._backoff(needs[0], Answer("bokeh.io", "raised", error=error), lock)
    assert first is not None and first.requirement == "numpy<2"
    assert state._backoff(needs[1], Answer("bokeh.models.widgets", "raised", error=error), lock) is None
    state.this_round = set()  # the next round may step further back
    again = state._backoff(needs[1], Answer("bokeh.models.widgets", "raised", error=error), lock)
    assert again is not None and again.requirement == "numpy<1"


def test_a_dependency_without_its_own_submodule_is_backed_off_not_added_again() -> None:
    """fer imports moviepy.editor, which moviepy 2 removed: moviepy is there, so it is drift, not a runtime need."""
    need = ImportNeed("fer", ("FER",), "fer", True)
    state = _State([need], ["fer"], RESOLVER)
    lock = Lock("fer==25.10.3\nmoviepy==2.2.1\n", ())
    answer = Answer("fer", "missing_module", "moviepy.editor", error="No module named 'moviepy.editor'")
    assert not answer.ok and answer.dependency_drift() == ("editor", "moviepy")
    assert state._runtime_need(need, answer, lock) is None
    repair = state._backoff(need, answer, lock)
    assert repair is not None and repair.requirement == "moviepy<2"
    # A namespace package's missing part that nothing installed provides is still a runtime need.
    lacking = Answer("app", "missing_module", "google.protobuf", error="No module named 'google.protobuf'")
    assert state._runtime_need(ImportNeed("app", (), "app", True), lacking, lock) is not None


def test_a_backoff_locked_below_its_series_is_noticed() -> None:
    """moviepy<2 asks for 1.x; a wheels-only lock gives 0.2.3.1 because 1.0.3 has only a source archive."""
    assert skipped_series("moviepy==0.2.3.1\n", ["fer", "moviepy<2"])
    assert not skipped_series("moviepy==1.0.3\n", ["moviepy<2"])
    assert not skipped_series("scikit-learn==0.23.2\n", ["scikit-learn<0.24"])
    assert skipped_series("scikit-learn==0.20.4\n", ["scikit-learn<0.24"])
    assert not skipped_series("moviepy==0.2.3.1\n", ["moviepy<1", "fer>=1,<2"])
