"""Find, in one pass over a key, every pattern of a large table that might match it.

Postfix tries a ``regexp:`` or ``pcre:`` table's rules one by one; with thousands of rules that
is thousands of regex runs per lookup.  A :class:`Prefilter` answers "which patterns can match
this key?" at once, and the exact engine then runs only on those (and on the rules the prefilter
cannot speak for).  The answer is a *superset*: a pattern left out certainly does not match, so
the table's answer is the same as Postfix's.

Two mechanisms share the work:

* patterns that are an anchored literal (``^user@example\\.com$``), the commonest kind in large
  generated tables, go into a dictionary keyed by the literal;
* every other pattern goes into a Hyperscan/Vectorscan database (the ``hyperscan`` package, the
  ``pcre`` extra), compiled in *prefilter mode*, in which Hyperscan may report more matches than
  the pattern has but never fewer.  Patterns it cannot compile are always candidates.

Starting a Hyperscan scan of a key costs far more than the scan itself (about 4 µs against
0.05 µs for a 10,000-pattern database), so most patterns are not scanned for as such: a pattern
whose every match contains some literal text (``+w123@`` in ``^([^@+]+)\\+w123@(.+)$``, see
:mod:`mailmaps.engines.literals`) is a candidate when that text occurs in the key.  The literals
of all patterns form one Hyperscan database, and :meth:`Prefilter.candidates_many` scans a whole
batch of keys with it as one buffer, the keys joined by newlines (no literal holds a newline, so
every occurrence lies within one key).  Patterns without a usable literal, or whose literal many
other patterns share, go into a second database of full expressions, scanned key by key.

Compiling a large database takes seconds, so the result is cached on disk under a hash of the
patterns (``$MAILMAPS_CACHE_DIR``, else ``$XDG_CACHE_HOME/mailmaps``, else ``~/.cache/mailmaps``;
``MAILMAPS_CACHE_DIR=off`` turns the cache off) and reopening the table is fast.
"""

from __future__ import annotations

import hashlib
import importlib
import logging
import os
import re
import tempfile
import threading
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailmaps.engines.literals import required_literals

__all__ = [
    "Expression",
    "Prefilter",
    "anchored_literal",
    "available",
    "cache_dir",
    "cache_key",
    "version",
]

log = logging.getLogger("mailmaps")

_hs: Any
try:  # the accelerator is optional: without it, required literals are found in Python
    _hs = importlib.import_module("hyperscan")
except ImportError:  # pragma: no cover - depends on the installation
    _hs = None

#: Hyperscan flag bits (stable across versions: they are part of its C API).
HS_CASELESS = 1
HS_DOTALL = 2
HS_MULTILINE = 4
_HS_SINGLEMATCH = 8
_HS_ALLOWEMPTY = 16
_HS_PREFILTER = 128
#: Extra flags of the full expressions, scanned key by key.
_SOLO = _HS_SINGLEMATCH | _HS_ALLOWEMPTY | _HS_PREFILTER
#: How much text one batch scan covers at most.
_BATCH_BYTES = 1 << 16
#: A literal shorter than this selects too many keys to be worth it.
MIN_LITERAL = 3
#: Literals longer than this are cut to their most selective window.
LITERAL_WINDOW = 8
#: A literal required by more patterns than this is a poor selector: they are scanned for as
#: full expressions.
MAX_SHARED = 32

# PCRE constructs that Hyperscan rejects or that need a closer look: such patterns are
# test-compiled one by one before they join the big database.
_UNUSUAL = re.compile(rb"\(\*|\(\?[^:]|\\[GKCXRgNpPkcoulULEQ]|\\x\{")
# Characters that are literal in both ERE and PCRE outside brackets.
_LITERAL = re.compile(rb"(?:[^\\^$.|?*+()\[\]{}]|\\[^0-9A-Za-z])*")


def available() -> bool:
    """Whether the Hyperscan accelerator is installed."""
    return _hs is not None


def anchored_literal(pattern: bytes) -> bytes | None:
    """The literal text of a pattern of the form ``^literal$`` (escaped punctuation allowed),
    in the syntax ERE and PCRE share, or ``None``."""
    if len(pattern) < 2 or pattern[:1] != b"^" or pattern[-1:] != b"$" or pattern[-2:] == b"\\$":
        return None
    body = pattern[1:-1]
    if _LITERAL.fullmatch(body) is None:
        return None
    return re.sub(rb"\\(.)", rb"\1", body, flags=re.DOTALL)


def cache_dir() -> Path | None:
    """Where compiled databases are cached, or ``None`` when caching is off."""
    value = os.environ.get("MAILMAPS_CACHE_DIR")
    if value == "off":
        return None
    if value:
        return Path(value)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "mailmaps"


