"""One way to write a plain file atomically (what is not in the Delta tables: reports, cursors,
pickles, quarantined rows): a hidden temporary file in the target's directory, fsynced, renamed
over the target, then the directory fsynced. A reader sees the old file or the new one, never half
of one; a crash leaves at most a `.<name>.*.tmp` file that no reader globs.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

import pyarrow as pa


def fsync_dir(path: Path) -> None:
    """Make a rename in `path` durable (best effort: some filesystems refuse a directory fsync)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_atomic(path: str | os.PathLike, write: Callable[[IO[bytes]], object]) -> Path:
    """Call `write(handle)` on a temporary file beside `path`, then rename it to `path`."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(target.parent)
    return target


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    return write_atomic(path, lambda handle: handle.write(data))


def write_text_atomic(path: str | os.PathLike, text: str, encoding: str = "utf-8") -> Path:
    return write_bytes_atomic(path, text.encode(encoding))


def write_parquet_atomic(table: pa.Table, path: str | os.PathLike, **options: object) -> Path:
    import pyarrow.parquet as pq

    return write_atomic(path, lambda handle: pq.write_table(table, handle, **options))


__all__ = ["fsync_dir", "write_atomic", "write_bytes_atomic", "write_parquet_atomic", "write_text_atomic"]
