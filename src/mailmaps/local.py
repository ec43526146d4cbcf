"""What local(8) does with a recipient, decided without delivering anything.

This follows local(8) in address verification mode (``sendmail -bv``; ``src/local/``), where
every step runs except the delivery itself, which is reported instead:

* ``recipient.c``: the local part is case-folded and split at ``recipient_delimiter``
  (an extension with ``/`` is dropped); an empty user is ``null username``;
* ``local.c`` ``deliver_switch()``: ``\\user`` goes straight to the mailbox; otherwise
  ``alias_maps`` are searched for ``user+ext``, then ``user``; a member of a list with an
  ``owner-`` alias, or of a ``.forward`` or ``:include:`` file, that names a local user is
  forwarded (re-submitted) rather than delivered in-process;
* ``alias.c``, ``token.c``, ``include.c``, ``dotforward.c``: alias values and file contents
  are address lists whose members are addresses, ``|command``, ``/file``, ``~/file`` or
  ``:include:/path``; commands and files are reported ("delivers to command: ...") and allowed
  only from the sources ``allow_mail_to_commands``/``allow_mail_to_files`` name;
* ``mailbox.c``: ``mailbox_transport_maps``, ``mailbox_transport``, the passwd lookup,
  ``mailbox_command_maps``, ``mailbox_command``, ``home_mailbox`` (``Maildir/``), the spool;
* ``unknown.c``: ``fallback_transport_maps``, ``fallback_transport``, ``luser_relay``, then
  ``unknown user: "name"``.

Nothing is executed or written: ``|command`` and ``/file`` targets are only named, and files
(``.forward``, ``:include:``) are only read.
"""

from __future__ import annotations

import os
import pwd
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from mailmaps.errors import LookupFailed
from mailmaps.macros import MacroStatus, mac_expand
from mailmaps.rfc822 import TokenType, internalize, parse_nodes
from mailmaps.search import split_addr

__all__ = [
    "Delivery",
    "LocalAgent",
    "LocalSettings",
    "PasswdEntry",
    "passwd_lookup",
]

Status = Literal["deliverable", "undeliverable"]

