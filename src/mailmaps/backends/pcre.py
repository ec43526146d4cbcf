"""``pcre:`` tables: Perl-compatible regular expressions, as ``dict_pcre.c`` runs them.

Patterns are compiled by the system's PCRE2 library in byte mode with ``PCRE2_CASELESS |
PCRE2_DOTALL``; the flags toggle: ``i`` CASELESS, ``m`` MULTILINE, ``s`` DOTALL, ``x`` EXTENDED,
``A`` ANCHORED, ``E`` DOLLAR_ENDONLY, ``U`` UNGREEDY; ``X`` is obsolete (a warning).  There is no
second-pattern form: ``/a/!/b/`` is an unknown option ``!``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from mailmaps.backends._rules import Pattern, Rule, RuleTable, _Problem
from mailmaps.engines import CompileError
from mailmaps.engines.pcre2 import (
    PCRE2_ANCHORED,
    PCRE2_CASELESS,
    PCRE2_DOLLAR_ENDONLY,
    PCRE2_DOTALL,
    PCRE2_EXTENDED,
    PCRE2_MULTILINE,
    PCRE2_UNGREEDY,
    PcreRegex,
    error_message,
)
from mailmaps.engines.prefilter import (
    HS_CASELESS,
    HS_DOTALL,
    HS_MULTILINE,
    Expression,
    anchored_literal,
)

__all__ = ["PcreTable"]

_FLAGS = {
    ord("i"): PCRE2_CASELESS,
    ord("m"): PCRE2_MULTILINE,
    ord("s"): PCRE2_DOTALL,
    ord("x"): PCRE2_EXTENDED,
    ord("A"): PCRE2_ANCHORED,
    ord("E"): PCRE2_DOLLAR_ENDONLY,
    ord("U"): PCRE2_UNGREEDY,
}


class PcreTable(RuleTable):
    """A ``pcre:`` table."""

    map_type: ClassVar[str] = "pcre"
    unclosed_action: ClassVar[str] = "ignoring this rule"
    zero_index: ClassVar[str] = "out of range replacement index"
    default_options: ClassVar[int] = PCRE2_CASELESS | PCRE2_DOTALL

    def _flag(self, letter: int, options: int, lineno: int) -> int:
        bit = _FLAGS.get(letter)
        shown = bytes([letter]).decode("utf-8", "surrogateescape")
        if bit is not None:
            return options ^ bit
        if letter == ord("X"):
            self._warn(lineno, f'ignoring obsolete regexp option "{shown}"')
            return options
        raise _Problem(f'unknown regexp option "{shown}": skipping this rule')

    def _compile(self, pattern: Pattern, *, groups: bool) -> Any:
        try:
            return PcreRegex(pattern.text, pattern.options)
        except CompileError as exc:
            offset = getattr(exc, "offset", 0)
            raise CompileError(f"error in regex at offset {offset}: {exc}") from exc

    def _exec_warning(self, rule: Rule, exc: Exception) -> None:
        self._warn(rule.lineno, error_message(int(str(exc))))

    def _expression(self, pattern: Pattern) -> Expression:
        options = pattern.options
        text = pattern.text.split(b"\0", 1)[0]
        flags = HS_CASELESS if options & PCRE2_CASELESS else 0
        flags |= HS_DOTALL if options & PCRE2_DOTALL else 0
        flags |= HS_MULTILINE if options & PCRE2_MULTILINE else 0
        literal = None
        if not options & (PCRE2_MULTILINE | PCRE2_EXTENDED):
            literal = anchored_literal(text)
        if options & PCRE2_EXTENDED:
            text = b"(?x)" + text
        if options & PCRE2_ANCHORED:
            text = b"\\A(?:" + text + (b"\n)" if options & PCRE2_EXTENDED else b")")
        # UNGREEDY and DOLLAR_ENDONLY change which match is found or narrow "$": without them
        # the expression still matches at least as much.
        return Expression(pattern.pid, text, flags, literal)
