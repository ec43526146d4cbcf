"""Differential tests of access decisions against a real Postfix smtpd, driven through XCLIENT.

Each seed generates a configuration (restriction lists with access tables of every kind,
restriction classes, mynetworks, relay and virtual domains, recipient validation, the
``smtpd_delay_reject``/``smtpd_helo_required``/``reject_unlisted`` switches) and a set of
sessions (client address and name, HELO, sender, recipient).  A private real Postfix runs the
configuration with smtpd on a loopback port; each session is played through XCLIENT, EHLO, MAIL
FROM and RCPT TO, and the first reply that refuses (or the RCPT TO reply) must equal
``AccessPolicy.decide()``'s, character for character.  No restriction here needs DNS.
"""

from __future__ import annotations

import hashlib
import os
import random
import socketserver
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest

from mailmaps._speedups import decide_plain as _decide_plain
from mailmaps.access import AccessPolicy, NameStatus, Session
from mailmaps.rfc822 import quote_local
from mailmaps.testing.postfix import PostfixInstance

pytestmark = pytest.mark.interop

SEEDS = int(os.environ.get("MAILMAPS_ACCESS_SEEDS", "12"))
SESSIONS = int(os.environ.get("MAILMAPS_ACCESS_SESSIONS", "40"))

CLIENT_ADDRS = ["192.0.2.9", "192.0.2.70", "198.51.100.5", "198.51.100.77", "203.0.113.8"]
CLIENT_NAMES = ["mail.good.example", "host.bad.example", "dyn-1.isp.example", "[UNAVAILABLE]"]
HELOS = [
    "mail.good.example",
    "host.bad.example",
    "localhost",
    "bad_name!",
    "[192.0.2.9]",
    "[300.1.1.1]",
    "two words",
    "spammer.example.",
    "a" * 70 + "." + "b" * 70 + "." + "c" * 70 + "." + "d" * 70 + ".example",
    "mail.good.example..",
]
SENDERS = [
    "",
    "alice@mx.example.com",
    "bob@good.example",
    "spam@bad.example",
    "user@sub.bad.example",
    "nobody",
    "x@relay.example",
    "ghost@mx.example.com",
    "bad@[1.2.3.4.5]",
    "a b@good.example",
]
RECIPIENTS = [
    "alice@mx.example.com",
    "alice+tag@mx.example.com",
    "ghost@mx.example.com",
    "postmaster",
    "postmaster@mx.example.com",
    "info@valias.example",
    "nobody@valias.example",
    "user@relay.example",
    "stranger@relay.example",
    "bob@far.example",
    "spam@bad.example",
    "abuse@bad.example",
    "double-bounce@mx.example.com",
    "joe@vmail.example",
    "jane@vmail.example",
    "a b@mx.example.com",
    "a b@far.example",
    "user@[300.1.1.1]",
    "user@1.2.3",
    "user@[192.0.2.1]",
    "Alice@MX.Example.COM",
]

#: access(5) answers the tables draw from.
ACTIONS = [
    "OK",
    "REJECT",
    "REJECT go away",
    "DUNNO",
    "554 no thanks",
    "450 4.7.1 later",
    "551 5.1.6 User has moved",
    "DEFER_IF_PERMIT",
    "DEFER_IF_REJECT",
    "defer_if_permit try again",
    "WARN suspicious",
    "HOLD",
    "DISCARD",
    "REDIRECT alice@mx.example.com",
    "permit_mynetworks, reject",
    "reject_unauth_destination",
    "strict",
    "lenient",
    "12345",
    "RELAY",
]


#: What the policy server answers, chosen by a hash of the request's attributes (the ones
#: both sides know): any attribute mailmaps sends differently changes the answer.
POLICY_ACTIONS = [
    "DUNNO",
    "DUNNO",
    "OK",
    "REJECT policy says no",
    "DEFER_IF_PERMIT policy wants a retry",
    "451 4.7.1 policy busy",
    "PREPEND X-Policy: seen",
    "strict",
]
POLICY_HASHED = [
    "request",
    "protocol_state",
    "protocol_name",
    "client_address",
    "client_name",
    "reverse_client_name",
    "helo_name",
    "sender",
    "recipient",
    "recipient_count",
    "etrn_domain",
    "sasl_method",
    "sasl_username",
    "sasl_sender",
    "ccert_fingerprint",
    "policy_context",
]


