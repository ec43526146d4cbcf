"""``$name`` expansion: Postfix's mac_expand vector, and main.cf's compatibility-level operators."""

from __future__ import annotations

import logging

import pytest

from mailmaps.macros import COMPAT_LEVEL_RELOPS, MacroStatus, compat_level_value, mac_expand
from tests.conftest import VECTORS


def _length_relop(left: str, operator: str, right: str) -> bool:
    delta = len(left) - len(right)
    return {
        "==": delta == 0,
        "!=": delta != 0,
        "<": delta < 0,
        "<=": delta <= 0,
        ">=": delta >= 0,
        ">": delta > 0,
    }[operator]


def run_vector(text: str) -> str:
    """What the vector's test program prints: blocks of definitions, then of patterns."""
    relops = {op + "length": _length_relop for op in ("==", "!=", "<", "<=", ">=", ">")}
    functions = {"test_named_fn": lambda arg: f"-=oO{arg}Oo=-"}
    out: list[str] = []
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    i = 0
    while i < len(lines):
        table: dict[str, str] = {}
        while i < len(lines):
            line = lines[i]
            i += 1
            out.append(f"<< {line}")
            if not line:
                break
            name, _, value = line.partition("=")
            table[name.strip()] = value.strip()
        while i < len(lines):
            line = lines[i]
            i += 1
            out.append(f"<< {line}")
            if not line:
                break
            result, status = mac_expand(line, table, relops=relops, functions=functions)
            out.append(f"stat={int(status)} result={result}")
        out.append("")
    return "\n".join(out) + "\n"


def test_mac_expand_vector() -> None:
    src = VECTORS / "src" / "util"
    want = [
        line
        for line in (src / "mac_expand.ref").read_text().split("\n")
        if not line.startswith("unknown: warning:")
    ]
    got = run_vector((src / "mac_expand.in").read_text()).split("\n")
    # The reference file ends without the test program's last empty line.
    assert "\n".join(got).rstrip("\n") == "\n".join(want).rstrip("\n")
    assert len(got) > 150


def test_compatibility_levels_compare_as_versions(caplog: pytest.LogCaptureFixture) -> None:
    expr = "${{$compatibility_level} <level {3.10} ? {old} : {new}}"
    for level, answer in [("3.9", "old"), ("3.10", "new"), ("0", "old"), ("3.11.1", "new")]:
        got, status = mac_expand(expr, {"compatibility_level": level}, relops=COMPAT_LEVEL_RELOPS)
        assert (got, status) == (answer, MacroStatus.OK), level
    with caplog.at_level(logging.WARNING):
        got, status = mac_expand(expr, {"compatibility_level": "2 # x"}, relops=COMPAT_LEVEL_RELOPS)
    assert status & MacroStatus.ERROR
    assert "malformed compatibility level" in caplog.text
    assert compat_level_value("3.01") is None
    assert compat_level_value("3.6") == 30006 * 10000


def test_recursion_and_filters() -> None:
    values = {"a": "$b-x", "b": "B", "loop": "$loop"}
    assert mac_expand("$a", values, recurse=True) == ("B-x", MacroStatus.OK)
    assert mac_expand("$a", values) == ("$b-x", MacroStatus.OK)
    _, status = mac_expand("$loop", values, recurse=True)
    assert status & MacroStatus.ERROR
    assert mac_expand("$a", {"a": "x y"}, allowed="xy") == ("x_y", MacroStatus.OK)
