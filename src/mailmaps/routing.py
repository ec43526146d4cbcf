"""Resolving a recipient to an address class, transport and nexthop, as trivial-rewrite does.

This is the ``resolve`` half of trivial-rewrite(8) (``src/trivial-rewrite/resolve.c``; SPEC
§5.2): the queue manager asks it, for each recipient after cleanup, where the mail goes.

1. Local domains are stripped off repeatedly, and what remains is rewritten in the local
   context, so ``user%remote@local`` and ``remote!user@local`` reach ``user@remote``;
   a quoted local part that hides a routing operator is opened up (``resolve_dequoted_address``);
   an empty local part is ``$empty_address_recipient``, and an address without a domain gets
   ``@$myhostname``.
2. The domain is checked: a bad ``[literal]`` or host name is an error; a bare IP address
   becomes ``[ip]`` (``resolve_numeric_domain``).
3. The address class decides the transport and nexthop: local (``mydestination`` and the
   machine's addresses), virtual alias (``virtual_alias_domains``: ``error:5.1.1 User unknown in
   virtual alias table``), virtual mailbox, relay, default; ``relayhost`` and the sender-dependent
   maps give the nexthop for relay and default; ``transport:nexthop`` in main.cf beats both.
4. ``transport_maps`` may override (not for the virtual alias class), then ``relocated_maps``
   bounce moved users, then an address starting with ``-`` is refused.

The tables and domain lists come in as callables (see :class:`RouteTables`), so this module is
the algorithm alone; :mod:`mailmaps.resolver` builds them from a configuration.  Each callable
raises :class:`~mailmaps.errors.LookupFailed` when its table fails, which makes the result
:attr:`ResolveFlag.FAIL` (try again later), never "not found".
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from mailmaps.errors import LookupFailed
from mailmaps.hostname import valid_hostaddr, valid_mailhost_literal, valid_utf8_hostname
from mailmaps.rewrite import RewriteSettings, rewrite_tree
from mailmaps.rfc822 import (
    PLAIN_ADDRESS,
    Node,
    TokenType,
    internalize,
    quote_local,
    scan_addr,
    scan_nodes,
)

__all__ = [
    "AddressClass",
    "ResolveFlag",
    "Route",
    "RouteSettings",
    "RouteTables",
    "Router",
]

log = logging.getLogger("mailmaps")

#: The five address classes, by the names ``mailmaps resolve --json`` uses.
AddressClass = Literal["local", "virtual_alias", "virtual_mailbox", "relay", "default"]


CHANNEL_NOT_UPDATED = "CHANNEL NOT UPDATED"
NEXTHOP_NOT_UPDATED = "NEXTHOP NOT UPDATED"
NEXTRCPT_NOT_UPDATED = "NEXTRCPT NOT UPDATED"


class ResolveFlag(enum.IntFlag):
    """The flags of a resolver reply (``RESOLVE_FLAG_*`` and ``RESOLVE_CLASS_*``)."""

    FINAL = 0x1
    ROUTED = 0x2
    ERROR = 0x4
    FAIL = 0x8
    CLASS_LOCAL = 0x100
    CLASS_ALIAS = 0x200
    CLASS_VIRTUAL = 0x400
    CLASS_RELAY = 0x800
    CLASS_DEFAULT = 0x1000


# Plain ints for the resolver's arithmetic: IntFlag operations cost microseconds.
_FAIL = int(ResolveFlag.FAIL)
_ERROR = int(ResolveFlag.ERROR)
_ROUTED = int(ResolveFlag.ROUTED)
_CLASS_LOCAL = int(ResolveFlag.CLASS_LOCAL)
_CLASS_ALIAS = int(ResolveFlag.CLASS_ALIAS)
_CLASS_VIRTUAL = int(ResolveFlag.CLASS_VIRTUAL)
_CLASS_RELAY = int(ResolveFlag.CLASS_RELAY)
_CLASS_DEFAULT = int(ResolveFlag.CLASS_DEFAULT)

_FLAG_VALUES: dict[int, ResolveFlag] = {}


def _flags(value: int) -> ResolveFlag:
    """``ResolveFlag(value)``, remembered (making an IntFlag member costs a microsecond)."""
    flag = _FLAG_VALUES.get(value)
    if flag is None:
        flag = _FLAG_VALUES[value] = ResolveFlag(value)
    return flag


_CLASS_NAMES: tuple[tuple[int, AddressClass], ...] = (
    (_CLASS_LOCAL, "local"),
    (_CLASS_ALIAS, "virtual_alias"),
    (_CLASS_VIRTUAL, "virtual_mailbox"),
    (_CLASS_RELAY, "relay"),
    (_CLASS_DEFAULT, "default"),
)


def _class_of(flags: int) -> AddressClass | None:
    """The address class that resolver flags name, or ``None``."""
    for bit, name in _CLASS_NAMES:
        if flags & bit:
            return name
    return None


@dataclass(frozen=True, slots=True)
class Route:
    """What the resolver answers for one recipient.

    :ivar transport: the master.cf service that delivers (``local``, ``smtp``, ``error``).
    :ivar nexthop: where it delivers: a domain, ``[addr]:port``, or for ``error`` the reason.
    :ivar recipient: the recipient in internal form, with local domains resolved.
    :ivar flags: :class:`ResolveFlag` bits: the class, and ERROR (a bad address), FAIL (a
        table failed: try again later), ROUTED (the local part holds a routing operator).
    """

    transport: str
    nexthop: str
    recipient: str
    flags: ResolveFlag

    @property
    def address_class(self) -> AddressClass | None:
        """The address class, or ``None`` if the resolver failed before choosing one."""
        return _class_of(int(self.flags))

    @property
    def failed(self) -> bool:
        """A table lookup failed: the answer is "try again later"."""
        return bool(int(self.flags) & _FAIL)

    @property
    def error(self) -> bool:
        """The address is malformed (``user@1.2.3``, ``-user``)."""
        return bool(int(self.flags) & _ERROR)


@dataclass(frozen=True, slots=True)
class RouteSettings:
    """The main.cf parameters resolving depends on (expanded values; Postfix 3.7 defaults,
    except ``myhostname``, which depends on the machine)."""

    myhostname: str = "localhost"
    rewrite: RewriteSettings = field(default_factory=RewriteSettings)
    empty_address_recipient: str = "MAILER-DAEMON"
    resolve_dequoted_address: bool = True
    resolve_null_domain: bool = False
    resolve_numeric_domain: bool = False
    smtputf8_enable: bool = True
    show_user_unknown_table_name: bool = True
    allow_min_user: bool = False
    local_transport: str = "local:$myhostname"
    virtual_transport: str = "virtual"
    relay_transport: str = "relay"
    default_transport: str = "smtp"
    relayhost: str = ""
    empty_address_default_transport_maps_lookup_key: str = "<>"
    empty_address_relayhost_maps_lookup_key: str = "<>"
    #: The parameter names behind the transports, for warnings (address_verify_* in verify
    #: context).
    names: dict[str, str] = field(
        default_factory=lambda: {
            "local_transport": "local_transport",
            "virtual_transport": "virtual_transport",
            "relay_transport": "relay_transport",
            "default_transport": "default_transport",
        }
    )


#: ``(recipient, recipient domain, transport, nexthop)`` -> the new ``(transport, nexthop)``,
#: or ``None`` when no transport_maps entry applies.
TransportLookup = Callable[[str, str, str, str], tuple[str, str] | None]
#: A domain -> is it in the list.
DomainTest = Callable[[str], bool]
#: An address or sender key -> the table's value, or ``None``.
AddressLookup = Callable[[str], str | None]


@dataclass(frozen=True, slots=True)
class RouteTables:
    """The lists and tables the resolver consults; ``None`` for a parameter left empty.

    Each callable raises :class:`~mailmaps.errors.LookupFailed` when a table fails.
    """

    is_local: DomainTest
    virtual_alias_domains: DomainTest | None = None
    virtual_mailbox_domains: DomainTest | None = None
    relay_domains: DomainTest | None = None
    transport: TransportLookup | None = None
    relocated: AddressLookup | None = None
    sender_default_transport: AddressLookup | None = None
    sender_relayhost: AddressLookup | None = None


class Router:
    """trivial-rewrite's resolver over a fixed configuration; :meth:`resolve` is thread-safe."""

    def __init__(self, settings: RouteSettings, tables: RouteTables) -> None:
        self.settings = settings
        self.tables = tables
        self._domains: dict[str, bool] = {}
        lists = (
            tables.is_local,
            tables.virtual_alias_domains,
            tables.virtual_mailbox_domains,
            tables.relay_domains,
        )
        self._plain_memo: dict[str, tuple[int, AddressClass, str, str] | None] | None = (
            {} if all(_remembers(test) for test in lists) else None
        )

    @property
    def sender_dependent(self) -> bool:
        """Whether routes depend on the sender (sender-dependent relayhost or default
        transport tables)."""
        t = self.tables
        return t.sender_relayhost is not None or t.sender_default_transport is not None

    def resolve(self, address: str, sender: str = "") -> Route:
        """Resolve ``address`` (internal form) for mail from ``sender`` (internal form)."""
        if PLAIN_ADDRESS.fullmatch(address) is not None:
            # user@domain in plain form: what the domain decides may be remembered.
            domain = address[address.rfind("@") + 1 :]
            known = self.plain_domain(domain)
            if known is not None:
                try:
                    return self._address_route(address, domain, known[2], known[3], known[0])
                except LookupFailed:  # as below: no class once a table failed
                    return Route(CHANNEL_NOT_UPDATED, NEXTHOP_NOT_UPDATED, address, _flags(_FAIL))
        flags = 0
        try:
            recipient, domain_is_remote, flags = self._strip_local(address, flags)
        except LookupFailed:
            return self._fail(flags)
        except _GiveUp:
            return self._fail(flags)
        if recipient is None:
            return self._fail(flags)
        at = recipient.rfind("@")
        rcpt_domain = recipient[at + 1 :]
        s = self.settings
        if rcpt_domain.startswith("["):
            if not valid_mailhost_literal(rcpt_domain):
                flags |= _ERROR
        elif s.smtputf8_enable and not _valid_utf8(recipient):
            flags |= _ERROR
        elif not self._valid_domain(rcpt_domain):
            if s.resolve_numeric_domain and valid_hostaddr(rcpt_domain):
                rcpt_domain = f"[{rcpt_domain}]"
                recipient = recipient[: at + 1] + rcpt_domain
                try:
                    if self.tables.is_local(rcpt_domain):
                        domain_is_remote = False
                except LookupFailed:
                    return self._fail(flags)
            else:
                flags |= _ERROR
        if flags & _ERROR:
            return Route(
                CHANNEL_NOT_UPDATED,
                NEXTHOP_NOT_UPDATED,
                recipient,
                _flags(flags | _CLASS_DEFAULT),
            )
        first_operator = min(
            (i for i in (recipient.find(c) for c in "@!%") if i >= 0), default=len(recipient)
        )
        if recipient[first_operator + 1 :] != rcpt_domain:
            flags |= _ROUTED
        try:
            return self._route(recipient, rcpt_domain, domain_is_remote, sender, flags)
        except LookupFailed:
            return Route(CHANNEL_NOT_UPDATED, NEXTHOP_NOT_UPDATED, recipient, _flags(flags | _FAIL))

    def _valid_domain(self, domain: str) -> bool:
        """:func:`valid_utf8_hostname`, remembered per domain (it depends on nothing else)."""
        known = self._domains.get(domain)
        if known is None:
            if len(self._domains) > 65536:
                self._domains.clear()
            known = self._domains[domain] = valid_utf8_hostname(
                domain, smtputf8=self.settings.smtputf8_enable
            )
        return known

    def _fail(self, flags: int) -> Route:
        return Route(
            CHANNEL_NOT_UPDATED,
            NEXTHOP_NOT_UPDATED,
            NEXTRCPT_NOT_UPDATED,
            _flags(flags | _FAIL),
        )

    # --- step 1: strip local domains, rewrite, repeat ------------------------------------

    def _strip_local(self, address: str, flags: int) -> tuple[str | None, bool, int]:
        """The recipient with its local domain put back, and whether its domain is remote."""
        if PLAIN_ADDRESS.fullmatch(address) is not None:
            # user@domain in plain form: the loop below would only strip a local domain and
            # put it back.
            return address, not self.tables.is_local(address[address.rfind("@") + 1 :]), flags
        s = self.settings
        tree = scan_addr(quote_local(address))
        saved_domain: Node | None = None
        remote_at: Node | None = None
        loop_max = len(address) + 100
        loop_count = 0
        while True:
            if loop_count > loop_max:
                log.warning(
                    "resolve_addr: <%s>: giving up after %d iterations", address, loop_count
                )
                raise _GiveUp
            loop_count += 1
            tail = tree.tail
            # One trailing dot goes, but not after a dot or "@" (bogus forms stay as they are).
            if (
                tail is not None
                and tail.type == "."
                and tail.rfind_type("@") is not None
                and tail.prev is not None
                and tail.prev.type not in (".", "@")
            ):
                tree.sub_keep_before(tail)
            if s.resolve_null_domain and tree.tail is not None and tree.tail.type == "@":
                tree.sub_keep_before(tree.tail)
            at = tree.tail.rfind_type("@") if tree.tail is not None else None
            if at is not None:
                if at.next is not None and not self.tables.is_local(internalize(at.next)):
                    remote_at = at
                    break
                tree.sub_keep_before(at)
                saved_domain = at
            if self._has_operator(tree):
                rewrite_tree(tree, "local", s.rewrite)
                continue
            if self._open_quoted(tree):
                continue
            head = tree.head
            if (
                head is not None
                and head is tree.tail
                and head.type is TokenType.QSTRING
                and head.text == ""
            ):
                tree.head = tree.tail = None
            if tree.head is None:
                _set_members(tree, scan_nodes(s.empty_address_recipient))
                continue
            if saved_domain is None:
                tree.sub_append(Node("@"))
                hostname = scan_nodes(s.myhostname)
                if hostname is not None:
                    tree.sub_append(hostname)
                continue
            break
        if remote_at is None:
            if saved_domain is not None:
                tree.sub_append(saved_domain)
            else:  # pragma: no cover - the loop always leaves a domain behind
                tree.sub_append(Node("@"))
        return internalize(tree.head), remote_at is not None, flags

    def _has_operator(self, tree: Node) -> bool:
        tail = tree.tail
        if tail is None:
            return False
        if tail.rfind_type("@") is not None:
            return True
        if self.settings.rewrite.swap_bangpath and tail.rfind_type("!") is not None:
            return True
        return self.settings.rewrite.allow_percent_hack and tail.rfind_type("%") is not None

    def _open_quoted(self, tree: Node) -> bool:
        """A quoted local part that hides ``@`` (or ``%``, ``!``): open it and rewrite."""
        s = self.settings
        head = tree.head
        if not (
            s.resolve_dequoted_address
            and head is not None
            and head is tree.tail
            and head.type is TokenType.QSTRING
        ):
            return False
        local = head.text
        oper = local.rfind("@")
        if oper < 0 and s.rewrite.allow_percent_hack:
            oper = local.rfind("%")
        if oper < 0 and s.rewrite.swap_bangpath:
            oper = local.rfind("!")
        if oper < 0:
            return False
        if local[oper] == "%":
            local = local[:oper] + "@" + local[oper + 1 :]
            head.text = local
        text = internalize(head)
        if local[oper] == "@":
            text = quote_local(text)
        _set_members(tree, scan_nodes(text))
        rewrite_tree(tree, "local", s.rewrite)
        return True

    # --- step 3 and 4: class, transport, nexthop ------------------------------------------

    def _route(
        self, recipient: str, rcpt_domain: str, remote: bool, sender: str, flags: int
    ) -> Route:
        channel, nexthop, flags = self._domain_route(rcpt_domain, remote, sender, flags)
        if flags & _FAIL:
            return Route(channel, nexthop, recipient, _flags(flags))
        return self._address_route(recipient, rcpt_domain, channel, nexthop, flags)

    def _address_route(
        self, recipient: str, rcpt_domain: str, channel: str, nexthop: str, flags: int
    ) -> Route:
        """transport_maps and relocated_maps for the recipient, after the domain's route."""
        t, s = self.tables, self.settings
        if t.transport is not None and not flags & _CLASS_ALIAS:
            found = t.transport(recipient, rcpt_domain, channel, nexthop)
            if found is not None:
                channel, nexthop = found
        if t.relocated is not None:
            moved = t.relocated(recipient)
            if moved is not None:
                channel, nexthop = "error", f"5.1.6 User has moved to {moved}"
        if not s.allow_min_user and recipient.startswith("-"):
            flags |= _ERROR
        return Route(channel, nexthop, recipient, _flags(flags))

    def plain_domain(self, domain: str) -> tuple[int, AddressClass, str, str] | None:
        """What trivial-rewrite decides from the domain alone, for a plain ``user@domain``:
        ``(flags, class, transport, nexthop)`` before the transport and relocated tables, or
        ``None`` when the address must take the whole path (an invalid or numeric domain, a
        table failed, sender-dependent tables). Remembered per domain while the domain lists
        have no tables."""
        memo = self._plain_memo
        if memo is not None and domain in memo:
            return memo[domain]
        answer: tuple[int, AddressClass, str, str] | None = None
        t = self.tables
        if not self.sender_dependent and self._valid_domain(domain):
            try:
                remote = not t.is_local(domain)
                channel, nexthop, flags = self._domain_route(domain, remote, "", 0)
                cls = _class_of(flags)
                if cls is not None and not flags & _FAIL:
                    answer = flags, cls, channel, nexthop
            except LookupFailed:
                return None  # not remembered: the next address asks the tables again
        if memo is not None:
            if len(memo) > 65536:
                memo.clear()
            memo[domain] = answer
        return answer

    def _domain_route(
        self, rcpt_domain: str, remote: bool, sender: str, flags: int
    ) -> tuple[str, str, int]:
        """The address class, transport and nexthop that the domain and sender give."""
        s, t = self.settings, self.tables
        blame = ""
        nexthop = NEXTHOP_NOT_UPDATED
        if not remote:
            channel = s.local_transport
            nexthop = rcpt_domain
            blame = s.names["local_transport"]
            flags |= _CLASS_LOCAL
        elif t.virtual_alias_domains is not None and t.virtual_alias_domains(rcpt_domain):
            channel = "error"
            suffix = " in virtual alias table" if s.show_user_unknown_table_name else ""
            nexthop = f"5.1.1 User unknown{suffix}"
            flags |= _CLASS_ALIAS
        elif t.virtual_mailbox_domains is not None and t.virtual_mailbox_domains(rcpt_domain):
            channel = s.virtual_transport
            nexthop = rcpt_domain
            blame = s.names["virtual_transport"]
            flags |= _CLASS_VIRTUAL
        else:
            if t.relay_domains is not None and t.relay_domains(rcpt_domain):
                channel = s.relay_transport
                blame = s.names["relay_transport"]
                flags |= _CLASS_RELAY
            else:
                channel, blame = self._default_transport(sender)
                flags |= _CLASS_DEFAULT
            relay = None
            if t.sender_relayhost is not None:
                key = sender or s.empty_address_relayhost_maps_lookup_key
                relay = t.sender_relayhost(key)
                if relay == "":
                    log.warning(
                        "sender_dependent_relayhost_maps: ignoring null lookup result for %s", key
                    )
                    relay = None
                elif relay is not None and relay.lower() == "dunno":
                    relay = None
            nexthop = relay or s.relayhost or rcpt_domain
        channel, colon, destination = channel.partition(":")
        if colon and destination:
            nexthop = destination
        if not channel:
            log.warning("parameter %s: null transport is not allowed", blame)
            flags |= _FAIL
        return channel, nexthop, flags

    def _default_transport(self, sender: str) -> tuple[str, str]:
        s, t = self.settings, self.tables
        if t.sender_default_transport is not None:
            key = sender or s.empty_address_default_transport_maps_lookup_key
            found = t.sender_default_transport(key)
            if found is not None:
                if found == "":
                    log.warning(
                        "sender_dependent_default_transport_maps: ignoring null lookup result "
                        "for %s",
                        key,
                    )
                    found = "DUNNO"
                channel = s.default_transport if found.lower() == "dunno" else found
                return channel, "sender_dependent_default_transport_maps"
        return s.default_transport, s.names["default_transport"]


def _remembers(test: DomainTest | None) -> bool:
    """Whether a domain list's answers cannot change (it has no tables)."""
    if test is None:
        return True
    return bool(getattr(getattr(test, "__self__", test), "fixed_answers", False))


class _GiveUp(Exception):
    """The resolver loop ran too long on a pathological address."""


def _set_members(tree: Node, first: Node | None) -> None:
    """Replace the members of ``tree`` by the list at ``first`` (owner-less, as scanned)."""
    tree.head = first
    tree.tail = first
    while tree.tail is not None and tree.tail.next is not None:
        tree.tail = tree.tail.next


def _valid_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
