"""header_checks and body_checks: what a table's answer means, and which checks fire on a message.

A ``header_checks`` or ``body_checks`` table maps a header or body line to an *action*, such as
``REJECT text``, ``WARN text`` or ``PREPEND header: value``.  :func:`parse_action` reads such an
answer the way Postfix 3.7 does (cleanup(8)'s ``cleanup_act()``, or for the SMTP client's
``smtp_header_checks``/``smtp_body_checks`` the smaller set of ``header_body_checks.c``):

* the command is the text up to the first space or tab, compared without regard to (ASCII) case;
  the text after it starts at the first non-blank character;
* ``PREPEND`` and ``REPLACE`` need text, and in a header table the text must itself be a header
  (``name: value``); ``FILTER`` needs ``transport:destination``; ``REDIRECT`` and ``BCC`` need
  an address with ``@``.  An action that breaks these rules is ignored with a warning;
* ``REJECT`` text may start with an enhanced status code: ``REJECT 4.7.1 try later`` defers
  the message instead of bouncing it; a ``2.x.x`` code is turned into ``4.x.x`` with a warning;
* anything else is an unknown command: a warning, and the line passes.

:class:`HeaderBodyChecks` applies the tables to a message read by :mod:`mailmaps.message`, with
cleanup(8)'s rules: MIME headers (``Content-*``, ``MIME-Version``) are looked up in
``mime_header_checks`` wherever they appear; an empty line is never looked up; body lines are
checked only in the first ``body_checks_size_limit`` bytes of each body segment; after
``REJECT``, ``DISCARD``, ``PASS`` or ``REDIRECT`` no further checks are made.

>>> report = check_message(
...     b"Subject: win money now\\n\\nclick here\\n",
...     header_checks="regexp:{ {/^Subject:.*money/ REJECT no spam, please} }",
... )
>>> [(hit.line, hit.action.kind.name) for hit in report.hits]
[('Subject: win money now', 'REJECT')]
>>> report.reject
'5.7.1 no spam, please'
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Final, Self

from mailmaps.errors import LookupFailed
from mailmaps.maps import MapList
from mailmaps.message import (
    DEFAULT_LINE_LENGTH_LIMIT,
    Event,
    KeyKind,
    MessageEnd,
    MessageKey,
    MessageSource,
    MimeDefect,
    MimeError,
    MimeLimits,
    is_header,
    parse_message,
)
from mailmaps.table import OpenOptions, Table
from mailmaps.text import printable

if TYPE_CHECKING:
    from mailmaps.config import MainConfig

__all__ = [
    "DEFAULT_BODY_CHECKS_SIZE_LIMIT",
    "Action",
    "ActionKind",
    "CheckReport",
    "Context",
    "Dialect",
    "HeaderBodyChecks",
    "Hit",
    "check_message",
    "parse_action",
]

#: Postfix 3.7's ``body_checks_size_limit``.
DEFAULT_BODY_CHECKS_SIZE_LIMIT: Final = 51200

_SPACE: Final = " \t\n\v\f\r"


class ActionKind(enum.Enum):
    """The actions of header_checks(5)."""

    REJECT = "REJECT"
    WARN = "WARN"
    INFO = "INFO"
    FILTER = "FILTER"
    PASS = "PASS"
    DISCARD = "DISCARD"
    HOLD = "HOLD"
    PREPEND = "PREPEND"
    REPLACE = "REPLACE"
    REDIRECT = "REDIRECT"
    BCC = "BCC"
    STRIP = "STRIP"
    IGNORE = "IGNORE"
    DUNNO = "DUNNO"
    OK = "OK"
    #: Not a command Postfix knows (in that dialect): a warning, and the line passes.
    UNKNOWN = "UNKNOWN"


class Context(enum.Enum):
    """What was looked up: a header or a body line (``PREPEND``/``REPLACE`` text rules differ)."""

    HEADER = "header"
    BODY = "body"


class Dialect(enum.Enum):
    """Which Postfix code interprets the action."""

    #: cleanup(8): ``header_checks``, ``mime_header_checks``, ``nested_header_checks``,
    #: ``body_checks`` — every action.
    CLEANUP = "cleanup"
    #: smtp(8): ``smtp_header_checks`` etc. (``header_body_checks.c``) — only ``WARN``, ``INFO``,
    #: ``REPLACE``, ``PREPEND``, ``STRIP``, ``IGNORE``, ``DUNNO`` and ``OK``.
    SMTP = "smtp"


_SMTP_KINDS: Final = frozenset(
    {
        ActionKind.WARN,
        ActionKind.INFO,
        ActionKind.REPLACE,
        ActionKind.PREPEND,
        ActionKind.STRIP,
        ActionKind.IGNORE,
        ActionKind.DUNNO,
        ActionKind.OK,
    }
)
_SILENT: Final = frozenset({ActionKind.IGNORE, ActionKind.DUNNO, ActionKind.OK, ActionKind.UNKNOWN})
_BY_NAME: Final = {kind.value: kind for kind in ActionKind if kind is not ActionKind.UNKNOWN}
_DSN = re.compile(r"[245]\.\d{1,3}\.\d{1,3}(?=[ \t\n\v\f\r]|\Z)")


@dataclass(frozen=True, slots=True)
class Action:
    """A parsed header/body check result.

    :ivar kind: the action.
    :ivar command: the command word as written (``"reject"``).
    :ivar text: the rest, from its first non-blank character (may be empty).
    :ivar value: the whole table result.
    :ivar warning: the warning Postfix logs about this action, if any (for example
        ``PREPEND action without text in header_checks map``).
    :ivar effective: whether the action takes effect; ``False`` for the malformed actions
        Postfix ignores and for unknown commands.
    """

    kind: ActionKind
    command: str
    text: str
    value: str
    warning: str | None = None
    effective: bool = True

    @property
    def reason(self) -> str | None:
        """For ``REJECT``: the reply text, with its status code (``"5.7.1 message content
        rejected"`` when the action has no text); ``None`` for other actions."""
        if self.kind is not ActionKind.REJECT:
            return None
        if not self.text:
            return "5.7.1 message content rejected"
        reason = _dsn_prepend("5.7.1", self.text)
        if reason[0] not in "45":
            reason = "4" + reason[1:]
        return reason

    @property
    def log_name(self) -> str | None:
        """The word Postfix logs for this action (``"warning"`` for ``WARN``), or ``None`` for
        the actions it does not log (``IGNORE``, ``DUNNO``, ``OK``, ignored actions)."""
        if not self.effective or self.kind in _SILENT:
            return None
        if self.kind is ActionKind.WARN:
            return "warning"
        return self.kind.name.lower()

    @property
    def defers(self) -> bool:
        """Whether this is a ``REJECT`` with a ``4.x.x`` code: the message is deferred."""
        reason = self.reason
        return reason is not None and reason.startswith("4")

    @property
    def drops_line(self) -> bool:
        """Whether the header or body line is removed (``STRIP``, ``IGNORE``)."""
        return self.kind in (ActionKind.STRIP, ActionKind.IGNORE)

    @property
    def stops_checks(self) -> bool:
        """Whether cleanup(8) makes no further header/body checks on the message after this
        (``REJECT``, ``DISCARD``, ``PASS``, and a valid ``REDIRECT``)."""
        return self.effective and self.kind in (
            ActionKind.REJECT,
            ActionKind.DISCARD,
            ActionKind.PASS,
            ActionKind.REDIRECT,
        )


def _dsn_prepend(default: str, text: str) -> str:
    """``dsn_prepend()``: keep a leading enhanced status code, else put ``default`` in front."""
    rest = text.lstrip(_SPACE)
    match = _DSN.match(rest)
    if match is None:
        return f"{default} {rest}"
    dsn = match.group()
    return f"{dsn} {rest[len(dsn) + 1 :].lstrip(_SPACE)}"


def _split(value: str) -> tuple[str, str]:
    end = len(value)
    for sep in " \t":
        i = value.find(sep)
        if 0 <= i < end:
            end = i
    return value[:end], value[end:].lstrip(_SPACE)


def _cut(text: str, limit: int) -> str:
    """``%.200s``: at most ``limit`` bytes."""
    data = text.encode("utf-8", "surrogateescape")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", "surrogateescape")


def parse_action(
    value: str,
    context: Context = Context.HEADER,
    *,
    map_class: str = "header_checks",
    dialect: Dialect = Dialect.CLEANUP,
) -> Action:
    """Interpret a header/body check table result as Postfix 3.7 does.

    :param value: the table's answer (``"REJECT no spam"``).
    :param context: whether a header or a body line was looked up.
    :param map_class: the parameter name, used in warnings (``"body_checks"``).
    :param dialect: cleanup(8)'s full set of actions, or the SMTP client's subset.
    """
    command, text = _split(value)
    upper = command.upper() if command.isascii() else ""
    kind = _BY_NAME.get(upper, ActionKind.UNKNOWN)
    if dialect is Dialect.SMTP and kind not in _SMTP_KINDS:
        kind = ActionKind.UNKNOWN
    if kind is ActionKind.UNKNOWN:
        word = "unsupported" if dialect is Dialect.SMTP else "unknown"
        return Action(
            kind, command, text, value, f"{word} command in {map_class} map: {value}", False
        )
    warning: str | None = None
    effective = True
    if kind in (ActionKind.PREPEND, ActionKind.REPLACE):
        if not text:
            warning = f"{kind.value} action without text in {map_class} map"
        elif context is Context.HEADER and not is_header(text):
            warning = (
                f'bad {kind.value} header text "{text}" in {map_class} map -- '
                'need "headername: headervalue"'
            )
    elif kind is ActionKind.FILTER:
        if not text:
            warning = f"missing FILTER command argument in {map_class} map"
        elif ":" not in text:
            warning = f"bad FILTER command {text} in {map_class} -- need transport:destination"
    elif kind is ActionKind.REDIRECT:
        if "@" not in text:
            warning = f'bad REDIRECT target "{text}" in {map_class} map -- need user@domain'
    elif kind is ActionKind.BCC:
        if "@" not in text:
            warning = f'bad BCC address "{text}" in {map_class} map -- need user@domain'
    elif kind is ActionKind.REJECT and text and _dsn_prepend("5.7.1", text)[0] not in "45":
        warning = f"bad DSN action in {text} -- need 4.x.x or 5.x.x"
    if warning is not None and kind is not ActionKind.REJECT:
        effective = False
    return Action(kind, command, text, value, warning, effective)


# -- applying checks to a message -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hit:
    """A header or body line that a check table matched.

    :ivar key: the header or body record, with its kind and offset.
    :ivar map_class: the parameter whose tables matched (``"mime_header_checks"``).
    :ivar value: the table's answer.
    :ivar action: the answer, interpreted.
    """

    key: MessageKey
    map_class: str
    value: str
    action: Action

    @property
    def line(self) -> str:
        """The header or body line as looked up."""
        return self.key.key

    @property
    def log_text(self) -> str | None:
        """What Postfix logs about this hit after the queue ID, as ``header_body_checks.c``
        words it: ``warning: header Subject: spam: text`` (the line cut to 200 bytes, control
        characters and non-ASCII shown as ``?``); ``None`` when nothing is logged."""
        name = self.action.log_name
        if name is None:
            return None
        where = "body" if self.key.kind is KeyKind.BODY else "header"
        text = self.action.reason if self.action.kind is ActionKind.REJECT else self.action.text
        line = f"{name}: {where} {_cut(self.line, 200)}"
        if text:
            line += f": {text}"
        return printable(line, False)


@dataclass(slots=True)
class CheckReport:
    """What the checks did to one message, as cleanup(8) would have it.

    :ivar hits: every line that matched, in message order.
    :ivar warnings: the warnings Postfix would log (malformed actions, table problems).
    :ivar mime_errors: the MIME problems seen while reading the message.
    :ivar reject: the reply text when the message is rejected or deferred.
    :ivar deferred: the message would be deferred (``REJECT 4.x.x``, or a table failed).
    :ivar discard: the message would be silently discarded.
    :ivar hold: the message would be put on hold.
    :ivar filter: the last valid ``FILTER`` destination.
    :ivar redirect: the last valid ``REDIRECT`` address.
    :ivar bcc: the ``BCC`` recipients added.
    :ivar prepended: the text of valid ``PREPEND`` actions, in order.
    """

    hits: list[Hit] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    mime_errors: MimeError = field(default_factory=lambda: MimeError(0))
    reject: str | None = None
    deferred: bool = False
    discard: bool = False
    hold: bool = False
    filter: str | None = None
    redirect: str | None = None
    bcc: list[str] = field(default_factory=list)
    prepended: list[str] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        """Whether the message would be accepted for delivery (not rejected, deferred or
        discarded; a held message is accepted)."""
        return self.reject is None and not self.deferred and not self.discard


#: Table lists as the check parameters take them: a main.cf-style list value
#: (``"regexp:/etc/postfix/header_checks"``), specs or open tables, or a :class:`MapList`.
Checks = str | MapList | Iterable[str | Table] | None

#: A ``mime_header_checks``/``nested_header_checks`` value that means "the header_checks tables"
#: (cleanup(8)'s default for both).
SAME_AS_HEADER_CHECKS: Final = "$header_checks"


class _Default(enum.Enum):
    """The parameter's Postfix default: ``$header_checks`` for cleanup(8), none for smtp(8)."""

    DEFAULT = "default"


class HeaderBodyChecks:
    """header_checks, mime_header_checks, nested_header_checks and body_checks, ready to apply.

    :param header_checks: tables for primary headers (``None`` or ``""``: none).
    :param mime_header_checks: tables for MIME headers; by default (and with
        ``"$header_checks"``) the header_checks tables, as cleanup(8) has it; with
        :attr:`Dialect.SMTP` none by default, as ``smtp_mime_header_checks`` is empty.
    :param nested_header_checks: tables for the headers of attached messages; defaults as for
        ``mime_header_checks``.
    :param body_checks: tables for body lines.
    :param dialect: cleanup(8) (``header_checks``) or smtp(8) (``smtp_header_checks``) rules.
    :param options: how to open tables given as specs.
    :param body_checks_size_limit: check body lines only this far into each body segment
        (0: no limit; cleanup(8) only).
    :param mime: parse MIME structure (``disable_mime_input_processing = no``).
    :param limits: the MIME engine's limits.
    """

    def __init__(
        self,
        header_checks: Checks = None,
        mime_header_checks: Checks | _Default = _Default.DEFAULT,
        nested_header_checks: Checks | _Default = _Default.DEFAULT,
        body_checks: Checks = None,
        *,
        dialect: Dialect = Dialect.CLEANUP,
        options: OpenOptions | None = None,
        body_checks_size_limit: int = DEFAULT_BODY_CHECKS_SIZE_LIMIT,
        mime: bool = True,
        limits: MimeLimits | None = None,
    ) -> None:
        self.dialect = dialect
        self.body_checks_size_limit = body_checks_size_limit
        self.mime = mime
        self.limits = limits or MimeLimits()
        self._owned: list[MapList] = []
        prefix = "smtp_" if dialect is Dialect.SMTP else ""
        try:
            primary = self._maps(header_checks, options, f"{prefix}header_checks")
            self.header_checks = primary
            self.mime_header_checks = self._inherit(
                mime_header_checks, primary, options, f"{prefix}mime_header_checks"
            )
            self.nested_header_checks = self._inherit(
                nested_header_checks, primary, options, f"{prefix}nested_header_checks"
            )
            self.body_checks = self._maps(body_checks, options, f"{prefix}body_checks")
        except BaseException:
            self.close()
            raise

    @classmethod
    def from_config(
        cls, config: MainConfig, *, dialect: Dialect = Dialect.CLEANUP
    ) -> HeaderBodyChecks:
        """The checks a main.cf configures (``header_checks`` ... or ``smtp_header_checks`` ...),
        with its ``body_checks_size_limit``, ``disable_mime_input_processing`` and MIME limits.
        """
        prefix = "smtp_" if dialect is Dialect.SMTP else ""

        def tables(name: str, default: str = "") -> str:
            return config.get(name) if config.raw(name) is not None else default

        default = "" if dialect is Dialect.SMTP else SAME_AS_HEADER_CHECKS
        size_limit = DEFAULT_BODY_CHECKS_SIZE_LIMIT
        if config.raw("body_checks_size_limit") is not None:
            size_limit = config.get_int("body_checks_size_limit")
        disable_mime = False
        if config.raw("disable_mime_input_processing") is not None:
            disable_mime = config.get_bool("disable_mime_input_processing")
        return cls(
            tables(f"{prefix}header_checks"),
            tables(f"{prefix}mime_header_checks", default),
            tables(f"{prefix}nested_header_checks", default),
            tables(f"{prefix}body_checks"),
            dialect=dialect,
            body_checks_size_limit=size_limit,
            mime=not disable_mime,
            limits=MimeLimits.from_config(config),
        )

    def _maps(self, checks: Checks, options: OpenOptions | None, title: str) -> MapList | None:
        if checks is None or isinstance(checks, MapList):
            return checks
        maps = MapList(checks, options, title=title)
        self._owned.append(maps)
        return maps if len(maps) else None

    def _inherit(
        self,
        checks: Checks | _Default,
        primary: MapList | None,
        options: OpenOptions | None,
        title: str,
    ) -> MapList | None:
        if checks is _Default.DEFAULT:
            return primary if self.dialect is Dialect.CLEANUP else None
        if isinstance(checks, str) and checks.strip() == SAME_AS_HEADER_CHECKS:
            return primary
        return self._maps(checks, options, title)

    def close(self) -> None:
        """Close the tables this object opened."""
        for maps in self._owned:
            maps.close()
        self._owned.clear()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _tables_for(self, key: MessageKey) -> tuple[MapList | None, str]:
        prefix = "smtp_" if self.dialect is Dialect.SMTP else ""
        kind = key.kind
        if kind is KeyKind.BODY:
            return self.body_checks, f"{prefix}body_checks"
        if kind is KeyKind.MIME or key.is_mime_header:
            return self.mime_header_checks, f"{prefix}mime_header_checks"
        if kind is KeyKind.NESTED:
            return self.nested_header_checks, f"{prefix}nested_header_checks"
        return self.header_checks, f"{prefix}header_checks"

    def check(
        self,
        message: MessageSource,
        *,
        line_length_limit: int | None = DEFAULT_LINE_LENGTH_LIMIT,
        strip_cr: bool = True,
    ) -> CheckReport:
        """Apply the checks to ``message`` and report what fires.

        :param line_length_limit: split long lines into records as the SMTP server does, so
            that long body lines are checked piecewise as cleanup(8) checks them (``None``:
            whole lines, as ``postmap -b`` looks them up).
        :param strip_cr: treat CRLF line ends as the SMTP server does (``False``: keep the
            ``\\r`` in every line, as ``postmap`` does).

        A table that fails is not an exception here: as in cleanup(8), it is a warning and the
        message is deferred.
        """
        report = CheckReport()
        for _ in self.walk(message, report, line_length_limit=line_length_limit, strip_cr=strip_cr):
            pass
        return report

    def walk(
        self,
        message: MessageSource,
        report: CheckReport | None = None,
        *,
        line_length_limit: int | None = DEFAULT_LINE_LENGTH_LIMIT,
        strip_cr: bool = True,
    ) -> Iterator[tuple[Event, Hit | None]]:
        """Every event of ``message`` (see :mod:`mailmaps.message`) with the check that fired
        on it, if any, in order; :meth:`check` without the summary, for tools that show the
        message annotated.  ``report``, if given, is filled in as :meth:`check` fills it.
        """
        if report is None:
            report = CheckReport()
        cleanup = self.dialect is Dialect.CLEANUP
        filtering = True  # CLEANUP_FLAG_FILTER
        stopped = False  # an error or DISCARD: cleanup(8) stops writing the body
        for event in parse_message(
            message,
            mime=self.mime,
            limits=self.limits,
            line_length_limit=line_length_limit,
            strip_cr=strip_cr,
        ):
            hit: Hit | None = None
            if isinstance(event, MimeDefect):
                report.mime_errors |= event.error
            elif isinstance(event, MessageEnd):
                self._finish(report)
            elif isinstance(event, MessageKey) and filtering:
                maps, map_class = self._tables_for(event)
                if maps is not None and not (
                    cleanup
                    and event.kind is KeyKind.BODY
                    and (stopped or 0 < self.body_checks_size_limit <= event.offset)
                ):
                    try:
                        value = maps.lookup(event.key)
                    except LookupFailed:
                        report.warnings.append(
                            f"{map_class} map lookup problem -- message not accepted, "
                            "try again later"
                        )
                        report.deferred = True
                        stopped = True
                        value = None
                    if value is not None:
                        context = Context.BODY if event.kind is KeyKind.BODY else Context.HEADER
                        action = parse_action(
                            value, context, map_class=map_class, dialect=self.dialect
                        )
                        hit = Hit(event, map_class, value, action)
                        report.hits.append(hit)
                        if action.warning is not None:
                            report.warnings.append(action.warning)
                        if cleanup:
                            stopped |= self._apply(report, action)
                            if action.stops_checks:
                                filtering = False
                        elif action.kind is ActionKind.PREPEND and action.effective:
                            report.prepended.append(action.text)
            yield event, hit

    def _finish(self, report: CheckReport) -> None:
        """cleanup(8) at the end of the message: MIME nesting beyond the limit is reported, and
        so rejected, when header checks are in use."""
        has_header_checks = any(
            maps is not None
            for maps in (self.header_checks, self.mime_header_checks, self.nested_header_checks)
        )
        if (
            self.dialect is Dialect.CLEANUP
            and self.mime
            and has_header_checks
            and MimeError.NESTING in report.mime_errors
            and report.reject is None
        ):
            report.reject = f"{MimeError.NESTING.dsn} {MimeError.NESTING.description}"

    @staticmethod
    def _apply(report: CheckReport, action: Action) -> bool:
        """Record a cleanup(8) action's effect; ``True`` when the body is no longer checked."""
        if not action.effective:
            return False
        kind = action.kind
        if kind is ActionKind.REJECT:
            report.reject = action.reason
            report.deferred = action.defers
            return True
        if kind is ActionKind.DISCARD:
            report.discard = True
            return True
        if kind is ActionKind.HOLD:
            if not report.discard:
                report.hold = True
        elif kind is ActionKind.FILTER:
            report.filter = action.text
        elif kind is ActionKind.REDIRECT:
            report.redirect = action.text
        elif kind is ActionKind.BCC:
            report.bcc.append(action.text)
        elif kind is ActionKind.PREPEND:
            report.prepended.append(action.text)
        return False


def check_message(
    message: MessageSource,
    *,
    header_checks: Checks = None,
    mime_header_checks: Checks | _Default = _Default.DEFAULT,
    nested_header_checks: Checks | _Default = _Default.DEFAULT,
    body_checks: Checks = None,
    dialect: Dialect = Dialect.CLEANUP,
    options: OpenOptions | None = None,
    line_length_limit: int | None = DEFAULT_LINE_LENGTH_LIMIT,
    strip_cr: bool = True,
) -> CheckReport:
    """Apply header/body checks to one message: a shortcut for :class:`HeaderBodyChecks`."""
    with HeaderBodyChecks(
        header_checks,
        mime_header_checks,
        nested_header_checks,
        body_checks,
        dialect=dialect,
        options=options,
    ) as checks:
        return checks.check(message, line_length_limit=line_length_limit, strip_cr=strip_cr)
