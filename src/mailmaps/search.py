"""Looking up an address in tables: Postfix's search order, extensions and transport entries.

Every Postfix feature that maps an address (canonical, virtual, relocated, transport, the
sender-dependent maps, virtual mailboxes, access maps) searches its tables the same way
(``src/global/mail_addr_find.c``; SPEC §2):

1. ``user+ext@domain``, the whole address, in every table;
2. ``user@domain``, without the extension (``recipient_delimiter``);
3. ``user+ext`` and ``user``, when the domain is ``$myorigin`` or local;
4. ``@domain``;
5. ``domain`` and, optionally, its parents (``example.com`` or ``.example.com`` style);
6. ``user+ext@`` and ``user@``, whatever the domain;

each step only when the ones before found nothing, and which steps run is a :class:`Strategy`.
Only the whole address goes to pattern tables (regexp, pcre, cidr, ...): the partial keys of
steps 2 to 6 go to exact-key tables only.  Keys are queried in external (quoted) form, and for
the legacy "external first" form also unquoted when that differs.  A table that fails stops the
search: the :class:`~mailmaps.errors.LookupFailed` reaches the caller, never "not found".

:func:`mail_addr_map` turns a value into addresses (``mail_addr_map.c``,
``mail_addr_crunch.c``), and :func:`transport_lookup` applies a transport(5) entry
(``src/trivial-rewrite/transport.c``).
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from mailmaps.rewrite import RewriteSettings, rewrite_address
from mailmaps.rfc822 import (
    DOTTED_ADDRESS,
    PLAIN_LOCAL_PART,
    QuoteFlags,
    TokenType,
    externalize,
    parse_nodes,
    quote_local,
    unquote_local,
)

__all__ = [
    "Form",
    "SearchSettings",
    "Searchable",
    "Strategy",
    "mail_addr_crunch",
    "mail_addr_find",
    "mail_addr_find_key",
    "mail_addr_map",
    "split_addr",
    "strip_addr",
    "transport_lookup",
    "transport_strategy",
]


try:
    from mailmaps._speedups import find_plain as _find_plain
except ImportError:  # pragma: no cover - built without the C extension
    _find_plain = None  # type: ignore[assignment]

#: A key that quoting leaves alone in either form: a dot-atom local part, maybe a plain domain.
_PLAIN_KEY = re.compile(f"{PLAIN_LOCAL_PART}(?:@[A-Za-z0-9.-]*)?")


class Strategy(enum.IntFlag):
    """Which keys :func:`mail_addr_find` tries (``MA_FIND_*``)."""

    FULL = 1 << 0
    NOEXT = 1 << 1
    LOCALPART_IF_LOCAL = 1 << 2
    LOCALPART_AT_IF_LOCAL = 1 << 3
    AT_DOMAIN = 1 << 4
    DOMAIN = 1 << 5
    PDMS = 1 << 6
    PDDMDS = 1 << 7
    LOCALPART_AT = 1 << 8
    #: canonical(5), virtual(5), relocated(5): full, no extension, local part, @domain.
    DEFAULT = FULL | NOEXT | LOCALPART_IF_LOCAL | AT_DOMAIN


_FULL = int(Strategy.FULL)
_NOEXT = int(Strategy.NOEXT)
_LOCALPART_IF_LOCAL = int(Strategy.LOCALPART_IF_LOCAL)
_LOCALPART_AT_IF_LOCAL = int(Strategy.LOCALPART_AT_IF_LOCAL)
_AT_DOMAIN = int(Strategy.AT_DOMAIN)
_DOMAIN = int(Strategy.DOMAIN)
_PDMS = int(Strategy.PDMS)
_PDDMDS = int(Strategy.PDDMDS)
_LOCALPART_AT = int(Strategy.LOCALPART_AT)


#: transport(5)'s search: the address, without extension, the domain and its parents.
_TRANSPORT_PDMS = Strategy.FULL | Strategy.NOEXT | Strategy.DOMAIN | Strategy.PDMS
_TRANSPORT_PDDMDS = Strategy.FULL | Strategy.NOEXT | Strategy.DOMAIN | Strategy.PDDMDS


class Form(enum.Enum):
    """The form of an address going in, queried, or coming out (``MA_FORM_*``)."""

    INTERNAL = "internal"
    EXTERNAL = "external"
    EXTERNAL_FIRST = "external-first"
    INTERNAL_FIRST = "internal-first"


class Searchable(Protocol):
    """A list of tables searched in order (:class:`~mailmaps.maps.MapList`)."""

    title: str

    def lookup(self, key: str, *, fixed_only: bool = False) -> str | None:
        """The first table's value for ``key``, or ``None``; raises LookupFailed."""
        ...


