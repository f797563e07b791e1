"""The warm interpreter, inside a sandbox's jail: pre-imports packages, then forks one fresh child per exec.

Runs under the jail's own ``/usr/bin/python3`` with the sandbox's environment (stdlib only; keep it that way)::

    python3 zygote_jail.py SOCKET MODULE...

It imports each MODULE it can (third-party packages the detection found, never a workspace module: the
workspace is not on ``sys.path`` here), freezes the heap for the garbage collector, makes itself
non-dumpable (its memory and ``/proc`` files are closed to the runs it forks) and serves one request at a
time on the unix SOCKET, which only the server connects to:

1. The server connects; the zygote forks a child at once, ahead of the run (the server does this right after
   the previous run ended, so the fork and the cgroup move are off the next request's path). The child sends
   its credentials (SCM_CREDENTIALS: the kernel gives the server its host pid) and waits; the server moves it
   into the run's own cgroup before it sends anything.
2. The server sends one JSON line ``{"argv": [script, args...], "env": {...}, "cwd": "..."}`` with the run's
   stdin, stdout and stderr as SCM_RIGHTS on it. End of file instead: the child was not needed, it exits.
3. If the script's folder holds a module of the same name as one imported here, a cold interpreter would
   import that file instead: the answer is ``{"cold": reason}`` and the server starts a cold run.
4. Otherwise ``/tmp``, ``/dev/shm`` and the System V IPC objects left by earlier runs are removed (if that
   fails, the answer is cold and the zygote ends); the child asks the zygote (a pipe) and, once it answers,
   answers ``g``: a zygote that hangs cannot have runs started under it. It takes the three fds as 0, 1,
   2, closes every other fd, starts a new session, reseeds ``random`` and numpy's global generator, sets argv,
   environment and working directory, and runs the script as ``python3 script`` would (``__main__``,
   ``sys.path[0]``, traceback, ``SystemExit``, atexit, non-daemon threads).
5. The zygote waits for the child and answers ``{"exit": code}`` (``128 + signal`` when killed), then
   serves the next connection. End of file on stdin (the server's pipe) or SIGTERM ends it.
"""

from __future__ import annotations

import array
import atexit
import contextlib
import gc
import importlib
import io
import json
import os
import random  # here, not in each run: reseeded per run (reseed)
import shutil
import signal
import socket
import struct
import sys
import threading
import traceback
from typing import Any, NoReturn

READY = "zygote ready"
CLEARED = ("/tmp", "/dev/shm")
WORKSPACE = "/sandbox"


def preimport(modules: list[str]) -> list[str]:
    loaded: list[str] = []
    for name in modules:
        try:
            importlib.import_module(name)
        except BaseException:  # a package that fails at import is simply imported by the run itself
            continue
        loaded.append(name)
    return loaded


