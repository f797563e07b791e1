"""What changed between two component lists (two runs, two locks): added, removed, upgraded, relicensed.

Components are matched on (ecosystem, name): the ecosystem is the purl type ("pypi", "npm", "maven", ...),
the name is the purl's namespace/name with PyPI names PEP 503-normalised ("Typing_Extensions" matches
"typing-extensions"). Without a parseable purl the ecosystem is "unknown" and the name the component's own.
If one list names the same package twice, the last entry wins.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from packageurl import PackageURL
from packaging.utils import canonicalize_name

from cloche.ecosystems.base import Component

ComponentLike = Component | Mapping[str, Any]


def _fields(c: ComponentLike) -> dict[str, Any]:
    return c.to_dict() if isinstance(c, Component) else dict(c)


def component_key(c: ComponentLike) -> tuple[str, str]:
    """(ecosystem, normalised name) identifying ``c`` across versions."""
    d = _fields(c)
    try:
        purl = PackageURL.from_string(d.get("purl") or "")
    except ValueError:
        return "unknown", str(d.get("name", ""))
    name = f"{purl.namespace}/{purl.name}" if purl.namespace else purl.name
    if purl.type == "pypi":
        name = canonicalize_name(name)
    return purl.type, name


def _index(components: Sequence[ComponentLike]) -> dict[tuple[str, str], dict[str, Any]]:
    return {component_key(c): _fields(c) for c in components}


def _summary(key: tuple[str, str], d: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "ecosystem": key[0],
        "name": d.get("name"),
        "version": d.get("version"),
        "purl": d.get("purl"),
        "license": d.get("license"),
    }


def diff_components(old: Sequence[ComponentLike], new: Sequence[ComponentLike]) -> dict[str, list[dict[str, Any]]]:
    """Differences from ``old`` to ``new`` (Components or their ``to_dict()`` form), each list sorted by key::

    added            [{ecosystem, name, version, purl, license}]
    removed          [{ecosystem, name, version, purl, license}]
    changed          [{ecosystem, name, from_version, to_version}]
    license_changed  [{ecosystem, name, from, to}]     (a package may be in both changed and license_changed)
    """
    before, after = _index(old), _index(new)
    out: dict[str, list[dict[str, Any]]] = {"added": [], "removed": [], "changed": [], "license_changed": []}
    for key in sorted(after.keys() - before.keys()):
        out["added"].append(_summary(key, after[key]))
    for key in sorted(before.keys() - after.keys()):
        out["removed"].append(_summary(key, before[key]))
    for key in sorted(before.keys() & after.keys()):
        a, b = before[key], after[key]
        name = b.get("name")
        if a.get("version") != b.get("version"):
            out["changed"].append(
                {"ecosystem": key[0], "name": name, "from_version": a.get("version"), "to_version": b.get("version")}
            )
        if (a.get("license") or None) != (b.get("license") or None):
            out["license_changed"].append(
                {"ecosystem": key[0], "name": name, "from": a.get("license"), "to": b.get("license")}
            )
    return out
