"""ldap: tables against a real OpenLDAP slapd, and differentially against real Postfix."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailmaps import open_table
from mailmaps.errors import ConfigError, TemporaryLookupError
from mailmaps.testing.servers import Slapd, free_port
from tests.external._diff import batch, confdir, single, write_cf
from tests.external.test_mysql import KEYS as SQL_KEYS

pytestmark = pytest.mark.interop

BASE = "dc=example,dc=com"


def _person(uid: str, ids: list[str], drops: list[str], extra: str = "") -> str:
    lines = [
        f"dn: uid={uid},ou=people,{BASE}",
        "objectClass: inetOrgPerson",
        "objectClass: mailRecipient",
        f"uid: {uid}",
        f"cn: {uid}",
        f"sn: {uid}",
        *(f"mailacceptinggeneralid: {i}" for i in ids),
        *(f"maildrop: {d}" for d in drops),
    ]
    return "\n".join(lines) + ("\n" + extra if extra else "") + "\n\n"


def _group(cn: str, ids: list[str], extra: str) -> str:
    return (
        f"dn: cn={cn},ou=groups,{BASE}\nobjectClass: organizationalRole\n"
        f"objectClass: mailRecipient\ncn: {cn}\n"
        + "".join(f"mailacceptinggeneralid: {i}\n" for i in ids)
        + extra
        + "\n\n"
    )


LDIF = (
    f"dn: {BASE}\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n"
    f"dn: ou=people,{BASE}\nobjectClass: organizationalUnit\nou: people\n\n"
    f"dn: ou=groups,{BASE}\nobjectClass: organizationalUnit\nou: groups\n\n"
    f"dn: ou=example.org,{BASE}\nobjectClass: organizationalUnit\nou: example.org\n\n"
    f"dn: ou=aliases,{BASE}\nobjectClass: organizationalUnit\nou: aliases\n\n"
    f"dn: uid=to-alice,ou=aliases,{BASE}\nobjectClass: alias\nobjectClass: extensibleObject\n"
    f"uid: to-alice\naliasedObjectName: uid=alice,ou=people,{BASE}\n\n"
    + _person(
        "alice",
        ["alice@example.com", "info@example.com"],
        ["alice@mail.example.net"],
        "userPassword: secret",
    )
    + _person(
        "bob",
        ["bob@example.com", "info@example.com"],
        ["bob@mail.example.net", "bob@backup.example.net"],
    )
    + _person(
        "carol",
        ["carol@example.com"],
        ["carol@mail.example.net"],
        "forwardto: carol@elsewhere.example",
    )
    + _person("dave", ["dave@example.com"], ["bare"])
    + _person("erin", ["o'brien@example.com", "müller@example.com"], ["erin@mail.example.net"])
    + _person("frank", ["frank@example.com"], [])
    + _person("star", ["*@example.com"], ["star@mail.example.net"])
    + _person("paren", ["a(b)c@example.com"], ["paren@mail.example.net"])
    + _group(
        "staff",
        ["staff@example.com"],
        f"memberdn: uid=alice,ou=people,{BASE}\nmemberdn: uid=carol,ou=people,{BASE}\n"
        "maildrop: staff-archive@example.net\n",
    )
    + _group(
        "dangling",
        ["dangling@example.com"],
        f"memberdn: uid=nobody,ou=people,{BASE}\nmemberdn: uid=bob,ou=people,{BASE}\n",
    )
    + _group("loop1", ["loop@example.com"], f"memberdn: cn=loop2,ou=groups,{BASE}\n")
    + _group("loop2", ["loop2@example.com"], f"memberdn: cn=loop1,ou=groups,{BASE}\n")
    + _group(
        "dynamic", ["dynamic@example.com"], f"memberurl: ldap:///ou=people,{BASE}??one?(uid=b*)\n"
    )
    + _group(
        "urlattrs",
        ["urlattrs@example.com"],
        f"memberurl: ldap:///ou=people,{BASE}?mail?one?(uid=a*)\n",
    )
    + _group("nested", ["nested@example.com"], f"memberdn: cn=staff,ou=groups,{BASE}\n")
    + f"dn: uid=orgperson,ou=example.org,{BASE}\n"
    "objectClass: inetOrgPerson\nobjectClass: mailRecipient\nuid: orgperson\ncn: o\nsn: o\n"
    "mailacceptinggeneralid: x@example.org\nmaildrop: org@mail.example.net\n\n"
)

KEYS = [
    "alice@example.com",
    "ALICE@Example.COM",
    "info@example.com",
    "carol@example.com",
    "dave@example.com",
    "o'brien@example.com",
    "Müller@example.com",
    "frank@example.com",
    "staff@example.com",
    "dangling@example.com",
    "dynamic@example.com",
    "urlattrs@example.com",
    "nested@example.com",
    "x@example.org",
    "nobody@example.com",
    "*",
    "*@example.com",
    "a(b)c@example.com",
    "*)(mailacceptinggeneralid=*",
    "alice@example.com)(|(uid=*",
    "\\2a",
    "example.com",
    "@example.com",
    "bob",
    *SQL_KEYS[-4:],
]


@pytest.fixture(scope="module")
def slapd() -> Iterator[Slapd]:
    root = Path(tempfile.mkdtemp(prefix="mailmaps-slapd-"))
    root.chmod(0o755)
    try:
        with Slapd(root / "srv", LDIF) as server:
            yield server
    finally:
        shutil.rmtree(root, ignore_errors=True)


def settings(server: Slapd, extra: str = "", url: str | None = None) -> str:
    return f"server_host = {url or server.url}\nsearch_base = {BASE}\nversion = 3\n{extra}\n"


VARIANTS = {
    "plain": "",
    "multi_attrs": "result_attribute = maildrop, mail, uid",
    "special": "special_result_attribute = memberdn, memberurl",
    "terminal": "special_result_attribute = memberdn\nterminal_result_attribute = forwardto",
    "leaf": (
        "special_result_attribute = memberdn\nleaf_result_attribute = mail\n"
        "result_attribute = maildrop"
    ),
    "format": "result_format = <%u> at %d for %U [%S]",
    "format_domain": "result_format = smtp:[%d]",
    "domain": "domain = example.org, example.com",
    "filter_parts": "query_filter = (&(uid=%u)(mailacceptinggeneralid=%u@%d))",
    "filter_no_parens": "query_filter = mailacceptinggeneralid=%s",
    "dynamic_base": f"search_base = ou=%d,{BASE}\nscope = one",
    "labels": "query_filter = (mailacceptinggeneralid=%u@%2.%1)",
    "scope_one": f"scope = one\nsearch_base = ou=people,{BASE}",
    "scope_base_upper": f"scope = BASE\nsearch_base = uid=alice,ou=people,{BASE}",
    "limit": "special_result_attribute = memberdn\nexpansion_limit = 3",
    "size": "size_limit = 1",
    "bind_user": f"bind_dn = uid=alice,ou=people,{BASE}\nbind_pw = secret",
    "bind_no": "bind = no",
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_same_answers_as_postfix(slapd: Slapd, shared_dir: Path, variant: str) -> None:
    conf = confdir(shared_dir)
    text = settings(slapd, VARIANTS[variant])
    if text.count("search_base") > 1:  # the variant's own base replaces the default
        text = text.replace(f"search_base = {BASE}\n", "", 1)
    cf = write_cf(shared_dir, f"{variant}.cf", text)
    # Keys whose answers are errors in both (tested below) would end the batch.
    keys = [k for k in KEYS if not k.startswith("info@")] if variant == "size" else KEYS
    if variant == "limit":
        keys = [k for k in keys if k not in ("staff@example.com", "nested@example.com")]
    status, out, _, _ = batch(conf, f"ldap:{cf}", keys)
    assert status == 0
    assert b"\t" in out


@pytest.mark.parametrize(
    ("variant", "key"),
    [
        ("limit", "staff@example.com"),
        ("size", "info@example.com"),
        ("special", "loop@example.com"),
        ("plain", "k"),
    ],
)
def test_errors_like_postfix(slapd: Slapd, shared_dir: Path, variant: str, key: str) -> None:
    conf = confdir(shared_dir)
    extra = VARIANTS[variant]
    if variant == "special":
        extra += "\nrecursion_limit = 20"
    if variant == "limit":  # staff@ has three values: one more than the limit
        extra = extra.replace("expansion_limit = 3", "expansion_limit = 2")
    if key == "k":  # a static search base that does not exist
        extra = f"search_base = ou=nosuch,{BASE}"
    text = settings(slapd, extra)
    if key == "k":
        text = text.replace(f"search_base = {BASE}\n", "", 1)
    cf = write_cf(shared_dir, f"err-{variant}.cf", text)
    status, out, real_err, our_err = single(conf, f"ldap:{cf}", key)
    assert (status, out) == (1, b"")
    assert "fatal" in real_err and "fatal" in our_err
    with open_table(f"ldap:{cf}") as table, pytest.raises(TemporaryLookupError):
        table.lookup(key)


def test_bind_failures_and_version_2(slapd: Slapd, shared_dir: Path) -> None:
    conf = confdir(shared_dir)
    wrong = write_cf(
        shared_dir,
        "wrong.cf",
        settings(slapd, f"bind_dn = uid=alice,ou=people,{BASE}\nbind_pw = wrong"),
    )
    v2 = write_cf(shared_dir, "v2.cf", settings(slapd).replace("version = 3", "version = 2"))
    for cf, reason in ((wrong, "Invalid credentials"), (v2, "Protocol error")):
        status, out, real_err, our_err = single(conf, f"ldap:{cf}", "alice@example.com")
        assert (status, out) == (1, b"")
        assert reason in real_err and reason in our_err
        with open_table(f"ldap:{cf}") as table, pytest.raises(TemporaryLookupError):
            table.lookup("alice@example.com")


def test_ldapi_and_failover(slapd: Slapd, shared_dir: Path) -> None:
    conf = confdir(shared_dir)
    dead = free_port()
    for hosts in (
        slapd.ldapi_url,
        f"ldap://127.0.0.1:{dead} {slapd.url}",
        f"127.0.0.1:{slapd.port}",
    ):
        cf = write_cf(shared_dir, "hosts.cf", settings(slapd, url=hosts))
        status, out, _, _ = batch(conf, f"ldap:{cf}", ["info@example.com", "nobody@example.com"])
        assert (status, out) == (
            0,
            b"info@example.com\talice@mail.example.net,bob@mail.example.net,bob@backup.example.net\n",
        )


def test_main_cf_prefix_form(slapd: Slapd, shared_dir: Path) -> None:
    prefixed = "".join(f"ldapsource_{line}\n" for line in settings(slapd).splitlines() if line)
    conf = confdir(shared_dir, "compatibility_level = 3.6\n" + prefixed)
    status, out, _, _ = batch(conf, "ldap:ldapsource", ["alice@example.com"])
    assert (status, out) == (0, b"alice@example.com\talice@mail.example.net\n")


def test_bad_settings(shared_dir: Path) -> None:
    cf = write_cf(shared_dir, "badbind.cf", "search_base = x\nbind = maybe\n")
    with pytest.raises(ConfigError, match="unsupported parameter value: bind = maybe"):
        open_table(f"ldap:{cf}")
    cf = write_cf(shared_dir, "badbool.cf", "search_base = x\nchase_referrals = 1\n")
    with pytest.raises(ConfigError, match="bad boolean configuration"):
        open_table(f"ldap:{cf}")
    cf = write_cf(shared_dir, "badtemplate.cf", "search_base = x\nquery_filter = (a=%x)\n")
    with pytest.raises(ConfigError, match="Invalid query template"):
        open_table(f"ldap:{cf}")


def test_server_stopped_mid_run_then_back(shared_dir: Path) -> None:
    with Slapd(shared_dir / "own", LDIF) as own:
        cf = write_cf(shared_dir, "own.cf", settings(own, "timeout = 2"))
        with open_table(f"ldap:{cf}") as table:
            assert table.lookup("alice@example.com") == "alice@mail.example.net"
            own.stop()
            with pytest.raises(TemporaryLookupError):
                table.lookup("alice@example.com")
            with pytest.raises(TemporaryLookupError):
                table.lookup("nobody@example.com")
            own.start()
            assert table.lookup("alice@example.com") == "alice@mail.example.net"
            assert table.lookup("nobody@example.com") is None


def test_silent_server_is_temporary(shared_dir: Path, silent_port: int) -> None:
    import time

    cf = write_cf(
        shared_dir,
        "silent.cf",
        f"server_host = ldap://127.0.0.1:{silent_port}\nsearch_base = {BASE}\ntimeout = 1\n",
    )
    started = time.monotonic()
    with open_table(f"ldap:{cf}") as table, pytest.raises(TemporaryLookupError):
        table.lookup("alice@example.com")
    assert time.monotonic() - started < 10


def test_sasl_external_bind_over_ldapi(slapd: Slapd, shared_dir: Path) -> None:
    """``bind = sasl`` with EXTERNAL over the UNIX socket: slapd takes the peer's credentials."""
    conf = confdir(shared_dir)
    cf = write_cf(
        shared_dir,
        "sasl.cf",
        settings(slapd, "bind = sasl\nsasl_mechs = EXTERNAL", url=slapd.ldapi_url),
    )
    status, out, _, _ = batch(conf, f"ldap:{cf}", ["alice@example.com", "nobody@example.com"])
    assert (status, out) == (0, b"alice@example.com\talice@mail.example.net\n")


