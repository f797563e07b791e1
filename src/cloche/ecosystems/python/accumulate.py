"""A sandbox's Python needs from several sources at once: entry points that ran and packages typed in
``pip install``. Requirement strings are PEP 508 (requirements files may add `` --hash=`` options)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from cloche.ecosystems.base import Accumulates, Detection, Needs
from cloche.ecosystems.common import fingerprint
from cloche.ecosystems.python import manifests
from cloche.ecosystems.python.detect import PythonDetection

# Bump when the meaning of a combined detection changes.
NEEDS_FORMAT_VERSION = 1


class PythonNeeds(Accumulates):
    def needs(self, detection: Detection) -> Needs:
        found = detection.details
        constraints = found.constraints if isinstance(found, PythonDetection) else ()
        return Needs(detection.requested, detection.optional, constraints)

    def combine(self, base: Detection | None, extra: Needs) -> Detection:
        """The union as one detection (source ``sandbox``). The base entry's import path (its src layout) and
        imports stay, so the union's environment is verified against what that entry imports."""
        total = (self.needs(base) if base is not None else Needs()).union(extra)
        required = {package(r) for r in total.requirements}
        optional = tuple(r for r in total.optional if package(r) not in required)
        found = base.details if base is not None and isinstance(base.details, PythonDetection) else None
        details = PythonDetection(
            source=found.source if found is not None else "none",
            requirements=total.requirements,
            optional_requirements=optional,
            constraints=total.constraints,
            sys_path=found.sys_path if found is not None else (),
            imports=found.imports if found is not None else (),
        )
        canonical = {
            "format": NEEDS_FORMAT_VERSION,
            "requirements": sorted(total.requirements),
            "optional": sorted(optional),
            "constraints": sorted(total.constraints),
        }
        return Detection(
            ecosystem="python",
            source="sandbox",
            requested=total.requirements,
            fingerprint=fingerprint(canonical),
            optional=optional,
            sys_path=base.sys_path if base is not None else (),
            details=details,
        )

    def package(self, requirement: str) -> str:
        return package(requirement)

    def declare(self, current: Needs, root: Path, names: Sequence[str], files: Sequence[str], remove: bool) -> Needs:
        """``pip install names -r files`` (or ``pip uninstall names``): one line per distribution, the latest typed
        one winning, as a requirements.txt the user keeps editing."""
        lines = {package(r): r for r in current.requirements}
        constraints = list(current.constraints)
        typed = [manifests.check_requirement(name, f"pip install {name}") for name in names]
        for rel in files:
            found = manifests.parse_requirements(root, rel)
            typed += found.requirements
            constraints += found.constraints
        for requirement in typed:
            lines.pop(package(requirement), None)  # re-inserted last: the newest pin is the one kept
            if not remove:
                lines[package(requirement)] = requirement
        return Needs(tuple(lines.values()), (), tuple(dict.fromkeys(constraints)))


def package(requirement: str) -> str:
    """The canonical distribution name of a requirement string."""
    return canonicalize_name(Requirement(requirement.split(" --hash=")[0]).name)
