"""How a node's work is done, once the runner has decided it may start.

An agent body becomes a :class:`~agentplex.llm.Request` (see
:mod:`agentplex.engine.prompts`) sent to its provider; a function body is called with
its bound arguments on its executor. :class:`NodeBodies` owns what those calls
need for one run (the provider pool, the executors, each agent's parsed model)
and resolves all of it before the first node starts, so a bad model string
fails the run before anything runs. It knows nothing of scheduling, slots,
retries or timeouts: those belong to :mod:`agentplex.engine.runner`.
"""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from agentplex.engine.context import NodeContext
from agentplex.engine.fanout import fan_out
from agentplex.engine.options import RunOptions
from agentplex.engine.prompts import build_request
from agentplex.exceptions import ConfigError
from agentplex.executors import Executor, create_executor
from agentplex.llm import ModelRef, ProviderConfig, ProviderPool
from agentplex.llm.base import Completion, Request
from agentplex.llm.config import (
    StreamMask,
    mask_secrets,
    redact,
    redact_value,
    register_environment_keys,
)
from agentplex.llm.pricing import PriceTable
from agentplex.model.workflow import AgentNode, CompiledWorkflow, FunctionNode, MapNode
from agentplex.result import Usage
from agentplex.store.cache import ResultCache, cache_enabled, content_key


