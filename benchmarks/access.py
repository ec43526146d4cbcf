"""Benchmark: access decisions in one process, side by side with a real Postfix smtpd.

Usage::

    python benchmarks/access.py [--clients 100000] [--helo-rules 1000] [--recipients 10000]
                                [--decisions 50000] [--sessions 200] [--repeat 3]

The configuration is the one issue 6 names: ``permit_mynetworks``, a client access table of
``--clients`` entries in lmdb, a helo table of ``--helo-rules`` pcre rules, and a recipient
access table of ``--recipients`` entries in lmdb, in the client, HELO and recipient restrictions
(``smtpd_delay_reject = yes``, so every decision evaluates all of them).  The sessions mix
listed and unlisted clients, HELO names that match a rule or not, and listed and unlisted
recipients.

Measured:

* ``AccessPolicy.decide_many()`` and ``decide()`` in one process, decisions per second (the
  best of ``--repeat`` runs), and ``decide_many()`` of a policy made with ``compiled=False``
  (the Python path alone);
* real Postfix: SMTP sessions per second through XCLIENT (connect, XCLIENT, EHLO, MAIL, RCPT,
  QUIT) against a private smtpd on loopback (needs root); every reply must agree with mailmaps,
  or the benchmark fails.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mailmaps.access import AccessPolicy, Session
from mailmaps.testing.postfix import PostfixInstance

ACTIONS = ["REJECT", "OK", "DUNNO", "554 go away", "REJECT listed"]


def make_config(etc: Path, clients: int, helo_rules: int, recipients: int) -> dict[str, str]:
    rng = random.Random(6)
    with (etc / "clients").open("w") as f:
        for i in range(clients):
            f.write(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255} {rng.choice(ACTIONS)}\n")
    with (etc / "helo.pcre").open("w") as f:
        for i in range(helo_rules):
            f.write(f"/^(mx|mail)\\d*\\.spam{i}\\.example$/ REJECT helo rule {i}\n")
    with (etc / "recipients").open("w") as f:
        for i in range(recipients):
            f.write(f"user{i}@mx.example.com {rng.choice(ACTIONS)}\n")
    for name in ("clients", "recipients"):
        subprocess.run(["/usr/sbin/postmap", "-c", str(etc), f"lmdb:{etc / name}"], check=True)
    return {
        "myhostname": "mx.example.com",
        "mydestination": "$myhostname, localhost",
        "mynetworks": "127.0.0.0/8, 192.0.2.0/24",
        "local_recipient_maps": "",
        "alias_maps": "",
        "smtpd_client_restrictions": (f"permit_mynetworks, check_client_access lmdb:{etc}/clients"),
        "smtpd_helo_restrictions": f"check_helo_access pcre:{etc}/helo.pcre",
        "smtpd_recipient_restrictions": (
            f"check_recipient_access lmdb:{etc}/recipients, reject_unauth_destination"
        ),
        "smtpd_relay_restrictions": "",
        "smtpd_authorized_xclient_hosts": "127.0.0.1",
        "smtpd_peername_lookup": "no",
        "smtpd_error_sleep_time": "0",
        "smtpd_soft_error_limit": "1000",
        "smtpd_hard_error_limit": "1000",
    }


def make_sessions(count: int, clients: int, helo_rules: int, recipients: int) -> list[Session]:
    rng = random.Random(7)
    out = []
    for _ in range(count):
        i = rng.randrange(clients * 2)
        address = (
            f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}"
            if i < clients
            else (f"198.51.100.{i % 250 + 1}")
        )
        if rng.random() < 0.05:
            address = f"192.0.2.{rng.randrange(1, 250)}"
        helo = f"mx{rng.randrange(9)}.spam{rng.randrange(helo_rules * 2)}.example"
        recipient = f"user{rng.randrange(recipients * 2)}@mx.example.com"
        if rng.random() < 0.1:
            recipient = f"someone@far{rng.randrange(100)}.example"
        out.append(
            Session(
                client_address=address,
                client_name="unknown",
                helo=helo,
                sender="sender@example.org",
                recipient=recipient,
            )
        )
    return out


def converse(postfix: PostfixInstance, session: Session) -> str:
    commands = [
        f"XCLIENT ADDR={session.client_address} NAME=[UNAVAILABLE]",
        f"EHLO {session.helo}",
        f"MAIL FROM:<{session.sender}>",
        f"RCPT TO:<{session.recipient}>",
    ]
    replies = postfix.converse(commands)
    return replies[-1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=100_000)
    parser.add_argument("--helo-rules", type=int, default=1_000)
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--decisions", type=int, default=50_000)
    parser.add_argument("--sessions", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    top = Path(tempfile.mkdtemp(prefix="mailmaps-bench-"))
    top.chmod(0o755)
    try:
        root = top / "pf"
        postfix = PostfixInstance(root, {}, smtpd=True)
        settings = make_config(postfix.config_dir, args.clients, args.helo_rules, args.recipients)
        postfix = PostfixInstance(root, settings, smtpd=True)
        sessions = make_sessions(args.decisions, args.clients, args.helo_rules, args.recipients)
        with AccessPolicy.from_directory(postfix.config_dir) as policy:
            python = AccessPolicy(policy.config, resolver=policy.resolver, compiled=False)
            ours = single = pure = 0.0
            for _ in range(args.repeat):  # the best of --repeat runs: this machine is noisy
                start = time.perf_counter()
                for _ in policy.decide_many(sessions):
                    pass
                ours = max(ours, len(sessions) / (time.perf_counter() - start))
                start = time.perf_counter()
                for session in sessions:
                    policy.decide(session)
                single = max(single, len(sessions) / (time.perf_counter() - start))
                start = time.perf_counter()
                for _ in python.decide_many(sessions):
                    pass
                pure = max(pure, len(sessions) / (time.perf_counter() - start))
            probes = sessions[: args.sessions]
            expected = [policy.decide(session).reply for session in probes]
        real = "-"
        if os.geteuid() == 0 and Path("/usr/sbin/postfix").exists():
            with postfix:
                start = time.perf_counter()
                replies = [converse(postfix, session) for session in probes]
                real = f"{len(probes) / (time.perf_counter() - start):,.0f}"
            for session, want, got in zip(probes, replies, expected, strict=True):
                if want != got:
                    print(f"MISMATCH {session}: postfix {want!r}, mailmaps {got!r}")
                    return 1
        print("| measurement | per second |")
        print("|---|---|")
        print(f"| mailmaps AccessPolicy.decide_many(), {len(sessions):,} sessions | {ours:,.0f} |")
        print(f"| mailmaps AccessPolicy.decide(), one at a time | {single:,.0f} |")
        print(f"| mailmaps decide_many(), Python path only (compiled=False) | {pure:,.0f} |")
        print(f"| real Postfix smtpd, XCLIENT sessions ({len(probes)}) | {real} |")
    finally:
        shutil.rmtree(top, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