def receive(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """One request line and the three fds sent with it."""
    data, fds = b"", []  # type: tuple[bytes, list[int]]
    while not data.endswith(b"\n"):
        chunk, ancdata, _flags, _addr = conn.recvmsg(65536, socket.CMSG_SPACE(3 * 4))
        if not chunk:
            raise EOFError("server closed the connection")
        data += chunk
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                received = array.array("i")
                received.frombytes(payload[: len(payload) - len(payload) % 4])
                fds.extend(received)
    request: dict[str, Any] = json.loads(data)
    return request, fds


def send(conn: socket.socket, message: dict[str, Any]) -> None:
    conn.sendall(json.dumps(message).encode() + b"\n")


def shadowed(script: str) -> list[str]:
    """Modules imported here that a file in the workspace would replace for a cold interpreter: in the script's
    folder (``sys.path[0]``) or a workspace folder on the import path (src layouts)."""
    folders = {os.path.dirname(os.path.abspath(script))}
    folders.update(p for p in sys.path if p == WORKSPACE or p.startswith(WORKSPACE + "/"))
    local: set[str] = set()
    for folder in folders:
        try:
            entries = os.listdir(folder)
        except OSError:
            continue
        local.update(e[:-3] if e.endswith(".py") else e for e in entries if e.endswith(".py") or "." not in e)
    loaded = {name.partition(".")[0] for name in sys.modules}
    return sorted(local & loaded)


def clear_run_state() -> bool:
    """Remove what an earlier run left where a cold run would start from empty; False if something stays."""
    for top in CLEARED:
        try:
            entries = os.listdir(top)
        except OSError:
            continue
        for entry in entries:
            path = os.path.join(top, entry)
            if os.path.isdir(path) and not os.path.islink(path):
                make_removable(path)
                shutil.rmtree(path, ignore_errors=True)
            else:
                with contextlib.suppress(OSError):
                    os.unlink(path)
        with contextlib.suppress(OSError):
            if os.listdir(top):
                return False
    remove_sysv_ipc()
    return True


def make_removable(folder: str) -> None:
    """A run may have taken the owner's own permissions off its folders: give them back, top down."""
    with contextlib.suppress(OSError):
        os.chmod(folder, 0o700)
    for parent, folders, _files in os.walk(folder):  # top down: each folder is opened after this chmod
        for name in folders:
            path = os.path.join(parent, name)
            if not os.path.islink(path):
                with contextlib.suppress(OSError):
                    os.chmod(path, 0o700)


def remove_sysv_ipc() -> None:
    """System V shared memory, semaphores and message queues outlive their process: drop the run's."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    ipc_rmid = 0
    removers: tuple[tuple[str, Any], ...] = (
        ("shm", lambda i: libc.shmctl(i, ipc_rmid, None)),
        ("sem", lambda i: libc.semctl(i, 0, ipc_rmid)),
        ("msg", lambda i: libc.msgctl(i, ipc_rmid, None)),
    )
    for kind, remove in removers:
        try:
            with open(f"/proc/sysvipc/{kind}") as table:
                rows = table.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 1:
                remove(int(fields[1]))


def close_other_fds() -> None:
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd > 2:
            with contextlib.suppress(OSError):
                os.close(fd)


def reseed() -> None:
    random.seed()
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        with contextlib.suppress(Exception):
            numpy.random.seed()


def child(conn: socket.socket, starting: int, going: int) -> NoReturn:
    """In the forked child: wait for the run (in its cgroup by then), become it, run the script; never returns.
    ``starting``/``going``: the pipes to and from the zygote through which it confirms each run's start, so
    a zygote that no longer answers means a cold run, as it did when the zygote forked at request time."""
    code = 1
    try:
        prctl = __import__("ctypes").CDLL(None).prctl
        prctl(4, 1, 0, 0, 0)  # PR_SET_DUMPABLE: a fresh process is dumpable (its own /proc files are its own)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        credentials = struct.pack("3i", os.getpid(), os.getuid(), os.getgid())
        conn.sendmsg([b"c"], [(socket.SOL_SOCKET, socket.SCM_CREDENTIALS, credentials)])
        try:
            request, fds = receive(conn)  # sent only once the server moved this process into the run's cgroup
        except (EOFError, OSError, ValueError):
            os._exit(0)  # not needed (the zygote stops, or the run's limits differ)
        script, args = request["argv"][0], request["argv"][1:]
        found = shadowed(script)
        if found:
            send(conn, {"cold": f"the workspace has modules named like pre-imported ones: {found}"})
            os._exit(0)
        if not clear_run_state():  # never run in what another run left: a cold run, and a fresh zygote
            send(conn, {"cold": "an earlier run left files the warm interpreter could not remove"})
            os.kill(os.getppid(), signal.SIGTERM)
            os._exit(0)
        os.write(starting, b"s")
        if os.read(going, 1) != b"k":
            os._exit(0)
        conn.sendall(b"g")
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        close_other_fds()
        os.setsid()
        reseed()
        os.environ.clear()
        os.environ.update(request["env"])
        os.chdir(request["cwd"])
        sys.argv = [script, *args]
        sys.path[0] = os.path.dirname(os.path.abspath(script))
        fresh_stdio(request["env"])
        code = run_script(script)
    finally:
        os._exit(code)


def fresh_stdio(env: dict[str, str]) -> None:
    """stdin, stdout and stderr on fds 0-2 as a fresh interpreter opens them: the encoding and error handlers
    of the zygote's own (it started under the same locale), buffering as ``PYTHONUNBUFFERED`` says."""
    unbuffered = bool(env.get("PYTHONUNBUFFERED"))
    for fd, name in enumerate(("stdin", "stdout", "stderr")):
        model = getattr(sys, f"__{name}__") or getattr(sys, name)
        raw = io.FileIO(fd, "rb" if fd == 0 else "wb", closefd=False)
        writes = fd > 0
        buffered: Any = raw if unbuffered and writes else (io.BufferedWriter(raw) if writes else io.BufferedReader(raw))
        stream = io.TextIOWrapper(
            buffered,
            encoding=model.encoding,
            errors=model.errors,
            line_buffering=raw.isatty() or fd == 2,
            write_through=unbuffered and writes,
        )
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)  # what the interpreter restores them to


