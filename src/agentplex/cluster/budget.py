"""One budget of limits for a whole cluster, lent where the work is.

A sharded batch (:mod:`agentplex.batch.shard`) runs on several worker processes,
but the limits it was given are the cluster's: ``max_concurrency`` slots,
and for every provider and model its ``max_concurrency`` (``max_inflight``),
``rpm`` and ``tpm``. The driver keeps the budget (:class:`Budget`) and
*grants* each worker a share of every limit; a worker runs its limiters and
its slot pool at its share (:class:`WorkerShares`) and reports, a few times a
second, its *demand* (calls and nodes running or waiting) and the share it
is using. This is quota leasing, the design of Google's Doorman: no
per-call round trip to a coordinator, and every start is still paced
locally, evenly, as on one machine.

How shares follow demand, per limit:

- *concurrency* (slots, in-flight calls): water-filling on demand, so a
  worker never holds more than it can use while another waits; a busy
  worker's demand is its peak over the last two seconds, so a chain of
  one-call-at-a-time nodes keeps its slot between calls. While there are
  enough for everyone, every live worker keeps at least one.
- *rates* (rpm, tpm): every live worker keeps a floor of 10% of an equal
  share; the rest is divided in proportion to demand.
- a worker that finished its shards says so and gives everything back at
  once; one that stops reporting (it died) loses its share after
  ``2 * lease_s``.

**The sum never exceeds the limit**, through two rules. A grant that shrinks
applies at once; one that grows takes only what is free, counting each
worker at the larger of what it was granted and what it last reported it
uses, so capacity moves from one worker to another only after the first
has said it let go. And a worker that has not heard from the driver for
``lease_s`` stops starting work until it does.

Learned limits stay per worker: each limiter still slows down on 429s
(AIMD, :mod:`agentplex.llm.limits`), and independent AIMD senders converge
to a fair division of a limit nobody told them about, as TCP flows do. A
Retry-After one worker is sent pauses the key on every worker.
"""

from __future__ import annotations

import collections
import heapq
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from agentplex.llm.limits import Limiter, Limits

SLOTS = "slots"
"""The budget key of the batch's ``max_concurrency`` node slots."""

RATE_FLOOR = 0.1
"""An idle live worker keeps this fraction of an equal share of each rate."""

PEAK_S = 2.0
"""A worker's demand is its peak over this long."""

Share = tuple[int | None, float | None, float | None]
"""(max_concurrency, rpm, tpm) of one key; None: no limit of that kind."""

_DIMS = (True, False, False)
"""Which of a share's three numbers are whole (concurrency) or rates."""


@dataclass(slots=True)
class _Seat:
    """One worker's place in one key's budget."""

    demand: float = 0.0
    held: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    """What the worker last said it runs with (the larger of its limit and its use)."""
    granted: list[float] = field(default_factory=lambda: [0.0, 0.0, 0.0])
    acked: int = 0
    """The version of the grants the worker last said it runs with."""
    sent: list[tuple[int, list[float], float]] = field(default_factory=list)
    """Grants published since ``acked``: (version, share, when superseded (inf: not yet))."""

    def in_use(self, dim: int) -> float:
        """The most the worker may be running with: held, granted, or sent and not yet acked."""
        return max(self.granted[dim], self.held[dim], *(share[dim] for _v, share, _s in self.sent))


