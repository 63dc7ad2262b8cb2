"""Phases from a table of measured peaks (CSV): numbers people already have in
spreadsheets, parsed server logs or another profiler's output. The columns
are documented in docs/formats.md ("Measurements in CSV"); a row is a phase,
a rank's rows (in file order) are its trace.

Values are exact: integers in plain decimal digits, no units, no fractions,
so what the table says is what the trace holds, to the byte.
"""

from __future__ import annotations  # annotations stay strings: no cost at import

import csv
import io
import os
import re
from typing import TYPE_CHECKING

from ._common import InputError, check_label, TOKENS_MAX, U32_MAX, U64_MAX

if TYPE_CHECKING:  # names for the annotations only, never imported at run time
    from typing import Any

REQUIRED: tuple[str, ...] = ("rank", "label", "tokens", "batch", "peak_bytes")
OPTIONAL: tuple[str, ...] = ("free_before", "free_after", "outcome")
OUTCOMES: tuple[str, ...] = ("ok", "oom", "aborted")
# Ranks are C ints in the trace's run description.
RANK_MAX: int = (1 << 31) - 2
# 2^64-1 is the trace's "not sampled"; an empty cell says that instead.
FREE_MAX: int = U64_MAX - 1
# A table of measurements is small; this bounds what a wrong file (a trace,
# a log) can make us hold before the first row fails.
MAX_INPUT_BYTES: int = 256 << 20


def _integer(text, lo, hi):
    if text == "" or not all("0" <= c <= "9" for c in text):
        return None
    value = int(text)
    return value if lo <= value <= hi else None


def _shown(text):
    """A cell as one line of an error: a quoted cell may hold line breaks
    and other control characters, written as Python escapes."""
    return "".join(c if c.isprintable() else
                   "\\n" if c == "\n" else
                   "\\x%02x" % ord(c) if ord(c) < 0x100 else
                   "\\u%04x" % ord(c) if ord(c) < 0x10000 else "\\U%08x" % ord(c)
                   for c in text)


