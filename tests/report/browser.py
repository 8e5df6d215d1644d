"""Reports rendered in a real headless Chromium, offline, driven by Playwright.

The browser is Debian's `/usr/bin/chromium` (tests/run.sh installs it as root); Playwright's
wheel only brings its driver, and `playwright install` is never run. A report is meant to be
self-contained and inert, so every request the page makes besides loading itself is
recorded, and every one that would leave the machine's files is aborted as well.

Without the browser (or Playwright) the tests are skipped with the reason on a developer's
machine, and fail when CI is set: a CI run that skipped them would hide a broken install.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import ConsoleMessage, Dialog, Request, Route, ViewportSize

CHROMIUM = Path("/usr/bin/chromium")
# As root Chromium needs --no-sandbox; the rest keep it from calling home on a closed network.
LAUNCH_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)
LOCAL_SCHEMES = ("file:", "data:", "about:")
SCREENSHOTS_ENV = "ROLLOUTCTL_SCREENSHOTS"
VIEWPORT: ViewportSize = {"width": 1280, "height": 900}
NAVIGATION_TIMEOUT_MS = 30_000
# Elements and attributes through which a page runs code: none may come from report data.
ACTIVE_CONTENT_JS = """() => Array.from(document.querySelectorAll('*'))
  .filter(e => ['script', 'iframe', 'object', 'embed'].includes(e.localName)
    || Array.from(e.attributes).some(
         a => a.name.startsWith('on') || /^\\s*javascript:/i.test(a.value)))
  .map(e => e.cloneNode(false).outerHTML.slice(0, 300))"""


@dataclass(frozen=True)
class Rendered:
    """What loading one report in the browser did."""

    url: str
    screenshot: Path
    load_ms: float  # navigation start to the load event, from the browser's Navigation Timing
    console_errors: list[str]
    page_errors: list[str]  # uncaught exceptions
    requests: list[str]  # every URL fetched besides the report itself, file:// included
    aborted: list[str]  # the subset that was not the machine's own files
    dialogs: list[str]
    text: str  # document.body.innerText
    active_content: list[str]  # script/iframe/object/embed elements, on* or javascript: attrs

    @property
    def dialog_fired(self) -> bool:
        return bool(self.dialogs)

    @property
    def problems(self) -> dict[str, list[str]]:
        """What a self-contained, inert report must never produce; empty when clean."""
        found = {
            "console errors": self.console_errors,
            "page errors": self.page_errors,
            "requests": self.requests,
            "dialogs": self.dialogs,
        }
        return {kind: items for kind, items in found.items() if items}


Render = Callable[[Path, Path], Rendered]


# ---------------------------------------------------------------- browser processes, by PID

# Set in the browser's environment: Chromium's crash handlers detach from their parent, so
# walking the process tree misses them, but they inherit this.
MARKER_ENV = "ROLLOUTCTL_TEST_BROWSER"


@dataclass(frozen=True)
class Proc:
    pid: int
    started: str  # start time in clock ticks: tells the process from a later one reusing its PID


def _stat(pid: int) -> tuple[str, int, str] | None:
    """(state, parent PID, start time) of a live process, from /proc."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # the command name may contain spaces
    return fields[0], int(fields[1]), fields[19]


def _is_chromium(pid: int) -> bool:
    try:
        return "chromium" in Path(os.readlink(f"/proc/{pid}/exe")).name
    except OSError:
        return False


def _carries(pid: int, marker: bytes) -> bool:
    try:
        return marker in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:  # gone, or not readable (renderers are not dumpable)
        return False


def browser_processes(root: int, marker: str) -> set[Proc]:
    """Chromium processes started, directly or not, by process `root`, and every process
    whose environment carries `marker` (NAME=value)."""
    stats = {
        int(entry.name): stat
        for entry in Path("/proc").iterdir()
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None
    }
    children: dict[int, list[int]] = {}
    for pid, (_, parent, _) in stats.items():
        children.setdefault(parent, []).append(pid)
    found = {pid for pid in stats if _carries(pid, marker.encode())}
    todo = [root]
    while todo:
        for pid in children.get(todo.pop(), []):
            todo.append(pid)
            if _is_chromium(pid):
                found.add(pid)
    return {Proc(pid, stats[pid][2]) for pid in found}


