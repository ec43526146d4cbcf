"""Reading main.cf: ``name = value`` logical lines, defaults and ``$name`` expansion.

:class:`MainConfig` is main.cf as Postfix's programs see it (postconf(5)): the last definition
of a name wins, a name not set has Postfix 3.7's default (:mod:`mailmaps.defaults`; the host
name and domain come from the machine), and values are expanded recursively with every form
:mod:`mailmaps.macros` knows, including the ``compatibility_level`` comparisons that some
defaults use.  An undefined name expands to the empty string.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from mailmaps.defaults import DEFAULTS
from mailmaps.errors import ConfigError, MapSyntaxError
from mailmaps.macros import COMPAT_LEVEL_RELOPS, MacroStatus, mac_expand
from mailmaps.parameters import POSTFIX_PARAMETERS
from mailmaps.source import logical_lines
from mailmaps.spec import split_list

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

    _Settings = TypeVar("_Settings", bound=DataclassInstance)

__all__ = ["MainConfig", "compat_level_below", "read_main_cf", "read_main_cf_entries"]

_SPACE = " \t\n\r\v\f"


def read_main_cf(path: str | Path) -> dict[str, str]:
    """Parse a main.cf file into raw (unexpanded) values; the last definition of a name wins.

    :raises ConfigError: the file cannot be read.
    :raises MapSyntaxError: a line is not ``name = value``.
    """
    return {name: value for _lineno, name, value in read_main_cf_entries(path)}


def read_main_cf_entries(path: str | Path) -> list[tuple[int, str, str]]:
    """Every ``name = value`` definition of a main.cf file, in order, with its line number.

    :raises ConfigError: the file cannot be read.
    :raises MapSyntaxError: a line is not ``name = value``.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"open {path}: {exc.strerror}") from exc
    entries: list[tuple[int, str, str]] = []
    for lineno, raw in logical_lines(data, str(path)):
        line = raw.decode("utf-8", "surrogateescape")
        name_end = 0
        while name_end < len(line) and line[name_end] not in _SPACE and line[name_end] != "=":
            name_end += 1
        name = line[:name_end]
        rest = line[name_end:].lstrip(_SPACE)
        if not name or not rest.startswith("="):
            raise MapSyntaxError(str(path), lineno, f"missing '=' after attribute name: \"{line}\"")
        entries.append((lineno, name, rest[1:].strip(_SPACE)))
    return entries


def _parse_level(text: str) -> tuple[int, ...] | None:
    if not re.fullmatch(r"\d+(\.\d+){0,2}", text):
        return None
    return tuple(int(p) for p in text.split("."))


def compat_level_below(level: str, limit: str) -> bool:
    """Whether compatibility level ``level`` is below ``limit`` (``3.10`` > ``3.9``).

    :raises ConfigError: ``level`` is malformed.
    """
    parsed, bound = _parse_level(level.strip()), _parse_level(limit)
    if parsed is None or bound is None:
        raise ConfigError(f"malformed compatibility level: {level}")
    return parsed < bound


