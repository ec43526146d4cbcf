"""Masquerading (cleanup_masquerade.c): Postfix's cleanup_masq vector and the rules."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from mailmaps.errors import TemporaryLookupError
from mailmaps.masquerade import Masquerade
from tests.conftest import VECTORS


def vector_cases() -> list[tuple[str, str, str, str, bool]]:
    text = (VECTORS / "src" / "cleanup" / "cleanup_masq.ref").read_text()
    cases = []
    for block in text.split("----------\n"):
        if not block.strip():
            continue
        fields = {}
        for line in block.splitlines():
            name, _, value = line.partition(":")
            fields[name] = value.strip()
        cases.append(
            (
                fields["exceptions"],
                fields["masq_list"],
                fields["address"],
                fields["result"],
                fields["errs"] != "0",
            )
        )
    return cases


def exceptions_from(spec: str) -> Callable[[str], bool] | None:
    """The vector's exception lists: plain names, or a table that fails (``fail:``)."""
    if spec.startswith("fail:"):

        def failing(name: str) -> bool:
            raise TemporaryLookupError(f"table {spec}: query error: Application error")

        return failing
    names = set(spec.replace(",", " ").split())
    return (lambda name: name in names) if names else None


def test_vector_is_complete() -> None:
    assert len(vector_cases()) == 11


@pytest.mark.parametrize(("exceptions", "domains", "address", "result", "errs"), vector_cases())
def test_postfix_vector(
    exceptions: str, domains: str, address: str, result: str, errs: bool
) -> None:
    masq = Masquerade(domains.split(","), exceptions_from(exceptions))
    got = masq.external(address)
    assert (got.address, got.deferred) == (result, errs)
    assert got.changed == (result != address)


def test_rules() -> None:
    masq = Masquerade(["!sub.example.com", "example.com", "other.example"])
    assert masq.external("u@host.example.com").address == "u@example.com"
    assert masq.external("u@host.sub.example.com").address == "u@host.sub.example.com"
    assert masq.external("u@EXAMPLE.com").address == "u@EXAMPLE.com"  # equal: left alone
    assert masq.external("u@notexample.com").address == "u@notexample.com"
    assert masq.external("u").address == "u"
    assert masq.external('"a@b"@x.other.example').address == '"a@b"@other.example'
    assert masq.internal("a b@x.other.example").address == "a b@other.example"
    assert Masquerade(["!!example.com"]).external("u@h.example.com").address == "u@example.com"
