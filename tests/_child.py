"""The parent's side of the concurrency tests: a child process spoken to by lines, every read with a timeout.

The children (tests/_study_child.py) announce what they hold and wait for the parent's word before going on,
so two processes overlap by construction, not by luck of timing; no test can hang: a read that gets no line
in time fails the test, and a child still running at the end is killed.
"""

from __future__ import annotations

import contextlib
import queue
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

CHILD = Path(__file__).parent / "_study_child.py"
TIMEOUT_S = 60.0  # generous: a child pays Python's and onnxruntime's start-up on a loaded 2-core machine


class Child:
    """``python tests/_study_child.py ARGS...`` with line-based stdin/stdout; use it as a context manager."""

    def __init__(self, *args: object, timeout: float = TIMEOUT_S):
        self.timeout = timeout
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed in __exit__)
        self.proc = subprocess.Popen(
            [sys.executable, str(CHILD), *map(str, args)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            text=True,
            bufsize=1,
        )
        self.pid = self.proc.pid
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)  # end of output: the child exited

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace")[-3000:]

    def read(self) -> str:
        """The child's next line; fails (never hangs) if none comes within the timeout or the child exited."""
        try:
            line = self._lines.get(timeout=self.timeout)
        except queue.Empty:
            raise AssertionError(f"child {self.pid} said nothing for {self.timeout:.0f} s\n{self.stderr()}") from None
        if line is None:
            self._lines.put(None)
            raise AssertionError(f"child {self.pid} exited ({self.proc.wait()}) early\n{self.stderr()}")
        return line

    def expect(self, prefix: str) -> str:
        """The next line, which must start with ``prefix``; returns the rest of it."""
        line = self.read()
        assert line.startswith(prefix), f"child {self.pid}: expected {prefix!r}, got {line!r}"
        return line[len(prefix) :].strip()

    def send(self, line: str) -> None:
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def finish(self) -> list[str]:
        """Close stdin, wait for the exit (killing the child after the timeout) and return its remaining lines."""
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=self.timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"child {self.pid} did not finish within {self.timeout:.0f} s") from None
        lines = []
        while (line := self._lines.get(timeout=self.timeout)) is not None:
            lines.append(line)
        assert self.proc.returncode == 0, (self.proc.returncode, lines, self.stderr())
        return lines

    def kill(self) -> int:
        """SIGKILL the child and return its exit status."""
        self.proc.kill()
        return self.proc.wait(timeout=self.timeout)

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.kill()
        self._pump_thread.join(timeout=self.timeout)  # it ends at the dead child's end of output
        with contextlib.suppress(BrokenPipeError):
            self.proc.stdin.close()
        self.proc.stdout.close()
        self._stderr.close()