class Budget:
    """The driver's side: totals, seats and versioned grants; see the module docstring.

    Plain state and arithmetic, no I/O: the driver feeds it reports and
    publishes what :meth:`allocate` returns.

    Grants carry a version, and a worker says which version it runs. Until it
    has, every share published to it since counts as in use: a worker may read
    a grant just before a smaller one replaces it. A grant replaced more than
    ``lease_s`` ago no longer counts, since a worker that has not read its
    grants for that long starts nothing.
    """

    def __init__(self, *, lease_s: float = 5.0, clock: Callable[[], float] = time.monotonic):
        self.lease_s = lease_s
        self.clock = clock
        self.totals: dict[str, Share] = {}
        self.seats: dict[str, dict[str, _Seat]] = {}
        self.live: dict[str, float] = {}
        """Workers running a shard, and when each last reported."""
        self.pauses: dict[str, float] = {}
        """Key -> the clock time a Retry-After pauses it until."""
        self.version = 0

    def add(self, key: str, total: Share) -> None:
        """Know ``key``'s total before any worker reports it."""
        self.totals[key] = total
        self.seats.setdefault(key, {})

    def starved(self, worker: str) -> bool:
        """Whether ``worker`` wants something it has no share of (worth allocating now)."""
        for key, seats in self.seats.items():
            seat = seats.get(worker)
            if seat is not None and seat.demand > 0 and _lacks(self.totals[key], seat.granted):
                return True
        return False

    def report(self, worker: str, keys: Mapping[str, Mapping[str, Any]], version: int) -> None:
        """A worker's report: the grants' version it runs, and for each key its total,
        demand, held share and the Retry-After pause it has left."""
        now = self.clock()
        self.live[worker] = now
        for key, row in keys.items():
            total: Share = tuple(row["total"])
            if key not in self.totals:
                self.totals[key] = total
            elif total != self.totals[key]:  # workers should agree; the smaller one is safe
                self.totals[key] = _smaller(self.totals[key], total)
            seat = self.seats.setdefault(key, {}).setdefault(worker, _Seat())
            seat.demand = float(row["demand"])
            seat.held = [float(x or 0) for x in row["held"]]
            pause = float(row.get("pause_s") or 0)
            if pause > 0:
                self.pauses[key] = max(self.pauses.get(key, 0.0), now + pause)
        self._ack(worker, version)

    def leave(self, worker: str, version: int | None = None) -> None:
        """A worker's shard ended (``version``: the grants it last ran), or it died (None).

        What it held is free; grants published to it after ``version`` count
        until it acknowledges a later one or they expire.
        """
        self.live.pop(worker, None)
        for seats in self.seats.values():
            seat = seats.get(worker)
            if seat is not None:
                seat.demand = 0.0
                seat.held = [0.0, 0.0, 0.0]
                seat.granted = [0.0, 0.0, 0.0]
        if version is not None:
            self._ack(worker, version)

    def _ack(self, worker: str, version: int) -> None:
        for seats in self.seats.values():
            seat = seats.get(worker)
            if seat is not None and version >= seat.acked:
                seat.acked = version
                seat.sent = [entry for entry in seat.sent if entry[0] > version]

    def allocate(self) -> dict[str, Any]:
        """Move shares toward demand; return ``{"v": version, "grants": {worker: {key: [
        max_concurrency, rpm, tpm, pause_s]}}}`` (a new version when a share changed)."""
        now = self.clock()
        for worker, seen in list(self.live.items()):
            if now - seen > 2 * self.lease_s:
                self.leave(worker)  # silent: dead, or cut off (and then holding)
        for seats in self.seats.values():
            for seat in seats.values():
                seat.sent = [e for e in seat.sent if e[2] + self.lease_s > now]
        changed = False
        for key, total in self.totals.items():
            seats = self.seats.setdefault(key, {})
            before = {w: list(s.granted) for w, s in seats.items()}
            live = {w: s for w, s in seats.items() if w in self.live}
            for dim, whole in enumerate(_DIMS):
                limit = total[dim]
                if limit is not None:
                    targets = _targets(limit, {w: s.demand for w, s in live.items()}, whole)
                    _move(limit, seats, dim, targets, whole)
            changed = changed or any(s.granted != before[w] for w, s in seats.items())
        if changed:
            self.version += 1
            for seats in self.seats.values():
                for seat in seats.values():
                    seat.sent = [
                        (v, share, min(superseded, now)) for v, share, superseded in seat.sent
                    ]
                    seat.sent.append((self.version, list(seat.granted), math.inf))
        grants: dict[str, dict[str, list[Any]]] = collections.defaultdict(dict)
        for key, total in self.totals.items():
            pause = round(max(0.0, self.pauses.get(key, 0.0) - now), 3)
            for worker, seat in self.seats[key].items():
                share = [
                    None if total[d] is None else (int(g) if whole else g)
                    for d, (g, whole) in enumerate(zip(seat.granted, _DIMS, strict=True))
                ]
                grants[worker][key] = [*share, pause]
        return {"v": self.version, "grants": dict(grants)}


