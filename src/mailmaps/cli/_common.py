"""What postmap(1) and postalias(1) share: options, diagnostics, output and the four modes.

The two commands differ only in their option letters, how they parse a source file, what they
add after it (postalias's ``@`` and NIS entries) and how they print ``key value`` lines, so one
:class:`Tool` description drives one implementation (``src/postmap/postmap.c`` and
``src/postalias/postalias.c`` are near copies of each other for the same reason).

Diagnostics follow Postfix: ``postmap: warning: ...`` and ``postmap: fatal: ...`` on stderr, exit
status 1 after a fatal error, and no traceback ever.  Standard output is buffered in 4096-byte
blocks as Postfix's VSTREAM buffers it, so that a batch that ends in a fatal error prints exactly
what Postfix would have printed.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NoReturn

from mailmaps.config import MainConfig
from mailmaps.errors import ConfigError, LookupFailed, MailmapsError
from mailmaps.maps import create_table, open_table
from mailmaps.source import Entry, decode_file_value
from mailmaps.spec import MapSpec
from mailmaps.table import Duplicates, NulMode, OpenOptions
from mailmaps.text import decode, encode, printable

__all__ = ["Fatal", "MessageHandler", "Options", "Tool", "postfix_messages", "run"]

log = logging.getLogger("mailmaps")

_BLOCK = 4096
_BATCH_BYTES = 1 << 16  # keys read and looked up per batch in "-q -" mode


class Fatal(Exception):
    """A fatal error: printed as ``prog: fatal: message``, exit status 1."""


class MessageHandler(logging.Handler):
    """Print library warnings the way Postfix's msg(3) does: ``prog: warning: text``."""

    def __init__(self, prog: str, stream: IO[str]) -> None:
        super().__init__(logging.WARNING)
        self.prog = prog
        self.stream = stream
        #: Postfix's util_utf8_enable (smtputf8_enable): UTF-8 in messages is kept.
        self.utf8 = True
        #: Messages held back by :func:`_held_warnings`.
        self.held: list[str] | None = None

    def emit(self, record: logging.LogRecord) -> None:
        level = "error" if record.levelno >= logging.ERROR else "warning"
        line = f"{self.prog}: {level}: {printable(record.getMessage(), self.utf8)}\n"
        if self.held is not None:
            self.held.append(line)
            return
        self.stream.write(line)
        self.stream.flush()


@contextmanager
def _held_warnings() -> Iterator[None]:
    """Hold back the CLI's warnings: print them if the block succeeds, drop them if it
    raises (the caller then replays the work, warnings included, one step at a time)."""
    handler = next((h for h in log.handlers if isinstance(h, MessageHandler)), None)
    if handler is None or handler.held is not None:
        yield
        return
    handler.held = []
    try:
        yield
        held, handler.held = handler.held, None
        for line in held:
            handler.stream.write(line)
        handler.stream.flush()
    finally:
        handler.held = None


