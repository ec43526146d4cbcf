"""Match lists: main.cf parameters such as ``mydestination``, ``relay_domains`` and
``mynetworks`` that list patterns, files and tables (SPEC §2.7).

As Postfix reads them (``src/util/match_list.c``, ``match_ops.c``):

* items are separated by commas and white space; ``{...}`` keeps a table spec in one item;
* items are tried left to right and the first match decides; each ``!`` in front of an item
  inverts its answer (``!a.example`` stops the search with "no");
* ``/file/name`` stands for the items in that file (one or more per line, ``#`` comments);
  ``!/file/name`` inverts them all;
* ``type:table`` is a lookup: the item matches when the table has the key;
* anything else is compared, case-insensitively, with the string, domain or address.

The kinds differ in how an item matches (:class:`ListKind`): a string list compares the whole
string; a domain list also matches subdomains, of ``.example.com`` always and of
``example.com`` when the parameter is in ``parent_domain_matches_subdomains``, and looks up the
domain and then its parents in tables; a host list matches a client's name as a domain and its
address against addresses, ``[addresses]`` and ``net/len`` networks.  A table or file that fails
makes the whole match fail with :class:`~mailmaps.errors.LookupFailed`: never a quiet "no".
"""

from __future__ import annotations

import enum
import fcntl
import ipaddress
import logging
import socket
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mailmaps.backends.cidr import CidrPatternError, cidr_match, parse_cidr
from mailmaps.errors import ConfigError, TemporaryLookupError
from mailmaps.hostname import valid_mailhost_addr
from mailmaps.maps import SurrogateTable, open_table
from mailmaps.source import logical_lines
from mailmaps.spec import MapSpec, split_list
from mailmaps.table import OpenOptions, Table

if TYPE_CHECKING:
    from mailmaps.config import MainConfig

__all__ = ["ListKind", "LocalDomains", "MatchList", "interface_addresses", "mynetworks_default"]

log = logging.getLogger("mailmaps")

_V4_CHARS = frozenset("01234567890.")
_MEMO_LIMIT = 65536
_V6_CHARS = _V4_CHARS | frozenset("abcdefABCDEF:")


class ListKind(enum.Enum):
    """What a list's items are compared with."""

    STRING = "string"  # string_list: the whole string
    DOMAIN = "domain"  # domain_list: a domain and its parents
    HOST = "host"  # namadr_list: a host name and an address


@dataclass(frozen=True, slots=True)
class _Item:
    match: bool  # the answer when the item matches (False after an odd number of "!")
    pattern: str  # folded text, or the table spec
    table: Table | None = None


def _is_table(pattern: str) -> bool:
    return not pattern.startswith("[") and ":" in pattern


