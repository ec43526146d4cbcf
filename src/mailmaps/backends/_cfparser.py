"""A server-backed table's settings: a ``.cf`` file, or main.cf parameters (``cfg_parser.c``).

``mysql:/etc/postfix/virtual.cf`` names a file of ``name = value`` lines in main.cf syntax (the
last definition of a name wins, with an "overriding earlier entry" warning; values are *not*
``$name``-expanded).  A name that does not start with ``/`` or ``.`` is the obsolete form:
``ldap:ldapsource`` reads the main.cf parameters ``ldapsource_server_host``,
``ldapsource_search_base``, ... (expanded, as every main.cf value is).  A relative path such as
``pf/my.cf`` is therefore *not* a file, exactly as in Postfix.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from mailmaps.errors import ConfigError

if TYPE_CHECKING:
    from mailmaps.config import MainConfig

__all__ = ["TableConfig"]

log = logging.getLogger("mailmaps")


class TableConfig:
    """The settings of the table ``name``, read once when the table is opened.

    :param name: what follows ``type:`` (a ``/path.cf`` or a main.cf parameter prefix).
    :param main: main.cf, for the prefix form (default: :meth:`MainConfig.load`).
    :raises ConfigError: the file cannot be read (``open /path.cf: No such file or directory``)
        or has a line that is not ``name = value``.
    """

    def __init__(self, name: str, main: MainConfig | None = None) -> None:
        self.name = name
        self.is_file = name.startswith(("/", "."))
        self._main = main
        self._values: dict[str, str] = {}
        if self.is_file:
            self._load(name)
        elif main is None:
            from mailmaps.config import MainConfig

            self._main = MainConfig.load()

    def _load(self, path: str) -> None:
        from mailmaps.config import read_main_cf_entries

        for lineno, name, value in read_main_cf_entries(path):
            old = self._values.get(name)
            if old is not None and old != value:
                log.warning("%s, line %d: overriding earlier entry: %s=%s", path, lineno, name, old)
            self._values[name] = value

    def _raw(self, name: str) -> str | None:
        if self.is_file:
            return self._values.get(name)
        assert self._main is not None
        full = f"{self.name}_{name}"
        return self._main.get(full) if self._main.raw(full) is not None else None

    def _where(self) -> str:
        return f"{self.name}: " if self.is_file else ""

    def _label(self, name: str) -> str:
        return name if self.is_file else f"{self.name}_{name}"

    def get_str(
        self, name: str, default: str | None = "", min_len: int = 0, max_len: int = 0
    ) -> str:
        """A string setting; ``default`` when unset.  With ``default=None`` an unset or empty
        setting gives ``""`` (the caller's "not given").

        :raises ConfigError: the value is shorter than ``min_len`` or longer than ``max_len``.
        """
        value = self._raw(name)
        if value is None:
            value = default or ""
        if min_len and len(value) < min_len:
            raise ConfigError(
                f"{self._where()}bad string length {len(value)} < {min_len}: "
                f"{self._label(name)} = {value}"
            )
        if max_len and len(value) > max_len:
            raise ConfigError(
                f"{self._where()}bad string length {len(value)} > {max_len}: "
                f"{self._label(name)} = {value}"
            )
        return value

    def has(self, name: str) -> bool:
        """Whether the setting is given (even as an empty value)."""
        return self._raw(name) is not None

    def get_int(self, name: str, default: int, min_value: int = 0, max_value: int = 0) -> int:
        """An integer setting (C ``strtol`` rules: optional sign, decimal digits, nothing else).

        :raises ConfigError: not a number, or out of range.
        """
        text = self._raw(name)
        if text is None:
            value = default
        else:
            stripped = text.lstrip(" \t\n\r\v\f")
            digits = stripped[1:] if stripped[:1] in "+-" else stripped
            if not digits.isascii() or not digits.isdigit() or abs(int(stripped)) >= 2**31:
                if self.is_file:
                    raise ConfigError(f"{self.name}: bad numerical configuration: {name} = {text}")
                raise ConfigError(f"bad numerical configuration: {self._label(name)} = {text}")
            value = int(stripped)
        if min_value and value < min_value:
            raise ConfigError(
                f"{self._where()}invalid {self._label(name)} parameter value {value} < {min_value}"
            )
        if max_value and value > max_value:
            raise ConfigError(
                f"{self._where()}invalid {self._label(name)} parameter value {value} > {max_value}"
            )
        return value

    def get_bool(self, name: str, default: bool) -> bool:
        """A yes/no setting (any case).

        :raises ConfigError: neither yes nor no.
        """
        text = self._raw(name)
        if text is None:
            return default
        if text.lower() == "yes":
            return True
        if text.lower() == "no":
            return False
        raise ConfigError(f"{self._where()}bad boolean configuration: {self._label(name)} = {text}")