class BlockOutput:
    """Standard output with Postfix's VSTREAM buffering: whole 4096-byte blocks are written as
    the buffer fills; the rest only on :meth:`flush`."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.stream = stream
        self.buf = bytearray()

    def write(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        if len(buf) > _BLOCK:
            n = (len(buf) - 1) // _BLOCK * _BLOCK
            self.stream.write(buf[:n])
            del buf[:n]

    def flush(self) -> None:
        if self.buf:
            self.stream.write(self.buf)
            self.buf.clear()
        self.stream.flush()


@dataclass
class Options:
    """The parsed command line."""

    config_dir: str | None = None
    query: str | None = None
    delete: str | None = None
    sequence: bool = False
    incremental: bool = False
    fold: bool = True
    nul: NulMode = NulMode.AUTO
    duplicates: Duplicates = Duplicates.WARN
    rhs_is_file: bool = False
    utf8_request: bool = True
    force_utf8: bool = False
    as_owner: bool = True
    save_perm: bool = True
    header: bool = False
    body: bool = False
    mime: bool = False
    json: bool = False
    verbose: int = 0
    maps: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Tool:
    """One command: postmap or postalias."""

    prog: str
    optstring: str
    usage: str
    separator: bytes
    parse_source: Callable[[bytes, str, bool, bool], Iterator[Entry]]
    #: A fast parser for sources that need no diagnostics (see ``parse_postmap_bulk``).
    parse_bulk: Callable[[bytes, bool, bool, bytes], tuple[list[bytes], list[bytes]] | None] = (
        lambda data, utf8, rhs_is_file, terminator: None
    )
    #: Called after a build with ``(builder_or_table, config, incremental)``.
    finish_build: Callable[[Any, MainConfig, bool], None] | None = None


def getopt(
    args: Sequence[str], optstring: str, prog: str
) -> tuple[list[tuple[str, str]], list[str]]:
    """POSIX getopt as Postfix uses it on Linux (``"+"``: stop at the first non-option)."""
    takes_arg = {
        c for i, c in enumerate(optstring) if i + 1 < len(optstring) and optstring[i + 1] == ":"
    }
    letters = set(optstring.replace(":", ""))
    found: list[tuple[str, str]] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            i += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        j = 1
        while j < len(arg):
            ch = arg[j]
            if ch not in letters:
                sys.stderr.write(f"{prog}: invalid option -- '{ch}'\n")
                raise _Usage
            if ch in takes_arg:
                if j + 1 < len(arg):
                    value = arg[j + 1 :]
                elif i + 1 < len(args):
                    i += 1
                    value = args[i]
                else:
                    sys.stderr.write(f"{prog}: option requires an argument -- '{ch}'\n")
                    raise _Usage
                found.append((ch, value))
                break
            found.append((ch, ""))
            j += 1
        i += 1
    return found, list(args[i:])


class _Usage(Exception):
    pass


def parse_args(tool: Tool, args: Sequence[str]) -> Options:
    """Parse the command line as Postfix 3.7 does, including its mode-conflict errors."""
    opts = Options()
    pairs, rest = getopt(args, tool.optstring, tool.prog)
    for ch, value in pairs:
        if ch == "N":
            opts.nul = NulMode.WITH
        elif ch == "n":
            opts.nul = NulMode.WITHOUT
        elif ch == "b":
            opts.body = True
        elif ch == "c":
            opts.config_dir = value
        elif ch == "d":
            if opts.sequence or opts.query is not None or opts.delete is not None:
                raise Fatal("specify only one of -s -q or -d")
            opts.delete = value
        elif ch == "f":
            opts.fold = False
        elif ch == "F":
            opts.rhs_is_file = True
        elif ch == "h":
            opts.header = True
        elif ch == "i":
            opts.incremental = True
        elif ch == "j":
            opts.json = True
        elif ch == "m":
            opts.mime = True
        elif ch == "o":
            opts.as_owner = False
        elif ch == "p":
            opts.save_perm = False
        elif ch == "q":
            if opts.sequence or opts.query is not None or opts.delete is not None:
                raise Fatal("specify only one of -s -q or -d")
            opts.query = value
        elif ch == "r":
            opts.duplicates = Duplicates.REPLACE
        elif ch == "s":
            if opts.query is not None or opts.delete is not None:
                raise Fatal("specify only one of -s or -q or -d")
            opts.sequence = True
        elif ch == "u":
            opts.utf8_request = False
        elif ch == "U":
            opts.force_utf8 = True
        elif ch == "v":
            opts.verbose += 1
        elif ch == "w":
            opts.duplicates = Duplicates.IGNORE
    opts.maps = rest
    return opts


def _load_config(opts: Options) -> MainConfig:
    if opts.config_dir is not None:
        os.environ["MAIL_CONFIG"] = opts.config_dir
        return MainConfig.load(opts.config_dir)
    if os.environ.get("MAIL_CONFIG"):
        return MainConfig.load()
    if not Path("/etc/postfix/main.cf").exists():
        # No Postfix here at all: use the built-in defaults rather than fail (see the docs'
        # compatibility notes; real postmap would say "open /etc/postfix/main.cf").
        return MainConfig()
    return MainConfig.load()


@contextmanager
def postfix_messages(prog: str) -> Iterator[MessageHandler]:
    """Run a command as Postfix's programs end: library warnings go to stderr as
    ``prog: warning: ...``, and an error leaves as ``prog: fatal: ...`` with exit status 1
    (raised as :class:`SystemExit`), never as a traceback."""
    handler = MessageHandler(prog, sys.stderr)
    log.addHandler(handler)
    saved_level = log.level
    log.setLevel(logging.WARNING)
    log.propagate = False
    try:
        yield handler
    except (Fatal, MailmapsError) as exc:
        _fatal(prog, str(exc))
    except KeyboardInterrupt:
        _fatal(prog, "interrupted")
    except BrokenPipeError:
        raise SystemExit(1) from None
    except OSError as exc:
        _fatal(prog, f"{exc.filename or ''}{': ' if exc.filename else ''}{exc.strerror or exc}")
    except Exception as exc:  # never a traceback from a CLI
        _fatal(prog, f"internal error: {type(exc).__name__}: {exc}")
    finally:
        log.removeHandler(handler)
        log.setLevel(saved_level)
        log.propagate = True


def _fatal(prog: str, text: str) -> NoReturn:
    sys.stderr.write(f"{prog}: fatal: {text}\n")
    sys.stderr.flush()
    raise SystemExit(1)


def run(tool: Tool, argv: Sequence[str] | None = None) -> int:
    """Run ``tool`` with ``argv`` (default ``sys.argv[1:]``); return the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    out = BlockOutput(sys.stdout.buffer)
    try:
        with postfix_messages(tool.prog) as handler:
            try:
                return _main(tool, args, out, handler)
            except _Usage:
                raise Fatal(f"usage: {tool.prog} {tool.usage}") from None
    except SystemExit as exc:
        return int(exc.code or 0)


