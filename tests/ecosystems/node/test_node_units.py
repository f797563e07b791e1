"""Node detection pieces offline: comment stripping, specifier scanning, package names, the popularity list,
package-lock normalisation and components."""

from __future__ import annotations

import base64
import importlib.util
import json
import sys
from pathlib import Path

import pytest

from cloche.ecosystems.base import InstallFailed
from cloche.ecosystems.common import strip_comments
from cloche.ecosystems.node import lockfile
from cloche.ecosystems.node.detect import detect, popular
from cloche.ecosystems.node.ecosystem import NodeEcosystem
from cloche.ecosystems.node.scan import DATA, builtins, imported_names, package_of, specifiers

ROOT = Path(__file__).resolve().parents[3]


def test_strip_comments_keeps_strings_and_lines() -> None:
    text = "a // x\n'// not a comment' /* b\nc */ d `t ${1}`\n"
    out = strip_comments(text)
    assert out.count("\n") == text.count("\n") and len(out) == len(text)
    assert "'// not a comment'" in out and "x" not in out.split("\n")[0] and "d `t ${1}`" in out
    masked = strip_comments("f('abc') // c", mask_strings=True)
    assert masked.startswith("f('xxx')")


def test_specifiers_every_form_but_not_inside_strings() -> None:
    code = (
        "const a = require('a');\nimport b from \"b\";\nimport 'c';\nimport {\n  d\n} from 'd';\n"
        "export * from 'e';\nconst f = await import('f');\nconst g = require(`g`);\n"
        "const s = 'import x from \"nope\"';\n/* require('commented') */\nimport(name);\n"
    )
    found = specifiers(code)
    assert [(spec, line) for spec, line, _ in found] == [
        ("a", 1),
        ("b", 2),
        ("c", 3),
        ("d", 6),
        ("e", 7),
        ("f", 8),
        ("g", 9),
    ]
    assert [spec for spec, _, required in found if required] == ["a", "g"]


@pytest.mark.parametrize(
    ("spec", "name"),
    [
        ("lodash", "lodash"),
        ("lodash/fp", "lodash"),
        ("@babel/core", "@babel/core"),
        ("@babel/core/lib/x.js", "@babel/core"),
        ("fs", None),
        ("fs/promises", None),
        ("node:test", None),
        ("./local", None),
        ("/abs", None),
        ("#internal", None),
        ("https://x.example/m.js", None),
        ("@scope-only", None),
        ("${x}", None),
        ("@types/node", None),
        ("node:sqlite", None),
    ],
)
def test_package_of(spec: str, name: str | None) -> None:
    assert package_of(spec) == name


def test_shipped_data() -> None:
    assert {"fs", "http", "path", "child_process"} <= builtins()
    header = (DATA / "npm_popular.txt").read_text().splitlines()[0]
    assert header.startswith("# derived ") and "npm.tsv" in header
    assert {"lodash", "express", "@babel/core"} <= popular() and len(popular()) >= 5000
    assert "totally-invented-helper-zq" not in popular()


