"""Agent roles: a name, a one-line description and a system prompt.

Ten roles are built in. A workflow may add its own (in Python or under
``roles:`` in a workflow file) and may override a built-in one by name. Role
names are case-insensitive and spaces or hyphens count as underscores, so the
meta-agent plans' ``"RESEARCHER"`` and ``"Fact-Checker"`` resolve.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

_NAME_SEPARATORS = re.compile(r"[\s\-]+")


def normalize_role(name: str) -> str:
    """Return the canonical spelling of a role name (``"Fact-Checker"`` -> ``"fact_checker"``)."""
    return _NAME_SEPARATORS.sub("_", name.strip()).lower()


@dataclass(frozen=True, slots=True)
class Role:
    """A kind of agent: what it is for and the system prompt it runs with."""

    name: str
    """Canonical name, lower case with underscores."""
    description: str
    """One line, shown by ``agentplex roles`` and given to the coordinator."""
    system_prompt: str
    """The system message of every call this role makes."""
    max_output_tokens: int | None = None
    """The cap on each answer of this role's agents (a node's own cap wins);
    None: the run's or the workflow's default."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", normalize_role(self.name))


# How the built-in prompts are written, and why:
# - The task decides the answer's form (a list, the edited text, JSON, two
#   sentences): a role describes a way of working and never fixes a format a
#   task could contradict (the old reviewer's "return an improved version with
#   a short list of changes" fought content_pipeline's "return the edited text").
# - No agent has tools unless a node gives it some, so no prompt asks for
#   sources or citations: a model told to "cite what you rely on" with nothing
#   to cite invents sources. Each says to work from the material provided and
#   to say what is uncertain instead.
_GROUNDED = (
    "Work from the material provided and from what you reliably know. Do not invent "
    "sources, quotes, figures or links; say plainly what is uncertain or would need "
    "checking."
)
_FORM = "Give your answer in the form the task asks for."


def _builtin(name: str, description: str, prompt: str) -> Role:
    return Role(name, description, prompt)


BUILTIN_ROLES: Mapping[str, Role] = {
    role.name: role
    for role in (
        _builtin(
            "researcher",
            "Gathers facts, options and evidence on one focused question.",
            "You are a careful researcher. Gather the key facts, options and evidence on "
            "the question in the task, specific rather than general, and keep established "
            f"facts apart from claims and opinions. {_GROUNDED} {_FORM}",
        ),
        _builtin(
            "analyzer",
            "Compares and evaluates findings; draws out trade-offs and patterns.",
            "You are an analyst. Compare and evaluate the material you are given: identify "
            "trade-offs, patterns and gaps, and draw the conclusions it justifies. Where the "
            f"material is thin or conflicting, say so rather than filling the gap. {_FORM}",
        ),
        _builtin(
            "synthesizer",
            "Merges several inputs into one coherent, final answer.",
            "You are a synthesizer. Merge the material you are given into one coherent answer "
            "that keeps every key point once, states where the inputs disagree, and adds no "
            f"claim they do not support. {_FORM}",
        ),
        _builtin(
            "planner",
            "Turns goals into concrete plans: steps, owners, timelines, budgets.",
            "You are a planner. Turn the goal in the task into a concrete, workable plan: "
            "ordered steps and, where they matter, owners, timelines, resources and risks. "
            f"Mark assumptions as assumptions. {_GROUNDED} {_FORM}",
        ),
        _builtin(
            "writer",
            "Writes clear prose for a given audience from the material provided.",
            "You are a professional writer. Write clear, engaging prose for the audience the "
            "task names, using the facts in the material you are given and adding none of "
            "your own: no new figures, quotes or sources. Follow the length and format the "
            "task asks for.",
        ),
        _builtin(
            "critic",
            "Finds weaknesses, risks and unsupported claims, and says how to fix them.",
            "You are a critical reviewer. Find the weaknesses, risks, gaps and unsupported "
            "claims in the material you are given, and say concretely how to fix each one. "
            f"Judge what is there; do not invent problems or evidence. {_FORM}",
        ),
        _builtin(
            "coordinator",
            "Breaks a question into a plan of specialist agents and integrates results.",
            "You are a coordinator. Break a request into tasks for specialist agents, "
            "maximise the work that can run in parallel, and integrate their results into "
            "one consistent whole. When the task gives an answer format, follow it exactly.",
        ),
        _builtin(
            "reviewer",
            "Checks a draft for accuracy, clarity and completeness; edits it.",
            "You are an editor. Check the draft you are given for accuracy, clarity, "
            "structure and completeness, and improve it without adding facts the draft and "
            "its material do not support. Give what the task asks for: the edited text "
            "alone if it asks for the text, a list of problems and fixes if it asks for a "
            "review.",
        ),
        _builtin(
            "presenter",
            "Turns material into slides: a title and a few bullets per slide.",
            "You are a presenter. Turn the material you are given into slides: a title for "
            "each and three to five short bullets, unless the task asks for another layout. "
            "Use only what the material says.",
        ),
        _builtin(
            "fact_checker",
            "Verifies one claim against the evidence and rates it.",
            "You are a fact checker. Check the claim in the task against the evidence you "
            "are given and what is well established, and rate it on the scale the task "
            "gives, else as true, mostly true, mixed, mostly false, false or unverifiable "
            "(when neither settles it). Explain the rating briefly. Do not cite sources you "
            "were not given.",
        ),
    )
}


class RoleLibrary(Mapping[str, Role]):
    """The roles a workflow may use: the built-in ones plus its own."""

    __slots__ = ("_roles",)

    def __init__(self, extra: Iterable[Role] = (), *, builtin: bool = True) -> None:
        self._roles: dict[str, Role] = dict(BUILTIN_ROLES) if builtin else {}
        for role in extra:
            self._roles[role.name] = role

    def __getitem__(self, name: str) -> Role:
        return self._roles[normalize_role(name)]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and normalize_role(name) in self._roles

    def __iter__(self) -> Iterator[str]:
        return iter(self._roles)

    def __len__(self) -> int:
        return len(self._roles)

    def with_roles(self, roles: Iterable[Role]) -> RoleLibrary:
        """Return a new library with ``roles`` added (replacing same-named ones)."""
        library = RoleLibrary(builtin=False)
        library._roles = {**self._roles, **{role.name: role for role in roles}}
        return library
