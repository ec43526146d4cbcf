"""What the on-disk key/value tables (lmdb, hash, btree, cdb) share.

* The trailing-NUL convention (``dict_lmdb.c``, ``dict_db.c``, ``dict_cdb.c``): Postfix writes keys
  and values as C strings, with the terminating NUL for lmdb/hash/btree and without it for cdb,
  unless ``-N``/``-n`` say otherwise.  Readers try ``key\\0`` first and then ``key``; the first
  form that matches sticks.  Values are read up to their first NUL.
* Bulk builds (postmap) never touch the target: entries are collected, checked for duplicates,
  written to a temporary file in the same directory and renamed over the target, so a reader sees
  the old table or the new one and an interrupted build leaves the old table intact.
* Postfix-style locks: ``fcntl`` (lmdb) or ``flock`` (Berkeley DB) on the table file, shared to
  read and exclusive to write, so that concurrent real Postfix programs stay consistent.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from operator import eq, itemgetter
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

from mailmaps.backends._base import BaseTable
from mailmaps.errors import ConfigError, MailmapsError
from mailmaps.source import parse_postmap_source, uniform_separator
from mailmaps.table import Duplicates, NulMode, OpenOptions, TableBuilder
from mailmaps.text import decode, encode, fold

__all__ = ["IndexedBuilder", "IndexedTable", "file_lock"]

log = logging.getLogger("mailmaps")


@contextlib.contextmanager
def file_lock(fd: int, *, exclusive: bool, style: str = "fcntl") -> Iterator[None]:
    """Hold a whole-file lock on ``fd`` as Postfix's ``myflock()`` takes it."""
    if style == "fcntl":
        fcntl.lockf(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.lockf(fd, fcntl.LOCK_UN)
    else:
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)


def _c_string(data: bytes) -> bytes:
    nul = data.find(b"\0")
    return data if nul < 0 else data[:nul]


def fold_bytes(key: bytes, utf8: bool) -> bytes:
    """Fold the case of a stored key (see :func:`mailmaps.text.fold`)."""
    if key.isascii():
        return key.lower()
    return encode(fold(decode(key), utf8))


def _is_utf8(data: bytes) -> bool:
    if data.isascii():
        return True
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


