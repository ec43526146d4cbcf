"""The ``mailmaps`` command: ``postconf``, ``resolve`` and ``check-access`` subcommands.

``mailmaps postconf [-c DIR] [-n | -d] [-x] [-h] [name ...]`` prints main.cf parameters as
Postfix 3.7's ``postconf`` prints them, for the parameters mailmaps knows the defaults of
(:mod:`mailmaps.defaults`); ``mailmaps resolve [-c DIR] [--sender ADDR] [--json] ADDRESS ...``
says what Postfix would do with each address (:class:`mailmaps.resolver.Resolver`);
``mailmaps check-access [-c DIR] --client ADDR[,NAME] [--helo NAME] [--sender ADDR] --recipient
ADDR [--json]`` says what smtpd replies to that RCPT TO (:class:`mailmaps.access.AccessPolicy`).

Errors are printed as Postfix prints them (``mailmaps postconf: fatal: ...``), with exit status
1, and never as a traceback.  Each subcommand is a function registered in :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import IO

from mailmaps.access import AccessPolicy, Decision, Session
from mailmaps.cli._common import Fatal, postfix_messages
from mailmaps.config import MainConfig, read_main_cf_entries
from mailmaps.defaults import DEFAULTS, MACHINE_DEPENDENT
from mailmaps.errors import MailmapsError
from mailmaps.macros import COMPAT_LEVEL_RELOPS, mac_expand
from mailmaps.parameters import POSTFIX_PARAMETERS
from mailmaps.resolver import Resolution, Resolver
from mailmaps.rfc822 import unquote_local

__all__ = ["COMMANDS", "main"]

log = logging.getLogger("mailmaps")

#: Parameters that Postfix never expands when it reads them (``CONFIG_RAW_TABLE`` entries).
RAW_PARAMETERS = frozenset(
    {
        "command_execution_directory",
        "default_rbl_reply",
        "forward_path",
        "luser_relay",
        "mailbox_command",
        "postscreen_expansion_filter",
        "postscreen_reject_footer",
        "smtpd_expansion_filter",
        "smtpd_reject_footer",
    }
)

_REFERENCE = re.compile(r"\$\$|\$(?:\{([A-Za-z0-9_]+)|\(([A-Za-z0-9_]+)|([A-Za-z0-9_]+))")


def _print_line(out: IO[str], text: str) -> None:
    """One output line, white space squeezed as postconf prints it (``pcf_print_line()``)."""
    out.write(" ".join(text.split()) + "\n")


def _config_dir(option: str | None) -> str:
    return option or os.environ.get("MAIL_CONFIG") or "/etc/postfix"


# --- postconf ------------------------------------------------------------------------------


def _used_user_parameters(values: dict[str, str]) -> tuple[set[str], list[str]]:
    """The user-defined names that a Postfix parameter's value refers to, directly or through
    other such names, or that ``smtpd_restriction_classes`` lists (``postconf_user.c``); and
    the names referred to that nothing defines."""
    known = set(POSTFIX_PARAMETERS)
    undefined: list[str] = []
    valid: set[str] = set()
    if "smtpd_restriction_classes" in values:
        # Each class name is a parameter: valid if main.cf defines it, else "undefined".  The
        # list is expanded with main.cf's settings only: postconf has no defaults loaded yet.
        classes, _status = mac_expand(
            values["smtpd_restriction_classes"],
            lambda name, _used: values.get(name),
            recurse=True,
            relops=COMPAT_LEVEL_RELOPS,
        )
        for name in re.split(r"[,\s]+", classes):  # mystrtok(): braces do not group
            if not name:
                continue
            if name in values:
                valid.add(name)
            elif name not in known and name not in undefined:
                undefined.append(name)
    scanned: set[str] = set()
    queue = [name for name in values if name in known]
    queue += [name for name in DEFAULTS if name not in values]
    while queue:
        name = queue.pop()
        if name in scanned or name in RAW_PARAMETERS:
            continue
        scanned.add(name)
        text = values.get(name, DEFAULTS.get(name, ""))
        for match in _REFERENCE.finditer(text):
            if match.group() == "$$":
                continue
            ref = next(group for group in match.groups() if group)
            if ref not in known and ref in values and ref not in valid:
                valid.add(ref)
                queue.append(ref)
            elif name in values and ref not in known | set(values) and ref not in undefined:
                undefined.append(ref)
    return valid & set(values), undefined


def postconf(argv: Sequence[str], out: IO[str], err: IO[str]) -> int:
    """``mailmaps postconf``: print main.cf parameters as Postfix's postconf does."""
    parser = _parser("postconf", "print main.cf parameters as Postfix 3.7's postconf does")
    parser.add_argument("-n", action="store_true", help="only parameters set in main.cf")
    parser.add_argument("-d", action="store_true", help="default values")
    parser.add_argument("-x", action="store_true", help="expand $name references")
    parser.add_argument("-h", action="store_true", help="values only, without names")
    parser.add_argument("names", nargs="*", metavar="name")
    args = parser.parse_args(argv)
    directory = _config_dir(args.config_dir)
    path = os.path.join(directory, "main.cf")
    values: dict[str, str] = {}
    try:
        entries = [] if args.d else read_main_cf_entries(path)
    except MailmapsError as exc:
        raise Fatal(str(exc)) from None
    for lineno, name, value in entries:
        if name in values and values[name] != value:
            err.write(
                f"postconf: warning: {path}, line {lineno}: overriding earlier entry: "
                f"{name}={values[name]}\n"
            )
        values[name] = value
    if args.config_dir:
        values.setdefault("config_directory", args.config_dir)
    config = MainConfig(values, directory)
    used, undefined = _used_user_parameters(values)
    known = set(POSTFIX_PARAMETERS) | used
    for name in undefined:
        err.write(f"postconf: warning: {directory}/main.cf: undefined parameter: {name}\n")
    for name, value in values.items():
        if name not in known:
            err.write(f"postconf: warning: {directory}/main.cf: unused parameter: {name}={value}\n")

    def show(name: str) -> None:
        raw = config.raw(name)
        if raw is None:
            err.write(f"mailmaps postconf: warning: {name}: default not known to mailmaps\n")
            return
        value = raw if not args.x or name in RAW_PARAMETERS else config.expand(raw)
        _print_line(out, value if args.h else f"{name} = {value}")

    if args.names:
        for name in args.names:
            if name not in known:
                err.write(f"postconf: warning: {name}: unknown parameter\n")
                continue
            show(name)
        return 0
    if args.n:
        names: Iterable[str] = sorted(name for name in values if name in known)
    else:
        names = sorted(set(DEFAULTS) | MACHINE_DEPENDENT | {"config_directory"} | set(values))
    for name in names:
        if name in known:
            show(name)
    return 0


