"""What a function node can reach while it runs: ``def step(ctx, ...)``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any


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
    _ask: Callable[..., Awaitable[str]]

    async def ask(
        self,
        role: str,
        task: str,
        *,
        model: str | None = None,
        on_text: Callable[[str], None] | None = None,
        **options: Any,
    ) -> str:
        """Ask an agent of ``role`` to do ``task`` (plain text) and return its answer.

        ``on_text``, if given, receives the answer piece by piece as it streams.
        Tokens are counted towards this node.
        """
        return await self._ask(role, task, model=model, on_text=on_text, **options)
