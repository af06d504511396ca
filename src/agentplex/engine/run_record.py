"""Building a :class:`RunResult` (and one node's :class:`NodeResult`) from a run's state."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from agentplex.model.workflow import AgentNode, MapNode
from agentplex.result import NodeResult, RunResult

if TYPE_CHECKING:
    from agentplex.engine.runner import _Run


def node_result(run: _Run, node_id: str) -> NodeResult:
    """The node's record as it stands."""
    node = run.nodes[node_id]
    error, error_type = run.errors.get(node_id, (None, None)) if run.errors else (None, None)
    body = node.body if isinstance(node, MapNode) else node
    usage = run.usage.get(node_id) if run.usage else None
    return NodeResult(
        node_id,
        node.kind,
        run.status.get(node_id, "pending"),
        run.outputs.get(node_id),
        run.started.get(node_id),
        run.finished.get(node_id),
        run.attempts.get(node_id, 0),
        error,
        error_type,
        run.wf.roles[body.role].name if isinstance(body, AgentNode) else None,
        run.bodies.model_of(node_id),
        usage,
        run.bodies.cost(node_id, usage) if usage is not None else None,
        tuple(run.wf.deps[node_id]),
        tuple(run.attempt_starts.get(node_id, ())),
        node_id in run.reused,
    )


def run_result(run: _Run, status: Literal["succeeded", "failed", "cancelled"]) -> RunResult:
    """The whole run's result; the critical path counts nodes that ran in this run."""
    wall = run.now()
    results: dict[str, NodeResult] = {}
    durations: dict[str, float] = {}
    for node_id in run.nodes:
        result = results[node_id] = run.node_result(node_id)
        if (
            result.status == "succeeded"
            and result.started_s is not None
            and result.finished_s is not None
        ):
            durations[node_id] = result.finished_s - result.started_s
    length, path = run.scheduler.critical_path(durations)
    return RunResult(
        run_id=run.run_id,
        workflow=run.wf.name,
        status=status,
        strategy=run.strategy,
        max_concurrency=run.options.max_concurrency,
        wall_s=wall,
        nodes=results,
        critical_path=tuple(path),
        critical_path_s=length,
        inputs=dict(run.inputs),
        warnings=run.wf.warnings,
    )
