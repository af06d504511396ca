"""The agentplex exception tree.

Every error agentplex raises on purpose derives from :class:`AgentplexError`;
leaves also derive from the builtin they resemble, so ``except ValueError``
keeps working for code that does not know about agentplex::

    AgentplexError
     ├── WorkflowError (ValueError)         one problem in a workflow spec or file
     │    ├── SchemaError                   missing field, wrong type, unknown field
     │    ├── DuplicateNodeError            two nodes share an id
     │    ├── DependencyError               unknown, out-of-range or self dependency
     │    ├── CycleError                    dependencies form a cycle (.cycle)
     │    ├── UnknownRoleError              an agent names a role nobody defined
     │    ├── TemplateError                 a task names an unknown {placeholder}
     │    ├── EmptyWorkflowError            no nodes at all
     │    └── UntrustedInputError           untrusted input asks for what only you may choose
     │         └── UntrustedCodeError       ... to run Python (function:, module:, shell...)
     ├── InvalidWorkflowError (ValueError)  validation found errors (.errors, all of them)
     ├── WorkflowFileError (OSError)        a file cannot be read or parsed
     │    └── OutputError                   an output, export or report cannot be written
     ├── ConfigError (ValueError)           a bad option: model string, strategy, input
     ├── MissingExtraError (ImportError)    an optional dependency is not installed
     ├── RetryableError                     raise it (or subclass it) to ask for a retry
     ├── ProviderError                      an LLM call failed (.retryable, .status)
     ├── AnswerTruncatedError               an answer was cut off at its output cap (.retryable)
     ├── OutputSchemaError                  an answer did not match the node's output_schema
     ├── ToolError                          a tool failed its node (on_error="fail") (.tool)
     ├── NodeError                          one node failed for good (.node_id, .attempts)
     │    └── NodeTimeoutError (TimeoutError)
     ├── RunFailedError                     RunResult.raise_for_status() on a failed run
     ├── StoreError                         the run store cannot be used; the message says why
     │    ├── RunNotFoundError              no run with that id
     │    └── UnstorableOutputError (TypeError)  a node's output cannot be stored as data
     ├── EncodeError (TypeError)            a value cannot be written as data (.what, .where)
     ├── DecodeError (ValueError)           stored text is damaged, planted, or a pickle
     ├── PlanningError                      the coordinator's plan stayed unusable
     ├── BudgetExceededError                a planning bound (agents, depth, tokens) was reached
     └── PlanParseError (ValueError)        no usable JSON plan in a model's answer

Errors carry their context as attributes and say how to fix the problem.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agentplex.result import RunResult


class AgentplexError(Exception):
    """Root of every error agentplex raises on purpose."""


class WorkflowError(AgentplexError, ValueError):
    """One problem in a workflow, located as precisely as we know.

    Attributes:
        problem: what is wrong, in one sentence.
        hint: how to fix it, or ``None``.
        path: the file the workflow came from, or ``None`` for Python-built ones.
        node_id: the node at fault, or ``None`` for workflow-level problems.
        field: the field of the node at fault (``depends_on``, ``task``...).
        line: 1-based line in ``path`` where known (YAML files).
    """

    code = "workflow"

    def __init__(
        self,
        problem: str,
        *,
        hint: str | None = None,
        path: str | None = None,
        node_id: str | None = None,
        field: str | None = None,
        line: int | None = None,
    ) -> None:
        self.problem = problem
        self.hint = hint
        self.path = path
        self.node_id = node_id
        self.field = field
        self.line = line
        super().__init__(self._format())

    def located(self, *, path: str | None = None, line: int | None = None) -> WorkflowError:
        """Return a copy of this error that also names ``path`` and ``line``."""
        clone = type(self).__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.path = path if path is not None else self.path
        clone.line = line if line is not None else self.line
        Exception.__init__(clone, clone._format())
        return clone

    def _format(self) -> str:
        where = self.path or "<workflow>"
        if self.line is not None:
            where += f":{self.line}"
        subject = f"node {self.node_id!r}" if self.node_id is not None else "workflow"
        if self.field:
            subject += f", field {self.field!r}"
        message = f"{where}: {subject}: {self.problem}"
        if self.hint:
            message += f" Fix: {self.hint}"
        return message


class SchemaError(WorkflowError):
    """A field is missing, has the wrong type, or is not a known field."""

    code = "schema"


class DuplicateNodeError(WorkflowError):
    """Two nodes share one id."""

    code = "duplicate-node"


class DependencyError(WorkflowError):
    """A dependency names no node, is out of range, or points at its own node."""

    code = "dependency"


class CycleError(WorkflowError):
    """The dependencies form a cycle; ``cycle`` lists it, first node repeated last."""

    code = "cycle"

    def __init__(self, cycle: Sequence[str], **kwargs: str | int | None) -> None:
        self.cycle = tuple(cycle)
        arrows = " -> ".join(self.cycle)
        super().__init__(
            f"dependencies form a cycle: {arrows} (each depends on the next).",
            hint="remove one of these dependencies, or load the workflow with "
            "on_cycle='declared_order' (CLI: --on-cycle declared-order) to drop "
            "dependencies on later-declared nodes.",
            **kwargs,  # type: ignore[arg-type]
        )


class UnknownRoleError(WorkflowError):
    """An agent node names a role that is neither built in nor defined."""

    code = "unknown-role"


class TemplateError(WorkflowError):
    """A task template names a placeholder that no input or dependency provides."""

    code = "template"


class EmptyWorkflowError(WorkflowError):
    """The workflow has no nodes."""

    code = "empty"


class UntrustedInputError(WorkflowError):
    """An untrusted file or plan asks for something only its user may choose.

    Untrusted input (a plan file without ``--trust``, a file run with
    ``--untrusted``, anything a model writes) may not name code, choose
    endpoints, keys, headers, environment variables or paths, or set request
    options beyond sampling parameters.
    """

    code = "untrusted"


class UntrustedCodeError(UntrustedInputError):
    """An untrusted plan (for example one an LLM wrote) asks to run Python code."""

    code = "untrusted-code"


class InvalidWorkflowError(AgentplexError, ValueError):
    """Validation found one or more errors; ``errors`` holds every one of them."""

    def __init__(self, errors: Sequence[WorkflowError]) -> None:
        if not errors:
            raise ValueError("InvalidWorkflowError needs at least one error")
        self.errors = tuple(errors)
        count = len(self.errors)
        head = "1 problem" if count == 1 else f"{count} problems"
        lines = [f"invalid workflow ({head}):"]
        lines += [f"  - {error}" for error in self.errors]
        super().__init__("\n".join(lines))


class WorkflowFileError(AgentplexError, OSError):
    """A workflow file cannot be read, or is not valid YAML or JSON."""

    def __init__(self, path: str, problem: str, *, line: int | None = None) -> None:
        self.path = path
        self.line = line
        self.problem = problem
        where = path if line is None else f"{path}:{line}"
        super().__init__(f"{where}: {problem}")

    def __str__(self) -> str:  # OSError's own __str__ would show the errno tuple
        return str(self.args[0])


class OutputError(WorkflowFileError):
    """An output (``--out``, an export, a report) cannot be written; ``path`` says where."""


class ConfigError(AgentplexError, ValueError):
    """An option is invalid: a model string, strategy, input or limit."""


class MissingExtraError(AgentplexError, ImportError):
    """An optional dependency is missing; the message says which extra to install."""

    def __init__(self, module: str, extra: str, purpose: str) -> None:
        self.module = module
        self.extra = extra
        super().__init__(
            f"{purpose} needs the {module!r} package, which is not installed. "
            f"Fix: pip install 'agentplex[{extra}]'"
        )


class RetryableError(AgentplexError):
    """Raise this (or a subclass) from a node to ask the runner to retry it.

    Nodes are retried up to their ``retries`` setting, with exponential backoff
    and full jitter. Other exceptions fail the node at once unless the node
    lists their type in ``retry_on``.
    """


class ProviderError(AgentplexError):
    """An LLM provider call failed; ``retryable`` says whether trying again may help."""

    def __init__(
        self,
        provider: str,
        message: str,
        *,
        retryable: bool,
        status: int | None = None,
        retry_after_s: float | None = None,
        connection: bool = False,
    ) -> None:
        self.provider = provider
        self.retryable = retryable
        self.status = status
        self.retry_after_s = retry_after_s
        self.connection = connection
        """The connection failed: the request may never have reached the server."""
        code = f" (HTTP {status})" if status is not None else ""
        super().__init__(f"{provider}{code}: {message}")


class AnswerTruncatedError(AgentplexError):
    """A model's answer was cut off at its output cap, under ``on_truncated: retry`` or
    ``fail``; ``retryable`` is True for ``retry`` (the next attempt doubles the cap)."""

    def __init__(
        self, node_id: str, cap: int, finish_reason: str, *, retryable: bool, next_cap: int = 0
    ) -> None:
        self.node_id = node_id
        self.cap = cap
        self.finish_reason = finish_reason
        self.retryable = retryable
        then = f"; retrying with a cap of {next_cap:,}" if retryable else ""
        fix = (
            ""
            if retryable
            else ". Fix: raise the node's max_output_tokens (or its role's, or "
            "--max-output-tokens), or set on_truncated: warn to keep cut-off answers"
        )
        super().__init__(
            f"the answer was cut off at its output cap of {cap:,} tokens "
            f"(finish_reason {finish_reason!r}){then}{fix}"
        )


class OutputSchemaError(AgentplexError):
    """A model's answer still did not match the node's ``output_schema`` after the
    repair attempts; ``problems`` are the last answer's validation errors."""

    def __init__(self, node_id: str, problems: Sequence[str], *, tries: int) -> None:
        self.node_id = node_id
        self.problems = tuple(problems)
        self.tries = tries
        listed = "; ".join(self.problems[:5])
        super().__init__(
            f"the answer did not match the node's output_schema after {tries} tries "
            f"(each retry sent the errors back): {listed}. Fix: simplify the schema, "
            "describe the fields in the task, or use a model that supports structured output"
        )


