"""Events: frozen records of what happened during a run.

The runner emits events and never formats output or writes files itself;
the terminal view, the JSON result, and later the run store all subscribe to
this one stream, so they always agree. Times are seconds since the run
started, on the monotonic clock.

Lifecycle of one node::

    NodeReady -> NodeStarted (attempt 1) [-> NodeRetrying -> NodeStarted (attempt 2) ...]
              -> NodeFinished | NodeFailed | NodeCancelled
    (or NodeSkipped, without ever being ready, when a dependency failed)

A plan that grows while it runs (``agentplex ask``: a streamed plan, an
agent's sub-plan) announces each node it adds with ``NodePlanned`` before the
node's own lifecycle starts.

With ``RunOptions.record_requests`` on, each LLM call of a node (an agent's,
an agent map item's, a step's ``ctx.ask``) is announced with ``NodeRequest``
just before it goes to the provider (not for an answer taken from the cache).

A batch wraps its items' runs::

    BatchStarted -> (ItemStarted -> RunStarted ... RunFinished -> ItemFinished)* -> BatchFinished
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agentplex.batch.result import BatchResult, ItemResult
    from agentplex.model.workflow import CompiledWorkflow
    from agentplex.result import RunResult, Usage


@dataclass(frozen=True, slots=True)
class Event:
    """Base of every event."""

    run_id: str
    t: float
    """Seconds since the run started."""


@dataclass(frozen=True, slots=True)
class RunStarted(Event):
    workflow: CompiledWorkflow
    strategy: str
    max_concurrency: int
    inputs: dict[str, Any]


@dataclass(frozen=True, slots=True)
class NodePlanned(Event):
    """A node joined the running workflow (from a streamed plan or an agent's sub-plan)."""

    node_id: str
    role: str
    task: str
    depends_on: tuple[str, ...]
    parent: str | None = None
    """The agent whose sub-plan this node belongs to; None for the top-level plan."""


@dataclass(frozen=True, slots=True)
class NodeReady(Event):
    """Every dependency succeeded; the node waits for a slot."""

    node_id: str


@dataclass(frozen=True, slots=True)
class NodeStarted(Event):
    node_id: str
    attempt: int


@dataclass(frozen=True, slots=True)
class NodeRequest(Event):
    """A node is about to call a model (only with ``RunOptions.record_requests``).

    ``messages`` are the request's ``(role, content)`` pairs, with every
    configured key masked as in any output.
    """

    node_id: str
    attempt: int
    model: str
    """``provider:model`` the call goes to."""
    messages: tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class NodeRetrying(Event):
    """An attempt failed with a retryable error; the next starts after ``delay_s``."""

    node_id: str
    attempt: int
    error: str
    delay_s: float


@dataclass(frozen=True, slots=True)
class NodeProgress(Event):
    """A map node finished ``done`` of its ``total`` items."""

    node_id: str
    done: int
    total: int


@dataclass(frozen=True, slots=True)
class NodeText(Event):
    """A piece of an agent's answer arrived (runs with ``stream=True``)."""

    node_id: str
    text: str


@dataclass(frozen=True, slots=True)
class NodeFinished(Event):
    node_id: str
    output: Any
    attempts: int
    duration_s: float
    usage: Usage | None


@dataclass(frozen=True, slots=True)
class NodeFailed(Event):
    node_id: str
    error: str
    error_type: str
    attempts: int
    traceback: str = ""
    """The formatted traceback of the exception that failed a Python step, with keys
    masked and at most ``result.MAX_TRACEBACK`` characters (its end); "" for other failures."""


@dataclass(frozen=True, slots=True)
class NodeSkipped(Event):
    """Not run because ``because`` (a dependency, directly or not) failed."""

    node_id: str
    because: str


@dataclass(frozen=True, slots=True)
class NodeCancelled(Event):
    """Stopped (or never started) because the run was cancelled or failed fast."""

    node_id: str
    started: bool


@dataclass(frozen=True, slots=True)
class RunFinished(Event):
    result: RunResult


@dataclass(frozen=True, slots=True)
class BatchStarted(Event):
    """A batch began; ``run_id`` is the batch's id and ``t`` counts from here."""

    workflow: str
    total: int
    max_concurrency: int


@dataclass(frozen=True, slots=True)
class ItemStarted(Event):
    """A batch item's run began; its node events carry ``item_run_id``."""

    key: str
    item_run_id: str


@dataclass(frozen=True, slots=True)
class ItemFinished(Event):
    """A batch item ended (or was found invalid without running)."""

    key: str
    item: ItemResult


@dataclass(frozen=True, slots=True)
class BatchFinished(Event):
    result: BatchResult


Observer = Callable[[Event], None]
"""Anything called with each event, in order, on the event loop's thread."""


# -- events on the wire (a sharded batch's workers send theirs to the driver) -------------------

_WIRE: dict[str, type[Event]] = {
    cls.__name__: cls
    for cls in (
        NodeStarted,
        NodeRetrying,
        NodeProgress,
        NodeFinished,
        NodeFailed,
        NodeSkipped,
        NodeCancelled,
    )
}
"""The node events a worker forwards: the lifecycle, without streamed text."""


def to_wire(event: Event) -> list[Any] | None:
    """A node event as plain lists (msgpack-able), or None if it is not forwarded.

    ``NodeFinished`` travels without its output (the item's result carries it
    when the item is done) and with its usage as a list of its fields.
    """
    name = type(event).__name__
    if name not in _WIRE:
        return None
    values = [getattr(event, f) for f in event.__slots__]
    if isinstance(event, NodeFinished):
        usage = event.usage
        values = [
            event.node_id,
            None,
            event.attempts,
            event.duration_s,
            None
            if usage is None
            else [
                usage.input_tokens,
                usage.output_tokens,
                usage.cached_calls,
                usage.cache_read_tokens,
                usage.cache_write_tokens,
                usage.estimated,
            ],
        ]
    return [name, event.t, *values]


def from_wire(row: list[Any], run_id: str) -> Event:
    """The event ``to_wire`` encoded, as an event of run ``run_id``."""
    name, t, *values = row
    if name == "NodeFinished" and values[4] is not None:
        from agentplex.result import Usage

        values[4] = Usage(*values[4])
    return _WIRE[name](run_id, t, *values)


__all__ = [
    "BatchFinished",
    "BatchStarted",
    "Event",
    "ItemFinished",
    "ItemStarted",
    "NodeCancelled",
    "NodeFailed",
    "NodeFinished",
    "NodePlanned",
    "NodeProgress",
    "NodeReady",
    "NodeRequest",
    "NodeRetrying",
    "NodeSkipped",
    "NodeStarted",
    "NodeText",
    "Observer",
    "RunFinished",
    "RunStarted",
    "from_wire",
    "to_wire",
]