def test_start_tls_and_ldaps(shared_dir: Path) -> None:
    from mailmaps.testing.servers import self_signed_certificate

    conf = confdir(shared_dir)
    cert, key = self_signed_certificate(shared_dir)
    with Slapd(shared_dir / "tls", LDIF, tls=(cert, key)) as server:
        keys = ["alice@example.com", "nobody@example.com"]
        answer = (0, b"alice@example.com\talice@mail.example.net\n")
        for name, extra, url in (
            ("starttls", "start_tls = yes", None),
            (
                "verified",
                f"start_tls = yes\ntls_require_cert = yes\ntls_ca_cert_file = {cert}",
                None,
            ),
            ("ldaps", "", server.ldaps_url),
        ):
            cf = write_cf(shared_dir, f"{name}.cf", settings(server, extra, url=url))
            assert batch(conf, f"ldap:{cf}", keys)[:2] == answer, name
        # A certificate that cannot be verified: both refuse, a temporary error.
        (shared_dir / "other").mkdir()
        other, _ = self_signed_certificate(shared_dir / "other")
        cf = write_cf(
            shared_dir,
            "unverified.cf",
            settings(
                server, f"start_tls = yes\ntls_require_cert = yes\ntls_ca_cert_file = {other}"
            ),
        )
        status, out, _, _ = batch(conf, f"ldap:{cf}", keys)
        assert (status, out) == (1, b"")
        with open_table(f"ldap:{cf}") as table, pytest.raises(TemporaryLookupError):
            table.lookup("alice@example.com")


