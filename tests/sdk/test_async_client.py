"""AsyncClient against a real server, and the error classes both clients raise."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import httpx
import pytest

from cloche import (
    AsyncClient,
    ClocheAPIError,
    ConflictError,
    ExecEvent,
    InvalidRequestError,
    NotFoundError,
    TooLargeError,
    UnauthorizedError,
    UnavailableError,
)
from cloche.sdk.calls import EventDecoder
from cloche.sdk.errors import raise_for
from conftest import ServerProcess


def run(server: ServerProcess, scenario: Callable[[AsyncClient], Awaitable[None]]) -> None:
    async def main() -> None:
        async with AsyncClient(server.url) as client:
            await scenario(client)

    anyio.run(main)


def test_round_trip(server: ServerProcess) -> None:
    async def scenario(cloche: AsyncClient) -> None:
        async with await cloche.create(language="python") as box:
            assert box.info is not None and box.info.language == "python"
            await box.write("pkg/util.py", "def double(x):\n    return 2 * x\n")
            await box.write("main.py", "from pkg.util import double\nprint(double(21))\n")
            assert [f.path for f in (await box.files("pkg")).files] == ["pkg/util.py"]
            result = await box.exec(filename="main.py")
            assert (result.status, result.stdout) == ("succeeded", "42\n")
            assert (await box.read("main.py")).startswith(b"from pkg")
            assert (await box.runs()).runs[0].run_id == result.run_id
            assert (await box.run(result.run_id)).argv == ["python3", "main.py"]
            await box.remove("main.py")
            assert box.id in [b.id for b in await cloche.list()]
        with pytest.raises(NotFoundError) as caught:
            await box.refresh()
        assert (caught.value.status, caught.value.code) == (404, "sandbox_not_found")
        await box.delete()  # already gone: fine by default
        with pytest.raises(NotFoundError):
            await box.delete(missing_ok=False)

    run(server, scenario)


def test_stream_yields_output_as_it_comes(server: ServerProcess) -> None:
    async def scenario(cloche: AsyncClient) -> None:
        async with await cloche.create() as box:
            events = [event async for event in box.stream(command="echo a; echo b >&2; exit 4")]
            assert [(e.kind, e.text) for e in events[:2]] == [("stdout", "a\n"), ("stderr", "b\n")]
            assert events[-1].kind == "done"
            assert events[-1].result is not None and events[-1].result.exit_code == 4

    run(server, scenario)


def test_errors_are_typed_with_codes(server: ServerProcess) -> None:
    async def scenario(cloche: AsyncClient) -> None:
        async with await cloche.create() as box:
            with pytest.raises(NotFoundError) as missing:
                await box.exec(filename="nothing.py")
            assert missing.value.code == "file_not_found"
            with pytest.raises(InvalidRequestError) as traversal:
                await box.write("../escape.py", "x")  # sent as written; the server refuses it
            assert (traversal.value.status, traversal.value.code) == (400, "invalid_path")
            with pytest.raises(InvalidRequestError) as invalid:
                await box.exec(filename="a.py", command="true")
            assert (invalid.value.status, invalid.value.code) == (422, "validation_error")
            with pytest.raises(InvalidRequestError) as streamed:  # reported inside the event stream
                [event async for event in box.stream(filename="../x.py")]
            assert (streamed.value.status, streamed.value.code) == (400, "invalid_path")

    run(server, scenario)


def test_install_events_sbom_and_diff(offline_server: ServerProcess, offline_wheels: Path) -> None:
    from _pywheels import build_wheel  # on sys.path once offline_wheels is set up

    # A package no other test installs, so this environment is surely built here (and "installing" is sent).
    probe = f"probe-{uuid.uuid4().hex[:8]}"
    build_wheel(offline_wheels, probe, "1.0.0", {f"{probe.replace('-', '_')}.py": "X = 1\n"})

    async def scenario(cloche: AsyncClient) -> None:
        async with await cloche.create() as box:
            await box.write("requirements.txt", f"six==1.15.0\n{probe}==1.0.0\n")
            await box.write("main.py", "import six\nprint(six.__version__)\n")
            events = [event async for event in box.stream(filename="main.py")]
            installs = [e.data for e in events if e.kind == "install"]
            assert [d["phase"] for d in installs if d] == ["resolving", "installing", "installed"]
            assert installs[1] == {"phase": "installing", "packages": sorted([f"{probe}==1.0.0", "six==1.15.0"])}
            after = events[len(installs) :]  # installs come first, then the program's output, then the end
            assert "".join(e.text for e in after if e.kind == "stdout") == "1.15.0\n"
            assert {e.kind for e in after[:-1]} == {"stdout"} and after[-1].kind == "done"
            first = events[-1].result
            await box.write("requirements.txt", "six==1.16.0\n")
            second = await box.exec(filename="main.py")
            assert first is not None and second.stdout == "1.16.0\n"
            sbom = await box.sbom(second.run_id)
            assert [(c["name"], c["version"]) for c in sbom["components"]] == [("six", "1.16.0")]
            changes = await box.diff(first.run_id, second.run_id)
            assert [(c["name"], c["from_version"], c["to_version"]) for c in changes["changed"]] == [
                ("six", "1.15.0", "1.16.0")
            ]
            assert [c["name"] for c in changes["removed"]] == [probe]

    run(offline_server, scenario)


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (400, "invalid_archive", InvalidRequestError),
        (401, "unauthorized", UnauthorizedError),
        (404, "run_not_found", NotFoundError),
        (409, "sandbox_busy", ConflictError),
        (413, "too_large", TooLargeError),
        (503, "jail_unavailable", UnavailableError),
        (500, "internal", ClocheAPIError),
    ],
)
def test_status_picks_the_exception(status: int, code: str, kind: type[ClocheAPIError]) -> None:
    response = httpx.Response(status, json={"error": {"code": code, "message": "why"}})
    with pytest.raises(kind) as caught:
        raise_for(response)
    assert type(caught.value) is kind
    assert (caught.value.status, caught.value.code, caught.value.message) == (status, code, "why")


def test_non_json_errors_and_unknown_events() -> None:
    with pytest.raises(ClocheAPIError) as caught:
        raise_for(httpx.Response(502, text="bad gateway"))
    assert (caught.value.code, caught.value.message) == ("http_error", "bad gateway")
    decoder = EventDecoder()
    assert decoder.feed("event: heartbeat") is None
    assert decoder.feed('data: {"n": 1}') == ExecEvent("heartbeat", data={"n": 1})
    assert decoder.feed("event: error") is None
    with pytest.raises(ConflictError):
        decoder.feed('data: {"code": "sandbox_busy", "message": "busy"}')
