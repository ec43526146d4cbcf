"""Private database and directory servers on loopback, for tests and benchmarks.

Each class starts a real server from Debian's packages in a directory of its own, listening on a
free ``127.0.0.1`` port and on a UNIX socket in that directory, and stops it on :meth:`stop` (or
when the ``with`` block ends).  Nothing else on the machine is touched: no system service, no
``/etc`` file, no well-known port::

    with MariaDB(tmp_path / "db") as server:
        server.sql("CREATE TABLE alias (address VARCHAR(255), goto TEXT)")
        print(server.port, server.socket)

The servers run as the system accounts their packages create (``mysql``, ``postgres``,
``openldap``) when started as root, and are wrapped in ``timeout`` so that a crashed test run
cannot leave them behind for long.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import socketserver
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = [
    "MAIL_SCHEMA",
    "MariaDB",
    "PostgreSQL",
    "ScriptedServer",
    "ServerError",
    "Slapd",
    "SocketmapScript",
    "TcpMapScript",
    "free_port",
    "self_signed_certificate",
]

#: Longest a server started here may live, in seconds.
LIFETIME = 3600


class ServerError(RuntimeError):
    """A server could not be started or could not run a command."""


def self_signed_certificate(directory: Path, name: str = "127.0.0.1") -> tuple[Path, Path]:
    """A self-signed certificate for ``name`` (an IP address or host name) and its key, in
    ``directory``, readable by the servers' accounts; return their paths."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    kind = "IP" if name.replace(".", "").isdigit() or ":" in name else "DNS"
    _run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            f"/CN={name}",
            "-addext",
            f"subjectAltName={kind}:{name}",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ]
    )
    cert.chmod(0o644)
    key.chmod(0o644)
    return cert, key


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _chown(path: Path, user: str) -> None:
    if os.geteuid() == 0:
        shutil.chown(path, user, user)


def _run(argv: list[str], statements: str = "") -> str:
    """Run a server's tool; return what it printed.

    :raises ServerError: it failed (with what it said on standard error).
    """
    done = subprocess.run(argv, input=statements.encode(), capture_output=True, check=False)
    if done.returncode:
        raise ServerError(f"{argv[0]} failed: {done.stderr.decode(errors='replace')}")
    return done.stdout.decode()


def _as_user(user: str) -> list[str]:
    """The command prefix that runs a tool as ``user`` when we are root."""
    return (
        ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups"]
        if os.geteuid() == 0
        else []
    )


