"""``ldap:/etc/postfix/ldap-aliases.cf`` (or ``ldap:name`` with ``name_server_host`` and so on in
main.cf): an LDAP directory, per ldap_table(5) (``dict_ldap.c``), through ldap3.

A lookup expands ``search_base`` and ``query_filter`` with the key (``%s``, ``%u``, ``%d``,
``%1``.., as for SQL tables), escaping what it substitutes: RFC 4514/2253 escapes (``\\XX``) of
space, TAB, ``" # + , ; < > \\`` in the base, RFC 4515 escapes of ``* ( ) \\`` in the filter, so
that a key only ever matches literally.  It searches with ``scope`` and asks for the result
attributes; then, entry by entry in the server's order:

* values of ``result_attribute`` (default ``maildrop``) go through ``result_format``;
* values of ``special_result_attribute`` are DNs or LDAP URLs whose entries are expanded the same
  way, recursively, up to ``recursion_limit`` levels (there is no loop detection: a cycle runs
  into the limit, which fails the lookup); a DN that does not exist is skipped with a warning;
* an entry with a ``terminal_result_attribute`` contributes only those values;
* ``leaf_result_attribute`` values count only in entries that have no special attributes.

Results are joined with commas.  More than ``expansion_limit`` results, more than
``size_limit`` entries (default: ``expansion_limit``), a failed bind, a search error and a
missing static ``search_base`` are temporary errors; a missing ``search_base`` that depends on the
key is "not found".  A server that dropped the connection is reconnected once per lookup.

``bind`` is ``yes``/``simple`` (with ``bind_dn`` and ``bind_pw``, anonymous when both are empty),
``no``/``none``, or ``sasl`` (``sasl_mechs`` EXTERNAL, PLAIN or DIGEST-MD5, as ldap3 offers them);
``version`` is 3 by default, as in Debian's Postfix (upstream's default is 2, which OpenLDAP 2.5
refuses to bind with unless it allows ``bind_v2``); ``start_tls`` and the ``tls_*`` settings map to
ldap3's TLS; ``timeout`` bounds connecting, binding and each search.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any, ClassVar, Self
from urllib.parse import quote, unquote, urlsplit

from mailmaps.backends._base import BaseTable, lookup_in_chunks
from mailmaps.backends._ber import FilterError, Reader, decode_message, encode_search
from mailmaps.backends._cfparser import TableConfig
from mailmaps.backends._dbcommon import QueryContext
from mailmaps.errors import BackendUnavailable, ConfigError, TemporaryLookupError
from mailmaps.table import OpenOptions

__all__ = ["LdapTable", "escape_dn_value", "escape_filter_value"]

log = logging.getLogger("mailmaps")

_NO_SUCH_OBJECT = 32
_FILTER_ERROR = 87
_SIZE_LIMIT_EXCEEDED = 4
_TIMEOUT = -5  # LDAP_TIMEOUT
_BIND = {"no": "none", "none": "none", "yes": "simple", "simple": "simple", "sasl": "sasl"}


def escape_filter_value(text: str) -> str:
    """Escape ``* ( ) \\`` as ``\\XX`` for a search filter (``rfc2254_quote()``)."""
    return "".join(f"\\{ord(c):02X}" if c in "*()\\" else c for c in text)


def escape_dn_value(text: str) -> str:
    """Escape space, TAB, ``" # + , ; < > \\`` as ``\\XX`` for a DN (``rfc2253_quote()``)."""
    return "".join(f"\\{ord(c):02X}" if c in ' \t"#+,;<>\\' else c for c in text)


def _is_ldap_url(text: str) -> bool:
    lowered = text.lower()
    return lowered.startswith(("ldap://", "ldaps://", "ldapi://"))


def _attr_relation(a1: str, a2: str) -> int:
    """1 when ``a2`` is ``a1`` or its subtype (``a1;option``), -1 when ``a1`` is a subtype of
    ``a2``, 0 when they differ (``attrdesc_subtype()``)."""
    l1, l2 = a1.lower(), a2.lower()
    if l1 == l2 or l2.startswith(l1 + ";"):
        return 1
    if l1.startswith(l2 + ";"):
        return -1
    return 0


