"""Building a :class:`RunResult` (and one node's :class:`NodeResult`) from values.

The builders take the compiled workflow, a node's :class:`NodeState` record,
and the few lookups a result needs (each agent's model and the cost of its
usage); never the run itself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from agentplex.model.workflow import AgentNode, MapNode
from agentplex.result import NodeResult, RunResult, Status

if TYPE_CHECKING:
    from agentplex.engine.state import NodeState
    from agentplex.model.workflow import CompiledWorkflow
    from agentplex.result import Usage


class NodeResults:
    """Build the :class:`NodeResult` of any node of one run from its record."""

    __slots__ = ("cost", "model_of", "reused", "wf")

    def __init__(
        self,
        compiled: CompiledWorkflow,
        *,
        model_of: Callable[[str], str | None],
        cost: Callable[[str, Usage | None], float | None],
        reused: Sequence[str] | set[str] = (),
    ) -> None:
        self.wf = compiled
        self.model_of = model_of
        """``provider:model`` of an agent node (None for other kinds)."""
        self.cost = cost
        """Dollars of a node's usage (None when unknown)."""
        self.reused = reused
        """Nodes taken from the stored run being resumed."""

    def __call__(self, node_id: str, record: NodeState) -> NodeResult:
        """The node's result as its record stands; a succeeded node's is built once."""
        result = record.result
        if result is not None:
            return result
        node = self.wf.nodes[node_id]
        body = node.body if isinstance(node, MapNode) else node
        usage = record.usage
        retries = record.retry_starts
        result = NodeResult(
            node_id,
            node.kind,
            record.status,
            record.output,
            record.started,
            record.finished,
            record.attempts,
            record.error,
            record.error_type,
            self.wf.roles[body.role].name if isinstance(body, AgentNode) else None,
            # Only agents (and agent maps) have a model: no lookup for the rest.
            self.model_of(node_id) if isinstance(body, AgentNode) else None,
            usage,
            self.cost(node_id, usage) if usage is not None else None,
            self.wf.deps[node_id],
            () if retries is None else tuple(retries),
            node_id in self.reused,
            record.traceback,
            record.finish_reason,
        )
        if record.status is Status.SUCCEEDED:
            record.result = result
        return result


def run_result(
    run_id: str,
    compiled: CompiledWorkflow,
    status: Status,
    *,
    nodes: Mapping[str, NodeResult],
    strategy: str,
    max_concurrency: int,
    wall_s: float,
    critical_path: Callable[[Mapping[str, float]], tuple[float, Sequence[str]]],
    inputs: Mapping[str, Any],
) -> RunResult:
    """The whole run's result; the critical path counts nodes that ran in this run.

    ``critical_path`` is given the durations of the nodes that succeeded and
    returns the longest chain's length and nodes (the scheduler's).
    """
    durations: dict[str, float] = {}
    for node_id, result in nodes.items():
        if (
            result.status == "succeeded"
            and result.started_s is not None
            and result.finished_s is not None
        ):
            durations[node_id] = result.finished_s - result.started_s
    length, path = critical_path(durations)
    return RunResult(
        run_id=run_id,
        workflow=compiled.name,
        status=status,
        strategy=strategy,
        max_concurrency=max_concurrency,
        wall_s=wall_s,
        nodes=nodes,
        critical_path=tuple(path),
        critical_path_s=length,
        inputs=dict(inputs),
        warnings=compiled.warnings,
    )
