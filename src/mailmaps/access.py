"""smtpd access decisions: restriction lists, access(5) tables and restriction classes.

An :class:`AccessPolicy` is built once from a main.cf (tables opened, lists parsed) and then
answers, for a :class:`Session` (client, HELO, SASL login, sender, recipient), what Postfix 3.7's
smtpd would reply, as a :class:`Decision` with the reply text, the restriction and table entry
that decided, and a trace of every restriction and lookup.  It follows ``smtpd_check.c``:

* the restriction lists ``smtpd_{client,helo,sender,relay,recipient,etrn,data,
  end_of_data}_restrictions`` with ``smtpd_delay_reject``, ``smtpd_restriction_classes``,
  ``warn_if_reject``, ``defer_if_permit``/``defer_if_reject`` and the implicit
  ``reject_unlisted_sender``/``reject_unlisted_recipient``;
* access(5) tables through ``check_*_access``: the lookup order for host names, addresses and
  mail addresses, every action, restriction classes in a table's answer, and the enhanced
  status codes Postfix rewrites between sender and recipient (``smtpd_dsn_fix.c``);
* the restrictions that need no network, and those that need DNS through a
  :class:`DnsResolver` the caller provides (the default, :class:`NoDns`, answers every query
  with a temporary failure, as a server without DNS would).

The stage methods (:meth:`AccessPolicy.check_client`, ..., :meth:`~AccessPolicy.check_rcpt`)
are Postfix's ``smtpd_check_*()`` functions; :meth:`AccessPolicy.decide` adds what smtpd does
around them for one RCPT TO (address syntax, ``smtpd_helo_required``, the ``postmaster``
exception, stages rejected before RCPT when ``smtpd_delay_reject = no``).
"""

from __future__ import annotations

import enum
import ipaddress
import json
import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Protocol, Self

from mailmaps.config import MainConfig
from mailmaps.dsn import dsn_split, dsn_valid
from mailmaps.errors import ConfigError, LookupFailed, PermanentLookupError
from mailmaps.hostname import (
    valid_hostaddr,
    valid_hostname,
    valid_mailhost_addr,
    valid_utf8_hostname,
)
from mailmaps.maps import MapList
from mailmaps.matchlist import ListKind, MatchList, mynetworks_default
from mailmaps.policyclient import PolicyService
from mailmaps.resolver import Resolver
from mailmaps.routing import ResolveFlag, Route
from mailmaps.search import Strategy, mail_addr_find
from mailmaps.spec import split_list
from mailmaps.table import OpenOptions, Table
from mailmaps.text import fold, is_valid_utf8, printable

__all__ = [
    "AccessEvent",
    "AccessPolicy",
    "Decision",
    "DnsAnswer",
    "DnsResolver",
    "DnsStatus",
    "NameStatus",
    "NoDns",
    "Session",
    "StaticDns",
    "smtpd_dsn_fix",
]

log = logging.getLogger("mailmaps")

# Reply classes: the words smtpd puts in "<x>: CLASS rejected: ..." (smtpd_dsn_fix.h).
CLIENT = "Client host"
REV_CLIENT = "Unverified Client host"
CCERT = "Client certificate"
SASL_USER = "SASL login name"
HELO = "Helo command"
SENDER = "Sender address"
RECIPIENT = "Recipient address"
ETRN = "Etrn command"
DATA = "Data command"
EOD = "End-of-data"

# Restriction results (SMTPD_CHECK_*).
_DUNNO, _OK, _REJECT = 0, 1, 2

# Error classes (MAIL_ERROR_*): software, resource and data errors are never warnings only.
_POLICY, _PROTOCOL, _BOUNCE, _SOFTWARE, _RESOURCE, _DATA = (
    "policy",
    "protocol",
    "bounce",
    "software",
    "resource",
    "data",
)

Stage = Literal["CONNECT", "HELO", "MAIL", "RCPT", "ETRN", "DATA", "END-OF-MESSAGE"]


class NameStatus(enum.IntEnum):
    """How the client's host name lookup ended (``SMTPD_PEER_CODE_*``)."""

    OK = 2
    TEMP = 4
    PERM = 5
    FORGED = 6


# --- DNS ----------------------------------------------------------------------------------------


class DnsStatus(enum.Enum):
    """The outcome of a DNS query (``DNS_*``)."""

    OK = "ok"
    NOT_FOUND = "not found"
    RETRY = "retry"
    NULLMX = "nullmx"
    INVALID = "invalid"
    POLICY = "policy"


@dataclass(frozen=True, slots=True)
class DnsAnswer:
    """A DNS answer: the status and, when OK, the records as ``(type, value)`` pairs (MX
    values are ``"preference host"``, A and AAAA values addresses)."""

    status: DnsStatus
    records: tuple[tuple[str, str], ...] = ()


class DnsResolver(Protocol):
    """What access decisions ask of DNS: the records of the first of ``types`` that has any
    (``dns_lookup_l()`` with "stop on the first success")."""

    def query(self, name: str, types: Sequence[str]) -> DnsAnswer:
        """Look up ``name`` for each of ``types`` in turn (``A``, ``AAAA``, ``MX``, ``NS``,
        ``TXT``) and answer with the first that has records."""
        ...


class NoDns:
    """A resolver without DNS: every query is a temporary failure, as on a server whose DNS
    is unreachable.  ``reject_unknown_*`` restrictions then answer "try again later"."""

    def query(self, name: str, types: Sequence[str]) -> DnsAnswer:
        return DnsAnswer(DnsStatus.RETRY)


class StaticDns:
    """A resolver that answers from a fixed table, for tests and offline checks.

    :param records: name -> {type: [values]}; a name not listed does not exist.  An MX value
        of ``"0 ."`` is a null MX.
    """

    def __init__(self, records: Mapping[str, Mapping[str, Sequence[str]]]) -> None:
        self._records = {name.lower().rstrip("."): dict(types) for name, types in records.items()}

    def query(self, name: str, types: Sequence[str]) -> DnsAnswer:
        entry = self._records.get(name.lower().rstrip("."))
        if entry is None:
            return DnsAnswer(DnsStatus.NOT_FOUND)
        for rrtype in types:
            values = entry.get(rrtype.upper(), ())
            if rrtype.upper() == "MX" and list(values) == ["0 ."]:
                return DnsAnswer(DnsStatus.NULLMX)
            if values:
                return DnsAnswer(DnsStatus.OK, tuple((rrtype.upper(), v) for v in values))
        return DnsAnswer(DnsStatus.NOT_FOUND)


# --- sessions and decisions ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Session:
    """What smtpd knows about an SMTP session when it checks a command.

    :ivar client_address: the client's IP address (``1.2.3.4``, ``2001:db8::1``).
    :ivar client_name: the verified client host name, or ``unknown``.
    :ivar reverse_client_name: the unverified (reverse) name; default: ``client_name``.
    :ivar client_name_status: how the name lookup ended; default: OK for a name, PERM for
        ``unknown``.
    :ivar helo: the HELO/EHLO argument, or ``None`` before HELO.
    :ivar sender: the MAIL FROM address (internal form, ``""`` for ``<>``), or ``None``.
    :ivar recipient: the RCPT TO address (internal form), or ``None``.
    :ivar sasl_username: the SASL login name, if the client authenticated.
    :ivar ccert_fingerprint: the client certificate fingerprint, if any.
    :ivar ccert_pubkey_fingerprint: the client public key fingerprint, if any.
    :ivar encrypted: whether the session uses TLS.
    :ivar protocol: ``SMTP`` or ``ESMTP``.
    :ivar smtputf8: whether MAIL FROM asked for SMTPUTF8.
    :ivar rcpt_count: recipients accepted so far in this transaction.
    :ivar etrn_domain: the ETRN argument, for :meth:`AccessPolicy.check_etrn`.
    :ivar client_port, server_address, server_port: sent to policy services, nothing else.
    """

    client_address: str = "127.0.0.1"
    client_name: str = "unknown"
    reverse_client_name: str | None = None
    client_name_status: NameStatus | None = None
    helo: str | None = None
    sender: str | None = None
    recipient: str | None = None
    sasl_username: str | None = None
    sasl_method: str | None = None
    ccert_fingerprint: str | None = None
    ccert_pubkey_fingerprint: str | None = None
    encrypted: bool = False
    protocol: str = "ESMTP"
    smtputf8: bool = False
    rcpt_count: int = 0
    etrn_domain: str | None = None
    client_port: str = ""
    server_address: str = ""
    server_port: str = ""

    @property
    def name_status(self) -> NameStatus:
        """The client name status, defaulted."""
        if self.client_name_status is not None:
            return self.client_name_status
        return NameStatus.PERM if self.client_name == "unknown" else NameStatus.OK

    @property
    def namaddr(self) -> str:
        """``name[address]``, as smtpd names the client in replies and logs."""
        return f"{self.client_name}[{self.client_address}]"


@dataclass(frozen=True, slots=True)
class AccessEvent:
    """One step of a decision, for the trace.

    :ivar stage: the SMTP stage (``RCPT``).
    :ivar restriction: the restriction being evaluated (``check_recipient_access``).
    :ivar table: the table consulted (``hash:/etc/postfix/access``), if any.
    :ivar key: the key looked up, if any.
    :ivar value: what the table answered (``None``: not found).
    :ivar result: ``OK``, ``REJECT``, ``DUNNO`` or a note.
    """

    stage: str
    restriction: str
    table: str | None = None
    key: str | None = None
    value: str | None = None
    result: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        """The event as the JSON trace shows it."""
        return {
            "stage": self.stage,
            "restriction": self.restriction,
            "table": self.table,
            "key": self.key,
            "value": self.value,
            "result": self.result,
        }


@dataclass(frozen=True, slots=True)
class Decision:
    """What smtpd answers.

    :ivar stage: the stage that decided (``RCPT``; ``CONNECT``, ``HELO`` or ``MAIL`` when an
        earlier stage rejected).
    :ivar action: ``permit`` (a restriction said OK), ``dunno`` (nothing decided: accepted),
        ``reject`` (5xx), ``defer`` (4xx), ``discard`` (accepted and thrown away), or
        ``hangup`` (an access table said HANGUP: smtpd drops the connection without a reply,
        and ``reply`` is empty).
    :ivar reply: the SMTP reply, as smtpd sends it (``554 5.7.1 <x@y>: Relay access denied``,
        ``250 2.1.5 Ok``).
    :ivar decided_by: the restriction that decided (``check_recipient_access
        hash:/etc/postfix/access``), or ``None``.
    :ivar entry: for a table answer, ``(table, key, value)``.
    :ivar hold, filter, redirect, bcc, prepend: side effects that access tables requested.
    :ivar warnings: ``reject_warning`` texts from ``warn_if_reject``, and warnings logged.
    :ivar trace: every restriction and lookup, in order.
    """

    stage: str
    action: Literal["permit", "dunno", "reject", "defer", "discard", "hangup"]
    reply: str
    decided_by: str | None = None
    entry: tuple[str, str, str] | None = None
    hold: str | None = None
    filter: str | None = None
    redirect: str | None = None
    bcc: tuple[str, ...] = ()
    prepend: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    trace: tuple[AccessEvent, ...] = ()

    @property
    def code(self) -> int | None:
        """The SMTP reply code (``None`` after HANGUP)."""
        return int(self.reply[:3]) if self.reply else None

    @property
    def dsn(self) -> str | None:
        """The enhanced status code of the reply, if it has one."""
        n = dsn_valid(self.reply[4:])
        return self.reply[4 : 4 + n] if n else None

    def as_dict(self) -> dict[str, Any]:
        """The decision as ``mailmaps check-access --json`` prints it."""
        return {
            "reply": self.reply,
            "action": self.action,
            "stage": self.stage,
            "decided_by": self.decided_by,
            "entry": list(self.entry) if self.entry is not None else None,
            "hold": self.hold,
            "filter": self.filter,
            "redirect": self.redirect,
            "bcc": list(self.bcc),
            "prepend": list(self.prepend),
            "warnings": list(self.warnings),
            "trace": [event.as_dict() for event in self.trace],
        }

    def to_json(self) -> str:
        """One line of JSON (:meth:`as_dict`)."""
        return json.dumps(self.as_dict(), separators=(",", ":"))


