"""The regular-expression engines Postfix's pattern tables run, called the way Postfix calls them.

* :mod:`~mailmaps.engines.posix`: the C library's ``regcomp()``/``regexec()`` in the C locale, which
  is what ``regexp:`` tables use (POSIX leftmost-longest matching, ``[[:alpha:]]``, BRE under the
  ``x`` flag).
* :mod:`~mailmaps.engines.pcre2`: the system's PCRE2 library in byte mode, which is what ``pcre:``
  tables use.
* :mod:`~mailmaps.engines.prefilter`: a multi-pattern accelerator (Hyperscan/Vectorscan) that finds,
  in one pass over a key, every rule of a large table that might match, so that the exact engine
  runs only on those.

Both exact engines are reached through :mod:`ctypes`, so the answers are those of the very
libraries Postfix links against.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["CompileError", "Match"]


class CompileError(ValueError):
    """A pattern did not compile; the message is the library's own."""


@dataclass(frozen=True, slots=True)
class Match:
    """The byte offsets of a match: ``spans[0]`` is the whole match, ``spans[n]`` group n.

    A group that did not take part in the match has the span ``(-1, -1)``.
    """

    spans: tuple[tuple[int, int], ...]
