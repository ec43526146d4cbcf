"""Benchmark: large regexp:, pcre: and cidr: tables, mailmaps side by side with real postmap.

Usage::

    python benchmarks/patterns.py [--rules 10000] [--keys 100000] [--markdown FILE]

A generated table of ``--rules`` rules of the kinds large sites keep (exact addresses, domains
with captures, spam words, address rewrites with ``$n``), and ``--keys`` keys of which about a
third match nothing.  Real postmap tries every rule for every key, so it gets a sample of the
keys (sized to take some seconds); mailmaps gets all of them.  Both must print the same lines
for the sample: the benchmark fails otherwise.

Measured, lookups per second:

* ``postmap -q - TYPE:table`` for real Postfix and for mailmaps (whole process: start-up,
  table loading and all lookups; mailmaps with its prefilter cache warm);
* in-process ``Table.lookup_many()``;
* the time to open the table and build its prefilter with a cold cache, and with a warm one.

The cidr table has ``--rules`` networks (80 % IPv4 /8-/32, 20 % IPv6 /16-/128) and the keys are
half inside some network, half random IPv4 addresses.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rules", type=int, default=10_000)
    parser.add_argument("--keys", type=int, default=100_000)
    parser.add_argument("--real-seconds", type=float, default=10.0, help="time budget for real")
    parser.add_argument("--markdown", type=Path, help="append the results as a Markdown table")
    args = parser.parse_args()

    from mailmaps import OpenOptions, open_table
    from mailmaps.engines import prefilter

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
        os.environ["MAILMAPS_CACHE_DIR"] = str(d / "cache")
        for kind in ("pcre", "regexp", "cidr"):
            table = d / f"table.{kind}"
            if kind == "cidr":
                keys = make_cidr(table, args.rules, args.keys, rng)
            else:
                words = make_table(table, kind, args.rules, rng)
                keys = make_keys(words, args.keys, rng)
            spec = f"{kind}:{table}"
            all_keys = d / f"keys.{kind}"
            all_keys.write_text("\n".join(keys) + "\n")

            # Real postmap: calibrate a sample that takes about --real-seconds.
            probe = d / "probe"
            probe.write_text("\n".join(keys[:200]) + "\n")
            t, _ = run([REAL, "-c", str(conf), "-q", "-", spec], probe)
            sample_n = max(200, min(len(keys), int(200 * args.real_seconds / max(t, 1e-3))))
            sample = d / "sample"
            sample.write_text("\n".join(keys[:sample_n]) + "\n")
            real_t, real_out = run([REAL, "-c", str(conf), "-q", "-", spec], sample)

            # mailmaps: open cold (build the prefilter) and warm (from the cache).
            start = time.perf_counter()
            with open_table(spec, OpenOptions(utf8=False)) as t_cold:
                if kind != "cidr":
                    t_cold.build_prefilter()
            cold = time.perf_counter() - start
            start = time.perf_counter()
            with open_table(spec, OpenOptions(utf8=False)) as t_warm:
                warm = time.perf_counter() - start
                start = time.perf_counter()
                t_warm.lookup_many(keys)
                inproc = len(keys) / (time.perf_counter() - start)

            _, our_sample_out = run([*OURS, "-c", str(conf), "-q", "-", spec], sample, env)
            if our_sample_out != real_out:
                raise SystemExit(f"{kind}: mailmaps and Postfix answered differently")
            our_t, _ = run([*OURS, "-c", str(conf), "-q", "-", spec], all_keys, env)

            real_rate = sample_n / real_t
            cli_rate = len(keys) / our_t
            rows.append(
                (
                    kind,
                    f"{real_rate:,.0f}/s ({sample_n:,} keys)",
                    f"{cli_rate:,.0f}/s ({len(keys):,} keys)",
                    f"{inproc:,.0f}/s",
                    f"{cli_rate / real_rate:,.0f}x",
                    f"{cold:.2f} s / {warm:.2f} s",
                )
            )
            print(*rows[-1], sep=" | ", flush=True)

    accel = "hyperscan" if prefilter.available() else "none (rule by rule)"
    head = (
        f"{args.rules:,} rules; accelerator: {accel}\n\n"
        "| table | real postmap -q - | mailmaps postmap -q - | mailmaps lookup_many() "
        "| speed-up (CLI) | open: cold / cached |\n|---|---|---|---|---|---|\n"
    )
    text = head + "".join("| " + " | ".join(row) + " |\n" for row in rows)
    print()
    print(text)
    if args.markdown:
        with args.markdown.open("a") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