def _lacks(total: Share | list[Any], share: list[Any]) -> bool:
    """Whether ``share`` has nothing of a kind ``total`` limits."""
    return any(t is not None and not g for t, g in zip(total, share, strict=False))


def _smaller(a: Share, b: Share) -> Share:
    return tuple(  # type: ignore[return-value]
        y if x is None else x if y is None else min(x, y) for x, y in zip(a, b, strict=True)
    )


def _targets(limit: float, demands: dict[str, float], whole: bool) -> dict[str, float]:
    """Where ``limit`` should go among the live workers, by their demand."""
    n = len(demands)
    if n == 0:
        return {}
    if not whole:
        floor = RATE_FLOOR * limit / n
        rest = limit - floor * n
        weight = sum(demands.values())
        if weight <= 0:
            return dict.fromkeys(demands, limit / n)
        return {w: floor + rest * d / weight for w, d in demands.items()}
    units = int(limit)
    base = 1 if units >= n else 0
    given = dict.fromkeys(demands, base)
    left = units - base * n
    # water-filling: one unit at a time to the worker furthest below its demand
    heap = [(-(d - base), w) for w, d in demands.items() if d > base]
    heapq.heapify(heap)
    while left > 0 and heap:
        short, worker = heapq.heappop(heap)
        given[worker] += 1
        left -= 1
        if short + 1 < 0:
            heapq.heappush(heap, (short + 1, worker))
    order = sorted(demands, key=lambda w: (-demands[w], w))
    for i in range(left):  # more than anyone wants: headroom, busiest first
        given[order[i % n]] += 1
    return {w: float(g) for w, g in given.items()}


def _move(
    limit: float, seats: dict[str, _Seat], dim: int, targets: dict[str, float], whole: bool
) -> None:
    """Shrink at once, grow only into what is free (see the module docstring)."""
    for worker, seat in seats.items():
        target = targets.get(worker, 0.0)
        if target < seat.granted[dim]:
            seat.granted[dim] = target
    used = sum(s.in_use(dim) for s in seats.values())
    free = limit - used
    growing = sorted(
        (w for w in targets if targets[w] > seats[w].granted[dim]),
        key=lambda w: (seats[w].granted[dim] - targets[w], w),
    )
    for worker in growing:
        if free <= 1e-9:
            break
        seat = seats[worker]
        more = min(targets[worker] - seat.granted[dim], free)
        if whole:
            more = math.floor(more + 1e-9)
        seat.granted[dim] += more
        free -= more


