"""Import-name -> distribution resolution, the slopsquatting guard, and the map generator's
offline parts (zip central directory reading and import-name derivation). No network."""

from __future__ import annotations

import datetime as dt
import importlib.util
import io
import json
import sys
import zipfile
from importlib import resources
from pathlib import Path
from types import ModuleType

import pytest
from packaging.utils import canonicalize_name

from cloche.ecosystems.python.importmap import ImportMap, Override, Resolution, parse_overrides

SHIPPED = ImportMap.load()
SHIPPED_RAW = json.loads(
    resources.files("cloche.ecosystems.python").joinpath("data/import_map.json").read_text(encoding="utf-8")
)
needs_full_map = pytest.mark.skipif(
    "partial" in SHIPPED_RAW["source"] or SHIPPED_RAW["mapped"] < 5000,
    reason="data/import_map.json is built offline from the local wheel mirror and installed RECORDs, so it can only "
    "cover the ranked projects held there; the full map needs scripts/gen_import_map.py's online crawl",
)


@pytest.mark.parametrize(
    ("module", "distribution"),
    [
        ("cv2", "opencv-python-headless"),
        ("sklearn", "scikit-learn"),
        ("sklearn.model_selection", "scikit-learn"),
        ("PIL", "pillow"),
        ("PIL.Image", "pillow"),
        ("bs4", "beautifulsoup4"),
        ("yaml", "pyyaml"),
        ("dateutil", "python-dateutil"),
        ("dateutil.parser", "python-dateutil"),
        ("attr", "attrs"),
        ("jwt", "pyjwt"),
        ("serial", "pyserial"),
        ("docx", "python-docx"),
        ("google.cloud.storage", "google-cloud-storage"),
        ("magic", "python-magic"),
        ("dotenv", "python-dotenv"),
        ("Crypto.Cipher.AES", "pycryptodome"),
        ("fitz", "pymupdf"),
        ("skimage", "scikit-image"),
        ("telegram.ext", "python-telegram-bot"),
        ("MySQLdb", "mysqlclient"),
        ("psycopg2", "psycopg2-binary"),
        ("git", "gitpython"),
        ("fastmcp", "fastmcp"),
        ("backports.zoneinfo", "backports-zoneinfo"),
        ("backports.asyncio.runner", "backports-asyncio-runner"),
    ],
)
def test_overridden_imports(module: str, distribution: str) -> None:
    res = SHIPPED.resolve(module)
    assert res is not None
    assert canonicalize_name(res.distribution) == distribution
    assert res.source == "override"
    assert module.startswith(res.module)


def test_namespace_subpackage_resolves_to_longest_prefix() -> None:
    res = SHIPPED.resolve("google.cloud.storage.blob")
    assert res is not None
    assert res.module == "google.cloud.storage"
    assert canonicalize_name(res.distribution) == "google-cloud-storage"


@pytest.mark.parametrize(
    ("module", "distribution"),
    [
        ("requests", "requests"),
        ("numpy", "numpy"),
        ("numpy.linalg", "numpy"),
        ("pandas", "pandas"),
        ("pandas.io.parsers", "pandas"),
        ("matplotlib.pyplot", "matplotlib"),
        ("scipy.optimize", "scipy"),
        ("torch", "torch"),
    ],
)
def test_generated_map_imports(module: str, distribution: str) -> None:
    res = SHIPPED.resolve(module)
    assert res is not None
    assert (canonicalize_name(res.distribution), res.source) == (distribution, "map")
    assert res.reason


@pytest.mark.parametrize(
    ("module", "distribution"),
    [
        ("numpy", "numpy"),
        ("pandas", "pandas"),
        ("requests", "requests"),
        ("yaml", "pyyaml"),
        ("bs4", "beautifulsoup4"),
        ("dateutil", "python-dateutil"),
        ("cv2", "opencv-python-headless"),
        ("sklearn", "scikit-learn"),
        ("PIL", "pillow"),
    ],
)
def test_common_script_imports_resolve(module: str, distribution: str) -> None:
    res = SHIPPED.resolve(module)
    assert res is not None
    assert canonicalize_name(res.distribution) == distribution
    # Whatever an override says, the generated map must agree that the distribution ships the name.
    assert distribution in {canonicalize_name(d) for d in SHIPPED_RAW["modules"][module]}