class MatchList:
    """A parsed match list.

    :param name: the parameter name, for diagnostics (``relay_domains``).
    :param value: the list (expanded parameter value).
    :param kind: how items match.
    :param parent_matches_subdomains: ``example.com`` also matches ``sub.example.com`` (the
        parameter is in ``parent_domain_matches_subdomains``).
    :param opener: opens ``type:table`` items, so that a caller can share the tables it
        already has open (default: :func:`~mailmaps.maps.open_table`).
    :raises ConfigError: a ``!`` without a pattern.
    """

    def __init__(
        self,
        name: str,
        value: str,
        kind: ListKind = ListKind.STRING,
        *,
        parent_matches_subdomains: bool = False,
        options: OpenOptions | None = None,
        opener: Callable[[str], Table] | None = None,
    ) -> None:
        self.name = name
        self._opener = opener
        self.kind = kind
        self.parent = parent_matches_subdomains
        self._options = (options or OpenOptions()).but(fold=False)
        self._tables: dict[str, Table] = {}
        self.items: list[_Item] = []
        self._parse(value, True)
        #: Answers remembered for lists without tables (their answers cannot change).
        self._memo: dict[tuple[str, ...], bool] | None = (
            {} if all(item.table is None for item in self.items) else None
        )

    @classmethod
    def from_parameter(
        cls,
        config: MainConfig,
        name: str,
        kind: ListKind,
        *,
        value: str | None = None,
        opener: Callable[[str], Table] | None = None,
    ) -> MatchList | None:
        """The list a main.cf parameter holds (``value`` instead of its setting, if given), with
        parent-domain matching as ``parent_domain_matches_subdomains`` says for it; ``None``
        when the list is empty."""
        text = config.get(name) if value is None else value
        if not text.strip():
            return None
        parent = name in config.get_set("parent_domain_matches_subdomains")
        return cls(name, text, kind, parent_matches_subdomains=parent, opener=opener)

    def _parse(self, text: str, init: bool) -> None:
        for start in split_list(text):
            if start.startswith("#"):
                log.warning("%s: comment at end of line is not supported: %s", self.name, start)
                break
            match, item = init, start
            while item.startswith("!"):
                match, item = not match, item[1:]
            if not item:
                raise ConfigError(f"{self.name}: no pattern after '!'")
            if item.startswith("/"):
                try:
                    data = Path(item).read_bytes()
                except OSError as exc:
                    reason = f"open file {item}: {exc.strerror}"
                    log.error("%s", reason)
                    surrogate = SurrogateTable(MapSpec("non-existent", item), reason)
                    self.items.append(_Item(match, f"non-existent:{item}", surrogate))
                    continue
                # Logical lines, as Postfix 3.9+ and its namadr_list vector read them (3.7
                # read physical lines): a table spec may continue on indented lines.
                for _lineno, line in logical_lines(data, item):
                    self._parse(line.decode("utf-8", "surrogateescape"), match)
            elif _is_table(item):
                self.items.append(_Item(match, item, self._open(item)))
            else:
                self.items.append(_Item(match, item.lower()))

    def _open(self, spec: str) -> Table:
        if spec not in self._tables:
            try:
                if self._opener is not None:
                    self._tables[spec] = self._opener(spec)
                    return self._tables[spec]
                self._tables[spec] = open_table(spec, self._options)
            except ConfigError as exc:
                log.error("%s", exc)
                parsed = MapSpec(*spec.split(":", 1))
                self._tables[spec] = SurrogateTable(parsed, str(exc))
        return self._tables[spec]

    @property
    def fixed_answers(self) -> bool:
        """Whether the list's answers cannot change (it names no tables)."""
        return self._memo is not None

    def match(self, *args: str) -> bool:
        """Whether the list matches: one argument for string and domain lists, the host name
        and address for host lists.

        :raises LookupFailed: a table failed, or a network pattern is malformed.
        """
        memo = self._memo
        if memo is not None:
            found = memo.get(args)
            if found is None:
                if len(memo) > _MEMO_LIMIT:
                    memo.clear()
                found = memo[args] = self._match(args)
            return found
        return self._match(args)

    def _match(self, args: tuple[str, ...]) -> bool:
        funcs: tuple[Callable[[_Item, str], bool], ...]
        if self.kind is ListKind.HOST:
            funcs = (self._match_hostname, self._match_hostaddr)
        elif self.kind is ListKind.DOMAIN:
            funcs = (self._match_hostname,)
        else:
            funcs = (self._match_string,)
        folded = [arg.lower() for arg in args]
        for item in self.items:
            for func, arg in zip(funcs, folded, strict=False):
                if func(item, arg):
                    return item.match
        return False

    __call__ = match

    def _lookup(self, item: _Item, key: str) -> bool:
        assert item.table is not None
        try:
            return item.table.lookup(key) is not None
        except Exception as exc:
            log.warning("%s: %s: table lookup problem", self.name, item.pattern)
            if isinstance(exc, TemporaryLookupError):
                raise
            raise TemporaryLookupError(
                f"{self.name}: {item.pattern}: table lookup problem"
            ) from exc

    def _match_string(self, item: _Item, string: str) -> bool:
        if item.table is not None:
            return self._lookup(item, string)
        return string == item.pattern

    def _match_hostname(self, item: _Item, name: str) -> bool:
        if item.table is not None:
            fixed = item.table.fixed_keys
            entry = name
            first = True
            while entry:
                if (first or fixed) and self._lookup(item, entry):
                    return True
                first = False
                dot = entry.find(".", 1)
                if dot < 0:
                    break
                entry = entry[dot + 1 :] if self.parent else entry[dot:]
            return False
        pattern = item.pattern
        if name == pattern:
            return True
        if self.parent:
            return len(name) > len(pattern) and name.endswith("." + pattern)
        return pattern.startswith(".") and len(name) > len(pattern) and name.endswith(pattern)

    def _match_hostaddr(self, item: _Item, addr: str) -> bool:
        if any(ch not in _V6_CHARS for ch in addr):
            return False
        if item.table is not None:
            return self._lookup(item, addr)
        pattern = item.pattern
        if not pattern.startswith("["):
            if addr == pattern:
                return True
        elif pattern == f"[{addr}]":
            return True
        if (
            (":" in addr) != (":" in pattern)
            or not any(ch in ":/" for ch in pattern)
            or all(ch in _V4_CHARS for ch in pattern)
            or any(ch not in _V6_CHARS | {"[", "]", "/"} for ch in pattern)
        ):
            return False
        try:
            network = parse_cidr(pattern)
        except CidrPatternError as exc:
            log.warning("%s: %s", self.name, exc)
            raise TemporaryLookupError(f"{self.name}: {exc}") from exc
        return cidr_match(network, addr)

    def close(self) -> None:
        """Close the tables the list opened."""
        for table in self._tables.values():
            table.close()


def interface_addresses(protocols: str = "all") -> list[str]:
    """This machine's interface addresses (what ``inet_interfaces = all`` means)."""
    out: list[str] = []
    if protocols in ("all", "ipv4") or "ipv4" in protocols:
        out += [addr for addr, _mask in _ipv4_networks()]
    if protocols in ("all", "ipv6") or "ipv6" in protocols:
        out += [str(addr) for addr, _bits in _ipv6_networks()]
    return out


