"""Bytes, UTF-8 and case folding exactly as Postfix treats them.

Postfix works on C strings: bytes up to a NUL.  mailmaps keeps values as ``str`` and converts at
the storage boundary with UTF-8 and ``surrogateescape``, so that bytes that are not UTF-8 survive
a round trip unchanged (``postmap -u`` tables may hold them).
"""

from __future__ import annotations

import re

__all__ = [
    "decode",
    "encode",
    "fold",
    "is_valid_utf8",
    "printable",
]

_ENC = "utf-8"
_UNPRINTABLE = re.compile(rb"[^\x20-\x7e]")
_ERR = "surrogateescape"


def encode(text: str) -> bytes:
    """Encode text for storage; lone surrogates from :func:`decode` become their original bytes."""
    return text.encode(_ENC, _ERR)


def decode(data: bytes) -> str:
    """Decode stored bytes; bytes that are not UTF-8 become lone surrogates (round-trip safe)."""
    return data.decode(_ENC, _ERR)


def is_valid_utf8(text: str) -> bool:
    """Whether ``text`` came from valid UTF-8 (``valid_utf8_string()``: no overlong forms,
    no surrogates, nothing above U+10FFFF)."""
    if text.isascii():
        return True
    try:
        text.encode(_ENC)
    except UnicodeEncodeError:
        return False
    return True


def fold(text: str, utf8: bool) -> str:
    """Fold case as Postfix folds keys of exact-key tables (``casefold()``, ``lowercase()``).

    All-ASCII text, and any text outside UTF-8 mode, gets ASCII lower case only (A-Z); other text
    in UTF-8 mode gets full Unicode case folding (ICU's default folding, which is what
    :meth:`str.casefold` does: ``ß`` becomes ``ss``).
    """
    if text.isascii():
        return text.lower()
    if utf8:
        return text.casefold()
    return encode(text).lower().decode(_ENC, _ERR)


def printable(text: str | bytes, utf8: bool = True, substitute: str = "?") -> str:
    """Make text safe to log as Postfix's ``printable()`` does: every byte that is not printable
    ASCII becomes ``substitute``, except (with ``utf8``) the bytes of what looks like a UTF-8
    character.

    Postfix passes every log message through this (``?``), and smtpd every reply (a space).
    """
    if isinstance(text, str) and text.isascii() and text.isprintable():
        return text  # printable ASCII already (the common case)
    data = encode(text) if isinstance(text, str) else text
    if data.isascii() and not _UNPRINTABLE.search(data):
        return data.decode("ascii")
    out = bytearray(data)
    sub = ord(substitute)
    i, n = 0, len(out)
    while i < n:
        ch = out[i]
        if 32 <= ch < 127:
            pass
        elif utf8 and 194 <= ch <= 254 and i + 1 < n and 128 <= out[i + 1] < 192:
            while i + 1 < n and 128 <= out[i + 1] < 192:
                i += 1
        else:
            out[i] = sub
        i += 1
    return out.decode(_ENC, "replace")
