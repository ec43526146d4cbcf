"""local(8)'s decisions in verification mode: aliases, owner- lists, :include:, .forward,
commands and files, the passwd check, mailbox kinds, luser_relay and unknown users."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from mailmaps.local import (
    Delivery,
    LocalAgent,
    LocalSettings,
    LocalTables,
    PasswdEntry,
)
from mailmaps.search import split_addr

HOST = "mx.example.com"
USERS = {
    name: PasswdEntry(name, uid, uid, f"/home/{name}", "/bin/sh")
    for uid, name in enumerate(["root", "bin", "daemon", "alice", "nobody"])
}


def resolve(address: str) -> tuple[str, str]:
    """Local addresses stay local; anything with a remote domain goes to smtp."""
    if "@" not in address:
        return "local", f"{address}@{HOST}"
    if address.lower().endswith("@" + HOST):
        return "local", address
    return "smtp", address


def agent(aliases: dict[str, str], **settings: object) -> LocalAgent:
    base = LocalSettings(myhostname=HOST, recipient_delimiter="+", forward_path=())
    return LocalAgent(
        replace(base, **settings),  # type: ignore[arg-type]
        LocalTables(aliases=lambda key: aliases.get(key)),
        resolve=resolve,
        canonicalize=lambda a: a if "@" in a else f"{a}@{HOST}",
        passwd=USERS.get,
    )


def outcomes(result: list[Delivery]) -> list[tuple[str, str, str, str]]:
    return [(d.recipient, d.status, d.dsn, d.text) for d in result]


def test_single_member_alias_reports_the_member() -> None:
    got = agent({"webmaster": "nobody"}).deliver([f"webmaster@{HOST}"])
    assert outcomes(got) == [(f"nobody@{HOST}", "deliverable", "2.0.0", "delivers to mailbox")]


def test_list_members_are_delivered_in_process_without_an_owner() -> None:
    got = agent({"staff": "bin, daemon"}).deliver([f"staff@{HOST}"])
    assert [d.text for d in got] == ["delivers to mailbox"] * 2
    assert [d.recipient for d in got] == [f"bin@{HOST}", f"daemon@{HOST}"]


def test_an_owner_alias_makes_members_forwarded() -> None:
    got = agent({"staff": "bin, far@remote.example", "owner-staff": "alice"}).deliver(
        [f"staff@{HOST}"]
    )
    assert outcomes(got) == [
        (f"bin@{HOST}", "deliverable", "2.0.0", f"forwards to bin@{HOST}"),
        ("far@remote.example", "deliverable", "2.0.0", "forwards to far@remote.example"),
    ]


def test_commands_and_files_name_the_alias() -> None:
    got = agent({"ops": '"|/bin/echo hello", /var/log/x'}).deliver([f"OPS@{HOST}"])
    assert outcomes(got) == [
        (f"OPS@{HOST}", "deliverable", "2.0.0", "delivers to command: /bin/echo hello"),
        (f"OPS@{HOST}", "deliverable", "2.0.0", "delivers to file: /var/log/x"),
    ]


def test_include_files_may_not_run_commands_by_default(tmp_path: Path) -> None:
    members = tmp_path / "members"
    members.write_text("# comment\n|/bin/true\nbin\n")
    got = agent({"list": f":include:{members}"}).deliver([f"list@{HOST}"])
    assert outcomes(got) == [
        (f"list@{HOST}", "undeliverable", "5.7.1", "mail to command is restricted"),
        (f"bin@{HOST}", "deliverable", "2.0.0", f"forwards to bin@{HOST}"),
    ]
    allowed = agent({"list": f":include:{members}"}, allow_mail_to_commands=frozenset({"include"}))
    assert outcomes(allowed.deliver([f"list@{HOST}"]))[0][3] == "delivers to command: /bin/true"


def test_unknown_users_and_extensions() -> None:
    a = agent({"webmaster": "nobody"})
    assert outcomes(a.deliver([f"bob+p@{HOST}"])) == [
        (f"bob+p@{HOST}", "undeliverable", "5.1.1", 'unknown user: "bob"')
    ]
    # The alias matched without the extension, and "alias" is not propagated by default.
    assert a.deliver([f"webmaster+ext@{HOST}"])[0].recipient == f"nobody@{HOST}"
    propagating = agent(
        {"webmaster": "nobody"},
        propagate_unmatched_extensions=frozenset({"canonical", "virtual", "alias"}),
    )
    assert propagating.deliver([f"webmaster+ext@{HOST}"])[0].recipient == f"nobody+ext@{HOST}"


def test_luser_relay_uses_the_user_without_extension() -> None:
    got = agent({}, luser_relay="lost+$user@relay.example").deliver([f"bob+x@{HOST}"])
    assert outcomes(got) == [
        (
            "lost+bob@relay.example",
            "deliverable",
            "2.0.0",
            "forwards to lost+bob@relay.example",
        )
    ]


def test_mailbox_kinds() -> None:
    assert agent({}, home_mailbox="Maildir/").deliver([f"bin@{HOST}"])[0].text == (
        "delivers to maildir"
    )
    assert agent({}, mailbox_command="/usr/bin/procmail").deliver([f"bin@{HOST}"])[0].text == (
        "delivers to command: /usr/bin/procmail"
    )
    passed = agent({}, mailbox_transport="lmtp:[127.0.0.1]").deliver([f"bin@{HOST}"])[0]
    assert passed.transport == "lmtp:[127.0.0.1]"


def test_dot_forward_files(tmp_path: Path) -> None:
    (tmp_path / "alice.forward").write_text('\\alice, bin, "|/usr/bin/vacation alice"\n')
    a = agent({}, forward_path=(f"{tmp_path}/$user.forward",))
    got = outcomes(a.deliver([f"alice@{HOST}"]))
    assert got == [
        ("alice@" + HOST, "deliverable", "2.0.0", "delivers to mailbox"),
        (f"bin@{HOST}", "deliverable", "2.0.0", f"forwards to bin@{HOST}"),
        (f"alice@{HOST}", "deliverable", "2.0.0", "delivers to command: /usr/bin/vacation alice"),
    ]


def test_alias_loops_and_self_references() -> None:
    got = agent({"a": "a, bin"}).deliver([f"a@{HOST}"])
    # An alias that names itself delivers to the user of that name (unknown here).
    assert outcomes(got)[0] == (f"a@{HOST}", "undeliverable", "5.1.1", 'unknown user: "a"')
    assert outcomes(got)[1][0] == f"bin@{HOST}"
    looping = agent({"x": "y", "y": "x"}).deliver([f"x@{HOST}"])
    assert looping[-1].dsn in ("5.4.6", "5.1.1")


def test_split_addr() -> None:
    assert split_addr("foo+bar", "+") == ("foo", "bar")
    assert split_addr("foo-bar+x", "+-") == ("foo", "bar+x")
    assert split_addr("foo+", "+") == ("foo", "")
    assert split_addr("+foo", "+") == ("+foo", None)
    assert split_addr("owner-list", "-") == ("owner-list", None)
    assert split_addr("postmaster+x", "+") == ("postmaster", "x")
    assert split_addr("Postmaster", "+") == ("Postmaster", None)
