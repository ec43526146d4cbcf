"""Tests for :mod:`mailmaps.rfc822`: Postfix's RFC 822 tokenizer, parser and local-part quoting.

The regression vectors of Postfix itself (``tok822_parse``, ``tok822_limit``, ``quote_822_local``
in ``src/global``) are read at test time from the shared vector directory next to the repository
and replayed through a Python copy of each test driver (the ``#ifdef TEST`` ``main()`` of
``tok822_parse.c`` and ``quote_822_local.c``).  The ``interop`` test builds an aliases table with
the real postalias(1) and compares every entry and warning with :func:`split_alias_line`.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pytest

from mailmaps.rfc822 import (
    LEX_822_SPECIALS,
    OPERATORS,
    Node,
    QuoteFlags,
    Token,
    TokenType,
    externalize,
    find_type,
    internalize,
    parse,
    parse_nodes,
    quote_local,
    rfind_type,
    scan,
    scan_addr,
    scan_nodes,
    split_alias_line,
    unquote_local,
)
from tests.conftest import VECTORS

GLOBAL_VECTORS = VECTORS / "src" / "global"

POSTALIAS = Path("/usr/sbin/postalias")

A = TokenType.ATOM
Q = TokenType.QSTRING
C = TokenType.COMMENT
D = TokenType.DOMLIT


def _vector(name: str) -> str:
    path = GLOBAL_VECTORS / name
    return path.read_text(encoding="utf-8", errors="surrogateescape")


def _logical_lines(text: str) -> list[str]:
    """``readlline()`` for the test drivers: join continuation lines, drop blank and # lines."""
    result: list[str] = []
    for line in text.split("\n"):
        stripped = line.lstrip(" \t\r\v\f")
        if not stripped or stripped.startswith("#"):
            continue
        if line[0] in " \t\r\v\f" and result:
            result[-1] += line
        else:
            result.append(line)
    return result


class _ListHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextmanager
def _warnings() -> Iterator[list[str]]:
    """Collect the warnings that mailmaps logs, in order."""
    handler = _ListHandler()
    logger = logging.getLogger("mailmaps")
    logger.addHandler(handler)
    try:
        yield handler.messages
    finally:
        logger.removeHandler(handler)


def _tree_lines(tokens: Sequence[Token], indent: int) -> list[str]:
    """``tok822_print()`` from the tok822_parse test driver."""
    names = {A: "atom", Q: "quoted string", C: "comment", D: "domain literal"}
    pad = " " * indent
    lines: list[str] = []
    for tok in tokens:
        if isinstance(tok.type, str):
            lines.append(f'{pad} OP "{tok.type}"')
        elif tok.type is TokenType.ADDR:
            lines.append(f"{pad} address")
            lines.extend(_tree_lines(tok.children, indent + 2))
        elif tok.type is TokenType.STARTGRP:
            lines.append(f'{pad} group ":"')
        else:
            lines.append(f'{pad} {names[tok.type]} "{tok.text}"')
    return lines


def _tok822_driver(source: str) -> str:
    """What the ``tok822_parse`` test program prints, stderr merged (token limit 20)."""
    out: list[str] = []
    for line in _logical_lines(source):
        out.append(f">>>{line}<<<\n\n")
        tree = parse(line, 20)
        out.append("Parse tree:\n")
        out.extend(f"{text}\n" for text in _tree_lines(tree, 0))
        out.append("\n")
        out.append(f"Internalized:\n{internalize(tree)}\n\n")
        for header, as_lines in (("no newlines inserted", False), ("newlines inserted", True)):
            with _warnings() as warnings:
                text = externalize(tree, line=as_lines, truncate=True)
            out.extend(f"unknown: warning: {msg}\n" for msg in warnings)
            out.append(f"Externalized, {header}:\n{text}\n\n")
    return "".join(out)


@pytest.mark.parametrize("name", ["tok822_parse", "tok822_limit"])
def test_tok822_vectors(name: str) -> None:
    expected = _vector(f"{name}.ref")
    assert _tok822_driver(_vector(f"{name}.in")) == expected


