"""The last detection per (sandbox, ecosystem, entry), reused while the workspace's stat signature is unchanged: an
unchanged workspace needs no re-scan, which for a large project costs more than the rest of an exec."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from pathlib import Path

from cloche.ecosystems.base import Detection, Ecosystem
from cloche.errors import ClocheError
from cloche.store.tree_hash import workspace_signature

MEMO_SIZE = 256
# A workspace of at most this many files is checked on the caller's thread: its walk costs less than the hop to a
# worker thread and back (milliseconds on a busy host, the largest step of a warm hello world).
SMALL_WORKSPACE = 64


class DetectionMemo:
    def __init__(self, size: int = MEMO_SIZE) -> None:
        self.size = size
        # (sandbox, ecosystem, entry) -> (workspace signature, its number of files, the detection)
        self._known: OrderedDict[tuple[str, str, str], tuple[str, int, Detection]] = OrderedDict()

    async def find(
        self, sandbox_id: str, ecosystem: Ecosystem, root: Path, entry: str, code: str | None = None
    ) -> Detection:
        """The memo's answer for a small unchanged workspace at once, else ``detect`` in a worker thread."""
        if code is None and (known := self.known(sandbox_id, ecosystem, root, entry)) is not None:
            return known
        return await asyncio.to_thread(self.detect, sandbox_id, ecosystem, root, entry, code)

    def known(self, sandbox_id: str, ecosystem: Ecosystem, root: Path, entry: str) -> Detection | None:
        """The memo's detection when the workspace was small and is unchanged, checked on the caller's thread;
        None: ask ``detect`` (in a worker thread)."""
        memo_key = (sandbox_id, ecosystem.name, entry)
        known = self._known.get(memo_key)
        if known is None or known[1] > SMALL_WORKSPACE:
            return None
        try:
            tree, _ = workspace_signature(root)
        except ClocheError:
            return None
        if tree != known[0]:
            return None
        self._known.move_to_end(memo_key)
        return known[2]

    def detect(
        self, sandbox_id: str, ecosystem: Ecosystem, root: Path, entry: str, code: str | None = None
    ) -> Detection:
        """What ``entry`` needs (``code``: given on a command line, detected as a file at ``entry``)."""

        def detect() -> Detection:
            found = ecosystem.detect(root, entry) if code is None else ecosystem.detect_code(root, entry, code)
            assert found is not None  # only an ecosystem that reads command-line code is given any
            return found

        try:
            tree, files = workspace_signature(root)
        except ClocheError:  # too large to walk: detect without a memo
            return detect()
        memo_key = (sandbox_id, ecosystem.name, entry)  # a code entry's name holds its hash
        known = self._known.pop(memo_key, None)
        detection = known[2] if known is not None and known[0] == tree else detect()
        self._known[memo_key] = (tree, files, detection)
        while len(self._known) > self.size:
            self._known.popitem(last=False)
        return detection
