"""The slot pool: waiters before hungry runs, runs by priority then arrival."""

from __future__ import annotations

import asyncio

import pytest

from agentplex.engine.slots import Slot, SlotPool


class Run:
    """A run with ``ready`` nodes that takes one slot per node it starts."""

    def __init__(self, pool: SlotPool, name: str, ready: int, log: list[str], arrival: int) -> None:
        self.pool, self.name, self.ready, self.log = pool, name, ready, log
        self.arrival = arrival
        self.slots: list[Slot] = []

    def dispatch(self) -> None:
        while self.ready:
            if not self.pool.free():
                self.pool.want(self, 0, 0, self.arrival)
                return
            self.pool.busy += 1
            self.slots.append(Slot(True))
            self.ready -= 1
            self.log.append(self.name)


async def test_a_slot_waiter_cancelled_after_a_release_dropped_it() -> None:
    """Regression: work cancelled (a timeout, fail-fast) while queued for a
    slot, whose waiter a release in the same loop turn had already dropped,
    raised ValueError from the cancellation instead of CancelledError."""
    pool = SlotPool(1)
    holder = Slot(False)
    await pool.acquire(holder)  # the only slot
    queued = asyncio.create_task(pool.acquire(Slot(False)))
    await asyncio.sleep(0)
    assert len(pool.waiters) == 1
    queued.cancel()  # its waiter future is cancelled now, its except clause runs later
    pool.release(holder)  # ...after this release has popped and skipped the cancelled waiter
    with pytest.raises(asyncio.CancelledError):
        await queued
    assert pool.busy == 0
    assert not pool.waiters


async def test_started_work_goes_before_hungry_runs() -> None:
    pool = SlotPool(1)
    log: list[str] = []
    holder = Slot(False)
    await pool.acquire(holder)
    hungry = Run(pool, "new", 1, log, 0)
    pool.want(hungry)
    retrying = Slot(False)
    waiting = asyncio.create_task(pool.acquire(retrying))
    await asyncio.sleep(0)
    pool.release(holder)
    await waiting
    assert retrying.held
    assert log == []  # the retrying work got the slot
    pool.release(retrying)
    assert log == ["new"]


async def test_hungry_runs_are_served_by_priority_then_arrival() -> None:
    pool = SlotPool(2)
    log: list[str] = []
    first = Slot(False)
    second = Slot(False)
    await pool.acquire(first)
    await pool.acquire(second)
    runs = {
        "old": Run(pool, "old", 2, log, 0),
        "young": Run(pool, "young", 1, log, 1),
        "urgent": Run(pool, "urgent", 1, log, 2),
    }
    pool.want(runs["young"], 0, 0, 1)
    pool.want(runs["old"], 0, 0, 0)  # arrived first, queued second
    pool.want(runs["urgent"], -1, 0, 2)  # lower priority value first
    pool.want(runs["old"], 0, 0, 0)  # queued once only
    pool.release(first)
    pool.release(second)
    assert log == ["urgent", "old"]  # two slots freed, one each in turn
    assert pool.busy == 2
    for run in runs.values():
        for slot in run.slots:
            pool.release(slot)
    assert log == ["urgent", "old", "old", "young"]  # old kept its place
    pool.feed()
    assert pool.busy == 0
