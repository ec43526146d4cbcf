"""MapSpec parsing, list splitting and brace groups (mystrtokq, extpar, mail_parm_split)."""

from __future__ import annotations

import pytest

from mailmaps import MapSpec, SpecError, parse_map_list, split_list
from mailmaps.spec import extract_braced, split_parameter
from tests.conftest import VECTORS


def test_parse_type_and_name() -> None:
    assert MapSpec.parse("lmdb:/etc/postfix/virtual") == MapSpec("lmdb", "/etc/postfix/virtual")
    assert MapSpec.parse("inline:{ a=b, { c = d e } }").name == "{ a=b, { c = d e } }"
    assert MapSpec.parse("socketmap:inet:127.0.0.1:9000:name").name == "inet:127.0.0.1:9000:name"
    assert str(MapSpec.parse("virtual", default_type="hash")) == "hash:virtual"


@pytest.mark.parametrize("bad", ["virtual", ":name"])
def test_parse_errors(bad: str) -> None:
    with pytest.raises(SpecError):
        MapSpec.parse(bad)


def test_map_list_keeps_braced_items_together() -> None:
    specs = parse_map_list("lmdb:/a, inline:{ x=y, {k = v w} }\tstatic:{ a b },, cdb:/c")
    assert [str(s) for s in specs] == [
        "lmdb:/a",
        "inline:{ x=y, {k = v w} }",
        "static:{ a b }",
        "cdb:/c",
    ]


def test_split_list_unbalanced() -> None:
    assert split_list("a { b c") == ["a", "{ b c"]
    assert split_list("a } b") == ["a", "}", "b"]
    assert split_list("  ,, ") == []


def test_extract_braced() -> None:
    assert extract_braced("{ a b }") == ("a b", None)
    assert extract_braced("{ a b ")[1] == "missing '}' in \"{ a b \""
    assert extract_braced("{ a }x")[1] == "syntax error after '}' in \"{ a }x\""
    assert extract_braced("x")[1] is not None


def test_mail_parm_split_vector() -> None:
    """global/mail_parm_split.in/.ref: every Input/Output pair."""
    ref = (VECTORS / "src/global/mail_parm_split.ref").read_text().splitlines()
    cases: list[tuple[str, list[str], bool]] = []
    for line in ref:
        if line.startswith("Input:\t>"):
            cases.append((line[len("Input:\t>") : -1], [], False))
        elif line.startswith("Output:\t>"):
            cases[-1][1].append(line[len("Output:\t>") : -1])
        elif "warning" in line:
            cases[-1] = (cases[-1][0], cases[-1][1], True)
    assert len(cases) == 6
    for text, expected, warns in cases:
        items = split_list(text)
        got = [extract_braced(i)[0] if i.startswith("{") else i for i in items]
        assert got == expected, text
        if warns:
            with pytest.raises(SpecError):
                split_parameter("p", text)
        else:
            assert split_parameter("p", text) == expected
