"""Without the PostgreSQL driver a postgresql:// store is a usage error naming the install,
and a folder store never imports it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from rolloutctl.errors import ExitCode, UsageError
from rolloutctl.state.postgres import PostgresStore


def test_a_missing_driver_names_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # `import psycopg` raises ImportError
    with pytest.raises(UsageError) as caught:
        PostgresStore("postgresql://someone:secret@127.0.0.1:5432/db")
    assert caught.value.exit_code == ExitCode.USAGE
    assert caught.value.hint == "pip install 'rolloutctl[postgres]'"
    assert "secret" not in str(caught.value)


def test_the_folder_store_does_not_import_the_driver(tmp_path: object) -> None:
    code = (
        "import sys; from rolloutctl.state.registry import open_store; "
        f"open_store({str(tmp_path)!r}).names(); print('psycopg' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
