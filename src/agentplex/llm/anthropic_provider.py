"""``anthropic:``: the Anthropic messages API through the official ``anthropic`` SDK.

``pip install 'agentplex[anthropic]'``. System messages become the
``system`` parameter; ``max_tokens`` (which the API requires) defaults to 1024.
"""

from __future__ import annotations

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
        params.setdefault("max_tokens", DEFAULT_MAX_TOKENS)
        if system:
            params["system"] = system
        if request.on_text is None:
            data = await self.post_json(
                "/v1/messages", {"model": request.model, "messages": messages, **params}
            )
            blocks = data.get("content")
            usage = data.get("usage")
            if not isinstance(blocks, list) or not isinstance(usage, dict):
                raise self.malformed("no content blocks or usage")
            text = "".join(
                str(b.get("text", ""))
                for b in blocks
                if isinstance(b, dict) and b.get("type") == "text"
            )
            try:
                tokens = Usage(
                    int(usage.get("input_tokens", 0)), int(usage.get("output_tokens", 0))
                )
            except (TypeError, ValueError):
                raise self.malformed("usage is not a pair of token counts") from None
            finish = data.get("stop_reason") or "end_turn"
            return Completion(text, tokens, request.model, self.label, 0.0, finish)
        async with self.client.messages.stream(
            model=request.model, messages=messages, **params
        ) as stream:
            async for piece in stream.text_stream:
                request.on_text(piece)
            response = await stream.get_final_message()
        text = "".join(b.text for b in response.content if getattr(b, "type", None) == "text")
        tokens = Usage(int(response.usage.input_tokens), int(response.usage.output_tokens))
        return Completion(
            text, tokens, request.model, self.label, 0.0, response.stop_reason or "end_turn"
        )
