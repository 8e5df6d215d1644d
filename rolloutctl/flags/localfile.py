"""A flag file on this machine, as the file-based backends (`file`, `gateway`) change it.

Three rules keep a flag change true to what readers of the file get:

- **One writer at a time.** Several rollouts may keep their flags in one file, and each
  command changes the file by read, modify, write. Every change happens under an exclusive
  `flock` of the file's folder (the file itself is replaced by each write, so its own inode
  cannot carry the lock; the folder's can, and leaves nothing behind). A second writer waits
  for the first (briefly: a change takes milliseconds), then reads what the first wrote.
- **Write through links.** When the configured path is a symbolic link (a flag file kept in a
  mounted config folder, say), the change is written to the file the link points to, which
  is what flagd reads; the link stays a link.
- **Only regular files.** A path naming a device, a pipe or a folder is refused before it is
  read (`/dev/zero` would never end).

The kernel drops an flock when its holder dies, so a killed command never blocks the next."""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rolloutctl.atomic import atomic_write
from rolloutctl.errors import BackendError

LOCK_WAIT_SECONDS = 10.0


@dataclass(frozen=True)
class LocalFlagFile:
    path: Path  # as configured (may be a symbolic link)
    what: str  # how messages name it: "flag file", "gateway config"

    @property
    def target(self) -> Path:
        """The file a reader opens: the configured path with every link followed."""
        return Path(os.path.realpath(self.path))

    def _refuse_irregular(self, target: Path) -> None:
        try:
            mode = target.stat().st_mode
        except FileNotFoundError:
            return
        except OSError as exc:
            raise BackendError(f"{self.what} {self.path}: cannot read: {exc.strerror}") from None
        if not stat.S_ISREG(mode):
            kind = "a folder" if stat.S_ISDIR(mode) else "not a regular file"
            raise BackendError(
                f"{self.what} {self.path}: {kind}; nothing was read or changed",
                hint="point the flag section's `path:` at the flag file itself",
            )

    def read_bytes(self) -> bytes | None:
        """The file's bytes, or None when it does not exist yet."""
        target = self.target
        self._refuse_irregular(target)
        try:
            return target.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise BackendError(f"{self.what} {self.path}: cannot read: {exc.strerror}") from None

    @property
    def restore_hint(self) -> str:
        return f"restore {self.path} from version control, then run the command again"

    def parse(
        self, loads: Callable[[bytes], Any], errors: tuple[type[Exception], ...], expected: str
    ) -> Any | None:
        """The file decoded by `loads`, or None when it does not exist yet; a file `loads`
        refuses (one of `errors`) or nested beyond Python's recursion limit is a BackendError
        that says nothing was changed."""
        raw = self.read_bytes()
        if raw is None:
            return None
        try:
            return loads(raw)
        except errors as exc:
            problem = f"not {expected} ({exc})"
        except RecursionError:
            problem = "nested too deeply to be read"
        raise BackendError(
            f"{self.what} {self.path}: {problem}; nothing was changed", hint=self.restore_hint
        )

    def write_bytes(self, data: bytes) -> None:
        """Atomically replace the target's content (a link keeps pointing at it)."""
        target = self.target
        self._refuse_irregular(target)
        try:
            atomic_write(target, data)
        except OSError as exc:
            raise BackendError(
                f"{self.what} {self.path}: cannot write: {exc.strerror}; it is unchanged",
                hint="check the folder's permissions and free space",
            ) from None

    @contextlib.contextmanager
    def locked(self, wait: float = LOCK_WAIT_SECONDS) -> Iterator[None]:
        """Hold the folder's exclusive lock for one read-modify-write."""
        folder = self.target.parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        except OSError as exc:
            raise BackendError(
                f"{self.what} {self.path}: cannot open its folder {folder}: {exc.strerror}"
            ) from None
        try:
            self._acquire(fd, wait)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _acquire(self, fd: int, wait: float) -> None:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise BackendError(
                        f"{self.what} {self.path}: another process has held its lock for "
                        f"{wait:g} s; nothing was changed",
                        hint="find the process holding it (`fuser -v` on the folder) and "
                        "run the command again",
                    ) from None
                time.sleep(0.005)
