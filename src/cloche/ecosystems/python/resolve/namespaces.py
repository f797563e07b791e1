"""Layer 2: namespace rules. ``google.cloud.storage`` is google-cloud-storage, ``azure.storage.blob`` is
azure-storage-blob, ``opentelemetry.sdk`` is opentelemetry-sdk: under a namespace root that several ranked
projects share, the dotted name spelled with dashes names the project.

The derived name is never invented: it must be a ranked project, and one that the data shows shipping the root
(or shows nothing for at all, as for namespace-only wheels pigar's index leaves empty).
"""

from __future__ import annotations

from packaging.utils import canonicalize_name

from cloche.ecosystems.python.importmap import ImportMap
from cloche.ecosystems.python.resolve.answer import Resolution


class NamespaceRules:
    def __init__(self, data: ImportMap) -> None:
        self.data = data

    def at(self, prefix: str) -> Resolution | None:
        root, _, rest = prefix.partition(".")
        if not rest or root not in self.data.namespaces:
            return None
        derived = canonicalize_name(prefix.replace("_", "-"))
        rank = self.data.rank(derived)
        if rank is None:
            return None
        ships_root = any(canonicalize_name(d) == derived for d in self.data.providers(root))
        if not ships_root and self.data.ships_anything(derived):
            return None  # the data lists this project's modules, and the namespace is not among them
        return Resolution(
            prefix,
            derived,
            "namespace",
            f"{root} is a namespace shared by many projects; {prefix} is spelled as the ranked project {derived} "
            f"(download rank {rank})",
        )
