"""What Postfix does with a recipient: the whole path, from a configuration directory.

:class:`Resolver` answers what ``sendmail -bv ADDRESS`` would report, without a running
Postfix and without delivering anything, and shows why:

1. **cleanup(8)** (``src/cleanup/``): the address is rewritten to canonical form (local
   context), mapped by ``recipient_canonical_maps`` and ``canonical_maps``, masqueraded when
   ``envelope_recipient`` is in ``masquerade_classes``, and expanded by ``virtual_alias_maps``
   (one to many, recursively, with the expansion and recursion limits); duplicates go.
2. **trivial-rewrite(8)** (:mod:`mailmaps.routing`): each recipient gets an address class,
   transport and nexthop; ``transport_maps`` and ``relocated_maps`` apply.
3. **the delivery agent**, in verification mode: ``error``/``retry`` bounce or defer with the
   nexthop as the reason, ``discard`` pretends, ``local`` runs aliases, ``.forward`` files and
   the passwd check (:mod:`mailmaps.local`), ``virtual`` looks up ``virtual_mailbox_maps``; a
   network transport (smtp, lmtp, relay) would connect to the nexthop, which is reported.

Tables are opened once, when the resolver is made; :meth:`Resolver.resolve` is thread-safe and
is the fast path for many addresses.  With ``trace=True`` every table lookup and every rule that
changed the address is recorded in order (:class:`TraceEvent`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import islice
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self, TypeVar

from mailmaps.config import MainConfig
from mailmaps.dsn import dsn_split
from mailmaps.errors import ConfigError, LookupFailed
from mailmaps.local import (
    Delivery,
    LocalAgent,
    LocalSettings,
    LocalTables,
    PasswdEntry,
    passwd_lookup,
)
from mailmaps.maps import MapList, SurrogateTable, open_table
from mailmaps.masquerade import Masquerade
from mailmaps.matchlist import ListKind, LocalDomains, MatchList
from mailmaps.rewrite import RewriteSettings, rewrite_address
from mailmaps.rfc822 import (
    DOTTED_ADDRESS,
    PLAIN_ADDRESS,
    TokenType,
    internalize,
    parse_nodes,
    quote_local,
    unquote_local,
)
from mailmaps.routing import (
    AddressClass,
    ResolveFlag,
    Route,
    Router,
    RouteSettings,
    RouteTables,
)
from mailmaps.search import (
    Form,
    SearchSettings,
    mail_addr_find,
    mail_addr_map,
    transport_lookup,
    transport_strategy,
)
from mailmaps.spec import MapSpec, split_list
from mailmaps.table import OpenOptions, Table

__all__ = ["FinalRecipient", "Resolution", "Resolver", "TraceEvent", "read_services"]

log = logging.getLogger("mailmaps")

Status = Literal["deliverable", "undeliverable"]
_Item = TypeVar("_Item")
_Answer = TypeVar("_Answer")

#: How many addresses :meth:`Resolver.resolve_many` resolves under one hold of the tables.
HOLD_BATCH = 256

try:
    from mailmaps._speedups import resolve_plain as _resolve_plain
except ImportError:  # pragma: no cover - built without the C extension
    _resolve_plain = None  # type: ignore[assignment]

#: Transports whose delivery agent talks to another host: the outcome depends on it.
NETWORK_COMMANDS = frozenset({"smtp", "lmtp"})

#: Postfix's own master.cf services and the program each runs (when no master.cf is given).
DEFAULT_SERVICES: Mapping[str, str] = {
    "smtp": "smtp",
    "relay": "smtp",
    "lmtp": "lmtp",
    "local": "local",
    "virtual": "virtual",
    "error": "error",
    "retry": "error",
    "discard": "discard",
}

_MAX_CANONICAL = 10
#: How long trivial-rewrite keeps the transport_maps ``*`` entry, in seconds.
WILDCARD_TTL = 30.0


@dataclass(frozen=True, slots=True)
class TraceEvent:
    """One step of a resolution: a table lookup, or a rule that changed the address.

    :ivar stage: ``rewrite``, ``canonical``, ``masquerade``, ``virtual_alias``, ``resolve``,
        ``transport``, ``relocated``, ``local``, ``virtual_mailbox``, ``delivery``.
    :ivar address: the address a rule worked on (``None`` for a table lookup).
    :ivar table: ``type:name`` of the table consulted, if any.
    :ivar key: the key looked up, if any.
    :ivar result: the table's value (``None``: not found), or the step's new address.
    :ivar note: what happened, in words.
    """

    stage: str
    address: str | None
    table: str | None = None
    key: str | None = None
    result: str | None = None
    note: str = ""

    def as_dict(self) -> dict[str, str | None]:
        """The event as a JSON object (``table``/``key`` only for lookups)."""
        out: dict[str, str | None] = {"stage": self.stage}
        if self.address is not None:
            out["address"] = self.address
        if self.table is not None:
            out["table"] = self.table
            out["key"] = self.key
        out["result"] = self.result
        if self.note:
            out["note"] = self.note
        return out


@dataclass(frozen=True, slots=True)
class FinalRecipient:
    """A final recipient and what Postfix would do with it.

    :ivar address: the final recipient, as the delivery status report names it.
    :ivar address_class: ``local``, ``virtual_alias``, ``virtual_mailbox``, ``relay`` or
        ``default``; ``None`` when the message would not be accepted at all.
    :ivar transport: the master.cf service that delivers.
    :ivar nexthop: where it delivers (a domain, ``[addr]:port``); ``None`` for outcomes decided
        before routing.
    :ivar status: ``deliverable`` or ``undeliverable``; ``None`` for network transports, where
        the answer depends on the remote server.
    :ivar dsn: the enhanced status code (``None`` with ``status``).
    :ivar text: the report's words (``None`` for network transports).
    """

    address: str
    address_class: AddressClass | None
    transport: str | None
    nexthop: str | None
    status: Status | None
    dsn: str | None
    text: str | None

    def as_dict(self) -> dict[str, str | None]:
        """The recipient as the JSON object of ``mailmaps resolve --json``."""
        return {
            "address": self.address,
            "class": self.address_class,
            "transport": self.transport,
            "nexthop": self.nexthop,
            "status": self.status,
            "dsn": self.dsn,
            "text": self.text,
        }


@dataclass(frozen=True, slots=True)
class Resolution:
    """The answer for one input address: its final recipients, sorted, and the trace."""

    input: str
    recipients: tuple[FinalRecipient, ...]
    trace: tuple[TraceEvent, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """The JSON object of ``mailmaps resolve --json``."""
        return {
            "input": self.input,
            "recipients": [r.as_dict() for r in self.recipients],
            "trace": [e.as_dict() for e in self.trace],
        }

    def to_json(self) -> str:
        """One line of JSON."""
        return json.dumps(self.as_dict(), ensure_ascii=False, separators=(",", ":"))


class _Tracer(threading.local):
    """Where the resolution in progress on this thread records its events, if it traces:
    :class:`TraceEvent` values, and ``(table, key, value)`` lookups from the map lists."""

    events: list[Any] | None = None

    def add(self, event: TraceEvent) -> None:
        if self.events is not None:
            self.events.append(event)


class Resolver:
    """Postfix's view of recipients under one configuration.

    :param config: the main.cf settings (:meth:`from_directory` reads them).
    :param services: master.cf's service names and the program each runs; transports not
        listed are "mail transport unavailable".  Default: Postfix's stock services.
    :param passwd: the user database local(8) consults (default: this machine's).
    :param compiled: resolve plain addresses in C when the extension is built (the answers
        are the same; ``False`` sends every address through the Python code).
    """

    def __init__(
        self,
        config: MainConfig,
        *,
        services: Mapping[str, str] | None = None,
        passwd: Callable[[str], PasswdEntry | None] = passwd_lookup,
        compiled: bool = True,
    ) -> None:
        self.config = config
        self.services = dict(services if services is not None else DEFAULT_SERVICES)
        self._tracer = _Tracer()
        self._maps: list[MapList] = []
        self._tables: dict[str, Table] = {}
        # hold(): threads share one hold of the tables; the last one out releases it.
        self._hold_mutex = threading.Lock()
        self._holders = 0
        self._held = contextlib.ExitStack()
        self._wildcard: tuple[float, str | None] | None = None
        #: The stage each open table belongs to, for the trace.
        self._stages: dict[int, str] = {}
        self._passwd_cache: dict[str, PasswdEntry | None] = {}
        self._passwd = passwd
        self._plain: tuple[Any, ...] | None = None
        try:
            self._setup(self._cached_passwd)
            self._plain = self._plain_plan() if compiled else None
        except BaseException:
            self.close()
            raise

    @classmethod
    def from_directory(cls, config_dir: str | Path, **kwargs: Any) -> Resolver:
        """A resolver for the configuration in ``config_dir`` (main.cf and master.cf)."""
        config = MainConfig.load(str(config_dir))
        master = Path(config_dir) / "master.cf"
        if "services" not in kwargs and master.exists():
            kwargs["services"] = read_services(master)
        return cls(config, **kwargs)

    # --- setup -------------------------------------------------------------------------------

    def _get(self, name: str) -> str:
        return self.config.get(name)

    def _bool(self, name: str) -> bool:
        return self.config.get_bool(name)

    def _set(self, name: str) -> frozenset[str]:
        return self.config.get_set(name)

    def maps(self, name: str, stage: str, *, regsub: bool = True) -> MapList | None:
        """The tables of the ``*_maps`` parameter ``name`` (``None`` when empty), for another
        component that shares this resolver's tables: the resolver's own list when it opened
        that parameter, else a new list of the shared tables.  ``stage`` names tables in the
        trace that have no stage yet; the resolver's own stage names are kept."""
        for maps in self._maps:
            if maps.title == name and maps.options.regsub == regsub:
                return maps
        return self._open(name, stage, regsub=regsub, relabel=False)

    def _open(
        self,
        name: str,
        stage: str,
        *,
        regsub: bool = True,
        relabel: bool = True,
        paranoid: bool = False,
    ) -> MapList | None:
        value = self._get(name)
        if not value.strip():
            return None
        options = OpenOptions(
            utf8=self._bool("smtputf8_enable"),
            regsub=regsub,
            paranoid=paranoid,
            main_config=self.config,
        )
        tables = [self.table(spec, options) for spec in split_list(value)]
        maps = MapList(tables, options, title=name)
        self._maps.append(maps)
        maps.recorder = self._tracer
        for table in maps.tables:
            if relabel or id(table) not in self._stages:
                self._stages[id(table)] = stage
        return maps

    def table(self, spec: str, options: OpenOptions | None = None) -> Table:
        """The open table for ``spec``, shared by every parameter and list that names it, as
        Postfix shares dictionary handles (an lmdb file cannot be opened twice in a process).

        A table that cannot be opened is a surrogate whose lookups fail, as in a daemon.
        """
        options = options or OpenOptions(
            utf8=self._bool("smtputf8_enable"), main_config=self.config
        )
        parsed = MapSpec.parse(spec)
        key = f"{parsed.type}:{parsed.name}"
        if parsed.type in ("regexp", "pcre") and not options.regsub:
            key += " (no $n)"
        if options.paranoid:
            key += " (paranoid)"
        table = self._tables.get(key)
        if table is None:
            try:
                table = open_table(parsed, options)
            except ConfigError as exc:
                log.error("%s", exc)
                table = SurrogateTable(parsed, str(exc))
            self._tables[key] = table
        return table

    def _mappings(self, role: str, address_class: str, canonical: MapList | None) -> list[MapList]:
        """The canonical maps cleanup applies to one envelope address class, in order:
        ``ROLE_canonical_maps``, then ``canonical_maps``, each if its classes include it."""
        own = self._open(f"{role}_canonical_maps", "canonical")
        chosen = []
        if own is not None and address_class in self._set(f"{role}_canonical_classes"):
            chosen.append(own)
        if canonical is not None and address_class in self._set("canonical_classes"):
            chosen.append(canonical)
        return chosen

    def _setup(self, passwd: Callable[[str], PasswdEntry | None]) -> None:
        get, flag = self._get, self._bool
        self.myhostname = get("myhostname")
        self.myorigin = get("myorigin")
        self.delimiter = get("recipient_delimiter")
        self.propagate = self._set("propagate_unmatched_extensions")
        self.rewrite_settings = self.config.settings(RewriteSettings)
        self.empty_address_recipient = get("empty_address_recipient")
        # cleanup(8): canonical maps and masquerading, per envelope address class
        canonical = self._open("canonical_maps", "canonical")
        self.recipient_mappings = self._mappings("recipient", "envelope_recipient", canonical)
        self.sender_mappings = self._mappings("sender", "envelope_sender", canonical)
        self.masquerade: Masquerade | None = None
        masquerade_classes = self._set("masquerade_classes")
        self.masquerade_recipients = "envelope_recipient" in masquerade_classes
        self.masquerade_senders = "envelope_sender" in masquerade_classes
        if get("masquerade_domains").strip():
            exceptions = MatchList.from_parameter(
                self.config, "masquerade_exceptions", ListKind.STRING, opener=self.table
            )
            self.masquerade = Masquerade(
                split_list(get("masquerade_domains")),
                exceptions.match if exceptions is not None else None,
                utf8=flag("smtputf8_enable"),
            )
        self.virtual_alias = self._open("virtual_alias_maps", "virtual_alias")
        self.expansion_limit = self.config.get_int("virtual_alias_expansion_limit")
        self.recursion_limit = self.config.get_int("virtual_alias_recursion_limit")
        self.length_limit = self.config.get_int("virtual_alias_address_length_limit")
        # trivial-rewrite(8)
        self.lists = _Lists(self.config, self.table)
        self.transport_parent_style = self.lists.transport_parent_style
        self.search_settings = self.config.settings(
            SearchSettings, is_local=self.lists.is_local, rewrite=self.rewrite_settings
        )
        self.transport = self._open("transport_maps", "transport", regsub=False)
        self.relocated = self._open("relocated_maps", "relocated")
        sender_relay = self._open("sender_dependent_relayhost_maps", "resolve", regsub=False)
        sender_xport = self._open(
            "sender_dependent_default_transport_maps", "resolve", regsub=False
        )
        self.router = Router(
            self.config.settings(RouteSettings, rewrite=self.rewrite_settings),
            RouteTables(
                is_local=self.lists.is_local,
                virtual_alias_domains=self.lists.virtual_alias_domains,
                virtual_mailbox_domains=self.lists.virtual_mailbox_domains,
                relay_domains=self.lists.relay_domains,
                transport=self._transport_lookup if self.transport is not None else None,
                relocated=self._relocated_lookup if self.relocated is not None else None,
                sender_default_transport=_finder(self, sender_xport),
                sender_relayhost=_finder(self, sender_relay),
            ),
        )
        # delivery agents
        self.virtual_mailbox = self._open("virtual_mailbox_maps", "virtual_mailbox")
        self.virtual_uid = self._open("virtual_uid_maps", "virtual_mailbox")
        self.virtual_gid = self._open("virtual_gid_maps", "virtual_mailbox")
        self.virtual_minimum_uid = self.config.get_int("virtual_minimum_uid")
        # local(8) opens these as security-sensitive: no tcp: or socketmap: answers.
        aliases = self._open("alias_maps", "local", regsub=False, paranoid=True)
        self.local = LocalAgent(
            self.config.settings(
                LocalSettings,
                local_transport=get("local_transport").partition(":")[0],
                forward_path=tuple(split_list(self.config.raw("forward_path") or "")),
                luser_relay=self.config.raw("luser_relay") or "",
            ),
            LocalTables(
                aliases=aliases.lookup if aliases is not None else None,
                mailbox_transport=_lookup(
                    self._open("mailbox_transport_maps", "local", regsub=False)
                ),
                mailbox_command=_lookup(self._open("mailbox_command_maps", "local", paranoid=True)),
                fallback_transport=_lookup(
                    self._open("fallback_transport_maps", "local", regsub=False)
                ),
            ),
            resolve=self._local_resolve,
            canonicalize=self.canonicalize,
            passwd=passwd,
        )

    def _plain_plan(self) -> tuple[Any, ...] | None:
        """What :func:`mailmaps._speedups.resolve_plain` needs to resolve plain addresses
        in C (see ``_resolve.c``), or ``None`` when this configuration takes the Python path
        for every address: no C extension, recipient masquerading, or a table whose lookups
        cannot be repeated without a difference (a server, a table that failed to open) —
        the C path hands failures back, and the Python path looks the keys up again."""
        if _resolve_plain is None or (self.masquerade is not None and self.masquerade_recipients):
            return None
        lists = [*self.recipient_mappings, self.virtual_alias, self.transport, self.relocated]
        if any(maps is not None and not maps.replayable for maps in lists):
            return None

        def searched(maps: MapList, *rest: object) -> tuple[object, ...]:
            return (maps.lookups, maps.fixed_lookups, *rest)

        transport_bits = int(transport_strategy(self.transport_parent_style))
        return (
            tuple(searched(m, "canonical" in self.propagate) for m in self.recipient_mappings),
            searched(self.virtual_alias, "virtual" in self.propagate)
            if self.virtual_alias is not None
            else None,
            self.search_settings.plain_args,
            (self.recursion_limit, self.expansion_limit, self.length_limit),
            self.router.plain_domain,
            searched(self.transport, transport_bits) if self.transport is not None else None,
            self._transport_wildcard,
            searched(self.relocated) if self.relocated is not None else None,
            int(ResolveFlag.CLASS_ALIAS),
            int(ResolveFlag.CLASS_LOCAL),
        )

    def _cached_passwd(self, name: str) -> PasswdEntry | None:
        cache = self._passwd_cache
        if name not in cache:
            if len(cache) > 65536:
                cache.clear()
            cache[name] = self._passwd(name)
        return cache[name]

    def _event(self, item: TraceEvent | tuple[Table, str, str | None]) -> TraceEvent:
        if isinstance(item, TraceEvent):
            return item
        table, key, value = item
        stage = self._stages.get(id(table), "lookup")
        return TraceEvent(stage, None, f"{table.map_type}:{table.name}", key, value)

    def clear_caches(self) -> None:
        """Forget the passwd entries looked up so far (they are kept for the resolver's life,
        where Postfix's local(8) asks the system every time)."""
        self._passwd_cache.clear()

    # --- the public API ------------------------------------------------------------------------

    def resolve(self, address: str, sender: str = "", *, trace: bool = False) -> Resolution:
        """What Postfix would do with mail from ``sender`` to ``address``.

        :param address: the recipient as given to ``sendmail -bv`` (external form).
        :param sender: the envelope sender (external form; empty for the null sender).
        :param trace: record every table lookup and rule in :attr:`Resolution.trace`.
        """
        return self._resolve_one(address, sender, trace, self._plain)

    def _resolve_one(
        self, address: str, sender: str, trace: bool, plan: tuple[Any, ...] | None
    ) -> Resolution:
        """:meth:`resolve`; ``plan`` is the C path's, or ``None`` for the Python path only."""
        if plan is not None and not trace and not sender:
            fast = self._resolve_plain(plan, address)  # before any tracing set-up
            if fast is not None:
                return Resolution(address, fast)
            plan = None  # handed back: the Python path, without asking C again
        tracer = self._tracer
        tracer.events = [] if trace else None
        try:
            try:
                cleaned = self._cleanup_sender(unquote_local(sender)) if sender else ""
            except _NotAccepted as exc:
                recipients = [_not_accepted(address, exc)]
            else:
                if plan is not None and not trace:
                    fast = self._resolve_plain(plan, address)
                    if fast is not None:
                        return Resolution(address, fast)
                recipients = self._resolve(address, cleaned)
            events = tuple(self._event(item) for item in tracer.events or ())
        finally:
            tracer.events = None
        # The report names recipients in external form: "a b"@example.com.
        quoted = []
        for r in recipients:
            if r.address_class is not None:
                external = quote_local(r.address)
                if external != r.address:
                    r = replace(r, address=external)
            quoted.append(r)
        if len(quoted) > 1:
            quoted.sort(key=_report_order)
        ordered = quoted
        return Resolution(address, tuple(ordered), events)

    def resolve_many(
        self, addresses: Iterable[str], sender: str = "", *, trace: bool = False
    ) -> Iterator[Resolution]:
        """:meth:`resolve` for each address, in order: the fast path for many addresses.

        The addresses are resolved in batches of :data:`HOLD_BATCH`, each under one shared
        lock and one read snapshot per file table (where :meth:`resolve` locks around every
        lookup, as Postfix's daemons do). A batch sees one consistent version of every table,
        a writer (``postmap``) waits at most for one batch, and no lock is held while the
        caller consumes the answers.
        """
        # Pattern tables among the recipient's canonical maps see each address whole first.
        ahead = [
            table
            for maps in self.recipient_mappings
            for table in maps.tables
            if hasattr(table, "prefetch")
        ]
        plan = self._plain
        yield from self.in_batches(
            addresses,
            lambda address: self._resolve_one(address, sender, trace, plan),
            ahead,
            lambda batch: batch,
        )

    def in_batches(
        self,
        items: Iterable[_Item],
        answer: Callable[[_Item], _Answer],
        ahead: Sequence[Any] = (),
        keys: Callable[[list[_Item]], list[str]] | None = None,
    ) -> Iterator[_Answer]:
        """``answer(item)`` for each item, in order, :data:`HOLD_BATCH` at a time under one
        :meth:`hold` (for components that share this resolver's tables, such as
        :meth:`AccessPolicy.decide_many() <mailmaps.access.AccessPolicy.decide_many>`).

        :param ahead: pattern tables (with ``prefetch()``) that answer ``keys(batch)`` in one
            scan before each batch, and forget them after it.
        """
        pending = iter(items)
        while batch := list(islice(pending, HOLD_BATCH)):
            with self.hold():
                if ahead and keys is not None:
                    names = keys(batch)
                    for table in ahead:
                        table.prefetch(names)
                try:
                    answers = [answer(item) for item in batch]
                finally:
                    for table in ahead:
                        table.forget()
            yield from answers

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Hold every file table's shared lock and read snapshot until the block ends (see
        :meth:`resolve_many`); lookups inside the block take no locks of their own."""
        with self._hold_mutex:
            if self._holders == 0:
                stack = contextlib.ExitStack()
                try:
                    for table in self._tables.values():
                        hold = getattr(table, "hold", None)
                        if hold is not None:
                            stack.enter_context(hold())
                except BaseException:
                    stack.close()
                    raise
                self._held = stack
            self._holders += 1
        try:
            yield
        finally:
            with self._hold_mutex:
                self._holders -= 1
                if self._holders == 0:
                    self._held.close()

    def close(self) -> None:
        """Close every table."""
        for table in self._tables.values():
            table.close()
        self._tables = {}
        self._maps = []

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # --- cleanup(8) ----------------------------------------------------------------------------

    def _note(self, stage: str, address: str, result: str | None, note: str) -> None:
        self._tracer.add(TraceEvent(stage, address, result=result, note=note))

    def _resolve_plain(
        self, plan: tuple[Any, ...], address: str
    ) -> tuple[FinalRecipient, ...] | None:
        """The common case in C (``mailmaps._speedups.resolve_plain``, see ``_resolve.c``):
        a plain address through cleanup and trivial-rewrite, to network, ``error:`` and
        ``discard:`` transports; ``None`` for everything else (the Python path answers)."""
        routes = _resolve_plain(plan, address)
        if routes is NotImplemented:
            return None
        outcome = self._outcome
        finals = []
        for recipient, cls, transport, nexthop in routes:
            final = outcome(recipient, cls, transport, nexthop)
            if final is None:
                return None  # local(8) or virtual(8) decides
            finals.append(final)
        if len(finals) > 1:
            finals.sort(key=_report_order)
        return tuple(finals)

    def _resolve(self, address: str, sender: str) -> list[FinalRecipient]:
        """The final recipients for ``address`` (external form) from the cleaned-up
        ``sender``."""
        inputs = _command_line_recipients(address)
        accepted: list[str] = []
        for recipient in inputs:
            try:
                accepted.extend(self._cleanup(recipient))
            except _NotAccepted as exc:
                return [_not_accepted(address, exc)]
        out: list[FinalRecipient] = []
        local_batch: list[tuple[str, Route]] = []
        for recipient in accepted:
            route = self.router.resolve(recipient, sender)
            if self._tracer.events is not None:
                self._note(
                    "resolve",
                    recipient,
                    f"{route.transport}:{route.nexthop}",
                    f"class {route.address_class or 'none'}, recipient {route.recipient}",
                )
            out.extend(self._deliver(route, local_batch))
        if local_batch:
            out.extend(self._deliver_local(local_batch))
        return out

    def _cleanup(self, recipient: str) -> list[str]:
        """One envelope recipient through cleanup: rewriting, canonical, masquerading and
        virtual alias expansion.  Returns the recipients cleanup would queue."""
        address = self.canonicalize(recipient or self.empty_address_recipient)
        if address != recipient:
            self._note("rewrite", recipient, address, "rewritten to canonical form")
        address = self._map_and_masquerade(
            address, self.recipient_mappings, self.masquerade_recipients
        )
        if self.virtual_alias is None:
            return [address]
        expanded = self._map1n(self.virtual_alias, address)
        seen: set[str] = set()
        out = []
        for member in expanded:
            folded = member.lower()
            if folded not in seen:
                seen.add(folded)
                out.append(member)
        return out

    def _map_and_masquerade(self, address: str, mappings: list[MapList], masquerade: bool) -> str:
        """Canonical maps in order, then masquerading (when the address class is in
        ``masquerade_classes``)."""
        for maps in mappings:
            address = self._map11(maps, address)
        if masquerade and self.masquerade is not None:
            masked = self.masquerade.internal(address)
            if masked.deferred:
                raise _NotAccepted("4.3.0", "masquerade_exceptions map lookup problem")
            if masked.address != address:
                self._note("masquerade", address, masked.address, "masquerade_domains")
                address = masked.address
        return address

    def _cleanup_sender(self, sender: str) -> str:
        """The envelope sender as cleanup(8) writes it (``cleanup_addr_sender()``)."""
        if not sender:
            return ""
        address = self.canonicalize(sender)
        if address.lower().startswith("mailer-daemon@") and address.lower() == (
            self.canonicalize("MAILER-DAEMON").lower()
        ):
            return ""
        address = self._map_and_masquerade(address, self.sender_mappings, self.masquerade_senders)
        if address != sender:
            self._note("rewrite", sender, address, "the envelope sender")
        return address

    def canonicalize(self, address: str) -> str:
        """trivial-rewrite's rewrite in the local context, on an internal-form address."""
        if DOTTED_ADDRESS.fullmatch(address) is not None:
            return address  # nothing to quote, append or rewrite
        return unquote_local(rewrite_address(quote_local(address), "local", self.rewrite_settings))

    def _map11(self, maps: MapList, address: str) -> str:
        """canonical(5): one-to-one, repeated until stable (``cleanup_map11_internal()``)."""
        external = quote_local(address)
        for _ in range(_MAX_CANONICAL):
            try:
                results = self._addr_map(maps, external, "canonical", external_out=True)
            except LookupFailed as exc:
                raise _NotAccepted("4.3.0", f"{maps.title} map lookup problem") from exc
            if results is None:
                break
            new = results[0]
            self._note("canonical", unquote_local(external), unquote_local(new), maps.title)
            same = new.lower() == external.lower()
            external = new
            if same:
                break
        return unquote_local(external)

    def _map1n(self, maps: MapList, address: str) -> list[str]:
        """virtual(5): one-to-many, recursive (``cleanup_map1n_internal()``)."""
        work = [address]
        to_itself: set[str] = set()
        i = 0
        while i < len(work):
            if len(work) > self.expansion_limit:
                raise _NotAccepted(
                    "4.6.0", f"unreasonable {maps.title} map expansion size for {address}"
                )
            count = 0
            while work[i].lower() not in to_itself:
                if count >= self.recursion_limit:
                    raise _NotAccepted(
                        "4.6.0", f"unreasonable {maps.title} map nesting for {address}"
                    )
                count += 1
                try:
                    results = self._addr_map(maps, work[i], "virtual", external_out=False)
                except LookupFailed as exc:
                    raise _NotAccepted(
                        "4.6.0", f"{maps.title} map lookup problem for {address}"
                    ) from exc
                if results is None:
                    break
                looked_up = work[i]
                for n, result in enumerate(results):
                    if len(result) > self.length_limit:
                        raise _NotAccepted("4.6.0", f"unreasonable {maps.title} result")
                    if n == 0:
                        work[i] = result
                    else:
                        work.append(result)
                    if result.lower() == looked_up.lower():
                        to_itself.add(looked_up.lower())
                self._note("virtual_alias", looked_up, ", ".join(results), maps.title)
            i += 1
        return work

    def _addr_map(
        self, maps: MapList, address: str, kind: str, *, external_out: bool
    ) -> list[str] | None:
        """canonical (external forms) or virtual (internal forms) 1:N mapping."""
        form = Form.EXTERNAL if external_out else Form.INTERNAL
        return mail_addr_map(
            maps,
            address,
            self.search_settings,
            propagate=kind in self.propagate,
            in_form=form,
            query_form=Form.EXTERNAL,
            out_form=form,
        )

    # --- trivial-rewrite(8) helpers --------------------------------------------------------------

    def _transport_lookup(
        self, recipient: str, domain: str, channel: str, nexthop: str
    ) -> tuple[str, str] | None:
        assert self.transport is not None
        return transport_lookup(
            self.transport,
            recipient,
            domain,
            channel,
            nexthop,
            self.search_settings,
            parent_matches_subdomains=self.transport_parent_style,
            wildcard=self._transport_wildcard,
        )

    def _transport_wildcard(self) -> str | None:
        """The ``*`` entry of transport_maps, looked up again after 30 seconds, as
        trivial-rewrite does (``transport_wildcard_init()``)."""
        now = time.monotonic()
        cached = self._wildcard
        if cached is not None and now < cached[0]:
            return cached[1]
        assert self.transport is not None
        value = self.transport.lookup("*")
        self._wildcard = (now + WILDCARD_TTL, value)
        return value

    def _relocated_lookup(self, recipient: str) -> str | None:
        assert self.relocated is not None
        return self._find(self.relocated, recipient)

    def _find(self, maps: MapList, address: str) -> str | None:
        return mail_addr_find(maps, address, self.search_settings)

    # --- delivery ------------------------------------------------------------------------------

    def _deliver(self, route: Route, local_batch: list[tuple[str, Route]]) -> list[FinalRecipient]:
        cls = route.address_class
        recipient = route.recipient
        if route.failed:
            return [
                self._final(
                    recipient, cls, "retry", route.nexthop, "4.3.0 address resolver failure"
                )
            ]
        if route.error:
            return [self._final(recipient, cls, "error", route.nexthop, "5.1.3 bad address syntax")]
        found = self._outcome(recipient, cls, route.transport, route.nexthop)
        if found is not None:
            return [found]
        if self.services[route.transport] == "local":
            local_batch.append((recipient, route))
            return []
        return self._deliver_virtual(route)

    def _outcome(
        self, recipient: str, cls: AddressClass | None, transport: str, nexthop: str
    ) -> FinalRecipient | None:
        """What the transport's master.cf program makes of the recipient; ``None`` for the
        local(8) and virtual(8) delivery agents, whose decisions take more."""
        program = self.services.get(transport)
        if program is None:
            return FinalRecipient(
                recipient,
                cls,
                transport,
                nexthop,
                "undeliverable",
                "4.3.0",
                "mail transport unavailable",
            )
        if program == "error":
            return self._final(recipient, cls, transport, nexthop, nexthop)
        if program == "discard":
            dsn, text = dsn_split("2.0.0", nexthop)
            return FinalRecipient(recipient, cls, transport, nexthop, "deliverable", dsn, text)
        if program == "local" or program == "virtual":
            return None
        return FinalRecipient(recipient, cls, transport, nexthop, None, None, None)

    def _final(
        self, recipient: str, cls: AddressClass | None, transport: str, nexthop: str, why: str
    ) -> FinalRecipient:
        """An ``error``/``retry`` outcome: the reason text may start with a DSN code."""
        default = "4.0.0" if transport == "retry" else "5.0.0"
        dsn, text = dsn_split(default, why)
        return FinalRecipient(recipient, cls, transport, nexthop, "undeliverable", dsn, text)

    def _deliver_local(self, batch: list[tuple[str, Route]]) -> list[FinalRecipient]:
        route = batch[0][1]
        transport = route.transport
        out = []
        for delivery in self.local.deliver([recipient for recipient, _ in batch]):
            out.append(self._from_delivery(delivery, route, transport))
        return out

    def _from_delivery(self, delivery: Delivery, route: Route, transport: str) -> FinalRecipient:
        if delivery.transport != self.local.settings.local_transport:
            # Handed to mailbox_transport or fallback_transport: that agent decides.
            name, _, nexthop = delivery.transport.partition(":")
            return FinalRecipient(
                delivery.recipient,
                route.address_class,
                name,
                nexthop or route.nexthop,
                None,
                None,
                None,
            )
        return FinalRecipient(
            delivery.recipient,
            route.address_class,
            transport,
            route.nexthop,
            delivery.status,
            delivery.dsn,
            delivery.text,
        )

    def _deliver_virtual(self, route: Route) -> list[FinalRecipient]:
        """virtual(8): ``virtual_mailbox_maps``, then the uid and gid tables."""
        user = route.recipient.lower()
        cls, transport, nexthop = route.address_class, route.transport, route.nexthop

        def outcome(status: Status, dsn: str, text: str) -> list[FinalRecipient]:
            return [FinalRecipient(route.recipient, cls, transport, nexthop, status, dsn, text)]

        config_error = "mail system configuration error"
        try:
            mailbox = (
                self._find(self.virtual_mailbox, user) if self.virtual_mailbox is not None else None
            )
        except LookupFailed:
            return outcome("undeliverable", "4.3.5", config_error)
        if mailbox is None:
            return outcome("undeliverable", "5.1.1", f'unknown user: "{user}"')
        for maps, minimum in ((self.virtual_uid, self.virtual_minimum_uid), (self.virtual_gid, 1)):
            try:
                found = self._find(maps, user) if maps is not None else None
            except LookupFailed:
                found = None
            if found is None or _atol(found) < minimum:
                return outcome("undeliverable", "4.3.5", config_error)
        kind = "maildir" if mailbox.endswith("/") else "mailbox"
        return outcome("deliverable", "2.0.0", f"delivers to {kind}")

    def _local_resolve(self, address: str) -> tuple[str, str] | Delivery:
        """local(8) asks trivial-rewrite about an address found in an alias or file."""
        canonical = self.canonicalize(address)
        route = self.router.resolve(canonical)
        if self._tracer.events is not None:
            self._note("local", address, route.recipient, f"resolved to {route.transport}")
        if route.failed:
            return Delivery(address, "undeliverable", "4.3.0", "address resolver failure")
        if route.error:
            return Delivery(
                address,
                "undeliverable",
                "5.1.3",
                f"bad recipient address syntax: {route.recipient}",
            )
        return route.transport, route.recipient


