"""The tool spec: a Python function, its name, description and argument schema.

The schema comes from the function's signature through pydantic
(``create_model`` over the parameters, then ``model_json_schema``), so any
type pydantic describes works as a parameter (``int``, ``list[str]``,
``Literal[...]``, a pydantic model, a dataclass); each parameter's
description comes from the docstring's ``Args:`` section (Google style), the
tool's description from the docstring's summary. The same pydantic model
checks a model's arguments before the function is called, so a function
never sees arguments its signature does not allow.

pydantic is imported when a tool is defined, not when agentplex is.
"""

from __future__ import annotations

import functools
import inspect
import re
import typing
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from agentplex.exceptions import MissingExtraError, ToolError

OnToolError = Literal["return", "fail"]
"""What a tool that raises (or times out) does: its error goes back to the model as the
call's result (``return``, the default), or it fails the node (``fail``)."""

_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
"""Tool names both provider APIs accept (OpenAI: ``^[a-zA-Z0-9_-]{1,64}$``)."""
_ARG_LINE = re.compile(r"^\s{0,8}(\*{0,2}[A-Za-z_][A-Za-z0-9_]*)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
_SECTION = re.compile(
    r"^\s*(Args|Arguments|Parameters|Returns|Raises|Yields|Examples?|Notes?):\s*$"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Tool:
    """A function a model may call, with the schema of its arguments.

    Build one with :func:`tool` (a decorator) or :meth:`from_function`; the
    fields are read-only.
    """

    name: str
    """What the model calls it: letters, digits, ``_`` and ``-``, at most 64."""
    description: str
    """What the model reads to decide when to call it (the docstring's summary)."""
    parameters: Mapping[str, Any]
    """The JSON Schema (an object) of its keyword arguments."""
    fn: Callable[..., Any]
    """The function, sync or async, called with the checked arguments as keywords."""
    max_concurrency: int | None = None
    """Calls of this tool that may run at once (across a run's nodes); None: no limit."""
    timeout_s: float | None = None
    """Time limit of one call; None: no limit."""
    on_error: OnToolError = "return"
    """What a call that raises or times out does (:data:`OnToolError`)."""
    cpu_bound: bool = False
    """Run the function in a process (it must be importable), not in a thread."""
    validator: Any = field(default=None, repr=False, compare=False)
    """The pydantic model that checks arguments (built from the signature); None: they
    are checked against :attr:`parameters` with ``jsonschema`` and passed unconverted."""

    @classmethod
    def from_function(
        cls,
        fn: Callable[..., Any],
        *,
        name: str | None = None,
        description: str | None = None,
        max_concurrency: int | None = None,
        timeout_s: float | None = None,
        on_error: OnToolError = "return",
        cpu_bound: bool = False,
    ) -> Tool:
        """Describe ``fn`` as a tool: its schema from its signature, its text from its docstring.

        Raises:
            ToolError: if the name is not one providers accept, a setting is out of range,
                a parameter is positional-only or ``*args``/``**kwargs``, or pydantic
                cannot describe a parameter's type.
            MissingExtraError: if pydantic is not installed.
        """
        given = name if name is not None else getattr(fn, "__name__", "")
        if not isinstance(given, str) or not _NAME.match(given):
            raise ToolError(
                str(given),
                "a tool's name must start with a letter and hold only letters, digits, '_' "
                "and '-' (at most 64). Fix: pass name='search_archive' (or rename the function).",
            )
        _check_settings(given, max_concurrency, timeout_s, on_error)
        summary, arg_docs = _docstring(inspect.getdoc(fn) or "")
        validator = _arguments_model(given, fn, arg_docs)
        schema = validator.model_json_schema()
        schema.pop("title", None)
        return cls(
            name=given,
            description=description if description is not None else summary,
            parameters=schema,
            fn=fn,
            max_concurrency=max_concurrency,
            timeout_s=timeout_s,
            on_error=on_error,
            cpu_bound=cpu_bound,
            validator=validator,
        )

    def check_arguments(self, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """Return ``arguments`` checked and converted by the signature's types.

        Raises:
            ValueError: listing what is wrong, in words a model can act on.
        """
        if self.validator is None:  # a schema given as data (a tool built without pydantic)
            return _checked_by_schema(self.name, self.parameters, arguments)
        from pydantic import ValidationError

        try:
            checked = self.validator.model_validate(dict(arguments))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'arguments'}: {e['msg']}"
                for e in exc.errors()[:10]
            )
            raise ValueError(f"invalid arguments for {self.name}: {problems}") from None
        values = checked.__dict__  # not getattr: a field may be named like a method
        return {key: values[key] for key in type(checked).model_fields}


def tool(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    description: str | None = None,
    max_concurrency: int | None = None,
    timeout_s: float | None = None,
    on_error: OnToolError = "return",
    cpu_bound: bool = False,
) -> Any:
    """Make a function a :class:`Tool`: ``@tool`` or ``@tool(max_concurrency=2, timeout_s=5)``.

    Example::

        @tool(max_concurrency=2)
        async def search_archive(query: str, limit: int = 5) -> list[str]:
            \"\"\"Search the newsroom archive.

            Args:
                query: words to look for.
                limit: most results to return.
            \"\"\"

    Raises:
        ToolError: see :meth:`Tool.from_function`.
    """

    make = functools.partial(
        Tool.from_function,
        name=name,
        description=description,
        max_concurrency=max_concurrency,
        timeout_s=timeout_s,
        on_error=on_error,
        cpu_bound=cpu_bound,
    )
    return make if fn is None else make(fn)


def _checked_by_schema(
    name: str, schema: Mapping[str, Any], arguments: Mapping[str, Any]
) -> dict[str, Any]:
    """``arguments`` as a dict if ``schema`` (JSON Schema 2020-12) accepts them.

    Raises:
        ValueError: listing the first problems.
    """
    import jsonschema

    validator = jsonschema.Draft202012Validator(dict(schema))
    problems = [
        f"{'.'.join(str(p) for p in e.absolute_path) or 'arguments'}: {e.message}"
        for e in sorted(validator.iter_errors(dict(arguments)), key=lambda e: list(e.path))[:10]
    ]
    if problems:
        raise ValueError(f"invalid arguments for {name}: {'; '.join(problems)}")
    return dict(arguments)


def _check_settings(
    name: str, max_concurrency: int | None, timeout_s: float | None, on_error: str
) -> None:
    if max_concurrency is not None and (
        isinstance(max_concurrency, bool)
        or not isinstance(max_concurrency, int)
        or max_concurrency < 1
    ):
        raise ToolError(
            name, f"max_concurrency must be a whole number >= 1, got {max_concurrency!r}."
        )
    if timeout_s is not None and (
        isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float) or not timeout_s > 0
    ):
        raise ToolError(name, f"timeout_s must be a number of seconds > 0, got {timeout_s!r}.")
    if on_error not in ("return", "fail"):
        raise ToolError(name, f"on_error must be 'return' or 'fail', got {on_error!r}.")


