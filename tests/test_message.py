"""mailmaps.message: Postfix's MIME engine as postmap -h/-b/-m and cleanup(8) drive it."""

from __future__ import annotations

import doctest
import io
from pathlib import Path

import pytest

import mailmaps.message
from mailmaps.config import MainConfig
from mailmaps.errors import ConfigError
from mailmaps.message import (
    Event,
    HeaderEnd,
    KeyKind,
    MessageEnd,
    MessageKey,
    MimeDefect,
    MimeError,
    MimeLimits,
    MimeParser,
    is_header,
    message_keys,
    message_lines,
    parse_message,
    split_records,
)
from tests.conftest import VECTORS

GLOBAL = VECTORS / "src" / "global"
LABELS = {KeyKind.PRIMARY: "MAIN", KeyKind.MIME: "MULT", KeyKind.NESTED: "NEST"}
SUMMARY = {
    MimeError.TRUNC_HEADER: "message header length exceeds safety limit",
    MimeError.NESTING: "MIME nesting exceeds safety limit",
    MimeError.EIGHT_BIT_IN_HEADER: "improper use of 8-bit data in message header",
    MimeError.EIGHT_BIT_IN_7BIT_BODY: "improper use of 8-bit data in message body",
    MimeError.ENCODING_DOMAIN: "improper message/* or multipart/* encoding domain",
}


def keys(
    data: bytes, *, headers: bool = False, body: bool = False, mime: bool = False
) -> list[tuple[str, str]]:
    return [
        (k.kind.value, k.key) for k in message_keys(data, headers=headers, body=body, mime=mime)
    ]


def mime_test_output(events: list[Event]) -> str:
    """Format events as Postfix's mime_state/header_body_checks test programs print them."""
    out: list[str] = []
    recno = 0
    errors = MimeError(0)
    for event in events:
        if isinstance(event, MessageKey):
            if event.kind is KeyKind.BODY:
                rec = "C" if event.continued else "N"
                out.append(f"{recno} BODY {rec} {event.offset}\t|{event.key}")
            else:
                out.append(f"{recno} {LABELS[event.kind]} {event.offset}\t|{event.key}")
            recno += 1
        elif isinstance(event, HeaderEnd):
            out.append("HEADER END")
        elif isinstance(event, MessageEnd):
            out.append("BODY END")
        else:
            errors |= event.error
            out.append(f"header_body_checks: warning: {event.error.description}: {event.text}")
    out.extend(f"header_body_checks: warning: {t}" for f, t in SUMMARY.items() if f in errors)
    return "\n".join(out) + "\n"


# -- the regression vector ------------------------------------------------------------------------


def test_mime_test_in_matches_reference_output() -> None:
    """mime_test.in through the MIME engine: every record, class, offset and problem, in order,
    exactly as header_body_checks_null.ref (the test program with no checks) lists them."""
    data = (GLOBAL / "mime_test.in").read_bytes()
    events = list(parse_message(data, line_length_limit=1024))
    assert mime_test_output(events) == (GLOBAL / "header_body_checks_null.ref").read_text()


def test_module_doctest() -> None:
    assert doctest.testmod(mailmaps.message).failed == 0


# -- headers --------------------------------------------------------------------------------------


def test_folded_header_keeps_line_breaks() -> None:
    data = b"Subject: one\n two\n\tthree\nTo: x\n"
    assert keys(data, headers=True) == [
        ("primary", "Subject: one\n two\n\tthree"),
        ("primary", "To: x"),
    ]


def test_obsolete_space_before_colon_is_removed() -> None:
    data = b"Subject \t : value\nX-A:b\n"
    assert keys(data, headers=True) == [("primary", "Subject: value"), ("primary", "X-A:b")]


def test_header_names() -> None:
    assert is_header("Subject: x")
    assert is_header("X-Foo :")
    assert is_header(b"a:")
    assert not is_header("Bad Name: x")
    assert not is_header(": x")
    assert not is_header(" Subject: x")
    assert not is_header("Sub\x7fject: x")
    assert not is_header("Süb: x")
    assert not is_header("no colon")
    assert not is_header(b"Sub\0ject: x")


