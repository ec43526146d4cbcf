"""Postfix's smtpd_check vectors that need no DNS: smtpd_acl and smtpd_check_dsn.

Each ``.in`` file drives Postfix's ``smtpd_check`` test program: parameter settings, then
``client``, ``helo``, ``mail`` and ``rcpt`` commands, each answered with ``OK`` or the reply
text.  The harness below plays the same script against :class:`mailmaps.access.AccessPolicy`
and compares every answer with the ``.ref`` file (the log lines are left out).
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from mailmaps.access import AccessPolicy, NameStatus, Session
from mailmaps.config import MainConfig
from mailmaps.defaults import DEFAULTS
from tests.conftest import VECTORS, run_ours

SMTPD = VECTORS / "src" / "smtpd"

#: The test program's restriction-list commands and the parameters they set.
_LISTS = {
    "client_restrictions": "smtpd_client_restrictions",
    "helo_restrictions": "smtpd_helo_restrictions",
    "sender_restrictions": "smtpd_sender_restrictions",
    "relay_restrictions": "smtpd_relay_restrictions",
    "recipient_restrictions": "smtpd_recipient_restrictions",
    "etrn_restrictions": "smtpd_etrn_restrictions",
}


class Script:
    """The smtpd_check test program's state: parameters, restriction classes, session."""

    def __init__(self, table_dir: Path) -> None:
        self.table_dir = table_dir
        self.values: dict[str, str] = {
            "compatibility_level": "3.6",
            "myhostname": "mx.example.com",
            "mydomain": "example.com",
            "local_recipient_maps": "",
            "alias_maps": "",
            "virtual_alias_maps": "",
            "mynetworks": "",
            "relay_domains": "",
            **{param: "" for param in _LISTS.values()},
        }
        self.classes: dict[str, str] = {}
        self.session = Session(client_name="localhost", client_address="127.0.0.1")
        self.policy: AccessPolicy | None = None

    def _policy(self) -> AccessPolicy:
        if self.policy is None:
            values = dict(self.values)
            values.update(self.classes)
            values["smtpd_restriction_classes"] = " ".join(self.classes)
            self.policy = AccessPolicy(MainConfig(values), check_required=False)
        return self.policy

    def _set(self, name: str, value: str) -> None:
        if self.policy is not None:
            self.policy.close()
            self.policy = None
        value = value.replace("./smtpd_check_access", str(self.table_dir / "smtpd_check_access"))
        if name == "restriction_class":
            class_name, _, definition = value.partition(",")
            self.classes[class_name] = definition
        else:
            if DEFAULTS.get(name) in ("yes", "no") and value in ("0", "1"):
                value = "yes" if value == "1" else "no"  # the test program's numbers
            self.values[_LISTS.get(name, name)] = value

    def run(self, line: str) -> str:
        words = shlex.split(line, posix=False)
        if len(words) in (3, 4) and words[0] == "client":
            status = NameStatus(int(words[3])) if len(words) == 4 else None
            if status is None and words[1] == "unknown":
                status = NameStatus.TEMP
            self.session = Session(
                client_name=words[1],
                client_address=words[2],
                client_name_status=status,
                helo=self.session.helo,
                sender=self.session.sender,
            )
            return self._answer(self._policy().check_client(self.session).reply)
        if len(words) != 2:
            return "bad command"
        command, arg = words
        if command == "helo":
            reply = self._policy().check_helo(_with(self.session, helo=arg)).reply
            self.session = _with(self.session, helo=arg)
            return self._answer(reply)
        if command in ("mail", "rcpt"):
            address = arg[1:-1] if arg.startswith("<") and arg.endswith(">") else arg
            if command == "mail":
                self.session = _with(self.session, sender=address)
                return self._answer(self._policy().check_mail(self.session).reply)
            decision = self._policy().check_rcpt(_with(self.session, recipient=address))
            return self._answer(decision.reply)
        self._set(command, arg)
        return "OK"

    @staticmethod
    def _answer(reply: str) -> str:
        return reply if reply[0] in "45" else "OK"


def _with(session: Session, **changes: str | None) -> Session:
    from dataclasses import replace

    return replace(session, **changes)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def table_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("smtpd")
    (directory / "main.cf").write_text("")
    (directory / "smtpd_check_access").write_bytes((SMTPD / "smtpd_check_access").read_bytes())
    result = run_ours("postmap", ["-c", str(directory), f"hash:{directory}/smtpd_check_access"])
    assert result.status == 0, result.err
    return directory


@pytest.mark.parametrize("name", ["smtpd_acl", "smtpd_check_dsn"])
def test_vector(name: str, table_dir: Path) -> None:
    script = Script(table_dir)
    ours: list[str] = []
    for line in (SMTPD / f"{name}.in").read_text().splitlines():
        ours.append(f">>> {line}")
        if line.startswith("#") or not line.strip():
            continue
        ours.append(script.run(line))
    ref = (SMTPD / f"{name}.ref").read_text().splitlines()
    want = [line for line in ref if not line.startswith("./smtpd_check:")]
    assert [line.rstrip() for line in ours] == [line.rstrip() for line in want]
