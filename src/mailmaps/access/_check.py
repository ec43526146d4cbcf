"""``smtpd_check.c``: one evaluation of restriction lists over one session state."""

from __future__ import annotations

import ipaddress
import logging
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from mailmaps.access._dns import DnsAnswer, DnsStatus
from mailmaps.access._model import (
    _BOUNCE,
    _DATA,
    _DUNNO,
    _OK,
    _POLICY,
    _REJECT,
    _RESOURCE,
    _SND_DSN,
    _SOFTWARE,
    CLIENT,
    ETRN,
    HELO,
    RECIPIENT,
    SENDER,
    AccessEvent,
    Decision,
    Session,
    smtpd_dsn_fix,
)
from mailmaps.dsn import dsn_split, dsn_valid
from mailmaps.errors import LookupFailed, PermanentLookupError
from mailmaps.hostname import (
    valid_hostaddr,
    valid_hostname,
    valid_mailhost_addr,
    valid_utf8_hostname,
)
from mailmaps.policyclient import PolicyService
from mailmaps.routing import ResolveFlag
from mailmaps.search import Strategy, mail_addr_find, mail_addr_find_key
from mailmaps.spec import split_list
from mailmaps.table import Table
from mailmaps.text import printable

if TYPE_CHECKING:
    from mailmaps.access._policy import AccessPolicy
    from mailmaps.access._restrictions import _Handler

log = logging.getLogger("mailmaps")


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


@dataclass(slots=True)
class _Defer:
    """A postponed deferral (``SMTPD_DEFER``)."""

    active: bool = False
    error_class: str = _POLICY
    code: int = 450
    dsn: str = "4.7.1"
    reason: str = ""


@dataclass(slots=True)
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


#: check_mail_access()'s search order, with either parent-domain style.
_ACCESS_PDMS = (
    Strategy.FULL | Strategy.NOEXT | Strategy.DOMAIN | Strategy.LOCALPART_AT | Strategy.PDMS
)
_ACCESS_PDDMDS = (
    Strategy.FULL | Strategy.NOEXT | Strategy.DOMAIN | Strategy.LOCALPART_AT | Strategy.PDDMDS
)


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
        raw_helo, stored = p.helo_names(s.helo) if s.helo is not None else (None, None)
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
            st.helo = stored
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
        numerical = valid_hostaddr(domain)
        keys = []
        name = domain
        while name:
            keys.append(name)
            dot = -1 if numerical else name.find(".", 1)
            if dot < 0:
                break
            name = name[dot:] if not self.p.access_parent else name[dot + 1 :]
        return self._walk(table, keys, domain, reply_name, reply_class, acl, label)

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
        keys = [address]
        cut = address.rfind(delim)
        while cut >= 0:
            keys.append(address[:cut])
            cut = address.rfind(delim, 0, cut)
        return self._walk(table, keys, address, reply_name, reply_class, acl, label)

    def _walk(
        self,
        table: str,
        keys: list[str],
        datum: str,
        reply_name: str,
        reply_class: str,
        acl: str | None,
        label: str,
    ) -> tuple[int, bool]:
        """The answer of the first of ``keys`` that ``table`` has (the keys after the first go
        to exact-key tables only), and whether there was one."""
        # In one call (MapList.first), unless tracing, or a table failed: then key by key.
        found = None if self.st.trace else self.p._access_maps(table).first(keys)
        if found is None:  # key by key: the trace shows each, and a failure is reported
            for i, key in enumerate(keys):
                value, error = self._find(table, key, i > 0)
                if value is not None or error:
                    answer = self._answer(
                        table, key, value, error, datum, reply_name, reply_class, acl, label
                    )
                    return answer, True
            return _DUNNO, False
        if found[0] < 0:
            return _DUNNO, False
        key = keys[found[0]]
        return self._answer(
            table, key, found[1], False, datum, reply_name, reply_class, acl, label
        ), True

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
        strategy = _ACCESS_PDMS if p.access_parent else _ACCESS_PDDMDS
        maps = p._access_maps(table)
        key = recipient
        error = False
        quick = (
            None
            if st.trace
            else mail_addr_find_key(maps, recipient, p.resolver.search_settings, strategy=strategy)
        )
        if quick is not None:
            value, hit = quick
            key = hit if hit is not None else key
        else:  # record the keys tried: the trace shows them, and the decision names the hit
            recorded: list[tuple[Table, str, str | None]] = []
            p._recorder.events = recorded
            try:
                value = mail_addr_find(
                    maps, recipient, p.resolver.search_settings, strategy=strategy
                )
            except LookupFailed:
                value, error = None, True
            finally:
                p._recorder.events = None
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
    from mailmaps.access._restrictions import _HANDLERS  # the handlers import this module

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


def _collapse(helo: str) -> str:
    """The HELO arguments joined by single spaces (``collapse_args()``)."""
    return " ".join(helo.split())


def stored_helo(helo: str, utf8: bool) -> str:
    """The HELO name as smtpd stores it, from its collapsed arguments: unprintable and special
    characters replaced by ``?`` (``neuter()``); what check_helo_access looks up."""
    return _neuter(printable(helo, utf8, "?"))


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
