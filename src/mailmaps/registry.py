"""Which class implements each map type: the built-ins, plus third-party backends.

Built-in backends are named here as ``"module:Class"`` strings and imported only when a table of
that type is opened, so ``import mailmaps`` never pulls in a database driver.  Third-party
packages add types through the entry-point group ``mailmaps.backends``::

    [project.entry-points."mailmaps.backends"]
    redis = "mailmaps_redis:RedisTable"

A third party can never replace a built-in type: such an entry point is refused with an error.
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import Any

from mailmaps.errors import ConfigError, UnknownMapType

__all__ = ["BUILTIN_BACKENDS", "available_types", "backend_class", "register"]

#: Built-in map types, sorted by name.
BUILTIN_BACKENDS: dict[str, str] = {
    "btree": "mailmaps.backends.hashdb:BtreeTable",
    "cdb": "mailmaps.backends.cdb:CdbTable",
    "cidr": "mailmaps.backends.cidr:CidrTable",
    "environ": "mailmaps.backends.environ:EnvironTable",
    "fail": "mailmaps.backends.fail:FailTable",
    "hash": "mailmaps.backends.hashdb:HashTable",
    "inline": "mailmaps.backends.inline:InlineTable",
    "ldap": "mailmaps.backends.ldap:LdapTable",
    "lmdb": "mailmaps.backends.lmdb:LmdbTable",
    "mysql": "mailmaps.backends.mysql:MysqlTable",
    "nis": "mailmaps.backends.nis:NisTable",
    "pcre": "mailmaps.backends.pcre:PcreTable",
    "pgsql": "mailmaps.backends.pgsql:PgsqlTable",
    "pipemap": "mailmaps.backends.union:PipeTable",
    "proxy": "mailmaps.backends.proxy:ProxyTable",
    "regexp": "mailmaps.backends.regexp:RegexpTable",
    "socketmap": "mailmaps.backends.socketmap:SocketmapTable",
    "sqlite": "mailmaps.backends.sqlite:SqliteTable",
    "static": "mailmaps.backends.static:StaticTable",
    "tcp": "mailmaps.backends.tcp:TcpTable",
    "texthash": "mailmaps.backends.texthash:TexthashTable",
    "unionmap": "mailmaps.backends.union:UnionTable",
    "unix": "mailmaps.backends.unix:UnixTable",
}

ENTRY_POINT_GROUP = "mailmaps.backends"

_registered: dict[str, Any] = {}


def register(map_type: str, cls: Any) -> None:
    """Register a backend class for ``map_type`` at run time (tests, applications).

    :raises ConfigError: ``map_type`` is a built-in type or is already registered.
    """
    if map_type in BUILTIN_BACKENDS:
        raise ConfigError(f"map type {map_type!r} is built in and cannot be replaced")
    if map_type in _registered and _registered[map_type] is not cls:
        raise ConfigError(f"map type {map_type!r} is already registered")
    _registered[map_type] = cls


@cache
def _third_party() -> dict[str, Any]:
    found: dict[str, Any] = {}
    from importlib.metadata import entry_points  # slow to import; needed only here

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name in BUILTIN_BACKENDS:
            raise ConfigError(
                f"entry point {ep.value!r} of package {ep.dist.name if ep.dist else '?'} "
                f"tries to replace the built-in map type {ep.name!r}"
            )
        found[ep.name] = ep
    return found


def backend_class(map_type: str) -> Any:
    """Return the class that implements ``map_type``, importing it on first use.

    :raises UnknownMapType: no backend has that type.
    """
    target = BUILTIN_BACKENDS.get(map_type)
    if target is not None:
        module, _, attr = target.partition(":")
        return getattr(importlib.import_module(module), attr)
    if map_type in _registered:
        return _registered[map_type]
    ep = _third_party().get(map_type)
    if ep is None:
        raise UnknownMapType(map_type)
    cls = ep.load()
    _registered[map_type] = cls
    return cls


def available_types() -> list[str]:
    """All map types that can be opened, sorted (like ``postconf -m``)."""
    return sorted({*BUILTIN_BACKENDS, *_registered, *_third_party()})