class PolicyHandler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        attributes: dict[str, str] = {}
        for raw in self.rfile:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if line:
                name, _, value = line.partition("=")
                attributes[name] = value
                continue
            if attributes.get("protocol_state") == "XCLIENT":
                # smtpd re-checks the client after XCLIENT with the command still "XCLIENT";
                # in a session without XCLIENT (what mailmaps models) it is "CONNECT".
                attributes["protocol_state"] = "CONNECT"
            digest = hashlib.sha256(
                "\n".join(f"{k}={attributes.get(k)}" for k in POLICY_HASHED).encode()
            ).digest()
            action = POLICY_ACTIONS[digest[0] % len(POLICY_ACTIONS)]
            self.wfile.write(f"action={action}\n\n".encode())
            self.wfile.flush()
            attributes = {}


class PolicyServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@dataclass
class Scenario:
    settings: dict[str, str] = field(default_factory=dict)
    tables: dict[str, str] = field(default_factory=dict)  # lmdb source files
    files: dict[str, str] = field(default_factory=dict)  # other files (pcre, cidr)
    sessions: list[Session] = field(default_factory=list)


def _table(rng: random.Random, keys: list[str]) -> str:
    lines = [f"{key} {rng.choice(ACTIONS)}" for key in rng.sample(keys, rng.randint(2, len(keys)))]
    return "\n".join(lines) + "\n"


#: The restrictions the C path evaluates (``_access.c``): ``plain`` scenarios use only these.
PLAIN = {
    "permit",
    "reject",
    "permit_mynetworks",
    "reject_unlisted_recipient",
    "reject_unauth_destination",
    "permit_auth_destination",
    "defer_unauth_destination",
    "check_client_access",
    "check_helo_access",
    "check_sender_access",
    "check_recipient_access",
}


