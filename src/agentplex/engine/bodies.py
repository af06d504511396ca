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
import functools
import inspect
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from agentplex.engine.context import NodeContext
from agentplex.engine.fanout import fan_out
from agentplex.engine.options import (
    DEFAULT_MAX_OUTPUT_TOKENS,
    MAX_RETRY_OUTPUT_TOKENS,
    RunOptions,
)
from agentplex.engine.prompts import build_request
from agentplex.exceptions import AnswerTruncatedError, ConfigError, OutputSchemaError
from agentplex.executors import Executor, create_executor
from agentplex.llm import ModelRef, ProviderConfig, ProviderPool
from agentplex.llm.base import Completion, Message, Request
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

SCHEMA_REPAIRS = 2
"""Calls after the first that an answer not matching its node's ``output_schema`` gets,
each sent the validation errors of the one before."""


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
        self.caps: dict[str, tuple[int, str]] = {}
        """Each agent's output cap and truncation policy (see :meth:`_cap`)."""
        self.spent: dict[str, Usage] = {}
        """Tokens of each node's calls not in what its body returns: calls that failed,
        timed out or were cancelled (estimated), truncated answers retried, answers that
        failed their schema, and a Python step's ``ctx.ask`` calls (counted at once, so a
        token budget sees them while the step runs). The runner adds them to the node's
        usage when it ends."""
        self.redraws: dict[str, int] = {}
        """Answers each agent saw cut off or rejected so far (see :meth:`drop`); a map's
        items share their node's count."""
        self.finish_reasons: dict[str, str] = {}
        """Why the model stopped each agent's last answer; the runner takes it when the
        node ends. A map keeps its first cut-off item's reason."""
        for node_id, node in compiled.nodes.items():
            body = node.body if isinstance(node, MapNode) else node
            if isinstance(body, AgentNode):
                self.models[node_id] = self._parse(node_id, body.model or options.model)
                self.labels[node_id] = compiled.roles[body.role].name
                self.caps[node_id] = self._cap(body)
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
        self.caps[node.id] = self._cap(node)

    def _cap(self, node: AgentNode) -> tuple[int, str]:
        """The output cap and truncation policy of ``node``'s calls.

        The cap is the node's ``max_output_tokens`` (or its old ``options:
        {max_tokens}``), else its role's, else the run's ``--max-output-tokens``,
        else the workflow's ``defaults:``, else :data:`DEFAULT_MAX_OUTPUT_TOKENS`.
        The policy is the node's ``on_truncated``, else the run's, else the
        workflow's default, else ``warn``.
        """
        defaults = self.wf.defaults
        legacy = node.options.get("max_tokens")
        cap = (
            node.max_output_tokens
            or (legacy if type(legacy) is int and legacy > 0 else None)
            or self.wf.roles[node.role].max_output_tokens
            or self.options.max_output_tokens
            or defaults.max_output_tokens
            or DEFAULT_MAX_OUTPUT_TOKENS
        )
        policy = node.on_truncated or self.options.on_truncated or defaults.on_truncated
        return cap, policy or "warn"

    def spend(self, node_id: str, usage: Usage) -> None:
        """Count tokens of ``node_id``'s that its body does not return (see :attr:`spent`)."""
        before = self.spent.get(node_id)
        self.spent[node_id] = usage if before is None else before + usage

    def drop(self, node_id: str, usage: Usage) -> None:
        """Count an answer ``node_id`` paid for and will not keep: a call cut off at its
        deadline or cancelled, an answer cut off at its cap or not matching its schema.

        If the model wrote something (output tokens), the node's next attempt is a
        redraw: sent the next seed (and, under ``on_truncated: retry``, twice the cap),
        so a runaway generation is not replayed byte for byte. A retry after an error
        that produced nothing (a 429, a 5xx, a refused connection) is the same request.
        """
        self.spend(node_id, usage)
        if usage.output_tokens:
            self.redraws[node_id] = self.redraws.get(node_id, 0) + 1

    def _note_finish(self, node_id: str, completion: Completion, *, item: bool) -> None:
        """Keep why the model stopped: the last attempt's, or a map's first cut-off item's."""
        if not item or completion.truncated:
            self.finish_reasons[node_id] = completion.finish_reason
        else:
            self.finish_reasons.setdefault(node_id, completion.finish_reason)

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
        item.spent = {}  # by node id: each item's own
        item.redraws = {}
        item.finish_reasons = {}
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
        values: Mapping[str, Any] = extra or {}
        if binding.needs_ctx:
            ctx = NodeContext(
                self.run_id, node_id, attempt, self.inputs, self._asker(node_id, attempt)
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
        return output, None  # the tokens of its ctx calls are in self.spent

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
            request.max_output_tokens,
            None if request.schema is None else json.dumps(request.schema, sort_keys=True),
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
    ) -> tuple[Any, Usage]:
        ref = self.models[node_id]
        labels: Mapping[str, str] = self.labels
        if node.tools:  # called side by side; one failing cancels the others
            results = await fan_out([self._tool(name, node) for name in node.tools])
            deps = {**deps, **{f"tool {n}": r for n, r in zip(node.tools, results, strict=True)}}
            labels = {**labels, **{f"tool {n}": "tool" for n in node.tools}}
        cap, policy = self.caps[node_id]
        redraws = self.redraws.get(node_id, 0) if self.redraws else 0
        if policy == "retry" and redraws:  # each cut-off answer doubles the cap
            cap = min(cap << min(redraws, 16), max(cap, MAX_RETRY_OUTPUT_TOKENS))
        schema = node.output_schema
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
            attempt=1 + redraws,
            max_output_tokens=cap,
            schema=schema,
            schema_name=node.schema_name,
            on_spent=functools.partial(self.drop, node_id),
        )
        key = self._agent_key(node, ref, request)
        if key is not None:
            hit, text = await self.result_cache().aget(key)
            # An answer that is not text was not written by this code: a miss.
            if hit and isinstance(text, str):  # paid for in an earlier run: no tokens now
                if on_text is not None:
                    on_text(text)
                if schema is None:
                    return text, Usage(cached_calls=1)
                value, problems = _checked(schema, text)
                if not problems:
                    return value, Usage(cached_calls=1)
        completion = await self._complete(node_id, attempt, ref, request, on_text)
        self._note_finish(node_id, completion, item=extra is not None)
        if completion.truncated and (policy in ("retry", "fail") or schema is not None):
            self.drop(node_id, completion.usage)  # billed, and dropped
            bigger = min(cap * 2, MAX_RETRY_OUTPUT_TOKENS)
            retry = policy == "retry" and bigger > cap
            raise AnswerTruncatedError(
                node_id, cap, completion.finish_reason, retryable=retry, next_cap=bigger
            )
        text = mask_secrets(completion.text)  # a model that echoes a key never stores it
        if schema is None:
            if key is not None:
                await self.result_cache().aput(key, text)
            return text, completion.usage
        value, text, usage = await self._structured(
            node_id, attempt, ref, request, text, completion.usage
        )
        if key is not None:
            await self.result_cache().aput(key, text)
        return value, usage

    async def _structured(
        self,
        node_id: str,
        attempt: int,
        ref: ModelRef,
        request: Request,
        text: str,
        usage: Usage,
    ) -> tuple[Any, str, Usage]:
        """Check an answer against its schema; send the errors back (at most
        :data:`SCHEMA_REPAIRS` times) until it matches. Returns the parsed value,
        the answer's text and the usage of every call.

        Raises:
            OutputSchemaError: if the last answer still does not match.
        """
        assert request.schema is not None
        messages = request.messages
        for repair in range(SCHEMA_REPAIRS + 1):
            value, problems = _checked(request.schema, text)
            if not problems:
                return value, text, usage
            if repair == SCHEMA_REPAIRS:
                break
            listed = "\n".join(f"- {p}" for p in problems)
            messages = (
                *messages,
                Message("assistant", text),
                Message(
                    "user",
                    "That answer does not match the required JSON Schema:\n"
                    f"{listed}\nReply with only the corrected JSON value, nothing else.",
                ),
            )
            retry = dataclasses.replace(request, messages=messages)
            completion = await self._complete(node_id, attempt, ref, retry, None)
            usage = usage + completion.usage
            text = mask_secrets(completion.text)
        self.drop(node_id, usage)
        raise OutputSchemaError(node_id, problems, tries=SCHEMA_REPAIRS + 1)

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

    def _asker(self, node_id: str, attempt: int) -> Callable[..., Awaitable[Completion]]:
        """Return what ``ctx.ask`` and ``ctx.complete`` call for one attempt of ``node_id``.

        Each call's tokens are spent on the node at once (:meth:`spend`), so they
        count towards the run while the node still runs (a token budget sees
        them), and stay counted if the node then fails or is cancelled.
        """

        async def ask(
            role: str,
            task: str,
            *,
            model: str | None = None,
            on_text: Callable[[str], None] | None = None,
            schema: Mapping[str, Any] | None = None,
            schema_name: str = "answer",
            max_output_tokens: int | None = None,
            **options: Any,
        ) -> Completion:
            ref = self._parse(node_id, model) if model else self.default_model
            agent = AgentNode(
                id=node_id,
                role=role,
                task=task,
                literal_task=True,
                options=options,
                max_output_tokens=max_output_tokens,
            )
            cap, _ = self._cap(agent)
            request = build_request(
                agent,
                self.wf.roles[role],
                model=ref.model,
                deps={},
                labels={},
                inputs={},
                seed=self.options.seed,
                attempt=attempt,
                max_output_tokens=cap,
                schema=schema,
                schema_name=schema_name,
                on_spent=functools.partial(self.spend, node_id),
            )
            completion = await self._complete(node_id, attempt, ref, request, on_text)
            self.spend(node_id, completion.usage)
            return dataclasses.replace(completion, text=mask_secrets(completion.text))

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


def _checked(schema: Mapping[str, Any], text: str) -> tuple[Any, list[str]]:
    """An answer's parsed JSON value and its problems against ``schema`` (none: valid)."""
    from agentplex.model.schema import parse_json_answer, validate

    try:
        value = parse_json_answer(text)
    except ValueError as exc:
        return None, [f"not JSON: {exc}"]
    return value, validate(schema, value)


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
