"""Stored values as data: how the run store and the result cache write what a node returns.

Everything the store (:mod:`agentplex.store`) and the cache
(:mod:`agentplex.store.cache`) keep is JSON text. Reading it back parses JSON and
nothing else: it never imports a module, never calls a constructor named by
the data and never unpickles, so a store or cache file from someone else (a
shared folder, a downloaded example) is data, never code.

What JSON holds (``str``, ``int``, finite ``float``, ``bool``, ``None``,
``list``, ``dict`` with ``str`` keys) is written as it is; a plain ``str``
output, by far the most common, costs one C-level ``json`` call. What JSON
cannot hold is written as a tagged object, ``{"$t": TAG, "v": ...}``:

=============  ========================================  ==========================
tag            written for                               read back as
=============  ========================================  ==========================
``bytes``      ``bytes`` (base64)                        ``bytes``
``bytearray``  ``bytearray`` (base64)                    ``bytearray``
``tuple``      ``tuple`` (named tuples too)              ``tuple``
``set``        ``set``                                   ``set``
``frozenset``  ``frozenset``                             ``frozenset``
``dict``       a dict with a non-``str`` key, or one     ``dict`` (its keys as
               holding the key ``"$t"`` (as pairs)       they were)
``float``      ``nan``, ``inf``, ``-inf``                ``float``
``dataclass``  a dataclass instance (``"type"`` names    a plain ``dict`` of its
               its class, for people)                    fields, never the class
``pickle``     opt-in only, see below                    see below
=============  ========================================  ==========================

Any other ``Mapping`` is written as a ``dict``, a ``list`` subclass as a
``list``, and ``str``, ``int`` and ``float`` subclasses (``StrEnum``,
``IntEnum``) as the plain value. A
dataclass comes back as a ``dict`` because rebuilding the class would mean
importing what the data names: a function that consumes a stored dataclass
(on resume, or from a cache hit) receives ``{"field": value, ...}``.

A value of any other type cannot be encoded: :func:`encode` raises
:class:`EncodeError`, naming where in the value the type sits and what to
return instead. The runner turns that into the node's error.

**Opt-in pickle mode (local only).** With ``AGENTPLEX_STORE_PICKLE=1`` in
the environment, a value the codec cannot encode (only such a value: the
rest of the output is still JSON) is pickled and written under the
``pickle`` tag. It is unpickled on reading only when the reading process
has ``AGENTPLEX_STORE_PICKLE=1`` as well; without it, a pickled value is a
:class:`DecodeError` (the store reports it; the cache treats it as a miss),
never unpickled. Unpickling runs code named by the data: set it only for
store and cache files you wrote yourself, on your own machine.

:func:`canonical` is the deterministic encoding used for content keys (sorted
keys, sorted set members, never a pickle): a value has one encoding, whatever
order its dicts and sets were built in.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import math
import os
import pickle
from collections.abc import Mapping
from typing import Any

from agentplex.exceptions import PICKLE_ENV, DecodeError, EncodeError

TAG = "$t"
"""The key that marks a tagged object; a user's dict holding it is written as pairs."""

_ON = ("1", "true", "yes", "on")


def pickle_allowed() -> bool:
    """Whether this process opted in to pickle mode (``AGENTPLEX_STORE_PICKLE=1``)."""
    return os.environ.get(PICKLE_ENV, "").strip().lower() in _ON


# -- encoding -------------------------------------------------------------------------------

_ENCODER = json.JSONEncoder(allow_nan=False, check_circular=False, separators=(",", ":"))
_CANONICAL = json.JSONEncoder(
    allow_nan=False, check_circular=False, separators=(",", ":"), sort_keys=True
)
# ensure_ascii stays on: a str with a lone surrogate must still become valid UTF-8 text.


class _Unencodable(Exception):
    """Raised inside the walk; collects the path to the offending part on the way out."""

    def __init__(self, value: Any, problem: str | None = None) -> None:
        self.value = value
        self.problem = problem
        self.path: list[str] = []


def _type_name(value: Any) -> str:
    kind = type(value)
    module = kind.__module__
    return kind.__qualname__ if module == "builtins" else f"{module}.{kind.__qualname__}"


def _pickled(value: Any) -> dict[str, Any]:
    try:
        data = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        raise _Unencodable(value, f"cannot be pickled either ({exc})") from None
    return {TAG: "pickle", "v": base64.b64encode(data).decode("ascii")}


