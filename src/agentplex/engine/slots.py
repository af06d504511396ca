"""Concurrency slots, shared by one run or by every item of a batch.

``max_concurrency`` is a number of slots. A node body (or a map item) holds
one while it runs. Two kinds of work wait for a slot, served in this order:

1. *waiters*: work that already started and gave its slot back (a node
   sleeping out a retry backoff, a map item), first come first served, so
   started work finishes first;
2. *hungry runs*: runs whose scheduler has ready nodes that could not start,
   served by ``(priority, urgency, arrival)``: in a batch, higher-priority
   items first; then the node with the longest remaining path (its
   scheduler's key), across all items, so the batch as a whole follows its
   critical paths; then older items. A served run starts ready nodes while
   slots are free and no other run has a more urgent one.

Nothing polls: a release hands its slot to the next waiter or run at once.
"""

from __future__ import annotations

import asyncio
import collections
import heapq
import itertools
from typing import Protocol


class Slot:
    """Whether one unit of work holds a slot right now."""

    __slots__ = ("held",)

    def __init__(self, held: bool) -> None:
        self.held = held


class Hungry(Protocol):
    """A run that can start ready nodes when slots free up."""

    def dispatch(self) -> None: ...


class SlotPool:
    """``limit`` slots shared by every run registered with :meth:`want`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.busy = 0
        self.waiters: collections.deque[asyncio.Future[None]] = collections.deque()
        self._hungry: list[tuple[float, float, int, int, Hungry]] = []
        self._queued: set[int] = set()
        self._ties = itertools.count()

    def free(self) -> int:
        """Slots a hungry run may take now (none while started work waits)."""
        return 0 if self.waiters else max(0, self.limit - self.busy)

    def want(
        self, run: Hungry, priority: float = 0.0, urgency: float = 0.0, arrival: int = 0
    ) -> None:
        """Queue ``run`` to be dispatched when a slot frees (lower values first)."""
        if id(run) not in self._queued:
            self._queued.add(id(run))
            heapq.heappush(self._hungry, (priority, urgency, arrival, next(self._ties), run))

    def keeps(self, slot: Slot, run: Hungry, priority: float, urgency: float, arrival: int) -> bool:
        """Whether ``run`` may start its next node in ``slot`` (held by one of its nodes that
        just ended) instead of releasing it: no started work waits, and no other run's
        ready work is more urgent. Then the slot simply changes hands, as a release and
        :meth:`feed` would have handed it to ``run`` too.
        """
        if not slot.held or self.waiters or self.busy > self.limit:
            return False
        hungry = self._hungry
        if not hungry:
            return True
        best = hungry[0]
        if best[-1] is run:  # its own entry (stale): the next most urgent is a root's child
            if len(hungry) == 1:
                return True
            best = min(hungry[1:3])
        return not (best[0], best[1], best[2]) < (priority, urgency, arrival)

    def outranked(self, priority: float, urgency: float, arrival: int) -> bool:
        """Whether a queued run goes before work with this key."""
        if not self._hungry:
            return False
        best = self._hungry[0]
        return (best[0], best[1], best[2]) < (priority, urgency, arrival)

    async def acquire(self, slot: Slot) -> None:
        """Take a slot for ``slot``, waiting ahead of ready nodes if none is free."""
        if slot.held:
            return
        if self.busy < self.limit and not self.waiters:
            self.busy += 1
            slot.held = True
            return
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._release_one()  # the slot was handed over just as we were cancelled
            elif waiter in self.waiters:  # a release may have dropped it already
                self.waiters.remove(waiter)
            raise
        slot.held = True  # a release handed its slot to this waiter

    def release(self, slot: Slot) -> None:
        """Give back ``slot``'s slot if it holds one; hand it on at once."""
        if slot.held:
            slot.held = False
            self._release_one()

    def _release_one(self) -> None:
        while self.waiters and self.busy <= self.limit:  # (above it after a resize down)
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # hand the slot over: busy stays the same
                return
        self.busy -= 1
        self.feed()

    def resize(self, limit: int) -> None:
        """Change the number of slots (a worker's share of a cluster's; 0 starts nothing).

        Fewer slots take effect as running work gives them back; more are
        handed out at once.
        """
        self.limit = limit
        while self.waiters and self.busy < limit:
            waiter = self.waiters.popleft()
            if not waiter.done():
                self.busy += 1
                waiter.set_result(None)
        self.feed()

    def demand(self) -> int:
        """Work holding a slot or waiting for one (a run with ready nodes counts once)."""
        return self.busy + len(self.waiters) + len(self._hungry)

    def feed(self) -> None:
        """Dispatch hungry runs while slots are free."""
        hungry, queued = self._hungry, self._queued
        while hungry and self.free():
            run = heapq.heappop(hungry)[-1]
            queued.discard(id(run))
            run.dispatch()
