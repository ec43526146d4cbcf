"""Sessions and decisions: what access decisions take and give, and smtpd's reply words."""

from __future__ import annotations

import enum
import json
import logging
from dataclasses import dataclass
from typing import Any, Literal

from mailmaps.dsn import dsn_valid

log = logging.getLogger("mailmaps")

# Reply classes: the words smtpd puts in "<x>: CLASS rejected: ..." (smtpd_dsn_fix.h).
CLIENT = "Client host"
REV_CLIENT = "Unverified Client host"
CCERT = "Client certificate"
SASL_USER = "SASL login name"
HELO = "Helo command"
SENDER = "Sender address"
RECIPIENT = "Recipient address"
ETRN = "Etrn command"
DATA = "Data command"
EOD = "End-of-data"

# Restriction results (SMTPD_CHECK_*).
_DUNNO, _OK, _REJECT = 0, 1, 2

# Error classes (MAIL_ERROR_*): software, resource and data errors are never warnings only.
_POLICY, _PROTOCOL, _BOUNCE, _SOFTWARE, _RESOURCE, _DATA = (
    "policy",
    "protocol",
    "bounce",
    "software",
    "resource",
    "data",
)


class NameStatus(enum.IntEnum):
    """How the client's host name lookup ended (``SMTPD_PEER_CODE_*``)."""

    OK = 2
    TEMP = 4
    PERM = 5
    FORGED = 6


# --- sessions and decisions ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Session:
    """What smtpd knows about an SMTP session when it checks a command.

    :ivar client_address: the client's IP address (``1.2.3.4``, ``2001:db8::1``).
    :ivar client_name: the verified client host name, or ``unknown``.
    :ivar reverse_client_name: the unverified (reverse) name; default: ``client_name``.
    :ivar client_name_status: how the name lookup ended; default: OK for a name, PERM for
        ``unknown``.
    :ivar helo: the HELO/EHLO argument, or ``None`` before HELO.
    :ivar sender: the MAIL FROM address (internal form, ``""`` for ``<>``), or ``None``.
    :ivar recipient: the RCPT TO address (internal form), or ``None``.
    :ivar sasl_username: the SASL login name, if the client authenticated.
    :ivar ccert_fingerprint: the client certificate fingerprint, if any.
    :ivar ccert_pubkey_fingerprint: the client public key fingerprint, if any.
    :ivar ccert_subject: the client certificate's CommonName (named in replies).
    :ivar encrypted: whether the session uses TLS.
    :ivar protocol: ``SMTP`` or ``ESMTP``.
    :ivar smtputf8: whether MAIL FROM asked for SMTPUTF8.
    :ivar rcpt_count: recipients accepted so far in this transaction.
    :ivar etrn_domain: the ETRN argument, for :meth:`AccessPolicy.check_etrn`.
    :ivar client_port, server_address, server_port: sent to policy services, nothing else.
    """

    client_address: str = "127.0.0.1"
    client_name: str = "unknown"
    reverse_client_name: str | None = None
    client_name_status: NameStatus | None = None
    helo: str | None = None
    sender: str | None = None
    recipient: str | None = None
    sasl_username: str | None = None
    sasl_method: str | None = None
    ccert_fingerprint: str | None = None
    ccert_pubkey_fingerprint: str | None = None
    ccert_subject: str | None = None
    encrypted: bool = False
    protocol: str = "ESMTP"
    smtputf8: bool = False
    rcpt_count: int = 0
    etrn_domain: str | None = None
    client_port: str = ""
    server_address: str = ""
    server_port: str = ""

    @property
    def name_status(self) -> NameStatus:
        """The client name status, defaulted."""
        if self.client_name_status is not None:
            return self.client_name_status
        return NameStatus.PERM if self.client_name == "unknown" else NameStatus.OK

    @property
    def namaddr(self) -> str:
        """``name[address]``, as smtpd names the client in replies and logs."""
        return f"{self.client_name}[{self.client_address}]"


@dataclass(frozen=True, slots=True)
class AccessEvent:
    """One step of a decision, for the trace.

    :ivar stage: the SMTP stage (``RCPT``).
    :ivar restriction: the restriction being evaluated (``check_recipient_access``).
    :ivar table: the table consulted (``hash:/etc/postfix/access``), if any.
    :ivar key: the key looked up, if any.
    :ivar value: what the table answered (``None``: not found).
    :ivar result: ``OK``, ``REJECT``, ``DUNNO`` or a note.
    """

    stage: str
    restriction: str
    table: str | None = None
    key: str | None = None
    value: str | None = None
    result: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        """The event as the JSON trace shows it."""
        return {
            "stage": self.stage,
            "restriction": self.restriction,
            "table": self.table,
            "key": self.key,
            "value": self.value,
            "result": self.result,
        }


