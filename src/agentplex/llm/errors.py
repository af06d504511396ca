"""Turn what an HTTP provider SDK raised into one :class:`ProviderError`.

The engine's retry loop decides from ``retryable``, ``status`` and
``retry_after_s`` alone, so every SDK failure is mapped here:

- retried: timeouts, connection errors (refused, reset, dropped), a body
  that is not valid JSON, 408, 409, 429 and every 5xx (Anthropic's 529
  included), with ``Retry-After`` read from ``retry-after-ms``,
  ``retry-after`` in seconds, or ``retry-after`` as an HTTP date;
- not retried: every other 4xx, with a message that says what to fix.

Of the retried ones, :func:`is_rate_limit` picks out those that say "too many
requests, come back later" rather than "this call failed": 429, Anthropic's
529 (overloaded), and any answer with a Retry-After above zero. The engine
retries those under their own budget (``rate_limit_retries``), so they never
use up a node's ``retries``, and the limiter slows down on them.

Messages pass through :func:`agentplex.llm.config.redact`.
"""

from __future__ import annotations

import email.utils
import json
import time
from collections.abc import Mapping
from typing import Any

from agentplex.exceptions import ProviderError
from agentplex.llm.config import redact

RETRYABLE_STATUS = frozenset({408, 409, 429})
RATE_LIMIT_STATUS = frozenset({429, 529})
"""Too many requests, and Anthropic's "overloaded"."""

_HINTS = {
    400: "the provider rejected the request; check the model's options (max_tokens, temperature)",
    401: "the API key was refused; check the key variable (OPENAI_API_KEY, ANTHROPIC_API_KEY) "
    "or the provider's api_key_env",
    403: "the key may not use this model or endpoint",
    404: "no such model or endpoint; check the model name and the base URL (usually ending in /v1)",
    413: "the prompt is too large for the endpoint",
    422: "the provider could not process the request; check the model's options",
}


def is_retryable_status(status: int) -> bool:
    """Return whether an HTTP status is worth trying again."""
    return status in RETRYABLE_STATUS or status >= 500


def is_rate_limit(exc: BaseException) -> bool:
    """Return whether ``exc`` asks the caller to slow down rather than reporting a failure.

    True for a ``status`` of 429 or 529, or a ``retry_after_s`` above zero (the
    server said when to come back). Whether to retry at all is ``retryable``'s call.
    """
    if getattr(exc, "status", None) in RATE_LIMIT_STATUS:
        return True
    retry_after = getattr(exc, "retry_after_s", None)
    return isinstance(retry_after, int | float) and retry_after > 0


def parse_retry_after(
    headers: Mapping[str, str] | None, *, now: float | None = None
) -> float | None:
    """Return the wait a response asks for, in seconds, or None."""
    if not headers:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def status_error(
    provider: str, status: int, message: str, headers: Mapping[str, str] | None = None
) -> ProviderError:
    """Return the error for an HTTP error response."""
    retryable = is_retryable_status(status)
    hint = _HINTS.get(status)
    text = redact(message or "no message")
    if hint and not retryable:
        text = f"{text}. Fix: {hint}"
    return ProviderError(
        provider, text, retryable=retryable, status=status, retry_after_s=parse_retry_after(headers)
    )


def _body_message(body: Any, fallback: str) -> str:
    if isinstance(body, Mapping):
        error = body.get("error", body)
        if isinstance(error, Mapping) and isinstance(error.get("message"), str):
            return str(error["message"])
    return fallback


def map_sdk_error(
    provider: str, exc: BaseException, sdk: Any, timeout_s: float
) -> ProviderError | None:
    """Map an exception from the ``openai`` or ``anthropic`` SDK (module ``sdk``); None if foreign.

    Both SDKs share one error hierarchy (APIStatusError, APITimeoutError,
    APIConnectionError, APIResponseValidationError).
    """
    if isinstance(exc, sdk.APIStatusError):
        headers = {k.lower(): v for k, v in exc.response.headers.items()}
        return status_error(provider, exc.status_code, _body_message(exc.body, str(exc)), headers)
    if isinstance(exc, sdk.APITimeoutError) and not _dropped(exc):
        return ProviderError(
            provider, f"request timed out after {timeout_s:g}s", retryable=True, status=None
        )
    if isinstance(exc, sdk.APIConnectionError):
        cause = _root(exc)
        detail = f" ({type(cause).__name__}: {cause})" if cause else ""
        return ProviderError(
            provider,
            redact(f"connection failed{detail}"),
            retryable=True,
            status=None,
            connection=True,
        )
    if isinstance(exc, sdk.APIResponseValidationError | json.JSONDecodeError):
        return ProviderError(
            provider, f"malformed response body ({redact(str(exc))[:120]})", retryable=True
        )
    return None


def _root(exc: BaseException) -> BaseException | None:
    """Return the innermost cause of ``exc``, or None if it has none."""
    seen: list[BaseException] = []
    cause = exc.__cause__ or exc.__context__
    while cause is not None and cause not in seen:
        seen.append(cause)
        cause = cause.__cause__ or cause.__context__
    return seen[-1] if seen else None


def _dropped(exc: BaseException) -> bool:
    """Whether an SDK "timeout" really is a connection the server closed.

    The SDKs' aiohttp transport reports every aiohttp connection error (a
    server disconnecting mid-request included) as a connect timeout.
    """
    cause = _root(exc)
    return (
        cause is not None
        and type(cause).__module__.startswith("aiohttp")
        and not isinstance(cause, TimeoutError)
    )
