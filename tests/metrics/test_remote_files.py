"""Request logs read where they are kept: Parquet on a web server (`https://…`) and in an
S3-compatible store (`s3://…`, moto's server), through the fsspec filesystems DuckDB is
given. The same rows give the same statistics as the local file at every look, a glob over a
bucket finds every part, only byte ranges are fetched, and what can go wrong (no such
object, a server that is down or goes away, no credentials) says what to fix without
showing a presigned URL's signature."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from rolloutctl import simulate
from rolloutctl.errors import BackendError, InvalidInput
from rolloutctl.metrics import remote
from rolloutctl.metrics.requestlog import RequestLogSource
from tests.conftest import PLAYBOOK, START, make_workspace
from tests.metrics.test_sql_source import assert_same, regression, request
from tests.servers.objectstores import GcsServer, S3Server, WebFiles, running

EVERY = timedelta(minutes=30)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two hours of a regression, as one Parquet file and as two hourly parts."""
    root = tmp_path_factory.mktemp("remote-logs")
    frame = regression(seed=5)
    simulate.write(frame, root / "log.parquet")
    (root / "parts").mkdir()
    first = frame["ts"] < START + timedelta(hours=1)
    simulate.write(frame[first], root / "parts" / "hour-09.parquet")
    simulate.write(frame[~first], root / "parts" / "hour-10.parquet")
    return root


@pytest.fixture(scope="module")
def web(folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WebFiles]:
    log = tmp_path_factory.mktemp("web") / "requests.log"
    yield from running(WebFiles(folder, log))


@pytest.fixture(scope="module")
def s3(folder: Path) -> Iterator[S3Server]:
    for server in running(S3Server()):
        server.upload(
            "ai-logs",
            {
                "requests/log.parquet": folder / "log.parquet",
                "requests/2026-03-02/hour-09.parquet": folder / "parts" / "hour-09.parquet",
                "requests/2026-03-02/hour-10.parquet": folder / "parts" / "hour-10.parquet",
            },
        )
        yield server


@pytest.fixture
def s3_env(s3: S3Server, monkeypatch: pytest.MonkeyPatch) -> S3Server:
    for key, value in s3.env.items():
        monkeypatch.setenv(key, value)
    remote._filesystem.cache_clear()  # credentials are read when the filesystem is built
    return s3


@pytest.fixture(autouse=True)
def fresh_filesystems() -> Iterator[None]:
    remote._filesystem.cache_clear()
    yield
    remote._filesystem.cache_clear()


def looks(paths: list[str]) -> list[Any]:
    return RequestLogSource("requests", paths).measure_series(request(), EVERY)


def assert_same_looks(local: list[Any], far: list[Any]) -> None:
    assert [t for t, _ in local] == [t for t, _ in far] and len(far) == 4
    for (_, a), (_, b) in zip(local, far, strict=True):
        assert_same(a, b)


def test_parquet_on_a_web_server_gives_the_local_statistics_at_every_look(
    folder: Path, web: WebFiles
) -> None:
    local = looks([str(folder / "log.parquet")])
    far = looks([f"{web.url}/log.parquet"])
    assert_same_looks(local, far)
    assert far[-1][1].arm_counts[None]["canary"] > 5_000
    ranged = [line for line in web.requests() if line.startswith("GET ") and "bytes=" in line]
    assert ranged, web.requests()  # read by byte ranges, not downloaded whole


def test_a_presigned_url_is_read_and_its_signature_never_shown(web: WebFiles) -> None:
    signed = f"{web.url}/log.parquet?X-Amz-Signature=deadbeefsecret&X-Amz-Expires=600"
    source = RequestLogSource("requests", [signed])
    assert source.measure(request()).arm_counts[None]["control"] > 0
    assert source.label == f"{web.url}/log.parquet"
    missing = RequestLogSource("requests", [signed.replace("log.parquet", "gone.parquet")])
    with pytest.raises(InvalidInput) as gone:
        missing.measure(request())
    assert "no file matches" in gone.value.message and "deadbeefsecret" not in gone.value.message