class ToolError(AgentplexError):
    """A tool call failed a node: the tool raised or timed out and its policy is
    ``on_error="fail"``, or a tool could not be defined. The tool's own exception
    is ``__cause__``."""

    def __init__(self, tool: str, message: str) -> None:
        self.tool = tool
        super().__init__(f"tool {tool!r}: {message}")


class NodeError(AgentplexError):
    """A node failed for good; the original exception is ``__cause__``."""

    def __init__(self, node_id: str, message: str, *, attempts: int = 1) -> None:
        self.node_id = node_id
        self.attempts = attempts
        super().__init__(f"node {node_id!r} failed after {attempts} attempt(s): {message}")


class NodeTimeoutError(NodeError, TimeoutError):
    """A node attempt ran past its ``timeout_s``."""

    def __init__(
        self, node_id: str, timeout_s: float, *, attempts: int = 1, total: bool = False
    ) -> None:
        self.timeout_s = timeout_s
        self.total = total
        """True if the node's total time limit (all attempts) ran out, not one attempt's."""
        message = (
            f"ran out of its total time limit of {timeout_s:g}s (raise total_timeout_s)"
            if total
            else f"attempt timed out after {timeout_s:g}s (raise the node's timeout_s, "
            "or add retries)"
        )
        super().__init__(node_id, message, attempts=attempts)