@dataclass(frozen=True, slots=True)
class SearchSettings:
    """The main.cf parameters address searches depend on (expanded values).

    :param is_local: whether a domain is this machine's (``resolve_local()``); it may raise
        LookupFailed.
    :param rewrite: how results are made canonical (``canon_addr_external()``); ``None``
        leaves them as they are.
    """

    recipient_delimiter: str = ""
    myorigin: str = ""
    is_local: Callable[[str], bool] = field(default=lambda domain: False)
    owner_request_special: bool = True
    double_bounce_sender: str = "double-bounce"
    rewrite: RewriteSettings | None = None
    #: The arguments of the C search that come from these settings.
    plain_args: tuple[str, bool, Callable[[str], bool], str, str] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        args = (
            self.recipient_delimiter,
            self.owner_request_special,
            self.is_local,
            self.myorigin.lower(),
            self.double_bounce_sender.lower(),
        )
        object.__setattr__(self, "plain_args", args)


def split_addr(
    localpart: str,
    delimiters: str,
    *,
    owner_request_special: bool = True,
    double_bounce_sender: str = "double-bounce",
) -> tuple[str, str | None]:
    """Split ``localpart`` at the first delimiter character (``split_addr()``).

    :returns: the user and the extension without its delimiter (``("foo", "bar")``), or
        ``(localpart, None)`` when there is no extension: no delimiter, a delimiter first,
        ``postmaster``, ``mailer-daemon``, the double-bounce sender, and when ``-`` is a
        delimiter and ``owner_request_special`` holds, ``owner-*`` and ``*-request``.
    """
    if not delimiters:
        return localpart, None
    lower = localpart.lower()
    if lower in ("postmaster", "mailer-daemon", double_bounce_sender.lower()):
        return localpart, None
    if owner_request_special and "-" in delimiters:
        if lower.startswith("owner-"):
            return localpart, None
        if len(lower) > 8 and lower.endswith("-request"):
            return localpart, None
    for i, ch in enumerate(localpart):
        if ch in delimiters:
            if i == 0:
                return localpart, None
            return localpart[:i], localpart[i + 1 :]
    return localpart, None


def strip_addr(
    address: str,
    delimiters: str,
    *,
    owner_request_special: bool = True,
    double_bounce_sender: str = "double-bounce",
) -> tuple[str | None, str | None]:
    """The address without its extension, and the extension with its delimiter
    (``strip_addr_internal()``): ``user+foo@x`` gives ``("user@x", "+foo")``.

    :returns: ``(None, None)`` when the address has no extension.
    """
    if not delimiters or not any(ch in address for ch in delimiters):
        return None, None
    local, at, domain = address.rpartition("@")
    if not at:
        local = address
    user, extension = split_addr(
        local,
        delimiters,
        owner_request_special=owner_request_special,
        double_bounce_sender=double_bounce_sender,
    )
    if extension is None:
        return None, None
    saved = local[len(user) :]
    return user + (at + domain if at else ""), saved


def _search_in_c(
    maps: Searchable, address: str, bits: int, settings: SearchSettings, with_key: bool
) -> Any:
    """``find_plain()`` (``_search.c``) over a :class:`~mailmaps.maps.MapList` that no trace
    records; ``NotImplemented`` when the Python search must answer."""
    lookups = getattr(maps, "lookups", None)
    if _find_plain is None or lookups is None or getattr(maps, "recording", True):
        return NotImplemented
    fixed = maps.fixed_lookups  # type: ignore[attr-defined]
    return _find_plain(lookups, fixed, address, bits, settings.plain_args, with_key)


