"""``anthropic:``: the Anthropic messages API through the official ``anthropic`` SDK.

``pip install 'agentplex[anthropic]'``. System messages become the
``system`` parameter; ``max_tokens``, which the API requires, is the
request's output cap (1024 if it has none). A JSON Schema is enforced the way
Anthropic documents for structured output with tools: one tool whose
``input_schema`` is the schema, and ``tool_choice`` forcing the model to call
it; the tool call's ``input`` is the answer. Anthropic's ``input_tokens``
leaves out the prompt tokens read from or written to its prompt cache
(``cache_read_input_tokens``, ``cache_creation_input_tokens``); agentplex's
``input_tokens`` counts all three, and the cache counts separately.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from agentplex.llm.base import Completion, Request
from agentplex.llm.http_provider import SdkProvider, sampling_options
from agentplex.result import Usage

DEFAULT_MAX_TOKENS = 1024


class AnthropicProvider(SdkProvider):
    name: ClassVar[str] = "anthropic"
    sdk_module: ClassVar[str] = "anthropic"
    extra: ClassVar[str] = "anthropic"

    def _new_client(self) -> Any:
        resolved = self.resolved
        return self.sdk.AsyncAnthropic(
            api_key=resolved.api_key.reveal() if resolved.api_key else None,
            base_url=resolved.base_url,
            timeout=self.sdk_timeout,
            max_retries=0,
            default_headers=dict(resolved.headers) or None,
            http_client=self._http_client(),
        )

    async def _call(self, request: Request) -> Completion:
        system = "\n\n".join(m.content for m in request.messages if m.role == "system")
        messages = [
            {"role": m.role, "content": m.content} for m in request.messages if m.role != "system"
        ]
        params = sampling_options(request, drop=("seed",))  # the messages API has no seed
        params.setdefault("max_tokens", request.max_output_tokens or DEFAULT_MAX_TOKENS)
        if system:
            params["system"] = system
        if request.schema is not None:
            params["tools"] = [
                {
                    "name": request.schema_name,
                    "description": "Record the answer (call this once, with the whole answer).",
                    "input_schema": dict(request.schema),
                }
            ]
            params["tool_choice"] = {"type": "tool", "name": request.schema_name}
        if request.on_text is None:
            data = await self.post_json(
                "/v1/messages", {"model": request.model, "messages": messages, **params}
            )
            blocks = data.get("content")
            usage = data.get("usage")
            if not isinstance(blocks, list) or not isinstance(usage, dict):
                raise self.malformed("no content blocks or usage")
            text = self._answer(request, [b for b in blocks if isinstance(b, dict)])
            finish = data.get("stop_reason") or "end_turn"
            return Completion(text, self._read_usage(usage), request.model, self.label, 0.0, finish)
        async with self.client.messages.stream(
            model=request.model, messages=messages, **params
        ) as stream:
            async for piece in stream.text_stream:
                request.on_text(piece)
            response = await stream.get_final_message()
        blocks = [b.model_dump() for b in response.content]
        text = self._answer(request, blocks)
        if request.schema is not None:
            request.on_text(text)  # the tool call's input is the answer: show it too
        return Completion(
            text,
            self._read_usage(response.usage.model_dump()),
            request.model,
            self.label,
            0.0,
            response.stop_reason or "end_turn",
        )

    def _answer(self, request: Request, blocks: list[dict[str, Any]]) -> str:
        """The answer's text: its text blocks, or the forced tool call's input as JSON."""
        if request.schema is not None:
            for block in blocks:
                if block.get("type") == "tool_use" and block.get("name") == request.schema_name:
                    return json.dumps(block.get("input"), ensure_ascii=False)
        return "".join(str(b.get("text", "")) for b in blocks if b.get("type") == "text")

    def _read_usage(self, usage: dict[str, Any]) -> Usage:
        """Anthropic's usage with the cached prompt tokens folded into ``input_tokens``."""
        try:
            fresh = int(usage.get("input_tokens") or 0)
            output = int(usage.get("output_tokens") or 0)
            read = int(usage.get("cache_read_input_tokens") or 0)
            written = int(usage.get("cache_creation_input_tokens") or 0)
        except (TypeError, ValueError):
            raise self.malformed("usage holds something other than token counts") from None
        return Usage(
            fresh + read + written, output, cache_read_tokens=read, cache_write_tokens=written
        )
