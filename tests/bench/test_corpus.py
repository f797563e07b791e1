"""The evaluation corpora: extraction rules (scripts/gen_corpus.py), generated programs and verdicts (bench), and
the shipped corpora's shape. The end-to-end check runs entries through a real server with offline wheels."""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # the bench package lives at the repository root, beside src/
    sys.path.insert(0, str(ROOT))

from bench.corpus import round_robin, run_in_sandbox  # noqa: E402
from bench.corpus_programs import node_program, python_program, verdict  # noqa: E402
from bench.corpus_report import commits_of, earlier_records, keep_others, markdown, stamp, summarize  # noqa: E402


def _gen() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_corpus", ROOT / "scripts" / "gen_corpus.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_corpus"] = module
    spec.loader.exec_module(module)
    return module


gen = _gen()

PY_SCRIPT = """\
from __future__ import annotations
import os, sys
import requests
from bs4 import BeautifulSoup, Tag as T
import helper
from . import sibling
try:
    import ujson as json
except ImportError:
    import json
try:
    import yaml
finally:
    pass

def main():
    import numpy.linalg
    from PIL import Image

if __name__ == "__main__":
    main()
"""


def test_python_imports_are_classified_in_order_with_guards() -> None:
    imports = gen.python_entry(PY_SCRIPT, {"helper"})
    assert [(i["module"], i["names"], i["guarded"], i["kind"]) for i in imports] == [
        ("__future__", ["annotations"], False, "stdlib"),
        ("os", None, False, "stdlib"),
        ("sys", None, False, "stdlib"),
        ("requests", None, False, "third_party"),
        ("bs4", ["BeautifulSoup", "Tag"], False, "third_party"),
        ("ujson", None, True, "third_party"),
        ("json", None, False, "stdlib"),
        ("yaml", None, False, "third_party"),  # try/finally catches nothing
        ("numpy.linalg", None, False, "third_party"),
        ("PIL", ["Image"], False, "third_party"),
    ]


@pytest.mark.parametrize(
    "text",
    [
        "import requests\n\nclass Model:\n    pass\n",  # a module of a larger program: runs nothing
        "import os\nos.getcwd()\n",  # nothing third-party
        "import tkinter\nimport requests\nrequests.get('x')\n",  # a desktop toolkit
        "print 'python 2'\nimport requests\n",  # not Python 3
    ],
)
def test_python_scripts_that_are_not_eligible(text: str) -> None:
    assert gen.python_entry(text, set()) is None


NODE_SCRIPT = """\
// require('commented-out')
/* import x from 'also-commented' */
const fs = require('fs');
const _ = require("lodash/fp");
const msg = "require('in-a-string')";
try { require('optional-dep'); } catch (e) {}
import chalk, { red as r, green } from 'chalk';
import * as path from 'node:path';
import '@scope/pkg/register';
export { thing } from 'reexported';
const later = await import('dyn-pkg');
const local = require('./local');
"""


def test_node_imports_skip_comments_strings_relative_and_node_prefix() -> None:
    entry = gen.node_entry(NODE_SCRIPT, "tool.js", {"fs", "path"})
    assert entry["module"] == "esm"
    got = [(i["specifier"], i["form"], i["names"], i["guarded"], i["kind"]) for i in entry["imports"]]
    assert got == [
        ("fs", "require", None, False, "builtin"),
        ("lodash/fp", "require", None, False, "package"),
        ("optional-dep", "require", None, True, "package"),
        ("chalk", "import", ["default", "red", "green"], False, "package"),
        ("@scope/pkg/register", "import", [], False, "package"),
        ("reexported", "export", ["thing"], False, "package"),
        ("dyn-pkg", "dynamic", None, False, "package"),
    ]
    assert [i["package"] for i in entry["imports"]][1:5] == ["lodash", "optional-dep", "chalk", "@scope/pkg"]


def test_node_browser_code_and_builtin_only_scripts_are_not_eligible() -> None:
    assert gen.node_entry("const $ = require('jquery');\ndocument.body.x = 1;\n", "a.js", set()) is None
    assert gen.node_entry("const fs = require('fs');\n", "a.js", {"fs"}) is None


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


