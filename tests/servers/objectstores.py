"""Remote request logs for the tests: a web server that serves a folder with byte ranges
(what a CDN or an object store's public URL does), and an S3-compatible server (moto's,
installed from the registry with the test extra). Both on 127.0.0.1, each its own process,
stopped by PID.

    python -m tests.servers.objectstores FOLDER PORT     # the web server alone
"""

from __future__ import annotations

import http.server
import io
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rolloutctl.envvars import overridden
from tests.servers.postgres import free_port, stop

_RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """A static file server that answers `Range: bytes=a-b` with 206 Partial Content (the
    standard library's answers 200 with the whole file). Query strings are ignored, as a
    presigned URL's are by the store once checked."""

    def send_head(self) -> Any:
        self.path = self.path.split("?", 1)[0]
        wanted = _RANGE.match(self.headers.get("Range", ""))
        local = self.translate_path(self.path)
        if wanted is None or not os.path.isfile(local):
            return super().send_head()
        size = os.path.getsize(local)
        start = int(wanted.group(1))
        end = min(int(wanted.group(2) or size - 1), size - 1)
        with open(local, "rb") as f:
            f.seek(start)
            body = f.read(max(0, end - start + 1))
        self.send_response(206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Last-Modified", self.date_time_string(int(os.path.getmtime(local))))
        self.end_headers()
        return io.BytesIO(body)

    def log_message(self, format: str, *args: Any) -> None:
        with open(os.environ.get("WEBFILES_LOG", os.devnull), "a") as log:
            log.write(f"{self.command} {self.path} {self.headers.get('Range', '-')}\n")


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], what: str) -> None:
    import socket

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    stop(proc)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within 30 s")


@dataclass
class WebFiles:
    """A folder served over HTTP; `log` lists the requests (method, path, range)."""

    folder: Path
    log: Path
    port: int = 0
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.port = self.port or free_port()
        env = {**os.environ, "WEBFILES_LOG": str(self.log)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.servers.objectstores", str(self.folder), str(self.port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=Path(__file__).resolve().parents[2],
        )
        _wait_for_port(self.port, self.proc, "the web server")

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)

    def requests(self) -> list[str]:
        return self.log.read_text().splitlines() if self.log.exists() else []


@dataclass
class S3Server:
    """moto's S3-compatible server; `env` is what a client needs to use it (the same
    variables a user sets for AWS or MinIO)."""

    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)

    def start(self) -> None:
        beside = Path(sys.executable).parent / "moto_server"  # the test virtualenv's
        binary = str(beside) if beside.exists() else shutil.which("moto_server") or "moto_server"
        self.port = self.port or free_port()
        self.proc = subprocess.Popen(
            [binary, "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for_port(self.port, self.proc, "moto_server")
        self.env = {
            "AWS_ACCESS_KEY_ID": "rolloutctl-test",
            "AWS_SECRET_ACCESS_KEY": "rolloutctl-test-secret",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{self.port}",
            "AWS_EC2_METADATA_DISABLED": "true",  # never ask an instance metadata address
        }

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)

    def upload(self, bucket: str, files: dict[str, Path]) -> None:
        """Create `bucket` and put each local file at its key."""
        with overridden(**self.env):
            import s3fs

            fs = s3fs.S3FileSystem(skip_instance_cache=True)
            fs.mkdir(bucket)
            for key, path in files.items():
                fs.put(str(path), f"{bucket}/{key}")


@dataclass
class GcsServer:
    """gcp-storage-emulator, in memory; `env` points gcsfs at it and keeps Google's auth
    library from looking for a metadata server anywhere but a closed loopback port."""

    port: int = 0
    proc: subprocess.Popen[bytes] | None = None
    env: dict[str, str] = field(default_factory=dict)

    def start(self) -> None:
        beside = Path(sys.executable).parent / "gcp-storage-emulator"
        binary = str(beside) if beside.exists() else "gcp-storage-emulator"
        self.port = self.port or free_port()
        self.proc = subprocess.Popen(
            [binary, "start", "--host", "127.0.0.1", "--port", str(self.port), "--in-memory"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait_for_port(self.port, self.proc, "gcp-storage-emulator")
        closed = f"127.0.0.1:{free_port()}"
        self.env = {
            "STORAGE_EMULATOR_HOST": f"http://127.0.0.1:{self.port}",
            "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",  # the emulator has no control API
            "NO_GCE_CHECK": "true",
            "GCE_METADATA_HOST": closed,
            "GCE_METADATA_IP": closed,
        }

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)

    def upload(self, bucket: str, files: dict[str, Path]) -> None:
        with overridden(**self.env):  # before the import: gcsfs reads its switches then
            import gcsfs

            fs = gcsfs.GCSFileSystem(skip_instance_cache=True)
            fs.mkdir(bucket)
            for key, path in files.items():
                fs.put(str(path), f"{bucket}/{key}")


def running(server: Any) -> Iterator[Any]:
    """Start a server for a fixture and stop it after, by PID."""
    server.start()
    try:
        yield server
    finally:
        server.stop()


if __name__ == "__main__":
    folder, port = sys.argv[1], int(sys.argv[2])
    os.chdir(folder)
    http.server.ThreadingHTTPServer(("127.0.0.1", port), RangeHandler).serve_forever()
