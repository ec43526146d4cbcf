"""``$name`` expansion as Postfix does it in main.cf, forward_path and luser_relay.

The syntax (``src/util/mac_parse.c``, ``mac_expand.c``; postconf(5)):

* ``$$`` is a ``$``; ``$name``, ``${name}`` and ``$(name)`` are the value of ``name``;
* ``${name?text}`` / ``${name?{text}}``: ``text`` if ``name`` is non-empty;
  ``${name:text}``: ``text`` if it is empty or undefined; ``${name?{a}:{b}}`` both;
* ``${{a} == {b}?...:...}`` compares the expanded texts (numbers as numbers; also ``!=``,
  ``<``, ``<=``, ``>=``, ``>``), and operator suffixes registered by the caller add other
  comparisons: main.cf has ``<level`` and friends for compatibility levels (``3.10`` >
  ``3.9``);
* a relational expression alone expands to ``true`` or to nothing.

The result carries status bits: :attr:`MacroStatus.ERROR` for a syntax error (with Postfix's
warning, logged) and :attr:`MacroStatus.UNDEF` when a plain reference named an undefined
attribute.  Postfix's own vector ``util/mac_expand`` runs through :func:`mac_expand` in the tests.
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

__all__ = [
    "COMPAT_LEVEL_RELOPS",
    "MacroStatus",
    "Relop",
    "compat_level_value",
    "mac_expand",
]

log = logging.getLogger("mailmaps")

_SPACE = " \t\r\n"
_NAME_CHARS = re.compile(r"[A-Za-z0-9_]*")
_OPERATOR_CHARS = re.compile(r"[<>!=?+\-*/~&|%]*")
_OPERATORS = ("==", "!=", "<", "<=", ">=", ">")
_ANY_OPERATOR = '"==" or "!="" or "<"" or "<="" or ">="" or ">"'
_MAX_LEVEL = 100


class MacroStatus(enum.IntFlag):
    """What went wrong during an expansion (``MAC_PARSE_ERROR``, ``MAC_PARSE_UNDEF``)."""

    OK = 0
    ERROR = 1
    UNDEF = 2


#: A comparison: ``(left, operator, right)`` -> true or false, or ``None`` for an error.
Relop = Callable[[str, str, str], bool | None]
#: An attribute lookup: ``(name, used)`` -> the value or ``None``; ``used`` is false for the
#: ``${name?...}``/``${name:...}`` tests.
Lookup = Callable[[str, bool], str | None]


def _compare(delta: int, operator: str) -> bool:
    return {
        "==": delta == 0,
        "!=": delta != 0,
        "<": delta < 0,
        "<=": delta <= 0,
        ">=": delta >= 0,
        ">": delta > 0,
    }[operator]


def _default_relop(left: str, operator: str, right: str) -> bool:
    if left.isdigit() and right.isdigit() and left.isascii() and right.isascii():
        delta = int(left) - int(right)
    else:
        a, b = left.encode("utf-8", "surrogateescape"), right.encode("utf-8", "surrogateescape")
        delta = (a > b) - (a < b)
    return _compare(delta, operator)


def compat_level_value(text: str) -> int | None:
    """A compatibility level as one comparable number (``compat_level_from_string()``):
    ``major[.minor[.patch]]``, or ``None`` (with Postfix's warning) when malformed."""
    match = re.fullmatch(r"(\d+)(?:\.(\d+))?(?:\.(\d+))?", text)
    if match is None or any(len(part) > 1 and part[0] == "0" for part in match.groups("0")[1:]):
        log.warning('malformed compatibility level syntax: "%s"', text)
        return None
    major, minor, patch = (int(part) for part in match.groups("0"))
    if minor > 9999 or patch > 9999:
        log.warning('malformed compatibility level syntax: "%s"', text)
        return None
    return (major * 10000 + minor) * 10000 + patch


def _compat_relop(left: str, operator: str, right: str) -> bool | None:
    a, b = compat_level_value(left), compat_level_value(right)
    if a is None or b is None:
        return None
    return _compare(a - b, operator)


#: The ``level`` operator suffix main.cf knows (``compat_level_relop_register()``).
COMPAT_LEVEL_RELOPS: Mapping[str, Relop] = {op + "level": _compat_relop for op in _OPERATORS}


@dataclass
class _Context:
    lookup: Lookup
    recurse: bool
    allowed: str | None
    relops: Mapping[str, Relop]
    functions: Mapping[str, Callable[[str], str]]
    out: list[str] = field(default_factory=list)
    status: MacroStatus = MacroStatus.OK
    level: int = 0

    def error(self, message: str) -> MacroStatus:
        log.warning("%s", message)
        self.status |= MacroStatus.ERROR
        return self.status


def mac_expand(
    pattern: str,
    lookup: Lookup | Mapping[str, str],
    *,
    recurse: bool = False,
    allowed: str | None = None,
    relops: Mapping[str, Relop] | None = None,
    functions: Mapping[str, Callable[[str], str]] | None = None,
) -> tuple[str, MacroStatus]:
    """Expand ``pattern``.

    :param lookup: attribute values: a mapping, or a function of ``(name, used)``.
    :param recurse: expand ``$name`` inside looked-up values too (main.cf does).
    :param allowed: characters allowed in looked-up values; others become ``_``
        (``forward_expansion_filter``).
    :param relops: operator suffixes (``"<level"``) and their comparisons.
    :param functions: named functions, ``${name{argument}}`` (Postfix 3.12; none in 3.7).
    :returns: the text and the status bits.
    """
    if isinstance(lookup, Mapping):
        table = lookup
        lookup = lambda name, used: table.get(name)  # noqa: E731
    ctx = _Context(lookup, recurse, allowed, relops or {}, functions or {})
    ctx.status |= _parse(pattern, ctx)
    return "".join(ctx.out), ctx.status


def _parse(value: str, ctx: _Context) -> MacroStatus:
    """Split ``value`` into literal text and references (``mac_parse()``)."""
    status = MacroStatus.OK
    buf: list[str] = []
    i, n = 0, len(value)
    while i < n:
        ch = value[i]
        if ch != "$":
            buf.append(ch)
            i += 1
            continue
        if i + 1 < n and value[i + 1] == "$":
            buf.append("$")
            i += 2
            continue
        if buf:
            status |= _literal("".join(buf), ctx)
            buf = []
        i += 1
        if i < n and value[i] in "({":
            open_ch = value[i]
            close_ch = ")" if open_ch == "(" else "}"
            level = 1
            j = i + 1
            while level > 0:
                if j >= n:
                    log.warning('truncated macro reference: "%s"', value)
                    return status | MacroStatus.ERROR
                if value[j] == open_ch:
                    level += 1
                elif value[j] == close_ch:
                    level -= 1
                j += 1
            name = value[i + 1 : j - 1]
            i = j
        else:
            m = _NAME_CHARS.match(value, i)
            assert m is not None
            name = m.group()
            i = m.end()
        if not name:
            log.warning('empty macro name: "%s"', value)
            return status | MacroStatus.ERROR
        status |= _expression(name, ctx)
    if buf and not status & MacroStatus.ERROR:
        status |= _literal("".join(buf), ctx)
    return status


def _literal(text: str, ctx: _Context) -> MacroStatus:
    if not ctx.status & MacroStatus.ERROR:
        ctx.out.append(text)
    return ctx.status


def _find_left_curly(text: str, i: int) -> int | None:
    """The position of a ``{`` after optional white space, or ``None``."""
    j = i
    while j < len(text) and text[j] in _SPACE:
        j += 1
    return j if j < len(text) and text[j] == "{" else None


def _curly_payload(text: str, i: int, ctx: _Context) -> tuple[str, int] | None:
    """The text inside the braces that open at ``i``, and where the rest starts (after
    white space)."""
    level = 1
    j = i + 1
    while True:
        if j >= len(text):
            ctx.error(f'unbalanced {{}} in attribute expression: "{text[i:]}"')
            return None
        if text[j] == "{":
            level += 1
        elif text[j] == "}":
            level -= 1
            if level <= 0:
                break
        j += 1
    payload = text[i + 1 : j]
    j += 1
    while j < len(text) and text[j] in _SPACE:
        j += 1
    return payload, j


def _relational(text: str, i: int, ctx: _Context) -> tuple[str, int] | None:
    """Parse and evaluate ``{left} op {right}`` at ``i``; ``("true" or "", next index)``."""
    found = _curly_payload(text, i, ctx)
    if found is None:
        return None
    left, j = found
    op_match = _OPERATOR_CHARS.match(text, j)
    assert op_match is not None
    operator = op_match.group()
    if operator not in _OPERATORS:
        ctx.error(f'{_ANY_OPERATOR} expected at: "...{left}}}>>>{text[j : j + 20]}"')
        return None
    op_start = j
    j = op_match.end()
    relop: Relop = _default_relop
    if ctx.relops and j < len(text) and text[j].isalnum():
        suffix_match = re.compile(r"[A-Za-z0-9]+").match(text, j)
        assert suffix_match is not None
        suffix = suffix_match.group()
        chosen = ctx.relops.get(operator + suffix)
        if chosen is None:
            ctx.error(f'bad operator suffix at: "...{operator}>>>{suffix}"')
            return None
        relop = chosen
        j = suffix_match.end()
    brace = _find_left_curly(text, j)
    if brace is None:
        ctx.error(
            f'"{{expression}}" expected at: "...{{{left}}} {text[op_start:j]}>>>{text[j : j + 20]}"'
        )
        return None
    found = _curly_payload(text, brace, ctx)
    if found is None:
        return None
    right, j = found
    left_value, left_status = _sub_expand(left, ctx)
    right_value, right_status = _sub_expand(right, ctx)
    ctx.status |= left_status | right_status
    result = relop(left_value, operator, right_value)
    if result is None:
        ctx.status |= MacroStatus.ERROR
    if ctx.status & MacroStatus.ERROR:
        return None
    return ("true" if result else ""), j


def _sub_expand(text: str, ctx: _Context) -> tuple[str, MacroStatus]:
    sub = _Context(ctx.lookup, ctx.recurse, ctx.allowed, ctx.relops, ctx.functions)
    sub.status |= _parse(text, sub)
    return "".join(sub.out), sub.status


def _expression(text: str, ctx: _Context) -> MacroStatus:
    """One ``$...`` reference (``mac_expand_callback()``)."""
    ctx.level += 1
    if ctx.level > _MAX_LEVEL:
        ctx.error(f'unreasonable macro call nesting: "{text}"')
    if ctx.status & MacroStatus.ERROR:
        return ctx.status
    value: str | None
    brace = _find_left_curly(text, 0)
    if brace is not None:
        evaluated = _relational(text, brace, ctx)
        if evaluated is None:
            return ctx.status
        value, i = evaluated
        ch = text[i] if i < len(text) else ""
        if ch:
            if ch not in "?:":
                return ctx.error(f'"?" or ":" expected at: "...}}>>>{text[i : i + 20]}"')
            i += 1
    else:
        i = 0
        while i < len(text) and text[i] in _SPACE:
            i += 1
        start = i
        while True:
            j = i
            while j < len(text) and text[j] in _SPACE:
                j += 1
            if j >= len(text):
                name, used, ch = text[start:i], True, ""
                break
            if text[j] in "?:":
                name, used, ch = text[start:i], False, text[j]
                i = j + 1
                break
            if text[i] == "{" and text[start:i] in ctx.functions:
                return _function(text, start, i, ctx)
            if j > i and text[j] == "{" and text[start:i] in ctx.functions:
                return _function(text, start, j, ctx)
            if not (text[i].isalnum() or text[i] == "_"):
                return ctx.error(
                    f'attribute name syntax error at: "...{text[:i]}>>>{text[i : i + 20]}"'
                )
            i += 1
        value = ctx.lookup(name, used)
    if ch == "?":
        found = _branch(text, i, ctx)
        if found is None:
            return ctx.status
        if_true, i = found
        if value:
            ctx.status |= _parse(if_true, ctx)
        if i >= len(text):
            ctx.level -= 1
            return ctx.status
        if text[i] != ":":
            return ctx.error(f'":" expected at: "...{if_true}}}>>>{text[i : i + 20]}"')
        i += 1
        ch = ":"
        return _if_false(text, i, value, ctx)
    if ch == ":":
        return _if_false(text, i, value, ctx)
    if value is None:
        ctx.status |= MacroStatus.UNDEF
    elif value:
        if ctx.recurse:
            ctx.status |= _parse(value, ctx)
        else:
            if ctx.allowed is not None:
                value = "".join(c if c in ctx.allowed else "_" for c in value)
            ctx.out.append(value)
    ctx.level -= 1
    return ctx.status


def _branch(text: str, i: int, ctx: _Context) -> tuple[str, int] | None:
    """The text of a ``?`` or ``:`` branch starting at ``i``: a ``{...}`` payload, or the rest
    of ``text``; and where it ends.  ``None`` after a syntax error (recorded in ``ctx``)."""
    brace = _find_left_curly(text, i)
    if brace is None:
        return text[i:], len(text)
    return _curly_payload(text, brace, ctx)


def _if_false(text: str, i: int, value: str | None, ctx: _Context) -> MacroStatus:
    found = _branch(text, i, ctx)
    if found is None:
        return ctx.status
    if_false, i = found
    if not value:
        ctx.status |= _parse(if_false, ctx)
    if i < len(text):
        return ctx.error(f'unexpected input at: "...{if_false}}}>>>{text[i : i + 20]}"')
    ctx.level -= 1
    return ctx.status


def _function(text: str, start: int, brace: int, ctx: _Context) -> MacroStatus:
    name = text[start:brace].strip()
    found = _curly_payload(text, brace, ctx)
    if found is None:
        return ctx.status
    argument, i = found
    if i < len(text):
        return ctx.error(f'unexpected input at: "...{argument}}}>>>{text[i : i + 20]}"')
    expanded, status = _sub_expand(argument.strip(), ctx)
    ctx.status |= status
    ctx.out.append(ctx.functions[name](expanded))
    ctx.level -= 1
    return ctx.status
