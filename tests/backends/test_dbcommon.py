"""The pieces the server-backed tables share: query templates (db_common.c), escaping, the
sqlite parameter rewrite, and the LDAP BER encoder checked against ldap3's."""

from __future__ import annotations

import logging

import pytest

from mailmaps.backends._ber import FilterError, Reader, decode_message, encode_filter
from mailmaps.backends._dbcommon import QueryContext
from mailmaps.backends.ldap import escape_dn_value, escape_filter_value
from mailmaps.backends.sqlite import parameterize, sqlite_quote
from mailmaps.errors import ConfigError, TemporaryLookupError


def ctx(query: str, result: str = "%s") -> QueryContext:
    return QueryContext("mysql:/t.cf", "/t.cf", query, result)


@pytest.mark.parametrize(
    ("query", "key", "expected"),
    [
        ("'%s'", "user@mail.example.com", "'user@mail.example.com'"),
        ("%u|%d", "user@mail.example.com", "user|mail.example.com"),
        ("%1.%2.%3", "user@mail.example.com", "com.example.mail"),
        ("%U/%D/%S %%", "a@b.c", "a/b.c/a@b.c %"),
        ("%u", "user", "user"),  # no domain: the whole key
        ("%d", "user", None),  # no domain to fill in
        ("%d", "user@", None),
        ("%u", "@example.com", None),  # empty local part
        ("%3", "a@example.com", None),  # two labels only
        ("%2", "a@x..y", "x"),  # empty labels do not count
        ("%s", "", None),  # an empty key is never looked up
    ],
)
def test_query_expansion(query: str, key: str, expected: str | None) -> None:
    context = ctx(query)
    assert context.expand_query(key, None) == expected
    assert context.fillable(key) == (expected is not None)


def test_quoting_applies_to_each_piece() -> None:
    context = ctx("'%u' '%d' %%s")
    assert context.expand_query("o'b@x", sqlite_quote) == "'o''b' 'x' %s"


@pytest.mark.parametrize("template", ["%x", "abc%", "%0"])
def test_bad_templates(template: str) -> None:
    with pytest.raises(ConfigError, match="Invalid query template"):
        ctx(template)
    with pytest.raises(ConfigError, match="Invalid result template"):
        ctx("%s", template)


def test_result_formatting(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="mailmaps")
    context = ctx("%s", "<%u> at %d for %U")
    values = ["a@x.example", None, "", "bare", "@y.example", b"b@z.example"]
    assert (
        context.format_results(values, "k@key.example", 0)
        == "<a> at x.example for k,<b> at z.example for k"
    )
    assert "empty lookup result" in caplog.text
    plain = ctx("%s")
    assert plain.format_results(["a", None, "", "b, c"], "k", 0) == "a,b, c"
    assert plain.format_results([None, ""], "k", 0) is None
    assert plain.format_results(["a", "b"], "k", 2) == "a,b"
    with pytest.raises(TemporaryLookupError, match="expansion limit"):
        plain.format_results(["a", "b", "c"], "k", 2)


def test_escaping() -> None:
    assert escape_filter_value("*)(uid=*\\") == "\\2A\\29\\28uid=\\2A\\5C"
    assert escape_dn_value(' a,b+c"#;<>\\') == "\\20a\\2Cb\\2Bc\\22\\23\\3B\\3C\\3E\\5C"
    assert sqlite_quote("it's") == "it''s"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (
            "SELECT goto FROM alias WHERE address='%s'",
            ("SELECT goto FROM alias WHERE address=(?)", "s"),
        ),
        ("SELECT g FROM t WHERE a='%u@%d'", ("SELECT g FROM t WHERE a=(? || '@' || ?)", "ud")),
        (
            "SELECT g FROM t WHERE a LIKE '%%%s' AND b='it''s'",
            ("SELECT g FROM t WHERE a LIKE ('%' || ?) AND b='it''s'", "s"),
        ),
        ("SELECT %s", None),  # outside quotes: the text path
        ("SELECT g FROM t WHERE a='%s' -- note", None),
        ("SELECT g FROM t WHERE a=? OR b='%s'", None),
        ("SELECT g FROM t WHERE a='%s", None),
    ],
)
def test_sqlite_parameterize(template: str, expected: tuple[str, str] | None) -> None:
    assert parameterize(template) == expected


FILTERS = [
    "(&(uid=a*b)(!(cn=x)))",
    "(mail=*)",
    "(|(a>=1)(b<=2)(c~=x))",
    "(cn=*mid*dle*)",
    "(cn=start*)",
    "(a=\\2a\\28)",
    "(mailacceptinggeneralid=müller@example.com)",
    "(cn:2.5.13.2:=x)",
]


@pytest.mark.parametrize("text", FILTERS)
def test_filters_encode_as_ldap3_does(text: str) -> None:
    from ldap3.operation.search import compile_filter, parse_filter
    from pyasn1.codec.ber import encoder

    parsed = parse_filter(text, None, False, False, None, False)
    assert encode_filter(text) == encoder.encode(compile_filter(parsed.elements[0]))


@pytest.mark.parametrize(
    "text", ["(a=b", "a=b", "(=b)", "(a=\\zz)", "(a b=c)", "(&(a=b)", "(a=b)x"]
)
def test_bad_filters(text: str) -> None:
    with pytest.raises(FilterError):
        encode_filter(text)


def test_reader_and_decoder() -> None:
    from mailmaps.backends._ber import _octets, _tlv

    reader = Reader()
    attribute = _tlv(0x30, _octets("maildrop") + _tlv(0x31, _octets("a@x") + _octets("b@y")))
    message = _tlv(0x30, b"\x02\x01\x05" + _tlv(0x64, _octets("cn=a") + _tlv(0x30, attribute)))
    done = _tlv(0x30, b"\x02\x01\x05" + _tlv(0x65, b"\x0a\x01\x20" + _octets("") + _octets("gone")))
    reader.feed(message[:5])
    assert reader.next_message() is None
    reader.feed(message[5:] + done)
    first = decode_message(reader.next_message() or b"")
    assert (first.kind, first.message_id, first.dn) == ("entry", 5, b"cn=a")
    assert first.attributes == [("maildrop", [b"a@x", b"b@y"])]
    second = decode_message(reader.next_message() or b"")
    assert (second.kind, second.result_code, second.message) == ("done", 32, "gone")
    assert reader.next_message() is None
