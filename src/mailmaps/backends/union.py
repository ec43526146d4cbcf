"""``unionmap:{t1, t2, ...}`` and ``pipemap:{t1, t2, ...}``: tables made of tables
(``dict_union.c``, ``dict_pipe.c``).

* ``unionmap`` asks every member and joins the values found with commas, in member order; a
  member's error is the union's error.
* ``pipemap`` looks the key up in the first member, that value up in the second, and so on; the
  last value is the answer, and any "not found" (or error) on the way ends the lookup.

Both take their key handling from the *first* member: when it is an exact-key table (inline,
lmdb, sqlite, ...) the key is folded to lower case before any member sees it, and the composite
is an exact-key table that address searches give partial keys (``@domain``) to; when it is a
pattern table (regexp, tcp, ...) the key reaches the members unchanged.  A member that cannot be
opened makes lookups fail, as in Postfix.
"""

from __future__ import annotations

from typing import ClassVar, Self

from mailmaps.backends._base import BaseTable
from mailmaps.errors import ConfigError, UnknownMapType
from mailmaps.maps import SurrogateTable
from mailmaps.spec import MapSpec, extract_braced, split_list
from mailmaps.table import OpenOptions, Table

__all__ = ["PipeTable", "UnionTable"]


class _Composite(BaseTable):
    """What unionmap and pipemap share: the ``{type:name, ...}`` name and the members."""

    fixed_keys: ClassVar[bool] = True  # replaced per instance by the first member's

    def __init__(self, name: str, options: OpenOptions, members: list[Table]) -> None:
        self.fixed_keys = members[0].fixed_keys  # type: ignore[misc]
        self.replayable = all(  # type: ignore[misc]
            getattr(member, "replayable", True) for member in members
        )
        super().__init__(name, options)
        self.members = members

    @classmethod
    def open(cls, name: str, options: OpenOptions, *, writable: bool = False) -> Self:
        """Open every member of ``{type:name, ...}``.

        :raises ConfigError: opened for writing, or the name is not ``{type:name ...}``.
        """
        if writable:
            raise ConfigError(f"{cls.map_type}:{name} map requires O_RDONLY access mode")
        inner, err = extract_braced(name, strip=False)
        specs = split_list(inner) if err is None else []
        if not specs or any(":" not in spec for spec in specs):
            raise ConfigError(
                f'bad syntax: "{cls.map_type}:{name}"; need "{cls.map_type}:{{type:name...}}"'
            )
        from mailmaps.maps import open_table  # maps imports the registry, which imports us

        members: list[Table] = []
        for spec in specs:
            parsed = MapSpec.parse(spec)
            try:
                members.append(open_table(parsed, options))
            except UnknownMapType:  # fatal in Postfix too
                for member in members:
                    member.close()
                raise
            except ConfigError as exc:
                members.append(SurrogateTable(parsed, str(exc)))
        return cls(name, options, members)

    def close(self) -> None:
        for member in self.members:
            member.close()
        super().close()


class UnionTable(_Composite):
    """``unionmap:{...}``: the values of every member that has the key, comma-joined."""

    map_type: ClassVar[str] = "unionmap"

    def _lookup(self, key: str) -> str | None:
        joined = ""
        for member in self.members:
            value = member.lookup(key)
            if value is not None:
                # As Postfix: a comma only after something, so empty values leave no trace.
                joined = f"{joined},{value}" if joined else value
        return joined or None


class PipeTable(_Composite):
    """``pipemap:{...}``: each member's value is the next member's key."""

    map_type: ClassVar[str] = "pipemap"

    def _lookup(self, key: str) -> str | None:
        value: str | None = key
        for member in self.members:
            assert value is not None
            value = member.lookup(value)
            if value is None:
                return None
        return value