class _Walk:
    """Turns a value into JSON-native parts (tags for the rest); one per encode call."""

    __slots__ = ("canonical", "pickle_ok")

    def __init__(self, *, canonical: bool, pickle_ok: bool) -> None:
        self.canonical = canonical
        self.pickle_ok = pickle_ok

    def key(self, part: Any) -> str:
        """The canonical text of a part, to sort set members and dict pairs by."""
        return _CANONICAL.encode(part)

    def __call__(self, value: Any) -> Any:
        kind = type(value)
        if kind is str or kind is int or kind is bool or value is None:
            return value
        if kind is float:
            return value if math.isfinite(value) else {TAG: "float", "v": repr(value)}
        if kind is list:
            return self.items(value)
        if kind is dict:
            return self.mapping(value)
        if isinstance(value, str):
            return str.__str__(value)
        if isinstance(value, int):  # IntEnum and friends become the plain number
            return int.__int__(value)
        if isinstance(value, float):
            return self(float.__float__(value))
        if isinstance(value, tuple):
            return {TAG: "tuple", "v": self.items(value)}
        if isinstance(value, bytes | bytearray):
            tag = "bytes" if isinstance(value, bytes) else "bytearray"
            return {TAG: tag, "v": base64.b64encode(value).decode("ascii")}
        if isinstance(value, set | frozenset):
            members = self.items(value)
            if self.canonical:
                members.sort(key=self.key)
            return {TAG: "set" if isinstance(value, set) else "frozenset", "v": members}
        if isinstance(value, Mapping):
            return self.mapping(value)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            fields: dict[str, Any] = {}
            for field in dataclasses.fields(value):
                try:
                    part = getattr(value, field.name)
                except AttributeError:
                    raise _Unencodable(value, f"has no value for field {field.name!r}") from None
                try:
                    fields[field.name] = self(part)
                except _Unencodable as failure:
                    failure.path.append(f".{field.name}")
                    raise
            return {TAG: "dataclass", "type": _type_name(value), "v": fields}
        if isinstance(value, list):
            return self.items(value)
        if self.pickle_ok and not self.canonical:
            return _pickled(value)
        raise _Unencodable(value)

    def items(self, values: Any) -> list[Any]:
        out = []
        for index, item in enumerate(values):
            try:
                out.append(self(item))
            except _Unencodable as failure:
                failure.path.append(f"[{index}]")
                raise
        return out

    def mapping(self, value: Mapping[Any, Any]) -> Any:
        plain: dict[str, Any] = {}
        for key, item in value.items():
            if type(key) is not str or key == TAG:
                return self.pairs(value)
            try:
                plain[key] = self(item)
            except _Unencodable as failure:
                failure.path.append(f"[{key!r}]")
                raise
        return plain

    def pairs(self, value: Mapping[Any, Any]) -> dict[str, Any]:
        pairs = []
        for key, item in value.items():
            try:
                pairs.append([self(key), self(item)])
            except _Unencodable as failure:
                failure.path.append(f"[{key!r}]")
                raise
        if self.canonical:
            pairs.sort(key=lambda pair: self.key(pair[0]))
        return {TAG: "dict", "v": pairs}


def _run(value: Any, what: str, *, canonical: bool, pickle_ok: bool) -> str:
    walk = _Walk(canonical=canonical, pickle_ok=pickle_ok)
    try:
        parts = walk(value)
        return (_CANONICAL if canonical else _ENCODER).encode(parts)
    except _Unencodable as failure:
        where = "".join(reversed(failure.path))
        raise EncodeError(what, where, _type_name(failure.value), failure.problem) from None
    except RecursionError:
        raise EncodeError(what, "", _type_name(value), "is nested too deeply to store") from None
    except ValueError as exc:  # an int past Python's digit limit
        raise EncodeError(what, "", _type_name(value), f"cannot be written ({exc})") from None


def encode(value: Any, *, what: str = "the value") -> str:
    """Return ``value`` as JSON text (see the module docstring for the tags).

    Raises:
        EncodeError: if a part of ``value`` has a type the codec cannot hold (and
            pickle mode is off, or the part cannot be pickled either).
    """
    kind = type(value)
    if kind is str:
        return _ENCODER.encode(value)  # the fast path: one C call
    if value is None:
        return "null"
    return _run(value, what, canonical=False, pickle_ok=pickle_allowed())