def smtpd_dsn_fix(status: str, reply_class: str) -> str:
    """The enhanced status code smtpd sends for ``status`` when rejecting a ``reply_class``:
    address codes (``X.1.Y``) are turned into their sender or recipient counterparts, and
    into ``X.0.0`` for anything that is not an address (``smtpd_dsn_fix()``)."""
    if not (status[:1].isdigit() and status[1:4] == ".1."):
        return status
    micro = status[4:]
    if reply_class == SENDER:
        result = _SENDER_DSN.get(micro, "4.1.0")
    elif reply_class == RECIPIENT:
        result = _RECIPIENT_DSN.get(micro, "4.1.0")
    else:
        result = "4.0.0"
    if status[2:] != result[2:]:
        log.info(
            "mapping DSN status %s into %s status %s%s", status, reply_class, status[0], result[1:]
        )
    return status[0] + result[1:]


_SENDER_DSN = {
    "1": "4.1.7",
    "2": "4.1.8",
    "3": "4.1.7",
    "4": "4.1.7",
    "5": "4.1.0",
    "6": "4.1.7",
    "7": "4.1.7",
    "8": "4.1.8",
}
_RECIPIENT_DSN = {
    "1": "4.1.1",
    "2": "4.1.2",
    "3": "4.1.3",
    "4": "4.1.4",
    "5": "4.1.5",
    "6": "4.1.6",
    "7": "4.1.3",
    "8": "4.1.2",
}
#: SND_DSN: the sender status smtpd uses for unverified and unknown senders.
_SND_DSN = "4.1.7"

#: The restrictions that take a table argument, and what they look up.
_MAP_COMMANDS = {
    "check_client_access",
    "check_reverse_client_hostname_access",
    "check_ccert_access",
    "check_sasl_access",
    "check_helo_access",
    "check_sender_access",
    "check_recipient_access",
    "check_etrn_access",
    "check_client_mx_access",
    "check_reverse_client_hostname_mx_access",
    "check_helo_mx_access",
    "check_sender_mx_access",
    "check_recipient_mx_access",
    "check_client_ns_access",
    "check_reverse_client_hostname_ns_access",
    "check_helo_ns_access",
    "check_sender_ns_access",
    "check_recipient_ns_access",
    "check_client_a_access",
    "check_reverse_client_hostname_a_access",
    "check_helo_a_access",
    "check_sender_a_access",
    "check_recipient_a_access",
}
#: Restrictions that need a domain name argument.
_DOMAIN_ARG = {
    "reject_rbl_client",
    "reject_rbl",
    "permit_dnswl_client",
    "reject_rhsbl_client",
    "permit_rhswl_client",
    "reject_rhsbl_reverse_client",
    "reject_rhsbl_helo",
    "reject_rhsbl_sender",
    "reject_rhsbl_recipient",
}
#: At least one of these must appear in the relay or recipient restrictions.
_RCPT_REQUIRED = (
    "reject_unauth_destination",
    "defer_unauth_destination",
    "reject",
    "defer",
    "defer_if_permit",
    "check_relay_domains",
)
_TEMPFAIL_ACTIONS = {"defer": 0, "defer_if_permit": 1}
#: How many resolver answers a policy remembers (smtpd: 100 per process).
_ROUTE_CACHE = 10000
_FAIL = int(ResolveFlag.FAIL)
_ERROR = int(ResolveFlag.ERROR)
_ROUTED = int(ResolveFlag.ROUTED)
_CLASS_ALIAS = int(ResolveFlag.CLASS_ALIAS)
#: An access(5) answer: the action word (up to a space or tab) and the text after it.
_COMMAND = re.compile(r"([^ \t]*)[ \t\n\r\f\v]*(.*)", re.S)


class _Abort(Exception):
    """longjmp(smtpd_check_buf): a configuration or lookup error ends the stage."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


@dataclass
class _Defer:
    """A postponed deferral (``SMTPD_DEFER``)."""

    active: bool = False
    error_class: str = _POLICY
    code: int = 450
    dsn: str = "4.7.1"
    reason: str = ""


@dataclass
class _State:
    """smtpd's per-session check state: what survives from one stage to the next."""

    session: Session
    where: str = "CONNECT"
    #: The SMTP command being answered (smtpd's ``state->where``): restrictions delayed to
    #: RCPT TO run while it is ``RCPT``.
    command: str = "CONNECT"
    protocol: str = "SMTP"
    trace: bool = False
    sender: str | None = None
    recipient: str | None = None
    helo: str | None = None
    etrn: str | None = None
    recursion: int = 0
    warn_if_reject: int = 0
    defer_if_permit: _Defer = field(default_factory=_Defer)
    defer_if_reject: _Defer = field(default_factory=_Defer)
    defer_if_permit_client: bool = False
    defer_if_permit_helo: bool = False
    defer_if_permit_sender: bool = False
    discard: bool = False
    hold: str | None = None
    filter: str | None = None
    redirect: str | None = None
    bcc: list[str] = field(default_factory=list)
    prepend: list[str] = field(default_factory=list)
    error_text: str = ""
    sender_rcptmap_checked: bool = False
    recipient_rcptmap_checked: bool = False
    decided_by: str | None = None
    entry: tuple[str, str, str] | None = None
    #: The table answer last looked at, and whether the current restriction's result was
    #: already attributed by a nested evaluation (a restriction class).
    last_entry: tuple[str, str, str] | None = None
    fresh: bool = False
    reject_stage: str | None = None
    hangup: bool = False
    warnings: list[str] = field(default_factory=list)
    events: list[AccessEvent] = field(default_factory=list)


# --- the policy ---------------------------------------------------------------------------------


