"""``openai:`` and ``ollama:``: any OpenAI-compatible chat completions endpoint.

Through the official ``openai`` SDK (``pip install 'agentplex[openai]'``):
OpenAI itself, vLLM, llama.cpp's server, LM Studio, Ollama, or
``agentplex sim-server``. ``ollama:`` is the same provider with Ollama's
local endpoint as its default base URL and no key needed.

The output cap goes out as ``max_completion_tokens`` to OpenAI itself (its
reasoning models refuse the older ``max_tokens``) and as ``max_tokens`` to
every other endpoint, since that is the name every compatible server knows
(llama.cpp, vLLM, LM Studio, Ollama); a provider's ``options:
{max_tokens_param: ...}`` picks the name. A JSON Schema goes out as
``response_format: {type: json_schema, ...}``: OpenAI, llama.cpp and vLLM
enforce it with a grammar, and so does Ollama's OpenAI-compatible endpoint
from v0.5 on (its native ``/api/chat`` calls the same thing ``format``;
pydantic-ai's Ollama model documents the ``/v1`` behaviour).
Cached prompt tokens come from ``usage.prompt_tokens_details.cached_tokens``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from agentplex.llm.base import Completion, Request, estimate_tokens
from agentplex.llm.http_provider import SdkProvider, sampling_options
from agentplex.result import Usage


class OpenAIProvider(SdkProvider):
    name: ClassVar[str] = "openai"
    sdk_module: ClassVar[str] = "openai"
    extra: ClassVar[str] = "openai"

    def _new_client(self) -> Any:
        resolved = self.resolved
        return self.sdk.AsyncOpenAI(
            api_key=resolved.api_key.reveal() if resolved.api_key else None,
            base_url=resolved.base_url,
            timeout=self.sdk_timeout,
            max_retries=0,
            default_headers=dict(resolved.headers) or None,
            http_client=self._http_client(),
        )

    def _cap_param(self) -> str:
        chosen = self.resolved.options.get("max_tokens_param")
        if isinstance(chosen, str) and chosen:
            return chosen
        url = self.resolved.base_url
        official = self.name == "openai" and (not url or "api.openai.com" in url)
        return "max_completion_tokens" if official else "max_tokens"

    @staticmethod
    def _schema_params(request: Request) -> dict[str, Any]:
        if request.schema is None:
            return {}
        return {
            "response_format": {
                "type": "json_schema",
                "json_schema": {
                    "name": request.schema_name,
                    "schema": dict(request.schema),
                    "strict": strict_compatible(request.schema),
                },
            }
        }

    async def _call(self, request: Request) -> Completion:
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        params = sampling_options(request)
        if request.max_output_tokens is not None:
            params.setdefault(self._cap_param(), request.max_output_tokens)
        params.update(self._schema_params(request))
        if request.on_text is None:
            data = await self.post_json(
                "/chat/completions", {"model": request.model, "messages": messages, **params}
            )
            try:
                choice = data["choices"][0]
                text = choice["message"]["content"]
            except (KeyError, IndexError, TypeError):
                raise self.malformed("no choices[0].message.content") from None
            if not isinstance(text, str):
                raise self.malformed("choices[0].message.content is not text")
            usage = _usage(data.get("usage"), request, text)
            finish = choice.get("finish_reason") or "stop"
            return Completion(text, usage, request.model, self.label, 0.0, finish)
        pieces: list[str] = []
        reported: Any = None
        finish = "stop"
        stream = await self.client.chat.completions.create(
            model=request.model,
            messages=messages,
            stream=True,
            stream_options={"include_usage": True},
            **params,
        )
        async with stream:
            async for chunk in stream:
                if chunk.usage is not None:
                    reported = chunk.usage
                for choice in chunk.choices or ():
                    piece = choice.delta.content if choice.delta else None
                    if piece:
                        pieces.append(piece)
                        request.on_text(piece)
                    if choice.finish_reason:
                        finish = choice.finish_reason
        text = "".join(pieces)
        return Completion(
            text, _usage(reported, request, text), request.model, self.label, 0.0, finish
        )


def _usage(reported: Any, request: Request, text: str) -> Usage:
    """The endpoint's usage report, or an estimate when it sends none (some local servers).

    ``reported`` is the JSON object or the SDK's model of it.
    """

    def get(name: str) -> Any:
        return reported.get(name) if isinstance(reported, dict) else getattr(reported, name, None)

    prompt = get("prompt_tokens") if reported is not None else None
    completion = get("completion_tokens") if reported is not None else None
    if isinstance(prompt, int) and isinstance(completion, int | None):
        details = get("prompt_tokens_details")
        cached = (
            details.get("cached_tokens")
            if isinstance(details, dict)
            else getattr(details, "cached_tokens", None)
        )
        read = cached if type(cached) is int and 0 <= cached <= prompt else 0
        return Usage(prompt, completion or 0, cache_read_tokens=read)
    return Usage(
        sum(estimate_tokens(m.content) for m in request.messages),
        estimate_tokens(text),
        estimated=True,
    )


def strict_compatible(schema: Any) -> bool:
    """Whether OpenAI's strict mode accepts ``schema``: every object lists all its
    properties as required and sets ``additionalProperties: false``. Strict mode
    refuses other schemas with a 400, so those go out non-strict (the answer is
    still checked against the schema when it comes back)."""
    if isinstance(schema, list):
        return all(strict_compatible(s) for s in schema)
    if not isinstance(schema, dict):
        return True
    if schema.get("type") == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        if schema.get("additionalProperties") is not False:
            return False
        if set(schema.get("required") or ()) != set(props):
            return False
    return all(strict_compatible(v) for k, v in schema.items() if k != "enum" and k != "const")


class OllamaProvider(OpenAIProvider):
    """Ollama's OpenAI-compatible endpoint (default ``http://127.0.0.1:11434/v1``)."""

    name: ClassVar[str] = "ollama"
