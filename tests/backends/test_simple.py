"""inline:, static:, fail: and texthash: against Postfix's vectors and the shared contract."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mailmaps import (
    ConfigError,
    Duplicates,
    OpenOptions,
    TemporaryLookupError,
    UnsupportedOperation,
    create_table,
    open_table,
)
from mailmaps.backends.inline import split_qnameval
from mailmaps.testing import TableContract
from tests.conftest import VECTORS


def _inline_spec(entries: dict[str, str]) -> str:
    return "inline:{" + ", ".join(f"{{ {k} = {v} }}" for k, v in entries.items()) + "}"


class TestInlineContract(TableContract):
    def make_table(self, tmp_path: Path, entries: dict[str, str], options: OpenOptions) -> Any:
        return open_table(_inline_spec(entries), options)


class TestTexthashContract(TableContract):
    def make_table(self, tmp_path: Path, entries: dict[str, str], options: OpenOptions) -> Any:
        src = tmp_path / "src"
        src.write_text("".join(f"{k} {v}\n" for k, v in entries.items()))
        return open_table(f"texthash:{src}", options)


# util/dict_inline.ref: the error texts for broken inline tables.
@pytest.mark.parametrize(
    ("spec", "error"),
    [
        ("inline:{ }", 'empty table: "inline:{ }"; need "inline:{name=value...}"'),
        (
            "inline:{ foo = xx }",
            "missing '=' after attribute name: \"inline:{ foo = xx }\"; "
            'need "inline:{name=value...}"',
        ),
        ("inline:{ foo=xx }x", 'bad syntax: "inline:{ foo=xx }x"; need "inline:{name=value...}"'),
        ("inline:{ foo=xx x", 'bad syntax: "inline:{ foo=xx x"; need "inline:{name=value...}"'),
        (
            "inline:{ foo=xx {x=y}x}",
            'syntax error after \'}\' in "{x=y}x": "inline:{ foo=xx {x=y}x}"; '
            'need "inline:{name=value...}"',
        ),
    ],
)
def test_inline_errors_match_vector(spec: str, error: str) -> None:
    ref = (VECTORS / "src/util/dict_inline.ref").read_text()
    assert f"error: {error}" in ref
    with pytest.raises(ConfigError) as info:
        open_table(spec)
    assert str(info.value) == error


@pytest.mark.parametrize("utf8", [False, True])
def test_inline_lookups_match_vector(utf8: bool) -> None:
    with open_table("inline:{ foo=XX, { bAr = lotsa stuff }}", OpenOptions(utf8=utf8)) as table:
        assert table.lookup("foo") == "XX"
        assert table.lookup("bar") == "lotsa stuff"
        assert table.lookup("baz") is None


def test_inline_is_read_only() -> None:
    with pytest.raises(UnsupportedOperation, match="requires O_RDONLY"):
        open_table("inline:{a=b}", writable=True)


def test_inline_keeps_quotes_and_last_entry_wins() -> None:
    with open_table('inline:{ {"a b"=x}, k=1, k=2 }') as table:
        assert table.lookup('"a b"') == "x"
        assert table.lookup("k") == "2"


def test_inline_file_values(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """util/dict_inline_file.ref: with rhs_is_file values are base64 of file contents."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "f1").write_text("this-is-file1\n")
    (tmp_path / "f2").write_text("this-is-file2\n")
    opts = OpenOptions(rhs_is_file=True)
    with open_table("inline:{ file1=f1, file2=f2}", opts) as table:
        assert table.lookup("file1") == "dGhpcy1pcy1maWxlMQo="
        assert table.lookup("file2") == "dGhpcy1pcy1maWxlMgo="
        assert table.lookup("file3") is None
    with pytest.raises(ConfigError, match=r'open xx: No such file or directory: "inline:'):
        open_table("inline:{ foo=xx, bar=yy }", opts)


SPLIT = json.loads((VECTORS / "extracted/split_qnameval_tests.json").read_text())["cases"]


@pytest.mark.parametrize("case", SPLIT, ids=[c["input"] for c in SPLIT])
def test_split_qnameval_vectors(case: dict[str, Any]) -> None:
    if case["expect_error"]:
        with pytest.raises(ValueError) as info:
            split_qnameval(case["input"])
        assert str(info.value) == case["expect_error"]
    else:
        assert split_qnameval(case["input"]) == (case["expect_key"], case["expect_value"])


def test_static_matches_vector() -> None:
    """util/dict_static.ref."""
    with open_table("static:fooxx") as table:
        assert table.lookup("foo") == table.lookup("bar") == "fooxx"
        assert table.fixed_keys
    with open_table("static:{ foo xx }") as table:
        assert table.lookup("anything@example.com") == "foo xx"
    with pytest.raises(ConfigError, match="bad static:name syntax: missing '}'"):
        open_table("static:{ foo xx ")
    with pytest.raises(ConfigError, match="syntax error after '}'"):
        open_table("static:{ foo xx }x")


def test_fail_table_fails_everything() -> None:
    with open_table("fail:x") as table:
        assert not table.fixed_keys
        with pytest.raises(TemporaryLookupError):
            table.lookup("k")
        with pytest.raises(TemporaryLookupError):
            list(table.items())
    with pytest.raises(TemporaryLookupError):
        create_table("fail:x")


def test_texthash_vector(caplog: pytest.LogCaptureFixture) -> None:
    """util/dict_thash: duplicates keep the first value; bad lines are skipped with warnings."""
    path = VECTORS / "src/util/dict_thash.in"
    with open_table(f"texthash:{path}", OpenOptions(fold=False)) as table:
        items = dict(table.items())
    ref = (VECTORS / "src/util/dict_thash.ref").read_text().splitlines()
    expected = dict(line.split("\t", 1) for line in ref if "\t" in line and "warning" not in line)
    assert items == expected
    warnings = [line.split("warning: ", 1)[1] for line in ref if "warning: " in line]
    for warning in warnings:
        text = warning.replace("dict_thash.in", str(path))
        assert text.split(" -- ")[0] in caplog.text


def test_texthash_duplicate_error_policy(tmp_path: Path) -> None:
    (tmp_path / "t").write_text("a 1\na 2\n")
    with pytest.raises(ConfigError, match="line 2: duplicate entry"):
        open_table(f"texthash:{tmp_path / 't'}", OpenOptions(duplicates=Duplicates.ERROR))


def test_texthash_cannot_be_created(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedOperation, match="does not support bulk-mode creation"):
        create_table(f"texthash:{tmp_path / 't'}")
