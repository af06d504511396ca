"""The cluster-wide budget of a sharded batch: allocation, versions, and the worker's side.

The Dask plumbing around it is tested on a real cluster in test_dask.py; here
the driver's :class:`Budget` and the worker's :class:`WorkerShares` talk
directly, under a fake clock, so every interleaving can be driven.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from agentplex.cluster.budget import SLOTS, Budget, WorkerShares
from agentplex.engine.slots import Slot, SlotPool
from agentplex.llm.limits import Limiter, Limits

KEY = "openai|k|gpt"


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Pool:
    """A stand-in SlotPool: ``want`` slots wanted, ``busy`` of them taken."""

    def __init__(self) -> None:
        self.limit = 0
        self.busy = 0
        self.want = 0

    def resize(self, limit: int) -> None:
        self.limit = limit

    def demand(self) -> int:
        return self.want

    def step(self, rng: random.Random) -> None:
        if self.busy and rng.random() < 0.5:
            self.busy -= rng.randint(1, self.busy)  # calls end
        if self.busy < min(self.want, self.limit):
            self.busy = min(self.want, self.limit)  # calls start, up to the share


class Worker:
    """One worker process: its shares, a slot pool and one provider limiter."""

    def __init__(self, name: str, clock: Clock, total: Limits, slots: int) -> None:
        self.name = name
        self.shares = WorkerShares(clock=clock)
        self.pool = Pool()
        self.total = total
        self.slots = slots
        self.running = False
        self.limiter: Limiter | None = None
        self.read_at = 0.0

    def start(self) -> None:
        self.running = True
        self.shares.attach_slots(self.pool, self.slots)
        self.limiter = self.shares.limiter(KEY, self.total)

    def read(self, state: dict[str, Any], now: float) -> None:
        self.read_at = now
        self.shares.receive(state["v"], state["grants"].get(self.name) or {})

    def report(self, budget: Budget) -> None:
        budget.report(self.name, self.shares.report(), self.shares.version)

    def end(self, budget: Budget) -> None:
        self.pool.busy = self.pool.want = 0
        self.shares.end()
        self.running = False
        budget.leave(self.name, self.shares.version)

    def in_use(self) -> tuple[int, float]:
        if not self.running:
            return 0, 0.0
        assert self.limiter is not None
        return max(self.pool.limit, self.pool.busy), self.limiter.limits.rpm or 0.0


def test_every_interleaving_stays_within_the_limits() -> None:
    """Random reports, reads, stale reads, shard ends and restarts, deaths and clock jumps:
    the slots and the rate the workers really run with never add up to more than the budget,
    and an idle worker's share ends up with the busy ones."""
    for seed in range(30):
        rng = random.Random(seed)
        clock = Clock()
        budget = Budget(lease_s=5.0, clock=clock)
        total = Limits(rpm=600)
        budget.add(SLOTS, (8, None, None))
        workers = [Worker(f"w{i}", clock, total, 8) for i in range(3)]
        dead: set[str] = set()
        published = [budget.allocate()]
        for w in workers:
            w.start()
            w.read(published[-1], clock.now)
        for _step in range(400):
            live = [w for w in workers if w.name not in dead]
            action = rng.random()
            w = rng.choice(live)
            if action < 0.25:
                published.append(budget.allocate())
            elif action < 0.45 and w.running:
                stale = rng.random() < 0.3 and len(published) > 1
                w.read(published[-2] if stale else published[-1], clock.now)
            elif action < 0.65 and w.running:
                w.report(budget)
            elif action < 0.75 and w.running:
                w.pool.want = rng.randint(0, 12)
            elif action < 0.8 and w.running:
                w.end(budget)
            elif action < 0.85 and not w.running:
                w.start()
                w.read(published[-1], clock.now)
            elif action < 0.86 and len(live) > 1 and w.running:
                dead.add(w.name)  # no bye: the driver finds out by silence
            else:
                clock.now += rng.choice((0.01, 0.1, 1.0))
            for v in live:
                v.pool.step(rng)
                if v.running and clock.now - v.read_at > 5.0:
                    v.shares.hold()  # the worker's lease ran out
            running = [v.in_use() for v in workers if v.name not in dead]
            assert sum(s for s, _r in running) <= 8, (seed, _step)
            assert sum(r for _s, r in running) <= 600 + 1e-6, (seed, _step)