def test_parquet_in_s3_gives_the_local_statistics_and_a_glob_finds_every_part(
    folder: Path, s3_env: S3Server
) -> None:
    local = looks([str(folder / "log.parquet")])
    assert_same_looks(local, looks(["s3://ai-logs/requests/log.parquet"]))
    parts = RequestLogSource("requests", ["s3://ai-logs/requests/2026-03-02/*.parquet"])
    assert parts._files() == [
        "s3://ai-logs/requests/2026-03-02/hour-09.parquet",
        "s3://ai-logs/requests/2026-03-02/hour-10.parquet",
    ]
    assert_same(local[-1][1], parts.measure(request()))
    empty = RequestLogSource("requests", ["s3://ai-logs/requests/2026-03-03/*.parquet"])
    held = empty.measure(request())  # a day not written yet: no data, the gate holds
    assert (
        held.arm_counts[None] == {"control": 0, "canary": 0}
        and "no request-log file matches" in held.notes[0]
    )


@pytest.fixture(scope="module")
def gcs(folder: Path) -> Iterator[GcsServer]:
    for server in running(GcsServer()):
        server.upload("ai-logs", {"requests/log.parquet": folder / "log.parquet"})
        yield server


def test_parquet_in_google_cloud_storage_gives_the_local_statistics(
    folder: Path, gcs: GcsServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in gcs.env.items():
        monkeypatch.setenv(key, value)
    local = looks([str(folder / "log.parquet")])
    assert_same_looks(local, looks(["gs://ai-logs/requests/log.parquet"]))
    globbed = RequestLogSource("requests", ["gs://ai-logs/requests/*.parquet"])
    assert globbed._files() == ["gs://ai-logs/requests/log.parquet"]


def test_a_server_that_is_down_or_refuses_is_a_backend_error(
    s3: S3Server, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from tests.servers.postgres import free_port

    down = RequestLogSource("requests", [f"http://127.0.0.1:{free_port()}/log.parquet"])
    with pytest.raises(BackendError) as refused:
        down.measure(request())
    assert "cannot read http://127.0.0.1:" in refused.value.message

    for key, value in s3.env.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(key)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with pytest.raises(BackendError) as anonymous:
        RequestLogSource("requests", ["s3://ai-logs/requests/log.parquet"]).measure(request())
    assert "credentials" in anonymous.value.message.lower() + (anonymous.value.hint or "")
    assert "AWS_ACCESS_KEY_ID" in (anonymous.value.hint or "")


def test_a_web_server_lost_in_the_middle_of_a_gate_is_a_backend_error(
    folder: Path, tmp_path: Path
) -> None:
    server = WebFiles(folder, tmp_path / "requests.log")
    server.start()
    source = RequestLogSource("requests", [f"{server.url}/log.parquet"])
    try:
        from rolloutctl.metrics import requestlog

        original = requestlog.RequestLogSource._health

        def stop_after_opening(self: Any, *args: Any) -> Any:
            server.stop()  # the files were listed and their schema read: now it goes away
            return original(self, *args)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(requestlog.RequestLogSource, "_health", stop_after_opening)
            with pytest.raises(BackendError) as lost:
                source.measure(request())
    finally:
        server.stop()
    assert f"cannot read {server.url}/log.parquet" in lost.value.message


def test_check_through_the_cli_judges_the_bucket_and_the_server_as_it_judges_the_folder(
    folder: Path, s3_env: S3Server, web: WebFiles, tmp_path: Path
) -> None:
    verdicts = []
    places = {
        "local": "data/*.parquet",
        "bucket": "s3://ai-logs/requests/*.parquet",
        "server": f"{web.url}/log.parquet",
    }
    for name, path in places.items():
        (tmp_path / name).mkdir()
        ws = make_workspace(tmp_path / name)
        (ws.root / "data").mkdir()
        (ws.root / "data" / "log.parquet").write_bytes((folder / "log.parquet").read_bytes())
        ws.playbook.write_text(PLAYBOOK.replace('path: "data/*.parquet"', f'path: "{path}"'))
        assert ws.run("start", str(ws.playbook), now=START).code == 0
        r = ws.run("--json", "check", "shop-answers", now=START + timedelta(hours=2))
        assert r.code == 10, (name, r.out[:3000], r.err)  # the regression is caught either way
        data = r.json()
        verdicts.append([(m["name"], m["segment"], m["verdict"]) for m in data["metrics"]])
        assert s3_env.env["AWS_SECRET_ACCESS_KEY"] not in r.out + r.err
        assert r.err == "", r.err  # no client's leftovers (unclosed sessions, pending tasks)
    assert verdicts[0] == verdicts[1] == verdicts[2]
