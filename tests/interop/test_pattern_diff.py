"""Differential tests: regexp: and pcre: tables, mailmaps against real Postfix 3.7 postmap.

Seeded generators write rule files full of tricky cases (flags, negation, nested and broken
IF/ENDIF, substitutions good and bad, POSIX alternatives where longest and first differ, basic
REs, bracket expressions, back-references, bad patterns) and keys (ASCII, UTF-8, malformed
bytes, upper case).  Both postmaps must print the same stdout, the same warnings and exit with
the same status, for ``-q KEY`` and ``-q -``, in ASCII and UTF-8 mode, and on both evaluation
routes (rule by rule, and through the prefilter).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest

from mailmaps.engines import prefilter
from tests.conftest import REAL_POSTMAP, Result, run_ours, run_real

pytestmark = pytest.mark.interop


@pytest.fixture(autouse=True, params=["never", "always", "no-hyperscan"])
def route(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """Run every test on each evaluation route: rule by rule, through the Hyperscan prefilter,
    and through the prefilter as it works without Hyperscan (literals in a dictionary)."""
    if request.param == "no-hyperscan":
        monkeypatch.setattr(prefilter, "_hs", None)
    monkeypatch.setenv("MAILMAPS_PREFILTER", "never" if request.param == "never" else "always")
    monkeypatch.setenv("MAILMAPS_CACHE_DIR", str(tmp_path / "cache"))
    return str(request.param)


# Pattern pieces that exercise the engines: ERE and PCRE share most of this syntax, and where
# they don't, both sides must still agree (a compile error is a skipped rule with a warning).
ATOMS = [
    "a",
    "ab",
    "(a|ab)",
    "(ab|a)",
    "(a|ab)(c|bcd)",
    "(a*)(b*)",
    "(a+|b+)*",
    "[[:alpha:]]+",
    "[[:digit:]]{2,3}",
    "[^@]+",
    "[a-c]",
    "[]a]",
    "[\\d]",
    "\\.",
    ".",
    ".*",
    "x?",
    "(x)?",
    "\\w+",
    "\\<ab",
    "b\\>",
    "(a)\\1",
    "@",
    "^",
    "$",
    "é",
    "(é|e)",
    "A",
    "{",
    "a{,2}",
    "(",
    "\\(a\\)",
    "a\\{2\\}",
    "a|b",
    "+",
    "\\s",
    "(?:a)",
    "(?i)A",
    "a++",
    "\\Qa.\\E",
    # Longer literals, which the prefilter looks for instead of the whole pattern.
    "abc",
    "b@exa",
    "(user|abc)",
    "User",
    "mple\\.c",
]
REPLACEMENTS = [
    "plain",
    "$1",
    "<$1>",
    "${1}x",
    "$2-$1",
    "$$1",
    "50$",
    "$1abc",
    "${1",
    "$0",
    "$3",
    "",
    "spaces in   result",
    "ünï",
    "$(1)",
]
KEYS = [
    "a",
    "ab",
    "abc",
    "abcd",
    "aab",
    "AB",
    "xab@example.com",
    "user@Example.COM",
    "12",
    "1234",
    "a.b",
    "é",
    "É",
    "e",
    "ba",
    "{",
    "a{,2}",
    "aa",
    "x",
    "",
    " a",
    "tab\tkey",
    "\udcff\udcfe",
    "a\udcc3",
    "@",
    "+",
    "UsEr@b@example.com",
    "abcabc",
    "xabcx\nabc",
]


def random_pattern(rng: random.Random, kind: str) -> str:
    body = "".join(rng.choice(ATOMS) for _ in range(rng.randint(1, 3)))
    body = body.replace("/", "\\/")
    flag_letters = "imx" if kind == "regexp" else "imsxAEUX"
    flags = "".join(rng.choice(flag_letters) for _ in range(rng.choice([0, 0, 0, 1, 2])))
    if rng.random() < 0.02:
        flags += "q"  # unknown option
    neg = rng.choice(["", "", "", "", "!", "! !", "!!"])
    return f"{neg}/{body}/{flags}"


def random_rules(rng: random.Random, kind: str, count: int) -> str:
    lines: list[str] = []
    depth = 0
    for _ in range(count):
        r = rng.random()
        if r < 0.12:
            lines.append(f"{rng.choice(['if', 'IF', 'If'])} {random_pattern(rng, kind)}")
            depth += 1
        elif r < 0.22 and depth:
            lines.append(rng.choice(["endif", "ENDIF", "endif extra"]))
            depth -= 1
        elif r < 0.24:
            lines.append("endif")  # maybe stray
        elif r < 0.26:
            lines.append(rng.choice(["bogus line", "  indented /x/ y", "# comment", ""]))
        elif r < 0.30 and kind == "regexp":
            second = random_pattern(rng, kind).lstrip("! ")
            lines.append(f"{random_pattern(rng, kind)}!{second} second{len(lines)}")
        else:
            replacement = rng.choice(REPLACEMENTS)
            if rng.random() < 0.5:
                replacement = f"r{len(lines)} {replacement}"
            sep = rng.choice([" ", "\t", "  "])
            lines.append(f"{random_pattern(rng, kind)}{sep}{replacement}".rstrip())
    return "\n".join(lines) + "\n"


def compare(real: Result, ours: Result, where: Path) -> None:
    assert ours.out == real.out
    assert ours.status == real.status
    # The same warnings; in "-q -" mode, ours may come in another order (a batch is looked
    # up before its results are printed).
    real_err = real.err.replace(REAL_POSTMAP, "postmap").replace(str(where), "")
    assert sorted(ours.err.replace(str(where), "").splitlines()) == sorted(real_err.splitlines())


@pytest.mark.parametrize("kind", ["regexp", "pcre"])
@pytest.mark.parametrize("seed", range(int(os.environ.get("MAILMAPS_FUZZ_SEEDS", "12"))))
def test_generated_tables_batch(
    kind: str, seed: int, tmp_path: Path, confdir: Path, utf8_confdir: Path
) -> None:
    rng = random.Random(f"{kind}-{seed}")
    table = tmp_path / "rules"
    table.write_text(random_rules(rng, kind, rng.randint(5, 40)), encoding="utf-8")
    keys = [*rng.sample(KEYS, 14), "".join(rng.choice("aAbBcdeé1@.{x") for _ in range(5))]
    stdin = "\n".join(keys).encode("utf-8", "surrogateescape") + b"\n"
    for conf in (confdir, utf8_confdir):
        args = ["-c", str(conf), "-q", "-", f"{kind}:{table}"]
        compare(run_real(REAL_POSTMAP, args, stdin), run_ours("postmap", args, stdin), tmp_path)


@pytest.mark.parametrize("kind", ["regexp", "pcre"])
def test_generated_tables_single_key(kind: str, tmp_path: Path, confdir: Path) -> None:
    rng = random.Random(f"single-{kind}")
    table = tmp_path / "rules"
    table.write_text(random_rules(rng, kind, 30), encoding="utf-8")
    for key in KEYS[:12]:
        args = ["-c", str(confdir), "-q", key, f"{kind}:{table}"]
        compare(run_real(REAL_POSTMAP, args), run_ours("postmap", args), tmp_path)


TRICKY_POSIX = [
    # Longest alternative versus first alternative, and glibc's sub-match assignment.
    ("/(a|ab)(c|bcd)(d*)/ [$1][$2][$3]", ["abcd", "abc", "acd"]),
    ("/^(a|ab|abc)$/ [$1]", ["abc", "ab"]),
    ("/(a*)*/ [$1]", ["aaa", "b"]),
    ("/(a*)+/ [$1]", ["aaa", "b"]),
    ("/(a|b)*c/ [$1]", ["abac", "c"]),
    ("/((a)|b)+/ [$1][$2]", ["ab", "ba"]),
    ("/(wee|week)(knights|night)/ [$1][$2]", ["weeknights"]),
    ("/x(.*)y/ [$1]", ["xaybyc", "xy"]),
    ("/^([^@]*)@(.*)$/ [$1][$2]", ["a@b@c", "@"]),
    ("/[[:upper:]]+/i [up]", ["abc", "ABC"]),
    ("/\\bfoo/ [word]", ["a foo", "afoo"]),
    ("/a$/ [end]", ["a", "ba", "ab"]),
    ("/a.b/m [m]", ["a b", "axb"]),
    ("/^(ab|a)(bc|c)$/ [$1][$2]", ["abc"]),
]


@pytest.mark.parametrize(("rule", "keys"), TRICKY_POSIX)
def test_posix_submatch_rules(rule: str, keys: list[str], tmp_path: Path, confdir: Path) -> None:
    for kind in ("regexp", "pcre"):
        table = tmp_path / f"rules.{kind}"
        table.write_text(rule + "\n")
        stdin = ("\n".join(keys) + "\n").encode()
        args = ["-c", str(confdir), "-q", "-", f"{kind}:{table}"]
        compare(run_real(REAL_POSTMAP, args, stdin), run_ours("postmap", args, stdin), tmp_path)