class _Stoppable:
    """A server that a ``with`` block stops."""

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class _Server(_Stoppable):
    """What the servers share: a directory, a port, a process, and stop()."""

    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def _spawn(self, argv: list[str], log: Path) -> None:
        out = log.open("ab")
        self.process = subprocess.Popen(
            ["timeout", str(LIFETIME), *argv],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        out.close()

    def _running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def _wait_ready(self, probe: list[str], what: str, log: Path, seconds: float = 30.0) -> None:
        """Wait until the ``probe`` command succeeds.

        :raises ServerError: the server exited, or did not answer in ``seconds``.
        """
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not self._running():
                raise ServerError(f"{what} exited\n{log.read_text(errors='replace')}")
            if subprocess.run(probe, capture_output=True, check=False).returncode == 0:
                return
            time.sleep(0.1)
        detail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
        raise ServerError(f"{what} did not start in {seconds:.0f}s\n{detail}")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the server and wait for it to exit."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        os.killpg(process.pid, sig)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


class MariaDB(_Server):
    """A MariaDB server (Debian's ``mariadb-server``) with a database ``mailmaps`` and a user
    ``postfix`` (password :attr:`password`) that may read it, over TCP and the UNIX socket.

    :param directory: where the data, socket, pid file and log go (created if needed).
    :param tls: a certificate and its key (PEM files) to offer TLS with.
    """

    database = "mailmaps"
    user = "postfix"
    password = "pw"

    def __init__(self, directory: Path, tls: tuple[Path, Path] | None = None) -> None:
        super().__init__(directory)
        self.tls = tls
        self.socket = str(self.dir / "mysqld.sock")
        self.log = self.dir / "error.log"
        _chown(self.dir, "mysql")
        data = self.dir / "data"
        if not data.exists():
            _run(
                [
                    "mariadb-install-db",
                    "--no-defaults",
                    *(["--user=mysql"] if os.geteuid() == 0 else []),
                    f"--datadir={data}",
                    "--auth-root-authentication-method=socket",
                    "--skip-test-db",
                ]
            )
        self.start()
        self.sql(
            f"CREATE DATABASE IF NOT EXISTS {self.database} CHARACTER SET utf8mb4;"
            + "".join(
                f"CREATE USER IF NOT EXISTS '{self.user}'@'{host}' IDENTIFIED BY "
                f"'{self.password}'; GRANT SELECT, EXECUTE ON {self.database}.* TO "
                f"'{self.user}'@'{host}';"
                for host in ("127.0.0.1", "localhost")
            ),
            database=None,
        )

    def start(self) -> None:
        """Start (or restart) the server on the same port and socket."""
        if self._running():
            return
        self._spawn(
            [
                "/usr/sbin/mariadbd",
                "--no-defaults",
                *(["--user=mysql"] if os.geteuid() == 0 else []),
                f"--datadir={self.dir / 'data'}",
                f"--socket={self.socket}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                "--skip-networking=0",
                f"--pid-file={self.dir / 'mysqld.pid'}",
                f"--log-error={self.log}",
                "--skip-log-bin",
                "--skip-name-resolve",
                "--character-set-server=utf8mb4",
                "--collation-server=utf8mb4_general_ci",
                "--innodb-buffer-pool-size=32M",
                "--innodb-log-file-size=8M",
                *(
                    [f"--ssl-cert={self.tls[0]}", f"--ssl-key={self.tls[1]}"]
                    if self.tls is not None
                    else []
                ),
            ],
            self.dir / "stdout.log",
        )

        self._wait_ready(
            ["mariadb", "--no-defaults", f"--socket={self.socket}", "-u", "root", "-e", "SELECT 1"],
            "mariadbd",
            self.log,
        )

    def sql(self, statements: str, *, database: str | None = "mailmaps") -> str:
        """Run SQL as the server's root user; return what the client printed (tab-separated).

        :raises ServerError: the statements failed.
        """
        argv = ["mariadb", "--no-defaults", f"--socket={self.socket}", "-u", "root", "-N", "-B"]
        if database:
            argv.append(database)
        return _run(argv, statements)


class PostgreSQL(_Server):
    """A PostgreSQL 15 server (Debian's ``postgresql``) with a database ``mailmaps`` that the
    role ``postfix`` (password :attr:`password`) may read, over TCP and the UNIX socket
    ``DIR/.s.PGSQL.PORT``.

    :param directory: where the data, socket and log go (created if needed).
    """

    database = "mailmaps"
    user = "postfix"
    password = "pw"
    bindir = Path("/usr/lib/postgresql/15/bin")

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.socket_dir = str(self.dir)
        self.log = self.dir / "postgres.log"
        _chown(self.dir, "postgres")
        data = self.dir / "data"
        if not data.exists():
            _run(
                [
                    *_as_user("postgres"),
                    str(self.bindir / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    "postgres",
                    "-A",
                    "trust",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                    "--no-sync",
                ]
            )
            hba = data / "pg_hba.conf"
            hba.write_text(
                "local all postgres trust\n"
                "local all all scram-sha-256\n"
                "host all all 127.0.0.1/32 scram-sha-256\n"
            )
            _chown(hba, "postgres")
        self.start()
        self.sql(f"CREATE ROLE {self.user} LOGIN PASSWORD '{self.password}'", database="postgres")
        self.sql(f"CREATE DATABASE {self.database}", database="postgres")
        self.sql(f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO {self.user}")

    def start(self) -> None:
        """Start (or restart) the server on the same port and socket."""
        if self._running():
            return
        self._spawn(
            [
                *_as_user("postgres"),
                str(self.bindir / "postgres"),
                "-D",
                str(self.dir / "data"),
                "-k",
                self.socket_dir,
                "-p",
                str(self.port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
            ],
            self.log,
        )

        self._wait_ready(
            [str(self.bindir / "pg_isready"), "-q", "-h", self.socket_dir, "-p", str(self.port)],
            "postgres",
            self.log,
        )

    def stop(self, sig: int = signal.SIGINT) -> None:
        """Stop the server (a fast shutdown) and wait for it to exit."""
        super().stop(sig)

    def sql(self, statements: str, *, database: str = "mailmaps") -> str:
        """Run SQL as the ``postgres`` superuser; return what psql printed (unaligned).

        :raises ServerError: the statements failed.
        """
        argv = [
            "psql",
            "-X",
            "-q",
            "-A",
            "-t",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            self.socket_dir,
            "-p",
            str(self.port),
            "-U",
            "postgres",
            "-d",
            database,
        ]
        return _run(argv, statements)


#: A small schema with the attributes Postfix's ldap_table(5) examples use, which no stock
#: schema defines (OIDs under OpenLDAP's experimental arc).
MAIL_SCHEMA = """\
attributetype ( 1.3.6.1.4.1.4203.666.11.1 NAME 'mailacceptinggeneralid'
    EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
attributetype ( 1.3.6.1.4.1.4203.666.11.2 NAME 'maildrop'
    EQUALITY caseIgnoreMatch SUBSTR caseIgnoreSubstringsMatch
    SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
attributetype ( 1.3.6.1.4.1.4203.666.11.3 NAME 'memberdn'
    EQUALITY distinguishedNameMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.12 )
attributetype ( 1.3.6.1.4.1.4203.666.11.4 NAME 'memberurl'
    EQUALITY caseExactMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
attributetype ( 1.3.6.1.4.1.4203.666.11.5 NAME 'forwardto'
    EQUALITY caseIgnoreMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.15 )
objectclass ( 1.3.6.1.4.1.4203.666.11.100 NAME 'mailRecipient' SUP top AUXILIARY
    MAY ( mailacceptinggeneralid $ maildrop $ memberdn $ memberurl $ forwardto $ mail ) )
"""


class Slapd(_Server):
    """An OpenLDAP server (Debian's ``slapd``) with the suffix :attr:`suffix`, loaded from an
    LDIF text, listening on ``ldap://127.0.0.1:PORT`` and on ``ldapi://`` in its directory.

    Everyone may read everything but passwords; :attr:`rootdn`/:attr:`rootpw` may write.  The
    :data:`MAIL_SCHEMA` attributes are defined.  Entries with a ``userPassword`` can bind.

    :param directory: where the configuration, database and socket go.
    :param ldif: the entries (the suffix entry included).
    :param tls: a certificate and its key (PEM files): STARTTLS on the ``ldap://`` port, and an
        ``ldaps://`` port (:attr:`ldaps_url`).
    """

    suffix = "dc=example,dc=com"
    rootdn = "cn=admin,dc=example,dc=com"
    rootpw = "adminpw"

    def __init__(self, directory: Path, ldif: str, tls: tuple[Path, Path] | None = None) -> None:
        super().__init__(directory)
        self.tls = tls
        self.ldaps_port = free_port() if tls is not None else 0
        self.log = self.dir / "slapd.log"
        self.socket = str(self.dir / "ldapi")
        (self.dir / "mail.schema").write_text(MAIL_SCHEMA)
        self.conf = self.dir / "slapd.conf"
        self.conf.write_text(
            "include /etc/ldap/schema/core.schema\n"
            "include /etc/ldap/schema/cosine.schema\n"
            "include /etc/ldap/schema/inetorgperson.schema\n"
            f"include {self.dir / 'mail.schema'}\n"
            f"pidfile {self.dir / 'slapd.pid'}\n"
            + (
                f"TLSCertificateFile {tls[0]}\nTLSCertificateKeyFile {tls[1]}\n"
                if tls is not None
                else ""
            )
            + "modulepath /usr/lib/ldap\n"
            "moduleload back_mdb\n"
            "sizelimit unlimited\n"
            "database mdb\n"
            "maxsize 104857600\n"
            f'suffix "{self.suffix}"\n'
            f'rootdn "{self.rootdn}"\n'
            f"rootpw {self.rootpw}\n"
            f"directory {self.dir / 'db'}\n"
            "index objectClass,mail,mailacceptinggeneralid eq\n"
            "access to attrs=userPassword by anonymous auth by * none\n"
            "access to * by * read\n"
        )
        (self.dir / "db").mkdir(exist_ok=True)
        (self.dir / "data.ldif").write_text(ldif)
        _run(["slapadd", "-q", "-f", str(self.conf), "-l", str(self.dir / "data.ldif")])
        if os.geteuid() == 0:
            for path in [self.dir, *self.dir.rglob("*")]:
                shutil.chown(path, "openldap", "openldap")
        self.start()

    @property
    def url(self) -> str:
        """``ldap://127.0.0.1:PORT``."""
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def ldaps_url(self) -> str:
        """``ldaps://127.0.0.1:PORT`` (servers started with ``tls`` only)."""
        return f"ldaps://127.0.0.1:{self.ldaps_port}"

    @property
    def ldapi_url(self) -> str:
        """The ``ldapi://`` URL of the server's UNIX socket."""
        from urllib.parse import quote

        return "ldapi://" + quote(self.socket, safe="")

    def start(self) -> None:
        """Start (or restart) the server on the same port and socket."""
        if self._running():
            return
        user = ["-u", "openldap", "-g", "openldap"] if os.geteuid() == 0 else []
        self._spawn(
            [
                "/usr/sbin/slapd",
                "-d",
                "0",
                *user,
                "-f",
                str(self.conf),
                "-h",
                f"{self.url}/ {self.ldapi_url}/"
                + (f" {self.ldaps_url}/" if self.tls is not None else ""),
            ],
            self.log,
        )

        self._wait_ready(
            ["ldapsearch", "-x", "-H", self.url, "-b", self.suffix, "-s", "base", "dn"],
            "slapd",
            self.log,
        )


# --- scripted lookup servers (tcp_table, socketmap) -----------------------------------------

#: What a scripted server answers to one request: the raw bytes to send back (a reply may be
#: malformed on purpose), or ``None`` to close the connection without answering.
Script = Callable[[bytes], bytes | None]


class _Script:
    """Answers from a dictionary, with literal replies for some keys."""

    def __init__(
        self, replies: Mapping[str, str | None], raw: Mapping[str, bytes] | None = None
    ) -> None:
        self.replies = replies
        self.raw = raw or {}
        #: Every request received, in order.
        self.requests: list[bytes] = []

    def answer(self, key: str) -> bytes | None:
        """The literal reply for ``key``, or ``None`` to answer from :attr:`replies`."""
        return self.raw.get(key)


class TcpMapScript(_Script):
    """A tcp_table(5) server script: ``get KEY`` lines answered from ``replies``.

    :param replies: decoded key → value (``200``, %-encoded), ``None`` → ``500``; a key that
        is not in it gets ``500 not found``.  ``raw`` keys get a literal reply line.
    """

    def __call__(self, line: bytes) -> bytes | None:
        from mailmaps.backends.tcp import hex_quote, hex_unquote

        self.requests.append(line)
        if not line.startswith(b"get "):
            return b"400 bad request\n"
        key = (hex_unquote(line[4:]) or b"").decode("utf-8", "surrogateescape")
        literal = self.answer(key)
        if literal is not None:
            return literal
        value = self.replies.get(key)
        if value is None:
            return b"500 not found\n"
        return b"200 " + hex_quote(value.encode("utf-8", "surrogateescape")) + b"\n"


class SocketmapScript(_Script):
    """A socketmap server script: ``NAME KEY`` netstrings answered from ``replies``.

    :param replies: key → value (``OK value``), ``None`` → ``NOTFOUND``; unknown keys get
        ``NOTFOUND``.  ``raw`` keys get literal bytes (a netstring or not).
    """

    def __call__(self, payload: bytes) -> bytes | None:
        from mailmaps.backends.socketmap import netstring

        self.requests.append(payload)
        key = payload.partition(b" ")[2].decode("utf-8", "surrogateescape")
        literal = self.answer(key)
        if literal is not None:
            return literal
        value = self.replies.get(key)
        if value is None:
            return netstring(b"NOTFOUND ")
        return netstring(b"OK " + value.encode("utf-8", "surrogateescape"))


class ScriptedServer(_Stoppable):
    """A threaded lookup server on 127.0.0.1 (or a UNIX socket) that answers with a script.

    :param script: called with each request (a ``tcp:`` line without its newline, or a
        socketmap netstring's payload) and returns the raw reply.
    :param framing: ``"line"`` for tcp_table, ``"netstring"`` for socketmap.
    :param unix_path: listen on this UNIX socket instead of a TCP port.
    """

    def __init__(self, script: Script, framing: str = "line", unix_path: str | None = None) -> None:
        self.script = script
        self.framing = framing
        self.connections = 0
        handler = self._handler()
        server: socketserver.BaseServer
        if unix_path is not None:
            server = socketserver.ThreadingUnixStreamServer(unix_path, handler)
            self.address = unix_path
            self.port = 0
        else:
            server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
            self.port = server.server_address[1]
            self.address = f"127.0.0.1:{self.port}"
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)
        self._thread.start()

    def _handler(self) -> type[socketserver.StreamRequestHandler]:
        outer = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                outer.connections += 1
                while True:
                    try:
                        request = outer._read(self.rfile)
                        if request is None:
                            return
                        reply = outer.script(request)
                        if reply is None:
                            return
                        self.wfile.write(reply)
                        self.wfile.flush()
                    except OSError:  # the client went away
                        return

        return Handler

    def _read(self, rfile: object) -> bytes | None:
        read = rfile.read  # type: ignore[attr-defined]
        readline = rfile.readline  # type: ignore[attr-defined]
        if self.framing == "line":
            line: bytes = readline()
            return line.rstrip(b"\n") if line.endswith(b"\n") else None
        digits = b""
        while True:
            ch: bytes = read(1)
            if not ch:
                return None
            if ch == b":":
                break
            digits += ch
        data: bytes = read(int(digits or b"0") + 1)
        return data[:-1]

    def stop(self) -> None:
        """Stop listening and wait for the server thread."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
