"""Reading main.cf: ``name = value`` logical lines and ``$name`` expansion (postconf(5)).

This is the part of Postfix's configuration reader that the table tools need: the parameters
``postmap``/``postalias`` consult (``default_database_type``, ``smtputf8_enable``,
``compatibility_level``, ``lmdb_map_size``, ``myhostname``).  Expansion handles ``$$``, ``$name``,
``${name}``, ``$(name)``, ``${name?text}`` and ``${name:text}``; an undefined name expands to the
empty string.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mailmaps.errors import ConfigError, MapSyntaxError
from mailmaps.source import logical_lines

__all__ = ["MainConfig", "compat_level_below", "read_main_cf"]

_SPACE = " \t\n\r\v\f"
_NAME = re.compile(r"[A-Za-z0-9_]+")
_MAX_NESTING = 100


def read_main_cf(path: str | Path) -> dict[str, str]:
    """Parse a main.cf file into raw (unexpanded) values; the last definition of a name wins.

    :raises ConfigError: the file cannot be read.
    :raises MapSyntaxError: a line is not ``name = value``.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"open {path}: {exc.strerror}") from exc
    values: dict[str, str] = {}
    for lineno, raw in logical_lines(data, str(path)):
        line = raw.decode("utf-8", "surrogateescape")
        name_end = 0
        while name_end < len(line) and line[name_end] not in _SPACE and line[name_end] != "=":
            name_end += 1
        name = line[:name_end]
        rest = line[name_end:].lstrip(_SPACE)
        if not name or not rest.startswith("="):
            raise MapSyntaxError(str(path), lineno, "missing '=' after attribute name")
        values[name] = rest[1:].strip(_SPACE)
    return values


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
        if name == "smtputf8_enable":
            level = self.get("compatibility_level")
            return "no" if compat_level_below(level, "1") else "yes"
        return self.defaults().get(name)

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

    def expand(self, text: str, _depth: int = 0) -> str:
        """Expand ``$name`` references in ``text`` recursively.

        :raises ConfigError: expansion nests unreasonably deep, or a ``${`` is not closed.
        """
        if _depth > _MAX_NESTING:
            raise ConfigError(f'unreasonable macro call nesting: "{text}"')
        out: list[str] = []
        i, n = 0, len(text)
        while i < n:
            ch = text[i]
            if ch != "$" or i + 1 >= n:
                out.append(ch)
                i += 1
                continue
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
            elif nxt in "{(":
                close = "}" if nxt == "{" else ")"
                end = _matching(text, i + 1, nxt, close)
                if end < 0:
                    raise ConfigError(f"missing '{close}' in \"{text}\"")
                out.append(self._expand_braced(text[i + 2 : end], _depth))
                i = end + 1
            else:
                m = _NAME.match(text, i + 1)
                if m is None:
                    out.append(ch)
                    i += 1
                else:
                    out.append(self._lookup(m.group(), _depth))
                    i = m.end()
        return "".join(out)

    def _lookup(self, name: str, depth: int) -> str:
        raw = self.raw(name)
        return "" if raw is None else self.expand(raw, depth + 1)

    def _expand_braced(self, body: str, depth: int) -> str:
        body = body.strip(_SPACE)
        m = _NAME.match(body)
        if m is None:
            raise ConfigError(f'bad macro expression: "${{{body}}}"')
        name = m.group()
        rest = body[m.end() :].lstrip(_SPACE)
        if not rest:
            return self._lookup(name, depth)
        value = self._lookup(name, depth)
        op, text = rest[0], rest[1:]
        if text.startswith("{") and text.endswith("}"):
            text = text[1:-1]
        if op == "?":
            return self.expand(text, depth + 1) if value else ""
        if op == ":":
            return "" if value else self.expand(text, depth + 1)
        raise ConfigError(f'bad macro expression: "${{{body}}}"')


def _domain_of(values: Mapping[str, str], default_hostname: str) -> str:
    hostname = values.get("myhostname", default_hostname)
    return hostname.partition(".")[2] or "localdomain"


def _matching(text: str, start: int, open_ch: str, close_ch: str) -> int:
    level = 0
    for j in range(start, len(text)):
        if text[j] == open_ch:
            level += 1
        elif text[j] == close_ch:
            level -= 1
            if level == 0:
                return j
    return -1
