"""Differential tests: cidr: tables, mailmaps against real Postfix 3.7 postmap.

Seeded generators write tables of IPv4 and IPv6 networks of every prefix length, in every
bracket form, negated, inside nested and broken IF/ENDIF blocks, with bad lines of every kind
Postfix warns about; and keys inside, outside and at the edges of those networks, in other
spellings (upper-case hex, IPv4-mapped IPv6, uncompressed), and keys that are not addresses.
Both postmaps must print the same stdout, the same warnings and exit with the same status, for
``-q KEY`` and ``-q -``, in ASCII and UTF-8 mode, with and without ``-F``.
"""

from __future__ import annotations

import ipaddress
import os
import random
from pathlib import Path

import pytest

from tests.conftest import REAL_POSTMAP, Result, backdate, run_ours, run_real

pytestmark = pytest.mark.interop

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Lines Postfix skips with a warning, and other oddities.
ODD_LINES = [
    "1.2.3.4/33 bad length",
    "1.2.3.4/264 wraps to 8",
    "1.0.0.0/264 wraps to 8",
    "10.0.0.0/256 wraps to 0",
    "0.0.0.0/99999999999999999999 saturated",
    "1.2.3.4/3x bad mask",
    "1.2.3.4/ empty mask",
    "1.2.3.4/-1 negative",
    "1.2.3.999 bad address",
    "01.2.3.4 leading zero",
    "1.2.3 short",
    "0x1.2.3.4 hex",
    "::g bad v6",
    "1:2:3:4:5:6:7:8:9 long v6",
    "1.2.3.4:/24 colon",
    "[1.2.3.4 missing bracket",
    "[1.2.3.4]junk garbage",
    "[1.2.3.4]] garbage",
    "[] empty",
    "[1.2.3.4]/32/5 double mask",
    "[1.2.3.0/24]/24 double mask",
    "1.2.3.4",
    "[::1]",
    "if",
    "if !",
    "IF ! ",
    "endif junk",
    "endif;",
    "ENDIF",
    "endif1 x",
    "ifx x",
    "if 1.2.3.4 foo",
    "if [1.2.3.0]/24 x",
    "!",
    "# a comment",
    "",
    "   ",
    "  continued text",
    "ünï result",
]
VALUES = ["ok", "554 reject", "ünïcödé", "$1 ${x} verbatim", "a\tb", "trailing   "]
NEGATIONS = ["", "", "", "", "!", "! !", "!!", "!\t!", "! ! !"]


