"""The simulator as a coordinator: deterministic plans, sub-plans and reviews.

When a prompt carries the planning sections of :mod:`agentplex.planning.prompts`
the simulator answers like a careful coordinator would:

- "Compare A, B and C for X": one researcher per item (in parallel), then an
  analyzer over all of them, then a synthesizer;
- "Subject: a, b, c" (a list after a colon): one researcher per aspect, then
  an analyzer and a writer; an aspect with its own list in parentheses,
  "web (ui, api)", is marked to delegate;
- any other question: three researchers on different angles, an analyzer
  and a writer.

Plans respect the stated agent budget, are written one agent per line, and
are the same for the same prompt. ``plan-pretty`` writes them pretty-printed
(as small real models do, grammar-constrained or not) and ``plan-oneline``
all on one line; the streaming planner must start agents from either. A delegating agent whose task lists parts
answers with a sub-plan; a review sends back the weakest result.

Model names ask for broken plans, to test every repair path:
``plan-bad-json``, ``plan-unknown-role``, ``plan-function``,
``plan-unknown-tool``, ``plan-empty``, ``plan-huge`` (10,000 agents) break the
first attempt only (the repair succeeds); ``plan-always-<fault>`` breaks
every attempt. ``plan-cycle`` and ``plan-out-of-range`` write dependencies the
planner drops itself (a cycle through a later agent, an index past the end).
``plan-prose`` wraps a good plan in prose and a code fence, as chat models do.
"""

from __future__ import annotations

import json
import re
from typing import Any

from agentplex.llm.material import parse_prompt
from agentplex.planning.prompts import DELEGATE, FORMAT, QUESTION, REPAIR, REVIEW, TOOLS

FAULTS = (
    "bad-json",
    "cycle",
    "out-of-range",
    "unknown-role",
    "function",
    "unknown-tool",
    "empty",
    "huge",
)

_SECTION = re.compile(r"\n## ")
_LIST_SPLIT = re.compile(r"\s*(?:,|;|\band\b|\bor\b)\s*")


def answer(model: str, user: str, contexts: list[tuple[str, str]]) -> str | None:
    """The simulator's plan, sub-plan or review for ``user``; None to answer normally."""
    if REVIEW in user:
        return _review(user, contexts)
    if FORMAT in user:
        return _plan(model, user)
    if DELEGATE in user:
        return _sub_plan(user)
    return None


# -- plans ---------------------------------------------------------------------------------


def _section(text: str, heading: str) -> str:
    start = text.find(heading)
    if start < 0:
        return ""
    body = text[start + len(heading) :]
    end = _SECTION.search(body)
    return (body[: end.start()] if end else body).strip()


def _budget(text: str, default: int = 20) -> int:
    found = re.search(r"at most (\d+) agents", text)
    return int(found.group(1)) if found else default


def _items(text: str) -> list[str]:
    """Split "A, B and C" (or "a; b; c") into its items, keeping "x (y, z)" together."""
    parts: list[str] = []
    depth = 0
    current = ""
    for ch in text:
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0 and ch in ",;":
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    items: list[str] = []
    for part in parts:
        if "(" in part:
            items.append(part.strip())
        else:
            items.extend(p for p in _LIST_SPLIT.split(part) if p)
    return [i.strip(" .") for i in items if i.strip(" .")]


def plan_agents(question: str, budget: int) -> list[dict[str, Any]]:
    """A plausible plan for ``question`` within ``budget`` agents."""
    q = " ".join(question.split()).rstrip("?.")
    compare = re.match(r"(?i)(compare|contrast|evaluate)\s+(.+?)(?:\s+(for|in|as)\s+(.+))?$", q)
    colon = q.split(":", 1)
    if compare:
        items = _items(compare.group(2))
        purpose = compare.group(4) or "the stated purpose"
        items = items[: max(1, budget - 2)]
        agents: list[dict[str, Any]] = [
            {
                "role": "researcher",
                "task": f"Research {item} for {purpose}: strengths, weaknesses and typical use.",
                "depends_on": [],
            }
            for item in items
        ]
        n = len(agents)
        agents.append(
            {
                "role": "analyzer",
                "task": f"Compare {', '.join(items)} for {purpose}, using the research.",
                "depends_on": list(range(n)),
            }
        )
        agents.append(
            {
                "role": "synthesizer",
                "task": f"Recommend one option for {purpose} and say when to choose the others.",
                "depends_on": [n],
            }
        )
        return agents[:budget]
    if len(colon) == 2 and len(_items(colon[1])) >= 2:
        subject = colon[0].strip()
        aspects = _items(colon[1])[: max(1, budget - 2)]
        agents = []
        for aspect in aspects:
            inner = re.match(r"(.+?)\s*\((.+)\)$", aspect)
            if inner:
                agents.append(
                    {
                        "role": "planner",
                        "task": f"Cover {inner.group(1)} for {subject}: {inner.group(2)}",
                        "depends_on": [],
                        "delegate": True,
                    }
                )
            else:
                agents.append(
                    {
                        "role": "researcher",
                        "task": f"{subject}: work out the {aspect}.",
                        "depends_on": [],
                    }
                )
        n = len(agents)
        agents.append(
            {
                "role": "analyzer",
                "task": f"Check that the parts of {subject} fit together; list the conflicts.",
                "depends_on": list(range(n)),
            }
        )
        agents.append(
            {
                "role": "writer",
                "task": f"Write the final answer: {subject}.",
                "depends_on": list(range(n + 1)),
            }
        )
        return agents[:budget]
    angles = ("the facts and context", "the options and their costs", "the risks")
    agents = [
        {"role": "researcher", "task": f"Research {angle} of: {q}.", "depends_on": []}
        for angle in angles
    ]
    agents.append(
        {"role": "analyzer", "task": f"Weigh the findings on: {q}.", "depends_on": [0, 1, 2]}
    )
    agents.append({"role": "writer", "task": f"Write the answer to: {q}.", "depends_on": [3]})
    return agents[: max(1, budget)]


