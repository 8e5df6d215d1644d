"""How much the CLI says, set once per process from -q, -v, -vv and --no-color (standard
library only: the fast path configures it too).

- default: results, the gate's table and reasons, warnings;
- `-q`: the verdict line (the outcome's one-line message) and errors only;
- `-v`: also what is queried and how long each query took (`logging`, on stderr), and the
  traceback of an error; `-vv`: debugging detail (each query's text);
- `--no-color` (or NO_COLOR in the environment): no escape sequences at all.

On a terminal (stderr a tty, no -q, -v or --json) the step being worked on (a query, a look of
a backtest) is shown on one line of stderr that is replaced as work goes on and cleared before
the command prints anything: the same log records -v prints, as progress."""

from __future__ import annotations

import atexit
import logging
import os
import sys
from dataclasses import dataclass
from typing import Any


@dataclass
class Output:
    verbosity: int = 0
    quiet: bool = False
    no_color: bool = False


CURRENT = Output()
_LEVELS = {0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG}


def configure(verbosity: int, quiet: bool, no_color: bool, json: bool = False) -> None:
    CURRENT.verbosity, CURRENT.quiet, CURRENT.no_color = verbosity, quiet, no_color
    if no_color:
        os.environ["NO_COLOR"] = "1"  # rich, and any tool a command runs, read it
    logger = logging.getLogger("rolloutctl")
    level = logging.ERROR if quiet else _LEVELS[verbosity]
    logger.propagate = False
    for old in list(logger.handlers):
        logger.removeHandler(old)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter())
    handler.setLevel(level)
    logger.addHandler(handler)
    show_progress = level == logging.WARNING and not json and _is_terminal()
    if show_progress:
        logger.addHandler(_PROGRESS)
    logger.setLevel(logging.DEBUG if show_progress else level)


def _is_terminal() -> bool:
    return sys.stderr.isatty() and os.environ.get("TERM") != "dumb" and "CI" not in os.environ


def finished() -> None:
    """Clear the progress line for good: the command is about to print."""
    _PROGRESS.stop()


class _Progress(logging.Handler):
    """The step being worked on, one line on stderr (rich's status, imported on first use)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)  # INFO records, and DEBUG ones marked `progress`
        self.status: Any = None
        self.done = False
        atexit.register(self.stop)

    def emit(self, record: logging.LogRecord) -> None:
        if self.done or (record.levelno < logging.INFO and not getattr(record, "progress", 0)):
            return
        from rolloutctl.cli.terminal import clean

        text = clean(record.getMessage())
        if self.status is None:
            from rich.console import Console

            console = Console(stderr=True, highlight=False, emoji=False)
            self.status = console.status(text, spinner="dots")
            self.status.start()
        else:
            self.status.update(text)

    def stop(self) -> None:
        self.done = True
        if self.status is not None:
            self.status.stop()
            self.status = None


_PROGRESS = _Progress()


class _Formatter(logging.Formatter):
    """`[  412 ms] source requests: aggregation 0.38 s` — time since the command started."""

    def format(self, record: logging.LogRecord) -> str:
        from rolloutctl.cli.terminal import clean

        return f"[{record.relativeCreated:7.0f} ms] {clean(record.getMessage())}"
