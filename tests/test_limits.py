"""The process-wide limiter: concurrency, RPM, TPM, Retry-After and AIMD, on a fake clock."""

from __future__ import annotations

import asyncio
import math

import pytest

from agentplex.exceptions import ConfigError, ProviderError
from agentplex.llm.base import (
    CALL_DEADLINE,
    DEFAULT_CALL_TIMEOUT_S,
    Completion,
    Message,
    Provider,
    Request,
)
from agentplex.llm.limits import Limiter, Limits, limiter_for, reset_limiters
from agentplex.result import Usage


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def waiting(tasks: list[asyncio.Task[object]]) -> int:
    return sum(1 for t in tasks if not t.done())


async def test_concurrency_limit_is_first_come_first_served() -> None:
    limiter = Limiter("k", Limits(max_concurrency=2, adaptive=False), clock=Clock())
    order: list[int] = []

    async def call(i: int) -> object:
        ticket = await limiter.acquire()
        order.append(i)
        return ticket

    tasks = [asyncio.create_task(call(i)) for i in range(5)]
    await settle()
    assert order == [0, 1]
    assert waiting(tasks) == 3
    limiter.release(tasks[0].result())  # type: ignore[arg-type]
    await settle()
    assert order == [0, 1, 2]
    for task in tasks[1:3]:
        limiter.release(task.result())  # type: ignore[arg-type]
    await settle()
    assert order == [0, 1, 2, 3, 4]
    assert limiter.statistics().in_flight == 2
    assert limiter.statistics().waited == 3


async def test_rpm_paces_starts_evenly() -> None:
    clock = Clock()
    limiter = Limiter("k", Limits(rpm=60, adaptive=False), clock=clock)  # one a second
    tasks = [asyncio.create_task(limiter.acquire()) for _ in range(3)]
    await settle()
    assert waiting(tasks) == 2  # the bucket holds one request, so no burst
    clock.t += 0.5
    limiter._pump()
    await settle()
    assert waiting(tasks) == 2
    clock.t += 0.5
    limiter._pump()
    await settle()
    assert waiting(tasks) == 1
    clock.t += 1.0
    limiter._pump()
    await settle()
    assert waiting(tasks) == 0
    assert limiter.pace() == pytest.approx(1.0)


async def test_tpm_charges_estimates_and_reconciles_with_usage() -> None:
    clock = Clock()
    limiter = Limiter("k", Limits(tpm=600, adaptive=False), clock=clock)  # 10 tokens/s
    big = await limiter.acquire(100)  # a full bucket admits even a large call (debt)
    follower = asyncio.create_task(limiter.acquire(5))
    await settle()
    assert not follower.done()  # 90 tokens of debt: about 9 s of refill
    limiter.release(big, tokens_used=5)  # the call used far fewer tokens than estimated
    await settle()
    assert follower.done()  # the refund paid the debt at once


async def test_retry_after_pauses_every_caller_of_the_key() -> None:
    clock = Clock()
    limiter = Limiter("k", Limits(adaptive=False), clock=clock)
    ticket = await limiter.acquire()
    limiter.release(ticket, "rate_limited", retry_after_s=2.0)
    task = asyncio.create_task(limiter.acquire())
    await settle()
    assert not task.done()
    clock.t += 2.0
    limiter._pump()
    await settle()
    assert task.done()


async def test_retry_after_is_capped() -> None:
    clock = Clock()
    limiter = Limiter("k", Limits(adaptive=False, retry_after_max_s=5), clock=clock)
    limiter.release(await limiter.acquire(), "rate_limited", retry_after_s=3600)
    task = asyncio.create_task(limiter.acquire())
    clock.t += 5.0
    limiter._pump()
    await settle()
    assert task.done()


async def test_aimd_starts_pacing_at_a_fraction_of_the_measured_success_rate() -> None:
    clock = Clock()
    limiter = Limiter("k", Limits(), clock=clock)
    assert limiter.pace() is None  # unpaced until a 429 says otherwise
    for _ in range(40):  # 20 successes a second for 2 s
        ticket = await limiter.acquire()
        clock.t += 0.05
        limiter.release(ticket)
    late = await limiter.acquire()
    limiter.release(late, "rate_limited")
    pace = limiter.pace()
    assert pace is not None
    assert pace == pytest.approx(0.9 * 20, rel=0.1)
    assert limiter.statistics().decreases == 1


