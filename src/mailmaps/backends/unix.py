"""``unix:passwd.byname`` and ``unix:group.byname``: the system user database (``dict_unix.c``).

A ``passwd.byname`` lookup of a user name returns the passwd entry as one line,
``name:passwd:uid:gid:gecos:home:shell``; ``group.byname`` returns ``name:passwd:gid:members``
with the members separated by commas.  Postfix's default ``local_recipient_maps`` is
``proxy:unix:passwd.byname $alias_maps``: a local recipient is known if it is a user here.
"""

from __future__ import annotations

import grp
import pwd
from collections.abc import Callable
from typing import ClassVar

from mailmaps.backends._base import BaseTable
from mailmaps.errors import ConfigError
from mailmaps.table import OpenOptions

__all__ = ["UnixTable"]


def _passwd(name: str) -> str | None:
    try:
        entry = pwd.getpwnam(name)
    except KeyError:
        return None
    return ":".join(
        (
            entry.pw_name,
            entry.pw_passwd,
            str(entry.pw_uid),
            str(entry.pw_gid),
            entry.pw_gecos,
            entry.pw_dir,
            entry.pw_shell,
        )
    )


def _group(name: str) -> str | None:
    try:
        entry = grp.getgrnam(name)
    except KeyError:
        return None
    return f"{entry.gr_name}:{entry.gr_passwd}:{entry.gr_gid}:{','.join(entry.gr_mem)}"


_MAPS: dict[str, Callable[[str], str | None]] = {
    "passwd.byname": _passwd,
    "group.byname": _group,
}


class UnixTable(BaseTable):
    """A ``unix:`` table: read-only, exact keys."""

    map_type: ClassVar[str] = "unix"
    fixed_keys: ClassVar[bool] = True

    def __init__(self, name: str, options: OpenOptions) -> None:
        super().__init__(name, options)
        getter = _MAPS.get(name)
        if getter is None:
            raise ConfigError(f"unknown table: unix:{name}")
        self._getter = getter

    def _lookup(self, key: str) -> str | None:
        try:
            return self._getter(key)
        except (UnicodeEncodeError, ValueError):  # a NUL or lone surrogate: no such user
            return None