class _NotAccepted(Exception):
    """cleanup(8) would not accept the message: ``sendmail -bv`` gets no report."""

    def __init__(self, dsn: str, text: str) -> None:
        super().__init__(text)
        self.dsn = dsn
        self.text = text


class _Lists:
    """The domain lists trivial-rewrite consults, built from the configuration."""

    def __init__(self, config: MainConfig, opener: Callable[[str], Table]) -> None:
        get = config.get
        names = ("mydestination", "inet_interfaces", "proxy_interfaces", "inet_protocols")
        self.local = LocalDomains.from_values({name: get(name) for name in names}, opener=opener)
        self.is_local = self.local.is_local
        domains = MatchList.from_parameter
        self.virtual_alias_domains = domains(
            config, "virtual_alias_domains", ListKind.STRING, opener=opener
        )
        self.virtual_mailbox_domains = domains(
            config, "virtual_mailbox_domains", ListKind.STRING, opener=opener
        )
        self.relay_domains = domains(config, "relay_domains", ListKind.DOMAIN, opener=opener)
        parent = config.get_set("parent_domain_matches_subdomains")
        self.transport_parent_style = "transport_maps" in parent


def _not_accepted(address: str, exc: _NotAccepted) -> FinalRecipient:
    """The message is not accepted at all (cleanup's reply)."""
    return FinalRecipient(address, None, None, None, "undeliverable", exc.dsn, exc.text)