async def test_aimd_cuts_once_per_round_trip_and_recovers_gradually() -> None:
    clock = Clock()
    limiter = Limiter("k", Limits(rpm=600), clock=clock)  # configured 10/s
    tickets = []
    for _ in range(3):  # three calls in flight, sent before any 429
        tickets.append(await limiter.acquire())
        clock.t += 0.1
    limiter.release(tickets[0], "rate_limited")
    first = limiter.pace()
    assert first is not None
    assert first < 10
    limiter.release(tickets[1], "rate_limited")  # sent before the cut: says nothing new
    limiter.release(tickets[2], "rate_limited")
    assert limiter.pace() == first
    assert limiter.statistics().decreases == 1
    clock.t += 1.0
    later = await limiter.acquire()
    limiter.release(later, "rate_limited")  # sent after the cut: cut again
    second = limiter.pace()
    assert second is not None
    assert second < first
    assert limiter.statistics().decreases == 2
    for _ in range(200):  # a long run of successes grows the pace back to the configured limit
        clock.t += 2.0
        limiter._pump()
        limiter.release(await limiter.acquire())
    assert limiter.pace() == pytest.approx(10.0)


async def test_aimd_cuts_to_the_success_rate_while_most_calls_are_rate_limited() -> None:
    clock = Clock()
    limiter = Limiter("k", Limits(), clock=clock)
    tickets = []
    for _ in range(40):  # 20 a second go out; 2 a second are accepted
        tickets.append(await limiter.acquire())
        clock.t += 0.05
    for i, ticket in enumerate(tickets):
        limiter.release(ticket, "ok" if i % 10 == 0 else "rate_limited")
    assert limiter.statistics().decreases == 1  # all sent before the first cut
    clock.t += 0.1
    limiter.release(await limiter.acquire(), "rate_limited")
    pace = limiter.pace()
    assert pace is not None
    assert pace < 3  # a fraction of the 2/s accepted, not of the 20/s sent


async def test_aimd_never_cuts_below_half_the_best_recent_success_rate() -> None:
    clock = Clock()
    limiter = Limiter("k", Limits(), clock=clock)
    for _ in range(80):  # 20 a second for 4 s, all accepted
        clock.t += 0.05
        limiter.release(await limiter.acquire())
    # Now one call in five gets a 429 whatever the rate: an overloaded
    # provider. Cutting on each would end in a crawl; the floor holds at 10/s.
    for i in range(300):
        clock.t += 0.1
        limiter._pump()
        limiter.release(await limiter.acquire(), "rate_limited" if i % 5 == 0 else "ok")
    stats = limiter.statistics()
    assert stats.decreases >= 5
    assert stats.pace_rps is not None
    assert stats.pace_rps >= 10.0 - 1e-9
    clock.t += 60  # the best rate is forgotten after 30 s: a lower real limit can be found
    limiter._pump()
    limiter.release(await limiter.acquire(), "rate_limited")
    assert (limiter.pace() or 0) < stats.pace_rps


async def test_non_adaptive_limits_ignore_429_for_pace() -> None:
    limiter = Limiter("k", Limits(adaptive=False), clock=Clock())
    limiter.release(await limiter.acquire(), "rate_limited")
    assert limiter.pace() is None


async def test_cancelled_waiter_leaves_the_queue() -> None:
    limiter = Limiter("k", Limits(max_concurrency=1, adaptive=False), clock=Clock())
    held = await limiter.acquire()
    doomed = asyncio.create_task(limiter.acquire())
    after = asyncio.create_task(limiter.acquire())
    await settle()
    doomed.cancel()
    await settle()
    limiter.release(held)
    await settle()
    assert after.done()
    assert limiter.statistics().in_flight == 1


async def test_a_ticket_granted_as_its_waiter_is_cancelled_is_given_back() -> None:
    limiter = Limiter("k", Limits(max_concurrency=1, adaptive=False), clock=Clock())
    held = await limiter.acquire()
    task = asyncio.create_task(limiter.acquire())
    await settle()
    limiter.release(held)  # grants the waiter...
    task.cancel()  # ...which is cancelled before it runs again
    with pytest.raises(asyncio.CancelledError):
        await task
    assert limiter.statistics().in_flight == 0
    assert (await asyncio.wait_for(limiter.acquire(), 1)) is not None


