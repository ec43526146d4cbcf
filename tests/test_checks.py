"""mailmaps.checks: header/body check actions, and applying the checks to messages."""

from __future__ import annotations

import doctest
import re
from pathlib import Path

import pytest

import mailmaps.checks
from mailmaps.checks import (
    Action,
    ActionKind,
    Context,
    Dialect,
    HeaderBodyChecks,
    check_message,
    parse_action,
)
from mailmaps.config import MainConfig
from mailmaps.maps import MapList
from mailmaps.message import HeaderEnd, KeyKind, MessageEnd, MessageKey, MimeDefect, MimeError
from tests.conftest import VECTORS
from tests.test_message import LABELS, SUMMARY

GLOBAL = VECTORS / "src" / "global"


# -- parsing actions ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "kind", "text"),
    [
        ("REJECT", ActionKind.REJECT, ""),
        ("reject  go away", ActionKind.REJECT, "go away"),
        ("Warn\tlook at this", ActionKind.WARN, "look at this"),
        ("INFO", ActionKind.INFO, ""),
        ("FILTER smtp:[127.0.0.1]:10025", ActionKind.FILTER, "smtp:[127.0.0.1]:10025"),
        ("PASS", ActionKind.PASS, ""),
        ("DISCARD spam", ActionKind.DISCARD, "spam"),
        ("HOLD check", ActionKind.HOLD, "check"),
        ("PREPEND X-Tag: yes", ActionKind.PREPEND, "X-Tag: yes"),
        ("REPLACE X-Old: no", ActionKind.REPLACE, "X-Old: no"),
        ("REDIRECT a@example.com", ActionKind.REDIRECT, "a@example.com"),
        ("BCC audit@example.com", ActionKind.BCC, "audit@example.com"),
        ("STRIP removed", ActionKind.STRIP, "removed"),
        ("IGNORE whatever", ActionKind.IGNORE, "whatever"),
        ("dunno", ActionKind.DUNNO, ""),
        ("OK", ActionKind.OK, ""),
        ("WARN \n\v text", ActionKind.WARN, "text"),
    ],
)
def test_actions(value: str, kind: ActionKind, text: str) -> None:
    action = parse_action(value)
    assert (action.kind, action.text, action.value) == (kind, text, value)
    assert action.effective and action.warning is None


@pytest.mark.parametrize(
    "value",
    [
        "DELAY 1h",
        "DEFER",
        "450 try later",
        "",
        " REJECT",
        "REJECTED",
        "\u017ftrip",
        "WARN\nx",
        "5xx",
    ],
)
def test_unknown_commands(value: str) -> None:
    action = parse_action(value, map_class="body_checks")
    assert action.kind is ActionKind.UNKNOWN and not action.effective
    assert action.warning == f"unknown command in body_checks map: {value}"
    assert action.log_name is None


@pytest.mark.parametrize(
    ("value", "context", "warning"),
    [
        ("PREPEND", Context.HEADER, "PREPEND action without text in header_checks map"),
        ("REPLACE", Context.BODY, "REPLACE action without text in header_checks map"),
        (
            "PREPEND no header",
            Context.HEADER,
            'bad PREPEND header text "no header" in header_checks map -- '
            'need "headername: headervalue"',
        ),
        (
            "REPLACE Bad Name: x",
            Context.HEADER,
            'bad REPLACE header text "Bad Name: x" in header_checks map -- '
            'need "headername: headervalue"',
        ),
        ("FILTER", Context.HEADER, "missing FILTER command argument in header_checks map"),
        (
            "FILTER smtp",
            Context.HEADER,
            "bad FILTER command smtp in header_checks -- need transport:destination",
        ),
        (
            "REDIRECT nobody",
            Context.BODY,
            'bad REDIRECT target "nobody" in header_checks map -- need user@domain',
        ),
        ("BCC", Context.BODY, 'bad BCC address "" in header_checks map -- need user@domain'),
    ],
)
def test_malformed_actions_are_ignored(value: str, context: Context, warning: str) -> None:
    action = parse_action(value, context)
    assert not action.effective and action.warning == warning
    assert not action.stops_checks and action.log_name is None


def test_prepend_and_replace_text_in_body_context_need_not_be_headers() -> None:
    assert parse_action("PREPEND any text", Context.BODY).effective
    assert parse_action("REPLACE any text", Context.BODY).effective


