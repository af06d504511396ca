"""A custom provider, executor and store, written only against ``import agentplex as ap``.

Each one passes the contract suite of its family: the store runs the
``test_contract_*`` tests of tests/test_store.py, the executor the tests of
tests/test_executors.py, and every provider kind (built-in ``sim`` and the
custom one) the provider contract below. A last test runs one workflow that
uses all three.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

import agentplex as ap
from tests import test_executors, test_store

# -- the plug-ins: nothing below imports from agentplex but ``ap`` ------------------


class EchoProvider(ap.Provider):
    """Answers with the last user message, reversed; fails the first calls on request."""

    name = "echo"

    def __init__(self, resolved: Any, *, max_connections: int = 16) -> None:
        super().__init__()
        self.greeting = resolved.options.get("greeting", "")
        self.failures_left: dict[str, int] = {}

    async def _complete(self, request: ap.Request) -> ap.Completion:
        await asyncio.sleep(request.latency_s or 0.0)
        fail_first = int(request.options.get("fail_first", 0))
        seen = self.failures_left.setdefault(request.messages[-1].content, fail_first)
        if seen > 0:
            self.failures_left[request.messages[-1].content] = seen - 1
            raise ap.exceptions.ProviderError(self.label, "overloaded", retryable=True)
        prompt = request.messages[-1].content
        text = self.greeting + prompt[::-1]
        usage = ap.Usage(input_tokens=len(prompt.split()), output_tokens=len(text.split()))
        return ap.Completion(text, usage, request.model, self.label, request.latency_s or 0.0)


class ToThreadExecutor(ap.Executor):
    """Runs every call in a fresh thread of the default pool (asyncio.to_thread)."""

    name = "to_thread"

    def _call(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        async def call() -> Any:
            result = await asyncio.to_thread(fn, *args, **kwargs)
            return await result if asyncio.iscoroutine(result) else result

        return call()


class DictStore(ap.RunStore):
    """Runs, nodes and events in plain dicts, outputs kept as the base class encodes them."""

    location = "dict://"

    def __init__(self, where: str = "dict://") -> None:
        self.location = where
        self.runs: dict[str, ap.RunRecord] = {}
        self.nodes: dict[str, dict[str, ap.StoredNode]] = {}
        self.events: dict[str, list[tuple[int, float, str, str | None, str]]] = {}

    def begin_run(self, record: ap.RunRecord, *, claim: bool = True) -> None:
        held = self.runs.get(record.run_id)
        if claim:
            self.refuse_if_busy(held)
        created = held.created if held is not None else record.created
        self.runs[record.run_id] = dataclasses.replace(record, created=created, owner=self.writer())
        self.nodes.setdefault(record.run_id, {})
        self.events.setdefault(record.run_id, [])

    def put_node(self, run_id: str, node: ap.StoredNode, *, completes: bool = False) -> None:
        text = self.encode_output(run_id, node)  # refuses before anything is kept
        self.nodes[run_id][node.node_id] = dataclasses.replace(node, output=text)
        run = self.runs[run_id]
        if completes and run.status == "running":
            self.runs[run_id] = dataclasses.replace(run, status="succeeded", updated=time.time())

    def put_events(self, run_id: str, rows: list[tuple[int, float, str, str | None, str]]) -> None:
        self.events[run_id].extend(rows)

    def end_run(self, run_id: str, status: str, summary: Mapping[str, Any]) -> None:
        self.runs[run_id] = dataclasses.replace(
            self.runs[run_id],
            status=status,
            summary=dict(summary),
            updated=time.time(),
            cost_usd=summary.get("cost_usd"),
            owner=None,
        )

    def _with_progress(self, run: ap.RunRecord) -> ap.RunRecord:
        done = sum(1 for n in self.nodes.get(run.run_id, {}).values() if n.status == "succeeded")
        return dataclasses.replace(run, done_nodes=done)

    def get_run(self, run_id: str) -> ap.RunRecord:
        if run_id not in self.runs:
            raise self.not_found(run_id)
        return self._with_progress(self.runs[run_id])

    def list_runs(self, limit: int = 20) -> list[ap.RunRecord]:
        runs = [self._with_progress(r) for r in self.runs.values() if r.batch_id is None]
        return sorted(runs, key=lambda r: r.created, reverse=True)[:limit]

    def get_items(self, batch_id: str) -> list[ap.RunRecord]:
        self.get_run(batch_id)
        items = [self._with_progress(r) for r in self.runs.values() if r.batch_id == batch_id]
        return sorted(items, key=lambda r: int(r.run_id.rpartition(".")[2] or 0))

    def get_nodes(self, run_id: str) -> dict[str, ap.StoredNode]:
        self.get_run(run_id)
        nodes = {}
        for node_id, node in self.nodes[run_id].items():
            output = self.decode_output(run_id, node_id, node.output)
            nodes[node_id] = dataclasses.replace(
                node, output=output, record={**node.record, "output": output}
            )
        return nodes

    def get_events(self, run_id: str) -> list[dict[str, Any]]:
        import json

        self.get_run(run_id)
        return [
            {"seq": s, "t": t, "kind": k, "node_id": n, "data": json.loads(d)}
            for s, t, k, n, d in self.events[run_id]
        ]


PROVIDER_KIND = "echo"
EXECUTOR_NAME = "to_thread"
STORE_SCHEME = "dictstore"


@pytest.fixture(autouse=True, scope="module")
def registered() -> Iterator[None]:
    """Register the three plug-ins for this module's tests only."""
    ap.register_provider(PROVIDER_KIND, EchoProvider)
    ap.register_executor(EXECUTOR_NAME, ToThreadExecutor)
    ap.register_store(STORE_SCHEME, DictStore)
    yield
    # The registries are module-level tables; forget the plug-ins for the tests after us.
    from agentplex import executors, llm, store

    llm._PROVIDERS.pop(PROVIDER_KIND)
    executors._EXECUTORS.pop(EXECUTOR_NAME)
    store._STORES.pop(STORE_SCHEME)


