"""Postfix's RFC 822 tokenizer, parser and quoting, as postalias(1) and the resolver use them.

This is a port of the behaviour of Postfix 3.7 (no code or text is copied) of:

* ``tok822_scan()`` and ``tok822_scan_limit()`` (``src/global/tok822_parse.c``): a string in
  external (quoted) form becomes a flat list of tokens: atoms, quoted strings, comments, domain
  literals and single-character operators.  White space (only space, tab, CR and LF) separates
  tokens and is dropped.  Characters outside ASCII are ordinary atom characters, as bytes with the
  high bit set are in Postfix.
* ``tok822_parse()`` and ``tok822_parse_limit()`` (same file): the permissive address-list parser
  that groups the tokens of each address under an ``ADDR`` node, moves comments aside and inserts
  missing commas.
* ``tok822_scan_addr()`` (same file): the whole string as one ``ADDR`` node, without parsing.
* ``tok822_internalize()`` and ``tok822_externalize()`` (same file): tokens back to text, in
  internal (unquoted) or external (quoted) form, with the ``TOK822_STR_LINE`` and
  ``TOK822_STR_TRNC`` options as keyword arguments (``TOK822_STR_WIPE`` and ``TOK822_STR_TERM``
  are implied: every call returns a new string).
* the token list surgery of ``src/global/tok822_tree.c`` and ``tok822_find_type()`` /
  ``tok822_rfind_type()`` (``src/global/tok822_find.c``), as methods of :class:`Node`.
* ``quote_822_local_flags()`` and ``unquote_822_local()`` (``src/global/quote_822_local.c``),
  as :func:`quote_local` and :func:`unquote_local`.
* the key/value split of ``postalias()`` (``src/postalias/postalias.c``), as
  :func:`split_alias_line`.

There are two views of a token list.  :class:`Token` is an immutable value (a list of them is
what :func:`scan` and :func:`parse` return); :class:`Node` is the mutable, doubly linked
structure of Postfix's ``TOK822``, for code that rewrites addresses token by token the way the
resolver does.  :func:`internalize` and :func:`externalize` accept either.

Whether a space is put between two tokens depends on whether the token is a member of a group
(``tp->owner`` in C): members of an address are written without spaces.  Top-level tokens and
the members of a :func:`scan_addr` tree have no owner, and adjacent words among them are
separated by one space.  :class:`Node` keeps that owner exactly as the C list operations set it.

Text is ``str``; callers decode bytes with UTF-8 and ``surrogateescape``.  As in C, a string ends
at its first NUL character.  Lengths that Postfix measures in bytes (the 250-byte limit of
``TOK822_STR_TRNC``) are measured in UTF-8 bytes here.
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TypeAlias

__all__ = [
    "LEX_822_SPECIALS",
    "OPERATORS",
    "PLAIN_ADDRESS",
    "PLAIN_HOST_NAME",
    "PLAIN_LOCAL_PART",
    "Kind",
    "Node",
    "QuoteFlags",
    "Token",
    "TokenType",
    "externalize",
    "find_type",
    "internalize",
    "parse",
    "parse_nodes",
    "quote_local",
    "rfind_type",
    "scan",
    "scan_addr",
    "scan_nodes",
    "split_alias_line",
    "unquote_local",
]

log = logging.getLogger("mailmaps")

#: RFC 822 specials (``LEX_822_SPECIALS`` in ``lex_822.h``).
LEX_822_SPECIALS = '()<>@,;:\\".[]'
#: Characters that end an atom (``tok822_opchar``): the RFC 822 specials plus ``|``, ``%`` and
#: ``!``, which Postfix adds for aliases files, the percent hack and bang paths.  Of these, ``(``,
#: ``[`` and ``"`` open a comment, domain literal or quoted string, a backslash starts an atom,
#: and the others are operator tokens of their own.
OPERATORS = "|%!" + LEX_822_SPECIALS

# IS_SPACE_TAB_CR_LF() in lex_822.h: the only white space the tokenizer knows.  Vertical tab and
# form feed are not in it; they are control characters, which force an atom to be quoted.
_SPACE = frozenset(" \t\r\n")
_ATOM_STOP = _SPACE | frozenset(OPERATORS)

# tok822_externalize(): the most non-address text per address with TOK822_STR_TRNC, a guard
# against a Sendmail buffer overflow (CERT CA-2003-07).
_MAX_NONADDR_LENGTH = 250

_ENC = "utf-8"
_ERR = "surrogateescape"


class TokenType(enum.Enum):
    """Types of multi-character tokens (``TOK822_ATOM`` ... ``TOK822_STARTGRP`` in ``tok822.h``).

    Single-character operator tokens have the operator character itself as their type, as in C;
    see :data:`Kind`.
    """

    #: A run of characters that are not white space or operators; backslash escapes removed.
    ATOM = 256
    #: A quoted string, stored without its quotes and escapes; also an atom that needs quoting.
    QSTRING = 257
    #: A comment, stored verbatim in external form with its parentheses; it may nest.
    COMMENT = 258
    #: A domain literal, stored without its brackets and escapes.
    DOMLIT = 259
    #: A group of tokens that form one address (made by the parser and :func:`scan_addr`).
    ADDR = 260
    #: The ``:`` that starts a named group, as the parser recognizes it.
    STARTGRP = 261


#: A token's type: a :class:`TokenType`, or the one character of an operator token (``"@"``).
Kind: TypeAlias = TokenType | str

_WORDS = frozenset(
    [TokenType.ATOM, TokenType.QSTRING, TokenType.COMMENT, TokenType.DOMLIT, TokenType.ADDR]
)


@dataclass(frozen=True, slots=True)
class Token:
    """One token, as an immutable value.

    :ivar type: a :class:`TokenType`, or the operator character for an operator token.
    :ivar text: the contents of an atom, quoted string, comment or domain literal; empty for
        operators and groups.
    :ivar children: the members of an :attr:`TokenType.ADDR` group; empty for other tokens.
    """

    type: Kind
    text: str = ""
    children: tuple[Token, ...] = ()


class Node:
    """One token in a mutable, doubly linked token list or tree (``TOK822`` in ``tok822.h``).

    ``prev``/``next`` link peers; ``head``/``tail`` are the first and last member of a group;
    ``owner`` is the group a node belongs to, or ``None`` at the top level.  The methods mirror
    ``tok822_tree.c`` and ``tok822_find.c`` and keep the owner exactly as they do, because the
    owner decides where :func:`internalize` and :func:`externalize` put spaces.
    """

    __slots__ = ("head", "next", "owner", "prev", "tail", "text", "type")

    def __init__(self, type: Kind, text: str = "") -> None:
        """Make a detached node (``tok822_alloc()``).

        :param type: a :class:`TokenType`, or an operator character.
        :param text: the token contents, for atoms, quoted strings, comments and domain literals.
        """
        self.type: Kind = type
        self.text: str = text
        self.prev: Node | None = None
        self.next: Node | None = None
        self.head: Node | None = None
        self.tail: Node | None = None
        self.owner: Node | None = None

    def __repr__(self) -> str:
        return f"Node({self.type!r}, {self.text!r})"

    # --- tok822_tree.c -------------------------------------------------------------------

    def append(self, other: Node) -> Node:
        """Insert the list that starts at ``other`` after this node (``tok822_append()``).

        The inserted nodes get this node's owner.

        :returns: the last node of the inserted list.
        """
        after = self.next
        self.next = other
        other.prev = self
        other.owner = self.owner
        while other.next is not None:
            other = other.next
            other.owner = self.owner
        other.next = after
        if after is not None:
            after.prev = other
        return other

    def prepend(self, other: Node) -> Node:
        """Insert the list that starts at ``other`` before this node (``tok822_prepend()``).

        The inserted nodes get this node's owner.

        :returns: the last node of the inserted list.
        """
        before = self.prev
        if before is not None:
            before.next = other
        other.prev = before
        other.owner = self.owner
        while other.next is not None:
            other = other.next
            other.owner = self.owner
        other.next = self
        self.prev = other
        return other

    def cut_before(self) -> Node | None:
        """Split the list before this node (``tok822_cut_before()``).

        :returns: the node that preceded this one, now the end of the other list, or ``None``.
        """
        before = self.prev
        if before is not None:
            before.next = None
            self.prev = None
        return before

    def cut_after(self) -> Node | None:
        """Split the list after this node (``tok822_cut_after()``).

        :returns: the node that followed this one, now the start of the other list, or ``None``.
        """
        after = self.next
        if after is not None:
            after.prev = None
            self.next = None
        return after

    def unlink(self) -> Node | None:
        """Take this node out of its list (``tok822_unlink()``); its owner is left as it was.

        :returns: the node that preceded this one, or ``None``.
        """
        before, after = self.prev, self.next
        if before is not None:
            before.next = after
        if after is not None:
            after.prev = before
        self.prev = self.next = None
        return before

    def sub_append(self, other: Node) -> Node:
        """Append the list that starts at ``other`` to this group's members.

        Mirrors ``tok822_sub_append()``.

        :returns: the new last member.
        """
        if self.head is not None and self.tail is not None:
            self.tail = self.tail.append(other)
            return self.tail
        self.head = other
        other.owner = self
        while other.next is not None:
            other = other.next
            other.owner = self
        self.tail = other
        return other

    def sub_prepend(self, other: Node) -> Node:
        """Prepend the list that starts at ``other`` to this group's members.

        Mirrors ``tok822_sub_prepend()``, including its return values.

        :returns: the last inserted node.
        """
        if self.head is not None:
            last = self.head.prepend(other)
            self.head = other
            return last
        self.head = other
        other.owner = self
        while other.next is not None:
            other = other.next
            other.owner = self
        self.tail = other
        return other

    def sub_keep_before(self, member: Node) -> Node | None:
        """Keep the members before ``member``, detach the rest (``tok822_sub_keep_before()``).

        :returns: the old last member (the end of the detached list).
        """
        old_tail = self.tail
        self.tail = member.cut_before()
        if self.tail is None:
            self.head = None
        return old_tail

    def sub_keep_after(self, member: Node) -> Node | None:
        """Keep the members after ``member``, detach the rest (``tok822_sub_keep_after()``).

        :returns: the old first member (the start of the detached list).
        """
        old_head = self.head
        self.head = member.cut_after()
        if self.head is None:
            self.tail = None
        return old_head

    # --- tok822_find.c -------------------------------------------------------------------

    def find_type(self, kind: Kind) -> Node | None:
        """The first node of type ``kind`` from this node forward (``tok822_find_type()``)."""
        tp: Node | None = self
        while tp is not None and tp.type != kind:
            tp = tp.next
        return tp

    def rfind_type(self, kind: Kind) -> Node | None:
        """The first node of type ``kind`` from this node backward (``tok822_rfind_type()``)."""
        tp: Node | None = self
        while tp is not None and tp.type != kind:
            tp = tp.prev
        return tp

    # --- conversions ---------------------------------------------------------------------

    def __iter__(self) -> Iterator[Node]:
        """This node and its peers after it."""
        tp: Node | None = self
        while tp is not None:
            yield tp
            tp = tp.next

    def freeze(self) -> list[Token]:
        """This node and its peers after it, as :class:`Token` values (groups included)."""
        return [
            Token(tp.type, tp.text, tuple(tp.head.freeze()) if tp.head is not None else ())
            for tp in self
        ]

    @classmethod
    def thaw(cls, tokens: Sequence[Token]) -> Node | None:
        """Build a linked list from tokens; the members of each group are owned by the group.

        :returns: the first node, or ``None`` for no tokens.
        """
        first: Node | None = None
        last: Node | None = None
        for token in tokens:
            node = cls(token.type, token.text)
            if token.children:
                members = cls.thaw(token.children)
                if members is not None:
                    node.sub_append(members)
            if last is None:
                first = node
            else:
                last.append(node)
            last = node
        return first


def _c_string(text: str) -> str:
    """Text up to the first NUL, as C sees a string."""
    nul = text.find("\0")
    return text if nul < 0 else text[:nul]


def _collect(text: str, i: int, stop: frozenset[str]) -> tuple[str, int]:
    """Collect characters from ``text[i]`` until one in ``stop`` (the ``COLLECT`` macro).

    A backslash takes the next character literally (a backslash at the very end is dropped);
    white space is stored as a single space, escaped or not.

    :returns: the collected text and the index of the character that stopped collection.
    """
    out: list[str] = []
    n = len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            i += 1
            if i >= n:
                break
            ch = text[i]
        elif ch in stop:
            break
        out.append(" " if ch in _SPACE else ch)
        i += 1
    return "".join(out), i


def _comment(text: str, i: int) -> tuple[str, int]:
    """Collect a comment whose ``(`` precedes ``text[i]`` (``tok822_comment()``).

    Comments are kept in external form, parentheses and backslashes included, so that an escaped
    parenthesis survives; they nest, and an unterminated comment runs to the end of the text.
    """
    out = ["("]
    level = 1
    n = len(text)
    while i < n:
        ch = text[i]
        out.append(ch)
        i += 1
        if ch == "(":
            level += 1
        elif ch == ")":
            level -= 1
            if level == 0:
                break
        elif ch == "\\":
            if i >= n:
                break
            out.append(text[i])
            i += 1
    return "".join(out), i


def _atom_needs_quotes(text: str) -> bool:
    """Whether an atom must become a quoted string (``tok822_quote_atom()``).

    That is so when it holds a space, an ASCII control character, or an operator character (all
    of which it can only have got through a backslash).  Non-ASCII is left alone.
    """
    return any(ch == " " or ch < " " or ch == "\x7f" or ch in OPERATORS for ch in text)


_QUOTE_STOP = frozenset('"')
_DOMLIT_STOP = frozenset("]")


def scan_nodes(text: str, limit: int = 0) -> Node | None:
    """Tokenize external-form text into a flat linked list (``tok822_scan_limit()``).

    :param text: the text, in external (quoted) form.
    :param limit: if positive, stop after this many tokens.
    :returns: the first token, or ``None`` if the text holds no tokens.
    """
    text = _c_string(text)
    first: Node | None = None
    last: Node | None = None
    count = 0
    n = len(text)
    i = 0
    while i < n:
        ch = text[i]
        i += 1
        if ch in _SPACE:
            continue
        if ch == "(":
            body, i = _comment(text, i)
            tp = Node(TokenType.COMMENT, body)
        elif ch == "[":
            body, i = _collect(text, i, _DOMLIT_STOP)
            if i < n:
                i += 1  # the closing bracket; a domain literal may be unterminated
            tp = Node(TokenType.DOMLIT, body)
        elif ch == '"':
            body, i = _collect(text, i, _QUOTE_STOP)
            if i < n:
                i += 1  # the closing quote; a quoted string may be unterminated
            tp = Node(TokenType.QSTRING, body)
        elif ch != "\\" and ch in OPERATORS:
            tp = Node(ch)
        else:
            # Start at the character itself: a backslash may be the first of an atom.
            body, i = _collect(text, i - 1, _ATOM_STOP)
            kind = TokenType.QSTRING if _atom_needs_quotes(body) else TokenType.ATOM
            tp = Node(kind, body)
        if last is None:
            first = tp
        else:
            last.append(tp)
        last = tp
        count += 1
        if limit > 0 and count >= limit:
            break
    return first


def scan(text: str, limit: int = 0) -> list[Token]:
    """Tokenize external-form text into a flat token list (``tok822_scan_limit()``).

    :param text: the text, in external (quoted) form.
    :param limit: if positive, stop after this many tokens.
    :returns: the tokens; an empty list if the text is empty or all white space.
    """
    head = scan_nodes(text, limit)
    return head.freeze() if head is not None else []


def scan_addr(text: str) -> Node:
    """The whole text, tokenized, as the members of one ``ADDR`` node (``tok822_scan_addr()``).

    Unlike the groups that :func:`parse` makes, the members have no owner (the C code sets
    ``head`` directly), so adjacent words among them are separated by a space when written out.
    """
    tree = Node(TokenType.ADDR)
    tree.head = scan_nodes(text)
    if tree.head is not None:
        tree.tail = tree.head
        while tree.tail.next is not None:
            tree.tail = tree.tail.next
    return tree


def _is_op(tp: Node, chars: str) -> bool:
    """Whether ``tp`` is an operator token whose character is one of ``chars``."""
    return isinstance(tp.type, str) and len(tp.type) == 1 and tp.type in chars


def _skip_back(tp: Node, stop: str) -> Node:
    """Move left to the first operator in ``stop``, or the left sentinel (the ``SKIP`` macro)."""
    while tp.type and not _is_op(tp, stop):
        assert tp.prev is not None  # the left sentinel stops the loop first
        tp = tp.prev
    return tp


def _skip_back_moving_comments(tp: Node, stop: str, right: Node) -> tuple[Node, Node]:
    """Like :func:`_skip_back`, moving comments in front of ``right`` on the way.

    Mirrors the ``SKIP_MOVE_COMMENT`` macro.

    :returns: the new ``tp`` and ``right``.
    """
    while tp.type and not _is_op(tp, stop):
        if tp.type is TokenType.COMMENT:
            prev = tp.unlink()
            assert prev is not None
            right = right.prepend(tp)
            tp = prev
            continue
        assert tp.prev is not None
        tp = tp.prev
    return tp, right


def _group(left: Node, right: Node, add_comma: bool) -> Node:
    """Put the nodes strictly between ``left`` and ``right`` in a new ``ADDR`` group.

    Mirrors ``tok822_group()``; with ``add_comma`` a comma is inserted right after ``left``, in
    front of the group, to separate it from what precedes it.

    :returns: ``left``.
    """
    first = left.next
    if left is not right and first is not None and first is not right:
        right.cut_before()
        first.cut_before()
        group = Node(TokenType.ADDR)
        group.sub_append(first)
        left.append(group)
        group.append(right)
        if add_comma:
            left.append(Node(","))
    return left


def parse_nodes(text: str, limit: int = 0) -> Node | None:
    """Parse an external-form address list into a linked token tree (``tok822_parse_limit()``).

    The parser is permissive and never drops a token.  It works from right to left: the tokens
    of each address go into an ``ADDR`` group, comments are moved out of the way to the right of
    their address, ``:`` before a ``;`` starts a named group, and a comma is inserted where two
    addresses meet without one.

    :param text: the text, in external (quoted) form.
    :param limit: if positive, tokenize no more than this many tokens.
    :returns: the first node of the tree, or ``None`` if the text holds no tokens.
    """
    first_token = scan_nodes(text, limit)
    if first_token is None:
        return None
    last_token = first_token
    while last_token.next is not None:
        last_token = last_token.next

    # Sentinels at both ends, of type "" (false, like the C type 0), so that the loops below
    # never fall off the list.
    head = Node("")
    tail = Node("")
    head.next, first_token.prev = first_token, head
    last_token.next, tail.prev = tail, last_token

    do_word = True  # a word may start an address here (DO_WORD)
    do_group = False  # inside "phrase: ... ;" (DO_GROUP)
    right = tail
    tp = last_token
    while tp.type:
        if tp.type is TokenType.COMMENT:
            # Move the comment to the right of what is being collected.
            prev = tp.unlink()
            assert prev is not None  # the head sentinel is always there
            right = right.prepend(tp)
            tp = prev
            continue
        if tp.type == ";":  # right end of a named group
            right = _group(tp, right, True)
            do_group = do_word = True
        elif tp.type == ":" and do_group:  # start of a named group
            tp.type = TokenType.STARTGRP
            _group(tp, right, False)
            right = tp = _skip_back(tp, ",")
            continue
        elif tp.type == ">":  # right end of <route-addr>
            right = _group(tp, right, True)
            tp, right = _skip_back_moving_comments(tp, "<", right)
            _group(tp, right, False)
            right = tp = _skip_back(tp, ">;,:")
            do_word = True
            continue
        elif tp.type in (TokenType.ATOM, TokenType.QSTRING, TokenType.DOMLIT):
            if not do_word:
                after = _group(tp, right, True).next
                assert after is not None
                right = after
            do_word = False
        elif tp.type == ",":
            right = _group(tp, right, False)
            do_word = True
        else:
            do_word = True
        assert tp.prev is not None
        tp = tp.prev
    _group(tp, right, False)

    result = head.next if head.next is not tail else None
    if head.next is not None:
        head.next.cut_before()
    tail.cut_before()
    return result


def parse(text: str, limit: int = 0) -> list[Token]:
    """Parse an external-form address list into a token tree (``tok822_parse_limit()``).

    See :func:`parse_nodes`.  Each address is a :attr:`TokenType.ADDR` token whose
    :attr:`Token.children` are its tokens.
    """
    tree = parse_nodes(text, limit)
    return tree.freeze() if tree is not None else []


def find_type(tokens: Sequence[Token], kind: Kind, start: int = 0) -> int | None:
    """Index of the first token of type ``kind`` at or after ``start`` (``tok822_find_type()``)."""
    for i in range(start, len(tokens)):
        if tokens[i].type == kind:
            return i
    return None


def rfind_type(tokens: Sequence[Token], kind: Kind, end: int | None = None) -> int | None:
    """Index of the last token of type ``kind`` at or before ``end`` (``tok822_rfind_type()``).

    :param end: the index to search backward from (included); the last token by default.
    """
    i = len(tokens) - 1 if end is None else min(end, len(tokens) - 1)
    while i >= 0:
        if tokens[i].type == kind:
            return i
        i -= 1
    return None


def _as_nodes(tree: Sequence[Token] | Node | None) -> Node | None:
    return tree if tree is None or isinstance(tree, Node) else Node.thaw(tree)


def _append_space(tp: Node) -> bool:
    """Whether a space goes after ``tp`` (``tok822_append_space()``).

    Never inside a group, nor after the last token; always after a comma or the start of a named
    group and before ``<``; otherwise only between two words.
    """
    after = tp.next
    if after is None or tp.owner is not None:
        return False
    if tp.type == "," or tp.type is TokenType.STARTGRP or after.type == "<":
        return True
    return tp.type in _WORDS and after.type in _WORDS


def _internalize(out: list[str], tree: Node | None, line: bool) -> None:
    tp = tree
    while tp is not None:
        kind = tp.type
        if kind == ",":
            out.append(",")
            if line:
                out.append("\n")
                tp = tp.next
                continue
        elif kind is TokenType.ADDR:
            _internalize(out, tp.head, False)
        elif kind in (TokenType.COMMENT, TokenType.ATOM, TokenType.QSTRING):
            out.append(tp.text)
        elif kind is TokenType.DOMLIT:
            out.append(f"[{tp.text}]")
        elif kind is TokenType.STARTGRP:
            out.append(":")
        else:
            assert isinstance(kind, str)
            out.append(kind)
        if _append_space(tp):
            out.append(" ")
        tp = tp.next


def internalize(tree: Sequence[Token] | Node | None, *, line: bool = False) -> str:
    """Tokens to text in internal (unquoted) form (``tok822_internalize()``).

    Quoted strings and domain literals lose their quoting, comments are kept as they are, groups
    are written without spaces, and a space goes between adjacent top-level words and after each
    comma (see :func:`_append_space`).

    :param tree: tokens (from :func:`scan` or :func:`parse`), or the first :class:`Node` of a
        list.
    :param line: ``TOK822_STR_LINE``: a newline instead of a space after each comma.
    """
    out: list[str] = []
    _internalize(out, _as_nodes(tree), line)
    return "".join(out)


def _quote_into(text: str, specials: str) -> str:
    """Backslash-escape the characters of ``specials`` (``tok822_copy_quoted()``)."""
    if not any(ch in specials for ch in text):
        return text
    return "".join("\\" + ch if ch in specials else ch for ch in text)


# What tok822_externalize() escapes with a backslash in quoted strings and domain literals.
_QSTRING_SPECIALS = '"\\\r\n'
_DOMLIT_SPECIALS = "\\\r\n"


def _nbytes(text: str) -> int:
    """The length of ``text`` as Postfix counts it: in bytes."""
    return len(text) if text.isascii() else len(text.encode(_ENC, _ERR))


def _printable(data: bytes) -> str:
    """``printable(text, '?')``, not in UTF-8 mode: non-printable, non-ASCII bytes become ``?``."""
    return "".join(chr(b) if 0x20 <= b < 0x7F else "?" for b in data)


def _strip_address(out: str, start: int, addr: Node | None) -> str:
    """Replace the text of one address expression by ``<address>`` (``strip_address()``)."""
    shown = _printable(out[start:].encode(_ENC, _ERR)[:100])  # "%.100s": at most 100 bytes
    log.warning("stripping too many comments from address: %s...", shown)
    core = quote_local(internalize(addr)) if addr is not None else ""
    return f"{out[:start]}<{core}>"


def externalize(
    tree: Sequence[Token] | Node | None, *, line: bool = False, truncate: bool = False
) -> str:
    """Tokens to text in external (quoted) form (``tok822_externalize()``).

    Quoted strings and domain literals are re-quoted, the local part of each address group is
    quoted with :func:`quote_local`, comments are kept, and ``", "`` follows every comma (even a
    trailing one).  Spacing is as in :func:`internalize`.

    :param tree: tokens (from :func:`scan` or :func:`parse`), or the first :class:`Node` of a
        list.
    :param line: ``TOK822_STR_LINE``: a newline instead of a space after each comma.
    :param truncate: ``TOK822_STR_TRNC``: where an address expression (text between commas) has
        more than 250 bytes of text besides its address, reduce it to ``<address>`` and log a
        warning, as Postfix does to protect Sendmail (CERT advisory CA-2003-07).
    """
    out = ""
    # State of the address expression being written, for truncate: where it starts in ``out``,
    # its address (a group, or the "<" of "<>"), and the length in bytes of the address text.
    start = 0
    addr: Node | None = None
    addr_len = 0

    def enforce() -> None:
        nonlocal out
        if addr is None:
            return
        if _nbytes(out) - addr_len > _nbytes(out[:start]) + _MAX_NONADDR_LENGTH:
            out = _strip_address(out, start, addr.head)

    tp = _as_nodes(tree)
    while tp is not None:
        kind = tp.type
        if kind == ",":
            if truncate:
                enforce()
            out += ",\n" if line else ", "
            if truncate:
                start, addr, addr_len = len(out), None, 0
            tp = tp.next
            continue
        if kind is TokenType.ADDR:
            # Quoting each atom is not enough; the local part as a whole may need quotes.
            addr = tp
            quoted = quote_local(internalize(tp.head))
            addr_len = _nbytes(quoted)
            out += quoted
        elif kind in (TokenType.ATOM, TokenType.COMMENT):
            out += tp.text
        elif kind is TokenType.QSTRING:
            out += '"' + _quote_into(tp.text, _QSTRING_SPECIALS) + '"'
        elif kind is TokenType.DOMLIT:
            out += "[" + _quote_into(tp.text, _DOMLIT_SPECIALS) + "]"
        elif kind is TokenType.STARTGRP:
            out += ":"
        elif kind == "<":
            if tp.next is not None and tp.next.type == ">":
                addr, addr_len = tp, 0  # "<>": the null address
            out += "<"
        else:
            assert isinstance(kind, str)
            out += kind
        if _append_space(tp):
            out += " "
        tp = tp.next
    if truncate:
        enforce()
    return out


def split_alias_line(line: str) -> tuple[str, str] | None:
    """Split a logical line of an aliases file into name and value, as postalias(1) does.

    The line is tokenized; the name is the tokens before the first ``:`` in internal (unquoted)
    form, and the value the tokens after it in external (quoted) form, because the value is
    parsed again when it is used.  The name is not folded to lower case here.

    :param line: one logical line (continuation lines joined, comments removed).
    :returns: ``(name, value)``, or ``None`` for a line without tokens (postalias skips it
        silently).
    :raises ValueError: ``need name:value pair`` when there is no ``:``, nothing before or
        after it, or a ``,`` before it; ``name must be local`` when an ``@`` or ``%`` precedes
        it.
    """
    tokens = scan(line)
    if not tokens:
        return None
    colon = find_type(tokens, ":")
    if (
        colon is None
        or colon == 0
        or colon == len(tokens) - 1
        or rfind_type(tokens, ",", colon) is not None
    ):
        raise ValueError("need name:value pair")
    # postalias cannot count on the address rewriting service, so it guesses.
    if rfind_type(tokens, "@", colon) is not None or rfind_type(tokens, "%", colon) is not None:
        raise ValueError("name must be local")
    return internalize(tokens[:colon]), externalize(tokens[colon + 1 :])


class QuoteFlags(enum.IntFlag):
    """Options of :func:`quote_local` (``QUOTE_FLAG_*`` in ``quote_flags.h``)."""

    NONE = 0
    #: Leave non-ASCII alone; without it, non-ASCII forces quoting and every non-ASCII byte is
    #: backslash-escaped.
    EIGHT_BIT_CLEAN = 1 << 0
    #: ``@`` is ordinary text in the local part.
    EXPOSE_AT = 1 << 1
    #: The whole text is the local part: no ``@domain`` is split off.
    BARE_LOCALPART = 1 << 3
    #: What ``quote_822_local()`` uses.
    DEFAULT = EIGHT_BIT_CLEAN


#: Regular-expression text for a local part that is plainly a dot-atom, without the routing
#: operators ``%`` and ``!``: what the fast paths of quoting, rewriting, routing and table searches
#: recognise as "nothing to do here".
PLAIN_LOCAL_PART = r"[A-Za-z0-9_+=-]+(?:\.[A-Za-z0-9_+=-]+)*"
#: Regular-expression text for a host name of letters, digits and hyphens (dots between labels).
PLAIN_HOST_NAME = r"[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
#: ``user@domain`` with a plain local part and host name: one address, the same in internal and
#: external form, that parsing gives back unchanged.
PLAIN_ADDRESS = re.compile(f"{PLAIN_LOCAL_PART}@{PLAIN_HOST_NAME}")
#: A plain ``user@host.domain`` (a dot in the domain): also what rewriting in the local context
#: gives back unchanged (no ``append_at_myorigin``, ``append_dot_mydomain`` or operators apply).
DOTTED_ADDRESS = re.compile(f"{PLAIN_LOCAL_PART}@{PLAIN_HOST_NAME}\\.[A-Za-z0-9-]+")

#: A plain local part, maybe with a domain of any characters that cannot need quoting: text
#: that quoting and unquoting leave alone.
_UNQUOTED_TEXT = re.compile(f"{PLAIN_LOCAL_PART}(?:@[A-Za-z0-9.\\[\\]:_-]*)?")

# Characters that are not allowed in an RFC 822 dot-string (besides space, controls and @).
_DOT_STRING_BAD = frozenset(b'()<>,;:\\"[]')


def _is_dot_string(local: bytes, flags: QuoteFlags) -> bool:
    """Whether a local part is a sequence of atoms separated by dots (``is_822_dot_string()``)."""
    if not local or local[:1] == b"." or local[-1:] == b"." or b".." in local:
        return False
    for ch in local:
        if ch > 127 and not flags & QuoteFlags.EIGHT_BIT_CLEAN:
            return False
        if ch <= 32 or ch == 127 or ch in _DOT_STRING_BAD:
            return False
        if ch == 0x40 and not flags & QuoteFlags.EXPOSE_AT:
            return False
    return True


def _quoted_string(local: bytes, flags: QuoteFlags) -> bytes:
    """A local part as an RFC 822 quoted-string (``make_822_quoted_string()``).

    Only ``"``, ``\\`` and CR are escaped (and non-ASCII bytes unless 8-bit clean).
    """
    out = bytearray(b'"')
    for ch in local:
        if (ch > 127 and not flags & QuoteFlags.EIGHT_BIT_CLEAN) or ch in b'"\\\r':
            out.append(0x5C)
        out.append(ch)
    out.append(0x22)
    return bytes(out)


def quote_local(address: str, flags: QuoteFlags = QuoteFlags.DEFAULT) -> str:
    """Quote the local part of an address, if needed (``quote_822_local_flags()``).

    The local part is what follows a source route (``@a,@b:``) and precedes the last ``@`` (all
    the rest with :attr:`QuoteFlags.BARE_LOCALPART`).  If it is not a dot-string it is turned
    into a quoted-string; the domain is never touched.  ``""`` becomes ``'""'``.

    :param address: an address in internal (unquoted) form.
    :param flags: :class:`QuoteFlags`.
    """
    if flags is QuoteFlags.DEFAULT and _UNQUOTED_TEXT.fullmatch(address) is not None:
        return address  # a dot-atom local part: nothing to quote
    # Work on bytes: without EIGHT_BIT_CLEAN, Postfix escapes each byte of a multi-byte character.
    mbox = _c_string(address).encode(_ENC, _ERR)
    begin = 0
    if mbox[:1] == b"@" and (colon := mbox.find(b":")) >= 0:
        begin = colon + 1
    end = len(mbox)
    if not flags & QuoteFlags.BARE_LOCALPART and (at := mbox.rfind(b"@", begin)) >= 0:
        end = at
    local = mbox[begin:end]
    if _is_dot_string(local, flags):
        return _c_string(address)
    quoted = mbox[:begin] + _quoted_string(local, flags) + mbox[end:]
    return quoted.decode(_ENC, _ERR)


def unquote_local(address: str) -> str:
    """Remove the quoting from the local part of an address (``unquote_822_local()``).

    Double quotes are dropped and a backslash takes the next character literally, up to the last
    ``@`` outside quotes; a source route (``@a,@b:``) and the text from that ``@`` on are kept
    as they are.  A backslash at the very end is dropped.

    :param address: an address in external (quoted) form.
    """
    if '"' not in address and "\\" not in address and "\0" not in address:
        return address  # nothing quoted, nothing escaped
    mbox = _c_string(address)
    begin = 0
    if mbox[:1] == "@" and (colon := mbox.find(":")) >= 0:
        begin = colon + 1
    out: list[str] = [mbox[:begin]]
    in_quote = False
    bare_at_out = -1  # length of ``out`` text at the last unquoted "@"
    bare_at_src = -1
    out_len = begin
    i = begin
    n = len(mbox)
    while i < n:
        ch = mbox[i]
        if ch == '"':
            in_quote = not in_quote
            i += 1
            continue
        if ch == "@":
            if not in_quote:
                bare_at_out, bare_at_src = out_len, i
        elif ch == "\\":
            i += 1
            if i >= n:
                continue  # a backslash at the very end is dropped
            ch = mbox[i]
        out.append(ch)
        out_len += 1
        i += 1
    result = "".join(out)
    if bare_at_out >= 0:
        result = result[:bare_at_out] + mbox[bare_at_src:]
    return result