def generate(rng: random.Random, policy_port: int = 9, *, plain: bool = False) -> Scenario:
    """A configuration and its sessions; ``plain``: one that AccessPolicy decides in C."""
    s = Scenario()
    t = "lmdb:$config_directory"
    s.settings.update(
        {
            "mydestination": "$myhostname, localhost",
            "mynetworks": rng.choice(
                ["127.0.0.0/8 192.0.2.0/26", "127.0.0.0/8", "127.0.0.0/8 198.51.100.0/24"]
            ),
            "relay_domains": rng.choice(["relay.example", "relay.example, .relay.example", ""]),
            "virtual_alias_domains": "valias.example",
            "virtual_alias_maps": f"{t}/virtual",
            "virtual_mailbox_domains": "vmail.example",
            "virtual_mailbox_maps": f"{t}/vmailbox",
            "relay_recipient_maps": rng.choice(["", f"{t}/relay_recipients"]),
            "local_recipient_maps": rng.choice(["", f"{t}/local_recipients"]),
            "recipient_delimiter": "+",
            "smtpd_delay_reject": "yes" if plain else rng.choice(["yes", "yes", "no"]),
            "smtpd_helo_required": rng.choice(["yes", "no"]),
            "smtpd_reject_unlisted_sender": "no" if plain else rng.choice(["yes", "no"]),
            "smtpd_reject_unlisted_recipient": rng.choice(["yes", "yes", "no"]),
            "smtpd_restriction_classes": "strict, lenient",
            "strict": "reject_unlisted_recipient, reject",
            "lenient": "permit",
            "access_map_reject_code": rng.choice(["554", "550"]),
            "parent_domain_matches_subdomains": rng.choice(
                ["", "debug_peer_list,smtpd_access_maps,relay_domains,mynetworks"]
            ),
            "smtpd_authorized_xclient_hosts": "127.0.0.1",
            "smtpd_peername_lookup": "no",
            "smtpd_error_sleep_time": "0",
            "smtpd_soft_error_limit": "1000",
            "smtpd_hard_error_limit": "1000",
        }
    )
    s.tables["virtual"] = "info@valias.example alice@mx.example.com\n"
    s.tables["vmailbox"] = "joe@vmail.example vmail/joe/\n"
    s.tables["relay_recipients"] = "user@relay.example x\n@sub.relay.example x\n"
    s.tables["local_recipients"] = "alice x\npostmaster x\n"
    s.tables["client_access"] = _table(
        rng,
        [
            "192.0.2.9",
            "192.0.2",
            "198.51.100",
            "203.0.113.8",
            "good.example",
            "bad.example",
            "mail.good.example",
            "isp.example",
        ],
    )
    s.tables["helo_access"] = _table(
        rng, ["mail.good.example", "bad.example", "localhost", "example", "spammer.example"]
    )
    s.tables["sender_access"] = _table(
        rng,
        [
            "bad.example",
            "spam@",
            "alice@mx.example.com",
            "good.example",
            "<>",
            "example",
            "user@sub.bad.example",
            "nobody@mx.example.com",
        ],
    )
    s.tables["recipient_access"] = _table(
        rng,
        [
            "alice@mx.example.com",
            "alice@",
            "bad.example",
            "abuse@",
            "far.example",
            "valias.example",
            "postmaster@",
            "relay.example",
        ],
    )
    s.files["helo.pcre"] = "/^bad_/ REJECT invalid host\n/\\.example$/ DUNNO\n"
    s.files["clients.cidr"] = "198.51.100.0/25 REJECT cidr says no\n192.0.2.64/26 OK\n"
    checks = {
        "client": [
            "permit_mynetworks",
            f"check_client_access {t}/client_access",
            "check_client_access cidr:$config_directory/clients.cidr",
            "reject_unknown_client_hostname",
            "warn_if_reject reject_unknown_reverse_client_hostname",
        ],
        "helo": [
            f"check_helo_access {t}/helo_access",
            "check_helo_access pcre:$config_directory/helo.pcre",
            "reject_invalid_helo_hostname",
            "reject_non_fqdn_helo_hostname",
            "permit_mynetworks",
        ],
        "sender": [
            f"check_sender_access {t}/sender_access",
            "reject_non_fqdn_sender",
            "reject_unlisted_sender",
            "permit_mynetworks",
        ],
        "recipient": [
            "permit_mynetworks",
            f"check_recipient_access {t}/recipient_access",
            "reject_non_fqdn_recipient",
            "reject_unlisted_recipient",
            "reject_unauth_destination",
            "permit_auth_destination",
            "reject_multi_recipient_bounce",
            "defer_unauth_destination",
        ],
    }
    relay = rng.choice(
        [
            None,
            "permit_mynetworks, reject_unauth_destination",
            "",
            "permit_auth_destination, reject",
        ]
    )
    if relay is not None:
        s.settings["smtpd_relay_restrictions"] = relay
    policy = f"check_policy_service inet:127.0.0.1:{policy_port}"
    for stage, items in checks.items():
        if plain:
            items = [item for item in items if item.split()[0] in PLAIN]
        chosen = rng.sample(items, rng.randint(0, len(items)))
        if rng.random() < 0.25 and not plain:
            chosen.insert(rng.randint(0, len(chosen)), policy)
        if stage == "recipient" and (relay == "" or rng.random() < 0.7):
            # smtpd refuses to start unless one list rejects relaying by default.
            chosen.append("reject_unauth_destination")
        if rng.random() < 0.15:
            chosen.append(
                rng.choice(["permit", "reject"] if plain else ["permit", "reject", "lenient"])
            )
        s.settings[f"smtpd_{stage}_restrictions"] = ", ".join(chosen)
    if s.settings["smtpd_delay_reject"] == "no":
        # XCLIENT must not be refused: the real peer 127.0.0.1 passes the client checks.
        client = s.settings["smtpd_client_restrictions"]
        s.settings["smtpd_client_restrictions"] = (
            f"check_client_access inline:{{ 127.0.0.1=OK }}, {client}"
        )
    for _ in range(SESSIONS):
        name = rng.choice(CLIENT_NAMES)
        s.sessions.append(
            Session(
                client_address=rng.choice(CLIENT_ADDRS),
                client_name="unknown" if name == "[UNAVAILABLE]" else name,
                client_name_status=NameStatus.PERM if name == "[UNAVAILABLE]" else None,
                helo=rng.choice([*HELOS, None]) if rng.random() < 0.9 else None,
                sender=rng.choice(SENDERS),
                recipient=rng.choice(RECIPIENTS),
            )
        )
    return s


