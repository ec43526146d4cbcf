"""The policy delegation client: requests, replies, failures, settings."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailmaps.errors import ConfigError
from mailmaps.policyclient import PolicyService, parse_time

REQUESTS: list[dict[str, str]] = []


class Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        attributes: dict[str, str] = {}
        for raw in self.rfile:
            line = raw.decode().rstrip("\n")
            if line:
                name, _, value = line.partition("=")
                attributes[name] = value
                continue
            REQUESTS.append(attributes)
            answer = attributes.get("recipient", "")
            if answer == "silent@example.com":
                return  # close without a reply
            if answer == "noaction@example.com":
                self.wfile.write(b"foo=bar\n\n")
            else:
                self.wfile.write(f"action=REJECT for {answer}\nignored=x\n\n".encode())
            attributes = {}


@pytest.fixture(scope="module")
def server() -> Iterator[int]:
    srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield int(srv.server_address[1])
    finally:
        srv.shutdown()
        srv.server_close()


def test_query_sends_attributes_in_order_and_reads_the_action(server: int) -> None:
    service = PolicyService.parse(f"inet:127.0.0.1:{server}", {})
    action = service.query([("request", "smtpd_access_policy"), ("recipient", "a@example.com")])
    assert action == "REJECT for a@example.com"
    assert REQUESTS[-1] == {"request": "smtpd_access_policy", "recipient": "a@example.com"}


def test_failures_give_none(server: int) -> None:
    service = PolicyService.parse(f"{{ inet:127.0.0.1:{server}, try_limit=1 }}", {})
    assert service.query([("recipient", "noaction@example.com")]) is None
    assert service.query([("recipient", "silent@example.com")]) is None
    with socket.socket() as sock:  # a port where nothing listens
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]
    dead_service = PolicyService.parse(f"{{ inet:127.0.0.1:{dead}, try_limit=1 }}", {})
    assert dead_service.query([("recipient", "a@example.com")]) is None


def test_unix_socket_and_hung_server(tmp_path: Path) -> None:
    path = tmp_path / "policy"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(1)
    try:
        service = PolicyService.parse(
            "{ unix:policy, timeout=1s, try_limit=1 }", {}, queue_directory=str(tmp_path)
        )
        assert service.endpoint == f"unix:{path}"
        assert service.query([("recipient", "a@example.com")]) is None  # accepted, never answered
    finally:
        listener.close()


def test_settings() -> None:
    defaults = {"timeout": "100s", "default_action": "DUNNO", "try_limit": "2"}
    service = PolicyService.parse(
        "{ inet:127.0.0.1:9998, timeout=10s, policy_context=ctx }", defaults
    )
    assert (service.timeout, service.default_action, service.policy_context) == (
        10.0,
        "DUNNO",
        "ctx",
    )
    assert parse_time("5m") == 300.0 and parse_time("7") == 7.0 and parse_time("1h") == 3600.0
    for bad in ("tcp:x:1", "{ }", "{ inet:127.0.0.1:1, colour=red }", "{ inet:h:1, x }"):
        with pytest.raises(ConfigError):
            PolicyService.parse(bad, {})
    with pytest.raises(ConfigError):
        parse_time("soon")
