"""Client-side limits per provider and model: concurrency, RPM, TPM, and AIMD on 429.

One :class:`Limiter` exists per *limit key* (a provider configuration and a
model) in the process, so every node of every run that calls the same model
on the same endpoint shares it (see :func:`limiter_for`). A call takes a
ticket with :meth:`Limiter.acquire` before it goes on the wire and gives it
back with :meth:`Limiter.release`, saying how it went.

What a ticket waits for, first come first served:

- *concurrency*: at most ``max_concurrency`` calls in flight;
- *requests per minute*: starts are paced evenly at ``rpm / 60`` per second
  (a bucket of one request, so a burst never trips a per-second limit);
- *tokens per minute*: a bucket of one second's worth of ``tpm``, charged the
  call's estimated tokens up front and corrected by the usage the provider
  reports; it may go into debt, so one large call is never stuck;
- *Retry-After*: a 429 that says how long to wait pauses every start on the
  key until then (capped), not just the call that got it.

*Adaptive rate (AIMD).* A 429 means a limit was hit, whether or not the user
told us about it. On the first one the limiter starts pacing at a fraction
(``decrease``) of the rate it was sending at (once it has sent enough in the
last window to know that rate: a single call retried is held back by its
Retry-After alone, not by a guessed pace), and on each later one it cuts the
pace by the same factor, at most once per round trip (a 429 for a request sent
before the last cut says nothing new); while most recent calls get 429s it
cuts to a fraction of the success rate instead, the rate the provider really
accepts. Each second without a 429 the pace grows by ``increase`` of itself,
so a run settles just under the provider's real limit and keeps probing it,
instead of hammering it.

A cut never goes below half the best success rate of the last 30 seconds
(measured over two-second windows): the provider has just shown it accepts
that much. A real limit is never above it, so this floor does not get in the
way of settling under one; but 429s that come at any rate (an overloaded
provider, a fault injector) slow a run down to it instead of to a crawl.

The limiter is plain state plus futures of the running loop: it costs nothing
when no limit is set and no 429 has been seen. It may be shared by runs one
after another in different event loops, but not by two loops at once.
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from agentplex.exceptions import ConfigError

Outcome = Literal["ok", "rate_limited", "error"]

_WINDOW_S = 2.0
"""How far back the success rate is measured."""
_BEST_FOR_S = 30.0
"""How long the best success rate seen stays the floor of cuts."""
_MIN_RATE = 1 / 60
"""The adaptive pace never drops below one request a minute."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Limits of one provider/model; ``None`` means no limit of that kind."""

    max_concurrency: int | None = None
    """Calls in flight at once."""
    rpm: float | None = None
    """Requests per minute."""
    tpm: float | None = None
    """Tokens (in + out) per minute."""
    adaptive: bool = True
    """Slow down on 429 and recover gradually (AIMD)."""
    decrease: float = 0.9
    """Multiply the pace by this on a 429."""
    increase: float = 0.03
    """Grow the pace by this fraction of itself per second without a 429."""
    retry_after_max_s: float = 60.0
    """Cap on how long one Retry-After pauses the key."""

    def check(self, where: str = "limits") -> Limits:
        """Return self, or raise :class:`ConfigError` naming the bad field."""
        if self.max_concurrency is not None and (
            not isinstance(self.max_concurrency, int) or self.max_concurrency < 1
        ):
            raise ConfigError(
                f"{where}: max_concurrency must be a whole number >= 1, "
                f"got {self.max_concurrency!r}."
            )
        for name in ("rpm", "tpm"):
            value = getattr(self, name)
            if value is not None and (
                not isinstance(value, int | float) or not value > 0 or math.isinf(value)
            ):
                raise ConfigError(f"{where}: {name} must be a number > 0, got {value!r}.")
        if not 0 < self.decrease < 1:
            raise ConfigError(f"{where}: decrease must be between 0 and 1, got {self.decrease}.")
        if not self.increase > 0:
            raise ConfigError(f"{where}: increase must be > 0, got {self.increase}.")
        return self