# -- the store contract, on the custom store ---------------------------------------


@pytest.fixture
def store() -> Iterator[ap.RunStore]:
    made = ap.open_store(f"{STORE_SCHEME}://contract")
    assert isinstance(made, DictStore)
    yield made
    made.close()


# Collected here, these run with this module's ``store`` (and ``kind``) fixtures.
globals().update(
    {name: test for name, test in vars(test_store).items() if name.startswith("test_contract_")}
)


# -- the executor contract, on the custom executor ------------------------------


@pytest.fixture
def kind() -> str:
    return EXECUTOR_NAME


globals().update(
    {
        name: test
        for name, test in vars(test_executors).items()
        if name.startswith("test_") and test.__code__.co_varnames[:1] == ("kind",)
    }
)


# -- the provider contract, on the simulator and the custom provider ----------------

FAIL_ONCE = {"sim": {"sim_fail_first": 1}, PROVIDER_KIND: {"fail_first": 1}}
"""The request option that makes each kind fail its first call retryably."""


@pytest.fixture(params=["sim", PROVIDER_KIND])
def provider_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _request(text: str, **options: Any) -> ap.Request:
    return ap.Request("m", (ap.Message("user", text),), options=options, latency_s=0.01)


def test_provider_contract_answers_a_plain_call_and_counts_its_usage(provider_kind: str) -> None:
    async def main() -> None:
        from agentplex.llm import ProviderPool  # the engine's pool, as a run builds it

        providers = ProviderPool()
        provider = providers.get(providers.parse(f"{provider_kind}:m"))
        assert isinstance(provider, ap.Provider)
        assert provider.label == provider_kind  # named after its configuration
        first = await provider.complete(_request("one two three"))
        second = await provider.complete(_request("four five"))
        assert isinstance(first, ap.Completion)
        assert first.text
        assert first.usage.output_tokens > 0
        stats = provider.statistics()
        assert (stats.calls, stats.failures, stats.in_flight) == (2, 0, 0)
        assert stats.usage == first.usage + second.usage
        await providers.aclose()

    asyncio.run(main())


def test_provider_contract_a_retryable_error_is_retried_by_the_run(provider_kind: str) -> None:
    wf = ap.Workflow("retry")
    wf.agent(
        "researcher", "Research {topic}", model=f"{provider_kind}:m", **FAIL_ONCE[provider_kind]
    )
    result = ap.run(wf, inputs={"topic": "tides"}, retries=2, backoff_base_s=0.01)
    node = result.nodes["researcher"]
    assert result.ok, node.error
    assert node.attempts == 2
    assert node.usage is not None
    assert node.usage.output_tokens > 0


def test_provider_contract_a_lasting_error_fails_the_node_naming_the_provider(
    provider_kind: str,
) -> None:
    wf = ap.Workflow("fail")
    options = dict.fromkeys(FAIL_ONCE[provider_kind], 10)
    wf.agent("researcher", "Research {topic}", model=f"{provider_kind}:m", **options)
    # One more attempt, whether the kind reports a rate limit (sim) or another error.
    result = ap.run(
        wf, inputs={"topic": "tides"}, retries=1, rate_limit_retries=1, backoff_base_s=0.01
    )
    node = result.nodes["researcher"]
    assert node.status == "failed"
    assert node.attempts == 2
    assert node.error


