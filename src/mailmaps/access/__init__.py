"""smtpd access decisions: restriction lists, access(5) tables and restriction classes.

An :class:`AccessPolicy` is built once from a main.cf (tables opened, lists parsed) and then
answers, for a :class:`Session` (client, HELO, SASL login, sender, recipient), what Postfix 3.7's
smtpd would reply, as a :class:`Decision` with the reply text, the restriction and table entry
that decided, and a trace of every restriction and lookup.  It follows ``smtpd_check.c``:

* the restriction lists ``smtpd_{client,helo,sender,relay,recipient,etrn,data,
  end_of_data}_restrictions`` with ``smtpd_delay_reject``, ``smtpd_restriction_classes``,
  ``warn_if_reject``, ``defer_if_permit``/``defer_if_reject`` and the implicit
  ``reject_unlisted_sender``/``reject_unlisted_recipient``;
* access(5) tables through ``check_*_access``: the lookup order for host names, addresses and
  mail addresses, every action, restriction classes in a table's answer, and the enhanced
  status codes Postfix rewrites between sender and recipient (``smtpd_dsn_fix.c``);
* the restrictions that need no network, and those that need DNS through a
  :class:`DnsResolver` the caller provides (the default, :class:`NoDns`, answers every query
  with a temporary failure, as a server without DNS would).

The stage methods (:meth:`AccessPolicy.check_client`, ..., :meth:`~AccessPolicy.check_rcpt`)
are Postfix's ``smtpd_check_*()`` functions; :meth:`AccessPolicy.decide` adds what smtpd does
around them for one RCPT TO (address syntax, ``smtpd_helo_required``, the ``postmaster``
exception, stages rejected before RCPT when ``smtpd_delay_reject = no``).
"""

from mailmaps.access._dns import DnsAnswer, DnsResolver, DnsStatus, NoDns, StaticDns
from mailmaps.access._model import AccessEvent, Decision, NameStatus, Session, smtpd_dsn_fix
from mailmaps.access._policy import AccessPolicy

__all__ = [
    "AccessEvent",
    "AccessPolicy",
    "Decision",
    "DnsAnswer",
    "DnsResolver",
    "DnsStatus",
    "NameStatus",
    "NoDns",
    "Session",
    "StaticDns",
    "smtpd_dsn_fix",
]
