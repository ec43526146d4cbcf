"""Shared fixtures: a private Postfix configuration directory and runners for both postmaps."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

REAL_POSTMAP = "/usr/sbin/postmap"
REAL_POSTALIAS = "/usr/sbin/postalias"
#: Postfix's regression vectors: ``shared/`` beside the checkout (as CI has it), or
#: ``$MAILMAPS_SHARED``.
VECTORS = (
    Path(os.environ.get("MAILMAPS_SHARED") or Path(__file__).resolve().parents[2] / "shared")
    / "postfix"
    / "vectors"
)


@dataclass
class Result:
    """What a command printed and returned."""

    status: int
    out: bytes
    err: str


def backdate(*paths: Path) -> None:
    """Set mtimes into the past: real Postfix re-reads files younger than about 2 seconds."""
    past = time.time() - 3600
    for path in paths:
        os.utime(path, (past, past))


@pytest.fixture
def confdir(tmp_path: Path) -> Path:
    """A configuration directory with an empty main.cf (compatibility_level 0: no UTF-8 mode)."""
    d = tmp_path / "conf"
    d.mkdir()
    (d / "main.cf").write_text("")
    backdate(d / "main.cf")
    return d


@pytest.fixture
def utf8_confdir(tmp_path: Path) -> Path:
    """A configuration directory in UTF-8 mode (compatibility_level 3.6, as a modern site)."""
    d = tmp_path / "conf-utf8"
    d.mkdir()
    (d / "main.cf").write_text("compatibility_level = 3.6\n")
    backdate(d / "main.cf")
    return d


def run_real(prog: str, args: Sequence[str], stdin: bytes = b"", cwd: Path | None = None) -> Result:
    """Run a real Postfix command."""
    proc = subprocess.run(
        [prog, *args], input=stdin, capture_output=True, cwd=cwd, timeout=120, check=False
    )
    return Result(proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace"))


class _KeepOpen(io.BytesIO):
    """A BytesIO that survives its TextIOWrapper being closed."""

    def close(self) -> None:
        pass


def run_ours(tool: str, args: Sequence[str], stdin: bytes = b"", cwd: Path | None = None) -> Result:
    """Run mailmaps' postmap, postalias or mailmaps command in this process, with byte-exact
    stdio."""
    from mailmaps.cli import main as mailmaps_main
    from mailmaps.cli import postalias, postmap

    main = {"postmap": postmap.main, "postalias": postalias.main, "mailmaps": mailmaps_main.main}[
        tool
    ]
    saved = sys.stdin, sys.stdout, sys.stderr, os.getcwd(), os.environ.get("MAIL_CONFIG")
    out, err = _KeepOpen(), io.StringIO()
    sys.stdin = io.TextIOWrapper(io.BytesIO(stdin))
    sys.stdout = io.TextIOWrapper(out, write_through=True)
    sys.stderr = err
    try:
        if cwd is not None:
            os.chdir(cwd)
        status = main(list(args))
    finally:
        sys.stdout.flush()
        sys.stdin, sys.stdout, sys.stderr = saved[0], saved[1], saved[2]
        os.chdir(saved[3])
        if saved[4] is None:
            os.environ.pop("MAIL_CONFIG", None)
        else:
            os.environ["MAIL_CONFIG"] = saved[4]
    return Result(status, out.getvalue(), err.getvalue())
