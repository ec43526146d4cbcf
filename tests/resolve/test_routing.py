"""Resolving recipients (trivial-rewrite's resolve.c): Postfix's resolve_clnt vector and the
class/transport/nexthop rules around it."""

from __future__ import annotations

import pytest

from mailmaps.errors import TemporaryLookupError
from mailmaps.rewrite import RewriteSettings
from mailmaps.routing import ResolveFlag, Route, Router, RouteSettings, RouteTables
from tests.conftest import VECTORS

MYHOSTNAME = "host.example.org"
MYDOMAIN = "example.org"
LOCAL = {MYHOSTNAME, f"localhost.{MYDOMAIN}", "localhost"}

#: The vector ran against a Postfix with relayhost = $mydomain and, as its results show,
#: append_dot_mydomain = yes (compatibility_level 0); mydestination has its default.
VECTOR_SETTINGS = RouteSettings(
    myhostname=MYHOSTNAME,
    rewrite=RewriteSettings(myorigin=MYHOSTNAME, mydomain=MYDOMAIN, append_dot_mydomain=True),
    local_transport=f"local:{MYHOSTNAME}",
    relayhost=MYDOMAIN,
)


def is_local(domain: str) -> bool:
    domain = domain.lower()
    if domain.endswith(".") and not domain.endswith(".."):
        domain = domain[:-1]
    return domain in LOCAL


def flag_names(flags: ResolveFlag) -> str:
    names = []
    for bit in ResolveFlag:
        if flags & bit:
            assert bit.name is not None
            names.append(("FLAG_" if bit.value < 0x100 else "") + bit.name)
    return "".join(f"{name} " for name in names)


def vector_cases() -> list[tuple[str, dict[str, str]]]:
    ref = (VECTORS / "src" / "global" / "resolve_clnt.ref").read_text()
    ref = ref.replace("MYHOSTNAME", MYHOSTNAME).replace("MYDOMAIN", MYDOMAIN)
    cases = []
    for block in ref.strip("\n").split("\n\n"):
        fields = {}
        for line in block.splitlines():
            name, _, value = line.partition(" ")
            fields[name] = value.lstrip(" ")
        cases.append((fields["address"], fields))
    return cases


def test_the_vector_has_every_request() -> None:
    requests = (VECTORS / "src" / "global" / "resolve_clnt.in").read_text().splitlines()
    assert len(vector_cases()) == len([line for line in requests if line.strip()]) == 49


@pytest.mark.parametrize(("address", "expected"), vector_cases())
def test_postfix_vector(address: str, expected: dict[str, str]) -> None:
    router = Router(VECTOR_SETTINGS, RouteTables(is_local=is_local))
    route = router.resolve(address)
    got = {
        "class": expected["class"],
        "address": address,
        "transport": route.transport,
        "nexthop": route.nexthop,
        "recipient": route.recipient,
        "flags": flag_names(route.flags),
    }
    assert got == expected


def route(address: str, tables: RouteTables | None = None, **settings: object) -> Route:
    base = RouteSettings(
        myhostname=MYHOSTNAME,
        rewrite=RewriteSettings(myorigin=MYHOSTNAME, mydomain=MYDOMAIN),
        local_transport=f"local:{MYHOSTNAME}",
    )
    from dataclasses import replace

    chosen = replace(base, **settings)  # type: ignore[arg-type]
    return Router(chosen, tables or RouteTables(is_local=is_local)).resolve(address)


