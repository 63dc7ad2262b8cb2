"""The importers' progress line, by the rule of the C command line
(common/include/warmcal/progress.h): shown on stderr only when it is a
terminal, or when WARMCAL_PROGRESS=1 (WARMCAL_PROGRESS=0: never); one line
rewritten in place with a carriage return, at most about ten times a second,
erased before any other message and at the end. Pipes, CI logs and files
get nothing."""

from __future__ import annotations  # annotations stay strings: no cost at import

import os
import sys
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # names for the annotations only, never imported at run time
    from collections.abc import Mapping
    from typing import Literal, Self, TextIO

INTERVAL_S: float = 0.1
LINE_LEN: int = 100  # one terminal row; longer lines end in "..."


def wanted(stream: TextIO, environ: Mapping[str, str] | None = None) -> bool:
    """Whether progress goes to stream: WARMCAL_PROGRESS decides when it is
    "0" or "1", otherwise whether stream is a terminal."""
    value = (os.environ if environ is None else environ).get("WARMCAL_PROGRESS")
    if value == "0":
        return False
    if value == "1":
        return True
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


class Progress:
    """A status line on stream (default sys.stderr). Use as a context
    manager, or call clear() at the end."""

    stream: TextIO
    enabled: bool  # False once a line could not be written

    def __init__(self, stream: TextIO | None = None, enabled: bool | None = None) -> None:
        self.stream = sys.stderr if stream is None else stream
        self.enabled = wanted(self.stream) if enabled is None else enabled
        self._last: float | None = None
        self._shown = 0

    def show(self, text: str, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and self._last is not None and now - self._last < INTERVAL_S:
            return
        # a file name's control characters would move the cursor
        text = "".join("?" if ord(c) < 0x20 or ord(c) == 0x7F else c for c in text)
        if len(text) > LINE_LEN:
            text = text[:LINE_LEN - 3] + "..."
        pad = max(0, self._shown - len(text))
        self._write("\r" + text + " " * pad + "\b" * pad)
        self._shown = len(text)
        self._last = now

    def step(self, what: str, done: int, total: int, name: str | None = None) -> None:
        """'WHAT DONE/TOTAL[: NAME]'; the last step is always drawn."""
        self.show("%s %d/%d%s" % (what, done, total, ": " + name if name else ""),
                  force=done == total)

    def clear(self) -> None:
        if self.enabled and self._shown:
            self._write("\r" + " " * self._shown + "\r")
        self._shown = 0
        self._last = None

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a line that cannot be shown stops nothing
            self.enabled = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> Literal[False]:
        self.clear()
        return False


class Silent(Progress):
    """No progress at all: the default of the library functions."""

    def __init__(self) -> None:
        super().__init__(enabled=False)