_QUOTE_FLAG_NAMES = [
    ("8bitclean", QuoteFlags.EIGHT_BIT_CLEAN),
    ("expose_at", QuoteFlags.EXPOSE_AT),
    ("append", QuoteFlags.NONE),  # APPEND is implicit: results are new strings
    ("bare_localpart", QuoteFlags.BARE_LOCALPART),
]


def _quote_flags(text: str) -> tuple[QuoteFlags, str]:
    """``quote_flags_from_string()`` and ``quote_flags_to_string()`` of the test driver."""
    flags = QuoteFlags.NONE
    names: list[str] = []
    for word in text.lower().split("|"):
        for name, flag in _QUOTE_FLAG_NAMES:
            if word == name:
                flags |= flag
    for name, flag in _QUOTE_FLAG_NAMES:
        if flag and flag & flags:
            names.append(name)
    return flags, "|".join(names)


def _quote_driver(source: str) -> str:
    """What the ``quote_822_local`` test program prints."""
    out: list[str] = []
    for line in source.splitlines():
        parts = line.strip(" \t\r\n").split(None, 1)
        if len(parts) < 2:
            continue
        cmd, arg = parts
        arg = "" if arg == "<>" else arg
        if cmd == "quote":
            out.append(f"'{arg}' quoted '{quote_local(arg)}'\n")
        elif cmd == "quote_with_flags":
            words, arg = arg.split(None, 1)
            flags, shown = _quote_flags(words)
            out.append(f"'{arg}' quoted flags={shown} '{quote_local(arg, flags)}'\n")
        elif cmd == "unquote":
            out.append(f"'{arg}' unquoted '{unquote_local(arg)}'\n")
    return "".join(out)


def test_quote_822_local_vectors() -> None:
    expected = _vector("quote_822_local.ref")
    assert _quote_driver(_vector("quote_822_local.in")) == expected


# --- tok822_scan ---------------------------------------------------------------------------


def _flat(tokens: Sequence[Token]) -> list[tuple[TokenType | str, str]]:
    return [(tok.type, tok.text) for tok in tokens]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", []),
        (" \t\r\n", []),
        ("user", [(A, "user")]),
        ("a@b.c", [(A, "a"), ("@", ""), (A, "b"), (".", ""), (A, "c")]),
        # Every operator character except ( [ " and \ is a token of its own.
        ("|%!)<>@,;:.]", [(ch, "") for ch in "|%!)<>@,;:.]"]),
        # Backslash escapes, also at the start of an atom; escaped white space becomes a space,
        # and an atom with a space or operator character becomes a quoted string.
        (r"\a\b", [(A, "ab")]),
        (r"a\ b", [(Q, "a b")]),
        ("a\\\tb", [(Q, "a b")]),
        (r"a\@b", [(Q, "a@b")]),
        (r"a\\b", [(Q, "a\\b")]),
        (r"a\"b", [(Q, 'a"b')]),
        ("a\\", [(A, "a")]),
        ("\\", [(A, "")]),
        # Control characters (not space, tab, CR or LF) are atom characters that force quoting.
        ("a\x0bb", [(Q, "a\x0bb")]),
        ("a\x7fb", [(Q, "a\x7fb")]),
        # Quoted strings: escapes removed, white space becomes a space, may be unterminated.
        ('"a b"', [(Q, "a b")]),
        ('"a\tb\r\nc"', [(Q, "a b  c")]),
        (r'"a\"b\\c"', [(Q, 'a"b\\c')]),
        ('"abc', [(Q, "abc")]),
        ('"abc\\', [(Q, "abc")]),
        ('""', [(Q, "")]),
        ('"a"b', [(Q, "a"), (A, "b")]),
        # Domain literals: same rules, with ] as the end.
        ("[1.2.3.4]", [(D, "1.2.3.4")]),
        (r"[a\]b]", [(D, "a]b")]),
        ("[a\tb", [(D, "a b")]),
        ('["x]', [(D, '"x')]),
        # Comments nest, keep backslashes and white space, may be unterminated.
        ("(a (b) c)", [(C, "(a (b) c)")]),
        (r"(a \) b)", [(C, r"(a \) b)")]),
        ("(a\tb", [(C, "(a\tb")]),
        ("(a\\", [(C, "(a\\")]),
        ("x(y)z", [(A, "x"), (C, "(y)"), (A, "z")]),
        # Non-ASCII (and undecodable bytes, as surrogates) are ordinary atom characters.
        ("jürgen@exämple", [(A, "jürgen"), ("@", ""), (A, "exämple")]),
        ("a\u00a0b\u0085c", [(A, "a\u00a0b\u0085c")]),
        ("caf\udce9", [(A, "caf\udce9")]),
        ("'single'", [(A, "'single'")]),
        # As in C, the text ends at a NUL.
        ("a\0b", [(A, "a")]),
    ],
)
def test_scan(text: str, expected: list[tuple[TokenType | str, str]]) -> None:
    assert _flat(scan(text)) == expected


