"""``openai:`` and ``ollama:``: any OpenAI-compatible chat completions endpoint.

Through the official ``openai`` SDK (``pip install 'agentplex[openai]'``):
OpenAI itself, vLLM, llama.cpp's server, LM Studio, Ollama, or
``agentplex sim-server``. ``ollama:`` is the same provider with Ollama's
local endpoint as its default base URL and no key needed.
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

    async def _call(self, request: Request) -> Completion:
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        params = sampling_options(request)
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
        return Usage(prompt, completion or 0)
    return Usage(sum(estimate_tokens(m.content) for m in request.messages), estimate_tokens(text))


class OllamaProvider(OpenAIProvider):
    """Ollama's OpenAI-compatible endpoint (default ``http://127.0.0.1:11434/v1``)."""

    name: ClassVar[str] = "ollama"
