"""`advance --watch`: re-evaluate until the gate decides, with a live table."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.live import Live

from rolloutctl import engine
from rolloutctl.cli import common, terminal
from rolloutctl.cli.render import gate_table
from rolloutctl.errors import ExitCode


def watch_advance(name: str, interval: float, timeout: float | None, force: bool) -> Any:
    started = time.monotonic()
    console = Console(stderr=True)
    outcome = None
    with Live(console=console, refresh_per_second=2, transient=False) as live:
        while True:
            outcome = engine.advance(common.context(), name, force=force)
            if outcome.gate is not None:
                live.update(gate_table(outcome.gate))
            if outcome.exit_code != ExitCode.GATE_INCONCLUSIVE:
                return outcome
            if timeout is not None and time.monotonic() - started + interval > timeout:
                return outcome
            live.console.print(
                terminal.clean(f"holding: {outcome.message}; next look in {interval:g}s"),
                markup=False,
                highlight=False,
            )
            time.sleep(interval)