def test_operator_sets() -> None:
    assert LEX_822_SPECIALS == '()<>@,;:\\".[]'
    assert set(OPERATORS) == set(LEX_822_SPECIALS) | {"|", "%", "!"}


def test_scan_limit() -> None:
    assert _flat(scan("a b c d", 2)) == [(A, "a"), (A, "b")]
    assert len(scan("a b c d", 0)) == 4


# --- tok822_internalize / tok822_externalize ------------------------------------------------


@pytest.mark.parametrize(
    ("text", "internal", "external"),
    [
        ("a@b", "a@b", "a@b"),
        ("a @ b . c", "a@b.c", "a@b.c"),
        ('"x y"@z', "x y@z", '"x y"@z'),
        (r"x\ y@z", "x y@z", '"x y"@z'),
        # One space between adjacent words, none next to operators (except "<" and ",").
        ("a b  c", "a b c", "a b c"),
        ("a (c) b", "a (c) b", "a (c) b"),
        ("(c)|x", "(c)|x", "(c)|x"),
        ("a <b@c>", "a <b@c>", "a <b@c>"),
        ("a<b@c>", "a <b@c>", "a <b@c>"),
        ("x [1.2] y", "x [1.2] y", "x [1.2] y"),
        # ", " after each comma, even at the end in external form.
        ("a,b , c", "a, b, c", "a, b, c"),
        ("a,", "a,", "a, "),
        (",", ",", ", "),
        # Re-quoting.
        (r'"a\"b\\c"', 'a"b\\c', r'"a\"b\\c"'),
        (r"[a\]b]", "[a]b]", r"[a]b]"),
        (r"[a\\b]", "[a\\b]", r"[a\\b]"),
        ('""', "", '""'),
        ("\\", "", ""),
        (":include:/x", ":include:/x", ":include:/x"),
        ('|"cmd arg"', "|cmd arg", '|"cmd arg"'),
    ],
)
def test_internalize_externalize_flat(text: str, internal: str, external: str) -> None:
    tokens = scan(text)
    assert internalize(tokens) == internal
    assert externalize(tokens) == external
    # The linked form gives the same text.
    assert internalize(scan_nodes(text)) == internal
    assert externalize(scan_nodes(text)) == external


def test_internalize_externalize_empty() -> None:
    assert internalize([]) == ""
    assert externalize([]) == ""
    assert internalize(None) == ""


def test_line_option() -> None:
    tokens = scan("a, b")
    assert internalize(tokens, line=True) == "a,\nb"
    assert externalize(tokens, line=True) == "a,\nb"


# --- tok822_parse ---------------------------------------------------------------------------


def test_parse_groups_addresses() -> None:
    tree = parse('"x y"@z, w')
    assert [tok.type for tok in tree] == [TokenType.ADDR, ",", TokenType.ADDR]
    assert _flat(tree[0].children) == [(Q, "x y"), ("@", ""), (A, "z")]
    # Members of an address are written without spaces; its local part is quoted as a whole.
    assert internalize(tree) == "x y@z, w"
    assert externalize(tree) == '"x y"@z, w'


