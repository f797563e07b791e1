"""The server's side of the warm interpreter (``zygote_jail.py``): a child forked ahead, then its run.

``ZygoteClient.fork`` has the zygote fork a child ahead of the run, learns its host pid from the kernel
(SCM_CREDENTIALS) and moves it into the run's own cgroup: the server does this right after a run ends, so the
next request finds the child waiting (``Waiting``) and pays neither the fork nor the cgroup move (on cgroup v1
a move waits for an RCU grace period: 5-15 ms). ``ZygoteClient.start`` hands the waiting child the run's stdin,
stdout and stderr (pipes the server made, exactly as for a cold run) and the request; the child runs only
then. The result, a ``ForkedProcess``, looks to the runner like a spawned bwrap: two output streams, stdin,
``wait`` and ``kill``; its exit code is the one the zygote reports after reaping the child."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import signal
import socket
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from cloche.jail.cgroups import RunCgroup
from cloche.jail.profile import ResourceLimits
from cloche.steps import mark

ZYGOTE_SCRIPT = Path(__file__).with_name("zygote_jail.py")
_CREDENTIALS = struct.calcsize("3i")
_LINE_LIMIT = 65536
# The zygote answers a request at once (it forks, or declines); silence this long, even on a busy host, means
# it is stuck.
ANSWER_SECONDS = 10.0


class ZygoteGone(Exception):
    """The zygote did not answer as it should: the run goes cold and the zygote is stopped."""


@dataclass
class ColdInstead:
    """The zygote declined this run (a workspace module shadows a pre-imported one)."""

    reason: str


class ForkedProcess:
    """A run forked by the zygote, as the runner supervises it."""

    def __init__(
        self,
        pid: int,
        conn: socket.socket,
        stdout: asyncio.StreamReader,
        stderr: asyncio.StreamReader,
        stdin: asyncio.StreamWriter | None,
        transports: list[asyncio.BaseTransport],
    ) -> None:
        self.pid = pid
        self.stdout = stdout
        self.stderr = stderr
        self.stdin = stdin
        self.returncode: int | None = None
        self.zygote_failed = False
        self._conn = conn
        self._transports = transports
        self._exit: asyncio.Task[int | None] = asyncio.create_task(_read_exit(conn))

    async def wait(self) -> int:
        code = await asyncio.shield(self._exit)
        if code is None:  # the zygote went away during the run: it is reported, the run failed
            self.zygote_failed = True
            code = 128 + signal.SIGKILL
        self.returncode = code
        return code

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)

    def close(self) -> None:
        for transport in self._transports:
            transport.close()
        self._exit.cancel()
        self._conn.close()


@dataclass
class Waiting:
    """A child the zygote forked ahead of its run: already in the run's cgroup (created for ``limits``), waiting
    for the request on ``conn``. ``release`` kills and removes that cgroup."""

    pid: int
    conn: socket.socket
    group: RunCgroup
    limits: ResourceLimits
    release: contextlib.AsyncExitStack

    async def discard(self) -> None:
        self.conn.close()  # the child reads end of file and exits
        await self.release.aclose()


class ZygoteClient:
    """``extra_env``: what the zygote's jail adds to a run's variables (the egress proxy's); ``denied_hosts``:
    the egress refusals of the zygote's jail so far (its runs share its egress session); ``waiting``: the child
    forked ahead for the next run, if any (``Runner.fork_ahead``)."""

    def __init__(self, socket_path: Path, extra_env: Mapping[str, str], denied_hosts: Callable[[], list[str]]) -> None:
        self.socket_path = socket_path
        self.extra_env = dict(extra_env)
        self.denied_hosts = denied_hosts
        self.waiting: Waiting | None = None

    async def fork(self, group: RunCgroup) -> tuple[int, socket.socket]:
        """A child forked ahead of its run, moved into ``group``: its host pid and its connection. Raises
        ``ZygoteGone`` when the zygote cannot fork one."""
        loop = asyncio.get_running_loop()
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        conn.setblocking(False)
        try:
            await loop.sock_connect(conn, str(self.socket_path))
            pid = await asyncio.wait_for(_hello(conn), ANSWER_SECONDS)
            mark("zygote: forked child's pid received")
            # Before it may run a single line of the user's code; in a thread: on cgroup v1 the move waits for an
            # RCU grace period (milliseconds), which must not stall the event loop.
            await asyncio.to_thread(group.attach, pid)
            mark("zygote: child moved into the run cgroup")
        except (OSError, ValueError, EOFError, TimeoutError) as exc:
            conn.close()
            raise ZygoteGone(f"the warm interpreter did not answer: {exc or type(exc).__name__}") from exc
        except BaseException:  # cancelled: the child reads end of file and exits
            conn.close()
            raise
        return pid, conn

    async def start(
        self, waiting: Waiting, argv: tuple[str, ...], env: dict[str, str], cwd: str, stdin: bool
    ) -> ForkedProcess | ColdInstead:
        """Hand ``waiting`` its run (the pipes and the request); raises ``ZygoteGone`` when it cannot serve it."""
        conn = waiting.conn
        ours: list[int] = []  # the server's ends, kept
        theirs: list[int] = []  # the run's ends, closed here once sent
        try:
            stdin_read, stdin_write = os.pipe() if stdin else (os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC), -1)
            theirs.append(stdin_read)
            if stdin_write >= 0:
                ours.append(stdin_write)
            for _ in ("stdout", "stderr"):
                read_end, write_end = os.pipe()
                ours.append(read_end)
                theirs.append(write_end)
            request = json.dumps({"argv": list(argv), "env": env, "cwd": cwd}).encode() + b"\n"
            conn.sendmsg([request], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("3i", *theirs))])
            for fd in theirs:
                os.close(fd)
            theirs.clear()
            mark("zygote: request and fds sent")
            first = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(conn, 1), ANSWER_SECONDS)
            if not first:
                raise EOFError("the zygote closed the connection")
            if first != b"g":
                answer = json.loads(first + await asyncio.wait_for(_read_line(conn), ANSWER_SECONDS))
                for fd in ours:
                    os.close(fd)
                return ColdInstead(str(answer.get("cold", "the warm interpreter declined")))
            mark("zygote: child runs")
        except (OSError, ValueError, EOFError, TimeoutError) as exc:
            for fd in [*ours, *theirs]:
                with contextlib.suppress(OSError):
                    os.close(fd)
            raise ZygoteGone(f"the warm interpreter did not answer: {exc or type(exc).__name__}") from exc
        return await _wrap(waiting.pid, conn, ours, stdin)


async def _wrap(pid: int, conn: socket.socket, ours: list[int], stdin: bool) -> ForkedProcess:
    loop = asyncio.get_running_loop()
    fds = list(ours)
    writer: asyncio.StreamWriter | None = None
    transports: list[asyncio.BaseTransport] = []
    if stdin:
        write_fd = fds.pop(0)
        transport, protocol = await loop.connect_write_pipe(
            asyncio.streams.FlowControlMixin, os.fdopen(write_fd, "wb", buffering=0)
        )
        writer = asyncio.StreamWriter(transport, protocol, None, loop)
        transports.append(transport)
    readers: list[asyncio.StreamReader] = []
    for fd in fds:
        reader = asyncio.StreamReader(limit=2**20)
        read_transport, _ = await loop.connect_read_pipe(
            functools.partial(asyncio.StreamReaderProtocol, reader), os.fdopen(fd, "rb", buffering=0)
        )
        transports.append(read_transport)
        readers.append(reader)
    return ForkedProcess(pid, conn, readers[0], readers[1], writer, transports)


async def _readable(conn: socket.socket) -> None:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(conn.fileno(), wake)
    try:
        await ready
    finally:
        loop.remove_reader(conn.fileno())


async def _hello(conn: socket.socket) -> int:
    """The forked child's hello: its host pid, from the kernel."""
    while True:
        await _readable(conn)
        try:
            data, ancdata, _flags, _addr = conn.recvmsg(1, socket.CMSG_SPACE(_CREDENTIALS))
        except BlockingIOError:
            continue
        if not data:
            raise EOFError("the zygote closed the connection")
        if data != b"c":
            raise ValueError(f"the zygote's child said {data!r}, not hello")
        for level, kind, payload in ancdata:
            if level == socket.SOL_SOCKET and kind == socket.SCM_CREDENTIALS:
                pid, _uid, _gid = struct.unpack("3i", payload[:_CREDENTIALS])
                return int(pid)
        raise EOFError("the child sent no credentials")


async def _read_line(conn: socket.socket) -> bytes:
    loop = asyncio.get_running_loop()
    data = b""
    while not data.endswith(b"\n"):
        chunk = await loop.sock_recv(conn, 4096)
        if not chunk:
            raise EOFError("the zygote closed the connection")
        data += chunk
        if len(data) > _LINE_LIMIT:
            raise ValueError("the zygote's answer is too long")
    return data


async def _read_exit(conn: socket.socket) -> int | None:
    """The child's exit code as the zygote reports it; None when the zygote went away first."""
    try:
        answer = json.loads(await _read_line(conn))
        code = answer["exit"]
    except (OSError, ValueError, EOFError, KeyError, TypeError):
        return None
    return code if isinstance(code, int) and 0 <= code <= 255 else None
