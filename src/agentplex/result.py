"""Run results: what each node produced and how the run went, as numbers.

``wall_s`` is measured; ``sequential_s`` is the sum of node durations (what
one-after-another execution would have taken); ``critical_path_s`` is the
longest chain of dependent durations, the lower bound of any schedule.
``speedup`` is sequential over wall; ``efficiency`` is critical path over
wall (1.0 means the run was as fast as its dependencies allow).

Names nobody vetted as file names (node ids of planned agents, batch keys)
become file and folder names only through :func:`safe_name` and
:class:`SafeNames`: one path segment of ``[A-Za-z0-9._-]``, never ``.``,
``..`` or empty, at most :data:`MAX_NAME` characters plus a short hash of the
original when anything had to change, and unique ignoring case. The
original names are recorded beside the files (``run.json``).

Statuses are one typed set, :class:`Status` (a ``StrEnum``: every member
equals its string, so ``result.status == "failed"`` keeps working).
:meth:`NodeResult.to_dict`/:meth:`NodeResult.from_dict` and
:meth:`RunResult.to_dict`/:meth:`RunResult.from_dict` are the one result
schema: plain JSON-able dicts, the shape of ``agentplex run --json``, read
back with every field's type checked (a bad field is a
:class:`~agentplex.exceptions.DecodeError` naming the field). An output JSON
cannot hold is written as its ``repr`` and comes back as that text.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from agentplex.exceptions import DecodeError, OutputError, RunFailedError

MAX_NAME = 100
"""Characters of a safe name before its hash suffix (a name stays far below 255 bytes)."""
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_SAFE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,119}")
_DEVICES = frozenset(
    ["con", "prn", "aux", "nul"] + [f"{p}{n}" for p in ("com", "lpt") for n in range(1, 10)]
)
"""Names Windows reserves for devices, whatever their extension."""


def safe_name(name: str) -> str:
    """Return ``name`` as one readable, safe file-name segment.

    Characters outside ``[A-Za-z0-9._-]`` become ``_``; leading and trailing
    dots go (so never ``.``, ``..`` or a hidden file); Windows device names
    get a ``_`` prefix. A name that had to change, or is longer than
    :data:`MAX_NAME`, is cut and gets ``-`` and 8 hex digits of the original's
    SHA-256, so two different names never change into the same one.
    """
    base = _UNSAFE.sub("_", name).strip(".")
    if base.split(".")[0].lower() in _DEVICES:
        base = "_" + base
    if base == name and len(base) <= MAX_NAME:
        return base
    digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    return f"{base[:MAX_NAME]}-{digest}" if base else digest


def is_safe_name(name: object) -> bool:
    """Whether ``name`` is one path segment :func:`safe_name` could have made."""
    return isinstance(name, str) and _SAFE.fullmatch(name) is not None


class SafeNames:
    """Give each name a :func:`safe_name`, unique ignoring case, in the order asked.

    A second name that would get a name already given (``Report`` after
    ``report``, or a name equal to another's hashed form) gets ``-2``,
    ``-3``... appended. The same name always gets the same answer.
    """

    def __init__(self, taken: Iterable[str] = ()) -> None:
        self.names: dict[str, str] = {}
        """Original name -> safe name, for every name asked so far."""
        self._taken = {name.lower() for name in taken}

    def __call__(self, name: str) -> str:
        """Return the safe name of ``name``."""
        if name in self.names:
            return self.names[name]
        base = candidate = safe_name(name)
        n = 1
        while candidate.lower() in self._taken:
            n += 1
            candidate = f"{base}-{n}"
        self._taken.add(candidate.lower())
        self.names[name] = candidate
        return candidate


def no_link_below(root: Path, path: Path) -> None:
    """Refuse to write ``path`` through a symbolic link found below ``root``.

    Names under ``--out`` come from batch keys and node ids; a link already
    sitting in the folder (``items/x -> /elsewhere``) would carry the write out
    of it. ``root`` itself may be a link: the user chose it.

    Raises:
        OutputError: naming the link, if one is found.
    """
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        return
    current = root
    for part in parts:
        current = current / part
        if current.is_symlink():
            raise OutputError(
                str(current),
                f"is a symbolic link inside {root}; agentplex never writes through one, "
                "since it could lead out of the folder. Fix: remove the link, or write "
                "into a new folder.",
            )


def write_text(path: Path, text: str, *, what: str, root: Path | None = None) -> None:
    """Write ``text`` to ``path`` as UTF-8, creating its folder.

    With ``root`` (the ``--out`` folder), no link below it is followed.

    Raises:
        OutputError: naming the path, if the write fails (permission,
            a full disk, a file where a folder should be), or a link below
            ``root`` is in the way.
    """
    if root is not None:
        no_link_below(root, path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8", errors="backslashreplace")
    except OSError as exc:
        raise write_error(exc, path, what) from None


def write_error(exc: OSError, path: Path, what: str) -> OutputError:
    """The one-line error for a failed write of ``what`` at ``path``."""
    where = exc.filename if isinstance(exc.filename, str) else str(path)
    return OutputError(
        where,
        f"cannot write {what}: {exc.strerror or exc}. Fix: make sure the folder is writable "
        "and the disk has room, or write somewhere else.",
    )


class Status(StrEnum):
    """Every status a node, a run or a batch item can show; members equal their strings."""

    PENDING = "pending"
    """Not started (yet): waiting for dependencies or a slot, or never reached."""
    RUNNING = "running"
    """A stored run (or batch) still being written, or whose writer died before the end."""
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    """A node not run because a dependency failed."""
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"
    """A stored run whose writer is gone while it was ``running`` (shown, never stored)."""
    INVALID = "invalid"
    """A batch item whose input row was refused before it ran."""
    NOT_STARTED = "not started"
    """A batch item of an interrupted batch that never started (shown, never stored)."""


NODE_STATUSES = frozenset(
    {Status.PENDING, Status.SUCCEEDED, Status.FAILED, Status.SKIPPED, Status.CANCELLED}
)
"""The statuses a :class:`NodeResult` can have."""
RUN_STATUSES = frozenset({Status.SUCCEEDED, Status.FAILED, Status.CANCELLED})
"""The statuses a finished :class:`RunResult` can have."""

NodeStatus = Status
"""A node's status (one of :data:`NODE_STATUSES`); kept for annotations written before :class:`Status`."""
RunStatus = Status
"""A run's status (one of :data:`RUN_STATUSES`)."""

TRUNCATED_REASONS = frozenset({"length", "max_tokens", "model_context_window_exceeded"})
"""Finish reasons that mean an answer was cut off: OpenAI-compatible ``length``,
Anthropic's ``max_tokens`` (and its context-window stop)."""

MAX_TRACEBACK = 20_000
"""Characters of a failed step's traceback kept (its end, where the error is)."""


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens calls consumed: as the provider reported them, or estimated.

    ``input_tokens`` counts every prompt token, cached ones included (OpenAI's
    ``prompt_tokens``; Anthropic's ``input_tokens`` plus its two cache counts);
    ``cache_read_tokens`` and ``cache_write_tokens`` say how many of them were
    read from or written to the provider's prompt cache, which prices them
    differently (:mod:`agentplex.llm.pricing`). ``estimated`` is set when some
    of the count is an estimate: a call that failed, timed out or was cancelled
    reports no usage, but it was billed, so its prompt and what it streamed are
    counted (about four characters a token).
    """

    input_tokens: int = 0
    output_tokens: int = 0
    cached_calls: int = 0
    """Calls answered from the result cache instead (they cost no tokens)."""
    cache_read_tokens: int = 0
    """Prompt tokens read from the provider's prompt cache (part of ``input_tokens``)."""
    cache_write_tokens: int = 0
    """Prompt tokens written to the provider's prompt cache (part of ``input_tokens``)."""
    estimated: bool = False
    """Whether any of these counts is an estimate rather than the provider's report."""

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cached_calls + other.cached_calls,
            self.cache_read_tokens + other.cache_read_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
            self.estimated or other.estimated,
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (the same keys as the fields; the store and ``--json`` use it)."""
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cached_calls": self.cached_calls,
            "cache_read_tokens": self.cache_read_tokens,
            "cache_write_tokens": self.cache_write_tokens,
            "estimated": self.estimated,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Usage:
        """Read :meth:`to_dict` back (records written before the cache fields lack them).

        The caller has checked the types (``_USAGE_OR_NONE``)."""
        return cls(
            data.get("input_tokens", 0),
            data.get("output_tokens", 0),
            data.get("cached_calls", 0),
            data.get("cache_read_tokens", 0),
            data.get("cache_write_tokens", 0),
            bool(data.get("estimated", False)),
        )


@dataclass(frozen=True, slots=True)
class NodeResult:
    """The outcome of one node."""

    node_id: str
    kind: str
    status: Status
    output: Any = None
    started_s: float | None = None
    """First attempt's start, seconds since the run started."""
    finished_s: float | None = None
    attempts: int = 0
    error: str | None = None
    error_type: str | None = None
    role: str | None = None
    model: str | None = None
    usage: Usage | None = None
    cost_usd: float | None = None
    """What the node's model calls cost in US dollars; None if there were none or no price."""
    deps: tuple[str, ...] = ()
    """The nodes this one depended on (for the report's graph; the compiled workflow's tuple)."""
    retry_starts: tuple[float, ...] = ()
    """When each attempt after the first started (seconds since the run started)."""
    reused: bool = False
    """Taken from the stored run being resumed, not run again (no timings in this run)."""
    traceback: str | None = None
    """The formatted, redacted traceback of the exception that failed a Python step."""
    finish_reason: str | None = None
    """Why the model stopped its answer, in the provider's words (``stop``, ``length``,
    ``end_turn``, ``max_tokens``...); None for nodes that made no model call. For a map
    of agents, the first cut-off item's reason, else the last item's."""

    @property
    def truncated(self) -> bool:
        """Whether the answer was cut off at its output cap (``finish_reason``)."""
        return self.finish_reason in TRUNCATED_REASONS

    @property
    def attempt_starts(self) -> tuple[float, ...]:
        """When each attempt started; the first is the node's start (retries are the later ones)."""
        if self.started_s is None or not self.attempts:
            return self.retry_starts
        return (self.started_s, *self.retry_starts)

    @property
    def duration_s(self) -> float:
        """Time from first start to end (0 if it never ran)."""
        if self.started_s is None or self.finished_s is None:
            return 0.0
        return self.finished_s - self.started_s

    def to_dict(self, *, output: bool = True) -> dict[str, Any]:
        """Return a JSON-ready dict (``traceback`` only when there is one).

        ``output=False`` leaves the output out (the store keeps it in a column of its
        own, through its codec): no JSON check of a value that is not written here.
        """
        started, finished, usage = self.started_s, self.finished_s, self.usage
        record: dict[str, Any] = {
            "node_id": self.node_id,
            "kind": self.kind,
            "role": self.role,
            "model": self.model,
            "status": str(self.status),
        }
        if output:
            record["output"] = _jsonable(self.output)
        if started is None or finished is None:
            duration = 0.0
        else:
            duration = round(finished - started, 6)
        if started is not None and self.attempts:
            starts = [round(started, 6), *[round(t, 6) for t in self.retry_starts]]
        else:
            starts = [round(t, 6) for t in self.retry_starts]
        record["started_s"] = None if started is None else round(started, 6)
        record["finished_s"] = None if finished is None else round(finished, 6)
        record["duration_s"] = duration
        record["attempts"] = self.attempts
        record["error"] = self.error
        record["error_type"] = self.error_type
        record["usage"] = None if usage is None else usage.to_dict()
        record["cost_usd"] = None if self.cost_usd is None else round(self.cost_usd, 8)
        record["deps"] = list(self.deps)
        record["attempt_starts"] = starts
        record["reused"] = self.reused
        record["finish_reason"] = self.finish_reason
        record["truncated"] = self.truncated
        if self.traceback:
            record["traceback"] = self.traceback
        return record

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> NodeResult:
        """Read a :meth:`to_dict` record back; derived fields (``duration_s``) are ignored.

        Raises:
            DecodeError: naming the field, if a field has the wrong type or value.
        """
        f = _Fields(data, f"node record {data.get('node_id')!r}" if _is_map(data) else "a node")
        started = f.get("started_s", _NUMBER_OR_NONE, None)
        starts = f.get("attempt_starts", _NUMBERS, [])
        attempts = f.get("attempts", _COUNT, 0)
        usage = f.get("usage", _USAGE_OR_NONE, None)
        # The first attempt's start is the node's own (to_dict writes it from started_s).
        retries = starts[1:] if started is not None and attempts else starts
        return cls(
            node_id=f.get("node_id", _STR),
            kind=f.get("kind", _STR_OR_NONE, None) or "",
            status=f.status("status", NODE_STATUSES),
            output=data.get("output"),
            started_s=started,
            finished_s=f.get("finished_s", _NUMBER_OR_NONE, None),
            attempts=attempts,
            error=f.get("error", _STR_OR_NONE, None),
            error_type=f.get("error_type", _STR_OR_NONE, None),
            role=f.get("role", _STR_OR_NONE, None),
            model=f.get("model", _STR_OR_NONE, None),
            usage=None if usage is None else Usage.from_dict(usage),
            cost_usd=f.get("cost_usd", _NUMBER_OR_NONE, None),
            deps=tuple(f.get("deps", _STRS, [])),
            retry_starts=tuple(float(t) for t in retries),
            reused=f.get("reused", _BOOL, False),
            traceback=f.get("traceback", _STR_OR_NONE, None),
            finish_reason=f.get("finish_reason", _STR_OR_NONE, None),
        )


@dataclass(frozen=True, slots=True, repr=False)
class RunResult:
    """The outcome of one run; ``status`` is ``succeeded`` only if every node succeeded."""

    run_id: str
    workflow: str
    status: Status
    strategy: str
    max_concurrency: int
    wall_s: float
    nodes: Mapping[str, NodeResult]
    critical_path: tuple[str, ...] = ()
    critical_path_s: float = 0.0
    inputs: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    def __repr__(self) -> str:  # compact: a result may hold 100,000 nodes
        return (
            f"RunResult(run_id={self.run_id!r}, workflow={self.workflow!r}, "
            f"status={str(self.status)!r}, "
            f"nodes={len(self.nodes)}, wall_s={self.wall_s:.3f}, speedup={self.speedup:.2f})"
        )

    @property
    def ok(self) -> bool:
        return self.status == "succeeded"

    @property
    def outputs(self) -> dict[str, Any]:
        """Outputs of the nodes that succeeded, by node id."""
        return {nid: n.output for nid, n in self.nodes.items() if n.status == "succeeded"}

    @property
    def sequential_s(self) -> float:
        """Sum of node durations: the time running them one after another would take."""
        return sum(n.duration_s for n in self.nodes.values())

    @property
    def speedup(self) -> float:
        """Sequential estimate over wall time."""
        return self.sequential_s / self.wall_s if self.wall_s > 0 else 1.0

    @property
    def efficiency(self) -> float:
        """Critical path over wall time: 1.0 is as fast as the dependencies allow."""
        return self.critical_path_s / self.wall_s if self.wall_s > 0 else 1.0

    @property
    def usage(self) -> Usage:
        total = Usage()
        for node in self.nodes.values():
            if node.usage is not None:
                total = total + node.usage
        return total

    @property
    def cost_usd(self) -> float | None:
        """Total cost of priced calls in US dollars (None if no call had a known price)."""
        costs = [n.cost_usd for n in self.nodes.values() if n.cost_usd is not None]
        return sum(costs) if costs else None

    @property
    def unpriced_models(self) -> list[str]:
        """Models that used tokens but have no known price (their cost is not in ``cost_usd``)."""
        return sorted(
            {
                n.model
                for n in self.nodes.values()
                if n.model and n.usage and n.usage.total_tokens and n.cost_usd is None
            }
        )

    def usage_by_model(self) -> dict[str, Usage]:
        """Return tokens used per ``provider:model``."""
        totals: dict[str, Usage] = {}
        for node in self.nodes.values():
            if node.usage is not None:
                key = node.model or "function"
                totals[key] = totals.get(key, Usage()) + node.usage
        return totals

    def counts(self) -> dict[str, int]:
        """Return how many nodes ended in each status."""
        counts: dict[str, int] = {}
        for node in self.nodes.values():
            status = str(node.status)
            counts[status] = counts.get(status, 0) + 1
        return counts

    def raise_for_status(self) -> RunResult:
        """Return ``self`` if the run succeeded.

        Raises:
            RunFailedError: carrying this result, if any node did not succeed.
        """
        if not self.ok:
            raise RunFailedError(self)
        return self

    def to_dict(self, *, nodes: bool = True) -> dict[str, Any]:
        """Return the machine-readable record printed by ``agentplex run --json``.

        ``nodes=False`` leaves out the per-node records (the run's summary alone).
        """
        usage = self.usage
        # Each derived figure walks every node: each is computed once here.
        sequential, cost = self.sequential_s, self.cost_usd
        record = {
            "run_id": self.run_id,
            "workflow": self.workflow,
            "status": str(self.status),
            "strategy": self.strategy,
            "max_concurrency": self.max_concurrency,
            "wall_s": _round(self.wall_s),
            "sequential_s": _round(sequential),
            "critical_path_s": _round(self.critical_path_s),
            "critical_path": list(self.critical_path),
            "speedup": _round(sequential / self.wall_s if self.wall_s > 0 else 1.0),
            "efficiency": _round(self.efficiency),
            "counts": self.counts(),
            "usage": usage.to_dict(),
            "usage_by_model": {
                model: {"input_tokens": u.input_tokens, "output_tokens": u.output_tokens}
                for model, u in self.usage_by_model().items()
            },
            "cost_usd": None if cost is None else round(cost, 8),
            "unpriced_models": self.unpriced_models,
            "inputs": {k: _jsonable(v) for k, v in self.inputs.items()},
            "warnings": list(self.warnings),
        }
        if nodes:
            record["nodes"] = {nid: node.to_dict() for nid, node in self.nodes.items()}
        return record

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunResult:
        """Read a :meth:`to_dict` record back (with or without ``nodes``).

        Derived figures (``sequential_s``, ``speedup``, ``counts``, ``usage``,
        ``cost_usd``...) are ignored: the result computes them from its nodes.

        Raises:
            DecodeError: naming the field, if a field has the wrong type or value.
        """
        f = _Fields(data, f"run record {data.get('run_id')!r}" if _is_map(data) else "a run")
        raw_nodes = f.get("nodes", _OBJECT, {})
        nodes: dict[str, NodeResult] = {}
        for node_id, record in raw_nodes.items():
            if not _is_map(record):
                raise DecodeError(f.what, f"has node {node_id!r} that is not an object")
            node = NodeResult.from_dict({"node_id": node_id, **record})
            if node.node_id != node_id:
                raise DecodeError(f.what, f"files node {node.node_id!r} under {node_id!r}")
            nodes[node_id] = node
        return cls(
            run_id=f.get("run_id", _STR),
            workflow=f.get("workflow", _STR),
            status=f.status("status", RUN_STATUSES),
            strategy=f.get("strategy", _STR),
            max_concurrency=f.get("max_concurrency", _COUNT),
            wall_s=float(f.get("wall_s", _NUMBER)),
            nodes=nodes,
            critical_path=tuple(f.get("critical_path", _STRS, [])),
            critical_path_s=float(f.get("critical_path_s", _NUMBER_OR_NONE, None) or 0.0),
            inputs=dict(f.get("inputs", _OBJECT, {})),
            warnings=tuple(f.get("warnings", _STRS, [])),
        )

    def to_json(self, *, indent: int | None = 2) -> str:
        """Return :meth:`to_dict` as JSON text (``agentplex run --json``)."""
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    def write(
        self, folder: str | Path, *, key: str | None = None, root: str | Path | None = None
    ) -> Path:
        """Write ``run.json`` and one file per succeeded node's output into ``folder``.

        Text outputs go to ``outputs/<node>.md``, anything else to
        ``outputs/<node>.json``, where ``<node>`` is the node id made safe
        (:class:`SafeNames`); ``run.json`` maps every node id to its file
        (``output_files``) and, for a batch item, records its ``key``.
        Returns the path of ``run.json``.

        ``root`` is the folder no link may be followed below (default ``folder``;
        a batch passes its ``--out``).

        Raises:
            OutputError: naming the path, if a write fails or a link below
                ``root`` is in the way.
        """
        out = Path(folder)
        top = Path(root) if root is not None else out
        no_link_below(top, out / "outputs")
        try:
            (out / "outputs").mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise write_error(exc, out, "the run's results") from None
        names = SafeNames()
        files: dict[str, str] = {}
        for nid, node in self.nodes.items():
            if node.status != "succeeded":
                continue
            if isinstance(node.output, str):
                name, text = f"{names(nid)}.md", node.output
            else:
                name = f"{names(nid)}.json"
                text = json.dumps(_jsonable(node.output), indent=2, ensure_ascii=False)
            write_text(
                out / "outputs" / name, text + "\n", what=f"the output of node {nid!r}", root=top
            )
            files[nid] = f"outputs/{name}"
        record = self.to_dict()
        if key is not None:
            record = {"key": key, **record}
        record["output_files"] = files
        path = out / "run.json"
        text = json.dumps(record, indent=2, ensure_ascii=False)
        write_text(path, text + "\n", what="the run record", root=top)
        return path


def _is_map(value: Any) -> bool:
    return isinstance(value, Mapping)


def _is_number(value: Any) -> bool:
    return type(value) is int or type(value) is float


class _Check:
    """A field's expected type: a test and how to name it in a message."""

    __slots__ = ("name", "test")

    def __init__(self, name: str, test: Callable[[Any], bool]) -> None:
        self.name = name
        self.test = test


_STR = _Check("a string", lambda v: type(v) is str)
_STR_OR_NONE = _Check("a string or null", lambda v: v is None or type(v) is str)
_COUNT = _Check("a whole number >= 0", lambda v: type(v) is int and v >= 0)
_NUMBER = _Check("a number", _is_number)
_NUMBER_OR_NONE = _Check("a number or null", lambda v: v is None or _is_number(v))
_BOOL = _Check("true or false", lambda v: type(v) is bool)
_OBJECT = _Check("an object", _is_map)
_STRS = _Check(
    "a list of strings", lambda v: isinstance(v, list | tuple) and all(type(s) is str for s in v)
)
_NUMBERS = _Check(
    "a list of numbers", lambda v: isinstance(v, list | tuple) and all(_is_number(n) for n in v)
)
_USAGE_COUNTS = (
    "input_tokens",
    "output_tokens",
    "cached_calls",
    "cache_read_tokens",
    "cache_write_tokens",
)
_USAGE_OR_NONE = _Check(
    "null or an object of whole numbers >= 0 (input_tokens, output_tokens, cached_calls, "
    "cache_read_tokens, cache_write_tokens) and a boolean 'estimated'",
    lambda v: (
        v is None
        or (
            _is_map(v)
            and all(type(v.get(k, 0)) is int and v.get(k, 0) >= 0 for k in _USAGE_COUNTS)
            and type(v.get("estimated", False)) is bool
        )
    ),
)
_MISSING = object()


class _Fields:
    """Typed reads of one record's fields; a bad one is a :class:`DecodeError`."""

    __slots__ = ("data", "what")

    def __init__(self, data: Any, what: str) -> None:
        if not _is_map(data):
            raise DecodeError(what, f"is {type(data).__name__}, not an object")
        self.data: Mapping[str, Any] = data
        self.what = what

    def get(self, name: str, check: _Check, default: Any = _MISSING) -> Any:
        value = self.data.get(name, _MISSING)
        if value is _MISSING:
            if default is _MISSING:
                raise DecodeError(self.what, f"has no field {name!r}; every record has one")
            return default
        if not check.test(value):
            raise DecodeError(self.what, f"has field {name!r} = {_shown(value)}, not {check.name}")
        return value

    def status(self, name: str, allowed: frozenset[Status]) -> Status:
        value = self.get(name, _STR)
        if value not in allowed:
            names = ", ".join(sorted(str(s) for s in allowed))
            raise DecodeError(
                self.what, f"has field {name!r} = {_shown(value)}, not one of {names}"
            )
        return Status(value)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 6)


def _jsonable(value: Any) -> Any:
    """Return ``value`` if JSON can hold it, else its ``repr``."""
    if value is None or isinstance(value, str | int | float):
        return value
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value
