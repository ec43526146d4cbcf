"""Host name and address syntax, as Postfix checks it before routing mail to a domain.

Postfix's rules (``src/util/valid_hostname.c``, ``valid_utf8_hostname.c``,
``src/global/valid_mailhost_addr.c``) are stricter or looser than the RFCs in places, and the
resolver depends on the exact answers: ``user@1.2.3`` is an error, ``user@1.2.3.4`` becomes
``user@[1.2.3.4]`` (``resolve_numeric_domain``), ``user@[321.1.2.3]`` is an error.

* a host name is labels of letters, digits, ``_`` and inner ``-``, at most 63 characters each,
  separated by single dots, not all digits, at most 255 characters;
* an IPv4 address is four decimal octets of at most 255, and only ``0.0.0.0`` may start with 0;
* an IPv6 address has 2 to 7 colons, at most one ``::``, hex fields of at most 4 digits, and
  may end in an IPv4 address;
* a mail host literal is ``[1.2.3.4]`` or ``[IPv6:...]``.
"""

from __future__ import annotations

import re

__all__ = [
    "valid_hostaddr",
    "valid_hostname",
    "valid_ipv4_hostaddr",
    "valid_ipv6_hostaddr",
    "valid_mailhost_addr",
    "valid_mailhost_literal",
    "valid_utf8_hostname",
]

_LABEL_CHARS = re.compile(r"[A-Za-z0-9_-]+")
_HEX = re.compile(r"[0-9A-Fa-f]*")
_MAX_LABEL = 63
_MAX_NAME = 255
_IPV6_PREFIX = "ipv6:"


def valid_hostname(name: str, *, wildcard: bool = False) -> bool:
    """Whether ``name`` is a host name by Postfix's rules (``valid_hostname()``).

    :param wildcard: allow ``*`` as the whole first label (``*.example.com``).
    """
    if not name or len(name.encode("utf-8", "surrogateescape")) > _MAX_NAME:
        return False
    labels = name.split(".")
    numeric = True
    for index, label in enumerate(labels):
        if not label:
            return False  # an empty label: a misplaced dot
        if wildcard and index == 0 and label == "*":
            numeric = False
            continue
        if len(label) > _MAX_LABEL or not label.isascii() or not _LABEL_CHARS.fullmatch(label):
            return False
        if label[0] == "-" or label[-1] == "-":
            return False
        if not label.isdigit():
            numeric = False
    return not numeric


def valid_utf8_hostname(name: str, *, smtputf8: bool) -> bool:
    """Whether ``name`` is a host name, allowing internationalized names with SMTPUTF8."""
    if not name:
        return False
    if smtputf8 and not name.isascii():
        try:
            ascii_name = name.encode("idna").decode("ascii")
        except UnicodeError:
            return False
        return valid_hostname(ascii_name)
    return valid_hostname(name)


def valid_ipv4_hostaddr(addr: str) -> bool:
    """Whether ``addr`` is a dotted-quad IPv4 address (``valid_ipv4_hostaddr()``)."""
    parts = addr.split(".")
    if len(parts) != 4:
        return False
    for part in parts:
        if not part or not part.isascii() or not part.isdigit() or int(part) > 255:
            return False
    # 0.0.0.0 is allowed, but no other address starting with octet 0.
    return not (int(parts[0]) == 0 and addr.strip("0.") != "")


def valid_ipv6_hostaddr(addr: str) -> bool:
    """Whether ``addr`` is an IPv6 address as Postfix accepts one (``valid_ipv6_hostaddr()``)."""
    fields = 0
    null_field = 0
    length = 0
    i, n = 0, len(addr)
    while True:
        if i >= n:
            if fields < 2:
                return False
            return not (length == 0 and null_field != fields - 1)
        ch = addr[i]
        if ch == ".":
            if fields < 2 or fields > 6:
                return False
            return valid_ipv4_hostaddr(addr[i - length :])
        if ch == ":":
            if fields == 0 and length == 0 and i + 1 < n and addr[i + 1].isalnum():
                return False
            fields += 1
            if fields > 7:
                return False
            i += 1
            length = 0
            if i < n and addr[i] == ":":
                if null_field > 0:
                    return False
                null_field = fields
            continue
        m = _HEX.match(addr, i)
        length = m.end() - i if m else 0
        if length == 0 or length > 4:
            return False
        i += length


def valid_hostaddr(addr: str) -> bool:
    """Whether ``addr`` is a bare IPv4 or IPv6 address (``valid_hostaddr()``)."""
    if not addr:
        return False
    return valid_ipv6_hostaddr(addr) if ":" in addr else valid_ipv4_hostaddr(addr)


def valid_mailhost_addr(addr: str) -> str | None:
    """The bare address of an RFC 5321 address literal's contents (``IPv6:`` prefix removed),
    or ``None`` when it is not valid (``valid_mailhost_addr()``)."""
    if addr[: len(_IPV6_PREFIX)].lower() == _IPV6_PREFIX:
        bare = addr[len(_IPV6_PREFIX) :]
        return bare if valid_ipv6_hostaddr(bare) else None
    return addr if valid_ipv4_hostaddr(addr) else None


def valid_mailhost_literal(literal: str) -> bool:
    """Whether ``literal`` is ``[address]`` with a valid address (``valid_mailhost_literal()``)."""
    if not literal.startswith("["):
        return False
    end = literal.find("]")
    if end < 0 or end != len(literal) - 1:
        return False
    return valid_mailhost_addr(literal[1:end]) is not None