def test_header_size_limit_drops_continuations() -> None:
    data = b"Subject: 0123456789\n 0123456789\n abc\n def\n"
    limits = MimeLimits(header_size_limit=20)
    assert keys(data, headers=True) == [("primary", "Subject: 0123456789\n 0123456789\n abc\n def")]
    events = list(parse_message(data, limits=limits))
    assert isinstance(events[0], MimeDefect) and events[0].error is MimeError.TRUNC_HEADER
    found = [e for e in events if isinstance(e, MessageKey)]
    assert found[0].key == "Subject: 0123456789\n 0123456789"


def test_first_line_of_a_header_is_never_cut() -> None:
    data = b"Subject: " + b"x" * 100 + b"\n more\n"
    got = list(message_keys(data, headers=True, limits=MimeLimits(header_size_limit=10)))
    assert got[0].data == b"Subject: " + b"x" * 100


def test_nul_ends_a_key() -> None:
    data = b"Subject: a\0b\n\tc\0d\n\nbo\0dy\n"
    got = list(message_keys(data, headers=True, body=True))
    assert [k.key for k in got] == ["Subject: a\n\tc", "", "bo"]
    assert got[-1].data == b"bo\0dy"


def test_headers_only_stops_at_end_of_headers() -> None:
    data = b"Subject: x\n\nContent-Type: y\n"
    assert keys(data, headers=True) == [("primary", "Subject: x")]


def test_header_properties() -> None:
    header, body = list(message_keys(b"Content-Type: text/plain\n\nx\n", headers=True, body=True))[
        :2
    ]
    assert header.header_name == "Content-Type" and header.is_header and header.is_mime_header
    assert body.header_name is None and not body.is_header and not body.is_mime_header


# -- body -----------------------------------------------------------------------------------------


def test_empty_line_after_headers_is_a_body_key() -> None:
    assert keys(b"Subject: x\n\nbody\n", body=True) == [("body", ""), ("body", "body")]


def test_missing_empty_line_is_inserted() -> None:
    """A non-header line ends the primary headers; Postfix inserts an empty body line."""
    assert keys(b"Subject: x\nbody\n", body=True) == [("body", ""), ("body", "body")]
    assert keys(b"not a header\n", body=True) == [("body", ""), ("body", "not a header")]


def test_crlf_lines_keep_their_cr() -> None:
    data = b"Subject: x\r\n\tfold\r\n\r\nbody\r\n"
    assert keys(data, headers=True, body=True) == [
        ("primary", "Subject: x\r\n\tfold\r"),
        ("body", ""),
        ("body", "\r"),
        ("body", "body\r"),
    ]


def test_body_without_mime_includes_part_headers() -> None:
    data = b"Content-Type: multipart/mixed; boundary=B\n\n--B\nX: y\n\nz\n--B--\n"
    assert keys(data, body=True) == [
        ("body", ""),
        ("body", "--B"),
        ("body", "X: y"),
        ("body", ""),
        ("body", "z"),
        ("body", "--B--"),
    ]
    assert keys(data, body=True, mime=True) == [
        ("body", ""),
        ("body", "--B"),
        ("body", ""),
        ("body", "z"),
        ("body", "--B--"),
    ]
    assert keys(data, headers=True, mime=True) == [
        ("primary", "Content-Type: multipart/mixed; boundary=B"),
        ("mime", "X: y"),
    ]
    assert keys(data, headers=True) == [("primary", "Content-Type: multipart/mixed; boundary=B")]


def test_needs_headers_or_body() -> None:
    with pytest.raises(ValueError):
        list(message_keys(b"x\n", mime=True))


# -- MIME structure -------------------------------------------------------------------------------

MULTIPART = (
    b'Content-Type: multipart/mixed; boundary="XX"\n'
    b"\n"
    b"--XX\n"
    b"Content-Type: message/rfc822\n"
    b"\n"
    b"Subject: inner\n"
    b"Content-Type: multipart/alternative; boundary=YY\n"
    b"\n"
    b"--YY\n"
    b"A: 1\n"
    b"\n"
    b"--XX\n"
    b"B: 2\n"
    b"--XX--\n"
    b"C: 3\n"
)


