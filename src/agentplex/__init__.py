"""agentplex: run multi-agent LLM workflows with real parallelism.

Build a workflow in Python (:class:`Workflow`) or load one from a file
(:func:`load_workflow`), then :func:`run` it::

    import agentplex as ap

    wf = ap.Workflow("compare")
    py = wf.agent("researcher", "Research Python web frameworks for {query}")
    rs = wf.agent("researcher", "Research Rust web frameworks for {query}")
    wf.agent("analyzer", "Compare the findings", depends_on=[py, rs])
    result = ap.run(wf, inputs={"query": "web backends"})
    print(result.speedup)
"""

from agentplex.batch.benchmark import BenchmarkResult, DesignResult, benchmark
from agentplex.batch.driver import arun_batch, run_batch
from agentplex.batch.inputs import BatchItem
from agentplex.batch.result import BatchResult, ItemResult
from agentplex.batch.resume import aresume, resume
from agentplex.engine.context import NodeContext
from agentplex.engine.fanout import fan_out
from agentplex.engine.options import RunOptions
from agentplex.engine.runner import arun, run
from agentplex.engine.scheduler import Scheduler
from agentplex.events import (
    BatchFinished,
    BatchStarted,
    Event,
    ItemFinished,
    ItemStarted,
    NodeCancelled,
    NodeFailed,
    NodeFinished,
    NodePlanned,
    NodeProgress,
    NodeReady,
    NodeRetrying,
    NodeSkipped,
    NodeStarted,
    NodeText,
    Observer,
    RunFinished,
    RunStarted,
)
from agentplex.exceptions import (
    AgentplexError,
    BudgetExceededError,
    ConfigError,
    CycleError,
    DependencyError,
    DuplicateNodeError,
    EmptyWorkflowError,
    InvalidWorkflowError,
    MissingExtraError,
    NodeError,
    NodeTimeoutError,
    PlanningError,
    ProviderError,
    RetryableError,
    RunFailedError,
    RunNotFoundError,
    SchemaError,
    StoreError,
    TemplateError,
    UnknownRoleError,
    UntrustedCodeError,
    WorkflowError,
    WorkflowFileError,
)
from agentplex.files.loader import load_workflow, workflow_from_data
from agentplex.llm import Limits, ProviderConfig, Secret
from agentplex.llm.pricing import Price
from agentplex.model.roles import BUILTIN_ROLES, Role
from agentplex.model.workflow import (
    AgentNode,
    CompiledWorkflow,
    FunctionNode,
    InputSpec,
    MapNode,
    Node,
    Workflow,
)
from agentplex.planning.ask import AskResult, aask, aplan, ask, plan
from agentplex.report.exports import export_batch, export_run
from agentplex.result import NodeResult, RunResult
from agentplex.store import MemoryStore, RunStore

__version__ = "0.1.0"

__all__ = [
    "BUILTIN_ROLES",
    "AgentNode",
    "AgentplexError",
    "AskResult",
    "BatchFinished",
    "BatchItem",
    "BatchResult",
    "BatchStarted",
    "BenchmarkResult",
    "BudgetExceededError",
    "CompiledWorkflow",
    "ConfigError",
    "CycleError",
    "DependencyError",
    "DesignResult",
    "DuplicateNodeError",
    "EmptyWorkflowError",
    "Event",
    "FunctionNode",
    "InputSpec",
    "InvalidWorkflowError",
    "ItemFinished",
    "ItemResult",
    "ItemStarted",
    "Limits",
    "MapNode",
    "MemoryStore",
    "MissingExtraError",
    "Node",
    "NodeCancelled",
    "NodeContext",
    "NodeError",
    "NodeFailed",
    "NodeFinished",
    "NodePlanned",
    "NodeProgress",
    "NodeReady",
    "NodeResult",
    "NodeRetrying",
    "NodeSkipped",
    "NodeStarted",
    "NodeText",
    "NodeTimeoutError",
    "Observer",
    "PlanningError",
    "Price",
    "ProviderConfig",
    "ProviderError",
    "RetryableError",
    "Role",
    "RunFailedError",
    "RunFinished",
    "RunNotFoundError",
    "RunOptions",
    "RunResult",
    "RunStarted",
    "RunStore",
    "Scheduler",
    "SchemaError",
    "Secret",
    "StoreError",
    "TemplateError",
    "UnknownRoleError",
    "UntrustedCodeError",
    "Workflow",
    "WorkflowError",
    "WorkflowFileError",
    "aask",
    "aplan",
    "aresume",
    "arun",
    "arun_batch",
    "ask",
    "benchmark",
    "export_batch",
    "export_run",
    "fan_out",
    "load_workflow",
    "plan",
    "resume",
    "run",
    "run_batch",
    "workflow_from_data",
]