def test_selection_from_a_real_repository_follows_the_rules(tmp_path: Path) -> None:
    repo = tmp_path / "mirrors" / "someone+scripts"
    files = {
        "LICENSE": "Permission is hereby granted, free of charge, to any person",
        "pyproject.toml": "[project]\nname = 'x'\n",  # the root's manifest does not disqualify
        "tools/fetch.py": "import requests\nimport util\nrequests.get('u')\n",
        "tools/util.py": "import yaml\nyaml.safe_load('')\n",
        "tools/tests/test_x.py": "import pytest\npytest.main()\n",
        "app/requirements.txt": "flask\n",
        "app/sub/run.py": "import flask\nflask.Flask('x').run()\n",  # a project's file: its manifest is above it
        "pkg_at_root/__init__.py": "",
        "demo/use_root.py": "import pkg_at_root\nimport click\nclick.echo('x')\n",
    }
    for rel, text in files.items():
        (repo / rel).parent.mkdir(parents=True, exist_ok=True)
        (repo / rel).write_text(text)
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x")
    commit = _git(repo, "rev-parse", "HEAD")
    source = gen.Source(repo="someone/scripts", ecosystem="python", commit=commit, cap=10)
    picked, counts = gen.select(gen.Repo(source, repo / ".git"), set())
    assert [e["path"] for e in picked] == ["demo/use_root.py", "tools/fetch.py", "tools/util.py"]
    by_path = {e["path"]: [i["module"] for i in e["imports"]] for e in picked}
    assert by_path["tools/fetch.py"] == ["requests"]  # util.py sits beside it: local
    assert by_path["demo/use_root.py"] == ["click"]  # the root's folder is local unless the root is a package
    assert counts == {"candidates": 4, "selected": 3}
    assert gen.Repo(source, repo / ".git").licence() == {"spdx": "MIT", "file": "LICENSE"}
    capped = gen.Source(repo="someone/scripts", ecosystem="python", commit=commit, cap=1)
    assert len(gen.select(gen.Repo(capped, repo / ".git"), set())[0]) == 1


def test_generated_python_program_is_exactly_the_imports() -> None:
    entry = {"id": "o/r:x.py", "imports": gen.python_entry(PY_SCRIPT, {"helper"})}
    program = python_program(entry)
    compile(program, "main.py", "exec")
    body = [line for line in program.splitlines() if not line.startswith("#")]
    assert body[:3] == ["from __future__ import annotations", "import os", "import sys"]
    assert "from bs4 import BeautifulSoup, Tag" in body
    i = body.index("    import ujson")
    assert body[i - 1 : i + 3] == ["try:", "    import ujson", "except ImportError:", "    pass"]
    assert "    import json" not in body and "import json" in body  # the handler's import is unguarded


@pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")
def test_generated_node_programs_parse(tmp_path: Path) -> None:
    for name, module in (("tool.mjs", "esm"), ("tool.js", "commonjs")):
        text = NODE_SCRIPT if module == "esm" else "const a = require('a');\nimport('b');\n"
        entry = {"id": f"o/r:{name}", **gen.node_entry(text, name, {"fs", "path"})}
        target = tmp_path / ("main.mjs" if entry["module"] == "esm" else "main.js")
        target.write_text(node_program(entry))
        subprocess.run(["node", "--check", str(target)], check=True)  # parses only: nothing is imported


def _result(status: str, exit_code: int | None, output: str, unresolved: list[str] | None = None) -> dict[str, Any]:
    return {
        "status": status,
        "exit_code": exit_code,
        "output": output,
        "install": {"requested": [], "error": output if status == "install_failed" else None},
        "unresolved_imports": [{"module": m, "hint": None} for m in unresolved or []],
    }