def _quoted(address: str, with_domain: bool) -> str:
    flags = QuoteFlags.DEFAULT if with_domain else QuoteFlags.DEFAULT | QuoteFlags.BARE_LOCALPART
    return quote_local(address, flags)


def _find_addr(
    maps: Searchable, address: str, fixed_only: bool, with_domain: bool, query: Form
) -> str | None:
    """One key, queried in the form ``query`` asks for (``find_addr()``)."""
    if with_domain and query is not Form.INTERNAL_FIRST and _PLAIN_KEY.fullmatch(address):
        return maps.lookup(address, fixed_only=fixed_only)  # quoting changes nothing
    if query in (Form.EXTERNAL, Form.EXTERNAL_FIRST):
        quoted = _quoted(address, with_domain)
        result = maps.lookup(quoted, fixed_only=fixed_only)
        if result is not None or query is not Form.EXTERNAL_FIRST or quoted == address:
            return result
        return maps.lookup(address, fixed_only=fixed_only)
    result = maps.lookup(address, fixed_only=fixed_only)
    if result is not None or query is not Form.INTERNAL_FIRST:
        return result
    quoted = _quoted(address, with_domain)
    if quoted == address:
        return None
    return maps.lookup(quoted, fixed_only=fixed_only)


def mail_addr_find(
    maps: Searchable,
    address: str,
    settings: SearchSettings,
    *,
    strategy: Strategy = Strategy.DEFAULT,
    in_form: Form = Form.INTERNAL,
    query_form: Form = Form.EXTERNAL_FIRST,
    out_form: Form = Form.EXTERNAL,
) -> str | None:
    """The value for ``address``, searched in Postfix's order (``mail_addr_find_opt()``).

    :raises LookupFailed: a table failed; the search stopped there.
    """
    return mail_addr_find_ext(
        maps,
        address,
        settings,
        strategy=strategy,
        in_form=in_form,
        query_form=query_form,
        out_form=out_form,
    )[0]


def mail_addr_find_ext(
    maps: Searchable,
    address: str,
    settings: SearchSettings,
    *,
    strategy: Strategy = Strategy.DEFAULT,
    in_form: Form = Form.INTERNAL,
    query_form: Form = Form.EXTERNAL_FIRST,
    out_form: Form = Form.EXTERNAL,
) -> tuple[str | None, str | None]:
    """:func:`mail_addr_find`, and the extension (with its delimiter) when the match was on a
    key without it (``user@domain``, ``user``); ``None`` otherwise."""
    bits = int(strategy)  # plain int tests: IntFlag arithmetic is slow
    # Addresses that need no quoting, in C; it hands anything else back (NotImplemented).
    found = _search_in_c(maps, address, bits, settings, False)
    if found is not NotImplemented:
        if found[0] is not None and out_form is Form.INTERNAL:
            return unquote_local(found[0]), found[1]
        return found  # type: ignore[no-any-return]
    full = unquote_local(address) if in_form is Form.EXTERNAL else address
    if not getattr(maps, "has_fixed", True):
        bits &= _FULL  # every other key goes to exact-key tables only, and there are none
    bare: str | None = None
    saved_ext: str | None = None
    if settings.recipient_delimiter and bits & _NOEXT:
        bare, saved_ext = strip_addr(
            full,
            settings.recipient_delimiter,
            owner_request_special=settings.owner_request_special,
            double_bounce_sender=settings.double_bounce_sender,
        )
    extension: str | None = None
    result: str | None = None
    if bits & _FULL:
        result = _find_addr(maps, full, False, True, query_form)
    if result is None and bare is not None:
        result = _find_addr(maps, bare, True, True, query_form)
        if result is not None:
            extension = saved_ext
    at = full.rfind("@")
    if result is None and at >= 0 and bits & (_LOCALPART_IF_LOCAL | _LOCALPART_AT_IF_LOCAL):
        domain = full[at + 1 :]
        if domain.lower() == settings.myorigin.lower() or settings.is_local(domain):
            if bits & _LOCALPART_IF_LOCAL:
                result, extension = _find_local(maps, full, bare, saved_ext, 0, query_form)
            if result is None and bits & _LOCALPART_AT_IF_LOCAL:
                result, extension = _find_local(maps, full, bare, saved_ext, 1, query_form)
    if result is None and at >= 0 and bits & _AT_DOMAIN:
        result = maps.lookup(full[at:], fixed_only=True)
    if result is None and at >= 0 and bits & _DOMAIN:
        name = full[at + 1 :]
        while name:
            result = maps.lookup(name, fixed_only=True)
            if result is not None or not bits & (_PDMS | _PDDMDS):
                break
            dot = name.find(".", 1)
            if dot < 0:
                break
            name = name[dot:] if bits & _PDDMDS else name[dot + 1 :]
    if result is None and bits & _LOCALPART_AT:
        result, extension = _find_local(maps, full, bare, saved_ext, 1, query_form)
    if result is not None and out_form is Form.INTERNAL:
        result = unquote_local(result)
    return result, extension


