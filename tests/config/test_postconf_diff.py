"""``mailmaps postconf`` against the real ``postconf -c DIR`` over generated main.cf files."""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mailmaps.defaults import DEFAULTS, MACHINE_DEPENDENT
from tests.conftest import backdate

pytestmark = pytest.mark.interop

SEEDS = int(os.environ.get("MAILMAPS_POSTCONF_SEEDS", "25"))
REAL = "/usr/sbin/postconf"
OURS = [sys.executable, "-m", "mailmaps.cli.main", "postconf"]
#: Parameters whose value depends on the machine, or whose default mailmaps sets differently.
SKIP = MACHINE_DEPENDENT | {"default_database_type"}
NAMES = sorted(set(DEFAULTS) - SKIP)
#: Parameters that take any text: real postconf checks numbers, booleans and a few others.
TEXT_NAMES = [
    name
    for name in NAMES
    if not re.fullmatch(r"\d+[a-z]?|yes|no|\$\{\{.*\}\}", DEFAULTS[name])
    and not name.startswith("inet_")
    and not name.endswith(("_code", "_limit"))
]
USER = ["site_domain", "site_relay", "helper_list", "spare"]


def random_value(rng: random.Random) -> str:
    pieces = [
        "example.com",
        "$myhostname",
        "${mydomain}",
        "$(myorigin) via $(mydomain)",
        "$$literal",
        "${site_domain?{yes-site}:{no-site}}",
        "${spare:fallback}",
        "${{$compatibility_level} <level {2} ? {old} : {new}}",
        "${{$site_domain} == {example.org}?{org}}",
        "lmdb:$config_directory/virtual",
        "{ a, b }",
        "$site_relay",
        "$undefined_name",
    ]
    return ", ".join(rng.sample(pieces, rng.randint(1, 3)))


def random_main_cf(rng: random.Random) -> str:
    lines = ["# generated", f"compatibility_level = {rng.choice(['0', '1', '2', '3.6', '3.10'])}"]
    lines.append("myhostname = mx.example.com")
    for _ in range(rng.randint(3, 12)):
        name = rng.choice(TEXT_NAMES)
        if name in ("compatibility_level", "config_directory", "myorigin"):
            continue  # myorigin: a value that refers to itself is a fatal error for postconf
        value = random_value(rng)
        if rng.random() < 0.2:
            first, _, rest = value.partition(",")
            lines.append(f"{name} = {first},")
            lines.append(f"    {rest.strip() or 'tail'}")
        else:
            lines.append(f"{name} = {value}")
        if rng.random() < 0.1:
            lines.append("# a comment between definitions")
    user = rng.sample(USER, rng.randint(0, len(USER)))
    for name in user:
        lines.append(f"{name} = {rng.choice(['example.org', '$mydomain', 'x y'])}")
    if rng.random() < 0.5:
        lines.append(f"relayhost = $site_relay {rng.choice(['', '$site_domain'])}")
    return "\n".join(lines) + "\n"


def run(cmd: list[str], confdir: Path, *args: str) -> tuple[int, str, set[str]]:
    result = subprocess.run(
        [*cmd, "-c", str(confdir), *args], capture_output=True, text=True, timeout=60
    )
    warnings = {
        line.split("warning: ", 1)[1]
        for line in result.stderr.splitlines()
        if "warning:" in line and "master.cf" not in line
    }
    return result.returncode, result.stdout, warnings


@pytest.mark.parametrize("seed", range(SEEDS))
def test_generated_main_cf(seed: int, tmp_path: Path) -> None:
    rng = random.Random(seed)
    confdir = tmp_path / "conf"
    confdir.mkdir()
    (confdir / "main.cf").write_text(random_main_cf(rng))
    (confdir / "master.cf").write_text("")
    backdate(confdir / "main.cf", confdir / "master.cf")
    names = [*rng.sample(NAMES, 6), "no_such_parameter"]
    for args in (["-n"], ["-nx"], ["-x", *names], ["-h", *names], ["-d", *names], names):
        real = run([REAL], confdir, *args)
        ours = run(OURS, confdir, *args)
        assert ours == real, (args, (confdir / "main.cf").read_text())


def test_missing_main_cf_is_fatal(tmp_path: Path) -> None:
    status, out, _ = run(OURS, tmp_path / "nowhere", "-n")
    result = subprocess.run(
        [*OURS, "-c", str(tmp_path / "nowhere"), "-n"], capture_output=True, text=True
    )
    assert status == 1 and out == ""
    assert result.stderr.startswith("mailmaps postconf: fatal: open ")
    assert "Traceback" not in result.stderr
