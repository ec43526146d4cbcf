"""The C path for plain addresses (``_resolve.c``) against the Python path it stands in for.

``Resolver.resolve()`` answers plain addresses in C when it can and ``resolve(trace=True)``
always takes the Python path, so each generated configuration is asked both ways, for many
addresses and senders: the final recipients must be equal, every case.  The Python path is the
one the differential tests hold against real Postfix.  Each configuration mixes what the C path
does itself (canonical maps, virtual alias expansion with extensions, loops and limits, transport
entries of every form, the ``*`` entry, parent-domain styles, relocated users, error and discard
transports, an undefined transport) with what it must hand back (local and virtual mailbox
domains, empty values, values it cannot parse, masquerading, sender-dependent routing).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailmaps.config import MainConfig
from mailmaps.maps import create_table
from mailmaps.resolver import DEFAULT_SERVICES, Resolver

DOMAINS = [
    "valias.example",
    "catch.example",
    "relay.example",
    "sub.relay.example",
    "far.example",
    "deep.far.example",
    "special.example",
    "a.special.example",
    "error.example",
    "retry.example",
    "discard.example",
    "nosvc.example",
    "vmail.example",
    "mx.example.com",
    "example.com",
    "Far.Example",
    "bare.example",
    "bare2.example",
]
USERS = [
    "info", "team", "self", "fwd", "chain1", "loop1", "old", "bob", "x", "Bob", "bin",
    "upper.bob", "rw-info", "u1", "postmaster", "owner-team", "team-request", "wide",
    "a.b.c", "under_score", "eq=ual", "-dash", "multi", "empty", "junk", "at", "bounce-me",
    "double-bounce", "MAILER-DAEMON", "owner-", "x-request",
]  # fmt: skip
EXTENSIONS = ["", "+tag", "-tag", "+", "+a-b", "-"]


def _table(path: Path, lines: list[str]) -> str:
    path.write_text("".join(f"{line}\n" for line in lines))
    with create_table(f"lmdb:{path}") as build:
        for line in lines:
            key, value = line.split(None, 1)
            build.add(key, value)
    return f"lmdb:{path}"


def generate(rng: random.Random, etc: Path) -> dict[str, str]:
    """main.cf settings, with the tables they name written into ``etc``."""
    pick = rng.random
    settings = {
        "myhostname": "mx.example.com",
        "mydomain": "example.com",
        "myorigin": rng.choice(["$myhostname", "$mydomain"]),
        "mydestination": "$myhostname, localhost",
        "recipient_delimiter": rng.choice(["", "+", "+-", "-"]),
        "propagate_unmatched_extensions": rng.choice(["canonical, virtual", "virtual", ""]),
        "relayhost": rng.choice(["", "[127.0.0.1]:2525"]),
        "alias_maps": "",
        "compatibility_level": rng.choice(["3.6", "2", "0"]),
        "virtual_mailbox_domains": "vmail.example",
        "virtual_mailbox_maps": _table(etc / "vmailbox", ["u1@vmail.example u1/"]),
    }
    if pick() < 0.5:
        settings["double_bounce_sender"] = "bounce-me"
    if pick() < 0.5:
        settings["relay_domains"] = "relay.example"
    virtual = [
        "info@valias.example bin@far.example",
        "team@valias.example a@far.example, b@deep.far.example,c@relay.example",
        "self@valias.example self@valias.example, bob@far.example",
        "fwd@valias.example x@relay.example",
        "chain1@valias.example chain2@valias.example",
        "chain2@valias.example info@valias.example",
        "@catch.example @far.example",
        "wide@valias.example " + ", ".join(f"w{i}@far.example" for i in range(70)),
        "junk@valias.example (comment) x@far.example",
        "at@valias.example @relay.example",
        "u1@vmail.example u1@far.example",
        "multi@far.example m1@relay.example, m2@special.example",
    ]
    if pick() < 0.5:
        virtual += [
            "loop1@valias.example loop2@valias.example",
            "loop2@valias.example loop1@valias.example",
        ]
        settings["virtual_alias_recursion_limit"] = rng.choice(["3", "20"])
    if pick() < 0.3:
        settings["virtual_alias_expansion_limit"] = "5"
    if pick() < 0.3:  # the default: the table's keys name its domains
        virtual += ["valias.example anything", "catch.example anything"]
    else:
        settings["virtual_alias_domains"] = "valias.example, catch.example"
    maps = [_table(etc / "virtual", virtual)]
    if pick() < 0.4:
        (etc / "virtual.regexp").write_text("/^regex-(.*)@far\\.example$/ $1@relay.example\n")
        maps.append(f"regexp:{etc}/virtual.regexp")
    settings["virtual_alias_maps"] = ", ".join(maps)
    transport = [
        "special.example smtp:[127.0.0.3]:2525",
        ".special.example relay:[127.0.0.4]",
        "error.example error:5.7.1 no mail here",
        "retry.example retry:4.3.5 try later",
        "discard.example discard:silently gone",
        "bob@relay.example smtp:[127.0.0.5]",
        "nosvc.example nosvc:[127.0.0.9]",
        "far.example :[127.0.0.6]",
        "example relay:",
        "bare.example error",
        "bare2.example retry:",
    ]
    if pick() < 0.5:
        transport.append(
            rng.choice(["* smtp:[127.0.0.7]", "* :[127.0.0.8]", "* error:nope", "* retry"])
        )
    if pick() < 0.5:
        settings["parent_domain_matches_subdomains"] = "transport_maps"
    settings["transport_maps"] = _table(etc / "transport", transport)
    if pick() < 0.6:
        settings["relocated_maps"] = _table(
            etc / "relocated", ["old@valias.example new@example.org", "@deep.far.example moved"]
        )
    canonical = ["bob@far.example robert@far.example", "@relay.example @far.example"]
    if pick() < 0.3:
        canonical.append("empty@far.example ")  # an empty value: Postfix's error
    settings["canonical_maps"] = _table(etc / "canonical", [c for c in canonical if c.split()[1:]])
    if pick() < 0.5:
        (etc / "canonical.pcre").write_text(
            "/^upper[.](.*)@(.*)$/ ${1}@${2}\n/^rw-(.*)@/ $1@valias.example\n"
        )
        settings["recipient_canonical_maps"] = f"pcre:{etc}/canonical.pcre"
    if pick() < 0.2:
        settings["masquerade_domains"] = "example.com"
        settings["masquerade_classes"] = "envelope_recipient"
    if pick() < 0.2:
        settings["sender_dependent_relayhost_maps"] = "inline:{ root@mx.example.com=[127.0.0.9] }"
    return settings


def addresses(rng: random.Random, count: int) -> Iterator[str]:
    """Every user with every extension at every domain, then ``count`` random ones."""
    for user in USERS:
        for extension in EXTENSIONS:
            for domain in DOMAINS:
                yield f"{user}{extension}@{domain}"
    for _ in range(count):
        user = rng.choice(USERS) + rng.choice(EXTENSIONS)
        yield f"{user}@{rng.choice(DOMAINS)}".upper() if rng.random() < 0.2 else f"{user}@x.y"
    yield from ["info@valias.example", "loop1@valias.example", "wide@valias.example"]
    yield from ['"a b"@far.example', "user", "x@[127.0.0.1]", "x@nodot", "x@1.2.3", "é@far.example"]


@pytest.mark.parametrize("seed", range(16))
def test_the_c_path_answers_as_the_python_path(
    seed: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(seed)
    settings = generate(rng, tmp_path)
    (tmp_path / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
    services = {k: v for k, v in DEFAULT_SERVICES.items()}
    answered = []
    from mailmaps._speedups import resolve_plain as c_path

    def counting(plan: Any, address: str) -> Any:
        routes = c_path(plan, address)
        answered.append(routes is not NotImplemented)
        return routes

    monkeypatch.setattr("mailmaps.resolver._resolve_plain", counting)
    mismatches = []
    with Resolver(MainConfig.load(str(tmp_path)), services=services) as resolver:
        for address in addresses(rng, 100):
            for sender in ("", "root", "someone@far.example"):
                fast = resolver.resolve(address, sender)
                slow = resolver.resolve(address, sender, trace=True)
                if fast.recipients != slow.recipients:
                    mismatches.append(f"{address} from <{sender}>:\n  C: {fast}\n  Python: {slow}")
            assert resolver.resolve(address).input == address
    assert not mismatches, "\n".join(mismatches[:10])
    # The C path answered most addresses itself (else this test would compare Python with
    # Python); sender-dependent routing and masquerading send all of them to Python.
    if "sender_dependent_relayhost_maps" in settings or "masquerade_domains" in settings:
        assert not any(answered)
    else:
        assert sum(answered) > len(answered) / 3, (sum(answered), len(answered))


def test_resolve_many_answers_as_resolve(tmp_path: Path) -> None:
    settings = generate(random.Random(7), tmp_path)
    settings.pop("sender_dependent_relayhost_maps", None)
    settings.pop("masquerade_domains", None)
    (tmp_path / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
    batch = list(addresses(random.Random(8), 100))
    with Resolver(MainConfig.load(str(tmp_path))) as resolver:
        one_by_one = [resolver.resolve(address) for address in batch]
        assert list(resolver.resolve_many(batch)) == one_by_one
        traced = list(resolver.resolve_many(batch, trace=True))
    assert [r.recipients for r in traced] == [r.recipients for r in one_by_one]


def test_compiled_false_takes_the_python_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = generate(random.Random(3), tmp_path)
    (tmp_path / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))

    def refuse(plan: Any, address: str) -> Any:
        raise AssertionError("the C path was called")

    monkeypatch.setattr("mailmaps.resolver._resolve_plain", refuse)
    with Resolver(MainConfig.load(str(tmp_path)), compiled=False) as resolver:
        assert resolver.resolve("x@far.example").recipients


def test_resolver_hold_keeps_every_file_table_locked(tmp_path: Path) -> None:
    from tests.backends.test_lmdb import exclusive_lock_is_free

    settings = generate(random.Random(5), tmp_path)
    (tmp_path / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
    with Resolver(MainConfig.load(str(tmp_path))) as resolver:
        with resolver.hold(), resolver.hold():
            assert not exclusive_lock_is_free(tmp_path / "virtual.lmdb")
            assert not exclusive_lock_is_free(tmp_path / "transport.lmdb")
            resolver.resolve("info@valias.example")
        assert exclusive_lock_is_free(tmp_path / "virtual.lmdb")
        assert exclusive_lock_is_free(tmp_path / "transport.lmdb")


def test_threads_share_a_resolver(tmp_path: Path) -> None:
    """resolve_many() and resolve() on several threads at once: holds overlap and end in any
    order, and every answer is what one thread alone gets."""
    from concurrent.futures import ThreadPoolExecutor

    settings = generate(random.Random(9), tmp_path)
    (tmp_path / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
    batch = [*addresses(random.Random(10), 50), "é@valias.example"]
    with Resolver(MainConfig.load(str(tmp_path))) as resolver:
        alone = [resolver.resolve(address) for address in batch]

        def work(n: int) -> list[Any]:
            if n % 2:
                return [resolver.resolve(address) for address in batch]
            return list(resolver.resolve_many(batch))

        with ThreadPoolExecutor(4) as pool:
            results = list(pool.map(work, range(8)))
    assert all(result == alone for result in results)


def test_a_table_that_cannot_be_opened_defers_either_way(tmp_path: Path) -> None:
    """A missing table is a surrogate whose lookups fail (Postfix defers the mail); the
    resolver is made, and its answers are the same with and without the C path."""
    (tmp_path / "main.cf").write_text(
        f"myhostname = mx.example.com\nalias_maps =\nvirtual_alias_maps = lmdb:{tmp_path}/none\n"
    )
    answers = []
    for compiled in (True, False):
        with Resolver(MainConfig.load(str(tmp_path)), compiled=compiled) as resolver:
            answers.append(resolver.resolve("a@far.example").recipients)
    assert answers[0] == answers[1]
    assert (answers[0][0].dsn, answers[0][0].address_class) == ("4.6.0", None)
