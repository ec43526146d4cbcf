"""A private, loopback-only real Postfix, for differential tests of address resolution.

Postfix's address verification (``sendmail -bv``) is the oracle for what mailmaps' resolver
predicts: Postfix runs the message through cleanup (canonical, masquerading, virtual alias
expansion), trivial-rewrite (classes, transports, nexthops) and the delivery agents in
verification mode, and mails a delivery status report that names every final recipient with its
outcome.  :class:`PostfixInstance` runs such a Postfix in a temporary directory and turns those
reports into :class:`Verdict` values::

    with PostfixInstance(tmp_path, {"mydestination": "$myhostname"}) as postfix:
        verdicts = postfix.verify(["alice", "bob@relay.example"])

It needs root and Postfix 3.7 (Debian's ``postfix`` package).  The instance listens on no TCP
port, and every setting that makes Postfix connect somewhere is checked before it starts: the
relayhost and the nexthops of main.cf's transports must be bracketed loopback addresses, because
verification really connects to them (``check_nexthop``).  Tables the test writes are the test's
responsibility: run their transport values through :func:`check_nexthop` too.

The reports go to ``root``'s mailbox in the instance's spool, so the configuration under test
must leave ``root`` alone (no alias, canonical or virtual entry for it), and must not set
``home_mailbox``, ``mailbox_command`` or ``mailbox_transport``, which would move that mailbox.
"""

from __future__ import annotations

import ipaddress
import mailbox
import os
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from email.message import Message
from pathlib import Path
from types import TracebackType
from typing import Any, Self

__all__ = ["SAFE_SETTINGS", "PostfixInstance", "UnsafeConfiguration", "Verdict", "check_nexthop"]

#: Settings every instance gets: no listener, no DNS, loopback only, no notices, quick timeouts.
SAFE_SETTINGS: Mapping[str, str] = {
    "inet_interfaces": "loopback-only",
    "inet_protocols": "ipv4",
    "smtp_dns_support_level": "disabled",
    "lmtp_dns_support_level": "disabled",
    "smtp_connect_timeout": "1s",
    "lmtp_connect_timeout": "1s",
    "notify_classes": "",
    "biff": "no",
    "maillog_file_prefixes": "/",
}

#: Defaults the test may override: a fixed host name and a relayhost where nothing listens.
DEFAULT_SETTINGS: Mapping[str, str] = {
    "compatibility_level": "3.6",
    "myhostname": "mx.example.com",
    "relayhost": "[127.0.0.1]:2",
    "alias_maps": "",
    "alias_database": "",
}

#: Settings that would move root's mailbox, where the reports arrive.
_FORBIDDEN = (
    "home_mailbox",
    "mailbox_command",
    "mailbox_transport",
    "mailbox_command_maps",
    "mailbox_transport_maps",
)

#: Services of the instance's master.cf: what verification needs, none of them chrooted, and
#: no ``inet`` listener (several instances can run at once).
_MASTER_CF = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
  -o syslog_name=postfix/$service_name
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""

_SAFE_HOST = re.compile(r"\[([^\]]*)\](?::\d+)?")


class UnsafeConfiguration(ValueError):
    """The configuration would make the test Postfix connect beyond loopback."""


def check_nexthop(value: str, what: str = "nexthop") -> None:
    """Refuse a transport value or nexthop that could reach beyond loopback.

    Accepts ``[127.0.0.3]``, ``[127.0.0.3]:2525``, ``[::1]``, and ``transport:`` values whose
    nexthop is one of those, ``error:``/``retry:``/``discard:`` texts, and a transport name
    without a nexthop (``local``, ``virtual``).  An empty nexthop on an ``smtp``/``lmtp``/
    ``relay`` transport is refused: it means "the recipient's domain", a DNS lookup.

    :raises UnsafeConfiguration: ``value`` names a host or a non-loopback address.
    """
    transport, colon, nexthop = value.partition(":")
    if not colon or value.startswith("["):
        transport, nexthop = "", value
    if transport in ("error", "retry", "discard"):
        return
    if colon and transport in ("local", "virtual") and not nexthop:
        return
    if not colon and transport == "" and value in ("local", "virtual", "error", "discard"):
        return
    match = _SAFE_HOST.fullmatch(nexthop.strip())
    if match is None:
        raise UnsafeConfiguration(f"{what} {value!r}: not a bracketed loopback address")
    try:
        address = ipaddress.ip_address(match.group(1).removeprefix("ipv6:"))
    except ValueError:
        raise UnsafeConfiguration(f"{what} {value!r}: not an IP address") from None
    if not address.is_loopback:
        raise UnsafeConfiguration(f"{what} {value!r}: not a loopback address")


