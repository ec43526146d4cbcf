"""Reading a message as Postfix's MIME engine reads it: the keys that header/body checks see.

``postmap -hq -``, ``-bq -`` and ``-mq -`` and the cleanup(8) server do not look up raw lines:
they feed the message to ``mime_state.c``, which joins folded headers into one logical header,
follows ``multipart/*`` boundaries and ``message/rfc822`` attachments, and hands out one lookup
key per logical header and one per body line.  This module is that engine, rebuilt from Postfix
3.7's behaviour:

* a header is a line that starts with a name (printable ASCII except ``:``), optional blanks and a
  colon; ``Name  : value`` becomes ``Name: value``;
* a line that starts with a space or tab continues the header before it; the key keeps the line
  break (``"Subject: a\\n\\tb"``);
* once a header reaches ``header_size_limit`` bytes (default 102400), further continuation lines
  are dropped (the line that crosses the limit is kept whole);
* the empty line after a header block is itself a body line (key ``""``); a line that is neither
  a header nor empty ends the primary headers too, and then Postfix inserts an empty body line
  before it;
* MIME boundaries (``--boundary`` and ``--boundary--``) are body lines; the headers after a
  boundary are *MIME headers*, those at the start of a ``message/rfc822`` part *nested headers*;
* lines are split at ``\\n`` only: with CRLF input every key ends in ``\\r`` and the "empty"
  line after the headers is ``"\\r"``, which is not empty, so Postfix sees an empty body line
  followed by ``"\\r"``;
* a key ends at the first NUL byte, as a C string does.

>>> [(k.kind.value, k.key) for k in message_keys(b"Subject: hi\\n\\tthere\\n\\nbody\\n",
...                                                 headers=True, body=True)]
[('primary', 'Subject: hi\\n\\tthere'), ('body', ''), ('body', 'body')]

The low-level :class:`MimeParser` is fed one record at a time and returns :data:`Event` objects:
lookup keys (:class:`MessageKey`), the end of the primary headers (:class:`HeaderEnd`), the end of
the message (:class:`MessageEnd`) and MIME problems (:class:`MimeDefect`) that cleanup(8) may act
on.  :func:`message_keys` drives it the way ``postmap -h/-b/-m`` does; :func:`parse_message` gives
all events, optionally with records split at ``line_length_limit`` as the SMTP server splits them.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from mailmaps.errors import ConfigError

if TYPE_CHECKING:
    from mailmaps.config import MainConfig

__all__ = [
    "DEFAULT_HEADER_SIZE_LIMIT",
    "DEFAULT_LINE_LENGTH_LIMIT",
    "DEFAULT_MIME_BOUNDARY_LENGTH_LIMIT",
    "DEFAULT_MIME_NESTING_LIMIT",
    "Event",
    "HeaderEnd",
    "KeyKind",
    "MessageEnd",
    "MessageKey",
    "MessageSource",
    "MimeDefect",
    "MimeError",
    "MimeLimits",
    "MimeParser",
    "is_header",
    "message_keys",
    "message_lines",
    "parse_message",
    "split_records",
]

#: Postfix 3.7's ``header_size_limit``.
DEFAULT_HEADER_SIZE_LIMIT: Final = 102400
#: Postfix 3.7's ``mime_nesting_limit``.
DEFAULT_MIME_NESTING_LIMIT: Final = 100
#: Postfix 3.7's ``mime_boundary_length_limit``.
DEFAULT_MIME_BOUNDARY_LENGTH_LIMIT: Final = 2048
#: Postfix 3.7's ``line_length_limit``: the SMTP server's record size.
DEFAULT_LINE_LENGTH_LIMIT: Final = 2048

#: What a message can be given as: the bytes, text (encoded as UTF-8), or chunks of bytes such as
#: a binary file's lines.
MessageSource = bytes | bytearray | memoryview | str | Iterable[bytes]


class KeyKind(enum.Enum):
    """Where a lookup key comes from (Postfix's header classes, plus body lines)."""

    #: A header of the message itself (``MIME_HDR_PRIMARY``): ``header_checks``.
    PRIMARY = "primary"
    #: A header after a MIME boundary (``MIME_HDR_MULTIPART``): ``mime_header_checks``.
    MIME = "mime"
    #: A header at the start of an attached ``message/rfc822`` (``MIME_HDR_NESTED``):
    #: ``nested_header_checks``.
    NESTED = "nested"
    #: A body line (including boundaries and empty lines): ``body_checks``.
    BODY = "body"


class MimeError(enum.Flag):
    """Problems the MIME engine notices (``MIME_ERR_*``); reporting them never changes parsing."""

    NESTING = 1
    TRUNC_HEADER = 2
    EIGHT_BIT_IN_HEADER = 4
    EIGHT_BIT_IN_7BIT_BODY = 8
    ENCODING_DOMAIN = 16

    @property
    def description(self) -> str:
        """Postfix's text for the most serious problem in this set (``mime_state_detail()``)."""
        for flag, text in _ERROR_TEXT:
            if flag in self:
                return text
        return ""

    @property
    def dsn(self) -> str:
        """The enhanced status code cleanup(8) rejects with (always ``5.6.0``)."""
        return "5.6.0"


# Most serious first, as in mime_state.c's mime_err_detail[].
_ERROR_TEXT: Final = (
    (MimeError.NESTING, "MIME nesting exceeds safety limit"),
    (MimeError.TRUNC_HEADER, "message header length exceeds safety limit"),
    (MimeError.EIGHT_BIT_IN_HEADER, "improper use of 8-bit data in message header"),
    (MimeError.EIGHT_BIT_IN_7BIT_BODY, "improper use of 8-bit data in message body"),
    (MimeError.ENCODING_DOMAIN, "invalid message/* or multipart/* encoding domain"),
)

# Headers that Postfix tags as MIME headers (header_opts.c HDR_OPT_MIME).
_MIME_HEADERS: Final = frozenset(
    {
        b"content-description",
        b"content-disposition",
        b"content-id",
        b"content-transfer-encoding",
        b"content-type",
        b"mime-version",
    }
)


def _cstr(data: bytes) -> bytes:
    """``data`` up to its first NUL byte, as C string functions see it."""
    i = data.find(b"\0")
    return data if i < 0 else data[:i]


@dataclass(frozen=True, slots=True)
class MessageKey:
    """One lookup key: a logical header or a body record.

    :ivar kind: where it comes from.
    :ivar data: the bytes the MIME engine hands out (a header with its embedded line breaks; a
        body line without its newline).
    :ivar offset: Postfix's offset of the record within its header block or body segment
        (``body_checks_size_limit`` is compared with it).
    :ivar continued: a body record that is not the end of its line (``REC_TYPE_CONT``): only
        when lines are split at ``line_length_limit``.
    """

    kind: KeyKind
    data: bytes
    offset: int = 0
    continued: bool = False

    @property
    def key(self) -> str:
        """The lookup key: :attr:`data` up to a NUL byte, decoded with ``surrogateescape``."""
        return _cstr(self.data).decode("utf-8", "surrogateescape")

    @property
    def is_header(self) -> bool:
        """Whether this is a header (of any class) rather than a body line."""
        return self.kind is not KeyKind.BODY

    @property
    def header_name(self) -> str | None:
        """The header's name as written (``"Subject"``); ``None`` for a body line."""
        if self.kind is KeyKind.BODY:
            return None
        return self.data.split(b":", 1)[0].decode("ascii")

    @property
    def is_mime_header(self) -> bool:
        """Whether the header is one Postfix tags as a MIME header (``Content-*``,
        ``MIME-Version``): cleanup(8) checks those with ``mime_header_checks`` wherever they
        appear."""
        name = self.header_name
        return name is not None and name.lower().encode() in _MIME_HEADERS


@dataclass(frozen=True, slots=True)
class HeaderEnd:
    """The primary headers have ended (``head_end``)."""


@dataclass(frozen=True, slots=True)
class MessageEnd:
    """The message has ended (``body_end``)."""


@dataclass(frozen=True, slots=True)
class MimeDefect:
    """A problem noticed by the MIME engine, reported once per kind, where Postfix reports it.

    :ivar error: which problem.
    :ivar data: the header, body line or encoding name that shows it.
    """

    error: MimeError
    data: bytes

    @property
    def text(self) -> str:
        """:attr:`data` decoded with ``surrogateescape``."""
        return self.data.decode("utf-8", "surrogateescape")


#: What :class:`MimeParser` hands out.
Event = MessageKey | HeaderEnd | MessageEnd | MimeDefect


@dataclass(frozen=True, slots=True)
class MimeLimits:
    """The main.cf limits the MIME engine obeys."""

    header_size_limit: int = DEFAULT_HEADER_SIZE_LIMIT
    mime_nesting_limit: int = DEFAULT_MIME_NESTING_LIMIT
    mime_boundary_length_limit: int = DEFAULT_MIME_BOUNDARY_LENGTH_LIMIT

    def __post_init__(self) -> None:
        for name in ("header_size_limit", "mime_nesting_limit", "mime_boundary_length_limit"):
            value = getattr(self, name)
            if value < 1:
                raise ConfigError(f"invalid {name} parameter value {value} < 1")

    @classmethod
    def from_config(cls, config: MainConfig) -> MimeLimits:
        """The limits set in main.cf, with Postfix 3.7's defaults for those not set.

        :raises ConfigError: a value is not a number or is below 1 (Postfix's messages).
        """
        values: dict[str, int] = {}
        for name in ("header_size_limit", "mime_nesting_limit", "mime_boundary_length_limit"):
            if config.raw(name) is not None:
                values[name] = config.get_int(name)
        return cls(**values)


# -- content parsing ------------------------------------------------------------------------------

_HEADER_NAME = re.compile(rb"[!-9;-~]+(?=[ \t]*:)")


def is_header(text: str | bytes) -> bool:
    """Whether ``text`` starts like a message header, ``name:`` (Postfix's ``is_header()``).

    The name is printable ASCII other than ``:``; blanks may separate it from the colon.
    """
    data = text.encode("utf-8", "surrogateescape") if isinstance(text, str) else text
    return _HEADER_NAME.match(_cstr(data)) is not None


_TOKEN: Final = 256
_QSTRING: Final = 257
_LWSP: Final = b" \t\r\n"
_RFC2045_TSPECIALS: Final = b'()<>@,;:\\"/[]?='
_RFC822_SPECIALS: Final = b'()<>@,;:\\".[]'
_SEMICOLON: Final = ord(";")


def _is_cntrl(ch: int) -> bool:
    return ch < 32 or ch == 127


def _header_tokens(
    text: bytes, pos: int, max_tokens: int, specials: bytes, terminator: int
) -> tuple[int, list[tuple[int, bytes]], int]:
    """RFC 822 tokens from ``text[pos:]`` up to ``terminator`` (``header_token()``).

    Returns ``(count, tokens, next_pos)``; ``count`` is -1 when nothing but white space and
    comments was left.  At most ``max_tokens`` tokens are kept, but with a terminator the rest of
    the item is still scanned.
    """
    tokens: list[tuple[int, bytes]] = []
    n = len(text)
    i = pos
    at_end = False
    while True:
        if i >= n:
            at_end = True
            break
        if not (terminator or len(tokens) < max_tokens):
            break
        ch = text[i]
        i += 1
        if ch in _LWSP:
            continue
        if ch == terminator:
            break
        keep = len(tokens) < max_tokens
        if ch == 0x28:  # '(' comment, may nest
            level = 1
            while i < n:
                ch = text[i]
                i += 1
                if ch == 0x28:
                    level += 1
                elif ch == 0x29:
                    level -= 1
                    if level == 0:
                        break
                elif ch == 0x5C:
                    if i >= n:
                        break
                    i += 1
            continue
        if ch == 0x22:  # '"' quoted string
            value = bytearray()
            while i < n:
                ch = text[i]
                i += 1
                if ch == 0x22:
                    break
                if ch == 0x0A:  # unfold: drop the white space before the line break
                    while value and value[-1] in _LWSP:
                        del value[-1]
                    continue
                if ch == 0x5C:
                    if i >= n:
                        break
                    ch = text[i]
                    i += 1
                value.append(ch)
            if keep:
                tokens.append((_QSTRING, bytes(value)))
            continue
        if ch in specials or _is_cntrl(ch):
            if keep:
                tokens.append((ch, bytes((ch,))))
            continue
        start = i - 1
        while i < n:
            ch = text[i]
            if ch in _LWSP or _is_cntrl(ch) or ch in specials:
                break
            i += 1
        if keep:
            tokens.append((_TOKEN, text[start:i]))
    if not tokens and at_end:
        return -1, tokens, i
    return len(tokens), tokens, i


def _token_is(token: tuple[int, bytes], word: bytes) -> bool:
    return token[0] == _TOKEN and token[1].lower() == word


# Content types, subtypes and encodings (mime_state.c).
_CTYPE_OTHER, _CTYPE_TEXT, _CTYPE_MESSAGE, _CTYPE_MULTIPART = range(4)
_STYPE_OTHER, _STYPE_PLAIN, _STYPE_RFC822, _STYPE_PARTIAL, _STYPE_EXTERN_BODY, _STYPE_GLOBAL = (
    range(6)
)
_ENC_QP, _ENC_BASE64, _ENC_7BIT, _ENC_8BIT, _ENC_BINARY = 1, 2, 7, 8, 9
_ENCODINGS: Final = {
    b"7bit": (_ENC_7BIT, _ENC_7BIT),
    b"8bit": (_ENC_8BIT, _ENC_8BIT),
    b"binary": (_ENC_BINARY, _ENC_BINARY),
    b"base64": (_ENC_BASE64, _ENC_7BIT),
    b"quoted-printable": (_ENC_QP, _ENC_7BIT),
}
_ENCODING_NAMES: Final = {code: name for name, (code, _) in _ENCODINGS.items()}

# Parser states: the three header classes, then the body.
_PRIMARY, _MULTIPART, _NESTED, _BODY = range(4)
_KINDS: Final = (KeyKind.PRIMARY, KeyKind.MIME, KeyKind.NESTED)

# Record types.
_NORM, _CONT, _END = range(3)


@dataclass(slots=True)
class _Boundary:
    def_ctype: int
    def_stype: int
    boundary: bytes


class MimeParser:
    """Postfix's MIME state machine (``mime_state.c``), one record at a time.

    Feed each line (without its newline) to :meth:`update`, then call :meth:`end`; each returns
    the events that record produced, in Postfix's order.

    :param mime: parse MIME structure (``Content-Type`` boundaries, attached messages); with
        ``False`` everything after the primary headers is body (``MIME_OPT_DISABLE_MIME``, as
        ``postmap`` without ``-m`` and cleanup(8) with ``disable_mime_input_processing``).
    :param limits: ``header_size_limit``, ``mime_nesting_limit``, ``mime_boundary_length_limit``.
    """

    def __init__(self, *, mime: bool = True, limits: MimeLimits | None = None) -> None:
        self.mime = mime
        self.limits = limits or MimeLimits()
        #: The problems seen so far.
        self.errors = MimeError(0)
        self._state = _PRIMARY
        self._ctype = _CTYPE_TEXT
        self._stype = _STYPE_PLAIN
        self._encoding = _ENC_7BIT
        self._domain = _ENC_7BIT
        self._header = bytearray()
        self._prev = 0
        self._stack: list[_Boundary] = []
        self._head_offset = 0
        self._body_offset = 0
        self._out: list[Event] = []
        self._ended = False

    # -- the public interface ---------------------------------------------------------------------

    def update(self, record: bytes, *, continued: bool = False) -> list[Event]:
        """Process one record: a line without its newline, or with ``continued`` the first part
        of a long line whose rest follows (``REC_TYPE_CONT``)."""
        if self._ended:
            raise ValueError("the message has ended")
        self._update(_CONT if continued else _NORM, bytes(record))
        return self._take()

    def end(self) -> list[Event]:
        """Signal the end of the message: flush a pending header and finish."""
        if self._ended:
            return []
        self._update(_END, b"")
        self._ended = True
        return self._take()

    @property
    def in_headers(self) -> bool:
        """Whether the parser is in a header block (primary, MIME part or attached message)."""
        return self._state != _BODY

    # -- the state machine ------------------------------------------------------------------------

    def _take(self) -> list[Event]:
        out = self._out
        self._out = []
        return out

    def _report(self, error: MimeError, data: bytes) -> None:
        if error not in self.errors:
            self.errors |= error
            self._out.append(MimeDefect(error, data))

    def _set_state(self, state: int) -> None:
        self._state = state
        if state == _BODY:
            self._body_offset = 0
        else:
            self._head_offset = 0

    def _set_mime_state(self, state: int, ctype: int, stype: int) -> None:
        self._set_state(state)
        self._ctype = ctype
        self._stype = stype
        self._encoding = _ENC_7BIT
        self._domain = _ENC_7BIT

    def _body_out(self, rec: int, text: bytes) -> None:
        self._out.append(MessageKey(KeyKind.BODY, text, self._body_offset, rec == _CONT))
        self._body_offset += len(text) + 1

    def _update(self, rec: int, text: bytes) -> None:
        is_text = rec != _END
        if not is_text and self._prev == _CONT:
            self._update(_NORM, b"")
        if self._state != _BODY and self._header_state(rec, text, is_text):
            self._prev = rec
            return
        if is_text:
            self._body_line(rec, text)
        else:
            self._out.append(MessageEnd())
        self._prev = rec

    def _header_state(self, rec: int, text: bytes, is_text: bool) -> bool:
        """A record in a header block; ``True`` when it was consumed as (part of) a header,
        ``False`` when it ended the block and is to be processed as body."""
        header = self._header
        limit = self.limits.header_size_limit
        if header:
            if is_text:
                if self._prev == _CONT:
                    if len(header) < limit:
                        header += _cstr(text)
                    else:
                        self._report(MimeError.TRUNC_HEADER, bytes(header))
                    return True
                if text[:1] in (b" ", b"\t"):
                    if len(header) < limit:
                        header += b"\n"
                        header += _cstr(text)
                    else:
                        self._report(MimeError.TRUNC_HEADER, bytes(header))
                    return True
            self._flush_header(len(text))
        if is_text:
            match = _HEADER_NAME.match(text)
            if match is not None:
                header[:] = match.group()
                header += _cstr(text[match.end() :].lstrip(b" \t"))
                return True
        # This record ends the header block.
        state = self._state
        if state == _PRIMARY:
            self._out.append(HeaderEnd())
        self._check_encoding_domain()
        if not is_text:
            self._set_state(_BODY)
        elif not text:
            self._body_offset = 0
            if self._ctype == _CTYPE_MESSAGE:
                if self._stype in (_STYPE_RFC822, _STYPE_GLOBAL):
                    self._set_mime_state(_NESTED, _CTYPE_TEXT, _STYPE_PLAIN)
                else:
                    self._set_state(_BODY)
            elif self._ctype == _CTYPE_MULTIPART:
                self._set_mime_state(_BODY, _CTYPE_OTHER, _STYPE_OTHER)
            else:
                self._set_state(_BODY)
        else:
            # Not a header and not empty: Postfix inserts the missing empty line, but only
            # after the primary headers.
            if state == _PRIMARY:
                self._body_out(_NORM, b"")
            self._set_state(_BODY)
        return False

    def _flush_header(self, input_len: int) -> None:
        header = bytes(self._header)
        name = header[: header.index(b":")].rstrip(b" \t").lower()
        if self.mime:
            if name == b"content-type":
                self._content_type(header[13:])
            elif name == b"content-transfer-encoding":
                self._content_encoding(header[26:])
        if not header.isascii():
            self._report(MimeError.EIGHT_BIT_IN_HEADER, header)
        self._out.append(MessageKey(_KINDS[self._state], header, self._head_offset))
        self._head_offset += input_len + 1
        self._prev = 0
        self._header.clear()

    def _check_encoding_domain(self) -> None:
        bad = False
        if self._ctype == _CTYPE_MESSAGE:
            if self._stype in (_STYPE_PARTIAL, _STYPE_EXTERN_BODY):
                bad = self._domain != _ENC_7BIT
            elif self._stype == _STYPE_RFC822:
                bad = self._encoding != self._domain
        elif self._ctype == _CTYPE_MULTIPART:
            bad = self._encoding != self._domain
        if bad:
            name = _ENCODING_NAMES.get(self._encoding, b"unknown")
            self._report(MimeError.ENCODING_DOMAIN, name)

    def _body_line(self, rec: int, text: bytes) -> None:
        if (
            self._encoding == _ENC_7BIT
            and MimeError.EIGHT_BIT_IN_7BIT_BODY not in self.errors
            and not text.isascii()
        ):
            self._report(MimeError.EIGHT_BIT_IN_7BIT_BODY, text)
        stack = self._stack
        if stack and self._prev != _CONT and len(text) > 2 and text.startswith(b"--"):
            for depth in range(len(stack) - 1, -1, -1):
                bound = stack[depth].boundary
                end = 2 + len(bound)
                if len(text) >= end and text[2:end] == bound:
                    found = stack[depth]
                    del stack[depth + 1 :]
                    if len(text) >= end + 2 and text[end : end + 2] == b"--":
                        stack.pop()
                        self._set_mime_state(_BODY, _CTYPE_OTHER, _STYPE_OTHER)
                    else:
                        self._set_mime_state(_MULTIPART, found.def_ctype, found.def_stype)
                    break
        self._body_out(rec, text)

    def _content_type(self, value: bytes) -> None:
        count, tokens, pos = _header_tokens(value, 0, 3, _RFC2045_TSPECIALS, _SEMICOLON)
        if count <= 0:
            self._ctype = _CTYPE_OTHER
            return
        first = tokens[0]
        slash = count >= 3 and tokens[1][0] == 0x2F
        if _token_is(first, b"text"):
            self._ctype = _CTYPE_TEXT
            plain = slash and _token_is(tokens[2], b"plain")
            self._stype = _STYPE_PLAIN if plain else _STYPE_OTHER
        elif _token_is(first, b"message"):
            self._ctype = _CTYPE_MESSAGE
            self._stype = _STYPE_OTHER
            if slash:
                sub = tokens[2]
                for word, stype in (
                    (b"rfc822", _STYPE_RFC822),
                    (b"partial", _STYPE_PARTIAL),
                    (b"external-body", _STYPE_EXTERN_BODY),
                    (b"global", _STYPE_GLOBAL),
                ):
                    if _token_is(sub, word):
                        self._stype = stype
                        break
        elif _token_is(first, b"multipart"):
            self._ctype = _CTYPE_MULTIPART
            if slash and _token_is(tokens[2], b"digest"):
                defaults = (_CTYPE_MESSAGE, _STYPE_RFC822)
            else:
                defaults = (_CTYPE_TEXT, _STYPE_PLAIN)
            limit = self.limits.mime_boundary_length_limit
            while True:
                count, tokens, pos = _header_tokens(value, pos, 3, _RFC2045_TSPECIALS, _SEMICOLON)
                if count < 0:
                    break
                if count >= 3 and _token_is(tokens[0], b"boundary") and tokens[1][0] == 0x3D:
                    # The nesting level starts at -1: one boundary is level 0.
                    if len(self._stack) - 1 > self.limits.mime_nesting_limit:
                        self._report(MimeError.NESTING, bytes(self._header))
                    else:
                        self._stack.append(_Boundary(*defaults, tokens[2][1][:limit]))
        # Any other type leaves the current (default) type alone, as Postfix does.

    def _content_encoding(self, value: bytes) -> None:
        count, tokens, _ = _header_tokens(value, 0, 1, _RFC822_SPECIALS, 0)
        if count > 0 and tokens[0][0] == _TOKEN:
            found = _ENCODINGS.get(tokens[0][1].lower())
            if found is not None:
                self._encoding, self._domain = found


# -- drivers --------------------------------------------------------------------------------------


def message_lines(source: MessageSource, *, postfix_eof: bool = False) -> Iterator[bytes]:
    """The lines of a message without their ``\\n`` (Postfix's ``vstring_get_nonl()``): a last
    line without a newline counts, a final newline does not start another line.

    :param postfix_eof: drop a last line that has no newline and ends in byte 0xFF, as
        ``vstring_get_nonl()`` does: it returns that byte as a (signed) ``char``, which equals
        ``VSTREAM_EOF`` (-1), so the caller takes the line for the end of the input.
    """
    for line, last in _lines(source):
        if last and postfix_eof and line.endswith(b"\xff"):
            return
        yield line


def _lines(source: MessageSource) -> Iterator[tuple[bytes, bool]]:
    """Lines as :func:`message_lines` gives them, each with whether it lacked a newline."""
    if isinstance(source, str):
        source = source.encode("utf-8", "surrogateescape")
    if isinstance(source, bytes | bytearray | memoryview):
        data = bytes(source)
        if not data:
            return
        lines = data.split(b"\n")
        tail = lines.pop()
        for line in lines:
            yield line, False
        if tail:
            yield tail, True
        return
    carry = b""
    for chunk in source:
        if not carry and chunk.endswith(b"\n") and chunk.find(b"\n") == len(chunk) - 1:
            yield chunk[:-1], False
            continue
        parts = (carry + chunk).split(b"\n")
        carry = parts.pop()
        for line in parts:
            yield line, False
    if carry:
        yield carry, True


def split_records(
    source: MessageSource, *, line_length_limit: int | None = None, strip_cr: bool = False
) -> Iterator[tuple[bytes, bool]]:
    """The records of a message as ``(data, continued)`` pairs.

    :param line_length_limit: split long lines as the SMTP server reads them: at most this many
        bytes per read, the newline included; every record but a line's last is ``continued``.
        ``None`` (postmap) keeps lines whole.
    :param strip_cr: remove one ``\\r`` before the newline, as the SMTP server does.
    """
    limit = line_length_limit
    if limit is not None and limit < 1:
        raise ValueError("line_length_limit must be positive")
    for line in message_lines(source):
        if limit is not None and len(line) >= limit:
            pos = 0
            while len(line) - pos >= limit:
                yield line[pos : pos + limit], True
                pos += limit
            line = line[pos:]
        if strip_cr and line.endswith(b"\r"):
            line = line[:-1]
        yield line, False


def parse_message(
    source: MessageSource,
    *,
    mime: bool = True,
    limits: MimeLimits | None = None,
    line_length_limit: int | None = None,
    strip_cr: bool = False,
) -> Iterator[Event]:
    """Every event of a message, in order: all headers, all body lines, the markers and the MIME
    problems.  See :func:`split_records` for ``line_length_limit`` and ``strip_cr``."""
    parser = MimeParser(mime=mime, limits=limits)
    for data, continued in split_records(
        source, line_length_limit=line_length_limit, strip_cr=strip_cr
    ):
        yield from parser.update(data, continued=continued)
    yield from parser.end()


def message_keys(
    source: MessageSource,
    *,
    headers: bool = False,
    body: bool = False,
    mime: bool = False,
    limits: MimeLimits | None = None,
) -> Iterator[MessageKey]:
    """The keys ``postmap -q -`` looks up with ``-h`` (``headers``), ``-b`` (``body``) and
    ``-m`` (``mime``), in order.

    * ``headers`` alone: the primary headers only; reading stops at their end.
    * ``headers`` and ``mime``: also the headers of MIME parts and attached messages.
    * ``body``: every body line, from the empty line after the primary headers on; without
      ``mime`` that includes MIME part headers, with ``mime`` it does not.

    :raises ValueError: neither ``headers`` nor ``body`` (Postfix ignores ``-m`` alone).
    """
    if not (headers or body):
        raise ValueError("message keys need headers or body (postmap ignores -m alone)")
    parser = MimeParser(mime=mime, limits=limits)
    stop_at_header_end = not (body or mime)
    done = False
    for line in message_lines(source, postfix_eof=True):
        for event in parser.update(line):
            if isinstance(event, MessageKey):
                if body if event.kind is KeyKind.BODY else headers:
                    yield event
            elif stop_at_header_end and isinstance(event, HeaderEnd):
                done = True
        if done:
            break
    for event in parser.end():
        if isinstance(event, MessageKey) and (body if event.kind is KeyKind.BODY else headers):
            yield event
