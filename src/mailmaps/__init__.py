"""mailmaps: Postfix lookup tables and address rewriting, exactly as Postfix does them.

>>> from mailmaps import open_table
>>> with open_table("inline:{ info@example.com=alice@example.net }") as table:
...     table.lookup("INFO@example.com")
'alice@example.net'
"""

from __future__ import annotations

from mailmaps.errors import (
    BackendUnavailable,
    ConfigError,
    LookupFailed,
    MailmapsError,
    MapSyntaxError,
    PermanentLookupError,
    SpecError,
    TemporaryLookupError,
    UnknownMapType,
    UnsupportedOperation,
)
from mailmaps.maps import MapList, create_table, open_table
from mailmaps.registry import available_types, register
from mailmaps.spec import MapSpec, parse_map_list, split_list
from mailmaps.table import Duplicates, NulMode, OpenOptions, Table, TableBuilder

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailable",
    "ConfigError",
    "Duplicates",
    "LookupFailed",
    "MailmapsError",
    "MapList",
    "MapSpec",
    "MapSyntaxError",
    "NulMode",
    "OpenOptions",
    "PermanentLookupError",
    "SpecError",
    "Table",
    "TableBuilder",
    "TemporaryLookupError",
    "UnknownMapType",
    "UnsupportedOperation",
    "__version__",
    "available_types",
    "create_table",
    "open_table",
    "parse_map_list",
    "register",
    "split_list",
]
