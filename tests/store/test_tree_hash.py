"""The workspace tree hash recorded with each run: deterministic, and changed by any byte, link or folder."""

from __future__ import annotations

import os
from pathlib import Path

from cloche.store.tree_hash import tree_hash


def test_tree_hash_is_deterministic_and_sensitive(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    (root / "pkg" / "__pycache__").mkdir(parents=True)
    (root / "main.py").write_text("print(1)\n")
    (root / "pkg" / "__pycache__" / "m.pyc").write_bytes(b"\x00")
    (root / "empty").mkdir()
    os.symlink("/etc/passwd", root / "link")
    h = tree_hash(root)
    assert h == tree_hash(root) and len(h) == 64

    (root / "main.py").write_text("print(2)\n")
    h2 = tree_hash(root)
    assert h2 != h
    (root / "link").unlink()
    os.symlink("/etc/hostname", root / "link")  # same name, another target: the text counts, not followed
    h3 = tree_hash(root)
    assert h3 != h2
    (root / "empty").rmdir()
    h4 = tree_hash(root)
    assert h4 != h3
    (root / "pkg" / "__pycache__" / "m.pyc").write_bytes(b"\x01")  # caches are included, on purpose
    assert tree_hash(root) != h4
