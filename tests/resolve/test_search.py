"""Address search order, extensions, 1:N mapping and transport entries: Postfix's vectors
mail_addr_find, strip_addr, mail_addr_map, mail_addr_crunch and transport."""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

import pytest

from mailmaps.errors import TemporaryLookupError
from mailmaps.maps import MapList
from mailmaps.search import (
    Form,
    SearchSettings,
    Strategy,
    mail_addr_crunch,
    mail_addr_find_ext,
    mail_addr_map,
    strip_addr,
    transport_lookup,
)
from mailmaps.table import OpenOptions
from tests.conftest import VECTORS

GLOBAL = VECTORS / "src" / "global"


@pytest.fixture(autouse=True, params=["c", "python"])
def search_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test twice: plain addresses searched in C (``_search.c``), and in Python only."""
    if request.param == "python":
        monkeypatch.setattr("mailmaps.search._find_plain", None)
    return str(request.param)


#: What the vector programs hard-code (INDEX.md).
VECTOR_SETTINGS = SearchSettings(
    recipient_delimiter="+",
    myorigin="localdomain",
    is_local=lambda domain: domain.lower() == "localhost.localdomain",
)

_STRATEGIES = {
    "default": Strategy.DEFAULT,
    "full": Strategy.FULL,
    "noext": Strategy.NOEXT,
    "localpart_if_local": Strategy.LOCALPART_IF_LOCAL,
    "localpart_at_if_local": Strategy.LOCALPART_AT_IF_LOCAL,
    "at_domain": Strategy.AT_DOMAIN,
    "domain": Strategy.DOMAIN,
    "pdms": Strategy.PDMS,
    "pddms": Strategy.PDDMDS,
    "localpart_at": Strategy.LOCALPART_AT,
}


def run_mail_addr_find(script: str) -> str:
    out: list[str] = []
    maps: MapList | None = None
    for line in script.splitlines():
        if line.startswith("echo "):
            out.append(line[5:])
        elif line.startswith("maps "):
            spec = line[5:]
            maps = MapList([spec], title="test")
            out.append(spec)
        elif line.startswith("test "):
            assert maps is not None
            fields = line[5:].split(":")
            in_form, query_form, out_form, strategy_text, key = fields[:5]
            strategy = Strategy(0)
            for name in strategy_text.split("|"):
                strategy |= _STRATEGIES[name]
            result, extension = mail_addr_find_ext(
                maps,
                key,
                VECTOR_SETTINGS,
                strategy=strategy,
                in_form=Form(in_form),
                query_form=Form(query_form),
                out_form=Form(out_form),
            )
            out.append(
                f"{in_form}:{key} -{query_form}-> {out_form}:{result or '(not found)'} "
                f"({extension or 'null extension'})"
            )
    return "\n".join(out) + "\n"


def test_mail_addr_find_vector() -> None:
    script = (GLOBAL / "mail_addr_find.in").read_text()
    assert run_mail_addr_find(script) == (GLOBAL / "mail_addr_find.ref").read_text()


def test_strip_addr_vector() -> None:
    cases = json.loads((VECTORS / "extracted" / "strip_addr_tests.json").read_text())["cases"]
    assert len(cases) >= 10
    for case in cases:
        got = strip_addr(case["address"], case["delimiters"])
        assert got == (case["expect_stripped"], case["expect_extension"]), case


def _map_case(case: dict[str, Any]) -> list[str]:
    maps = MapList([case["database"]], title="test")
    got = mail_addr_map(
        maps,
        case["address"],
        SearchSettings(recipient_delimiter=case["delimiter"]),
        propagate=bool(case["propagate"]),
        in_form=Form(case["in_form"]),
        query_form=Form(case["query_form"]),
        out_form=Form(case["out_form"]),
    )
    return got or []


def test_mail_addr_map_vector() -> None:
    data = json.loads((VECTORS / "extracted" / "mail_addr_map_tests.json").read_text())
    assert data["pass_tests"] and data["fail_tests"]
    for case in data["pass_tests"]:
        assert _map_case(case) == case["expect_argv"], case["testname"]
    # The fail tests hold deliberately wrong expectations: the results must differ.
    for case in data["fail_tests"]:
        assert _map_case(case) != case["expect_argv"], case["testname"]


def test_mail_addr_crunch_vector() -> None:
    script = (GLOBAL / "mail_addr_crunch.in").read_text()
    out = []
    for match in re.finditer(r"echo ([^\n]*)\n[^\n]*<<'EOF'\n(.*?)\nEOF", script, re.S):
        out.append(match.group(1))
        lines = match.group(2).split("\n")
        in_form, out_form, extension = lines[0], lines[1], lines[2]
        for text in lines[3:]:
            for address in mail_addr_crunch(
                text, extension or None, in_form=Form(in_form), out_form=Form(out_form)
            ):
                out.append(f"|{address}|")
    assert "\n".join(out) + "\n" == (GLOBAL / "mail_addr_crunch.ref").read_text()


def transport_cases() -> list[tuple[str, list[str]]]:
    script = (VECTORS / "src" / "trivial-rewrite" / "transport.in").read_text()
    cases = []
    for match in re.finditer(r"\./transport (.*?) *<<'EOF'\n(.*?)\nEOF", script, re.S):
        spec = shlex.split(match.group(1))[0]
        cases.append((spec, match.group(2).split("\n")))
    return cases


@pytest.mark.parametrize(("spec", "lines"), transport_cases())
def test_transport_vector(spec: str, lines: list[str]) -> None:
    maps = MapList([spec], OpenOptions(regsub=False), title="transport_maps")
    for line in lines:
        address, want_channel, want_nexthop = [*line.split(":"), "", ""][:3]
        domain = address.rpartition("@")[2]
        got = transport_lookup(maps, address, domain, "DEFAULT", domain, VECTOR_SETTINGS)
        if not want_channel and not want_nexthop:
            assert got is None, line
            continue
        want = tuple("" if v == "-" else v for v in (want_channel, want_nexthop))
        assert got == want, line


def test_the_transport_vector_is_all_read() -> None:
    cases = transport_cases()
    assert len(cases) >= 6
    assert sum(len(lines) for _, lines in cases) >= 15


def test_partial_keys_skip_pattern_tables_and_errors_stop_the_search() -> None:
    maps = MapList(["inline:{ @example.com=at-domain }"], title="t")
    seen: list[str] = []

    class Recorder:
        title = "t"

        def lookup(self, key: str, *, fixed_only: bool = False) -> str | None:
            seen.append(f"{key}{' (fixed)' if fixed_only else ''}")
            return maps.lookup(key, fixed_only=fixed_only)

    settings = SearchSettings(recipient_delimiter="+", is_local=lambda d: d == "example.com")
    result, ext = mail_addr_find_ext(Recorder(), "u+x@example.com", settings)
    assert (result, ext) == ("at-domain", None)
    assert seen == [
        "u+x@example.com",
        "u@example.com (fixed)",
        "u+x (fixed)",
        "u (fixed)",
        "@example.com (fixed)",
    ]

    class Broken:
        title = "t"

        def lookup(self, key: str, *, fixed_only: bool = False) -> str | None:
            raise TemporaryLookupError("down")

    with pytest.raises(TemporaryLookupError):
        mail_addr_find_ext(Broken(), "u@example.com", settings)