class AccessPolicy:
    """smtpd's access decisions under one configuration; the check methods are thread-safe.

    :param config: main.cf settings.
    :param resolver: the address resolver to share tables with (default: a new one).
    :param dns: answers the DNS questions of ``reject_unknown_*``, ``check_*_{a,mx,ns}_access``
        (default: :class:`NoDns`).
    :param check_required: refuse restriction lists that never reject relaying, as smtpd
        does at start-up; ``False`` allows them, as Postfix's ``smtpd_check`` test program does.
    :raises ConfigError: a restriction list is unusable (no ``reject_unauth_destination`` or
        equivalent in the relay and recipient restrictions; a restriction class without a
        definition; a bad tempfail action).
    """

    def __init__(
        self,
        config: MainConfig,
        *,
        resolver: Resolver | None = None,
        dns: DnsResolver | None = None,
        check_required: bool = True,
    ) -> None:
        self.config = config
        self._check_required = check_required
        self._own_resolver = resolver is None
        self.resolver = resolver if resolver is not None else Resolver(config)
        self.dns: DnsResolver = dns if dns is not None else NoDns()
        self._routes: dict[tuple[str, str], Route] = {}
        self._compiled: dict[tuple[tuple[str, ...], str | None], tuple[_Step, ...]] = {}
        self._lock = threading.Lock()
        try:
            self._setup()
        except BaseException:
            self.close()
            raise

    @classmethod
    def from_directory(cls, config_dir: str | Path, **kwargs: Any) -> AccessPolicy:
        """The policy for the configuration in ``config_dir``."""
        resolver = kwargs.pop("resolver", None) or Resolver.from_directory(config_dir)
        return cls(resolver.config, resolver=resolver, **kwargs)

    def close(self) -> None:
        """Close the tables (the resolver's too, if this policy made it)."""
        if self._own_resolver:
            self.resolver.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- setup -------------------------------------------------------------------------------

    def _setup(self) -> None:
        cfg = self.config
        get, flag, num = cfg.get, cfg.get_bool, cfg.get_int
        self.utf8 = flag("smtputf8_enable")
        parent = cfg.get_set("parent_domain_matches_subdomains")
        self.access_parent = "smtpd_access_maps" in parent
        mynetworks = cfg.raw("mynetworks")
        if mynetworks is None or "mynetworks" not in cfg.values:
            mynetworks = mynetworks_default(get("mynetworks_style"), get("inet_protocols"))
        else:
            mynetworks = get("mynetworks")
        opener = self.resolver.table
        self.mynetworks = MatchList(
            "mynetworks",
            mynetworks,
            ListKind.HOST,
            parent_matches_subdomains="mynetworks" in parent,
            opener=opener,
        )
        relay = get("relay_domains")
        self.relay_domains = (
            MatchList(
                "relay_domains",
                relay,
                ListKind.DOMAIN,
                parent_matches_subdomains="relay_domains" in parent,
                opener=opener,
            )
            if relay.strip()
            else None
        )
        self.codes = {
            name: num(name)
            for name in (
                "access_map_reject_code",
                "access_map_defer_code",
                "relay_domains_reject_code",
                "unknown_address_reject_code",
                "unknown_client_reject_code",
                "unknown_hostname_reject_code",
                "invalid_hostname_reject_code",
                "non_fqdn_reject_code",
                "reject_code",
                "defer_code",
                "multi_recipient_bounce_reject_code",
                "unknown_local_recipient_reject_code",
                "unknown_relay_recipient_reject_code",
                "unknown_virtual_alias_reject_code",
                "unknown_virtual_mailbox_reject_code",
                "plaintext_reject_code",
                "unverified_recipient_reject_code",
                "unverified_sender_reject_code",
                "unverified_recipient_defer_code",
                "unverified_sender_defer_code",
            )
        }
        self.delay_reject = flag("smtpd_delay_reject")
        self.helo_required = flag("smtpd_helo_required")
        self.reject_unlisted_sender = flag("smtpd_reject_unlisted_sender")
        self.reject_unlisted_recipient = flag("smtpd_reject_unlisted_recipient")
        self.allow_untrusted_routing = flag("allow_untrusted_routing")
        self.soft_bounce = flag("soft_bounce")
        self.show_unknown_table = flag("show_user_unknown_table_name")
        self.relay_before_rcpt = flag("smtpd_relay_before_recipient_restrictions")
        self.sasl_enabled = flag("smtpd_sasl_auth_enable")
        self.null_key = get("smtpd_null_access_lookup_key")
        self.double_bounce = get("double_bounce_sender")
        verify_sender = get("address_verify_sender")
        #: RCPT TO this address (any case) skips every restriction: the verification probes.
        self.verify_probe = (
            ""
            if not verify_sender or verify_sender == "<>"
            else (verify_sender if "@" in verify_sender else f"{verify_sender}@{get('myorigin')}")
        ).lower()
        self.unverified_why = {
            SENDER: get("unverified_sender_reject_reason"),
            RECIPIENT: get("unverified_recipient_reject_reason"),
        }
        self.tempfail = {}
        for name in (
            "unknown_address_tempfail_action",
            "unknown_helo_hostname_tempfail_action",
            "unverified_recipient_tempfail_action",
            "unverified_sender_tempfail_action",
        ):
            value = get(name).strip().lower()
            if value not in _TEMPFAIL_ACTIONS:
                raise ConfigError(f"bad configuration: {name} = {get(name)}")
            self.tempfail[name] = _TEMPFAIL_ACTIONS[value]
        # Restriction lists and classes.
        self.lists = {
            stage: split_list(get(f"smtpd_{stage}_restrictions"))
            for stage in ("client", "helo", "sender", "relay", "recipient", "etrn", "data")
        }
        self.lists["end_of_data"] = split_list(get("smtpd_end_of_data_restrictions"))
        self.classes: dict[str, list[str]] = {}
        for name in get("smtpd_restriction_classes").replace(",", " ").split():
            definition = cfg.raw(name)
            if definition is None or not definition.strip():
                raise ConfigError(f"restriction class `{name}' needs a definition")
            self.classes[name] = split_list(cfg.expand(definition))
        self.classes["reject_sender_login_mismatch"] = [
            "reject_authenticated_sender_login_mismatch",
            "reject_unauthenticated_sender_login_mismatch",
        ]
        if (
            self._check_required
            and not self._has_required(self.lists["recipient"])
            and not self._has_required(self.lists["relay"])
        ):
            raise ConfigError(
                "in parameter smtpd_relay_restrictions or smtpd_recipient_restrictions, specify "
                "at least one working instance of: reject_unauth_destination, "
                "defer_unauth_destination, reject, defer, defer_if_permit or check_relay_domains"
            )
        # Tables named in restriction lists: opened now, as smtpd opens them before chroot;
        # policy servers: parsed now.
        self._access: dict[str, MapList] = {}
        self._recorder = _Recorder()
        self.policies: dict[str, PolicyService] = {}
        policy_defaults = {
            name: get(f"smtpd_policy_service_{name}")
            for name in ("timeout", "default_action", "policy_context", "try_limit", "retry_delay")
        }
        for items in [*self.lists.values(), *self.classes.values()]:
            for prev, item in zip(["", *items], items, strict=False):
                if prev.lower() == "check_policy_service":
                    self.policies[item] = PolicyService.parse(
                        item, policy_defaults, get("queue_directory")
                    )
                elif ":" in item and not item.startswith("{"):
                    self._access_maps(item)
        # Recipient validation maps.
        r = self.resolver
        self.maps = {
            name: r.maps(name, "smtpd")
            for name in (
                "local_recipient_maps",
                "sender_canonical_maps",
                "recipient_canonical_maps",
                "canonical_maps",
                "virtual_alias_maps",
                "virtual_mailbox_maps",
                "relay_recipient_maps",
                "smtpd_sender_login_maps",
            )
        }
        self.has_local_rcpt_maps = bool(get("local_recipient_maps").strip())
        self.own_addresses = frozenset(
            _normal_address(a) for a in self.resolver.lists.local.addresses
        )
        networks = get("permit_mx_backup_networks")
        self.mx_backup_networks = (
            MatchList(
                "permit_mx_backup_networks",
                networks,
                ListKind.HOST,
                parent_matches_subdomains="permit_mx_backup_networks" in parent,
                opener=opener,
            )
            if networks.strip()
            else None
        )

    def _has_required(self, restrictions: Sequence[str]) -> bool:
        """Whether the list rejects by default somewhere (``has_required()``)."""
        i = 0
        while i < len(restrictions):
            item = restrictions[i].lower()
            if item == "warn_if_reject" and i + 1 < len(restrictions):
                i += 2
                continue
            if item == "permit":
                return False
            if item in _RCPT_REQUIRED:
                return True
            expansion = self.classes.get(restrictions[i])
            if expansion is not None and self._has_required(expansion):
                return True
            i += 1
        return False

    def compiled(self, restrictions: Sequence[str], acl: str | None) -> tuple[_Step, ...]:
        """A restriction list parsed once into steps: names with their arguments and handlers
        (``smtpd_check_parse()``, and the argument checks of ``generic_checks()``)."""
        key = (tuple(restrictions), acl)
        steps = self._compiled.get(key)
        if steps is None:
            steps = _compile(restrictions, acl)
            if len(self._compiled) >= _ROUTE_CACHE:
                self._compiled.clear()
            self._compiled[key] = steps
        return steps

    def _access_maps(self, spec: str) -> MapList:
        maps = self._access.get(spec)
        if maps is None:
            table = self.resolver.table(spec, OpenOptions(utf8=self.utf8))
            maps = MapList([table], OpenOptions(utf8=self.utf8), title=spec)
            maps.recorder = self._recorder
            self._access[spec] = maps
        return maps

    # --- stages ------------------------------------------------------------------------------

    def check_client(self, session: Session, *, trace: bool = False) -> Decision:
        """``smtpd_client_restrictions`` for the client (``smtpd_check_client()``)."""
        return self._run(session, "CONNECT", lambda run: run.check_client(), trace)

    def check_helo(self, session: Session, *, trace: bool = False) -> Decision:
        """``smtpd_helo_restrictions`` for ``session.helo`` (``smtpd_check_helo()``)."""
        return self._run(session, "HELO", lambda run: run.check_helo(session.helo), trace)

    def check_mail(self, session: Session, *, trace: bool = False) -> Decision:
        """``smtpd_sender_restrictions`` for ``session.sender`` (``smtpd_check_mail()``)."""
        return self._run(session, "MAIL", lambda run: run.check_mail(session.sender), trace)

    def check_rcpt(self, session: Session, *, trace: bool = False) -> Decision:
        """The relay and recipient restrictions for ``session.recipient``, after the delayed
        client, HELO and sender restrictions when ``smtpd_delay_reject = yes``
        (``smtpd_check_rcpt()``)."""
        return self._run(session, "RCPT", lambda run: run.check_rcpt(session.recipient), trace)

    def check_etrn(self, session: Session, *, trace: bool = False) -> Decision:
        """``smtpd_etrn_restrictions`` for ``session.etrn_domain``."""
        return self._run(session, "ETRN", lambda run: run.check_etrn(session.etrn_domain), trace)

    def check_data(self, session: Session, *, trace: bool = False) -> Decision:
        """``smtpd_data_restrictions``."""
        return self._run(session, "DATA", lambda run: run.check_data("data", DATA, "DATA"), trace)

    def check_end_of_data(self, session: Session, *, trace: bool = False) -> Decision:
        """``smtpd_end_of_data_restrictions``."""
        return self._run(
            session,
            "END-OF-MESSAGE",
            lambda run: run.check_data("end_of_data", EOD, "END-OF-MESSAGE"),
            trace,
        )

    def decide(self, session: Session, *, trace: bool = False) -> Decision:
        """The reply smtpd sends to the RCPT TO of ``session``: its recipient restrictions,
        and before them what smtpd checks at each command.

        With ``smtpd_delay_reject = no`` the client, HELO and sender restrictions run at their
        own commands, and the first that rejects gives the answer (its ``stage`` says which).

        :param trace: record every restriction and lookup in :attr:`Decision.trace` (slower).
        """
        return self._run(session, "RCPT", lambda run: run.decide(), trace)

    def _run(
        self, session: Session, stage: str, body: Callable[[_Run], str | None], trace: bool
    ) -> Decision:
        state = _State(
            session=session, where=stage, command=stage, protocol=session.protocol, trace=trace
        )
        run = _Run(self, state)
        reply = body(run)
        return run.decision(reply)

    # --- shared services ---------------------------------------------------------------------

    def resolve(self, sender: str | None, address: str) -> Route:
        """What trivial-rewrite answers for ``address`` from ``sender``, after rewriting both in
        the local context, with the recipient case-folded (``smtpd_resolve_addr()``).

        Answers are remembered, as smtpd remembers them for the life of the process; a failed
        lookup is not.
        """
        key = (sender or "", address)
        route = self._routes.get(key)
        if route is not None:
            return route
        r = self.resolver
        query = r.canonicalize(address)
        from_ = r.canonicalize(sender) if sender else ""
        route = r.router.resolve(query, from_)
        folded = fold(route.recipient, self.utf8)
        if folded != route.recipient:
            route = replace(route, recipient=folded)
        if not int(route.flags) & _FAIL:
            if len(self._routes) >= _ROUTE_CACHE:
                self._routes.clear()
            self._routes[key] = route
        return route