def test_popularity_script_ranks_and_cuts(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("gen_npm_popular", ROOT / "scripts" / "gen_npm_popular.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gen_npm_popular"] = module
    spec.loader.exec_module(module)
    tsv = tmp_path / "npm.tsv"
    rows = ["name\tversion\tdownloads_a_month\tsummary", "small\t1\t10\t", "big\t1\t900\t", "mid\t1\t500\t"]
    rows += ["Bad Name\t1\t999\t", "@s/x\t1\t700\t", "nodl\t1\t\t"]
    tsv.write_text("\n".join(rows) + "\n")
    assert module.ranked(tsv, top=3, min_downloads=100) == [("big", 900), ("@s/x", 700), ("mid", 500)]


def _lock(packages: dict[str, object], version: int = 3) -> str:
    return json.dumps({"name": "user-app", "version": "9.9.9", "lockfileVersion": version, "packages": packages})


def test_normalise_replaces_the_root_and_refuses_old_or_linked_locks() -> None:
    text = lockfile.normalise(
        _lock(
            {
                "": {"name": "user-app", "version": "9", "dependencies": {"ms": "^2"}},
                "node_modules/ms": {"version": "2.1.3"},
            }
        )
    )
    data = json.loads(text)
    assert data["packages"][""] == {"name": "sandbox", "version": "0.0.0", "dependencies": {"ms": "^2"}}
    assert json.loads(lockfile.manifest_of(text))["dependencies"] == {"ms": "^2"}
    other = _lock({"": {"name": "other", "dependencies": {"ms": "^2"}}, "node_modules/ms": {"version": "2.1.3"}})
    assert lockfile.normalise(other) == text  # same dependencies, same environment
    with pytest.raises(InstallFailed, match="too old"):
        lockfile.normalise(_lock({}, version=1))
    with pytest.raises(InstallFailed, match="local folder"):
        lockfile.normalise(_lock({"": {}, "node_modules/x": {"link": True, "resolved": "../x"}}))


def test_components_purls_hashes_licenses_and_platforms() -> None:
    digest = bytes(range(64))
    integrity = "sha512-" + base64.b64encode(digest).decode()
    text = lockfile.normalise(
        _lock(
            {
                "": {"dependencies": {"@types/node": "20.0.0", "a": "1"}},
                "node_modules/@types/node": {"version": "20.0.0", "license": "MIT", "integrity": integrity},
                "node_modules/a": {"version": "1.0.0", "hasInstallScript": True},
                "node_modules/b/node_modules/a": {"version": "1.0.0"},
                "node_modules/fsevents": {"version": "2.3.3", "os": ["darwin"], "optional": True},
                "node_modules/alias": {"name": "real-name", "version": "3.0.0"},
            }
        )
    )
    found = {c.name: c for c in lockfile.components(text, "package.json")}
    assert set(found) == {"@types/node", "a", "real-name"}
    assert found["@types/node"].purl == "pkg:npm/%40types/node@20.0.0"
    assert found["@types/node"].hashes == (f"sha512:{digest.hex()}",)
    assert found["@types/node"].license == "MIT" and found["a"].license is None
    assert lockfile.runs_scripts(text)


def test_installed_license_fills_the_gap(tmp_path: Path) -> None:
    text = lockfile.normalise(_lock({"": {}, "node_modules/a": {"version": "1.0.0"}}))
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "package.json").write_text(json.dumps({"license": {"type": "ISC"}}))
    assert lockfile.components(text, "scan", tmp_path)[0].license == "ISC"


def test_abi_names_the_module_version() -> None:
    abi = NodeEcosystem().abi()
    assert abi.startswith("node-") and abi.endswith("-linux-x64")


def test_imported_names_per_specifier() -> None:
    code = (
        "import a, { b, c as d, default as e } from 'x';\nimport * as ns from \"y\";\nexport { f } from 'z/sub';\n"
        "export * from 'w';\nimport type { T } from 't';\nimport 'side';\nconst s = \"import q from 'nope'\";\n"
    )
    assert imported_names(code) == {"x": {"default", "b", "c"}, "y": {"*"}, "z/sub": {"f"}, "w": {"*"}, "t": set()}


def test_a_builtin_name_with_a_subpath_it_lacks_is_reported_not_skipped(tmp_path: Path) -> None:
    (tmp_path / "main.js").write_text(
        "require('path/to/my/service');\nrequire('fs/promises');\nrequire('node:fs');\nrequire('path');\n"
        "require('events/x');\nrequire('path/to/my/service');\n"
    )
    found = detect(tmp_path, "main.js")
    assert found.source == "none" and found.requested == ()
    hints = {u["module"]: u["hint"] or "" for u in found.unresolved}
    assert list(hints) == ["path/to/my/service", "events/x"]  # fs/promises is a built-in subpath; each once
    assert "'path' is Node's built-in module and its subpaths are path/posix, path/win32" in hints["path/to/my/service"]
    assert "'./path/to/my/service'" in hints["path/to/my/service"] and "it has no subpaths" in hints["events/x"]
