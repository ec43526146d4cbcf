"""``hash:`` and ``btree:`` tables: Berkeley DB files ``NAME.db``, as Postfix's ``dict_db.c``.

Files are opened the way ``dict_db_open()`` opens them with Berkeley DB 3 or later, so that real
Postfix and mailmaps read and update each other's files:

* a private environment (``DB_INIT_MPOOL | DB_CREATE | DB_PRIVATE``) whose home is the table's
  directory, and the file opened by its base name in it (Postfix's workaround for Berkeley DB
  reading ``./DB_CONFIG``);
* ``DB_HASH`` tables get ``set_h_nelem(4096)`` (``DICT_DB_NELM``);
* the memory pool is at least ``berkeley_db_read_buffer_size`` (128 kB) for lookups and updates and
  at least ``berkeley_db_create_buffer_size`` (16 MB) for builds.  Postfix's own comment in
  ``mkmap_db.c`` notes that hash builds slow down badly unless the pool is O(file size); a bulk
  build here therefore sizes the pool from the data (up to :data:`MAX_CREATE_BUFFER_SIZE`).  The
  pool size is not stored in the file;
* read-only opens use ``DB_RDONLY``; writable opens neither create nor truncate;
* locking is ``flock()`` on the ``.db`` file (Postfix's ``myflock()`` with ``lock_style =
  flock`` on Linux): shared while the file is opened and for each lookup or sequence step,
  exclusive for each update or delete;
* an update that finds its key refuses to overwrite it (``DB_NOOVERWRITE``) unless duplicates
  are replaced (``-r``), and the table reports a duplicate.

Handles are opened with ``DB_THREAD`` so that one open table may serve lookups from several
threads; that flag is a property of the handle, not of the file.  The driver is the
``berkeleydb`` package (``pip install 'mailmaps[bdb]'``), built against the same Berkeley DB
library as Postfix; it is imported when a table is first opened.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

from mailmaps.backends._indexed import IndexedTable
from mailmaps.errors import BackendUnavailable, ConfigError, PermanentLookupError
from mailmaps.table import OpenOptions

__all__ = [
    "DB_CREATE_BUFFER_SIZE",
    "DB_READ_BUFFER_SIZE",
    "DICT_DB_NELM",
    "MAX_CREATE_BUFFER_SIZE",
    "BtreeTable",
    "HashTable",
]

#: ``set_h_nelem()`` of every hash table Postfix creates or opens (``dict_db.c``).
DICT_DB_NELM = 4096
#: Postfix's ``berkeley_db_read_buffer_size``: the memory pool of a table opened for lookups.
DB_READ_BUFFER_SIZE = 128 * 1024
#: Postfix's ``berkeley_db_create_buffer_size``: the smallest memory pool of a build.
DB_CREATE_BUFFER_SIZE = 16 * 1024 * 1024
#: The largest memory pool a bulk build sizes for itself.
MAX_CREATE_BUFFER_SIZE = 1024 * 1024 * 1024

# Berkeley DB file size per stored byte and per entry, measured for hash files (btree files are
# smaller); used only to size a build's memory pool.
_SIZE_FACTOR = 2
_ENTRY_OVERHEAD = 16


def _driver(map_type: str) -> Any:
    """Import the ``berkeleydb`` driver, or say how to install it."""
    try:
        from berkeleydb import db
    except ImportError as exc:
        raise BackendUnavailable(map_type, "bdb", str(exc)) from exc
    return db


def _strerror(exc: BaseException) -> str:
    """What Postfix's ``%m`` prints for a Berkeley DB error: the errno text when there is one."""
    args = exc.args
    if args and isinstance(args[0], int) and args[0] > 0:
        return os.strerror(args[0])
    if len(args) > 1:
        return str(args[1])
    return str(exc)


def _open_db(
    bdb: Any, path: str, db_type: int, flags: int, cache_size: int, *, nelem: int = DICT_DB_NELM
) -> tuple[Any, Any]:
    """Open ``path`` as ``dict_db_open()`` does: private environment, then the database."""
    env = bdb.DBEnv()
    try:
        # dict_db_new_env(): only ever enlarge the library's default pool.
        gbytes, nbytes, ncache = env.get_cachesize()
        if gbytes == 0 and nbytes < cache_size:
            env.set_cache_max(0, cache_size)
            env.set_cachesize(0, cache_size, ncache)
        home = os.path.dirname(path) or "."
        env.open(home, bdb.DB_INIT_MPOOL | bdb.DB_CREATE | bdb.DB_PRIVATE | bdb.DB_THREAD, 0)
        handle = bdb.DB(env)
        try:
            if db_type == bdb.DB_HASH:
                handle.set_h_nelem(nelem)
            handle.open(os.path.basename(path), None, db_type, flags | bdb.DB_THREAD, 0o644)
        except BaseException:
            handle.close()
            raise
    except BaseException:
        env.close()
        raise
    return env, handle