class _Run:
    """One evaluation: smtpd_check.c's functions over one :class:`_State`."""

    def __init__(self, policy: AccessPolicy, state: _State) -> None:
        self.p = policy
        self.st = state
        s = state.session
        state.helo = s.helo
        state.sender = s.sender
        self.name = s.client_name
        self.reverse_name = s.reverse_client_name or s.client_name
        self.addr = s.client_address
        self.namaddr = s.namaddr

    # --- trace and replies -------------------------------------------------------------------

    def event(self, restriction: str, **kwargs: str | None) -> None:
        if self.st.trace:
            self.st.events.append(AccessEvent(self.st.where, restriction, **kwargs))

    def decision(self, reply: str | None) -> Decision:
        st = self.st
        action: Literal["permit", "dunno", "reject", "defer", "discard", "hangup"]
        if st.hangup:
            action, reply = "hangup", ""
        elif reply is not None:
            action = "reject" if reply.startswith("5") else "defer"
        elif st.discard:
            action = "discard"
        else:
            action = "permit" if st.decided_by is not None else "dunno"
        text = reply if reply is not None else _ACCEPT_REPLY.get(st.where, "250 2.0.0 Ok")
        return Decision(
            stage=(st.reject_stage or st.where) if reply else st.where,
            action=action,
            reply=text,
            decided_by=st.decided_by,
            entry=st.entry,
            hold=st.hold,
            filter=st.filter,
            redirect=st.redirect,
            bcc=tuple(st.bcc),
            prepend=tuple(st.prepend),
            warnings=tuple(st.warnings),
            trace=tuple(st.events),
        )

    def reject(self, error_class: str, code: int, dsn: str, text: str) -> int:
        """``smtpd_check_reject()``: format the reply; warn instead under warn_if_reject."""
        st = self.st
        warn = bool(st.warn_if_reject) and error_class not in (_SOFTWARE, _RESOURCE, _DATA)
        reply = f"{code} {dsn} {text}"
        if code < 400 or code > 599:
            log.warning("SMTP reply code configuration error: %s", reply)
            reply = "450 4.7.1 Service unavailable"
        if not dsn_valid(reply[4:]):
            log.warning("DSN detail code configuration error: %s", reply)
            reply = "450 4.7.1 Service unavailable"
        reply = printable(reply[:510], self.p.utf8, " ")
        if not warn and st.defer_if_reject.active and reply[0] == "5":
            d = st.defer_if_reject
            st.warn_if_reject = 0
            d.active = False
            return self.reject(d.error_class, d.code, d.dsn, d.reason)
        if self.p.soft_bounce and reply[0] == "5":
            reply = "4" + reply[1:]
        reply = reply[:4] + reply[0] + reply[5:]
        if warn:
            st.warnings.append(f"reject_warning: {st.where} from {self.namaddr}: {reply}")
            self.event("warn_if_reject", result=reply)
            return _DUNNO
        st.error_text = reply
        st.reject_stage = st.where
        return _REJECT

    def defer_if(self, defer: _Defer, error_class: str, code: int, dsn: str, text: str) -> int:
        if not defer.active:
            defer.active = True
            defer.error_class, defer.code, defer.dsn, defer.reason = error_class, code, dsn, text
        return _DUNNO

    def defer_if_permit(self, action: int, error_class: str, code: int, dsn: str, text: str) -> int:
        """DEFER_IF_PERMIT2: postpone under defer_if_permit (unless warn_if_reject)."""
        if self.st.warn_if_reject == 0 and action != 0:
            return self.defer_if(self.st.defer_if_permit, error_class, code, dsn, text)
        return self.reject(error_class, code, dsn, text)

    def dict_retry(self, reply_name: str) -> _Abort:
        return _Abort(self.reject(_DATA, 451, "4.3.0", f"<{reply_name}>: Temporary lookup failure"))

    def server_error(self) -> _Abort:
        return _Abort(self.reject(_SOFTWARE, 451, "4.3.5", "Server configuration error"))

    def permit(self, restriction: str) -> int:
        """``smtpd_acl_permit()``: a restriction said OK (logged by Postfix on request)."""
        return _OK

    # --- stages ------------------------------------------------------------------------------

    def _stage(
        self, restrictions: list[str], reply_name: str, reply_class: str, acl: str | None
    ) -> int:
        st = self.st
        st.recursion = 0
        st.warn_if_reject = 0
        st.defer_if_reject.active = False
        st.decided_by = st.entry = None
        if not restrictions:
            return _DUNNO
        try:
            return self.generic(restrictions, reply_name, reply_class, acl)
        except _Abort as abort:
            return abort.status

    def check_client(self) -> str | None:
        st = self.st
        saved = st.where
        st.where = "CONNECT"
        st.defer_if_permit.active = False
        status = self._stage(self.p.lists["client"], self.namaddr, CLIENT, "check_client_access")
        st.defer_if_permit_client = st.defer_if_permit.active
        st.where = saved
        return st.error_text if status == _REJECT else None

    def check_helo(self, helo: str | None) -> str | None:
        if helo is None:
            return None
        st = self.st
        saved_where, saved_helo = st.where, st.helo
        st.where, st.helo = "HELO", helo
        st.defer_if_permit.active = st.defer_if_permit_client
        status = self._stage(self.p.lists["helo"], helo, HELO, "check_helo_access")
        st.defer_if_permit_helo = st.defer_if_permit.active
        st.where, st.helo = saved_where, saved_helo
        return st.error_text if status == _REJECT else None

    def check_mail(self, sender: str | None) -> str | None:
        if sender is None:
            return None
        st = self.st
        saved_where, saved_sender = st.where, st.sender
        st.where, st.sender = "MAIL", sender
        st.defer_if_permit.active = st.defer_if_permit_client or st.defer_if_permit_helo
        st.sender_rcptmap_checked = False
        status = self._stage(self.p.lists["sender"], sender, SENDER, "check_sender_access")
        st.defer_if_permit_sender = st.defer_if_permit.active
        if (
            self.p.reject_unlisted_sender
            and status != _REJECT
            and not st.sender_rcptmap_checked
            and not st.discard
            and sender
        ):
            try:
                status = self.check_sender_rcpt_maps(sender)
            except _Abort as abort:
                status = abort.status
        st.where, st.sender = saved_where, saved_sender
        return st.error_text if status == _REJECT else None

    def check_rcpt(self, recipient: str | None) -> str | None:
        if recipient is None:
            return None
        if recipient.lower() == "postmaster":
            return None
        st = self.st
        saved = st.recipient
        st.recipient = recipient
        st.where = "RCPT"
        try:
            return self._check_rcpt(recipient)
        finally:
            st.recipient = saved
            st.where = "RCPT"

    def _check_rcpt(self, recipient: str) -> str | None:
        st, p = self.st, self.p
        st.recipient_rcptmap_checked = False
        if p.delay_reject:
            err = self.check_client() or self.check_helo(st.helo) or self.check_mail(st.sender)
            st.where = "RCPT"
            if err is not None:
                return err
        st.defer_if_permit.active = st.defer_if_permit_sender
        rcpt_first = not p.relay_before_rcpt
        order = (
            [p.lists["recipient"], p.lists["relay"]]
            if rcpt_first
            else [p.lists["relay"], p.lists["recipient"]]
        )
        st.recursion = 0
        st.warn_if_reject = 0
        st.defer_if_reject.active = False
        status = _DUNNO
        st.decided_by = st.entry = None
        for restrictions in order:
            status = _DUNNO
            if restrictions:
                try:
                    status = self.generic(
                        restrictions, recipient, RECIPIENT, "check_recipient_access"
                    )
                except _Abort as abort:
                    status = abort.status
            if status == _REJECT:
                break
        if status != _REJECT and st.defer_if_permit.active:
            d = st.defer_if_permit
            status = self.reject(d.error_class, d.code, d.dsn, d.reason)
        if (
            p.reject_unlisted_recipient
            and status != _REJECT
            and not st.recipient_rcptmap_checked
            and not st.discard
        ):
            try:
                status = self.check_recipient_rcpt_maps(recipient)
            except _Abort as abort:
                status = abort.status
        return st.error_text if status == _REJECT else None

    def check_etrn(self, domain: str | None) -> str | None:
        if domain is None:
            return None
        st, p = self.st, self.p
        st.etrn = domain
        if p.delay_reject:
            err = self.check_client() or self.check_helo(st.helo)
            if err is not None:
                return err
        st.where = "ETRN"
        st.defer_if_permit.active = st.defer_if_permit_client or st.defer_if_permit_helo
        status = self._stage(p.lists["etrn"], domain, ETRN, "check_etrn_access")
        if status != _REJECT and st.defer_if_permit.active:
            d = st.defer_if_permit
            status = self.reject(d.error_class, d.code, d.dsn, d.reason)
        return st.error_text if status == _REJECT else None

    def check_data(self, name: str, reply_class: str, where: str) -> str | None:
        st = self.st
        st.where = where
        if st.session.rcpt_count > 1:
            st.recipient = None
        else:
            st.recipient = st.session.recipient
        st.defer_if_permit.active = False
        status = self._stage(self.p.lists[name], where, reply_class, None)
        if status != _REJECT and st.defer_if_permit.active:
            d = st.defer_if_permit
            status = self.reject(d.error_class, d.code, d.dsn, d.reason)
        return st.error_text if status == _REJECT else None

    def decide(self) -> str | None:
        """smtpd's command handlers around the checks, up to RCPT TO."""
        st, p, s = self.st, self.p, self.st.session
        # HELO: the arguments joined by single spaces (collapse_args()); smtpd stores the name
        # with unprintable and special characters replaced by "?" (neuter()).
        raw_helo = " ".join(s.helo.split()) if s.helo is not None else None
        st.helo = st.sender = st.recipient = None  # known only once their command came
        st.protocol = "SMTP"
        st.command = "CONNECT"
        if not p.delay_reject:
            err = self.check_client()
            if err is not None:
                st.where = "CONNECT"
                return err
            if raw_helo is not None:
                st.command = "EHLO" if s.protocol.upper() == "ESMTP" else "HELO"
                err = self.check_helo(raw_helo)
                if err is not None:
                    st.where = "HELO"
                    return err
        if raw_helo is not None:
            st.helo = _neuter(printable(raw_helo, p.utf8, "?"))
            st.protocol = s.protocol
        if p.helo_required and st.helo is None:
            st.where = "MAIL"
            self.event("smtpd_helo_required", result="503 5.5.1 Error: send HELO/EHLO first")
            return "503 5.5.1 Error: send HELO/EHLO first"
        if s.sender is None:
            st.where = "RCPT"
            return "503 5.5.1 Error: need MAIL command"
        if s.sender and self._bad_syntax(s.sender, s.smtputf8):
            st.where = "MAIL"
            return "501 5.1.7 Bad sender address syntax"
        st.command = "MAIL"
        if not p.delay_reject:
            err = self.check_mail(s.sender)
            if err is not None:
                st.where = "MAIL"
                return err
        st.sender = s.sender
        st.command = "RCPT"
        recipient = s.recipient
        if not recipient or self._bad_syntax(recipient, s.smtputf8):
            st.where = "RCPT"
            return "501 5.1.3 Bad recipient address syntax"
        if p.verify_probe and recipient.lower() == p.verify_probe:
            st.where = "RCPT"
            self.event("address_verify_sender", result="not checked")
            return None
        err = self.check_rcpt(recipient)
        if err is not None and p.delay_reject:
            st.where = "RCPT"
        return err

    def _bad_syntax(self, address: str, smtputf8: bool) -> bool:
        """``smtpd_check_addr()``: the resolver flags the address as malformed."""
        route = self.p.resolve(None, address)
        if int(route.flags) & _ERROR:
            return True
        at = route.recipient.rfind("@")
        domain = route.recipient[at + 1 :] if at >= 0 else ""
        return not smtputf8 and bool(domain) and not domain.isascii()

    # --- generic_checks ----------------------------------------------------------------------

    def generic(
        self, restrictions: Sequence[str], reply_name: str, reply_class: str, acl: str | None
    ) -> int:
        """``generic_checks()``: evaluate a restriction list until one decides."""
        st = self.st
        saved_recursion = st.recursion
        st.recursion += 1
        status = _DUNNO
        for step in self.p.compiled(restrictions, acl):
            if st.discard:
                break
            kind = step.kind
            if kind == _STEP_WARN_IF_REJECT:
                if st.warn_if_reject == 0:
                    st.warn_if_reject = st.recursion
                continue
            if kind == _STEP_SKIP:
                log.warning("restriction %s requires domain name argument", step.name)
                continue
            if kind == _STEP_ERROR:
                log.warning(step.error.replace("%CLASS", reply_class))
                raise self.server_error()
            st.fresh = False
            st.last_entry = None
            if step.handler is not None:
                status = step.handler(self, step.arg, reply_name, reply_class, acl, step.label)
            elif step.name in self.p.classes:
                self.event(step.name, result="restriction class")
                status = self.generic(self.p.classes[step.name], reply_name, reply_class, acl)
            else:
                log.warning('unknown smtpd restriction: "%s"', step.name)
                raise self.server_error()
            if step.ignored is not None and (
                status == _OK or (step.lname != "permit" and st.warn_if_reject == 0)
            ):
                log.warning("restriction `%s' after `%s' is ignored", step.ignored, step.lname)
            if status != _DUNNO and not st.fresh:
                st.decided_by, st.entry, st.fresh = step.label, st.last_entry, True
            if st.warn_if_reject >= st.recursion:
                st.warn_if_reject = 0
            if status != _DUNNO:
                break
            if st.defer_if_permit.active and st.defer_if_reject.active:
                break
        st.recursion = saved_recursion
        if st.warn_if_reject >= st.recursion:
            st.warn_if_reject = 0
        return status

    # --- access tables -----------------------------------------------------------------------

    def table_result(
        self,
        table: str,
        value: str,
        datum: str,
        reply_name: str,
        reply_class: str,
        acl: str | None,
        label: str,
    ) -> int:
        """``check_table_result()``: what an access(5) answer means."""
        st, p = self.st, self.p
        match = _COMMAND.match(value)
        assert match is not None
        cmd, text = match.group(1), match.group(2)
        word = cmd.upper()
        if word == "DUNNO":
            return _DUNNO
        if word in ("REJECT", "DEFER"):
            dsn, why = dsn_split("5.7.1" if word == "REJECT" else "4.7.1", text)
            code = p.codes[
                "access_map_reject_code" if word == "REJECT" else "access_map_defer_code"
            ]
            return self.reject(
                _POLICY,
                code,
                smtpd_dsn_fix(dsn, reply_class),
                f"<{reply_name}>: {reply_class} rejected: {why or 'Access denied'}",
            )
        if word == "HANGUP":
            st.warnings.append(f"hangup: {st.where} from {self.namaddr}: {text}")
            st.hangup = True
            raise _Abort(_REJECT)
        if word in ("INFO", "WARN"):
            st.warnings.append(f"{word.lower()}: {st.where} from {self.namaddr}: {text}")
            return _DUNNO
        if word in ("FILTER", "HOLD", "DISCARD", "REDIRECT", "BCC") and not self._can_delegate(
            table, word
        ):
            return _DUNNO
        if word == "FILTER":
            if not text:
                log.warning(
                    'access table %s entry "%s" has FILTER entry without value', table, datum
                )
            elif ":" not in text:
                log.warning(
                    'access table %s entry "%s" requires transport:destination', table, datum
                )
            else:
                st.filter = text
            return _DUNNO
        if word == "HOLD":
            if st.hold is None:
                st.hold = f"<{reply_name}>: {reply_class} {text or 'triggers HOLD action'}"
            return _DUNNO
        if word == "DISCARD":
            st.discard = True
            return self.permit(label)
        if word in ("REDIRECT", "BCC"):
            if "@" not in text:
                log.warning('access table %s entry "%s" requires user@domain target', table, datum)
            elif word == "REDIRECT":
                st.redirect = text
            else:
                st.bcc.append(text)
            return _DUNNO
        if word == "DEFER_IF_PERMIT":
            dsn, why = dsn_split("4.7.1", text)
            return self.defer_if_permit(
                1,
                _POLICY,
                p.codes["access_map_defer_code"],
                smtpd_dsn_fix(dsn, reply_class),
                f"<{reply_name}>: {reply_class} rejected: {why or 'Service unavailable'}",
            )
        if word == "DEFER_IF_REJECT":
            dsn, why = dsn_split("4.7.1", text)
            return self.defer_if(
                st.defer_if_reject,
                _POLICY,
                p.codes["access_map_defer_code"],
                smtpd_dsn_fix(dsn, reply_class),
                f"<{reply_name}>: {reply_class} rejected: {why or 'Service unavailable'}",
            )
        if word == "PREPEND":
            if st.sender is None:
                log.warning(
                    "access table %s: with smtpd_delay_reject=no, action PREPEND is always "
                    "skipped in Client host or Helo command restrictions",
                    table,
                )
                return _DUNNO
            if st.where == "END-OF-MESSAGE":
                log.warning(
                    "access table %s: action PREPEND must be used before "
                    "smtpd_end_of_data_restrictions",
                    table,
                )
                return _DUNNO
            if not text or not _is_header(text):
                log.warning('access table %s entry "%s" requires header: text', table, datum)
                return _DUNNO
            st.prepend.append(text)
            return _DUNNO
        if value.isascii() and value.isdigit():
            return self.permit(label)
        if len(cmd) == 3 and text and cmd[0] in "45" and cmd[1:].isdigit() and cmd[1:].isascii():
            dsn, why = dsn_split(cmd[0] + ".7.1", text)
            return self.reject(
                _POLICY,
                int(cmd),
                smtpd_dsn_fix(dsn, reply_class),
                f"<{reply_name}>: {reply_class} rejected: {why or 'Access denied'}",
            )
        if word in ("OK", "RELAY"):
            return self.permit(label)
        if ":" in value:
            log.warning("access table %s has entry with lookup table: %s", table, value)
            log.warning("do not specify lookup tables inside SMTPD access maps")
            log.warning("define a restriction class and specify its name instead.")
            raise self.server_error()
        if st.recursion > 100:
            log.warning("access table %s entry %s causes unreasonable recursion", table, value)
            raise self.server_error()
        restrictions = split_list(value)
        if not restrictions:
            log.warning("access table %s entry %s has empty value", table, value)
            return _OK
        return self.generic(restrictions, reply_name, reply_class, acl)

    def _can_delegate(self, table: str, action: str) -> bool:
        if self.st.where == "ETRN":
            log.warning(
                "access table %s: action %s is unavailable in smtpd_etrn_restrictions",
                table,
                action,
            )
            return False
        if self.st.sender is None:
            log.warning(
                "access table %s: with smtpd_delay_reject=no, action %s is always skipped in "
                "Client host or Helo command restrictions",
                table,
                action,
            )
            return False
        return True

    def _find(self, table: str, key: str, fixed_only: bool) -> tuple[str | None, bool]:
        """One access table lookup: (value, error)."""
        maps = self.p._access_maps(table)
        if fixed_only and not maps.has_fixed:
            return None, False  # partial keys go to exact-key tables only
        try:
            value = maps.lookup(key, fixed_only=fixed_only)
        except LookupFailed:
            self.event("lookup", table=table, key=key, result="table lookup error")
            return None, True
        self.event("lookup", table=table, key=key, value=value)
        return value, False

    def _answer(
        self,
        table: str,
        key: str,
        value: str | None,
        error: bool,
        datum: str,
        reply_name: str,
        reply_class: str,
        acl: str | None,
        label: str,
    ) -> int:
        if error:
            value = "451 4.3.5 Server configuration error"
        assert value is not None
        self.st.last_entry = (table, key, value)
        return self.table_result(table, value, datum, reply_name, reply_class, acl, label)

    def check_access(
        self, table: str, name: str, reply_name: str, reply_class: str, acl: str | None, label: str
    ) -> tuple[int, bool]:
        """``check_access()``: one exact lookup."""
        value, error = self._find(table, name, False)
        if value is None and not error:
            return _DUNNO, False
        return self._answer(
            table, name, value, error, name, reply_name, reply_class, acl, label
        ), True

    def check_domain_access(
        self,
        table: str,
        domain: str,
        reply_name: str,
        reply_class: str,
        acl: str | None,
        label: str,
    ) -> tuple[int, bool]:
        """``check_domain_access()``: the name, then its parent domains (fixed tables only)."""
        name = domain
        fixed = False
        numerical = valid_hostaddr(domain)
        while name:
            value, error = self._find(table, name, fixed)
            if value is not None or error:
                return (
                    self._answer(
                        table, name, value, error, domain, reply_name, reply_class, acl, label
                    ),
                    True,
                )
            if numerical:
                break
            dot = name.find(".", 1)
            if dot < 0:
                break
            name = name[dot:] if not self.p.access_parent else name[dot + 1 :]
            fixed = True
        return _DUNNO, False

    def check_addr_access(
        self,
        table: str,
        address: str,
        reply_name: str,
        reply_class: str,
        acl: str | None,
        label: str,
    ) -> tuple[int, bool]:
        """``check_addr_access()``: the address, then shorter prefixes at ``.`` or ``:``."""
        delim = ":" if ":" in address else "."
        addr = address
        fixed = False
        while True:
            value, error = self._find(table, addr, fixed)
            if value is not None or error:
                return (
                    self._answer(
                        table, addr, value, error, address, reply_name, reply_class, acl, label
                    ),
                    True,
                )
            fixed = True
            cut = addr.rfind(delim)
            if cut < 0:
                break
            addr = addr[:cut]
        return _DUNNO, False

    def check_namadr_access(
        self,
        table: str,
        name: str,
        addr: str,
        reply_name: str,
        reply_class: str,
        acl: str | None,
        label: str,
    ) -> int:
        status, found = self.check_domain_access(table, name, reply_name, reply_class, acl, label)
        if status or found:
            return status
        status, found = self.check_addr_access(table, addr, reply_name, reply_class, acl, label)
        return status

    def check_mail_access(
        self, table: str, addr: str, reply_name: str, reply_class: str, acl: str | None, label: str
    ) -> int:
        """``check_mail_access()``: the resolved address in mail_addr_find's access order."""
        st, p = self.st, self.p
        other = st.recipient if reply_class == SENDER else st.sender
        route = p.resolve(other, addr)
        if int(route.flags) & _FAIL:
            raise self.dict_retry(addr)
        recipient = route.recipient
        if "@" not in recipient:
            log.warning("check_mail_access: no @domain in address: %s", recipient)
            return _DUNNO
        strategy = (
            Strategy.FULL
            | Strategy.NOEXT
            | Strategy.DOMAIN
            | Strategy.LOCALPART_AT
            | (Strategy.PDMS if p.access_parent else Strategy.PDDMDS)
        )
        maps = p._access_maps(table)
        recorded: list[tuple[Table, str, str | None]] = []
        p._recorder.events = recorded
        try:
            value = mail_addr_find(maps, recipient, p.resolver.search_settings, strategy=strategy)
            error = False
        except LookupFailed:
            value, error = None, True
        finally:
            p._recorder.events = None
        key = recipient
        for _table, tried, found in recorded:
            self.event("lookup", table=table, key=tried, value=found)
            if found is not None:
                key = tried
        if value is None and not error:
            return _DUNNO
        status = self._answer(
            table, key, value, error, recipient, reply_name, reply_class, acl, label
        )
        suspicious = (
            not p.allow_untrusted_routing
            and int(route.flags) & _ROUTED
            and reply_class == RECIPIENT
        )
        if status == _OK and suspicious:
            return _DUNNO
        return status

    def check_server_access(
        self,
        table: str,
        name: str,
        rrtype: str,
        reply_name: str,
        reply_class: str,
        acl: str | None,
        label: str,
    ) -> int:
        """``check_server_access()``: the MX, NS or A hosts of a name, through DNS."""
        at = name.rfind("@")
        domain = name[at + 1 :] if at >= 0 else name
        if domain.startswith("["):
            if rrtype not in ("A", "MX") or not domain.endswith("]"):
                return _DUNNO
            bare = valid_mailhost_addr(domain[1:-1])
            if bare is None:
                return _DUNNO
            return self.check_addr_access(table, bare, reply_name, reply_class, acl, label)[0]
        dns = self.p.dns
        servers: list[str]
        if rrtype == "A":
            servers = [domain]
        else:
            answer = dns.query(domain, [rrtype])
            if answer.status is DnsStatus.NULLMX:
                return _DUNNO
            if answer.status is DnsStatus.NOT_FOUND and rrtype == "MX":
                answer = DnsAnswer(DnsStatus.OK, (("MX", f"0 {domain}"),))
            elif answer.status is DnsStatus.NOT_FOUND:
                parent = domain
                while "." in parent[:-1]:
                    parent = parent.split(".", 1)[1]
                    answer = dns.query(parent, [rrtype])
                    if answer.status is not DnsStatus.NOT_FOUND:
                        break
            if answer.status is not DnsStatus.OK:
                log.warning("Unable to look up %s host for %s", rrtype, name)
                return _DUNNO
            servers = [value.split()[-1].rstrip(".") for _t, value in answer.records]
        for server in servers:
            self.event(label, key=server, result=f"{rrtype} host")
            if valid_hostaddr(server):
                status, found = self.check_addr_access(
                    table, server, reply_name, reply_class, acl, label
                )
                if status or found:
                    return status
                continue
            if rrtype != "A":
                status, found = self.check_domain_access(
                    table, server, reply_name, reply_class, acl, label
                )
                if status or found:
                    return status
            answer = dns.query(server, ["A", "AAAA"])
            if answer.status is not DnsStatus.OK:
                continue
            for _t, address in answer.records:
                status, found = self.check_addr_access(
                    table, address, reply_name, reply_class, acl, label
                )
                if status or found:
                    return status
        return _DUNNO

    def policy_attributes(self, service: PolicyService) -> list[tuple[str, str]]:
        """The request smtpd sends a policy server, attribute by attribute, in its order."""
        st, s = self.st, self.st.session
        command = "DATA" if st.command == "BDAT" else st.command
        counted = st.command in ("DATA", "BDAT", "END-OF-MESSAGE")
        return [
            ("request", "smtpd_access_policy"),
            ("protocol_state", command),
            ("protocol_name", st.protocol),
            ("client_address", self.addr),
            ("client_name", self.name),
            ("client_port", s.client_port),
            ("reverse_client_name", self.reverse_name),
            ("server_address", s.server_address),
            ("server_port", s.server_port),
            ("helo_name", st.helo or ""),
            ("sender", st.sender or ""),
            ("recipient", st.recipient or ""),
            ("recipient_count", str(s.rcpt_count if counted else 0)),
            ("queue_id", ""),
            ("instance", ""),
            ("size", "0"),
            ("etrn_domain", st.etrn or ""),
            ("stress", ""),
            ("sasl_method", s.sasl_method or ""),
            ("sasl_username", s.sasl_username or ""),
            ("sasl_sender", ""),
            ("ccert_subject", ""),
            ("ccert_issuer", ""),
            ("ccert_fingerprint", (s.ccert_fingerprint or "") if s.encrypted else ""),
            ("ccert_pubkey_fingerprint", (s.ccert_pubkey_fingerprint or "") if s.encrypted else ""),
            ("encryption_protocol", ""),
            ("encryption_cipher", ""),
            ("encryption_keysize", "0"),
            ("policy_context", service.policy_context),
        ]

    def forbid_allowlist(self, name: str, status: int, target: str) -> int:
        if not self.st.discard and status == _OK:
            log.warning("restriction %s returns OK for %s", name, target)
            log.warning("this is not allowed for security reasons")
            log.warning("use DUNNO instead of OK if you want to make an exception")
            raise self.server_error()
        return status

    # --- address checks ----------------------------------------------------------------------

    def permit_auth_destination(self, recipient: str) -> int:
        route = self.p.resolve(self.st.sender, recipient)
        if int(route.flags) & _FAIL:
            raise self.dict_retry(recipient)
        if "@" not in route.recipient:
            return _OK
        if not self.p.allow_untrusted_routing and int(route.flags) & _ROUTED:
            return _DUNNO
        cls = route.address_class
        if cls in ("local", "virtual_alias", "virtual_mailbox", "relay"):
            return _OK
        return _DUNNO

    def reject_unauth_destination(self, recipient: str, code: int, dsn: str) -> int:
        if self.permit_auth_destination(recipient) == _OK:
            return _DUNNO
        return self.reject(_POLICY, code, dsn, f"<{recipient}>: Relay access denied")

    def permit_mx_backup(self, recipient: str, reply_name: str, reply_class: str) -> int:
        """``permit_mx_backup``: this host is a backup MX for the recipient's domain."""
        p = self.p
        route = p.resolve(self.st.sender, recipient)
        if int(route.flags) & _FAIL:
            raise self.dict_retry(recipient)
        at = route.recipient.rfind("@")
        if at < 0:
            return _OK
        domain = route.recipient[at + 1 :]
        if not p.allow_untrusted_routing and int(route.flags) & _ROUTED:
            return _DUNNO
        if route.address_class in ("local", "virtual_alias", "virtual_mailbox", "relay"):
            return _OK
        if domain.startswith("[") and domain.endswith("]"):
            return _DUNNO
        answer = p.dns.query(domain, ["MX"])
        self.event("dns", key=domain, result=answer.status.value)
        if answer.status is not DnsStatus.OK:
            if answer.status in (DnsStatus.RETRY, DnsStatus.POLICY):
                self.defer_if(
                    self.st.defer_if_reject,
                    _POLICY,
                    450,
                    "4.4.4",
                    f"<{reply_name}>: {reply_class} rejected: Unable to look up mail exchanger "
                    "information: Host not found, try again",
                )
            return _DUNNO
        mx = sorted((int(v.split()[0]), v.split()[-1].rstrip(".")) for _t, v in answer.records)
        best = mx[0][0]
        primary = [host for pref, host in mx if pref == best]
        rest = [host for pref, host in mx if pref != best]
        if self._i_am_mx(primary) or not rest or not self._i_am_mx(rest):
            return _DUNNO
        networks = p.mx_backup_networks
        if networks is not None:
            for host in primary:
                for address in self._host_addresses(host):
                    if not networks.match(address, address):
                        return _DUNNO
        return _OK

    def _host_addresses(self, host: str) -> list[str]:
        if valid_hostaddr(host):
            return [host]
        answer = self.p.dns.query(host, ["A", "AAAA"])
        return [value for _t, value in answer.records] if answer.status is DnsStatus.OK else []

    def _i_am_mx(self, hosts: Iterable[str]) -> bool:
        own = self.p.own_addresses
        myhostname = self.p.config.get("myhostname").lower()
        for host in hosts:
            if host.lower() == myhostname:
                return True
            if any(_normal_address(a) in own for a in self._host_addresses(host)):
                return True
        return False

    def reject_non_fqdn_address(self, addr: str, reply_name: str, reply_class: str) -> int:
        at = addr.rfind("@")
        domain = addr[at + 1 :] if at >= 0 else ""
        if domain.startswith("[") and domain.endswith("]"):
            return _DUNNO
        test = _truncate_dot(domain)
        if (
            not test
            or not valid_utf8_hostname(test, smtputf8=self.st.session.smtputf8)
            or "." not in test
        ):
            return self.reject(
                _POLICY,
                self.p.codes["non_fqdn_reject_code"],
                "4.5.2",
                f"<{reply_name}>: {reply_class} rejected: need fully-qualified address",
            )
        return _DUNNO

    def reject_unknown_address(self, addr: str, reply_name: str, reply_class: str) -> int:
        other = self.st.recipient if reply_class == SENDER else self.st.sender
        route = self.p.resolve(other, addr)
        if int(route.flags) & _FAIL:
            raise self.dict_retry(addr)
        at = route.recipient.rfind("@")
        if at < 0:
            return _DUNNO
        domain = route.recipient[at + 1 :]
        if route.address_class in ("local", "virtual_alias", "virtual_mailbox"):
            return _DUNNO
        if domain.startswith("[") and domain.endswith("]"):
            return _DUNNO
        return self.reject_unknown_mailhost(domain, reply_name, reply_class)

    def reject_unknown_mailhost(self, name: str, reply_name: str, reply_class: str) -> int:
        answer = self.p.dns.query(name, ["MX", "A", "AAAA"])
        self.event("dns", key=name, result=answer.status.value)
        status = answer.status
        if status is DnsStatus.OK:
            return _DUNNO
        is_sender = reply_class == SENDER
        if status is DnsStatus.POLICY:
            log.warning("%s: MX or address lookup error: DNS reply filter drops all results", name)
            return _DUNNO
        if status is DnsStatus.NULLMX:
            return self.reject(
                _POLICY,
                550 if is_sender else 556,
                "4.7.27" if is_sender else "4.1.10",
                f"<{reply_name}>: {reply_class} rejected: Domain {name} does not accept mail "
                "(nullMX)",
            )
        dsn = "4.1.8" if is_sender else "4.1.2"
        if status is not DnsStatus.RETRY:
            why = (
                "Malformed DNS server reply" if status is DnsStatus.INVALID else "Domain not found"
            )
            return self.reject(
                _POLICY,
                self.p.codes["unknown_address_reject_code"],
                dsn,
                f"<{reply_name}>: {reply_class} rejected: {why}",
            )
        return self.defer_if_permit(
            self.p.tempfail["unknown_address_tempfail_action"],
            _POLICY,
            450,
            dsn,
            f"<{reply_name}>: {reply_class} rejected: Domain not found",
        )

    def reject_unknown_hostname(self, name: str, reply_name: str, reply_class: str) -> int:
        answer = self.p.dns.query(name, ["A", "AAAA", "MX"])
        self.event("dns", key=name, result=answer.status.value)
        status = answer.status
        if status in (DnsStatus.OK, DnsStatus.NULLMX):
            return _DUNNO
        if status is DnsStatus.POLICY:
            log.warning("%s: address or MX lookup error: DNS reply filter drops all results", name)
            return _DUNNO
        if status is not DnsStatus.RETRY:
            why = "Malformed DNS server reply" if status is DnsStatus.INVALID else "Host not found"
            return self.reject(
                _POLICY,
                self.p.codes["unknown_hostname_reject_code"],
                "4.7.1",
                f"<{reply_name}>: {reply_class} rejected: {why}",
            )
        return self.defer_if_permit(
            self.p.tempfail["unknown_helo_hostname_tempfail_action"],
            _POLICY,
            450,
            "4.7.1",
            f"<{reply_name}>: {reply_class} rejected: Host not found",
        )

    def reject_invalid_hostaddr(self, addr: str, reply_name: str, reply_class: str) -> int:
        test = addr[1:-1] if addr.startswith("[") and len(addr) > 2 and addr.endswith("]") else addr
        if valid_mailhost_addr(test) is None:
            return self.reject(
                _POLICY,
                self.p.codes["invalid_hostname_reject_code"],
                "5.5.2",
                f"<{reply_name}>: {reply_class} rejected: invalid ip address",
            )
        return _DUNNO

    def reject_invalid_hostname(self, name: str, reply_name: str, reply_class: str) -> int:
        test = _truncate_dot(name)
        if not valid_hostname(test) and not valid_hostaddr(test):
            return self.reject(
                _POLICY,
                self.p.codes["invalid_hostname_reject_code"],
                "5.5.2",
                f"<{reply_name}>: {reply_class} rejected: Invalid name",
            )
        return _DUNNO

    def reject_non_fqdn_hostname(self, name: str, reply_name: str, reply_class: str) -> int:
        test = _truncate_dot(name)
        if not valid_utf8_hostname(test, smtputf8=self.st.session.smtputf8) or "." not in test:
            return self.reject(
                _POLICY,
                self.p.codes["non_fqdn_reject_code"],
                "5.5.2",
                f"<{reply_name}>: {reply_class} rejected: need fully-qualified hostname",
            )
        return _DUNNO

    def reject_unverified(self, addr: str, reply_name: str, reply_class: str) -> int:
        """``reject_unverified_*``: address verification is a service of a running Postfix;
        without it, the answer is what smtpd says when that service fails."""
        action = (
            "unverified_sender_tempfail_action"
            if reply_class == SENDER
            else ("unverified_recipient_tempfail_action")
        )
        log.warning("verify service failure")
        return self.defer_if_permit(
            self.p.tempfail[action],
            _POLICY,
            450,
            _SND_DSN if reply_class == SENDER else "4.1.1",
            f"<{reply_name}>: {reply_class} rejected: address verification problem",
        )

    def check_sender_rcpt_maps(self, sender: str) -> int:
        st = self.st
        if st.sender_rcptmap_checked:
            return _DUNNO
        if st.warn_if_reject == 0:
            st.sender_rcptmap_checked = True
        return self.check_rcpt_maps(st.recipient, sender, SENDER)

    def check_recipient_rcpt_maps(self, recipient: str) -> int:
        st = self.st
        if st.recipient_rcptmap_checked:
            return _DUNNO
        if st.warn_if_reject == 0:
            st.recipient_rcptmap_checked = True
        return self.check_rcpt_maps(st.sender, recipient, RECIPIENT)

    def check_rcpt_maps(self, sender: str | None, recipient: str, reply_class: str) -> int:
        """``check_rcpt_maps()``: the address must be known to its address class's tables."""
        p = self.p
        self.event("reject_unlisted_" + ("sender" if reply_class == SENDER else "recipient"))
        route = p.resolve(sender, recipient)
        if int(route.flags) & _FAIL:
            raise self.dict_retry(recipient)
        rcpt = route.recipient

        def match(name: str) -> bool:
            maps = p.maps[name]
            if maps is None:
                return False
            try:
                value = mail_addr_find(maps, rcpt, p.resolver.search_settings)
            except PermanentLookupError:
                raise self.server_error() from None
            except LookupFailed:
                raise self.dict_retry(recipient) from None
            self.event("lookup", table=name, key=rcpt, value=value)
            return value is not None

        if (
            match("recipient_canonical_maps")
            or (reply_class == SENDER and match("sender_canonical_maps"))
            or match("canonical_maps")
            or match("virtual_alias_maps")
        ):
            return _DUNNO
        sender_side = reply_class == SENDER
        if route.transport == "error":
            dsn, text = dsn_split("5.1.0" if sender_side else "5.1.1", route.nexthop)
            code = (
                p.codes["unknown_virtual_alias_reject_code"]
                if int(route.flags) & _CLASS_ALIAS
                else 550
            )
            return self.reject(
                _BOUNCE,
                code,
                smtpd_dsn_fix(dsn, reply_class),
                f"<{recipient}>: {reply_class} rejected: {text}",
            )
        if route.transport == "retry":
            dsn, text = dsn_split("4.1.0" if sender_side else "4.1.1", route.nexthop)
            return self.reject(
                _BOUNCE,
                450,
                smtpd_dsn_fix(dsn, reply_class),
                f"<{recipient}>: {reply_class} rejected: {text}",
            )
        unknown_dsn = "5.1.0" if sender_side else "5.1.1"
        table_name = ""
        cls = route.address_class
        if cls == "local":
            if (
                p.has_local_rcpt_maps
                and not _match_left(p.double_bounce, rcpt)
                and not _match_left("postmaster", rcpt)
                and not _match_left("mailer-daemon", rcpt)
                and not match("local_recipient_maps")
            ):
                code, table_name = p.codes["unknown_local_recipient_reject_code"], "local recipient"
            else:
                return _DUNNO
        elif cls == "virtual_mailbox":
            if p.maps["virtual_mailbox_maps"] is not None and not match("virtual_mailbox_maps"):
                code, table_name = (
                    p.codes["unknown_virtual_mailbox_reject_code"],
                    "virtual mailbox",
                )
            else:
                return _DUNNO
        elif cls == "relay":
            if p.maps["relay_recipient_maps"] is not None and not match("relay_recipient_maps"):
                code, table_name = p.codes["unknown_relay_recipient_reject_code"], "relay recipient"
            else:
                return _DUNNO
        else:
            return _DUNNO
        where = f" in {table_name} table" if p.show_unknown_table else ""
        return self.reject(
            _BOUNCE,
            code,
            unknown_dsn,
            f"<{recipient}>: {reply_class} rejected: User unknown{where}",
        )

    def sender_login_mismatch(self, sender: str, allow_unknown: bool, authenticated: bool) -> int:
        """``reject_{authenticated,unauthenticated}_sender_login_mismatch``."""
        p, s = self.p, self.st.session
        maps = p.maps["smtpd_sender_login_maps"]
        if maps is None:
            return _DUNNO
        route = p.resolve(self.st.recipient, sender)
        if int(route.flags) & _FAIL:
            raise self.dict_retry(sender)
        try:
            owners = mail_addr_find(maps, route.recipient, p.resolver.search_settings)
        except LookupFailed:
            raise self.dict_retry(sender) from None
        if authenticated:
            if owners is None:
                if allow_unknown:
                    return _DUNNO
                return self.reject(
                    _POLICY,
                    553,
                    "5.7.1",
                    f"<{sender}>: Sender address rejected: not owned by user {s.sasl_username}",
                )
            names = [name.lower() for name in split_list(owners)]
            if (s.sasl_username or "").lower() in names:
                return _DUNNO
            return self.reject(
                _POLICY,
                553,
                "5.7.1",
                f"<{sender}>: Sender address rejected: not owned by user {s.sasl_username}",
            )
        if owners is not None:
            return self.reject(
                _POLICY,
                553,
                "5.7.1",
                f"<{sender}>: Sender address rejected: not logged in",
            )
        return _DUNNO


