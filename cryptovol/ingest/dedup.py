"""Duplicate detection by content, bounded in memory.

The exchange restarts `sequence_num` on every connection and opens each subscription with a
snapshot that can repeat the last update, so sequence numbers cannot identify a repeat; the tick's
content (`Tick.content_key`: product, event time, prices, quantities) can.
"""

from __future__ import annotations

import json
import os
from collections import deque
from collections.abc import Hashable, Iterable
from pathlib import Path


class RecentKeys:
    """The last `capacity` keys seen for each product; `seen(product, key)` records and reports."""

    def __init__(self, capacity: int = 4096) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self._order: dict[str, deque[Hashable]] = {}
        self._keys: dict[str, set[Hashable]] = {}

    def seen(self, product: str, key: Hashable) -> bool:
        """True if `key` is among the product's recent keys; otherwise remember it and return False."""
        keys = self._keys.get(product)
        if keys is None:
            keys = self._keys[product] = set()
            self._order[product] = deque()
        if key in keys:
            return True
        order = self._order[product]
        if len(order) >= self.capacity:
            keys.discard(order.popleft())
        order.append(key)
        keys.add(key)
        return False

    def __len__(self) -> int:
        return sum(len(k) for k in self._keys.values())


def seed_from_landing(
    keys: RecentKeys, raw_dir: Path, products: Iterable[str], *, tail_bytes: int = 256 * 1024
) -> int:
    """Remember the content keys of the last lines landed for `products` (newest day file each).

    After an ingestor restart the exchange's opening snapshot may repeat the last tick landed by the
    previous run; seeding the recent keys from the files makes that a duplicate, as within a run.
    Returns how many keys were seeded. Unreadable lines are ignored (a torn last line, say).
    """
    from cryptovol.ticks import TickError, tick_from_landing

    seeded = 0
    for product in products:
        folder = Path(raw_dir) / product
        days = sorted(folder.glob("*.ndjson")) if folder.is_dir() else []
        if not days:
            continue
        with open(days[-1], "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - tail_bytes))
            lines = fh.read().splitlines()
        if size > tail_bytes:
            lines = lines[1:]  # the first one is probably cut
        for line in lines[-keys.capacity:]:
            try:
                tick = tick_from_landing(json.loads(line))
            except (TickError, ValueError, TypeError, KeyError):
                continue
            if not keys.seen(tick.product_id, tick.content_key):
                seeded += 1
    return seeded
