"""Append-only NDJSON writers for the landing files and the dead-letter file.

Landing files are the system of record: `data/raw/<product>/<YYYY-MM-DD>.ndjson`, one line per
ticker, UTC day of the *event* (so a day file holds exactly that day's market, and the file for a
new day starts at midnight by itself). Lines are flushed as they are written (the caller flushes
once per WebSocket frame), so a process crash loses at most the line being written; they are
fsynced at most `fsync_interval_s` later (`sync_if_due`, called on every flush and by the
ingestor's 1 s timer), which bounds what a power loss can take (docs/RELIABILITY.md). A partial
last line left by a crash is closed with a newline on the next open, so it stays one bad line that
readers skip and count, and never swallows the next good one.
"""

from __future__ import annotations

import json
import os
import time
from collections import OrderedDict
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import IO, Any

from cryptovol.config import FSYNC_INTERVAL_S
from cryptovol.ticks import valid_product_id

NS_PER_DAY = 86_400 * 1_000_000_000


@lru_cache(maxsize=64)
def _day_from_index(day_index: int) -> str:
    return datetime.fromtimestamp(day_index * 86_400, UTC).strftime("%Y-%m-%d")


def utc_day(ns: int) -> str:
    """UTC calendar day (`YYYY-MM-DD`) of a UTC-ns timestamp."""
    return _day_from_index(int(ns) // NS_PER_DAY)


def landing_path(raw_dir: Path, product: str, day: str) -> Path:
    return Path(raw_dir) / product / f"{day}.ndjson"


def _open_append(path: Path) -> IO[str]:
    path.parent.mkdir(parents=True, exist_ok=True)
    needs_newline = False
    if path.exists() and path.stat().st_size > 0:
        with open(path, "rb") as fh:
            fh.seek(-1, 2)
            needs_newline = fh.read(1) != b"\n"
    handle = open(path, "a", encoding="utf-8")  # noqa: SIM115 (kept open across writes)
    if needs_newline:  # close the partial line a crash left behind
        handle.write("\n")
    return handle


def dumps_line(record: dict[str, Any]) -> str:
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n"


class _HandleCache:
    """A few open append handles, least recently used closed first."""

    def __init__(self, max_open: int) -> None:
        self.max_open = max_open
        self._handles: OrderedDict[Path, IO[str]] = OrderedDict()
        self._dirty: set[Path] = set()
        self._unsynced: set[Path] = set()

    def get(self, path: Path) -> IO[str]:
        handle = self._handles.get(path)
        if handle is None:
            while len(self._handles) >= self.max_open:
                old_path, old = self._handles.popitem(last=False)
                if old_path in self._unsynced or old_path in self._dirty:
                    old.flush()
                    os.fsync(old.fileno())
                old.close()
                self._dirty.discard(old_path)
                self._unsynced.discard(old_path)
            handle = self._handles[path] = _open_append(path)
        else:
            self._handles.move_to_end(path)
        self._dirty.add(path)
        return handle

    def flush(self) -> None:
        for path in self._dirty:
            handle = self._handles.get(path)
            if handle is not None:
                handle.flush()
        self._unsynced |= self._dirty
        self._dirty.clear()

    def sync(self) -> None:
        """fsync every file written since the last sync (after `flush`)."""
        for path in self._unsynced:
            handle = self._handles.get(path)
            if handle is not None:
                os.fsync(handle.fileno())
        self._unsynced.clear()

    def close(self) -> None:
        self.flush()
        self.sync()
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()
        self._dirty.clear()

    def paths(self) -> list[Path]:
        return list(self._handles)


class LandingWriter:
    """Writes landing lines to `raw_dir/<product>/<UTC day of event>.ndjson`."""

    def __init__(
        self, raw_dir: Path, *, max_open: int = 16, fsync_interval_s: float = FSYNC_INTERVAL_S
    ) -> None:
        self.raw_dir = Path(raw_dir)
        self._cache = _HandleCache(max_open)
        self._paths: dict[tuple[str, int], Path] = {}
        self.lines = 0
        self.fsync_interval_s = fsync_interval_s
        self._last_sync = time.monotonic()
        self.syncs = 0

    def path_for(self, product: str, event_time_ns: int) -> Path:
        key = (product, int(event_time_ns) // NS_PER_DAY)
        path = self._paths.get(key)
        if path is None:
            if not valid_product_id(product):
                raise ValueError(f"unsafe product id for a path: {product!r}")
            if len(self._paths) > 1024:
                self._paths.clear()
            path = self._paths[key] = landing_path(self.raw_dir, product, utc_day(event_time_ns))
        return path

    def write(self, product: str, event_time_ns: int, record: dict[str, Any]) -> Path:
        """Append one line (not flushed yet: call `flush()` at the end of the frame/batch)."""
        path = self.path_for(product, event_time_ns)
        self._cache.get(path).write(dumps_line(record))
        self.lines += 1
        return path

    def flush(self) -> None:
        """Hand written lines to the OS (a process crash no longer loses them), fsync if due."""
        self._cache.flush()
        self.sync_if_due()

    def sync_if_due(self) -> None:
        """fsync what was flushed if the last fsync is `fsync_interval_s` old (a power loss then
        loses at most that window); cheap when nothing was written."""
        now = time.monotonic()
        if now - self._last_sync >= self.fsync_interval_s:
            self._cache.flush()
            self._cache.sync()
            self._last_sync = now
            self.syncs += 1

    def close(self) -> None:
        self._cache.close()

    def __enter__(self) -> LandingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class DeadLetterWriter:
    """Writes dead-letter records to `deadletter_dir/<UTC day of receipt>.ndjson`, flushed per line.

    The receive day is used because a bad frame may have no usable event time.
    """

    def __init__(self, deadletter_dir: Path) -> None:
        self.deadletter_dir = Path(deadletter_dir)
        self._cache = _HandleCache(max_open=2)
        self.lines = 0

    def write(self, record: dict[str, Any], receive_time_ns: int) -> Path:
        path = self.deadletter_dir / f"{utc_day(receive_time_ns)}.ndjson"
        handle = self._cache.get(path)
        # ASCII JSON: a dead letter's detail may quote anything the input held (lone surrogates too).
        handle.write(json.dumps(record, separators=(",", ":")) + "\n")
        handle.flush()
        self.lines += 1
        return path

    def sync(self) -> None:
        """fsync what was written since the last sync (the ingestor calls this every second)."""
        self._cache.flush()
        self._cache.sync()

    def close(self) -> None:
        self._cache.close()
