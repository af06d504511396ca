"""What a function node can reach while it runs: ``def step(ctx, ...)``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentplex.llm.base import Completion


@dataclass(frozen=True, slots=True)
class NodeContext:
    """Passed to a function node's parameter named ``ctx``.

    ``ask`` calls an agent role from inside a function node, under the run's
    provider pool and model; combine it with :func:`agentplex.fan_out` to make
    independent calls side by side. Not available to process-pool nodes.
    """

    run_id: str
    node_id: str
    attempt: int
    inputs: Mapping[str, Any]
    _ask: Callable[..., Awaitable[Completion]]

    async def ask(self, role: str, task: str, **keywords: Any) -> str:
        """Ask an agent of ``role`` to do ``task`` (plain text) and return its answer's text.

        Takes :meth:`complete`'s keywords: ``model``, ``on_text`` (the answer piece by
        piece as it streams), ``schema`` (a JSON Schema the answer must follow; the
        text is then the JSON), ``schema_name``, ``max_output_tokens`` (default: the
        role's, the run's, else the default cap) and provider options. Tokens are
        counted towards this node, even if the node then fails.
        """
        return (await self.complete(role, task, **keywords)).text

    async def complete(
        self,
        role: str,
        task: str,
        *,
        model: str | None = None,
        on_text: Callable[[str], None] | None = None,
        schema: Mapping[str, Any] | None = None,
        schema_name: str = "answer",
        max_output_tokens: int | None = None,
        **options: Any,
    ) -> Completion:
        """:meth:`ask`, returning the whole completion: its text (secrets masked),
        its ``usage`` and its ``finish_reason`` (``truncated``: cut off at the cap)."""
        return await self._ask(
            role,
            task,
            model=model,
            on_text=on_text,
            schema=schema,
            schema_name=schema_name,
            max_output_tokens=max_output_tokens,
            **options,
        )
