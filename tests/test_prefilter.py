"""The prefilter gives the same answers as rule-by-rule evaluation, and caches what it compiles."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from mailmaps import open_table
from mailmaps.backends import _rules
from mailmaps.engines import prefilter
from mailmaps.engines.literals import required_literals
from mailmaps.engines.pcre2 import PcreRegex
from mailmaps.engines.posix import ere_to_pcre
from mailmaps.engines.prefilter import anchored_literal
from mailmaps.table import OpenOptions

PIECES = ["a", "b", "ab", "(a|ab)", "[[:digit:]]+", "[^@]*", "@", "\\.", ".", "x?", "c{1,2}",
          "(b)\\1", "^", "$", "[]a-c]", "\\<a", "é", "A", "\\w", "(ab)+", "|", "abc", "x@y.c",
          "bca", "Abc"]  # fmt: skip
KEY_ALPHABET = "abcABC@.1x é"


@pytest.fixture(autouse=True)
def cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    where = tmp_path / "cache"
    monkeypatch.setenv("MAILMAPS_CACHE_DIR", str(where))
    return where


def random_table(rng: random.Random, kind: str) -> str:
    flags = "imx" if kind == "regexp" else "imsxAEU"
    lines = []
    for n in range(rng.randint(10, 60)):
        body = "".join(rng.choice(PIECES) for _ in range(rng.randint(1, 3)))
        if rng.random() < 0.2:
            body = "^" + rng.choice(["ab", "a\\.b", "x@y", "AB"]) + "$"
        flag = "".join(rng.choice(flags) for _ in range(rng.choice([0, 0, 1])))
        neg = "!" if rng.random() < 0.1 else ""
        r = rng.random()
        if r < 0.1:
            lines.append(f"if {neg}/{body}/{flag}")
        elif r < 0.17:
            lines.append("endif")
        else:
            lines.append(f"{neg}/{body}/{flag} rule{n}" + ("" if neg else " [$1]"))
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("accelerator", [True, False], ids=["hyperscan", "python"])
@pytest.mark.parametrize("kind", ["regexp", "pcre"])
@pytest.mark.parametrize("seed", range(30))
def test_prefilter_answers_as_rule_by_rule(
    kind: str, seed: int, accelerator: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not accelerator:
        monkeypatch.setattr(prefilter, "_hs", None)
    rng = random.Random(seed)
    path = tmp_path / "rules"
    path.write_text(random_table(rng, kind))
    keys = ["".join(rng.choice(KEY_ALPHABET) for _ in range(rng.randint(0, 8))) for _ in range(300)]
    keys += ["ab", "AB", "a.b", "x@y", "ab\n", "a\nb"]
    options = OpenOptions(utf8=False)
    monkeypatch.setenv("MAILMAPS_PREFILTER", "never")
    with open_table(f"{kind}:{path}", options) as plain:
        expected = [plain.lookup(key) for key in keys]
    monkeypatch.setenv("MAILMAPS_PREFILTER", "always")
    with open_table(f"{kind}:{path}", options) as fast:
        assert fast._prefilter is not None
        assert [fast.lookup(key) for key in keys] == expected
        assert fast.lookup_many(keys) == expected


def test_built_after_some_lookups_and_cached(cache: Path, tmp_path: Path) -> None:
    path = tmp_path / "rules"
    path.write_text(
        "".join(f"/^user{i}@example\\.com$/ rule{i}\n/x{i}y/ other{i}\n" for i in range(50))
    )
    with open_table(f"pcre:{path}") as table:
        assert table._prefilter is None  # nothing cached yet: rule by rule at first
        for _ in range(_rules.PREFILTER_AFTER + 1):
            assert table.lookup("USER7@example.com") == "rule7"
        assert table._prefilter is not None
        assert table.lookup("ax42yb") == "other42"
    assert list(cache.glob("prefilter-*.hs"))
    with open_table(f"pcre:{path}") as again:
        assert again._prefilter is not None  # from the cache, at once
        assert again.lookup("user49@EXAMPLE.COM") == "rule49"


def test_batches_build_at_once(tmp_path: Path) -> None:
    path = tmp_path / "rules"
    path.write_text("".join(f"/k{i}$/ v{i}\n" for i in range(20)))
    with open_table(f"regexp:{path}") as table:
        keys = [f"xk{i % 25}" for i in range(_rules.PREFILTER_AFTER)]
        values = table.lookup_many(keys)
        assert table._prefilter is not None
    assert values == [f"v{i % 25}" if i % 25 < 20 else None for i in range(len(keys))]


def test_rejected_patterns_are_always_candidates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILMAPS_PREFILTER", "always")
    path = tmp_path / "rules"
    # \G and recursion are PCRE that Hyperscan does not take.
    path.write_text("/\\Gab/ g\n/c(?R)?d/ rec\n/plain/ p\n")
    with open_table(f"pcre:{path}") as table:
        assert table._prefilter is not None
        assert table._prefilter.always == [0, 1]
        assert table.lookup("abx") == "g"
        assert table.lookup("xccddx") == "rec"
        assert table.lookup("plain") == "p"


def test_without_the_accelerator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prefilter, "_hs", None)
    monkeypatch.setenv("MAILMAPS_PREFILTER", "always")
    path = tmp_path / "rules"
    path.write_text(
        "".join(f"/^a{i}$/ v{i}\n/[0-9]word{i}x/ w{i}\n/^(.)(y|{i})$/ $1\n" for i in range(20))
    )
    with open_table(f"regexp:{path}") as table:
        assert table._prefilter is not None  # literals looked up in a dictionary
        assert table._prefilter._windows
        assert table._prefilter.always == [p.pid for p in table._positives[2::3]]
        assert table.lookup("a7") == "v7"
        assert table.lookup("9WORD13X") == "w13"
        assert table.lookup_many(["a1", "b", "-word4x", "1word4x", "zy"]) == [
            "v1",
            None,
            None,
            "w4",
            "z",
        ]
        assert not list(tmp_path.glob("cache/*"))  # nothing to cache


def test_anchored_literals() -> None:
    assert anchored_literal(b"^user@example\\.com$") == b"user@example.com"
    assert anchored_literal(b"^a.b$") is None
    assert anchored_literal(b"^a\\d$") is None
    assert anchored_literal(b"^a|b$") is None
    assert anchored_literal(b"a$") is None


def test_ere_translation() -> None:
    assert ere_to_pcre(b"[\\d]") == b"[\\\\d]"  # a backslash is literal in a POSIX bracket
    assert ere_to_pcre(b"\\<a\\>") == b"\\ba\\b"
    assert ere_to_pcre(b"a{,2}") == b"a{0,2}"
    assert ere_to_pcre(b"\\d") == b"d"  # not a digit class in POSIX
    assert ere_to_pcre(b"a**") is None  # unsure: left to the exact engine
    assert ere_to_pcre(b"[[=a=]b]") == b"[ab]"


# Pieces of PCRE syntax for the required-literal reading: literals, escapes, classes, groups,
# alternatives and every kind of quantifier.
PCRE_PIECES = ["ab", "c", "x", "\\.", "\\+", ".", "[a-c]", "[^x]", "[]a]", "\\d", "\\w",
               "(", ")", "(?:", "|", "?", "*", "+", "{2}", "{0,2}", "{1,}", "??", "*+", "^", "$",
               "\\b", "{", "}", "\\x41", "\\1", "(?i)", "\\Qa\\E"]  # fmt: skip


@pytest.mark.parametrize("seed", range(20))
def test_required_literals_are_in_every_match(seed: int) -> None:
    rng = random.Random(seed)
    checked = 0
    for _ in range(300):
        pattern = "".join(rng.choice(PCRE_PIECES) for _ in range(rng.randint(1, 7))).encode()
        try:
            regex = PcreRegex(pattern, 0)
        except Exception:
            continue  # not a valid pattern
        alternatives = required_literals(pattern)
        if alternatives is None:
            continue
        for _ in range(60):
            key = "".join(rng.choice("abcxA1.+ \n") for _ in range(rng.randint(0, 9))).encode()
            if regex.search(key):
                checked += 1
                assert any(all(run in key for run in runs) for runs in alternatives), (
                    pattern,
                    key,
                    alternatives,
                )
    assert checked > 50


def test_required_literals_reading() -> None:
    assert required_literals(b"^([^@+]+)\\+w123@(.+)$") == [[b"+w123@"]]
    assert required_literals(b"a(bc)d") == [[b"abcd"]]
    assert required_literals(b"ab+c?d") == [[b"ab", b"d"]]
    assert required_literals(b"x|yz") == [[b"x"], [b"yz"]]
    assert required_literals(b"(a|b)cd") == [[b"cd"]]
    for unsure in (b"(?i)abc", b"a{x}", b"\\x41bc", b"(a)\\1", b"\\Qab\\E", b"(?=ab)"):
        assert required_literals(unsure) is None


def test_batch_scan_gives_each_key_its_candidates(tmp_path: Path) -> None:
    """Literals found in one buffer of many keys go to the key they lie in."""
    words = [f"w{i:04d}" for i in range(300)]
    rules = [
        f"/[^a-z]{w}[0-9]+/ spam {w}\n/@(mail\\.)?{w}\\.example\\.net$/ relay {w}\n" for w in words
    ]
    rules.append("/^(.*)\\+shared@/ $1\n" * 40)  # a literal many rules share: full expressions
    path = tmp_path / "rules"
    path.write_text("".join(rules))
    rng = random.Random(7)
    keys = []
    for _ in range(5000):
        w = rng.choice(words)
        keys.append(rng.choice([f"x {w}9", f"u@mail.{w}.example.net", f"{w}", "a+shared@b", ""]))
    with open_table(f"pcre:{path}", OpenOptions(utf8=False)) as table:
        expected = [table._scan(key.encode()) for key in keys]
        assert table.build_prefilter()
        fast = table._prefilter
        assert fast is not None and fast._literals is not None and fast._solo is not None
        raws = [key.encode() for key in keys]
        for raw, many in zip(raws, fast.candidates_many(raws), strict=True):
            assert sorted(set(many)) == sorted(set(fast.candidates(raw)))
        assert [None if v is None else v.encode() for v in table.lookup_many(keys)] == expected
