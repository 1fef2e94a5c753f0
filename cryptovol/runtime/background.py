"""Lake writes off the consumer's thread, in order, with the offsets they make committable.

A Delta commit of a flush's rows takes tens to hundreds of milliseconds (most of it in Rust with
the GIL released). Written on the polling thread, every tick that arrives during the write waits
for it: at the live rate that stall is what the end-to-end p95 sees (`bench/bench_e2e.py`).
`OrderedWriter` runs each flush's write on one background thread instead. Each write carries a
token (the consumer offsets its rows cover); `finished()` hands back the tokens of the writes that
completed, in submission order (`written()` merges them into the offsets to commit), and only
those may be committed, so the guarantee stays the
Runner's: nothing is committed before it is durable. A failed write raises from `finished()` (or
`drain()`) on the consumer's thread, nothing after it is handed back, and no later write runs.

At most `max_pending` writes wait behind the running one; a further `submit` blocks until there is
room (backpressure: the lake can fall behind by about one flush, never by an unbounded queue).
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Generic, TypeVar

Token = TypeVar("Token")


class OrderedWriter(Generic[Token]):
    """One background writer thread; tokens of finished writes come back in submission order."""

    def __init__(self, name: str, *, max_pending: int = 1) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
        self._queue: collections.deque[tuple[Future, Token]] = collections.deque()
        self.max_pending = max_pending
        self._failed = False  # set on the writer thread: every later write is skipped

    def submit(self, write: Callable[[], object], token: Token) -> None:
        """Queue `write` (runs after every earlier one); blocks while the queue is full."""
        undone = [future for future, _ in self._queue if not future.done()]
        for future in undone[: max(0, len(undone) - self.max_pending)]:
            future.exception()  # waits; a failure is raised by `finished()` / `drain()`
        self._queue.append((self._pool.submit(self._run, write), token))

    def _run(self, write: Callable[[], object]) -> None:
        """On the writer thread (one, so in order): no write runs after one that failed."""
        if self._failed:
            raise RuntimeError("not written: an earlier lake write failed")
        try:
            write()
        except BaseException:
            self._failed = True
            raise

    def finished(self) -> list[Token]:
        """Tokens of the writes done since the last call, oldest first; raises a write's error."""
        out: list[Token] = []
        while self._queue and self._queue[0][0].done():
            future, token = self._queue.popleft()
            future.result()
            out.append(token)
        return out

    def wait(self) -> None:
        """Block until every queued write is done (their tokens stay queued for `finished()`);
        raises a failed write's error."""
        for future, _ in list(self._queue):
            future.result()

    def drain(self) -> list[Token]:
        """Wait for every queued write; their tokens, oldest first (raises a write's error)."""
        out: list[Token] = []
        while self._queue:
            future, token = self._queue.popleft()
            future.result()
            out.append(token)
        return out

    def written(self) -> dict:
        """What may be committed now: the tokens of the writes finished since the last call, which
        must be mappings (partition -> next offset), merged oldest to newest. Raises a failed
        write's error, and then hands nothing back."""
        merged: dict = {}
        for token in self.finished():
            merged.update(token)
        return merged

    def ready(self) -> bool:
        """True when the oldest queued write is done (`finished()` has a token to hand back)."""
        return bool(self._queue) and self._queue[0][0].done()

    def pending(self) -> int:
        return len(self._queue)

    def close(self) -> None:
        """Let queued writes finish (whole files, never half-written ones) and stop the thread."""
        self._pool.shutdown(wait=True)