LAYOUTS = ("lines", "pretty", "oneline")


def render(agents: list[dict[str, Any]], description: str, layout: str = "lines") -> str:
    """A plan as the coordinator writes it: one agent per line (``lines``),
    pretty-printed with two-space indents (``pretty``) or on one line (``oneline``)."""
    plan = {"description": description, "agents": agents}
    if layout == "pretty":
        return json.dumps(plan, ensure_ascii=False, indent=2)
    if layout == "oneline":
        return json.dumps(plan, ensure_ascii=False)
    lines = ",\n".join(json.dumps(a, ensure_ascii=False) for a in agents)
    head = json.dumps(description, ensure_ascii=False)
    return f'{{"description": {head}, "agents": [\n{lines}\n]}}'


def _plan(model: str, user: str) -> str:
    question = _section(user, QUESTION)
    budget = _budget(user)
    agents = plan_agents(question, budget)
    tools = [line[2:].strip() for line in _section(user, TOOLS).splitlines() if line[:2] == "- "]
    if tools:  # researchers look things up with the first tool offered
        for agent in agents:
            if agent["role"] == "researcher":
                agent["tools"] = tools[:1]
    fault = model.removeprefix("plan-") if model.startswith("plan-") else ""
    layout = fault if fault in LAYOUTS else "lines"
    if fault in LAYOUTS:
        fault = ""
    always = fault.startswith("always-")
    fault = fault.removeprefix("always-")
    if fault and fault != "prose" and (always or REPAIR not in user):
        return _broken(fault, agents, question)
    text = render(agents, f"Plan for: {question[:80]}", layout)
    if fault == "prose":
        return f"Here is the plan you asked for.\n\n```json\n{text}\n```\nGood luck!"
    return text


def _broken(fault: str, agents: list[dict[str, Any]], question: str) -> str:
    agents = [dict(a) for a in agents]
    last = len(agents) - 1
    if fault == "bad-json":
        return render(agents, question)[:-40] + ' {"role": "writer", "task": unterminated'
    if fault == "cycle":
        agents[0]["depends_on"] = [last]
    elif fault == "out-of-range":
        agents[last]["depends_on"] = [*agents[last]["depends_on"], 99]
    elif fault == "unknown-role":
        agents[0]["role"] = "astrologer"
    elif fault == "function":
        agents[0] = {"function": "os:system", "task": "rm -rf /", "depends_on": []}
    elif fault == "unknown-tool":
        agents[0]["tools"] = ["shell"]
    elif fault == "empty":
        agents = []
    elif fault == "huge":
        agents = [
            {"role": "researcher", "task": f"Research part {i}.", "depends_on": []}
            for i in range(10_000)
        ]
    return render(agents, question[:80])


# -- sub-plans and reviews --------------------------------------------------------------------


def _sub_plan(user: str) -> str | None:
    """A delegating agent's sub-plan when its task lists parts ("X: a, b (c, d)")."""
    task = parse_prompt(user).task  # after the material its dependencies gave it, if any
    task = task[: task.find(DELEGATE)]
    head, _, listed = task.partition(":")
    parts = _items(listed.split("\n", 1)[0]) if listed else []
    budget = _budget(user)
    if len(parts) < 2 or budget < 3:
        return None  # not a multi-part job (or no room): answer directly
    agents: list[dict[str, Any]] = []
    for part in parts[: budget - 1]:
        inner = re.match(r"(.+?)\s*\((.+)\)$", part)
        if inner:
            agents.append(
                {
                    "role": "planner",
                    "task": f"Cover {inner.group(1)}: {inner.group(2)}",
                    "depends_on": [],
                    "delegate": True,
                }
            )
        else:
            agents.append({"role": "researcher", "task": f"Work out {part}.", "depends_on": []})
    agents.append(
        {
            "role": "synthesizer",
            "task": f"Merge the parts of {head.strip().removeprefix('Cover ')} into one answer.",
            "depends_on": list(range(len(agents))),
        }
    )
    return render(agents, head.strip()[:80])


def _review(user: str, contexts: list[tuple[str, str]]) -> str:
    """Send back the shortest result (the weakest, for the simulator), at most N."""
    found = re.search(r"at most (\d+) of them", user)
    limit = int(found.group(1)) if found else 1
    results = []
    for label, body in contexts:
        node = label.split(" ", 1)[0]
        results.append((len(body), node))
    picks = sorted(results)[:limit]
    revise = [
        {"agent": node, "critique": "Too thin: add concrete numbers and one downside scenario."}
        for _length, node in picks
    ]
    return json.dumps({"revise": revise})