def _main(tool: Tool, args: list[str], out: BlockOutput, handler: MessageHandler) -> int:
    opts = parse_args(tool, args)
    config = _load_config(opts)
    handler.utf8 = config.get_bool("smtputf8_enable")
    default_type = config.get("default_database_type") or "lmdb"
    any_key = opts.header or opts.body or opts.mime
    if any_key and opts.query != "-":
        raise Fatal('specify -b -h or -m only with "-q -"')
    message_mode = opts.header or opts.body
    if opts.mime and not message_mode:
        log.warning("ignoring -m option without -b or -h")
    if opts.json and opts.query is None and not opts.sequence:
        raise Fatal("specify -j only with -q or -s")
    utf8 = opts.utf8_request and config.get_bool("smtputf8_enable")
    if (opts.header or opts.body) and not opts.force_utf8:
        utf8 = False
    options = OpenOptions(
        fold=opts.fold,
        utf8=utf8,
        nul=opts.nul,
        duplicates=opts.duplicates,
        rhs_is_file=opts.rhs_is_file,
        lock=True,
        lmdb_map_size=config.get_int("lmdb_map_size"),
        main_config=config,
    )
    specs = [MapSpec.parse(m, default_type=default_type) for m in opts.maps]
    session = _Session(tool, opts, options, out, config)
    if opts.delete is not None:
        if not specs:
            raise _Usage
        if opts.delete == "-":
            return 0 if session.delete_many(specs, sys.stdin.buffer) else 1
        found = False
        for spec in specs:
            found |= session.delete_one(spec, opts.delete)
        return 0 if found else 1
    if opts.query is not None:
        if not specs:
            raise _Usage
        if message_mode:
            return 0 if session.query_message(specs, sys.stdin.buffer) else 1
        if opts.query == "-":
            return 0 if session.query_many(specs, sys.stdin.buffer) else 1
        for spec in specs:
            if session.query_one(spec, opts.query):
                return 0
        return 1
    if opts.sequence:
        if not specs:
            return 1
        session.sequence(specs[0])
        return 0
    if not specs:
        raise _Usage
    for spec in specs:
        session.build(spec)
    return 0