def test_reject_reasons() -> None:
    assert parse_action("REJECT").reason == "5.7.1 message content rejected"
    assert parse_action("REJECT no spam").reason == "5.7.1 no spam"
    assert parse_action("REJECT 5.7.0 policy").reason == "5.7.0 policy"
    later = parse_action("REJECT 4.7.1  try later")
    assert (later.reason, later.defers, later.warning) == ("4.7.1 try later", True, None)
    odd = parse_action("REJECT 2.0.0 fine")
    assert (odd.reason, odd.defers, odd.effective) == ("4.0.0 fine", True, True)
    assert odd.warning == "bad DSN action in 2.0.0 fine -- need 4.x.x or 5.x.x"
    assert parse_action("REJECT 5.7.1234 x").reason == "5.7.1 5.7.1234 x"
    assert parse_action("WARN x").reason is None and not parse_action("WARN x").defers


def test_action_properties() -> None:
    assert parse_action("STRIP x").drops_line and parse_action("IGNORE").drops_line
    assert not parse_action("WARN").drops_line
    stops = {k for k in ActionKind if k is not ActionKind.UNKNOWN}
    stoppers = {
        kind
        for kind in stops
        if parse_action(f"{kind.value} X-A: b@c:d", Context.HEADER).stops_checks
    }
    assert stoppers == {ActionKind.REJECT, ActionKind.DISCARD, ActionKind.PASS, ActionKind.REDIRECT}
    assert parse_action("WARN x").log_name == "warning"
    assert parse_action("REJECT x").log_name == "reject"
    assert parse_action("DUNNO").log_name is None


def test_smtp_dialect() -> None:
    assert parse_action("REJECT x", dialect=Dialect.SMTP) == Action(
        ActionKind.UNKNOWN,
        "REJECT",
        "x",
        "REJECT x",
        "unsupported command in header_checks map: REJECT x",
        False,
    )
    for value in ("WARN", "INFO", "REPLACE a: b", "PREPEND a: b", "STRIP", "IGNORE", "DUNNO", "OK"):
        assert parse_action(value, dialect=Dialect.SMTP).effective


def test_module_doctest() -> None:
    assert doctest.testmod(mailmaps.checks).failed == 0


# -- the header_body_checks test program's vectors -----------------------------------------------


def hbc_test_output(data: bytes, head: str, mime: str, nest: str, body: str) -> str:
    """What Postfix's header_body_checks test program prints for ``data`` and four map lists."""
    out: list[str] = []
    recno = 0
    errors = MimeError(0)
    with HeaderBodyChecks(
        head or None, mime or None, nest or None, body or None, dialect=Dialect.SMTP
    ) as checks:
        for event, hit in checks.walk(data, line_length_limit=1024, strip_cr=False):
            if isinstance(event, MimeDefect):
                errors |= event.error
                out.append(f"header_body_checks: warning: {event.error.description}: {event.text}")
            elif isinstance(event, HeaderEnd):
                out.append("HEADER END")
            elif isinstance(event, MessageEnd):
                out.append("BODY END")
            elif isinstance(event, MessageKey):
                content: str | None = event.key
                if hit is not None:
                    if hit.log_text is not None:
                        out.append(f"header_body_checks: test-queueID: {hit.log_text}")
                    action = hit.action
                    if action.effective and action.kind is ActionKind.PREPEND:
                        out.append(action.text)
                    elif action.effective and action.kind is ActionKind.REPLACE:
                        content = action.text
                    elif action.drops_line:
                        content = None
                if content is not None:
                    if event.kind is KeyKind.BODY:
                        out.append(f"{recno} BODY N {event.offset}\t|{content}")
                    else:
                        out.append(f"{recno} {LABELS[event.kind]} {event.offset}\t|{content}")
                recno += 1
    out.extend(f"header_body_checks: warning: {t}" for f, t in SUMMARY.items() if f in errors)
    return "\n".join(out) + "\n"


def _static(text: str) -> str:
    # A /./ regexp and static: answer the same here: empty lines are never looked up.
    return f"static:{{{text}}}"


HBC_VECTORS = {
    "null": [("", "", "", ""), ("static:dunno",) * 4, ("static:ok",) * 4],
    "warn": [("static:warn",) * 4],
    "ignore": [("static:ignore",) * 4],
    "prepend": [
        (
            _static("prepend header: head"),
            _static("prepend header: mime"),
            _static("prepend header: nest"),
            _static("prepend body"),
        )
    ],
    "replace": [
        (
            _static("replace header: head"),
            _static("replace header: mime"),
            _static("replace header: nest"),
            _static("replace body"),
        )
    ],
    "strip": [
        (
            _static("strip header line"),
            _static("strip mime header line"),
            _static("strip nested header"),
            _static("strip body line"),
        )
    ],
}


