"""``resume``: finish a stored run, re-running only what did not succeed.

The run is reloaded from the store: its inputs and settings, and its
workflow from the file it came from (read again, so edits are picked up).
Every stored succeeded result whose content key is unchanged is kept; the
rest (failed, cancelled, never started, or edited, and their dependents)
runs under the same run id, recorded in the same store.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from agentplex import events as ev
from agentplex.batch.result import BatchResult
from agentplex.exceptions import ConfigError, InvalidWorkflowError, UntrustedInputError
from agentplex.model.workflow import CompiledWorkflow, Workflow
from agentplex.result import RunResult
from agentplex.store import RunStore, StoredNode, open_store


async def aresume(
    run_id: str,
    *,
    store: RunStore | str | Path | None = None,
    workflow: Workflow | CompiledWorkflow | None = None,
    observers: Iterable[ev.Observer] = (),
    trust: bool = False,
    **overrides: Any,
) -> RunResult | BatchResult:
    """Finish run ``run_id`` from ``store`` (default: the project's store); see the module docstring.

    A batch id resumes the batch item by item: items that succeeded are kept
    whole, the others resume as runs do, and items never started run now;
    the result is then a :class:`~agentplex.batch.result.BatchResult`.

    ``workflow`` is needed for runs built in Python (their file is unknown);
    ``overrides`` replace stored run options (``max_concurrency``, ``api_key``...).

    A stored record is data, not instructions: the file it names is read
    untrusted (no Python steps, no endpoints) unless ``trust=True``, a run
    started untrusted stays so, and it never chooses an endpoint: a
    run started with a ``base_url`` or a ``dask`` address needs it passed
    again in ``overrides``.

    Raises:
        RunNotFoundError: if the store has no such run.
        StoreError: if another process is writing the run, or the store is unusable.
        ConfigError: if the workflow cannot be found again, or an endpoint the
            run used is not given again.
    """
    from agentplex.engine.runner import arun

    opened = None if isinstance(store, RunStore) else open_store(store)
    run_store = opened or store
    assert isinstance(run_store, RunStore)
    try:
        loaded, inputs, options, prior = await asyncio.to_thread(
            _reload, run_store, run_id, workflow, trust
        )
        _check_endpoints(run_id, options, overrides)
        if options.pop("kind", None) == "batch":
            from agentplex.batch.driver import arun_batch

            items = _batch_items(run_id, inputs)
            return await arun_batch(
                loaded,
                items,
                observers=observers,
                store=run_store,
                batch_id=run_id,
                resuming=True,
                **{**options, **overrides},
            )
        return await arun(
            loaded,
            inputs=inputs,
            observers=observers,
            run_id=run_id,
            store=run_store,
            prior=prior,
            **{**options, **overrides},
        )
    finally:
        if opened is not None:
            opened.close()


#: Stored settings that name an endpoint: a record may remember them, but only the
#: user may choose them, so resume asks for them again instead of reading them.
ENDPOINT_SETTINGS = ("base_url", "dask")


def _check_endpoints(run_id: str, stored: dict[str, Any], overrides: dict[str, Any]) -> None:
    for name in ENDPOINT_SETTINGS:
        value = stored.pop(name, None)
        if value is not None and overrides.get(name) is None:
            flag = "--" + name.replace("_", "-")
            raise ConfigError(
                f"run {run_id!r} was started with {flag} {value}. A stored run never chooses "
                f"where requests go, so resume does not read it back. Fix: pass it again: "
                f"agentplex resume {run_id} {flag} {value} (or {name}=... in Python), once "
                "you have checked it is yours."
            )


def _batch_items(run_id: str, inputs: Mapping[str, Any]) -> list[Any]:
    """The stored batch's items, or a StoreError if the record does not hold items."""
    from agentplex.batch.inputs import BatchItem
    from agentplex.exceptions import StoreError

    known = {f.name for f in dataclasses.fields(BatchItem)}
    raw = inputs.get("items")
    try:
        if not isinstance(raw, list):
            raise TypeError("'items' is not a list")
        items = []
        for item in raw:
            if not isinstance(item, Mapping) or not set(item) <= known:
                raise TypeError(f"an item is not one of {sorted(known)}")
            items.append(BatchItem(**item))
    except (TypeError, ValueError) as exc:
        raise StoreError(
            f"batch {run_id!r}: the stored items are not valid ({exc}). Fix: run the batch "
            "again from its input file; the store record was changed or damaged."
        ) from None
    return items


def _reload(
    store: RunStore, run_id: str, workflow: Workflow | CompiledWorkflow | None, trust: bool
) -> tuple[Workflow | CompiledWorkflow, dict[str, Any], dict[str, Any], dict[str, StoredNode]]:
    """Read the run back (off the event loop: these are blocking reads)."""
    from agentplex.files.loader import load_workflow

    record = store.get_run(run_id)
    if workflow is None:
        nodes = store.get_nodes(run_id)
        if not record.source and "coordinator" in nodes and record.workflow in ("ask", "plan"):
            raise ConfigError(
                f"run {run_id!r} is a planned run ('agentplex ask'), and planned runs cannot be "
                "resumed yet: the plan lives in the run, not in a file. Fix: ask again (with a "
                "real provider the result cache answers the finished agents for free), or run "
                "the stored plan: 'agentplex plan ... --save plan.json' then 'agentplex run'."
            )
        if not record.source:
            raise ConfigError(
                f"run {run_id!r} was built in Python, so its workflow cannot be reloaded. "
                "Fix: pass workflow=... to resume()."
            )
        if not Path(record.source).is_file():
            raise ConfigError(
                f"run {run_id!r} came from {record.source}, which no longer exists. "
                "Fix: restore the file, or pass workflow=... to resume()."
            )
        # The record names the file, and a record is not the user: the file is read
        # untrusted (no code, no endpoints) unless the user says --trust now; a run
        # started untrusted stays so whatever --trust says (the record only lowers).
        started_trusted = record.settings.get("trusted") is True
        trusted = trust and started_trusted
        try:
            workflow = load_workflow(record.source, trusted=trusted).compile()
        except (UntrustedInputError, InvalidWorkflowError) as exc:
            if trusted or not started_trusted or not _names_what_only_you_choose(exc):
                raise  # a run started untrusted stays so: --trust would not help
            raise UntrustedInputError(
                f"run {run_id!r} is read again from the file its record names, and that file "
                f"names Python code or an endpoint ({_where(exc)}); a stored run never "
                "chooses what code runs or where requests go.",
                hint=f"if that file is yours, agentplex resume {run_id} --trust "
                "(trust=True in Python)",
                path=record.source,
            ) from None
    settings = {k: v for k, v in record.settings.items() if k != "trusted"}
    return workflow, dict(record.inputs), settings, store.get_nodes(run_id)


def _where(exc: Exception) -> str:
    """Name the nodes and fields an untrusted read refused, e.g. ``node 'a' (function)``."""
    problems = getattr(exc, "errors", None) or [exc]
    named = [
        f"node {p.node_id!r} ({p.field})" if getattr(p, "node_id", None) else str(p)
        for p in problems[:3]
    ]
    return ", ".join(named) + (f" and {len(problems) - 3} more" if len(problems) > 3 else "")


def _names_what_only_you_choose(exc: Exception) -> bool:
    """Whether loading failed only because the file was read untrusted."""
    if isinstance(exc, UntrustedInputError):
        return True
    problems = getattr(exc, "errors", ())
    return bool(problems) and all(isinstance(p, UntrustedInputError) for p in problems)


def resume(run_id: str, **kwargs: Any) -> RunResult | BatchResult:
    """Finish a stored run from synchronous code; see :func:`aresume`."""
    return asyncio.run(aresume(run_id, **kwargs))