def _ipv4_networks() -> list[tuple[str, str]]:
    """``(address, netmask)`` of each IPv4 interface."""
    out = []
    for _index, name in socket.if_nameindex():
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            request = struct.pack("256s", name.encode()[:15])
            addr = fcntl.ioctl(sock.fileno(), 0x8915, request)  # SIOCGIFADDR
            mask = fcntl.ioctl(sock.fileno(), 0x891B, request)  # SIOCGIFNETMASK
            out.append((socket.inet_ntoa(addr[20:24]), socket.inet_ntoa(mask[20:24])))
        except OSError:
            pass
        finally:
            sock.close()
    return out


def _ipv6_networks() -> list[tuple[ipaddress.IPv6Address, int]]:
    """``(address, prefix length)`` of each IPv6 interface address (``/proc/net/if_inet6``)."""
    try:
        lines = Path("/proc/net/if_inet6").read_text().splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        fields = line.split()
        out.append((ipaddress.IPv6Address(bytes.fromhex(fields[0])), int(fields[2], 16)))
    return out


def mynetworks_default(style: str, protocols: str = "all") -> str:
    """The ``mynetworks`` Postfix computes when main.cf does not set it (``mynetworks.c``):
    ``host`` lists this machine's addresses, ``subnet`` their subnets, ``class`` their
    class A/B/C networks (IPv6: as for ``subnet``)."""
    style = style.strip().lower()
    if style not in ("host", "subnet", "class"):
        raise ConfigError(f"unknown mynetworks_style value: {style}")
    out: list[str] = []
    if protocols in ("all", "ipv4") or "ipv4" in protocols:
        for addr, mask in _ipv4_networks():
            if style == "host":
                out.append(f"{addr}/32")
                continue
            bits = bin(int(ipaddress.IPv4Address(mask))).count("1")
            if style == "class":
                first = int(addr.split(".")[0])
                bits = 8 if first < 128 else 16 if first < 192 else 24 if first < 224 else bits
            net = ipaddress.IPv4Network(f"{addr}/{bits}", strict=False)
            out.append(f"{net.network_address}/{bits}")
    if protocols in ("all", "ipv6") or "ipv6" in protocols:
        for addr6, prefix in _ipv6_networks():
            bits = 128 if style == "host" else prefix
            net6 = ipaddress.IPv6Network(f"{addr6}/{bits}", strict=False)
            out.append(f"[{net6.network_address}]/{bits}")
    return " ".join(dict.fromkeys(out))


def _interface_list(value: str, protocols: str) -> list[str]:
    """The addresses an ``inet_interfaces``/``proxy_interfaces`` value names."""
    items = [item.lower() for item in split_list(value)]
    if not items:
        return []
    if items == ["all"]:
        return interface_addresses(protocols)
    out: list[str] = []
    for item in items:
        if item == "loopback-only":
            out += ["127.0.0.1", "::1"]
            continue
        host = item.strip("[]")
        try:
            infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
        except (OSError, UnicodeError):
            continue
        out += [str(info[4][0]) for info in infos]
    return out


class LocalDomains:
    """Whether a domain is this machine (``resolve_local()``): it is in ``mydestination``, or
    it is an ``[address]`` of ``inet_interfaces`` or ``proxy_interfaces``.

    :param addresses: the machine's own addresses; default: from the interfaces parameters.
    """

    def __init__(
        self,
        mydestination: str,
        addresses: Iterable[str],
        *,
        opener: Callable[[str], Table] | None = None,
    ) -> None:
        self.list = MatchList("mydestination", mydestination, ListKind.STRING, opener=opener)
        self.addresses = frozenset(_normal(a) for a in addresses)

    @classmethod
    def from_values(
        cls, values: Mapping[str, str], *, opener: Callable[[str], Table] | None = None
    ) -> LocalDomains:
        """From expanded parameter values (``mydestination``, ``inet_interfaces``,
        ``proxy_interfaces``, ``inet_protocols``)."""
        protocols = values.get("inet_protocols", "all")
        addresses = _interface_list(values.get("inet_interfaces", "all"), protocols)
        addresses += _interface_list(values.get("proxy_interfaces", ""), protocols)
        return cls(values.get("mydestination", ""), addresses, opener=opener)

    @property
    def fixed_answers(self) -> bool:
        """Whether the answers cannot change (``mydestination`` names no tables)."""
        return self.list.fixed_answers

    def is_local(self, domain: str) -> bool:
        """Whether ``domain`` is local.

        :raises LookupFailed: a table in ``mydestination`` failed.
        """
        if domain.endswith("."):
            domain = domain[:-1]
        if not domain or domain.endswith("."):
            return False
        if self.list.match(domain):
            return True
        if domain.startswith("[") and domain.endswith("]"):
            bare = valid_mailhost_addr(domain[1:-1])
            if bare is not None and _normal(bare) in self.addresses:
                return True
        return False

    __call__ = is_local


def _normal(address: str) -> str:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        return socket.inet_ntop(family, socket.inet_pton(family, address))
    except (OSError, ValueError):
        return address.lower()
