"""A resident's output: a bounded tail of what it printed, readable from an offset and followable as it grows.

A resident may print for hours, so only the newest ``limit_bytes`` (UTF-8) are kept; offsets count characters
written since the start, so a reader that resumes at ``end`` misses nothing that is still kept, and is told
when what it asked for has already been dropped.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass

from cloche.jail.runner import StreamName


@dataclass(frozen=True)
class LogChunk:
    offset: int  # characters written before this chunk
    stream: StreamName
    text: str


@dataclass(frozen=True)
class LogRead:
    chunks: list[LogChunk]
    start: int  # the oldest offset still kept
    end: int  # the offset the next write will have: resume from here
    dropped: bool  # part of what was asked for is gone (older than the kept tail)


class LogBuffer:
    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self._chunks: deque[tuple[LogChunk, int]] = deque()  # each with its size in bytes
        self._bytes = 0
        self._end = 0
        self._closed = False
        self._grew = asyncio.Event()

    @property
    def closed(self) -> bool:
        return self._closed

    async def write(self, stream: StreamName, text: str) -> None:
        """The runner's output sink."""
        self.append(stream, text)

    def append(self, stream: StreamName, text: str) -> None:
        if not text:
            return
        data = text.encode()
        if len(data) > self.limit_bytes:  # keep the newest part of an oversized chunk
            cut = data[-self.limit_bytes :].decode(errors="ignore")
            self._end += len(text) - len(cut)
            text, data = cut, cut.encode()
        self._chunks.append((LogChunk(self._end, stream, text), len(data)))
        self._bytes += len(data)
        self._end += len(text)
        while self._bytes > self.limit_bytes:
            _, size = self._chunks.popleft()
            self._bytes -= size
        self._wake()

    def close(self) -> None:
        """No more output will come (the resident ended); followers finish."""
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        self._grew.set()
        self._grew = asyncio.Event()

    def read(self, since: int = 0) -> LogRead:
        start = self._chunks[0][0].offset if self._chunks else self._end
        chunks = []
        for chunk, _ in self._chunks:
            if chunk.offset + len(chunk.text) <= since:
                continue
            if chunk.offset < since:  # resume inside a chunk
                cut = since - chunk.offset
                chunk = LogChunk(since, chunk.stream, chunk.text[cut:])
            chunks.append(chunk)
        return LogRead(chunks, start, self._end, dropped=since < start)

    def text(self, since: int = 0) -> str:
        return "".join(c.text for c in self.read(since).chunks)

    async def follow(self, since: int = 0) -> AsyncIterator[LogChunk]:
        """What is kept from ``since`` on, then each chunk as it is written, until the resident ends."""
        position = since
        while True:
            grew = self._grew
            found = self.read(position)
            for chunk in found.chunks:
                yield chunk
            position = found.end
            if self._closed:
                return
            await grew.wait()
