"""What the rule-file tables (regexp, pcre, cidr) share: where their rules come from.

A rule table is a file of logical lines, or an inline list of rules in the spec itself
(``regexp:{ {/a/ x}, {/b/ y} }``, ``dict_stream.c``): the outer braces are removed, then each
``{rule}`` item, separated by commas or whitespace, becomes one line of an in-memory file with its
surrounding whitespace removed.
"""

from __future__ import annotations

import enum
import logging
from pathlib import Path
from typing import Any, ClassVar, Self

from mailmaps.backends._base import BaseTable
from mailmaps.errors import ConfigError
from mailmaps.spec import extract_braced, split_list
from mailmaps.table import OpenOptions
from mailmaps.text import encode

__all__ = ["RuleFileTable", "RuleKind", "inline_rules", "read_rule_source"]

log = logging.getLogger("mailmaps")


class RuleKind(enum.Enum):
    """What a line of a rule table is."""

    MATCH = "match"
    IF = "if"
    ENDIF = "endif"


def inline_rules(name: str) -> str:
    """Turn an inline table body ``{ {rule}, {rule} }`` into file text, one rule per line.

    :raises ValueError: with Postfix's wording of the syntax error.
    """
    body, err = extract_braced(name, strip=False)
    if err:
        raise ValueError(err)
    lines = []
    for item in split_list(body, ", \t\n\r\v\f", "{}"):
        rule, err = extract_braced(item, strip=True)
        if err:
            raise ValueError(err)
        lines.append(rule + "\n")
    return "".join(lines)


def read_rule_source(map_type: str, name: str) -> bytes:
    """Return the rule text of the table ``map_type:name``: the file, or the inline rules.

    :raises ConfigError: the file cannot be read, or the inline syntax is wrong.
    """
    if name.startswith("{"):
        try:
            return encode(inline_rules(name))
        except ValueError as exc:
            raise ConfigError(f"{map_type} map: {exc}") from exc
    try:
        return Path(name).read_bytes()
    except OSError as exc:
        raise ConfigError(f"open {name}: {exc.strerror}") from exc


class RuleFileTable(BaseTable):
    """A read-only table loaded from rule text when it opens (regexp, pcre, cidr).

    Subclasses implement :meth:`_load`; warnings name the table and line as Postfix's do.
    """

    fixed_keys: ClassVar[bool] = False

    @classmethod
    def open(cls, name: str, options: OpenOptions, *, writable: bool = False) -> Self:
        table = super().open(name, options, writable=writable)
        table._load(read_rule_source(cls.map_type, name))
        return table

    def _load(self, data: bytes) -> None:
        raise NotImplementedError

    def _warn(self, lineno: int, text: str) -> None:
        log.warning("%s map %s, line %d: %s", self.map_type, self._name, lineno, text)

    @staticmethod
    def _nest(rules: list[Any], stack: list[int], rule: Any) -> None:
        """Append ``rule`` (with ``kind`` and ``endif``) to ``rules``, pairing each ENDIF with
        the innermost open IF as Postfix's rule stack does; ``stack`` holds the open IFs."""
        if rule.kind is RuleKind.IF:
            stack.append(len(rules))
        elif rule.kind is RuleKind.ENDIF:
            rules[stack.pop()].endif = len(rules)
        rules.append(rule)

    def _warn_unclosed(self, rules: list[Any], stack: list[int]) -> None:
        """Report the IFs left open at the end of the table, innermost first."""
        for index in reversed(stack):
            self._warn(rules[index].lineno, "IF has no matching ENDIF")
