"""The prefilter gives the same answers as rule-by-rule evaluation, and caches what it compiles."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from mailmaps import open_table
from mailmaps.backends import _rules
from mailmaps.engines import prefilter
from mailmaps.engines.posix import ere_to_pcre
from mailmaps.engines.prefilter import anchored_literal
from mailmaps.table import OpenOptions

PIECES = ["a", "b", "ab", "(a|ab)", "[[:digit:]]+", "[^@]*", "@", "\\.", ".", "x?", "c{1,2}",
          "(b)\\1", "^", "$", "[]a-c]", "\\<a", "é", "A", "\\w", "(ab)+", "|"]  # fmt: skip
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


@pytest.mark.parametrize("kind", ["regexp", "pcre"])
@pytest.mark.parametrize("seed", range(30))
def test_prefilter_answers_as_rule_by_rule(
    kind: str, seed: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
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
    path.write_text("".join(f"/^a{i}$/ v{i}\n" for i in range(20)))
    with open_table(f"regexp:{path}") as table:
        assert table._prefilter is None
        assert not table.build_prefilter()
        assert table.lookup("a7") == "v7"
        assert table.lookup_many(["a1", "b"]) == ["v1", None]


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
