"""An append-only, hash-chained audit log in JSON Lines: what ran, with what, and proof nobody edited it.

Files (in the data dir)::

    audit-1.jsonl, audit-2.jsonl, ...   sealed older segments (rotated by size, default 64 MiB)
    audit.jsonl                         the active segment; the chain continues across segments
    audit.lock                          flock(2) held by the one writing process

Record format: one compact JSON object per line, ASCII only (``\\uXXXX`` escapes), keys in this order::

    {"seq": 1, "ts": "2025-01-01T12:00:00.000000Z", "event": "...", "sandbox_id": "sb_..." | null,
     ...fields..., "prev": "<hash of the previous record, or 64 zeros>", "hash": "<sha256 hex>"}

``hash`` is sha256 over the canonical JSON of the record without ``hash`` (sorted keys, separators ``,``/``:``,
ASCII). ``seq`` starts at 1 and has no gaps. ``verify`` also insists that each line is byte-for-byte the compact
serialisation of its own parsed value, so an edit that would not change the parsed value (added whitespace, a
different escape) is still caught.

Events and their fields (documented, not enforced; any JSON-able fields may be added)::

    sandbox_created    tenant, language, host_uid
    sandbox_deleted    reason
    file_written       path, sha256, size
    file_deleted       path
    archive_extracted  files: [{path, sha256}]
    exec_requested     run_id, argv, entry
    install_performed  run_id, ecosystem, source, lock_sha256, env_key, installed: [component dicts]
    run_finished       run_id, argv, workspace_tree_sha256, env_key, exit_code, status, stdout_sha256,
                       stderr_sha256, duration_ms
    egress_denied      run_id, hosts
    log_recovered      file, truncated_bytes, completed_seq (written by the log itself after a crash)

Writers: one process only (the server). ``AuditLog`` serialises appends from threads with a lock and takes an
exclusive flock on ``audit.lock`` so a second process fails fast instead of forking the chain. Readers
(``verify``, ``export``) take no lock: a record being appended meanwhile may show up as a torn last line.

What a hash chain proves and what it does not: any edited byte, deleted, inserted or reordered record in the
middle is detected. Dropping records from the *end* (or deleting all segments), or rewriting the whole chain from
some point on, is not detectable from the file alone: compare ``VerifyResult.head`` (or ``AuditLog.head``) with a
copy kept elsewhere (the metadata store, a log shipper) to anchor it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import re
import stat
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

ZERO_HASH = "0" * 64
DEFAULT_MAX_BYTES = 64 << 20
_RESERVED = frozenset({"seq", "ts", "event", "sandbox_id", "prev", "hash"})
_CHUNK = 1 << 16


class AuditLogError(Exception):
    """The log cannot be opened or read safely (corrupt tail, another writer); an operator must look."""


@dataclass(frozen=True)
class VerifyResult:
    """``first_bad`` is the 1-based line number counted across all segments in order (equal to ``seq`` while
    the log is intact); ``head`` is the hash of the last good record, for anchoring elsewhere."""

    ok: bool
    records: int
    first_bad: int | None = None
    reason: str | None = None
    head: str | None = None


def _compact(record: dict[str, Any]) -> str:
    return json.dumps(record, separators=(",", ":"), ensure_ascii=True, allow_nan=False)


def record_hash(record: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of ``record`` without its ``hash`` key."""
    body = {k: v for k, v in record.items() if k != "hash"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def _utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _rotated(directory: Path, stem: str) -> list[tuple[int, Path]]:
    pattern = re.compile(rf"{re.escape(stem)}-(\d+)\.jsonl")
    found: list[tuple[int, Path]] = []
    with contextlib.suppress(FileNotFoundError):
        for entry in directory.iterdir():
            if m := pattern.fullmatch(entry.name):
                found.append((int(m.group(1)), entry))
    return sorted(found)


def segments(directory: Path, stem: str = "audit") -> list[Path]:
    """The log's files in chain order: ``<stem>-<n>.jsonl`` by n, then ``<stem>.jsonl``; other names are ignored."""
    out = [p for _, p in _rotated(directory, stem)]
    active = directory / f"{stem}.jsonl"
    if active.exists():
        out.append(active)
    return out


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _rfind_newline(fd: int, end: int) -> int:
    """Offset of the last b'\\n' before ``end``, or -1; reads backwards so huge files cost one chunk or two."""
    pos = end
    while pos > 0:
        start = max(0, pos - _CHUNK)
        i = os.pread(fd, pos - start, start).rfind(b"\n")
        if i >= 0:
            return start + i
        pos = start
    return -1


def _last_line(fd: int, end: int) -> bytes | None:
    """The complete line ending at ``end`` (which follows a newline), without its newline."""
    if end <= 0:
        return None
    start = _rfind_newline(fd, end - 1) + 1
    return os.pread(fd, end - 1 - start, start)


def _parse(line: bytes) -> dict[str, Any] | None:
    """The record on ``line`` if it is a JSON object in exactly the compact form the writer produces."""
    try:
        text = line.decode("ascii")
        value = json.loads(text)
    except (UnicodeDecodeError, ValueError):
        return None
    if not isinstance(value, dict) or _compact(value) != text:
        return None
    return value


class AuditLog:
    """Appends records to ``path`` (``<data_dir>/audit.jsonl``; a directory means ``<dir>/audit.jsonl``)."""

    def __init__(self, path: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        path = Path(path)
        self.path = path / "audit.jsonl" if path.is_dir() else path
        self.directory = self.path.parent
        self.max_bytes = max_bytes
        self._stem = self.path.name.removesuffix(".jsonl")
        self._lock = threading.Lock()
        self._fd = -1
        self._lock_fd = self._take_process_lock()
        try:
            self._open_active()
            self.seq, self.prev = self._recover()
        except BaseException:
            self.close()
            raise

    # -- public -------------------------------------------------------------------------------------------------

    @property
    def head(self) -> tuple[int, str]:
        """(seq, hash) of the last record; (0, 64 zeros) for an empty log."""
        with self._lock:
            return self.seq, self.prev

    def append(self, event: str, sandbox_id: str | None, **fields: Any) -> dict[str, Any]:
        """Write one record durably (write + fsync) and return it exactly as stored."""
        if not event:
            raise ValueError("an audit event needs a name")
        if clash := _RESERVED & fields.keys():
            raise ValueError(f"audit fields may not be named {sorted(clash)}")
        # Round-trip first: non-JSON values fail here, before anything is written, and tuples etc. come back
        # as they will be read, so the returned dict equals what verify/export see.
        payload = json.loads(json.dumps(fields, ensure_ascii=True, allow_nan=False))
        with self._lock:
            if self._fd < 0:
                raise AuditLogError("the audit log is closed")
            record: dict[str, Any] = {"seq": self.seq + 1, "ts": _utc_now(), "event": event}
            record["sandbox_id"] = sandbox_id
            record.update(payload)
            record["prev"] = self.prev
            record["hash"] = record_hash(record)
            line = (_compact(record) + "\n").encode("ascii")
            size = os.fstat(self._fd).st_size
            if size > 0 and size + len(line) > self.max_bytes:
                self._rotate()
            self._write(line)
            self.seq, self.prev = record["seq"], record["hash"]
            return record

    def close(self) -> None:
        with self._lock:
            for fd in (self._fd, self._lock_fd):
                if fd >= 0:
                    os.close(fd)
            self._fd = self._lock_fd = -1

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------------------------------

    def _take_process_lock(self) -> int:
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.directory / f"{self._stem}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise AuditLogError(f"{self.path} is already open for writing (one writer process only)") from e
            raise
        return fd

    def _open_active(self) -> None:
        flags = os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW
        created = not self.path.exists()
        self._fd = os.open(self.path, flags, 0o600)
        if not stat.S_ISREG(os.fstat(self._fd).st_mode):
            raise AuditLogError(f"{self.path} is not a regular file")
        if created:
            _fsync_dir(self.directory)

    def _write(self, data: bytes) -> None:
        start = os.fstat(self._fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
            os.fsync(self._fd)
        except BaseException:
            # A half-written line (ENOSPC, EIO) would sit in the middle of the chain once the next append
            # succeeds; cut it off so the caller's retry starts on a clean line.
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, start)
            raise

    def _rotate(self) -> None:
        """Seal the active segment as ``<stem>-<n+1>.jsonl`` and start an empty one; the chain just goes on."""
        last = max((n for n, _ in _rotated(self.directory, self._stem)), default=0)
        target = self.directory / f"{self._stem}-{last + 1}.jsonl"
        os.rename(self.path, target)
        _fsync_dir(self.directory)
        os.close(self._fd)
        self._fd = -1
        self._open_active()

    def _recover(self) -> tuple[int, str]:
        """(seq, hash) of the last record; a torn tail (crash mid-write) is cut off, or completed if whole."""
        size = os.fstat(self._fd).st_size
        end = size
        torn = b""
        if size and os.pread(self._fd, 1, size - 1) != b"\n":
            end = _rfind_newline(self._fd, size) + 1
            torn = os.pread(self._fd, size - end, end)
        line = _last_line(self._fd, end)
        if line is None:
            seq, prev = self._tail_of_previous_segment()
        else:
            last = _parse(line)
            if last is None or not isinstance(last.get("seq"), int) or not isinstance(last.get("hash"), str):
                raise AuditLogError(f"the last complete line of {self.path} is not an audit record; run verify")
            seq, prev = last["seq"], last["hash"]
        if not torn:
            return seq, prev
        if (candidate := _parse(torn)) and _check(torn, True, seq + 1, prev)[0] is not None:
            # Everything but the newline reached the disk: the record is whole, so keep it.
            self._write(b"\n")
            self.seq, self.prev = candidate["seq"], candidate["hash"]
            self.append("log_recovered", None, file=self.path.name, truncated_bytes=0, completed_seq=self.seq)
            return self.seq, self.prev
        os.ftruncate(self._fd, end)
        os.fsync(self._fd)
        self.seq, self.prev = seq, prev
        self.append("log_recovered", None, file=self.path.name, truncated_bytes=len(torn))
        return self.seq, self.prev

    def _tail_of_previous_segment(self) -> tuple[int, str]:
        older = [p for p in segments(self.directory, self._stem) if p != self.path]
        if not older:
            return 0, ZERO_HASH
        fd = os.open(older[-1], os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        try:
            size = os.fstat(fd).st_size
            line = _last_line(fd, size) if size and os.pread(fd, 1, size - 1) == b"\n" else None
        finally:
            os.close(fd)
        last = _parse(line) if line is not None else None
        if last is None or not isinstance(last.get("seq"), int) or not isinstance(last.get("hash"), str):
            raise AuditLogError(f"{older[-1]} does not end with an audit record; run verify")
        return last["seq"], last["hash"]


def _lines(data_dir: Path) -> Iterator[tuple[Path, int, bytes, bool]]:
    """(segment, line number in it, line without newline, complete?) across all segments in chain order."""
    for path in segments(data_dir):
        with path.open("rb") as fh:
            for n, raw in enumerate(fh, 1):
                complete = raw.endswith(b"\n")
                yield path, n, raw[:-1] if complete else raw, complete


def verify(data_dir: Path) -> VerifyResult:
    """Check the whole chain; stops at the first bad line and says why."""
    prev, count = ZERO_HASH, 0
    for path, n, line, complete in _lines(data_dir):
        good_hash, problem = _check(line, complete, count + 1, prev)
        if good_hash is None:
            return VerifyResult(False, count, count + 1, f"{path.name} line {n}: {problem}", prev if count else None)
        prev, count = good_hash, count + 1
    return VerifyResult(True, count, None, None, prev if count else None)


def _check(line: bytes, complete: bool, expected_seq: int, prev: str) -> tuple[str | None, str | None]:
    """(the record's hash, None) if ``line`` is record ``expected_seq`` following ``prev``, else (None, why)."""
    if not complete:
        return None, "torn line without a newline (a crash mid-write, or a writer is active); reopen the log"
    record = _parse(line)
    if record is None:
        return None, "not a JSON object in the log's exact compact form (edited?)"
    seq, stored_prev, stored_hash = record.get("seq"), record.get("prev"), record.get("hash")
    if type(seq) is not int or not isinstance(stored_prev, str) or not isinstance(stored_hash, str):
        return None, "missing seq, prev or hash"
    if seq != expected_seq:
        return None, f"expected seq {expected_seq}, found {seq} (record deleted, inserted or moved)"
    if stored_prev != prev:
        return None, "prev does not match the previous record's hash"
    if stored_hash != record_hash(record):
        return None, "hash does not match the record's content (edited)"
    return stored_hash, None


def export(data_dir: Path, sandbox_id: str) -> Iterator[dict[str, Any]]:
    """Records of one sandbox in log order. Does not verify (see ``verify``); a torn last line is skipped,
    any other unreadable line raises AuditLogError."""
    for path, n, line, complete in _lines(data_dir):
        record = _parse(line)
        if record is None:
            if not complete:
                return
            raise AuditLogError(f"{path.name} line {n} is not an audit record; run verify")
        if record.get("sandbox_id") == sandbox_id:
            yield record
