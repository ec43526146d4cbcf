"""The address search in C (``_search.c``, ``find_plain``) against the Python search."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from mailmaps._speedups import find_plain
from mailmaps.maps import MapList, create_table, open_table
from mailmaps.search import (
    Form,
    SearchSettings,
    Strategy,
    mail_addr_find_ext,
    mail_addr_find_key,
)


class Recorder:
    """Where a map list records its lookups: (table, key, value)."""

    def __init__(self) -> None:
        self.events: list[tuple[object, str, str | None]] = []


def test_the_c_search_finds_what_the_python_search_finds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Random plain and not-so-plain addresses, every strategy bit, both delimiter styles:
    the C search (``find_plain``) and the Python one give the same value and extension."""
    keys = [
        "user+ext@example.com", "user@example.com", "user+ext", "user", "@example.com",
        "example.com", ".example.com", "com", ".com", "user@", "user+ext@", "owner-list",
        "owner@example.com", "list-request@example.com", "list@example.com", "bounce-me",
        "a.b@sub.example.com", "sub.example.com", "@sub.example.com", "Mixed@Example.com",
    ]  # fmt: skip
    with create_table(f"lmdb:{tmp_path}/t") as build:
        for i, key in enumerate(keys):
            build.add(key, f"v{i}")
    (tmp_path / "t.regexp").write_text("/^regex.*@example\\.com$/ rx\n")
    locals_ = {"example.com", "localhost"}
    rng = random.Random(1)
    users = [
        "user", "user+ext", "user-ext", "User+Ext", "owner-list", "list-request", "list", "a.b",
        "regex1", "x", "bounce-me", "postmaster", "user+", "+x", "a..b", "Mixed",
    ]  # fmt: skip
    domains = [
        "example.com", "sub.example.com", "deep.sub.example.com", "other.org", "Example.COM",
        "localhost", "[1.2.3.4]", "",
    ]  # fmt: skip
    table = open_table(f"lmdb:{tmp_path}/t")
    regexp = open_table(f"regexp:{tmp_path}/t.regexp")
    lists = [
        MapList([table], title="t"),
        MapList([regexp, table], title="t"),
        MapList([regexp], title="t"),
    ]
    answered = 0
    for _ in range(3000):
        address = f"{rng.choice(users)}@{rng.choice(domains)}"
        settings = SearchSettings(
            recipient_delimiter=rng.choice(["", "+", "+-", "-"]),
            myorigin=rng.choice(["example.com", "other.org"]),
            is_local=lambda domain: domain.lower() in locals_,
            owner_request_special=rng.random() < 0.7,
            double_bounce_sender=rng.choice(["double-bounce", "bounce-me"]),
        )
        strategy = Strategy(rng.randrange(1, 1 << 9))
        maps = rng.choice(lists)
        out_form = rng.choice([Form.INTERNAL, Form.EXTERNAL])
        got = mail_addr_find_ext(maps, address, settings, strategy=strategy, out_form=out_form)
        with monkeypatch.context() as python_only:
            python_only.setattr("mailmaps.search._find_plain", None)
            want = mail_addr_find_ext(maps, address, settings, strategy=strategy, out_form=out_form)
        assert got == want, (address, settings, strategy)
        # The key that found the value (what access decisions name), against a recorded search.
        recorder = Recorder()
        maps.recorder = recorder  # type: ignore[assignment]
        with monkeypatch.context() as python_only:
            python_only.setattr("mailmaps.search._find_plain", None)
            mail_addr_find_ext(maps, address, settings, strategy=strategy)
        maps.recorder = None
        hits = [key for _table, key, value in recorder.events if value is not None]
        quick = mail_addr_find_key(maps, address, settings, strategy=strategy)
        if quick is not None:
            assert quick == (want[0], hits[-1] if hits else None), (address, strategy)
        answered += (
            find_plain(
                maps.lookups, maps.fixed_lookups, address, int(strategy), settings.plain_args
            )
            is not NotImplemented
        )
    assert answered > 1500  # most went through C
