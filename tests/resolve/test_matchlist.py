"""Match lists and the local-domain test: Postfix's namadr_list and resolve_local vectors."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from mailmaps.errors import LookupFailed
from mailmaps.matchlist import ListKind, LocalDomains, MatchList
from tests.conftest import VECTORS

GLOBAL = VECTORS / "src" / "global"


def test_namadr_list_vector(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Replay the sh script in order: it rewrites /tmp/junk between cases (here in tmp_path)."""
    results = [
        line
        for line in (GLOBAL / "namadr_list.ref").read_text().splitlines()
        if re.match(r"\S+/\S*: (YES|NO|ERROR)$", line)
    ]
    expected = iter(results)
    junk = tmp_path / "junk"
    lines = (GLOBAL / "namadr_list.in").read_text().split("\n")
    checked = 0
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if line.startswith("echo "):
            text = line[5:]
            while text.count("'") % 2:
                text += "\n" + lines[i]
                i += 1
            junk.write_text(" ".join(shlex.split(text.split(">junk")[0])) + "\n")
            continue
        if "./namadr_list" not in line:
            continue
        for assignment in line.split("${")[0].split():
            name, _, value = assignment.partition("=")
            monkeypatch.setenv(name, value)
        pattern, name, addr = shlex.split(line.split("./namadr_list", 1)[1])
        pattern = pattern.replace("/tmp/junk", str(junk))
        pattern = pattern.replace("/tmp/nosuchfile", str(tmp_path / "nosuch"))
        try:
            matched = MatchList("command line", pattern, ListKind.HOST).match(name, addr)
            got = "YES" if matched else "NO"
        except LookupFailed:
            got = "ERROR"
        assert f"{name}/{addr}: {got}" == next(expected), pattern
        checked += 1
    assert checked == len(results) >= 40


def test_resolve_local_vector() -> None:
    script = (GLOBAL / "resolve_local.in").read_text()
    results = (GLOBAL / "resolve_local.ref").read_text()
    expected = re.findall(r"mydestination=(\S*) destination=(\S*) (YES|NO|ERROR)", results)
    cases = [shlex.split(line)[1:] for line in script.splitlines() if "./resolve_local" in line]
    assert len(cases) == len(expected) >= 5
    for (mydest, dest), (want_mydest, want_dest, want) in zip(cases, expected, strict=True):
        assert (mydest, dest) == (want_mydest, want_dest)
        local = LocalDomains(mydest, ["127.0.0.1"])
        try:
            got = "YES" if local.is_local(dest) else "NO"
        except LookupFailed:
            got = "ERROR"
        assert got == want, (mydest, dest)


def test_domain_lists_and_parent_style(tmp_path: Path) -> None:
    plain = MatchList("relay_domains", "example.com, .dot.example", ListKind.DOMAIN)
    assert plain.match("example.com")
    assert not plain.match("sub.example.com")
    assert plain.match("a.dot.example")
    assert not plain.match("dot.example")
    parent = MatchList(
        "relay_domains", "example.com", ListKind.DOMAIN, parent_matches_subdomains=True
    )
    assert parent.match("sub.Example.COM")
    negated = MatchList(
        "x", "!bad.example.com, example.com", ListKind.DOMAIN, parent_matches_subdomains=True
    )
    assert not negated.match("bad.example.com")
    assert negated.match("good.example.com")
    table = MatchList(
        "x", "inline:{example.net=1}", ListKind.DOMAIN, parent_matches_subdomains=True
    )
    assert table.match("a.b.example.net")
    dotted = MatchList("x", "inline:{.example.net=1}", ListKind.DOMAIN)
    assert dotted.match("a.b.example.net")
    assert not dotted.match("example.net")


def test_local_domains_and_address_literals() -> None:
    local = LocalDomains("mx.example.com, localhost", ["127.0.0.1", "::1"])
    assert local.is_local("MX.example.com.")
    assert not local.is_local("mx.example.com..")
    assert local.is_local("[127.0.0.1]")
    assert local.is_local("[IPv6:::1]")
    assert not local.is_local("[127.0.0.2]")
    with pytest.raises(LookupFailed):
        LocalDomains("fail:down", []).is_local("x.example")