def test_class_precedence_and_nexthops() -> None:
    tables = RouteTables(
        is_local=is_local,
        virtual_alias_domains=lambda d: d == "valias.example",
        virtual_mailbox_domains=lambda d: d in ("vmail.example", "valias.example"),
        relay_domains=lambda d: d.endswith("relay.example"),
    )
    assert route("u@valias.example", tables).transport == "error"
    assert route("u@valias.example", tables).nexthop == "5.1.1 User unknown in virtual alias table"
    assert route("u@valias.example", tables, show_user_unknown_table_name=False).nexthop == (
        "5.1.1 User unknown"
    )
    got = route("u@vmail.example", tables)
    assert (got.transport, got.nexthop, got.address_class) == (
        "virtual",
        "vmail.example",
        "virtual_mailbox",
    )
    got = route("u@sub.relay.example", tables, relayhost="[127.0.0.9]")
    assert (got.transport, got.nexthop, got.address_class) == ("relay", "[127.0.0.9]", "relay")
    got = route("u@sub.relay.example", tables, relay_transport="relay:[127.0.0.7]:26")
    assert (got.transport, got.nexthop) == ("relay", "[127.0.0.7]:26")
    got = route("u@far.example", tables)
    assert (got.transport, got.nexthop, got.address_class) == ("smtp", "far.example", "default")


def test_sender_dependent_maps() -> None:
    tables = RouteTables(
        is_local=is_local,
        sender_default_transport=lambda key: {"a@x": "lmtp:[127.0.0.5]", "<>": "DUNNO"}.get(key),
        sender_relayhost=lambda key: {"a@x": "[127.0.0.6]", "b@x": "dunno"}.get(key),
    )
    got = route("u@far.example", tables, relayhost="[127.0.0.2]")
    assert (got.transport, got.nexthop) == ("smtp", "[127.0.0.2]")
    router = Router(RouteSettings(myhostname=MYHOSTNAME, relayhost="[127.0.0.2]"), tables)
    # The transport's own nexthop beats the sender-dependent relayhost.
    assert router.resolve("u@far.example", "a@x").transport == "lmtp"
    assert router.resolve("u@far.example", "a@x").nexthop == "[127.0.0.5]"
    assert router.resolve("u@far.example", "b@x").nexthop == "[127.0.0.2]"


def test_transport_relocated_and_min_user() -> None:
    tables = RouteTables(
        is_local=is_local,
        virtual_alias_domains=lambda d: d == "valias.example",
        transport=lambda rcpt, dom, ch, nh: ("smtp", "[127.0.0.4]") if dom != MYHOSTNAME else None,
        relocated=lambda addr: "new@example.net" if addr.startswith("old@") else None,
    )
    assert route("u@far.example", tables).nexthop == "[127.0.0.4]"
    # transport_maps never apply to the virtual alias class; relocated_maps do.
    assert route("u@valias.example", tables).transport == "error"
    got = route("old@valias.example", tables)
    assert got.nexthop == "5.1.6 User has moved to new@example.net"
    assert route("old", tables).nexthop == "5.1.6 User has moved to new@example.net"
    assert route("-opt", tables).flags & ResolveFlag.ERROR
    assert not route("-opt", tables, allow_min_user=True).flags & ResolveFlag.ERROR


def test_a_table_failure_is_a_temporary_failure() -> None:
    def broken(domain: str) -> bool:
        raise TemporaryLookupError("down")

    got = route("u@far.example", RouteTables(is_local=is_local, relay_domains=broken))
    assert got.failed
    assert route("u@far.example", RouteTables(is_local=broken)).failed


def test_a_transport_table_failure_leaves_no_class() -> None:
    """Plain addresses (whose domain routes are remembered) and others fail alike."""

    def down(*args: str) -> tuple[str, str] | None:
        raise TemporaryLookupError("down")

    tables = RouteTables(is_local=is_local, transport=down)
    for address in ("u@far.example", "u v@far.example", "u@far.example"):
        got = route(address, tables)
        assert (got.flags, got.address_class, got.recipient) == (ResolveFlag.FAIL, None, address)


def test_numeric_domains() -> None:
    assert route("u@1.2.3.4").error
    got = route("u@1.2.3.4", resolve_numeric_domain=True)
    assert (got.recipient, got.nexthop, got.error) == ("u@[1.2.3.4]", "[1.2.3.4]", False)
    assert route("u@[1.2.3.4]").nexthop == "[1.2.3.4]"
    assert route("u@[IPv6:::1]").nexthop == "[IPv6:::1]"
    assert route("u@[::1]").error