def mail_addr_find_key(
    maps: Searchable, address: str, settings: SearchSettings, *, strategy: Strategy
) -> tuple[str | None, str | None] | None:
    """:func:`mail_addr_find` in C, with the key that found the value: ``(value, key)``,
    ``(None, None)`` for no value, or ``None`` when the C search cannot answer this one (the
    caller then searches with :func:`mail_addr_find`, recording the keys it tries).

    :raises: nothing: a table that fails hands the search back (``None``).
    """
    found = _search_in_c(maps, address, int(strategy), settings, True)
    if found is NotImplemented:
        return None
    return found[0], found[2]


def _find_local(
    maps: Searchable,
    full: str,
    bare: str | None,
    saved_ext: str | None,
    keep_at: int,
    query: Form,
) -> tuple[str | None, str | None]:
    """``user+ext`` then ``user`` (or with ``@``: ``user+ext@``, ``user@``)."""
    with_domain = keep_at == 1
    at = full.rfind("@")
    key = full[: at + keep_at] if at >= 0 else full
    result = _find_addr(maps, key, True, with_domain, query)
    if result is None and bare is not None:
        bare_at = bare.rfind("@")
        key = bare[: bare_at + keep_at] if bare_at >= 0 else bare
        result = _find_addr(maps, key, True, with_domain, query)
        if result is not None:
            return result, saved_ext
    return result, None


def mail_addr_map(
    maps: Searchable,
    address: str,
    settings: SearchSettings,
    *,
    propagate: bool,
    in_form: Form = Form.INTERNAL,
    query_form: Form = Form.EXTERNAL_FIRST,
    out_form: Form = Form.INTERNAL,
) -> list[str] | None:
    """The addresses ``address`` maps to, or ``None`` (``mail_addr_map_opt()``).

    A value ``@otherdomain`` keeps the local part (without the extension); each address of the
    value is made canonical; with ``propagate``, an extension that the match did not include is
    put back into every result (``propagate_unmatched_extensions``).

    :raises LookupFailed: a table failed, or the value holds no address at all (a temporary
        error, as Postfix makes it).
    """
    from mailmaps.errors import TemporaryLookupError

    internal = unquote_local(address) if in_form is Form.EXTERNAL else address
    value, extension = mail_addr_find_ext(
        maps,
        internal,
        settings,
        in_form=Form.INTERNAL,
        query_form=query_form,
        out_form=Form.EXTERNAL,
    )
    if value is None:
        return None
    if value.startswith("@"):
        at = internal.rfind("@")
        local = internal[:at] if at >= 0 else internal
        if extension is not None:
            local = local[: len(local) - len(extension)]
        value = quote_local(local + value)
    results = mail_addr_crunch(
        value,
        extension if propagate else None,
        in_form=Form.EXTERNAL,
        out_form=out_form,
        rewrite=settings.rewrite,
    )
    if not results:
        title = getattr(maps, "title", "") or "table"
        raise TemporaryLookupError(
            f'{title} lookup of {address} returns non-address result "{value}"'
        )
    return results


