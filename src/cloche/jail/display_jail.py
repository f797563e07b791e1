"""In-jail: a virtual X display (Xvfb) of one run's own, for programs whose imports need one (pyautogui, pynput, ...).

Runs under the jail's own ``/usr/bin/python3`` (stdlib only, Python 3.8+; keep it that way)::

    python3 -I -c "$(cat display_jail.py)" -- COMMAND [ARGS...]

Starts Xvfb on display ``:99``, reachable only through the socket ``/tmp/.X11-unix/X99`` in the jail's private
``/tmp`` (no TCP), waits for that socket, then executes COMMAND with ``DISPLAY=:99``. Xvfb lives in the run's PID
namespace and cgroup, so it ends with the run, and no other sandbox (another jail, another ``/tmp``) can reach it.
The install jail's import check imports ``start`` from here for the same display while it checks imports.
"""

import os
import subprocess
import sys
import tempfile
import time

XVFB = "/usr/bin/Xvfb"
NUMBER = 99
SOCKET = f"/tmp/.X11-unix/X{NUMBER}"
READY_SECONDS = 15.0


class DisplayUnavailable(Exception):
    pass


def start() -> "subprocess.Popen[bytes]":
    """Xvfb, running, its socket in place; ``os.environ["DISPLAY"]`` set to it."""
    if not os.access(XVFB, os.X_OK):
        raise DisplayUnavailable("this server has no virtual display: Xvfb is not installed (Debian package xvfb)")
    os.makedirs("/tmp/.X11-unix", mode=0o1777, exist_ok=True)
    argv = [XVFB, f":{NUMBER}", "-nolisten", "tcp", "-screen", "0", "1280x1024x24"]
    with tempfile.TemporaryFile() as log:  # Xvfb's own messages: the reason when it does not start
        server = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        deadline = time.monotonic() + READY_SECONDS
        while not os.path.exists(SOCKET):
            if server.poll() is not None or time.monotonic() > deadline:
                server.kill()
                log.seek(0)
                tail = log.read()[-600:].decode(errors="replace").strip()
                raise DisplayUnavailable(f"the virtual display (Xvfb) did not start: {tail or 'no socket in time'}")
            time.sleep(0.02)
    os.environ["DISPLAY"] = f":{NUMBER}"
    # No cookie: only this jail reaches the socket. python-xlib still wants the (empty) authority file to exist.
    authority = os.environ.setdefault("XAUTHORITY", "/tmp/.Xauthority")
    open(authority, "ab").close()
    return server


def main() -> None:
    command = sys.argv[sys.argv.index("--") + 1 :]
    try:
        start()
    except DisplayUnavailable as exc:
        sys.stderr.write(f"cloche: {exc}\n")
        sys.exit(125)
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
