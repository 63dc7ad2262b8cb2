"""The importers' progress line, by the rule of the C command line
(common/include/warmcal/progress.h): shown on stderr only when it is a
terminal, or when WARMCAL_PROGRESS=1 (WARMCAL_PROGRESS=0: never); one line
rewritten in place with a carriage return, at most about ten times a second,
erased before any other message and at the end. Pipes, CI logs and files
get nothing."""

import os
import sys
import time

INTERVAL_S = 0.1
LINE_LEN = 100  # one terminal row; longer lines end in "..."


def wanted(stream, environ=None):
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

    def __init__(self, stream=None, enabled=None):
        self.stream = sys.stderr if stream is None else stream
        self.enabled = wanted(self.stream) if enabled is None else enabled
        self._last = None
        self._shown = 0

    def show(self, text, force=False):
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

    def step(self, what, done, total, name=None):
        """'WHAT DONE/TOTAL[: NAME]'; the last step is always drawn."""
        self.show("%s %d/%d%s" % (what, done, total, ": " + name if name else ""),
                  force=done == total)

    def clear(self):
        if self.enabled and self._shown:
            self._write("\r" + " " * self._shown + "\r")
        self._shown = 0
        self._last = None

    def _write(self, text):
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a line that cannot be shown stops nothing
            self.enabled = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.clear()
        return False


class Silent(Progress):
    """No progress at all: the default of the library functions."""

    def __init__(self):
        super().__init__(enabled=False)
