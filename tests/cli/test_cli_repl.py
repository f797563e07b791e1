"""``cloche repl`` against a real server: cells piped in keep their variables, pictures become files."""

from __future__ import annotations

import base64
import struct
import subprocess
import zlib
from pathlib import Path

import pytest
from test_cli_live import CLI, env_for

from conftest import ServerProcess

pytestmark = pytest.mark.network  # the kernel tools come from the real PyPI


def tiny_png() -> bytes:
    """A real 2x2 grey PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    pixels = zlib.compress(b"\x00\x80\x80" * 2)
    header = struct.pack(">IIBBBBB", 2, 2, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")


def test_repl_keeps_variables_and_saves_pictures(server: ServerProcess, tmp_path: Path) -> None:
    picture = base64.b64encode(tiny_png()).decode()
    cells = [
        "x = 41",
        "x += 1",
        "x",
        "for i in range(2):",
        "    print(i)",
        "",
        f"display({{'image/png': '{picture}', 'text/plain': 'a picture'}}, raw=True)",
        "1/0",
    ]
    done = subprocess.run(
        [*CLI, "repl"],
        input="\n".join(cells) + "\n",
        env=env_for(server),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 1, done.stderr  # the last cell failed
    saved = tmp_path / "cloche-images" / "cell5-1.png"
    assert done.stdout == f"Out: 42\n0\n1\n[image saved to {saved.relative_to(tmp_path)}]\n", done.stdout
    assert saved.read_bytes() == tiny_png()
    assert "ZeroDivisionError" in done.stderr and "deleted when the session ends" in done.stderr
