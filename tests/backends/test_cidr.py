"""cidr: tables against Postfix's own vectors, the rule syntax in detail, and the index against
Postfix's ordered scan on random tables."""

from __future__ import annotations

import ipaddress
import logging
import random
import re
import shutil
import socket
from pathlib import Path

import pytest

from mailmaps import open_table
from mailmaps.backends.cidr import CidrTable
from mailmaps.errors import ConfigError, PermanentLookupError, UnsupportedOperation
from mailmaps.table import OpenOptions
from tests.backends._support import dict_open, vector_commands
from tests.conftest import VECTORS

UTIL = VECTORS / "src" / "util"
DOCS = Path(__file__).resolve().parents[2] / "docs"


def cidr(rules: str, **options: bool) -> CidrTable:
    """A table from inline text (one rule a line), opened as Postfix's daemons open it."""
    lines = [line.strip() for line in rules.strip().splitlines()]
    name = "{" + ", ".join("{" + line + "}" for line in lines) + "}"
    table: CidrTable = open_table("cidr:" + name, OpenOptions(**options))  # type: ignore[arg-type]
    return table


def cidr_file(tmp_path: Path, text: str, **options: bool) -> CidrTable:
    path = tmp_path / "table.cidr"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    table: CidrTable = open_table(f"cidr:{path}", OpenOptions(**options))  # type: ignore[arg-type]
    return table


def warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The warnings logged, from ``line N:`` on (``cidr map NAME, `` removed)."""
    messages = [r.getMessage() for r in caplog.records]
    return [m[m.index(", line ") + 2 :] if ", line " in m else m for m in messages]


# -- Postfix's vectors ----------------------------------------------------------------------


def test_vector_dict_cidr(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    shutil.copy(UTIL / "dict_cidr.map", tmp_path)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        got = dict_open("cidr:dict_cidr.map", vector_commands("dict_cidr.in"), caplog)
    assert got == (UTIL / "dict_cidr.ref").read_text()


def test_vector_file_values(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    shutil.copy(UTIL / "dict_cidr_file.map", tmp_path)
    (tmp_path / "dict_cidr_file1").write_text("this-is-file1\n")
    (tmp_path / "dict_cidr_file2").write_text("this-is-file2\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        got = dict_open(
            "cidr:dict_cidr_file.map",
            vector_commands("dict_cidr_file.in"),
            caplog,
            rhs_is_file=True,
        )
    assert got == (UTIL / "dict_cidr_file.ref").read_text()


def test_vector_missing_endif(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    shutil.copy(UTIL / "miss_endif_cidr.map", tmp_path)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(tmp_path)
        got = dict_open("cidr:miss_endif_cidr.map", ["get 1.2.3.5"], caplog)
    assert got == (UTIL / "miss_endif_cidr.ref").read_text()


def test_vector_inline(caplog: pytest.LogCaptureFixture) -> None:
    got = dict_open("cidr:{{1.2.3.4 got 1.2.3.4}}", ["get 1.2.3.4", "get 4.3.2.1"], caplog)
    expected = (UTIL / "dict_inline_cidr.ref").read_text()
    assert got.replace("owner=untrusted (uid=USER)\n", "") == expected


def test_vector_scan_agrees(tmp_path: Path) -> None:
    shutil.copy(UTIL / "dict_cidr.map", tmp_path)
    table = open_table(f"cidr:{tmp_path / 'dict_cidr.map'}")
    assert table.indexed
    for command in vector_commands("dict_cidr.in"):
        key = command.removeprefix("get ")
        assert table.lookup(key) == table._scan_lookup(key)


# -- the rule syntax ------------------------------------------------------------------------


def test_forms_of_a_pattern() -> None:
    table = cidr(
        """
        [192.0.2.1] bracketed host
        [192.0.2.0]/30 bracketed net, mask outside
        [192.0.2.4/30] bracketed net, mask inside
        198.51.100.0/24   result   with  spaces\t
        [2001:DB8::1] v6 upper case
        2001:db8::/32 v6 net
        """
    )
    assert table.lookup("192.0.2.1") == "bracketed host"
    assert table.lookup("192.0.2.2") == "bracketed net, mask outside"
    assert table.lookup("192.0.2.7") == "bracketed net, mask inside"
    assert table.lookup("192.0.2.8") is None
    assert table.lookup("198.51.100.77") == "result   with  spaces"
    assert table.lookup("2001:db8:0:0:0:0:0:1") == "v6 upper case"
    assert table.lookup("2001:DB8:FFFF::") == "v6 net"
    assert table.lookup("2001:db9::") is None


def test_keys_that_are_not_addresses() -> None:
    table = cidr("0.0.0.0/0 any4\n::/0 any6")
    bad = ["1.2.3", "01.2.3.4", "0x1.2.3.4", "[1.2.3.4]", "1.2.3.4/32", " 1.2.3.4", "1.2.3.4 "]
    bad += ["host.example", "", "1::2::3", "fe80::1%eth0", "ünï", "\udcff"]
    for key in bad:
        assert table.lookup(key) is None, key
    assert table.lookup("1.2.3.4\0junk") == "any4"  # Postfix sees a C string
    assert table.lookup("::ffff:1.2.3.4") == "any6"  # IPv4-mapped IPv6 is IPv6
    assert table.lookup("::1.2.3.4") == "any6"


def test_family_mismatch_never_matches() -> None:
    table = cidr(
        """
        !10.0.0.0/8 not in ten
        if !192.168.0.0/16
        ::/0 v6 inside an IPv4 IF
        endif
        !2001:db8::/32 not in doc
        """
    )
    assert table.lookup("11.0.0.1") == "not in ten"
    assert table.lookup("10.0.0.1") is None
    assert table.lookup("::ffff:11.0.0.1") == "not in doc"
    assert table.lookup("2001:db8::1") is None


def test_negation_toggles() -> None:
    table = cidr("!! 10.0.0.0/8 double\n! ! !172.16.0.0/12 triple\n!\t1.1.1.1 single")
    assert table.lookup("10.1.1.1") == "double"
    assert table.lookup("11.1.1.1") == "triple"
    assert table.lookup("172.16.0.1") == "single"
    assert table.lookup("1.1.1.1") == "triple"
    assert table.lookup("::1") is None


def test_if_endif_nesting_and_case() -> None:
    table = cidr(
        """
        IF 10.0.0.0/8
        iF !10.1.0.0/16
        10.0.0.0/8 ten but not ten-one
        EndIf
        10.1.2.0/24 ten-one-two
        endif
        0.0.0.0/0 default
        """
    )
    assert table.lookup("10.2.0.1") == "ten but not ten-one"
    assert table.lookup("10.1.2.3") == "ten-one-two"
    assert table.lookup("10.1.3.3") == "default"
    assert table.lookup("11.0.0.0") == "default"


def test_if_without_endif_hides_the_rest(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="mailmaps")
    table = cidr("if 10.0.0.0/8\nif 10.1.0.0/16\n10.1.1.1 deep\nendif\n0.0.0.0/0 rest")
    assert warnings(caplog) == ["line 1: IF has no matching ENDIF"]
    assert table.lookup("10.1.1.1") == "deep"
    assert table.lookup("10.2.2.2") == "rest"
    assert table.lookup("11.0.0.1") is None


def test_bad_lines_are_skipped_with_postfix_warnings(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="mailmaps")
    table = cidr(
        """
        1.2.3.4/264 mask length kept in an unsigned char
        0.0.0.0/99999999999999999999999 saturated
        10.0.0.0/256 wraps to zero
        1.0.0.0/264 is a /8
        if
        endif junk
        endif;
        endif
        endif1 x
        ifx x
        if 1.2.3.4 foo
        1.2.3.4/ x
        [1.2.3.4]/32/5 x
        [1.2.3.0/24]/24 x
        [1.2.3.4]] x
        [] x
        2001:db8::1/64 x
        1.2.3.5
        """
    )
    assert warnings(caplog) == [
        'line 1: non-null host address bits in "1.2.3.4/264", perhaps you should use '
        '"1.0.0.0/8" instead: skipping this rule',
        'line 2: bad mask length in "0.0.0.0/99999999999999999999999": skipping this rule',
        'line 3: non-null host address bits in "10.0.0.0/256", perhaps you should use '
        '"0.0.0.0/0" instead: skipping this rule',
        "line 5: no address pattern: skipping this rule",
        "line 6: garbage after ENDIF: skipping this rule",
        "line 7: garbage after ENDIF: skipping this rule",
        "line 8: ENDIF without IF: skipping this rule",
        'line 9: bad address pattern: "endif1": skipping this rule',
        'line 10: bad address pattern: "ifx": skipping this rule',
        'line 11: bad address pattern: "1.2.3.4 foo": skipping this rule',
        'line 12: bad mask value in "1.2.3.4/": skipping this rule',
        'line 13: bad mask value in "1.2.3.4/32/5": skipping this rule',
        'line 14: bad network value in "1.2.3.0/24/24": skipping this rule',
        'line 15: garbage after "[1.2.3.4]": skipping this rule',
        'line 16: bad address pattern: "": skipping this rule',
        'line 17: non-null host address bits in "2001:db8::1/64", perhaps you should use '
        '"2001:db8::/64" instead: skipping this rule',
        "line 18: no lookup result: skipping this rule",
    ]
    assert table.lookup("1.200.0.1") == "is a /8"
    assert table.lookup("2.0.0.1") is None


def test_comments_and_continuation_lines(tmp_path: Path) -> None:
    table = cidr_file(
        tmp_path,
        "# comment\n10.0.0.0/8\n  continued result\n\n#x\n   \n11.0.0.0/8 eleven\n",
    )
    assert table.lookup("10.0.0.1") == "continued result"
    assert table.lookup("11.0.0.1") == "eleven"
    assert [rule.lineno for rule in table.rules] == [2, 7]


def test_nul_byte_in_a_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="mailmaps")
    table = cidr_file(tmp_path, "10.0.0.0/8 ten\0more\n\0 12.0.0.0/8 x\n")
    assert table.lookup("10.0.0.1") == "ten"
    assert warnings(caplog) == ["line 2: no address pattern: skipping this rule"]


def test_file_values_skip_if_and_endif(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    # With -F Postfix turns the (empty) value of IF and ENDIF into a file list, and fails.
    caplog.set_level(logging.WARNING, logger="mailmaps")
    (tmp_path / "f1").write_text("hello\n")
    f1 = tmp_path / "f1"
    table = cidr_file(
        tmp_path, f"if 1.2.3.0/24\n1.2.3.4 {f1}\nendif\n1.2.3.5 {f1}, {f1}\n1.2.3.6 ,\n",
        rhs_is_file=True,
    )  # fmt: skip
    assert warnings(caplog) == [
        "line 1: empty pathname list: >><<': skipping this rule",
        "line 3: ENDIF without IF: skipping this rule",
        "line 5: empty pathname list: >>,<<': skipping this rule",
    ]
    assert table.lookup("1.2.3.4") == "aGVsbG8K"
    assert table.lookup("1.2.3.5") == "aGVsbG8KCmhlbGxvCg=="


def test_first_match_wins_and_results_are_verbatim() -> None:
    table = cidr("10.0.0.0/8 $1 ${x} first\n10.0.0.0/16 second\n10.0.0.0/8 third")
    assert table.lookup("10.0.0.1") == "$1 ${x} first"


def test_read_only_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UnsupportedOperation, match="cidr:x map requires O_RDONLY access mode"):
        open_table("cidr:x", writable=True)
    with pytest.raises(ConfigError, match="No such file or directory"):
        open_table(f"cidr:{tmp_path / 'missing'}")


def test_no_case_folding_and_fixed_keys() -> None:
    table = cidr("2001:db8::/32 MixedCase Result")
    assert table.fixed_keys is False
    assert table.map_type == "cidr"
    assert table.lookup("2001:DB8::AbCd") == "MixedCase Result"


def test_utf8_mode(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="mailmaps")
    table = cidr_file(tmp_path, "10.0.0.0/8 bad \udcff value\n11.0.0.0/8 ünï\n")
    with pytest.raises(PermanentLookupError):
        table.lookup("10.0.0.1")
    with pytest.raises(PermanentLookupError):
        table.lookup_many(["11.0.0.1", "10.0.0.1"])
    assert table.lookup_many(["11.0.0.1", "\udcff", "12.0.0.1"]) == ["ünï", None, None]
    assert any("non-UTF-8 key" in message for message in warnings(caplog))
    plain = cidr_file(tmp_path, "10.0.0.0/8 bad \udcff value\n", utf8=False)
    assert plain.lookup("10.0.0.1") == "bad \udcff value"


def test_lookup_many_equals_lookup() -> None:
    table = cidr("10.0.0.0/8 ten\n!::/1 high v6\n0.0.0.0/0 any")
    keys = ["10.1.1.1", "1.1.1.1", "8000::", "::1", "bogus", "", "ünï", "10.0.0.1\0x"]
    assert table.lookup_many(keys) == [table.lookup(key) for key in keys]


# -- the index against the ordered scan -------------------------------------------------------


def _random_network(rng: random.Random, v6: bool) -> str:
    bits = 128 if v6 else 32
    prefix = rng.choice([0, 1, bits, bits, bits - 1, rng.randint(0, bits)])
    # A small address space, so that networks overlap and nest.
    base = rng.getrandbits(6) << (bits - 6) | rng.getrandbits(4)
    if rng.random() < 0.5:
        base = rng.getrandbits(bits)
    network = base >> (bits - prefix) << (bits - prefix) if prefix else 0
    if v6:
        return f"{ipaddress.IPv6Address(network)}/{prefix}"
    return f"{ipaddress.IPv4Address(network)}/{prefix}"


def random_table(rng: random.Random, count: int) -> str:
    lines: list[str] = []
    depth = 0
    for i in range(count):
        neg = rng.choice(["", "", "", "!", "! !"])
        network = _random_network(rng, rng.random() < 0.4)
        r = rng.random()
        if r < 0.15:
            lines.append(f"if {neg}{network}")
            depth += 1
        elif r < 0.25 and depth:
            lines.append("endif")
            depth -= 1
        else:
            lines.append(f"{neg}{network} r{i}")
    return "\n".join(lines) + "\n"


def probe_keys(rng: random.Random, table: CidrTable) -> list[str]:
    """Addresses at and next to every edge of every network in the table, and random ones."""
    keys: list[str] = []
    for rule in table.rules:
        if not rule.family:
            continue
        bits = 128 if rule.family == socket.AF_INET6 else 32
        size = 1 << (bits - rule.prefix)
        for address in (rule.network - 1, rule.network, rule.network + size - 1,
                        rule.network + size, rule.network + rng.randrange(size)):  # fmt: skip
            address %= 1 << bits
            if bits == 32:
                keys.append(str(ipaddress.IPv4Address(address)))
            else:
                keys.append(str(ipaddress.IPv6Address(address)))
    keys += [str(ipaddress.IPv4Address(rng.getrandbits(32))) for _ in range(50)]
    keys += [str(ipaddress.IPv6Address(rng.getrandbits(128))) for _ in range(50)]
    return keys


@pytest.mark.parametrize("seed", range(40))
def test_index_agrees_with_scan(seed: int, tmp_path: Path) -> None:
    rng = random.Random(seed)
    text = random_table(rng, rng.randint(1, 120))
    table = cidr_file(tmp_path, text)
    assert table.indexed
    keys = probe_keys(rng, table)
    expected = [table._scan_lookup(key) for key in keys]
    assert [table.lookup(key) for key in keys] == expected
    assert table.lookup_many(keys) == expected


def test_scan_fallback_when_over_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = random.Random("budget")
    text = random_table(rng, 200)
    indexed = cidr_file(tmp_path, text)
    monkeypatch.setattr(CidrTable, "index_budget", 0)
    monkeypatch.setattr(CidrTable, "index_floor", 0)
    scanned = cidr_file(tmp_path, text)
    assert indexed.indexed and not scanned.indexed
    keys = probe_keys(rng, indexed)
    assert scanned.lookup_many(keys) == indexed.lookup_many(keys)


def test_nested_negated_ifs_stay_exact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Each negated IF splits the address space once more; the answer is still the scan's,
    # through the index and through the scan that replaces it when the index would be large.
    lines = [f"if !10.{2 * i}.0.0/16" for i in range(30)]
    lines += ["10.0.0.0/8 ten", "!10.40.0.0/16 not 10.40", "0.0.0.0/0 other"]
    text = "\n".join(lines) + "\n"
    indexed = cidr_file(tmp_path, text)
    monkeypatch.setattr(CidrTable, "index_floor", 0)
    scanned = cidr_file(tmp_path, text)
    assert indexed.indexed and not scanned.indexed
    for i in range(65):
        for key in (f"10.{i}.0.1", f"11.{i}.0.1", f"::{i}"):
            expected = indexed._scan_lookup(key)
            assert indexed.lookup(key) == scanned.lookup(key) == expected
    assert indexed.lookup("10.31.0.1") == "ten"
    assert indexed.lookup("10.28.0.1") is None
    assert indexed.lookup("11.0.0.1") == "not 10.40"


def test_large_table_is_indexed(tmp_path: Path) -> None:
    rng = random.Random("large")
    networks = {_random_network(rng, rng.random() < 0.3) for _ in range(10_000)}
    text = "".join(f"{network} r{i}\n" for i, network in enumerate(sorted(networks)))
    table = cidr_file(tmp_path, text)
    assert table.indexed
    keys = probe_keys(rng, table)[:3000]
    assert table.lookup_many(keys) == [table._scan_lookup(key) for key in keys]


# -- the documentation --------------------------------------------------------------------------


def test_docs_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    page = DOCS / "cidr.md"
    blocks = re.findall(r"^```python\n(.*?)^```", page.read_text(), re.MULTILINE | re.DOTALL)
    assert blocks
    for block in blocks:
        exec(compile(block, str(page), "exec"), namespace)
