"""POSIX regular expressions through the C library's own ``regcomp()``/``regexec()``.

This is the engine of Postfix's ``regexp:`` tables (``dict_regexp.c``) on Linux: glibc's matcher,
with its leftmost-longest rule and its way of assigning sub-matches, its bracket expressions and
its GNU extensions (``\\w``, ``\\<``, back-references).  Postfix never calls ``setlocale()``, so it
matches bytes in the C locale; Python sets the process's ``LC_CTYPE`` from the environment at
start-up, so every call here switches the calling thread to the C locale (``uselocale()``) for its
duration and back.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from mailmaps.engines import CompileError

__all__ = [
    "REG_EXTENDED",
    "REG_ICASE",
    "REG_NEWLINE",
    "REG_NOSUB",
    "ExecError",
    "PosixRegex",
    "c_locale",
    "enter_c_locale",
    "ere_to_pcre",
    "leave_c_locale",
]

REG_EXTENDED: Final = 1
REG_ICASE: Final = 2
REG_NEWLINE: Final = 4
REG_NOSUB: Final = 8
_REG_NOMATCH: Final = 1
_LC_ALL_MASK: Final = 0x1FBF  # glibc: every category but LC_ALL itself
_REGEX_T_SIZE: Final = 128  # sizeof(regex_t) is 64 on LP64 glibc; leave room
_RE_NSUB_OFFSET: Final = 48  # offsetof(regex_t, re_nsub) on LP64 glibc


class ExecError(RuntimeError):
    """``regexec()`` failed (out of memory, ...); Postfix warns and counts the rule as no match."""


class _RegMatch(ctypes.Structure):
    _fields_ = (("rm_so", ctypes.c_int), ("rm_eo", ctypes.c_int))


def _load_libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.regcomp.argtypes = (ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int)
    libc.regcomp.restype = ctypes.c_int
    libc.regexec.argtypes = (
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.c_size_t,
        ctypes.c_void_p,
        ctypes.c_int,
    )
    libc.regexec.restype = ctypes.c_int
    libc.regerror.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_size_t)
    libc.regerror.restype = ctypes.c_size_t
    libc.regfree.argtypes = (ctypes.c_void_p,)
    libc.regfree.restype = None
    libc.newlocale.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_void_p)
    libc.newlocale.restype = ctypes.c_void_p
    libc.uselocale.argtypes = (ctypes.c_void_p,)
    libc.uselocale.restype = ctypes.c_void_p
    return libc


_libc = _load_libc()
_C_LOCALE = _libc.newlocale(_LC_ALL_MASK, b"C", None)
if not _C_LOCALE:  # pragma: no cover - glibc always has the C locale
    raise OSError("newlocale(C) failed")
_uselocale = _libc.uselocale
_regexec = _libc.regexec


def enter_c_locale() -> int:
    """Switch the calling thread to the C locale; return what :func:`leave_c_locale` restores."""
    saved: int = _uselocale(_C_LOCALE)
    return saved


def leave_c_locale(saved: int) -> None:
    """Undo :func:`enter_c_locale`."""
    _uselocale(saved)


@contextmanager
def c_locale() -> Iterator[None]:
    """Run the block with the calling thread in the C locale (nesting is fine)."""
    saved = _uselocale(_C_LOCALE)
    try:
        yield
    finally:
        _uselocale(saved)


def _message(code: int, preg: ctypes.Array[ctypes.c_char]) -> str:
    buf = ctypes.create_string_buffer(256)
    _libc.regerror(code, preg, buf, 256)
    return buf.value.decode("ascii", "replace")


class PosixRegex:
    """One compiled POSIX regular expression.

    :param pattern: the pattern as Postfix hands it to ``regcomp()`` (a C string: it ends at the
        first NUL byte).
    :param flags: ``REG_*`` bits.
    :raises CompileError: with the C library's message, as Postfix reports it.
    """

    __slots__ = ("_nmatch", "_preg", "flags", "nsub", "pattern")

    def __init__(self, pattern: bytes, flags: int) -> None:
        self.pattern = pattern
        self.flags = flags
        self._preg = ctypes.create_string_buffer(_REGEX_T_SIZE)
        with c_locale():
            code = _libc.regcomp(self._preg, pattern.split(b"\0", 1)[0], flags)
            if code != 0:
                message = _message(code, self._preg)
                self._preg = None  # type: ignore[assignment]
                raise CompileError(message)
        self.nsub: int = ctypes.c_size_t.from_buffer(self._preg, _RE_NSUB_OFFSET).value
        self._nmatch = 0 if flags & REG_NOSUB else self.nsub + 1

    def __del__(self) -> None:
        preg = getattr(self, "_preg", None)
        if preg is not None:
            _libc.regfree(preg)

    def search(self, subject: bytes) -> bool:
        """Whether the pattern matches anywhere in ``subject``.  Call it inside :func:`c_locale`.

        :raises ExecError: ``regexec()`` failed.
        """
        code = _regexec(self._preg, subject, 0, None, 0)
        if code == 0:
            return True
        if code == _REG_NOMATCH:
            return False
        raise ExecError(_message(code, self._preg))

    def match(self, subject: bytes) -> list[tuple[int, int]] | None:
        """The spans of the match and its groups (``(-1, -1)`` for a group that did not take
        part), or ``None``.  Call it inside :func:`c_locale`.  Safe from several threads.

        :raises ExecError: ``regexec()`` failed.
        """
        pmatch = (_RegMatch * max(self._nmatch, 1))()
        code = _regexec(self._preg, subject, self._nmatch, pmatch, 0)
        if code == _REG_NOMATCH:
            return None
        if code != 0:
            raise ExecError(_message(code, self._preg))
        return [(m.rm_so, m.rm_eo) for m in pmatch[: self._nmatch]]


# -- translation for the prefilter -------------------------------------------------------------

_ERE_ESCAPES = {
    ord("w"): b"\\w",
    ord("W"): b"\\W",
    ord("s"): b"\\s",
    ord("S"): b"\\S",
    ord("b"): b"\\b",
    ord("B"): b"\\B",
    ord("<"): b"\\b",
    ord(">"): b"\\b",
    ord("`"): b"\\A",
    ord("'"): b"\\z",
}
_QUANTIFIERS = frozenset(b"*+?{")


def _literal(ch: int) -> bytes:
    if ch >= 0x80 or ch < 0x20:
        return b"\\x%02x" % ch
    if chr(ch).isalnum():
        return bytes([ch])
    return b"\\" + bytes([ch])


def _bracket(pattern: bytes, i: int) -> tuple[bytes, int] | None:
    """Translate the bracket expression starting at ``pattern[i] == '['``; return the PCRE text
    and the index after it, or ``None``."""
    n = len(pattern)
    out = bytearray(b"[")
    i += 1
    if i < n and pattern[i] == 0x5E:  # '^'
        out += b"^"
        i += 1
    first = True
    while i < n:
        ch = pattern[i]
        if ch == 0x5D and not first:  # ']' closes
            out += b"]"
            return bytes(out), i + 1
        first = False
        if ch == 0x5B and i + 1 < n and pattern[i + 1] in b":=.":  # [:class:] [=c=] [.c.]
            kind = pattern[i + 1]
            end = pattern.find(bytes([kind, 0x5D]), i + 2)
            if end < 0:
                return None
            name = pattern[i + 2 : end]
            if kind == 0x3A:  # ':'
                if not name.isalpha():
                    return None
                out += b"[:" + name + b":]"
            elif len(name) == 1:
                out += _literal(name[0])
            else:
                return None
            i = end + 2
            continue
        if ch == 0x2D:  # '-': a range operator or a literal, the same in PCRE
            out += b"-"
        else:
            out += _literal(ch)
        i += 1
    return None


def ere_to_pcre(pattern: bytes) -> bytes | None:
    """Translate a POSIX extended RE (as glibc reads it) into PCRE syntax that matches at least
    the same strings, for a prefilter; ``None`` when unsure.

    Sub-match semantics do not matter here, only whether a match exists.
    """
    out = bytearray()
    i, n = 0, len(pattern)
    depth = 0
    atom = False  # whether the previous token can take a quantifier
    while i < n:
        ch = pattern[i]
        if ch == 0x5C:  # backslash
            if i + 1 >= n:
                return None
            nxt = pattern[i + 1]
            if 0x31 <= nxt <= 0x39:
                out += b"\\" + bytes([nxt])  # back-reference: Hyperscan approximates it
            elif nxt in _ERE_ESCAPES:
                out += _ERE_ESCAPES[nxt]
            else:
                out += _literal(nxt)
            atom = nxt not in b"bB<>`'"
            i += 2
        elif ch == 0x5B:  # '['
            result = _bracket(pattern, i)
            if result is None:
                return None
            text, i = result
            out += text
            atom = True
        elif ch in _QUANTIFIERS:
            if not atom:
                return None
            if ch == 0x7B:  # '{': an interval
                end = pattern.find(b"}", i)
                if end < 0:
                    return None
                body = pattern[i + 1 : end]
                low, comma, high = body.partition(b",")
                if (low and not low.isdigit()) or (high and not high.isdigit()):
                    return None
                if not low and not comma:
                    return None
                out += b"{" + (low or b"0") + comma + high + b"}"
                i = end + 1
            else:
                out.append(ch)
                i += 1
            atom = False  # a quantified atom cannot be quantified again in PCRE
        elif ch == 0x28:  # '('
            depth += 1
            out += b"("
            atom = False
            i += 1
        elif ch == 0x29:  # ')'
            if depth == 0:
                return None
            depth -= 1
            out += b")"
            atom = True
            i += 1
        elif ch in b"|^$":  # alternation and anchors: the same in PCRE, and not quantifiable
            out.append(ch)
            atom = False
            i += 1
        elif ch == 0x2E:  # '.'
            out += b"."
            atom = True
            i += 1
        else:
            out += _literal(ch)
            atom = True
            i += 1
    if depth:
        return None
    return bytes(out)
