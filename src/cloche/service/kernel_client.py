"""The host's side of one kernel: jupyter_client over the IPC transport, and a cell's messages made a result.

Everything the kernel sends is untrusted (user code runs in it): messages are only read as JSON (the session's
default packer), signed with the kernel's own key, matched to the cell by ``parent_header.msg_id``, and every
text and result is capped before it is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, cast

from jupyter_client.asynchronous.client import AsyncKernelClient
from jupyter_client.connect import KernelConnectionInfo

from cloche.models_code import FORMATS, CodeError, CodeOutput

CHANNELS = ("shell", "iopub", "stdin", "control", "hb")
SOCKET_PREFIX = "kernel"  # the ipc transport names socket N "<ip>-N"
MIME_FORMATS = {
    "text/plain": "text",
    "text/html": "html",
    "text/markdown": "markdown",
    "image/svg+xml": "svg",
    "image/png": "png",
    "image/jpeg": "jpeg",
    "text/latex": "latex",
    "application/json": "json",
    "application/javascript": "javascript",
}
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
INTERRUPT_GRACE_SECONDS = 5.0  # an interrupted cell that has not ended by then means a stuck kernel

CellSink = Callable[[str, Any], Awaitable[None]]  # ("stdout" | "stderr", text) or ("result", CodeOutput)


def connection_info(jail_dir: str, host_dir: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """The connection file as the kernel reads it (sockets under ``jail_dir``) and as the host connects
    (the same sockets under ``host_dir``); one fresh signing key."""
    info: dict[str, Any] = {f"{name}_port": n for n, name in enumerate(CHANNELS, start=1)}
    info |= {"transport": "ipc", "key": secrets.token_hex(32), "signature_scheme": "hmac-sha256"}
    jail = {**info, "ip": f"{jail_dir}/{SOCKET_PREFIX}", "kernel_name": "python3"}
    return jail, {**info, "ip": str(host_dir / SOCKET_PREFIX)}


def socket_names() -> list[str]:
    return [f"{SOCKET_PREFIX}-{n}" for n in range(1, len(CHANNELS) + 1)]


@dataclass
class CellOutcome:
    status: Literal["ok", "error", "timed_out", "crashed"] = "ok"
    execution_count: int | None = None
    stdout: list[str] = field(default_factory=list)
    stderr: list[str] = field(default_factory=list)
    results: list[CodeOutput] = field(default_factory=list)
    error: CodeError | None = None
    truncated: bool = False
    stuck: bool = False  # an interrupt did not end the cell: the kernel must be restarted


@dataclass
class _Caps:
    stream_bytes: int
    result_bytes: int
    used: dict[str, int] = field(default_factory=lambda: {"stdout": 0, "stderr": 0, "results": 0})

    def take(self, kind: str, size: int) -> bool:
        limit = self.result_bytes if kind == "results" else self.stream_bytes
        if self.used[kind] + size > limit:
            return False
        self.used[kind] += size
        return True


class KernelConnection:
    def __init__(self, host_info: Mapping[str, Any]) -> None:
        self.client = AsyncKernelClient()
        self.client.load_connection_info(cast(KernelConnectionInfo, dict(host_info)))

    async def open(self, timeout: float) -> None:
        self.client.start_channels(hb=False)  # the kernel's process is watched through its resident instead
        await self.client.wait_for_ready(timeout=timeout)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.stop_channels()

    async def run_silently(self, code: str, timeout: float) -> bool:
        """Run host-written code (no history, no output kept); True when it succeeded."""
        msg_id = self.client.execute(code, silent=True, store_history=False, allow_stdin=False)
        try:
            reply = await asyncio.wait_for(self._reply(msg_id), timeout)
        except TimeoutError:
            return False
        return bool(reply.get("content", {}).get("status") == "ok")

    def interrupt(self) -> None:
        """Message-mode interrupt: the kernel raises KeyboardInterrupt in the running cell."""
        self.client.control_channel.send(self.client.session.msg("interrupt_request", content={}))

    async def execute(
        self,
        code: str,
        timeout: float,
        died: asyncio.Future[Any],
        sink: CellSink | None,
        caps: tuple[int, int],
    ) -> CellOutcome:
        """Run a cell; past ``timeout`` it is interrupted (the kernel keeps its state). ``died`` completes when
        the kernel's process ends."""
        outcome = CellOutcome()
        limits = _Caps(*caps)
        msg_id = self.client.execute(code, store_history=True, allow_stdin=False, stop_on_error=False)
        outputs = asyncio.create_task(self._outputs(msg_id, outcome, limits, sink))
        reply = asyncio.create_task(self._reply(msg_id))
        cell = asyncio.gather(outputs, reply)
        try:
            done, _ = await asyncio.wait([cell, died], timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
            if not done:
                outcome.status = "timed_out"
                self.interrupt()
                done, _ = await asyncio.wait(
                    [cell, died], timeout=INTERRUPT_GRACE_SECONDS, return_when=asyncio.FIRST_COMPLETED
                )
                outcome.stuck = not done
            if died in done and not cell.done():
                outcome.status = "crashed"
        except asyncio.CancelledError:  # nobody waits for the cell any more: it stops, the kernel's state stays
            if not cell.done() and not died.done():
                self.interrupt()
            raise
        finally:
            for task in (outputs, reply):
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await cell  # the gathering future collects both, so no exception goes unretrieved
        if reply.done() and not reply.cancelled() and reply.exception() is None:
            content = reply.result().get("content", {})
            count = content.get("execution_count")
            outcome.execution_count = count if isinstance(count, int) else None
            if content.get("status") == "error" and outcome.status == "ok":
                outcome.status = "error"
        return outcome

    async def _reply(self, msg_id: str) -> dict[str, Any]:
        while True:
            message: dict[str, Any] = await self.client.get_shell_msg(timeout=None)
            if message.get("parent_header", {}).get("msg_id") == msg_id:
                return message

    async def _outputs(self, msg_id: str, outcome: CellOutcome, caps: _Caps, sink: CellSink | None) -> None:
        """Read the cell's iopub messages until the kernel says it is idle again."""
        while True:
            message: dict[str, Any] = await self.client.get_iopub_msg(timeout=None)
            if message.get("parent_header", {}).get("msg_id") != msg_id:
                continue  # an earlier cell's late output, or the host's silent code
            kind, content = message.get("msg_type"), message.get("content") or {}
            if kind == "status" and content.get("execution_state") == "idle":
                return
            if kind == "stream":
                await self._stream(outcome, caps, sink, content)
            elif kind in ("execute_result", "display_data", "update_display_data"):
                result = _output(content.get("data"), kind == "execute_result")
                if result is not None and caps.take("results", _size(result)):
                    outcome.results.append(result)
                    if sink is not None:
                        await sink("result", result)
                elif result is not None:
                    outcome.truncated = True
            elif kind == "error":
                outcome.error = _error(content)

    @staticmethod
    async def _stream(outcome: CellOutcome, caps: _Caps, sink: CellSink | None, content: Mapping[str, Any]) -> None:
        name, text = content.get("name"), content.get("text")
        if name not in ("stdout", "stderr") or not isinstance(text, str):
            return
        if not caps.take(name, len(text.encode())):
            outcome.truncated = True
            return
        (outcome.stdout if name == "stdout" else outcome.stderr).append(text)
        if sink is not None:
            await sink(name, text)


def _output(data: object, main: bool) -> CodeOutput | None:
    """A MIME bundle as a result; types the API does not name are dropped, as are values of the wrong type."""
    if not isinstance(data, dict):
        return None
    values: dict[str, Any] = {}
    for mime, name in MIME_FORMATS.items():
        value = data.get(mime)
        if value is None or (name != "json" and not isinstance(value, str)):
            continue
        values[FORMATS[name]] = value
    return CodeOutput(**values, is_main_result=main) if values else None


def _size(result: CodeOutput) -> int:
    return len(result.model_dump_json())


def _error(content: Mapping[str, Any]) -> CodeError:
    lines = content.get("traceback")
    text = "\n".join(str(line) for line in lines) if isinstance(lines, list) else ""
    return CodeError(
        name=str(content.get("ename", "Error")), value=str(content.get("evalue", "")), traceback=ANSI.sub("", text)
    )
