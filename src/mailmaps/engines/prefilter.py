"""Find, in one pass over a key, every pattern of a large table that might match it.

Postfix tries a ``regexp:`` or ``pcre:`` table's rules one by one; with thousands of rules that
is thousands of regex runs per lookup.  A :class:`Prefilter` answers "which patterns can match
this key?" at once, and the exact engine then runs only on those (and on the rules the prefilter
cannot speak for).  The answer is a *superset*: a pattern left out certainly does not match, so
the table's answer is the same as Postfix's.

Two mechanisms share the work:

* patterns that are an anchored literal (``^user@example\\.com$``), the commonest kind in large
  generated tables, go into a dictionary keyed by the literal;
* every other pattern goes into one Hyperscan/Vectorscan database (the ``hyperscan`` package, the
  ``pcre`` extra), compiled in *prefilter mode*, in which Hyperscan may report more matches than
  the pattern has but never fewer.  Patterns it cannot compile are always candidates.

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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["Expression", "Prefilter", "anchored_literal", "available", "cache_dir", "cache_key"]

log = logging.getLogger("mailmaps")

_hs: Any
try:  # the accelerator is optional: without it, tables are evaluated rule by rule
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
        database: Any,
        always: list[int],
        exact: dict[bytes, list[int]],
        folded: dict[bytes, list[int]],
    ) -> None:
        self._db = database
        self._always = always
        self._exact = exact
        self._folded = folded
        self._local = threading.local()

    @classmethod
    def load(cls, key: str) -> Prefilter | None:
        """The prefilter cached under ``key`` (see :func:`cache_key`), or ``None``."""
        where = cache_dir()
        if _hs is None or where is None:
            return None
        try:
            blob = (where / f"prefilter-{key}.hs").read_bytes()
            head, sep, data = blob.partition(b"\ndb\n")
            if not sep:
                return None
            always: list[int] = []
            exact: dict[bytes, list[int]] = {}
            folded: dict[bytes, list[int]] = {}
            for line in head.split(b"\n"):
                kind, _, rest = line.partition(b" ")
                if kind == b"always":
                    always = [int(x) for x in rest.split()]
                elif kind in (b"exact", b"folded"):
                    pid, _, text = rest.partition(b" ")
                    table = exact if kind == b"exact" else folded
                    table.setdefault(bytes.fromhex(text.decode()), []).append(int(pid))
            database = _hs.loadb(data, _hs.HS_MODE_BLOCK) if data else None
        except (OSError, ValueError, _hs.error):
            return None
        return cls(database, always, exact, folded)

    @classmethod
    def build(cls, expressions: Sequence[Expression], key: str | None = None) -> Prefilter | None:
        """Compile the prefilter for ``expressions``; with ``key``, also cache it under that key.

        Returns ``None`` when the accelerator is not installed (every pattern would be a
        candidate).
        """
        if _hs is None:
            return None
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
        database = None
        if rest:
            database, rejected = _database(rest)
            always.extend(rejected)
        always.sort()
        where = cache_dir()
        if key is not None and where is not None:
            lines.insert(0, b"always " + b" ".join(b"%d" % pid for pid in always))
            data = _hs.dumpb(database) if database is not None else b""
            _save(where / f"prefilter-{key}.hs", b"\n".join(lines) + b"\ndb\n" + data)
        return cls(database, always, exact, folded)

    @property
    def always(self) -> list[int]:
        """Ids of the patterns that are candidates for every key."""
        return self._always

    def _scanner(self) -> tuple[Any, list[int], Any]:
        """This thread's Hyperscan scratch, result list and match callback."""
        state = getattr(self._local, "state", None)
        if state is None:
            hits: list[int] = []
            append = hits.append

            def on_match(pid: int, start: int, end: int, flags: int, context: Any) -> None:
                append(pid)

            state = self._local.state = (_hs.Scratch(self._db), hits, on_match)
        return state

    def candidates(self, key: bytes) -> list[int]:
        """Ids of the patterns that might match ``key`` (unordered; may hold extra ones)."""
        found = self._always.copy()
        if self._exact:
            hit = self._exact.get(key)
            if hit:
                found += hit
        if self._folded:
            hit = self._folded.get(key.lower())
            if hit:
                found += hit
        if key[-1:] == b"\n":  # "$" also matches before a final newline
            found += self._exact.get(key[:-1], ())
            found += self._folded.get(key[:-1].lower(), ())
        if self._db is not None:
            scratch, hits, on_match = self._scanner()
            self._db.scan(key, match_event_handler=on_match, scratch=scratch)
            if hits:
                found += hits
                hits.clear()
        return found


def _compiles(items: Sequence[Expression]) -> Any:
    """Compile ``items`` into one database; raise Hyperscan's error if any is rejected."""
    assert _hs is not None
    database = _hs.Database(mode=_hs.HS_MODE_BLOCK)
    extra = _HS_SINGLEMATCH | _HS_ALLOWEMPTY | _HS_PREFILTER
    database.compile(
        expressions=[item.expression for item in items],
        ids=[item.pid for item in items],
        elements=len(items),
        flags=[item.flags | extra for item in items],
    )
    return database


def _accepted(items: list[Expression]) -> tuple[list[Expression], list[int]]:
    """Split ``items`` into those Hyperscan compiles and the ids of those it rejects."""
    good: list[Expression] = []
    bad: list[int] = []
    for item in items:
        try:
            _compiles([item])
        except _hs.error:
            bad.append(item.pid)
        else:
            good.append(item)
    return good, bad


def _split(items: list[Expression]) -> tuple[Any, list[int]]:
    """Compile what Hyperscan accepts, finding the rejected ones by halving (the rare path)."""
    try:
        return _compiles(items), []
    except _hs.error:
        if len(items) <= 8:
            good, bad = _accepted(items)
            return (_compiles(good) if good else None), bad
    middle = len(items) // 2
    _, bad_left = _split(items[:middle])
    _, bad_right = _split(items[middle:])
    rejected = set(bad_left) | set(bad_right)
    good = [item for item in items if item.pid not in rejected]
    return (_compiles(good) if good else None), sorted(rejected)


def _database(items: list[Expression]) -> tuple[Any, list[int]]:
    """Compile ``items`` into one database; return it and the ids Hyperscan rejected."""
    usual: list[Expression] = []
    unusual: list[Expression] = []
    for item in items:
        (unusual if _UNUSUAL.search(item.expression or b"") else usual).append(item)
    good, rejected = _accepted(unusual)
    database, more = _split(usual + good)
    return database, sorted(set(rejected) | set(more))


def cache_key(*parts: bytes) -> str:
    """A cache key for a prefilter built from a table's patterns (pass everything the
    expressions depend on: the engine, the patterns and their options)."""
    digest = hashlib.sha256(b"mailmaps-prefilter-2 hyperscan-%s\n" % _version().encode())
    for part in parts:
        digest.update(b"%d:" % len(part))
        digest.update(part)
    return digest.hexdigest()


def _version() -> str:
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
