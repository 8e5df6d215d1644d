"""How much the CLI says, set once per process from -q, -v, -vv and --no-color (standard
library only: the fast path configures it too).

- default: results, the gate's table and reasons, warnings;
- `-q`: the verdict line (the outcome's one-line message) and errors only;
- `-v`: also what is queried and how long each query took (`logging`, on stderr), and the
  traceback of an error; `-vv`: debugging detail (each query's text);
- `--no-color` (or NO_COLOR in the environment): no escape sequences at all."""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass


@dataclass
class Output:
    verbosity: int = 0
    quiet: bool = False
    no_color: bool = False


CURRENT = Output()
_LEVELS = {0: logging.WARNING, 1: logging.INFO, 2: logging.DEBUG}


def configure(verbosity: int, quiet: bool, no_color: bool) -> None:
    CURRENT.verbosity, CURRENT.quiet, CURRENT.no_color = verbosity, quiet, no_color
    if no_color:
        os.environ["NO_COLOR"] = "1"  # rich, and any tool a command runs, read it
    logger = logging.getLogger("rolloutctl")
    logger.setLevel(logging.ERROR if quiet else _LEVELS[verbosity])
    logger.propagate = False
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(_Formatter())
        logger.addHandler(handler)


class _Formatter(logging.Formatter):
    """`[  412 ms] source requests: aggregation 0.38 s` — time since the command started."""

    def format(self, record: logging.LogRecord) -> str:
        from rolloutctl.cli.terminal import clean

        return f"[{record.relativeCreated:7.0f} ms] {clean(record.getMessage())}"
