"""A durable, ordered spool for records the broker could not take (yet).

One append-only NDJSON file (`spool.ndjson`) plus a cursor file (`spool.cursor`, the byte offset of
the first record not yet acknowledged by the broker). Records are read back in exactly the order
they were appended, so per-key (per-product) order holds when the spool is drained before newer
records. The cursor only moves past a record once the broker has acknowledged it and every record
before it; a crash in between means a re-send (at-least-once), never a loss. When everything is
acknowledged the files are truncated, so an idle spool costs nothing.

Power loss: appends are fsynced; the cursor is written atomically (temp + rename) and fsynced at
most `fsync_interval_s` after it moved, so a power cut can only move it back (re-sends, never a
loss). Whatever state the files are found in at start is repaired instead of stopping the
publisher: a torn last record is cut, an unreadable cursor restarts from 0, a cursor pointing into
the middle of a record moves back to that record's start, and a spooled line that cannot be read
is moved to `spool.bad.ndjson` (kept, counted in `bad_lines`).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from cryptovol.config import FSYNC_INTERVAL_S

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SpoolRecord:
    topic: str
    key: str | None
    value: bytes

    def to_line(self) -> bytes:
        obj = {"t": self.topic, "k": self.key, "v": self.value.decode("utf-8")}
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8") + b"\n"

    @classmethod
    def from_line(cls, line: bytes) -> SpoolRecord:
        obj = json.loads(line)
        return cls(obj["t"], obj["k"], obj["v"].encode("utf-8"))


class SpoolBusyError(RuntimeError):
    """Another process holds the spool (two ingestors on one data dir would interleave it)."""


class Spool:
    """Append, read back in order from the acknowledged position, acknowledge, truncate when done.

    One process at a time: the spool file is locked (`flock`) for the lifetime of the object.
    """

    def __init__(
        self, spool_dir: Path, *, fsync: bool = True, fsync_interval_s: float = FSYNC_INTERVAL_S
    ) -> None:
        self.dir = Path(spool_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.path = self.dir / "spool.ndjson"
        self.cursor_path = self.dir / "spool.cursor"
        self.bad_path = self.dir / "spool.bad.ndjson"
        self.fsync = fsync
        self.fsync_interval_s = fsync_interval_s
        self._cursor_synced_at = time.monotonic()
        self._cursor_dirty = False
        self.bad_lines = 0
        self._fh = open(self.path, "ab+")  # noqa: SIM115 (owned by the spool)
        try:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            self._fh.close()
            raise SpoolBusyError(
                f"spool {self.path} is in use by another process (another ingestor on the same data "
                "dir?); give each ingestor its own CRYPTOVOL_DATA_DIR"
            ) from exc
        self._repair_tail()
        self.acked_offset = self._read_cursor()
        self.pending = self._repair_lines_from(self.acked_offset)

    # -- recovery -------------------------------------------------------------------------------

    def _repair_tail(self) -> None:
        """Drop a partial last line (a crash mid-append): its record was never acknowledged as spooled."""
        size = self._end()
        if size == 0:
            return
        self._fh.seek(size - 1)
        if self._fh.read(1) == b"\n":
            return
        self._fh.seek(0)
        data = self._fh.read()
        keep = data.rfind(b"\n") + 1
        self._fh.truncate(keep)
        self._fh.flush()

    def _read_cursor(self) -> int:
        """The acknowledged offset, repaired: unreadable -> 0, mid-record -> that record's start."""
        try:
            offset = int(self.cursor_path.read_text().strip() or 0)
        except (OSError, ValueError):
            if self.cursor_path.exists():
                log.warning("spool cursor %s unreadable; re-sending the spool from its start",
                            self.cursor_path)
            offset = 0
        if not 0 <= offset <= self._end():  # never skip records on a bad cursor: re-send instead
            log.warning("spool cursor %d outside the spool (%d bytes); re-sending from its start",
                        offset, self._end())
            offset = 0
        if offset > 0:
            self._fh.seek(offset - 1)
            if self._fh.read(1) != b"\n":  # torn: inside a record; go back to its start
                self._fh.seek(0)
                start = self._fh.read(offset).rfind(b"\n") + 1
                log.warning("spool cursor %d points inside a record; moved back to %d", offset, start)
                offset = start
        return offset

    def _repair_lines_from(self, offset: int) -> int:
        """Count the records from `offset`; move unreadable lines to `spool.bad.ndjson` first."""
        self._fh.seek(offset)
        count, bad = 0, False
        for line in self._fh:
            count += 1
            try:
                SpoolRecord.from_line(line)
            except (ValueError, KeyError, TypeError, AttributeError):
                bad = True
                break
        if not bad:
            return count
        self._fh.seek(offset)
        good, rejects = [], []
        for line in self._fh:
            try:
                SpoolRecord.from_line(line)
                good.append(line)
            except (ValueError, KeyError, TypeError, AttributeError):
                rejects.append(line)
        with open(self.bad_path, "ab") as fh:
            fh.writelines(rejects)
            fh.flush()
            os.fsync(fh.fileno())
        self.bad_lines += len(rejects)
        log.warning("spool: %d unreadable records moved to %s", len(rejects), self.bad_path)
        self._fh.seek(0)
        head = self._fh.read(offset)
        self._fh.truncate(0)
        self._fh.write(head + b"".join(good))
        self._fh.flush()
        os.fsync(self._fh.fileno())
        return len(good)

    def _end(self) -> int:
        self._fh.seek(0, os.SEEK_END)
        return self._fh.tell()

    # -- API --------------------------------------------------------------------------------------

    @property
    def end_offset(self) -> int:
        return self._end()

    def append(self, records: Iterable[SpoolRecord]) -> int:
        """Append records durably (flushed, fsynced); returns how many."""
        data = b"".join(r.to_line() for r in records)
        if not data:
            return 0
        self._fh.seek(0, os.SEEK_END)
        self._fh.write(data)
        self._fh.flush()
        if self.fsync:
            os.fsync(self._fh.fileno())
        count = data.count(b"\n")
        self.pending += count
        return count

    def read(self, offset: int, max_records: int = 500) -> list[tuple[SpoolRecord, int]]:
        """Up to `max_records` records from byte `offset`, each with the offset just after it."""
        self._fh.seek(offset)
        out = []
        position = offset
        for line in self._fh:
            if not line.endswith(b"\n"):
                break
            position += len(line)
            out.append((SpoolRecord.from_line(line), position))  # lines were checked at open
            if len(out) >= max_records:
                break
        return out

    def ack(self, offset: int, count: int) -> bool:
        """The records before byte `offset` are acknowledged (`count` of them since the last ack).

        Returns True when that emptied the spool and it was truncated (offsets restart at 0).
        """
        if offset <= self.acked_offset:
            return False
        self.acked_offset = offset
        self.pending = max(0, self.pending - count)
        if self.pending == 0 and offset >= self._end():
            self._truncate()
            return True
        self._write_cursor()
        return False

    def _write_cursor(self, *, sync: bool = False) -> None:
        """Atomic rename; fsynced when `sync` or when the last fsync is `fsync_interval_s` old."""
        tmp = self.cursor_path.with_suffix(".tmp")
        now = time.monotonic()
        durable = self.fsync and (sync or now - self._cursor_synced_at >= self.fsync_interval_s)
        with open(tmp, "w") as fh:
            fh.write(str(self.acked_offset))
            if durable:
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, self.cursor_path)
        if durable:
            _fsync_dir(self.dir)
            self._cursor_synced_at = now
        self._cursor_dirty = not durable

    def sync_cursor_if_due(self) -> None:
        """fsync a cursor that moved since its last fsync, once that is `fsync_interval_s` old."""
        if self._cursor_dirty and time.monotonic() - self._cursor_synced_at >= self.fsync_interval_s:
            self._write_cursor(sync=True)

    def _truncate(self) -> None:
        # Both durable at once: a stale non-zero cursor over a refilled spool would skip records.
        self._fh.truncate(0)
        self._fh.flush()
        if self.fsync:
            os.fsync(self._fh.fileno())
        self.acked_offset = 0
        self.pending = 0
        self._write_cursor(sync=True)

    def close(self) -> None:
        if self._fh.closed:
            return
        self._write_cursor(sync=True)
        self._fh.close()  # releases the lock


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