@pytest.mark.parametrize("name", sorted(HBC_VECTORS))
def test_header_body_checks_vectors(name: str) -> None:
    data = (GLOBAL / "mime_test.in").read_bytes()
    expected = (GLOBAL / f"header_body_checks_{name}.ref").read_text()
    for maps in HBC_VECTORS[name]:
        head, mime, nest, body = maps
        assert hbc_test_output(data, head, mime, nest, body) == expected, maps


# -- applying checks as cleanup(8) does -----------------------------------------------------------

MESSAGE = (
    b"Subject:hello\n"
    b"From:a@example.com\n"
    b"Content-Type: multipart/mixed; boundary=B\n"
    b"\n"
    b"--B\n"
    b"Content-Type: message/rfc822\n"
    b"\n"
    b"Subject:inner\n"
    b"\n"
    b"inner body\n"
    b"--B--\n"
)


def _hits(report: mailmaps.checks.CheckReport) -> list[tuple[str, str, str]]:
    return [(hit.map_class, hit.line, hit.action.kind.name) for hit in report.hits]


def test_routing_of_header_classes() -> None:
    report = check_message(
        MESSAGE,
        header_checks="inline:{ {subject:hello=WARN primary} }",
        nested_header_checks="inline:{ {subject:inner=INFO nested} }",
        body_checks="static:{DUNNO}",
    )
    assert _hits(report) == [
        ("header_checks", "Subject:hello", "WARN"),
        ("body_checks", "--B", "DUNNO"),
        ("nested_header_checks", "Subject:inner", "INFO"),
        ("body_checks", "inner body", "DUNNO"),
        ("body_checks", "--B--", "DUNNO"),
    ]
    assert report.accepted and report.warnings == []


def test_mime_headers_use_mime_header_checks_and_default_to_header_checks() -> None:
    report = check_message(MESSAGE, header_checks="static:{WARN}")
    classes = [(hit.map_class, hit.line) for hit in report.hits]
    assert ("mime_header_checks", "Content-Type: multipart/mixed; boundary=B") in classes
    assert ("mime_header_checks", "Content-Type: message/rfc822") in classes
    assert ("nested_header_checks", "Subject:inner") in classes
    only_primary = check_message(
        MESSAGE, header_checks="static:{WARN}", mime_header_checks=None, nested_header_checks=""
    )
    assert [hit.line for hit in only_primary.hits] == ["Subject:hello", "From:a@example.com"]
    # smtp_mime_header_checks and smtp_nested_header_checks are empty by default
    smtp = check_message(MESSAGE, header_checks="static:{WARN}", dialect=Dialect.SMTP)
    assert [hit.map_class for hit in smtp.hits] == ["smtp_header_checks"] * 2


def test_reject_stops_further_checks() -> None:
    report = check_message(
        MESSAGE,
        header_checks="inline:{ {from:a@example.com=REJECT go away} }",
        body_checks="static:{WARN}",
    )
    assert _hits(report) == [("header_checks", "From:a@example.com", "REJECT")]
    assert (report.reject, report.deferred, report.accepted) == ("5.7.1 go away", False, False)


def test_defer_discard_hold_and_the_rest() -> None:
    report = check_message(
        b"Subject:x\nX-A:1\nX-B:2\nX-C:3\n\nbody\n",
        header_checks=(
            "inline:{subject:x=HOLD, {x-a:1=BCC audit@example.com}, "
            "{x-b:2=FILTER smtp:[::1]:25}, {x-c:3=PREPEND X-Seen: yes}}"
        ),
        body_checks="inline:{ {body=REJECT 4.7.1 later} }",
    )
    assert report.hold and report.bcc == ["audit@example.com"]
    assert report.filter == "smtp:[::1]:25" and report.prepended == ["X-Seen: yes"]
    assert (report.reject, report.deferred) == ("4.7.1 later", True)
    discard = check_message(b"Subject: x\n\nbody\n", header_checks="static:{DISCARD}")
    assert discard.discard and not discard.accepted and len(discard.hits) == 1
    redirect = check_message(
        b"A: 1\nB: 2\n", header_checks="static:{REDIRECT x@example.com}", body_checks="static:{x}"
    )
    assert redirect.redirect == "x@example.com" and len(redirect.hits) == 1