def _report_order(recipient: FinalRecipient) -> tuple[str, str]:
    return recipient.address, recipient.text or ""


def _lookup(maps: MapList | None) -> Callable[[str], str | None] | None:
    return maps.lookup if maps is not None else None


def _finder(resolver: Resolver, maps: MapList | None) -> Callable[[str], str | None] | None:
    if maps is None:
        return None
    return lambda key: resolver._find(maps, key)


def _atol(text: str) -> int:
    digits = ""
    for ch in text.strip():
        if not ch.isdigit() and not (ch == "-" and not digits):
            break
        digits += ch
    try:
        return int(digits)
    except ValueError:
        return 0


def _command_line_recipients(text: str) -> list[str]:
    """The recipients ``sendmail`` takes from one command-line argument (internal form)."""
    if PLAIN_ADDRESS.fullmatch(text) is not None:
        return [text]
    tree = parse_nodes(text)
    out = []
    for node in tree if tree is not None else ():
        if node.type is TokenType.ADDR and node.head is not None:
            out.append(internalize(node.head))
    return out or [text]


def read_services(path: str | Path) -> dict[str, str]:
    """Service name -> program, for the ``unix`` services of a master.cf file."""
    services: dict[str, str] = {}
    entry: list[str] = []

    def flush() -> None:
        if len(entry) >= 8 and entry[1] in ("unix", "unix-dgram", "pass", "fifo"):
            services[entry[0]] = entry[7]

    for raw in Path(path).read_text(errors="replace").splitlines():
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        if raw[0] in " \t":
            continue
        flush()
        entry = raw.split()
    flush()
    return services
