"""Logical lines (readlline vectors) and the postmap source format."""

from __future__ import annotations

import json
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailmaps.source import (
    logical_lines,
    parse_postmap_bulk,
    parse_postmap_source,
    split_postmap_line,
)
from tests.conftest import VECTORS


def _unescape(text: str) -> bytes:
    return text.replace("\\0", "\0").encode()


CASES = json.loads((VECTORS / "extracted/readlline_tests.json").read_text())["cases"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_readlline_vectors(case: dict[str, object]) -> None:
    lines = list(logical_lines(_unescape(str(case["input"])), "test"))
    expected = _unescape(str(case["exp_output"]))
    if not expected:
        assert lines == []
        return
    assert lines[0][1] == expected
    assert lines[0][0] == case["exp_first_line"]


def test_orphan_continuation_warns(caplog: pytest.LogCaptureFixture) -> None:
    lines = list(logical_lines(b"  orphan text that goes on and on and on\nkey value\n", "f"))
    assert lines == [(2, b"key value")]
    assert 'f: logical line must not start with whitespace: "  orphan text that goes on and...' in (
        caplog.text
    )


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b'"aa bb" cc', (b'"aa bb"', b"cc")),
        (b"gg\\ hh ii", (b"gg\\ hh", b"ii")),
        (b'"gg\\"hh" ii', (b'"gg\\"hh"', b"ii")),
        (b'"dd ee ff', None),
        (b"key \t value with  spaces \t", (b"key", b"value with  spaces")),
        (b"key", (b"key", b"")),
    ],
)
def test_split_postmap_line(line: bytes, expected: tuple[bytes, bytes] | None) -> None:
    assert split_postmap_line(line) == expected


def test_parser_warnings_name_file_and_line(caplog: pytest.LogCaptureFixture) -> None:
    data = b'# comment\ngood value\nnovalue\nkey: value\n"open quote\nbad\xff x\ncont a\n  b\n'
    entries = list(parse_postmap_source(data, "virtual", utf8=True))
    assert entries == [(b"good", b"value", 2), (b"key:", b"value", 4), (b"cont", b"a  b", 7)]
    text = caplog.text
    assert "virtual, line 3: expected format: key whitespace value" in text
    assert 'virtual, line 4: record is in "key: value" format' in text
    assert "virtual, line 5: unbalanced '\"'" in text
    assert "virtual, line 6: non-UTF-8 input" in text


def test_fast_and_general_parsers_agree() -> None:
    data = b"a b\n# c\n\nB  c d \t\nnovalue\nx: y\n   \n"
    fast = list(parse_postmap_source(data, "f", utf8=False))
    general = list(parse_postmap_source(data + b'"q" v\n', "f", utf8=False))[:-1]
    assert fast == general == [(b"a", b"b", 1), (b"B", b"c d", 4), (b"x:", b"y", 6)]


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


_LINE = st.lists(
    st.sampled_from(["k", "K", "v", " ", "\t", "#", ":", "é", "\r", "x"]), min_size=0, max_size=8
).map("".join)


@settings(max_examples=300, deadline=None)
@given(st.lists(_LINE, max_size=8), st.booleans(), st.booleans())
def test_bulk_parser_agrees_with_the_line_parser(
    lines: list[str], utf8: bool, final_newline: bool
) -> None:
    data = "\n".join(lines).encode() + (b"\n" if final_newline else b"")
    bulk = parse_postmap_bulk(data, utf8=utf8)
    if bulk is None:
        return
    logger = logging.getLogger("mailmaps")
    handler = _Collect()
    logger.addHandler(handler)
    try:
        slow = [(k, v) for k, v, _ in parse_postmap_source(data, "f", utf8=utf8)]
    finally:
        logger.removeHandler(handler)
    assert handler.records == []  # the bulk parser only accepts sources needing no diagnostics
    assert list(zip(*bulk, strict=True)) == slow


@settings(max_examples=300, deadline=None)
@given(st.lists(_LINE, max_size=8), st.booleans(), st.sampled_from([b"", b"\0"]))
def test_bulk_parser_terminates_entries(lines: list[str], utf8: bool, terminator: bytes) -> None:
    data = "\n".join(lines).encode() + b"\n"
    plain = parse_postmap_bulk(data, utf8=utf8)
    terminated = parse_postmap_bulk(data, utf8=utf8, terminator=terminator)
    if plain is None:
        assert terminated is None
        return
    assert terminated is not None
    assert terminated == ([k + terminator for k in plain[0]], [v + terminator for v in plain[1]])


@pytest.mark.parametrize("sep", [b"\t", b" "])
def test_bulk_parser_refuses_empty_keys_and_values(sep: bytes) -> None:
    for data in (sep + b"v\nk" + sep + b"v\n", b"k" + sep + b"\nk2" + sep + b"v\n"):
        for terminator in (b"", b"\0"):
            assert parse_postmap_bulk(data, utf8=False, terminator=terminator) is None
