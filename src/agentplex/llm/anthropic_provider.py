"""``anthropic:``: the Anthropic messages API through the official ``anthropic`` SDK.

``pip install 'agentplex[anthropic]'``. System messages become the
``system`` parameter; ``max_tokens`` (which the API requires) defaults to 1024.
"""

from __future__ import annotations

from typing import Any, ClassVar

from agentplex.llm.base import Completion, Request, Usage
from agentplex.llm.http_provider import SdkProvider, sampling_options

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
            timeout=resolved.timeout_s,
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
        messages_api = self.client.messages
        if request.on_text is None:
            response = await messages_api.create(model=request.model, messages=messages, **params)
        else:
            async with messages_api.stream(
                model=request.model, messages=messages, **params
            ) as stream:
                async for piece in stream.text_stream:
                    request.on_text(piece)
                response = await stream.get_final_message()
        content = getattr(response, "content", None)
        if not isinstance(content, list):
            raise self.malformed("no content blocks")
        text = "".join(b.text for b in content if getattr(b, "type", None) == "text")
        usage = Usage(int(response.usage.input_tokens), int(response.usage.output_tokens))
        finish = response.stop_reason or "end_turn"
        return Completion(text, usage, request.model, self.label, 0.0, finish)
