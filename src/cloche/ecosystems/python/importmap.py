"""The shipped import data the resolver's layers read (``data/``, see ``scripts/gen_import_map.py``).

* ``overrides.toml``: import -> project, reviewed by a person, each with a one-line reason (the only hand-edited
  file), the runtime needs packages import without declaring them, and the prebuilt substitutes for projects that
  publish only a source archive;
* ``import_map.json``: import -> the ranked projects that ship it, best download rank first; the shared namespace
  roots; the named sources it was generated from;
* ``top_pypi.txt``: the ranked projects (the most downloaded on PyPI);
* ``long_tail.txt.gz``: import -> projects outside the ranking that ship it, candidates only (the long-tail layer
  checks each with PyPI before vouching), read lazily and searched without being parsed whole.

Nothing here decides; ``resolve/`` does. No network.
"""

from __future__ import annotations

import functools
import gzip
import json
import threading
import tomllib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from typing import Any

from packaging.utils import canonicalize_name

_DATA_PACKAGE = "cloche.ecosystems.python"


@dataclass(frozen=True, slots=True)
class Override:
    distribution: str
    reason: str


@dataclass(frozen=True, slots=True)
class Prebuilt:
    """A reviewed substitute for a project that publishes only a source archive (``[prebuilt]`` in
    overrides.toml): ``distribution`` ships ``module``, the project's own module, as wheels."""

    project: str  # PEP 503 name of the source-only project
    distribution: str
    module: str
    reason: str


def prefixes(module: str) -> Iterator[str]:
    """'a.b.c' -> 'a.b.c', 'a.b', 'a': the longest (most specific) claim wins."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        yield ".".join(parts[:end])


def valid_module(module: str) -> bool:
    return bool(module) and all(part.isidentifier() for part in module.split("."))


class LongTail:
    """Candidates outside the ranking, from the gzip'd sorted lines ``module[<TAB>name ...]`` (``=`` or no
    names: the project named like the module). Decompressed on first use and kept as bytes."""

    def __init__(self, load: Any) -> None:
        self._load = load
        self._text: bytes | None = None
        self._lock = threading.Lock()

    def _data(self) -> bytes:
        with self._lock:
            if self._text is None:
                self._text = b"\n" + gzip.decompress(self._load())
            return self._text

    def candidates(self, module: str) -> tuple[str, ...]:
        """Projects the index says ship ``module`` exactly, the one named like it first."""
        data = self._data()
        key = b"\n" + module.encode()
        for end in (b"\n", b"\t"):
            at = data.find(key + end)
            if at < 0:
                continue
            if end == b"\n":
                return (module,)
            line_end = data.find(b"\n", at + 1)
            names = data[at + len(key) + 1 : line_end].decode().split(" ")
            return tuple(module if n == "=" else n for n in names)
        return ()


class ImportMap:
    """The shipped data: overrides, the generated map, its namespace roots, the ranking and the long tail."""

    def __init__(
        self,
        modules: Mapping[str, Sequence[str]],
        overrides: Mapping[str, Override],
        ranking: Iterable[str],
        *,
        namespaces: Iterable[str] = (),
        python2: Mapping[str, str] | None = None,
        runtime_needs: Mapping[str, Override] | None = None,
        prebuilt: Mapping[str, Prebuilt] | None = None,
        long_tail: LongTail | None = None,
        header: Mapping[str, Any] | None = None,
    ) -> None:
        self._modules = {name: tuple(dists) for name, dists in modules.items() if dists}
        self._overrides = dict(overrides)
        self.runtime_needs: Mapping[str, Override] = dict(runtime_needs or {})
        self.prebuilt: Mapping[str, Prebuilt] = dict(prebuilt or {})  # by the source-only project's PEP 503 name
        self.prebuilt_modules: Mapping[str, Prebuilt] = {p.module: p for p in self.prebuilt.values()}
        self._rank = {canonicalize_name(name): i for i, name in enumerate(ranking, 1)}
        self._mapped = frozenset(canonicalize_name(d) for dists in self._modules.values() for d in dists)
        self.namespaces = frozenset(namespaces)
        # Python 2 standard-library name -> where Python 3 keeps it (urllib2 -> urllib.request, urllib.error)
        self.python2: Mapping[str, str] = dict(python2 or {})
        self.long_tail = long_tail
        self.header = dict(header or {})

    @classmethod
    def load(cls) -> ImportMap:
        """The data shipped with cloche; parsed once per process."""
        return _load_once()

    @classmethod
    def from_data(
        cls, import_map: Mapping[str, Any], overrides_toml: str, ranking_text: str, long_tail: LongTail | None = None
    ) -> ImportMap:
        """Build from the contents of the data files (see ``data/``)."""
        header = {k: v for k, v in import_map.items() if k not in ("modules", "unmapped", "python2")}
        return cls(
            import_map.get("modules", {}),
            parse_overrides(overrides_toml),
            parse_ranking(ranking_text),
            namespaces=import_map.get("namespaces", ()),
            python2=import_map.get("python2", {}),
            runtime_needs=parse_overrides(overrides_toml, table="runtime_needs"),
            prebuilt=parse_prebuilt(overrides_toml),
            long_tail=long_tail,
            header=header,
        )

    @property
    def overrides(self) -> Mapping[str, Override]:
        return self._overrides

    @property
    def modules(self) -> Mapping[str, tuple[str, ...]]:
        return self._modules

    @property
    def projects(self) -> int:
        return int(self.header.get("projects", 0))

    @property
    def known_distributions(self) -> int:
        return len(self._rank)

    def providers(self, module: str) -> tuple[str, ...]:
        """Ranked projects whose files ship exactly ``module``, best download rank first."""
        return self._modules.get(module, ())

    @property
    def ranked_names(self) -> Iterable[str]:
        """Every ranked project's PEP 503 name, best first."""
        return self._rank.keys()

    def rank(self, name: str) -> int | None:
        """Download rank of a project (any PEP 503 spelling), None when it is not ranked."""
        return self._rank.get(canonicalize_name(name.strip()))

    def ships_anything(self, name: str) -> bool:
        """Whether the generated map lists any module for a ranked project (many namespace-only wheels have none)."""
        return canonicalize_name(name) in self._mapped

    def is_known_distribution(self, name: str) -> bool:
        """Whether ``name`` (any PEP 503 spelling) is among the ranked, most downloaded projects."""
        return self.rank(name) is not None

    def shared_namespace(self, root: str) -> bool:
        """A namespace no single project owns: several ranked '<root>-...' projects ship it and none is named
        like it (``google``, ``azure``, ``opentelemetry``): the root alone says nothing about what to install."""
        if root not in self.namespaces:
            return False
        own = canonicalize_name(root)
        return all(canonicalize_name(d) != own for d in self.providers(root))


