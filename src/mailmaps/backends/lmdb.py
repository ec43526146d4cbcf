"""``lmdb:`` tables, byte-compatible with Postfix's ``NAME.lmdb`` files (lmdb_table(5)).

Postfix opens LMDB files with ``MDB_NOSUBDIR | MDB_NOLOCK`` (no ``-lock`` file; LMDB's reader
table is not used) and serialises access with ``fcntl`` locks on the ``.lmdb`` file instead
(``dict_lmdb.c``, ``slmdb.c``); so does this backend.  When a write finds the map full, the map
size is doubled and the write retried, as ``slmdb.c`` does.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator, Sequence
from fcntl import LOCK_SH, LOCK_UN, lockf
from itertools import chain
from typing import Any, ClassVar

from mailmaps.backends._indexed import IndexedTable
from mailmaps.errors import BackendUnavailable, ConfigError, PermanentLookupError
from mailmaps.table import OpenOptions
from mailmaps.text import printable

__all__ = ["LmdbTable"]


def _value(raw: bytes, utf8: bool) -> str:
    nul = raw.find(b"\0")
    if nul >= 0:
        raw = raw[:nul]
    if utf8:
        try:
            return raw.decode()
        except UnicodeDecodeError:
            shown = printable(raw)
            raise PermanentLookupError(f'non-UTF-8 value "{shown}"') from None
    return raw.decode("utf-8", "surrogateescape")


# Page overhead per entry is small; leave generous room so that a bulk build rarely retries.
_ENTRY_OVERHEAD = 64
_MAX_GROWTH = 2 * 64  # slmdb.c: bulk mode retries up to 2 * bits(size_t) times


def _fast_reader() -> Any:
    """The optional C reader (``mailmaps._speedups``), or ``None`` when it was not built."""
    try:
        from mailmaps import _speedups
    except ImportError:  # pragma: no cover - depends on the installation
        return None
    return _speedups.Reader


def _source_writer() -> Any:
    """The optional C builder (``mailmaps._speedups.build_uniform``), or ``None``."""
    try:
        from mailmaps import _speedups
    except ImportError:  # pragma: no cover - depends on the installation
        return None
    return _speedups.build_uniform


def _driver() -> Any:
    try:
        import lmdb
    except ImportError as exc:  # pragma: no cover - exercised without the extra installed
        raise BackendUnavailable("lmdb", "lmdb", str(exc)) from exc
    return lmdb


class LmdbTable(IndexedTable):
    """An ``lmdb:`` table: ``NAME.lmdb``, keys and values with a trailing NUL by default."""

    map_type: ClassVar[str] = "lmdb"
    suffix: ClassVar[str] = ".lmdb"
    default_nul: ClassVar[bool] = True
    lock_style: ClassVar[str] = "fcntl"

    _env: Any = None
    _txn: Any = None
    _fast: Any = None
    source_writer: ClassVar[Any] = _source_writer()

    def _open(self, writable: bool) -> None:
        lmdb = _driver()
        self._lmdb = lmdb
        flags = os.O_RDWR if writable else os.O_RDONLY
        self._lock_fd = os.open(self.path, flags)
        try:
            self._env = lmdb.open(
                self.path,
                subdir=False,
                lock=False,
                readonly=not writable,
                create=False,
                map_size=self.options.lmdb_map_size,
                max_dbs=0,
            )
        except lmdb.Error as exc:
            os.close(self._lock_fd)
            self._lock_fd = -1
            raise ConfigError(f"open database {self.path}: {exc}") from exc
        if not self.options.lock and not writable:
            # Without locks, one read transaction serves every lookup: the fastest path, for
            # tables that are replaced by rename (as mailmaps builds them), never changed in place.
            self._txn = self._env.begin(buffers=False)
        reader = _fast_reader()
        if reader is not None and not writable:
            # Lookups of ASCII keys in C (mailmaps._speedups), with one read transaction that
            # is renewed under the shared lock when locks are on.  The reader hands everything
            # unusual back to the Python code below by answering NotImplemented.
            try:
                self._fast = reader(
                    self.path,
                    map_size=self.options.lmdb_map_size,
                    fold=self._fold,
                    utf8=self._utf8,
                    try_with=self._try_with,
                    try_without=self._try_without,
                    lock_fd=-1 if self._txn is not None else self._lock_fd,
                    fallback=self._fallback,
                )
            except OSError:
                self._fast = None
            else:
                # table.lookup(key) goes straight to C (the method below does the same, slower).
                self.__dict__["lookup"] = self._fast.lookup

    def lookup(self, key: str) -> str | None:
        fast = self._fast
        if fast is not None:
            found: str | None
            if self._txn is not None:
                found = fast.get(key)
            else:  # Postfix's shared lock around each lookup
                lockf(self._lock_fd, LOCK_SH)
                try:
                    found = fast.get(key) if fast.renew() else NotImplemented
                finally:
                    lockf(self._lock_fd, LOCK_UN)
            if found is not NotImplemented:
                return found
            return self._fallback(key)
        return self._lookup_python(key)

    def _fallback(self, key: str) -> str | None:
        """The Python path for a key the C reader hands back, with the reader's view of which
        NUL convention the file uses (and the reader told what this lookup learns)."""
        fast = self._fast
        if fast is None:
            return self._lookup_python(key)
        self._try_with, self._try_without = bool(fast.try_with), bool(fast.try_without)
        try:
            return self._lookup_python(key)
        finally:
            fast.try_with, fast.try_without = self._try_with, self._try_without

    def _lookup_python(self, key: str) -> str | None:
        # The hot path, flattened into one call with _probe() inlined: an ASCII key needs no
        # UTF-8 check and only ASCII folding; with locks off, one long read transaction answers.
        try:
            if not key.isascii() or self._lock_fd < 0:
                return super().lookup(key)
            raw = (key.lower() if self._fold else key).encode()
            txn = self._txn
            if txn is None:
                return self._lookup_locked(raw)
            value: bytes | None = None
            if self._try_with:
                value = txn.get(raw + b"\0")
                if value is not None:
                    self._try_without = False
            if value is None and self._try_without:
                value = txn.get(raw)
                if value is None:
                    return None
                self._try_with = False
            if value is None:
                return None
            nul = value.find(b"\0")
            if nul >= 0:
                value = value[:nul]
            return value.decode() if self._utf8 else value.decode("utf-8", "surrogateescape")
        except self._lmdb.Error as exc:
            raise PermanentLookupError(f"error reading {self}: {exc}") from exc
        except UnicodeDecodeError as exc:
            raise PermanentLookupError(f'{self}: key "{key}": non-UTF-8 value') from exc

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        # One shared lock and one read transaction for every lookup until the hold ends: the
        # C reader is told not to lock, and the Python path reads the same snapshot.
        if self._txn is not None or self._lock_fd < 0 or self._env is None:
            yield  # lock-free, already held, or writable: nothing to take
            return
        fast = self._fast
        lockf(self._lock_fd, LOCK_SH)
        try:
            self._txn, self._batch = self._env.begin(buffers=False), True
            if fast is not None:
                fast.held = 1  # even if the renewal fails: the reader then hands keys back
                fast.renew()
            yield
        finally:
            if fast is not None:
                fast.held = 0
            # Dropped, not aborted: a lookup in progress on another thread still has it (the
            # transaction ends when the last reference goes).
            self._txn, self._batch = None, False
            lockf(self._lock_fd, LOCK_UN)

    def lookup_many(self, keys: Sequence[str]) -> list[str | None]:
        # One shared lock and one read transaction for the whole batch: a batch sees one
        # consistent table, and a writer waits at most for one batch.
        try:
            if self._fast is not None:
                return self._fast_batch(keys)
            if self._txn is not None:  # lock-free: the long read transaction answers
                return self._lookup_batch(self._txn.get, keys)
            if self._lock_fd < 0:
                return super().lookup_many(keys)
            with self._lock(False), self._env.begin(buffers=False) as txn:
                self._txn, self._batch = txn, True
                try:
                    return self._lookup_batch(txn.get, keys)
                finally:
                    self._txn, self._batch = None, False
        except self._lmdb.Error as exc:
            raise PermanentLookupError(f"error reading {self}: {exc}") from exc

    def _fast_batch(self, keys: Sequence[str]) -> list[str | None]:
        """lookup_many() through the C reader, in key order: a run of keys in C (under one
        shared lock when locks are on), then the key it hands back in Python, and so on."""
        fast = self._fast
        locked = self._txn is None
        values: list[str | None] = []
        while len(values) < len(keys):
            if locked:
                lockf(self._lock_fd, LOCK_SH)
                try:
                    part = fast.get_many(keys, len(values)) if fast.renew() else None
                finally:
                    lockf(self._lock_fd, LOCK_UN)
            else:
                part = fast.get_many(keys, len(values))
            if part is None:  # the reader cannot go on: the Python path for the rest
                self._fast = None
                return values + self.lookup_many(keys[len(values) :])
            values += part
            if values[-1] is NotImplemented:
                values[-1] = self._fallback(keys[len(values) - 1])
        return values

    def _lookup_locked(self, raw: bytes) -> str | None:
        fd = self._lock_fd
        lockf(fd, LOCK_SH)
        try:
            with self._env.begin(buffers=False) as txn:
                value = self._probe(txn.get, raw)
        finally:
            lockf(fd, LOCK_UN)
        return None if value is None else _value(value, self._utf8)

    def _get(self, key: bytes) -> bytes | None:
        if self._txn is not None:
            found: bytes | None = self._txn.get(key)
            return found
        with self._env.begin(buffers=False) as txn:
            value: bytes | None = txn.get(key)
        return value

    def _write(self, fn: Any) -> Any:
        lmdb = self._lmdb
        for _ in range(_MAX_GROWTH):
            try:
                with self._env.begin(write=True) as txn:
                    return fn(txn)
            except lmdb.MapFullError:
                self._env.set_mapsize(self._env.info()["map_size"] * 2)
        raise ConfigError(f"error updating {self}: map full")

    def _put(self, key: bytes, value: bytes, *, overwrite: bool) -> bool:
        try:
            result: bool = self._write(lambda txn: txn.put(key, value, overwrite=overwrite))
        except self._lmdb.Error as exc:
            raise PermanentLookupError(f"error updating {self}: {exc}") from exc
        return result

    def _remove(self, key: bytes) -> bool:
        try:
            result: bool = self._write(lambda txn: txn.delete(key))
        except self._lmdb.Error as exc:
            raise PermanentLookupError(f"error deleting from {self}: {exc}") from exc
        return result

    def _raw_items(self) -> Iterator[tuple[bytes, bytes]]:
        with self._env.begin(buffers=False) as txn:
            yield from txn.cursor()

    def close(self) -> None:
        if self._fast is not None:
            self.__dict__.pop("lookup", None)
            self._fast.close()
            self._fast = None
        if self._txn is not None:
            self._txn.abort()
            self._txn = None
        if self._env is not None:
            self._env.close()
            self._env = None
        super().close()

    @classmethod
    def write_file(
        cls, path: str, items: Iterable[tuple[bytes, bytes]], options: OpenOptions
    ) -> None:
        lmdb = _driver()
        entries = items if isinstance(items, list) else list(items)
        # Size the map from a sample of the entries; if that falls short, the map doubles.
        step = max(1, len(entries) // 4096)
        sample = entries[::step]
        per_entry = sum(map(len, chain.from_iterable(sample))) / max(1, len(sample))
        need = int((per_entry + _ENTRY_OVERHEAD) * len(entries) * 2)
        size = max(options.lmdb_map_size, need)
        for _ in range(_MAX_GROWTH):
            # MDB_WRITEMAP, as Postfix creates its files: pages are written in place, not
            # copied from malloc()ed buffers (the file is then as large as the map, sparse).
            env = lmdb.open(path, subdir=False, lock=False, map_size=size, max_dbs=0, writemap=True)
            try:
                with env.begin(write=True) as txn:
                    # Sorted input: MDB_APPEND fills pages in order, the fastest bulk load.
                    txn.cursor().putmulti(entries, append=True)
                env.sync(True)
                return
            except lmdb.MapFullError:
                size *= 2
            except lmdb.Error as exc:
                raise ConfigError(f"error updating lmdb:{path}: {exc}") from exc
            finally:
                env.close()
            os.unlink(path)
        raise ConfigError(f"error writing {path}: map full")