#: The characters ``forward_expansion_filter`` allows by default; others become ``_``.
DEFAULT_EXPANSION_FILTER = (
    "1234567890!@%-_=+:,./abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)
_MAX_LEVEL = 100

# Where an address came from: local(8)'s EXPAND_TYPE_* (allow_mail_to_* name them).
_ALIAS, _FORWARD, _INCLUDE = "alias", "forward", "include"


@dataclass(frozen=True, slots=True)
class Delivery:
    """One line of a delivery status report: a final recipient and its outcome.

    :ivar recipient: the final recipient (internal form), as the report names it.
    :ivar status: ``deliverable`` or ``undeliverable``.
    :ivar dsn: the enhanced status code.
    :ivar text: the report's words ("delivers to mailbox", ``unknown user: "bob"``).
    :ivar transport: the master.cf service that decided (``local``), or the one the agent
        hands the recipient to (``mailbox_transport``).
    """

    recipient: str
    status: Status
    dsn: str
    text: str
    transport: str = "local"


@dataclass(frozen=True, slots=True)
class PasswdEntry:
    """A passwd entry: what local(8) needs of a user."""

    name: str
    uid: int
    gid: int
    home: str
    shell: str


def passwd_lookup(name: str) -> PasswdEntry | None:
    """The machine's passwd entry for ``name`` (``getpwnam``), or ``None``."""
    try:
        return _entry(pwd.getpwnam(name))
    except (KeyError, UnicodeEncodeError, ValueError):
        return None


def _entry(entry: pwd.struct_passwd) -> PasswdEntry:
    return PasswdEntry(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir, entry.pw_shell)


@dataclass(frozen=True, slots=True)
class LocalSettings:
    """The main.cf parameters local(8) decisions depend on (expanded values)."""

    local_transport: str = "local"
    myhostname: str = "localhost"
    recipient_delimiter: str = ""
    propagate_unmatched_extensions: frozenset[str] = frozenset({"canonical", "virtual"})
    owner_request_special: bool = True
    expand_owner_alias: bool = False
    allow_mail_to_commands: frozenset[str] = frozenset({_ALIAS, _FORWARD})
    allow_mail_to_files: frozenset[str] = frozenset({_ALIAS, _FORWARD})
    forward_path: Sequence[str] = (
        "$home/.forward${recipient_delimiter}${extension}",
        "$home/.forward",
    )
    forward_expansion_filter: str = DEFAULT_EXPANSION_FILTER
    luser_relay: str = ""
    mail_spool_directory: str = "/var/mail"
    home_mailbox: str = ""
    mailbox_command: str = ""
    mailbox_transport: str = ""
    fallback_transport: str = ""


#: A table lookup: a key -> the value, or ``None``; raises LookupFailed when the table fails.
Lookup = Callable[[str], str | None]
#: ``(recipient) -> (transport, recipient)`` after rewriting and resolving, or a Delivery
#: that ends the branch (resolver failure, bad syntax).
ResolveAddress = Callable[[str], "tuple[str, str] | Delivery"]
#: Canonicalize an address in the local context (``canon_addr_internal()``).
Canonicalize = Callable[[str], str]


@dataclass(frozen=True, slots=True)
class LocalTables:
    """The tables local(8) consults; ``None`` for a parameter left empty."""

    aliases: Lookup | None = None
    mailbox_transport: Lookup | None = None
    mailbox_command: Lookup | None = None
    fallback_transport: Lookup | None = None


@dataclass(frozen=True, slots=True)
class _State:
    """local(8)'s per-branch state; copied, never shared, as the C code passes it by value."""

    address: str
    level: int = 0
    exp_type: str = ""
    exp_from: str | None = None
    owner: str | None = None
    unmatched: str | None = None
    local: str = ""
    user: str = ""
    domain: str = ""
    extension: str | None = None
    home: str | None = None
    shell: str | None = None
    uid: int = 0


@dataclass
class _Run:
    """One delivery request: its duplicate filter and the outcomes so far."""

    seen: set[str] = field(default_factory=set)
    out: list[Delivery] = field(default_factory=list)

    def been_here(self, key: str) -> bool:
        if key in self.seen:
            return True
        self.seen.add(key)
        return False


class LocalAgent:
    """local(8)'s decisions for the recipients of one configuration.

    :param resolve: rewrites and resolves an address found in an alias, ``.forward`` or
        ``:include:`` file, as local(8) asks trivial-rewrite to.
    :param canonicalize: qualifies an owner- alias as trivial-rewrite does.
    :param passwd: the user database (default: the machine's).
    """

    def __init__(
        self,
        settings: LocalSettings,
        tables: LocalTables,
        *,
        resolve: ResolveAddress,
        canonicalize: Canonicalize,
        passwd: Callable[[str], PasswdEntry | None] = passwd_lookup,
    ) -> None:
        self.settings = settings
        self.tables = tables
        self.resolve = resolve
        self.canonicalize = canonicalize
        self.passwd = passwd

    def deliver(self, recipients: Sequence[str]) -> list[Delivery]:
        """The outcomes for recipients (internal form) that one delivery request carries."""
        run = _Run()
        for recipient in recipients:
            self._recipient(run, _State(recipient))
        return run.out

    # --- recipient.c -----------------------------------------------------------------------

    def _recipient(self, run: _Run, state: _State) -> None:
        state = replace(state, level=state.level + 1)
        if run.been_here(f"recipient {state.level} {state.address}"):
            return
        folded = state.address.lower()
        local, at, domain = folded.rpartition("@")
        if not at:
            local, domain = folded, ""
        user, extension = split_addr(
            local,
            self.settings.recipient_delimiter,
            owner_request_special=self.settings.owner_request_special,
        )
        if extension is not None and "/" in extension:
            extension = None
            local = user
        state = replace(
            state, local=local, user=user, domain=domain, extension=extension, unmatched=extension
        )
        if not user:
            self._bounce(run, state, "5.1.3", f'null username in "{state.address}"')
            return
        self._switch(run, state)

    # --- local.c ---------------------------------------------------------------------------

    def _switch(self, run: _Run, state: _State) -> None:
        state = replace(state, level=state.level + 1)
        if state.address.startswith("\\"):
            state = replace(
                state,
                address=state.address[1:],
                local=state.local[1:],
                user=state.user[1:],
            )
            if not self._mailbox(run, state):
                self._unknown(run, state)
            return
        state = replace(state, unmatched=None)
        if self._alias(run, state, state.local):
            return
        if state.extension is not None:
            if "alias" in self.settings.propagate_unmatched_extensions:
                state = replace(state, unmatched=state.extension)
            if self._alias(run, state, state.user):
                return
            state = replace(state, unmatched=state.extension)
        if state.owner is not None and state.owner.lower() != state.user.lower():
            self._indirect(run, state)
            return
        if state.exp_type == _INCLUDE:
            self._indirect(run, state)
            return
        if not self._dotforward(run, state) and not self._mailbox(run, state):
            self._unknown(run, state)

    # --- alias.c ---------------------------------------------------------------------------

    def _alias(self, run: _Run, state: _State, name: str) -> bool:
        state = replace(state, level=state.level + 1)
        if state.exp_from is not None and state.exp_from.lower() == name.lower():
            return False
        if state.level > _MAX_LEVEL:
            self._bounce(run, state, "5.4.6", f"alias database loop for {name}")
            return True
        state = replace(state, exp_from=name)
        aliases = self.tables.aliases
        if aliases is None:
            return False
        try:
            value = aliases(name)
        except LookupFailed:
            self._defer(run, state, "4.3.0", "alias database unavailable")
            return True
        if value is None:
            return False
        state = replace(state, exp_type=_ALIAS, home=None, shell=None, uid=0)
        if self.settings.owner_request_special:
            owner_name = f"owner-{name}"
            try:
                owner_rhs = aliases(owner_name)
            except LookupFailed:
                self._defer(run, state, "4.3.0", "alias database unavailable")
                return True
            if owner_rhs is not None:
                chosen = owner_rhs if self.settings.expand_owner_alias else owner_name
                state = replace(state, owner=self.canonicalize(chosen))
        if self._token_string(run, state, value) < 1:
            self._defer(run, state, "4.3.0", "alias database unavailable")
        return True

    # --- token.c ---------------------------------------------------------------------------

    def _token_string(self, run: _Run, state: _State, text: str) -> int:
        count = 0
        tree = parse_nodes(text)
        for node in tree if tree is not None else ():
            if node.type is TokenType.ADDR:
                count += 1
                self._token(run, state, internalize(node.head), node.head is None)
        return count

    def _token(self, run: _Run, state: _State, target: str, empty: bool) -> None:
        if target.startswith("/"):
            self._file(run, state, target)
        elif target.startswith("~"):
            if target[1:2] != "/" or state.home is None:
                self._bounce(run, state, "5.3.5", "mail system configuration error")
            elif state.home == "/":
                self._file(run, state, target[1:])
            else:
                self._file(run, state, state.home + target[1:])
        elif target.startswith("|"):
            if state.exp_type not in self.settings.allow_mail_to_commands:
                self._bounce(run, state, "5.7.1", "mail to command is restricted")
            else:
                self._command(run, state, target[1:])
        elif target[:9].lower() == ":include:":
            self._include(run, state, target[9:])
        else:
            self._resolve_tree(run, state, target)

    # --- resolve.c, indirect.c -------------------------------------------------------------

    def _resolve_tree(self, run: _Run, state: _State, address: str) -> None:
        state = replace(state, level=state.level + 1)
        resolved = self.resolve(address)
        if isinstance(resolved, Delivery):
            run.out.append(replace(resolved, recipient=state.address))
            return
        transport, recipient = resolved
        if state.unmatched is not None:
            delimiter = state.local[len(state.user) : len(state.user) + 1]
            at = recipient.rfind("@")
            if at < 0:
                recipient = recipient + delimiter + state.unmatched
            else:
                recipient = recipient[:at] + delimiter + state.unmatched + recipient[at:]
        state = replace(state, address=recipient)
        if transport == self.settings.local_transport:
            self._recipient(run, state)
        else:
            self._indirect(run, state)

    def _indirect(self, run: _Run, state: _State) -> None:
        if run.been_here(f"indirect {state.address}"):
            return
        self._sent(run, state, "2.0.0", f"forwards to {state.address}")

    # --- command.c, file.c, include.c --------------------------------------------------------

    def _command(self, run: _Run, state: _State, command: str) -> None:
        self._sent(run, state, "2.0.0", f"delivers to command: {command}")

    def _file(self, run: _Run, state: _State, path: str) -> None:
        if run.been_here(f"file {state.uid} {path}"):
            return
        if state.exp_type not in self.settings.allow_mail_to_files:
            self._bounce(run, state, "5.7.1", "mail to file is restricted")
            return
        self._sent(run, state, "2.0.0", f"delivers to file: {path}")

    def _include(self, run: _Run, state: _State, path: str) -> None:
        state = replace(state, level=state.level + 1)
        if run.been_here(f"include {state.uid} {path}"):
            return
        state = replace(state, exp_from=state.local)
        config_error = "mail system configuration error"
        if not path.startswith("/"):
            self._bounce(run, state, "5.3.5", config_error)
            return
        try:
            info = os.stat(path)
        except OSError:
            self._bounce(run, state, "5.3.5", config_error)
            return
        if not stat.S_ISREG(info.st_mode) or info.st_mode & stat.S_IWOTH:
            self._bounce(run, state, "5.3.5", config_error)
            return
        state = replace(state, exp_type=_INCLUDE)
        if state.uid == 0:
            owner = _passwd_by_uid(info.st_uid)
            if owner is None:
                self._defer(run, state, "4.3.5", config_error)
                return
            if owner.uid != 0:
                state = replace(state, home=owner.home, shell=owner.shell, uid=owner.uid)
        if state.owner is None:
            state = replace(state, owner=state.address)
        try:
            lines = _read_lines(path)
        except OSError:
            self._bounce(run, state, "5.3.5", config_error)
            return
        if "include" not in self.settings.propagate_unmatched_extensions:
            state = replace(state, unmatched=None)
        for line in lines:
            if not line.startswith("#"):
                self._token_string(run, state, line)

    # --- dotforward.c ----------------------------------------------------------------------

    def _dotforward(self, run: _Run, state: _State) -> bool:
        state = replace(state, level=state.level + 1)
        if not self.settings.forward_path:
            return False
        entry = self.passwd(state.user)
        if entry is None:
            return False
        state = replace(
            state,
            home=entry.home,
            shell=entry.shell,
            uid=entry.uid,
            exp_type=_FORWARD,
            owner=state.user,
        )
        found_path = None
        for pattern in self.settings.forward_path:
            path, undefined, used_extension = self._expand(
                pattern, state, self.settings.forward_expansion_filter
            )
            if undefined:
                continue
            try:
                info = os.lstat(path)
            except OSError:
                continue
            found_path = path
            if used_extension or "forward" not in self.settings.propagate_unmatched_extensions:
                state = replace(state, unmatched=None)
            break
        if found_path is None:
            return False
        if run.been_here(f"forward {found_path}"):
            return f"forward-done {found_path}" in run.seen
        state = replace(state, exp_from=state.local)
        if not stat.S_ISREG(info.st_mode):
            return False
        if info.st_uid not in (0, entry.uid) or info.st_mode & stat.S_IWOTH:
            return False
        try:
            lines = _read_lines(found_path)
        except OSError:
            return False
        count = 0
        for line in lines:
            if not line.startswith("#"):
                count += self._token_string(run, state, line)
        if count > 0:
            run.seen.add(f"forward-done {found_path}")
            return True
        return False

    # --- mailbox.c, unknown.c --------------------------------------------------------------

    def _mailbox(self, run: _Run, state: _State) -> bool:
        s, t = self.settings, self.tables
        if run.been_here(f"mailbox {state.local}"):
            return True
        if t.mailbox_transport is not None:
            try:
                transport = t.mailbox_transport(state.user)
            except LookupFailed:
                self._defer(run, state, "4.3.0", "table lookup failure")
                return True
            if transport is not None:
                self._pass(run, state, transport)
                return True
        if s.mailbox_transport:
            self._pass(run, state, s.mailbox_transport)
            return True
        entry = self.passwd(state.user)
        if entry is None:
            return False
        state = replace(state, home=entry.home, shell=entry.shell, uid=entry.uid)
        command = None
        if t.mailbox_command is not None:
            try:
                command = t.mailbox_command(state.user)
            except LookupFailed:
                self._defer(run, state, "4.3.0", "table lookup failure")
                return True
        if command is None and s.mailbox_command:
            command = s.mailbox_command
        if command is not None:
            self._command(run, state, command)
        elif s.home_mailbox.endswith("/") or (
            not s.home_mailbox and s.mail_spool_directory.endswith("/")
        ):
            self._sent(run, state, "2.0.0", "delivers to maildir")
        else:
            self._sent(run, state, "2.0.0", "delivers to mailbox")
        return True

    def _unknown(self, run: _Run, state: _State) -> None:
        s, t = self.settings, self.tables
        if run.been_here(f"deliver_unknown {state.local}"):
            return
        if t.fallback_transport is not None:
            try:
                transport = t.fallback_transport(state.user)
            except LookupFailed:
                self._defer(run, state, "4.3.0", "table lookup failure")
                return
            if transport is not None:
                self._pass(run, state, transport)
                return
        if s.fallback_transport:
            self._pass(run, state, s.fallback_transport)
            return
        if s.luser_relay:
            state = replace(state, unmatched=None)
            target, _, _ = self._expand(s.luser_relay, state, None)
            if self.canonicalize(target) == state.address:
                self._bounce(run, state, "5.1.1", f'unknown user: "{state.user}"')
            else:
                self._resolve_tree(run, state, target)
            return
        if state.user.lower() in ("mailer-daemon", "postmaster"):
            self._sent(run, state, "2.0.0", "discarded")
            return
        self._bounce(run, state, "5.1.1", f'unknown user: "{state.user}"')

    # --- outcomes --------------------------------------------------------------------------

    def _pass(self, run: _Run, state: _State, transport: str) -> None:
        """The recipient goes to another transport (mailbox_transport, fallback_transport)."""
        run.out.append(Delivery(state.address, "deliverable", "", "", transport=transport))

    def _sent(self, run: _Run, state: _State, dsn: str, text: str) -> None:
        run.out.append(Delivery(state.address, "deliverable", dsn, text))

    def _bounce(self, run: _Run, state: _State, dsn: str, text: str) -> None:
        run.out.append(Delivery(state.address, "undeliverable", dsn, text))

    def _defer(self, run: _Run, state: _State, dsn: str, text: str) -> None:
        run.out.append(Delivery(state.address, "undeliverable", dsn, text))

    # --- local_expand.c --------------------------------------------------------------------

    def _expand(self, pattern: str, state: _State, allowed: str | None) -> tuple[str, bool, bool]:
        """Expand ``$user``, ``$home``, ``${extension}``... in ``pattern`` (``local_expand()``).

        :returns: the text, whether it is unusable (a syntax error, or a plain reference to an
            undefined attribute), and whether a defined extension was used.
        """
        delimiter = (
            state.local[len(state.user) : len(state.user) + 1]
            or (self.settings.recipient_delimiter[:1])
        )
        values: dict[str, str | None] = {
            "user": state.user,
            "home": state.home,
            "shell": state.shell,
            "domain": state.domain,
            "local": state.local,
            "mailbox": state.local,
            "recipient": state.address,
            "extension": state.extension,
            "recipient_delimiter": delimiter or None,
        }
        used_extension = False

        def lookup(name: str, used: bool) -> str | None:
            nonlocal used_extension
            if name == "extension" and used:
                used_extension = True
            return values.get(name)

        text, status = mac_expand(pattern, lookup, allowed=allowed)
        unusable = bool(status & (MacroStatus.ERROR | MacroStatus.UNDEF))
        return text, unusable, used_extension


def _passwd_by_uid(uid: int) -> PasswdEntry | None:
    try:
        return _entry(pwd.getpwuid(uid))
    except KeyError:
        return None


def _read_lines(path: str) -> list[str]:
    with open(path, encoding="utf-8", errors="surrogateescape") as file:
        return [line.rstrip("\n") for line in file]
