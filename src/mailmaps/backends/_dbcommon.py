"""What the SQL and LDAP tables share: query templates, result formatting and the ``domain``
filter (Postfix's ``db_common.c``).

A *query template* (``query = SELECT goto FROM alias WHERE address='%s'``, an LDAP
``query_filter``) is expanded with the key: ``%s`` the key, ``%u`` its local part (the whole key
when it has no ``@``), ``%d`` its domain, ``%1``..``%9`` the domain's labels counted from the
right, ``%%`` a percent sign; ``%S %U %D`` are synonyms there.  A key that cannot fill the
template is not looked up at all: ``%d`` and a key without a domain, ``%u`` and ``@domain``, ``%3``
and a two-label domain.  Each substituted piece goes through the backend's quoting (SQL string
escaping, RFC 4515 filter escaping), so a key can only ever match literally.

A *result template* (``result_format``, default ``%s``) is applied to every value the server
returns; there ``%s %u %d`` are parts of the *value* and ``%S %U %D %1``.. parts of the *key*.  A
value that cannot fill it is skipped, NULLs are skipped silently and empty strings with a
warning, and what is left is joined with commas.  More values than ``expansion_limit`` is a
temporary error, never a truncated answer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator

from mailmaps.backends._cfparser import TableConfig
from mailmaps.errors import ConfigError, LookupFailed, TemporaryLookupError
from mailmaps.matchlist import ListKind, MatchList
from mailmaps.table import OpenOptions

__all__ = ["QueryContext", "legacy_sql_query"]

log = logging.getLogger("mailmaps")

_KEY_DOMAIN = 1
_KEY_USER = 2
_VALUE_DOMAIN = 4
_VALUE_USER = 8

Quote = Callable[[str], str]


class QueryContext:
    """The parsed templates and ``domain`` list of one table (``DB_COMMON_CTX``).

    :param table: ``type:name`` of the table, for diagnostics.
    :param query: the query template (SQL query, LDAP filter).
    :param result_format: the result template.
    :param more: other templates expanded with the key (an LDAP ``search_base``); a key must be
        able to fill all of them.
    :raises ConfigError: a template uses an unknown ``%`` escape.
    """

    def __init__(
        self, table: str, name: str, query: str, result_format: str, *, more: tuple[str, ...] = ()
    ) -> None:
        self.table = table
        self.name = name
        self.flags = 0
        self.nparts = 0
        self.domain: MatchList | None = None
        #: Whether each query template (``query`` and then ``more``) depends on the key.
        self.dynamic = [self._parse(template, True) for template in (*more, query)]
        self._parse(result_format, False)
        self.query = query
        self.result_format = result_format

    def _parse(self, template: str, query: bool) -> bool:
        dynamic = False
        i = 0
        while i < len(template):
            if template[i] == "%":
                i += 1
                c = template[i] if i < len(template) else ""
                if c == "%":
                    pass
                elif c == "u":
                    self.flags |= _KEY_USER if query else _VALUE_USER
                    dynamic = True
                elif c == "d":
                    self.flags |= _KEY_DOMAIN if query else _VALUE_DOMAIN
                    dynamic = True
                elif c in ("s", "S"):
                    dynamic = True
                elif c == "U":
                    self.flags |= _KEY_USER
                    dynamic = True
                elif c in "123456789" and c:
                    self.nparts = max(self.nparts, int(c))
                    self.flags |= _KEY_DOMAIN
                    dynamic = True
                elif c == "D":
                    self.flags |= _KEY_DOMAIN
                    dynamic = True
                else:
                    kind = "query" if query else "result"
                    raise ConfigError(
                        f"db_common_parse: {self.name}: Invalid {kind} template: {template}"
                    )
            i += 1
        return dynamic

    def parse_domain(self, config: TableConfig, options: OpenOptions) -> None:
        """Read the ``domain`` setting: only ``user@domain`` keys whose domain is on the list
        are looked up (a string list: exact names, ``!``, ``/file``, ``type:table``)."""
        value = config.get_str("domain", "")
        if value:
            self.domain = MatchList(config.name, value, ListKind.STRING, options=options)

    def check_domain(self, key: str) -> bool:
        """Whether ``key`` may be looked up under the ``domain`` list.

        :raises TemporaryLookupError: a table in the list failed.
        """
        if self.domain is None:
            return True
        at = key.rfind("@")
        if at <= 0:
            return False
        try:
            return self.domain.match(key[at + 1 :])
        except LookupFailed as exc:
            log.warning("%s 'domain' pattern match failed for '%s'", self.table, key)
            raise TemporaryLookupError(
                f"{self.table}: 'domain' pattern match failed for '{key}'"
            ) from exc

    def expand_query(
        self, key: str, quote: Quote | None, template: str | None = None
    ) -> str | None:
        """The query for ``key`` (from ``template``, default the ``query``), or ``None`` when
        the key cannot fill the templates (no lookup: "not found")."""
        if not key:
            log.warning('table "%s": empty query string -- ignored', self.table)
            return None
        out: list[str] = []
        if not self._expand(self.query if template is None else template, key, None, out, quote):
            return None
        return "".join(out)

    def fillable(self, key: str) -> bool:
        """Whether ``key`` can fill the query templates (what :meth:`expand_query` checks
        before it builds anything), warning about an empty key as it does."""
        if not key:
            log.warning('table "%s": empty query string -- ignored', self.table)
            return False
        flags = self.flags
        if not flags & (_KEY_DOMAIN | _KEY_USER):
            return True
        at = key.rfind("@")
        if _lacks_part(key, at, flags & _KEY_DOMAIN, flags & _KEY_USER):
            return False
        return not self.nparts or len(_labels(key[at + 1 :])) >= self.nparts

    def pieces(self, key: str, escapes: str) -> list[str]:
        """The values of the ``%`` escapes ``escapes`` (e.g. ``"ud"``) for ``key``, unquoted;
        the key must be one that :meth:`expand_query` accepts and must not contain NUL."""
        out: list[str] = []
        self._expand("\0".join(f"%{e}" for e in escapes), key, None, out, None)
        return "".join(out).split("\0") if escapes else []

    def format_results(
        self, values: Iterable[object], key: str, limit: int, who: str = "dict_lookup"
    ) -> str | None:
        """Apply ``result_format`` to each value the server returned and join the results
        with commas; ``None`` when nothing is left.

        :raises TemporaryLookupError: more than ``limit`` results (``expansion_limit``; 0 is
            no limit).
        """
        if self.result_format == "%s" and not limit:
            return ",".join(self._nonempty(values, key)) or None
        out: list[str] = []
        count = 0
        for value in self._nonempty(values, key):
            if self._expand(self.result_format, value, key, out, None):
                count += 1
                if limit > 0 and count > limit:
                    log.warning(
                        "%s: %s: Expansion limit exceeded for key: '%s'", who, self.name, key
                    )
                    raise TemporaryLookupError(
                        f"{self.table}: expansion limit exceeded for key: '{key}'"
                    )
        return "".join(out) or None

    def _nonempty(self, values: Iterable[object], key: str) -> Iterator[str]:
        """The values as text, without NULLs (silently) and empty strings (with a warning)."""
        for raw in values:
            if raw is None:
                continue
            value = raw if isinstance(raw, str) else _text(raw)
            if value:
                yield value
            else:
                log.warning('table "%s": empty lookup result for: "%s" -- ignored', self.table, key)

    def _expand(
        self, template: str, value: str, key: str | None, out: list[str], quote: Quote | None
    ) -> bool:
        flags = self.flags
        vat = (
            value.rfind("@")
            if flags & (_VALUE_DOMAIN | _VALUE_USER | _KEY_DOMAIN | _KEY_USER)
            else -1
        )
        kat = -1
        if key is not None:
            if _lacks_part(value, vat, flags & _VALUE_DOMAIN, flags & _VALUE_USER):
                return False
            if flags & (_KEY_DOMAIN | _KEY_USER):
                kat = key.rfind("@")
                if _lacks_part(key, kat, flags & _KEY_DOMAIN, flags & _KEY_USER):
                    log.warning(
                        "db_common_expand: %s: lookup key '%s' skipped after query",
                        self.name,
                        value,
                    )
                    return False
        elif _lacks_part(value, vat, flags & _KEY_DOMAIN, flags & _KEY_USER):
            return False
        parts: list[str] = []
        if self.nparts:
            if key is not None:
                domain = key[kat + 1 :] if kat >= 0 else ""
            else:
                domain = value[vat + 1 :] if vat >= 0 else ""
            parts = _labels(domain)
            if len(parts) < self.nparts:
                return False
        if out:
            out.append(",")

        def put(text: str) -> None:
            out.append(quote(text) if quote is not None else text)

        i = 0
        n = len(template)
        while i < n:
            c = template[i]
            if c != "%":
                j = template.find("%", i)
                if j < 0:
                    j = n
                out.append(template[i:j])
                i = j
                continue
            i += 1
            c = template[i] if i < n else ""
            i += 1
            if c == "%":
                out.append("%")
            elif c == "s":
                put(value)
            elif c == "u":
                put(value[:vat] if vat >= 0 else value)
            elif c == "d":
                put(value[vat + 1 :])
            elif c == "S":
                put(key if key is not None else value)
            elif c == "U":
                if key is not None:
                    put(key[:kat] if kat >= 0 else key)
                else:
                    put(value[:vat] if vat >= 0 else value)
            elif c == "D":
                put(key[kat + 1 :] if key is not None else value[vat + 1 :])
            elif c and c in "123456789":
                put(parts[len(parts) - int(c)])
            else:  # rejected by _parse()
                raise ConfigError(f"{self.name}: invalid template '{template}'")
        return True


def _lacks_part(text: str, at: int, domain: int, user: int) -> bool:
    """Whether ``text``, whose last ``@`` is at ``at``, lacks a part a template needs: a domain
    (no ``@``, or nothing after it) when ``domain``, a local part (``@`` first) when ``user``."""
    return bool((domain and (at < 0 or at == len(text) - 1)) or (user and at == 0))


def _labels(domain: str) -> list[str]:
    """A domain's labels, as ``argv_split()`` gives them: empty ones dropped (``a..b`` has
    two), so that no label a template needs can be empty."""
    return [label for label in domain.split(".") if label]


def _text(raw: object) -> str:
    if isinstance(raw, bytes | bytearray | memoryview):
        return bytes(raw).decode("utf-8", "surrogateescape")
    return str(raw)


def legacy_sql_query(config: TableConfig) -> str:
    """The query of the legacy form: ``SELECT select_field FROM table WHERE
    where_field='%s' additional_conditions``.

    :raises ConfigError: ``table``, ``select_field`` or ``where_field`` is missing.
    """
    fields = {}
    for name in ("table", "select_field", "where_field"):
        value = config.get_str(name, "")
        if not value:
            raise ConfigError(f"db_common_sql_build_query: '{name}' parameter not defined")
        fields[name] = value
    extra = config.get_str("additional_conditions", "")
    return (
        f"SELECT {fields['select_field']} FROM {fields['table']} "
        f"WHERE {fields['where_field']}='%s' {extra}"
    )