class IndexedTable(BaseTable):
    """An exact-key table stored in a file ``NAME + suffix``."""

    suffix: ClassVar[str] = ""
    #: Whether a build writes the trailing NUL when neither -N nor -n is given.
    default_nul: ClassVar[bool] = True
    #: Postfix's lock style for this file type: "fcntl" or "flock".
    lock_style: ClassVar[str] = "fcntl"

    def __init__(self, name: str, options: OpenOptions) -> None:
        super().__init__(name, options)
        self.path = name + self.suffix
        self._try_with = options.nul is not NulMode.WITHOUT
        self._try_without = options.nul is not NulMode.WITH
        self._write_nul = options.nul is NulMode.WITH or (
            options.nul is NulMode.AUTO and self.default_nul
        )
        self._lock_fd = -1
        self._batch = False  # a batch already holds the lock

    @classmethod
    def open(cls, name: str, options: OpenOptions, *, writable: bool = False) -> Self:
        table = cls(name, options)
        try:
            table._open(writable)
        except OSError as exc:
            raise ConfigError(f"open database {table.path}: {exc.strerror}") from exc
        table._warn_if_stale()
        return table

    @classmethod
    def create(cls, name: str, options: OpenOptions, *, mode: int = 0o644) -> TableBuilder:
        return IndexedBuilder(cls, name, options, mode=mode)

    def _warn_if_stale(self) -> None:
        # dict_lmdb.c, dict_db.c: "database X is older than source file Y", unless the source
        # was changed in the last 100 seconds (an edit in progress).
        try:
            source = os.stat(self._name)
            table = os.stat(self.path)
        except OSError:
            return
        if source.st_mtime > table.st_mtime and source.st_mtime < time.time() - 100:
            log.warning("database %s is older than source file %s", self.path, self._name)

    def _lock(self, exclusive: bool) -> contextlib.AbstractContextManager[None]:
        if self._lock_fd < 0 or not self.options.lock or self._batch:
            return contextlib.nullcontext()
        return file_lock(self._lock_fd, exclusive=exclusive, style=self.lock_style)

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Take the shared lock once for many lookups (one consistent view of the table).

        Postfix's daemons lock around each lookup; a caller that answers many queries in a
        row (:meth:`~mailmaps.resolver.Resolver.resolve_many`) holds the lock for a batch
        instead, as :meth:`lookup_many` does, so a writer waits at most for one batch.
        Nested holds are allowed; the lock is dropped when the outermost one ends.
        """
        if self._batch:
            yield
            return
        with self._lock(False):
            self._batch = True
            try:
                yield
            finally:
                self._batch = False

    # -- NUL conventions --------------------------------------------------------------------

    def _probe(self, get: Callable[[bytes], bytes | None], raw: bytes) -> bytes | None:
        """Find ``raw`` with ``get`` as stored with or without its NUL; the form that matches
        first is the only one tried from then on (``dict_lmdb_lookup()``, ``dict_db_get()``).

        The hot loops of :meth:`_lookup_batch` and ``LmdbTable.lookup`` inline this on purpose.
        """
        if self._try_with:
            value = get(raw + b"\0")
            if value is not None:
                self._try_without = False
                return value
        if self._try_without:
            value = get(raw)
            if value is not None:
                self._try_with = False
                return value
        return None

    def _lookup(self, key: str) -> str | None:
        with self._lock(False):
            value = self._probe(self._get, encode(key))
        return None if value is None else decode(_c_string(value))

    def lookup_many(self, keys: Sequence[str]) -> list[str | None]:
        # One lock for the whole batch.
        with self._lock(False):
            held, self._batch = self._batch, True
            try:
                return self._lookup_batch(self._get, keys)
            finally:
                self._batch = held  # still True inside a hold()

    def _lookup_batch(
        self, get: Callable[[bytes], bytes | None], keys: Sequence[str]
    ) -> list[str | None]:
        # lookup() inlined into one loop for ASCII keys, with _probe() inlined too: this is the
        # loop behind "postmap -q -", and a call per key costs more than the lookup itself.
        out: list[str | None] = []
        append = out.append
        fold, utf8 = self._fold, self._utf8
        for key in keys:
            if key.isascii():
                raw = (key.lower() if fold else key).encode()
            else:
                prepared = self.prepare_key(key)
                if prepared is None:
                    append(None)
                    continue
                raw = encode(prepared)
            value = None
            if self._try_with:
                value = get(raw + b"\0")
                if value is not None:
                    self._try_without = False
            if value is None and self._try_without:
                value = get(raw)
                if value is not None:
                    self._try_with = False
            if value is None:
                append(None)
                continue
            text = decode(_c_string(value))
            append(self._check_value(key, text) if utf8 else text)
        return out

    def _update(self, key: str, value: str) -> None:
        raw_key = encode(key)
        raw_value = encode(value)
        if self._try_with and self._try_without:
            # dict_lmdb_update(): with both forms possible, write the backend's default.
            self._try_with, self._try_without = self._write_nul, not self._write_nul
        if self._try_with:
            raw_key += b"\0"
            raw_value += b"\0"
        policy = self.options.duplicates
        with self._lock(True):
            if self._put(raw_key, raw_value, overwrite=policy is Duplicates.REPLACE):
                return
        label = self.duplicate_label(self._name)
        if policy is Duplicates.WARN:
            log.warning('%s: duplicate entry: "%s"', label, key)
        elif policy is Duplicates.ERROR:
            raise ConfigError(f'{label}: duplicate entry: "{key}"')

    def put_raw(self, key: bytes, value: bytes) -> None:
        """Store bytes exactly as given (no folding, no NUL), replacing an existing entry."""
        with self._lock(True):
            self._put(key, value, overwrite=True)

    def _delete(self, key: str) -> bool:
        raw = encode(key)
        with self._lock(True):
            if self._try_with and self._remove(raw + b"\0"):
                self._try_without = False
                return True
            if self._try_without and self._remove(raw):
                self._try_with = False
                return True
        return False

    def _items(self) -> Iterator[tuple[str, str]]:
        with self._lock(False):
            pairs = list(self._raw_items())
        for key, value in pairs:
            yield decode(_c_string(key)), decode(_c_string(value))

    def close(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1
        super().close()

    # -- what each file format implements ---------------------------------------------------

    def _open(self, writable: bool) -> None:
        raise NotImplementedError

    def _get(self, key: bytes) -> bytes | None:
        raise NotImplementedError

    def _put(self, key: bytes, value: bytes, *, overwrite: bool) -> bool:
        """Store an entry; return False if the key existed and ``overwrite`` is false."""
        raise NotImplementedError

    def _remove(self, key: bytes) -> bool:
        raise NotImplementedError

    def _raw_items(self) -> Iterator[tuple[bytes, bytes]]:
        raise NotImplementedError

    @classmethod
    def write_file(
        cls, path: str, items: Iterable[tuple[bytes, bytes]], options: OpenOptions
    ) -> None:
        """Write a complete new table file at ``path`` from entries sorted by key."""
        raise NotImplementedError

    @classmethod
    def duplicate_label(cls, name: str) -> str:
        """How Postfix names the table in its "duplicate entry" warnings (``dict_lmdb.c``
        says ``lmdb:NAME``; ``dict_db.c`` the file, ``dict_cdb.c`` the name)."""
        return f"{cls.map_type}:{name}"

    #: Builds a file straight from a uniform postmap source, in C: the signature of
    #: ``mailmaps._speedups.build_uniform``, or ``None`` where the backend has no such path.
    source_writer: ClassVar[Callable[..., list[tuple[int, bytes]] | None] | None] = None


class IndexedBuilder:
    """A bulk build of an :class:`IndexedTable` file; see :class:`~mailmaps.table.TableBuilder`.

    Entries are kept in memory until :meth:`commit`, which writes them in key order to a
    temporary file beside the target and renames it into place.
    """

    def __init__(
        self, table_cls: type[IndexedTable], name: str, options: OpenOptions, *, mode: int
    ) -> None:
        self.table_cls = table_cls
        self.name = name
        self.path = name + table_cls.suffix
        self.options = options
        self.mode = mode
        self.owner: tuple[int, int] | None = None
        self._entries: dict[bytes, bytes] = {}
        # What add_bulk() stored: entries sorted by key, with no duplicate keys.
        self._sorted: list[tuple[bytes, bytes]] = []
        self._nul = (
            b"\0"
            if (
                options.nul is NulMode.WITH
                or (options.nul is NulMode.AUTO and table_cls.default_nul)
            )
            else b""
        )
        self._done = False
        self.label = f"{table_cls.map_type}:{name}"
        self._duplicates = table_cls.duplicate_label(name)
        #: A whole source for the C writer: (text, separator, original data, path).
        self._source: tuple[bytes, bytes, bytes, str] | None = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()

    def add(self, key: str | bytes, value: str | bytes, where: str = "") -> None:
        """Store one entry (see :meth:`add_many`)."""
        raw_key = key if isinstance(key, bytes) else encode(key)
        raw_value = value if isinstance(value, bytes) else encode(value)
        self.add_many([(raw_key, raw_value, 0)], where)

    def add_many(self, entries: Iterable[tuple[bytes, bytes, int]], path: str = "") -> None:
        """Store ``(key, value, lineno)`` entries: UTF-8 checks, case folding, duplicates.

        Warnings name ``path, line N`` (or ``path`` alone when ``lineno`` is 0, or the table when
        there is no path).
        """
        opts = self.options
        utf8, do_fold, nul = opts.utf8, opts.fold, self._nul
        policy = opts.duplicates
        store = self._store()
        for key, value, lineno in entries:
            if utf8 and not (_is_utf8(key) and _is_utf8(value)):
                self._warn_non_utf8(key, value, self._where(path, lineno))
                continue
            if do_fold:
                key = key.lower() if key.isascii() else fold_bytes(key, utf8)
            stored = key + nul
            if stored not in store or policy is Duplicates.REPLACE:
                store[stored] = value + nul
            elif policy is Duplicates.WARN:
                log.warning('%s: duplicate entry: "%s"', self._duplicates, decode(key))
            elif policy is Duplicates.ERROR:
                raise ConfigError(f'{self._duplicates}: duplicate entry: "{decode(key)}"')

    def _where(self, path: str, lineno: int) -> str:
        if not path:
            return self.label
        return f"{path}, line {lineno}" if lineno else path

    @property
    def terminator(self) -> bytes:
        """What ends every stored key and value: a NUL byte, or nothing (``-N``/``-n``)."""
        return self._nul

    def add_bulk(self, keys: list[bytes], values: list[bytes], *, terminated: bool = False) -> bool:
        """Store parallel lists of keys and values into an empty build, fast.

        This is :meth:`add_many` without per-entry work in the interpreter.  It declines (and
        stores nothing) when it would have to warn or fail: when the build already has entries,
        when a key or value is not UTF-8 in UTF-8 mode, or when there are duplicate keys and the
        policy is to warn or to fail.  Returns whether it stored the entries.

        :param terminated: every key and value already ends with :attr:`terminator` (as
            :func:`mailmaps.source.parse_postmap_bulk` can arrange at no cost).
        """
        opts = self.options
        if self._entries or self._sorted or len(keys) != len(values):
            return False
        key_blob = b"\n".join(keys)
        ascii_keys = key_blob.isascii()
        value_blob = b"\n".join(values) if opts.utf8 or not terminated else b""
        if opts.utf8 and not ((ascii_keys or _is_utf8(key_blob)) and _is_utf8(value_blob)):
            return False
        nul = b"" if terminated else self._nul
        # Fold and terminate all keys (and values) in one pass over a joined copy when no key
        # holds a newline: many times faster than a call per key.
        single_line = key_blob.count(b"\n") == len(keys) - 1
        if keys and single_line and (ascii_keys or not opts.fold) and (opts.fold or nul):
            if opts.fold:
                key_blob = key_blob.lower()
            keys = (key_blob.replace(b"\n", nul + b"\n") + nul).split(b"\n")
        elif opts.fold:
            keys = [fold_bytes(k, opts.utf8) + nul for k in keys]
        elif nul:
            keys = [k + nul for k in keys]
        if values and nul and value_blob.count(b"\n") == len(values) - 1:
            values = (value_blob.replace(b"\n", nul + b"\n") + nul).split(b"\n")
        elif nul:
            values = [v + nul for v in values]
        # Sort first: then a duplicate key sits next to its twin and no dict is needed.
        items = sorted(zip(keys, values, strict=True))
        ordered = list(map(itemgetter(0), items))
        if not any(map(eq, ordered, islice(ordered, 1, None))):
            self._sorted = items
            return True
        if opts.duplicates is Duplicates.REPLACE:
            store = dict(zip(keys, values, strict=True))
        elif opts.duplicates is Duplicates.IGNORE:
            # The first value of a key wins: build from the end, so earlier entries overwrite.
            store = dict(zip(reversed(keys), reversed(values), strict=True))
        else:
            return False
        self._entries = store
        return True

    def add_source(self, data: bytes, path: str) -> bool:
        """Take a whole postmap source for the backend's C writer, when it has one and the
        source is uniform (see :func:`mailmaps.source.uniform_separator`); else store nothing
        and return False.  The file is then written by :meth:`commit`, which parses the source
        in Python after all if the writer finds a line that is not ``key SEP value``."""
        opts = self.options
        if self.table_cls.source_writer is None or self._entries or self._sorted:
            return False
        if opts.fold and not data.isascii():
            return False  # Unicode case folding is the Python code's
        found = uniform_separator(data, opts.utf8)
        if found is None:
            return False
        self._source = (found[0], found[1], data, path)
        return True

    def _write_source(self, tmp: str) -> bool:
        """Write the source taken by :meth:`add_source`; False when it was not uniform."""
        assert self._source is not None and self.table_cls.source_writer is not None
        body, sep, data, path = self._source
        opts = self.options
        lost = self.table_cls.source_writer(
            tmp,
            body,
            sep=sep[0],
            fold=opts.fold,
            nul=bool(self._nul),
            replace=opts.duplicates is Duplicates.REPLACE,
            map_size=max(opts.lmdb_map_size, 3 * len(body) + 64 * body.count(b"\n") + 65536),
        )
        if lost is None:
            self._source = None
            self.add_many(parse_postmap_source(data, path, utf8=opts.utf8), path)
            return False
        for _, key in lost:  # in line order, as the Python path warns
            if opts.duplicates is Duplicates.WARN:
                log.warning('%s: duplicate entry: "%s"', self._duplicates, decode(key))
            elif opts.duplicates is Duplicates.ERROR:
                raise ConfigError(f'{self._duplicates}: duplicate entry: "{decode(key)}"')
        return True

    def add_raw(self, key: bytes, value: bytes) -> None:
        """Store an entry exactly as given: no folding and no trailing NUL.

        postalias uses this for the NIS entries ``YP_LAST_MODIFIED`` and ``YP_MASTER_NAME``.
        """
        self._store()[key] = value

    def _warn_non_utf8(self, key: bytes, value: bytes, where: str) -> None:
        prefix = where or self.label
        if not _is_utf8(key):
            log.warning('%s: non-UTF-8 key "%s" -- ignoring this entry', prefix, decode(key))
        else:
            log.warning('%s: key "%s": non-UTF-8 value -- ignoring this entry', prefix, decode(key))

    def _store(self) -> dict[bytes, bytes]:
        # The dict of entries, taking in what add_bulk() stored.
        if self._sorted:
            self._entries = dict(self._sorted)
            self._sorted = []
        return self._entries

    def __len__(self) -> int:
        if self._source is not None:
            return self._source[0].count(b"\n") + 1
        return len(self._entries) + len(self._sorted)

    def commit(self) -> None:
        """Write the table beside the target and rename it into place."""
        if self._done:
            return
        self._done = True
        target = Path(self.path)
        fd, tmp = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=target.parent)
        os.close(fd)
        try:
            os.unlink(tmp)  # the writer creates the file itself
            if self._source is None or not self._write_source(tmp):
                # Sorting the items is cheaper than sorting the keys and looking each up.
                items = self._sorted if not self._entries else sorted(self._store().items())
                self.table_cls.write_file(tmp, items, self.options)
            os.chmod(tmp, self.mode)
            if self.owner is not None:
                os.chown(tmp, *self.owner)
            os.replace(tmp, target)
        except BaseException as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if isinstance(exc, OSError) and not isinstance(exc, MailmapsError):
                raise ConfigError(f"create database {self.path}: {exc.strerror or exc}") from exc
            raise
        finally:
            self._entries, self._sorted, self._source = {}, [], None

    def abort(self) -> None:
        """Discard the build; the target is untouched."""
        self._done = True
        self._entries, self._sorted, self._source = {}, [], None