def test_nested_messages_and_parts() -> None:
    assert keys(MULTIPART, headers=True, mime=True) == [
        ("primary", 'Content-Type: multipart/mixed; boundary="XX"'),
        ("mime", "Content-Type: message/rfc822"),
        ("nested", "Subject: inner"),
        ("nested", "Content-Type: multipart/alternative; boundary=YY"),
        ("mime", "A: 1"),
        # the outer boundary closes the inner multipart as well
        ("mime", "B: 2"),
    ]


def test_digest_parts_default_to_messages() -> None:
    data = b"Content-Type: multipart/digest; boundary=D\n\n--D\n\nSubject: s\n\nb\n"
    assert keys(data, headers=True, mime=True)[1:] == [("nested", "Subject: s")]


def test_other_content_type_keeps_the_default() -> None:
    """Postfix changes the content type only for text, message and multipart (or an empty
    header): application/* in a digest still counts as message/rfc822."""
    data = (
        b"Content-Type: multipart/digest; boundary=D\n\n--D\n"
        b"Content-Type: application/pdf\n\nSubject: s\n"
    )
    assert keys(data, headers=True, mime=True)[-1] == ("nested", "Subject: s")


def test_boundary_syntax() -> None:
    data = (
        b'content-type : multipart/(co\\m\\)ment)x; boundary(c) = "ab\\cd \n ef" junk\n\n'
        b"--abcd ef\nX: y\n"
    )
    assert keys(data, headers=True, mime=True)[-1] == ("mime", "X: y")


def test_boundary_length_limit_truncates_boundaries() -> None:
    data = b"Content-Type: multipart/mixed; boundary=ABCDEFGH\n\n--ABCDxx\nX: y\n"
    limits = MimeLimits(mime_boundary_length_limit=4)
    got = [
        (k.kind.value, k.key) for k in message_keys(data, headers=True, mime=True, limits=limits)
    ]
    assert got[-1] == ("mime", "X: y")


def test_nesting_limit() -> None:
    data = b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n" % (i, i) for i in range(5)
    )
    events = list(parse_message(data, limits=MimeLimits(mime_nesting_limit=1)))
    defects = [e for e in events if isinstance(e, MimeDefect)]
    assert [d.error for d in defects] == [MimeError.NESTING]
    assert defects[0].text == "Content-Type: multipart/mixed; boundary=b3"


def test_encoding_domain_and_eight_bit_problems() -> None:
    data = (
        b"Subject: caf\xc3\xa9\n"
        b"Content-Type: multipart/mixed; boundary=B\n"
        b"Content-Transfer-Encoding: base64\n"
        b"\n"
        b"b\xc3\xb6dy\n"
    )
    parser = MimeParser()
    events: list[Event] = []
    for line in message_lines(data):
        events.extend(parser.update(line))
    events.extend(parser.end())
    defects = [(e.error, e.data) for e in events if isinstance(e, MimeDefect)]
    # The multipart prolog is 7bit again, whatever the header said.
    assert defects == [
        (MimeError.EIGHT_BIT_IN_HEADER, b"Subject: caf\xc3\xa9"),
        (MimeError.ENCODING_DOMAIN, b"base64"),
        (MimeError.EIGHT_BIT_IN_7BIT_BODY, b"b\xc3\xb6dy"),
    ]
    assert parser.errors == (
        MimeError.EIGHT_BIT_IN_HEADER | MimeError.ENCODING_DOMAIN | MimeError.EIGHT_BIT_IN_7BIT_BODY
    )
    assert parser.errors.description == "improper use of 8-bit data in message header"
    assert MimeError.NESTING.dsn == "5.6.0"
    leaf = b"Content-Type: text/plain\nContent-Transfer-Encoding: 8bit\n\nb\xc3\xb6dy\n"
    assert not any(isinstance(e, MimeDefect) for e in parse_message(leaf))


def test_disabled_mime_parses_no_structure() -> None:
    events = list(parse_message(MULTIPART, mime=False))
    kinds = {e.kind for e in events if isinstance(e, MessageKey)}
    assert kinds == {KeyKind.PRIMARY, KeyKind.BODY}