def test_an_idle_workers_share_goes_to_the_busy_one_once_it_lets_go() -> None:
    clock = Clock()
    budget = Budget(clock=clock)
    budget.add(SLOTS, (4, None, None))
    for name in ("a", "b"):
        budget.report(name, {SLOTS: {"total": [4, None, None], "demand": 5, "held": [0, 0, 0]}}, 0)
    state = budget.allocate()
    assert [state["grants"][w][SLOTS][0] for w in ("a", "b")] == [2, 2]
    # b goes idle but still runs its 2: a may want more, but gets it only after b lets go
    budget.report("b", {SLOTS: {"total": [4, None, None], "demand": 0, "held": [2, 0, 0]}}, 1)
    state = budget.allocate()
    assert state["grants"]["b"][SLOTS][0] == 1  # every live worker keeps one
    assert state["grants"]["a"][SLOTS][0] == 2
    budget.report("b", {SLOTS: {"total": [4, None, None], "demand": 0, "held": [1, 0, 0]}}, 2)
    state = budget.allocate()
    assert state["grants"]["a"][SLOTS][0] == 3
    budget.leave("b", state["v"])  # its shard ended
    state = budget.allocate()
    assert state["grants"]["a"][SLOTS][0] == 4
    assert state["grants"]["b"][SLOTS][0] == 0


def test_concurrency_follows_demand_and_rates_keep_a_floor() -> None:
    clock = Clock()
    budget = Budget(clock=clock)
    row = {"total": [10, 600, None], "held": [0, 0, 0]}
    budget.report("a", {KEY: {**row, "demand": 1}}, 0)
    budget.report("b", {KEY: {**row, "demand": 30}}, 0)
    grants = budget.allocate()["grants"]
    assert grants["a"][KEY][0] == 1  # it wants one: water-filling gives the rest to b
    assert grants["b"][KEY][0] == 9
    assert grants["a"][KEY][1] == pytest.approx(600 * (0.05 + 0.9 * 1 / 31))
    assert grants["a"][KEY][1] + grants["b"][KEY][1] == pytest.approx(600)
    assert grants["a"][KEY][2] is None  # no tpm limit, no tpm share


def test_a_grant_read_just_before_a_smaller_one_counts_until_acknowledged() -> None:
    clock = Clock()
    budget = Budget(clock=clock)
    budget.add(SLOTS, (4, None, None))
    busy = {"total": [4, None, None], "held": [0, 0, 0]}
    budget.report("a", {SLOTS: {**busy, "demand": 4}}, 0)
    budget.report("b", {SLOTS: {**busy, "demand": 0}}, 0)
    first = budget.allocate()
    assert first["grants"]["a"][SLOTS][0] == 3
    # b's demand rises; a's report still names version 0: it may have read version 1 (3 slots)
    budget.report("b", {SLOTS: {**busy, "demand": 4}}, 0)
    second = budget.allocate()
    assert second["grants"]["a"][SLOTS][0] == 2  # shrunk at once
    assert second["grants"]["b"][SLOTS][0] == 1  # but a's 3 are not free yet
    budget.report("a", {SLOTS: {**busy, "demand": 4, "held": [2, 0, 0]}}, second["v"])
    third = budget.allocate()
    assert third["grants"]["b"][SLOTS][0] == 2