def read_rows(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The rows of the table at path, checked: a list of dicts with the
    column names as keys (values converted) and "line". InputError names
    the file, the line and the column of the first fault."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_INPUT_BYTES + 1)
    except OSError as e:
        raise InputError("%s: %s" % (path, e.strerror))
    if len(data) > MAX_INPUT_BYTES:
        raise InputError("%s: larger than %d bytes: not a table of measurements"
                         % (path, MAX_INPUT_BYTES))
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        # counted as the reader below counts lines: at \n, \r or \r\n
        raise InputError("%s: line %d: not valid UTF-8"
                         % (path, len(re.findall(rb"\r\n|\r|\n", data[:e.start])) + 1))
    # Lines end at \n, \r or \r\n only, as RFC 4180 and the csv module read
    # them (str.splitlines would also split at \x0b, \x0c, \x1c-\x1e, \x85,
    # \u2028 and \u2029, inside fields too, and miscount lines). A quoted
    # field may hold a line break, so a record is named by the line it starts on.
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    record_start = [1]  # the line the record being read starts on

    def next_record():
        record_start[0] = reader.line_num + 1
        return next(reader, None)

    try:
        header = next_record()
        while header is not None and not header:   # blank lines before the header
            header = next_record()
        if header is None:
            raise InputError("%s: empty: expected a header row naming the columns %s"
                             % (path, ",".join(REQUIRED)))
        header = [h.strip() for h in header]
        header_line = record_start[0]
        unknown = [h for h in header if h not in REQUIRED + OPTIONAL]
        if unknown:
            raise InputError("%s: line %d: unknown column%s %s (known: %s)"
                             % (path, header_line, "s" if len(unknown) > 1 else "",
                                ", ".join("'%s'" % _shown(u) for u in unknown),
                                ",".join(REQUIRED + OPTIONAL)))
        for i, h in enumerate(header):
            if h in header[:i]:
                raise InputError("%s: line %d, column %d: column '%s' given twice"
                                 % (path, header_line, i + 1, _shown(h)))
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise InputError("%s: line %d: missing column%s %s (required: %s)"
                             % (path, header_line, "s" if len(missing) > 1 else "",
                                ", ".join(missing), ",".join(REQUIRED)))
        rows = []
        while True:
            cells = next_record()
            if cells is None:
                break
            if not cells or cells == [""]:
                continue  # a blank line
            line = record_start[0]
            if len(cells) != len(header):
                raise InputError("%s: line %d: %d fields, expected %d (%s)"
                                 % (path, line, len(cells), len(header), ",".join(header)))
            rows.append(_row(path, line, header, [c.strip() for c in cells]))
    except csv.Error as e:
        raise InputError("%s: line %d: not valid CSV: %s" % (path, record_start[0], e))
    if not rows:
        raise InputError("%s: no measurements after the header" % path)
    return rows


def _row(path, line, header, cells):
    row = {"line": line}
    for col, (name, text) in enumerate(zip(header, cells), start=1):
        def bad(expected):
            raise InputError("%s: line %d, column %d (%s): expected %s, found '%s'"
                             % (path, line, col, name, expected, _shown(text)))
        if name == "rank":
            row[name] = _integer(text, 0, RANK_MAX)
            if row[name] is None:
                bad("an integer 0 to %d" % RANK_MAX)
        elif name == "label":
            if check_label(text):
                bad("a label of 1 to 31 bytes of UTF-8 with no space or control character "
                    "(this one has %d bytes)" % len(text.encode("utf-8", "surrogatepass")))
            row[name] = text
        elif name == "tokens":
            row[name] = _integer(text, 1, TOKENS_MAX)
            if row[name] is None:
                bad("an integer 1 to %d (2^40)" % TOKENS_MAX)
        elif name == "batch":
            row[name] = _integer(text, 1, U32_MAX)
            if row[name] is None:
                bad("an integer 1 to %d" % U32_MAX)
        elif name == "peak_bytes":
            row[name] = _integer(text, 0, U64_MAX)
            if row[name] is None:
                bad("bytes as an integer 0 to 2^64-1")
        elif name in ("free_before", "free_after"):
            row[name] = None if text == "" else _integer(text, 0, FREE_MAX)
            if text != "" and row[name] is None:
                bad("bytes as an integer 0 to 2^64-2, or an empty cell (not sampled)")
        elif name == "outcome":
            if text not in OUTCOMES + ("",):
                bad("ok, oom or aborted (empty: ok)")
            row[name] = text or "ok"
    return row


def build_traces(path: str | os.PathLike[str], model: str, producer: str,
                 world_size: int | None) -> list[dict[str, Any]]:
    """One trace per rank (dicts for _common.write_traces). The mapping, per
    row: live_begin = 0, live_peak = peak_bytes, live_end = 0 (the peak is
    the pass's need), device_free_begin/end = free_before/free_after (empty
    or absent: not sampled), outcome as given.

    reserved_begin = 0, reserved_end = peak_bytes: the free columns see the
    pass's peak too (the memory it took from the device), so a drop in free
    memory up to peak_bytes is that peak, not more. The fitter's need,
    peak - live_begin + max(0, free drop - max(live growth, reserved
    growth)), is then peak_bytes plus only the device growth beyond it
    (docs/formats.md, "Measurements in CSV")."""
    rows = read_rows(path)
    top = max(r["rank"] for r in rows)
    if world_size is None:
        world_size = top + 1
    elif world_size <= top:
        bad = next(r for r in rows if r["rank"] >= world_size)
        raise InputError("%s: line %d: rank %d is not below --world-size %d"
                         % (path, bad["line"], bad["rank"], world_size))
    by_rank = {}
    for r in rows:
        by_rank.setdefault(r["rank"], []).append({
            "label": r["label"], "tokens": r["tokens"], "batch": r["batch"],
            "live_begin": 0, "live_peak": r["peak_bytes"], "live_end": 0,
            "reserved_begin": 0, "reserved_end": r["peak_bytes"],
            "device_free_begin": r.get("free_before"), "device_free_end": r.get("free_after"),
            "outcome": r.get("outcome", "ok")})
    attrs = {"import_format": "csv", "producer": producer,
             "import_files": os.path.basename(path)}
    return [{"rank": rank, "phases": phases, "attrs": dict(attrs),
             "info": {"rank": rank, "world_size": world_size, "model": model,
                      "source": "import", "gpu_name": "unknown"}}
            for rank, phases in sorted(by_rank.items())]