@pytest.mark.parametrize("dereference", [0, 1, 2, 3])
def test_dereference(slapd: Slapd, shared_dir: Path, dereference: int) -> None:
    """A search base that is an alias entry: followed with dereference 2 (finding) or 3
    (always), taken as itself otherwise."""
    conf = confdir(shared_dir)
    text = settings(
        slapd,
        f"scope = base\ndereference = {dereference}\nsearch_base = uid=to-alice,ou=aliases,{BASE}",
    ).replace(f"search_base = {BASE}\n", "", 1)
    cf = write_cf(shared_dir, f"deref{dereference}.cf", text)
    status, out, _, _ = batch(conf, f"ldap:{cf}", ["alice@example.com"])
    found = (0, b"alice@example.com\talice@mail.example.net\n")
    assert (status, out) == (found if dereference in (2, 3) else (1, b""))


def test_batch_after_the_server_restarted(shared_dir: Path) -> None:
    """``lookup_many()`` on a connection the server dropped: reconnect once, then answer every
    key as ``lookup()`` would."""
    with Slapd(shared_dir / "restart", LDIF) as own:
        cf = write_cf(shared_dir, "restart.cf", settings(own))
        keys = ["alice@example.com", "nobody@example.com", "carol@example.com", "bob@example.com"]
        with open_table(f"ldap:{cf}") as table:
            expected = [table.lookup(key) for key in keys]
            assert expected[0] == "alice@mail.example.net"
            own.stop()
            own.start()
            assert table.lookup_many(keys) == expected


def test_batch_when_the_connection_drops_mid_batch(
    slapd: Slapd, shared_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The searches of a batch are in flight when the connection drops (forced here at the
    first answer, which a real server cannot be made to do on demand): the keys are answered
    one at a time on a new connection, as ``lookup()`` would."""
    cf = write_cf(shared_dir, "drop.cf", settings(slapd))
    keys = ["alice@example.com", "nobody@example.com", "carol@example.com", "bob@example.com"]
    with open_table(f"ldap:{cf}") as table:
        expected = [table.lookup(key) for key in keys]
        real_collect = table._collect
        calls = []

        def collect(message_id: int | None) -> object:
            calls.append(message_id)
            if len(calls) == 1:
                raise ConnectionError("connection lost")
            return real_collect(message_id)

        monkeypatch.setattr(table, "_collect", collect)
        assert table.lookup_many(keys) == expected
