"""Headless Chromium driven through the DevTools protocol over a pipe (``--remote-debugging-pipe``: JSON messages
separated by NUL on file descriptors 3 and 4), no websocket and no package: load a page, record every request,
console message, exception and log entry, evaluate JavaScript, take a screenshot.

Use: ``with Browser() as browser: page = browser.open(url)``, then ``page.evaluate("document.title")``,
``page.requests``, ``page.errors()``, ``page.screenshot()``.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from typing import Any

__all__ = ["Browser", "chromium_path"]


def chromium_path() -> str | None:
    """Debian's ``chromium`` (installed by .ci/run), or another Chromium/Chrome on the PATH."""
    for name in ("chromium", "chromium-browser", "google-chrome", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


class Browser:
    """One headless Chromium process; ``open(url)`` gives a :class:`Page`. Every host name resolves to nothing
    (``--host-resolver-rules``), so a page that tried to fetch from the network would fail and show it."""

    def __init__(self, executable: str | None = None, *, timeout: float = 60.0) -> None:
        executable = executable or chromium_path()
        if executable is None:
            raise FileNotFoundError("chromium is not installed")
        self.timeout = timeout
        self._profile = tempfile.mkdtemp(prefix="onnx-geom-chromium-")
        to_child_r, self._to_child = os.pipe()
        self._from_child, from_child_w = os.pipe()
        # the child's ends moved above 9 first, so that putting them on 3 and 4 cannot close one of them
        to_child_r, from_child_w = (self._high(fd) for fd in (to_child_r, from_child_w))
        flags = [
            "--headless",
            "--no-sandbox",  # CI runs as root
            "--disable-gpu",
            "--remote-debugging-pipe",
            f"--user-data-dir={self._profile}",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-default-apps",
            "--mute-audio",
            "about:blank",
        ]
        # the pipe ends on descriptors 3 and 4 in the child, as --remote-debugging-pipe expects
        script = f'exec "$0" "$@" 3<&{to_child_r} 4>&{from_child_w} {to_child_r}<&- {from_child_w}>&-'
        self.process = subprocess.Popen(
            ["bash", "-c", script, executable, *flags],
            pass_fds=(to_child_r, from_child_w),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        os.close(to_child_r)
        os.close(from_child_w)
        self._buffer = b""
        self._next = 0
        self.events: list[dict[str, Any]] = []

    @staticmethod
    def _high(fd: int) -> int:
        """``fd`` moved to a descriptor number of 10 or more (bash redirects those; 3 and 4 stay free)."""
        import fcntl

        high = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
        os.close(fd)
        return high

    # -- protocol ----------------------------------------------------------------------------------------------
    def send(self, method: str, params: dict | None = None, *, session: str | None = None) -> dict[str, Any]:
        """Send one command and return its result (raises RuntimeError with the protocol's error)."""
        self._next += 1
        message: dict[str, Any] = {"id": self._next, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_child, json.dumps(message).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self._next:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def _read(self, timeout: float | None = None) -> dict[str, Any]:
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while b"\0" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self._from_child], [], [], left)[0]:
                raise TimeoutError("chromium did not answer in time")
            chunk = os.read(self._from_child, 1 << 20)
            if not chunk:
                raise RuntimeError("chromium closed the pipe: " + self._stderr())
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def wait_for(self, method: str, *, session: str, timeout: float | None = None) -> dict[str, Any]:
        """Wait for the event ``method`` of ``session`` (events already received count)."""
        for event in self.events:
            if event.get("method") == method and event.get("sessionId") == session:
                return event
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while True:
            event = self._read(max(0.01, deadline - time.monotonic()))
            self.events.append(event)
            if event.get("method") == method and event.get("sessionId") == session:
                return event

    def _stderr(self) -> str:
        try:
            return (
                self.process.stderr.read() if self.process.poll() is not None and self.process.stderr else b""
            ).decode(errors="replace")[-2000:]
        except OSError:
            return ""

    # -- pages -------------------------------------------------------------------------------------------------
    def open(self, url: str, *, width: int = 1280, height: int = 900) -> Page:
        """A new tab of ``width`` x ``height`` CSS pixels with the Runtime, Log, Network and Page domains on,
        navigated to ``url``, once its load event fired."""
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            self.send(f"{domain}.enable", session=session)
        self.send(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            session=session,
        )
        page = Page(self, session)
        self.send("Page.navigate", {"url": url}, session=session)
        self.wait_for("Page.loadEventFired", session=session)
        return page

    def close(self) -> None:
        with contextlib.suppress(OSError, RuntimeError, TimeoutError):
            self.send("Browser.close")
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stderr is not None:
            self.process.stderr.close()
        for fd in (self._to_child, self._from_child):
            with contextlib.suppress(OSError):
                os.close(fd)
        shutil.rmtree(self._profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Page:
    """A loaded tab: evaluate JavaScript, read what it requested and what it reported, take a screenshot."""

    def __init__(self, browser: Browser, session: str) -> None:
        self.browser, self.session = browser, session

    def _events(self, method: str) -> list[dict[str, Any]]:
        return [
            e["params"] for e in self.browser.events if e.get("method") == method and e.get("sessionId") == self.session
        ]

    def evaluate(self, expression: str) -> Any:
        """The JSON value of ``expression`` (awaited when it is a promise); an exception in it is a RuntimeError."""
        result = self.browser.send(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True, "awaitPromise": True},
            session=self.session,
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression[:60]}...: {result['exceptionDetails']}")
        return result["result"].get("value")

    @property
    def requests(self) -> list[str]:
        """Every URL the page requested (the Network domain's requestWillBeSent)."""
        return [e["request"]["url"] for e in self._events("Network.requestWillBeSent")]

    def errors(self) -> list[str]:
        """Console errors and warnings, uncaught exceptions, and log entries of level error or warning (a refused
        fetch, a Content Security Policy violation, a failed load)."""
        out = [
            f"console.{e['type']}: {' '.join(str(a.get('value', a.get('description', ''))) for a in e.get('args', []))}"
            for e in self._events("Runtime.consoleAPICalled")
            if e.get("type") in ("error", "warning", "assert")
        ]
        out += [f"exception: {e['exceptionDetails']}" for e in self._events("Runtime.exceptionThrown")]
        out += [
            f"log.{e['entry']['level']} ({e['entry'].get('source')}): {e['entry'].get('text')} {e['entry'].get('url', '')}"
            for e in self._events("Log.entryAdded")
            if e["entry"].get("level") in ("error", "warning")
        ]
        out += [f"failed request: {e.get('errorText')}" for e in self._events("Network.loadingFailed")]
        return out

    def screenshot(self) -> bytes:
        """PNG bytes of the viewport."""
        data = self.browser.send("Page.captureScreenshot", {"format": "png"}, session=self.session)["data"]
        return base64.b64decode(data)
