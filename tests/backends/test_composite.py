"""unionmap: and pipemap: against Postfix's own vectors (dict_union_test.c, dict_pipe_test.c)."""

from __future__ import annotations

import json

import pytest

from mailmaps import open_table
from mailmaps.errors import ConfigError, LookupFailed, TemporaryLookupError, UnknownMapType
from mailmaps.table import OpenOptions
from tests.conftest import VECTORS


def _cases(name: str) -> list[tuple[str, str, str | None, str]]:
    data = json.loads((VECTORS / "extracted" / name).read_text())
    return [
        (case["table"], probe["query"], probe["want_value"], probe["want_error"])
        for case in data["cases"]
        for probe in case["probes"]
    ]


@pytest.mark.parametrize(
    ("spec", "query", "want", "error"),
    _cases("dict_union_tests.json") + _cases("dict_pipe_tests.json"),
)
def test_postfix_vectors(spec: str, query: str, want: str | None, error: str) -> None:
    # dict_open(table, O_RDONLY, 0): no folding, no UTF-8 checks.
    with open_table(spec, OpenOptions(fold=False, utf8=False)) as table:
        if error == "none":
            assert table.lookup(query) == want
        else:
            assert error.startswith("retry")
            with pytest.raises(TemporaryLookupError):
                table.lookup(query)


def test_key_handling_follows_the_first_member() -> None:
    with open_table("unionmap:{inline:{foo=1}, regexp:{{/^FOO$/i 2}}}") as table:
        assert table.fixed_keys
        assert table.lookup("FOO") == "1"  # folded before the regexp member sees it
    with open_table("unionmap:{regexp:{{/^FOO$/i 2}}, inline:{foo=1}}") as table:
        assert not table.fixed_keys
        assert table.lookup("FOO") == "2,1"  # unchanged for the regexp; inline folds itself


def test_empty_values_leave_no_comma() -> None:
    with open_table("unionmap:{inline:{a=}, static:x}") as table:
        assert table.lookup("a") == "x"
    with open_table("unionmap:{inline:{a=}}") as table:
        assert table.lookup("a") is None


@pytest.mark.parametrize("spec", ["unionmap:x", "unionmap:{x}", "pipemap:{}", "unionmap:{a:b"])
def test_bad_syntax(spec: str) -> None:
    with pytest.raises(ConfigError, match="bad syntax"):
        open_table(spec)


def test_members_that_cannot_be_opened() -> None:
    with pytest.raises(UnknownMapType):
        open_table("unionmap:{static:x, nosuch:y}")
    with (
        open_table("pipemap:{static:x, lmdb:/nonexistent/file}") as table,
        pytest.raises(LookupFailed),
    ):
        table.lookup("k")
