"""The hash-chained audit log: round trip, tamper detection, crash recovery, rotation, export, threads."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import threading
from pathlib import Path

import pytest

from cloche.store.audit_log import ZERO_HASH, AuditLog, AuditLogError, export, record_hash, segments, verify


def _fill(data_dir: Path, n: int = 5) -> list[dict[str, object]]:
    with AuditLog(data_dir / "audit.jsonl") as log:
        return [log.append("file_written", f"sb{i % 2}", path=f"f{i}.py", sha256="0" * 64, size=i) for i in range(n)]


def _lines(data_dir: Path) -> list[bytes]:
    return (data_dir / "audit.jsonl").read_bytes().splitlines(keepends=True)


def _write_lines(data_dir: Path, lines: list[bytes]) -> None:
    (data_dir / "audit.jsonl").write_bytes(b"".join(lines))


def test_append_then_verify_round_trip(tmp_path: Path) -> None:
    records = _fill(tmp_path, 5)
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5]
    assert records[0]["prev"] == ZERO_HASH
    assert all(b["prev"] == a["hash"] for a, b in itertools.pairwise(records))
    first = json.loads(_lines(tmp_path)[0])
    assert first == records[0]
    assert list(first)[:4] == ["seq", "ts", "event", "sandbox_id"] and list(first)[-2:] == ["prev", "hash"]
    assert first["ts"].endswith("Z")
    # The hash is sha256 over the canonical JSON of the record without "hash": checkable by anyone.
    body = {k: v for k, v in first.items() if k != "hash"}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")).encode()
    assert first["hash"] == hashlib.sha256(canonical).hexdigest() == record_hash(first)
    result = verify(tmp_path)
    assert result.ok and result.records == 5 and result.first_bad is None and result.head == records[-1]["hash"]
    assert oct((tmp_path / "audit.jsonl").stat().st_mode & 0o777) == "0o600"


def test_reopen_continues_the_chain(tmp_path: Path) -> None:
    records = _fill(tmp_path, 3)
    with AuditLog(tmp_path) as log:  # a directory means <dir>/audit.jsonl
        assert log.head == (3, records[-1]["hash"])
        nxt = log.append("sandbox_deleted", "sb0", reason="ttl")
    assert nxt["seq"] == 4 and nxt["prev"] == records[-1]["hash"]
    assert verify(tmp_path).ok


def test_empty_or_missing_log_verifies(tmp_path: Path) -> None:
    assert verify(tmp_path / "nowhere") == verify(tmp_path)
    assert verify(tmp_path).ok and verify(tmp_path).records == 0


def test_bad_fields_write_nothing(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "audit.jsonl") as log:
        with pytest.raises(ValueError):
            log.append("x", None, hash="forged")
        with pytest.raises(TypeError):
            log.append("x", None, value=object())
        with pytest.raises(ValueError):
            log.append("x", None, value=float("nan"))
        rec = log.append("archive_extracted", "sb", files=({"path": "a", "sha256": "b"},), note="é")
    assert rec["seq"] == 1 and rec["files"] == [{"path": "a", "sha256": "b"}]
    assert list(export(tmp_path, "sb")) == [rec]
    assert verify(tmp_path).ok


@pytest.mark.parametrize("line", [0, 2, 4])
def test_any_edited_byte_is_detected(tmp_path: Path, line: int) -> None:
    _fill(tmp_path, 5)
    original = _lines(tmp_path)
    for offset in range(len(original[line]) - 1):  # every byte but the newline
        lines = list(original)
        edited = bytearray(lines[line])
        edited[offset] = ord("1") if edited[offset] != ord("1") else ord("2")
        lines[line] = bytes(edited)
        _write_lines(tmp_path, lines)
        result = verify(tmp_path)
        assert not result.ok, f"edit at byte {offset} of line {line + 1} went unnoticed"
        assert result.first_bad == line + 1, (offset, result)
        assert result.records == line


def test_whitespace_only_edit_is_detected(tmp_path: Path) -> None:
    _fill(tmp_path, 3)
    lines = _lines(tmp_path)
    lines[1] = lines[1].replace(b'"seq":2,', b'"seq": 2,')
    _write_lines(tmp_path, lines)
    assert verify(tmp_path).first_bad == 2


def test_deleted_record_is_detected(tmp_path: Path) -> None:
    _fill(tmp_path, 5)
    lines = _lines(tmp_path)
    del lines[2]
    _write_lines(tmp_path, lines)
    result = verify(tmp_path)
    assert not result.ok and result.first_bad == 3 and "expected seq 3" in (result.reason or "")


def test_deleted_first_record_is_detected(tmp_path: Path) -> None:
    _fill(tmp_path, 3)
    _write_lines(tmp_path, _lines(tmp_path)[1:])
    assert verify(tmp_path).first_bad == 1


def test_inserted_copy_is_detected(tmp_path: Path) -> None:
    _fill(tmp_path, 5)
    lines = _lines(tmp_path)
    lines.insert(3, lines[1])
    _write_lines(tmp_path, lines)
    result = verify(tmp_path)
    assert not result.ok and result.first_bad == 4


def test_swapped_records_are_detected(tmp_path: Path) -> None:
    _fill(tmp_path, 5)
    lines = _lines(tmp_path)
    lines[1], lines[2] = lines[2], lines[1]
    _write_lines(tmp_path, lines)
    assert verify(tmp_path).first_bad == 2


def test_rewritten_seq_with_recomputed_hash_still_breaks_the_chain(tmp_path: Path) -> None:
    # Deleting record 2 and renumbering record 3 (with a valid own hash) fails on prev.
    _fill(tmp_path, 4)
    lines = _lines(tmp_path)
    third = json.loads(lines[2])
    third["seq"] = 2
    third["hash"] = record_hash(third)
    _write_lines(tmp_path, [lines[0], (json.dumps(third, separators=(",", ":")) + "\n").encode(), lines[3]])
    result = verify(tmp_path)
    assert result.first_bad == 2 and "prev" in (result.reason or "")


def test_torn_last_line_is_reported_then_recovered(tmp_path: Path) -> None:
    records = _fill(tmp_path, 3)
    # A crash halfway through writing record 4: half a line, no newline.
    half = b'{"seq":4,"ts":"2025-01-01T00:00:00.000000Z","event":"file_wri'
    with (tmp_path / "audit.jsonl").open("ab") as fh:
        fh.write(half)
    result = verify(tmp_path)
    assert not result.ok and result.first_bad == 4 and "torn" in (result.reason or "")
    assert [r["seq"] for r in export(tmp_path, "sb0")] == [1, 3]  # export skips a torn tail

    with AuditLog(tmp_path / "audit.jsonl") as log:
        assert log.head[0] == 4  # records 1-3, then log_recovered
        after = log.append("file_deleted", "sb0", path="f0.py")
    recovered = json.loads(_lines(tmp_path)[3])
    assert recovered["event"] == "log_recovered" and recovered["truncated_bytes"] == len(half)
    assert recovered["prev"] == records[-1]["hash"] and after["seq"] == 5
    assert verify(tmp_path).ok and verify(tmp_path).records == 5


def test_whole_record_missing_only_its_newline_is_kept(tmp_path: Path) -> None:
    _fill(tmp_path, 2)
    lines = _lines(tmp_path)
    _write_lines(tmp_path, [lines[0], lines[1].rstrip(b"\n")])
    with AuditLog(tmp_path / "audit.jsonl"):
        pass
    events = [json.loads(x)["event"] for x in _lines(tmp_path)]
    assert events == ["file_written", "file_written", "log_recovered"]
    assert json.loads(_lines(tmp_path)[2])["completed_seq"] == 2
    assert verify(tmp_path).ok


def test_torn_only_line_recovers_to_a_fresh_chain(tmp_path: Path) -> None:
    (tmp_path / "audit.jsonl").write_bytes(b'{"seq":1,"ts"')
    with AuditLog(tmp_path / "audit.jsonl") as log:
        assert log.head[0] == 1
    first = json.loads(_lines(tmp_path)[0])
    assert first["event"] == "log_recovered" and first["prev"] == ZERO_HASH
    assert verify(tmp_path).ok


def test_corrupt_complete_last_line_refuses_to_open(tmp_path: Path) -> None:
    _fill(tmp_path, 2)
    with (tmp_path / "audit.jsonl").open("ab") as fh:
        fh.write(b"garbage\n")
    with pytest.raises(AuditLogError):
        AuditLog(tmp_path / "audit.jsonl")
    assert verify(tmp_path).first_bad == 3


def test_failed_write_leaves_no_partial_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with AuditLog(tmp_path / "audit.jsonl") as log:
        log.append("a", None)
        real_write = os.write

        def short_then_fail(fd: int, data: bytes | memoryview) -> int:
            real_write(fd, bytes(data)[:10])
            raise OSError(28, "No space left on device")

        monkeypatch.setattr(os, "write", short_then_fail)
        with pytest.raises(OSError):
            log.append("b", None)
        monkeypatch.undo()
        assert log.append("c", None)["seq"] == 2
    assert verify(tmp_path).ok and verify(tmp_path).records == 2


def test_second_writer_process_is_refused(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "audit.jsonl"), pytest.raises(AuditLogError, match="one writer"):
        AuditLog(tmp_path / "audit.jsonl")
    AuditLog(tmp_path / "audit.jsonl").close()  # released on close


def test_rotation_chains_across_files(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "audit.jsonl", max_bytes=1000) as log:
        records = [
            log.append("run_finished", "sb", run_id=f"r{i}", exit_code=0, stdout_sha256="x" * 64) for i in range(30)
        ]
    files = segments(tmp_path)
    assert len(files) > 3 and files[-1].name == "audit.jsonl" and files[0].name == "audit-1.jsonl"
    assert all(f.stat().st_size <= 1000 for f in files)
    assert verify(tmp_path).ok and verify(tmp_path).records == 30
    assert list(export(tmp_path, "sb")) == records
    # Reopening after rotation picks the chain up from the sealed segments if the active one is empty.
    (tmp_path / "audit.jsonl").unlink()
    with AuditLog(tmp_path / "audit.jsonl", max_bytes=1000) as log:
        kept = [r for f in files[:-1] for r in map(json.loads, f.read_bytes().splitlines())]
        assert log.head == (kept[-1]["seq"], kept[-1]["hash"])


def test_deleted_rotated_segment_is_detected(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "audit.jsonl", max_bytes=600) as log:
        for i in range(20):
            log.append("exec_requested", "sb", run_id=f"r{i}", argv=["python", "main.py"], entry="main.py")
    second = segments(tmp_path)[1]
    first_line = len(segments(tmp_path)[0].read_bytes().splitlines())
    second.unlink()
    result = verify(tmp_path)
    assert not result.ok and result.first_bad == first_line + 1


def test_export_filters_by_sandbox_in_order(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "audit.jsonl") as log:
        log.append("sandbox_created", "a", tenant="t", language="python", host_uid=100001)
        log.append("sandbox_created", "b", tenant="t", language="python", host_uid=100002)
        log.append("exec_requested", "a", run_id="r1", argv=["python", "x.py"], entry="x.py")
        log.append("egress_denied", "b", run_id="r2", hosts=["evil.example"])
        log.append("sandbox_deleted", "a", reason="api")
    assert [r["event"] for r in export(tmp_path, "a")] == ["sandbox_created", "exec_requested", "sandbox_deleted"]
    assert [r["seq"] for r in export(tmp_path, "b")] == [2, 4]
    assert list(export(tmp_path, "c")) == []


def test_threads_keep_the_chain_valid(tmp_path: Path) -> None:
    with AuditLog(tmp_path / "audit.jsonl", max_bytes=20_000) as log:

        def work(t: int) -> None:
            for i in range(50):
                log.append("file_written", f"sb{t}", path=f"{t}/{i}", sha256="f" * 64, size=i)

        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert log.head[0] == 400
    result = verify(tmp_path)
    assert result.ok and result.records == 400
    assert [r["path"] for r in export(tmp_path, "sb3")] == [f"3/{i}" for i in range(50)]
