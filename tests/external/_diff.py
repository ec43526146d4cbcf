"""Run the same lookups through real Postfix's postmap and mailmaps' postmap, and compare."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import REAL_POSTMAP, backdate, run_ours, run_real

#: The alias rows every SQL table's tests start from: multi-row answers, empty and NULL
#: values, quotes, non-ASCII keys, a domain catch-all, values without @ or local part, commas.
ALIAS_ROWS: list[tuple[str, object, int]] = [
    ("info@example.com", "alice@example.net", 1),
    ("info@example.com", "bob@example.net", 1),
    ("empty@example.com", "", 1),
    ("null@example.com", None, 1),
    ("postmaster@example.com", "root", 1),
    ("o'brien@example.com", "obrien@example.net", 1),
    ("müller@example.com", "mueller@example.net", 1),
    ("user@mail.example.com", "deep@example.net", 1),
    ("@example.org", "catchall@example.net", 1),
    ("many@example.com", "a1@x.example", 1),
    ("many@example.com", "a2@x.example", 1),
    ("many@example.com", "a3@x.example", 1),
    ("bare@example.com", "local", 1),
    ("emptylocal@example.com", "@example.net", 1),
    ("comma@example.com", "a@x.example, b@y.example", 1),
    ("off@example.com", "off@example.net", 0),
]


def insert_sql(table: str, rows: list[tuple[str, object, int]]) -> str:
    """``INSERT INTO table VALUES ...;`` for ``rows`` (SQL string literals, NULL for None)."""

    def literal(value: object) -> str:
        if value is None:
            return "NULL"
        if isinstance(value, int):
            return str(value)
        return "'" + str(value).replace("'", "''") + "'"

    values = ",\n  ".join("(" + ", ".join(literal(v) for v in row) + ")" for row in rows)
    return f"INSERT INTO {table} VALUES\n  {values};\n"


def write_cf(directory: Path, name: str, text: str) -> Path:
    """Write a table's ``.cf`` file (back-dated, so real Postfix does not wait for it)."""
    path = directory / name
    path.write_text(text)
    path.chmod(0o644)
    backdate(path)
    return path


def confdir(directory: Path, main_cf: str = "compatibility_level = 3.6\n") -> Path:
    """A configuration directory with a back-dated main.cf."""
    conf = directory / "conf"
    conf.mkdir(exist_ok=True)
    (conf / "main.cf").write_text(main_cf)
    backdate(conf / "main.cf")
    return conf


def batch(conf: Path, spec: str, keys: list[str], *flags: str) -> tuple[int, bytes, str, str]:
    """``postmap -q -`` with ``keys`` through both; assert equal status and output; return
    (status, output, real stderr, our stderr)."""
    data = "".join(f"{key}\n" for key in keys).encode()
    args = ["-c", str(conf), *flags, "-q", "-", spec]
    real = run_real(REAL_POSTMAP, args, data)
    ours = run_ours("postmap", args, data)
    assert (ours.status, ours.out) == (real.status, real.out), (
        f"{spec}: keys {keys!r}\nreal stderr: {real.err}\nour stderr: {ours.err}"
    )
    return real.status, real.out, real.err, ours.err


def single(conf: Path, spec: str, key: str, *flags: str) -> tuple[int, bytes, str, str]:
    """``postmap -q KEY`` through both; assert equal status and output; return (status,
    output, real stderr, our stderr)."""
    args = ["-c", str(conf), *flags, "-q", key, spec]
    real = run_real(REAL_POSTMAP, args)
    ours = run_ours("postmap", args)
    assert (ours.status, ours.out) == (real.status, real.out), (
        f"{spec}: key {key!r}\nreal stderr: {real.err}\nour stderr: {ours.err}"
    )
    return real.status, real.out, real.err, ours.err
