"""Imports that need an X display at import time (pyautogui): the environment is marked at install, each of its runs
gets a virtual display of its own in its jail; other runs get none and cannot reach it (marked network)."""

from __future__ import annotations

import time

import pytest

from cloche import Client

pytestmark = pytest.mark.network

PROBE = """
import os, socket
def probe():
    found = []
    for address in ("\\0/tmp/.X11-unix/X99", "/tmp/.X11-unix/X99"):  # abstract, then the path Xvfb listens on
        s = socket.socket(socket.AF_UNIX)
        try:
            s.connect(address)
            found.append("connected")
        except OSError:
            found.append("refused")
    xvfb = [p for p in os.listdir("/proc") if p.isdigit() and b"Xvfb" in open(f"/proc/{p}/cmdline", "rb").read()]
    print("DISPLAY", os.environ.get("DISPLAY"), "sockets", *found, "xvfb", bool(xvfb), flush=True)
probe()
"""

GUI = "import pyautogui\nprint('size', tuple(pyautogui.size()))\n" + PROBE


@pytest.mark.timeout(900)
def test_an_import_that_needs_a_display_runs_first_time_and_no_other_sandbox_sees_the_display(
    client: Client, isolation: str
) -> None:
    with client.create(isolation=isolation) as gui, client.create(isolation=isolation) as other:
        gui.write("main.py", GUI)
        result = gui.exec(filename="main.py", timeout_seconds=600)
        assert result.status == "succeeded", result.output
        assert "size (1280, 1024)" in result.output and "DISPLAY :99 sockets" in result.output
        assert "xvfb True" in result.output
        install = result.install
        assert install is not None, result
        if isolation == "bwrap":  # the first tier builds it; the next reuses it from the store, mark included
            assert install.verified is True, install
            steps = [(s.action, s.outcome) for s in install.recovery if s.module == "pyautogui"]
            assert steps == [("display", "fixed")]

        # While a run of the first sandbox holds its display, the other sandbox's run finds none.
        gui.write("hold.py", GUI + "import time\nprint('up', flush=True)\ntime.sleep(600)\n")
        holder = gui.start(filename="hold.py")
        deadline = time.monotonic() + 300
        while "up" not in (logs := holder.logs().output):
            assert time.monotonic() < deadline and holder.refresh().status == "running", logs
            time.sleep(0.5)
        assert "sockets connected connected xvfb True" in logs
        other.write("probe.py", PROBE)
        seen = other.exec(filename="probe.py", timeout_seconds=120)
        assert seen.status == "succeeded", seen.output
        assert "DISPLAY None sockets refused refused xvfb False" in seen.output
        holder.stop()