def test_a_silent_worker_loses_its_share_and_grants_from_before_a_shard_ended_are_ignored() -> None:
    clock = Clock()
    budget = Budget(lease_s=5.0, clock=clock)
    budget.add(SLOTS, (4, None, None))
    row = {"total": [4, None, None], "demand": 4, "held": [2, 0, 0]}
    budget.report("a", {SLOTS: {**row, "held": [0, 0, 0]}}, 0)
    budget.report("b", {SLOTS: {**row, "held": [0, 0, 0]}}, 0)
    state = budget.allocate()
    budget.report("a", {SLOTS: row}, state["v"])
    budget.report("b", {SLOTS: row}, state["v"])
    clock.now = 9.0
    budget.report("a", {SLOTS: row}, state["v"])
    assert budget.allocate()["grants"]["a"][SLOTS][0] == 2  # b: silent 9 s of a 10 s grace
    clock.now = 10.5
    budget.report("a", {SLOTS: row}, state["v"])
    budget.allocate()
    clock.now = 16.0  # b's last grant expired too (its own lease stops it by now)
    state = budget.allocate()
    assert state["grants"]["a"][SLOTS][0] == 4

    shares = WorkerShares(clock=clock)
    pool = Pool()
    shares.attach_slots(pool, 4)
    shares.receive(7, {SLOTS: [3, None, None, 0]})
    assert pool.limit == 3
    shares.end()
    shares.attach_slots(pool, 4)  # the next shard in the same process
    shares.receive(7, {SLOTS: [3, None, None, 0]})  # the same, older grant: not ours any more
    assert pool.limit == 0
    shares.receive(8, {SLOTS: [1, None, None, 0]})
    assert pool.limit == 1


def test_a_new_shard_does_not_run_on_the_grant_its_worker_gave_back() -> None:
    """b's shard ends having read the latest grants; its next shard starts before the driver
    publishes again. Taking the old grant would run b's 4 slots next to a's 8."""
    clock = Clock()
    budget = Budget(clock=clock)
    budget.add(SLOTS, (8, None, None))
    a, b = Worker("a", clock, Limits(rpm=600), 8), Worker("b", clock, Limits(rpm=600), 8)
    for w in (a, b):
        w.start()
        w.pool.want = 8
        w.report(budget)
    state = budget.allocate()
    for w in (a, b):
        w.read(state, 0.0)
        w.report(budget)
    assert (a.pool.limit, b.pool.limit) == (4, 4)
    b.end(budget)
    b.start()
    b.read(state, 0.0)  # the same, latest, version: from before it ended
    a.report(budget)
    a.read(budget.allocate(), 0.0)
    assert a.pool.limit == 8
    assert b.pool.limit == 0


def test_a_retry_after_pauses_the_key_on_every_worker() -> None:
    clock = Clock()
    budget = Budget(clock=clock)
    row = {"total": [None, 600, None], "demand": 1, "held": [0, 0, 0]}
    budget.report("a", {KEY: {**row, "pause_s": 3.0}}, 0)
    budget.report("b", {KEY: row}, 0)
    grants = budget.allocate()["grants"]
    assert grants["b"][KEY][3] == 3.0
    shares = WorkerShares(clock=clock)
    limiter = shares.limiter(KEY, Limits(rpm=600))
    shares.receive(1, grants["b"])
    assert limiter.paused_for() == pytest.approx(3.0)


def test_a_limiter_with_no_share_waits_until_a_share_comes() -> None:
    async def main() -> None:
        shares = WorkerShares()
        limiter = shares.limiter(KEY, Limits(max_concurrency=4, rpm=600))
        waiting = asyncio.ensure_future(limiter.acquire())
        await asyncio.sleep(0.05)
        assert not waiting.done()  # a key the driver has not granted yet gets nothing
        assert shares.starving()
        shares.receive(1, {KEY: [1, 60.0, None, 0]})
        ticket = await asyncio.wait_for(waiting, 1)
        assert limiter.limits.max_concurrency == 1
        assert limiter.limits.rpm == 60.0
        second = asyncio.ensure_future(limiter.acquire())
        await asyncio.sleep(0.05)
        assert not second.done()  # one in flight of a share of one
        limiter.release(ticket)
        second.cancel()

    asyncio.run(main())


def test_a_slot_pool_resized_down_drains_and_resized_up_hands_out_at_once() -> None:
    async def main() -> None:
        pool = SlotPool(2)
        held = [Slot(False) for _ in range(4)]
        await pool.acquire(held[0])
        await pool.acquire(held[1])
        waiting = asyncio.ensure_future(pool.acquire(held[2]))
        await asyncio.sleep(0)
        pool.resize(1)
        pool.release(held[0])  # busy 2 > 1: the slot is not handed on
        await asyncio.sleep(0)
        assert not waiting.done()
        assert pool.busy == 1
        pool.resize(3)
        await asyncio.wait_for(waiting, 1)
        assert pool.busy == 2
        assert pool.demand() == 2
        pool.resize(0)
        assert pool.free() == 0

    asyncio.run(main())