_STEP_RUN, _STEP_WARN_IF_REJECT, _STEP_SKIP, _STEP_ERROR = range(4)


@dataclass(frozen=True, slots=True)
class _Step:
    """One restriction of a parsed list.

    :ivar kind: run it, ``warn_if_reject``, skip it (a missing domain argument: warned), or
        a configuration error (``error``, with ``%CLASS`` for the reply class).
    :ivar ignored: the restriction after a ``permit``/``reject``/``defer``, which Postfix warns
        is ignored.
    """

    kind: int
    name: str
    lname: str = ""
    arg: str | None = None
    label: str = ""
    handler: _Handler | None = None
    error: str = ""
    ignored: str | None = None


def _compile(restrictions: Sequence[str], acl: str | None) -> tuple[_Step, ...]:
    steps: list[_Step] = []
    i, n = 0, len(restrictions)
    while i < n:
        name = restrictions[i]
        lname = name.lower()
        arg: str | None = None
        if lname == "warn_if_reject":
            steps.append(_Step(_STEP_WARN_IF_REJECT, name))
            i += 1
            continue
        if ":" in name:
            if acl is None:
                message = (
                    "specify one of (check_client_access, check_reverse_client_hostname_access, "
                    "check_helo_access, check_sender_access, check_recipient_access, "
                    f'check_etrn_access) before %CLASS restriction "{name}"'
                )
                steps.append(_Step(_STEP_ERROR, name, error=message))
                break
            lname, arg, label = acl, name, f"{acl} {name}"
            i += 1
        elif lname in _MAP_COMMANDS:
            if i + 1 >= n or ":" not in restrictions[i + 1]:
                bad = restrictions[i + 1] if i + 1 < n else name
                message = f'restriction {lname}: bad argument "{bad}": need maptype:mapname'
                steps.append(_Step(_STEP_ERROR, name, error=message))
                break
            arg = restrictions[i + 1]
            label = f"{lname} {arg}"
            i += 2
        elif lname in _DOMAIN_ARG:
            if i + 1 >= n:
                steps.append(_Step(_STEP_SKIP, name))
                i += 1
                continue
            arg = restrictions[i + 1]
            label = f"{lname} {arg}"
            i += 2
        elif lname in ("check_policy_service", "sleep"):
            policy = lname == "check_policy_service"
            ok = i + 1 < n and (
                ":" in restrictions[i + 1] if policy else restrictions[i + 1].isdigit()
            )
            if not ok:
                wanted = "transport:server" if policy else "number"
                message = f"restriction {lname} must be followed by {wanted}"
                steps.append(_Step(_STEP_ERROR, name, error=message))
                break
            arg = restrictions[i + 1]
            label = f"{lname} {arg}"
            i += 2
        else:
            label = name
            i += 1
        ignored = (
            restrictions[i]
            if lname in ("permit", "defer", "reject", "check_relay_domains") and i < n
            else None
        )
        steps.append(
            _Step(_STEP_RUN, name, lname, arg, label, _HANDLERS.get(lname), ignored=ignored)
        )
    return tuple(steps)


