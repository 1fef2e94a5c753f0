"""`OrderedWriter`: lake writes off the polling thread, committable only once written, in order."""

from __future__ import annotations

import threading
import time

import pytest

from cryptovol.runtime import OrderedWriter


def test_tokens_come_back_in_submission_order_and_only_once_written():
    gate = threading.Event()
    written: list[int] = []
    writer: OrderedWriter[int] = OrderedWriter("test", max_pending=4)
    try:
        writer.submit(lambda: (gate.wait(10), written.append(1)), 1)
        writer.submit(lambda: written.append(2), 2)
        assert writer.finished() == []  # the first write is still running: nothing committable
        assert not writer.ready()
        gate.set()
        deadline = time.monotonic() + 10
        while not writer.ready() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert writer.ready()  # the oldest write is done: a step may commit its offsets now
        assert writer.drain() == [1, 2]
        assert written == [1, 2]
        assert writer.finished() == [] and writer.pending() == 0 and not writer.ready()
    finally:
        writer.close()


def test_a_failed_write_is_raised_and_nothing_after_it_is_handed_back_or_written():
    writer: OrderedWriter[str] = OrderedWriter("test", max_pending=4)
    written: list[str] = []
    try:
        writer.submit(lambda: written.append("first"), "first")
        writer.submit(lambda: 1 / 0, "broken")
        writer.submit(lambda: written.append("after"), "after")
        assert writer.finished() in ([], ["first"])  # racing the thread: at most the good one
        with pytest.raises(ZeroDivisionError):
            writer.drain()
        assert writer.pending() == 1  # "after" stays uncollected: its offsets are never committed
        with pytest.raises(RuntimeError, match="earlier lake write failed"):
            writer.drain()
        assert written == ["first"]  # nothing is written after a failed write
    finally:
        writer.close()


def test_submit_blocks_while_max_pending_writes_wait_behind_the_running_one():
    gate = threading.Event()
    writer: OrderedWriter[int] = OrderedWriter("test", max_pending=1)
    submitted: list[int] = []

    def submit_three() -> None:
        for i in range(3):
            writer.submit(lambda: gate.wait(10), i)
            submitted.append(i)

    thread = threading.Thread(target=submit_three)
    try:
        thread.start()
        deadline = time.monotonic() + 10
        while len(submitted) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        thread.join(0.3)
        # write 0 runs, write 1 waits behind it; write 2 must wait for room
        assert submitted == [0, 1] and thread.is_alive()
        gate.set()
        thread.join(10)
        assert submitted == [0, 1, 2]
        assert writer.drain() == [0, 1, 2]
    finally:
        gate.set()
        writer.close()


def test_written_merges_the_offsets_of_finished_writes_newest_last_and_only_those():
    gate = threading.Event()
    writer: OrderedWriter[dict] = OrderedWriter("test", max_pending=4)
    try:
        writer.submit(lambda: None, {0: 10, 1: 5})
        writer.submit(lambda: None, {0: 20})
        writer.wait()
        writer.submit(lambda: gate.wait(10), {0: 30, 1: 9})  # still running: not committable yet
        assert writer.written() == {0: 20, 1: 5}
        assert writer.written() == {}  # handed back once
        gate.set()
        writer.wait()
        assert writer.written() == {0: 30, 1: 9}
    finally:
        gate.set()
        writer.close()
