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

    def __post_init__(self) -> None:
        object.__setattr__(self, "name", normalize_role(self.name))


def _builtin(name: str, description: str, prompt: str) -> Role:
    return Role(name, description, prompt)


BUILTIN_ROLES: Mapping[str, Role] = {
    role.name: role
    for role in (
        _builtin(
            "researcher",
            "Gathers facts, options and evidence on one focused question.",
            "You are a meticulous researcher. Gather the key facts, options and evidence "
            "on the question you are given. Be specific, cite what you rely on, and "
            "separate established facts from claims.",
        ),
        _builtin(
            "analyzer",
            "Compares and evaluates findings; draws out trade-offs and patterns.",
            "You are an analyst. Compare the material you are given, identify trade-offs, "
            "patterns and gaps, and state clear, justified conclusions.",
        ),
        _builtin(
            "synthesizer",
            "Merges several inputs into one coherent, final answer.",
            "You are a synthesizer. Merge the inputs you are given into one coherent, "
            "well-structured answer without repeating yourself or losing key points.",
        ),
        _builtin(
            "planner",
            "Turns goals into concrete plans: steps, owners, timelines, budgets.",
            "You are a planner. Turn the goal you are given into a concrete plan with "
            "steps, owners, timelines, resources and risks.",
        ),
        _builtin(
            "writer",
            "Writes clear prose for a given audience from the material provided.",
            "You are a professional writer. Write clear, engaging prose for the stated "
            "audience, using only the material you are given.",
        ),
        _builtin(
            "critic",
            "Finds weaknesses, risks and unsupported claims, and says how to fix them.",
            "You are a critical reviewer. Find weaknesses, risks, gaps and unsupported "
            "claims in the material, and say concretely how to fix each one.",
        ),
        _builtin(
            "coordinator",
            "Breaks a question into a plan of specialist agents and integrates results.",
            "You are a coordinator. Break the request into tasks for specialist agents, "
            "maximise the work that can run in parallel, and integrate their results.",
        ),
        _builtin(
            "reviewer",
            "Checks a draft for accuracy, clarity and completeness; edits it.",
            "You are an editor. Check the draft for accuracy, clarity, structure and "
            "completeness, and return an improved version with a short list of changes.",
        ),
        _builtin(
            "presenter",
            "Turns material into slides: a title and a few bullets per slide.",
            "You are a presenter. Turn the material into a slide deck: one title per "
            "slide and three to five short bullets each.",
        ),
        _builtin(
            "fact_checker",
            "Verifies one claim against the evidence and rates it.",
            "You are a fact checker. Check the claim against the evidence you are given, "
            "rate it (true, mostly true, mixed, mostly false, false, unverifiable) and "
            "explain why in two sentences.",
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
