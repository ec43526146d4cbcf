"""AccessPolicy: restrictions, access(5) actions and the corner cases the vectors do not reach."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mailmaps.access import (
    AccessPolicy,
    Decision,
    DnsStatus,
    NameStatus,
    NoDns,
    Session,
    StaticDns,
    smtpd_dsn_fix,
)
from mailmaps.config import MainConfig
from mailmaps.errors import ConfigError
from tests.conftest import backdate, run_ours

BASE = {
    "compatibility_level": "3.6",
    "myhostname": "mx.example.com",
    "mydomain": "example.com",
    "mydestination": "$myhostname, localhost",
    "mynetworks": "127.0.0.0/8, [2001:db8:1::]/48",
    "alias_maps": "",
    "local_recipient_maps": "inline:{ alice=x, postmaster=x }",
    "relay_domains": "relay.example",
}


def policy(**settings: str) -> AccessPolicy:
    return AccessPolicy(MainConfig({**BASE, **settings}), dns=StaticDns(DNS))


DNS = {
    "good.example": {"MX": ["10 mail.good.example"], "A": ["192.0.2.10"]},
    "mail.good.example": {"A": ["192.0.2.10"]},
    "nullmx.example": {"MX": ["0 ."]},
    "backup.example": {"MX": ["10 primary.backup.example", "20 mx.example.com"]},
    "primary.backup.example": {"A": ["198.51.100.1"]},
    "mx.example.com": {"A": ["127.0.0.1"]},
}

SESSION = Session(
    client_address="192.0.2.7",
    client_name="client.example.org",
    helo="client.example.org",
    sender="sender@good.example",
    recipient="alice@mx.example.com",
)


def reply(p: AccessPolicy, **changes: object) -> str:
    from dataclasses import replace

    return p.decide(replace(SESSION, **changes)).reply  # type: ignore[arg-type]


def test_defaults_accept_local_and_defer_relaying() -> None:
    p = policy()
    assert reply(p) == "250 2.1.5 Ok"
    assert (
        reply(p, recipient="bob@far.example") == "454 4.7.1 <bob@far.example>: Relay access denied"
    )
    assert reply(p, client_address="127.0.0.1", recipient="bob@far.example") == "250 2.1.5 Ok"
    assert reply(p, recipient="ghost@mx.example.com") == (
        "550 5.1.1 <ghost@mx.example.com>: Recipient address rejected: User unknown in local "
        "recipient table"
    )
    assert reply(p, recipient="postmaster") == "250 2.1.5 Ok"
    assert reply(p, recipient="someone@relay.example") == "250 2.1.5 Ok"


def test_decision_names_the_restriction_and_table_entry() -> None:
    p = policy(
        smtpd_recipient_restrictions=(
            "check_recipient_access inline:{ {spam.example = REJECT no spam here} }, "
            "reject_unauth_destination"
        )
    )
    decision = p.decide(
        Session(client_address="127.0.0.1", sender="", recipient="x@sub.spam.example"), trace=True
    )
    assert decision.reply == (
        "554 5.7.1 <x@sub.spam.example>: Recipient address rejected: no spam here"
    )
    assert decision.action == "reject"
    assert decision.decided_by is not None
    assert decision.decided_by.startswith("check_recipient_access inline:")
    assert decision.entry is not None and decision.entry[1:] == (
        "spam.example",
        "REJECT no spam here",
    )
    assert decision.code == 554 and decision.dsn == "5.7.1"
    keys = [event.key for event in decision.trace if event.table is not None]
    assert keys[:3] == ["x@sub.spam.example", "sub.spam.example", "spam.example"]
    as_json = json.loads(decision.to_json())
    assert as_json["reply"] == decision.reply and as_json["action"] == "reject"
    assert as_json["trace"][0]["stage"] == "RCPT"


def test_restriction_classes_from_table_answers() -> None:
    p = policy(
        smtpd_restriction_classes="strict, open",
        strict="reject_unauth_destination, reject",
        open="permit",
        smtpd_relay_restrictions="",
        smtpd_recipient_restrictions=(
            "check_recipient_access inline:{ alice@mx.example.com=strict, "
            "postmaster@mx.example.com=open }, reject_unauth_destination"
        ),
    )
    assert reply(p, recipient="alice@mx.example.com") == (
        "554 5.7.1 <alice@mx.example.com>: Recipient address rejected: Access denied"
    )
    decision = p.decide(
        Session(client_address="192.0.2.7", sender="", recipient="postmaster@mx.example.com")
    )
    assert decision.action == "permit" and decision.decided_by == "permit"


def test_access_actions() -> None:
    table = (
        "inline:{ {a@x.example=DEFER come back later}, b@x.example=DEFER_IF_PERMIT, "
        "{c@x.example=452 4.2.2 mailbox full}, {d@x.example=HOLD quarantined}, "
        "d2@x.example=DISCARD, {e@x.example=REDIRECT alice@mx.example.com}, "
        "{f@x.example=PREPEND X-Tag: yes}, {g@x.example=WARN odd}, h@x.example=HANGUP, "
        "{i@x.example=FILTER smtp:[127.0.0.1]:10025}, {j@x.example=BCC archive@mx.example.com}, "
        "k@x.example=12345, {l@x.example=551 5.1.6 moved}, m@x.example=lmdb:/x }"
    )
    p = policy(
        smtpd_relay_restrictions="permit_mynetworks, reject_unauth_destination",
        smtpd_recipient_restrictions=f"check_recipient_access {table}, permit",
    )

    def decide(rcpt: str) -> Decision:
        return p.decide(
            Session(client_address="127.0.0.1", sender="s@good.example", recipient=rcpt)
        )

    assert decide("a@x.example").reply == (
        "450 4.7.1 <a@x.example>: Recipient address rejected: come back later"
    )
    assert decide("b@x.example").reply == (
        "450 4.7.1 <b@x.example>: Recipient address rejected: Service unavailable"
    )
    assert decide("c@x.example").reply == (
        "452 4.2.2 <c@x.example>: Recipient address rejected: mailbox full"
    )
    held = decide("d@x.example")
    assert held.reply == "250 2.1.5 Ok" and held.hold is not None
    assert decide("d2@x.example").action == "discard"
    assert decide("e@x.example").redirect == "alice@mx.example.com"
    assert decide("f@x.example").prepend == ("X-Tag: yes",)
    assert any("odd" in w for w in decide("g@x.example").warnings)
    hangup = decide("h@x.example")
    assert hangup.action == "hangup" and hangup.reply == "" and hangup.code is None
    assert decide("i@x.example").filter == "smtp:[127.0.0.1]:10025"
    assert decide("j@x.example").bcc == ("archive@mx.example.com",)
    assert decide("k@x.example").action == "permit"
    assert decide("l@x.example").reply == (
        "551 5.1.6 <l@x.example>: Recipient address rejected: moved"
    )
    # A table answer naming a table is refused as a configuration error.
    assert decide("m@x.example").reply == "451 4.3.5 Server configuration error"


def test_dsn_fix_recasts_address_codes() -> None:
    assert smtpd_dsn_fix("5.1.1", "Sender address") == "5.1.7"
    assert smtpd_dsn_fix("5.1.8", "Recipient address") == "5.1.2"
    assert smtpd_dsn_fix("4.1.2", "Client host") == "4.0.0"
    assert smtpd_dsn_fix("5.7.1", "Client host") == "5.7.1"


def test_client_lookup_order_ipv4_and_ipv6() -> None:
    p = policy(
        smtpd_client_restrictions=(
            "check_client_access inline:{ {192.0.2=REJECT v4 net}, {2001:db8:2=REJECT v6 net} }"
        )
    )
    assert reply(p, client_address="192.0.2.99", client_name="unknown") == (
        "554 5.7.1 <unknown[192.0.2.99]>: Client host rejected: v4 net"
    )
    decision = p.decide(
        Session(client_address="2001:db8:2::1", sender="", recipient="alice@mx.example.com"),
        trace=True,
    )
    assert decision.reply == "554 5.7.1 <unknown[2001:db8:2::1]>: Client host rejected: v6 net"
    keys = [e.key for e in decision.trace if e.table is not None]
    assert keys[-3:] == ["2001:db8:2::1", "2001:db8:2:", "2001:db8:2"]
    assert reply(p, client_address="2001:db8:1::5", recipient="bob@far.example") == (
        "250 2.1.5 Ok"
    )  # in mynetworks


def test_unknown_client_name_statuses() -> None:
    p = policy(smtpd_client_restrictions="reject_unknown_client_hostname")
    assert reply(p, client_name="unknown", client_name_status=NameStatus.TEMP) == (
        "450 4.7.25 Client host rejected: cannot find your hostname, [192.0.2.7]"
    )
    assert reply(p, client_name="unknown") == (
        "450 4.7.25 Client host rejected: cannot find your hostname, [192.0.2.7]"
    )
    p = policy(
        smtpd_client_restrictions="reject_unknown_client_hostname", unknown_client_reject_code="550"
    )
    assert reply(p, client_name="unknown").startswith("550 5.7.25")


def test_dns_restrictions_use_the_given_resolver() -> None:
    p = policy(
        smtpd_sender_restrictions="reject_unknown_sender_domain",
        smtpd_recipient_restrictions="reject_unknown_recipient_domain, permit",
        smtpd_relay_restrictions="reject_unauth_destination",
    )
    assert reply(p) == "250 2.1.5 Ok"
    assert reply(p, sender="x@nowhere.example") == (
        "450 4.1.8 <x@nowhere.example>: Sender address rejected: Domain not found"
    )
    assert reply(p, sender="x@nullmx.example") == (
        "550 5.7.27 <x@nullmx.example>: Sender address rejected: Domain nullmx.example does not "
        "accept mail (nullMX)"
    )
    no_dns = AccessPolicy(
        MainConfig({**BASE, "smtpd_sender_restrictions": "reject_unknown_sender_domain"}),
        dns=NoDns(),
    )
    assert NoDns().query("x", ["A"]).status is DnsStatus.RETRY
    # A temporary DNS failure postpones the answer (defer_if_permit) until nothing rejects.
    assert reply(no_dns, sender="x@good.example") == (
        "450 4.1.8 <x@good.example>: Sender address rejected: Domain not found"
    )


def test_permit_mx_backup() -> None:
    p = policy(smtpd_relay_restrictions="permit_mx_backup, reject_unauth_destination")
    assert reply(p, recipient="x@backup.example") == "250 2.1.5 Ok"
    assert reply(p, recipient="x@good.example") == (
        "554 5.7.1 <x@good.example>: Relay access denied"
    )


def test_helo_checks() -> None:
    p = policy(
        smtpd_helo_required="yes",
        smtpd_helo_restrictions="reject_invalid_helo_hostname, reject_non_fqdn_helo_hostname",
    )
    assert reply(p, helo="bad_name!") == (
        "501 5.5.2 <bad_name!>: Helo command rejected: Invalid name"
    )
    assert reply(p, helo="localhost") == (
        "504 5.5.2 <localhost>: Helo command rejected: need fully-qualified hostname"
    )
    assert reply(p, helo="[192.0.2.300]") == (
        "501 5.5.2 <[192.0.2.300]>: Helo command rejected: invalid ip address"
    )
    assert reply(p, helo=None) == "503 5.5.1 Error: send HELO/EHLO first"
    # smtpd stores the name neutered: with delayed rejects, the reply shows it that way.
    assert reply(p, helo="two  words") == (
        "501 5.5.2 <two?words>: Helo command rejected: Invalid name"
    )
    p = policy(smtpd_delay_reject="no", smtpd_helo_restrictions="reject_invalid_helo_hostname")
    decision = p.decide(
        Session(helo="two words", client_address="192.0.2.7", sender="", recipient="alice")
    )
    assert decision.stage == "HELO"
    assert decision.reply == "501 5.5.2 <two words>: Helo command rejected: Invalid name"


def test_bad_input_gets_smtpd_answers_not_exceptions() -> None:
    p = policy()
    assert reply(p, recipient="user@[300.1.1.1]") == "501 5.1.3 Bad recipient address syntax"
    assert reply(p, recipient="") == "501 5.1.3 Bad recipient address syntax"
    assert reply(p, sender="a@[1.2.3.4.5]") == "501 5.1.7 Bad sender address syntax"
    assert reply(p, sender=None) == "503 5.5.1 Error: need MAIL command"
    for evil in ("a\x00b@mx.example.com", "a\r\nb@mx.example.com", "x" * 5000 + "@far.example"):
        assert reply(p, recipient=evil)[:1] in "245"
    assert reply(p, helo="h" * 300 + ".example")[:3] == "250"
    assert reply(p, client_address="not an address")[:1] in "245"


def test_configuration_errors() -> None:
    with pytest.raises(ConfigError, match="specify at least one working instance"):
        policy(smtpd_relay_restrictions="permit", smtpd_recipient_restrictions="")
    with pytest.raises(ConfigError, match="needs a definition"):
        policy(smtpd_restriction_classes="missing")
    # Errors at decision time are Postfix's "server configuration error".
    p = policy(smtpd_recipient_restrictions="no_such_restriction, reject_unauth_destination")
    assert reply(p) == "451 4.3.5 Server configuration error"
    # A policy server that cannot be reached answers with the default action.
    p = policy(
        smtpd_recipient_restrictions="check_policy_service unix:private/policy, reject",
        smtpd_policy_service_try_limit="1",
    )
    assert reply(p) == (
        "451 4.3.5 <alice@mx.example.com>: Recipient address rejected: Server configuration problem"
    )
    with pytest.raises(ConfigError, match="inet:host:port or unix:path"):
        policy(smtpd_recipient_restrictions="check_policy_service tcp:x:1, reject")
    p = policy(
        smtpd_client_restrictions=(
            "check_reverse_client_hostname_access inline:{ client.example.org=OK }"
        )
    )
    assert reply(p) == "451 4.3.5 Server configuration error"


def test_warn_if_reject_logs_instead() -> None:
    p = policy(smtpd_recipient_restrictions="warn_if_reject reject, reject_unauth_destination")
    decision = p.decide(SESSION)
    assert decision.reply == "250 2.1.5 Ok"
    assert decision.warnings and "reject_warning" in decision.warnings[0]


def test_soft_bounce_turns_5xx_into_4xx() -> None:
    p = policy(soft_bounce="yes", smtpd_recipient_restrictions="reject")
    assert reply(p) == "454 4.7.1 <alice@mx.example.com>: Recipient address rejected: Access denied"


def test_cli_check_access(tmp_path: Path) -> None:
    (tmp_path / "main.cf").write_text(
        "\n".join(f"{k} = {v}" for k, v in BASE.items())
        + "\nsmtpd_recipient_restrictions = reject_unauth_destination\n"
    )
    args = ["check-access", "-c", str(tmp_path), "--client", "192.0.2.1,mail.example.org"]
    result = run_ours("mailmaps", [*args, "--recipient", "<bob@far.example>", "--json"])
    assert result.status == 0, result.err
    data = json.loads(result.out)
    assert data["reply"] == "454 4.7.1 <bob@far.example>: Relay access denied"
    assert data["action"] == "defer" and data["decided_by"] == "defer_unauth_destination"
    assert [e["restriction"] for e in data["trace"]][:2] == [
        "permit_mynetworks",
        "permit_sasl_authenticated",
    ]
    result = run_ours("mailmaps", [*args, "--recipient", "alice@mx.example.com"])
    assert result.status == 0
    assert result.out.decode().splitlines()[-1] == "RCPT: 250 2.1.5 Ok"
    result = run_ours(
        "mailmaps", ["check-access", "-c", str(tmp_path / "nope"), *args[3:], "--recipient", "x"]
    )
    assert result.status == 1 and "fatal:" in result.err and "Traceback" not in result.err


@pytest.mark.parametrize("style", ["host", "subnet", "class"])
def test_mynetworks_default_matches_postconf(style: str, tmp_path: Path) -> None:
    import subprocess

    from mailmaps.matchlist import mynetworks_default

    (tmp_path / "main.cf").write_text(f"mynetworks_style = {style}\n")
    (tmp_path / "master.cf").write_text("")
    backdate(tmp_path / "main.cf", tmp_path / "master.cf")
    real = subprocess.run(
        ["/usr/sbin/postconf", "-c", str(tmp_path), "-h", "mynetworks"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert set(mynetworks_default(style).split()) == set(real)


def test_ccert_access_checks_both_fingerprints() -> None:
    p = policy(
        smtpd_relay_restrictions=(
            "check_ccert_access inline:{ AA:BB=DUNNO, CC:DD=OK, {EE:FF=REJECT bad cert} }, "
            "reject_unauth_destination"
        )
    )
    remote = {"recipient": "bob@far.example", "encrypted": True}
    assert reply(p, **remote, ccert_fingerprint="AA:BB", ccert_pubkey_fingerprint="CC:DD") == (
        "250 2.1.5 Ok"
    )
    assert reply(p, **remote, ccert_fingerprint="EE:FF", ccert_subject="client.example") == (
        "554 5.7.1 <client.example>: Client certificate rejected: bad cert"
    )
    assert reply(p, recipient="bob@far.example", ccert_fingerprint="CC:DD").startswith("554")


def test_sharing_a_resolver_keeps_its_trace_stages() -> None:
    from mailmaps.resolver import Resolver

    config = MainConfig(
        {
            **BASE,
            "alias_maps": "inline:{ webmaster=root }",
            "local_recipient_maps": "$alias_maps",
            "virtual_alias_maps": "inline:{ a@x.example=b@y.example }",
        }
    )
    with Resolver(config) as resolver:

        def stages() -> set[tuple[str, str]]:
            trace = resolver.resolve("webmaster", trace=True).trace
            return {(e.stage, e.table) for e in trace if e.table is not None}

        before = stages()
        with AccessPolicy(config, resolver=resolver) as policy:
            assert policy.maps["virtual_alias_maps"] is resolver.virtual_alias
            assert reply(policy, recipient="webmaster@mx.example.com") == "250 2.1.5 Ok"
            assert reply(policy, recipient="ghost@mx.example.com").startswith("550 5.1.1")
        assert stages() == before
        assert {stage for stage, _table in before} == {"virtual_alias", "local"}


def test_decide_many_answers_as_decide_with_one_lock_per_batch(tmp_path: Path) -> None:
    from dataclasses import replace

    from mailmaps.maps import create_table
    from tests.backends.test_lmdb import exclusive_lock_is_free

    with create_table(f"lmdb:{tmp_path}/clients") as build:
        build.add("192.0.2", "REJECT listed")
        build.add("198.51.100.7", "OK")
    (tmp_path / "helo.pcre").write_text("/^bad[0-9]*\\.example$/ REJECT bad helo $0\n")
    p = policy(
        smtpd_client_restrictions=f"check_client_access lmdb:{tmp_path}/clients",
        smtpd_helo_restrictions=f"check_helo_access pcre:{tmp_path}/helo.pcre",
    )
    sessions = [
        replace(SESSION, client_address=f"{net}.{i}", recipient=rcpt, helo=f"bad{i}.example")
        for i in range(1, 200)
        for net in ("192.0.2", "198.51.100")
        for rcpt in ("alice@mx.example.com", "bob@far.example", "x@relay.example")
    ]
    sessions[1::5] = [replace(s, helo="good.example") for s in sessions[1::5]]
    sessions[2::7] = [replace(s, helo=" bad1.example  x ") for s in sessions[2::7]]
    assert len(sessions) > 256  # more than one batch
    one_by_one = [p.decide(s) for s in sessions]
    assert list(p.decide_many(sessions)) == one_by_one
    assert {d.reply[:3] for d in one_by_one} >= {"554", "250", "454"}
    with p.resolver.hold():
        assert not exclusive_lock_is_free(tmp_path / "clients.lmdb")
    assert exclusive_lock_is_free(tmp_path / "clients.lmdb")


def test_lists_named_by_table_answers_do_not_pile_up() -> None:
    """A table answer naming restrictions is parsed into a new list each time: its steps are
    remembered by its text, not by the list object (which kept every such list alive)."""
    p = policy(
        smtpd_recipient_restrictions="check_recipient_access"
        " inline:{ {alice@mx.example.com = permit_mynetworks, reject} },"
        " reject_unauth_destination",
    )
    for _ in range(50):
        assert p.decide(SESSION).reply.startswith("554 5.7.1 <alice@mx.example.com>")
    assert len(p._compiled_lists) < 10
