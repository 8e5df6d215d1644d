"""The flagd file backend in this process: the exact definition it writes for each stage
shape, how it reads a split back (and why it cannot, for each hand edit), controls, and the
other flags of the file kept as they were."""

from __future__ import annotations

import errno
import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from rolloutctl.errors import BackendError
from rolloutctl.flags.file import SCHEMA, FileFlagBackend, fingerprint
from rolloutctl.flags.localfile import LocalFlagFile

SCOPE = {"in": [{"var": "language"}, ["en", "de"]]}


def _backend(tmp_path: Path, **extra: Any) -> FileFlagBackend:
    return FileFlagBackend(tmp_path / "flags.json", "answer-model", "v1", "v2", **extra)


def _file(tmp_path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((tmp_path / "flags.json").read_text())
    return data


def test_a_split_is_written_as_flagd_reads_it(tmp_path: Path) -> None:
    backend = _backend(tmp_path)
    split = backend.set_split(12.5, None, rollout="shop", stage="c1")
    assert _file(tmp_path) == {
        "$schema": SCHEMA,
        "flags": {
            "answer-model": {
                "state": "ENABLED",
                "variants": {"v1": "v1", "v2": "v2"},
                "defaultVariant": "v1",
                "targeting": {"fractional": [["v1", 87_500], ["v2", 12_500]]},
                "metadata": {
                    "managedBy": "rolloutctl",
                    "rollout": "shop",
                    "stage": "c1",
                    "canaryPercent": 12.5,
                },
            }
        },
    }
    assert (split.canary_percent, split.scope, split.owner, split.problem) == (
        12.5,
        None,
        "shop",
        None,
    )
    assert split.fingerprint == fingerprint(_file(tmp_path)["flags"]["answer-model"])
    assert backend.read() == split


def test_a_scoped_split_keeps_the_control_outside_the_scope(tmp_path: Path) -> None:
    backend = _backend(tmp_path)
    split = backend.set_split(50, SCOPE, rollout="shop", stage="c2")
    flag = _file(tmp_path)["flags"]["answer-model"]
    assert flag["targeting"] == {
        "if": [SCOPE, {"fractional": [["v1", 50_000], ["v2", 50_000]]}, "v1"]
    }
    assert (split.canary_percent, split.scope) == (50.0, SCOPE)


def test_another_targeting_key_hashes_it_and_requires_it(tmp_path: Path) -> None:
    backend = _backend(tmp_path, targeting_key="user_id")
    present = {"!==": [{"var": "user_id"}, None]}
    bucket = {"cat": [{"var": "$flagd.flagKey"}, {"var": "user_id"}]}
    backend.set_split(5, None, rollout="shop", stage="c1")
    unscoped = _file(tmp_path)["flags"]["answer-model"]["targeting"]
    assert unscoped == {
        "if": [present, {"fractional": [bucket, ["v1", 95_000], ["v2", 5_000]]}, "v1"]
    }
    read = backend.read()
    assert read is not None and (read.canary_percent, read.scope) == (5.0, None)
    backend.set_split(5, SCOPE, rollout="shop", stage="c1")
    scoped = _file(tmp_path)["flags"]["answer-model"]["targeting"]
    assert scoped["if"][0] == {"and": [present, SCOPE]}
    read = backend.read()
    assert read is not None and read.scope == SCOPE
    two = {"and": [present, SCOPE, {"==": [{"var": "tier"}, "pro"]}]}
    assert backend._scope_of(two) == {"and": [SCOPE, {"==": [{"var": "tier"}, "pro"]}]}
    assert backend._scope_of(SCOPE) == SCOPE  # not written by rolloutctl: left as it is


def test_zero_percent_and_rollback_write_no_split(tmp_path: Path) -> None:
    backend = _backend(tmp_path)
    backend.set_split(0, SCOPE, rollout="shop", stage="shadow")
    assert "targeting" not in _file(tmp_path)["flags"]["answer-model"]
    backend.set_split(20, None, rollout="shop", stage="c1")
    rolled = backend.rollback(rollout="shop", reason="bad")
    flag = _file(tmp_path)["flags"]["answer-model"]
    assert "targeting" not in flag and flag["defaultVariant"] == "v1"
    assert flag["metadata"] == {
        "managedBy": "rolloutctl",
        "rollout": "shop",
        "stage": "rolled-back",
        "canaryPercent": 0,
    }
    assert (rolled.canary_percent, rolled.owner) == (0.0, "shop")


def test_a_missing_file_or_flag_reads_as_none(tmp_path: Path) -> None:
    backend = _backend(tmp_path)
    assert backend.read() is None
    backend.set_control("other", True)
    assert backend.read() is None


def test_other_flags_of_the_file_are_kept(tmp_path: Path) -> None:
    other = {"state": "ENABLED", "variants": {"a": 1}, "defaultVariant": "a"}
    (tmp_path / "flags.json").write_text(json.dumps({"flags": {"other": other}}))
    backend = _backend(tmp_path)
    backend.set_split(10, None, rollout="shop", stage="c1")
    data = _file(tmp_path)
    assert data["flags"]["other"] == other and data["$schema"] == SCHEMA
    assert list(data["flags"]) == ["other", "answer-model"]


@pytest.mark.parametrize(
    ("flag", "percent", "problem"),
    [
        ({"state": "ENABLED", "defaultVariant": "v2"}, 100.0, None),
        ({"state": "ENABLED", "defaultVariant": "v1", "targeting": {}}, 0.0, None),
        (
            {"targeting": {"fractional": [["v1", 1], ["v2", 3]]}},
            75.0,
            None,
        ),
        (
            {"targeting": {"fractional": [["v1", 1], ["v2", 1], ["v2", 2]]}},
            75.0,
            None,
        ),
        ("text", None, "the flag is not a JSON object"),
        ({"state": "DISABLED"}, None, "it is not ENABLED (clients then serve their own"),
        ({"targeting": {"if": [True, {}]}}, None, "its `if` does not have the three parts"),
        (
            {"targeting": {"if": [True, {"fractional": []}, "v2"]}},
            None,
            "requests outside its scope do not get the control",
        ),
        ({"targeting": {"var": "x"}}, None, "its targeting is not a `fractional` split"),
        ({"targeting": {"fractional": "v2"}}, None, "its `fractional` is not a list"),
        ({"targeting": {"fractional": [["v1"]]}}, None, 'its `fractional` holds ["v1"]'),
        ({"targeting": {"fractional": [[1, 2]]}}, None, "its `fractional` holds [1, 2]"),
        ({"targeting": {"fractional": [["v1", True]]}}, None, "the weight of 'v1' is true"),
        ({"targeting": {"fractional": [["v1", "5"]]}}, None, "the weight of 'v1' is \"5\""),
        ({"targeting": {"fractional": [["v1", -1]]}}, None, "the weight of 'v1' is -1"),
        (
            {"targeting": {"fractional": [["v1", 1], ["v3", 1]]}},
            None,
            "its split names variants other than 'v1' and 'v2'",
        ),
        (
            {"targeting": {"fractional": [["v1", 0], ["v2", 0]]}},
            None,
            "its split's weights add up to zero",
        ),
    ],
)
def test_a_flag_edited_by_hand_reads_as_flagd_would_or_says_why_not(
    tmp_path: Path, flag: Any, percent: float | None, problem: str | None
) -> None:
    (tmp_path / "flags.json").write_text(json.dumps({"flags": {"answer-model": flag}}))
    split = _backend(tmp_path).read()
    assert split is not None
    assert split.fingerprint == fingerprint(flag)
    if problem is None:
        assert (split.canary_percent, split.problem) == (percent, None)
    else:
        assert math.isnan(split.canary_percent)
        assert split.problem is not None and split.problem.startswith(problem), split.problem


def test_the_owner_is_read_only_from_rolloutctls_metadata(tmp_path: Path) -> None:
    cases = [
        ({"managedBy": "rolloutctl", "rollout": "shop"}, "shop"),
        ({"managedBy": "someone", "rollout": "shop"}, None),
        ({"managedBy": "rolloutctl", "rollout": 7}, None),
        ("not a mapping", None),
    ]
    for metadata, owner in cases:
        flag = {"defaultVariant": "v1", "metadata": metadata}
        (tmp_path / "flags.json").write_text(json.dumps({"flags": {"answer-model": flag}}))
        split = _backend(tmp_path).read()
        assert split is not None and split.owner == owner, metadata


@pytest.mark.parametrize("text", ["[]", '{"flags": []}', '"x"'])
def test_a_file_that_is_not_a_flagd_definition_is_a_backend_error(
    tmp_path: Path, text: str
) -> None:
    (tmp_path / "flags.json").write_text(text)
    with pytest.raises(BackendError, match=r'expected a flagd definition \{"flags"'):
        _backend(tmp_path).read()


def test_a_number_json_cannot_hold_changes_nothing(tmp_path: Path) -> None:
    backend = _backend(tmp_path)
    backend.set_split(10, None, rollout="shop", stage="c1")
    before = (tmp_path / "flags.json").read_bytes()
    with pytest.raises(BackendError, match="a number JSON cannot say"):
        backend.set_split(20, {">": [{"var": "x"}, math.inf]}, rollout="shop", stage="c2")
    assert (tmp_path / "flags.json").read_bytes() == before


def test_controls_are_written_read_and_removed(tmp_path: Path) -> None:
    backend = _backend(tmp_path)
    backend.set_control("provider-off", True)
    backend.set_control("max-tokens", 512)
    flags = _file(tmp_path)["flags"]
    assert flags["provider-off"] == {
        "state": "ENABLED",
        "variants": {"on": True, "off": False},
        "defaultVariant": "on",
        "metadata": {"managedBy": "rolloutctl", "kind": "control"},
    }
    assert flags["max-tokens"]["variants"] == {"value": 512}
    assert flags["max-tokens"]["defaultVariant"] == "value"
    assert (backend.read_control("provider-off"), backend.read_control("max-tokens")) == (True, 512)
    backend.set_control("provider-off", False)
    assert backend.read_control("provider-off") is False
    assert _file(tmp_path)["flags"]["provider-off"]["defaultVariant"] == "off"
    backend.remove_control("provider-off")
    assert backend.read_control("provider-off") is None
    assert "provider-off" not in _file(tmp_path)["flags"]
    before = (tmp_path / "flags.json").stat().st_mtime_ns
    backend.remove_control("never-there")  # nothing to remove: the file is not rewritten
    assert (tmp_path / "flags.json").stat().st_mtime_ns == before
    (tmp_path / "flags.json").write_text(json.dumps({"flags": {"odd": "text"}}))
    assert backend.read_control("odd") is None


@pytest.mark.parametrize(
    ("make", "kind"),
    [
        (lambda p: p.mkdir(), "a folder"),
        (lambda p: os.mkfifo(p), "not a regular file"),
    ],
)
def test_a_flag_path_that_is_not_a_file_is_refused_before_reading_or_writing(
    tmp_path: Path, make: Callable[[Path], None], kind: str
) -> None:
    path = tmp_path / "flags.json"
    make(path)
    backend = _backend(tmp_path)
    message = f"flag file {path}: {kind}; nothing was read or changed"
    for act in (backend.read, lambda: backend.set_control("x", True)):
        with pytest.raises(BackendError) as err:
            act()
        assert err.value.message == message
        assert err.value.hint == "point the flag section's `path:` at the flag file itself"


def test_a_flag_file_through_a_link_loop_cannot_be_read(tmp_path: Path) -> None:
    path = tmp_path / "flags.json"
    path.symlink_to(path)
    with pytest.raises(BackendError) as err:
        _backend(tmp_path).read()
    assert err.value.message.startswith(f"flag file {path}: cannot read: ")


def _refusal(call: Callable[[], object]) -> BackendError:
    with pytest.raises(BackendError) as caught:
        call()
    return caught.value


def test_a_file_that_cannot_be_decoded_names_why_and_how_to_restore_it(tmp_path: Path) -> None:
    restore = "restore {} from version control, then run the command again"
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    error = _refusal(
        lambda: LocalFlagFile(bad, "flag file").parse(json.loads, (ValueError,), "JSON")
    )
    assert error.message == (
        f"flag file {bad}: not JSON (Expecting property name enclosed in double quotes: line 1 "
        "column 2 (char 1)); nothing was changed"
    )
    assert error.hint == restore.format(bad)
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    error = _refusal(
        lambda: LocalFlagFile(deep, "gateway config").parse(json.loads, (ValueError,), "JSON")
    )
    assert (
        error.message == f"gateway config {deep}: nested too deeply to be read; nothing was changed"
    )
    assert error.hint == restore.format(deep)


def test_a_file_that_cannot_be_read_or_written_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "afile").write_text("x")
    under_a_file = LocalFlagFile(tmp_path / "afile" / "flags.json", "flag file")
    error = _refusal(under_a_file.read_bytes)
    assert error.message == f"flag file {under_a_file.path}: cannot read: Not a directory"
    assert error.hint is None

    def full_disk(target: Path, data: bytes) -> None:  # a fault no real folder gives root
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("rolloutctl.flags.localfile.atomic_write", full_disk)
    path = tmp_path / "flags.json"
    error = _refusal(lambda: LocalFlagFile(path, "flag file").write_bytes(b"{}"))
    assert error.message == (
        f"flag file {path}: cannot write: No space left on device; it is unchanged"
    )
    assert error.hint == "check the folder's permissions and free space"
    assert not path.exists()
