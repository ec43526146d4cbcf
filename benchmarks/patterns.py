"""Benchmark: large regexp:, pcre: and cidr: tables, mailmaps side by side with real postmap.

Usage::

    python benchmarks/patterns.py [--sizes 10,100,1000,10000] [--networks 10000]
                                  [--keys 100000] [--seconds 3] [--markdown FILE]

For each size, a generated table of that many rules of the kinds large sites keep (exact
addresses, domains with captures, spam words, address rewrites with ``$n``), and ``--keys`` keys
of which about a third match nothing; and a cidr table of ``--networks`` networks (80 % IPv4
/8-/32, 20 % IPv6 /16-/128) with keys half inside some network.

Measured, lookups per second:

* ``postmap -q - TYPE:table`` of real Postfix, on as many keys as take about ``--seconds``;
* ``postmap -q -`` of mailmaps on all the keys (whole process: start-up, table loading and all
  lookups, with its prefilter cache warm), and its speed-up over real postmap;
* in-process ``Table.lookup_many()``;
* mailmaps' ``postmap -q -`` where the ``hyperscan`` package is missing (required literals
  looked up in a dictionary), and rule by rule like Postfix (``MAILMAPS_PREFILTER=never``),
  each on as many keys as take about ``--seconds``;
* the time to open the table and build its prefilter with a cold cache, and with a warm one.

Real postmap and mailmaps must print the same lines for the same keys, with the accelerator and
without: the benchmark fails otherwise.
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REAL = "/usr/sbin/postmap"
OURS = [sys.executable, "-m", "mailmaps.cli.postmap"]
#: mailmaps' postmap as it runs where the hyperscan package is not installed.
WITHOUT_ACCELERATOR = [
    sys.executable,
    "-c",
    "import runpy, sys; sys.modules['hyperscan'] = None; sys.argv[0] = 'postmap'; "
    "runpy.run_module('mailmaps.cli.postmap', run_name='__main__')",
]


def make_table(path: Path, kind: str, rules: int, rng: random.Random) -> list[str]:
    """Write the table; return words that keys can be made from."""
    words = [f"w{n:06d}" for n in rng.sample(range(10**6), rules)]
    with path.open("w") as f:
        for i, w in enumerate(words):
            k = i % 5
            if k in (0, 1):
                f.write(f"/^{w}@example\\.com$/ OK exact {i}\n")
            elif k == 2:
                f.write(f"/@(mail\\.)?{w}\\.example\\.net$/ relay:[127.0.0.1]:2525\n")
            elif k == 3:
                f.write(f"/[^a-z]{w}[0-9]+/ REJECT spam word {i}\n")
            else:
                f.write(f"/^([^@+]+)\\+{w}@(.+)$/ $1@$2\n")
    past = time.time() - 3600
    os.utime(path, (past, past))
    return words


def make_cidr(path: Path, rules: int, n: int, rng: random.Random) -> list[str]:
    """Write a cidr table of ``rules`` networks; return ``n`` keys."""
    import ipaddress

    nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
    for _ in range(rules):
        bits, low = (32, 8) if rng.random() < 0.8 else (128, 16)
        p = rng.randint(low, bits)
        nets.append(ipaddress.ip_network((rng.getrandbits(bits) >> (bits - p) << (bits - p), p)))
    path.write_text("".join(f"{net}\tresult-{i}\n" for i, net in enumerate(nets)))
    past = time.time() - 3600
    os.utime(path, (past, past))
    keys = []
    for _ in range(n):
        if rng.random() < 0.5:
            net = rng.choice(nets)
            keys.append(str(net[rng.randrange(min(net.num_addresses, 1 << 30))]))
        else:
            keys.append(str(ipaddress.IPv4Address(rng.getrandbits(32))))
    return keys


def make_keys(words: list[str], n: int, rng: random.Random) -> list[str]:
    keys = []
    for i in range(n):
        r = rng.random()
        w = rng.choice(words)
        if r < 0.25:
            keys.append(f"{w}@Example.com")
        elif r < 0.4:
            keys.append(f"user{i}@mail.{w}.example.net")
        elif r < 0.5:
            keys.append(f"Subject: {w}42 offer")
        elif r < 0.65:
            keys.append(f"someone{i}+{w}@example.org")
        else:
            keys.append(f"nobody{i}@nowhere{i}.example.org")
    return keys


def run(cmd: list[str], keys: Path, env: dict[str, str] | None = None) -> tuple[float, bytes]:
    with keys.open("rb") as inp:
        start = time.perf_counter()
        proc = subprocess.run(cmd, stdin=inp, capture_output=True, check=False, env=env)
        elapsed = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"{cmd[0]} failed: {proc.stderr.decode(errors='replace')}")
    return elapsed, proc.stdout


def sampled(
    cmd: list[str], keys: list[str], d: Path, seconds: float, env: dict[str, str] | None = None
) -> tuple[float, int, bytes]:
    """Run ``cmd`` (a ``postmap -q -``) on the first 100, 400, 1,600, ... of ``keys`` until a
    run takes at least ``seconds`` or gets them all; return that run's rate, number of keys and
    output."""
    n = 100
    while True:
        n = min(n, len(keys))
        sample = d / f"sample-{n}"
        sample.write_text("\n".join(keys[:n]) + "\n")
        elapsed, out = run(cmd, sample, env)
        if elapsed >= seconds or n == len(keys):
            return n / elapsed, n, out
        n *= 4


def speedup(ours: float, theirs: float) -> str:
    ratio = ours / theirs
    return f"{ratio:,.0f}x" if ratio >= 10 else f"{ratio:.2g}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--sizes", default="10,100,1000,10000", help="rule counts for regexp and pcre"
    )
    parser.add_argument("--networks", type=int, default=10_000, help="cidr table size")
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--seconds", type=float, default=3.0, help="time budget of a sample")
    parser.add_argument("--markdown", type=Path, help="append the results as a Markdown table")
    args = parser.parse_args()

    from mailmaps import OpenOptions, open_table
    from mailmaps.engines import prefilter

    if not prefilter.available():
        raise SystemExit("the accelerator is not installed: pip install 'mailmaps[pcre]'")
    rng = random.Random(42)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        conf = d / "conf"
        conf.mkdir()
        (conf / "main.cf").write_text("")
        past = time.time() - 3600
        os.utime(conf / "main.cf", (past, past))
        env = dict(os.environ, MAILMAPS_CACHE_DIR=str(d / "cache"))
        plain_env = dict(env, MAILMAPS_PREFILTER="never")
        os.environ["MAILMAPS_CACHE_DIR"] = str(d / "cache")
        cases = [(kind, int(n)) for kind in ("pcre", "regexp") for n in args.sizes.split(",")]
        for kind, size in [*cases, ("cidr", args.networks)]:
            table = d / f"table-{size}.{kind}"
            if kind == "cidr":
                keys = make_cidr(table, size, args.keys, rng)
            else:
                keys = make_keys(make_table(table, kind, size, rng), args.keys, rng)
            spec = f"{kind}:{table}"
            all_keys = d / f"keys-{size}.{kind}"
            all_keys.write_text("\n".join(keys) + "\n")
            real = [REAL, "-c", str(conf), "-q", "-", spec]
            ours = [*OURS, "-c", str(conf), "-q", "-", spec]

            real_rate, real_n, real_out = sampled(real, keys, d, args.seconds)

            # Open cold (building the prefilter) and warm (from the cache), then all keys
            # in-process and through the CLI.
            start = time.perf_counter()
            with open_table(spec, OpenOptions(utf8=False)) as cold_table:
                if kind != "cidr":
                    cold_table.build_prefilter()
            cold = time.perf_counter() - start
            start = time.perf_counter()
            with open_table(spec, OpenOptions(utf8=False)) as warm_table:
                warm = time.perf_counter() - start
                start = time.perf_counter()
                warm_table.lookup_many(keys)
                inproc = len(keys) / (time.perf_counter() - start)
            _, our_sample = run(ours, d / f"sample-{real_n}", env)
            if our_sample != real_out:
                raise SystemExit(f"{spec}: mailmaps and Postfix answered differently")
            elapsed, _ = run(ours, all_keys, env)
            cli_rate = len(keys) / elapsed
            others = []
            if kind != "cidr":
                without = [*WITHOUT_ACCELERATOR, "-c", str(conf), "-q", "-", spec]
                for cmd, how in ((without, env), (ours, plain_env)):
                    rate, n, _ = sampled(cmd, keys, d, args.seconds, how)
                    # Same answers as Postfix on the smaller of the two samples.
                    common = d / f"sample-{min(n, real_n)}"
                    _, mine = run(cmd, common, how)
                    theirs = real_out if n >= real_n else run(real, common)[1]
                    if mine != theirs:
                        raise SystemExit(f"{spec}: {cmd[-1]} answered differently")
                    others.append(f"{rate:,.0f}/s ({speedup(rate, real_rate)})")
            rows.append(
                (
                    kind,
                    f"{size:,}",
                    f"{real_rate:,.0f}/s",
                    f"{cli_rate:,.0f}/s",
                    f"**{speedup(cli_rate, real_rate)}**",
                    f"{inproc:,.0f}/s",
                    *(others or ["-", "-"]),
                    f"{cold:.2f} s / {warm:.2f} s",
                )
            )
            print(*rows[-1], sep=" | ", flush=True)

    head = (
        f"{args.keys:,} keys; accelerator: hyperscan {prefilter.version()}\n\n"
        "| table | rules | real `postmap -q -` | mailmaps `postmap -q -` | speed-up "
        "| mailmaps `lookup_many()` | mailmaps without hyperscan | mailmaps rule by rule "
        "| open: cold / cached |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n"
    )
    text = head + "".join("| " + " | ".join(row) + " |\n" for row in rows)
    print()
    print(text)
    if args.markdown:
        with args.markdown.open("a") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
