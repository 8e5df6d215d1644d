"""`advance --watch`: re-evaluate until the gate decides, with a live table."""

from __future__ import annotations

import time
from typing import Any

from rich.live import Live

from rolloutctl import engine
from rolloutctl.cli import common, terminal
from rolloutctl.cli.render import console, gate_view
from rolloutctl.errors import ExitCode


def watch_advance(name: str, interval: float, timeout: float | None, force: bool) -> Any:
    started = time.monotonic()
    err = console(stderr=True)
    outcome = None
    # Transient: the live table leaves stderr when the gate decides, and the final one is
    # printed once, on stdout, with the verdict.
    with Live(console=err, refresh_per_second=2, transient=True) as live:
        while True:
            outcome = engine.advance(common.context(), name, force=force)
            if outcome.gate is not None:
                live.update(gate_view(outcome.gate, err.width))
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
