"""regexp: and pcre: tables against Postfix's own vectors, and the rule language in detail."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mailmaps import open_table
from mailmaps.backends._rules import parse_replacement
from mailmaps.errors import ConfigError, PermanentLookupError, UnsupportedOperation
from mailmaps.table import OpenOptions
from tests.backends._support import dict_open, vector_commands
from tests.conftest import VECTORS

UTIL = VECTORS / "src" / "util"
TYPES = ["regexp", "pcre"]


@pytest.mark.parametrize("kind", TYPES)
def test_vector_dict_map(kind: str, caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    shutil.copy(UTIL / f"dict_{kind}.map", tmp_path)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        got = dict_open(f"{kind}:dict_{kind}.map", vector_commands(f"dict_{kind}.in"), caplog)
    assert got == (UTIL / f"dict_{kind}.ref").read_text()


@pytest.mark.parametrize("kind", TYPES)
def test_vector_file_values(kind: str, caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    shutil.copy(UTIL / f"dict_{kind}_file.map", tmp_path)
    (tmp_path / f"dict_{kind}_file1").write_text("this-is-file1\n")
    (tmp_path / f"dict_{kind}_file2").write_text("this-is-file2\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        got = dict_open(
            f"{kind}:dict_{kind}_file.map",
            vector_commands(f"dict_{kind}_file.in"),
            caplog,
            rhs_is_file=True,
        )
    assert got == (UTIL / f"dict_{kind}_file.ref").read_text()


@pytest.mark.parametrize("kind", TYPES)
def test_vector_missing_endif(kind: str, caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    shutil.copy(UTIL / "miss_endif_re.map", tmp_path)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        got = dict_open(f"{kind}:miss_endif_re.map", ["get 1.2.3.5"], caplog)
    assert got == (UTIL / f"miss_endif_{kind}.ref").read_text()


@pytest.mark.parametrize("kind", TYPES)
def test_vector_inline(kind: str, caplog: pytest.LogCaptureFixture) -> None:
    got = dict_open(kind + ":{{/foo/ got foo}}", ["get foo", "get bar"], caplog)
    expected = (UTIL / f"dict_inline_{kind}.ref").read_text()
    assert got.replace("owner=untrusted (uid=USER)\n", "") == expected


# -- the rule language ------------------------------------------------------------------------


def lookup(spec: str, key: str, **options: bool) -> str | None:
    with open_table(spec, OpenOptions(**options)) as table:  # type: ignore[arg-type]
        value: str | None = table.lookup(key)
        return value


def test_replacement_parsing() -> None:
    warnings: list[str] = []
    assert parse_replacement(b"a$$b", warnings.append, warnings.append) == [b"a$b"]
    assert parse_replacement(b"<$1>${2}x$(3)", warnings.append, warnings.append) == [
        b"<",
        1,
        b">",
        2,
        b"x",
        3,
    ]
    assert parse_replacement(b"$10", warnings.append, warnings.append) == [10]
    assert warnings == []
    assert parse_replacement(b"$1abc", warnings.append, warnings.append) is None
    assert warnings == ['non-numeric replacement index "1abc"']
    warnings.clear()
    assert parse_replacement(b"50$", warnings.append, warnings.append) is None
    assert warnings == ['empty macro name: "50$"']
    warnings.clear()
    assert parse_replacement(b"${1", warnings.append, warnings.append) is None
    assert warnings == ['truncated macro reference: "${1"']
    warnings.clear()
    assert parse_replacement(b"$0", warnings.append, warnings.append) is None
    assert warnings == ['out-of-range replacement index "0"']


@pytest.mark.parametrize("kind", TYPES)
def test_first_match_wins_and_substitution(kind: str) -> None:
    spec = kind + ":{ {/^(.*)@(example\\.com)$/ $2 got $1}, {/@/ any} }"
    assert lookup(spec, "Joe@Example.COM") == "Example.COM got Joe"
    assert lookup(spec, "joe@example.net") == "any"
    assert lookup(spec, "nothing") is None


@pytest.mark.parametrize("kind", TYPES)
def test_unused_groups_are_empty(kind: str) -> None:
    spec = kind + ":{ {/^(a)|(b)$/ [$1][$2]} }"
    assert lookup(spec, "b") == "[][b]"


def test_posix_longest_alternative() -> None:
    assert lookup("regexp:{ {/(a|ab)(c|bcd)(d*)/ $1,$2,$3} }", "abcd") == "a,bcd,"
    assert lookup("regexp:{ {/^(a|ab)/ $1} }", "ab") == "ab"
    assert lookup("pcre:{ {/^(a|ab)/ $1} }", "ab") == "a"


def test_posix_classes_and_basic_syntax() -> None:
    assert lookup("regexp:{ {/^[[:digit:]]+$/ digits} }", "0123") == "digits"
    assert lookup("regexp:{ {/^a\\{2\\}$/x two} }", "aa") == "two"
    assert lookup("regexp:{ {/^a+$/x plus} }", "a+") == "plus"


def test_flags_toggle() -> None:
    assert lookup("regexp:{ {/abc/ yes} }", "ABC") == "yes"
    assert lookup("regexp:{ {/abc/i yes} }", "ABC") is None
    assert lookup("pcre:{ {/abc/i yes} }", "ABC") is None
    assert lookup("pcre:{ {/^abc$/A yes} }", "abc") == "yes"


def test_no_regsub_skips_substitution_rules(caplog: pytest.LogCaptureFixture) -> None:
    assert lookup("pcre:{ {/(x)/ $1}, {/x/ plain} }", "x", regsub=False) == "plain"
    assert "regular expression substitution is not allowed" in caplog.text


def test_second_pattern_is_regexp_only(caplog: pytest.LogCaptureFixture) -> None:
    assert lookup("regexp:{ {/a/!/b/ a-not-b} }", "ab") is None
    assert lookup("regexp:{ {/a/!/b/ a-not-b} }", "ac") == "a-not-b"
    assert lookup("pcre:{ {/a/!/b/ a-not-b} }", "ac") is None
    assert 'unknown regexp option "!"' in caplog.text


@pytest.mark.parametrize("kind", TYPES)
def test_tables_are_read_only(kind: str, tmp_path: Path) -> None:
    path = tmp_path / "t"
    path.write_text("/x/ y\n")
    with pytest.raises(UnsupportedOperation, match="requires O_RDONLY"):
        open_table(f"{kind}:{path}", writable=True)
    with pytest.raises(ConfigError, match="No such file"):
        open_table(f"{kind}:{tmp_path}/missing")


@pytest.mark.parametrize("kind", TYPES)
def test_keys_are_bytes_in_the_c_locale(kind: str) -> None:
    spec = kind + ":{ {/^(.)/ first=$1} }"
    value = lookup(spec, "é", utf8=False)
    assert value is not None
    assert value.encode("utf-8", "surrogateescape") == b"first=\xc3"
    # In UTF-8 mode half a character is an unusable result, as in Postfix.
    with pytest.raises(PermanentLookupError, match="non-UTF-8 value"):
        lookup(spec, "é")


@pytest.mark.parametrize("kind", TYPES)
def test_concurrent_lookups(kind: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    spec = kind + ":{ {/^u([0-9]+)-([a-z]+)$/ $2:$1}, {/^v/ plain} }"
    keys = [f"u{i}-{'abcdefgh'[i % 8] * (i % 5 + 1)}" for i in range(2000)]
    expected = [f"{k.split('-')[1]}:{k[1:].split('-')[0]}" for k in keys]
    with open_table(spec) as table, ThreadPoolExecutor(8) as pool:
        chunks = [keys[i::8] for i in range(8)]
        results = list(pool.map(table.lookup_many, chunks))
    assert results == [expected[i::8] for i in range(8)]
