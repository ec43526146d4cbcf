"""The policy: a configuration's restriction lists, tables and settings, built once."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import fields, replace
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from mailmaps.access._check import (
    _ACCESS_PDDMDS,
    _ACCESS_PDMS,
    _FAIL,
    _RCPT_REQUIRED,
    _ROUTE_CACHE,
    _STEP_RUN,
    _TEMPFAIL_ACTIONS,
    _collapse,
    _compile,
    _normal_address,
    _Recorder,
    _Run,
    _State,
    _Step,
    stored_helo,
)
from mailmaps.access._dns import DnsResolver, NoDns
from mailmaps.access._model import DATA, EOD, RECIPIENT, SENDER, Decision, Session
from mailmaps.config import MainConfig
from mailmaps.errors import ConfigError
from mailmaps.maps import MapList
from mailmaps.matchlist import ListKind, MatchList, mynetworks_default
from mailmaps.policyclient import PolicyService
from mailmaps.resolver import Resolver
from mailmaps.routing import Route
from mailmaps.search import Strategy
from mailmaps.spec import split_list
from mailmaps.table import OpenOptions
from mailmaps.text import fold

try:
    from mailmaps._speedups import decide_plain as _decide_plain
except ImportError:  # pragma: no cover - the C extension is optional
    _decide_plain = None  # type: ignore[assignment]

log = logging.getLogger("mailmaps")

#: The restrictions the C path (``_access.c``) evaluates, and its numbers for them.
_PLAIN_KINDS = {
    "permit": 1,
    "reject": 2,
    "defer": 3,
    "permit_mynetworks": 4,
    "check_client_access": 5,
    "check_helo_access": 6,
    "check_sender_access": 7,
    "check_recipient_access": 8,
    "permit_auth_destination": 9,
    "reject_unauth_destination": 10,
    "defer_unauth_destination": 11,
    "reject_unlisted_recipient": 12,
    "check_recipient_maps": 12,
    "permit_sasl_authenticated": 13,
}
#: Decision's fields, in the order _access.c sets them.
_DECISION_FIELDS = (
    "stage",
    "action",
    "reply",
    "decided_by",
    "entry",
    "hold",
    "filter",
    "redirect",
    "bcc",
    "prepend",
    "warnings",
    "trace",
)
#: The access table each list's bare ``type:name`` entries mean.
_ACLS = {
    "client": "check_client_access",
    "helo": "check_helo_access",
    "sender": "check_sender_access",
    "relay": "check_recipient_access",
    "recipient": "check_recipient_access",
}

# --- the policy ---------------------------------------------------------------------------------


class AccessPolicy:
    """smtpd's access decisions under one configuration; the check methods are thread-safe.

    :param config: main.cf settings.
    :param resolver: the address resolver to share tables with (default: a new one).
    :param dns: answers the DNS questions of ``reject_unknown_*``, ``check_*_{a,mx,ns}_access``
        (default: :class:`NoDns`).
    :param check_required: refuse restriction lists that never reject relaying, as smtpd
        does at start-up; ``False`` allows them, as Postfix's ``smtpd_check`` test program does.
    :param compiled: decide the sessions that need nothing unusual in C when the extension is
        built (see :meth:`decide`); ``False`` always takes the Python path. The decisions are
        the same either way.
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
        compiled: bool = True,
    ) -> None:
        self.config = config
        self._check_required = check_required
        self._own_resolver = resolver is None
        self.resolver = resolver if resolver is not None else Resolver(config)
        self.dns: DnsResolver = dns if dns is not None else NoDns()
        self._routes: dict[tuple[str, str] | str, Route] = {}
        self._helo_names: dict[str, tuple[str, str]] = {}
        self._compiled: dict[tuple[tuple[str, ...], str | None], tuple[_Step, ...]] = {}
        self._compiled_lists: dict[
            tuple[int, str | None], tuple[Sequence[str], tuple[_Step, ...]]
        ] = {}
        self._lock = threading.Lock()
        self._plain: tuple[Any, ...] | None = None
        try:
            self._setup()
            if compiled:
                self._plain = self._plain_plan()
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
        opener = self.resolver.table
        lists = MatchList.from_parameter
        mynetworks = None
        if "mynetworks" not in cfg.values:
            mynetworks = mynetworks_default(get("mynetworks_style"), get("inet_protocols"))
        self.mynetworks = lists(
            cfg, "mynetworks", ListKind.HOST, value=mynetworks, opener=opener
        ) or MatchList("mynetworks", "", ListKind.HOST)
        self.relay_domains = lists(cfg, "relay_domains", ListKind.DOMAIN, opener=opener)
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
        for items in self._configured_lists():
            for prev, item in zip(["", *items], items, strict=False):
                if prev.lower() == "check_policy_service":
                    self.policies[item] = PolicyService.parse(
                        item, policy_defaults, get("queue_directory")
                    )
                elif ":" in item and not item.startswith("{"):
                    self._access_maps(item)
        # Recipient validation maps.
        r = self.resolver
        self._sender_routing = r.router.sender_dependent
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
        self.mx_backup_networks = lists(
            cfg, "permit_mx_backup_networks", ListKind.HOST, opener=opener
        )

    def _plain_plan(self) -> tuple[Any, ...] | None:
        """What :func:`mailmaps._speedups.decide_plain` needs to decide sessions in C (see
        ``_access.c``), or ``None`` when this configuration takes the Python path for every
        session: no C extension, ``smtpd_delay_reject = no``, ``smtpd_reject_unlisted_sender``,
        a restriction the C path does not evaluate, one that Postfix warns about, or a table
        whose lookups cannot be repeated without a difference (a server: the C path hands
        answers it does not take back, and the Python path looks the keys up again)."""
        if _decide_plain is None or not self.delay_reject or self.reject_unlisted_sender:
            return None

        stages = []
        order = ["relay", "recipient"] if self.relay_before_rcpt else ["recipient", "relay"]
        for stage in ["client", "helo", "sender", *order]:
            steps = []
            for step in self.compiled(self.lists[stage], _ACLS[stage]):
                kind = _PLAIN_KINDS.get(step.lname)
                if step.kind != _STEP_RUN or kind is None or step.ignored is not None:
                    return None
                maps = self._access_maps(step.arg) if step.arg is not None else None
                if maps is not None and not maps.replayable:
                    return None
                tables = (maps.lookups, maps.fixed_lookups) if maps is not None else None
                steps.append((kind, step.label, tables, step.arg))
            stages.append(tuple(steps))
        rcpt_maps = []
        for name in (
            "recipient_canonical_maps",
            "canonical_maps",
            "virtual_alias_maps",
            "local_recipient_maps",
            "virtual_mailbox_maps",
            "relay_recipient_maps",
        ):
            maps = self.maps[name]
            if maps is not None and not (isinstance(maps, MapList) and maps.replayable):
                return None
            rcpt_maps.append(None if maps is None else (maps.lookups, maps.fixed_lookups))
        names = tuple(f.name for f in fields(Decision))
        if names != _DECISION_FIELDS:
            return None  # _access.c sets these fields, in this order
        codes = self.codes
        return (
            Decision,
            names,
            self.resolve,
            self.mynetworks.match,
            tuple(stages),
            tuple(
                codes[name]
                for name in (
                    "reject_code",
                    "defer_code",
                    "access_map_reject_code",
                    "access_map_defer_code",
                    "relay_domains_reject_code",
                    "unknown_local_recipient_reject_code",
                    "unknown_virtual_mailbox_reject_code",
                    "unknown_relay_recipient_reject_code",
                )
            ),
            (
                self.access_parent,
                self.allow_untrusted_routing,
                self.soft_bounce,
                self.reject_unlisted_recipient,
                self.has_local_rcpt_maps,
                self.show_unknown_table,
                self.sasl_enabled,
                self._sender_routing,
            ),
            self.resolver.search_settings.plain_args,
            int(_ACCESS_PDMS if self.access_parent else _ACCESS_PDDMDS),
            tuple(rcpt_maps),
            int(Strategy.DEFAULT),
            self.null_key,
            self.double_bounce,
            self.verify_probe,
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
        # The configured lists are the same objects every time: found by identity first.
        known = self._compiled_lists.get((id(restrictions), acl))
        if known is not None and known[0] is restrictions:
            return known[1]
        key = (tuple(restrictions), acl)
        steps = self._compiled.get(key)
        if steps is None:
            steps = _compile(restrictions, acl)
            if len(self._compiled) >= _ROUTE_CACHE:
                self._compiled.clear()
            self._compiled[key] = steps
        # Only the configured lists: the lists that table answers name are new objects each time.
        if any(restrictions is known for known in self._configured_lists()):
            self._compiled_lists[(id(restrictions), acl)] = (restrictions, steps)
        return steps

    def _configured_lists(self) -> Iterator[list[str]]:
        yield from self.lists.values()
        yield from self.classes.values()

    def _access_maps(self, spec: str) -> MapList:
        maps = self._access.get(spec)
        if maps is None:
            options = OpenOptions(utf8=self.utf8, main_config=self.resolver.config)
            table = self.resolver.table(spec, options)
            maps = MapList([table], options, title=spec)
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

        Without ``trace``, a session whose restrictions and table answers need nothing unusual
        is decided in C (``mailmaps._speedups.decide_plain``); everything else, and every
        session of a configuration the C path does not cover, in Python. Both give the same
        decision.
        """
        plan = self._plain
        if plan is not None and not trace:
            fast = _decide_plain(plan, session)
            if fast is not NotImplemented:
                return fast  # type: ignore[no-any-return]
        return self._run(session, "RCPT", lambda run: run.decide(), trace)

    def decide_many(
        self, sessions: Iterable[Session], *, trace: bool = False
    ) -> Iterator[Decision]:
        """:meth:`decide` for each session, in order: the fast way through many.

        Sessions are decided in batches, each under one shared lock and read snapshot of every
        file table (:meth:`Resolver.hold() <mailmaps.resolver.Resolver.hold>`), where
        :meth:`decide` locks around each lookup as smtpd does; no lock is held while the caller
        consumes the decisions.
        """
        # Pattern tables of check_helo_access see each HELO name whole first.
        yield from self.resolver.in_batches(
            sessions,
            lambda session: self.decide(session, trace=trace),
            self._helo_pattern_tables(),
            lambda batch: [self.helo_names(s.helo)[1] for s in batch if s.helo is not None],
        )

    def helo_names(self, helo: str) -> tuple[str, str]:
        """A HELO argument as smtpd checks it at HELO (its words joined by single spaces) and as
        it stores it for later stages (:func:`stored_helo`); remembered."""
        names = self._helo_names.get(helo)
        if names is None:
            collapsed = _collapse(helo)
            names = collapsed, stored_helo(collapsed, self.utf8)
            if len(self._helo_names) >= _ROUTE_CACHE:
                self._helo_names.clear()
            self._helo_names[helo] = names
        return names

    def _helo_pattern_tables(self) -> list[Any]:
        """The pcre and regexp tables that restriction lists name after check_helo_access."""
        found: dict[int, Any] = {}
        for items in self._configured_lists():
            for prev, item in zip(["", *items], items, strict=False):
                if prev.lower() == "check_helo_access" and ":" in item:
                    for table in self._access_maps(item).tables:
                        if hasattr(table, "prefetch"):
                            found[id(table)] = table
        return list(found.values())

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
        # The sender matters only to sender-dependent routing: without it, one answer per address.
        key = (sender or "", address) if self._sender_routing else address
        route = self._routes.get(key)
        if route is not None:
            return route
        r = self.resolver
        query = r.canonicalize(address)
        from_ = r.canonicalize(sender) if sender and self._sender_routing else ""
        route = r.router.resolve(query, from_)
        folded = fold(route.recipient, self.utf8)
        if folded != route.recipient:
            route = replace(route, recipient=folded)
        if not int(route.flags) & _FAIL:
            if len(self._routes) >= _ROUTE_CACHE:
                self._routes.clear()
            self._routes[key] = route
        return route
