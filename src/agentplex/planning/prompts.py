"""What the coordinator (and a delegating agent, and the reviewer) is asked.

The section headings are fixed strings: the simulator recognises them to play
the coordinator, and tests can find them in recorded prompts.
"""

from __future__ import annotations

from collections.abc import Sequence

from agentplex.model.roles import Role

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
        f"{FORMAT}\nAnswer with JSON only, one agent object per line, in dependency order:\n"
        + _EXAMPLE
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
        f"{QUESTION}\n{question.strip()}\n\nThe plan's final results are below. Send at most "
        f"{revisions} of them back for one revision each, only if they are weak.\n\n"
        f"{REVIEW}\nAnswer with JSON only: "
        '{"revise": [{"agent": "<agent id>", "critique": "<what to fix>"}]} '
        "(an empty list if every result is good)."
    )


def revision_task(task: str, critique: str) -> str:
    """The task of an agent sent back for revision (its first answer is its context)."""
    return (
        f"{task}\n\nRevise your earlier answer (given below) to address this critique: {critique}"
    )
