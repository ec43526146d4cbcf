"""Perl-compatible regular expressions through the system's PCRE2 library (``libpcre2-8``).

This is the engine of Postfix's ``pcre:`` tables (``dict_pcre.c`` with ``HAS_PCRE == 2``): byte
mode (no ``PCRE2_UTF``), the library's built-in C-locale character tables, default match limits,
and the subject handed over as a C string.  Calling the same shared library Postfix links against
gives the same answers, compile errors and offsets included.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
from typing import Final

from mailmaps.engines import CompileError
from mailmaps.errors import ConfigError

__all__ = [
    "PCRE2_ANCHORED",
    "PCRE2_CASELESS",
    "PCRE2_DOLLAR_ENDONLY",
    "PCRE2_DOTALL",
    "PCRE2_EXTENDED",
    "PCRE2_MULTILINE",
    "PCRE2_UNGREEDY",
    "MatchError",
    "PcreRegex",
    "library_version",
]

PCRE2_CASELESS: Final = 0x00000008
PCRE2_DOLLAR_ENDONLY: Final = 0x00000010
PCRE2_DOTALL: Final = 0x00000020
PCRE2_EXTENDED: Final = 0x00000080
PCRE2_MULTILINE: Final = 0x00000400
PCRE2_UNGREEDY: Final = 0x00040000
PCRE2_ANCHORED: Final = 0x80000000

_ERROR_NOMATCH: Final = -1
_INFO_CAPTURECOUNT: Final = 4
_CONFIG_VERSION: Final = 11
_UNSET: Final = ctypes.c_size_t(-1).value


class MatchError(RuntimeError):
    """``pcre2_match()`` failed (match limit, ...); Postfix warns, and the rule does not match."""


def _load() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("pcre2-8") or "libpcre2-8.so.0"
    try:
        lib = ctypes.CDLL(name)
    except OSError:
        return None
    vp, sz = ctypes.c_void_p, ctypes.c_size_t
    lib.pcre2_compile_8.argtypes = (
        ctypes.c_char_p,
        sz,
        ctypes.c_uint32,
        ctypes.POINTER(ctypes.c_int),
        ctypes.POINTER(sz),
        vp,
    )
    lib.pcre2_compile_8.restype = vp
    lib.pcre2_code_free_8.argtypes = (vp,)
    lib.pcre2_code_free_8.restype = None
    lib.pcre2_match_data_create_8.argtypes = (ctypes.c_uint32, vp)
    lib.pcre2_match_data_create_8.restype = vp
    lib.pcre2_match_data_create_from_pattern_8.argtypes = (vp, vp)
    lib.pcre2_match_data_create_from_pattern_8.restype = vp
    lib.pcre2_match_data_free_8.argtypes = (vp,)
    lib.pcre2_match_data_free_8.restype = None
    lib.pcre2_match_8.argtypes = (vp, ctypes.c_char_p, sz, sz, ctypes.c_uint32, vp, vp)
    lib.pcre2_match_8.restype = ctypes.c_int
    lib.pcre2_get_ovector_pointer_8.argtypes = (vp,)
    lib.pcre2_get_ovector_pointer_8.restype = ctypes.POINTER(sz)
    lib.pcre2_pattern_info_8.argtypes = (vp, ctypes.c_uint32, vp)
    lib.pcre2_pattern_info_8.restype = ctypes.c_int
    lib.pcre2_get_error_message_8.argtypes = (ctypes.c_int, ctypes.c_char_p, sz)
    lib.pcre2_get_error_message_8.restype = ctypes.c_int
    lib.pcre2_config_8.argtypes = (ctypes.c_uint32, vp)
    lib.pcre2_config_8.restype = ctypes.c_int
    return lib


_lib = _load()
_local = threading.local()


def _search_data() -> int:
    """This thread's match data for yes/no matches (one offset pair is enough for that)."""
    data: int | None = getattr(_local, "data", None)
    if data is None:
        data = _local.data = _need().pcre2_match_data_create_8(1, None)
    return data


def _need() -> ctypes.CDLL:
    if _lib is None:
        raise ConfigError(
            "pcre: the PCRE2 library (libpcre2-8.so.0) is not installed; "
            "on Debian: apt-get install libpcre2-8-0"
        )
    return _lib


def error_message(code: int) -> str:
    """PCRE2's text for an error code (``pcre2_get_error_message()``)."""
    lib = _need()
    buf = ctypes.create_string_buffer(256)
    if lib.pcre2_get_error_message_8(code, buf, 256) > 0:
        return buf.value.decode("ascii", "replace")
    return f"unexpected pcre2 error code {code}"


def library_version() -> str:
    """The PCRE2 library's version string (``10.42 2022-12-11``)."""
    lib = _need()
    buf = ctypes.create_string_buffer(64)
    lib.pcre2_config_8(_CONFIG_VERSION, buf)
    return buf.value.decode("ascii")


class PcreRegex:
    """One compiled PCRE2 pattern.

    :param pattern: the pattern as Postfix hands it to ``pcre2_compile()`` (a C string).
    :param options: ``PCRE2_*`` option bits.
    :raises CompileError: ``error in regex at offset N: text``'s parts: ``.offset`` and the text.
    """

    __slots__ = ("_code", "_lib", "nsub", "options", "pattern")

    def __init__(self, pattern: bytes, options: int) -> None:
        lib = self._lib = _need()
        self.pattern = pattern
        self.options = options
        self._code = None
        error = ctypes.c_int()
        offset = ctypes.c_size_t()
        text = pattern.split(b"\0", 1)[0]
        code = lib.pcre2_compile_8(text, len(text), options, error, offset, None)
        if not code:
            exc = CompileError(error_message(error.value))
            exc.offset = offset.value  # type: ignore[attr-defined]
            raise exc
        self._code = code
        count = ctypes.c_uint32()
        lib.pcre2_pattern_info_8(code, _INFO_CAPTURECOUNT, ctypes.byref(count))
        self.nsub: int = count.value

    def __del__(self) -> None:
        lib = getattr(self, "_lib", None)
        if lib is None:
            return
        if getattr(self, "_code", None):
            lib.pcre2_code_free_8(self._code)

    def _run(self, subject: bytes, data: int) -> bool:
        rc: int = self._lib.pcre2_match_8(self._code, subject, len(subject), 0, 0, data, None)
        if rc == _ERROR_NOMATCH:
            return False
        if rc < 0:
            raise MatchError(str(rc))
        return True  # 0 only says the offset vector was too small to hold every group

    def search(self, subject: bytes) -> bool:
        """Whether the pattern matches ``subject`` (a C string: cut it at NUL first).

        :raises MatchError: ``pcre2_match()`` failed; ``str(exc)`` is the error number.
        """
        return self._run(subject, _search_data())

    def match(self, subject: bytes) -> list[tuple[int, int]] | None:
        """The spans of the match and of every group (``(-1, -1)`` when unset), or ``None``.

        Safe to call from several threads: each call has its own match data.

        :raises MatchError: ``pcre2_match()`` failed.
        """
        lib = self._lib
        data = lib.pcre2_match_data_create_from_pattern_8(self._code, None)
        try:
            if not self._run(subject, data):
                return None
            ov = lib.pcre2_get_ovector_pointer_8(data)
            spans = []
            for i in range(self.nsub + 1):
                start, end = ov[2 * i], ov[2 * i + 1]
                spans.append((-1, -1) if start == _UNSET else (start, end))
            return spans
        finally:
            lib.pcre2_match_data_free_8(data)
