"""The run state: one small mutable record per node, and what a planner may do to a run.

A run keeps one :class:`NodeState` per node, in one dict by node id; the
runner, its :class:`~agentplex.engine.attempts.Attempts` and the result
builder (:mod:`agentplex.engine.run_record`) read and write those records and
nothing else. :class:`Outputs` is the read-only view of the records' outputs
that node bodies look their dependencies up in.

:class:`RunControl` is the whole of what code outside the engine may do to a
run while it goes (the planner, :mod:`agentplex.planning.controller`, is the
one user): add a node, gate every node's start, have a node finished later by
someone else, and read how a node ended. It receives one through the
``control`` callback of :func:`~agentplex.engine.runner.arun`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from agentplex.result import Status

if TYPE_CHECKING:
    from agentplex import events as ev
    from agentplex.model.workflow import AgentNode, CompiledWorkflow
    from agentplex.result import NodeResult, Usage


class NodeState:
    """What one node has done so far in this run (mutable; the runner's own).

    Times are seconds since the run started. ``retry_starts`` is ``None``
    until a second attempt starts (most nodes have one attempt; a list per
    node was a third of a no-op node's memory).
    """

    __slots__ = (
        "attempts",
        "error",
        "error_type",
        "finish_reason",
        "finished",
        "output",
        "result",
        "retry_starts",
        "started",
        "status",
        "traceback",
        "usage",
    )

    def __init__(self) -> None:
        self.status: Status = Status.PENDING
        self.output: Any = None
        self.started: float | None = None
        self.finished: float | None = None
        self.attempts = 0
        self.retry_starts: list[float] | None = None
        """Starts of the attempts after the first."""
        self.error: str | None = None
        self.error_type: str | None = None
        self.traceback: str | None = None
        self.usage: Usage | None = None
        self.finish_reason: str | None = None
        """Why the model stopped the node's answer (agents only)."""
        self.result: NodeResult | None = None
        """The node's result once it succeeded (built once: for the store and the run's result)."""

    def attempt_started(self, attempt: int, t: float) -> None:
        """Count attempt number ``attempt``, started at ``t``."""
        self.attempts = attempt
        if attempt > 1:
            if self.retry_starts is None:
                self.retry_starts = [t]
            else:
                self.retry_starts.append(t)

    def fail(self, error: str, error_type: str, traceback: str | None = None) -> None:
        """Record why the node failed (or was skipped)."""
        self.error = error
        self.error_type = error_type
        self.traceback = traceback or None


class Outputs(Mapping[str, Any]):
    """The outputs of a run's nodes by id, read through their records (nothing is copied)."""

    __slots__ = ("_records",)

    def __init__(self, records: Mapping[str, NodeState]) -> None:
        self._records = records

    def __getitem__(self, node_id: str) -> Any:
        return self._records[node_id].output

    def __iter__(self) -> Iterator[str]:
        return iter(self._records)

    def __len__(self) -> int:
        return len(self._records)


Gate = Callable[[str], None]
"""Called with a node's id just before it starts; raising fails the node with that error."""

Finisher = Callable[[str, Any], Awaitable[Any]]
"""Called with a node's id and its body's answer; what it returns becomes the node's output."""


class RunControl(Protocol):
    """What a planner may do to a running run; the runner's :class:`~agentplex.engine.runner.Run`
    implements it.

    - **add a node**: an agent whose role and dependencies are known already
      (so a growing graph cannot form a cycle); it starts once its
      dependencies succeed, or is skipped if one failed;
    - **gate** every node: a check called just before each node starts
      (raising fails that node: a token budget);
    - **finish a node later**: when the node's body has answered, it gives
      its slot back and its output is whatever the finisher returns, awaited
      outside any slot (a delegating agent whose sub-plan runs meanwhile);
    - **read** how a node stands (its :class:`~agentplex.result.NodeResult`)
      and the tokens used so far.

    Nothing else of a run is reachable from outside the engine.
    """

    @property
    def run_id(self) -> str:
        """The run's id."""
        ...

    @property
    def workflow(self) -> CompiledWorkflow:
        """The workflow as it stands (it grows with every added node; read it only)."""
        ...

    def now(self) -> float:
        """Seconds since the run started."""
        ...

    def add_node(self, node: AgentNode, *, parent: str | None = None) -> str:
        """Add an agent node; return ``ready``, ``waiting`` or ``skipped``.

        Raises:
            ConfigError: an unknown role or dependency, a bad model, or the layers strategy.
        """
        ...

    def gate(self, check: Gate) -> None:
        """Call ``check(node_id)`` before every node starts from now on."""
        ...

    def finish_later(self, node_id: str, finisher: Finisher) -> None:
        """Make ``finisher`` turn ``node_id``'s answer into its output, outside any slot."""
        ...

    def node(self, node_id: str) -> NodeResult:
        """How ``node_id`` stands: ``pending`` until it ended (succeeded, failed, skipped...)."""
        ...

    def tokens_used(self) -> int:
        """Tokens the run's nodes have used so far (input and output)."""
        ...

    def provider_kind(self) -> str | None:
        """The kind of provider the run's default model calls (``openai``, ``sim``...), if known."""
        ...

    def observe(self, observer: ev.Observer) -> None:
        """Receive every event of the run from now on."""
        ...
