"""Just enough LDAP (RFC 4511) in BER for the searches ``ldap:`` tables make, fast.

ldap3 connects, negotiates TLS and binds; searches then go over the same socket through this
module, which encodes a SearchRequest with its RFC 4515 string filter in a few microseconds
(ldap3's general-purpose encoder takes a few hundred) and decodes the entries and the final
result.  :func:`encode_search` builds the request, :class:`Reader` splits the byte stream into
messages, and :func:`decode_message` turns one message into what a lookup needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = [
    "FilterError",
    "Reader",
    "Response",
    "decode_message",
    "encode_filter",
    "encode_search",
]


class FilterError(ValueError):
    """A search filter that RFC 4515 does not allow (``Bad search filter``)."""


# --- encoding ---------------------------------------------------------------------------------


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes((0x80 | len(body),)) + body


def _tlv(tag: int, content: bytes) -> bytes:
    return bytes((tag,)) + _length(len(content)) + content


def _integer(tag: int, value: int) -> bytes:
    size = max(1, (value.bit_length() + 8) // 8)
    return _tlv(tag, value.to_bytes(size, "big", signed=True))


def _octets(value: str | bytes, tag: int = 0x04) -> bytes:
    data = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
    return _tlv(tag, data)


def encode_search(
    message_id: int,
    base: str,
    scope: int,
    deref: int,
    size_limit: int,
    time_limit: int,
    filter_text: str,
    attributes: list[str],
) -> bytes:
    """A complete LDAPMessage holding a SearchRequest.

    :raises FilterError: the filter is malformed.
    """
    request = b"".join(
        (
            _octets(base),
            _integer(0x0A, scope),
            _integer(0x0A, deref),
            _integer(0x02, size_limit),
            _integer(0x02, time_limit),
            b"\x01\x01\x00",  # typesOnly FALSE
            encode_filter(filter_text),
            _tlv(0x30, b"".join(_octets(a) for a in attributes)),
        )
    )
    return _tlv(0x30, _integer(0x02, message_id) + _tlv(0x63, request))


def _unescape(text: str) -> bytes:
    """An assertion value: ``\\XX`` escapes decoded (RFC 4515); other bytes as UTF-8."""
    if "\\" not in text:
        return text.encode("utf-8", "surrogateescape")
    out = bytearray()
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            pair = text[i + 1 : i + 3]
            if len(pair) != 2 or any(ch not in "0123456789abcdefABCDEF" for ch in pair):
                raise FilterError(f"bad escape in filter value: {text!r}")
            out.append(int(pair, 16))
            i += 3
        else:
            out += c.encode("utf-8", "surrogateescape")
            i += 1
    return bytes(out)


def encode_filter(text: str) -> bytes:
    """The BER of an RFC 4515 string filter (``(&(a=b)(!(c=*)))``).

    :raises FilterError: the filter is malformed.
    """
    encoded, end = _filter(text, 0)
    if end != len(text):
        raise FilterError(f"trailing text in filter: {text!r}")
    return encoded


def _filter(text: str, i: int) -> tuple[bytes, int]:
    if i >= len(text) or text[i] != "(":
        raise FilterError(f"expected '(' in filter: {text!r}")
    i += 1
    if i >= len(text):
        raise FilterError(f"unterminated filter: {text!r}")
    op = text[i]
    if op in "&|":
        i += 1
        parts = []
        while i < len(text) and text[i] == "(":
            part, i = _filter(text, i)
            parts.append(part)
        if i >= len(text) or text[i] != ")":
            raise FilterError(f"unterminated filter: {text!r}")
        return _tlv(0xA0 if op == "&" else 0xA1, b"".join(parts)), i + 1
    if op == "!":
        part, i = _filter(text, i + 1)
        if i >= len(text) or text[i] != ")":
            raise FilterError(f"unterminated filter: {text!r}")
        return _tlv(0xA2, part), i + 1
    end = text.find(")", i)
    if end < 0:
        raise FilterError(f"unterminated filter: {text!r}")
    return _item(text[i:end], text), end + 1


def _item(item: str, whole: str) -> bytes:
    eq = item.find("=")
    if eq <= 0:
        raise FilterError(f"bad filter item: {whole!r}")
    left, value = item[:eq], item[eq + 1 :]
    if left.endswith(("~", ">", "<")):
        attr = left[:-1]
        tag = {"~": 0xA8, ">": 0xA5, "<": 0xA6}[left[-1]]
        _check_attr(attr, whole)
        return _tlv(tag, _octets(attr) + _octets(_unescape(value)))
    if left.endswith(":"):
        return _extensible(left[:-1], value, whole)
    _check_attr(left, whole)
    if value == "*":
        return _octets(left, 0x87)
    if "*" not in value:
        return _tlv(0xA3, _octets(left) + _octets(_unescape(value)))
    pieces = value.split("*")
    subs = []
    if pieces[0]:
        subs.append(_octets(_unescape(pieces[0]), 0x80))
    for middle in pieces[1:-1]:
        if middle:
            subs.append(_octets(_unescape(middle), 0x81))
    if pieces[-1]:
        subs.append(_octets(_unescape(pieces[-1]), 0x82))
    return _tlv(0xA4, _octets(left) + _tlv(0x30, b"".join(subs)))


def _extensible(left: str, value: str, whole: str) -> bytes:
    """``attr[:dn][:rule]:=value`` or ``[:dn]:rule:=value``."""
    parts = left.split(":")
    attr, rest = parts[0], parts[1:]
    dn = False
    rule = ""
    for part in rest:
        if part.lower() == "dn" and not dn and not rule:
            dn = True
        elif part and not rule:
            rule = part
        else:
            raise FilterError(f"bad extensible filter: {whole!r}")
    if not attr and not rule:
        raise FilterError(f"bad extensible filter: {whole!r}")
    body = b""
    if rule:
        body += _octets(rule, 0x81)
    if attr:
        _check_attr(attr, whole)
        body += _octets(attr, 0x82)
    body += _octets(_unescape(value), 0x83)
    if dn:
        body += b"\x84\x01\xff"
    return _tlv(0xA9, body)


def _check_attr(attr: str, whole: str) -> None:
    if not attr or any(not (c.isalnum() or c in "-;._") for c in attr) or not attr.isascii():
        raise FilterError(f"bad attribute description in filter: {whole!r}")


# --- decoding ---------------------------------------------------------------------------------


class Reader:
    """Splits a byte stream into complete BER elements (LDAP messages)."""

    def __init__(self) -> None:
        self.buffer = bytearray()

    def feed(self, data: bytes) -> None:
        self.buffer += data

    def next_message(self) -> bytes | None:
        """The next complete message, or ``None`` until more bytes arrive."""
        buf = self.buffer
        if len(buf) < 2:
            return None
        first = buf[1]
        if first < 0x80:
            start, length = 2, first
        else:
            count = first & 0x7F
            if len(buf) < 2 + count:
                return None
            start, length = 2 + count, int.from_bytes(buf[2 : 2 + count], "big")
        end = start + length
        if len(buf) < end:
            return None
        message = bytes(buf[:end])
        del buf[:end]
        return message


def _read(data: bytes, i: int) -> tuple[int, int, int]:
    """The tag, content start and content end of the element at ``i``."""
    tag = data[i]
    first = data[i + 1]
    if first < 0x80:
        return tag, i + 2, i + 2 + first
    count = first & 0x7F
    start = i + 2 + count
    return tag, start, start + int.from_bytes(data[i + 2 : start], "big")


@dataclass
class Response:
    """One LDAP message of a search's answer."""

    message_id: int
    kind: str  # "entry", "done", "reference", "disconnect", "other"
    dn: bytes = b""
    attributes: list[tuple[str, list[bytes]]] = field(default_factory=list)
    result_code: int = 0
    message: str = ""