@dataclass(frozen=True, slots=True)
class Decision:
    """What smtpd answers.

    :ivar stage: the stage that decided (``RCPT``; ``CONNECT``, ``HELO`` or ``MAIL`` when an
        earlier stage rejected).
    :ivar action: ``permit`` (a restriction said OK), ``dunno`` (nothing decided: accepted),
        ``reject`` (5xx), ``defer`` (4xx), ``discard`` (accepted and thrown away), or
        ``hangup`` (an access table said HANGUP: smtpd drops the connection without a reply,
        and ``reply`` is empty).
    :ivar reply: the SMTP reply, as smtpd sends it (``554 5.7.1 <x@y>: Relay access denied``,
        ``250 2.1.5 Ok``).
    :ivar decided_by: the restriction that decided (``check_recipient_access
        hash:/etc/postfix/access``), or ``None``.
    :ivar entry: for a table answer, ``(table, key, value)``.
    :ivar hold, filter, redirect, bcc, prepend: side effects that access tables requested.
    :ivar warnings: ``reject_warning`` texts from ``warn_if_reject``, and warnings logged.
    :ivar trace: every restriction and lookup, in order.
    """

    stage: str
    action: Literal["permit", "dunno", "reject", "defer", "discard", "hangup"]
    reply: str
    decided_by: str | None = None
    entry: tuple[str, str, str] | None = None
    hold: str | None = None
    filter: str | None = None
    redirect: str | None = None
    bcc: tuple[str, ...] = ()
    prepend: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()
    trace: tuple[AccessEvent, ...] = ()

    @property
    def code(self) -> int | None:
        """The SMTP reply code (``None`` after HANGUP)."""
        return int(self.reply[:3]) if self.reply else None

    @property
    def dsn(self) -> str | None:
        """The enhanced status code of the reply, if it has one."""
        n = dsn_valid(self.reply[4:])
        return self.reply[4 : 4 + n] if n else None

    def as_dict(self) -> dict[str, Any]:
        """The decision as ``mailmaps check-access --json`` prints it."""
        return {
            "reply": self.reply,
            "action": self.action,
            "stage": self.stage,
            "decided_by": self.decided_by,
            "entry": list(self.entry) if self.entry is not None else None,
            "hold": self.hold,
            "filter": self.filter,
            "redirect": self.redirect,
            "bcc": list(self.bcc),
            "prepend": list(self.prepend),
            "warnings": list(self.warnings),
            "trace": [event.as_dict() for event in self.trace],
        }

    def to_json(self) -> str:
        """One line of JSON (:meth:`as_dict`)."""
        return json.dumps(self.as_dict(), separators=(",", ":"))


def smtpd_dsn_fix(status: str, reply_class: str) -> str:
    """The enhanced status code smtpd sends for ``status`` when rejecting a ``reply_class``:
    address codes (``X.1.Y``) are turned into their sender or recipient counterparts, and
    into ``X.0.0`` for anything that is not an address (``smtpd_dsn_fix()``)."""
    if not (status[:1].isdigit() and status[1:4] == ".1."):
        return status
    micro = status[4:]
    if reply_class == SENDER:
        result = _SENDER_DSN.get(micro, "4.1.0")
    elif reply_class == RECIPIENT:
        result = _RECIPIENT_DSN.get(micro, "4.1.0")
    else:
        result = "4.0.0"
    if status[2:] != result[2:]:
        log.info(
            "mapping DSN status %s into %s status %s%s", status, reply_class, status[0], result[1:]
        )
    return status[0] + result[1:]


_SENDER_DSN = {
    "1": "4.1.7",
    "2": "4.1.8",
    "3": "4.1.7",
    "4": "4.1.7",
    "5": "4.1.0",
    "6": "4.1.7",
    "7": "4.1.7",
    "8": "4.1.8",
}
_RECIPIENT_DSN = {
    "1": "4.1.1",
    "2": "4.1.2",
    "3": "4.1.3",
    "4": "4.1.4",
    "5": "4.1.5",
    "6": "4.1.6",
    "7": "4.1.3",
    "8": "4.1.2",
}
#: SND_DSN: the sender status smtpd uses for unverified and unknown senders.
_SND_DSN = "4.1.7"
