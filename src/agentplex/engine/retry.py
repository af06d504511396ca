"""The retry policy: what is worth retrying, under which budget, and how long to wait first.

Retryable: :class:`RetryableError` (and subclasses), a node timeout, an
exception whose ``retryable`` attribute is ``True`` (provider errors), a type
listed in the node's ``retry_on``, or a group made only of these.

Two budgets. A retryable error that asks the caller to slow down
(:func:`is_rate_limited`: a 429, Anthropic's 529 "overloaded", or any error
carrying a Retry-After above zero) is a *rate limit*: it is retried up to
``rate_limit_retries`` times (50 by default), and never uses up the node's
``retries``, which are kept for *real errors*: 5xx, timeouts, dropped
connections, malformed bodies, ``RetryableError`` and ``retry_on`` types. Each
budget counts its own kind, whatever order they come in; every attempt still
shows in the node's ``attempts``, its ``attempt_starts`` and the
``NodeRetrying`` events. ``total_timeout_s`` bounds both.

The wait: a Retry-After (capped by ``retry_after_max_s``) is waited out as
given, as the provider SDKs do; without one, exponential backoff with full
jitter over the count of that kind so far (``uniform(0, min(max, base *
2 ** (n - 1)))``), so a 429 after three 500s starts its own backoff from the
base.
"""

from __future__ import annotations

import random

from agentplex.exceptions import NodeTimeoutError, RetryableError
from agentplex.llm.errors import is_rate_limit


def is_retryable(exc: BaseException, retry_on: tuple[type[BaseException], ...] = ()) -> bool:
    """Return whether trying again may help with ``exc``."""
    if isinstance(exc, BaseExceptionGroup):
        return all(is_retryable(e, retry_on) for e in exc.exceptions)
    if isinstance(exc, RetryableError | NodeTimeoutError) or (
        retry_on and isinstance(exc, retry_on)
    ):
        return True
    return getattr(exc, "retryable", False) is True


def is_rate_limited(exc: BaseException) -> bool:
    """Return whether ``exc`` (or every member of a group) is a rate limit, not a failure."""
    if isinstance(exc, BaseExceptionGroup):
        return all(is_rate_limited(e) for e in exc.exceptions)
    return is_rate_limit(exc)


def describe(exc: BaseException) -> str:
    """Return ``Type: message`` for an error, unwrapping single-member groups."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    message = str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def backoff_delay(
    count: int,
    exc: BaseException,
    *,
    base_s: float,
    max_s: float,
    retry_after_max_s: float,
    rng: random.Random,
) -> float:
    """Return the wait after the ``count``-th retryable error of its kind.

    The error's Retry-After, capped, if it has one above zero; else full jitter
    under an exponential ceiling.
    """
    retry_after = getattr(exc, "retry_after_s", None)
    if isinstance(retry_after, int | float) and retry_after > 0:
        return min(float(retry_after), retry_after_max_s)
    return rng.uniform(0, min(max_s, base_s * 2 ** (count - 1)))
