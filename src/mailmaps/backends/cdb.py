"""``cdb:`` tables: D. J. Bernstein's constant database ``NAME.cdb``, as Postfix's ``dict_cdb.c``.

Postfix builds cdb files with tinycdb; this module reads and writes the same format itself, with
no driver:

* a table of contents of 256 ``(position, slot count)`` pairs, then the records (key length,
  value length, key, value), then 256 hash tables of ``(hash, record position)`` slots; all
  numbers 32-bit little-endian;
* the hash is djb's ``h = ((h << 5) + h) ^ c`` from 5381; a key lives in table ``h & 255``,
  which has twice as many slots as keys, starting at slot ``(h >> 8) % slots`` and probing
  linearly.  Slots are filled in record order exactly as tinycdb's ``cdb_make_finish()`` fills
  them, so a build from the same entries in the same order is byte-identical to Postfix's;
* keys and values are written without a trailing NUL unless ``-N`` says so
  (``dict_cdbm_open()``); lookups try both forms, as ``dict_cdbq_lookup()`` does;
* a cdb file is never changed in place: it can be built (``postmap cdb:NAME``) or read, not
  updated (``-i``) or deleted from (``-d``), and Postfix cannot list it (``-s``).  Lookups take
  no locks: a new table is renamed over the old one.

Files are read through ``mmap``.  Writing uses the C ``djb_hash`` of the ``pure-cdb`` package
(``cdblib``) when it is installed, and a pure-Python hash otherwise.
"""

from __future__ import annotations

import errno
import functools
import mmap
import operator
import os
import struct
import sys
from array import array
from collections.abc import Callable, Iterable, Iterator
from itertools import accumulate, islice, repeat
from typing import Any, BinaryIO, ClassVar, NoReturn

from mailmaps.backends._indexed import IndexedTable
from mailmaps.errors import ConfigError, PermanentLookupError, UnsupportedOperation
from mailmaps.table import OpenOptions

__all__ = ["CdbTable", "djb_hash"]

_TOC_SIZE = 2048
_MAX_POS = 0xFFFFFFFF
_U32 = struct.Struct("<II")
_unpack_pair = _U32.unpack_from
# Records are built and written in batches, so that memory is reused instead of growing.
_BATCH = 65536


def _djb_hash_py(data: bytes) -> int:
    """djb's cdb hash in pure Python (``cdb_hash()``)."""
    h = 5381
    for c in data:
        h = (((h << 5) + h) & 0xFFFFFFFF) ^ c
    return h


def _fast_hash() -> Callable[[bytes], int] | None:
    try:
        from cdblib._djb_hash import djb_hash as c_hash
    except ImportError:
        return None
    fn: Callable[[bytes], int] = c_hash
    return fn


#: The cdb hash of a byte string: the C version from ``pure-cdb`` when it is installed.
djb_hash: Callable[[bytes], int] = _fast_hash() or _djb_hash_py

# Slots are written as one 64-bit little-endian number each: hash | position << 32.
_SLOT_CODE = next(code for code in ("Q", "L") if array(code).itemsize == 8)
_BIG_ENDIAN = sys.byteorder == "big"


def _source_writer() -> Any:
    """The optional C builder of uniform sources (``mailmaps._speedups``), or ``None``."""
    try:
        from mailmaps import _speedups
    except ImportError:  # pragma: no cover - depends on the installation
        return None
    return functools.partial(_speedups.build_uniform, format="cdb")


