"""What a Go entry needs, decided from the workspace alone.

The module root is the folder of the nearest ``go.mod`` above the entry, or the workspace root when
there is none. Every ``.go`` file below it (not tests, not ``vendor``/``testdata``/dot folders) is
scanned for imports, because the packages an entry builds may live anywhere in its module.

- With ``go.mod``: its requirements are installed; imports no required module provides are reported
  as ``unlisted`` (suggesting the import path for ``go get``), not installed.
- Without: the module is ``sandbox`` and every third-party import path is resolved by ``go mod tidy``.
  Go imports are full module paths (``github.com/owner/repo/pkg``), not short names a model can
  misremember into someone else's package, so they are resolved as written; ``unresolved`` lists any
  the proxy does not know (through the install error).

Standard-library imports count too: the environment carries those packages precompiled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cloche.ecosystems.common import (
    MAX_SOURCE_BYTES,
    detection_fingerprint,
    find_up,
    join,
    read_text,
    sha256_text,
    shown_fields,
    source_files,
)
from cloche.ecosystems.go.gomod import covered, imports, is_standard, parse_gomod
from cloche.errors import ClocheError, Unsupported
from cloche.store import safefs

DETECTION_FORMAT_VERSION = 1
SANDBOX_MODULE = "sandbox"


@dataclass(frozen=True)
class GoDetection:
    source: str  # "go.mod" or "scan"
    module_root: str  # workspace-relative; '' is the workspace root
    module: str
    gomod: str | None = None  # the workspace's go.mod text
    gosum: str | None = None
    requested: tuple[str, ...] = ()
    standard: tuple[str, ...] = ()  # standard-library imports (precompiled into the environment)
    third_party: tuple[str, ...] = ()  # imports the install resolves (the go.mod case: covered ones only)
    unlisted: tuple[dict[str, str | None], ...] = ()
    warnings: tuple[str, ...] = field(default=())

    @property
    def fingerprint(self) -> str:
        inputs = {
            "module_root": self.module_root,
            "go.mod": sha256_text(self.gomod) if self.gomod is not None else None,
            "go.sum": sha256_text(self.gosum) if self.gosum is not None else None,
            "imports": sorted(self.standard + self.third_party),
        }
        return detection_fingerprint(DETECTION_FORMAT_VERSION, self.source, inputs)

    def to_dict(self) -> dict[str, Any]:
        names = ("source", "module_root", "module", "requested", "standard", "third_party", "unlisted", "warnings")
        return shown_fields(self, names)


def _scan(root: Path, module_root: str) -> tuple[set[str], list[str]]:
    found: set[str] = set()
    warnings: list[str] = []
    for rel in source_files(root, module_root, ".go"):
        if rel.endswith("_test.go"):
            continue
        try:
            data = safefs.read_file(root, rel, max_bytes=MAX_SOURCE_BYTES)
        except (ClocheError, OSError) as e:
            warnings.append(f"{rel}: not scanned: {e}")
            continue
        found.update(imports(data.decode("utf-8", errors="replace")))
    return found, warnings


def detect(root: Path, entry: str) -> GoDetection:
    entry = str(safefs.validate_relpath(entry))
    found = find_up(root, entry, ("go.mod",))
    module_root = found[0] if found else ""
    gomod = read_text(root, join(module_root, "go.mod")) if found else None
    parsed = parse_gomod(gomod) if gomod is not None else None
    if parsed is not None and parsed.local_replace:
        raise Unsupported(
            f"{join(module_root, 'go.mod')}: a replace directive points at a local folder; the install jail "
            "sees no workspace, so cloche installs only modules from the module proxy"
        )
    module = (parsed.module if parsed else None) or SANDBOX_MODULE
    all_imports, warnings = _scan(root, module_root)
    local = {p for p in all_imports if p == module or p.startswith(module + "/")}
    standard = tuple(sorted(p for p in all_imports - local if is_standard(p) and p != "C"))
    third = sorted(p for p in all_imports - local if not is_standard(p))
    if parsed is None:
        return GoDetection(
            source="scan",
            module_root=module_root,
            module=module,
            requested=tuple(third),
            standard=standard,
            third_party=tuple(third),
            warnings=tuple(warnings),
        )
    modules = [r.path for r in parsed.requires]
    provided = tuple(p for p in third if covered(p, modules))
    unlisted: tuple[dict[str, str | None], ...] = tuple(
        {"module": p, "suggested": p} for p in third if not covered(p, modules)
    )
    gosum_rel = join(module_root, "go.sum")
    try:
        gosum = read_text(root, gosum_rel) if safefs.lookup(root, gosum_rel) is not None else None
    except (ClocheError, OSError):
        gosum = None
    return GoDetection(
        source="go.mod",
        module_root=module_root,
        module=module,
        gomod=gomod,
        gosum=gosum,
        requested=tuple(f"{r.path}@{r.version}" for r in parsed.requires if not r.indirect),
        standard=standard,
        third_party=provided,
        unlisted=unlisted,
        warnings=tuple(warnings),
    )
