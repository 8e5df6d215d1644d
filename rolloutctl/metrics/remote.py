"""Request logs in object stores and on web servers: `s3://`, `gs://`, `https://` paths.

DuckDB reads them through fsspec filesystems registered on its connection (its own httpfs
extension is downloaded at run time, which an offline machine cannot do). Each scheme's
filesystem is an optional install, imported only when a path uses it; credentials come from
the environment the way each client reads them (AWS_ACCESS_KEY_ID, AWS_PROFILE,
AWS_ENDPOINT_URL...; GOOGLE_APPLICATION_CREDENTIALS). Parquet is read by ranges: only the
columns and row groups a query needs cross the network.

A URL is shown without its query string or user info (a presigned URL's signature is a
credential)."""

from __future__ import annotations

import email.utils
import glob
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from rolloutctl import extras
from rolloutctl.errors import BackendError, first_line


@dataclass(frozen=True)
class _Scheme:
    extra: str  # pip install 'rolloutctl[EXTRA]'
    module: str  # imported to build the filesystem
    globs: bool  # can list a prefix (object stores can, web servers cannot)
    credentials: str  # where the client looks, for hints


_SCHEMES = {
    "s3": _Scheme("s3", "s3fs", True, "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE"),
    "gs": _Scheme("gcs", "gcsfs", True, "GOOGLE_APPLICATION_CREDENTIALS"),
    "http": _Scheme("http", "aiohttp", False, "the URL (a presigned URL carries its own)"),
    "https": _Scheme("http", "aiohttp", False, "the URL (a presigned URL carries its own)"),
}
SCHEMES = tuple(_SCHEMES)

# Each read fetches at least this much, ahead of where DuckDB reads. fsspec's 5 MiB made a
# 10-metric gate fetch 6.6 times a Parquet file's size; reading only the exact ranges asked
# fetched 1.3 times but took twice as long in small requests (benchmarks/bench_remote.py).
BLOCK = 2**20


def scheme_of(path: str) -> str | None:
    """The remote scheme of a path (s3, gs, http, https), None for a local path."""
    head, sep, _ = path.partition("://")
    return head.lower() if sep and head.lower() in _SCHEMES else None


def is_remote(path: str) -> bool:
    return scheme_of(path) is not None


def is_glob(path: str) -> bool:
    """Does the remote path list objects (`*`, `?`, `[` in an object store's key)?"""
    scheme = scheme_of(path)
    return scheme is not None and _SCHEMES[scheme].globs and glob.has_magic(path)


def shown(path: str) -> str:
    """A path fit to print: a URL without user info, query or fragment."""
    if not is_remote(path):
        return path
    parts = urlsplit(path)
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def expand(pattern: str) -> list[str]:
    """The remote files a path names: the object itself, or every object a glob matches
    (object stores only; a web server's URL is taken as it is, `?` and all). [] when there
    is none; BackendError when the store cannot be asked."""
    scheme = scheme_of(pattern)
    assert scheme is not None
    fs = filesystem(scheme)
    try:
        if is_glob(pattern):
            return sorted(f"{scheme}://{p}" for p in fs.glob(pattern) if not p.endswith("/"))
        return [pattern] if fs.info(pattern).get("type") == "file" else []
    except FileNotFoundError as exc:
        if _not_there(exc):
            return []
        raise _unreachable(pattern, exc.__cause__ or exc) from None
    except Exception as exc:  # each client has its own errors: aiohttp, botocore, google-auth
        raise _unreachable(pattern, exc) from None


def _not_there(exc: FileNotFoundError) -> bool:
    """Is it the object that is missing, rather than the server (fsspec's HTTP filesystem
    says FileNotFoundError for a refused connection too, with the reason as its cause)?"""
    status = getattr(exc.__cause__, "status", None)
    return exc.__cause__ is None or status in (404, 410)


def register(con: Any, paths: list[str]) -> None:
    """Let a DuckDB connection read the remote `paths` (one filesystem per scheme)."""
    for extra in sorted({_SCHEMES[s].extra for p in paths if (s := scheme_of(p))}):
        con.register_filesystem(_filesystem(extra))


def failed_read(exc: BaseException) -> bool:
    """Is a DuckDB error one of reading (I/O, or the filesystem's Python exception, which
    DuckDB passes on as its traceback's text) rather than of the query?"""
    import duckdb

    return isinstance(exc, duckdb.IOException) or str(exc).startswith("Traceback")


def unreachable(paths: list[str], exc: BaseException) -> BackendError:
    """A read that failed partway (a dropped connection, a revoked credential)."""
    return _unreachable(paths[0], exc)


def _reason(exc: BaseException) -> str:
    """The error's own words: a passed-on traceback's last line, else the first."""
    text = str(exc).strip()
    if text.startswith("Traceback"):  # its last unindented line: "SomeError: what happened"
        return [line for line in text.splitlines() if line[:1].strip()][-1]
    return first_line(exc)


def _unreachable(path: str, exc: BaseException) -> BackendError:
    scheme = scheme_of(path) or ""
    message = _reason(exc).replace(path, shown(path))
    where = _SCHEMES[scheme].credentials if scheme in _SCHEMES else "the environment"
    return BackendError(
        f"cannot read {shown(path)}: {message}",
        hint=f"check the address and the credentials ({where})",
    )


def filesystem(scheme: str) -> Any:
    """The fsspec filesystem for a scheme, built once per process (http and https share one)."""
    return _filesystem(_SCHEMES[scheme].extra)


@cache
def _filesystem(extra: str) -> Any:
    scheme = {"gcs": "gs"}.get(extra, extra)
    spec = _SCHEMES[scheme]
    extras.require(spec.module, spec.extra, f"a request log at {scheme}://")
    if scheme == "s3":
        import s3fs

        return s3fs.S3FileSystem(
            skip_instance_cache=True, default_block_size=BLOCK, default_cache_type="readahead"
        )
    if scheme == "gs":
        import gcsfs

        return gcsfs.GCSFileSystem(skip_instance_cache=True, block_size=BLOCK)
    return _http_filesystem()


def _http_filesystem() -> Any:
    from fsspec.implementations.http import HTTPFileSystem

    class WebFiles(HTTPFileSystem):
        """fsspec's HTTP filesystem with the modification time DuckDB asks every file for."""

        def modified(self, path: str) -> datetime:
            stamp = self.info(path).get("Last-Modified")
            return (
                email.utils.parsedate_to_datetime(stamp)
                if stamp
                else datetime.fromtimestamp(0, UTC)
            )

    return WebFiles(skip_instance_cache=True, block_size=BLOCK, cache_type="readahead")
