from __future__ import annotations

import asyncio
import datetime
import enum
import json
import random
import time
import uuid
from typing import Annotated, Any, Literal

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field, TypeAdapter

from agentplex.exceptions import ConfigError, ProviderError
from agentplex.llm import parse_model
from agentplex.llm.base import Message, Request
from agentplex.llm.material import Section, render_prompt
from agentplex.model.roles import BUILTIN_ROLES
from agentplex.sim.provider import SimProvider, generate
from agentplex.sim.structured import value_for


def messages(role: str, user: str) -> list[Message]:
    return [Message("system", BUILTIN_ROLES[role].system_prompt), Message("user", user)]


def test_same_model_messages_and_seed_give_the_same_answer() -> None:
    a = generate("default", messages("researcher", "Research Rust async runtimes"), 0)
    b = generate("default", messages("researcher", "Research Rust async runtimes"), 0)
    assert a == b
    assert generate("default", messages("researcher", "Research Rust async runtimes"), 1) != a
    assert generate("other", messages("researcher", "Research Rust async runtimes"), 0) != a


def test_text_is_role_shaped_and_uses_task_and_context() -> None:
    research = generate("default", messages("researcher", "Research Tokio and async-std"), 0)
    assert research.text.startswith("## Research notes: Research Tokio and async-std")
    prompt = render_prompt(
        "Review the plan", [Section("node", "budget", "Spend 40k on ovens", "planner")]
    )
    critique = generate("default", messages("critic", prompt), 0)
    assert critique.text.startswith("## Critique: Review the plan\n")
    assert 'budget (planner): "Spend 40k on ovens..."' in critique.text
    assert critique.usage.input_tokens > 0
    assert critique.usage.output_tokens > 0


def test_latency_model_depends_on_the_model_name() -> None:
    msgs = messages("writer", "Write a haiku about queues")
    default = generate("default", msgs).latency_s
    assert 0.2 < default < 5
    assert generate("fast", msgs).latency_s < default
    assert generate("instant", msgs).latency_s == 0


def test_pinned_latency_is_exact_and_scaled() -> None:
    async def main() -> float:
        provider = SimProvider(scale=0.5)
        t0 = time.perf_counter()
        completion = await provider.complete(
            Request("default", tuple(messages("writer", "x")), latency_s=0.2)
        )
        assert completion.latency_s == pytest.approx(0.1)
        return time.perf_counter() - t0

    assert 0.09 < asyncio.run(main()) < 0.5


def test_fail_first_fails_then_succeeds() -> None:
    async def main() -> None:
        provider = SimProvider(scale=0)
        request = Request("default", tuple(messages("writer", "x")), options={"sim_fail_first": 1})
        with pytest.raises(ProviderError) as info:
            await provider.complete(request)
        assert info.value.retryable
        assert info.value.status == 429
        assert (await provider.complete(request)).text
        stats = provider.statistics()
        assert (stats.calls, stats.failures) == (2, 1)

    asyncio.run(main())


def test_bad_scale_is_a_config_error(monkeypatch) -> None:
    monkeypatch.setenv("AGENTPLEX_SIM_SCALE", "fast")
    with pytest.raises(ConfigError, match="AGENTPLEX_SIM_SCALE"):
        SimProvider()


def test_model_strings_keep_colons_in_the_model_part() -> None:
    ref = parse_model("sim:llama3.2:1b")
    assert (ref.provider, ref.model) == ("sim", "llama3.2:1b")
    with pytest.raises(ConfigError, match="provider:model"):
        parse_model("default")


# -- structured answers ---------------------------------------------------------------------


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Author(BaseModel):
    name: str
    email: str | None = None


class Paper(BaseModel):
    title: Annotated[str, Field(min_length=5, max_length=40)]
    year: Annotated[int, Field(ge=1900, le=2030)]
    score: Annotated[float, Field(gt=0, lt=1)]
    authors: Annotated[list[Author], Field(min_length=1, max_length=4)]
    tags: set[str] = set()
    color: Color = Color.RED
    kind: Literal["journal", "conference"]
    when: datetime.date
    stamp: datetime.datetime
    ident: uuid.UUID
    pair: tuple[int, str]
    counts: dict[str, int]


class Tree(BaseModel):
    value: int
    children: list[Tree] = []
    parent: Tree | None = None


class Cat(BaseModel):
    pet: Literal["cat"]
    lives: int


class Dog(BaseModel):
    pet: Literal["dog"]
    bark: bool


class Owner(BaseModel):
    animal: Annotated[Cat | Dog, Field(discriminator="pet")]
    step: Annotated[float, Field(multiple_of=0.25, ge=0, le=10)]
    n: Annotated[int, Field(multiple_of=7, gt=10)]


