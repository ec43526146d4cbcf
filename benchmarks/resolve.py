"""Benchmark: resolving addresses in one process, side by side with real Postfix's verification.

Usage::

    python benchmarks/resolve.py [--entries 1000000] [--addresses 100000] [--probes 40]
                                 [--repeat 3]

The configuration is the one issue 5 names: a virtual alias table of ``--entries`` entries in
lmdb (``userN@valias.example`` to remote addresses), a transport table of 1,000 domains, and a
recipient canonical table of 100 pcre rules.  The addresses are a mix: half virtual aliases,
a fifth in transport domains, a tenth rewritten by the canonical rules, the rest elsewhere.

Measured:

* ``Resolver.resolve_many()`` in one process, addresses per second (no trace; the best of
  ``--repeat`` runs), and with ``trace=True``;
* real Postfix: ``sendmail -bv`` probes per second through a private instance (needs root),
  each reported back by mail; the report of every probe must agree with mailmaps, or the
  benchmark fails.  Postfix has no batch resolver, so this is the only side-by-side figure.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mailmaps.resolver import Resolver
from mailmaps.testing.postfix import PostfixInstance


def make_config(etc: Path, entries: int) -> dict[str, str]:
    """Write the tables and return the main.cf settings."""
    with (etc / "virtual").open("w") as f:
        for i in range(entries):
            f.write(f"user{i}@valias.example target{i}@mail{i % 100}.example.net\n")
    with (etc / "transport").open("w") as f:
        for i in range(1000):
            f.write(f"dom{i}.example smtp:[127.0.0.{i % 200 + 2}]:2525\n")
    with (etc / "canonical.pcre").open("w") as f:
        for i in range(100):
            f.write(f"/^old{i}\\.(.*)@mx\\.example\\.com$/ new{i}.$1@valias.example\n")
    for name in ("virtual", "transport"):
        subprocess.run(["/usr/sbin/postmap", "-c", str(etc), f"lmdb:{etc / name}"], check=True)
    return {
        "myhostname": "mx.example.com",
        "mydomain": "example.com",
        "mydestination": "$myhostname, localhost",
        "virtual_alias_domains": "valias.example",
        "virtual_alias_maps": f"lmdb:{etc}/virtual",
        "transport_maps": f"lmdb:{etc}/transport",
        "recipient_canonical_maps": f"pcre:{etc}/canonical.pcre",
        "relayhost": "[127.0.0.1]:2",
        "alias_maps": "",
        "recipient_delimiter": "+",
    }


def make_addresses(count: int, entries: int, rng: random.Random) -> list[str]:
    out = []
    for i in range(count):
        k = rng.random()
        if k < 0.5:
            out.append(f"user{rng.randrange(entries)}@valias.example")
        elif k < 0.7:
            out.append(f"x{i}@dom{rng.randrange(1000)}.example")
        elif k < 0.8:
            out.append(f"old{rng.randrange(100)}.u{i}@mx.example.com")
        else:
            out.append(f"someone{i}@far{i % 5000}.example")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--addresses", type=int, default=100_000)
    parser.add_argument("--probes", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rng = random.Random(5)
    top = Path(tempfile.mkdtemp(prefix="mailmaps-bench-"))
    top.chmod(0o755)
    try:
        root = top / "pf"
        postfix = PostfixInstance(root, {})
        settings = make_config(postfix.config_dir, args.entries)
        postfix = PostfixInstance(root, settings)
        addresses = make_addresses(args.addresses, args.entries, rng)
        with Resolver.from_directory(postfix.config_dir) as resolver:
            plain = 0.0
            for _ in range(args.repeat):  # the best of --repeat runs: this machine is noisy
                start = time.perf_counter()
                for _ in resolver.resolve_many(addresses):
                    pass
                plain = max(plain, len(addresses) / (time.perf_counter() - start))
            start = time.perf_counter()
            for address in addresses:
                resolver.resolve(address)
            single = len(addresses) / (time.perf_counter() - start)
            sample = addresses[: max(1, len(addresses) // 10)]
            start = time.perf_counter()
            for _ in resolver.resolve_many(sample, trace=True):
                pass
            traced = len(sample) / (time.perf_counter() - start)
            probes = addresses[: args.probes]
            ours = {a: resolver.resolve(a) for a in probes}
        real = "-"
        if os.geteuid() == 0 and Path("/usr/sbin/postfix").exists():
            with postfix:
                start = time.perf_counter()
                reports = postfix.verify(probes, timeout=60)
                real = f"{len(probes) / (time.perf_counter() - start):,.0f}"
            for address, verdicts in reports.items():
                want = sorted(v.recipient for v in verdicts or [])
                got = sorted(r.address for r in ours[address].recipients)
                if want != got:
                    print(f"MISMATCH {address}: postfix {want}, mailmaps {got}")
                    return 1
        print("| measurement | per second |")
        print("|---|---|")
        print(f"| mailmaps Resolver.resolve_many(), {len(addresses):,} addresses | {plain:,.0f} |")
        print(f"| mailmaps Resolver.resolve(), one at a time | {single:,.0f} |")
        print(f"| mailmaps Resolver.resolve_many(trace=True) | {traced:,.0f} |")
        print(f"| real Postfix, sendmail -bv probes ({len(probes)}) | {real} |")
    finally:
        shutil.rmtree(top, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