class NodeBodies:
    """Run agent and function bodies for one run; close with :meth:`aclose`.

    Raises:
        ConfigError: at construction, if an agent's model string is invalid, or a
            function node was compiled without importing its function.
    """

    def __init__(
        self,
        compiled: CompiledWorkflow,
        options: RunOptions,
        *,
        run_id: str,
        inputs: Mapping[str, Any],
    ) -> None:
        self.wf = compiled
        self.options = options
        self.run_id = run_id
        self.inputs = inputs
        configs = provider_configs(compiled, options)
        register_environment_keys(configs)
        self.providers = ProviderPool(
            configs,
            max_connections=options.max_concurrency,
            default_timeout_s=options.timeout_s,
        )
        self.prices = PriceTable({**compiled.prices, **(options.prices or {})})
        self.default_model = self._parse(None, options.model)
        self.executors: dict[str, Executor] = {}
        self.caching = options.cache and cache_enabled()
        self._cache_box: list[ResultCache | None] = [None]
        """Opened on first use; a list so a batch's item views share it."""
        self.tools: Mapping[str, Callable[[str], Any]] = {}
        """Tools agents may name (a planned run's registry): ``tool(task) -> text``."""
        self.on_request: Callable[[str, int, str, tuple[tuple[str, str], ...]], None] | None = None
        """Told ``(node_id, attempt, provider:model, messages)`` just before each LLM
        call, messages masked (``RunOptions.record_requests``); None costs nothing."""
        self.models: dict[str, ModelRef] = {}
        """Parsed model of each agent (and agent-bodied map) node."""
        self.where: dict[str, str] = {}
        """Executor of each function (and function-bodied map) node."""
        self.labels: dict[str, str] = {}
        """How each node's output is labelled in a dependent's prompt: its role or kind."""
        for node_id, node in compiled.nodes.items():
            body = node.body if isinstance(node, MapNode) else node
            if isinstance(body, AgentNode):
                self.models[node_id] = self._parse(node_id, body.model or options.model)
                self.labels[node_id] = compiled.roles[body.role].name
            elif isinstance(body, FunctionNode):
                if body.fn is None:
                    raise ConfigError(
                        f"node {node_id!r} names {body.target!r}, which was never imported: "
                        "the workflow was compiled with imports=False, for inspection only. "
                        "Fix: compile it with imports=True (the default) to run it."
                    )
                where: str = body.resolved_executor()
                if where == "process" and body.executor == "auto":
                    where = options.cpu_executor()  # --executor dask, --dask ADDRESS
                self.where[node_id] = where
                self.labels[node_id] = node.kind

    def add_agent(self, node: AgentNode) -> None:
        """Resolve the model of an agent node that joined the run while it runs.

        Raises:
            ConfigError: if its model string is invalid.
        """
        self.models[node.id] = self._parse(node.id, node.model or self.options.model)
        self.labels[node.id] = self.wf.roles[node.role].name

    def for_item(
        self, run_id: str, inputs: Mapping[str, Any], *, model: str | None = None
    ) -> NodeBodies:
        """Return the bodies of one batch item: this run's providers, executors
        and prices (shared, closed by this object's owner), the item's inputs,
        and ``model`` for the agents that name none.

        Raises:
            ConfigError: if ``model`` is not a valid model string.
        """
        item = copy.copy(self)
        item.run_id = run_id
        item.inputs = inputs
        if model is not None and model != self.options.model:
            item.default_model = self._parse(None, model)
            item.models = dict(self.models)
            for node_id, node in self.wf.nodes.items():
                body = node.body if isinstance(node, MapNode) else node
                if isinstance(body, AgentNode) and body.model is None:
                    item.models[node_id] = item.default_model
        return item

    def providers_in_use(self) -> set[str]:
        """Names of the provider configurations this run's agents call."""
        names = {ref.provider for ref in self.models.values()}
        if any(self.wf.bindings[n].needs_ctx for n in self.where):
            names.add(self.default_model.provider)  # ctx.ask uses the default model
        return names

    def _parse(self, node_id: str | None, spec: str) -> ModelRef:
        try:
            return self.providers.parse(spec)
        except ConfigError as exc:
            where = f" ({self.wf.source})" if self.wf.source else ""
            who = f"node {node_id!r}" if node_id else "--model"
            raise ConfigError(f"{who}{where}: {exc}") from None

    async def prepare(self, models: Iterable[str] = ()) -> None:
        """Check every provider the run will use, before anything runs.

        Raises:
            ConfigError: a missing key, unreachable endpoint or bad setting, saying what to set.
            MissingExtraError: a provider SDK that is not installed.
        """
        names = self.providers_in_use() | {self._parse(None, m).provider for m in models}
        if self.options.preflight:
            await self.providers.preflight(names)
        else:
            for name in names:
                self.providers.resolve(name)
        if "dask" in self.where.values():  # an unreachable scheduler fails here, not mid-run
            from agentplex.executors.dask import DaskExecutor

            executor = self._executor("dask")
            assert isinstance(executor, DaskExecutor)
            await executor.check()

    def cost(self, node_id: str, usage: Usage | None) -> float | None:
        """Return what ``usage`` of ``node_id``'s model cost in dollars, or None if unknown."""
        ref = self.models.get(node_id, self.default_model)
        if usage is None:
            return None
        kind = self.providers.configs[ref.provider].kind
        return self.prices.cost(kind, ref.provider, ref.model, usage)

    def model_of(self, node_id: str) -> str | None:
        """Return the ``provider:model`` an agent node runs with, or ``None``."""
        ref = self.models.get(node_id)
        return None if ref is None else str(ref)

    async def call(
        self,
        node: AgentNode | FunctionNode,
        node_id: str,
        attempt: int,
        outputs: Mapping[str, Any],
        extra: Mapping[str, Any] | None = None,
        exclude: tuple[str, ...] = (),
        *,
        on_text: Callable[[str], None] | None = None,
    ) -> tuple[Any, Usage | None]:
        """Run one attempt of ``node``'s body given every output so far.

        ``extra`` holds a map item's ``item`` and ``index``; ``exclude`` names
        dependencies not to show an agent (a map node's list).
        """
        if isinstance(node, AgentNode):
            own = {d: outputs[d] for d in self.wf.deps[node_id]}
            return await self._call_agent(node, node_id, attempt, own, extra, exclude, on_text)
        where = self.where[node_id]
        executor = self.executors.get(where) or self._executor(where)
        binding = self.wf.bindings[node_id]
        # Parameters name their dependencies, so the run's outputs serve as the
        # lookup table; only a **kwargs parameter needs the node's own subset.
        deps: Mapping[str, Any] = (
            {d: outputs[d] for d in self.wf.deps[node_id]} if binding.takes_all else outputs
        )
        usage_box: list[Usage] = []
        values: Mapping[str, Any] = extra or {}
        if binding.needs_ctx:
            ctx = NodeContext(
                self.run_id, node_id, attempt, self.inputs, self._asker(node_id, attempt, usage_box)
            )
            values = {**values, "ctx": ctx}
        args, kwargs = binding.arguments(deps, self.inputs, values)
        assert node.fn is not None
        key = self._function_key(node, args, kwargs) if node.cache and self.caching else None
        if key is not None:
            hit, cached = await self.result_cache().aget(key)
            if hit:
                return cached, Usage(cached_calls=1)
        # A key a step read and returned is masked before the output reaches the
        # store, the cache, --json, --out or a report.
        output = redact_value(await executor.submit(node.fn, *args, **kwargs))
        if key is not None:
            await self.result_cache().aput(key, output)
        return output, (sum(usage_box, Usage()) if usage_box else None)

    async def _tool(self, name: str, node: AgentNode) -> Any:
        tool = self.tools.get(name)
        if tool is None:
            raise ConfigError(f"node {node.id!r} names unknown tool {name!r}. Fix: register it.")
        if inspect.iscoroutinefunction(tool):
            return await tool(node.task)
        return await asyncio.to_thread(tool, node.task)

    def result_cache(self) -> ResultCache:
        """The run's result cache, opened on first use (shared by a batch's items)."""
        cache = self._cache_box[0]
        if cache is None:
            cache = self._cache_box[0] = ResultCache()
        return cache

    def _function_key(self, node: FunctionNode, args: Any, kwargs: Any) -> str | None:
        """The cache key of a function call; None (not cached) if an argument is not data."""
        import hashlib

        from agentplex.exceptions import EncodeError
        from agentplex.store.codec import canonical
        from agentplex.store.keys import spec_of

        try:
            encoded = canonical([list(args), dict(kwargs)])
        except EncodeError:
            return None
        arguments = hashlib.sha256(encoded.encode()).hexdigest()
        return content_key("function", spec_of(self.wf, node, ""), arguments)

    def _agent_key(self, node: AgentNode, ref: ModelRef, request: Request) -> str | None:
        if not self.caching or node.cache is False:
            return None
        resolved = self.providers.resolve(ref.provider)
        if resolved.kind == "sim":
            return None  # simulated latency is the point of the simulator
        return content_key(
            "llm",
            resolved.kind,
            resolved.base_url,
            request.model,
            [[m.role, m.content] for m in request.messages],
            sorted((str(k), repr(v)) for k, v in request.options.items()),
        )

    async def _call_agent(
        self,
        node: AgentNode,
        node_id: str,
        attempt: int,
        deps: Mapping[str, Any],
        extra: Mapping[str, Any] | None,
        exclude: tuple[str, ...],
        on_text: Callable[[str], None] | None,
    ) -> tuple[str, Usage]:
        ref = self.models[node_id]
        labels: Mapping[str, str] = self.labels
        if node.tools:  # called side by side; one failing cancels the others
            results = await fan_out([self._tool(name, node) for name in node.tools])
            deps = {**deps, **{f"tool {n}": r for n, r in zip(node.tools, results, strict=True)}}
            labels = {**labels, **{f"tool {n}": "tool" for n in node.tools}}
        request = build_request(
            node,
            self.wf.roles[node.role],
            model=ref.model,
            deps=deps,
            labels=labels,
            inputs=self.inputs,
            extra=extra,
            exclude=exclude,
            seed=self.options.seed,
            node_id=node_id,
        )
        key = self._agent_key(node, ref, request)
        if key is not None:
            hit, text = await self.result_cache().aget(key)
            # An answer that is not text was not written by this code: a miss.
            if hit and isinstance(text, str):  # paid for in an earlier run: no tokens now
                if on_text is not None:
                    on_text(text)
                return text, Usage(cached_calls=1)
        completion = await self._complete(node_id, attempt, ref, request, on_text)
        text = mask_secrets(completion.text)  # a model that echoes a key never stores it
        if key is not None:
            await self.result_cache().aput(key, text)
        return text, completion.usage

    async def _complete(
        self,
        node_id: str,
        attempt: int,
        ref: ModelRef,
        request: Request,
        on_text: Callable[[str], None] | None,
    ) -> Completion:
        """Send ``request`` to its provider: streamed text masked, the request announced."""
        stream = None if on_text is None else StreamMask(on_text)
        if stream is not None:
            request = dataclasses.replace(request, on_text=stream)
        if self.on_request is not None:
            self._announce(node_id, attempt, ref, request)
        completion = await self.providers.get(ref).complete(request)
        if stream is not None:
            stream.flush()
        return completion

    def _announce(self, node_id: str, attempt: int, ref: ModelRef, request: Request) -> None:
        assert self.on_request is not None
        messages = tuple((m.role, redact(m.content)) for m in request.messages)
        self.on_request(node_id, attempt, str(ref), messages)

    def _asker(
        self, node_id: str, attempt: int, usage_box: list[Usage]
    ) -> Callable[..., Awaitable[str]]:
        """Return ``ctx.ask`` for one attempt of ``node_id``; its usage lands in ``usage_box``."""

        async def ask(
            role: str,
            task: str,
            *,
            model: str | None = None,
            on_text: Callable[[str], None] | None = None,
            **options: Any,
        ) -> str:
            ref = self._parse(node_id, model) if model else self.default_model
            agent = AgentNode(id=node_id, role=role, task=task, literal_task=True, options=options)
            request = build_request(
                agent,
                self.wf.roles[role],
                model=ref.model,
                deps={},
                labels={},
                inputs={},
                seed=self.options.seed,
            )
            completion = await self._complete(node_id, attempt, ref, request, on_text)
            usage_box.append(completion.usage)
            return mask_secrets(completion.text)

        return ask

    def _executor(self, name: str) -> Executor:
        executor = self.executors.get(name)
        if executor is None:
            executor = self.executors[name] = create_executor(name, dask=self.options.dask)
        return executor

    async def aclose(self) -> None:
        """Close every executor, provider and cache this run opened."""
        for executor in self.executors.values():
            await executor.aclose()
        await self.providers.aclose()
        cache = self._cache_box[0]
        if cache is not None:
            cache.close()
            self._cache_box[0] = None


def provider_configs(compiled: CompiledWorkflow, options: RunOptions) -> dict[str, ProviderConfig]:
    """Merge the workflow's provider configurations with the run's.

    Later wins: built-in, then the workflow file, then ``options.providers``,
    then the flag-style options (``base_url``, ``api_key``, ``rpm``, ``tpm``,
    ``max_inflight``), which apply to the provider of the default model.
    ``sim_scale`` applies to every simulator configuration.
    """
    from agentplex.llm.config import BUILTIN_PROVIDERS

    configs = {**BUILTIN_PROVIDERS, **compiled.providers, **(options.providers or {})}
    name = options.model.partition(":")[0]
    if name in configs:
        api_key = options.api_key if not isinstance(options.api_key, str) else None
        configs[name] = configs[name].merged(
            base_url=options.base_url,
            api_key=api_key,
            limits={
                "rpm": options.rpm,
                "tpm": options.tpm,
                "max_concurrency": options.max_inflight,
            },
        )
    if options.sim_scale is not None:
        for key, config in configs.items():
            if config.kind == "sim":
                configs[key] = config.merged(options={**config.options, "scale": options.sim_scale})
    return configs
