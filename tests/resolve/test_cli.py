"""``mailmaps resolve``: the JSON schema, the trace for people, and errors without tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

MAIN_CF = """\
compatibility_level = 3.6
myhostname = mx.example.com
mydomain = example.com
mydestination = $myhostname, localhost
inet_interfaces = loopback-only
alias_maps = inline:{ {ops=|/usr/bin/procmail}, webmaster=nobody }
virtual_alias_domains = valias.example
virtual_alias_maps = inline:{ info@valias.example=webmaster@mx.example.com,
    {team@valias.example=bin@mx.example.com, far@relay.example} }
relay_domains = relay.example
relayhost = [127.0.0.1]:2
transport_maps = inline:{ relay.example=smtp:[127.0.0.3]:2525, {gone.example=error:5.7.1 closed} }
relocated_maps = inline:{ old@valias.example=new@example.org }
"""


@pytest.fixture
def confdir(tmp_path: Path) -> Path:
    (tmp_path / "main.cf").write_text(MAIN_CF)
    return tmp_path


def mailmaps(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mailmaps.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_json_schema(confdir: Path) -> None:
    addresses = [
        "info@valias.example",
        "team@valias.example",
        "x@valias.example",
        "old@valias.example",
        "ops",
        "a@gone.example",
    ]
    result = mailmaps("resolve", "-c", str(confdir), "--json", *addresses)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["input"] for line in lines] == addresses
    for line in lines:
        assert set(line) == {"input", "recipients", "trace"}
        for r in line["recipients"]:
            assert set(r) == {"address", "class", "transport", "nexthop", "status", "dsn", "text"}
        assert [r["address"] for r in line["recipients"]] == sorted(
            r["address"] for r in line["recipients"]
        )
    info, team, unknown, old, ops, gone = (line["recipients"] for line in lines)
    assert info == [
        {
            "address": "nobody@mx.example.com",
            "class": "local",
            "transport": "local",
            "nexthop": "mx.example.com",
            "status": "deliverable",
            "dsn": "2.0.0",
            "text": "delivers to mailbox",
        }
    ]
    assert team[1] == {
        "address": "far@relay.example",
        "class": "relay",
        "transport": "smtp",
        "nexthop": "[127.0.0.3]:2525",
        "status": None,
        "dsn": None,
        "text": None,
    }
    assert unknown[0]["class"] == "virtual_alias"
    assert (unknown[0]["dsn"], unknown[0]["text"]) == (
        "5.1.1",
        "User unknown in virtual alias table",
    )
    assert old[0]["text"] == "User has moved to new@example.org"
    assert ops[0] == {
        "address": "ops@mx.example.com",
        "class": "local",
        "transport": "local",
        "nexthop": "mx.example.com",
        "status": "deliverable",
        "dsn": "2.0.0",
        "text": "delivers to command: /usr/bin/procmail",
    }
    assert (gone[0]["status"], gone[0]["dsn"], gone[0]["text"]) == (
        "undeliverable",
        "5.7.1",
        "closed",
    )
    stages = [event["stage"] for event in lines[0]["trace"]]
    assert "virtual_alias" in stages and "resolve" in stages
    lookup = next(e for e in lines[0]["trace"] if e.get("table"))
    assert lookup["table"].startswith("inline:") and "key" in lookup


def test_addresses_from_standard_input(confdir: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mailmaps.cli.main", "resolve", "-c", str(confdir), "--json", "-"],
        input="info@valias.example\n\nx@valias.example\n",
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    inputs = [json.loads(line)["input"] for line in result.stdout.splitlines()]
    assert inputs == ["info@valias.example", "x@valias.example"]


def test_trace_for_people(confdir: Path) -> None:
    result = mailmaps("resolve", "-c", str(confdir), "info@valias.example")
    assert result.returncode == 0
    assert "\033[" not in result.stdout  # no colour when not on a terminal
    assert result.stdout.splitlines()[0] == "info@valias.example"
    assert "=> nobody@mx.example.com  [local]  local:mx.example.com  deliverable" in result.stdout


def test_errors_are_not_tracebacks(tmp_path: Path) -> None:
    result = mailmaps("resolve", "-c", str(tmp_path / "missing"), "x@example.com")
    assert result.returncode == 1
    assert result.stderr.startswith("mailmaps resolve: fatal: open ")
    assert "Traceback" not in result.stderr
    usage = mailmaps("frobnicate")
    assert usage.returncode == 2 and "usage: mailmaps" in usage.stderr
