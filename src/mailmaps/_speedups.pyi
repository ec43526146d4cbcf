"""Types of the optional C extension (_speedups.c, _search.c, _resolve.c, _access.c)."""

from collections.abc import Callable, Sequence
from typing import Any

class Reader:
    """An lmdb file opened as Postfix opens it, answering ASCII keys in C."""

    try_with: int
    try_without: int
    held: int
    def __init__(
        self,
        path: str,
        map_size: int,
        fold: bool,
        utf8: bool,
        try_with: bool,
        try_without: bool,
        lock_fd: int = -1,
        fallback: Callable[[str], str | None] | None = None,
    ) -> None: ...
    def get(self, key: str) -> Any: ...
    def lookup(self, key: str) -> str | None: ...
    def get_many(self, keys: Sequence[str], start: int = 0) -> list[Any]: ...
    def renew(self) -> bool: ...
    def close(self) -> None: ...

def build_uniform(
    path: str,
    data: bytes,
    sep: int,
    fold: bool,
    nul: bool,
    replace: bool,
    map_size: int,
    format: str = "lmdb",
) -> list[tuple[int, bytes]] | None: ...
def find_plain(
    all: tuple[Callable[[str], str | None], ...],
    fixed: tuple[Callable[[str], str | None], ...],
    address: str,
    bits: int,
    params: tuple[str, bool, Callable[[str], bool], str, str],
    with_key: bool = False,
) -> Any: ...
def first_hit(
    all: tuple[Callable[[str], str | None], ...],
    fixed: tuple[Callable[[str], str | None], ...],
    keys: list[str],
    fixed_from: int,
) -> Any: ...
def resolve_plain(plan: tuple[Any, ...], address: str) -> Any: ...
def decide_plain(plan: tuple[Any, ...], session: Any) -> Any: ...