def test_offsets_follow_postfix() -> None:
    """A header's offset grows by the length of the line that ended it (a Postfix quirk)."""
    events = [e for e in parse_message(b"A: 1\nBB: 22\n\nxyz\nw\n") if isinstance(e, MessageKey)]
    assert [(e.kind.value, e.offset) for e in events] == [
        ("primary", 0),
        ("primary", 7),
        ("body", 0),
        ("body", 1),
        ("body", 5),
    ]


def test_parser_end() -> None:
    parser = MimeParser()
    assert parser.in_headers
    assert parser.update(b"Subject: x") == []
    events = parser.end()
    assert isinstance(events[0], MessageKey) and isinstance(events[1], HeaderEnd)
    assert isinstance(events[-1], MessageEnd)
    assert parser.end() == []
    assert not parser.in_headers
    with pytest.raises(ValueError):
        parser.update(b"more")


# -- input ----------------------------------------------------------------------------------------


def test_lines_from_bytes_text_chunks_and_files() -> None:
    data = b"a\nb\r\n\nc"
    expected = [b"a", b"b\r", b"", b"c"]
    assert list(message_lines(data)) == expected
    assert list(message_lines(data.decode())) == expected
    assert list(message_lines([b"a\nb", b"\r\n", b"\n", b"c"])) == expected
    assert list(message_lines(io.BytesIO(data))) == expected
    assert list(message_lines(b"")) == []
    assert list(message_lines(b"\n")) == [b""]


def test_postfix_eof_quirk() -> None:
    """An unterminated last line that ends in 0xFF reads as end of input in Postfix."""
    assert list(message_lines(b"a\nb\xff", postfix_eof=True)) == [b"a"]
    assert list(message_lines(b"a\nb\xff\n", postfix_eof=True)) == [b"a", b"b\xff"]
    assert list(message_lines(b"a\nb\xff")) == [b"a", b"b\xff"]
    assert keys(b"\nx\xff", body=True) == [("body", "")]


def test_split_records_like_the_smtp_server() -> None:
    line = b"x" * 10
    assert list(split_records(line + b"\n", line_length_limit=5)) == [
        (b"xxxxx", True),
        (b"xxxxx", True),
        (b"", False),
    ]
    # the CR is only removed from a record that ends the line
    assert list(split_records(b"abcd\r\n", line_length_limit=5, strip_cr=True)) == [
        (b"abcd\r", True),
        (b"", False),
    ]
    assert list(split_records(b"abc\r\n", line_length_limit=5, strip_cr=True)) == [(b"abc", False)]
    with pytest.raises(ValueError):
        list(split_records(b"x", line_length_limit=0))


def test_continued_records() -> None:
    """Long header lines are joined without a line break; long body lines stay in pieces, and a
    continued record is never taken for a boundary."""
    data = (
        b"Subject: "
        + b"a" * 20
        + b"\nContent-Type: multipart/mixed; boundary=B\n\n"
        + (b"y" * 16 + b"--B\n--B\nX: 1\n")
    )
    events = [e for e in parse_message(data, line_length_limit=16) if isinstance(e, MessageKey)]
    assert events[0].key == "Subject: " + "a" * 20
    body = [(e.key, e.continued) for e in events if e.kind is KeyKind.BODY]
    assert body == [("", False), ("y" * 16, True), ("--B", False), ("--B", False)]
    assert (events[-1].kind, events[-1].key) == (KeyKind.MIME, "X: 1")


# -- configuration --------------------------------------------------------------------------------


def test_limits_from_config(tmp_path: Path) -> None:
    config = MainConfig({"header_size_limit": "${small}", "small": "99"})
    assert MimeLimits.from_config(config) == MimeLimits(header_size_limit=99)
    assert MimeLimits.from_config(MainConfig()) == MimeLimits()
    with pytest.raises(ConfigError, match="bad numerical configuration: mime_nesting_limit = x"):
        MimeLimits.from_config(MainConfig({"mime_nesting_limit": "x"}))
    with pytest.raises(ConfigError, match="invalid header_size_limit parameter value 0 < 1"):
        MimeLimits.from_config(MainConfig({"header_size_limit": "0"}))
