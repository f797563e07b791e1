"""Manifest parsing (requirements.txt, pyproject.toml, PEP 723), refusals with file and line, the
manifest search order, and the fingerprint's stability. Workspaces are built in tmp_path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cloche.ecosystems.python import manifests
from cloche.ecosystems.python.detect import PythonDetection, Suggestion, UnresolvedImport, detect
from cloche.ecosystems.python.resolve import Resolver
from cloche.errors import InvalidPath, InvalidRequest, Unsupported
from tests_support import write_tree


def run(root: Path, entry: str = "main.py") -> PythonDetection:
    return detect(root, entry, resolver=Resolver())


# requirements.txt


def test_requirements_lines(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "requirements.txt": "\ufeff# comment\n"
            "requests[socks] >= 2.31 , <3   # trailing comment\n"
            "pkg-a ; python_version < '3.12' \\\n"
            "    and sys_platform == 'linux'\n"
            "urllib3==2.2.1 --hash sha256:abcd \\\n  --hash=sha512:ef01\n"
            "--pre\n--prefer-binary\n\n"
            "requests[socks] >= 2.31 , <3\n",
        },
    )
    parsed = manifests.parse_requirements(tmp_path, "requirements.txt")
    assert parsed.requirements == (
        "requests[socks] >= 2.31 , <3",
        "pkg-a ; python_version < '3.12'     and sys_platform == 'linux'",
        "urllib3==2.2.1 --hash=sha256:abcd --hash=sha512:ef01",
    )
    assert [path for path, _ in parsed.files] == ["requirements.txt"]


def test_requirement_includes_are_relative_and_cycle_safe(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "requirements.txt": "-r reqs/a.txt\n-c reqs/pins.txt\nrequests\n",
            "reqs/a.txt": "-rb.txt\nnumpy\n",
            "reqs/b.txt": "--requirement ../requirements.txt\n--requirement=a.txt\npandas\n",
            "reqs/pins.txt": "numpy<2\n-r more-pins.txt\n",
            "reqs/more-pins.txt": "pandas<3\n",
        },
    )
    parsed = manifests.parse_requirements(tmp_path, "requirements.txt")
    assert parsed.requirements == ("pandas", "numpy", "requests")
    assert parsed.constraints == ("numpy<2", "pandas<3")
    assert sorted(path for path, _ in parsed.files) == [
        "reqs/a.txt",
        "reqs/b.txt",
        "reqs/more-pins.txt",
        "reqs/pins.txt",
        "requirements.txt",
    ]


@pytest.mark.parametrize(
    ("line", "error", "words"),
    [
        ("-e .", Unsupported, ["requirements.txt:2", "editable", "official registry"]),
        ("--editable=git+https://x/y.git", Unsupported, ["editable"]),
        ("./local", Unsupported, ["'./local'", "local path"]),
        ("/abs/path/pkg", Unsupported, ["local path"]),
        ("file:///tmp/pkg", Unsupported, ["local path"]),
        ("dist/pkg-1.0-py3-none-any.whl", Unsupported, ["local path"]),
        ("git+https://github.com/a/b.git", Unsupported, ["version-control"]),
        ("pkg @ git+https://github.com/a/b.git", Unsupported, ["version-control"]),
        ("https://example.com/x-1.0.tar.gz", Unsupported, ["URL"]),
        ("pkg @ https://example.com/x.whl", Unsupported, ["URL"]),
        ("-i https://mirror/simple", Unsupported, ["another package index", "official registry"]),
        ("--index-url=https://mirror/simple", Unsupported, ["another package index"]),
        ("--extra-index-url https://mirror/simple", Unsupported, ["another package index"]),
        ("--find-links ./wheels", Unsupported, ["other locations"]),
        ("--trusted-host mirror", Unsupported, ["TLS"]),
        ("--no-index", Unsupported, ["registry"]),
        ("requests===", InvalidRequest, ["requirements.txt:2", "'requests==='", "not a valid requirement"]),
        ("foo bar", InvalidRequest, ["'foo bar'"]),
        ("requests --global-option=x", InvalidRequest, ["--global-option"]),
        ("requests --hash=nothex", InvalidRequest, ["--hash"]),
        ("--frobnicate", InvalidRequest, ["--frobnicate", "not supported"]),
        ("-r", InvalidRequest, ["needs a file"]),
        ("-r ../outside.txt", InvalidPath, ["outside the workspace"]),
        ("-r /etc/passwd", InvalidPath, ["outside the workspace"]),
        ("-r https://example.com/reqs.txt", Unsupported, ["URL"]),
        ("-r missing.txt", InvalidRequest, ["requirements.txt:2", "missing.txt", "does not exist"]),
    ],
)
def test_requirement_refusals_name_file_and_line(
    tmp_path: Path, line: str, error: type[Exception], words: list[str]
) -> None:
    write_tree(tmp_path, {"requirements.txt": f"requests\n{line}\n", "main.py": "import requests\n"})
    with pytest.raises(error) as info:
        run(tmp_path)
    assert type(info.value) is error
    for word in words:
        assert word in str(info.value)


def test_refusal_in_an_included_file_names_that_file(tmp_path: Path) -> None:
    write_tree(tmp_path, {"requirements.txt": "-r sub/more.txt\n", "sub/more.txt": "ok\n\n-e ../lib\n"})
    with pytest.raises(Unsupported, match=r"sub/more\.txt:3"):
        manifests.parse_requirements(tmp_path, "requirements.txt")


def test_symlinked_manifests_are_refused(tmp_path: Path) -> None:
    write_tree(tmp_path, {"real.txt": "requests\n", "main.py": "import requests\n"})
    os.symlink("real.txt", tmp_path / "requirements.txt")
    with pytest.raises(InvalidPath, match="symlink"):
        run(tmp_path)
    os.unlink(tmp_path / "requirements.txt")
    write_tree(tmp_path, {"requirements.txt": "-r linked.txt\n"})
    os.symlink("real.txt", tmp_path / "linked.txt")
    with pytest.raises(InvalidPath, match=r"linked\.txt"):
        run(tmp_path)


def test_symlinked_pyproject_is_refused(tmp_path: Path) -> None:
    write_tree(tmp_path, {"elsewhere.toml": "[project]\ndependencies = []\n", "main.py": ""})
    os.symlink("elsewhere.toml", tmp_path / "pyproject.toml")
    with pytest.raises(InvalidPath, match=r"pyproject\.toml is a symlink"):
        run(tmp_path)


# pyproject.toml


@pytest.mark.parametrize(
    ("constraint", "specifier"),
    [
        ("^1.2.3", ">=1.2.3,<2.0.0"),
        ("^0.2.3", ">=0.2.3,<0.3.0"),
        ("^0.0.3", ">=0.0.3,<0.0.4"),
        ("^0.0", ">=0.0,<0.1"),
        ("^0", ">=0,<1"),
        ("^1.2", ">=1.2,<2.0"),
        ("^2.0.0rc1", ">=2.0.0rc1,<3.0.0"),
        ("~1.2.3", ">=1.2.3,<1.3.0"),
        ("~1.2", ">=1.2,<1.3"),
        ("~1", ">=1,<2"),
        ("~=1.2", "~=1.2"),
        ("*", ""),
        ("", ""),
        ("1.2.3", "==1.2.3"),
        ("=1.2.3", "==1.2.3"),
        ("1.2.*", "==1.2.*"),
        (">=1.2,<2.0", ">=1.2,<2.0"),
        (">= 1.2, < 2.0", ">=1.2,<2.0"),
        (">=1.2 <2.0 !=1.5", ">=1.2,<2.0,!=1.5"),
    ],
)
def test_poetry_constraints(constraint: str, specifier: str) -> None:
    assert manifests.poetry_constraint(constraint, "pyproject.toml:1") == specifier


@pytest.mark.parametrize(("constraint", "error"), [("^1.0 || ^2.0", Unsupported), ("^abc", InvalidRequest)])
def test_bad_poetry_constraints(constraint: str, error: type[Exception]) -> None:
    with pytest.raises(error, match=r"pyproject\.toml:7"):
        manifests.poetry_constraint(constraint, "pyproject.toml:7")


def test_poetry_tables(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "pyproject.toml": "[tool.poetry.dependencies]\n"
            'python = ">=3.10"\n'
            'a = {version = "^1.0", extras = ["x", "y"], python = "^3.10", platform = "linux"}\n'
            'b = [{version = "<2", python = "<3.11"}, {version = "^2.0", python = ">=3.11"}]\n'
            'c = {version = "*", optional = true}\n'
            'd = {python = "3.11"}\n',
        },
    )
    parsed = manifests.parse_pyproject(tmp_path, "pyproject.toml")
    assert parsed.kind == "poetry"
    assert parsed.requires_python == ">=3.10"
    assert parsed.requirements == (
        'a[x,y]>=1.0,<2.0; python_full_version < "4.0" and python_full_version >= "3.10" and sys_platform == "linux"',
        'b<2; python_full_version < "3.11"',
        'b>=2.0,<3.0; python_full_version >= "3.11"',
        'd; python_full_version == "3.11.*"',
    )


@pytest.mark.parametrize("key", ["path", "url", "git", "source"])
def test_poetry_non_registry_sources_are_refused(tmp_path: Path, key: str) -> None:
    write_tree(tmp_path, {"pyproject.toml": f'[tool.poetry.dependencies]\nrequests = "^2"\nmine = {{{key} = "x"}}\n'})
    with pytest.raises(Unsupported, match=rf"pyproject\.toml:3: .*'mine' uses '{key}'.*official registry"):
        manifests.parse_pyproject(tmp_path, "pyproject.toml")


def test_pep621_errors_name_the_line(tmp_path: Path) -> None:
    write_tree(tmp_path, {"pyproject.toml": '[project]\nname = "x"\ndependencies = [\n  "ok",\n  "not valid!",\n]\n'})
    with pytest.raises(InvalidRequest, match=r"pyproject\.toml:5: 'not valid!'"):
        manifests.parse_pyproject(tmp_path, "pyproject.toml")
    write_tree(tmp_path, {"pyproject.toml": '[project]\ndependencies = ["x @ https://e.com/x.whl"]\n'})
    with pytest.raises(Unsupported, match="URL"):
        manifests.parse_pyproject(tmp_path, "pyproject.toml")
    write_tree(tmp_path, {"pyproject.toml": "[project\n"})
    with pytest.raises(InvalidRequest, match="not valid TOML"):
        manifests.parse_pyproject(tmp_path, "pyproject.toml")
    write_tree(tmp_path, {"pyproject.toml": '[project]\nrequires-python = "3.11+"\ndependencies = []\n'})
    with pytest.raises(InvalidRequest, match=r"pyproject\.toml:2: '3\.11\+'"):
        manifests.parse_pyproject(tmp_path, "pyproject.toml")


def test_pyproject_without_dependencies_falls_through(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "pyproject.toml": '[project]\nname = "x"\ndynamic = ["dependencies"]\n\n[tool.ruff]\nline-length = 100\n',
            "requirements.txt": "requests\n",
            "main.py": "import requests\n",
        },
    )
    assert manifests.parse_pyproject(tmp_path, "pyproject.toml").kind is None
    found = run(tmp_path)
    assert (found.source, found.manifest, found.requirements) == ("requirements.txt", "requirements.txt", ("requests",))


def test_src_layout_found_by_listing_when_the_name_differs(tmp_path: Path) -> None:
    write_tree(tmp_path, {"pyproject.toml": '[project]\nname = "dist-name"\ndependencies = []\n'})
    (tmp_path / "src").mkdir()
    assert manifests.parse_pyproject(tmp_path, "pyproject.toml").src_dir is None
    write_tree(tmp_path, {"src/other_pkg/__init__.py": "", "src/other_pkg/mod.py": ""})
    assert manifests.parse_pyproject(tmp_path, "pyproject.toml").src_dir == "src"


def test_empty_declared_dependencies_still_win_and_suggest(tmp_path: Path) -> None:
    write_tree(
        tmp_path, {"pyproject.toml": "[project]\ndependencies = []\n", "main.py": "import yaml\nimport zzq_nope\n"}
    )
    found = run(tmp_path)
    assert found.source == "pyproject.toml"
    assert found.requirements == ()
    assert found.unlisted == (Suggestion("yaml", "pyyaml"), Suggestion("zzq_nope", None))
    assert found.unlisted[0].to_dict() == {"module": "yaml", "suggested": "pyyaml"}


# Search order


def test_search_order_and_walk_up(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "app/job/main.py": "import requests\n",
            "app/requirements.txt": "requests==1\n",
            "requirements.txt": "requests==2\n",
        },
    )
    assert run(tmp_path, "app/job/main.py").manifest == "app/requirements.txt"
    write_tree(tmp_path, {"pyproject.toml": '[project]\ndependencies = ["requests==3"]\n'})
    found = run(tmp_path, "app/job/main.py")  # any pyproject with dependencies beats requirements.txt
    assert (found.source, found.manifest, found.requirements) == ("pyproject.toml", "pyproject.toml", ("requests==3",))
    write_tree(tmp_path, {"app/job/main.py": "# /// script\n# dependencies = ['requests==4']\n# ///\n"})
    assert run(tmp_path, "app/job/main.py").source == "pyproject.toml"  # manifests beat inline blocks


# PEP 723


def test_inline_block(tmp_path: Path) -> None:
    source = (
        "#!/usr/bin/env python3\r\n"
        "# /// script\r\n"
        "# requires-python = '>=3.11'\r\n"
        "#\r\n"
        "# dependencies = [\r\n"
        "#   'requests<3',  # why not\r\n"
        "# ]\r\n"
        "# ///\r\n"
        "import requests\r\n"
    )
    parsed = manifests.parse_inline(source, path="main.py")
    assert parsed is not None
    assert (parsed.line, parsed.requirements, parsed.requires_python) == (2, ("requests<3",), ">=3.11")


@pytest.mark.parametrize(
    "source",
    [
        "import requests\n",
        "# /// script\n# dependencies = ['x']\n",  # never closed
        "# /// pyproject\n# dependencies = ['x']\n# ///\n",  # another block type
        "#/// script\n# dependencies = ['x']\n# ///\n",
    ],
)
def test_no_inline_block(source: str) -> None:
    assert manifests.parse_inline(source, path="main.py") is None


def test_inline_errors(tmp_path: Path) -> None:
    two = "# /// script\n# dependencies = []\n# ///\n\nx = 1\n\n# /// script\n# dependencies = []\n# ///\n"
    with pytest.raises(InvalidRequest, match=r"main\.py:7: a second '# /// script' block.*line 1"):
        manifests.parse_inline(two, path="main.py")
    with pytest.raises(InvalidRequest, match=r"main\.py:2: the '# /// script' block is not valid TOML"):
        manifests.parse_inline("\n# /// script\n# dependencies = [\n# ///\n", path="main.py")
    bad = "# /// script\n# dependencies = [\n#   'ok',\n#   'bad req!',\n# ]\n# ///\n"
    with pytest.raises(InvalidRequest, match=r"main\.py:4: 'bad req!'"):
        manifests.parse_inline(bad, path="main.py")


def test_inline_unlisted_and_scan_unresolved(tmp_path: Path) -> None:
    write_tree(
        tmp_path, {"main.py": "# /// script\n# dependencies = ['pyyaml']\n# ///\nimport yaml\nimport requests\n"}
    )
    found = run(tmp_path)
    assert found.source == "inline"
    assert found.unlisted == (Suggestion("requests", "requests"),)
    write_tree(tmp_path, {"main.py": "import zzq_nope.sub\n"})
    found = run(tmp_path)
    assert found.source == "scan"
    assert found.unresolved == (UnresolvedImport("zzq_nope.sub", found.unresolved[0].hint),)
    assert "add it to requirements.txt" in found.unresolved[0].to_dict()["hint"]  # type: ignore[operator]


# Fingerprints


def test_manifest_fingerprint_ignores_unrelated_files_and_follows_the_manifest(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {"requirements.txt": "-r base.txt\n", "base.txt": "requests\n", "main.py": "import requests\n"},
    )
    before = run(tmp_path)
    assert [path for path, _ in before.inputs] == ["base.txt", "requirements.txt"]
    write_tree(tmp_path, {"notes.md": "x", "main.py": "import requests\nprint(1)\n", "other/requirements.txt": "x\n"})
    assert run(tmp_path).fingerprint == before.fingerprint
    write_tree(tmp_path, {"base.txt": "requests\n# a comment\n"})
    assert run(tmp_path).fingerprint != before.fingerprint  # an included file changed


def test_inline_fingerprint_covers_only_the_block(tmp_path: Path) -> None:
    block = "# /// script\n# dependencies = ['requests']\n# ///\n"
    write_tree(tmp_path, {"main.py": block + "import requests\n"})
    before = run(tmp_path)
    write_tree(tmp_path, {"main.py": block + "import requests\nprint('changed code')\n"})
    assert run(tmp_path).fingerprint == before.fingerprint
    write_tree(tmp_path, {"main.py": block.replace("'requests'", "'requests<3'") + "import requests\n"})
    assert run(tmp_path).fingerprint != before.fingerprint


def test_scan_fingerprint_follows_the_names_taken_from_an_import_not_the_code(tmp_path: Path) -> None:
    write_tree(tmp_path, {"main.py": "from requests import get\n"})
    before = run(tmp_path)
    write_tree(tmp_path, {"main.py": "from requests import get\nprint(get)\n"})
    assert run(tmp_path).fingerprint == before.fingerprint
    write_tree(tmp_path, {"main.py": "from requests import get, Session\n"})
    assert run(tmp_path).fingerprint != before.fingerprint  # a release may lack the new name


def test_fingerprint_is_deterministic_and_versioned(tmp_path: Path) -> None:
    write_tree(tmp_path, {"requirements.txt": "requests\n", "main.py": ""})
    first, second = run(tmp_path), run(tmp_path)
    assert first == second and first.fingerprint == second.fingerprint
    assert len(first.fingerprint) == 64
    assert first.to_dict()["fingerprint"] == first.fingerprint


def test_nested_project_src_layout_is_searched_and_reported(tmp_path: Path) -> None:
    write_tree(
        tmp_path,
        {
            "app/pyproject.toml": '[project]\nname = "svc"\ndependencies = ["requests"]\n',
            "app/src/svc/__init__.py": "import yaml\n",
            "app/main.py": "import svc\nimport requests\n",
        },
    )
    found = run(tmp_path, "app/main.py")
    assert (found.manifest, found.sys_path) == ("app/pyproject.toml", ("app/src",))
    assert found.unlisted == (Suggestion("yaml", "pyyaml"),)  # found through the project's own package
