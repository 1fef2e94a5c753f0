"""The event-time policy: ONE rule for which ticks become feature rows, in which order, applied
by the streaming engine (`cryptovol.stream.engine`) and the batch featurizer (`cryptovol.batch`).

The rule, per product, over the ticks in arrival order (the Kafka offset order of the product's
partition, which is the line order of the landing file: both are written by the ingestor in the
order the exchange frames arrived):

1. A tick whose event time is earlier than `max(event time of the product's earlier arrivals) -
   lateness` is **late**. The stream dead-letters it (`late_tick`, counted); the batch path skips
   it (it stays in the landing file, nothing is lost).
2. A tick whose identity `(event_time_ns, sequence)` already arrived is a **duplicate**
   (at-least-once delivery upstream) and is dropped.
3. Every other tick becomes one feature row, emitted in event-time order (ties: arrival order).

`LATENESS_S = 0` is the default, chosen for latency: an in-order tick is featurized the moment it
arrives (no reorder buffer, no watermark wait); a tick that arrives after a newer tick of the same
product is late. What a late tick costs: its own row (it gets no prediction, its price is missing
from later rows' as-of lookups, grid seconds and tick rates; the features stay well defined
because they are all computed over the admitted ticks only). Exchange ticks of one product arrive
in order on one WebSocket, so late ticks are rare: they come from a reconnect or a replay mixing
sources. A larger lateness trades latency (every tick waits that long) for fewer late ticks;
stream == batch holds for any lateness given to both, except that the stream's idle release (a
product silent for `idle_release_s` has its buffer emitted early) can make a later straggler late
that the batch path would have admitted. With lateness 0 nothing waits, so nothing is released
early and the two agree row for row.

One edge of the batch side: landing files are split by the UTC day of the event time, so a file
does not know ticks of the next day's file that arrived before its own last lines; a tick late
only because of such a next-day tick (a straggler within `lateness` of midnight) is admitted by
the batch path. The stream is the reference there.
"""

from __future__ import annotations

import numpy as np

#: The default lateness (seconds): in-order ticks are released at once.
LATENESS_S = 0.0


def admitted_mask(
    event_time_ns: np.ndarray,
    sequence: np.ndarray,
    *,
    lateness_ns: int = 0,
    prior_max_ns: int | None = None,
) -> np.ndarray:
    """Which of one product's ticks (given in arrival order) the rule admits: not late, not a duplicate.

    `prior_max_ns` is the greatest event time that arrived before these ticks (e.g. the previous
    day's tail), if any.
    """
    t = np.asarray(event_time_ns, dtype=np.int64)
    n = len(t)
    if n == 0:
        return np.zeros(0, dtype=bool)
    # the greatest event time among the earlier arrivals (late and duplicate ticks never raise it)
    before = np.empty(n, dtype=np.int64)
    before[0] = np.iinfo(np.int64).min if prior_max_ns is None else int(prior_max_ns)
    if n > 1:
        np.maximum.accumulate(t[:-1], out=before[1:])
        np.maximum(before[1:], before[0], out=before[1:])
    late = (before != np.iinfo(np.int64).min) & (t < before - int(lateness_ns))
    kept = np.flatnonzero(~late)
    ids = np.stack([t[kept], np.asarray(sequence, dtype=np.int64)[kept]], axis=1)
    _, first = np.unique(ids, axis=0, return_index=True)  # first arrival of each identity
    mask = np.zeros(n, dtype=bool)
    mask[kept[first]] = True
    return mask


__all__ = ["LATENESS_S", "admitted_mask"]
