"""tcp: and socketmap: clients against scripted loopback servers, differentially against real
Postfix, with the faults a server can produce."""

from __future__ import annotations

import concurrent.futures
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailmaps import open_table
from mailmaps.backends.socketmap import SocketmapTable
from mailmaps.backends.tcp import TcpTable, hex_quote, hex_unquote
from mailmaps.errors import PermanentLookupError, TemporaryLookupError
from mailmaps.testing.servers import ScriptedServer, SocketmapScript, TcpMapScript, free_port
from tests.conftest import REAL_POSTMAP, run_ours, run_real
from tests.external._diff import batch, confdir, single

pytestmark = pytest.mark.interop

VALUES = {
    "Foo@Example.com": "bar@example.net",
    "space key": "value with spaces and 100%",
    "empty": "",
    "müller@example.com": "ünïcode",
    "@example.com": "catchall",
    "a,b": "x,y",
}
TCP_RAW = {
    "temp": b"400 busy\n",
    "badcode": b"600 what\n",
    "malformed": b"200 %zz\n",
    "short": b"20\n",
    "lowerhex": b"200 %c3%bc\n",
    "nul": b"200 a%00b\n",
    "long": b"200 " + b"x" * 5000 + b"\n",
    "notspace": b"200-x\n",
}
SOCKETMAP_RAW = {
    "temp": b"10:TEMP later,",
    "timeout": b"7:TIMEOUT,",
    "perm": b"9:PERM nope,",
    "what": b"8:WHAT huh,",
    "bare_ok": b"2:OK,",
    "bare_notfound": b"8:NOTFOUND,",
    "empty_ok": b"3:OK ,",
    "format": b"xx",
    "big": b"100004:OK " + b"x" * 100000 + b",",
    "fits": b"99993:OK " + b"y" * 99990 + b",",
    "nocomma": b"4:OK x;",
}
KEYS = [
    "Foo@Example.com",
    "foo@example.com",
    "space key",
    "müller@example.com",
    "MÜLLER@example.com",
    "@example.com",
    "a,b",
    "nobody",
    "%41",
    "tab\there",
    "' OR '1'='1",
]


@pytest.fixture(scope="module")
def tcp_server() -> Iterator[ScriptedServer]:
    with ScriptedServer(TcpMapScript(VALUES, TCP_RAW)) as server:
        yield server


@pytest.fixture(scope="module")
def socketmap_server() -> Iterator[ScriptedServer]:
    with ScriptedServer(SocketmapScript(VALUES, SOCKETMAP_RAW), "netstring") as server:
        yield server


@pytest.fixture
def conf(shared_dir: Path) -> Path:
    return confdir(shared_dir)


def test_hex_quoting() -> None:
    assert hex_quote(b"a b%c\x01\xc3\xbc") == b"a%20b%25c%01%C3%BC"
    assert hex_unquote(b"a%20b%c3%BC") == b"a b\xc3\xbc"
    assert hex_unquote(b"%2") is None and hex_unquote(b"%zz") is None


def test_tcp_same_answers_as_postfix(tcp_server: ScriptedServer, conf: Path) -> None:
    status, out, _, _ = batch(conf, f"tcp:{tcp_server.address}", KEYS)
    assert status == 0 and b"bar@example.net" in out


def test_socketmap_same_answers_as_postfix(
    socketmap_server: ScriptedServer, conf: Path, shared_dir: Path
) -> None:
    status, out, _, _ = batch(conf, f"socketmap:inet:{socketmap_server.address}:m", KEYS)
    assert status == 0 and b"bar@example.net" in out
    unix = shared_dir / "sockmap.sock"
    with ScriptedServer(SocketmapScript(VALUES), "netstring", unix_path=str(unix)):
        unix.chmod(0o666)
        status, out, _, _ = batch(conf, f"socketmap:unix:{unix}:m", KEYS)
        assert status == 0 and b"bar@example.net" in out


@pytest.mark.parametrize("key", [*sorted(TCP_RAW), "empty"])
def test_tcp_replies_like_postfix(tcp_server: ScriptedServer, conf: Path, key: str) -> None:
    single(conf, f"tcp:{tcp_server.address}", key)


@pytest.mark.parametrize("key", [*sorted(SOCKETMAP_RAW), "empty"])
def test_socketmap_replies_like_postfix(
    socketmap_server: ScriptedServer, conf: Path, key: str
) -> None:
    single(conf, f"socketmap:inet:{socketmap_server.address}:m", key)


def test_error_classes(tcp_server: ScriptedServer, socketmap_server: ScriptedServer) -> None:
    with open_table(f"tcp:{tcp_server.address}") as table:
        assert table.lookup("Foo@Example.com") == "bar@example.net"
        assert table.lookup("foo@example.com") is None  # keys are not folded
        for key in ("temp", "badcode", "malformed", "long"):
            with pytest.raises(TemporaryLookupError):
                table.lookup(key)
        assert table.lookup("Foo@Example.com") == "bar@example.net"  # reconnected
    with open_table(f"socketmap:inet:{socketmap_server.address}:m") as table:
        assert table.lookup("empty_ok") == ""
        assert table.lookup("bare_ok") is None
        with pytest.raises(PermanentLookupError):
            table.lookup("perm")
        for key in ("temp", "timeout", "what", "format", "big"):
            with pytest.raises(TemporaryLookupError):
                table.lookup(key)
        assert table.lookup("fits") == "y" * 99990


