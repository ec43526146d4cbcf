"""The one exception tree of mailmaps.

A lookup has three outcomes, as in Postfix: a value, "not found" (``None``, never an exception) and
an error.  Errors are split the way Postfix's ``dict->error`` is: a temporary failure
(``DICT_ERR_RETRY``: mail is deferred, try again later) and a configuration error
(``DICT_ERR_CONFIG``).  Callers can always tell the three apart::

    MailmapsError
     +-- ConfigError                    bad configuration; retrying will not help (DICT_ERR_CONFIG)
     |    +-- SpecError                 a malformed "type:name" spec or parameter list (ValueError)
     |    +-- UnknownMapType            no backend registered for that type
     |    +-- BackendUnavailable        the backend's optional driver is not installed
     |    +-- UnsupportedOperation      the backend cannot do that (create, update, sequence, ...)
     |    +-- MapSyntaxError            a table source or configuration file with a bad line
     +-- LookupFailed                   a lookup, update, delete or sequence could not complete
          +-- TemporaryLookupError      the backend is down or slow: retry later (DICT_ERR_RETRY)
          +-- PermanentLookupError      the answer is unusable (DICT_ERR_CONFIG)

The driver's own exception, where there is one, is kept as ``__cause__``.
"""

from __future__ import annotations

__all__ = [
    "BackendUnavailable",
    "ConfigError",
    "LookupFailed",
    "MailmapsError",
    "MapSyntaxError",
    "PermanentLookupError",
    "SpecError",
    "TemporaryLookupError",
    "UnknownMapType",
    "UnsupportedOperation",
]


class MailmapsError(Exception):
    """Root of every exception mailmaps raises on purpose."""


class ConfigError(MailmapsError):
    """A configuration problem: the table cannot be used as configured (``DICT_ERR_CONFIG``)."""


class SpecError(ConfigError, ValueError):
    """A malformed ``type:name`` spec, ``{...}`` group or parameter list."""


class UnknownMapType(ConfigError, ValueError):
    """No backend is registered for the map type of a spec."""

    def __init__(self, map_type: str) -> None:
        super().__init__(f"unsupported dictionary type: {map_type}")
        self.map_type = map_type


class BackendUnavailable(ConfigError):
    """The optional driver a backend needs is not installed.

    :param map_type: the Postfix map type, e.g. ``"hash"``.
    :param extra: the ``mailmaps[extra]`` that installs the driver.
    """

    def __init__(self, map_type: str, extra: str, detail: str = "") -> None:
        hint = f"install it with: pip install 'mailmaps[{extra}]'"
        text = f"map type {map_type!r} needs an optional driver that is not installed; {hint}"
        if detail:
            text += f" ({detail})"
        super().__init__(text)
        self.map_type = map_type
        self.extra = extra


class UnsupportedOperation(ConfigError):
    """The backend does not support the requested operation (for example creating a regexp map)."""


class MapSyntaxError(ConfigError, ValueError):
    """A bad line in a table source or configuration file.

    The message starts with ``file, line N:`` as Postfix's own diagnostics do.
    """

    def __init__(self, filename: str, lineno: int, message: str) -> None:
        super().__init__(f"{filename}, line {lineno}: {message}")
        self.filename = filename
        self.lineno = lineno
        self.detail = message


class LookupFailed(MailmapsError):
    """A table operation failed; the answer is neither a value nor "not found".

    When ``lookup_many()`` fails, :attr:`partial` holds the answers for the keys before the
    one that failed (in order), as a key-by-key loop would have had them.
    """

    partial: list[str | None] | None = None


class TemporaryLookupError(LookupFailed):
    """A temporary failure (``DICT_ERR_RETRY``): a server is down or slow; retry later."""


class PermanentLookupError(LookupFailed):
    """The table answered with something unusable (``DICT_ERR_CONFIG`` at lookup time)."""