def test_parse_inserts_missing_commas_and_moves_comments() -> None:
    # Working from the right, a comment is moved after the address that follows it.
    tree = parse("a b (c) d")
    assert internalize(tree) == "a, b, d (c)"
    assert [tok.type for tok in tree] == [
        TokenType.ADDR,
        ",",
        TokenType.ADDR,
        ",",
        TokenType.ADDR,
        TokenType.COMMENT,
    ]


def test_parse_empty() -> None:
    assert parse("") == []
    assert parse_nodes("  ") is None


def test_externalize_requotes_address_localpart() -> None:
    # An address whose atoms each are fine may still need quotes as a whole (quote_822_local).
    assert externalize(parse("a..b@c")) == '"a..b"@c'
    assert externalize(scan("a..b@c")) == "a..b@c"


def test_truncate_counts_bytes_and_warns() -> None:
    phrase = "ü" * 130  # 260 bytes, 130 characters
    tree = parse(f"{phrase} <x@y>")
    with _warnings() as warnings:
        assert externalize(tree, truncate=True) == "<x@y>"
    assert len(warnings) == 1
    assert warnings[0].startswith("stripping too many comments from address: ??")
    assert warnings[0].endswith("...")
    with _warnings() as warnings:
        assert externalize(parse(f"{'u' * 130} <x@y>"), truncate=True) == f"{'u' * 130} <x@y>"
    assert warnings == []


# --- Node: tok822_tree.c / tok822_find.c ----------------------------------------------------


def _types(head: Node | None) -> list[TokenType | str]:
    return [tp.type for tp in head] if head is not None else []


def test_node_list_operations() -> None:
    head = scan_nodes("a@b.c")
    assert head is not None
    at = head.find_type("@")
    assert at is not None and at.prev is head
    assert head.find_type("!") is None
    last = head
    while last.next is not None:
        last = last.next
    assert last.rfind_type("@") is at
    assert last.rfind_type(":") is None

    rest = at.cut_after()
    assert _types(head) == [A, "@"]
    assert _types(rest) == [A, ".", A]
    assert at.unlink() is head
    assert _types(head) == [A]
    tail = head.append(Node("%"))
    assert tail.type == "%" and _types(head) == [A, "%"]
    assert rest is not None
    first = rest.prepend(Node("!"))
    assert first.type == "!" and first.next is rest
    assert internalize(first) == "!b.c"


def test_node_groups_and_owner_spacing() -> None:
    # scan_addr(): members have no owner, so adjacent words get a space (as in C).
    tree = scan_addr("first last@x")
    assert internalize(tree.head) == "first last@x"
    assert internalize(tree) == "first last@x"
    # sub_append() makes the appended nodes members: no spaces between them.
    group = Node(TokenType.ADDR)
    group.sub_append(Node(A, "first"))
    group.sub_append(Node(A, "last"))
    assert group.head is not None and group.head.owner is group
    assert internalize(group) == "firstlast"
    assert internalize(group.head) == "firstlast"
    # sub_keep_before / sub_keep_after detach the rest.
    tree = scan_addr("a@b")
    assert tree.tail is not None
    at = tree.tail.rfind_type("@")
    assert at is not None
    old_tail = tree.sub_keep_before(at)
    assert old_tail is not None and old_tail.text == "b"
    assert internalize(tree) == "a"
    tree = scan_addr("r:a@b")
    assert tree.head is not None
    colon = tree.head.find_type(":")
    assert colon is not None
    old_head = tree.sub_keep_after(colon)
    assert old_head is not None and old_head.text == "r"
    assert internalize(tree) == "a@b"
    tree.sub_prepend(Node("@"))
    assert internalize(tree) == "@a@b"


def test_freeze_thaw_round_trip() -> None:
    tree = parse('Name <"a b"@c>, d (e)')
    head = Node.thaw(tree)
    assert head is not None
    assert head.freeze() == tree
    assert Node.thaw([]) is None


def test_find_type_on_tokens() -> None:
    tokens = scan("a:b,c:d")
    assert find_type(tokens, ":") == 1
    assert find_type(tokens, ":", 2) == 5
    assert find_type(tokens, "@") is None
    assert rfind_type(tokens, ":") == 5
    assert rfind_type(tokens, ",", 1) is None
    assert rfind_type(tokens, ",", 4) == 3
    assert rfind_type(tokens, A, 100) == 6


