"""The retry policy: what is worth retrying, and how long to wait first.

Retryable: :class:`RetryableError` (and subclasses), a node timeout, an
exception whose ``retryable`` attribute is ``True`` (provider errors), a type
listed in the node's ``retry_on``, or a group made only of these. The wait is
exponential backoff with full jitter; a provider's Retry-After, capped, sets
its floor.
"""

from __future__ import annotations

import random

from agentplex.exceptions import NodeTimeoutError, RetryableError


def is_retryable(exc: BaseException, retry_on: tuple[type[BaseException], ...] = ()) -> bool:
    """Return whether trying again may help with ``exc``."""
    if isinstance(exc, BaseExceptionGroup):
        return all(is_retryable(e, retry_on) for e in exc.exceptions)
    if isinstance(exc, RetryableError | NodeTimeoutError) or (
        retry_on and isinstance(exc, retry_on)
    ):
        return True
    return getattr(exc, "retryable", False) is True


def describe(exc: BaseException) -> str:
    """Return ``Type: message`` for an error, unwrapping single-member groups."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    message = str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def backoff_delay(
    attempt: int,
    exc: BaseException,
    *,
    base_s: float,
    max_s: float,
    retry_after_max_s: float,
    rng: random.Random,
) -> float:
    """Return the wait before attempt ``attempt + 1``: full jitter under an exponential ceiling."""
    ceiling = min(max_s, base_s * 2 ** (attempt - 1))
    delay = rng.uniform(0, ceiling)
    retry_after = getattr(exc, "retry_after_s", None)
    if isinstance(retry_after, int | float) and retry_after > 0:
        delay = max(delay, min(float(retry_after), retry_after_max_s))
    return delay
