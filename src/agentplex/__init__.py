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

The top level holds what a workflow author writes every day, and the three
registration points with their base classes: :func:`register_provider`
(:class:`Provider`, :class:`Request`, :class:`Completion`),
:func:`register_executor` (:class:`Executor`) and :func:`register_store`
(:class:`RunStore`, :func:`open_store`; :func:`load_result` reads a stored run
or batch back as a :class:`RunResult` or :class:`BatchResult`). Everything
else has a namespace:
``ap.events`` (``ap.events.NodeFailed``, ``ap.events.Observer``) and
``ap.exceptions`` (``ap.exceptions.CycleError``); the node specs, the
scheduler and the benchmark harness live in their subpackages
(``agentplex.model``, ``agentplex.engine``, ``agentplex.batch.benchmark``).
"""

from agentplex import events, exceptions
from agentplex.batch.driver import arun_batch, run_batch
from agentplex.batch.result import BatchResult, ItemResult, load_result
from agentplex.batch.resume import aresume, resume
from agentplex.engine.context import NodeContext
from agentplex.engine.fanout import fan_out
from agentplex.engine.options import RunOptions
from agentplex.engine.runner import arun, run
from agentplex.exceptions import AgentplexError
from agentplex.executors import register_executor
from agentplex.executors.base import Executor
from agentplex.files.loader import load_workflow, workflow_from_data
from agentplex.llm import Limits, ProviderConfig, Secret, register_provider
from agentplex.llm.base import Completion, Message, Provider, Request
from agentplex.llm.pricing import Price
from agentplex.model.roles import Role
from agentplex.model.workflow import CompiledWorkflow, InputSpec, Step, Workflow
from agentplex.planning.ask import AskResult, aask, aplan, ask, plan
from agentplex.result import NodeResult, RunResult, Usage
from agentplex.store import (
    MemoryStore,
    RunRecord,
    RunStore,
    StoredNode,
    open_store,
    register_store,
)

__version__ = "0.1.0"

__all__ = [
    "AgentplexError",
    "AskResult",
    "BatchResult",
    "CompiledWorkflow",
    "Completion",
    "Executor",
    "InputSpec",
    "ItemResult",
    "Limits",
    "MemoryStore",
    "Message",
    "NodeContext",
    "NodeResult",
    "Price",
    "Provider",
    "ProviderConfig",
    "Request",
    "Role",
    "RunOptions",
    "RunRecord",
    "RunResult",
    "RunStore",
    "Secret",
    "Step",
    "StoredNode",
    "Usage",
    "Workflow",
    "aask",
    "aplan",
    "aresume",
    "arun",
    "arun_batch",
    "ask",
    "events",
    "exceptions",
    "fan_out",
    "load_result",
    "load_workflow",
    "open_store",
    "plan",
    "register_executor",
    "register_provider",
    "register_store",
    "resume",
    "run",
    "run_batch",
    "workflow_from_data",
]