def _arguments_model(name: str, fn: Callable[..., Any], docs: Mapping[str, str]) -> Any:
    """The pydantic model of ``fn``'s keyword arguments (extra arguments forbidden)."""
    try:
        import pydantic
    except ImportError:
        raise MissingExtraError("pydantic", "tools", "a Python function as a tool") from None
    try:
        signature = inspect.signature(fn)
        hints = typing.get_type_hints(fn, include_extras=True)
    except (TypeError, ValueError, NameError) as exc:
        raise ToolError(name, f"cannot read the function's signature: {exc}") from exc
    fields: dict[str, Any] = {}
    for param in signature.parameters.values():
        if param.kind not in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY):
            raise ToolError(
                name,
                f"parameter {param.name!r} is {param.kind.description}; a model passes "
                "arguments by name. Fix: make it an ordinary named parameter.",
            )
        hint = hints.get(param.name, Any)
        default = ... if param.default is param.empty else param.default
        fields[param.name] = (
            hint,
            pydantic.Field(default, description=docs.get(param.name) or None),
        )
    try:
        with warnings.catch_warnings():  # a parameter named `json` or `copy` is fine here
            warnings.filterwarnings("ignore", "Field name .* shadows an attribute", UserWarning)
            return pydantic.create_model(
                f"{name}_arguments",
                __config__=pydantic.ConfigDict(extra="forbid"),
                **fields,
            )
    except (pydantic.PydanticUserError, TypeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ToolError(name, f"pydantic cannot describe its parameters: {first}") from exc


def _docstring(doc: str) -> tuple[str, dict[str, str]]:
    """A docstring's summary (its first paragraph) and its ``Args:`` descriptions."""
    lines = doc.splitlines()
    summary: list[str] = []
    for line in lines:
        if not line.strip() or _SECTION.match(line):
            break
        summary.append(line.strip())
    args: dict[str, str] = {}
    current: str | None = None
    in_args = False
    indent: int | None = None  # of the first argument line; deeper lines continue one
    for line in lines:
        section = _SECTION.match(line)
        if section:
            in_args = section.group(1) in ("Args", "Arguments", "Parameters")
            current, indent = None, None
            continue
        if not in_args or not line.strip():
            continue
        depth = len(line) - len(line.lstrip())
        match = _ARG_LINE.match(line)
        if match and (indent is None or depth <= indent):
            indent = depth
            current = match.group(1).lstrip("*")
            args[current] = match.group(2).strip()
        elif current is not None:
            args[current] = f"{args[current]} {line.strip()}".strip()
    return " ".join(summary), args