@dataclass(frozen=True, slots=True)
class Verdict:
    """One final recipient of a delivery status report (``message/delivery-status`` block).

    :ivar recipient: ``Final-Recipient`` without its ``rfc822;`` type.
    :ivar action: ``deliverable`` or ``undeliverable``.
    :ivar status: the enhanced status code (``2.0.0``, ``5.1.1``).
    :ivar diagnostic: ``Diagnostic-Code`` without ``X-Postfix;``, unfolded.
    """

    recipient: str
    action: str
    status: str
    diagnostic: str

    @property
    def agent(self) -> str | None:
        """The delivery agent the diagnostic names (``delivery via local: ...``), if any."""
        match = re.match(r"delivery via ([^:]+): ", self.diagnostic)
        return match.group(1) if match else None

    @property
    def text(self) -> str:
        """The diagnostic without its ``delivery via AGENT:`` prefix."""
        match = re.match(r"delivery via [^:]+: ", self.diagnostic)
        return self.diagnostic[match.end() :] if match else self.diagnostic

    @property
    def connected_to(self) -> str | None:
        """For a network transport, the nexthop Postfix tried, as ``[addr]:port``."""
        match = re.search(r"connect to [^\[\s]*\[([^\]]+)\]:(\d+)", self.diagnostic)
        return f"[{match.group(1)}]:{match.group(2)}" if match else None


def _unfold(text: str) -> str:
    return re.sub(r"\r?\n[ \t]+", " ", text).strip()


def _verdicts(report: Message) -> tuple[str | None, list[Verdict]]:
    """The envelope id and the per-recipient verdicts of one delivery status report."""
    for part in report.walk():
        if part.get_content_type() != "message/delivery-status":
            continue
        blocks = part.get_payload()
        if not isinstance(blocks, list) or not blocks:
            break
        messages = [block for block in blocks if isinstance(block, Message)]
        if not messages:
            break
        envid = messages[0].get("Original-Envelope-Id")
        found = []
        for block in messages[1:]:
            recipient = _unfold(str(block.get("Final-Recipient", "")))
            found.append(
                Verdict(
                    recipient=recipient.partition(";")[2].strip(),
                    action=str(block.get("Action", "")),
                    status=str(block.get("Status", "")),
                    diagnostic=_unfold(str(block.get("Diagnostic-Code", ""))).removeprefix(
                        "X-Postfix; "
                    ),
                )
            )
        return (str(envid) if envid is not None else None), found
    return None, []