class _Recorder(threading.local):
    """Where MapList lookups of access tables are recorded, per thread (``None``: nowhere)."""

    def __init__(self) -> None:
        self.events: list[tuple[Table, str, str | None]] | None = None


_ACCEPT_REPLY = {
    "CONNECT": "220 Ok",
    "HELO": "250 Ok",
    "MAIL": "250 2.1.0 Ok",
    "RCPT": "250 2.1.5 Ok",
    "ETRN": "250 Queuing started",
    "DATA": "354 End data with <CR><LF>.<CR><LF>",
    "END-OF-MESSAGE": "250 2.0.0 Ok",
}


def _normal_address(address: str) -> str:
    """An IP address in one canonical text form (IPv6 compressed, no brackets)."""
    text = address.strip("[]")
    try:
        return str(ipaddress.ip_address(text.split("%", 1)[0]))
    except ValueError:
        return text.lower()


_NEUTER = str.maketrans({c: "?" for c in ' <>()\\";@'})


def _neuter(text: str) -> str:
    """``neuter(text, NEUTER_CHARACTERS, '?')``: characters that would confuse log parsers."""
    return text.translate(_NEUTER)


def _truncate_dot(name: str) -> str:
    """A host name without one trailing dot (``dup_if_truncate()``; not ``..``)."""
    if len(name) > 1 and name.endswith(".") and name[-2] != ".":
        return name[:-1]
    return name


