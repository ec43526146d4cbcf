"""``postalias``: build, query, update and list Postfix alias databases (postalias(1)).

Flag- and output-compatible with Postfix 3.7's postalias: the source is in aliases(5) format,
``-q -`` and ``-s`` print ``key:<TAB>value``, and builds add the ``@`` and NIS entries.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from mailmaps.aliases import add_signature, parse_aliases_source
from mailmaps.cli._common import Tool, run
from mailmaps.config import MainConfig
from mailmaps.source import Entry

__all__ = ["TOOL", "main"]


def _parse(data: bytes, path: str, utf8: bool, rhs_is_file: bool) -> Iterator[Entry]:
    return parse_aliases_source(data, path, utf8=utf8)


def _finish(target: Any, config: MainConfig, incremental: bool) -> None:
    add_signature(target, config.get("myhostname"), incremental=incremental)


TOOL = Tool(
    prog="postalias",
    optstring="Nc:d:fijnopq:rsuvw",
    usage="[-Nfinoprsuvw] [-c config_dir] [-d key] [-q key] [map_type:]file...",
    separator=b":\t",
    parse_source=_parse,
    finish_build=_finish,
)


def main(argv: Sequence[str] | None = None) -> int:
    """Run postalias with ``argv`` (default: the process arguments); return the exit status."""
    return run(TOOL, argv)


if __name__ == "__main__":
    raise SystemExit(main())