class WorkerShares:
    """A worker's side: its limiters and slots, run at the shares it was granted.

    Installed with :func:`agentplex.llm.limits.share_limits` while a shard
    runs, so every limiter the run asks for comes from here, sized by the
    grants instead of by the cluster-wide limits the run was given.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.grants: dict[str, list[Any]] = {}
        self.limiters: dict[str, tuple[Limiter, Limits]] = {}
        self.slots: Any = None
        self.slot_total: int | None = None
        self.peaks: dict[str, collections.deque[tuple[float, int]]] = {}
        self.version = 0
        """The version of the grants this worker runs with."""
        self.ended = -1
        """The version it ran when its last shard ended."""

    # -- what the run asks for ----------------------------------------------------

    def limiter(self, key: str, limits: Limits) -> Limiter:
        """The limiter of ``key``, at this worker's share of ``limits`` (the cluster's)."""
        held = self.limiters.get(key)
        if held is not None and held[1] == limits:
            return held[0]
        limiter = held[0] if held is not None else Limiter(key, limits, clock=self.clock)
        self.limiters[key] = (limiter, limits)
        self._apply_limiter(key, limiter, limits)
        return limiter

    def attach_slots(self, pool: Any, total: int) -> None:
        """Run ``pool`` (the shard's :class:`~agentplex.engine.slots.SlotPool`) at its share of ``total``."""
        self.slots, self.slot_total = pool, total
        pool.resize(self._granted(SLOTS, 0) or 0)

    # -- grants and reports ---------------------------------------------------------

    def receive(self, version: int, grants: Mapping[str, list[Any]]) -> None:
        """The driver's grants to this worker, version ``version``.

        Grants from before this process's last shard ended are ignored (the
        driver freed them): the new shard waits for newer ones.
        """
        if version <= self.ended:
            self.apply({})
            return
        self.version = version
        self.apply(grants)

    def end(self) -> None:
        """The shard ended: from now on, only grants published after this are taken."""
        self.ended = self.version
        self.slots = None

    def apply(self, grants: Mapping[str, list[Any]]) -> None:
        """Run at these shares (a key the driver does not know yet gets nothing)."""
        self.grants = dict(grants)
        if self.slots is not None:
            self.slots.resize(self._granted(SLOTS, 0) or 0)
        for key, (limiter, limits) in self.limiters.items():
            self._apply_limiter(key, limiter, limits)
            pause = self.grants.get(key, [None, None, None, 0])[3] or 0
            if pause > limiter.paused_for():
                limiter.pause(pause)

    def hold(self) -> None:
        """Start nothing (the driver has not been heard from for a lease)."""
        self.apply({})

    def _granted(self, key: str, dim: int) -> Any:
        share = self.grants.get(key)
        return 0 if share is None else share[dim]

    def _apply_limiter(self, key: str, limiter: Limiter, limits: Limits) -> None:
        share = [
            None if total is None else self._granted(key, dim) or 0
            for dim, total in enumerate((limits.max_concurrency, limits.rpm, limits.tpm))
        ]
        limiter.share(limits, *share)

    def report(self) -> dict[str, dict[str, Any]]:
        """For each key: its total, this worker's demand (peak of the last seconds), what it holds."""
        rows: dict[str, dict[str, Any]] = {}
        if self.slots is not None and self.slot_total is not None:
            pool = self.slots
            rows[SLOTS] = {
                "total": [self.slot_total, None, None],
                "demand": self._peak(SLOTS, max(1, pool.demand())),  # a running shard
                "held": [max(pool.limit, pool.busy), 0, 0],
            }
        for key, (limiter, limits) in self.limiters.items():
            stats = limiter.statistics()
            now_limits = limiter.limits
            rows[key] = {
                "total": [limits.max_concurrency, limits.rpm, limits.tpm],
                "demand": self._peak(key, limiter.demand()),
                "held": [
                    max(now_limits.max_concurrency or 0, stats.in_flight),
                    now_limits.rpm or 0,
                    now_limits.tpm or 0,
                ],
                "pause_s": round(limiter.paused_for(), 3),
            }
        return rows

    def starving(self) -> bool:
        """Whether work waits for a kind of limit this worker has no share of."""
        if self.slots is not None and self.slots.demand() and not self._granted(SLOTS, 0):
            return True
        for key, (limiter, limits) in self.limiters.items():
            total = (limits.max_concurrency, limits.rpm, limits.tpm)
            if limiter.demand() and _lacks(total, self.grants.get(key) or [0, 0, 0]):
                return True
        return False

    def _peak(self, key: str, demand: int) -> int:
        now = self.clock()
        window = self.peaks.setdefault(key, collections.deque())
        while window and window[0][0] < now - PEAK_S:
            window.popleft()
        while window and window[-1][1] <= demand:
            window.pop()  # a monotonic queue: the front is the window's peak
        window.append((now, demand))
        return window[0][1]