@pytest.mark.parametrize(
    ("ecosystem", "result", "failure", "module"),
    [
        ("python", _result("succeeded", 0, ""), None, None),
        ("python", _result("failed", 1, "ModuleNotFoundError: No module named 'zq'", ["zq"]), "unresolved", "zq"),
        ("python", _result("failed", 1, "ModuleNotFoundError: No module named 'ab'"), "not_found_after_install", "ab"),
        ("python", _result("failed", 1, "ModuleNotFoundError: No module named 'a.b'"), "missing_submodule", "a.b"),
        ("python", _result("failed", 1, "ImportError: cannot import name 'x' from 'm' (/p)"), "api_drift", "m.x"),
        ("python", _result("failed", 1, "ImportError: libGL.so.1: cannot open shared object"), "import_error", None),
        ("python", _result("failed", 1, "KeyError: 'DISPLAY'"), "import_time_error", None),
        ("python", _result("install_failed", None, "No solution found"), "install_failed", None),
        ("python", _result("timed_out", None, ""), "timeout", None),
        ("python", _result("error", None, "exec: ReadTimeout: timed out"), "client_timeout", None),
        ("python", _result("error", None, "exec: ConnectError: refused"), "error", None),
        (
            "node",
            _result("failed", 1, "Error: Cannot find module 'zq-x'\nRequire stack:", ["zq-x"]),
            "unresolved",
            "zq-x",
        ),
        (
            "node",
            _result("failed", 1, "Error: Cannot find module 'path/to/x'\n", ["path/to/x"]),
            "unresolved",
            "path/to/x",
        ),
        (
            "node",
            _result("failed", 1, "Error [ERR_PACKAGE_PATH_NOT_EXPORTED]: Package subpath './x' is not"),
            "api_drift",
            "./x",
        ),
        ("node", _result("failed", 1, "SyntaxError: ... does not provide an export named 'y'"), "api_drift", "y"),
        ("node", _result("succeeded", 0, "Cannot find module 'late'"), "not_found_after_install", "late"),
    ],
)
def test_verdicts(ecosystem: str, result: dict[str, Any], failure: str | None, module: str | None) -> None:
    outcome = verdict(ecosystem, result)
    assert (outcome.clean, outcome.failure, outcome.module) == (failure is None, failure, module)


@pytest.mark.parametrize(("ecosystem", "entries", "repos"), [("python", 200, 10), ("node", 60, 8)])
def test_shipped_corpora_are_large_varied_and_hold_imports_only(ecosystem: str, entries: int, repos: int) -> None:
    corpus = json.loads((ROOT / "bench" / "corpus" / f"{ecosystem}.json").read_text())
    assert len(corpus["entries"]) >= entries
    assert len({e["repo"] for e in corpus["entries"]}) >= repos
    for repo in corpus["repositories"]:
        assert len(repo["commit"]) == 40 and repo["license"]["spdx"]
    for entry in corpus["entries"]:
        assert set(entry) <= {"id", "repo", "commit", "path", "license", "imports", "module"}
        third_party = "third_party" if ecosystem == "python" else "package"
        assert any(i["kind"] == third_party for i in entry["imports"])
    ordered = round_robin(corpus["entries"])
    assert len({e["repo"] for e in ordered[:repos]}) == repos  # a short run still samples every repository


@pytest.mark.slow
def test_corpus_entries_run_through_a_real_server(offline_server: Any) -> None:
    entries = {
        "clean": [{"module": "six", "names": None, "guarded": False, "kind": "third_party"}],
        "unresolved": [{"module": "zzqx_not_real_42", "names": None, "guarded": False, "kind": "third_party"}],
        "api_drift": [{"module": "six", "names": ["no_such_name_here"], "guarded": False, "kind": "third_party"}],
        "guarded": [{"module": "zzqx_not_real_42", "names": None, "guarded": True, "kind": "third_party"}],
    }
    records = []
    with offline_server.client() as client:
        for expected, imports in entries.items():
            entry = {"id": f"t/t:{expected}.py", "repo": "t/t", "path": f"{expected}.py", "imports": imports}
            outcome = verdict("python", run_in_sandbox(client, "python", {"main.py": python_program(entry)}, "main.py"))
            assert outcome.failure == (None if expected in ("clean", "guarded") else expected), outcome
            records.append({"id": entry["id"], "cloche": outcome.as_dict(), "baseline": outcome.as_dict()})
    summary = summarize("python", {"entries": records, "repositories": [{}]}, records)
    assert (summary["measured"], summary["cloche_clean"], summary["cloche_rate"]) == (4, 2, 50.0)