SCHEMAS: list[Any] = [
    *(
        TypeAdapter(tp).json_schema()
        for tp in (Paper, Tree, Owner, list[int], dict[str, list[Author]], int | None)
    ),
    {"type": "string", "format": "email"},
    {"type": "string", "format": "date-time", "maxLength": 30},
    {"type": ["string", "null"], "maxLength": 3},
    {"type": "string", "minLength": 50},
    {"type": "array", "items": {"enum": [1, 2, 3]}, "uniqueItems": True, "minItems": 3},
    {"type": "object", "additionalProperties": False},
    {"type": "object", "minProperties": 3, "maxProperties": 3},
    {"type": "number", "exclusiveMinimum": 5, "exclusiveMaximum": 5.5},
    {"type": "number", "multipleOf": 0.1, "minimum": 1, "maximum": 2},
    {"type": "integer", "minimum": 3, "maximum": 4},
    {
        "allOf": [
            {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
            {"properties": {"b": {"type": "integer"}}, "required": ["b"]},
        ]
    },
    {"type": "string", "pattern": "^[0-9]+$"},
    {"const": {"x": [1, None]}},
    {},
    True,
    {"type": "array", "prefixItems": [{"type": "string"}, {"type": "boolean"}], "items": False},
    {"type": "array", "contains": {"type": "integer"}, "items": {"type": ["integer", "string"]}},
    {"type": "object", "properties": {"x": {"type": "null"}}, "required": ["x", "y"]},
]
WORDS = ["Python", "queues", "asyncio", "Tokio"]


def check(schema: Any, value: Any) -> None:
    validator = jsonschema.validators.validator_for(schema, jsonschema.Draft202012Validator)
    errors = [
        e.message
        for e in validator(schema, format_checker=validator.FORMAT_CHECKER).iter_errors(value)
    ]
    assert not errors, (schema, value, errors)


@pytest.mark.parametrize("schema", SCHEMAS)
def test_structured_answers_follow_their_schema(schema: Any) -> None:
    for seed in range(30):
        check(schema, value_for(schema, words=WORDS, rng=random.Random(seed)))


def test_structured_answers_are_deterministic_and_made_of_the_prompts_words() -> None:
    schema = TypeAdapter(Paper).json_schema()
    one = value_for(schema, words=WORDS, rng=random.Random(5))
    assert one == value_for(schema, words=WORDS, rng=random.Random(5))
    assert set(one["authors"][0]["name"].split()) <= {*WORDS, "Python".title(), "Queues", "Asyncio"}
    tree = value_for(TypeAdapter(Tree).json_schema(), words=WORDS, rng=random.Random(1))
    assert len(json.dumps(tree)) < 20_000  # a recursive model ends, and soon


_NAMES = st.from_regex(r"[a-z][a-z_]{0,7}", fullmatch=True)
_FORMATS = ["date", "date-time", "time", "email", "uri", "uuid", "ipv4", "ipv6", "hostname"]


_SCALARS = st.one_of(
    st.builds(
        lambda low, span: {"type": "string", "minLength": low, "maxLength": low + span},
        st.integers(0, 20),
        st.integers(0, 20),
    ),
    st.sampled_from([{"type": "string", "format": f} for f in _FORMATS]),
    st.lists(st.text(max_size=5) | st.integers(), min_size=1, max_size=4, unique=True).map(
        lambda values: {"enum": values}
    ),
    st.sampled_from([1, 2, 5]).flatmap(  # any step consecutive integers include a multiple of
        lambda step: st.builds(
            lambda low, span: {
                "type": "integer",
                **({} if low is None else {"minimum": low}),
                **({} if span is None or low is None else {"maximum": low + span}),
                **({} if step == 1 else {"multipleOf": step}),
            },
            st.none() | st.integers(-1000, 1000),
            st.none() | st.integers(step - 1, 1000),
        )
    ),
    st.builds(
        lambda low, span, exclusive: {
            "type": "number",
            "minimum" if not exclusive else "exclusiveMinimum": low,
            "maximum" if not exclusive else "exclusiveMaximum": low + span,
        },
        st.floats(-1e6, 1e6),
        st.floats(0.01, 1e6),
        st.booleans(),
    ),
    st.sampled_from([{"type": "boolean"}, {"type": "null"}, {"type": "number"}, {}]),
    st.builds(lambda v: {"const": v}, st.integers() | st.text(max_size=4)),
)


def _objects(children: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    def with_required(props: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
        required = st.lists(st.sampled_from(sorted(props)), unique=True) if props else st.just([])
        return st.builds(
            lambda req, closed: {
                "type": "object",
                "properties": props,
                "required": req,
                **({"additionalProperties": False} if closed else {}),
            },
            required,
            st.booleans(),
        )

    return st.dictionaries(_NAMES, children, max_size=4).flatmap(with_required)


def _extend(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.builds(
            lambda items, low, span: {
                "type": "array",
                "items": items,
                "minItems": low,
                "maxItems": low + span,
            },
            children,
            st.integers(0, 3),
            st.integers(0, 3),
        ),
        _objects(children),
        st.builds(lambda items: {"type": "object", "additionalProperties": items}, children),
        st.lists(children, min_size=1, max_size=3).map(lambda branches: {"anyOf": branches}),
        children.map(lambda child: {"anyOf": [child, {"type": "null"}]}),
        st.lists(
            st.sampled_from(["string", "integer", "boolean", "null", "array", "object"]),
            min_size=1,
            max_size=3,
            unique=True,
        ).map(lambda kinds: {"oneOf": [{"type": kind} for kind in kinds]}),
    )


_SCHEMAS = st.recursive(_SCALARS, _extend, max_leaves=12)
_ROOTS = st.one_of(
    _SCHEMAS,
    st.dictionaries(_NAMES, _SCHEMAS, min_size=1, max_size=3).map(
        lambda defs: {
            "$defs": defs,
            "type": "object",
            "properties": {name: {"$ref": f"#/$defs/{name}"} for name in defs},
            "required": sorted(defs),
        }
    ),
)


@settings(max_examples=300, deadline=None)
@given(schema=_ROOTS, seed=st.integers(0, 2**32), words=st.lists(st.text(min_size=1), max_size=5))
def test_generated_schemas_get_answers_that_follow_them(
    schema: Any, seed: int, words: list[str]
) -> None:
    check(schema, value_for(schema, words=words, rng=random.Random(seed)))


def test_the_simulator_answers_a_schema_request_with_valid_json_in_process() -> None:
    schema = TypeAdapter(Paper).json_schema()

    async def main() -> Any:
        return await SimProvider(scale=0).complete(
            Request("default", tuple(messages("researcher", "Research Tokio")), schema=schema)
        )

    completion = asyncio.run(main())
    check(schema, json.loads(completion.text))
    assert completion.finish_reason == "stop"