def test_socketmap_sees_server_restart(shared_dir: Path) -> None:
    """A server that closes its connection (a restart) is invisible: one retry, new connection."""
    script = SocketmapScript(VALUES)
    with ScriptedServer(script, "netstring") as first:
        port = first.port
        table = open_table(f"socketmap:inet:127.0.0.1:{port}:m")
        assert table.lookup("empty") == ""
    with ScriptedServer(script, "netstring") as second:
        # Same script, new port: point the table at it as if the server came back.
        table._address = ("127.0.0.1", str(second.port))
        assert table.lookup("Foo@Example.com") == "bar@example.net"
    table.close()


def test_dead_tcp_server_retries_then_fails(conf: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dead = free_port()
    started = time.monotonic()
    # Real postmap takes its ten one-second tries; run it beside ours.
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        real = pool.submit(
            run_real, REAL_POSTMAP, ["-c", str(conf), "-q", "k", f"tcp:127.0.0.1:{dead}"]
        )
        monkeypatch.setattr(TcpTable, "retry_delay", 0.01)
        ours = run_ours("postmap", ["-c", str(conf), "-q", "k", f"tcp:127.0.0.1:{dead}"])
        real_result = real.result()
    assert (ours.status, ours.out) == (real_result.status, real_result.out) == (1, b"")
    assert time.monotonic() - started >= 9  # Postfix retried for about ten seconds
    assert ours.err.count("connect to TCP map") == 10
    assert real_result.err.count("connect to TCP map") == 10


def test_silent_servers_are_temporary_errors(
    silent_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(TcpTable, "timeout", 0.2)
    monkeypatch.setattr(TcpTable, "max_tries", 2)
    monkeypatch.setattr(TcpTable, "retry_delay", 0.01)
    monkeypatch.setattr(SocketmapTable, "timeout", 0.2)
    for spec in (f"tcp:127.0.0.1:{silent_port}", f"socketmap:inet:127.0.0.1:{silent_port}:m"):
        with open_table(spec) as table, pytest.raises(TemporaryLookupError):
            table.lookup("k")


def test_composites_fold_like_their_first_member(
    tcp_server: ScriptedServer, socketmap_server: ScriptedServer, conf: Path
) -> None:
    tcp = f"tcp:{tcp_server.address}"
    sockmap = f"socketmap:inet:{socketmap_server.address}:m"
    keys = ["Foo@Example.com", "foo@example.com", "space key", "MÜLLER@example.com"]
    for spec in (
        f"unionmap:{{inline:{{foo@example.com=1}}, {tcp}}}",
        f"unionmap:{{{tcp}, inline:{{foo@example.com=1}}}}",
        f"unionmap:{{{sockmap}, {tcp}}}",
        f"pipemap:{{{tcp}, inline:{{bar@example.net=piped}}}}",
        f"pipemap:{{inline:{{foo@example.com=Foo@Example.com}}, {sockmap}}}",
    ):
        status, out, _, _ = batch(conf, spec, keys)
        assert status == 0 and out


def test_not_allowed_for_security_sensitive_tables(tcp_server: ScriptedServer) -> None:
    from mailmaps.errors import ConfigError
    from mailmaps.table import OpenOptions

    for spec in (f"tcp:{tcp_server.address}", f"socketmap:inet:{tcp_server.address}:m"):
        with pytest.raises(ConfigError, match="not allowed for security sensitive data"):
            open_table(spec, OpenOptions(paranoid=True))
    # Inside a composite, the member becomes a table whose lookups fail.
    union = f"unionmap:{{tcp:{tcp_server.address}}}"
    with (
        open_table(union, OpenOptions(paranoid=True)) as table,
        pytest.raises(TemporaryLookupError),
    ):
        table.lookup("Foo@Example.com")


def test_resolver_refuses_tcp_alias_maps(tmp_path: Path) -> None:
    """local(8) opens alias_maps as security-sensitive: a tcp: alias table defers the mail."""
    from mailmaps.config import MainConfig
    from mailmaps.resolver import Resolver

    script = TcpMapScript({"foo": "bar"})
    with ScriptedServer(script) as server:
        config = MainConfig(
            {
                "myhostname": "mx.example.com",
                "mydestination": "$myhostname",
                "alias_maps": f"tcp:{server.address}",
                "local_recipient_maps": "",
            },
            str(tmp_path),
        )
        with Resolver(config) as resolver:
            result = resolver.resolve("Foo@mx.example.com")
    [final] = result.recipients
    assert (final.status, final.dsn, final.text) == (
        "undeliverable",
        "4.3.0",
        "alias database unavailable",
    )
    assert script.requests == []  # the server was never asked