def parse_overrides(text: str, table: str = "modules") -> dict[str, Override]:
    """``[<table>."<import>"] dist = ... reason = ...`` entries (``modules``: reviewed overrides, ``runtime_needs``:
    what packages import without declaring it); malformed entries are errors."""
    entries = tomllib.loads(text).get(table, {})
    result: dict[str, Override] = {}
    for module, entry in entries.items():
        dist, reason = entry.get("dist"), entry.get("reason")
        if not (isinstance(dist, str) and dist.strip() and isinstance(reason, str) and reason.strip()):
            raise ValueError(f"override {module!r} needs a non-empty dist and reason")
        if not valid_module(module):
            raise ValueError(f"override key {module!r} is not a dotted import name")
        result[module] = Override(dist.strip(), reason.strip())
    return result


def parse_prebuilt(text: str) -> dict[str, Prebuilt]:
    """``[prebuilt.<project>] dist = ... module = ... reason = ...``: substitutes for source-only projects."""
    result: dict[str, Prebuilt] = {}
    for project, entry in tomllib.loads(text).get("prebuilt", {}).items():
        fields = [entry.get(k) for k in ("dist", "module", "reason")]
        if not all(isinstance(f, str) and f.strip() for f in fields):
            raise ValueError(f"prebuilt {project!r} needs a non-empty dist, module and reason")
        dist, module, reason = (str(f).strip() for f in fields)
        if not valid_module(module):
            raise ValueError(f"prebuilt {project!r}: {module!r} is not a dotted import name")
        if canonicalize_name(dist) == canonicalize_name(project):
            raise ValueError(f"prebuilt {project!r} names itself as its substitute")
        result[canonicalize_name(project)] = Prebuilt(canonicalize_name(project), dist, module, reason)
    return result


def parse_ranking(text: str) -> list[str]:
    """Names from ``rank<TAB>name`` lines, best first; '#' lines are comments."""
    names: list[str] = []
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            names.append(line.split("\t")[-1].strip())
    return names


def read_packaged() -> ImportMap:
    """Parse the data shipped with cloche (``ImportMap.load`` keeps one copy per process)."""
    data = resources.files(_DATA_PACKAGE).joinpath("data")
    return ImportMap.from_data(
        json.loads(data.joinpath("import_map.json").read_text(encoding="utf-8")),
        data.joinpath("overrides.toml").read_text(encoding="utf-8"),
        data.joinpath("top_pypi.txt").read_text(encoding="utf-8"),
        LongTail(data.joinpath("long_tail.txt.gz").read_bytes),
    )


_load_once = functools.cache(read_packaged)