def _match_left(local: str, address: str) -> bool:
    """``address`` is ``local@...`` (case-insensitively)."""
    n = len(local)
    return address[:n].lower() == local.lower() and address[n : n + 1] == "@"


def _is_header(text: str) -> bool:
    """``is_header()``: ``Name: value`` with a printable name without spaces or colons."""
    name, colon, _rest = text.partition(":")
    name = name.rstrip(" \t")
    return bool(colon) and bool(name) and all(33 <= ord(c) <= 126 and c != ":" for c in name)


# --- the restrictions ---------------------------------------------------------------------------

_Handler = Callable[[_Run, "str | None", str, str, "str | None", str], int]


def _h_permit(run: _Run, arg: str | None, rn: str, rc: str, acl: str | None, label: str) -> int:
    run.event(label, result="OK")
    return run.permit(label)


def _h_defer(run: _Run, arg: str | None, rn: str, rc: str, acl: str | None, label: str) -> int:
    run.event(label, result="DEFER")
    return run.reject(
        _POLICY, run.p.codes["defer_code"], "4.3.2", f"<{rn}>: {rc} rejected: Try again later"
    )


def _h_reject(run: _Run, arg: str | None, rn: str, rc: str, acl: str | None, label: str) -> int:
    run.event(label, result="REJECT")
    return run.reject(
        _POLICY, run.p.codes["reject_code"], "5.7.1", f"<{rn}>: {rc} rejected: Access denied"
    )


def _h_defer_if_permit(
    run: _Run, arg: str | None, rn: str, rc: str, acl: str | None, label: str
) -> int:
    run.event(label)
    return run.defer_if_permit(
        1, _POLICY, 450, "4.7.0", f"<{rn}>: {rc} rejected: defer_if_permit requested"
    )


def _h_defer_if_reject(
    run: _Run, arg: str | None, rn: str, rc: str, acl: str | None, label: str
) -> int:
    run.event(label)
    return run.defer_if(
        run.st.defer_if_reject,
        _POLICY,
        450,
        "4.7.0",
        f"<{rn}>: {rc} rejected: defer_if_reject requested",
    )


def _h_sleep(run: _Run, arg: str | None, rn: str, rc: str, acl: str | None, label: str) -> int:
    run.event(label, result="not slept: decisions do not wait")
    return _DUNNO


def _h_unauth_pipelining(
    run: _Run, arg: str | None, rn: str, rc: str, acl: str | None, label: str
) -> int:
    run.event(label, result="DUNNO")
    return _DUNNO


def _h_plaintext(run: _Run, arg: str | None, rn: str, rc: str, acl: str | None, label: str) -> int:
    if run.st.session.encrypted:
        return _DUNNO
    return run.reject(
        _POLICY, run.p.codes["plaintext_reject_code"], "4.7.1", "Session encryption is required"
    )


def _h_unknown_client(
    run: _Run, arg: str | None, rn: str, rc: str, acl: str | None, label: str
) -> int:
    status = run.st.session.name_status
    run.event(label, key=run.name, result=status.name)
    if status is NameStatus.OK:
        return _DUNNO
    code = run.p.codes["unknown_client_reject_code"] if status >= NameStatus.PERM else 450
    return run.reject(
        _POLICY, code, "4.7.25", f"Client host rejected: cannot find your hostname, [{run.addr}]"
    )


def _h_unknown_reverse(
    run: _Run, arg: str | None, rn: str, rc: str, acl: str | None, label: str
) -> int:
    s = run.st.session
    if s.reverse_client_name is None:
        status = s.name_status  # one lookup gave both names
    else:
        status = NameStatus.PERM if s.reverse_client_name == "unknown" else NameStatus.OK
    run.event(label, key=run.reverse_name, result=status.name)
    if status is NameStatus.OK:
        return _DUNNO
    code = run.p.codes["unknown_client_reject_code"] if status is NameStatus.PERM else 450
    return run.reject(
        _POLICY,
        code,
        "4.7.1",
        f"Client host rejected: cannot find your reverse hostname, [{run.addr}]",
    )


def _h_inet_interfaces(
    run: _Run, arg: str | None, rn: str, rc: str, acl: str | None, label: str
) -> int:
    own = _normal_address(run.addr) in run.p.own_addresses
    run.event(label, key=run.addr, result="OK" if own else "DUNNO")
    return run.permit(label) if own else _DUNNO


def _h_mynetworks(run: _Run, arg: str | None, rn: str, rc: str, acl: str | None, label: str) -> int:
    try:
        hit = run.p.mynetworks.match(run.name, run.addr)
    except LookupFailed:
        run.event(label, key=run.addr, result="table lookup error")
        raise run.server_error() from None
    run.event(label, key=run.addr, result="OK" if hit else "DUNNO")
    return run.permit(label) if hit else _DUNNO


def _h_client_access(
    run: _Run, arg: str | None, rn: str, rc: str, acl: str | None, label: str
) -> int:
    assert arg is not None
    return run.check_namadr_access(arg, run.name, run.addr, run.namaddr, CLIENT, acl, label)


def _h_reverse_client_access(
    run: _Run, arg: str | None, rn: str, rc: str, acl: str | None, label: str
) -> int:
    assert arg is not None
    status = run.check_namadr_access(
        arg, run.reverse_name, run.addr, run.reverse_name, REV_CLIENT, acl, label
    )
    return run.forbid_allowlist("check_reverse_client_hostname_access", status, run.reverse_name)


def _h_ccert_access(
    run: _Run, arg: str | None, rn: str, rc: str, acl: str | None, label: str
) -> int:
    assert arg is not None
    s = run.st.session
    for fingerprint in (s.ccert_fingerprint, s.ccert_pubkey_fingerprint):
        if not fingerprint:
            continue
        status, found = run.check_access(arg, fingerprint, run.namaddr, CLIENT, acl, label)
        if status or found:
            return status
    return _DUNNO


def _h_sasl_access(
    run: _Run, arg: str | None, rn: str, rc: str, acl: str | None, label: str
) -> int:
    assert arg is not None
    s = run.st.session
    if not run.p.sasl_enabled:
        log.warning("restriction `check_sasl_access' ignored: no SASL support")
        return _DUNNO
    if not s.sasl_username:
        return _DUNNO
    sane = printable(s.sasl_username, True, "_")
    return run.check_access(arg, s.sasl_username, sane, SASL_USER, acl, label)[0]


def _server_access(rrtype: str, who: str) -> _Handler:
    def handler(run: _Run, arg: str | None, rn: str, rc: str, acl: str | None, label: str) -> int:
        assert arg is not None
        st = run.st
        name: str | None
        reply_name: str | None
        if who == "client":
            name, reply_name, reply_class = run.name, run.namaddr, CLIENT
            if name.lower() == "unknown":
                return _DUNNO
        elif who == "reverse":
            name, reply_name, reply_class = run.reverse_name, run.reverse_name, REV_CLIENT
            if name.lower() == "unknown":
                return _DUNNO
        elif who == "helo":
            name = reply_name = st.helo
            reply_class = HELO
        elif who == "sender":
            name = reply_name = st.sender or None
            reply_class = SENDER
        else:
            name = reply_name = st.recipient or None
            reply_class = RECIPIENT
        if name is None or reply_name is None:
            return _DUNNO
        status = run.check_server_access(arg, name, rrtype, reply_name, reply_class, acl, label)
        return run.forbid_allowlist(label.split()[0], status, name)

    return handler


def _h_helo_access(
    run: _Run, arg: str | None, rn: str, rc: str, acl: str | None, label: str
) -> int:
    assert arg is not None
    helo = run.st.helo
    if helo is None:
        return _DUNNO
    return run.check_domain_access(arg, helo, helo, HELO, acl, label)[0]


