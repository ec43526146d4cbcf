"""The literal text every match of a PCRE-syntax pattern must contain.

A pattern such as ``/^([^@+]+)\\+w123@(.+)$/`` can only match a key that contains ``+w123@``.
The prefilter looks for such *required literals* of many patterns at once, which is far cheaper
than running the patterns, and leaves the final word to the exact engine; so what matters here
is only that a reported literal really is in every match.  The reading is deliberately narrow:
anything it is unsure of (inline options, look-arounds, ``\\Q``, numeric escapes, back
references, extended syntax) makes it give up rather than guess.
"""

from __future__ import annotations

__all__ = ["required_literals"]

_META = frozenset(b"\\^$.|?*+()[]{}")
#: Escapes that stand for one character of a class, or for an assertion, and take no argument.
_SIMPLE_ESCAPES = frozenset(b"dDwWsShHvVbBAzZntrfea")
_DIGITS = frozenset(b"0123456789")
_BREAK = -1  # a token that is not a required literal byte


class _Unsure(Exception):
    """The pattern uses something this reading does not vouch for."""


def required_literals(expression: bytes) -> list[list[bytes]] | None:
    """For each top-level alternative of ``expression``, the runs of literal bytes that every
    match of it contains (possibly none); ``None`` when unsure about the pattern."""
    try:
        alternatives, end = _sequence(expression, 0, top=True)
    except _Unsure:
        return None
    if end != len(expression):
        return None
    return [_runs(tokens) for tokens in alternatives]


def _runs(tokens: list[int]) -> list[bytes]:
    runs: list[bytes] = []
    current = bytearray()
    for token in tokens:
        if token == _BREAK:
            if current:
                runs.append(bytes(current))
                current.clear()
        else:
            current.append(token)
    if current:
        runs.append(bytes(current))
    return runs


def _sequence(text: bytes, i: int, *, top: bool) -> tuple[list[list[int]], int]:
    """Parse alternatives from ``text[i:]`` up to an unmatched ``)`` or the end; return the
    token list of each alternative and where parsing stopped."""
    alternatives: list[list[int]] = []
    tokens: list[int] = []
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == 0x7C:  # '|'
            alternatives.append(tokens)
            tokens = []
            i += 1
            continue
        if ch == 0x29:  # ')'
            if top:
                raise _Unsure
            break
        atom: list[int]
        if ch == 0x5C:  # backslash
            if i + 1 >= n:
                raise _Unsure
            nxt = text[i + 1]
            if nxt in _SIMPLE_ESCAPES:
                atom = [_BREAK]
            elif nxt >= 0x80 or not chr(nxt).isalnum():
                atom = [nxt]  # escaped punctuation is itself
            else:
                raise _Unsure
            i += 2
        elif ch == 0x5B:  # '['
            i = _skip_class(text, i)
            atom = [_BREAK]
        elif ch == 0x28:  # '('
            i = _group_start(text, i)
            inner, i = _sequence(text, i, top=False)
            if i >= n or text[i] != 0x29:
                raise _Unsure
            i += 1
            atom = inner[0] if len(inner) == 1 else [_BREAK]
        elif ch in b"^$.":
            atom = [_BREAK]
            i += 1
        elif ch in b"?*+{":
            # A quantifier with nothing to repeat, or a "{" that the PCRE version at hand may
            # or may not read as one: leave such patterns to the engine.
            raise _Unsure
        else:
            atom = [ch]  # an ordinary character
            i += 1
        # A quantifier: the atom may be absent, or repeated.
        if i < n and text[i] in b"?*+{":
            if text[i] == 0x7B:
                minimum, i = _quantifier(text, i)
            else:
                minimum = 0 if text[i] in b"?*" else 1
                i += 1
            if i < n and text[i] in b"?+":  # lazy or possessive
                i += 1
            atom = [*atom, _BREAK] if minimum else [_BREAK]
        tokens += atom
    alternatives.append(tokens)
    return alternatives, i


def _quantifier(text: bytes, i: int) -> tuple[int, int]:
    """``{n}``, ``{n,}``, ``{n,m}`` or ``{,m}`` at ``text[i]``: its minimum and its end.  A
    ``{`` of any other form is literal in some PCRE versions and not in others: unsure."""
    end = text.find(b"}", i)
    if end < 0:
        raise _Unsure
    low, comma, high = text[i + 1 : end].partition(b",")
    if not all(c in _DIGITS for c in low + high) or not (low or (comma and high)):
        raise _Unsure
    return (int(low) if low else 0), end + 1


def _group_start(text: bytes, i: int) -> int:
    """Skip a group's opening (``(`` or ``(?:`` or ``(?>``); give up on every other kind."""
    if text[i + 1 : i + 2] == b"?":
        if text[i + 2 : i + 3] in (b":", b">"):
            return i + 3
        raise _Unsure
    if text[i + 1 : i + 2] == b"*":
        raise _Unsure
    return i + 1


def _skip_class(text: bytes, i: int) -> int:
    """The end of the bracket expression at ``text[i]``."""
    n = len(text)
    i += 1
    if i < n and text[i] == 0x5E:  # '^'
        i += 1
    if i < n and text[i] == 0x5D:  # a leading ']' is literal
        i += 1
    while i < n:
        ch = text[i]
        if ch == 0x5C:
            if text[i + 1 : i + 2] in (b"Q", b"E"):
                raise _Unsure
            i += 2
        elif ch == 0x5B and text[i + 1 : i + 2] in (b":", b".", b"="):
            end = text.find(text[i + 1 : i + 2] + b"]", i + 2)
            if end < 0:
                raise _Unsure
            i = end + 2
        elif ch == 0x5D:
            return i + 1
        else:
            i += 1
    raise _Unsure
