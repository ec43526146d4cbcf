"""DNS as access decisions see it: a resolver the caller provides (mailmaps does no DNS)."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

# --- DNS ----------------------------------------------------------------------------------------


class DnsStatus(enum.Enum):
    """The outcome of a DNS query (``DNS_*``)."""

    OK = "ok"
    NOT_FOUND = "not found"
    RETRY = "retry"
    NULLMX = "nullmx"
    INVALID = "invalid"
    POLICY = "policy"


@dataclass(frozen=True, slots=True)
class DnsAnswer:
    """A DNS answer: the status and, when OK, the records as ``(type, value)`` pairs (MX
    values are ``"preference host"``, A and AAAA values addresses)."""

    status: DnsStatus
    records: tuple[tuple[str, str], ...] = ()


class DnsResolver(Protocol):
    """What access decisions ask of DNS: the records of the first of ``types`` that has any
    (``dns_lookup_l()`` with "stop on the first success")."""

    def query(self, name: str, types: Sequence[str]) -> DnsAnswer:
        """Look up ``name`` for each of ``types`` in turn (``A``, ``AAAA``, ``MX``, ``NS``,
        ``TXT``) and answer with the first that has records."""
        ...


class NoDns:
    """A resolver without DNS: every query is a temporary failure, as on a server whose DNS
    is unreachable.  ``reject_unknown_*`` restrictions then answer "try again later"."""

    def query(self, name: str, types: Sequence[str]) -> DnsAnswer:
        return DnsAnswer(DnsStatus.RETRY)


class StaticDns:
    """A resolver that answers from a fixed table, for tests and offline checks.

    :param records: name -> {type: [values]}; a name not listed does not exist.  An MX value
        of ``"0 ."`` is a null MX.
    """

    def __init__(self, records: Mapping[str, Mapping[str, Sequence[str]]]) -> None:
        self._records = {name.lower().rstrip("."): dict(types) for name, types in records.items()}

    def query(self, name: str, types: Sequence[str]) -> DnsAnswer:
        entry = self._records.get(name.lower().rstrip("."))
        if entry is None:
            return DnsAnswer(DnsStatus.NOT_FOUND)
        for rrtype in types:
            values = entry.get(rrtype.upper(), ())
            if rrtype.upper() == "MX" and list(values) == ["0 ."]:
                return DnsAnswer(DnsStatus.NULLMX)
            if values:
                return DnsAnswer(DnsStatus.OK, tuple((rrtype.upper(), v) for v in values))
        return DnsAnswer(DnsStatus.NOT_FOUND)