class CdbTable(IndexedTable):
    """A ``cdb:`` table: ``NAME.cdb``, keys and values without a trailing NUL by default."""

    map_type: ClassVar[str] = "cdb"
    suffix: ClassVar[str] = ".cdb"
    default_nul: ClassVar[bool] = False
    lock_style: ClassVar[str] = "flock"

    _mm: mmap.mmap | None = None
    _fd: int = -1

    # -- opening --------------------------------------------------------------------------

    source_writer: ClassVar[Any] = _source_writer()

    @classmethod
    def duplicate_label(cls, name: str) -> str:
        return name

    def _open(self, writable: bool) -> None:
        if writable:
            # dict_cdb_open(): -i and -d open O_RDWR, which cdb refuses before anything else.
            raise UnsupportedOperation(
                "dict_cdb_open: inappropriate open flags for cdb database"
                " - specify O_RDONLY or O_WRONLY|O_CREAT|O_TRUNC"
            )
        fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            size = os.fstat(fd).st_size
            if size < _TOC_SIZE:
                # tinycdb's cdb_init(): EPROTO.
                raise ConfigError(
                    f"dict_cdbq_open: unable to init {self.path}: {os.strerror(errno.EPROTO)}"
                )
            self._mm = mmap.mmap(fd, 0, access=mmap.ACCESS_READ)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._fsize = fsize = min(size, _MAX_POS)
        toc = struct.unpack_from("<512I", self._mm, 0)
        dend = toc[0]
        self._dend = dend = _TOC_SIZE if dend < _TOC_SIZE else min(dend, fsize)
        # (position, slot count) per hash table; a table that does not fit the file is
        # remembered as damaged (count -1), which tinycdb's cdb_find() reports as EPROTO.
        tables: list[tuple[int, int]] = []
        for t in range(256):
            pos, n = toc[2 * t], toc[2 * t + 1]
            if n and (n > fsize >> 3 or pos < dend or pos > fsize or n << 3 > fsize - pos):
                n = -1
            tables.append((pos, n))
        self._tables = tables

    # -- lookups --------------------------------------------------------------------------

    def _damaged(self) -> NoReturn:
        raise PermanentLookupError(f"error reading {self.path}: {os.strerror(errno.EPROTO)}")

    def _get(self, key: bytes) -> bytes | None:
        klen = len(key)
        dend = self._dend
        if klen >= dend:
            return None
        h = djb_hash(key)
        htab, n = self._tables[h & 255]
        if n <= 0:
            if n < 0:
                self._damaged()
            return None
        mm = self._mm
        assert mm is not None
        slot = (h >> 8) % n
        for _ in range(n):
            hval, pos = _unpack_pair(mm, htab + (slot << 3))
            if not pos:
                return None
            if hval == h:
                if pos > dend - 8:
                    self._damaged()
                rklen, vlen = _unpack_pair(mm, pos)
                if rklen == klen:
                    pos += 8
                    if dend - klen < pos:
                        self._damaged()
                    if mm[pos : pos + klen] == key:
                        pos += klen
                        if dend < vlen or dend - vlen < pos:
                            self._damaged()
                        return mm[pos : pos + vlen]
            slot += 1
            if slot == n:
                slot = 0
        return None

    # -- what cdb cannot do ----------------------------------------------------------------

    def _unsupported(self, operation: str) -> NoReturn:
        # dict_alloc.c; Postfix names an open cdb table by its file name.
        raise UnsupportedOperation(
            f"table {self.map_type}:{self.path}: {operation} operation is not supported"
        )

    def _update(self, key: str, value: str) -> None:
        self._unsupported("update")

    def _delete(self, key: str) -> bool:
        self._unsupported("delete")

    def _items(self) -> Iterator[tuple[str, str]]:
        self._unsupported("sequence")

    def _put(self, key: bytes, value: bytes, *, overwrite: bool) -> bool:
        self._unsupported("update")

    def _remove(self, key: bytes) -> bool:
        self._unsupported("delete")

    def _raw_items(self) -> Iterator[tuple[bytes, bytes]]:
        self._unsupported("sequence")

    def close(self) -> None:
        if self._mm is not None:
            self._mm.close()
            self._mm = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        super().close()

    # -- building -------------------------------------------------------------------------

    @classmethod
    def write_file(
        cls, path: str, items: Iterable[tuple[bytes, bytes]], options: OpenOptions
    ) -> None:
        """Write a cdb file at ``path`` with the entries in the order given."""
        with open(path, "xb") as out:
            _write(out, items)
            out.flush()
            os.fsync(out.fileno())


def _too_large() -> NoReturn:
    # Positions are 32-bit: tinycdb fails with ENOMEM here; say what is wrong instead.
    raise OSError(errno.EFBIG, "cdb file would exceed 4 GB")


def _write(out: BinaryIO, items: Iterable[tuple[bytes, bytes]]) -> None:
    write = out.write
    pack = _U32.pack
    hash_ = djb_hash
    lshift, or_ = operator.lshift, operator.or_
    # Each record becomes one int, hash | position << 32, kept in its hash table's list in
    # record order.
    buckets: list[list[int]] = [[] for _ in range(256)]
    append = [bucket.append for bucket in buckets]
    write(bytes(_TOC_SIZE))
    pos = _TOC_SIZE
    iterator = iter(items)
    while batch := list(islice(iterator, _BATCH)):
        records = [pack(len(k), len(v)) + k + v for k, v in batch]
        starts = list(accumulate(map(len, records), initial=pos))
        pos = starts.pop()
        if pos > _MAX_POS:
            _too_large()
        write(b"".join(records))
        for code in map(or_, map(hash_, [k for k, _ in batch]), map(lshift, starts, repeat(32))):
            append[code & 255](code)
        del records, starts, batch

    # cdb_make_finish(): every table's position and size must fit 32 bits.
    if pos + 16 * sum(map(len, buckets)) > _MAX_POS + 1:
        _too_large()
    toc = array("I", bytes(_TOC_SIZE))
    for t, bucket in enumerate(buckets):
        toc[2 * t] = pos
        if not bucket:
            continue
        n = len(bucket) << 1
        toc[2 * t + 1] = n
        slots = [0] * n
        for code in bucket:
            i = ((code & 0xFFFFFFFF) >> 8) % n
            if slots[i]:
                i += 1
                while True:
                    if i == n:
                        i = 0
                    if not slots[i]:
                        break
                    i += 1
            slots[i] = code
        table = array(_SLOT_CODE, slots)
        if _BIG_ENDIAN:
            table.byteswap()
        write(table.tobytes())
        pos += n << 3
    if _BIG_ENDIAN:
        toc.byteswap()
    out.seek(0)
    write(toc.tobytes())