# --- quote_822_local ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "flags", "expected"),
    [
        ("user@example.com", QuoteFlags.DEFAULT, "user@example.com"),
        ("first.last@x", QuoteFlags.DEFAULT, "first.last@x"),
        ("first last@x", QuoteFlags.DEFAULT, '"first last"@x'),
        (".user@x", QuoteFlags.DEFAULT, '".user"@x'),
        ("user.@x", QuoteFlags.DEFAULT, '"user."@x'),
        ("a..b@x", QuoteFlags.DEFAULT, '"a..b"@x'),
        ('a"b\\c\rd@x', QuoteFlags.DEFAULT, '"a\\"b\\\\c\\\rd"@x'),
        ("a\tb", QuoteFlags.DEFAULT, '"a\tb"'),
        ("@x", QuoteFlags.DEFAULT, '""@x'),
        ("a@b@c", QuoteFlags.EXPOSE_AT | QuoteFlags.BARE_LOCALPART, "a@b@c"),
        ("a@b@c", QuoteFlags.EXPOSE_AT, "a@b@c"),
        # A source route is left alone.
        ("@r1,@r2:a b@x", QuoteFlags.DEFAULT, '@r1,@r2:"a b"@x'),
        ("@r1:a@x", QuoteFlags.DEFAULT, "@r1:a@x"),
        # Non-ASCII: left alone when 8-bit clean, else quoted with every byte escaped.
        ("jürgen@x", QuoteFlags.DEFAULT, "jürgen@x"),
        ("é@x", QuoteFlags.NONE, '"\\\udcc3\\\udca9"@x'),
    ],
)
def test_quote_local(address: str, flags: QuoteFlags, expected: str) -> None:
    assert quote_local(address, flags) == expected


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ('"a b"@x', "a b@x"),
        (r'"a\"b"@x', 'a"b@x'),
        (r"a\@b@x", "a@b@x"),
        ('"a@b"', "a@b"),
        ('@r:"a b"@x', "@r:a b@x"),
        ('a@"x y"', 'a@"x y"'),
        ("a\\", "a"),
        ("", ""),
    ],
)
def test_unquote_local(address: str, expected: str) -> None:
    assert unquote_local(address) == expected


