"""``cidr:`` tables: IPv4 and IPv6 networks, as ``dict_cidr.c`` and ``cidr_match.c`` read them.

A table is a list of rules read from logical lines::

    192.168.0.0/16      result for a network
    [2001:db8::1]       result for one host (brackets are optional)
    !10.0.0.0/8         result for every IPv4 address outside the network
    if 172.16.0.0/12
    172.16.1.0/24       result, tried only when the IF matched
    endif

The key must be one IP address in the text form ``inet_pton()`` accepts (the C library's own,
through :func:`socket.inet_pton`); anything else is "not found".  A key with a ``:`` is IPv6
(``::ffff:1.2.3.4`` too), any other key IPv4; a rule or IF of the other family never matches, not
even a negated one.  The first rule that matches gives its result, verbatim.  Keys are never
case-folded.

Loading follows Postfix to the letter, warnings included (``cidr map NAME, line N: ...: skipping
this rule``): a bad pattern, a network with host bits set, a rule without a result, garbage after
ENDIF and an ENDIF without IF are skipped; an IF without ENDIF hides the rest of the table when it
is false.  Two C details show through: the mask length is stored in an ``unsigned char``, so
``/264`` is ``/8``; and with ``-F`` (:attr:`~mailmaps.table.OpenOptions.rhs_is_file`) IF and ENDIF
lines have an empty file list, so Postfix skips them all.

Evaluation does not walk the rules.  Each rule's effective address set (its network, or the
complement for ``!``, intersected with the sets of its enclosing IFs) is painted, in rule order,
onto the elementary intervals of the address line; the earliest rule wins each interval.  A
lookup is then one binary search per key, whatever the table's size.  A family whose painting
would be disproportionately large (many nested negated IFs) is answered by Postfix's ordered
scan instead; both routes give the same answers.
"""

from __future__ import annotations

import logging
import socket
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

from mailmaps.backends._pattern import RuleFileTable, RuleKind
from mailmaps.source import base64_file_value, c_string, logical_lines
from mailmaps.table import OpenOptions
from mailmaps.text import decode

__all__ = ["CidrPatternError", "CidrRule", "CidrTable", "RuleKind", "cidr_match", "parse_cidr"]

log = logging.getLogger("mailmaps")

_SPACE = b" \t\n\r\v\f"
_ALNUM = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_AF_INET = int(socket.AF_INET)
_AF_INET6 = int(socket.AF_INET6)
_BITS: dict[int, int] = {_AF_INET: 32, _AF_INET6: 128}
_LONG_MAX = (1 << 63) - 1

#: An interval ``[lo, hi)`` of addresses, as integers.
Span = tuple[int, int]
#: A family's index: interval starts (the first is 0) and the answer for each interval.
Index = tuple[list[int], list[str | None]]


@dataclass(slots=True)
class CidrRule:
    """One loaded rule: a network (``MATCH`` or ``IF``), or an ``ENDIF``."""

    kind: RuleKind
    lineno: int
    family: int = 0  # socket.AF_INET or socket.AF_INET6; 0 for ENDIF
    network: int = 0  # the network address as an integer
    prefix: int = 0  # the mask length
    positive: bool = True  # False after an odd number of "!"
    value: str = ""
    endif: int = -1  # IF: index of the matching ENDIF, or -1 when there is none

    def spans(self) -> list[Span]:
        """The addresses this rule's condition holds for (the network, or its complement)."""
        top = 1 << _BITS[self.family]
        lo = self.network
        hi = lo + (1 << (_BITS[self.family] - self.prefix))
        if self.positive:
            return [(lo, hi)]
        return [span for span in ((0, lo), (hi, top)) if span[0] < span[1]]


class _Problem(Exception):
    """A rule is skipped; the message is the warning after ``cidr map NAME, line N: ``."""


def _parse_address(text: bytes) -> tuple[int, int] | None:
    """``(family, address)`` for an address in ``inet_pton()`` syntax, or ``None``.

    The family is IPv6 when the text has a ``:``, as in ``cidr_match.c``.
    """
    family = _AF_INET6 if b":" in text else _AF_INET
    if not text.isascii():
        return None
    try:
        packed = socket.inet_pton(family, text.decode("ascii"))
    except (OSError, ValueError):
        return None
    return family, int.from_bytes(packed)