class _BerkeleyTable(IndexedTable):
    """What ``hash:`` and ``btree:`` share: everything but the access method."""

    suffix: ClassVar[str] = ".db"
    default_nul: ClassVar[bool] = True
    lock_style: ClassVar[str] = "flock"
    #: The Berkeley DB access method: ``"DB_HASH"`` or ``"DB_BTREE"``.
    access_method: ClassVar[str] = ""

    _db: Any = None
    _env: Any = None

    @classmethod
    def duplicate_label(cls, name: str) -> str:
        return name + ".db"

    def _open(self, writable: bool) -> None:
        bdb = _driver(self.map_type)
        # The lock file descriptor also proves that the file exists: a missing file is an
        # OSError here, which IndexedTable.open() reports as "open database NAME.db: ...".
        self._lock_fd = os.open(self.path, (os.O_RDWR if writable else os.O_RDONLY) | os.O_CLOEXEC)
        try:
            with self._lock(False):
                self._env, self._db = _open_db(
                    bdb,
                    self.path,
                    getattr(bdb, self.access_method),
                    0 if writable else bdb.DB_RDONLY,
                    DB_READ_BUFFER_SIZE,
                )
        except bdb.DBError as exc:
            os.close(self._lock_fd)
            self._lock_fd = -1
            raise ConfigError(f"open database {self.path}: {_strerror(exc)}") from exc
        except BaseException:
            os.close(self._lock_fd)
            self._lock_fd = -1
            raise
        self._db_get = self._db.get
        self._db_error = bdb.DBError
        self._key_exists = bdb.DBKeyExistError
        self._not_found = bdb.DBNotFoundError
        self._no_overwrite = bdb.DB_NOOVERWRITE

    def _get(self, key: bytes) -> bytes | None:
        try:
            value: bytes | None = self._db_get(key)
        except self._db_error as exc:
            raise PermanentLookupError(f"error reading {self.path}: {_strerror(exc)}") from exc
        return value

    def _put(self, key: bytes, value: bytes, *, overwrite: bool) -> bool:
        try:
            self._db.put(key, value, flags=0 if overwrite else self._no_overwrite)
        except self._key_exists:
            return False
        except self._db_error as exc:
            raise PermanentLookupError(f"error writing {self.path}: {_strerror(exc)}") from exc
        return True

    def _remove(self, key: bytes) -> bool:
        try:
            self._db.delete(key)
        except self._not_found:
            return False
        except self._db_error as exc:
            raise PermanentLookupError(
                f"error deleting from {self.path}: {_strerror(exc)}"
            ) from exc
        return True

    def _raw_items(self) -> Iterator[tuple[bytes, bytes]]:
        cursor = self._db.cursor()
        try:
            entry = cursor.first()
            while entry is not None:
                yield entry
                entry = cursor.next()
        except self._db_error as exc:
            raise PermanentLookupError(
                f"error [{exc.args[0] if exc.args else 0}] seeking {self.path}: {_strerror(exc)}"
            ) from exc
        finally:
            cursor.close()

    def close(self) -> None:
        try:
            if self._db is not None:
                handle, self._db = self._db, None
                try:
                    handle.close()  # flushes the memory pool, as dict_db_close() does
                except self._db_error as exc:
                    raise ConfigError(f"flush database {self.path}: {_strerror(exc)}") from exc
                finally:
                    self._env.close()
                    self._env = None
        finally:
            super().close()  # closes the lock descriptor too

    @classmethod
    def write_file(
        cls, path: str, items: Iterable[tuple[bytes, bytes]], options: OpenOptions
    ) -> None:
        bdb = _driver(cls.map_type)
        entries = items if isinstance(items, list) else list(items)
        payload = sum(len(k) + len(v) for k, v in entries) + _ENTRY_OVERHEAD * len(entries)
        cache = min(max(DB_CREATE_BUFFER_SIZE, _SIZE_FACTOR * payload), MAX_CREATE_BUFFER_SIZE)
        db_type = getattr(bdb, cls.access_method)
        try:
            env, handle = _open_db(bdb, path, db_type, bdb.DB_CREATE | bdb.DB_EXCL, cache)
        except bdb.DBError as exc:
            raise ConfigError(f"open database {path}: {_strerror(exc)}") from exc
        try:
            put = handle.put
            for key, value in entries:
                put(key, value)
        except bdb.DBError as exc:
            raise ConfigError(f"error writing {path}: {_strerror(exc)}") from exc
        finally:
            try:
                handle.close()  # writes every page and syncs the file
            except bdb.DBError as exc:
                raise ConfigError(f"flush database {path}: {_strerror(exc)}") from exc
            finally:
                env.close()


class HashTable(_BerkeleyTable):
    """A ``hash:`` table: ``NAME.db``, a Berkeley DB ``DB_HASH`` file."""

    map_type: ClassVar[str] = "hash"
    access_method: ClassVar[str] = "DB_HASH"


class BtreeTable(_BerkeleyTable):
    """A ``btree:`` table: ``NAME.db``, a Berkeley DB ``DB_BTREE`` file (sorted sequence)."""

    map_type: ClassVar[str] = "btree"
    access_method: ClassVar[str] = "DB_BTREE"
