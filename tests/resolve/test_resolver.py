"""Resolver details that the differential runs do not reach: the envelope sender as cleanup(8)
rewrites it before the sender-dependent maps see it, and not-accepted messages."""

from __future__ import annotations

import threading
from pathlib import Path

from mailmaps.config import MainConfig
from mailmaps.maps import create_table
from mailmaps.resolver import Resolver, read_services

BASE = {
    "compatibility_level": "3.6",
    "myhostname": "mx.example.com",
    "mydomain": "example.com",
    "mydestination": "$myhostname",
    "inet_interfaces": "loopback-only",
    "alias_maps": "",
    "relayhost": "[127.0.0.1]:2",
    "sender_dependent_relayhost_maps": (
        "inline:{ boss@example.com=[127.0.0.7], <>=[127.0.0.8], canon@example.org=[127.0.0.9] }"
    ),
}


def nexthop(resolver: Resolver, sender: str) -> str | None:
    return resolver.resolve("someone@far.example", sender).recipients[0].nexthop


def test_the_sender_is_masqueraded_and_mapped_before_sender_dependent_lookups() -> None:
    config = MainConfig(
        BASE
        | {
            "masquerade_domains": "example.com",
            "sender_canonical_maps": "inline:{ alias@example.com=canon@example.org }",
        }
    )
    with Resolver(config) as resolver:
        assert nexthop(resolver, "boss@sub.example.com") == "[127.0.0.7]"
        assert nexthop(resolver, "alias@example.com") == "[127.0.0.9]"
        assert nexthop(resolver, "MAILER-DAEMON@mx.example.com") == "[127.0.0.8]"
        assert nexthop(resolver, "") == "[127.0.0.8]"
        assert nexthop(resolver, "nobody@else.example") == "[127.0.0.1]:2"
        traced = resolver.resolve("someone@far.example", "boss@sub.example.com", trace=True)
        assert any(e.stage == "masquerade" and e.result == "boss@example.com" for e in traced.trace)


def test_without_envelope_sender_in_the_classes_the_sender_stays() -> None:
    config = MainConfig(
        BASE | {"masquerade_domains": "example.com", "masquerade_classes": "envelope_recipient"}
    )
    with Resolver(config) as resolver:
        assert nexthop(resolver, "boss@sub.example.com") == "[127.0.0.1]:2"


def test_a_virtual_alias_loop_is_not_accepted() -> None:
    config = MainConfig(
        BASE
        | {
            "virtual_alias_maps": "inline:{ a@example.net=b@example.net,"
            " b@example.net=a@example.net }",
            "virtual_alias_domains": "example.net",
            "virtual_alias_recursion_limit": "5",
        }
    )
    with Resolver(config) as resolver:
        (only,) = resolver.resolve("a@example.net").recipients
    assert (only.address, only.address_class, only.status, only.dsn) == (
        "a@example.net",
        None,
        "undeliverable",
        "4.6.0",
    )


def test_master_cf_services(tmp_path: Path) -> None:
    (tmp_path / "master.cf").write_text(
        "# comment\n"
        "smtp      inet  n       -       y       -       -       smtpd\n"
        "relay     unix  -       -       y       -       -       smtp\n"
        "  -o syslog_name=postfix/$service_name\n"
        "retry     unix  -       -       y       -       -       error\n"
        "postlog   unix-dgram n  -       n       -       1       postlogd\n"
        "mybox     unix  -       n       n       -       -       pipe\n"
        "  flags=R user=nobody argv=/bin/cat\n"
    )
    services = read_services(tmp_path / "master.cf")
    assert services == {
        "relay": "smtp",
        "retry": "error",
        "postlog": "postlogd",
        "mybox": "pipe",
    }
    (tmp_path / "main.cf").write_text(
        "\n".join(f"{k} = {v}" for k, v in BASE.items())
        + "\ntransport_maps = inline:{ a.example=mybox:, b.example=nosuch: }\n"
    )
    with Resolver.from_directory(tmp_path) as resolver:
        (a,) = resolver.resolve("x@a.example").recipients
        (b,) = resolver.resolve("x@b.example").recipients
    assert (a.transport, a.status) == ("mybox", None)
    assert (b.transport, b.status, b.dsn, b.text) == (
        "nosuch",
        "undeliverable",
        "4.3.0",
        "mail transport unavailable",
    )


def test_threads_share_one_resolver(tmp_path: Path) -> None:
    with create_table(f"lmdb:{tmp_path}/virtual") as build:
        for i in range(2000):
            build.add(f"user{i}@example.net", f"target{i}@mail{i % 7}.example.org")
    config = MainConfig(
        BASE
        | {
            "virtual_alias_domains": "example.net",
            "virtual_alias_maps": f"lmdb:{tmp_path}/virtual",
            "transport_maps": "inline:{ mail3.example.org=smtp:[127.0.0.3]:2525 }",
        }
    )
    addresses = [f"user{i}@example.net" for i in range(1200)]
    with Resolver(config) as resolver:
        want = [resolver.resolve(a).to_json() for a in addresses]
        wrong: list[int] = []

        def work(start: int) -> None:
            for i in range(start, len(addresses), 4):
                traced = resolver.resolve(addresses[i], trace=True)
                if (
                    traced.to_json() == want[i]
                    or resolver.resolve(addresses[i]).to_json() != want[i]
                ):
                    wrong.append(i)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert not wrong
    assert '"nexthop":"[127.0.0.3]:2525"' in want[3]


def test_one_lmdb_file_serves_a_map_and_a_domain_list(tmp_path: Path) -> None:
    """virtual_alias_domains defaults to $virtual_alias_maps: the same lmdb file is a map and
    a list; it is opened once (LMDB cannot be opened twice in a process)."""
    with create_table(f"lmdb:{tmp_path}/virtual") as build:
        build.add("example.net", "anything")
        build.add("info@example.net", "nobody@far.example")
    config = MainConfig(BASE | {"virtual_alias_maps": f"lmdb:{tmp_path}/virtual"})
    with Resolver(config) as resolver:
        (info,) = resolver.resolve("info@example.net").recipients
        (other,) = resolver.resolve("other@example.net").recipients
    assert (info.address, info.address_class) == ("nobody@far.example", "default")
    assert (other.address_class, other.text) == (
        "virtual_alias",
        "User unknown in virtual alias table",
    )