@dataclass
class MainConfig:
    """A main.cf with Postfix's defaults behind it, expanded on demand.

    :param values: the raw ``name = value`` settings.
    :param config_dir: the directory the file came from (``config_directory``).
    """

    values: Mapping[str, str] = field(default_factory=dict)
    config_dir: str = "/etc/postfix"

    @classmethod
    def load(cls, config_dir: str | None = None) -> MainConfig:
        """Read ``main.cf`` from ``config_dir``, ``$MAIL_CONFIG`` or ``/etc/postfix``."""
        directory = config_dir or os.environ.get("MAIL_CONFIG") or "/etc/postfix"
        return cls(read_main_cf(Path(directory) / "main.cf"), directory)

    def defaults(self) -> dict[str, str]:
        """Postfix 3.7's built-in defaults for the parameters mailmaps reads."""
        # mail_params.c check_myhostname(): a hostname without a dot gets $mydomain appended
        # (as set in main.cf, else "localdomain"); check_mydomainname() is the reverse.
        hostname = socket.gethostname()
        if "." not in hostname:
            hostname += "." + (self.values.get("mydomain") or "localdomain")
        return {
            "compatibility_level": "0",
            "config_directory": self.config_dir,
            "default_database_type": "lmdb",
            "lmdb_map_size": "16777216",
            "myhostname": hostname,
            "mydomain": _domain_of(self.values, hostname),
        }

    def raw(self, name: str) -> str | None:
        """The unexpanded value of ``name``: main.cf's, else the default, else ``None``."""
        if name in self.values:
            return self.values[name]
        special = self._machine_defaults()
        if name in special:
            return special[name]
        return DEFAULTS.get(name)

    def _machine_defaults(self) -> dict[str, str]:
        cached = self.__dict__.get("_machine")
        if cached is None:
            cached = self.defaults()
            self.__dict__["_machine"] = cached
        return cached

    def get(self, name: str) -> str:
        """The expanded value of ``name`` (empty when undefined)."""
        raw = self.raw(name)
        return "" if raw is None else self.expand(raw)

    def get_bool(self, name: str) -> bool:
        """A yes/no parameter.

        :raises ConfigError: the value is neither yes nor no.
        """
        value = self.get(name).lower()
        if value not in ("yes", "no"):
            raise ConfigError(f"bad boolean configuration: {name} = {self.get(name)}")
        return value == "yes"

    def get_int(self, name: str) -> int:
        """An integer parameter.

        :raises ConfigError: the value is not a number.
        """
        value = self.get(name)
        try:
            return int(value)
        except ValueError:
            raise ConfigError(f"bad numerical configuration: {name} = {value}") from None

    def get_list(self, name: str) -> list[str]:
        """A list parameter, split as Postfix splits them (commas, white space, ``{...}``)."""
        return split_list(self.get(name))

    def get_set(self, name: str) -> frozenset[str]:
        """A list parameter as a set of lower-cased names (``canonical_classes`` and the like)."""
        return frozenset(item.lower() for item in self.get_list(name))

    def settings(self, cls: type[_Settings], /, **given: Any) -> _Settings:
        """An instance of the settings dataclass ``cls`` whose fields are named after main.cf
        parameters: each field that is a Postfix parameter and not in ``given`` is read with the
        getter its annotation names (``bool``, ``int``, ``str``, ``frozenset[str]``); the
        others keep their defaults."""
        values = dict(given)
        for f in dataclasses.fields(cls):
            if f.name in values or f.name not in POSTFIX_PARAMETERS:
                continue
            getter = _GETTERS.get(str(f.type))
            if getter is None:
                raise TypeError(f"{cls.__name__}.{f.name}: no main.cf getter for {f.type}")
            values[f.name] = getter(self, f.name)
        return cls(**values)

    def expand(self, text: str) -> str:
        """Expand ``$name`` references in ``text``, recursively, as main.cf does
        (:func:`mailmaps.macros.mac_expand` with the compatibility-level operators).

        :raises ConfigError: the text has a syntax error, or expansion nests unreasonably deep.
        """
        result, status = mac_expand(
            text,
            lambda name, _used: self.raw(name),
            recurse=True,
            relops=COMPAT_LEVEL_RELOPS,
        )
        if status & MacroStatus.ERROR:
            raise ConfigError(f'bad parameter value: "{text}"')
        return result


_GETTERS: dict[str, Any] = {
    "str": MainConfig.get,
    "bool": MainConfig.get_bool,
    "int": MainConfig.get_int,
    "frozenset[str]": MainConfig.get_set,
}


def _domain_of(values: Mapping[str, str], default_hostname: str) -> str:
    hostname = values.get("myhostname", default_hostname)
    return hostname.partition(".")[2] or "localdomain"