def random_network(rng: random.Random, v6: bool) -> tuple[Address, int]:
    bits = 128 if v6 else 32
    prefix = rng.choice([0, 1, bits, bits, bits - 1, bits // 2, rng.randint(0, bits)])
    # Mostly a small corner of the address space, so that networks nest and overlap.
    if rng.random() < 0.7:
        base = (rng.getrandbits(3) << (bits - 3)) | (rng.getrandbits(8) << (bits - 16))
        base |= rng.getrandbits(4)
    else:
        base = rng.getrandbits(bits)
    network = (base >> (bits - prefix) << (bits - prefix)) if prefix else 0
    address: Address = ipaddress.IPv6Address(network) if v6 else ipaddress.IPv4Address(network)
    return address, prefix


def spell(rng: random.Random, address: Address) -> str:
    """A textual form of ``address`` that inet_pton() accepts, chosen at random."""
    if isinstance(address, ipaddress.IPv4Address):
        return str(address)
    r = rng.random()
    if r < 0.2:
        return address.exploded
    if r < 0.4:
        return str(address).upper()
    return str(address)


def pattern_text(rng: random.Random, address: Address, prefix: int) -> str:
    text = spell(rng, address)
    bits = address.max_prefixlen
    form = rng.random()
    if prefix == bits and form < 0.3:
        return rng.choice([text, f"[{text}]"])
    if form < 0.1:
        return f"[{text}]/{prefix}"
    if form < 0.2:
        return f"[{text}/{prefix}]"
    if form < 0.25:  # host bits set: skipped with Postfix's suggestion
        return f"{address + 1 if int(address) < (1 << bits) - 1 else address}/{prefix}"
    return f"{text}/{prefix}"


def random_table(rng: random.Random, count: int) -> tuple[str, list[tuple[Address, int]]]:
    lines: list[str] = []
    networks: list[tuple[Address, int]] = []
    depth = 0
    for i in range(count):
        network = random_network(rng, rng.random() < 0.4)
        networks.append(network)
        pattern = rng.choice(NEGATIONS) + pattern_text(rng, *network)
        r = rng.random()
        if r < 0.12:
            lines.append(f"{rng.choice(['if', 'IF', 'If'])} {pattern}")
            depth += 1
        elif r < 0.22 and depth:
            lines.append(rng.choice(["endif", "ENDIF", "endif  "]))
            depth -= 1
        elif r < 0.30:
            lines.append(rng.choice(ODD_LINES))
        else:
            value = f"r{i} {rng.choice(VALUES)}" if rng.random() < 0.7 else f"r{i}"
            sep = rng.choice([" ", "\t", "  \t"])
            lines.append(f"{pattern}{sep}{value}")
    return "\n".join(lines) + "\n", networks


BAD_KEYS = [
    "",
    "1.2.3",
    "01.2.3.4",
    "1.2.3.04",
    "0x1.2.3.4",
    "[1.2.3.4]",
    "1.2.3.4/32",
    " 1.2.3.4",
    "1.2.3.4 ",
    "host.example.com",
    "1::2::3",
    "fe80::1%eth0",
    "::ffff:01.2.3.4",
    "1:2:3:4:5:6:7:8:9",
    "ünï",
    "1.2.3.4\udcff",
    "\udcc3",
]


def keys_for(rng: random.Random, networks: list[tuple[Address, int]]) -> list[str]:
    keys: list[str] = []
    for address, prefix in networks:
        bits = address.max_prefixlen
        size = 1 << (bits - prefix)
        base = int(address)
        for value in (base - 1, base, base + size - 1, base + size, base + rng.randrange(size)):
            value %= 1 << bits
            key: Address = (
                ipaddress.IPv4Address(value) if bits == 32 else ipaddress.IPv6Address(value)
            )
            keys.append(spell(rng, key))
            if bits == 32 and rng.random() < 0.2:
                keys.append(rng.choice(["::ffff:", "::FFFF:", "::"]) + str(key))
    keys += rng.sample(BAD_KEYS, 6)
    rng.shuffle(keys)
    return keys


def compare(real: Result, ours: Result, where: Path) -> None:
    assert ours.out == real.out
    assert ours.status == real.status
    real_err = real.err.replace(REAL_POSTMAP, "postmap").replace(str(where), "")
    assert sorted(ours.err.replace(str(where), "").splitlines()) == sorted(real_err.splitlines())


def write(path: Path, text: str) -> Path:
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    backdate(path)
    return path


def stdin_of(keys: list[str]) -> bytes:
    return "\n".join(keys).encode("utf-8", "surrogateescape") + b"\n"


@pytest.mark.parametrize("seed", range(int(os.environ.get("MAILMAPS_FUZZ_SEEDS", "12"))))
def test_generated_tables_batch(
    seed: int, tmp_path: Path, confdir: Path, utf8_confdir: Path
) -> None:
    rng = random.Random(f"cidr-{seed}")
    text, networks = random_table(rng, rng.randint(5, 60))
    table = write(tmp_path / "table.cidr", text)
    stdin = stdin_of(keys_for(rng, networks))
    for conf in (confdir, utf8_confdir):
        args = ["-c", str(conf), "-q", "-", f"cidr:{table}"]
        compare(run_real(REAL_POSTMAP, args, stdin), run_ours("postmap", args, stdin), tmp_path)


def test_generated_table_single_keys(tmp_path: Path, confdir: Path, utf8_confdir: Path) -> None:
    rng = random.Random("cidr-single")
    text, networks = random_table(rng, 40)
    table = write(tmp_path / "table.cidr", text)
    keys = keys_for(rng, networks)[:25] + BAD_KEYS[:5]
    for i, key in enumerate(keys):
        conf = utf8_confdir if i % 2 else confdir
        args = ["-c", str(conf), "-q", key, f"cidr:{table}"]
        compare(run_real(REAL_POSTMAP, args), run_ours("postmap", args), tmp_path)


def test_large_table(tmp_path: Path, confdir: Path) -> None:
    """Thousands of rules, negations and a few IF blocks: the index at scale."""
    rng = random.Random("cidr-large")
    lines: list[str] = []
    networks: list[tuple[Address, int]] = []
    for i in range(3000):
        network = random_network(rng, rng.random() < 0.3)
        networks.append(network)
        neg = "!" if rng.random() < 0.01 else ""
        address, prefix = network
        if i % 500 == 250:
            lines.append(f"if {neg}{address}/{prefix}")
        elif i % 500 == 260:
            lines.append("endif")
        else:
            lines.append(f"{neg}{address}/{prefix}\tr{i}")
    table = write(tmp_path / "large.cidr", "\n".join(lines) + "\n")
    stdin = stdin_of(keys_for(rng, networks))
    args = ["-c", str(confdir), "-q", "-", f"cidr:{table}"]
    compare(run_real(REAL_POSTMAP, args, stdin), run_ours("postmap", args, stdin), tmp_path)


def test_file_values(tmp_path: Path, confdir: Path) -> None:
    """``-F``: results are file contents, base64 in the table; IF and ENDIF are lost."""
    (tmp_path / "f1").write_text("file one\n")
    (tmp_path / "f2").write_text("file two\n")
    text = (
        "if 10.0.0.0/8\n10.1.0.0/16 f1\nendif\n10.2.0.0/16 f1, f2\n10.3.0.0/16 ,\n"
        "10.4.0.0/16 missing\n0.0.0.0/0 f2\n"
    )
    table = write(tmp_path / "files.cidr", text)
    stdin = stdin_of(["10.1.1.1", "10.2.1.1", "10.3.1.1", "10.4.1.1", "11.0.0.1", "::1"])
    args = ["-F", "-c", str(confdir), "-q", "-", f"cidr:{table}"]
    real = run_real(REAL_POSTMAP, args, stdin, cwd=tmp_path)
    compare(real, run_ours("postmap", args, stdin, cwd=tmp_path), tmp_path)
    assert b"file one\n" in real.out


def test_inline_and_missing_tables(tmp_path: Path, confdir: Path) -> None:
    for spec in [
        "cidr:{{1.2.3.4 got 1.2.3.4}, {!1.2.3.0/24 outside}}",
        "cidr:{{1.2.3.4/33 x}, {if 1.2.3.0/24}}",
        "cidr:{ {1.2.3.4 x} junk }",
        f"cidr:{tmp_path / 'missing'}",
    ]:
        for key in ["1.2.3.4", "1.2.4.4", "::1"]:
            args = ["-c", str(confdir), "-q", key, spec]
            compare(run_real(REAL_POSTMAP, args), run_ours("postmap", args), tmp_path)
