"""CI outputs of the gate commands (`check`, `advance`): `--markdown FILE`, `--junit FILE`, and
the GitHub step summary appended to `$GITHUB_STEP_SUMMARY` when that variable is set.

The paths are checked before the gate runs, so `advance` never acts and then finds it cannot
write what CI asked for. The files are written for every outcome (pass, fail, inconclusive,
paused) before the process exits with the gate's own code. The step summary is a courtesy:
failing to append it is a warning and never changes the exit code."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rolloutctl.cli import common
from rolloutctl.errors import ExitCode, RolloutError, UsageError

STEP_SUMMARY_ENV = "GITHUB_STEP_SUMMARY"


@dataclass(frozen=True)
class CIOutputs:
    markdown: Path | None = None
    junit: Path | None = None

    def targets(self) -> list[tuple[str, Path]]:
        found = [("--markdown", self.markdown), ("--junit", self.junit)]
        return [(option, path) for option, path in found if path is not None]

    def check(self) -> None:
        """Refuse, before anything runs, a path that cannot be written (exit 2)."""
        targets = self.targets()
        if len(targets) == 2 and _same(targets[0][1], targets[1][1]):
            raise UsageError(f"--markdown and --junit both name {targets[0][1]}")
        for option, path in targets:
            folder = path.parent
            if path.is_dir():
                raise UsageError(
                    f"{option} {path}: is a directory", hint="give a file name inside it"
                )
            if not folder.is_dir():
                raise UsageError(
                    f"{option} {path}: folder {folder} does not exist",
                    hint="create the folder first, or give a path in an existing one",
                )
            if not os.access(folder, os.W_OK | os.X_OK):
                raise UsageError(f"{option} {path}: folder {folder} is not writable")

    def write(self, data: dict[str, Any]) -> None:
        """Write the requested files (atomically); an OSError names the path (exit 2)."""
        if not self.targets():
            return
        from rolloutctl.atomic import atomic_write
        from rolloutctl.report import ci

        render = {"--markdown": ci.markdown_summary, "--junit": ci.junit_xml}
        for option, path in self.targets():
            try:
                atomic_write(path, render[option](data).encode("utf-8"))
            except OSError as exc:
                raise UsageError(
                    f"{option} {path}: cannot write it ({exc.strerror or exc})",
                    hint="the gate's outcome above stands; fix the path and run again",
                ) from None

    def write_error(self, command: str, message: str, hint: str | None, code: int) -> None:
        """An error summary in each requested file: the command stopped before a verdict,
        and CI must not find a stale file, or none, from a run that failed."""
        from rolloutctl.atomic import atomic_write
        from rolloutctl.report import ci

        render = {"--markdown": ci.error_markdown, "--junit": ci.error_junit_xml}
        for option, path in self.targets():
            try:
                atomic_write(path, render[option](command, message, hint, code).encode("utf-8"))
            except OSError as exc:
                common.warn(f"{option} {path}: cannot write the error summary ({exc})")

    @contextmanager
    def on_error(self, command: str) -> Iterator[None]:
        """Run a gate command; on an error (not a verdict), write the error summaries and let
        the error go on to the entry point."""
        import typer

        try:
            yield
        except typer.Exit:
            raise
        except RolloutError as exc:
            self.write_error(command, exc.message, exc.hint, int(exc.exit_code))
            raise
        except Exception as exc:
            message = f"internal error: {type(exc).__name__}: {exc}"
            self.write_error(command, message, common.BUG_HINT, int(ExitCode.INTERNAL))
            raise


def _same(a: Path, b: Path) -> bool:
    return os.path.abspath(a) == os.path.abspath(b)


def append_step_summary(data: dict[str, Any]) -> None:
    """Append the Markdown summary to $GITHUB_STEP_SUMMARY, if set; never raises."""
    target = os.environ.get(STEP_SUMMARY_ENV)
    if not target:
        return
    try:
        from rolloutctl.report import ci

        text = ci.markdown_summary(data)
        with open(target, "a", encoding="utf-8") as handle:
            handle.write(text + "\n")
    except Exception as exc:  # a summary must never change the gate's exit code
        common.warn(f"could not append the step summary to ${STEP_SUMMARY_ENV} ({target}): {exc}")


def finish_gate(outcome: Any, json_flag: bool, outputs: CIOutputs) -> None:
    """Render a gate command's Outcome, write its CI outputs, exit with its code."""
    import typer

    data = outcome.to_dict()
    failure: UsageError | None = None
    try:
        outputs.write(data)
    except UsageError as exc:
        failure = exc
    code = common.render_outcome(outcome, json_flag)
    append_step_summary(data)
    sys.stdout.flush()  # the verdict is out before the charts are drawn
    common.run_deferred()
    if failure is not None:
        raise failure
    raise typer.Exit(code)