class RunFailedError(AgentplexError):
    """A run did not succeed; ``result`` holds everything that did finish."""

    def __init__(self, result: RunResult) -> None:
        self.result = result
        failed = [n.node_id for n in result.nodes.values() if n.status == "failed"]
        detail = f"; failed: {', '.join(failed)}" if failed else ""
        super().__init__(f"run {result.run_id} of {result.workflow!r} {result.status}{detail}")


# -- stored data -----------------------------------------------------------------------

PICKLE_ENV = "AGENTPLEX_STORE_PICKLE"
"""Set to ``1`` to write, and to read back, values the codec cannot encode as pickles."""

RETURN_INSTEAD = (
    "return str, int, float, bool, None, or lists, tuples, dicts, sets, bytes and "
    "dataclasses of those (e.g. .tolist(), str(x), or a dict of its fields)"
)


class EncodeError(AgentplexError, TypeError):
    """A value holds something the codec cannot encode as data.

    Attributes:
        what: the value's description (``"the output of node 'x'"``).
        where: the place of the offending part inside the value (``"['rows'][2]"``,
            empty for the value itself).
        type_name: the offending part's type, ``module.qualname``.
    """

    def __init__(self, what: str, where: str, type_name: str, problem: str | None = None) -> None:
        self.what = what
        self.where = where
        self.type_name = type_name
        at = f" at {where}" if where else ""
        detail = (
            problem or f"holds a value of type {type_name!r}{at}, which cannot be stored as data"
        )
        super().__init__(
            f"{what} {detail}. Fix: {RETURN_INSTEAD}; or, for a store of your own on this "
            f"machine only, set {PICKLE_ENV}=1 to keep such values as pickles."
        )


class DecodeError(AgentplexError, ValueError):
    """Stored text is not a valid encoding (damaged or planted), or holds a pickle not opted in."""

    def __init__(self, what: str, problem: str, *, pickled: bool = False) -> None:
        self.what = what
        self.problem = problem
        self.pickled = pickled
        """True if the value is a pickle and the reading process did not opt in."""
        super().__init__(f"{what} {problem}")


class StoreError(AgentplexError):
    """The store cannot be used (newer schema, corrupt, locked, busy run); the message says why."""


class RunNotFoundError(StoreError):
    """No run with that id in the store."""


class UnstorableOutputError(StoreError, TypeError):
    """A node's output cannot be stored as data; the node fails with this error.

    Attributes:
        node_id: the node whose output it is.
    """

    def __init__(self, node_id: str, cause: EncodeError) -> None:
        self.node_id = node_id
        super().__init__(str(cause))


# -- planning ----------------------------------------------------------------------------


class PlanningError(AgentplexError):
    """The coordinator's plan stayed unusable after every repair attempt."""


class BudgetExceededError(AgentplexError):
    """A planning bound (agents, depth or tokens) was reached; the message names it and the fix."""


class PlanParseError(AgentplexError, ValueError):
    """No usable JSON plan in the text; the message says what was found instead."""


__all__ = [
    "PICKLE_ENV",
    "RETURN_INSTEAD",
    "AgentplexError",
    "AnswerTruncatedError",
    "BudgetExceededError",
    "ConfigError",
    "CycleError",
    "DecodeError",
    "DependencyError",
    "DuplicateNodeError",
    "EmptyWorkflowError",
    "EncodeError",
    "InvalidWorkflowError",
    "MissingExtraError",
    "NodeError",
    "NodeTimeoutError",
    "OutputError",
    "OutputSchemaError",
    "PlanParseError",
    "PlanningError",
    "ProviderError",
    "RetryableError",
    "RunFailedError",
    "RunNotFoundError",
    "SchemaError",
    "StoreError",
    "TemplateError",
    "UnknownRoleError",
    "UnstorableOutputError",
    "UntrustedCodeError",
    "UntrustedInputError",
    "WorkflowError",
    "WorkflowFileError",
]
