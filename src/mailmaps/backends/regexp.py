"""``regexp:`` tables: POSIX regular expressions, as ``dict_regexp.c`` runs them.

Patterns are compiled by the C library's ``regcomp()`` with ``REG_EXTENDED | REG_ICASE``; the
flags toggle: ``i`` case sensitivity, ``m`` ``REG_NEWLINE``, ``x`` extended syntax (so ``/re/x``
is a basic RE).  Matching is leftmost-longest, in the C locale, on bytes.  A rule may carry a
second pattern, ``/re1/!/re2/ result``, that must (or with ``!``, must not) match as well.
"""

from __future__ import annotations

from typing import Any, ClassVar

from mailmaps.backends._rules import Pattern, RuleTable, _Problem
from mailmaps.engines.posix import (
    REG_EXTENDED,
    REG_ICASE,
    REG_NEWLINE,
    REG_NOSUB,
    PosixRegex,
    enter_c_locale,
    ere_to_pcre,
    leave_c_locale,
)
from mailmaps.engines.prefilter import (
    HS_CASELESS,
    HS_DOTALL,
    HS_MULTILINE,
    Expression,
    anchored_literal,
)

__all__ = ["RegexpTable"]

_FLAGS = {ord("i"): REG_ICASE, ord("m"): REG_NEWLINE, ord("x"): REG_EXTENDED}


class RegexpTable(RuleTable):
    """A ``regexp:`` table."""

    map_type: ClassVar[str] = "regexp"
    second_pattern: ClassVar[bool] = True
    default_options: ClassVar[int] = REG_EXTENDED | REG_ICASE

    def _flag(self, letter: int, options: int, lineno: int) -> int:
        bit = _FLAGS.get(letter)
        if bit is None:
            shown = bytes([letter]).decode("utf-8", "surrogateescape")
            raise _Problem(f'unknown regexp option "{shown}": skipping this rule')
        return options ^ bit

    def _compile(self, pattern: Pattern, *, groups: bool) -> Any:
        flags = pattern.options if groups else pattern.options | REG_NOSUB
        return PosixRegex(pattern.text, flags)

    def _enter(self) -> int:
        return enter_c_locale()

    def _leave(self, saved: int) -> None:
        leave_c_locale(saved)

    def _expression(self, pattern: Pattern) -> Expression:
        options = pattern.options
        text = pattern.text.split(b"\0", 1)[0]
        if not options & REG_EXTENDED:
            return Expression(pattern.pid, None)  # basic REs: always tried
        flags = HS_CASELESS if options & REG_ICASE else 0
        flags |= HS_MULTILINE if options & REG_NEWLINE else HS_DOTALL
        literal = None if options & REG_NEWLINE else anchored_literal(text)
        return Expression(pattern.pid, ere_to_pcre(text), flags, literal)