def converse(postfix: PostfixInstance, session: Session) -> str:
    """Play ``session`` through XCLIENT and return the first refusal, or the RCPT TO reply."""
    name = "[UNAVAILABLE]" if session.client_name == "unknown" else session.client_name
    commands = [f"XCLIENT ADDR={session.client_address} NAME={name}"]
    if session.helo is not None:
        commands.append(f"EHLO {session.helo}")
    sender = quote_local(session.sender or "")
    recipient = quote_local(session.recipient or "")
    commands += [f"MAIL FROM:<{sender}>", f"RCPT TO:<{recipient}>"]
    replies = postfix.converse(commands)
    # replies[0] is the greeting of the real connection; the rest answer the commands.
    for command, reply in zip(commands, replies[1:], strict=False):
        last = reply.splitlines()[-1] if reply else ""
        if command.startswith("XCLIENT") and last.startswith("220"):
            continue
        if last[:1] in ("4", "5"):
            return "\n".join(line[:3] + " " + line[4:] for line in reply.splitlines())
    return replies[-1]


@pytest.fixture(scope="module")
def policy_server() -> Iterator[int]:
    """A policy server on loopback that both Postfix and mailmaps ask."""
    server = PolicyServer(("127.0.0.1", 0), PolicyHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("seed", range(SEEDS))
def test_generated_sessions(seed: int, postfix_root: Path, policy_server: int) -> None:
    _compare(seed, generate(random.Random(seed), policy_server), postfix_root)


@pytest.mark.parametrize("seed", range(SEEDS // 2))
def test_generated_plain_sessions(seed: int, postfix_root: Path) -> None:
    """Configurations that AccessPolicy decides in C (``_access.c``) where it can."""
    scenario = generate(random.Random(1000 + seed), plain=True)
    _compare(seed, scenario, postfix_root, plain=True)


def _compare(seed: int, scenario: Scenario, postfix_root: Path, *, plain: bool = False) -> None:
    postfix = PostfixInstance(postfix_root, scenario.settings, smtpd=True)
    etc = postfix.config_dir
    for name, text in scenario.files.items():
        postfix.write(name, text)
    for name, text in scenario.tables.items():
        postfix.write_table(name, text)
    with postfix:
        real = [converse(postfix, session) for session in scenario.sessions]
    mismatches = []
    answered_in_c = 0
    with AccessPolicy.from_directory(etc) as policy:
        if plain:
            assert policy._plain is not None, "a plain scenario takes the C path"
        for session, want in zip(scenario.sessions, real, strict=True):
            if policy._plain is not None:
                answered_in_c += _decide_plain(policy._plain, session) is not NotImplemented
            got = policy.decide(session)
            # The traced decision takes the key-by-key Python path: the same decision.
            assert replace(policy.decide(session, trace=True), trace=()) == got, session
            if got.reply != want:
                mismatches.append(
                    f"{session}:\n  postfix:  {want}\n  mailmaps: {got.reply} "
                    f"(decided by {got.decided_by})"
                )
    settings = "\n".join(f"{k} = {v}" for k, v in scenario.settings.items())
    assert not mismatches, f"seed {seed}:\n{settings}\n" + "\n".join(mismatches)
    assert answered_in_c > 0 or not plain, "the C path handed every session back"
