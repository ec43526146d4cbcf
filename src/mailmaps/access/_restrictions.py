"""The restrictions, by name: what each one checks (``generic_checks()``'s branches)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from mailmaps.access._check import _normal_address, _Run
from mailmaps.access._model import (
    _DUNNO,
    _OK,
    _POLICY,
    CCERT,
    CLIENT,
    ETRN,
    HELO,
    RECIPIENT,
    REV_CLIENT,
    SASL_USER,
    SENDER,
    NameStatus,
)
from mailmaps.errors import LookupFailed
from mailmaps.text import is_valid_utf8, printable

log = logging.getLogger("mailmaps")

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
    if not s.encrypted or not (s.ccert_fingerprint or s.ccert_pubkey_fingerprint):
        return _DUNNO  # no client certificate
    # The certificate, then the public key fingerprint; a DUNNO goes on to the next.
    for fingerprint in (s.ccert_fingerprint, s.ccert_pubkey_fingerprint):
        status, _found = run.check_access(
            arg, fingerprint or "", s.ccert_subject or "", CCERT, acl, label
        )
        if status != _DUNNO:
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