def decode_message(data: bytes) -> Response:
    """Decode one LDAPMessage (SearchResultEntry, SearchResultDone, ...).

    :raises ValueError: the message is malformed.
    """
    try:
        _tag, start, _end = _read(data, 0)
        _tag, s, e = _read(data, start)
        message_id = int.from_bytes(data[s:e], "big", signed=True)
        op, s, e = _read(data, e)
        if op == 0x64:
            _t, ds, de = _read(data, s)
            dn = data[ds:de]
            _t, as_, ae = _read(data, de)
            attributes = []
            i = as_
            while i < ae:
                _t, ps, pe = _read(data, i)
                _t, ts, te = _read(data, ps)
                name = data[ts:te].decode("utf-8", "surrogateescape")
                _t, vs, ve = _read(data, te)
                values = []
                j = vs
                while j < ve:
                    _t, xs, xe = _read(data, j)
                    values.append(data[xs:xe])
                    j = xe
                attributes.append((name, values))
                i = pe
            return Response(message_id, "entry", dn, attributes)
        if op in (0x65, 0x78):
            _t, cs, ce = _read(data, s)
            code = int.from_bytes(data[cs:ce], "big", signed=True)
            _t, _ms, me = _read(data, ce)
            _t, ts, te = _read(data, me)
            text = data[ts:te].decode("utf-8", "replace")
            kind = "done" if op == 0x65 else ("disconnect" if message_id == 0 else "other")
            return Response(message_id, kind, result_code=code, message=text)
        if op == 0x73:
            return Response(message_id, "reference")
        return Response(message_id, "other")
    except IndexError as exc:
        raise ValueError("malformed LDAP message") from exc
