"""Rewriting an address to canonical form, as Postfix's trivial-rewrite(8) does it.

This is the ``rewrite`` half of trivial-rewrite (``src/trivial-rewrite/rewrite.c``), which
cleanup(8) asks for every envelope address and, in the right context, every header address
(SPEC §5.1).  Two contexts exist:

* ``local``: a missing domain is ``$myorigin``, a domain without a dot gets ``.$mydomain``;
* ``remote``: both are ``$remote_header_rewrite_domain``.

The steps, on the address's tokens: an empty address stays empty and a lone ``@`` becomes
empty; a source route (``@a,@b:user@site``) is dropped; an address without ``@`` has its bang
path swapped (``site!user`` becomes ``user@site``, at the first ``!``; ``swap_bangpath``), or
else its last ``%`` promoted to ``@`` (``allow_percent_hack``), or else ``@origin`` appended
(``append_at_myorigin``); a domain without a dot (and not a ``[literal]``) gets ``.domain``
(``append_dot_mydomain``); and one trailing dot is removed unless it follows ``.`` or ``@``.

Postfix's vector ``global/rewrite_clnt`` runs through :func:`rewrite_address` in the tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from mailmaps.rfc822 import PLAIN_ADDRESS, Node, TokenType, externalize, scan_addr, scan_nodes

__all__ = ["RewriteContext", "RewriteSettings", "rewrite_address", "rewrite_tree"]


#: Where an address is rewritten: envelope and trusted headers (``local``), or headers from
#: elsewhere (``remote``).
RewriteContext = Literal["local", "remote"]


@dataclass(frozen=True, slots=True)
class RewriteSettings:
    """The main.cf parameters rewriting depends on (expanded values; Postfix 3.7's defaults
    for ``compatibility_level = 3.6``, except the domains, which depend on the host)."""

    myorigin: str = ""
    mydomain: str = ""
    remote_header_rewrite_domain: str = ""
    swap_bangpath: bool = True
    allow_percent_hack: bool = True
    append_at_myorigin: bool = True
    append_dot_mydomain: bool = False

    def origin(self, context: RewriteContext) -> str:
        """The domain appended to an address without one."""
        return self.myorigin if context == "local" else self.remote_header_rewrite_domain

    def domain(self, context: RewriteContext) -> str:
        """The domain appended to a domain without a dot."""
        return self.mydomain if context == "local" else self.remote_header_rewrite_domain


def rewrite_address(address: str, context: RewriteContext, settings: RewriteSettings) -> str:
    """Rewrite ``address`` (external, quoted form) as trivial-rewrite answers a rewrite request.

    An empty string is returned unchanged (Postfix warns "null address" and does the same).
    """
    if not address:
        return address
    # user@domain in plain form: no rule changes it, unless the domain lacks a dot and
    # append_dot_mydomain is on.
    if PLAIN_ADDRESS.fullmatch(address) is not None and (
        "." in address[address.find("@") :]
        or not settings.append_dot_mydomain
        or not settings.domain(context)
    ):
        return address
    tree = scan_addr(address)
    if tree.head is None:
        return ""
    rewrite_tree(tree, context, settings)
    return externalize(tree)


def rewrite_tree(tree: Node, context: RewriteContext, settings: RewriteSettings) -> None:
    """Rewrite the members of ``tree`` (an ``ADDR`` node with at least one member) in place
    (``rewrite_tree()``); the resolver applies the same steps to the addresses it resolves."""
    head, tail = tree.head, tree.tail
    assert head is not None and tail is not None, "rewrite_tree: empty tree"
    if head is tail and tail.type is TokenType.QSTRING and tail.text == "":
        return  # the empty address
    if head is tail and tail.type == "@":
        tree.sub_keep_before(tail)
        tree.sub_append(Node(TokenType.QSTRING, ""))
        return
    # A source route: everything up to the first ':' (unless that is the last token).
    if head.type == "@":
        colon = head.find_type(":")
        if colon is not None and colon is not tail:
            tree.sub_keep_after(colon)
    tail = tree.tail
    assert tail is not None
    if tail.rfind_type("@") is None:
        _complete_local_form(tree, context, settings)
    _append_dot_domain(tree, settings.domain(context), settings)
    # A trailing dot goes, unless it follows a dot or an "@" (bogus forms stay as they are).
    tail = tree.tail
    if (
        tail is not None
        and tail.type == "."
        and tail.prev is not None
        and tail.prev.type not in (".", "@")
    ):
        tree.sub_keep_before(tail)


def _complete_local_form(tree: Node, context: RewriteContext, settings: RewriteSettings) -> None:
    """An address without ``@``: swap the bang path, or promote the percent hack, or append
    ``@origin``."""
    head, tail = tree.head, tree.tail
    assert head is not None and tail is not None
    bang = head.find_type("!") if settings.swap_bangpath else None
    if bang is not None:
        tree.sub_keep_before(bang)
        local = bang.cut_after()
        tree.sub_prepend(Node("@"))
        if local is not None:
            tree.sub_prepend(local)
        return
    percent = tail.rfind_type("%") if settings.allow_percent_hack else None
    if percent is not None:
        percent.type = "@"
        return
    origin = settings.origin(context)
    if settings.append_at_myorigin and origin:
        tree.sub_append(Node("@"))
        _append_scanned(tree, origin)


def _append_dot_domain(tree: Node, domain: str, settings: RewriteSettings) -> None:
    tail = tree.tail
    if not (settings.append_dot_mydomain and domain and tail is not None):
        return
    at = tail.rfind_type("@")
    if (
        at is None
        or at is tail
        or at.find_type(TokenType.DOMLIT) is not None
        or at.find_type(".") is not None
    ):
        return
    tree.sub_append(Node("."))
    _append_scanned(tree, domain)


def _append_scanned(tree: Node, text: str) -> None:
    nodes = scan_nodes(text)
    if nodes is not None:
        tree.sub_append(nodes)