def test_shared_backports_namespace_is_not_one_project() -> None:
    # backports-tarfile's regular backports/__init__.py makes the map hand it the whole namespace.
    res = SHIPPED.resolve("backports.zoneinfo._common")
    assert res is not None
    assert (res.module, canonicalize_name(res.distribution)) == ("backports.zoneinfo", "backports-zoneinfo")


def test_shipped_map_header_is_consistent() -> None:
    assert SHIPPED_RAW["projects"] == SHIPPED_RAW["mapped"] + len(SHIPPED_RAW["skipped"])
    assert SHIPPED.projects == SHIPPED_RAW["projects"]
    assert SHIPPED.generated == SHIPPED_RAW["generated"]
    if "partial" in SHIPPED_RAW["source"]:
        # A partial map must not vouch for namespace roots it cannot see all of.
        assert "google" not in SHIPPED_RAW["modules"]


@pytest.mark.parametrize(
    "module", ["reqeusts", "totally_made_up_pkg_xyz", "totally_made_up_pkg_xyz.sub", "", "a..b", "1x", "x y"]
)
def test_unvouched_names_do_not_resolve(module: str) -> None:
    # The slopsquatting guard: never fall back to a distribution spelled like the import.
    assert SHIPPED.resolve(module) is None


def test_ranking_covers_top_5000() -> None:
    assert SHIPPED.known_distributions >= 5000
    assert SHIPPED.is_known_distribution("requests")
    assert SHIPPED.is_known_distribution("PyYAML")
    assert SHIPPED.is_known_distribution("Typing_Extensions")
    assert not SHIPPED.is_known_distribution("reqeusts")


@needs_full_map
def test_generated_map_covers_top_5000() -> None:
    assert SHIPPED.projects >= 5000


def test_every_override_has_a_reason_and_a_ranked_distribution() -> None:
    assert len(SHIPPED.overrides) >= 20
    for module, override in SHIPPED.overrides.items():
        assert override.reason.strip(), module
        # An override may not name an obscure project: a typo there would be a self-inflicted squat.
        assert SHIPPED.is_known_distribution(override.distribution), (module, override.distribution)


def test_shipped_map_names_only_ranked_distributions() -> None:
    raw = SHIPPED_RAW
    assert raw["modules"], "the shipped map is empty"
    for module, providers in raw["modules"].items():
        assert providers, module
        for dist in providers:
            assert SHIPPED.is_known_distribution(dist), (module, dist)


def _toy_map() -> ImportMap:
    return ImportMap(
        {
            "google.cloud.storage": ["google-cloud-storage"],
            "google.protobuf": ["protobuf"],
            "yaml": ["pyyaml", "yaml-fork"],
            "empty": [],
        },
        {"cv2": Override("opencv-python-headless", "headless"), "yaml": Override("PyYAML", "pinned")},
        ["pyyaml", "google-cloud-storage", "protobuf", "opencv-python-headless", "yaml-fork"],
    )


def test_resolution_precedence_and_prefixes() -> None:
    toy = _toy_map()
    assert toy.resolve("yaml.constructor") == Resolution("yaml", "PyYAML", "override", "pinned")
    blob = toy.resolve("google.cloud.storage.blob")
    assert blob is not None
    assert (blob.module, blob.distribution, blob.source) == (
        "google.cloud.storage",
        "google-cloud-storage",
        "map",
    )
    assert toy.resolve("google") is None  # a shared namespace names no single distribution
    assert toy.resolve("google.cloud.bigquery") is None
    assert toy.resolve("empty") is None
    assert toy.resolve(" cv2 ") == Resolution("cv2", "opencv-python-headless", "override", "headless")


def test_map_reason_mentions_other_providers() -> None:
    toy = ImportMap({"yaml": ["pyyaml", "yaml-fork"]}, {}, [])
    res = toy.resolve("yaml")
    assert res is not None
    assert res.distribution == "pyyaml"
    assert "yaml-fork" in res.reason