class LdapTable(BaseTable):
    """An ``ldap:`` table (thread-safe: one search at a time per table, as in Postfix)."""

    map_type: ClassVar[str] = "ldap"
    fixed_keys: ClassVar[bool] = True
    replayable: ClassVar[bool] = False

    def __init__(self, name: str, options: OpenOptions, config: TableConfig) -> None:
        try:
            import ldap3
        except ImportError as exc:
            raise BackendUnavailable("ldap", "ldap", str(exc)) from exc
        self._ldap3 = ldap3
        super().__init__(name, options)
        self.config = config
        where = config.name
        hosts = config.get_str("server_host", "localhost", 1)
        port = config.get_int("server_port", 389)
        # Debian's Postfix (the reference) defaults to version 3; upstream's default is 2.
        self.version = config.get_int("version", 3, 2)
        if self.version not in (2, 3):
            log.warning("dict_ldap_open: %s Unknown version %d, using 2.", where, self.version)
            self.version = 2
        self.servers = self._parse_hosts(hosts, port)
        scope = config.get_str("scope", "sub", 1).lower()
        if scope not in ("sub", "one", "base"):
            log.warning(
                "dict_ldap_open: %s: Unrecognized value %s specified for scope; using sub",
                where,
                scope,
            )
            scope = "sub"
        self.scope = {"base": 0, "one": 1, "sub": 2}[scope]
        self.search_base = config.get_str("search_base", "")
        self.timeout = config.get_int("timeout", 10)
        self.query_filter = config.get_str("query_filter", "(mailacceptinggeneralid=%s)")
        result_format = config.get_str("result_format", None) or config.get_str(
            "result_filter", "%s", 1
        )
        self.ctx = QueryContext(
            str(self), where, self.query_filter, result_format, more=(self.search_base,)
        )
        self.dynamic_base, dynamic_filter = self.ctx.dynamic
        if not dynamic_filter:
            log.warning(
                "dict_ldap_open: %s: Fixed query_filter %s is probably useless",
                where,
                self.query_filter,
            )
        self.ctx.parse_domain(config, options)
        terminal = config.get_str("terminal_result_attribute", "").replace(",", " ").split()
        leaf = config.get_str("leaf_result_attribute", "").replace(",", " ").split()
        result = config.get_str("result_attribute", "maildrop").replace(",", " ").split()
        special = config.get_str("special_result_attribute", "").replace(",", " ").split()
        #: All requested attributes: terminal, leaf, ordinary, then special ones.
        self.attributes = [*terminal, *leaf, *result, *special]
        self.num_terminal = len(terminal)
        self.num_leaf = len(leaf)
        self.num_attributes = len(terminal) + len(leaf) + len(result)
        bind = config.get_str("bind", "yes", 1)
        if bind.lower() not in _BIND:
            raise ConfigError(f"{where}: unsupported parameter value: bind = {bind}")
        self.bind = _BIND[bind.lower()]
        self.bind_dn = config.get_str("bind_dn", "")
        self.bind_pw = config.get_str("bind_pw", "")
        for obsolete in ("cache",):
            if config.get_bool(obsolete, False):
                log.warning("dict_ldap_open: %s ignoring %s", where, obsolete)
        for obsolete in ("cache_expiry", "cache_size"):
            if config.get_int(obsolete, -1) >= 0:
                log.warning("dict_ldap_open: %s ignoring %s", where, obsolete)
        self.recursion_limit = config.get_int("recursion_limit", 1000, 1)
        self.expansion_limit = config.get_int("expansion_limit", 0)
        self.size_limit = config.get_int("size_limit", self.expansion_limit)
        dereference = config.get_int("dereference", 0)
        if not 0 <= dereference <= 3:
            log.warning(
                "dict_ldap_open: %s Unrecognized value %d specified for dereference; using 0",
                where,
                dereference,
            )
            dereference = 0
        self.dereference = dereference
        self.chase_referrals = config.get_bool("chase_referrals", False)
        if self.bind == "sasl":
            self.sasl_mechs = config.get_str("sasl_mechs", "")
            self.sasl_realm = config.get_str("sasl_realm", "")
            self.sasl_authz = config.get_str("sasl_authz_id", "")
        self.start_tls = config.get_bool("start_tls", False)
        if self.start_tls and self.version < 3:
            log.warning("dict_ldap_open: %s start_tls requires protocol version 3", where)
            self.version = 3
        self._tls = self._tls_settings(config)
        self._conn: Any = None
        self._sock: Any = None
        self._reader = Reader()
        self._message_id = 1000
        self._pending: dict[int, tuple[list[list[tuple[str, list[bytes]]]], int | None]] = {}
        self._lock = threading.Lock()
        self._recursion = 0
        self._expansion = 0
        self._error: str | None = None

    @classmethod
    def open(cls, name: str, options: OpenOptions, *, writable: bool = False) -> Self:
        """Read the table's settings (``name`` is a ``/path.cf`` or a main.cf prefix).

        :raises ConfigError: opened for writing, the file cannot be read, or a setting is bad.
        """
        if writable:
            raise ConfigError(f"ldap:{name} map requires O_RDONLY access mode")
        return cls(name, options, TableConfig(name, options.main_config))

    # -- configuration --------------------------------------------------------------------

    def _parse_hosts(self, hosts: str, port: int) -> list[tuple[str, int | None, bool]]:
        """``server_host``: LDAP URLs, or host names with an optional ``:port``; return
        (host or ldapi URL, port, TLS) for each."""
        servers: list[tuple[str, int | None, bool]] = []
        for item in hosts.replace(",", " ").split():
            if _is_ldap_url(item):
                url = urlsplit(item)
                scheme = url.scheme.lower()
                if scheme != "ldap" and self.version != 3:
                    log.warning("dict_ldap_open: URL scheme %s requires protocol version 3", scheme)
                    self.version = 3
                if scheme == "ldapi":
                    path = unquote(url.netloc) or "/run/slapd/ldapi"
                    servers.append(("ldapi://" + quote(path, safe=""), None, False))
                    continue
                default = 636 if scheme == "ldaps" else 389
                servers.append(
                    (url.hostname or "localhost", url.port or default, scheme == "ldaps")
                )
            else:
                host, colon, text = item.rpartition(":")
                if colon and text.isdigit():
                    servers.append((host, int(text), False))
                else:
                    servers.append((item, port, False))
        return servers

    def _tls_settings(self, config: TableConfig) -> Any:
        import ssl

        require = config.get_bool("tls_require_cert", False)
        ca_file = config.get_str("tls_ca_cert_file", "")
        ca_dir = config.get_str("tls_ca_cert_dir", "")
        cert = config.get_str("tls_cert", "")
        key = config.get_str("tls_key", "")
        ciphers = config.get_str("tls_cipher_suite", "")
        config.get_str("tls_random_file", "")
        return self._ldap3.Tls(
            validate=ssl.CERT_REQUIRED if require else ssl.CERT_NONE,
            ca_certs_file=ca_file or None,
            ca_certs_path=ca_dir or None,
            local_certificate_file=cert or None,
            local_private_key_file=key or None,
            ciphers=ciphers or None,
        )

    # -- connecting -----------------------------------------------------------------------

    def _connect(self) -> Any:
        """Connect to the first server that answers, in ``server_host`` order (as libldap tries
        a URL list), then STARTTLS and bind as configured."""
        hosts = " ".join(_server_url(*s) for s in self.servers)
        failure: BaseException | None = None
        for host, port, ssl in self.servers:
            try:
                # A new Server each time: ldap3 remembers addresses that failed.
                server = self._ldap3.Server(
                    host,
                    port=port,
                    use_ssl=ssl,
                    get_info=self._ldap3.NONE,
                    tls=self._tls,
                    connect_timeout=self.timeout,
                )
                conn = self._open(server)
            except (self._ldap3.core.exceptions.LDAPException, OSError) as exc:
                failure = exc
                continue
            if conn is not None:
                try:
                    return self._bind(conn, hosts)
                except (self._ldap3.core.exceptions.LDAPException, OSError) as exc:
                    self._unbind(conn)
                    failure = exc
                    break
        code, text = -1, "Can't contact LDAP server"
        if failure is not None and "timed out" in str(failure):
            code, text = _TIMEOUT, "Timed out"
        if self.bind != "none":
            self._bind_failed(hosts, code, text)
        raise TemporaryLookupError(f"{self}: cannot contact LDAP server {hosts}: {text}") from (
            failure
        )

    def _bind_failed(self, hosts: str, code: int, text: str) -> str:
        """Postfix's warning when it cannot bind; return the bind DN as it names it."""
        dn = self.bind_dn or "empty or implicit"
        log.warning(
            "dict_ldap_connect: Unable to bind to server %s with dn %s: %d (%s)",
            hosts,
            dn,
            code,
            text,
        )
        return dn

    def _open(self, server: Any) -> Any:
        ldap3 = self._ldap3
        kwargs: dict[str, Any] = {
            "version": self.version,
            "auto_bind": ldap3.AUTO_BIND_NONE,
            "read_only": True,
            "receive_timeout": self.timeout,
            "auto_referrals": self.chase_referrals,
            "raise_exceptions": False,
        }
        if self.bind == "simple":
            kwargs.update(authentication=ldap3.SIMPLE, user=self.bind_dn, password=self.bind_pw)
            if not self.bind_dn and not self.bind_pw:
                kwargs["authentication"] = ldap3.ANONYMOUS
        elif self.bind == "sasl":
            mech = (self.sasl_mechs.split() or ["EXTERNAL"])[0].upper()
            credentials: Any = None
            if mech == "DIGEST-MD5":
                credentials = (
                    self.sasl_realm or None,
                    self.bind_dn,
                    self.bind_pw,
                    self.sasl_authz or None,
                )
            elif mech == "PLAIN":
                credentials = (self.sasl_authz or "", self.bind_dn, self.bind_pw)
            else:  # EXTERNAL, GSSAPI: the authorization identity, empty for "as bound"
                credentials = self.sasl_authz
            kwargs.update(
                authentication=ldap3.SASL, sasl_mechanism=mech, sasl_credentials=credentials
            )
        else:
            kwargs["authentication"] = ldap3.ANONYMOUS
        conn = ldap3.Connection(server, **kwargs)
        conn.open(read_server_info=False)
        return None if conn.closed else conn

    def _bind(self, conn: Any, hosts: str) -> Any:
        if self.start_tls and not conn.start_tls(read_server_info=False):
            text = conn.last_error or (conn.result or {}).get("description", "")
            self._unbind(conn)
            log.error("dict_ldap_connect: Unable to set STARTTLS: %s", text)
            raise TemporaryLookupError(f"{self}: unable to set STARTTLS: {text}")
        if self.bind != "none" and not conn.bind(read_server_info=False):
            result = conn.result or {}
            code = result.get("result", -1)
            text = _ldap_error(code, result.get("description") or conn.last_error)
            dn = self._bind_failed(hosts, code, text)
            self._unbind(conn)
            raise TemporaryLookupError(
                f"{self}: unable to bind to server {hosts} with dn {dn}: {text}"
            )
        return conn

    @staticmethod
    def _unbind(conn: Any) -> None:
        try:
            conn.unbind()
        except Exception:  # the connection is broken already
            log.debug("ldap unbind failed", exc_info=True)

    # -- searching ------------------------------------------------------------------------

    def _attach(self, conn: Any) -> Any:
        """Use ``conn``'s socket for searches (ldap3 connected, negotiated TLS and bound)."""
        self._sock = conn.socket
        self._sock.settimeout(self.timeout or None)
        self._reader = Reader()
        self._pending = {}
        return conn

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._unbind(self._conn)
        self._conn = None
        self._sock = None

    def _send(self, base: str, scope: int, query: str, attributes: list[str]) -> int | None:
        """Send a search; return its message ID, or ``None`` for a bad filter.

        :raises ConnectionError: the server is unreachable (``LDAP_SERVER_DOWN``).
        """
        if not query.startswith("("):
            query = f"({query})"
        self._message_id = self._message_id % 2_000_000_000 + 1
        message_id = self._message_id
        try:
            request = encode_search(
                message_id,
                base,
                scope,
                self.dereference,
                self.size_limit,
                self.timeout,
                query,
                attributes,
            )
        except FilterError:
            return None
        try:
            self._sock.sendall(request)
        except OSError as exc:
            raise ConnectionError(str(exc) or "cannot send") from exc
        self._pending[message_id] = ([], None)
        return message_id

    def _collect(self, message_id: int | None) -> tuple[int, list[list[tuple[str, list[bytes]]]]]:
        """Wait for the answer to a search sent with :meth:`_send`: its result code and
        entries (answers to other pending searches are kept for them).

        :raises ConnectionError: the server went away.
        """
        if message_id is None:
            return _FILTER_ERROR, []
        while self._pending[message_id][1] is None:
            data = self._reader.next_message()
            if data is None:
                try:
                    chunk = self._sock.recv(65536)
                except TimeoutError:
                    self._pending.pop(message_id, None)
                    return _TIMEOUT, []
                except OSError as exc:
                    raise ConnectionError(str(exc) or "connection lost") from exc
                if not chunk:
                    raise ConnectionError("Can't contact LDAP server")
                self._reader.feed(chunk)
                continue
            try:
                response = decode_message(data)
            except ValueError as exc:
                raise ConnectionError(str(exc)) from exc
            if response.kind == "disconnect":
                raise ConnectionError(response.message or "server disconnected")
            slot = self._pending.get(response.message_id)
            if slot is None:
                continue
            if response.kind == "entry":
                slot[0].append(response.attributes)
            elif response.kind == "done":
                self._pending[response.message_id] = (slot[0], response.result_code)
        entries, code = self._pending.pop(message_id)
        assert code is not None
        return code, entries

    def _search(
        self, base: str, scope: int, query: str, attributes: list[str]
    ) -> tuple[int, list[list[tuple[str, list[bytes]]]]]:
        """Search; return the LDAP result code and the entries (``search_st()``).

        :raises ConnectionError: the server is unreachable (``LDAP_SERVER_DOWN``).
        """
        return self._collect(self._send(base, scope, query, attributes))

    def _lookup(self, key: str) -> str | None:
        request = self._request(key)
        if request is None:
            return None
        with self._lock:
            return self._answer(key, *self._first_search(request))

    def _request(self, key: str) -> tuple[str, str] | None:
        """The search base and filter for ``key``; ``None`` when it is not looked up."""
        ctx = self.ctx
        if ctx.domain is not None and not ctx.check_domain(key):
            return None
        base = ctx.expand_query(key, escape_dn_value, self.search_base)
        if base is None:
            return None
        query = ctx.expand_query(key, escape_filter_value)
        if query is None:
            return None
        return base, query

    def _first_search(
        self, request: tuple[str, str]
    ) -> tuple[str, int, list[list[tuple[str, list[bytes]]]]]:
        """Search for a key, reconnecting once if the connection was lost."""
        base, query = request
        for attempt in range(2):
            if self._conn is None:
                self._conn = self._attach(self._connect())
            try:
                code, entries = self._search(base, self.scope, query, self.attributes)
            except ConnectionError as exc:
                self._disconnect()
                if attempt == 0:
                    continue
                log.warning("dict_ldap_lookup: Search error -1: %s ", exc)
                raise TemporaryLookupError(f"{self}: search error: {exc}") from exc
            return base, code, entries
        raise AssertionError("unreachable")

    def _answer(
        self, key: str, base: str, code: int, entries: list[list[tuple[str, list[bytes]]]]
    ) -> str | None:
        if code == _NO_SUCH_OBJECT:
            if self.dynamic_base:
                return None
            log.warning(
                "dict_ldap_lookup: %s: Search base '%s' not found: %d: No such object",
                self.config.name,
                base,
                code,
            )
            raise TemporaryLookupError(f"{self}: search base '{base}' not found")
        if code != 0:
            text = _ldap_error(code)
            log.warning("dict_ldap_lookup: Search error %d: %s ", code, text)
            self._disconnect()
            raise TemporaryLookupError(f"{self}: search error {code}: {text}")
        out: list[str] = []
        self._recursion = 0
        self._expansion = 0
        self._error = None
        self._get_values(entries, out, key)
        if self._error is not None:
            raise TemporaryLookupError(f"{self}: {self._error}")
        return "".join(out) or None

    #: Searches sent at once by :meth:`lookup_many`.
    pipeline_depth: ClassVar[int] = 64

    def lookup_many(self, keys: Sequence[str]) -> list[str | None]:
        """Look up many keys, with up to :attr:`pipeline_depth` searches in flight at once;
        the answers (and errors) are those of :meth:`lookup`."""
        return lookup_in_chunks(keys, self.pipeline_depth, self._lookup_chunk)

    def _lookup_chunk(self, keys: Sequence[str], answers: list[str | None]) -> None:
        requests: list[tuple[str, str] | None] = []
        prepared: list[str | None] = []
        for key in keys:
            ready = key if self._plain else self.prepare_key(key)
            prepared.append(ready)
            requests.append(self._request(ready) if ready is not None else None)
        with self._lock:
            sent = self._send_all(requests)
            dropped = False  # the connection went away: the rest go one at a time
            for key, ready, request, message_id in zip(keys, prepared, requests, sent, strict=True):
                if ready is None or request is None:
                    answers.append(None)
                    continue
                result = None
                if message_id is not None and not dropped:
                    try:
                        code, entries = self._collect(message_id)
                        result = (request[0], code, entries)
                    except ConnectionError:
                        self._disconnect()
                        dropped = True
                if result is None:
                    result = self._first_search(request)
                value = self._answer(ready, *result)
                if value is not None and self._utf8:
                    value = self._check_value(key, value)
                answers.append(value)

    def _send_all(self, requests: list[tuple[str, str] | None]) -> list[int | None]:
        """Send the searches of a chunk; ``None`` for those to be made one at a time."""
        if sum(r is not None for r in requests) < 2:
            return [None] * len(requests)
        try:
            if self._conn is None:
                self._conn = self._attach(self._connect())
            sent: list[int | None] = []
            for request in requests:
                if request is None:
                    sent.append(None)
                    continue
                sent.append(self._send(request[0], self.scope, request[1], self.attributes))
            return sent
        except ConnectionError:
            self._disconnect()
            return [None] * len(requests)

    def _fail(self, text: str) -> None:
        log.warning("%s", text)
        if self._error is None:
            self._error = text

    def _get_values(
        self, entries: list[list[tuple[str, list[bytes]]]], out: list[str], key: str
    ) -> None:
        """Collect the values of ``entries`` into ``out``, recursing into special attributes
        (``dict_ldap_get_values()``)."""
        self._recursion += 1
        level = self._recursion
        try:
            for count, entry in enumerate(entries, 1):
                if self._error is None and self.size_limit and count > self.size_limit:
                    self._fail(
                        f"dict_ldap_get_values[{level}]: {self.config.name}: Query size limit "
                        f"({self.size_limit}) exceeded"
                    )
                self._entry_values(entry, out, key, level)
        finally:
            self._recursion -= 1

    def _values_of(self, attrs: list[tuple[str, list[bytes]]], wanted: str) -> list[bytes]:
        for name, values in attrs:
            if _attr_relation(wanted, name) > 0 and values:
                return values
        return []

    def _entry_values(
        self, attrs: list[tuple[str, list[bytes]]], out: list[str], key: str, level: int
    ) -> None:
        wanted = self.attributes
        is_terminal = any(self._values_of(attrs, a) for a in wanted[: self.num_terminal])
        is_leaf = True
        if not is_terminal and self.num_leaf:
            is_leaf = not any(self._values_of(attrs, a) for a in wanted[self.num_attributes :])
        for name, raw_values in attrs:
            if self._error is not None or not raw_values:
                continue
            index = next(
                (i for i, a in enumerate(wanted) if _attr_relation(a, name) > 0), len(wanted)
            )
            values = [v.decode("utf-8", "surrogateescape") for v in raw_values]
            if index < self.num_attributes or is_terminal:
                if (is_terminal and index >= self.num_terminal) or (
                    not is_leaf and index < self.num_terminal + self.num_leaf
                ):
                    continue
                for value in values:
                    self._add(value, out, key, level)
                    if self._error is not None:
                        break
            elif index < len(wanted) and level < self.recursion_limit:
                for value in values:
                    self._expand_special(value, out, key, level)
                    if self._error is not None:
                        break
            elif index < len(wanted):
                self._fail(
                    f"dict_ldap_get_values[{level}]: {self.config.name}: Recursion limit "
                    f"exceeded for special attribute {name}={values[0]}"
                )

    def _add(self, value: str, out: list[str], key: str, level: int) -> None:
        before = len(out)
        # One value at a time through result_format, so that the expansion count is exact.
        formatted = self.ctx.format_results([value], key, 0)
        if formatted is None:
            return
        if before:
            out.append(",")
        out.append(formatted)
        self._expansion += 1
        if self.expansion_limit and self._expansion > self.expansion_limit:
            self._fail(
                f"dict_ldap_get_values[{level}]: {self.config.name}: Expansion limit exceeded "
                f"for key: '{key}'"
            )

    def _expand_special(self, value: str, out: list[str], key: str, level: int) -> None:
        if _is_ldap_url(value):
            try:
                from ldap3.utils.uri import parse_uri

                url = parse_uri(value)
            except Exception as exc:
                self._fail(f"dict_ldap_get_values[{level}]: malformed URL {value}: {exc}")
                return
            attrs = self._url_attributes(url.get("attributes") or [])
            if attrs is None:
                return
            scope = {"LEVEL": 1, "SUBTREE": 2}.get(str(url.get("scope") or "").upper(), 0)
            base = url.get("base") or ""
            query = url.get("filter") or "(objectclass=*)"
        else:
            attrs, scope, base, query = self.attributes, 0, value, "(objectclass=*)"
        try:
            code, entries = self._search(base, scope, query, attrs)
        except ConnectionError as exc:
            self._fail(f"dict_ldap_get_values[{level}]: search error: {exc}")
            return
        if code == 0:
            self._get_values(entries, out, key)
        elif code == _NO_SUCH_OBJECT:
            log.warning("dict_ldap_get_values[%d]: DN %s not found, skipping ", level, value)
        else:
            self._fail(f"dict_ldap_get_values[{level}]: search error {code}: {_ldap_error(code)} ")

    def _url_attributes(self, url_attrs: list[str]) -> list[str] | None:
        """The attributes to ask a URL's search for: ours, narrowed to those the URL names
        (``url_attrs()``); ``None`` when none is left."""
        if not url_attrs:
            return self.attributes
        chosen = []
        for a1 in url_attrs:
            for a2 in self.attributes:
                relation = _attr_relation(a1, a2)
                if relation > 0:
                    chosen.append(a2)
                elif relation < 0:
                    chosen.append(a1)
        return chosen or None

    def close(self) -> None:
        with self._lock:
            self._disconnect()
        super().close()


def _server_url(host: str, port: int | None, ssl: bool) -> str:
    if host.startswith("ldapi://"):
        return host
    return f"{'ldaps' if ssl else 'ldap'}://{host}:{port}"


_ERRORS = {
    -5: "Timed out",
    -1: "Can't contact LDAP server",
    1: "Operations error",
    2: "Protocol error",
    3: "Time limit exceeded",
    4: "Size limit exceeded",
    7: "Auth method not supported",
    8: "Strong(er) authentication required",
    32: "No such object",
    34: "Invalid DN syntax",
    48: "Inappropriate authentication",
    49: "Invalid credentials",
    50: "Insufficient access",
    51: "Server is busy",
    52: "Server is unavailable",
    53: "Server is unwilling to perform",
    80: "Other (e.g., implementation specific) error",
    87: "Bad search filter",
}


def _ldap_error(code: int, fallback: object = None) -> str:
    """OpenLDAP's ``ldap_err2string()`` text for a result code."""
    return _ERRORS.get(code) or str(fallback or f"LDAP error {code}")
