"""Rewriting to canonical form (trivial-rewrite's rewrite.c): Postfix's vector and the rules."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from mailmaps.rewrite import RewriteContext, RewriteSettings, rewrite_address
from tests.conftest import VECTORS

MYDOMAIN = "example.org"
INVALID_DOMAIN = "domain.invalid"
# The vector's expected results are for append_dot_mydomain=yes (see INDEX.md).
VECTOR_SETTINGS = RewriteSettings(
    myorigin=MYDOMAIN,
    mydomain=MYDOMAIN,
    remote_header_rewrite_domain=INVALID_DOMAIN,
    append_dot_mydomain=True,
)


def vector_cases() -> list[tuple[str, str, str]]:
    text = (VECTORS / "src" / "global" / "rewrite_clnt.ref").read_text()
    text = text.replace("MYDOMAIN", MYDOMAIN).replace("INVALID_DOMAIN", INVALID_DOMAIN)
    cases = []
    for block in text.strip().split("\n\n"):
        fields = dict(line.split(None, 1) for line in block.splitlines())
        cases.append((fields["rule"], fields["address"], fields["result"]))
    return cases


def test_the_vector_has_every_request() -> None:
    requests = (VECTORS / "src" / "global" / "rewrite_clnt.in").read_text().split("\n")
    assert len(vector_cases()) == len([line for line in requests if line.strip()]) == 26


@pytest.mark.parametrize(("context", "address", "expected"), vector_cases())
def test_postfix_vector(context: RewriteContext, address: str, expected: str) -> None:
    assert rewrite_address(address, context, VECTOR_SETTINGS) == expected


@pytest.mark.parametrize(
    ("address", "expected", "changes"),
    [
        ("user", "user@origin.example", {}),
        ("user", "user", {"append_at_myorigin": False}),
        ("host!user", "user@host.my.example", {"append_dot_mydomain": True}),
        ("host!user", "host!user@origin.example", {"swap_bangpath": False}),
        ("a!b!c", "b!c@a", {}),
        ("a%b%c", "a%b@c", {}),
        ("a%b", "a%b@origin.example", {"allow_percent_hack": False}),
        ("@relay1,@relay2:user@site.example", "user@site.example", {}),
        ("user@[127.0.0.1]", "user@[127.0.0.1]", {"append_dot_mydomain": True}),
        ("user@host", "user@host", {}),  # append_dot_mydomain is off by default since 3.0
        ("user@host", "user@host.my.example", {"append_dot_mydomain": True}),
        ("user@host.example.", "user@host.example", {}),
        ("user@host..", "user@host..", {}),
        ('"a b"', '"a b"@origin.example', {}),
        ('""', '""', {}),
        ("", "", {}),
    ],
)
def test_rules(address: str, expected: str, changes: dict[str, Any]) -> None:
    settings = replace(RewriteSettings(myorigin="origin.example", mydomain="my.example"), **changes)
    assert rewrite_address(address, "local", settings) == expected


def test_remote_context_uses_the_remote_domain() -> None:
    settings = RewriteSettings(myorigin="origin.example", remote_header_rewrite_domain="r.example")
    assert rewrite_address("user", "remote", settings) == "user@r.example"
    assert rewrite_address("user", "remote", RewriteSettings(myorigin="o")) == "user"


@pytest.mark.parametrize("dot", [True, False], ids=["append_dot_mydomain", "no-append"])
@pytest.mark.parametrize("operators", [True, False], ids=["operators", "no-operators"])
def test_dotted_addresses_come_back_unchanged(dot: bool, operators: bool) -> None:
    """What Resolver.canonicalize() and the C path take as given: a plain user@host.domain
    is left alone by rewriting in the local context, whatever the settings."""
    import random

    from mailmaps.rfc822 import DOTTED_ADDRESS, quote_local, unquote_local

    settings = RewriteSettings(
        myorigin="origin.example",
        mydomain="my.example",
        append_dot_mydomain=dot,
        swap_bangpath=operators,
        allow_percent_hack=operators,
    )
    rng = random.Random(4)
    atoms = ["a", "B", "x_y", "p+q", "e=f", "-", "0", "owner-x", "localhost", "my", "example"]
    for _ in range(2000):
        local = ".".join(rng.choice(atoms) for _ in range(rng.randint(1, 3)))
        domain = ".".join(rng.choice(atoms[:1] + atoms[6:]) for _ in range(rng.randint(2, 4)))
        address = f"{local}@{domain}"
        assert DOTTED_ADDRESS.fullmatch(address)
        got = unquote_local(rewrite_address(quote_local(address), "local", settings))
        assert got == address