class _Session:
    def __init__(
        self,
        tool: Tool,
        opts: Options,
        options: OpenOptions,
        out: BlockOutput,
        config: MainConfig,
    ) -> None:
        self.tool = tool
        self.opts = opts
        self.options = options
        self.out = out
        self.config = config

    # -- output -------------------------------------------------------------------------------

    def _line(self, key: str, value: str) -> bytes:
        if self.opts.json:
            return (json.dumps({key: value}, ensure_ascii=False) + "\n").encode(
                "utf-8", "surrogateescape"
            )
        return encode(key) + self.tool.separator + encode(value) + b"\n"

    def _warn_empty(self, spec: MapSpec, key: str) -> None:
        log.warning("table %s: key %s: empty string result is not allowed", spec, key)
        log.warning("table %s should return NO RESULT in case of NOT FOUND", spec)

    def _value(self, table: Any, spec: MapSpec, key: str) -> str | None:
        try:
            value: str | None = table.lookup(key)
        except LookupFailed as exc:
            raise Fatal(_query_error(spec, exc)) from exc
        if value is not None and self.options.rhs_is_file:
            value = self._decode_file(spec, key, value)
        return value

    def _decode_file(self, spec: MapSpec, key: str, value: str) -> str:
        try:
            return decode_file_value(value)
        except ValueError as exc:
            log.warning("table %s: key %s: %s", spec, key, exc)
            raise Fatal(f"table {spec}: query error") from exc

    # -- the modes ------------------------------------------------------------------------------

    def query_one(self, spec: MapSpec, key: str) -> bool:
        with open_table(spec, self.options) as table:
            value = self._value(table, spec, key)
            if value is None:
                return False
            if value == "":
                self._warn_empty(spec, key)
            if self.opts.json:
                self.out.write(self._line(key, value))
            else:
                self.out.write(encode(value) + b"\n")
            self.out.flush()
            return True

    def query_many(self, specs: list[MapSpec], stream: IO[bytes]) -> bool:
        tables: list[Any] = [None] * len(specs)
        found = False
        try:
            while True:
                lines = stream.readlines(_BATCH_BYTES)
                if not lines:
                    break
                raws = [raw[:-1] if raw.endswith(b"\n") else raw for raw in lines]
                if any(b"\0" in raw for raw in raws):  # Postfix sees C strings
                    raws = [raw.partition(b"\0")[0] for raw in raws]
                keys = [raw.decode("utf-8", "surrogateescape") for raw in raws]
                if not self._replayable(specs, tables):
                    found |= self._query_live(specs, tables, keys, raws)
                    continue
                try:
                    with _held_warnings():
                        found |= self._query_batch(specs, tables, keys, raws)
                except (Fatal, MailmapsError):
                    # Replay the batch one key at a time, so that output and diagnostics up to
                    # the failing key are exactly what Postfix's key-by-key loop produces.
                    found |= self._query_keys(specs, tables, keys)
            if found:
                self.out.flush()
        finally:
            _close_all(tables)
        return found

    def _table(self, specs: list[MapSpec], tables: list[Any], i: int) -> Any:
        table = tables[i]
        if table is None:
            table = tables[i] = open_table(specs[i], self.options)
        return table

    def _query_batch(
        self, specs: list[MapSpec], tables: list[Any], keys: list[str], raws: list[bytes]
    ) -> bool:
        results: list[tuple[int, str] | None] = [None] * len(keys)
        pending = list(range(len(keys)))
        for i, spec in enumerate(specs):
            if not pending:
                break
            table = self._table(specs, tables, i)
            try:
                values = table.lookup_many([keys[j] for j in pending])
            except LookupFailed as exc:
                raise Fatal(_query_error(spec, exc)) from exc
            missing = []
            for j, value in zip(pending, values, strict=True):
                if value is None:
                    missing.append(j)
                else:
                    results[j] = (i, value)
            pending = missing
        return self._emit(specs, keys, raws, results)

    def _replayable(self, specs: list[MapSpec], tables: list[Any]) -> bool:
        """Whether every table answers a replayed batch as it did the first time."""
        return all(
            getattr(self._table(specs, tables, i), "replayable", True) for i in range(len(specs))
        )

    def _query_live(
        self, specs: list[MapSpec], tables: list[Any], keys: list[str], raws: list[bytes]
    ) -> bool:
        """A batch for tables that cannot be replayed (servers): warnings as they happen, and
        on an error the answers for the keys before it, then the fatal error."""
        if len(specs) > 1:
            return self._query_keys(specs, tables, keys)
        table = self._table(specs, tables, 0)
        try:
            values = table.lookup_many(keys)
        except LookupFailed as exc:
            partial = exc.partial or []
            done = len(partial)
            self._emit(specs, keys[:done], raws[:done], [_first(v) for v in partial])
            raise Fatal(_query_error(specs[0], exc)) from exc
        return self._emit(specs, keys, raws, [_first(v) for v in values])

    def _emit(
        self,
        specs: list[MapSpec],
        keys: list[str],
        raws: list[bytes],
        results: list[tuple[int, str] | None],
    ) -> bool:
        """Write the lines of a batch's answers (``results[j]``: the index of the table that
        answered key ``j``, and its value); return whether there was any."""
        lines: list[bytes] = []
        plain = not (self.options.rhs_is_file or self.opts.json)
        sep = self.tool.separator
        for key, raw, result in zip(keys, raws, results, strict=True):
            if result is None:
                continue
            i, value = result
            if plain and value:
                lines.append(raw + sep + value.encode("utf-8", "surrogateescape") + b"\n")
                continue
            if self.options.rhs_is_file:
                value = self._decode_file(specs[i], key, value)
            if value == "":
                self._warn_empty(specs[i], key)
            lines.append(self._line(key, value))
        self.out.write(b"".join(lines))
        return bool(lines)

    def _query_keys(self, specs: list[MapSpec], tables: list[Any], keys: list[str]) -> bool:
        found = False
        for key in keys:
            for i, spec in enumerate(specs):
                value = self._value(self._table(specs, tables, i), spec, key)
                if value is not None:
                    if value == "":
                        self._warn_empty(spec, key)
                    self.out.write(self._line(key, value))
                    found = True
                    break
        return found

    def query_message(self, specs: list[MapSpec], stream: IO[bytes]) -> bool:
        """``-h``/``-b``/``-m`` with ``-q -``: look up the keys of the message on ``stream``
        (``postmap_queries()`` driving ``mime_state.c``); ``True`` when any key was found.

        Unlike plain ``-q -``, values are printed as the table returns them, even with ``-F``
        (Postfix calls ``dict_get()`` here, not ``dict_file_lookup()``).
        """
        from mailmaps.message import MimeLimits, message_keys

        limits = MimeLimits.from_config(self.config)
        tables: list[Any] = [None] * len(specs)
        found = False
        try:
            for item in message_keys(
                stream,
                headers=self.opts.header,
                body=self.opts.body,
                mime=self.opts.mime,
                limits=limits,
            ):
                key = item.key
                for i, spec in enumerate(specs):
                    table = self._table(specs, tables, i)
                    try:
                        value: str | None = table.lookup(key)
                    except LookupFailed as exc:
                        raise Fatal(_query_error(spec, exc)) from exc
                    if value is not None:
                        if value == "":
                            self._warn_empty(spec, key)
                        self.out.write(self._line(key, value))
                        found = True
                        break
            if found:
                self.out.flush()
        finally:
            _close_all(tables)
        return found

    def _open_writable(self, spec: MapSpec) -> Any:
        return open_table(spec, self.options, writable=True)

    def delete_one(self, spec: MapSpec, key: str) -> bool:
        with self._open_writable(spec) as table:
            return self._delete(table, spec, key)

    def _delete(self, table: Any, spec: MapSpec, key: str) -> bool:
        try:
            deleted: bool = table.delete(key)
        except LookupFailed as exc:
            raise Fatal(f"table {spec}: delete error: {exc}") from exc
        return deleted

    def delete_many(self, specs: list[MapSpec], stream: IO[bytes]) -> bool:
        tables = [self._open_writable(spec) for spec in specs]
        found = False
        try:
            for raw in stream:
                key = decode(raw[:-1] if raw.endswith(b"\n") else raw)
                for table, spec in zip(tables, specs, strict=True):
                    found |= self._delete(table, spec, key)
        finally:
            for table in tables:
                table.close()
        return found

    def sequence(self, spec: MapSpec) -> None:
        if spec.type == "proxy":
            raise Fatal("can't sequence maps via the proxy service")
        with open_table(spec, self.options) as table:
            try:
                for key, value in table.items():
                    if not key:
                        log.warning("table %s: empty lookup key value is not allowed", spec)
                    elif not value:
                        self._warn_empty(spec, key)
                    if self.options.rhs_is_file:
                        try:
                            value = decode_file_value(value)
                        except ValueError as exc:
                            log.warning("table %s: key %s: %s", spec, key, exc)
                            continue
                    self.out.write(self._line(key, value))
            except LookupFailed as exc:
                raise Fatal(f"table {spec}: sequence error: {exc}") from exc
            except ConfigError as exc:
                raise Fatal(str(exc)) from exc
        self.out.flush()

    # -- building -------------------------------------------------------------------------------

    def build(self, spec: MapSpec) -> None:
        opts = self.opts
        if opts.incremental:
            data = sys.stdin.buffer.read()
            self._update(spec, data, "stdin")
            return
        if spec.type == "proxy":
            raise Fatal("can't create maps via the proxy service")
        try:
            st = os.stat(spec.name)
            data = Path(spec.name).read_bytes()
        except OSError as exc:
            raise Fatal(f"open {spec.name}: {exc.strerror}") from exc
        mode = 0o644
        if opts.save_perm:
            mode &= ~(0o022 | (~st.st_mode & 0o077))
        builder: Any = create_table(spec, self.options, mode=mode)
        if opts.as_owner and os.getuid() == 0 and (st.st_uid, st.st_gid) != (0, 0):
            builder.owner = (st.st_uid, st.st_gid)
        with builder:
            if (
                self.tool.finish_build is None
                and not opts.rhs_is_file
                and getattr(builder, "add_source", None) is not None
                and builder.add_source(data, spec.name)
            ):
                # The backend's C writer takes the whole (uniform) source, at commit.
                with _busy(data):
                    builder.commit()
                return
            terminator = builder.terminator
            bulk = self.tool.parse_bulk(data, self.options.utf8, opts.rhs_is_file, terminator)
            if bulk is None or not builder.add_bulk(*bulk, terminated=True):
                entries = self.tool.parse_source(
                    data, spec.name, self.options.utf8, opts.rhs_is_file
                )
                builder.add_many(_progress(entries, data), spec.name)
            if self.tool.finish_build is not None:
                self.tool.finish_build(builder, self.config, False)

    def _update(self, spec: MapSpec, data: bytes, path: str) -> None:
        try:
            table = self._open_writable(spec)
        except ConfigError as exc:
            if not isinstance(exc.__cause__, FileNotFoundError):
                raise
            # O_CREAT: an incremental update of a table that does not exist yet creates it.
            with create_table(spec, self.options):
                pass
            table = self._open_writable(spec)
        with table:
            try:
                for key, value, _ in self.tool.parse_source(
                    data, path, self.options.utf8, self.opts.rhs_is_file
                ):
                    table.update(decode(key), decode(value))
                if self.tool.finish_build is not None:
                    self.tool.finish_build(table, self.config, True)
            except LookupFailed as exc:
                raise Fatal(f"table {spec}: write error: {exc}") from exc


