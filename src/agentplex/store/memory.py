"""The run store in dicts: for tests and one-off runs, and the shortest complete :class:`RunStore`."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from agentplex.store.base import (
    RunRecord,
    RunStore,
    StoredNode,
    decoded_output,
    final_size,
    item_order,
    output_text,
    this_owner,
)


class MemoryStore(RunStore):
    """A store in dicts: for tests and runs that need no durability."""

    def __init__(self) -> None:
        self.runs: dict[str, RunRecord] = {}
        self.nodes: dict[str, dict[str, StoredNode]] = {}
        self.events: dict[str, list[tuple[int, float, str, str | None, str]]] = {}

    def begin_run(self, record: RunRecord, *, claim: bool = True) -> None:
        old = self.runs.get(record.run_id)
        # A writer holds its run until end_run (also once its last node marked it succeeded).
        if claim:
            self.refuse_if_busy(old)
        created = old.created if old is not None else record.created
        self.runs[record.run_id] = replace(record, created=created, owner=this_owner())
        self.nodes.setdefault(record.run_id, {})
        self.events.setdefault(record.run_id, [])

    def put_node(self, run_id: str, node: StoredNode, *, completes: bool = False) -> None:
        # Kept encoded, as the SQLite store keeps it: the same values come back from both.
        text = output_text(run_id, node)
        self.nodes[run_id][node.node_id] = replace(node, output=text)
        run = self.runs.get(run_id)
        if completes and run is not None and run.status == "running":
            import time

            self.runs[run_id] = replace(run, status="succeeded", updated=time.time())

    def put_events(self, run_id: str, rows: list[tuple[int, float, str, str | None, str]]) -> None:
        self.events[run_id].extend(rows)

    def end_run(self, run_id: str, status: str, summary: Mapping[str, Any]) -> None:

        run = self.runs[run_id]
        self.runs[run_id] = replace(
            run,
            status=status,
            summary=dict(summary),
            updated=time.time(),
            cost_usd=summary.get("cost_usd"),
            owner=None,
            total_nodes=final_size(summary) or run.total_nodes,
        )

    def _progress(self, run: RunRecord) -> RunRecord:
        nodes = self.nodes.get(run.run_id, {})
        done = sum(1 for n in nodes.values() if n.status == "succeeded")
        done += sum(
            1 for r in self.runs.values() if r.batch_id == run.run_id and r.status == "succeeded"
        )
        return replace(run, done_nodes=done)

    def get_run(self, run_id: str) -> RunRecord:
        try:
            return self._progress(self.runs[run_id])
        except KeyError:
            raise self.not_found(run_id) from None

    def list_runs(self, limit: int = 20) -> list[RunRecord]:
        runs = [self._progress(r) for r in self.runs.values() if r.batch_id is None]
        return sorted(runs, key=lambda r: r.created, reverse=True)[:limit]

    def get_items(self, batch_id: str) -> list[RunRecord]:
        self.get_run(batch_id)
        items = [self._progress(r) for r in self.runs.values() if r.batch_id == batch_id]
        return sorted(items, key=item_order)

    def get_nodes(self, run_id: str) -> dict[str, StoredNode]:
        self.get_run(run_id)
        nodes = {}
        for node_id, node in self.nodes.get(run_id, {}).items():
            output = decoded_output(self.location, run_id, node_id, node.output)
            nodes[node_id] = replace(node, output=output, record={**node.record, "output": output})
        return nodes

    def get_events(self, run_id: str) -> list[dict[str, Any]]:
        import json

        self.get_run(run_id)
        return [
            {"seq": s, "t": t, "kind": k, "node_id": n, "data": json.loads(d)}
            for s, t, k, n, d in self.events.get(run_id, [])
        ]