def test_invalid_actions_warn_and_pass() -> None:
    report = check_message(b"Subject: x\n\nbody\n", header_checks="static:{PREPEND oops}")
    assert report.accepted and report.prepended == []
    assert report.warnings == [
        'bad PREPEND header text "oops" in header_checks map -- need "headername: headervalue"'
    ]


def test_body_checks_size_limit_and_long_lines() -> None:
    body = b"".join(b"line %04d\n" % i for i in range(100))
    with HeaderBodyChecks(body_checks="static:{WARN}", body_checks_size_limit=100) as checks:
        report = checks.check(b"Subject: x\n\n" + body)
    assert [hit.line for hit in report.hits] == [f"line {i:04d}" for i in range(10)]
    # long lines are checked in line_length_limit pieces, as cleanup(8) sees them
    long_line = b"x" * 5000
    report = check_message(b"\n" + long_line + b"\r\n", body_checks="static:{WARN}")
    assert [len(hit.line) for hit in report.hits] == [2048, 2048, 904]
    report = check_message(
        b"\n" + long_line + b"\r\n",
        body_checks="static:{WARN}",
        line_length_limit=None,
        strip_cr=False,
    )
    assert [len(hit.line) for hit in report.hits] == [5001]


def test_lookup_problems_defer() -> None:
    report = check_message(b"Subject: x\nX: y\n\nbody\n", header_checks="fail:x")
    assert report.deferred and not report.accepted
    assert (
        report.warnings
        == ["header_checks map lookup problem -- message not accepted, try again later"] * 2
    )
    empty = check_message(b"Subject: x\n", header_checks="static:{}")
    assert empty.deferred and empty.hits == []


def test_mime_nesting_rejects_when_header_checks_are_used() -> None:
    data = b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\n\n--b%d\n" % (i, i) for i in range(105)
    )
    report = check_message(data, header_checks="inline:{nothing=here}")
    assert MimeError.NESTING in report.mime_errors
    assert report.reject == "5.6.0 MIME nesting exceeds safety limit"
    assert check_message(data, body_checks="inline:{nothing=here}").reject is None


def test_hit_log_text() -> None:
    report = check_message(
        b"Subject: a\n\tb\n\nbody\n",
        header_checks="static:{REJECT}",
    )
    assert report.hits[0].log_text == "reject: header Subject: a??b: 5.7.1 message content rejected"
    report = check_message(b"\n" + b"y" * 300 + b"\n", body_checks="static:{WARN}")
    assert report.hits[0].log_text == "warning: body " + "y" * 200
    assert check_message(b"\nx\n", body_checks="static:{IGNORE}").hits[0].log_text is None


def test_from_config_and_open_map_lists(tmp_path: Path) -> None:
    config = MainConfig(
        {
            "header_checks": "inline:{subject:x=WARN}",
            "body_checks": "$mybody",
            "mybody": "static:{INFO}",
            "body_checks_size_limit": "0",
            "disable_mime_input_processing": "yes",
        }
    )
    with HeaderBodyChecks.from_config(config) as checks:
        assert checks.mime_header_checks is checks.header_checks
        assert not checks.mime and checks.body_checks_size_limit == 0
        report = checks.check(MESSAGE.replace(b"Subject:hello", b"Subject:x"))
    assert _hits(report)[0] == ("header_checks", "Subject:x", "WARN")
    assert {hit.map_class for hit in report.hits} == {"header_checks", "body_checks"}
    smtp_config = MainConfig({"smtp_header_checks": "static:{WARN}"})
    with HeaderBodyChecks.from_config(smtp_config, dialect=Dialect.SMTP) as checks:
        assert checks.mime_header_checks is None and checks.body_checks is None
    maps = MapList("static:{WARN}", title="mine")
    with HeaderBodyChecks(maps) as checks:
        assert checks.header_checks is maps
    assert maps.lookup("x") == "WARN"  # not closed: the caller owns it
    maps.close()


# -- the documentation ----------------------------------------------------------------------------

DOCS_PAGE = Path(__file__).resolve().parents[1] / "docs" / "checks.md"


def test_docs_examples_run() -> None:
    """The Python examples of docs/checks.md run and do what the page says."""
    blocks = re.findall(r"^```python\n(.*?)^```", DOCS_PAGE.read_text(), re.MULTILINE | re.DOTALL)
    assert len(blocks) == 3
    namespace: dict[str, object] = {}
    for block in blocks:
        exec(compile(block, str(DOCS_PAGE), "exec"), namespace)