async def test_limiters_are_shared_per_key_and_reconfigured() -> None:
    a = limiter_for("openai|url|acct|gpt", Limits(rpm=100))
    b = limiter_for("openai|url|acct|gpt", Limits(rpm=100))
    assert a is b
    c = limiter_for("openai|url|acct|gpt", Limits(rpm=50))
    assert c is a
    assert a.limits.rpm == 50
    assert limiter_for("openai|url|acct|other", Limits()) is not a
    reset_limiters()
    assert limiter_for("openai|url|acct|gpt", Limits()) is not a


@pytest.mark.parametrize(
    ("limits", "field"),
    [
        (Limits(max_concurrency=0), "max_concurrency"),
        (Limits(rpm=0), "rpm"),
        (Limits(tpm=-5), "tpm"),
        (Limits(decrease=1.5), "decrease"),
    ],
)
def test_invalid_limits_name_the_field(limits: Limits, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        limits.check("providers.openai")


class _Scripted(Provider):
    """A provider whose calls take ``delay_s`` and then raise ``error`` (or answer)."""

    name = "scripted"

    def __init__(self, *, delay_s: float = 0.0, error: BaseException | None = None) -> None:
        super().__init__(limits=Limits(max_concurrency=1), limit_key="scripted")
        self.delay_s = delay_s
        self.error = error

    async def _complete(self, request: Request) -> Completion:
        await asyncio.sleep(self.delay_s)
        if self.error is not None:
            raise self.error
        return Completion("ok", Usage(1, 1), request.model, self.name)


REQUEST = Request("m", (Message("user", "hi"),))


@pytest.mark.parametrize("status", [429, 529])
async def test_429_and_529_tell_the_limiter_to_slow_down(status: int) -> None:
    error = ProviderError("scripted", "busy", retryable=True, status=status, retry_after_s=0.01)
    provider = _Scripted(error=error)
    with pytest.raises(ProviderError):
        await provider.complete(REQUEST)
    limiter = provider.limiter("m")
    assert limiter is not None
    assert limiter.statistics().rate_limited == 1


async def test_a_500_is_an_error_to_the_limiter_not_a_rate_limit() -> None:
    provider = _Scripted(error=ProviderError("scripted", "boom", retryable=True, status=500))
    with pytest.raises(ProviderError):
        await provider.complete(REQUEST)
    limiter = provider.limiter("m")
    assert limiter is not None
    assert limiter.statistics().rate_limited == 0


async def test_a_call_past_its_deadline_fails_retryably_and_gives_its_ticket_back() -> None:
    provider = _Scripted(delay_s=30)
    provider.set_call_timeout(0.05)
    with pytest.raises(ProviderError, match=r"timed out after 0\.05s") as info:
        await provider.complete(REQUEST)
    assert info.value.retryable
    limiter = provider.limiter("m")
    assert limiter is not None
    assert limiter.statistics().in_flight == 0
    assert provider.statistics().failures == 1


async def test_waiting_for_the_limiter_does_not_count_against_the_deadline() -> None:
    slow, quick = _Scripted(delay_s=1.0), _Scripted(delay_s=0.0)
    quick.set_call_timeout(0.5)  # shorter than the wait for the one ticket
    first = asyncio.create_task(slow.complete(REQUEST))
    await asyncio.sleep(0.05)
    assert (await quick.complete(REQUEST)).text == "ok"
    await first


def test_infinity_turns_the_call_deadline_off() -> None:
    provider = _Scripted()
    assert provider.call_timeout_s == DEFAULT_CALL_TIMEOUT_S
    provider.set_call_timeout(math.inf)
    assert provider.call_timeout_s is None


async def test_a_nodes_deadline_binds_its_own_calls_not_tasks_it_starts() -> None:
    provider = _Scripted(delay_s=0.3)
    provider.set_call_timeout(math.inf)
    loop = asyncio.get_running_loop()
    token = CALL_DEADLINE.set((asyncio.current_task(), loop.time() + 0.05))  # type: ignore[arg-type]
    try:
        started_meanwhile = asyncio.create_task(provider.complete(REQUEST))  # inherits the context
        with pytest.raises(ProviderError, match="total time limit"):
            await provider.complete(REQUEST)
        assert (await started_meanwhile).text == "ok"
    finally:
        CALL_DEADLINE.reset(token)
