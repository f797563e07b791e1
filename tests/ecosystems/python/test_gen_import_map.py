"""scripts/gen_import_map.py over small sources it could be given: a ranking, a pigar-shaped wheel, typeshed-
and pyodide-shaped git repositories. Reproducible output, rank order, namespace roots, meta-packages, the long
tail. No network."""

from __future__ import annotations

import gzip
import importlib.util
import io
import json
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path
from types import ModuleType

import pytest


@pytest.fixture(scope="module")
def gen() -> ModuleType:
    path = Path(__file__).resolve().parents[3] / "scripts" / "gen_import_map.py"
    spec = importlib.util.spec_from_file_location("gen_import_map", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def _pigar_wheel(path: Path, dists: dict[str, list[str]]) -> Path:
    db = path.parent / "pigar.sqlite3"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE distributions (id INTEGER PRIMARY KEY, name VARCHAR, version VARCHAR)")
        conn.execute(
            "CREATE TABLE top_level_module_names (id INTEGER PRIMARY KEY, distribution_id INTEGER, name VARCHAR)"
        )
        for i, (dist, modules) in enumerate(dists.items(), 1):
            conn.execute("INSERT INTO distributions VALUES (?, ?, '1.0')", (i, dist))
            for module in modules:
                conn.execute("INSERT INTO top_level_module_names (distribution_id, name) VALUES (?, ?)", (i, module))
    conn.close()
    with zipfile.ZipFile(path, "w") as zf:
        zf.write(db, "pigar/.db.sqlite3")
    return path


def _git_repo(path: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        (path / rel).parent.mkdir(parents=True, exist_ok=True)
        (path / rel).write_text(text)
    env = ["-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    subprocess.run(["git", "-C", str(path), "add", "-A"], check=True)
    subprocess.run(["git", "-C", str(path), *env, "commit", "-q", "-m", "s"], check=True)
    return path / ".git"


def test_generator_end_to_end(gen: ModuleType, tmp_path: Path) -> None:
    tsv = tmp_path / "ranking.tsv"
    rows = ["alpha", "Beta", "ns-core", "ns-extra", "meta", "meta-core", "gamma", "stubbed"]
    tsv.write_text(
        "name\tversion\tmonth\trank_among_15000_most_downloaded\tsummary\n"
        + "".join(f"{n}\t1\t2026-0{1 + i % 2}\t{i + 1}\tx\n" for i, n in enumerate(rows))
        + "fringe\t1\t2026-01\t\tunranked\n"
    )
    pigar = _pigar_wheel(
        tmp_path / "pigar-9.9-py3-none-any.whl",
        {
            "alpha": ["alpha", "shared", "tests", "bad\\name"],
            "beta": ["beta", "shared"],
            "ns-core": ["ns"],
            "ns_extra": ["ns"],
            "meta": [],
            "meta-core": ["meta"],
            "gamma": [],
            "fringe": ["fringe", "shared"],
            "fringe-two": ["fringe"],
        },
    )
    typeshed = _git_repo(
        tmp_path / "typeshed",
        {
            "stubs/stubbed/stubbed/__init__.pyi": "",
            "stubs/stubbed/@tests/x.pyi": "",
            "stubs/Beta/nsb/sub/__init__.pyi": "",
        },
    )
    pyodide = _git_repo(
        tmp_path / "pyodide",
        {"packages/gamma/meta.yaml": "package:\n  name: gamma\n  version: 1\n  top-level:\n    - gamma_mod\n"},
    )
    out = tmp_path / "out"
    argv = ["--tsv", str(tsv), "--pigar", str(pigar), "--typeshed", str(typeshed), "--pyodide", str(pyodide)]
    assert gen.main([*argv, "--out-dir", str(out)]) == 0
    doc = json.loads((out / "import_map.json").read_text())
    assert doc["modules"] == {
        "alpha": ["alpha"],
        "shared": ["alpha", "Beta"],  # rank order
        "beta": ["Beta"],
        "nsb.sub": ["Beta"],  # typeshed's namespace stub, dotted
        "ns": ["ns-core", "ns-extra"],
        "meta": ["meta", "meta-core"],  # the meta-package that ships nothing goes before its '-core' part
        "gamma_mod": ["gamma"],  # pyodide's top-level
        "stubbed": ["stubbed"],
    }
    assert doc["namespaces"] == ["ns"] and doc["stdlib"].startswith("Python 3.")
    assert doc["unmapped"] == ["meta"] and (doc["projects"], doc["mapped"]) == (8, 7)
    assert [s["name"] for s in doc["sources"]] == [
        "download ranking",
        "pigar module index",
        "typeshed stubs",
        "pyodide recipes",
        "Python 2 module names",
    ]
    assert doc["python2"]["urllib2"].startswith("urllib.request")
    assert "commit" in doc["sources"][2]["version"] and doc["sources"][1]["licence"] == "BSD-3-Clause"
    tail = gzip.decompress((out / "long_tail.txt.gz").read_bytes()).decode().splitlines()
    assert tail == ["fringe\t= fringe-two", "shared\tfringe"]  # only projects outside the ranking
    ranking = (out / "top_pypi.txt").read_text().splitlines()
    assert ranking[1:3] == ["1\talpha", "2\tBeta"] and len(ranking) == 9

    # Same sources, same bytes.
    again = tmp_path / "again"
    assert gen.main([*argv, "--out-dir", str(again)]) == 0
    for name in ("import_map.json", "long_tail.txt.gz", "top_pypi.txt"):
        assert (out / name).read_bytes() == (again / name).read_bytes(), name


def test_meta_yaml_reader(gen: ModuleType) -> None:
    text = "package:\n  name: 'py-thing'\n  version: 2\n  top-level:\n    - thing\n    - _thing_c  # native\n"
    text += "source:\n  url: x\n"
    assert gen._meta_yaml(text) == ("py-thing", ["thing", "_thing_c"])
    assert gen._meta_yaml("package:\n  name: x\n") == ("x", [])


def test_gzip_output_has_no_timestamp(gen: ModuleType) -> None:
    blob = gen.long_tail({"x": {"x"}}, [], frozenset())
    assert blob[4:8] == b"\0\0\0\0" and gzip.decompress(blob) == b"x\n"
    assert io.BytesIO(blob).read(2) == b"\x1f\x8b"
