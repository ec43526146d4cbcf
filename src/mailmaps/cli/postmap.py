"""``postmap``: build, query, update and list Postfix lookup tables (postmap(1)).

Flag- and output-compatible with Postfix 3.7's postmap; ``-j`` (JSON output) comes from
Postfix 3.11.  See :mod:`mailmaps.cli._common` for the shared machinery.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from mailmaps.cli._common import Tool, run
from mailmaps.source import Entry, parse_postmap_bulk, parse_postmap_source

__all__ = ["TOOL", "main"]


def _parse(data: bytes, path: str, utf8: bool, rhs_is_file: bool) -> Iterator[Entry]:
    return parse_postmap_source(data, path, utf8=utf8, rhs_is_file=rhs_is_file)


def _parse_bulk(
    data: bytes, utf8: bool, rhs_is_file: bool, terminator: bytes
) -> tuple[list[bytes], list[bytes]] | None:
    return parse_postmap_bulk(data, utf8=utf8, rhs_is_file=rhs_is_file, terminator=terminator)


TOOL = Tool(
    prog="postmap",
    optstring="bc:d:fFhijmnNopq:rsuUvw",
    usage="[-bfFhijmnNoprsuUvw] [-c config_dir] [-d key] [-q key] [map_type:]file...",
    separator=b"\t",
    parse_source=_parse,
    parse_bulk=_parse_bulk,
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run postmap with ``argv`` (default: the process arguments); return the exit status."""
    return run(TOOL, argv)


if __name__ == "__main__":
    raise SystemExit(main())
