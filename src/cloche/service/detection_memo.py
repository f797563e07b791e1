"""The last detection per (sandbox, ecosystem, entry), reused while the workspace's stat signature is unchanged: an
unchanged workspace needs no re-scan, which for a large project costs more than the rest of an exec."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

from cloche.ecosystems.base import Detection, Ecosystem
from cloche.errors import ClocheError
from cloche.store.tree_hash import workspace_signature

MEMO_SIZE = 256


class DetectionMemo:
    def __init__(self, size: int = MEMO_SIZE) -> None:
        self.size = size
        self._known: OrderedDict[tuple[str, str, str], tuple[str, Detection]] = OrderedDict()

    def detect(
        self, sandbox_id: str, ecosystem: Ecosystem, root: Path, entry: str, code: str | None = None
    ) -> Detection:
        """What ``entry`` needs (``code``: given on a command line, detected as a file at ``entry``)."""

        def detect() -> Detection:
            found = ecosystem.detect(root, entry) if code is None else ecosystem.detect_code(root, entry, code)
            assert found is not None  # only an ecosystem that reads command-line code is given any
            return found

        try:
            tree = workspace_signature(root)
        except ClocheError:  # too large to walk: detect without a memo
            return detect()
        memo_key = (sandbox_id, ecosystem.name, entry)  # a code entry's name holds its hash
        known = self._known.pop(memo_key, None)
        detection = known[1] if known is not None and known[0] == tree else detect()
        self._known[memo_key] = (tree, detection)
        while len(self._known) > self.size:
            self._known.popitem(last=False)
        return detection
