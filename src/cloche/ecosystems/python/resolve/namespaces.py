"""Layer 2: namespace rules. ``google.cloud.storage`` is google-cloud-storage, ``azure.storage.blob`` is
azure-storage-blob, ``opentelemetry.sdk`` is opentelemetry-sdk: under a namespace root that several ranked
projects share, the dotted name spelled with dashes names the project.

The spelling is compared without separators (``google.cloud.secretmanager`` is google-cloud-secret-manager) and a
last segment's API version is dropped (``google.cloud.language_v1`` is google-cloud-language). The derived name is
never invented: it must be a ranked project that the data shows shipping the root (or shows nothing for, as for
namespace-only wheels pigar's index leaves empty), and not itself a namespace level (google-cloud, azure-mgmt:
the first words of several ranked projects' names, for which the data lists no module).
"""

from __future__ import annotations

import re

from packaging.utils import canonicalize_name

from cloche.ecosystems.python.importmap import ImportMap
from cloche.ecosystems.python.resolve.answer import Resolution

# language_v1, translate_v2, vision_v1p3beta1, bigquery_storage_v1beta2: a versioned API module of one project
_API_VERSION = re.compile(r"_v\d+(?:(?:p|alpha|beta)\d*)*$")


def _squash(name: str) -> str:
    return re.sub(r"[-_.]+", "", name).lower()


class NamespaceRules:
    def __init__(self, data: ImportMap) -> None:
        self.data = data
        self._under: dict[str, dict[str, str]] = {}

    def _projects_under(self, root: str) -> dict[str, str]:
        """squashed name -> ranked project, for the ranked projects named '<root>-...'."""
        if root not in self._under:
            head = canonicalize_name(root) + "-"
            self._under[root] = {_squash(n): n for n in self.data.ranked_names if n.startswith(head)}
        return self._under[root]

    def _level(self, project: str, root: str) -> bool:
        """A namespace level (google-cloud): the first words of several ranked projects, shipping nothing itself."""
        head = project + "-"
        several = sum(n.startswith(head) for n in self._projects_under(root).values()) >= 2
        return several and not self.data.ships_anything(project)

    def at(self, prefix: str) -> Resolution | None:
        root, _, rest = prefix.partition(".")
        if not rest or root not in self.data.namespaces:
            return None
        under = self._projects_under(root)
        derived = under.get(_squash(prefix)) or under.get(_squash(_API_VERSION.sub("", prefix)))
        if derived is None or self._level(derived, root):
            return None
        ships_root = any(canonicalize_name(d) == derived for d in self.data.providers(root))
        if not ships_root and self.data.ships_anything(derived):
            return None  # the data lists this project's modules, and the namespace is not among them
        return Resolution(
            prefix,
            derived,
            "namespace",
            f"{root} is a namespace shared by many projects; {prefix} is spelled as the ranked project {derived} "
            f"(download rank {self.data.rank(derived)})",
        )
