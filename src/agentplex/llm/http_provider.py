"""What the SDK-backed providers share: lazy SDK import, one client, error mapping.

Each provider instance owns one SDK client (one HTTP connection pool) for one
provider configuration; a run creates it on first use and closes it at the
end, and every node of the run that names the configuration reuses it. SDK
retries are off (``max_retries=0``): the engine's retry loop sees every
failure, so there is one backoff policy and one place that honours
Retry-After.

The HTTP transport is aiohttp when it is installed (the ``openai`` and
``anthropic`` extras install it): with hundreds of calls in flight the SDKs'
default httpx transport spends most of its time managing its connection pool
(1,000 concurrent calls at 1 s latency took 15 s with it and 4 s with aiohttp,
see ``bench/RESULTS.md``). A provider's ``options: {transport: httpx}`` picks
the default transport instead.

Calls that do not stream go through the SDK client's documented raw request
method (``client.post(path, body=..., cast_to=httpx.Response)``) with a plain
JSON body, and read the JSON answer themselves: the SDK's parameter
transformation and response models cost more client CPU than everything else
on the path (a third of a 1,000-call batch's makespan). Authentication, base
URLs, headers and error types are still the SDK's.

The SDK's timeouts (connect, read, write) are set to the configuration's
``timeout_s`` too, but a read timeout restarts on every byte, so a server that
trickles one byte every few seconds never trips it; what bounds a call is the
wall-clock deadline :class:`~agentplex.llm.base.Provider` puts around it.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
from abc import abstractmethod
from typing import Any, ClassVar

from agentplex.exceptions import MissingExtraError, ProviderError
from agentplex.llm.base import Completion, Provider, Request
from agentplex.llm.config import ResolvedProvider
from agentplex.llm.errors import map_sdk_error


class SdkProvider(Provider):
    """Base of providers that call an official SDK over HTTP."""

    sdk_module: ClassVar[str]
    extra: ClassVar[str]

    def __init__(self, resolved: ResolvedProvider, *, max_connections: int = 16) -> None:
        super().__init__(limits=resolved.limits, limit_key=resolved.identity)
        self.resolved = resolved
        self.label = resolved.name
        self.set_call_timeout(resolved.timeout_s)
        limit = resolved.limits.max_concurrency
        self.max_connections = min(limit, max_connections) if limit else max_connections
        self.sdk = self._import_sdk()
        if self.transport == "aiohttp" and importlib.util.find_spec("aiohttp") is None:
            raise MissingExtraError("aiohttp", self.extra, f"the {self.name!r} aiohttp transport")
        self._client: Any = None

    @classmethod
    def _import_sdk(cls) -> Any:
        try:
            return importlib.import_module(cls.sdk_module)
        except ImportError:
            raise MissingExtraError(
                cls.sdk_module, cls.extra, f"the {cls.name!r} provider"
            ) from None

    def _http_client(self) -> Any:
        """An HTTP client whose pool holds as many connections as calls may be in flight."""
        import httpx2  # the SDKs' own HTTP library

        limits = httpx2.Limits(
            max_connections=self.max_connections,
            max_keepalive_connections=self.max_connections,
        )
        factory = self.sdk.DefaultAsyncHttpxClient
        if self.transport == "aiohttp":
            factory = self.sdk.DefaultAioHttpClient
        return factory(limits=limits, timeout=self.sdk_timeout)

    @property
    def sdk_timeout(self) -> float | None:
        """The SDK's connect/read/write timeout: the call's deadline (None: none)."""
        return self.call_timeout_s

    @property
    def transport(self) -> str:
        """``aiohttp`` if chosen or, by default, installed; else ``httpx``."""
        chosen = self.resolved.options.get("transport")
        if chosen is not None:
            return str(chosen)
        installed = importlib.util.find_spec("aiohttp") is not None
        return "aiohttp" if installed and hasattr(self.sdk, "DefaultAioHttpClient") else "httpx"

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = self._new_client()
        return self._client

    @abstractmethod
    def _new_client(self) -> Any:
        """Create the SDK's async client (``max_retries=0``)."""

    @abstractmethod
    async def _call(self, request: Request) -> Completion:
        """Make the call with the SDK."""

    async def complete(self, request: Request) -> Completion:
        if self._client is None:  # setting up (about 0.2 s) is not the call: outside its deadline
            self._client = self._new_client()
        return await super().complete(request)

    async def _complete(self, request: Request) -> Completion:
        try:
            return await self._call(request)
        except ProviderError:
            raise
        except Exception as exc:
            mapped = map_sdk_error(self.label, exc, self.sdk, self.resolved.timeout_s)
            if mapped is None:
                raise
            raise mapped from None

    async def post_json(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST ``body`` to ``path`` (under the base URL) with the SDK; return the JSON answer.

        Raises:
            ProviderError: retryable, if the answer is not a JSON object.
        """
        import httpx2

        response = await self.client.post(path, body=body, cast_to=httpx2.Response)
        try:
            data = json.loads(response.content)
        except ValueError:
            raise self.malformed("the body is not JSON") from None
        if not isinstance(data, dict):
            raise self.malformed("the body is not a JSON object")
        return data

    def malformed(self, what: str) -> ProviderError:
        return ProviderError(self.label, f"malformed response: {what}", retryable=True)

    async def aclose(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()


def sampling_options(request: Request, *, drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """Return the request's options meant for the endpoint (not the simulator's own)."""
    return {k: v for k, v in request.options.items() if not k.startswith("sim_") and k not in drop}