# --- resolve -------------------------------------------------------------------------------

_COLOURS = {"deliverable": "32", "undeliverable": "31", None: "33"}


def _paint(text: str, code: str, colour: bool) -> str:
    return f"\033[{code}m{text}\033[0m" if colour else text


def _show(resolution: Resolution, out: IO[str], colour: bool) -> None:
    """The trace for people: each stage, then the final recipients."""
    _print_raw(out, _paint(resolution.input, "1", colour))
    for event in resolution.trace:
        if event.table is not None:
            found = "(not found)" if event.result is None else event.result
            line = f"  {event.stage:<15} {event.table}  {event.key} => {found}"
        else:
            line = f"  {event.stage:<15} {event.address} => {event.result}"
            if event.note:
                line += f"  ({event.note})"
        _print_raw(out, line)
    for r in resolution.recipients:
        status = r.status or "network"
        via = f"{r.transport}:{r.nexthop}" if r.nexthop is not None else (r.transport or "-")
        words = f"{r.dsn} {r.text}" if r.text is not None else "client connects to the nexthop"
        line = f"  => {r.address}  [{r.address_class or 'not accepted'}]  {via}  {status}: {words}"
        _print_raw(out, _paint(line, _COLOURS.get(r.status, "0"), colour))


def _print_raw(out: IO[str], text: str) -> None:
    out.write(text + "\n")


def _addresses(arguments: Iterable[str]) -> Iterator[str]:
    """The addresses to resolve: each argument, and for ``-`` each line of standard input."""
    for argument in arguments:
        if argument != "-":
            yield argument
            continue
        for line in sys.stdin:
            line = line.strip()
            if line:
                yield line


def resolve(argv: Sequence[str], out: IO[str], err: IO[str]) -> int:
    """``mailmaps resolve``: what Postfix would do with each address, and why."""
    parser = _parser("resolve", "say what Postfix would do with each address, and why")
    parser.add_argument("--sender", default="", help="the envelope sender (default: <>)")
    parser.add_argument("--json", action="store_true", help="one JSON object per address")
    parser.add_argument(
        "addresses", nargs="+", metavar="ADDRESS", help="an address, or - to read one per line"
    )
    args = parser.parse_args(argv)
    directory = _config_dir(args.config_dir)
    try:
        resolver = Resolver.from_directory(directory)
    except (MailmapsError, OSError) as exc:
        raise Fatal(str(exc)) from None
    colour = not args.json and out.isatty() and os.environ.get("NO_COLOR") is None
    with resolver:
        for address in _addresses(args.addresses):
            try:
                resolution = resolver.resolve(address, args.sender, trace=True)
            except MailmapsError as exc:
                raise Fatal(f"{address}: {exc}") from None
            if args.json:
                out.write(resolution.to_json() + "\n")
            else:
                _show(resolution, out, colour)
    return 0


