"""Text safe to print on a terminal: what a server, a playbook or an error message says
may carry escape sequences (a window title, a hyperlink, a cleared screen) that must never
reach the operator's terminal. Standard library only: every command's output goes through it."""

from __future__ import annotations

import re

_UNSAFE = re.compile(
    r"\x1b(?:\[[0-?]*[ -/]*[@-~]?"  # CSI: colours, cursor moves, clearing the screen
    r"|\][^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?"  # OSC: window title, hyperlinks, clipboard
    r"|[PX^_][^\x1b\x9c]*(?:\x1b\\|\x9c)?"  # DCS, SOS, PM, APC strings
    r"|[ -/]*[0-~]?)"  # the other escapes (character sets, reset)
    r"|[\x00-\x08\x0b-\x1f\x7f-\x9f]"  # every other C0 control but tab and newline, DEL, C1
)


def clean(text: str) -> str:
    """Text safe for a terminal: escape sequences and control characters (but tab and
    newline) removed."""
    return _UNSAFE.sub("", text)
