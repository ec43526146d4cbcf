"""Address masquerading, as cleanup(8) does it (``src/cleanup/cleanup_masquerade.c``).

``masquerade_domains = foo.example, !sub.foo.example`` turns ``user@host.foo.example`` into
``user@foo.example``: the first listed domain that is a *parent* of the address's domain
replaces it.  A domain equal to a listed one is left alone and ends the search; ``!domain``
(an odd number of ``!``) ends the search without rewriting, so it protects that domain's
subdomains from the entries after it.  Order matters.  Local parts listed in
``masquerade_exceptions`` (a string match list) are never masqueraded.  Comparison is on
case-folded domains, and the result uses the listed domain's folded form.

The address is in external (quoted) form; :meth:`Masquerade.internal` handles the internal
form the way ``cleanup_masquerade_internal()`` does (quote, masquerade, unquote).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from mailmaps.errors import LookupFailed
from mailmaps.rfc822 import quote_local, unquote_local
from mailmaps.text import fold

__all__ = ["Masquerade", "MasqueradeResult"]


@dataclass(frozen=True, slots=True)
class MasqueradeResult:
    """What masquerading did to one address.

    :ivar address: the address, rewritten or not.
    :ivar changed: whether a parent domain replaced the address's domain.
    :ivar deferred: a ``masquerade_exceptions`` table lookup failed: Postfix does not accept
        the message ("map lookup problem -- message not accepted, try again later"), though
        it goes on masquerading as if the name were not an exception.
    """

    address: str
    changed: bool
    deferred: bool = False


class Masquerade:
    """``masquerade_domains`` and ``masquerade_exceptions`` ready to apply.

    :param domains: the items of ``masquerade_domains``, in order (``!`` prefixes included).
    :param is_exception: whether a local part is in ``masquerade_exceptions``; it may raise
        :class:`~mailmaps.errors.LookupFailed` when a table in the list fails.
    :param utf8: ``smtputf8_enable``: fold domains with full Unicode case folding.
    """

    def __init__(
        self,
        domains: Sequence[str],
        is_exception: Callable[[str], bool] | None = None,
        *,
        utf8: bool = True,
    ) -> None:
        self._utf8 = utf8
        self._is_exception = is_exception
        self._domains: list[tuple[str, bool]] = []
        for item in domains:
            stripped = item.lstrip("!")
            truncate = (len(item) - len(stripped)) % 2 == 0
            folded = fold(stripped, utf8)
            if folded:
                self._domains.append((folded, truncate))

    def external(self, address: str) -> MasqueradeResult:
        """Masquerade ``address`` in external (quoted) form."""
        at = address.rfind("@")
        if at < 0:
            return MasqueradeResult(address, False)
        deferred = False
        if self._is_exception is not None:
            try:
                if self._is_exception(address[:at]):
                    return MasqueradeResult(address, False)
            except LookupFailed:
                deferred = True
        domain = fold(address[at + 1 :], self._utf8)
        for masq, truncate in self._domains:
            if masq == domain:
                break
            if len(masq) < len(domain) and domain.endswith("." + masq):
                if truncate:
                    return MasqueradeResult(address[: at + 1] + masq, True, deferred)
                break
        return MasqueradeResult(address, False, deferred)

    def internal(self, address: str) -> MasqueradeResult:
        """Masquerade ``address`` in internal (unquoted) form."""
        result = self.external(quote_local(address))
        return MasqueradeResult(unquote_local(result.address), result.changed, result.deferred)