def _helo_check(kind: str) -> _Handler:
    def handler(run: _Run, arg: str | None, rn: str, rc: str, acl: str | None, label: str) -> int:
        helo = run.st.helo
        if helo is None:
            return _DUNNO
        run.event(label, key=helo)
        if helo.startswith("["):
            return run.reject_invalid_hostaddr(helo, helo, HELO)
        if kind == "invalid":
            return run.reject_invalid_hostname(helo, helo, HELO)
        if kind == "unknown":
            return run.reject_unknown_hostname(helo, helo, HELO)
        return run.reject_non_fqdn_hostname(helo, helo, HELO)

    return handler


def _h_naked_ip(run: _Run, arg: str | None, rn: str, rc: str, acl: str | None, label: str) -> int:
    log.warning(
        "restriction permit_naked_ip_address is deprecated. Use permit_mynetworks or "
        "permit_sasl_authenticated instead"
    )
    helo = run.st.helo
    if helo is None or helo.strip("0123456789.:"):
        return _DUNNO
    status = run.reject_invalid_hostaddr(helo, helo, HELO)
    return run.permit(label) if status == _DUNNO else status


def _h_sender_access(
    run: _Run, arg: str | None, rn: str, rc: str, acl: str | None, label: str
) -> int:
    assert arg is not None
    sender = run.st.sender
    if sender is None:
        return _DUNNO
    if sender:
        return run.check_mail_access(arg, sender, sender, SENDER, acl, label)
    return run.check_access(arg, run.p.null_key, sender, SENDER, acl, label)[0]


def _sender_check(kind: str) -> _Handler:
    def handler(run: _Run, arg: str | None, rn: str, rc: str, acl: str | None, label: str) -> int:
        sender = run.st.sender
        if not sender:
            return _DUNNO
        run.event(label, key=sender)
        if kind == "unknown":
            return run.reject_unknown_address(sender, sender, SENDER)
        if kind == "unverified":
            return run.reject_unverified(sender, sender, SENDER)
        if kind == "non_fqdn":
            return run.reject_non_fqdn_address(sender, sender, SENDER)
        return run.check_sender_rcpt_maps(sender)

    return handler


def _login_mismatch(kind: str) -> _Handler:
    def handler(run: _Run, arg: str | None, rn: str, rc: str, acl: str | None, label: str) -> int:
        if not run.p.sasl_enabled:
            log.warning("restriction `%s' ignored: no SASL support", label)
            return _DUNNO
        sender = run.st.sender
        if not sender:
            return _DUNNO
        logged_in = run.st.session.sasl_username is not None
        if kind == "authenticated":
            return run.sender_login_mismatch(sender, False, True) if logged_in else _DUNNO
        if kind == "known":
            if logged_in:
                return run.sender_login_mismatch(sender, True, True)
            return run.sender_login_mismatch(sender, True, False)
        return run.sender_login_mismatch(sender, True, False) if not logged_in else _DUNNO

    return handler


def _h_recipient_access(
    run: _Run, arg: str | None, rn: str, rc: str, acl: str | None, label: str
) -> int:
    assert arg is not None
    rcpt = run.st.recipient
    if rcpt is None:
        return _DUNNO
    return run.check_mail_access(arg, rcpt, rcpt, RECIPIENT, acl, label)


def _recipient_check(kind: str) -> _Handler:
    def handler(run: _Run, arg: str | None, rn: str, rc: str, acl: str | None, label: str) -> int:
        rcpt = run.st.recipient
        if rcpt is None or (kind in ("unlisted", "unverified") and not rcpt):
            return _DUNNO
        run.event(label, key=rcpt)
        p = run.p
        if kind == "auth_dest":
            status = run.permit_auth_destination(rcpt)
            return run.permit(label) if status == _OK else status
        if kind == "unauth_dest":
            return run.reject_unauth_destination(
                rcpt, p.codes["relay_domains_reject_code"], "5.7.1"
            )
        if kind == "defer_unauth_dest":
            return run.reject_unauth_destination(
                rcpt, p.codes["relay_domains_reject_code"] - 100, "4.7.1"
            )
        if kind == "relay_domains":
            log.warning(
                'support for restriction "check_relay_domains" will be removed from Postfix; '
                'use "reject_unauth_destination" instead'
            )
            if p.relay_domains is not None and p.relay_domains.match(run.name):
                return run.permit(label)
            if run.permit_auth_destination(rcpt) == _OK:
                return run.permit(label)
            return run.reject(
                _POLICY,
                p.codes["relay_domains_reject_code"],
                "5.7.1",
                f"<{rcpt}>: {RECIPIENT} rejected: Relay access denied",
            )
        if kind == "unknown":
            return run.reject_unknown_address(rcpt, rcpt, RECIPIENT)
        if kind == "non_fqdn":
            return run.reject_non_fqdn_address(rcpt, rcpt, RECIPIENT)
        if kind == "unverified":
            return run.reject_unverified(rcpt, rcpt, RECIPIENT)
        if kind == "mx_backup":
            status = run.permit_mx_backup(rcpt, rcpt, RECIPIENT)
            return run.permit(label) if status == _OK else status
        return run.check_recipient_rcpt_maps(rcpt)

    return handler


def _h_sasl_permit(
    run: _Run, arg: str | None, rn: str, rc: str, acl: str | None, label: str
) -> int:
    s = run.st.session
    ok = run.p.sasl_enabled and bool(s.sasl_username)
    run.event(label, key=s.sasl_username, result="OK" if ok else "DUNNO")
    return run.permit(label) if ok else _DUNNO


def _h_tls_clientcerts(
    run: _Run, arg: str | None, rn: str, rc: str, acl: str | None, label: str
) -> int:
    run.event(label, result="DUNNO (no verified client certificate)")
    return _DUNNO


def _h_multi_bounce(
    run: _Run, arg: str | None, rn: str, rc: str, acl: str | None, label: str
) -> int:
    st = run.st
    count = st.session.rcpt_count
    if st.sender == "" and count > (0 if st.where == "RCPT" else 1):
        return run.reject(
            _POLICY,
            run.p.codes["multi_recipient_bounce_reject_code"],
            "5.5.3",
            f"<{rn}>: {rc} rejected: Multi-recipient bounce",
        )
    return _DUNNO


def _h_etrn_access(
    run: _Run, arg: str | None, rn: str, rc: str, acl: str | None, label: str
) -> int:
    assert arg is not None
    domain = run.st.etrn
    if domain is None:
        return _DUNNO
    return run.check_domain_access(arg, domain, domain, ETRN, acl, label)[0]


def _h_needs_dns_list(
    run: _Run, arg: str | None, rn: str, rc: str, acl: str | None, label: str
) -> int:
    """RBL and DNSWL restrictions: a listing comes from DNS, which the resolver may not have."""
    run.event(label, result="not supported: DNS blocklists are not consulted")
    log.warning("restriction %s: DNS lists are not consulted by mailmaps", label)
    return _DUNNO


def _h_policy(run: _Run, arg: str | None, rn: str, rc: str, acl: str | None, label: str) -> int:
    """``check_policy_service``: ask the server, and read its action as an access answer."""
    assert arg is not None
    service = run.p.policies.get(arg)
    if service is None:  # named only in a table answer: smtpd would not know the server
        log.warning("%s: no client endpoint for server %s", label, arg)
        raise run.server_error()
    action = service.query(run.policy_attributes(service))
    if action is None or (run.p.utf8 and not is_valid_utf8(action)):
        action = service.default_action
    run.event(label, table=arg, key="policy query", value=action)
    run.st.last_entry = (arg, "policy query", action)
    status = run.table_result(arg, action, "policy query", rn, rc, acl, label)
    run.st.last_entry = (arg, "policy query", action)
    return status


_HANDLERS: dict[str, _Handler] = {
    "permit": _h_permit,
    "defer": _h_defer,
    "reject": _h_reject,
    "defer_if_permit": _h_defer_if_permit,
    "defer_if_reject": _h_defer_if_reject,
    "sleep": _h_sleep,
    "reject_unauth_pipelining": _h_unauth_pipelining,
    "reject_plaintext_session": _h_plaintext,
    "reject_unknown_client_hostname": _h_unknown_client,
    "reject_unknown_client": _h_unknown_client,
    "reject_unknown_reverse_client_hostname": _h_unknown_reverse,
    "permit_inet_interfaces": _h_inet_interfaces,
    "permit_mynetworks": _h_mynetworks,
    "check_client_access": _h_client_access,
    "check_reverse_client_hostname_access": _h_reverse_client_access,
    "check_ccert_access": _h_ccert_access,
    "check_sasl_access": _h_sasl_access,
    "check_client_ns_access": _server_access("NS", "client"),
    "check_client_mx_access": _server_access("MX", "client"),
    "check_client_a_access": _server_access("A", "client"),
    "check_reverse_client_hostname_ns_access": _server_access("NS", "reverse"),
    "check_reverse_client_hostname_mx_access": _server_access("MX", "reverse"),
    "check_reverse_client_hostname_a_access": _server_access("A", "reverse"),
    "check_helo_access": _h_helo_access,
    "reject_invalid_helo_hostname": _helo_check("invalid"),
    "reject_invalid_hostname": _helo_check("invalid"),
    "reject_unknown_helo_hostname": _helo_check("unknown"),
    "reject_unknown_hostname": _helo_check("unknown"),
    "reject_non_fqdn_helo_hostname": _helo_check("non_fqdn"),
    "reject_non_fqdn_hostname": _helo_check("non_fqdn"),
    "permit_naked_ip_address": _h_naked_ip,
    "check_helo_ns_access": _server_access("NS", "helo"),
    "check_helo_mx_access": _server_access("MX", "helo"),
    "check_helo_a_access": _server_access("A", "helo"),
    "check_sender_access": _h_sender_access,
    "reject_unknown_address": _sender_check("unknown"),
    "reject_unknown_sender_domain": _sender_check("unknown"),
    "reject_unverified_sender": _sender_check("unverified"),
    "reject_non_fqdn_sender": _sender_check("non_fqdn"),
    "reject_unlisted_sender": _sender_check("unlisted"),
    "reject_authenticated_sender_login_mismatch": _login_mismatch("authenticated"),
    "reject_known_sender_login_mismatch": _login_mismatch("known"),
    "reject_unauthenticated_sender_login_mismatch": _login_mismatch("unauthenticated"),
    "check_sender_ns_access": _server_access("NS", "sender"),
    "check_sender_mx_access": _server_access("MX", "sender"),
    "check_sender_a_access": _server_access("A", "sender"),
    "check_recipient_access": _h_recipient_access,
    "permit_mx_backup": _recipient_check("mx_backup"),
    "permit_auth_destination": _recipient_check("auth_dest"),
    "reject_unauth_destination": _recipient_check("unauth_dest"),
    "defer_unauth_destination": _recipient_check("defer_unauth_dest"),
    "check_relay_domains": _recipient_check("relay_domains"),
    "permit_sasl_authenticated": _h_sasl_permit,
    "permit_tls_all_clientcerts": _h_tls_clientcerts,
    "permit_tls_clientcerts": _h_tls_clientcerts,
    "reject_unknown_recipient_domain": _recipient_check("unknown"),
    "reject_non_fqdn_recipient": _recipient_check("non_fqdn"),
    "check_recipient_ns_access": _server_access("NS", "recipient"),
    "check_recipient_mx_access": _server_access("MX", "recipient"),
    "check_recipient_a_access": _server_access("A", "recipient"),
    "check_recipient_maps": _recipient_check("unlisted"),
    "reject_unlisted_recipient": _recipient_check("unlisted"),
    "reject_multi_recipient_bounce": _h_multi_bounce,
    "reject_unverified_recipient": _recipient_check("unverified"),
    "check_etrn_access": _h_etrn_access,
    "reject_rbl_client": _h_needs_dns_list,
    "reject_rbl": _h_needs_dns_list,
    "permit_dnswl_client": _h_needs_dns_list,
    "reject_rhsbl_client": _h_needs_dns_list,
    "permit_rhswl_client": _h_needs_dns_list,
    "reject_rhsbl_reverse_client": _h_needs_dns_list,
    "reject_rhsbl_helo": _h_needs_dns_list,
    "reject_rhsbl_sender": _h_needs_dns_list,
    "reject_rhsbl_recipient": _h_needs_dns_list,
    "reject_maps_rbl": _h_needs_dns_list,
    "check_policy_service": _h_policy,
}