@dataclass(frozen=True, slots=True)
class Ticket:
    """Permission for one call; give it back with :meth:`Limiter.release`."""

    sent_at: float
    tokens: int


@dataclass(frozen=True, slots=True)
class LimiterStatistics:
    """A snapshot of one limiter."""

    key: str
    in_flight: int
    calls: int
    rate_limited: int
    waited: int
    """Calls that had to wait for a limit."""
    pace_rps: float | None
    """Current pace in requests per second (configured or adapted); None = unpaced."""
    decreases: int


class Limiter:
    """Concurrency, RPM and TPM limits with AIMD on 429; see the module docstring."""

    def __init__(
        self, key: str, limits: Limits | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.key = key
        self.clock = clock
        self.limits = Limits()
        self._waiters: collections.deque[tuple[asyncio.Future[None], int]] = collections.deque()
        self._timer: asyncio.TimerHandle | None = None
        self._granted_at: dict[asyncio.Future[None], float] = {}
        self._in_flight = 0
        self._calls = 0
        self._rate_limited = 0
        self._waited = 0
        self._decreases = 0
        now = clock()
        self._req_level = 1.0
        self._tok_level = 0.0
        self._refilled = now
        self._paused_until = 0.0
        self._adapted: float | None = None
        """Pace learned from 429s, in requests per second (None until the first one)."""
        self._grown = now
        self._last_cut = -math.inf
        self._outcomes: collections.deque[tuple[float, bool]] = collections.deque()
        """(time, was a 429) of the calls that ended in the last window (adaptive only)."""
        self._window_ok = 0
        """Successes in ``_outcomes``."""
        self._best = 0.0
        self._best_at = -math.inf
        """Best success rate over a full window in the last ``_BEST_FOR_S``, and when."""
        self._sent: collections.deque[float] = collections.deque()
        self._first_call: float | None = None
        self.configure(limits or Limits())

    def configure(self, limits: Limits) -> None:
        """Apply new limits; what was learned from 429s is kept."""
        self._apply(limits.check(self.key))

    def share(
        self, total: Limits, max_concurrency: int | None, rpm: float | None, tpm: float | None
    ) -> None:
        """Run with a share of ``total`` (a cluster's budget; see :mod:`agentplex.cluster.budget`).

        A share may be 0: nothing of that kind starts until a bigger share comes.
        """
        self._apply(
            Limits(
                max_concurrency,
                rpm,
                tpm,
                total.adaptive,
                total.decrease,
                total.increase,
                total.retry_after_max_s,
            )
        )

    def _apply(self, limits: Limits) -> None:
        if limits.tpm is not None:
            per_s = limits.tpm / 60
            # a new limit starts with a full bucket; a changed one keeps what is left of it
            self._tok_level = per_s if self.limits.tpm is None else min(self._tok_level, per_s)
        self.limits = limits
        self._pump()

    # -- the pace ---------------------------------------------------------------

    def pace(self) -> float | None:
        """Return the current start rate in requests per second, or None if unpaced."""
        configured = self.limits.rpm / 60 if self.limits.rpm is not None else None
        if self._adapted is None:
            return configured
        return self._adapted if configured is None else min(configured, self._adapted)

    def _refill(self, now: float) -> None:
        elapsed = now - self._refilled
        if elapsed <= 0:
            return
        self._refilled = now
        pace = self.pace()
        if pace is not None:
            self._req_level = min(1.0, self._req_level + pace * elapsed)
        if self.limits.tpm is not None:
            per_s = self.limits.tpm / 60
            self._tok_level = min(per_s, self._tok_level + per_s * elapsed)

    def _wait_needed(self, now: float, tokens: int) -> float:
        """Return how long the next start must wait (0: it may start now; inf: a release)."""
        limits = self.limits
        if limits.max_concurrency is not None and self._in_flight >= limits.max_concurrency:
            return math.inf
        wait = self._paused_until - now
        pace = self.pace()
        if pace == 0 or limits.tpm == 0:
            return math.inf  # a share of nothing, until a bigger one comes
        if pace is not None and self._req_level < 1.0 - 1e-9:  # float-safe
            wait = max(wait, (1.0 - self._req_level) / pace)
        if limits.tpm is not None and tokens > 0 and self._tok_level <= 0:
            wait = max(wait, (1e-9 - self._tok_level) / (limits.tpm / 60))
        return max(wait, 0.0)

    def _grant(self, now: float, tokens: int) -> Ticket:
        self._in_flight += 1
        self._calls += 1
        if self._first_call is None:
            self._first_call = now
        if self.limits.adaptive and self._adapted is None:
            sent = self._sent  # only needed until the first cut
            sent.append(now)
            while sent[0] < now - _WINDOW_S:
                sent.popleft()
        if self.pace() is not None:
            self._req_level -= 1.0
        if self.limits.tpm is not None:
            self._tok_level -= tokens
        return Ticket(now, tokens)

    # -- acquire and release ----------------------------------------------------

    async def acquire(self, tokens: int = 0) -> Ticket:
        """Wait until a call estimated at ``tokens`` may start; return its ticket."""
        now = self.clock()
        self._refill(now)
        if not self._waiters and self._wait_needed(now, tokens) == 0:
            return self._grant(now, tokens)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((future, tokens))
        self._waited += 1
        self._pump()
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                # Granted just as we were cancelled: give the ticket straight back.
                self._granted_at.pop(future, None)
                self._in_flight -= 1
                self._pump()
            raise
        return Ticket(self._granted_at.pop(future), tokens)

    def _pump(self) -> None:
        """Grant waiting tickets in order while the limits allow; else arm a timer."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        now = self.clock()
        self._refill(now)
        while self._waiters:
            future, tokens = self._waiters[0]
            if future.done() or future.get_loop().is_closed():
                self._waiters.popleft()  # cancelled while waiting, or left behind by a past loop
                continue
            wait = self._wait_needed(now, tokens)
            if wait == math.inf:
                return  # a release will pump again
            if wait > 0:
                self._timer = future.get_loop().call_later(wait, self._pump)
                return
            self._waiters.popleft()
            ticket = self._grant(now, tokens)
            self._granted_at[future] = ticket.sent_at
            future.set_result(None)

    def release(
        self,
        ticket: Ticket,
        outcome: Outcome = "ok",
        *,
        tokens_used: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        """Give back ``ticket``: how the call went, its real token use, any Retry-After."""
        now = self.clock()
        self._in_flight -= 1
        limits = self.limits
        if limits.tpm is not None and tokens_used is not None:
            self._tok_level -= tokens_used - ticket.tokens  # reconcile the estimate
        if limits.adaptive and outcome != "error":
            self._observe(now, outcome == "rate_limited")
        if outcome == "ok":
            if limits.adaptive:
                self._grow(now)
        elif outcome == "rate_limited":
            self._rate_limited += 1
            if retry_after_s is not None and retry_after_s > 0:
                pause = min(retry_after_s, limits.retry_after_max_s)
                self._paused_until = max(self._paused_until, now + pause)
            if limits.adaptive and ticket.sent_at >= self._last_cut:  # once per round trip
                self._maybe_cut(now)
        self._pump()

    def _observe(self, now: float, was_429: bool) -> None:
        """Record an outcome in the window; track the best success rate."""
        outcomes = self._outcomes
        outcomes.append((now, was_429))
        self._window_ok += not was_429
        while outcomes[0][0] < now - _WINDOW_S:
            self._window_ok -= not outcomes.popleft()[1]
        first = self._first_call if self._first_call is not None else now
        if now - first >= _WINDOW_S:  # a full window: the rate is not a burst's
            rate = self._window_ok / _WINDOW_S
            if rate >= self._best or now - self._best_at > _BEST_FOR_S:
                self._best, self._best_at = rate, now

    def _per_s(self, count: int, now: float) -> float | None:
        """``count`` events over the window as a rate, or None with too few to tell."""
        if count < 3:
            return None
        span = min(_WINDOW_S, now - (self._first_call if self._first_call is not None else now))
        return count / max(span, 0.25)

    def _maybe_cut(self, now: float) -> None:
        """Multiplicative decrease of the pace (see the module docstring)."""
        self._refill(now)
        total = len(self._outcomes)
        limited = total - self._window_ok
        current = self.pace()
        if current is None:  # the first cut: start from the send rate (the demand)
            sent = self._sent
            while sent and sent[0] < now - _WINDOW_S:
                sent.popleft()
            current = self._per_s(len(sent), now)
            if current is None:
                # Too few sends to know a rate (one call, retried): pacing would only
                # guess. Its Retry-After, if any, already holds every start back.
                return
            sent.clear()
        if limited * 2 >= total:  # mostly 429s: far over the limit
            accepted = self._per_s(self._window_ok, now)
            if accepted is not None:
                current = min(current, accepted)
        floor = self._best / 2 if now - self._best_at <= _BEST_FOR_S else 0.0
        cut = max(_MIN_RATE, floor, current * self.limits.decrease)
        if self._adapted is not None and cut >= self._adapted:
            return  # already at the floor
        self._adapted = cut
        self._req_level = min(self._req_level, 0.0)
        self._last_cut = now
        self._grown = now
        self._decreases += 1

    def _grow(self, now: float) -> None:
        """Additive (proportional to elapsed time) recovery after a cut."""
        if self._adapted is None:
            return
        elapsed = now - self._grown
        if elapsed < 0.05:
            return
        self._refill(now)
        self._grown = now
        self._adapted *= 1 + self.limits.increase * elapsed
        configured = self.limits.rpm / 60 if self.limits.rpm is not None else None
        if configured is not None and self._adapted >= configured:
            self._adapted = None  # fully recovered: the configured limit rules again

    def demand(self) -> int:
        """Calls in flight or waiting to start."""
        return self._in_flight + len(self._waiters)

    def paused_for(self) -> float:
        """Seconds left of the pause a Retry-After put on the key (0 if none)."""
        return max(0.0, self._paused_until - self.clock())

    def pause(self, seconds: float) -> None:
        """Start nothing for ``seconds``: a Retry-After that another process was sent."""
        seconds = min(seconds, self.limits.retry_after_max_s)
        self._paused_until = max(self._paused_until, self.clock() + seconds)
        self._pump()

    def statistics(self) -> LimiterStatistics:
        """Return counters and the current pace."""
        return LimiterStatistics(
            self.key,
            self._in_flight,
            self._calls,
            self._rate_limited,
            self._waited,
            self.pace(),
            self._decreases,
        )


_LIMITERS: dict[str, Limiter] = {}


class LimiterSource(Protocol):
    """Where this process's limiters come from while it runs a share of a cluster's batch."""

    def limiter(self, key: str, limits: Limits) -> Limiter: ...


_source: LimiterSource | None = None


def share_limits(source: LimiterSource | None) -> None:
    """Take every limiter from ``source`` (None: back to this process's own limits).

    A worker of a sharded batch runs under a share of the cluster's budget
    (:mod:`agentplex.cluster.budget`): its limiters are sized by grants, not by the
    limits the run asks for, which are the whole cluster's.
    """
    global _source
    _source = source


def limiter_for(key: str, limits: Limits) -> Limiter:
    """Return the process-wide limiter of ``key``, (re)configured with ``limits``."""
    if _source is not None:
        return _source.limiter(key, limits)
    limiter = _LIMITERS.get(key)
    if limiter is None:
        limiter = _LIMITERS[key] = Limiter(key, limits)
    elif limiter.limits != limits:
        limiter.configure(limits)
    return limiter


def reset_limiters() -> None:
    """Forget every limiter and what it learned (tests, long-lived processes)."""
    _LIMITERS.clear()