@dataclass(frozen=True, slots=True)
class Expression:
    """One pattern as the prefilter sees it.

    :param pid: the caller's pattern id, reported back by :meth:`Prefilter.candidates`.
    :param expression: a Hyperscan (PCRE-syntax) expression, or ``None`` when the pattern
        cannot be expressed (it is then always a candidate).
    :param flags: ``HS_CASELESS``, ``HS_DOTALL``, ``HS_MULTILINE`` bits.
    :param literal: set when the pattern matches exactly the keys equal to this text (or to it
        plus a final newline); such patterns skip Hyperscan.
    """

    pid: int
    expression: bytes | None
    flags: int = 0
    literal: bytes | None = None


class Prefilter:
    """The candidates finder for one table; build it with :meth:`build`."""

    def __init__(
        self,
        literals: Any,
        solo: Any,
        always: list[int],
        exact: dict[bytes, list[int]],
        folded: dict[bytes, list[int]],
        windows: _Windows | None = None,
    ) -> None:
        self._literals = literals
        self._solo = solo
        self._always = always
        self._exact = exact
        self._folded = folded
        self._windows = windows
        self._local = threading.local()

    @classmethod
    def load(cls, key: str) -> Prefilter | None:
        """The prefilter cached under ``key`` (see :func:`cache_key`), or ``None``."""
        where = cache_dir()
        if _hs is None or where is None:
            return None
        try:
            blob = (where / f"prefilter-{key}.hs").read_bytes()
            head, sep, data = blob.partition(b"\ndata\n")
            if not sep:
                return None
            always: list[int] = []
            exact: dict[bytes, list[int]] = {}
            folded: dict[bytes, list[int]] = {}
            sizes = [0, 0]
            for line in head.split(b"\n"):
                kind, _, rest = line.partition(b" ")
                if kind == b"always":
                    always = [int(x) for x in rest.split()]
                elif kind == b"sizes":
                    sizes = [int(x) for x in rest.split()]
                elif kind in (b"exact", b"folded"):
                    pid, _, text = rest.partition(b" ")
                    table = exact if kind == b"exact" else folded
                    table.setdefault(bytes.fromhex(text.decode()), []).append(int(pid))
            if sum(sizes) != len(data):
                return None
            literal_data, solo_data = data[: sizes[0]], data[sizes[0] :]
            literal_db = _hs.loadb(literal_data, _hs.HS_MODE_BLOCK) if literal_data else None
            solo_db = _hs.loadb(solo_data, _hs.HS_MODE_BLOCK) if solo_data else None
        except (OSError, ValueError, _hs.error):
            return None
        return cls(literal_db, solo_db, always, exact, folded)

    @classmethod
    def build(cls, expressions: Sequence[Expression], key: str | None = None) -> Prefilter:
        """Compile the prefilter for ``expressions``; with ``key``, also cache it under that key.

        Without the accelerator, the required literals are looked up in a dictionary, window by
        window of the key, and every pattern without one is always a candidate.
        """
        exact: dict[bytes, list[int]] = {}
        folded: dict[bytes, list[int]] = {}
        always: list[int] = []
        rest: list[Expression] = []
        lines: list[bytes] = []
        for item in expressions:
            if item.literal is not None:
                caseless = bool(item.flags & HS_CASELESS)
                literal = item.literal.lower() if caseless else item.literal
                (folded if caseless else exact).setdefault(literal, []).append(item.pid)
                kind = b"folded" if caseless else b"exact"
                lines.append(b"%s %d %s" % (kind, item.pid, literal.hex().encode()))
            elif item.expression is None:
                always.append(item.pid)
            else:
                rest.append(item)
        literals, solo = _choose_literals(rest)
        if _hs is None:
            always += [item.pid for item in solo]
            always.sort()
            return cls(None, None, always, exact, folded, _Windows(literals))
        literal_db = _literal_database(literals) if literals else None
        solo_db, rejected = _database(solo, _SOLO) if solo else (None, [])
        always.extend(rejected)
        always.sort()
        where = cache_dir()
        if key is not None and where is not None:
            literal_data = _hs.dumpb(literal_db) if literal_db is not None else b""
            solo_data = _hs.dumpb(solo_db) if solo_db is not None else b""
            lines.insert(0, b"always " + b" ".join(b"%d" % pid for pid in always))
            lines.insert(1, b"sizes %d %d" % (len(literal_data), len(solo_data)))
            _save(
                where / f"prefilter-{key}.hs",
                b"\n".join(lines) + b"\ndata\n" + literal_data + solo_data,
            )
        return cls(literal_db, solo_db, always, exact, folded)

    @property
    def always(self) -> list[int]:
        """Ids of the patterns that are candidates for every key."""
        return self._always

    def _scanners(self) -> tuple[Any, Any, list[int], Any, Any]:
        """This thread's Hyperscan scratches, hit list and match callbacks."""
        state = getattr(self._local, "state", None)
        if state is None:
            hits: list[int] = []
            append = hits.append

            def on_literal(pid: int, start: int, end: int, flags: int, context: Any) -> None:
                append(end << 32 | pid)

            def on_solo(pid: int, start: int, end: int, flags: int, context: Any) -> None:
                append(pid)

            state = self._local.state = (
                _hs.Scratch(self._literals) if self._literals is not None else None,
                _hs.Scratch(self._solo) if self._solo is not None else None,
                hits,
                on_literal,
                on_solo,
            )
        return state

    def _known(self, key: bytes) -> list[int]:
        """The candidates that need no scan: the always ones and the anchored literals."""
        found = self._always.copy()
        if self._exact:
            hit = self._exact.get(key)
            if hit:
                found += hit
        if self._folded:
            hit = self._folded.get(key.lower())
            if hit:
                found += hit
        if key.endswith(b"\n"):  # "$" also matches before a final newline
            found += self._exact.get(key[:-1], ())
            found += self._folded.get(key[:-1].lower(), ())
        if self._windows is not None:
            found += self._windows.hits(key)
        return found

    def candidates(self, key: bytes) -> list[int]:
        """Ids of the patterns that might match ``key`` (unordered; may repeat or hold extra
        ones)."""
        found = self._known(key)
        if self._literals is not None or self._solo is not None:
            literal_scratch, solo_scratch, hits, on_literal, on_solo = self._scanners()
            if self._literals is not None:
                self._literals.scan(key, match_event_handler=on_literal, scratch=literal_scratch)
                found += [hit & 0xFFFFFFFF for hit in hits]
                hits.clear()
            if self._solo is not None:
                self._solo.scan(key, match_event_handler=on_solo, scratch=solo_scratch)
                found += hits
                hits.clear()
        return found

    def candidates_many(self, keys: Sequence[bytes]) -> list[list[int]]:
        """:meth:`candidates` for each of ``keys``, with one scan per batch of keys."""
        if self._always or self._exact or self._folded or self._windows:
            found = [self._known(key) for key in keys]
        else:
            found = [[] for _ in keys]
        if self._literals is None and self._solo is None:
            return found
        literal_scratch, solo_scratch, hits, on_literal, on_solo = self._scanners()
        if self._literals is not None:
            first = 0
            while first < len(keys):
                # Keys from ``first`` to ``last`` joined by newlines, about _BATCH_BYTES long.
                starts = []
                offset = 0
                last = first
                while last < len(keys) and (offset < _BATCH_BYTES or last == first):
                    starts.append(offset)
                    offset += len(keys[last]) + 1
                    last += 1
                self._literals.scan(
                    b"\n".join(keys[first:last]),
                    match_event_handler=on_literal,
                    scratch=literal_scratch,
                )
                for hit in hits:
                    # The key the literal ends in (it lies within that key).
                    found[first + bisect_right(starts, hit >> 32) - 1].append(hit & 0xFFFFFFFF)
                hits.clear()
                first = last
        if self._solo is not None:
            scan = self._solo.scan
            for key, into in zip(keys, found, strict=True):
                scan(key, match_event_handler=on_solo, scratch=solo_scratch)
                if hits:
                    into += hits
                    hits.clear()
        return found


