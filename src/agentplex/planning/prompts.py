"""What the coordinator (and a delegating agent, and the reviewer) is asked.

The section headings are fixed strings: the simulator recognises them to play
the coordinator, and tests can find them in recorded prompts.

The plan is also asked for with a JSON Schema (:func:`plan_schema`), which
every provider enforces its own way: a grammar on llama.cpp, structured
outputs on OpenAI, a forced tool call on Anthropic. A constrained model can
then only write a well-formed plan of the offered roles and tools; what a
schema cannot say (dependencies on earlier agents only, no cycles) is still
checked by :mod:`agentplex.planning.check`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from agentplex.model.roles import Role, RoleLibrary

QUESTION = "## Question"
ROLES = "## Roles you can use"
TOOLS = "## Tools you can give agents"
RULES = "## Rules"
FORMAT = "## Plan format"
REPAIR = "## Your previous plan could not be used"
DELEGATE = "## Delegation"
REVIEW = "## Review format"

_EXAMPLE = (
    '{"description": "<one line>", "agents": [\n'
    '{"role": "researcher", "task": "<what to find out>", "depends_on": []},\n'
    '{"role": "researcher", "task": "<another independent question>", "depends_on": []},\n'
    '{"role": "analyzer", "task": "<what to compare>", "depends_on": [0, 1]}\n'
    "]}"
)


PLAN_SCHEMA_NAME = "plan"

PLAN_TOKENS_BASE = 256
PLAN_TOKENS_PER_AGENT = 96
"""The coordinator's output cap is ``PLAN_TOKENS_BASE + PLAN_TOKENS_PER_AGENT *
max_agents`` (2,176 tokens for 20 agents). A pretty-printed agent whose task
has two or three sentences takes about 60 tokens, so a full plan fits with
room to spare, while a model that loops inside a task or repeats agents stops
there: on a small local model at 25 tokens/s, within a minute and a half."""


def plan_output_cap(max_agents: int) -> int:
    """The output cap of one coordinator call planning at most ``max_agents`` agents."""
    return PLAN_TOKENS_BASE + PLAN_TOKENS_PER_AGENT * max_agents


def plan_schema(
    roles: Sequence[str], tools: Sequence[str], *, max_agents: int, can_delegate: bool
) -> dict[str, Any]:
    """The JSON Schema of a plan of at most ``max_agents`` agents of ``roles``.

    Written for the common subset of the schema dialects that constrain
    generation: only ``type``, ``properties``, ``required``,
    ``additionalProperties: false``, ``items``, ``minItems``/``maxItems``,
    ``enum`` and integer ``minimum``/``maximum`` (llama.cpp's grammar converter
    skips what it does not know silently; OpenAI's strict mode refuses string
    lengths). Every property is required, so the schema is
    strict-compatible and a grammar writes them in this order: ``role`` first,
    which is all a streamed agent needs to be checked, ``task``, then
    ``depends_on`` (indices of earlier agents, as the plan format has them).
    ``tools`` is there only when tools are registered and ``delegate`` only
    when agents may delegate, so a model never has to write a field it may not
    use. There is no ``description``: the agents come first, and start sooner.
    """
    last = max(max_agents - 1, 0)
    agent: dict[str, Any] = {
        "role": {"type": "string", "enum": sorted(roles)},
        "task": {"type": "string"},
        "depends_on": {
            "type": "array",
            "items": {"type": "integer", "minimum": 0, "maximum": last},
            "maxItems": last,
        },
    }
    if tools:
        agent["tools"] = {
            "type": "array",
            "items": {"type": "string", "enum": sorted(tools)},
            "maxItems": len(tools),
        }
    if can_delegate:
        agent["delegate"] = {"type": "boolean"}
    return {
        "type": "object",
        "properties": {
            "agents": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": agent,
                    "required": list(agent),
                    "additionalProperties": False,
                },
                "minItems": 1,
                "maxItems": max_agents,
            }
        },
        "required": ["agents"],
        "additionalProperties": False,
    }


PLAN_SCHEMA: dict[str, Any] = plan_schema(
    [name for name in RoleLibrary() if name != "coordinator"], (), max_agents=20, can_delegate=True
)
"""The schema of a default ``ask``: the built-in roles, no tools, 20 agents, delegation on."""


def plan_prompt(
    question: str,
    roles: Sequence[Role],
    tools: Sequence[str],
    *,
    max_agents: int,
    can_delegate: bool,
    repair: str | None = None,
) -> str:
    """The coordinator's task: the question, the roles, the rules and the format."""
    parts = [f"{QUESTION}\n{question.strip()}", ROLES]
    parts[-1] += "".join(f"\n- {role.name}: {role.description}" for role in roles)
    if tools:
        parts.append(TOOLS + "".join(f"\n- {name}" for name in tools))
    rules = [
        f"Plan only the agents needed to answer the question: at most {max_agents} agents.",
        "Maximise parallelism: agents that do not need each other's results must not "
        "depend on each other.",
        "depends_on lists the indices (counting from 0) of earlier agents whose results an "
        "agent needs; list agents in dependency order.",
        "Use only the roles above"
        + (' and, in "tools", only the tools above' if tools else "")
        + ". Never ask to run code: no functions, imports or shell commands.",
        "The agent(s) nothing depends on give the final answer.",
    ]
    if can_delegate:
        rules.append(
            'Mark an agent "delegate": true when its task is itself a multi-part job it '
            "should plan for itself."
        )
    parts.append(RULES + "".join(f"\n- {rule}" for rule in rules))
    parts.append(
        f"{FORMAT}\nAnswer with JSON only, the agents in dependency order, like this:\n" + _EXAMPLE
    )
    if repair:
        parts.append(repair)
    return "\n\n".join(parts)


def repair_section(errors: Sequence[str], previous: str, kept: Sequence[int]) -> str:
    """Tell the coordinator exactly what was wrong with its last plan."""
    lines = [REPAIR, *(f"- {error}" for error in errors)]
    if kept:
        lines.append(
            f"Agents {list(kept)} of that plan have already started and are kept: begin the "
            "new plan with them, unchanged and in the same order."
        )
    lines += ["Previous plan:", previous.strip()[:4000], "Send the whole corrected plan."]
    return "\n".join(lines)


def delegation_note(roles: Sequence[Role], remaining: int) -> str:
    """Appended to the task of an agent that may delegate."""
    names = ", ".join(role.name for role in roles)
    return (
        f"\n\n{DELEGATE}\nIf this task is a multi-part job you may answer with a sub-plan "
        'instead of a final answer: JSON only, {"agents": [{"role": ..., "task": ..., '
        f'"depends_on": [...]}}, ...]}}, with roles from: {names}; at most {remaining} agents. '
        "Otherwise answer directly."
    )


def review_prompt(question: str, revisions: int) -> str:
    """The manager's review of the finished plan's outputs (given as context sections)."""
    return (
        f"{QUESTION}\n{question.strip()}\n\nThe plan's final results are in the material above. Send at most "
        f"{revisions} of them back for one revision each, only if they are weak.\n\n"
        f"{REVIEW}\nAnswer with JSON only: "
        '{"revise": [{"agent": "<agent id>", "critique": "<what to fix>"}]} '
        "(an empty list if every result is good)."
    )


def revision_task(task: str, critique: str) -> str:
    """The task of an agent sent back for revision (its first answer is its context)."""
    return f"{task}\n\nRevise your earlier answer (in the material above) to address this critique: {critique}"