def test_a_platform_only_import_is_left_out_of_the_runnable_rate_only_when_the_baseline_fails_too() -> None:
    refused = _result("failed", 1, "ModuleNotFoundError: No module named 'wintoast'", ["wintoast"])
    refused["unresolved_imports"][0]["hint"] = "wintoast runs only on Windows (its PyPI classifiers: ...)"
    outcome = verdict("python", refused)
    assert (outcome.failure, outcome.module, outcome.platform_only) == ("platform_only", "wintoast", ["wintoast"])
    failed = verdict("python", _result("install_failed", None, "Failed to build `pywin32-ctypes==1`")).as_dict()
    clean = verdict("python", _result("succeeded", 0, "")).as_dict()
    records = [
        {"id": "a", "cloche": outcome.as_dict(), "baseline": failed},  # nobody can: left out
        {"id": "b", "cloche": outcome.as_dict(), "baseline": clean},  # the baseline could: counted against cloche
        {"id": "c", "cloche": clean, "baseline": clean},
    ]
    python2 = _result("failed", 1, "ModuleNotFoundError: No module named 'urllib2'", ["urllib2"])
    python2["unresolved_imports"][0]["hint"] = "urllib2 is Python 2's name for the standard library's urllib.request"
    ported = verdict("python", python2).as_dict()
    assert (ported["failure"], ported["python2_only"]) == ("python2_only", ["urllib2"])
    records.append({"id": "d", "cloche": ported, "baseline": failed})
    summary = summarize("python", {"entries": records, "repositories": [{}]}, records)
    assert summary["cannot_run_here"] == ["a", "d"] and summary["runnable"] == 2
    rates = (summary["cloche_rate"], summary["cloche_runnable_rate"], summary["baseline_runnable_rate"])
    assert rates == (25.0, 50.0, 100.0)


def test_an_install_failure_is_described_by_the_line_naming_its_cause() -> None:
    uv = "Resolved 3 packages\n  x Failed to build `dlib==20.0.0`\n  hint: Build failures usually indicate a problem\n"
    outcome = verdict("python", _result("install_failed", None, uv))
    assert outcome.failure == "install_failed" and "Failed to build `dlib==20.0.0`" in outcome.detail


def test_a_run_of_one_corpus_keeps_the_others_last_results_on_the_page(tmp_path: Path) -> None:
    clean = verdict("python", _result("succeeded", 0, "")).as_dict()
    failed = verdict("python", _result("install_failed", None, "Failed to build `dlib==20.0.0`")).as_dict()
    python = [{"id": "a", "cloche": clean, "baseline": failed}, {"id": "b", "cloche": failed, "baseline": clean}]
    corpora = {eco: {"entries": python, "repositories": [{}]} for eco in ("python", "node")}
    earlier = stamp(summarize("python", corpora["python"], python), "abc1234")
    (tmp_path / "corpus.json").write_text(
        json.dumps({"summaries": {"python": earlier}, "records": {"python": python, "node": []}})
    )
    kept = keep_others(tmp_path / "corpus.json", {"node": []}, corpora)
    assert list(kept) == ["python"]  # node was measured by this run: never taken from the old file
    summary, records = kept["python"]
    assert records == python and (summary["commit"], summary["measured_at"]) == ("abc1234", earlier["measured_at"])
    assert (summary["cloche_clean"], summary["baseline_clean"]) == (1, 1)
    page = markdown({"python": summary, "node": stamp(summarize("node", corpora["node"], []), "def5678")})
    assert f"abc1234 (python, measured {earlier['measured_at']})" in page and "def5678 (node, measured" in page
    assert keep_others(tmp_path / "missing.json", {}, corpora) == {}


def test_a_resumed_run_counts_earlier_records_and_names_each_commit(tmp_path: Path) -> None:
    """--corpus-resume: corpus.json's measured records, then an interrupted run's records.jsonl, by entry id;
    entries reported as not measured are left for the new run."""
    measured = {"id": "a", "cloche": {"clean": True}, "baseline": {"clean": False}}
    document = {
        "summaries": {"python": {"commit": "abc1234"}},
        "records": {"python": [measured, {"id": "b", "not_measured": True}]},
    }
    (tmp_path / "corpus.json").write_text(json.dumps(document))
    progress = tmp_path / "records.jsonl"
    progress.write_text(json.dumps({"ecosystem": "python", "id": "c", "commit": "def5678"}) + "\n\n")
    found = earlier_records(tmp_path / "corpus.json", (progress,))
    assert sorted(found["python"]) == ["a", "c"]
    assert found["python"]["a"]["commit"] == "abc1234" and "ecosystem" not in found["python"]["c"]
    assert commits_of(list(found["python"].values()), "x") == "abc1234 (1) + def5678 (1)"
    assert commits_of([found["python"]["a"]], "x") == "abc1234" and commits_of([], "x") == "x"
    progress.write_text(json.dumps({"ecosystem": "python", "id": "c", "cloche": {"clean": False}}) + "\n")
    assert list(earlier_records(tmp_path / "corpus.json", (progress,), retry_failed=True)["python"]) == ["a"]
    assert earlier_records(tmp_path / "missing.json") == {}
