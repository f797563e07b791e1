"""What a run printed so far, kept while it runs: an interrupted run (killed, abandoned, cut by a crash) keeps it.

The runner hands every piece of output (already capped per stream) to its sink; ``RunCapture`` is that sink. It
passes each piece on to the caller's sink (an SSE stream), keeps the text, and writes it to the run row at most
once per ``SAVE_SECONDS`` while the run goes on, so a crash loses at most that much. Each stream passes the
run's secret masker first, so no piece a caller or the run row sees holds a secret (``flush`` at the end).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

from cloche.jail.runner import StreamName
from cloche.service.masking import Masker, StreamMasker
from cloche.store.metadata import MetadataStore, RunRow

Sink = Callable[[StreamName, str], Awaitable[None]]
SAVE_SECONDS = 1.0


class RunCapture:
    def __init__(self, store: MetadataStore, run_id: str, forward: Sink | None, masker: Masker) -> None:
        self._store, self._run_id, self._forward = store, run_id, forward
        self._maskers: dict[StreamName, StreamMasker] = {"stdout": masker.stream(), "stderr": masker.stream()}
        self._streams: dict[StreamName, list[str]] = {"stdout": [], "stderr": []}
        self._interleaved: list[str] = []
        self._dirty = False

    async def sink(self, name: StreamName, text: str) -> None:
        await self._keep(name, self._maskers[name].feed(text))

    async def flush(self) -> None:
        """Pass on what each stream's masker held back (the run has ended)."""
        for name, masker in self._maskers.items():
            await self._keep(name, masker.flush())

    async def _keep(self, name: StreamName, text: str) -> None:
        if self._add(name, text) and self._forward is not None:
            await self._forward(name, text)

    def _add(self, name: StreamName, text: str) -> bool:
        if text:
            self._streams[name].append(text)
            self._interleaved.append(text)
            self._dirty = True
        return bool(text)

    def texts(self) -> tuple[str, str, str]:
        """(stdout, stderr, output) so far."""
        return "".join(self._streams["stdout"]), "".join(self._streams["stderr"]), "".join(self._interleaved)

    def keep_in(self, run: RunRow) -> None:
        """Put the output so far into a run that ended without the runner's own result (with what the
        maskers held back: nothing will follow it)."""
        for name, masker in self._maskers.items():
            self._add(name, masker.flush())
        run.stdout, run.stderr, run.output = self.texts()

    def save(self) -> None:
        if self._dirty:
            self._dirty = False
            self._store.save_output(self._run_id, *self.texts())

    @contextlib.asynccontextmanager
    async def saving(self) -> AsyncIterator[RunCapture]:
        """Save the output so far about once a second while the body runs."""

        async def loop() -> None:
            while True:
                await asyncio.sleep(SAVE_SECONDS)
                self.save()

        saver = asyncio.create_task(loop())
        try:
            yield self
        finally:
            saver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await saver
