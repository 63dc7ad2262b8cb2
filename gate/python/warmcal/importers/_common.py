"""What both importers share: the bad-input error, the NVTX phase convention,
and writing traces so that nothing already in the output folder is lost or
left half-written."""

from __future__ import annotations  # annotations stay strings: no cost at import

import os
from typing import TYPE_CHECKING

from .. import _tracefile
from ._progress import Silent

if TYPE_CHECKING:  # names for the annotations only, never imported at run time
    from collections.abc import Iterable, Sequence
    from typing import Any

    from ._progress import Progress

# Import lazily through _load_trace(): `--help` and input errors must work
# without the trace library.
_trace = None

# What the fitter and the trace reader accept (docs/formats.md, "/phases").
TOKENS_MAX: int = 1 << 40
U32_MAX: int = (1 << 32) - 1
U64_MAX: int = (1 << 64) - 1
DEFAULT_LABEL: str = "context"


class InputError(Exception):
    """Bad input or usage: the message names the file and the field, line or
    column; the command line prints it as one line and exits 2."""


def _load_trace():
    global _trace
    if _trace is None:
        from .. import _trace as module
        _trace = module
    return _trace


def _convention():
    from .. import _convention as module
    return module


def check_label(label: str) -> str | None:
    """None when label is a valid phase label by the NVTX convention's rule
    (1..31 bytes of UTF-8, no space, no control character), else why not.
    The profiler's C parser decides (warmcal/phase_message.h), so a label
    accepted here is one the injected profiler accepts too."""
    try:
        _convention().check_phase(label, 1, 1)
    except ValueError as e:
        return str(e)
    return None


def parse_phase_message(msg: str) -> dict[str, Any] | None:
    """The NVTX convention "warmcal tokens=N batch=B label=L", parsed by the
    profiler's own C parser. Returns None for a message that is not ours, a
    dict (tokens, batch, label) for a phase, and raises ValueError with the
    reason for a malformed one."""
    return _convention().parse_phase_message(msg)


def check_output_dir(out_dir: str | os.PathLike[str], ranks: Iterable[int]) -> None:
    """Create out_dir when missing and refuse, before anything is written, a
    trace name held by something other than a regular file (a folder, a
    link, a device): it is never renamed over."""
    try:
        os.makedirs(out_dir, exist_ok=True)
    except OSError as e:
        raise InputError("%s: cannot create the output folder: %s" % (out_dir, e.strerror))
    if not os.path.isdir(out_dir):
        raise InputError("%s: not a folder" % out_dir)
    for rank in ranks:
        target = trace_path(out_dir, rank)
        try:
            why = _tracefile.not_regular(target)
        except OSError as e:
            raise InputError("%s: %s" % (target, e.strerror))
        if why:
            raise InputError("%s: %s" % (target, why))


trace_path = _tracefile.trace_path


def _fsync_path(path, flags=os.O_RDONLY):
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_traces(out_dir: str | os.PathLike[str], traces: Sequence[dict[str, Any]],
                 progress: Progress | None = None) -> list[str]:
    """Write every trace (a list of dicts: rank, info = TraceWriter keyword
    arguments, attrs, phases) under a temporary name in out_dir, flushed to
    disk, and only once all are complete rename them into place: a failure
    leaves the folder as it was. Returns the paths written. progress (a
    _progress.Progress) shows "writing traces i/n"."""
    progress = progress or Silent()
    trace_mod = _load_trace()
    check_output_dir(out_dir, [t["rank"] for t in traces])
    done = []  # (temporary, final)
    try:
        for i, t in enumerate(traces):
            final = trace_path(out_dir, t["rank"])
            progress.step("warmcal import: writing traces", i + 1, len(traces),
                          os.path.basename(final))
            tmp = _tracefile.new_partial(final)
            done.append((tmp, final))
            with trace_mod.TraceWriter(tmp, **t["info"]) as w:
                for name, value in t["attrs"].items():
                    w.set_attr(name, value)
                w.add_phases(t["phases"])
            _fsync_path(tmp)
        # a name may have turned into something else while we wrote
        check_output_dir(out_dir, [t["rank"] for t in traces])
        for tmp, final in done:
            os.replace(tmp, final)
        done = []
        _fsync_path(out_dir, os.O_RDONLY | os.O_DIRECTORY)
    except trace_mod.TraceError as e:
        raise InputError(str(e))
    except OSError as e:
        raise InputError("%s: %s" % (e.filename or out_dir, e.strerror))
    finally:
        for tmp, _ in done:
            try:
                os.unlink(tmp)
            except OSError:
                pass
    return [trace_path(out_dir, t["rank"]) for t in traces]