def _close_all(tables: list[Any]) -> None:
    """Close the tables a query mode opened (those still ``None`` were never needed)."""
    for table in tables:
        if table is not None:
            table.close()


def _first(value: str | None) -> tuple[int, str] | None:
    """A single table's answer as a batch result."""
    return None if value is None else (0, value)


def _query_error(spec: MapSpec, exc: LookupFailed) -> str:
    """Postfix's ``table T:N: query error: REASON`` (backends may already say all of it)."""
    text = str(exc)
    if text.startswith(f"table {spec}:"):
        return text
    return f"table {spec}: query error: {text}"


def _progress(entries: Iterator[Entry], data: bytes) -> Iterator[Entry]:
    """Show a progress bar for large builds on a terminal; stay silent otherwise."""
    if len(data) < _PROGRESS_MIN or not sys.stderr.isatty():
        return entries
    try:
        from rich.progress import Progress
    except ImportError:
        return entries
    return _with_progress(entries, data.count(b"\n"), Progress)


_PROGRESS_MIN = 4 << 20


def _busy(data: bytes) -> AbstractContextManager[Any]:
    """A spinner on a terminal while a large build runs in C (no per-entry progress there);
    nothing otherwise."""
    if len(data) < _PROGRESS_MIN or not sys.stderr.isatty():
        return nullcontext()
    try:
        from rich.console import Console
    except ImportError:
        return nullcontext()
    return Console(stderr=True).status("building", spinner="dots")


def _with_progress(entries: Iterator[Entry], total: int, progress_cls: Any) -> Iterator[Entry]:
    with progress_cls(transient=True) as progress:
        task = progress.add_task("building", total=total)
        for n, entry in enumerate(entries, 1):
            if n % 20000 == 0:
                progress.update(task, completed=n)
            yield entry