def mail_addr_crunch(
    text: str,
    extension: str | None,
    *,
    in_form: Form = Form.EXTERNAL,
    out_form: Form = Form.INTERNAL,
    rewrite: RewriteSettings | None = None,
) -> list[str]:
    """Split a table value into canonical addresses, with ``extension`` (delimiter included)
    put before each address's last ``@`` (``mail_addr_crunch_opt()``).

    An empty value or ``<>`` is the null address.
    """
    if in_form is Form.INTERNAL:
        text = quote_local(text)
    if DOTTED_ADDRESS.fullmatch(text) is not None:
        # One plain user@host.domain: parsing and rewriting would give it back unchanged.
        if extension is not None:
            at = text.rfind("@")
            text = text[:at] + extension + text[at:]
        return [quote_local(text) if out_form is Form.EXTERNAL else text]
    if text == "" or text == "<>":
        text = '""'
    out = []
    tree = parse_nodes(text)
    for node in tree if tree is not None else ():
        if node.type is not TokenType.ADDR:
            continue
        external = externalize(node.head)
        if rewrite is not None:
            external = rewrite_address(external, "local", rewrite)
        internal = unquote_local(external)
        if extension is not None:
            at = internal.rfind("@")
            internal = internal + extension if at < 0 else internal[:at] + extension + internal[at:]
        out.append(quote_local(internal) if out_form is Form.EXTERNAL else internal)
    return out


@dataclass(frozen=True, slots=True)
class TransportEntry:
    """A parsed transport(5) value: the transport and nexthop, either possibly empty."""

    transport: str
    nexthop: str

    @classmethod
    def parse(cls, value: str) -> TransportEntry:
        transport, _, nexthop = value.partition(":")
        return cls(transport, nexthop)

    def apply(self, domain: str, transport: str, nexthop: str) -> tuple[str, str]:
        """The new (transport, nexthop) over the current ones (``update_entry()``)."""
        if not self.transport:
            return transport, self.nexthop or nexthop
        if self.nexthop:
            return self.transport, self.nexthop
        if self.transport in ("error", "retry"):
            return self.transport, "Address is undeliverable"
        return self.transport, domain


def transport_strategy(parent_matches_subdomains: bool) -> Strategy:
    """transport(5)'s search: the address, without extension, the domain and its parents
    (``example.com`` style when ``transport_maps`` is in parent_domain_matches_subdomains,
    else ``.example.com``)."""
    return _TRANSPORT_PDMS if parent_matches_subdomains else _TRANSPORT_PDDMDS


def transport_lookup(
    maps: Searchable,
    address: str,
    domain: str,
    transport: str,
    nexthop: str,
    settings: SearchSettings,
    *,
    parent_matches_subdomains: bool = False,
    wildcard: Callable[[], str | None] | None = None,
) -> tuple[str, str] | None:
    """Apply ``transport_maps`` to a resolved recipient (``transport_lookup()``).

    Keys: ``user+ext@domain``, ``user@domain``, ``domain`` and its parents (``.parent``
    unless ``transport_maps`` is in ``parent_domain_matches_subdomains``), then ``*``.

    :param wildcard: the ``*`` entry's value, as the caller caches it (Postfix looks it up
        again every 30 seconds); default: looked up every time.
    :returns: the new ``(transport, nexthop)``, or ``None`` when no entry applies.
    :raises LookupFailed: a table failed.
    """
    if not address:
        return None
    strategy = transport_strategy(parent_matches_subdomains)
    value = mail_addr_find(maps, address, settings, strategy=strategy)
    if value is not None:
        return TransportEntry.parse(value).apply(domain, transport, nexthop)
    star = wildcard() if wildcard is not None else maps.lookup("*")
    if star is None:
        return None
    entry = TransportEntry.parse(star)
    # The wildcard is parsed once with an empty domain, then applied to the recipient.
    wild_transport, wild_nexthop = entry.apply("", "", "")
    return TransportEntry(wild_transport, wild_nexthop).apply(domain, transport, nexthop)
