"""The client side of Postfix's SMTP access policy delegation (SMTPD_POLICY_README).

``check_policy_service SERVER`` sends the server one request, ``name=value`` lines ended by an
empty line, and reads back attributes the same way; ``action=...`` is an access(5) answer.  The
server is ``inet:host:port`` or ``unix:/path`` (a relative path is under ``queue_directory``),
optionally with per-server settings: ``{ inet:127.0.0.1:9998, timeout=10s,
default_action=DUNNO, policy_context=x, try_limit=1 }``.  When the server cannot be reached,
does not answer in time, or answers without an action, the answer is the default action
(``smtpd_policy_service_default_action``), as in Postfix.
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mailmaps.errors import ConfigError
from mailmaps.spec import split_list

__all__ = ["PolicyService", "parse_time"]

log = logging.getLogger("mailmaps")

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
#: The largest request or reply accepted, in bytes.
_MAX_REPLY = 1 << 20


def parse_time(text: str, default_unit: str = "s") -> float:
    """A Postfix time value (``100s``, ``5m``, ``1h``; a bare number is in ``default_unit``).

    :raises ConfigError: not a time value.
    """
    value = text.strip().lower()
    unit = default_unit
    if value and value[-1] in _UNITS:
        value, unit = value[:-1], value[-1]
    if not value.isdigit():
        raise ConfigError(f"bad time value: {text!r}")
    return float(int(value) * _UNITS[unit])


@dataclass(frozen=True, slots=True)
class PolicyService:
    """One policy server and its settings.

    :ivar endpoint: ``inet:host:port`` or ``unix:path``.
    :ivar timeout: seconds to connect, send and read the reply.
    :ivar default_action: the answer when the server fails.
    :ivar policy_context: sent as ``policy_context``.
    :ivar try_limit: attempts before giving up.
    :ivar retry_delay: seconds between attempts.
    """

    endpoint: str
    timeout: float = 100.0
    default_action: str = "451 4.3.5 Server configuration problem"
    policy_context: str = ""
    try_limit: int = 2
    retry_delay: float = 1.0

    @classmethod
    def parse(
        cls,
        spec: str,
        defaults: Mapping[str, str],
        queue_directory: str = "/var/spool/postfix",
    ) -> PolicyService:
        """The service that a ``check_policy_service`` argument names.

        :param defaults: ``smtpd_policy_service_*`` settings by their short names (``timeout``,
            ``default_action``, ``policy_context``, ``try_limit``, ``retry_delay``).
        :raises ConfigError: a malformed argument.
        """
        settings = dict(defaults)
        text = spec.strip()
        if text.startswith("{") and text.endswith("}"):
            items = split_list(text[1:-1])
            if not items:
                raise ConfigError(f"check_policy_service: empty server specification: {spec}")
            text = items[0]
            for item in items[1:]:
                name, eq, value = item.partition("=")
                if not eq:
                    raise ConfigError(f"check_policy_service {spec}: expected name=value: {item}")
                name = name.strip()
                if name not in (
                    "timeout",
                    "default_action",
                    "policy_context",
                    "try_limit",
                    "retry_delay",
                    "max_idle",
                    "max_ttl",
                    "request_limit",
                ):
                    raise ConfigError(f"check_policy_service {spec}: unknown attribute: {name}")
                settings[name] = value.strip()
        kind, _, where = text.partition(":")
        if kind not in ("inet", "unix") or not where:
            raise ConfigError(f"check_policy_service: need inet:host:port or unix:path: {text}")
        if kind == "unix" and not where.startswith("/"):
            text = f"unix:{Path(queue_directory) / where}"
        try_limit = settings.get("try_limit", "2").strip()
        if not try_limit.isdigit():
            raise ConfigError(f"check_policy_service {spec}: bad try_limit: {try_limit}")
        return cls(
            endpoint=text,
            timeout=parse_time(settings.get("timeout", "100s")),
            default_action=settings.get("default_action", "451 4.3.5 Server configuration problem"),
            policy_context=settings.get("policy_context", ""),
            try_limit=max(1, int(try_limit)),
            retry_delay=parse_time(settings.get("retry_delay", "1s")),
        )

    def query(self, attributes: Sequence[tuple[str, str]]) -> str | None:
        """Send one request and return the ``action`` the server answers, or ``None`` when the
        server fails or answers without one (the caller then uses :attr:`default_action`)."""
        request = "".join(f"{name}={_clean(value)}\n" for name, value in attributes) + "\n"
        for attempt in range(self.try_limit):
            if attempt:
                time.sleep(self.retry_delay)
            try:
                reply = self._exchange(request.encode("utf-8", "surrogateescape"))
            except (OSError, ValueError) as exc:
                log.warning("problem talking to server %s: %s", self.endpoint, exc)
                continue
            action = reply.get("action")
            if action is None:
                log.warning("%s: policy server reply has no action", self.endpoint)
            return action
        return None

    def _exchange(self, request: bytes) -> dict[str, str]:
        kind, _, where = self.endpoint.partition(":")
        sock: socket.socket
        if kind == "unix":
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: str | tuple[str, int] = where
        else:
            host, sep, port = where.rpartition(":")
            if not sep or not port.isdigit():
                raise ValueError(f"bad inet endpoint {where}")
            host = host.strip("[]")
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
            address = (host, int(port))
        with sock:
            sock.settimeout(self.timeout)
            sock.connect(address)
            sock.sendall(request)
            data = b""
            while not (data.endswith(b"\n\n") or data == b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    raise ValueError("server closed the connection before the end of the reply")
                data += chunk
                if len(data) > _MAX_REPLY:
                    raise ValueError("reply too long")
        attributes: dict[str, str] = {}
        for line in data.decode("utf-8", "surrogateescape").split("\n"):
            if not line:
                break
            name, eq, value = line.partition("=")
            if not eq:
                raise ValueError(f"malformed attribute: {line[:80]!r}")
            attributes.setdefault(name, value)
        return attributes


def _clean(value: str) -> str:
    """A value on one line: the protocol has no escapes, so a newline cannot be sent."""
    return value.replace("\n", " ").replace("\r", " ")
