"""Case folding and UTF-8 validity as Postfix's casefold() and valid_utf8_string() see them."""

from __future__ import annotations

import re

import pytest

from mailmaps.text import decode, fold, is_valid_utf8
from tests.conftest import VECTORS


def _fold_cases() -> list[tuple[str, str]]:
    ref = decode((VECTORS / "src/util/casefold_test.ref").read_bytes())
    return re.findall(r'^"(.*)" ->fold "(.*)"$', ref, re.MULTILINE)


@pytest.mark.parametrize(("text", "expected"), _fold_cases())
def test_casefold_vectors(text: str, expected: str) -> None:
    assert fold(text, utf8=True) == expected


def test_ascii_mode_folds_only_ascii() -> None:
    assert fold("MÜLLER@X", utf8=False) == "mÜller@x"
    assert fold("straße", utf8=True) == "strasse"


@pytest.mark.parametrize(
    ("raw", "valid"),
    [
        (b"plain", True),
        ("müller".encode(), True),
        (b"\xc0\xaf", False),  # overlong
        (b"\xed\xa0\x80", False),  # surrogate
        (b"\xf4\x90\x80\x80", False),  # above U+10FFFF
        (b"\xff", False),
    ],
)
def test_valid_utf8(raw: bytes, valid: bool) -> None:
    assert is_valid_utf8(decode(raw)) is valid
