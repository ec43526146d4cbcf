"""The C path for access decisions (``_access.c``) against the Python path it stands in for.

``AccessPolicy.decide()`` decides in C when the configuration and the session allow it, and a
policy made with ``compiled=False`` (sharing the same open tables) always in Python, the path
the differential tests hold against real Postfix.  Each generated configuration uses only the
restrictions the C path evaluates, with settings that change its answers (reply codes, parent
domain style, soft_bounce, untrusted routing, recipient validation tables, the order of the
relay and recipient lists), and access tables whose answers it takes (OK, RELAY, numbers, DUNNO,
REJECT and DEFER with and without text and DSN, 4NN/5NN text) or must hand back (restriction
classes, HOLD, DISCARD, FILTER, PREPEND, WARN, DSNs that smtpd rewrites, bad reply codes).  The
sessions mix names, addresses, HELO names, senders and recipients of every kind.  Every
decision must be equal, field for field.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from mailmaps._speedups import decide_plain as _decide_plain
from mailmaps.access import AccessPolicy, Session
from mailmaps.config import MainConfig
from mailmaps.maps import create_table

ANSWERS = [
    "OK", "ok", "RELAY", "12345", "DUNNO", "REJECT", "reject", "REJECT go away",
    "REJECT 5.7.9 listed here", "DEFER", "DEFER try later", "DEFER 4.3.2 later",
    "554 no thanks", "450 slow down", "550 5.2.1 mailbox disabled", "421 4.4.2 closing",
    "REJECT 5.1.1 unknown", "REJECT 5.1.8 bad sender", "250 not a reject", "654 bad code",
    "strict", "HOLD", "DISCARD", "FILTER smtp:[127.0.0.1]:10025", "PREPEND X-Tag: yes",
    "WARN look", "INFO note", "DEFER_IF_PERMIT maybe", "554  two  spaces",
    "REJECT " + "long " * 150, "DUNNO", "dunno", "DUNNO", "REJECT 5.7.1x not a code",
    "554 4.7.1234 too long a code", "REJECT 5.7.1",
]  # fmt: skip
CLIENTS = [
    ("10.1.2.3", "unknown"), ("10.1.9.9", "mail.good.example"), ("10.2.0.1", "host.bad.example"),
    ("192.0.2.9", "unknown"), ("198.51.100.7", "dyn.isp.example"), ("2001:db8::1", "unknown"),
    ("2001:db8:1::5", "v6.good.example"), ("127.0.0.1", "localhost"), ("10.1.2.4", "1.2.3.4"),
    ("203.0.113.5", "x"),
]  # fmt: skip
HELOS = [
    "mail.good.example", "host.bad.example", "mx1.spam.example", "localhost", "[10.1.2.3]",
    "1.2.3.4", "two words", "bad<name>", "a.b.c.d.e.example", "spam.example.", None,
]  # fmt: skip
SENDERS = [
    "", "alice@mx.example.com", "bob@good.example", "spam@bad.example", "x@sub.bad.example",
    "user+tag@good.example", "nobody", "a%b@relay.example", "user@[10.1.2.3]", "a b@good.example",
    "Mixed@Good.Example", "bad@", "x@bad..example",
]  # fmt: skip
RECIPIENTS = [
    "alice@mx.example.com", "alice+tag@mx.example.com", "ghost@mx.example.com", "postmaster",
    "postmaster@mx.example.com", "MAILER-DAEMON@mx.example.com", "info@valias.example",
    "joe@vmail.example", "jane@vmail.example", "user@relay.example", "stranger@relay.example",
    "bob@far.example", "abuse@bad.example", "spam@bad.example", "a%b@relay.example",
    "x@sub.relay.example", "user@[10.1.2.3]", "a b@far.example", "Alice@MX.example.com",
    "user@1.2.3", "r@retry.example", "e@error.example", "double-bounce@mx.example.com",
]  # fmt: skip


#: The keys each access table draws from.
TABLE_KEYS = {
    "client": [
        "10.1.2.3", "10.1.2", "10.1", "10", "unknown", "good.example", ".bad.example",
        "bad.example", "2001:db8", "2001:db8:1::5", "isp.example", "localhost",
    ],
    "helo": [
        "mail.good.example", "bad.example", ".spam.example", "spam.example", "localhost",
        "example", "[10.1.2.3]",
    ],
    "sender": [
        "bad.example", "spam@", "alice@mx.example.com", "good.example", "<>", "null-sender",
        "example", "user@good.example", "relay.example",
    ],
    "recipient": [
        "alice@mx.example.com", "alice@", "bad.example", "abuse@", "far.example",
        "valias.example", "relay.example", "mx.example.com", "postmaster@",
    ],
}  # fmt: skip


def _table(etc: Path, name: str, rng: random.Random, keys: list[str]) -> str:
    chosen = rng.sample(keys, rng.randint(1, len(keys)))
    with create_table(f"lmdb:{etc / name}") as build:
        for key in chosen:
            build.add(key, rng.choice(ANSWERS))
    return f"lmdb:{etc / name}"


def generate(rng: random.Random, etc: Path) -> dict[str, str]:
    """main.cf settings for one configuration, with its tables written into ``etc``."""
    settings = {
        "myhostname": "mx.example.com",
        "mydomain": "example.com",
        "mydestination": "$myhostname, localhost",
        "mynetworks": rng.choice(["127.0.0.0/8", "127.0.0.0/8 10.1.0.0/16", "192.0.2.0/24"]),
        "relay_domains": rng.choice(["relay.example", "relay.example, .relay.example", ""]),
        "virtual_alias_domains": "valias.example",
        "virtual_alias_maps": "inline:{ info@valias.example=alice@mx.example.com }",
        "virtual_mailbox_domains": "vmail.example",
        "virtual_mailbox_maps": "inline:{ joe@vmail.example=joe/ }",
        "relay_recipient_maps": rng.choice(["", "inline:{ user@relay.example=x }"]),
        "local_recipient_maps": rng.choice(["", "inline:{ alice=x }"]),
        "alias_maps": "",
        "transport_maps": "inline:{ retry.example=retry:, error.example=error:gone }",
        "recipient_delimiter": rng.choice(["", "+"]),
        "smtpd_reject_unlisted_recipient": rng.choice(["yes", "no"]),
        "smtpd_restriction_classes": "strict",
        "strict": "reject",
        "access_map_reject_code": rng.choice(["554", "550", "999"]),
        "access_map_defer_code": rng.choice(["450", "451"]),
        "relay_domains_reject_code": rng.choice(["554", "550"]),
        "reject_code": rng.choice(["554", "550"]),
        "soft_bounce": rng.choice(["no", "no", "yes"]),
        "allow_untrusted_routing": rng.choice(["no", "yes"]),
        "show_user_unknown_table_name": rng.choice(["yes", "no"]),
        "smtpd_relay_before_recipient_restrictions": rng.choice(["yes", "no"]),
        "smtpd_null_access_lookup_key": rng.choice(["<>", "null-sender"]),
        "parent_domain_matches_subdomains": rng.choice(["", "smtpd_access_maps"]),
        "smtpd_sasl_auth_enable": rng.choice(["yes", "no"]),
    }
    if rng.random() < 0.3:  # routes then depend on the sender too
        settings["sender_dependent_relayhost_maps"] = "inline:{ @good.example=[127.0.0.1]:2525 }"
        settings["sender_dependent_default_transport_maps"] = "inline:{ @bad.example=error:no }"
    client, helo, sender, recipient = (
        _table(etc, name, rng, keys) for name, keys in TABLE_KEYS.items()
    )
    pools = {
        "client": ["permit_mynetworks", f"check_client_access {client}"],
        "helo": [f"check_helo_access {helo}", "permit_mynetworks"],
        "sender": [f"check_sender_access {sender}", "permit_mynetworks"],
        "recipient": [
            "permit_mynetworks",
            f"check_recipient_access {recipient}",
            "reject_unlisted_recipient",
            "check_recipient_maps",
            "permit_auth_destination",
            "defer_unauth_destination",
        ],
        "relay": [
            "permit_mynetworks",
            "permit_sasl_authenticated",
            "permit_auth_destination",
            f"{recipient}",
        ],
    }
    for stage, items in pools.items():
        chosen = rng.sample(items, rng.randint(0, len(items)))
        if stage in ("recipient", "relay"):
            chosen.append("reject_unauth_destination")
        if rng.random() < 0.3:  # last: Postfix warns about restrictions after these
            chosen.append(rng.choice(["permit", "reject", "defer"]))
        settings[f"smtpd_{stage}_restrictions"] = ", ".join(chosen)
    return settings


def sessions(rng: random.Random, count: int) -> Iterator[Session]:
    for _ in range(count):
        address, name = rng.choice(CLIENTS)
        yield Session(
            client_address=address,
            client_name=name,
            helo=rng.choice(HELOS),
            sender=rng.choice(SENDERS),
            recipient=rng.choice(RECIPIENTS),
            sasl_username=rng.choice([None, None, "", "alice"]),
        )


def test_same_decisions(tmp_path: Path) -> None:
    """C and Python decide every session of 80 generated configurations alike."""
    answered = total = 0
    for seed in range(80):
        rng = random.Random(seed)
        etc = tmp_path / str(seed)
        etc.mkdir()
        config = MainConfig(generate(rng, etc))
        with AccessPolicy(config) as fast:
            assert fast._plain is not None, f"seed {seed}: the C path refused the configuration"
            slow = AccessPolicy(config, resolver=fast.resolver, compiled=False)
            assert slow._plain is None
            for session in sessions(rng, 150):
                total += 1
                if _decide_plain(fast._plain, session) is not NotImplemented:
                    answered += 1
                assert fast.decide(session) == slow.decide(session), f"seed {seed}: {session}"
    # Most sessions need nothing unusual: the C path must answer them, not hand them all back.
    assert answered > total // 3, (answered, total)


def test_unsupported_configurations(tmp_path: Path) -> None:
    """Configurations the C path does not evaluate take the Python path for every session."""
    base = {"mydestination": "localhost", "smtpd_relay_restrictions": "reject_unauth_destination"}
    for extra in (
        {"smtpd_delay_reject": "no"},
        {"smtpd_reject_unlisted_sender": "yes"},
        {"smtpd_client_restrictions": "reject_unknown_client_hostname"},
        {"smtpd_helo_restrictions": "warn_if_reject, reject"},
        {"smtpd_client_restrictions": "permit, reject"},  # Postfix warns: reject is ignored
        {"smtpd_recipient_restrictions": "check_policy_service inet:127.0.0.1:9"},
    ):
        with AccessPolicy(MainConfig({**base, **extra})) as policy:
            assert policy._plain is None, extra
    with AccessPolicy(MainConfig(base)) as policy:
        assert policy._plain is not None


def test_bad_input_same_decisions(tmp_path: Path) -> None:
    """NUL, CR/LF, non-ASCII and over-long fields: the C path hands them back or answers as
    the Python path does, and never crashes."""
    rng = random.Random(7)
    config = MainConfig(generate(rng, tmp_path))
    odd = [
        "a\x00b@mx.example.com", "x\r\nRCPT TO:<y>@far.example", "é@mx.example.com",
        "user@ex\u00e4mple.com", "u" * 2000 + "@mx.example.com", "@", "user@", "\t@x",
    ]  # fmt: skip
    helos = ["a\x00b", "mx\r\nx", "h\u00e9lo.example", "x" * 600, "", " ", "a\tb"]
    clients = [("10.1.2.3", "bad\x00name"), ("::ffff:10.1.2.3", "unknown"), ("", "")]
    with AccessPolicy(config) as fast:
        slow = AccessPolicy(config, resolver=fast.resolver, compiled=False)
        for _ in range(400):
            address, name = rng.choice([*clients, *CLIENTS])
            session = Session(
                client_address=address,
                client_name=name,
                helo=rng.choice([*helos, *HELOS]),
                sender=rng.choice([*odd, *SENDERS]),
                recipient=rng.choice([*odd, *RECIPIENTS]),
            )
            assert fast.decide(session) == slow.decide(session), session


def test_sender_dependent_routes() -> None:
    """With sender-dependent routing a recipient's route depends on the sender: the C path
    must ask for it with the sender each time (here the sender's error transport makes
    reject_unlisted_recipient refuse a relayed recipient)."""
    config = MainConfig(
        {
            "compatibility_level": "3.6",
            "myhostname": "mx.example.com",
            "mydestination": "$myhostname",
            "alias_maps": "",
            "local_recipient_maps": "",
            "mynetworks": "127.0.0.0/8",
            "sender_dependent_default_transport_maps": "inline:{ @bad.example=error:gone }",
        }
    )
    with AccessPolicy(config) as fast:
        slow = AccessPolicy(config, resolver=fast.resolver, compiled=False)
        for sender in ("spam@bad.example", "x@good.example"):
            session = Session(
                client_address="127.0.0.1",
                helo="x.example",
                sender=sender,
                recipient="b@far.example",
            )
            assert fast.decide(session) == slow.decide(session)
        assert slow.decide(session).reply == "250 2.1.5 Ok"
        refused = replace(session, sender="spam@bad.example")
        assert slow.decide(refused).reply.startswith("550 5.1.1 <b@far.example>")


def test_threads(tmp_path: Path) -> None:
    """Threads sharing a policy get the decisions one thread gets, from either path."""
    rng = random.Random(11)
    config = MainConfig(generate(rng, tmp_path))
    batch = list(sessions(rng, 300))
    with AccessPolicy(config) as policy:
        expected = [policy.decide(session) for session in batch]
        with ThreadPoolExecutor(4) as pool:
            runs = list(pool.map(lambda _: list(policy.decide_many(batch)), range(8)))
    assert all(run == expected for run in runs)