# --- postalias key/value split --------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("postmaster: root", ("postmaster", "root")),
        ("Name:value", ("Name", "value")),
        ('"a b": c', ("a b", "c")),
        ('"a@b": c', ("a@b", "c")),
        ('"a:b": c', ("a:b", "c")),
        ("a(c): x , y", ("a (c)", "x, y")),
        ('pipe: |"/bin/cmd -x"', ("pipe", '|"/bin/cmd -x"')),
        ("inc: :include:/etc/list", ("inc", ":include:/etc/list")),
        ("trail: x,", ("trail", "x, ")),
        ('q: ""', ("q", '""')),
        ('"": q', ("", "q")),
        ("b: \\", ("b", "")),
        ("name: (comment", ("name", "(comment")),  # a lone comment is a value like any other
        ("  ", None),
    ],
)
def test_split_alias_line(line: str, expected: tuple[str, str] | None) -> None:
    assert split_alias_line(line) == expected


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("no colon here", "need name:value pair"),
        (": value", "need name:value pair"),
        ("name:", "need name:value pair"),
        ("a, b: c", "need name:value pair"),
        ("a@b: c", "name must be local"),
        ("a%b: c", "name must be local"),
        ("a@b, c: d", "need name:value pair"),
    ],
)
def test_split_alias_line_errors(line: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        split_alias_line(line)


# --- differential test against the real postalias(1) ----------------------------------------

INTEROP_LINES = [
    "plain: user",
    "Upper: Someone",
    '"quoted name": x',
    '"with@at": x',
    '"with:colon": y',
    '"sp ace"  :  "v a l"',
    "nospace:value",
    "tight:a,b,c",
    "spacey : a , b ,c ,  d",
    "cmt (comment here) : target (another comment)",
    'pipe: |"/usr/bin/cmd arg1 arg2"',
    'pipe2: "|/usr/bin/prog -x"',
    "pipe3: | /bin/cat",
    "inc: :include:/etc/mail/list",
    "file: /var/mail/file",
    "bs: a\\b",
    'bs2: "a\\"b"',
    "bs\\ key: x",
    "trailing: x,",
    ", lead: x",
    "nocolon x",
    ": novalue",
    "empty:",
    "a@b: x",
    "a%b: x",
    '"a@b": x2',
    '"": empty-key',
    'emptyval: ""',
    "lonebs: \\",
    "domlit: user@[1.2.3.4]",
    "domlit2: user@[ 1.2 . 3 ]",
    "route: <@a,@b:user@c>",
    "angle: Some Name <some@where>",
    "nested: x (a (b) c) y",
    'unterminated: "abc',
    "unterm2: (open comment",
    "jürgen: jürgen@exämple.org",
    "ÜBER: x",
    "tab\tsep:\tvalue\twith\ttabs",
    '"tab\tin quotes": x',
    "bang: host!user",
    "pct: user%host",
    "multi::x",
    "semi: a;b",
    "ctl: a\x0bb",
    "dots: .a..b.",
    'qs_at: "x y"@example.com',
    "L\udce9on: caf\udce9",
    'comma_in_quotes: "a,b", c',
    '"key,comma": x',
    "key\\,x: y",
    "(only comment)",
    "cmtkey(c):v",
    "sq: 'single'",
    "rb: a]b)c",
    'dq\\"key: v',
    "esc\\:colon: v",
    "a b c: d e f",
    "x.y.z: [a]@[b]",
]


def _fold_ascii(text: str) -> str:
    """ASCII lower case of the bytes, as postalias folds keys outside UTF-8 mode."""
    return text.encode("utf-8", "surrogateescape").lower().decode("utf-8", "surrogateescape")


@pytest.mark.interop
def test_split_alias_line_matches_postalias(tmp_path: Path) -> None:
    expected_entries: set[str] = set()
    expected_warnings: set[str] = set()
    keys: set[str] = set()
    for lineno, line in enumerate(INTEROP_LINES, 1):
        try:
            result = split_alias_line(line)
        except ValueError as exc:
            expected_warnings.add(f"line {lineno}: {exc}")
            continue
        assert result is not None
        key = _fold_ascii(result[0])
        assert key not in keys, f"test data has duplicate key {key!r}"
        keys.add(key)
        expected_entries.add(f"{key}:\t{result[1]}")

    main_cf = tmp_path / "main.cf"
    source = tmp_path / "aliases"
    main_cf.write_bytes(b"")
    source.write_bytes(
        "".join(f"{line}\n" for line in INTEROP_LINES).encode("utf-8", "surrogateescape")
    )
    # Sources "in the future" or changed in the same second make Postfix programs wary.
    past = time.time() - 10
    for path in (main_cf, source):
        os.utime(path, (past, past))

    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C"}
    build = subprocess.run(
        [str(POSTALIAS), "-c", str(tmp_path), f"lmdb:{source}"],
        capture_output=True,
        env=env,
        check=False,
    )
    stderr = build.stderr.decode("utf-8", "surrogateescape")
    assert build.returncode == 0, stderr
    warnings = {
        match.group(1)
        for match in re.finditer(
            r"warning: .*?, (line \d+: (?:need name:value pair|name must be local))$",
            stderr,
            re.MULTILINE,
        )
    }
    assert warnings == expected_warnings

    dump = subprocess.run(
        [str(POSTALIAS), "-c", str(tmp_path), "-s", f"lmdb:{source}"],
        capture_output=True,
        env=env,
        check=True,
    )
    signatures = ("@:\t", "YP_LAST_MODIFIED:\t", "YP_MASTER_NAME:\t")
    entries = {
        line
        for line in dump.stdout.decode("utf-8", "surrogateescape").split("\n")
        if line and not line.startswith(signatures)
    }
    assert entries == expected_entries
