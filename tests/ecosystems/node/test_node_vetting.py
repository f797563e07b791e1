"""Vouching for scanned npm packages and choosing their releases, against a real HTTP registry on 127.0.0.1
(the same fixture folder npm installs from in tests/service/test_node_deps.py)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cloche.ecosystems.node.registry_facts import RegistryFacts, RegistryUnavailable, Release
from cloche.ecosystems.node.release_fit import Usage, misfits
from cloche.ecosystems.node.semver import Version, satisfies
from cloche.ecosystems.node.vetting import SOURCE_POPULAR, SOURCE_REGISTRY, Vetting
from cloche.ecosystems.release_age import MinimumAge

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _npm_registry import publish, serve, standard_registry

NODE = Version(20, 20, 2)


@pytest.mark.parametrize(
    ("version", "range_", "ok"),
    [
        ("20.20.2", ">=18", True),
        ("20.20.2", ">=22", False),
        ("20.20.2", "^18.0.0 || >=20.0.0", True),
        ("20.20.2", "^18.17.0 || ^20.3.0 || >=21.0.0", True),
        ("20.20.2", ">= 14.17", True),
        ("20.20.2", "18.x || 20.x", True),
        ("20.20.2", "18.x || 22.x", False),
        ("20.20.2", ">=18.0.0 <21", True),
        ("20.20.2", ">=18.0.0 <20", False),
        ("20.20.2", "~20.1", False),
        ("20.20.2", "~20.20.0", True),
        ("20.20.2", "16 - 20", True),
        ("20.20.2", "16 - 19.9", False),
        ("20.20.2", "*", True),
        ("20.20.2", "", True),
        ("20.20.2", "^20.19.0 || >=22.12.0", True),
        ("1.5.0-beta.1", "^1.0.0", False),
        ("1.5.0-beta.2", ">=1.5.0-beta.1", True),
        ("0.2.5", "^0.2.3", True),
        ("0.3.0", "^0.2.3", False),
        ("20.20.2", "not a range", False),
    ],
)
def test_npm_ranges(version: str, range_: str, ok: bool) -> None:
    assert satisfies(version, range_) is ok


def _release(**kw: object) -> Release:
    return Release(version="1.0.0", **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("release", "usage", "fits"),
    [
        (_release(), Usage("p", "p", (".",), True), True),
        (_release(module_type="module"), Usage("p", "p", (".",), True), False),
        (_release(module_type="module"), Usage("p", "p", (".",), False), True),
        (
            _release(module_type="module", exports={"import": "./x.js", "require": "./x.cjs"}),
            Usage("p", "p", (".",), True),
            True,
        ),
        (_release(exports={".": {"import": "./x.mjs"}}), Usage("p", "p", (".",), True), False),
        (
            # a dual package: "type": "module" at the root, CommonJS under dist/commonjs (its own package.json)
            _release(
                module_type="module",
                exports={
                    ".": {"import": {"default": "./dist/esm/i.js"}, "require": {"default": "./dist/commonjs/i.js"}}
                },
            ),
            Usage("p", "p", (".",), True),
            True,
        ),
        (_release(exports={".": "./i.js", "./fp": "./fp.js"}), Usage("p", "p/fp", ("./fp",), True), True),
        (_release(exports={".": "./i.js", "./*": "./lib/*.js"}), Usage("p", "p/a/b", ("./a/b",), True), True),
        (
            _release(exports={".": "./i.js", "./*": "./lib/*.js", "./internal/*": None}),
            Usage("p", "p/internal/x", ("./internal/x",), False),
            False,
        ),
        (_release(exports={".": "./i.js"}), Usage("p", "p/v4", ("./v4",), True), False),
        (_release(exports="./i.js"), Usage("p", "p/v4", ("./v4",), False), False),
        (_release(), Usage("p", "p/lib/anything", ("./lib/anything",), True), True),
        (_release(engines_node=">=22"), Usage("p", "p", (".",), False), False),
        (_release(engines_node=">=0.10"), Usage("p", "p", (".",), False), True),
        (_release(engines_node="garbage!"), Usage("p", "p", (".",), False), True),
    ],
)
def test_release_fit(release: Release, usage: Usage, fits: bool) -> None:
    assert (not misfits(release, usage, NODE)) is fits


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = standard_registry(tmp_path_factory.mktemp("npm-registry"))
    with serve(root) as url:
        yield url


def _vetting(url: str, cache: Path | None, popular: frozenset[str] = frozenset()) -> Vetting:
    return Vetting(RegistryFacts(url, cache), lambda: popular, NODE, MinimumAge(90))


def test_established_package_is_vouched_by_registry_facts(registry: str, tmp_path: Path) -> None:
    choices, refusals = _vetting(registry, tmp_path).decide([Usage("old-helper", "old-helper", (".",), True)])
    assert refusals == []
    [choice] = choices
    assert (choice.package, choice.requirement, choice.source) == ("old-helper", "*", SOURCE_REGISTRY)
    assert "3 releases" in choice.reason


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("fresh-helper", "first released 7 days ago"),
        ("one-shot", "too little history"),
        ("zzqx-not-real-42", "has no package named"),
    ],
)
def test_refused(registry: str, tmp_path: Path, name: str, why: str) -> None:
    choices, refusals = _vetting(registry, tmp_path).decide([Usage(name, name, (".",), True)])
    assert choices == []
    [refusal] = refusals
    assert why in refusal.reason
    assert "package.json" in refusal.hint()


def test_a_single_release_that_has_stood_a_year_is_enough(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    publish(root, "finished-util", "1.0.0", age_days=400)
    with serve(root) as url:
        [choice], refusals = _vetting(url, None).decide([Usage("finished-util", "finished-util", (".",), True)])
    assert refusals == [] and choice.source == SOURCE_REGISTRY


def test_deprecated_latest_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    publish(root, "gone-helper", "1.0.0", age_days=900)
    publish(root, "gone-helper", "1.1.0", age_days=800, manifest={"deprecated": "use new-helper instead"})
    with serve(root) as url:
        _, [refusal] = _vetting(url, None).decide([Usage("gone-helper", "gone-helper", (".",), True)])
    assert "deprecated: use new-helper instead" in refusal.reason


def test_popular_names_need_no_history_but_still_fit_the_code(registry: str, tmp_path: Path) -> None:
    vetting = _vetting(registry, tmp_path, frozenset({"fresh-helper", "esm-lib"}))
    choices, refusals = vetting.decide(
        [Usage("fresh-helper", "fresh-helper", (".",), True), Usage("esm-lib", "esm-lib", (".",), False)]
    )
    assert refusals == [] and {(c.package, c.requirement, c.source) for c in choices} == {
        ("fresh-helper", "*", SOURCE_POPULAR),
        ("esm-lib", "*", SOURCE_POPULAR),  # imported from ESM: the ES module release fits
    }


def test_backoff_to_the_newest_release_that_exports_the_subpath(registry: str, tmp_path: Path) -> None:
    [choice], _ = _vetting(registry, tmp_path).decide([Usage("subpath-lib", "subpath-lib/extra", ("./extra",), True)])
    assert choice.requirement == "1.5.0"
    assert choice.backoff == ("2.0.0: does not export './extra' to require",)
    assert "backed off: 2.0.0" in (choice.to_dict()["reason"] or "")


def test_backoff_from_an_es_module_only_release_required_from_commonjs(registry: str, tmp_path: Path) -> None:
    [choice], _ = _vetting(registry, tmp_path).decide([Usage("esm-lib", "esm-lib", (".",), True)])
    assert choice.requirement == "2.1.0"
    assert "ES module only" in choice.backoff[0]


def test_facts_are_cached_and_used_stale_when_the_registry_is_away(tmp_path: Path) -> None:
    root = standard_registry(tmp_path / "registry")
    cache = tmp_path / "facts"
    with serve(root) as url:
        facts = RegistryFacts(url, cache)
        first = facts.packument("old-helper")
        started = time.monotonic()
        assert RegistryFacts(url, cache).packument("old-helper") == first  # a new reader: from the disk cache
        assert time.monotonic() - started < 0.5
    # The server is gone. A fresh name cannot be asked; a cached one is answered, even past its TTL.
    with pytest.raises(RegistryUnavailable):
        RegistryFacts(url, cache).packument("esm-lib")
    for entry in cache.iterdir():
        stored = json.loads(entry.read_text())
        entry.write_text(json.dumps({**stored, "fetched": 0}))  # fetched in 1970: long past its TTL
    assert RegistryFacts(url, cache).packument("old-helper").release_count == 3


def test_registry_unreachable_refuses_off_list_names_and_installs_listed_ones_unchecked() -> None:
    from conftest import free_port

    vetting = _vetting(f"http://127.0.0.1:{free_port()}/", None, frozenset({"listed"}))
    choices, refusals = vetting.decide([Usage("listed", "listed", (".",), True), Usage("other", "other", (".",), True)])
    assert [(c.package, c.requirement) for c in choices] == [("listed", "*")]
    assert "release fit not checked" in choices[0].reason
    assert [r.package for r in refusals] == ["other"] and "could not be asked" in refusals[0].reason


def test_prerelease_only_package_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "registry"
    publish(root, "beta-only", "1.0.0-beta.1", age_days=500)
    publish(root, "beta-only", "1.0.0-beta.2", age_days=400)
    with serve(root) as url:
        _, [refusal] = _vetting(url, None).decide([Usage("beta-only", "beta-only", (".",), True)])
    assert "only prereleases" in refusal.reason