def canonical(value: Any, *, what: str = "the value") -> str:
    """Return the deterministic encoding of ``value``, for content keys (never a pickle).

    Raises:
        EncodeError: if a part of ``value`` has a type the codec cannot hold.
    """
    return _run(value, what, canonical=True, pickle_ok=False)


# -- decoding -------------------------------------------------------------------------------


class _Bad(Exception):
    """Raised inside the JSON parser's hook; turned into a DecodeError with the caller's words."""

    def __init__(self, problem: str, *, pickled: bool = False) -> None:
        self.problem = problem
        self.pickled = pickled


def _base64(data: Any, tag: str) -> bytes:
    if not isinstance(data, str):
        raise _Bad(f"has a {tag!r} value that is not base64 text")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise _Bad(f"has a {tag!r} value that is not valid base64") from None


def _list(data: Any, tag: str) -> list[Any]:
    if not isinstance(data, list):
        raise _Bad(f"has a {tag!r} value that is not a list")
    return data


def _hashable(build: Any, parts: Any, tag: str) -> Any:
    try:
        return build(parts)
    except TypeError:
        raise _Bad(f"has a {tag!r} with a member that cannot be one (a list or dict)") from None


def _pairs(data: Any) -> dict[Any, Any]:
    out: dict[Any, Any] = {}
    for pair in _list(data, "dict"):
        if not isinstance(pair, list) or len(pair) != 2:
            raise _Bad("has a 'dict' entry that is not a [key, value] pair")
        try:
            out[pair[0]] = pair[1]
        except TypeError:
            raise _Bad("has a 'dict' key that cannot be one (a list or dict)") from None
    return out


def _unpickle(data: Any) -> Any:
    raw = _base64(data, "pickle")
    if not pickle_allowed():
        raise _Bad(
            f"was stored as a pickle ({PICKLE_ENV}=1 when it was written), and agentplex "
            "never unpickles unless the reading process opts in too: unpickling runs code",
            pickled=True,
        )
    try:
        return pickle.loads(raw)  # the user opted in, for files of their own
    except Exception as exc:
        raise _Bad(f"holds a pickle that cannot be read ({type(exc).__name__}: {exc})") from None


def _hook(obj: dict[str, Any]) -> Any:
    if TAG not in obj:
        return obj
    tag = obj[TAG]
    expected = 3 if tag == "dataclass" else 2
    if len(obj) != expected or "v" not in obj:
        raise _Bad(f"has a malformed tagged value {tag!r}")
    data = obj["v"]
    if tag == "tuple":
        return tuple(_list(data, tag))
    if tag == "bytes":
        return _base64(data, tag)
    if tag == "bytearray":
        return bytearray(_base64(data, tag))
    if tag == "set":
        return _hashable(set, _list(data, tag), tag)
    if tag == "frozenset":
        return _hashable(frozenset, _list(data, tag), tag)
    if tag == "dict":
        return _pairs(data)
    if tag == "float":
        if data not in ("nan", "inf", "-inf"):
            raise _Bad("has a 'float' value other than nan, inf or -inf")
        return float(data)
    if tag == "dataclass":
        if not isinstance(data, dict) or not isinstance(obj.get("type"), str):
            raise _Bad("has a malformed 'dataclass' value")
        return data  # a plain dict of the fields: the class is never imported
    if tag == "pickle":
        return _unpickle(data)
    raise _Bad(f"has an unknown tag {tag!r} (written by a newer agentplex, or planted)")


_DECODER = json.JSONDecoder(object_hook=_hook)


def decode(text: str, *, what: str = "the value") -> Any:
    """Return the value ``text`` encodes; never runs code (see the module docstring).

    Raises:
        DecodeError: if ``text`` is not valid JSON, or not a valid encoding, or
            holds a pickle and this process did not opt in to pickle mode.
    """
    if not isinstance(text, str):
        raise DecodeError(what, f"is stored as {type(text).__name__}, not JSON text")
    try:
        return _DECODER.decode(text)
    except _Bad as bad:
        raise DecodeError(what, bad.problem, pickled=bad.pickled) from None
    except RecursionError:
        raise DecodeError(what, "is nested too deeply to read") from None
    except ValueError as exc:  # json.JSONDecodeError, or an int past the digit limit
        raise DecodeError(what, f"is not valid JSON ({exc})") from None


__all__ = [
    "PICKLE_ENV",
    "TAG",
    "DecodeError",
    "EncodeError",
    "canonical",
    "decode",
    "encode",
    "pickle_allowed",
]