def test_provider_contract_limits_are_honoured(provider_kind: str) -> None:
    async def main() -> int:
        from agentplex.llm import ProviderPool

        config = ap.ProviderConfig(kind=provider_kind, limits=ap.Limits(max_concurrency=1))  # type: ignore[arg-type]
        providers = ProviderPool({"limited": config})
        provider = providers.get(providers.parse("limited:m"))
        assert provider.limits is not None
        assert provider.limits.max_concurrency == 1
        inner = provider._complete
        running = [0, 0]  # now, most at once

        async def counted(request: ap.Request) -> ap.Completion:
            running[0] += 1
            running[1] = max(running)
            try:
                return await inner(request)
            finally:
                running[0] -= 1

        provider._complete = counted  # type: ignore[method-assign]
        await asyncio.gather(*(provider.complete(_request(f"call {i}")) for i in range(4)))
        await providers.aclose()
        return running[1]

    assert asyncio.run(main()) == 1


def test_registering_a_taken_name_or_a_bad_factory_is_refused_with_the_fix() -> None:
    with pytest.raises(ap.exceptions.ConfigError, match=r"registered already.*replace=True"):
        ap.register_provider("openai", EchoProvider)
    with pytest.raises(ap.exceptions.ConfigError, match="registered already"):
        ap.register_executor("thread", ToThreadExecutor)
    with pytest.raises(ap.exceptions.ConfigError, match="registered already"):
        ap.register_store("sqlite", DictStore)
    with pytest.raises(ap.exceptions.ConfigError, match="not callable"):
        ap.register_executor("gpu", "not a factory")  # type: ignore[arg-type]
    with pytest.raises(ap.exceptions.ConfigError, match="cannot be registered"):
        ap.register_store("c", DictStore)  # one letter would read as a drive
    with pytest.raises(ap.exceptions.StoreError, match="no store is registered for nope://"):
        ap.open_store("nope://x")


def test_a_model_of_an_unregistered_kind_names_the_fix() -> None:
    wf = ap.Workflow("unknown")
    wf.agent("researcher", "Research", model="nokind:m")
    with pytest.raises(ap.exceptions.ConfigError, match="unknown provider 'nokind'"):
        ap.run(wf)


def test_built_in_stores_have_schemes_too(tmp_path: Path) -> None:
    assert isinstance(ap.open_store("memory://"), ap.MemoryStore)
    sqlite = ap.open_store(f"sqlite://{tmp_path / 'runs.sqlite'}")
    assert Path(sqlite.location) == tmp_path / "runs.sqlite"
    sqlite.close()


# -- all three in one run ---------------------------------------------------------


def shout(researcher: str) -> str:
    return researcher.upper()


def test_one_workflow_uses_the_custom_provider_executor_and_store() -> None:
    wf = ap.Workflow("plugins")
    research = wf.agent("researcher", "Research {topic}", model=f"{PROVIDER_KIND}:m")
    wf.function(shout, depends_on=[research], executor=EXECUTOR_NAME)
    where = f"{STORE_SCHEME}://together"
    store = ap.open_store(where)
    result = ap.run(wf, inputs={"topic": "tides"}, store=store)
    assert result.ok, {n: r.error for n, r in result.nodes.items()}
    answer = result.outputs["researcher"]
    assert "tides"[::-1] in answer  # the echo provider answered
    assert result.outputs["shout"] == answer.upper()  # the custom executor ran the step
    stored = store.get_run(result.run_id)
    assert (stored.status, stored.done_nodes) == ("succeeded", 2)
    assert store.get_nodes(result.run_id)["shout"].output == answer.upper()
    loaded = ap.load_result(store, result.run_id)  # typed, from the custom store's reads
    assert isinstance(loaded, ap.RunResult)
    assert loaded.outputs == result.outputs


def test_a_registered_provider_kind_and_executor_can_be_named_in_a_workflow_file(
    tmp_path: Path,
) -> None:
    ap.register_provider("echo-file", EchoProvider, replace=True)
    ap.register_executor("to_thread_file", ToThreadExecutor, replace=True)
    (tmp_path / "file_steps.py").write_text("def double(x: int = 21) -> int:\n    return 2 * x\n")
    path = tmp_path / "flow.yaml"
    path.write_text(
        "providers:\n  mine: {kind: echo-file}\n"
        "nodes:\n"
        "  talk: {role: writer, task: abc, model: 'mine:v1'}\n"
        "  twice: {function: 'file_steps:double', executor: to_thread_file}\n"
    )
    result = ap.run(ap.load_workflow(path), executor="to_thread_file")
    assert result.ok, {k: n.error for k, n in result.nodes.items()}
    assert result.outputs["talk"] == "cba"  # the echo provider reversed the task
    assert result.outputs["twice"] == 42


def test_open_store_refuses_what_names_no_store() -> None:
    with pytest.raises(ap.exceptions.StoreError, match="not int 5"):
        ap.open_store(5)  # type: ignore[arg-type]