def _c_atoi_uchar(digits: bytes) -> int:
    """What C's ``unsigned char x = atoi(digits)`` stores: glibc's ``strtol`` saturates at
    ``LONG_MAX``, the conversions to ``int`` and ``unsigned char`` keep the low bits."""
    digits = digits.lstrip(b"0")
    value = _LONG_MAX if len(digits) > 19 else min(int(digits or b"0"), _LONG_MAX)
    return value & 0xFF


def _ntop(family: int, address: int) -> str:
    return socket.inet_ntop(family, address.to_bytes(_BITS[family] // 8))


def _parse_pattern(raw: bytes) -> tuple[int, int, int]:
    """Parse ``addr``, ``addr/len``, ``[addr]``, ``[addr]/len`` or ``[addr/len]``.

    Returns ``(family, network, prefix)``.

    :raises _Problem: with Postfix's wording (``cidr_match_parse()``).
    """
    pattern = raw
    mask: bytes | None = None
    if pattern[:1] == b"[":
        pattern = pattern[1:]
        close = pattern.find(b"]")
        if close < 0:
            raise _Problem(f"missing ']' character after \"[{decode(pattern)}\"")
        after = pattern[close + 1 :]
        pattern = pattern[:close]
        if after[:1] == b"/":
            mask = after[1:]
        elif after:
            raise _Problem(f'garbage after "[{decode(pattern)}]"')
    if mask is None:
        slash = pattern.find(b"/")
        if slash >= 0:
            pattern, mask = pattern[:slash], pattern[slash + 1 :]
    family = _AF_INET6 if b":" in pattern else _AF_INET
    bits = _BITS[family]
    if mask is None:
        parsed = _parse_address(pattern)
        if parsed is None:
            raise _Problem(f'bad address pattern: "{decode(pattern)}"')
        return family, parsed[1], bits
    prefix = 0
    if not mask or not mask.isdigit():
        error = "bad mask value"
    elif (prefix := _c_atoi_uchar(mask)) > bits:
        error = "bad mask length"
    elif (parsed := _parse_address(pattern)) is None:
        error = "bad network value"
    else:
        error = ""
    if error:
        raise _Problem(f'{error} in "{decode(pattern)}/{decode(mask)}"')
    assert parsed is not None
    network = parsed[1]
    host_bits = (1 << (bits - prefix)) - 1
    if network & host_bits:
        suggestion = _ntop(family, network & ~host_bits)
        raise _Problem(
            f'non-null host address bits in "{decode(pattern)}/{decode(mask)}", '
            f'perhaps you should use "{suggestion}/{prefix}" instead'
        )
    return family, network, prefix


#: A network pattern that Postfix refuses (the message is Postfix's wording).
CidrPatternError = _Problem


def parse_cidr(pattern: str) -> tuple[int, int, int]:
    """``(family, network, prefix length)`` of ``addr``, ``addr/len`` or ``[addr]/len``.

    :raises CidrPatternError: the pattern is malformed (``cidr_match_parse()``'s words).
    """
    return _parse_pattern(pattern.encode("utf-8", "surrogateescape"))


def cidr_match(network: tuple[int, int, int], address: str) -> bool:
    """Whether ``address`` (text) is in ``network`` (from :func:`parse_cidr`)."""
    family, base, prefix = network
    parsed = _parse_address(address.encode("utf-8", "surrogateescape"))
    if parsed is None or parsed[0] != family:
        return False
    shift = _BITS[family] - prefix
    return parsed[1] >> shift == base >> shift


def _clip(context: list[Span], ends: list[int], spans: list[Span]) -> list[Span]:
    """``spans`` within ``context`` (sorted disjoint intervals; ``ends`` are their ends)."""
    out: list[Span] = []
    for lo, hi in spans:
        k = bisect_right(ends, lo)
        while k < len(context) and context[k][0] < hi:
            out.append((max(lo, context[k][0]), min(hi, context[k][1])))
            k += 1
    return out


class CidrTable(RuleFileTable):
    """A ``cidr:`` table."""

    map_type: ClassVar[str] = "cidr"
    fixed_keys: ClassVar[bool] = False
    #: A family is indexed unless painting it takes more than ``index_floor`` intervals and
    #: more than ``index_budget`` intervals per rule (only nested negated IFs multiply them);
    #: it is then answered by the ordered scan.
    index_budget: ClassVar[float] = 8.0
    index_floor: ClassVar[int] = 100_000

    def __init__(self, name: str, options: OpenOptions) -> None:
        super().__init__(name, options)
        self.rules: list[CidrRule] = []
        self._index: dict[int, Index | None] = {}
        self._plan: list[tuple[RuleKind, int, int, int, bool, str, int]] | None = None

    # -- loading ------------------------------------------------------------------------------

    def _load(self, data: bytes) -> None:
        rules = self.rules
        stack: list[int] = []
        for lineno, raw in logical_lines(data, self._name):
            try:
                rule = self._parse_line(c_string(raw), lineno, nesting=len(stack))
            except _Problem as exc:
                self._warn(lineno, f"{exc}: skipping this rule")
                continue
            self._nest(rules, stack, rule)
        self._warn_unclosed(rules, stack)
        for family in _BITS:
            self._index[family] = self._build_index(family)

    def _parse_line(self, line: bytes, lineno: int, nesting: int) -> CidrRule:
        """One rule from a logical line (``dict_cidr_parse_rule()``)."""
        n = len(line)
        value = b""
        if line[:2].lower() == b"if" and (n == 2 or line[2] not in _ALNUM):
            positive, i = self._negations(line, 2)
            if i >= n:
                raise _Problem("no address pattern")
            family, network, prefix = _parse_pattern(line[i:].rstrip(_SPACE))
            rule = CidrRule(RuleKind.IF, lineno, family, network, prefix, positive)
        elif line[:5].lower() == b"endif" and (n == 5 or line[5] not in _ALNUM):
            if line[5:].lstrip(_SPACE):
                raise _Problem("garbage after ENDIF")
            if nesting == 0:
                raise _Problem("ENDIF without IF")
            rule = CidrRule(RuleKind.ENDIF, lineno)
        else:
            positive, i = self._negations(line, 0)
            # The pattern ends at the first whitespace; the result is the rest, trimmed.
            # (bytes.split() splits at exactly C's isspace() characters.)
            parts = line[i:].split(None, 1)
            pattern = parts[0] if parts else b""
            value = parts[1].rstrip(_SPACE) if len(parts) == 2 else b""
            if not pattern:
                raise _Problem("no address pattern")
            family, network, prefix = _parse_pattern(pattern)
            if not value:
                raise _Problem("no lookup result")
            rule = CidrRule(RuleKind.MATCH, lineno, family, network, prefix, positive)
        if self.options.rhs_is_file:
            # Postfix converts the value of IF and ENDIF too: an empty file list, an error.
            try:
                value = base64_file_value(decode(value))
            except OSError as exc:
                raise _Problem(str(exc.strerror)) from exc
            except ValueError as exc:
                raise _Problem(str(exc)) from exc
        rule.value = decode(value)
        return rule

    @staticmethod
    def _negations(line: bytes, i: int) -> tuple[bool, int]:
        """Skip ``!`` and whitespace from ``line[i]``; each ``!`` toggles the match."""
        positive = True
        n = len(line)
        if i < n and line[i] != 0x21 and line[i] not in _SPACE:
            return positive, i
        while i < n:
            if line[i] == 0x21:  # '!'
                positive = not positive
            elif line[i] not in _SPACE:
                break
            i += 1
        return positive, i

    # -- the index ----------------------------------------------------------------------------

    def _effective_spans(self, family: int) -> list[tuple[str, list[Span]]] | None:
        """Each ``family`` rule that can match, with the addresses it matches: its own
        condition within those of all enclosing IFs.  ``None`` when over budget."""
        everything: list[Span] = [(0, 1 << _BITS[family])]
        context = everything
        ends = [everything[0][1]]
        stack: list[tuple[list[Span], list[int]]] = []
        out: list[tuple[str, list[Span]]] = []
        budget = max(self.index_floor, self.index_budget * len(self.rules))
        total = 0
        for rule in self.rules:
            if rule.kind is RuleKind.ENDIF:
                context, ends = stack.pop()
                continue
            if rule.family != family:
                spans: list[Span] = []
            elif context is everything:
                spans = rule.spans()
            else:
                spans = _clip(context, ends, rule.spans())
            if rule.kind is RuleKind.IF:
                stack.append((context, ends))
                context, ends = spans, [hi for _, hi in spans]
            elif spans:
                out.append((rule.value, spans))
            total += len(spans)
            if total > budget:
                return None
        return out

    def _build_index(self, family: int) -> Index | None:
        """Paint the rules' spans in rule order; the first paint of an interval stays."""
        pieces = self._effective_spans(family)
        if pieces is None:
            return None
        top = 1 << _BITS[family]
        points = {0}
        for _, spans in pieces:
            for lo, hi in spans:
                points.add(lo)
                points.add(hi)
        points.discard(top)
        starts = sorted(points)
        where = {point: i for i, point in enumerate(starts)}
        where[top] = len(starts)
        owner: list[str | None] = [None] * len(starts)
        # nxt[i]: the first interval at or after i that may be unpainted (with path halving).
        nxt = list(range(len(starts) + 1))
        for value, spans in pieces:
            for lo, hi in spans:
                i, end = where[lo], where[hi]
                while i < end:
                    while nxt[i] != i:
                        nxt[i] = nxt[nxt[i]]
                        i = nxt[i]
                    if i >= end:
                        break
                    owner[i] = value
                    nxt[i] = i + 1
                    i += 1
        # Merge neighbours with the same answer.
        merged_starts = [0]
        merged_owner = [owner[0]]
        for start, answer in zip(starts, owner, strict=True):
            if answer != merged_owner[-1]:
                merged_starts.append(start)
                merged_owner.append(answer)
        return merged_starts, merged_owner

    @property
    def indexed(self) -> bool:
        """Whether both families are answered through the index (not the ordered scan)."""
        return all(index is not None for index in self._index.values())

    # -- evaluation ---------------------------------------------------------------------------

    def _scan_plan(self) -> list[tuple[RuleKind, int, int, int, bool, str, int]]:
        """The rules as tuples for :meth:`_scan`: kind, family, shift, network >> shift,
        positive, value, ENDIF index."""
        if self._plan is None:
            plan = []
            for r in self.rules:
                shift = _BITS.get(r.family, 0) - r.prefix
                plan.append(
                    (r.kind, r.family, shift, r.network >> shift, r.positive, r.value, r.endif)
                )
            self._plan = plan
        return self._plan

    def _scan(self, family: int, address: int) -> str | None:
        """Postfix's loop (``cidr_match_execute()``): every rule in order."""
        plan = self._scan_plan()
        match, if_ = RuleKind.MATCH, RuleKind.IF
        i, n = 0, len(plan)
        while i < n:
            kind, rule_family, shift, network, positive, value, endif = plan[i]
            if kind is match:
                if rule_family == family and (address >> shift == network) == positive:
                    return value
            elif kind is if_ and not (
                rule_family == family and (address >> shift == network) == positive
            ):
                if endif < 0:
                    return None
                i = endif
            i += 1
        return None

    def _find(self, key: str) -> str | None:
        if "\0" in key:
            key = key[: key.index("\0")]  # Postfix sees a C string
        family = _AF_INET6 if ":" in key else _AF_INET
        try:
            address = int.from_bytes(socket.inet_pton(family, key))
        except (OSError, ValueError):  # UnicodeEncodeError is a ValueError
            return None
        index = self._index[family]
        if index is None:
            return self._scan(family, address)
        starts, owner = index
        return owner[bisect_right(starts, address) - 1]

    def _lookup(self, key: str) -> str | None:
        return self._find(key)

    def _scan_lookup(self, key: str) -> str | None:
        """The answer by Postfix's ordered scan, never the index (for tests and checks)."""
        parsed = _parse_address(c_string(key.encode("utf-8", "surrogateescape")))
        if parsed is None:
            return None
        return self._scan(*parsed)

    def lookup_many(self, keys: Sequence[str]) -> list[str | None]:
        utf8 = self._utf8
        find = self._find
        results: list[str | None] = []
        append = results.append
        for key in keys:
            if utf8 and not key.isascii():
                append(self.lookup(key))  # with the UTF-8 checks and their warnings
                continue
            value = find(key)
            if value is not None and utf8 and not value.isascii():
                value = self._check_value(key, value)
            append(value)
        return results
