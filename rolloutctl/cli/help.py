"""One style for every command's help and usage, applied to the click command typer builds:
arguments and values in capitals named for what they are (`ROLLOUT`, `--every DURATION`,
`--out FILE`), boolean options as one flag without a printed default (`--watch`, not
`--watch / --no-watch [default: no-watch]`), and `--json` explained wherever it appears.
tests/cli/test_help.py reads every command's help against these rules."""

from __future__ import annotations

from typing import Any

# What each option's value is, by option name (an option that sets its own metavar keeps it).
METAVARS = {
    "--actor": "NAME",
    "--canary": "VARIANT",
    "--control": "VARIANT",
    "--canary-percent": "PERCENT",
    "--coverage": "FRACTION",
    "--start": "TIME",
    "--end": "TIME",
    "--now": "TIME",
    "--onset": "TIME",
    "--every": "DURATION",
    "--hours": "HOURS",
    "--interval": "SECONDS",
    "--timeout": "SECONDS",
    "--wait": "SECONDS",
    "--format": "FORMAT",
    "--junit": "FILE",
    "--markdown": "FILE",
    "--log": "PATH",
    "--out": "PATH",
    "--output": "NAME",
    "--rate": "PER_HOUR",
    "--reason": "TEXT",
    "--reports-dir": "DIR",
    "--state-dir": "DIR",
    "--workdir": "DIR",
    "--samples": "N",
    "--seed": "N",
    "--scenario": "NAME",
    "--stage": "STAGE",
}
ARGUMENTS = {"directory": "DIR", "playbooks": "PLAYBOOK", "rollouts": "ROLLOUT"}
JSON_HELP = "print one JSON object on stdout (schema: rolloutctl schema --output NAME)"
ARGUMENT_HELP = {
    "rollout": "the rollout's name (or its playbook file)",
    "playbook": "the rollout playbook (YAML)",
}


def polish(command: Any) -> Any:
    """The command and its subcommands, restyled in place; returned for chaining."""
    for param in command.params:
        if param.param_type_name == "argument":
            param.metavar = param.metavar or ARGUMENTS.get(param.name, param.name.upper())
            param.help = param.help or ARGUMENT_HELP.get(param.name)
            _plain_argument(param)
            if param.name in ("rollout", "rollouts"):
                param._custom_shell_complete = lambda ctx, p, text: complete_rollout(text)
        elif getattr(param, "is_flag", False) or getattr(param, "count", False):
            param.secondary_opts = []
            param.show_default = False
            if "--json" in param.opts and not param.help:
                param.help = JSON_HELP
        elif param.metavar is None:
            param.metavar = METAVARS.get(param.opts[-1], "VALUE")
    for sub in getattr(command, "commands", {}).values():
        polish(sub)
    return command


def _plain_argument(param: Any) -> None:
    """`ROLLOUT` when required, `[ROLLOUT]` when not, `PLAYBOOK...` for several (typer would
    print `{rollout}`), and no `<str>` after its name in the list of arguments."""
    name = param.metavar + ("..." if param.nargs != 1 else "")
    shown = name if param.required else f"[{name}]"
    param._usage_display_name = lambda: shown
    param.display_type_rich = lambda ctx: ""
    param.display_type = lambda ctx: ""


def complete_rollout(incomplete: str) -> list[str]:
    """Shell completion of a ROLLOUT: the names in the state store (ROLLOUTCTL_STATE, or
    .rolloutctl), then playbook files in the current folder. Never fails: a store that
    cannot be read completes files only."""
    from pathlib import Path

    from rolloutctl.state.registry import choose, open_store

    names: list[str] = []
    try:
        store = open_store(choose(None, None))
        try:
            names = store.names()
        finally:
            store.close()
    except Exception:  # completion must never print an error into the shell
        names = []
    files = [str(p) for p in sorted(Path().glob("*.y*ml"))]
    return [c for c in [*names, *files] if c.startswith(incomplete)]
