"""Table sources: Postfix's logical lines and the ``key whitespace value`` format of postmap(1).

Everything here works on bytes, as Postfix does: a source file may hold bytes that are not UTF-8
(they are skipped in UTF-8 mode, kept with ``-u``).  Every warning names the file and the line,
like Postfix's own (``virtual, line 12: expected format: key whitespace value``).
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from collections.abc import Iterator
from itertools import repeat
from pathlib import Path

from mailmaps.text import printable

__all__ = [
    "Entry",
    "base64_file_value",
    "c_string",
    "decode_file_value",
    "logical_lines",
    "parse_postmap_bulk",
    "parse_postmap_source",
    "split_postmap_line",
]

log = logging.getLogger("mailmaps")

#: C's isspace() in the C locale.
SPACE = b" \t\n\r\v\f"
# First bytes of a physical line that is a comment, blank or a continuation.
_SPECIAL_START = frozenset([b"", b" ", b"\t", b"\r", b"\v", b"\f", b"#"])


def logical_lines(data: bytes, path: str) -> Iterator[tuple[int, bytes]]:
    """Yield ``(first line number, logical line)`` pairs (``readllines()``, ``readlline.c``).

    Comment lines (first non-blank character ``#``) and blank lines are dropped, even in the middle
    of a continued line; a line that starts with whitespace continues the previous one and is
    appended as it is.  Text that starts with whitespace with nothing to continue is skipped with a
    warning.  NUL bytes are kept; parsers that treat the line as a C string cut it there
    (:func:`c_string`).
    """
    lines = data.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    current: list[bytes] | None = None
    orphan = False
    first = 0
    for lineno, line in enumerate(lines, 1):
        if line[:1] in _SPECIAL_START:
            rest = line.lstrip(SPACE)
            if not rest or rest[:1] == b"#":
                continue  # comment or blank line, wherever it is
            if current is None:
                if not orphan:
                    orphan = True
                    shown = line[:30].decode("utf-8", "replace")
                    more = "..." if len(line) > 30 else ""
                    log.warning(
                        '%s: logical line must not start with whitespace: "%s%s"',
                        path,
                        shown,
                        more,
                    )
                continue
            current.append(line)
            continue
        if current is not None:
            yield first, b"".join(current)
        current = [line]
        orphan = False
        first = lineno
    if current is not None:
        yield first, b"".join(current)


def c_string(line: bytes) -> bytes:
    """``line`` up to its first NUL byte, as C code sees it."""
    nul = line.find(b"\0")
    return line if nul < 0 else line[:nul]


def split_postmap_line(line: bytes) -> tuple[bytes, bytes] | None:
    """Split a logical line into key and value as postmap(1) does, or ``None`` if a quote is open.

    The key ends at the first whitespace outside double quotes; a backslash protects the next
    character.  The key is kept verbatim, quotes and backslashes included; the value is the rest,
    with leading and trailing whitespace removed.
    """
    if b'"' not in line and b"\\" not in line:
        parts = line.split(None, 1)
        if len(parts) == 2:
            return parts[0], parts[1].rstrip(SPACE)
        return (parts[0] if parts else b""), b""
    in_quotes = False
    i = 0
    n = len(line)
    while i < n:
        ch = line[i]
        if ch == 0x5C:  # backslash
            i += 1
            if i >= n:
                break
        elif ch in SPACE:
            if not in_quotes:
                break
        elif ch == 0x22:  # double quote
            in_quotes = not in_quotes
        i += 1
    if in_quotes:
        return None
    return line[:i], line[i:].strip(SPACE)


#: One source entry: key, value and the line number where its logical line starts.
Entry = tuple[bytes, bytes, int]

# A line that starts with whitespace and goes on with something other than a comment: a
# continuation line (or an orphan one), which only the general parser handles.
_WHITESPACE = (b" ", b"\t", b"\r", b"\v", b"\f")
_CONTINUATION = re.compile(rb"(?:^|\n)[ \t\r\v\f]+[^ \t\r\v\f\n#]")
_COMMENT_OR_BLANK_START = frozenset(b" \t\r\v\f#")


def _is_plain(data: bytes, utf8: bool) -> bool:
    """No quotes, backslashes or NULs, and valid UTF-8 where that matters."""
    if b'"' in data or b"\\" in data or b"\0" in data:
        return False
    if utf8 and not data.isascii():
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            return False
    return True


def _is_simple(data: bytes, utf8: bool) -> bool:
    """Whether every line of ``data`` is a logical line of its own with an unquoted key."""
    if not _is_plain(data, utf8):
        return False
    # Only a newline followed by whitespace can start a continuation line; the regular
    # expression is slow on large files, so run it only where it could match.
    if data[:1].isspace() or any(w in data and b"\n" + w in data for w in _WHITESPACE):
        return _CONTINUATION.search(data) is None
    return True


def parse_postmap_source(
    data: bytes,
    path: str,
    *,
    utf8: bool,
    rhs_is_file: bool = False,
) -> Iterator[Entry]:
    """Parse a postmap(1) source into ``(key, value, lineno)`` entries; warn about bad lines.

    :param utf8: UTF-8 mode: lines that are neither ASCII nor valid UTF-8 are skipped.
    :param rhs_is_file: ``-F``: values are file lists, replaced by their base64-encoded contents.
    """
    if not rhs_is_file and _is_simple(data, utf8):
        return _parse_simple(data, path)
    return _parse_general(data, path, utf8, rhs_is_file)


def parse_postmap_bulk(
    data: bytes, *, utf8: bool, rhs_is_file: bool = False, terminator: bytes = b""
) -> tuple[list[bytes], list[bytes]] | None:
    """Parse a source that needs no diagnostics into parallel key and value lists, fast.

    Returns ``None`` when the source has anything that the line-by-line parser must handle or
    warn about (continuation lines, quotes, a line without a value, a ``key:``, bad UTF-8); use
    :func:`parse_postmap_source` then.  Otherwise the result is what that parser would yield,
    with ``terminator`` (say, a NUL byte) appended to every key and value.
    """
    if rhs_is_file or not _is_plain(data, utf8):
        return None
    pairs = _split_uniform(data, terminator)
    if pairs is None:
        if not _is_simple(data, utf8):
            return None
        skip = _COMMENT_OR_BLANK_START
        lines = data.split(b"\n")
        parts = [line.split(None, 1) for line in lines if line and line[0] not in skip]
        if parts and min(map(len, parts)) < 2:
            return None
        pairs = (
            [p[0] + terminator for p in parts],
            [p[1].rstrip() + terminator for p in parts],
        )
    colon = b":" + terminator + b"\n"
    if b":" in data and colon in b"\n".join(pairs[0]) + b"\n":
        return None  # a "key: value" line: the line parser warns about it
    return pairs


def uniform_separator(data: bytes, utf8: bool) -> tuple[bytes, bytes] | None:
    """Whether ``data`` may be a *uniform* postmap source, the fastest case, typical of generated
    tables: every line ``key SEP value`` with one and the same white-space byte SEP, and no other
    white space, comments, blank lines, quotes, backslashes or NULs (nor bad UTF-8 in UTF-8
    mode).  Returns the text without its final newline and SEP, or ``None``.  Whether each line
    really has one SEP between a key and a value is left to the caller.  (The checks look for
    single bytes where they can: that is many times faster on large files.)"""
    if not _is_plain(data, utf8):
        return None
    body = data[:-1] if data.endswith(b"\n") else data
    if not body or (b"#" in body and (body.startswith(b"#") or b"\n#" in body)):
        return None
    for sep in (b"\t", b" "):
        if not any(w in body for w in _WHITESPACE if w != sep):
            return body, sep
    return None


def _split_uniform(data: bytes, terminator: bytes) -> tuple[list[bytes], list[bytes]] | None:
    # A uniform source (see uniform_separator): splitting the whole text at white space
    # alternates keys and values, and the terminator can be put in place before the split.
    found = uniform_separator(data, False)  # the caller has checked quotes and UTF-8
    if found is not None:
        body, sep = found
        lines = body.split(b"\n")
        if set(map(bytes.count, lines, repeat(sep))) != {1}:
            return None
        if terminator:
            body = body.replace(sep, terminator + sep).replace(b"\n", terminator + b"\n")
            body += terminator
        tokens = body.split()
        # An empty key or value: a missing token, or a token that is only the terminator.
        if len(tokens) != 2 * len(lines) or (terminator and terminator in tokens):
            return None
        return tokens[0::2], tokens[1::2]
    return None


def _parse_simple(data: bytes, path: str) -> Iterator[Entry]:
    # The fast path for the common file: no continuation lines, quotes, backslashes or NULs, so
    # each physical line is a logical line and the key ends at the first whitespace.
    skip = _COMMENT_OR_BLANK_START
    lines = data.split(b"\n")
    for lineno, line in enumerate(lines, 1):
        if not line or line[0] in skip:
            continue
        parts = line.split(None, 1)
        if len(parts) != 2:
            _warn_format(path, lineno)
            continue
        key, value = parts
        if key[-1] == 0x3A:  # ':'
            _warn_colon(path, lineno)
        yield key, value.rstrip(), lineno


def _warn_format(path: str, lineno: int) -> None:
    log.warning("%s, line %d: expected format: key whitespace value", path, lineno)


def _warn_colon(path: str, lineno: int) -> None:
    log.warning(
        '%s, line %d: record is in "key: value" format; is this an alias file?', path, lineno
    )


def _parse_general(data: bytes, path: str, utf8: bool, rhs_is_file: bool) -> Iterator[Entry]:
    for lineno, line in logical_lines(data, path):
        line = c_string(line)
        if utf8 and not line.isascii():
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                log.warning(
                    '%s, line %d: non-UTF-8 input "%s" -- ignoring this line',
                    path,
                    lineno,
                    printable(line),
                )
                continue
        parts = split_postmap_line(line)
        if parts is None:
            log.warning(
                "%s, line %d: unbalanced '\"' in '%s' -- ignoring this line",
                path,
                lineno,
                line.decode("utf-8", "surrogateescape"),
            )
            continue
        key, value = parts
        if not key or not value:
            _warn_format(path, lineno)
            continue
        if key.endswith(b":"):
            _warn_colon(path, lineno)
        if rhs_is_file:
            try:
                value = base64_file_value(value.decode("utf-8", "surrogateescape"))
            except OSError as exc:
                log.warning("%s, line %d: %s: skipping this entry", path, lineno, exc.strerror)
                continue
            except ValueError as exc:
                log.warning("%s, line %d: %s: skipping this entry", path, lineno, exc)
                continue
        yield key, value, lineno


def base64_file_value(pathnames: str) -> bytes:
    """The value ``-F`` stores: base64 of the named files' contents, joined by newlines.

    :raises OSError: a file cannot be read; ``strerror`` reads like Postfix's
        ``open NAME: No such file or directory``.
    :raises ValueError: the list is empty.
    """
    names = pathnames.replace(",", " ").split()
    if not names:
        raise ValueError(f"empty pathname list: >>{pathnames}<<'")
    chunks = []
    for name in names:
        try:
            chunks.append(Path(name).read_bytes())
        except OSError as exc:
            raise OSError(exc.errno, f"open {name}: {exc.strerror}") from exc
    return base64.b64encode(b"\n".join(chunks))


def decode_file_value(value: str) -> str:
    """Undo :func:`base64_file_value` for ``-F`` queries.

    :raises ValueError: ``malformed BASE64 value: ...`` as Postfix words it.
    """
    try:
        raw = base64.b64decode(value.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError) as exc:
        raise ValueError(f"malformed BASE64 value: {value[:30]}") from exc
    return raw.decode("utf-8", "surrogateescape")
