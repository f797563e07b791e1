"""The import scanner: local resolution, optionality, hostile or broken files, limits, and the
scan-mode fingerprint. Workspaces are built in tmp_path; nothing here touches the network."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cloche.ecosystems.python.detect import detect
from cloche.ecosystems.python.resolve import Resolver
from cloche.ecosystems.python.scan import ScanResult, host_stdlib, scan_imports
from cloche.errors import FileNotFound, InvalidPath
from tests_support import write_tree

STDLIB = host_stdlib()


def scan(root: Path, entry: str = "main.py", **kwargs: int) -> ScanResult:
    return scan_imports(root, entry, stdlib=STDLIB, **kwargs)  # type: ignore[arg-type]


def test_host_stdlib_includes_future_and_common_modules() -> None:
    assert {"__future__", "os", "json", "tomllib", "asyncio"} <= STDLIB
    assert "requests" not in STDLIB


def test_dotted_names_lines_and_files(tmp_path: Path) -> None:
    write_tree(tmp_path, {"main.py": "import os\n\nimport google.cloud.storage\nfrom google.cloud import bigquery\n"})
    result = scan(tmp_path)
    assert [(r.module, r.names, r.file, r.line) for r in result.imports] == [
        ("google.cloud.storage", (), "main.py", 3),
        ("google.cloud", ("bigquery",), "main.py", 4),
    ]
    assert result.modules() == {"google.cloud.bigquery": False, "google.cloud.storage": False}
    assert [path for path, _ in result.files] == ["main.py"]


def test_stdlib_is_the_targets_not_the_hosts(tmp_path: Path) -> None:
    write_tree(tmp_path, {"main.py": "import tomllib\nimport json\n"})
    older = frozenset(STDLIB - {"tomllib"})
    assert list(scan_imports(tmp_path, "main.py", stdlib=older).modules()) == ["tomllib"]


def test_only_reachable_local_files_are_read(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "main.py": "import helpers\nfrom pkg import sub\nimport pkg.deep.leaf\n",
            "helpers.py": "import yaml\n",
            "pkg/__init__.py": "from .inner import thing\n",
            "pkg/inner.py": "from . import sub\nimport requests\n",
            "pkg/sub.py": "from ..outside import nothing\nimport bs4\n",
            "pkg/deep/leaf.py": "import attr\n",  # namespace subpackage (no __init__.py)
            "other/never.py": "import numpy\n",
        },
    )
    result = scan(tmp_path)
    assert result.modules() == {"attr": False, "bs4": False, "requests": False, "yaml": False}
    assert [path for path, _ in result.files] == [
        "helpers.py",
        "main.py",
        "pkg/__init__.py",
        "pkg/deep/leaf.py",
        "pkg/inner.py",
        "pkg/sub.py",
    ]
    assert result.errors == ()


def test_entry_directory_comes_first_then_root_then_src(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "app/main.py": "import util\nimport shared\nimport lib\n",
            "app/util.py": "import yaml\n",
            "util.py": "import numpy\n",  # shadowed by app/util.py
            "shared/__init__.py": "import requests\n",
            "src/lib/__init__.py": "import bs4\n",
        },
    )
    result = scan(tmp_path, "app/main.py")
    assert set(result.modules()) == {"yaml", "requests", "bs4"}
    assert result.local_roots == ("app", ".", "src")


def test_local_module_shadowing_stdlib_is_scanned(tmp_path: Path) -> None:
    write_tree(tmp_path, {"main.py": "import random\n", "random.py": "import requests\n"})
    assert list(scan(tmp_path).modules()) == ["requests"]


def test_namespace_directories(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "main.py": "import utils.text\nfrom helpers import fmt\nimport tools\nimport yaml\n",
            "utils/text.py": "import bs4\n",  # namespace package holding the imported submodule
            "helpers/fmt/__init__.py": "import attr\n",
            "tools.py": "import requests\n",  # a module wins over a same-named directory
            "yaml/settings.yaml": "a: 1\n",  # a data directory must not hide PyYAML
        },
    )
    (tmp_path / "tools").mkdir()
    assert list(scan(tmp_path).modules()) == ["attr", "bs4", "requests", "yaml"]


@pytest.mark.parametrize(
    "source",
    [
        "try:\n    import foo\nexcept ImportError:\n    pass\n",
        "try:\n    import foo\nexcept ModuleNotFoundError:\n    pass\n",
        "try:\n    import foo\nexcept (ValueError, ImportError):\n    pass\n",
        "try:\n    import foo\nexcept Exception:\n    pass\n",
        "try:\n    import foo\nexcept:\n    pass\n",
        "try:\n    import json\nexcept ImportError:\n    import foo\n",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import foo\n",
        "import typing\nif typing.TYPE_CHECKING:\n    from foo import bar\n",
        "import contextlib\nwith contextlib.suppress(ImportError):\n    import foo\n",
        "import importlib\nm = importlib.import_module('foo')\n",
        "from importlib import import_module\nm = import_module('foo')\n",
        "m = __import__('foo')\n",
    ],
)
def test_optional_imports(tmp_path: Path, source: str) -> None:
    write_tree(tmp_path, {"main.py": source})
    result = scan(tmp_path)
    assert result.imports and all(ref.optional for ref in result.imports)


@pytest.mark.parametrize(
    "source",
    [
        "try:\n    import foo\nexcept ValueError:\n    pass\n",
        "try:\n    pass\nexcept ImportError:\n    pass\nelse:\n    import foo\n",
        "if DEBUG:\n    import foo\n",
        "def f():\n    import foo\n",
        "class C:\n    async def f(self):\n        async with x:\n            import foo\n",
        "match x:\n    case 1:\n        import foo\n",
    ],
)
def test_required_imports(tmp_path: Path, source: str) -> None:
    write_tree(tmp_path, {"main.py": source})
    result = scan(tmp_path)
    assert result.modules() == {"foo": False}


def test_required_wins_over_optional(tmp_path: Path) -> None:
    write_tree(
        tmp_path, {"main.py": "try:\n    import foo\nexcept ImportError:\n    pass\nimport foo.bar\nimport foo\n"}
    )
    assert scan(tmp_path).modules() == {"foo": False, "foo.bar": False}


@pytest.mark.parametrize("call", ["importlib.import_module(name)", "importlib.import_module('.x', 'p')", "f('x')"])
def test_dynamic_imports_need_an_absolute_literal(tmp_path: Path, call: str) -> None:
    write_tree(tmp_path, {"main.py": f"import importlib\n{call}\n"})
    assert scan(tmp_path).imports == ()


def test_syntax_error_is_recorded_and_the_scan_continues(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "main.py": "import broken\nimport good\n",
            "broken.py": "import yaml\ndef f(:\n    pass\n",
            "good.py": "import requests\n",
        },
    )
    result = scan(tmp_path)
    assert [(e.file, e.line) for e in result.errors] == [("broken.py", 2)]
    assert "syntax error" in result.errors[0].message
    # Newer syntax than the host parses is common: plain import lines are still read.
    assert set(result.modules()) == {"yaml", "requests"}


def test_syntax_error_in_the_entry_does_not_crash(tmp_path: Path) -> None:
    write_tree(tmp_path, {"main.py": "import requests\nfrom bs4 import (\n    BeautifulSoup,\n)\nx = = 1\n"})
    result = scan(tmp_path)
    assert result.errors and result.errors[0].file == "main.py"
    assert result.modules() == {"bs4.BeautifulSoup": False, "requests": False}


def test_unparseable_nesting_does_not_crash(tmp_path: Path) -> None:
    write_tree(tmp_path, {"main.py": "import requests\nx = " + "(" * 5000 + ")" * 5000 + "\n"})
    result = scan(tmp_path)
    assert result.errors
    assert list(result.modules()) == ["requests"]


def test_encoding_cookie_is_honoured(tmp_path: Path) -> None:
    (tmp_path / "main.py").write_bytes(b"# -*- coding: latin-1 -*-\nimport requests\ns = '\xe9'\n")
    assert list(scan(tmp_path).modules()) == ["requests"]


def test_missing_or_symlinked_entry_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFound):
        scan(tmp_path)
    write_tree(tmp_path, {"real.py": "import requests\n"})
    os.symlink("real.py", tmp_path / "main.py")
    with pytest.raises(InvalidPath):
        scan(tmp_path)


def test_symlinked_local_modules_are_local_but_never_read(tmp_path: Path) -> None:
    outside = write_tree(tmp_path / "outside", {"evil.py": "import numpy\n", "pkg/__init__.py": "import numpy\n"})
    ws = write_tree(tmp_path / "ws", {"main.py": "import evil\nimport pkg\nimport linked\n", "real/x.py": ""})
    os.symlink(outside / "evil.py", ws / "evil.py")
    os.symlink(outside / "pkg", ws / "pkg")
    os.symlink("real", ws / "linked")
    result = scan(ws)
    assert result.imports == ()  # shadowed locally, so not third-party; and never followed
    assert {e.file for e in result.errors} == {"evil.py", "pkg", "linked"}
    assert [path for path, _ in result.files] == ["main.py"]


def test_file_limit_truncates(tmp_path: Path) -> None:
    files = {"main.py": "".join(f"import m{i}\n" for i in range(20))}
    files.update({f"m{i}.py": "import requests\n" for i in range(20)})
    write_tree(tmp_path, files)
    result = scan(tmp_path, max_files=5)
    assert result.truncated
    assert len(result.files) == 5
    assert any("more than 5" in e.message for e in result.errors)


def test_size_limit_skips_large_local_files(tmp_path: Path) -> None:
    write_tree(tmp_path, {"main.py": "import big\nimport yaml\n", "big.py": "import requests\n" + "#" * 5000})
    result = scan(tmp_path, max_file_bytes=1000)
    assert list(result.modules()) == ["yaml"]
    assert [e.file for e in result.errors] == ["big.py"]


def test_thousand_files_scan_whole(tmp_path: Path) -> None:
    # Correctness on a large tree only: how fast this is is measured by `make bench` (the scan scenario).
    n = 1000
    files = {"main.py": "import app.m0\n", "app/__init__.py": ""}
    for i in range(n):
        children = "".join(f"from app import m{j}\n" for j in (2 * i + 1, 2 * i + 2) if j < n)
        body = "".join(f"def f{k}(x):\n    return len(str(x)) + {k}\n\n" for k in range(10))
        files[f"app/m{i}.py"] = f"import os\nimport requests\n{children}\n{body}"
    write_tree(tmp_path, files)
    result = scan(tmp_path)
    assert len(result.files) == n + 2
    assert list(result.modules()) == ["requests"]


# The scan-mode fingerprint


def fingerprint(root: Path, entry: str = "main.py") -> str:
    return detect(root, entry, resolver=Resolver()).fingerprint


def test_scan_fingerprint_ignores_unrelated_files(tmp_path: Path) -> None:
    write_tree(tmp_path, {"main.py": "import requests\nimport helpers\n", "helpers.py": "import yaml\n"})
    before = fingerprint(tmp_path)
    write_tree(tmp_path, {"notes.txt": "hello", "other.py": "import numpy\n", "data/x.csv": "1,2\n"})
    assert fingerprint(tmp_path) == before


def test_scan_fingerprint_follows_the_import_set(tmp_path: Path) -> None:
    write_tree(tmp_path, {"main.py": "import requests\nimport helpers\n", "helpers.py": "import yaml\n"})
    before = fingerprint(tmp_path)
    write_tree(tmp_path, {"helpers.py": "import yaml\nimport bs4\n"})
    changed = fingerprint(tmp_path)
    assert changed != before
    write_tree(tmp_path, {"helpers.py": "import yaml\n"})
    assert fingerprint(tmp_path) == before


def test_main_module_and_future_are_never_third_party(tmp_path: Path) -> None:
    write_tree(tmp_path, {"main.py": "from __future__ import annotations\nimport __main__\n"})
    assert scan(tmp_path).imports == ()


def test_oversized_entry_is_reported_not_fatal_for_detection(tmp_path: Path) -> None:
    write_tree(tmp_path, {"requirements.txt": "requests\n", "main.py": "import yaml\n" + "#" * (3 << 20)})
    found = detect(tmp_path, "main.py", resolver=Resolver())
    assert found.requirements == ("requests",)
    assert found.warnings and "larger than" in found.warnings[0]
    (tmp_path / "requirements.txt").unlink()
    assert detect(tmp_path, "main.py", resolver=Resolver()).source == "none"