# --- check-access ----------------------------------------------------------------------------


def _smtp_address(text: str) -> str:
    """A MAIL FROM/RCPT TO argument (``<...>`` optional, quoted form) in internal form."""
    text = text.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    return unquote_local(text)


def _show_decision(decision: Decision, out: IO[str], colour: bool) -> None:
    """The decision for people: each restriction and lookup, then the reply."""
    for event in decision.trace:
        if event.table is not None:
            found = (
                "(not found)"
                if event.value is None and event.result is None
                else (event.value if event.value is not None else event.result)
            )
            line = f"  {event.stage:<8} {event.table}  {event.key} => {found}"
        else:
            detail = f" {event.key}" if event.key is not None else ""
            result = f" => {event.result}" if event.result is not None else ""
            line = f"  {event.stage:<8} {event.restriction}{detail}{result}"
        _print_raw(out, line)
    for warning in decision.warnings:
        _print_raw(out, f"  {warning}")
    by = f"  (decided by {decision.decided_by})" if decision.decided_by else ""
    code = "32" if decision.action in ("permit", "dunno") else "31"
    _print_raw(out, _paint(f"{decision.stage}: {decision.reply or '(hangup)'}{by}", code, colour))


def check_access(argv: Sequence[str], out: IO[str], err: IO[str]) -> int:
    """``mailmaps check-access``: the reply smtpd sends to a RCPT TO, and why."""
    parser = _parser("check-access", "say what Postfix's smtpd replies to a RCPT TO, and why")
    parser.add_argument(
        "--client",
        required=True,
        metavar="ADDR[,NAME]",
        help="the client's address and host name (default name: unknown)",
    )
    parser.add_argument("--reverse-name", metavar="NAME", help="the unverified client name")
    parser.add_argument("--helo", metavar="NAME", help="the HELO/EHLO argument")
    parser.add_argument("--sasl-login", metavar="NAME", help="the SASL login name")
    parser.add_argument(
        "--sender", default="", metavar="ADDR", help="the MAIL FROM address (default: <>)"
    )
    parser.add_argument("--recipient", required=True, metavar="ADDR", help="the RCPT TO address")
    parser.add_argument("--json", action="store_true", help="print the decision as JSON")
    args = parser.parse_args(argv)
    address, _, name = args.client.partition(",")
    address = address.strip().strip("[]")
    if not address:
        raise Fatal("--client: need an address")
    session = Session(
        client_address=address,
        client_name=name.strip() or "unknown",
        reverse_client_name=args.reverse_name,
        helo=args.helo,
        sasl_username=args.sasl_login,
        sender=_smtp_address(args.sender),
        recipient=_smtp_address(args.recipient),
    )
    directory = _config_dir(args.config_dir)
    try:
        policy = AccessPolicy.from_directory(directory)
    except (MailmapsError, OSError) as exc:
        raise Fatal(str(exc)) from None
    with policy:
        decision = policy.decide(session, trace=True)
    if args.json:
        out.write(decision.to_json() + "\n")
    else:
        _show_decision(decision, out, out.isatty() and os.environ.get("NO_COLOR") is None)
    return 0


# --- the command ---------------------------------------------------------------------------

#: Subcommand name -> function of (arguments, stdout, stderr) returning the exit status.
COMMANDS: dict[str, Callable[[Sequence[str], IO[str], IO[str]], int]] = {
    "postconf": postconf,
    "resolve": resolve,
    "check-access": check_access,
}


def _parser(name: str, description: str) -> argparse.ArgumentParser:
    """A subcommand's parser, with the ``-c DIR`` option every one of them takes."""
    parser = argparse.ArgumentParser(
        prog=f"mailmaps {name}", description=description, add_help=name != "postconf"
    )
    parser.add_argument("-c", dest="config_dir", metavar="DIR", help="configuration directory")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``mailmaps`` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in COMMANDS:
        names = ", ".join(COMMANDS)
        sys.stderr.write(f"usage: mailmaps {{{names}}} [arguments]\n")
        return 2
    name = args[0]
    try:
        with postfix_messages(f"mailmaps {name}"):
            try:
                return COMMANDS[name](args[1:], sys.stdout, sys.stderr)
            finally:
                sys.stdout.flush()  # what was printed comes before a fatal message
    except SystemExit as exc:
        return int(exc.code or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