def test_overrides_need_dist_and_reason() -> None:
    with pytest.raises(ValueError):
        parse_overrides('[modules.cv2]\ndist = "opencv-python-headless"\nreason = " "\n')
    with pytest.raises(ValueError):
        parse_overrides('[modules."not valid"]\ndist = "x"\nreason = "y"\n')


# ---------------------------------------------------------------- generator (offline parts)


@pytest.fixture(scope="module")
def gen() -> ModuleType:
    path = Path(__file__).resolve().parents[3] / "scripts" / "gen_import_map.py"
    spec = importlib.util.spec_from_file_location("gen_import_map", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def _zip(members: list[str], comment: bytes = b"") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name in members:
            zf.writestr(name, b"")
        zf.comment = comment
    return buf.getvalue()


def _listing(gen: ModuleType, data: bytes) -> list[str]:
    tail_start = max(0, len(data) - gen.TAIL_BYTES)
    cd = gen.find_central_directory(data[tail_start:], tail_start)
    offset, size = cd.offset, cd.size
    if cd.zip64_eocd_offset is not None:
        offset, size = gen.parse_zip64_eocd(data[cd.zip64_eocd_offset : cd.zip64_eocd_offset + 56])
    names: list[str] = gen.central_directory_names(data[offset : offset + size])
    return names


def test_central_directory_listing(gen: ModuleType) -> None:
    members = ["pkg/__init__.py", "pkg-1.0.dist-info/RECORD"]
    assert _listing(gen, _zip(members)) == members
    # a zip comment that happens to contain the end-of-central-directory signature
    assert _listing(gen, _zip(members, b"PK\x05\x06 decoy " + b"x" * 100)) == members
    # ... or one so close to the end that no real record could follow it
    assert _listing(gen, _zip(members, b"x" * 100 + b"PK\x05\x06 decoy")) == members


@pytest.mark.slow
def test_zip64_central_directory_listing(gen: ModuleType) -> None:
    members = [f"big/f{i}.txt" for i in range(70_000)]  # > 65535 entries forces Zip64 records
    data = _zip(members)
    assert gen.find_central_directory(data[-gen.TAIL_BYTES :], len(data) - gen.TAIL_BYTES).zip64_eocd_offset
    assert _listing(gen, data) == members


def test_import_names_from_wheel_paths(gen: ModuleType) -> None:
    paths = [
        "requests/__init__.py",
        "requests/api.py",
        "six.py",
        "_yaml.cpython-311-x86_64-linux-gnu.so",
        "libbundled.so",
        "numpy.libs/libopenblas.so",
        "google/cloud/storage/__init__.py",
        "google/cloud/storage/blob.py",
        "google/_upb/_message.abi3.so",
        "tests/__init__.py",
        "utils/__init__.py",
        "__init__.py",
        "proj-1.0.data/purelib/purepkg/__init__.py",
        "proj-1.0.data/scripts/tool.py",
        "proj-1.0.dist-info/METADATA",
        "proj-stubs/__init__.pyi",
        "../../bin/tool",
    ]
    assert gen.import_names(paths) == {
        "requests",
        "six",
        "_yaml",
        "google.cloud.storage",
        "google._upb._message",
        "purepkg",
    }


def test_build_modules_orders_by_rank(gen: ModuleType) -> None:
    results = {"b": {"x", "ns.one"}, "a": {"x"}, "c": "no wheel"}
    modules = gen.build_modules(results, ["a", "b", "c"], namespace_roots=True)
    assert modules == {"x": ["a", "b"], "ns.one": ["b"], "ns": ["b"]}


def test_pick_wheel_prefers_pure_then_linux(gen: ModuleType) -> None:
    def f(name: str) -> dict[str, object]:
        return {"filename": name, "packagetype": "bdist_wheel", "url": name, "yanked": False}

    win = f("p-1-cp311-cp311-win_amd64.whl")
    linux = f("p-1-cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64.whl")
    pure = f("p-1-py3-none-any.whl")
    assert gen.pick_wheel([win, linux, pure]) is pure
    assert gen.pick_wheel([win, linux]) is linux
    assert gen.pick_wheel([win]) is win
    assert gen.pick_wheel([{"filename": "p-1.tar.gz", "packagetype": "sdist"}]) is None


def test_pick_local_wheel_newest_final_release_then_tags(gen: ModuleType, tmp_path: Path) -> None:
    from packaging.version import Version

    def c(name: str) -> tuple[Version, Path]:
        return Version(name.split("-")[1]), tmp_path / name

    old_pure, new_win, new_linux, rc = (
        c("p-1.0-py3-none-any.whl"),
        c("p-2.0-cp311-cp311-win_amd64.whl"),
        c("p-2.0-cp311-cp311-manylinux_2_17_x86_64.whl"),
        c("p-3.0rc1-py3-none-any.whl"),
    )
    assert gen.pick_local_wheel([old_pure, new_win, new_linux, rc]) == new_linux[1]  # newest beats py3-none-any
    assert gen.pick_local_wheel([old_pure, new_win]) == new_win[1]
    assert gen.pick_local_wheel([rc]) == rc[1]  # a pre-release only when nothing else is there
    assert gen.pick_local_wheel([]) is None


def _wheel(path: Path, members: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(_zip(members, comment=b"built by test_importmap"))
    return path


def _dist_info(site: Path, name: str, record: list[str]) -> None:
    info = site / f"{name}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "RECORD").write_text("".join(f"{r},,\n" for r in record))


def test_from_wheels_mode(gen: ModuleType, tmp_path: Path) -> None:
    tsv = tmp_path / "ranking.tsv"
    tsv.write_text(
        "name\tversion\tmonth\trank_among_15000_most_downloaded\tsummary\n"
        "gamma\t1\t2026-01\t3\tinstalled only\nalpha\t2\t2026-01\t1\ta\nBeta\t1\t2026-01\t2\tb\n"
        "delta\t1\t2026-01\t4\tnowhere\nunranked\t1\t2026-01\t\tz\n"
    )
    alpha = _wheel(
        tmp_path / "mirror-a" / "alpha-2.0-py3-none-any.whl",
        ["alpha/__init__.py", "alpha/core.py", "shared.py", "alpha-2.0.dist-info/RECORD"],
    )
    _wheel(tmp_path / "mirror-a" / "alpha-1.0-py3-none-any.whl", ["alpha_old/__init__.py"])
    _wheel(
        tmp_path / "mirror-b" / "files" / "beta-0.1-py3-none-any.whl",
        ["beta.py", "shared.py", "ns/sub/__init__.py", "tests/__init__.py"],
    )
    # The same code path as the crawler's range reads, over the local file.
    assert gen.local_wheel_listing(alpha) == zipfile.ZipFile(alpha).namelist()

    out = tmp_path / "out"
    mirrors = [str(tmp_path / "mirror-a"), str(tmp_path / "mirror-b")]
    assert gen.main(["--tsv", str(tsv), "--top", "4", "--out-dir", str(out), "--from-wheels", *mirrors]) == 0
    doc = json.loads((out / "import_map.json").read_text())
    assert doc["modules"] == {
        "alpha": ["alpha"],
        "shared": ["alpha", "Beta"],
        "beta": ["Beta"],
        "ns.sub": ["Beta"],  # no "ns" root: a partial map cannot know who else ships ns
    }
    assert doc["skipped"] == {"gamma": "no local wheel", "delta": "no local wheel"}
    assert (doc["projects"], doc["mapped"]) == (4, 2)
    assert "local wheel" in doc["source"] and "partial" in doc["source"] and mirrors[1] in doc["source"]
    assert doc["generated"] == dt.date.today().isoformat()

    # Combined with --from-installed: local wheels win, installed RECORDs fill the gaps.
    site = tmp_path / "site"
    _dist_info(site, "alpha", ["alpha_installed/__init__.py"])
    _dist_info(site, "gamma", ["gamma/__init__.py", "../../bin/gamma"])
    argv = ["--tsv", str(tsv), "--top", "4", "--out-dir", str(out), "--from-wheels", *mirrors]
    assert gen.main([*argv, "--from-installed", str(site)]) == 0
    doc = json.loads((out / "import_map.json").read_text())
    assert doc["modules"]["alpha"] == ["alpha"] and "alpha_installed" not in doc["modules"]
    assert doc["modules"]["gamma"] == ["gamma"]
    assert doc["skipped"] == {"delta": "no local wheel"}
    assert "RECORD" in doc["source"] and str(site) in doc["source"]
