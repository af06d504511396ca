"""The built-in simulator: a deterministic stand-in for an LLM.

``sim`` needs no network, key or GPU. The same model, messages and seed always
give the same text, so a workflow's outputs are identical under every
strategy and any concurrency. The text is shaped by the role (recognised from
the system prompt) and visibly uses the task and every section of material
(read with :func:`agentplex.llm.material.parse_prompt`, so an upstream output
that holds a delimiter's text is still one section), so data flow between
agents can be seen and tested.

It keeps to a request the way a real endpoint does:

- an answer longer than the output cap (``Request.max_output_tokens``) is cut
  at that many tokens (about four characters each) and reports finish reason
  ``length``, with the cap as its output tokens;
- a request with a JSON Schema (``Request.schema``) is answered with one value
  the schema accepts, built from the schema and the prompt
  (:mod:`agentplex.sim.structured`), as a model under a grammar answers.

Latency is drawn from a seeded model of a real endpoint: time to first token
plus output tokens over a throughput, each with jitter. Models:

- ``sim:default``: 0.2-0.5 s to first token, 90-150 tokens/s;
- ``sim:fast``: a tenth of that;
- ``sim:instant``: no waiting at all;
- ``sim:runaway``: the latency of ``default``, but it never stops by itself,
  like a small model caught in a loop: its answer repeats until the output cap
  (or :data:`RUNAWAY_LIMIT_TOKENS`, its context window, with no cap) and is
  always cut off; each seed loops differently;
- any other name behaves like ``default`` (with different text).

A request may pin its latency exactly (a node's ``latency_s``). Every latency
is multiplied by the provider's ``scale`` (default: the environment variable
``AGENTPLEX_SIM_SCALE``, else 1), which tests use to run real workflows fast.
The option ``sim_fail_first: N`` makes the first N calls of a request (its model
and messages, whatever its seed) fail with a retryable error, to exercise
retries.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from agentplex.exceptions import ConfigError, ProviderError
from agentplex.llm.base import Completion, Message, Provider, Request, estimate_tokens
from agentplex.llm.limits import Limits
from agentplex.llm.material import parse_prompt
from agentplex.model.roles import BUILTIN_ROLES
from agentplex.result import Usage
from agentplex.sim import plans as sim_plans
from agentplex.sim.structured import value_for

#: Model names the simulator knows by behaviour (any other name acts like ``default``).
MODELS = ("default", "fast", "instant", "runaway")

RUNAWAY_LIMIT_TOKENS = 4096
"""Where ``sim:runaway`` stops when nothing caps it: the end of its context window."""

_STOPWORDS = frozenset(
    [
        "about",
        "above",
        "after",
        "again",
        "against",
        "also",
        "among",
        "and",
        "any",
        "are",
        "based",
        "because",
        "been",
        "before",
        "being",
        "between",
        "both",
        "but",
        "can",
        "could",
        "does",
        "doing",
        "each",
        "every",
        "for",
        "from",
        "further",
        "have",
        "having",
        "here",
        "into",
        "just",
        "more",
        "most",
        "must",
        "not",
        "only",
        "other",
        "over",
        "same",
        "should",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "under",
        "until",
        "very",
        "what",
        "when",
        "where",
        "which",
        "while",
        "will",
        "with",
        "would",
        "your",
        "using",
        "make",
        "create",
        "write",
        "give",
        "provide",
        "based",
        "include",
        "research",
        "compare",
        "analyze",
        "analyse",
        "review",
        "design",
        "summarize",
        "summarise",
        "draft",
        "check",
        "identify",
        "evaluate",
        "describe",
        "explain",
        "list",
        "outline",
        "propose",
        "combine",
        "integrate",
        "produce",
        "findings",
        "results",
        "final",
        "complete",
        "comprehensive",
        "detailed",
        "overview",
        "report",
    ]
)
_WORD = re.compile(r"[A-Za-z][A-Za-z0-9+#.\-]{3,}")

_STYLES: dict[str, tuple[str, tuple[str, ...]]] = {
    "researcher": (
        "Research notes",
        (
            "Key fact: {kw} is widely adopted, with mature tooling and an active community",
            "Evidence suggests {kw} trades some flexibility for predictability",
            "Recent surveys rank {kw} highly on developer satisfaction",
            "Primary sources disagree on how {kw} scales beyond early adoption",
            "Notable option: {kw}, favoured where reliability matters most",
            "Cost and learning curve of {kw} are the most cited drawbacks",
        ),
    ),
    "analyzer": (
        "Analysis",
        (
            "Trade-off: {kw} wins on performance but costs more to adopt",
            "Pattern across sources: {kw} matters more than raw benchmarks",
            "Gap: little evidence on {kw} for small teams",
            "Conclusion: {kw} is the deciding factor in most scenarios",
            "Risk: over-weighting {kw} hides operational costs",
        ),
    ),
    "synthesizer": (
        "Synthesis",
        (
            "Overall, {kw} ties the findings together",
            "Recommendation: start from {kw}, revisit after the first milestone",
            "Where inputs disagree, {kw} explains most of the difference",
            "Final answer: prioritise {kw}, then address the open risks",
        ),
    ),
    "planner": (
        "Plan",
        (
            "Step 1: scope {kw}, owner assigned, two weeks",
            "Step 2: budget for {kw} with a 15% contingency",
            "Step 3: milestone review of {kw} at the end of the quarter",
            "Risk register: {kw} slips if dependencies are late",
        ),
    ),
    "writer": (
        "Draft",
        (
            "Opening: why {kw} matters to the reader now",
            "Body: three concrete examples of {kw} in practice",
            "Transition: from {kw} to what it means for the audience",
            "Close: a clear call to action on {kw}",
        ),
    ),
    "critic": (
        "Critique",
        (
            "Weakness: the case for {kw} rests on optimistic assumptions; add a downside scenario",
            "Unsupported claim about {kw}; back it with the material or drop it",
            "Gap: {kw} ignores maintenance cost; estimate it",
            "Strength: the treatment of {kw} is clear and actionable",
        ),
    ),
    "coordinator": (
        "Integration",
        (
            "Component: {kw}, integrated with the agreed interfaces",
            "Dependency: {kw} must be settled before rollout",
            "Owner map: one team per {kw} workstream",
        ),
    ),
    "reviewer": (
        "Review",
        (
            "Edited for clarity: the section on {kw} now leads with the conclusion",
            "Accuracy: claims about {kw} checked against the sources",
            "Structure: {kw} moved earlier; repetition removed",
        ),
    ),
    "presenter": (
        "Slides",
        (
            "Slide: {kw} at a glance",
            "Slide: three numbers that explain {kw}",
            "Slide: what we recommend on {kw}",
            "Slide: next steps for {kw}",
        ),
    ),
    "fact_checker": (
        "Fact check",
        (
            "Verdict on {kw}: mostly true; the evidence supports the core claim",
            "Verdict on {kw}: mixed; the figure is outdated",
            "Verdict on {kw}: unverifiable with the sources given",
        ),
    ),
}
_GENERIC = (
    "Response",
    (
        "Point: {kw} addressed directly",
        "Detail: {kw} examined in context",
        "Note: {kw} carries the main uncertainty",
    ),
)
_ROLE_BY_PROMPT = {role.system_prompt: name for name, role in BUILTIN_ROLES.items()}


@dataclass(frozen=True, slots=True)
class SimAnswer:
    """What the simulator answers to one request, before any waiting."""

    text: str
    usage: Usage
    latency_s: float
    truncated: bool = False
    """Whether the answer was cut off at the output cap (finish reason ``length``)."""


def _digest(model: str, messages: Sequence[Message], seed: object) -> int:
    payload = json.dumps(
        [model, [[m.role, m.content] for m in messages], seed], ensure_ascii=False
    ).encode()
    return int.from_bytes(hashlib.blake2b(payload, digest_size=8).digest(), "big")


def _keywords(text: str, rng: random.Random, count: int) -> list[str]:
    """The first ``count`` distinct words of ``text`` that are not stopwords (cycled if
    there are fewer), shuffled. Reads only as far as it needs: material can be long."""
    seen: dict[str, None] = {}
    for match in _WORD.finditer(text):
        word = match.group().strip(".-")
        if word not in seen and word.lower() not in _STOPWORDS:
            seen[word] = None
            if len(seen) == count:
                break
    words = list(seen) or ["the topic"]
    picked = [words[i % len(words)] for i in range(count)]
    rng.shuffle(picked)
    return picked


def split_prompt(content: str) -> tuple[str, list[tuple[str, str]]]:
    """Split a user prompt into the task and its material, as ``(label, body)`` pairs.

    A prompt with material is read with :func:`~agentplex.llm.material.parse_prompt`;
    when nothing follows the material (a hand-written prompt that puts its task
    first), the text before it is the task.
    """
    parsed = parse_prompt(content)
    task = parsed.task or parsed.lead
    return task, [(section.label, section.body) for section in parsed.sections]


def generate(
    model: str,
    messages: Sequence[Message],
    seed: object = 0,
    *,
    max_output_tokens: int | None = None,
    schema: Mapping[str, Any] | None = None,
) -> SimAnswer:
    """Return the simulator's deterministic answer to ``messages``.

    ``schema``: answer with JSON it accepts. ``max_output_tokens``: cut a longer
    answer there (``truncated``).
    """
    rng = random.Random(_digest(model, messages, seed))
    system = next((m.content for m in messages if m.role == "system"), "")
    user = next((m.content for m in reversed(messages) if m.role == "user"), "")
    task, contexts = split_prompt(user)
    planned = sim_plans.answer(model, task, contexts)
    if planned is not None:  # playing the coordinator (or a delegating agent, or a reviewer)
        return _timed(planned, messages, rng, model, max_output_tokens)
    material = task + " " + " ".join(b for _l, b in contexts)
    if schema is not None:
        value = value_for(schema, words=_keywords(material, rng, 12), rng=rng)
        text = json.dumps(value, ensure_ascii=False)
    else:
        text = _prose(system, task, contexts, material, rng)
    if model == "runaway":
        text = _runaway(text, material, rng, max_output_tokens)
    return _timed(text, messages, rng, model, max_output_tokens)


def _prose(
    system: str,
    task: str,
    contexts: list[tuple[str, str]],
    material: str,
    rng: random.Random,
) -> str:
    """A role-shaped answer: a heading on the task, a few bullets, what it builds on."""
    heading, phrases = _STYLES.get(_ROLE_BY_PROMPT.get(system, ""), _GENERIC)
    subject = " ".join(task.split())
    if len(subject) > 90:
        subject = subject[:87].rstrip() + "..."
    lines = [f"## {heading}: {subject}", ""]
    bullets = rng.randint(3, 5)
    for kw, phrase in zip(
        _keywords(material, rng, bullets),
        rng.sample(phrases, k=min(bullets, len(phrases))),
        strict=False,
    ):
        lines.append(f"- {phrase.format(kw=kw)}.")
    if contexts:
        lines += ["", "Builds on:"]
        for label, body in contexts:
            quote = " ".join(body.replace("#", "").split()[:10])
            lines.append(f'- {label}: "{quote}..."')
    return "\n".join(lines)


def _runaway(text: str, material: str, rng: random.Random, cap: int | None) -> str:
    """``text``, then the same kind of line over and over, past where anything could stop it."""
    limit = RUNAWAY_LIMIT_TOKENS if cap is None else min(cap, RUNAWAY_LIMIT_TOKENS)
    chars = (limit + 1) * 4  # one token past the limit: always cut
    _heading, phrases = _GENERIC
    words = _keywords(material, rng, 8)
    parts = [text, "\n"]
    size = len(text) + 1
    while size < chars:
        line = f"- {rng.choice(phrases).format(kw=rng.choice(words))}, again.\n"
        parts.append(line)
        size += len(line)
    return "".join(parts)


def _timed(
    text: str,
    messages: Sequence[Message],
    rng: random.Random,
    model: str,
    cap: int | None = None,
) -> SimAnswer:
    """Usage and latency of answering ``messages`` with ``text``, cut at ``cap`` tokens."""
    output_tokens = estimate_tokens(text)
    limit = cap
    if model == "runaway":
        limit = RUNAWAY_LIMIT_TOKENS if cap is None else min(cap, RUNAWAY_LIMIT_TOKENS)
    truncated = limit is not None and output_tokens > limit
    if limit is not None and truncated:
        text = text[: limit * 4]  # estimate_tokens: four characters a token
        output_tokens = limit
    input_tokens = sum(estimate_tokens(m.content) for m in messages)
    ttft = rng.uniform(0.2, 0.5)
    throughput = rng.uniform(90.0, 150.0)
    latency = ttft + output_tokens / throughput
    if model == "fast":
        latency /= 10
    elif model == "instant":
        latency = 0.0
    return SimAnswer(text, Usage(input_tokens, output_tokens), latency, truncated)


class SimProvider(Provider):
    """The in-process simulator provider (``sim:...``)."""

    name: ClassVar[str] = "sim"

    def __init__(
        self,
        *,
        scale: float | None = None,
        limits: Limits | None = None,
        limit_key: str | None = None,
    ) -> None:
        super().__init__(limits=limits, limit_key=limit_key)
        if scale is None:
            raw = os.environ.get("AGENTPLEX_SIM_SCALE", "1")
            try:
                scale = float(raw)
            except ValueError:
                raise ConfigError(
                    f"AGENTPLEX_SIM_SCALE must be a number, got {raw!r}. Fix: e.g. 0.1"
                ) from None
        if scale < 0:
            raise ConfigError(f"the sim latency scale must be >= 0, got {scale!r}.")
        self.scale = scale
        self._failures_left: dict[int, int] = {}

    async def _complete(self, request: Request) -> Completion:
        seed = request.options.get("seed", 0)
        answer = generate(
            request.model,
            request.messages,
            seed,
            max_output_tokens=request.max_output_tokens,
            schema=request.schema,
        )
        fail_first = int(request.options.get("sim_fail_first", 0))
        if fail_first:
            # Not by seed: a retry is the same request with the next seed (see
            # agentplex.engine.prompts), and must find the failures already spent.
            key = _digest(request.model, request.messages, None)
            left = self._failures_left.setdefault(key, fail_first)
            if left > 0:
                self._failures_left[key] = left - 1
                raise ProviderError(
                    "sim", "simulated rate limit (sim_fail_first)", retryable=True, status=429
                )
        latency = request.latency_s if request.latency_s is not None else answer.latency_s
        latency *= self.scale
        if request.on_text is not None:
            await _stream(answer.text, latency, request.on_text)
        elif latency > 0:
            await asyncio.sleep(latency)
        return Completion(
            text=answer.text,
            usage=answer.usage,
            model=request.model,
            provider=self.name,
            latency_s=latency,
            finish_reason="length" if answer.truncated else "stop",
        )


def stream_pieces(text: str, words: int = 4) -> list[str]:
    """Split ``text`` into stream deltas of a few words each; joined they give ``text``."""
    parts = text.split(" ")
    return [
        " ".join(parts[i : i + words]) + (" " if i + words < len(parts) else "")
        for i in range(0, len(parts), words)
    ]


async def _stream(text: str, latency: float, on_text: Callable[[str], None]) -> None:
    """Deliver ``text`` piece by piece over ``latency`` (30% before the first piece)."""
    pieces = stream_pieces(text)
    if latency > 0:
        await asyncio.sleep(latency * 0.3)
    gap = latency * 0.7 / max(1, len(pieces))
    for piece in pieces:
        on_text(piece)
        if gap > 0:
            await asyncio.sleep(gap)
