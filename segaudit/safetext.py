"""Text from the user's data (class names, ids, paths) shown or written as plain text.

Names and paths come from files segaudit does not control. Each place they leave
segaudit has its own way to be tricked, and one function here per way:

- :func:`printable`: terminals obey control characters (an escape sequence in a class
  name can rewrite the screen), so controls are shown as ``\\x1b``-style escapes;
- :func:`markup`: Rich reads ``[bold]`` as markup, so text is escaped before it is
  printed through a Rich console (and made printable);
- :func:`csv_cell`: spreadsheets run a cell that starts with ``=``, ``+``, ``-``, ``@``,
  a tab or a carriage return as a formula (CSV injection); such cells get a leading
  ``'``, as OWASP recommends, which spreadsheets show as text and hide. A cell that
  starts with ``'`` itself gets one too, so :func:`from_csv_cell` gives back exactly
  what was written (an id ``'=q`` stays ``'=q``, never ``=q``).
"""

from __future__ import annotations

import re
from typing import Any

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
GUARDED_PREFIXES = (*FORMULA_PREFIXES, "'")  # the guard itself, so it round-trips
_PLAIN_BRACKET = re.compile(r"(\\+)(?=\[(?![a-z#/@][^[]*?\]))")  # not a tag: see markup()
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def printable(text: Any) -> str:
    """``text`` with control characters (and line/paragraph separators) escaped."""

    def escape(match: re.Match[str]) -> str:
        code = ord(match.group())
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"

    return _CONTROL.sub(escape, str(text))


def markup(text: Any) -> str:
    """``text`` safe to print through Rich with markup on: shown exactly, never styled."""
    from rich.markup import escape

    # Rich's escape() covers brackets that look like tags; in plain text Rich also reads
    # "\[" as an escaped "[", so backslashes before any other "[" get one more.
    return _PLAIN_BRACKET.sub(r"\1\\", escape(printable(text)))


def csv_cell(value: Any) -> Any:
    """A CSV value a spreadsheet shows as text: formula-like strings get a leading ``'``.

    Numbers pass through unchanged (``-0.5`` is a number, not a formula); only strings
    are guarded.
    """
    if isinstance(value, str) and value.startswith(GUARDED_PREFIXES):
        return "'" + value
    return value


def from_csv_cell(text: str) -> str:
    """The original string of a cell written by :func:`csv_cell`."""
    if text.startswith("'") and text[1:].startswith(GUARDED_PREFIXES):
        return text[1:]
    return text
