"""Tools an agent's model may call: specs from Python signatures, and running them.

A :class:`Tool` is a Python function with its name, its description and the
JSON Schema of its arguments, derived from the signature and the docstring by
pydantic (:func:`tool`, or ``Tool.from_function``), never written by hand. A
:class:`ToolBox` runs the calls a model asks for: each call's arguments are
checked against the schema first (a model's arguments are untrusted input),
sync functions run in threads, async ones on the loop, and every tool has its
own concurrency limit, timeout and error policy. The engine's agent loop
(issue 16, not built yet) is what will offer tools to models; MCP tools will
join here too.

Owns: the tool spec and its schema from Python signatures (base), running
tool calls under per-tool limits (box).

May import: agentplex.exceptions, agentplex.llm (masking keys in results).
"""

from __future__ import annotations

from agentplex.tools.base import Tool, tool
from agentplex.tools.box import ToolBox, ToolOutcome

__all__ = ["Tool", "ToolBox", "ToolOutcome", "tool"]