def run_script(script: str) -> int:
    code = 0
    try:
        run_as_main(os.path.abspath(script))  # __file__ absolute, as python3 sets it; argv[0] as given
    except SystemExit as stop:
        code = exit_code(stop.code)
    except BaseException as error:
        print_from_script(error, script)
        code = 1
    try:
        threading._shutdown()  # type: ignore[attr-defined]  # wait for non-daemon threads, as interpreter exit does
        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        pass
    return code


def run_as_main(path: str) -> None:
    """What ``python3 path`` does with the file: a fresh ``__main__`` module and its code run in it."""
    import builtins
    import types
    from importlib.machinery import SourceFileLoader

    main = types.ModuleType("__main__")
    main.__file__ = path
    main.__builtins__ = builtins  # type: ignore[attr-defined]
    main.__loader__ = SourceFileLoader("__main__", path)
    main.__cached__ = None  # type: ignore[attr-defined]
    sys.modules["__main__"] = main
    with open(path, "rb") as source:
        code = compile(source.read(), path, "exec", dont_inherit=True)
    exec(code, main.__dict__)


def exit_code(value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value & 0xFF
    print(value, file=sys.stderr)
    return 1


def print_from_script(error: BaseException, script: str) -> None:
    """The traceback a cold interpreter prints: from the script's own frame on, without runpy's."""
    tb = error.__traceback__
    target = os.path.abspath(script)
    while tb is not None and os.path.abspath(tb.tb_frame.f_code.co_filename) != target:
        tb = tb.tb_next
    traceback.print_exception(type(error), error, tb or error.__traceback__)
    sys.stderr.flush()


def serve(listener: socket.socket) -> NoReturn:
    while True:
        conn, _ = listener.accept()
        with conn:
            try:
                starting_r, starting_w = os.pipe()
                going_r, going_w = os.pipe()
                pid = os.fork()
            except OSError:
                continue
            if pid == 0:
                listener.close()
                os.close(starting_r)
                os.close(going_w)
                child(conn, starting_w, going_r)
            os.close(starting_w)
            os.close(going_r)
            with contextlib.suppress(OSError):
                if os.read(starting_r, 1) == b"s":  # end of file: the child ended without a run
                    os.write(going_w, b"k")
            os.close(starting_r)
            os.close(going_w)
            status = os.waitpid(pid, 0)[1]
            code = os.waitstatus_to_exitcode(status)
            with contextlib.suppress(OSError):  # a child that was not needed: nobody listens any more
                send(conn, {"exit": 128 - code if code < 0 else code})


def main() -> None:
    path, modules = sys.argv[1], sys.argv[2:]
    loaded = preimport(modules)
    local = sorted(
        str(getattr(m, "__file__", None))
        for m in list(sys.modules.values())
        if str(getattr(m, "__file__", None)).startswith(WORKSPACE + "/")
    )
    if local:  # a cold run would import these fresh from the workspace on every exec: no zygote for it
        print(f"pre-imports loaded workspace files: {local[:5]}", file=sys.stderr, flush=True)
        sys.exit(3)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    gc.collect()
    gc.freeze()  # pre-imported objects move to a permanent generation: children do not copy them to collect
    __import__("ctypes").CDLL(None).prctl(4, 0, 0, 0, 0)  # PR_SET_DUMPABLE 0: runs cannot read this memory
    # Bound and listening under a temporary name, then renamed: the socket appears only once it accepts.
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    partial = path + ".partial"
    for stale in (path, partial):
        if os.path.exists(stale):
            os.unlink(stale)
    listener.bind(partial)
    os.chmod(partial, 0o600)
    listener.listen(4)
    os.rename(partial, path)
    print(f"{READY} {json.dumps(loaded)}", flush=True)
    serve(listener)


if __name__ == "__main__":
    main()