class PostfixInstance:
    """A real Postfix with its own configuration, queue and mail spool under ``root``.

    :param root: an empty directory (made traversable); everything lives below it.
    :param settings: main.cf settings of the configuration under test.  They come after
        :data:`DEFAULT_SETTINGS` (so they may replace them) and before :data:`SAFE_SETTINGS`
        (so they cannot).
    :param services: extra master.cf lines (a transport under test: ``"mybox unix - - n - -
        smtp"``).
    :param smtpd: run an SMTP server on a free port of 127.0.0.1 (:attr:`smtpd_port`), which
        :meth:`converse` talks to; give it ``smtpd_authorized_xclient_hosts = 127.0.0.1`` to
        impersonate other clients with XCLIENT.
    :raises UnsafeConfiguration: a setting could send traffic beyond loopback, or would move
        the mailbox where reports arrive.
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        settings: Mapping[str, str] | None = None,
        *,
        services: Iterable[str] = (),
        smtpd: bool = False,
    ) -> None:
        self.root = Path(root).resolve()
        #: The port smtpd listens on (127.0.0.1), or ``None``.
        self.smtpd_port = _free_port() if smtpd else None
        self.settings = dict(DEFAULT_SETTINGS)
        self.settings.update(settings or {})
        _check_settings(self.settings)
        self.services = list(services)
        self.config_dir = self.root / "etc"
        self.spool = self.root / "mail"
        self.log = self.root / "log"
        self._running = False
        self._serial = 0
        for sub in ("etc", "queue", "data", "mail"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        for parent in self.root.parents:
            if not parent.stat().st_mode & 0o001:
                raise ValueError(
                    f"{parent}: the postfix user cannot reach {self.root} through it "
                    "(pytest's tmp_path is private; use a directory under /tmp)"
                )
        os.chmod(self.spool, 0o1777)
        shutil.chown(self.root / "data", "postfix")
        self._write_config()

    def _write_config(self) -> None:
        lines = [
            f"queue_directory = {self.root / 'queue'}",
            f"data_directory = {self.root / 'data'}",
            f"mail_spool_directory = {self.spool}",
            f"maillog_file = {self.log}",
        ]
        lines += [f"{name} = {value}" for name, value in self.settings.items()]
        lines += [f"{name} = {value}" for name, value in SAFE_SETTINGS.items()]
        self.write("main.cf", "\n".join(lines) + "\n")
        services = list(self.services)
        if self.smtpd_port is not None:
            services.append(f"127.0.0.1:{self.smtpd_port} inet n - n - - smtpd")
        self.write("master.cf", _MASTER_CF + "".join(f"{line}\n" for line in services))

    def write(self, name: str, text: str | bytes) -> Path:
        """Write a file into the configuration directory, back-dated so Postfix trusts it."""
        path = self.config_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, str):
            text = text.encode()
        path.write_bytes(text)
        past = time.time() - 60
        os.utime(path, (past, past))
        return path

    def write_table(
        self, name: str, text: str, *, map_type: str = "lmdb", tool: str = "postmap"
    ) -> Path:
        """Write a table's source into the configuration directory and build it with Postfix's
        own ``postmap`` (or ``postalias``); returns the source file's path."""
        path = self.write(name, text)
        self.run(tool, f"{map_type}:{path}")
        return path

    def run(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a Postfix tool (``postmap``, ``postalias``, ``postconf``) on this configuration."""
        return subprocess.run(
            [f"/usr/sbin/{tool}", "-c", str(self.config_dir), *args],
            capture_output=True,
            text=True,
            check=check,
            timeout=60,
        )

    def start(self) -> None:
        """Start the instance (``postfix start``), after Postfix's own configuration check."""
        result = self.run("postfix", "start", check=False)
        if result.returncode != 0:
            raise RuntimeError(f"postfix start failed: {result.stderr.strip() or self._log_tail()}")
        self._running = True

    def stop(self) -> None:
        """Stop the instance; nothing is left running."""
        if self._running:
            self.run("postfix", "stop", check=False)
            self._running = False

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def verify(
        self, addresses: Sequence[str], *, timeout: float = 20.0
    ) -> dict[str, list[Verdict] | None]:
        """Probe each address with ``sendmail -bv`` and collect the reports.

        :returns: for each address, the verdicts of its report in the report's order, or
            ``None`` when no report came within ``timeout`` seconds (Postfix defers a probe it
            cannot accept, e.g. on a virtual alias loop).
        """
        envids: dict[str, str] = {}
        env = dict(os.environ, MAIL_CONFIG=str(self.config_dir))
        for address in addresses:
            self._serial += 1
            envid = f"mailmaps-{self._serial}"
            envids[envid] = address
            subprocess.run(
                ["/usr/sbin/sendmail", "-bv", "-V", envid, "--", address],
                env=env,
                capture_output=True,
                check=True,
                timeout=60,
            )
        found: dict[str, list[Verdict] | None] = dict.fromkeys(addresses)
        pending = set(envids)
        deadline = time.monotonic() + timeout
        while pending and time.monotonic() < deadline:
            time.sleep(0.1)
            for envid, verdicts in self._reports():
                if envid in pending:
                    found[envids[envid]] = verdicts
                    pending.discard(envid)
        return found

    def converse(self, commands: Sequence[str], *, timeout: float = 20.0) -> list[str]:
        """Connect to the instance's smtpd, read the greeting, send each command and collect its
        reply (a multi-line reply as its last line's code and all texts joined by newlines);
        ``QUIT`` is sent at the end.  The first reply in the list is the greeting.

        :raises RuntimeError: smtpd did not greet (a fatal configuration error: see the log).
        """
        if self.smtpd_port is None:
            raise RuntimeError("this instance runs no smtpd")
        replies: list[str] = []
        with socket.create_connection(("127.0.0.1", self.smtpd_port), timeout=timeout) as sock:
            stream = sock.makefile("rb")
            try:
                replies.append(_read_reply(stream))
            except (OSError, EOFError) as exc:
                raise RuntimeError(f"smtpd did not greet: {exc}\n{self._log_tail()}") from exc
            for command in [*commands, "QUIT"]:
                sock.sendall(command.encode("utf-8", "surrogateescape") + b"\r\n")
                try:
                    replies.append(_read_reply(stream))
                except EOFError:
                    replies.append("")
                    break
        return replies[:-1] if replies and len(replies) > len(commands) + 1 else replies

    def _reports(self) -> list[tuple[str, list[Verdict]]]:
        path = self.spool / "root"
        if not path.exists():
            return []
        out = []
        for message in mailbox.mbox(path, create=False):
            envid, verdicts = _verdicts(message)
            if envid is not None:
                out.append((envid, verdicts))
        return out


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _read_reply(stream: Any) -> str:
    """One SMTP reply: ``NNN text`` lines up to the one with a space after the code."""
    lines = []
    while True:
        raw = stream.readline()
        if not raw:
            raise EOFError("connection closed")
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        lines.append(line)
        if len(line) < 4 or line[3] != "-":
            return "\n".join(lines)


def _check_settings(settings: Mapping[str, str]) -> None:
    for name in _FORBIDDEN:
        if settings.get(name):
            raise UnsafeConfiguration(f"{name} would move root's mailbox, where reports arrive")
    relayhost = settings.get("relayhost", "")
    if not relayhost:
        raise UnsafeConfiguration("an empty relayhost sends mail to the recipient's domain")
    check_nexthop(relayhost, "relayhost")
    for name in (
        "default_transport",
        "relay_transport",
        "fallback_transport",
        "sender_dependent_default_transport_maps",
        "smtp_fallback_relay",
        "fallback_relay",
    ):
        value = settings.get(name, "")
        if ":" in value and not value.startswith(("lmdb:", "inline:", "texthash:", "cdb:")):
            check_nexthop(value, name)