class _Windows:
    """Required literals found without the accelerator: each window of the key as long as
    some literal is looked up in a dictionary."""

    def __init__(self, literals: list[tuple[int, bytes, bool]]) -> None:
        self._exact: dict[bytes, list[int]] = {}
        self._folded: dict[bytes, list[int]] = {}
        for pid, text, caseless in literals:
            table = self._folded if caseless else self._exact
            table.setdefault(text.lower() if caseless else text, []).append(pid)
        self._exact_widths = sorted({len(text) for text in self._exact})
        self._folded_widths = sorted({len(text) for text in self._folded})

    def __bool__(self) -> bool:
        return bool(self._exact or self._folded)

    def hits(self, key: bytes) -> list[int]:
        """Ids of the patterns whose literal occurs in ``key`` (may repeat)."""
        found: list[int] = []
        for table, widths, text in (
            (self._exact, self._exact_widths, key),
            (self._folded, self._folded_widths, key.lower()),
        ):
            get = table.get
            for width in widths:
                for i in range(len(text) - width + 1):
                    hit = get(text[i : i + width])
                    if hit:
                        found += hit
        return found


def _choose_literals(
    items: list[Expression],
) -> tuple[list[tuple[int, bytes, bool]], list[Expression]]:
    """Split ``items`` into (pattern id, literal, caseless) triples, one per top-level
    alternative, and the patterns to scan for as full expressions.

    Each alternative gets the window of at most :data:`LITERAL_WINDOW` bytes of its required
    literals that the fewest patterns share: Hyperscan's literal matcher works on short
    literals, and a long one that ends in text common to many (``.example.net``) would make
    it confirm every such occurrence against all of them.
    """
    options: list[tuple[Expression, list[list[bytes]]]] = []
    shared: dict[bytes, int] = {}
    solo: list[Expression] = []
    for item in items:
        assert item.expression is not None
        alternatives = required_literals(item.expression)
        if alternatives is not None:
            caseless = bool(item.flags & HS_CASELESS)
            per_alternative = [
                [
                    window.lower() if caseless else window
                    for run in runs
                    if len(run) >= MIN_LITERAL and b"\n" not in run
                    for window in _windows(run)
                ]
                for runs in alternatives
            ]
            if all(per_alternative):
                options.append((item, per_alternative))
                for window in {w.lower() for windows in per_alternative for w in windows}:
                    shared[window] = shared.get(window, 0) + 1
                continue
        solo.append(item)
    literals: list[tuple[int, bytes, bool]] = []
    for item, alternatives in options:
        chosen = [min(windows, key=lambda w: shared[w.lower()]) for windows in alternatives]
        if any(shared[window.lower()] > MAX_SHARED for window in chosen):
            solo.append(item)
            continue
        caseless = bool(item.flags & HS_CASELESS)
        literals += [(item.pid, window, caseless) for window in chosen]
    return literals, solo


