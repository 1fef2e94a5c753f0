"""The shared process lifecycle (`cryptovol.runtime`): a signal stops the loop gracefully, the
offsets are committed only after the work is durable, and a step that fails is never committed.

The real processes (ingest, featurize, score, drift monitor) are covered end to end by their own
tests; these pin the ordering guarantees every one of them relies on."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from cryptovol.runtime import Cadence, Runner, StopSignal, every


class Recorder:
    """A step that logs every call; `fail_work_at` / `fail_durable_at` make a call raise."""

    def __init__(self, *, rows_per_work: int = 1, fail_work_at: int | None = None,
                 fail_durable_at: int | None = None, on_work=None) -> None:
        self.calls: list[str] = []
        self.rows_per_work = rows_per_work
        self.fail_work_at = fail_work_at
        self.fail_durable_at = fail_durable_at
        self.on_work = on_work
        self.works = self.durables = 0
        self.buffered = 0  # rows taken, not yet durable
        self.durable_rows = 0
        self.committed_rows = 0

    def work(self) -> None:
        self.works += 1
        self.calls.append("work")
        if self.works == self.fail_work_at:
            raise RuntimeError("work failed")
        self.buffered += self.rows_per_work
        if self.on_work is not None:
            self.on_work(self)

    def pending(self) -> int:
        return self.buffered

    def make_durable(self, final: bool = False) -> None:
        self.durables += 1
        self.calls.append("durable-final" if final else "durable")
        if self.durables == self.fail_durable_at:
            raise RuntimeError("delivery failed")
        self.durable_rows += self.buffered
        self.buffered = 0

    def commit(self) -> None:
        self.calls.append("commit")
        assert self.calls[-2].startswith("durable"), "commit without a durable step just before it"
        self.committed_rows = self.durable_rows

    def report(self, final: bool) -> None:
        self.calls.append("final" if final else "report")

    def close(self) -> None:
        self.calls.append("close")


class Clock:
    """A monotonic clock that advances one second per reading (deterministic cadences)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.0
        return self.now


def test_sigterm_stops_the_loop_with_a_last_durable_flush_then_commit():
    step = Recorder(on_work=lambda s: os.kill(os.getpid(), signal.SIGTERM) if s.works == 3 else None)
    before = signal.getsignal(signal.SIGTERM)
    with StopSignal(name="test") as stop:
        Runner(step, stop=stop.event, cadence=Cadence(every_s=1e9)).run()
    assert stop.received == signal.SIGTERM
    assert signal.getsignal(signal.SIGTERM) is before  # the previous handler is back
    assert step.works == 3  # no more work after the signal
    assert step.calls[-4:] == ["durable-final", "commit", "close", "final"]
    assert step.committed_rows == 3 and step.buffered == 0


def test_sigint_also_stops_and_runs_the_callback():
    stopped = []
    step = Recorder(on_work=lambda s: os.kill(os.getpid(), signal.SIGINT) if s.works == 2 else None)
    with StopSignal(on_stop=lambda: stopped.append(True)) as stop:
        Runner(step, stop=stop.event).run()
    assert stopped == [True] and step.works == 2 and step.committed_rows == 2


def test_a_failing_durable_step_is_never_committed():
    step = Recorder(fail_durable_at=2)
    with pytest.raises(RuntimeError, match="delivery failed"):
        Runner(step, cadence=Cadence(every_s=1.0), clock=Clock()).run()
    # The first flush committed; the failed one did not, and no last flush ran after it.
    assert step.calls.count("commit") == 1
    assert step.calls[-3:] == ["durable", "close", "final"]
    assert step.committed_rows == step.durable_rows < step.works


def test_a_failing_work_step_is_never_made_durable_or_committed():
    step = Recorder(fail_work_at=4)
    with pytest.raises(RuntimeError, match="work failed"):
        Runner(step, cadence=Cadence(every_s=1e9)).run()
    assert not any(c.startswith("durable") or c == "commit" for c in step.calls)
    assert step.calls[-2:] == ["close", "final"] and step.committed_rows == 0


def test_cadence_rows_and_time_triggers():
    step = Recorder(rows_per_work=10, on_work=lambda s: stop.set() if s.works == 7 else None)
    stop = threading.Event()
    Runner(step, stop=stop, cadence=Cadence(every_s=1e9, rows=25)).run()
    # rows 10, 20, 30 -> flush; 10, 20, 30 -> flush; 10 -> the last flush on stop
    assert [c for c in step.calls if c in ("work", "durable", "durable-final")] == (
        ["work"] * 3 + ["durable"]) * 2 + ["work", "durable-final"]
    assert step.committed_rows == 70


def test_cadence_without_idle_flushes_count_from_the_first_pending_row():
    cadence = Cadence(every_s=2.0, idle=False)
    assert not cadence.due(since_flush_s=100.0, pending=0, since_pending_s=0.0)  # nothing to do
    assert not cadence.due(since_flush_s=100.0, pending=5, since_pending_s=1.0)  # too fresh
    assert cadence.due(since_flush_s=100.0, pending=5, since_pending_s=2.0)
    idle = Cadence(every_s=2.0)
    assert idle.due(since_flush_s=2.0, pending=0, since_pending_s=0.0)  # commits dead-lettered offsets


def test_duration_stops_the_loop_cleanly():
    step = Recorder()
    Runner(step, duration_s=5.0, clock=Clock(), cadence=Cadence(every_s=1e9)).run()
    assert step.works >= 1 and step.calls[-4:] == ["durable-final", "commit", "close", "final"]


def test_a_signal_inside_an_interruptible_block_exits_at_once():
    with StopSignal() as stop:
        with pytest.raises(SystemExit) as exc, stop.interruptible():
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs at the next bytecode
            pytest.fail("the signal did not interrupt the block")
        assert exc.value.code == 0 and stop.is_set()


def test_every_keeps_a_fixed_cadence_and_stops_between_rounds():
    waits: list[float] = []
    rounds: list[int] = []

    class Stop(threading.Event):
        def wait(self, timeout=None):
            waits.append(timeout)
            return False

    stop = Stop()

    def job():
        rounds.append(1)
        if len(rounds) == 3:
            stop.set()

    assert every(job, every_s=10.0, stop=stop, clock=Clock()) == 3
    # Each round reads the clock twice (start, end): one "second" of work counts towards the 10 s.
    assert waits == [9.0, 9.0]


def test_installing_from_another_thread_is_a_no_op():
    before = signal.getsignal(signal.SIGTERM)
    result = []
    thread = threading.Thread(target=lambda: result.append(StopSignal().install()))
    thread.start()
    thread.join()
    assert result and signal.getsignal(signal.SIGTERM) is before
