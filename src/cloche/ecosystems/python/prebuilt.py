"""Prebuilt substitutes: a lock that pins a project publishing only a source archive (dlib) is locked again with
the reviewed substitute that ships the same module as wheels (dlib-bin) in its place.

Such a project is built from source in the install jail: dlib's C++ build takes ten minutes or more, past any
client's patience, and psycopg2's needs headers the jail does not have. The substitutes are reviewed data
(``[prebuilt]`` in data/overrides.toml), never guessed: nothing outside that table is ever put in a project's place.
A substitution is made only when

- the substitute's wheel is seen to ship the module (its zip listing, read with the long-tail layer's cached PyPI
  client; skipped when PyPI is not asked, e.g. a local wheel folder: the import check after install still runs);
- the relock with ``uv pip compile --override`` (``dlib ; sys_platform == 'never'`` drops dlib from every
  dependency list, including face_recognition's) succeeds; otherwise the original lock stands.

The lock records each substitution in a comment line, so the install report's recovery steps can say what was put
in whose place and why (``steps``), and the environment's key covers it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from cloche.ecosystems.base import ImportFailure, RecoveryStep
from cloche.ecosystems.python.importmap import Prebuilt
from cloche.ecosystems.python.lockfile import parse_lock
from cloche.ecosystems.python.resolve.pypi_json import PypiJson, PypiUnavailable
from cloche.ecosystems.python.resolve.wheel_files import provides

NOTE = "# cloche prebuilt substitute: "
# A marker no platform satisfies: as an override it removes the project from every requirement that names it.
NEVER = "sys_platform == 'never'"


def pinned(lock_text: str, table: Mapping[str, Prebuilt]) -> list[Prebuilt]:
    """The table's source-only projects that ``lock_text`` pins, in lock order."""
    return [table[key] for name, _, _ in parse_lock(lock_text) if (key := canonicalize_name(name)) in table]


def ships_module(pypi: PypiJson | None, entry: Prebuilt) -> str | None:
    """Why the substitute cannot be used, or None. Without a PyPI client the check after install decides."""
    if pypi is None:
        return None
    try:
        facts = pypi.project(entry.distribution)
        if not facts.found or facts.wheel_url is None:
            return f"PyPI shows no wheel of {entry.distribution}"
        if not provides(pypi.wheel_modules(facts.wheel_url), entry.module):
            return f"{facts.wheel_filename} does not ship {entry.module}"
    except PypiUnavailable:
        return None  # not known either way: the import check after install decides
    return None


def _name(requirement: str) -> str | None:
    try:
        return canonicalize_name(Requirement(requirement.split(" --hash=")[0]).name)
    except InvalidRequirement:
        return None


def requirements(requested: Sequence[str], entries: Iterable[Prebuilt]) -> tuple[list[str], str]:
    """The requirements with each substitute in its project's place (a version the user declared for the project
    carried over: dlib==19.24.2 -> dlib-bin==19.24.2), and the overrides file that drops the projects."""
    out = list(requested)
    overrides = []
    for entry in entries:
        specifiers = [str(Requirement(r.split(" --hash=")[0]).specifier) for r in out if _name(r) == entry.project]
        out = [r for r in out if _name(r) != entry.project]
        out.append(entry.distribution + ",".join(s for s in specifiers if s))
        overrides.append(f"{entry.project} ; {NEVER}")
    return out, "".join(f"{line}\n" for line in overrides)


def annotate(lock_text: str, entries: Iterable[Prebuilt]) -> str:
    """The lock with a comment line per substitution (pip and uv ignore comments)."""
    notes = [NOTE + json.dumps([e.project, e.distribution, e.module, e.reason]) for e in entries]
    return "".join(f"{n}\n" for n in notes) + lock_text


def steps(lock_text: str, failures: Sequence[ImportFailure]) -> tuple[RecoveryStep, ...]:
    """The install report's account of the lock's substitutions: ``fixed`` unless an import still fails on the
    substitute's module."""
    pins = {canonicalize_name(name): version for name, version, _ in parse_lock(lock_text)}
    out = []
    for line in lock_text.splitlines():
        if not line.startswith(NOTE):
            continue
        project, dist, module, reason = json.loads(line[len(NOTE) :])
        broken = any(f.module.split(".")[0] == module or f"'{module}'" in f.error for f in failures)
        version = pins.get(canonicalize_name(dist))
        out.append(
            RecoveryStep(
                "prebuilt",
                module,
                f"{dist}=={version}" if version else dist,
                "failed" if broken else "fixed",
                f"{dist} installed in place of {project}: {reason}",
            )
        )
    return tuple(out)