def _windows(run: bytes) -> list[bytes]:
    """The windows of ``run`` that may stand for it, longest first then leftmost."""
    width = min(len(run), LITERAL_WINDOW)
    return [run[i : i + width] for i in range(len(run) - width + 1)]


def _literal_database(literals: list[tuple[int, bytes, bool]]) -> Any:
    """One database that reports every occurrence of each literal."""
    assert _hs is not None
    database = _hs.Database(mode=_hs.HS_MODE_BLOCK)
    database.compile(
        expressions=[b"".join(b"\\x%02x" % c for c in text) for _, text, _ in literals],
        ids=[pid for pid, _, _ in literals],
        elements=len(literals),
        flags=[HS_CASELESS if caseless else 0 for _, _, caseless in literals],
    )
    return database


def _compiles(items: Sequence[Expression], extra: int) -> Any:
    """Compile ``items`` into one database, each with its flags and ``extra``; raise
    Hyperscan's error if any is rejected."""
    assert _hs is not None
    database = _hs.Database(mode=_hs.HS_MODE_BLOCK)
    database.compile(
        expressions=[item.expression for item in items],
        ids=[item.pid for item in items],
        elements=len(items),
        flags=[item.flags | extra for item in items],
    )
    return database


def _accepted(items: list[Expression], extra: int) -> tuple[list[Expression], list[int]]:
    """Split ``items`` into those Hyperscan compiles and the ids of those it rejects."""
    good: list[Expression] = []
    bad: list[int] = []
    for item in items:
        try:
            _compiles([item], extra)
        except _hs.error:
            bad.append(item.pid)
        else:
            good.append(item)
    return good, bad


def _split(items: list[Expression], extra: int) -> tuple[Any, list[int]]:
    """Compile what Hyperscan accepts, finding the rejected ones by halving (the rare path)."""
    try:
        return _compiles(items, extra), []
    except _hs.error:
        if len(items) <= 8:
            good, bad = _accepted(items, extra)
            return (_compiles(good, extra) if good else None), bad
    middle = len(items) // 2
    _, bad_left = _split(items[:middle], extra)
    _, bad_right = _split(items[middle:], extra)
    rejected = set(bad_left) | set(bad_right)
    good = [item for item in items if item.pid not in rejected]
    return (_compiles(good, extra) if good else None), sorted(rejected)


def _database(items: list[Expression], extra: int) -> tuple[Any, list[int]]:
    """Compile ``items`` into one database; return it and the ids Hyperscan rejected."""
    usual: list[Expression] = []
    unusual: list[Expression] = []
    for item in items:
        (unusual if _UNUSUAL.search(item.expression or b"") else usual).append(item)
    good, rejected = _accepted(unusual, extra)
    database, more = _split(usual + good, extra)
    return database, sorted(set(rejected) | set(more))


def cache_key(*parts: bytes) -> str:
    """A cache key for a prefilter built from a table's patterns (pass everything the
    expressions depend on: the engine, the patterns and their options)."""
    digest = hashlib.sha256(b"mailmaps-prefilter-4 hyperscan-%s\n" % version().encode())
    for part in parts:
        digest.update(b"%d:" % len(part))
        digest.update(part)
    return digest.hexdigest()


def version() -> str:
    """The accelerator's version (``"none"`` without it)."""
    return str(getattr(_hs, "__version__", "none"))


def _save(path: Path, blob: bytes) -> None:
    """Write the cache file atomically; a cache that cannot be written is not an error."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".prefilter-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(blob)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as exc:
        log.debug("prefilter cache %s not written: %s", path, exc)
