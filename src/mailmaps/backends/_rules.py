"""The rule language of ``regexp:`` and ``pcre:`` tables (``dict_regexp.c``, ``dict_pcre.c``).

A table is a list of rules read from logical lines::

    /pattern/flags  result with $1 and ${2}
    !/pattern/      result when the pattern does not match
    if /pattern/
    /pattern/       result, tried only when the IF matched
    endif

The first rule that matches the key (searched, not anchored; keys are never case-folded) gives
the result, with ``$n`` replaced by group n of its pattern.  Loading follows Postfix to the
letter, warnings included: a bad rule is skipped with a warning naming the table and line; an
ENDIF without IF is ignored; an IF without ENDIF hides the rest of the table when it is false; an
IF whose pattern does not compile is dropped, but its ENDIF is still counted and may close an
outer IF.

Evaluation has two routes with the same answers.  The plain route walks the rules in order as
Postfix does.  With a :mod:`~mailmaps.engines.prefilter` (large tables), one pass over the key
finds every positive pattern that might match; the only rules that can then give the answer are
those candidates and the negated rules, each reachable only when its enclosing IFs hold, so the
exact engine runs on a handful of rules instead of all of them.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from mailmaps.backends._pattern import RuleFileTable, RuleKind
from mailmaps.engines import CompileError
from mailmaps.engines.prefilter import Expression, Prefilter, cache_key
from mailmaps.errors import LookupFailed
from mailmaps.source import base64_file_value, c_string, logical_lines
from mailmaps.table import OpenOptions
from mailmaps.text import decode, encode

__all__ = ["Pattern", "Rule", "RuleKind", "RuleTable", "parse_replacement"]

log = logging.getLogger("mailmaps")

_SPACE = b" \t\n\r\v\f"
_UNKNOWN = object()  # a key that was not prefetched
_ALNUM = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_NAME = _ALNUM | {ord("_")}
_NEGATION_OR_SPACE = frozenset(b"! \t\n\r\v\f")


class Engine(Protocol):
    """What a compiled pattern offers (PosixRegex, PcreRegex)."""

    nsub: int

    def search(self, subject: bytes) -> bool: ...

    def match(self, subject: bytes) -> list[tuple[int, int]] | None: ...


@dataclass(slots=True)
class Pattern:
    """One ``[!]/pattern/flags`` of a rule."""

    text: bytes
    flags: bytes
    positive: bool
    options: int  # the engine's option bits after the flags
    engine: Any = None  # the compiled pattern (PosixRegex or PcreRegex)
    pid: int = -1  # position in the table's pattern list


@dataclass(slots=True)
class Rule:
    """One loaded rule.  ``replacement`` is a list of literal bytes and group numbers."""

    kind: RuleKind
    lineno: int
    first: Pattern | None = None
    second: Pattern | None = None
    replacement: list[bytes | int] = field(default_factory=list)
    max_sub: int = 0
    endif: int = -1  # IF: index of the matching ENDIF, or -1 when there is none
    parents: tuple[int, ...] = ()  # indexes of the enclosing IF rules, outermost first
    #: The result when it has no ``$n`` (``$$`` already made ``$``), computed once at load.
    literal: bytes | None = None


class _Problem(Exception):
    """A rule is skipped; the message is the warning after ``map NAME, line N: ``."""


def parse_replacement(
    text: bytes,
    warn: Callable[[str], None],
    mac_warn: Callable[[str], None],
    zero_index: str = "out-of-range replacement index",
) -> list[bytes | int] | None:
    """Split replacement text into literals and ``$n`` references as ``mac_parse()`` does.

    ``$$`` is ``$``; ``$name`` takes letters, digits and ``_``; ``${...}`` and ``$(...)`` may
    nest.  A reference must be all digits and at least 1.  Returns ``None`` (after the warnings
    Postfix gives) when the text is unusable.
    """
    if b"$" not in text:
        return [text] if text else []
    parts: list[bytes | int] = []
    buf = bytearray()
    error = False
    i, n = 0, len(text)
    shown = text.decode("utf-8", "surrogateescape")
    while i < n:
        ch = text[i]
        if ch != 0x24:  # '$'
            buf.append(ch)
            i += 1
            continue
        if i + 1 < n and text[i + 1] == 0x24:
            buf.append(0x24)
            i += 2
            continue
        if buf:
            parts.append(bytes(buf))
            buf.clear()
        i += 1
        if i < n and text[i] in b"({":
            opening = text[i]
            closing = 0x29 if opening == 0x28 else 0x7D
            level = 1
            i += 1
            j = i
            while level > 0:
                if j >= n:
                    mac_warn(f'truncated macro reference: "{shown}"')
                    error = True
                    break
                if text[j] == opening:
                    level += 1
                elif text[j] == closing:
                    level -= 1
                j += 1
            if error:
                break
            name = text[i : j - 1]
            i = j
        else:
            j = i
            while j < n and text[j] in _NAME:
                j += 1
            name = text[i:j]
            i = j
        if not name:
            mac_warn(f'empty macro name: "{shown}"')
            error = True
            break
        shown_name = name.decode("utf-8", "surrogateescape")
        if not name.isdigit():
            warn(f'non-numeric replacement index "{shown_name}"')
            error = True
            continue
        number = int(name)
        if number < 1:
            warn(f'{zero_index} "{shown_name}"')
            error = True
            continue
        parts.append(number)
    if error:
        return None
    if buf:
        parts.append(bytes(buf))
    return parts


#: Lookups a table answers rule by rule before it builds its prefilter: building one costs
#: about as much as this many rule-by-rule lookups, whatever the table's size (a cached
#: prefilter is used at once).
PREFILTER_AFTER = 64
#: Tables with fewer positive patterns than this are always evaluated rule by rule.
PREFILTER_MIN_PATTERNS = 8
#: How many keys of a lookup_many() call are scanned by the prefilter at a time.
_BATCH_KEYS = 4096


def prefilter_policy() -> str:
    """``MAILMAPS_PREFILTER``: ``auto`` (the default), ``always`` or ``never``."""
    return os.environ.get("MAILMAPS_PREFILTER", "auto")


class RuleTable(RuleFileTable):
    """Base of the ``regexp:`` and ``pcre:`` tables: loading, and both evaluation routes.

    Subclasses describe their dialect: the default options, the flag letters, whether
    ``/a/!/b/`` is allowed, how a pattern is compiled and how the prefilter sees it.
    """

    fixed_keys: ClassVar[bool] = False
    #: Whether the flags of a pattern stop at ``!`` (regexp's second-pattern form).
    second_pattern: ClassVar[bool] = False
    #: Wording of the "no closing delimiter" warning's end.
    unclosed_action: ClassVar[str] = "skipping this rule"
    #: Wording of the warning for ``$0``.
    zero_index: ClassVar[str] = "out-of-range replacement index"
    default_options: ClassVar[int] = 0

    def __init__(self, name: str, options: OpenOptions) -> None:
        super().__init__(name, options)
        self.rules: list[Rule] = []
        self.patterns: list[Pattern] = []
        self._prefilter: Prefilter | None = None
        self._countdown = PREFILTER_AFTER  # lookups until the prefilter is built; -1: never
        self._neg_rules: list[int] = []  # rules to try whatever the prefilter says
        self._rule_of: list[int] = []  # pattern id -> index of its MATCH rule, or -1
        #: The patterns the prefilter speaks for: positive first patterns and positive IFs.
        self._positives: list[Pattern] = []
        self._prefetched: dict[str, str | None] | None = None

    # -- answers computed ahead -----------------------------------------------------------------

    def lookup(self, key: str) -> str | None:
        prefetched = self._prefetched
        if prefetched is not None:
            found = prefetched.get(key, _UNKNOWN)
            if found is not _UNKNOWN:
                return found  # type: ignore[return-value]
        return super().lookup(key)

    def prefetch(self, keys: Sequence[str]) -> None:
        """Answer ``keys`` now, in one batch (:meth:`lookup_many`, one prefilter scan for
        all), for the :meth:`lookup` calls that follow until :meth:`forget`.  The rules are
        in memory and never change, so the answers are those the lookups would give.  A batch
        that fails is not kept (each lookup then says so itself)."""
        try:
            self._prefetched = dict(zip(keys, self.lookup_many(keys), strict=True))
        except LookupFailed:
            self._prefetched = None

    def forget(self) -> None:
        """Drop what :meth:`prefetch` computed."""
        self._prefetched = None

    # -- what a dialect provides ----------------------------------------------------------------

    def _flag(self, letter: int, options: int, lineno: int) -> int:
        """Apply one flag letter to ``options``; raise :class:`_Problem` for an unknown one."""
        raise NotImplementedError

    def _compile(self, pattern: Pattern, *, groups: bool) -> Any:
        """Compile ``pattern``; ``groups`` says whether sub-matches will be asked for.

        :raises CompileError: with the warning text Postfix gives.
        """
        raise NotImplementedError

    def _enter(self) -> Any:
        """Prepare the calling thread for evaluation (POSIX: the C locale); return what
        :meth:`_leave` needs."""
        return None

    def _leave(self, saved: Any) -> None:
        """Undo :meth:`_enter`."""

    def _expression(self, pattern: Pattern) -> Expression:
        """How the prefilter sees ``pattern`` (an expression of at least its matches)."""
        raise NotImplementedError

    def _engine_version(self) -> str:
        """What, besides the patterns, the prefilter's expressions depend on (cache key)."""
        return f"{self.map_type} translation-1"

    # -- loading ------------------------------------------------------------------------------

    def _load(self, data: bytes) -> None:
        rules = self.rules
        stack: list[int] = []
        for lineno, raw in logical_lines(data, self._name):
            line = c_string(raw).rstrip(_SPACE)
            if not line:
                continue
            try:
                rule = self._parse_line(line, lineno, nesting=len(stack))
            except _Problem as exc:
                self._warn(lineno, str(exc))
                continue
            if rule is None:
                continue
            rule.parents = tuple(stack)
            self._nest(rules, stack, rule)
        self._warn_unclosed(rules, stack)
        self._index()
        self._plan_prefilter()

    def _index(self) -> None:
        """Number the patterns and note the rules every evaluation must try."""
        for index, rule in enumerate(self.rules):
            for pattern in (rule.first, rule.second):
                if pattern is not None:
                    pattern.pid = len(self.patterns)
                    self.patterns.append(pattern)
                    self._rule_of.append(
                        index if rule.kind is RuleKind.MATCH and pattern is rule.first else -1
                    )
            if rule.first is not None:
                if rule.first.positive:
                    self._positives.append(rule.first)
                elif rule.kind is RuleKind.MATCH:
                    self._neg_rules.append(index)

    def _plan_prefilter(self) -> None:
        policy = prefilter_policy()
        if policy == "never" or len(self._positives) < PREFILTER_MIN_PATTERNS:
            self._countdown = -1
        if policy == "always":
            self.build_prefilter()
        elif self._countdown >= 0:
            self.build_prefilter(cached_only=True)

    def build_prefilter(self, *, cached_only: bool = False) -> bool:
        """Build the prefilter now (normally done after a few lookups); return whether the
        table has one.  With ``cached_only``, only a prefilter found in the cache is used."""
        if self._prefilter is None:
            patterns = self._positives
            parts = [self._engine_version().encode()]
            for p in patterns:
                parts.append(b"%d %d %s" % (p.pid, p.options, p.text))
            key = cache_key(*parts)
            self._prefilter = Prefilter.load(key)
            if self._prefilter is None and not cached_only:
                expressions = [self._expression(p) for p in patterns]
                self._prefilter = Prefilter.build(expressions, key)
        if self._prefilter is not None or not cached_only:
            self._countdown = -1  # built, or cannot be: don't try again
        return self._prefilter is not None

    def _get_pattern(self, text: bytes, i: int, lineno: int) -> tuple[Pattern, int]:
        """Parse ``[!...]DELIM pattern DELIM flags`` at ``text[i:]``; return it and the end."""
        n = len(text)
        if i < n and text[i] not in _NEGATION_OR_SPACE:
            # The common case, found with bytes.find: no "!" and no backslash in the pattern.
            end = text.find(text[i : i + 1], i + 1)
            if end > 0 and text.find(b"\\", i + 1, end) < 0:
                j = end + 1
                options = self.default_options
                while (
                    j < n
                    and text[j] not in _SPACE
                    and not (self.second_pattern and text[j] == 0x21)
                ):
                    options = self._flag(text[j], options, lineno)
                    j += 1
                return Pattern(text[i + 1 : end], text[end + 1 : j], True, options), j
        positive = True
        while i < n:
            if text[i] == 0x21:  # '!'
                positive = not positive
            elif text[i] not in _SPACE:
                break
            i += 1
        if i >= n:
            raise _Problem("no regexp: skipping this rule")
        delim = text[i]
        i += 1
        start = i
        while i < n:
            if text[i] == 0x5C:  # backslash: keep it, skip what it protects
                if i + 1 >= n:
                    break
                i += 1
            elif text[i] == delim:
                break
            i += 1
        if i >= n:
            shown = bytes([delim]).decode("utf-8", "surrogateescape")
            raise _Problem(f'no closing regexp delimiter "{shown}": {self.unclosed_action}')
        body = text[start:i]
        i += 1
        flags_start = i
        options = self.default_options
        while i < n and text[i] not in _SPACE and not (self.second_pattern and text[i] == 0x21):
            options = self._flag(text[i], options, lineno)
            i += 1
        return Pattern(body, text[flags_start:i], positive, options), i

    def _compile_or_skip(self, pattern: Pattern, *, groups: bool) -> None:
        try:
            pattern.engine = self._compile(pattern, groups=groups)
        except CompileError as exc:
            raise _Problem(str(exc)) from exc

    def _parse_line(self, line: bytes, lineno: int, nesting: int) -> Rule | None:
        if line[0] not in _ALNUM:
            return self._parse_match(line, lineno)
        if line[:2].lower() == b"if" and (len(line) == 2 or line[2] not in _ALNUM):
            i = 2
            while i < len(line) and line[i] in _SPACE:
                i += 1
            pattern, i = self._get_pattern(line, i, lineno)
            extra = line[i:].lstrip(_SPACE)
            if extra:
                shown = extra.decode("utf-8", "surrogateescape")
                self._warn(lineno, f'ignoring extra text after IF statement: "{shown}"')
                self._warn(lineno, "do not prepend whitespace to statements between IF and ENDIF")
            self._compile_or_skip(pattern, groups=False)
            return Rule(RuleKind.IF, lineno, first=pattern)
        if line[:5].lower() == b"endif" and (len(line) == 5 or line[5] not in _ALNUM):
            if nesting == 0:
                raise _Problem("ignoring ENDIF without matching IF")
            if line[5:].lstrip(_SPACE):
                self._warn(lineno, "ignoring extra text after ENDIF")
            return Rule(RuleKind.ENDIF, lineno)
        raise _Problem("ignoring unrecognized request")

    def _parse_match(self, line: bytes, lineno: int) -> Rule:
        first, i = self._get_pattern(line, 0, lineno)
        second = None
        if self.second_pattern and i < len(line) and line[i] == 0x21:
            second, i = self._get_pattern(line, i, lineno)
        text = line[i:].lstrip(_SPACE)
        if not text:
            self._warn(lineno, "no replacement text: using empty string")
        if self.options.rhs_is_file:
            try:
                text = base64_file_value(decode(text))
            except (OSError, ValueError) as exc:
                reason = exc.strerror if isinstance(exc, OSError) else str(exc)
                raise _Problem(f"{reason}: skipping this rule") from exc
        replacement = parse_replacement(
            text,
            lambda msg: self._warn(lineno, msg),
            lambda msg: log.warning("%s", msg),
            self.zero_index,
        )
        if replacement is None:
            raise _Problem("bad replacement syntax: skipping this rule")
        max_sub = max((p for p in replacement if isinstance(p, int)), default=0)
        if max_sub and not first.positive:
            raise _Problem("$number found in negative match replacement text: skipping this rule")
        if max_sub and not self.options.regsub:
            raise _Problem("regular expression substitution is not allowed: skipping this rule")
        self._compile_or_skip(first, groups=max_sub > 0)
        if max_sub > first.engine.nsub:
            raise _Problem(f'out of range replacement index "{max_sub}": skipping this rule')
        if second is not None:
            self._compile_or_skip(second, groups=False)
        literal = None if max_sub else b"".join(p for p in replacement if isinstance(p, bytes))
        return Rule(RuleKind.MATCH, lineno, first, second, replacement, max_sub, literal=literal)

    # -- evaluation ---------------------------------------------------------------------------

    def _test(self, rule: Rule, pattern: Pattern, key: bytes) -> bool:
        """Whether ``pattern``'s condition holds for ``key``; an engine error counts as false."""
        try:
            found = pattern.engine.search(key)
        except RuntimeError as exc:
            self._exec_warning(rule, exc)
            return False
        return bool(found) == pattern.positive

    def _exec_warning(self, rule: Rule, exc: Exception) -> None:
        self._warn(rule.lineno, str(exc))

    def _fire(self, rule: Rule, key: bytes) -> bytes | None:
        """The result of MATCH ``rule`` for ``key``, or ``None`` when it does not match."""
        first = rule.first
        assert first is not None
        if rule.max_sub:
            try:
                spans = first.engine.match(key)
            except RuntimeError as exc:
                self._exec_warning(rule, exc)
                return None
            if spans is None:
                return None
        elif not self._test(rule, first, key):
            return None
        else:
            spans = None
        if rule.second is not None and not self._test(rule, rule.second, key):
            return None
        if spans is None:
            literal = rule.literal
            assert literal is not None
            return literal
        out = []
        for part in rule.replacement:
            if isinstance(part, int):
                start, end = spans[part]
                if start >= 0:
                    out.append(key[start:end])
            else:
                out.append(part)
        return b"".join(out)

    def _scan(self, key: bytes) -> bytes | None:
        """Postfix's loop: every rule in order."""
        rules = self.rules
        i, n = 0, len(rules)
        while i < n:
            rule = rules[i]
            if rule.kind is RuleKind.MATCH:
                result = self._fire(rule, key)
                if result is not None:
                    return result
            elif rule.kind is RuleKind.IF:
                assert rule.first is not None
                if not self._test(rule, rule.first, key):
                    if rule.endif < 0:
                        return None
                    i = rule.endif
            i += 1
        return None

    def _filtered(self, key: bytes, candidates: list[int]) -> bytes | None:
        """The answer from the rules that can give it, given the prefilter's ``candidates``
        (ids of positive patterns that might match; every other positive pattern does not)."""
        if not candidates and not self._neg_rules:
            return None
        rules = self.rules
        rule_of = self._rule_of
        if len(candidates) == 1 and not self._neg_rules:  # the common case, in short
            index = rule_of[candidates[0]]
            if index < 0:
                return None
            if not rules[index].parents:
                return self._fire(rules[index], key)
        order = {rule_of[pid] for pid in candidates}
        order.discard(-1)
        if self._neg_rules:
            order.update(self._neg_rules)
        if not order:
            return None
        maybe: set[int] | None = None
        truth: dict[int, bool] = {}
        for index in sorted(order):
            rule = rules[index]
            if rule.parents:
                if maybe is None:
                    maybe = set(candidates)
                reach = self._reachable(rule, key, maybe, truth)
                if reach is None:
                    return None  # a false IF without ENDIF: nothing after it can match
                if not reach:
                    continue
            result = self._fire(rule, key)
            if result is not None:
                return result
        return None

    def _reachable(
        self, rule: Rule, key: bytes, maybe: set[int], truth: dict[int, bool]
    ) -> bool | None:
        """Whether every IF around ``rule`` holds; ``None`` when a false one has no ENDIF."""
        rules = self.rules
        for parent in rule.parents:
            ok = truth.get(parent)
            if ok is None:
                cond = rules[parent]
                first = cond.first
                assert first is not None
                if first.positive and first.pid not in maybe:
                    ok = False
                else:
                    ok = self._test(cond, first, key)
                truth[parent] = ok
            if not ok:
                return None if rules[parent].endif < 0 else False
        return True

    def _lookup_bytes(self, key: bytes) -> bytes | None:
        key = c_string(key)  # Postfix sees a C string
        if self._countdown > 0:
            self._countdown -= 1
        elif self._countdown == 0:
            self.build_prefilter()
        saved = self._enter()
        try:
            prefilter = self._prefilter
            if prefilter is None:
                return self._scan(key)
            return self._filtered(key, prefilter.candidates(key))
        finally:
            self._leave(saved)

    def _lookup(self, key: str) -> str | None:
        result = self._lookup_bytes(encode(key))
        return None if result is None else decode(result)

    def lookup_many(self, keys: Sequence[str]) -> list[str | None]:
        if 0 <= self._countdown <= len(keys):
            self.build_prefilter()
        elif self._countdown > 0:
            self._countdown -= len(keys)
        utf8 = self._utf8
        results: list[str | None] = []
        append = results.append
        prefilter = self._prefilter
        saved = self._enter()
        try:
            for base in range(0, len(keys), _BATCH_KEYS):
                chunk = keys[base : base + _BATCH_KEYS]
                # Non-ASCII keys in UTF-8 mode go through lookup(), with its checks and warnings.
                raws = [
                    None
                    if utf8 and not key.isascii()
                    else c_string(key.encode("utf-8", "surrogateescape"))
                    for key in chunk
                ]
                if prefilter is not None:
                    candidates = iter(
                        prefilter.candidates_many([raw for raw in raws if raw is not None])
                    )
                for key, raw in zip(chunk, raws, strict=True):
                    if raw is None:
                        append(self.lookup(key))
                        continue
                    if prefilter is None:
                        found = self._scan(raw)
                    else:
                        found = self._filtered(raw, next(candidates))
                    if found is None:
                        append(None)
                    elif utf8 and not found.isascii():
                        append(self._check_value(key, found.decode("utf-8", "surrogateescape")))
                    else:
                        append(found.decode("utf-8", "surrogateescape"))
        finally:
            self._leave(saved)
        return results