def alive(proc: Proc) -> bool:
    stat = _stat(proc.pid)
    return stat is not None and stat[2] == proc.started and stat[0] != "Z"


# ---------------------------------------------------------------- the browser


class ReportBrowser:
    """One Chromium for the session; a fresh, isolated context for every report."""

    def __init__(self) -> None:
        from playwright.sync_api import sync_playwright

        if not CHROMIUM.exists():
            pytest.skip(
                f"{CHROMIUM} is missing (apt-get install chromium; tests/run.sh does it as root)"
            )
        # A private HOME keeps Chromium's profile and crash folders out of the user's own.
        self._home = Path(tempfile.mkdtemp(prefix="rolloutctl-chromium-"))
        self._marker = f"{MARKER_ENV}={self._home}"
        env: dict[str, str | float | bool] = {**os.environ, "HOME": str(self._home)}
        env[MARKER_ENV] = str(self._home)
        env.pop("XDG_CONFIG_HOME", None)
        env.pop("XDG_CACHE_HOME", None)
        self._playwright = sync_playwright().start()
        try:
            self._browser = self._playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=list(LAUNCH_ARGS), env=env
            )
        except BaseException:
            self._playwright.stop()
            shutil.rmtree(self._home, ignore_errors=True)
            raise
        self.processes = self._running()

    def _running(self) -> set[Proc]:
        if sys.platform != "linux":
            return set()
        return browser_processes(os.getpid(), self._marker)

    def render(self, path: Path, screenshot: Path) -> Rendered:
        url = path.resolve().as_uri()
        console: list[str] = []
        page_errors: list[str] = []
        requests: list[str] = []
        aborted: list[str] = []
        dialogs: list[str] = []
        loaded_itself = False

        def on_route(route: Route) -> None:
            if route.request.url.startswith(LOCAL_SCHEMES):
                route.continue_()
            else:
                aborted.append(route.request.url)
                route.abort()

        def on_request(request: Request) -> None:
            nonlocal loaded_itself
            if not loaded_itself and request.is_navigation_request():
                loaded_itself = True  # the report itself
            elif not request.url.startswith(("data:", "about:")):
                requests.append(request.url)

        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error":
                console.append(message.text)

        def on_dialog(dialog: Dialog) -> None:
            dialogs.append(f"{dialog.type}: {dialog.message}")
            dialog.dismiss()

        context = self._browser.new_context(viewport=VIEWPORT, service_workers="block")
        try:
            context.route("**/*", on_route)
            page = context.new_page()
            page.on("request", on_request)
            page.on("console", on_console)
            page.on("pageerror", lambda error: page_errors.append(str(error)))
            page.on("dialog", on_dialog)
            page.goto(url, wait_until="load", timeout=NAVIGATION_TIMEOUT_MS)
            timing: Any = page.evaluate(
                "() => performance.getEntriesByType('navigation')[0].loadEventStart"
            )
            text = page.inner_text("body")
            active: list[str] = page.evaluate(ACTIVE_CONTENT_JS)
            screenshot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(screenshot), full_page=True)
        finally:
            context.close()
        if folder := os.environ.get(SCREENSHOTS_ENV):
            Path(folder).mkdir(parents=True, exist_ok=True)
            shutil.copy2(screenshot, Path(folder) / screenshot.name)
        return Rendered(
            url,
            screenshot,
            float(timing),
            console,
            page_errors,
            requests,
            aborted,
            dialogs,
            text,
            active,
        )

    def close(self) -> list[int]:
        """Stop the browser and the driver; kills and returns any Chromium PID still alive."""
        tracked = self.processes | self._running()
        try:
            self._browser.close()
        finally:
            self._playwright.stop()
        left: list[Proc] = []
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            tracked |= self._running()  # anything started while closing
            if not (left := [p for p in tracked if alive(p)]):
                break
            time.sleep(0.1)
        for proc in left:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
        shutil.rmtree(self._home, ignore_errors=True)
        return sorted(p.pid for p in left)


@pytest.fixture(scope="session")
def render() -> Iterator[Render]:
    """`render(report, screenshot_png)`: load a report in Chromium and say what it did."""
    browser = ReportBrowser()
    if sys.platform == "linux" and not browser.processes:
        browser.close()
        pytest.fail("Chromium was launched but none of its processes was found")
    yield browser.render
    left = browser.close()
    assert not left, f"Chromium processes still running after the browser closed: {left}"
