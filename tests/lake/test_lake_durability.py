"""A Delta write is durable when it returns: every file the new table version references, its
directories and the version's log entry are fsynced (delta-rs's local store renames without an
fsync, and the featurizer/scorer commit Kafka offsets right after the write)."""

from __future__ import annotations

import json
import os
import urllib.parse
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from cryptovol import delta
from cryptovol.featureset import FEATURE_NAMES

NS = 1_000_000_000
T0 = 1_767_308_400 * NS  # 2026-01-01T23:00Z: the rows cross midnight -> two date partitions


def _feature_rows(n: int, products: tuple[str, ...] = ("BTC-USD", "ETH-USD")) -> pa.Table:
    from cryptovol.lake import feature_table

    frames = []
    for k, product in enumerate(products):
        frame = pd.DataFrame({"product_id": product,
                              "event_time_ns": T0 + np.arange(n, dtype=np.int64) * 10 * NS,
                              "sequence": np.arange(n, dtype=np.int64)})
        for name in FEATURE_NAMES:
            frame[name] = np.random.default_rng(k).random(n)
        frames.append(frame)
    table = feature_table(pd.concat(frames, ignore_index=True))
    offsets = pa.array(np.arange(table.num_rows, dtype=np.int64))
    return table.set_column(table.schema.get_field_index("source_offset"), "source_offset", offsets)


@pytest.fixture
def synced(monkeypatch) -> set[Path]:
    """Paths `os.fsync` was called on from now on (resolved through /proc/self/fd)."""
    paths: set[Path] = set()
    real = os.fsync

    def record(fd: int) -> None:
        paths.add(Path(os.readlink(f"/proc/self/fd/{fd}")))
        real(fd)

    monkeypatch.setattr(os, "fsync", record)
    return paths


def _added_files(root: Path, version: int) -> list[Path]:
    log_file = root / "_delta_log" / f"{version:020d}.json"
    actions = [json.loads(line) for line in log_file.read_text().splitlines() if line.strip()]
    return [root / urllib.parse.unquote(a["add"]["path"]) for a in actions if "add" in a]


def test_an_append_returns_only_once_its_files_and_log_entry_are_fsynced(tmp_path, synced):
    root = tmp_path / "features"
    delta.ensure_table(root, "features")
    synced.clear()  # only what the append itself syncs counts
    commit = delta.append_exactly_once(root, "features", _feature_rows(720), "g:ticks.raw")
    files = _added_files(root, commit.version)
    assert len(files) >= 4  # two products x two dates
    log_entry = root / "_delta_log" / f"{commit.version:020d}.json"
    assert set(files) | {log_entry} <= synced
    # ... and the directories holding them, so the renames survive too
    dirs = {f.parent for f in files} | {f.parent.parent for f in files} | {root, log_entry.parent}
    assert dirs <= synced


def test_a_partition_rebuild_is_fsynced_too(tmp_path, synced):
    root = tmp_path / "features"
    rows = _feature_rows(100, products=("BTC-USD",))
    delta.append_exactly_once(root, "features", rows, "g:ticks.raw")
    day = rows["date"][0].as_py()
    day_rows = rows.filter(pa.compute.equal(rows["date"], day))
    synced.clear()
    commit = delta.replace_partition(root, day_rows, "BTC-USD", day)
    files = _added_files(root, commit.version)
    assert files and set(files) | {root / "_delta_log" / f"{commit.version:020d}.json"} <= synced


def test_sync_version_names_a_missing_version_instead_of_passing_silently(tmp_path):
    root = tmp_path / "features"
    delta.ensure_table(root, "features")
    with pytest.raises(FileNotFoundError):
        delta.sync_version(root, 99)
