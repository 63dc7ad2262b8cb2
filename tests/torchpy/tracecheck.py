"""Reading a trace with h5py (not warmcal's own reader) and comparing its
phases with the stand-in's truth, field for field."""

import h5py

FREE_UNKNOWN = 2**64 - 1
OUTCOMES = {0: "ok", 1: "oom", 2: "aborted"}
# every field the stand-in accounts; the trace must hold exactly these values
TRUTH_FIELDS = ("label", "tokens", "batch", "live_begin", "live_peak", "live_end",
                "reserved_begin", "reserved_end", "device_free_begin", "device_free_end",
                "outcome", "failed_alloc_bytes")


def _text(v):
    return v.decode("utf-8") if isinstance(v, bytes) else str(v)


def read(path):
    """(attributes, phases) of a trace: attributes as Python values (strings
    decoded), phases as dicts with outcome by name and free memory None when
    not sampled."""
    with h5py.File(path, "r") as f:
        attrs = {k: (_text(v) if isinstance(v, (bytes, str)) else int(v))
                 for k, v in f.attrs.items()}
        rows = f["phases"][:]
        names = rows.dtype.names
    phases = []
    for r in rows:
        p = {n: (_text(r[n]).rstrip("\0") if n == "label" else int(r[n])) for n in names}
        p["outcome"] = OUTCOMES.get(p["outcome"], p["outcome"])
        for n in ("device_free_begin", "device_free_end"):
            if p[n] == FREE_UNKNOWN:
                p[n] = None
        phases.append(p)
    return attrs, phases


def mismatches(phases, truth):
    """What differs between a trace's phases and the stand-in's truth rows,
    as readable lines (empty: equal). Times must rise phase by phase."""
    out = []
    if len(phases) != len(truth):
        out.append("%d phases in the trace, %d in the truth" % (len(phases), len(truth)))
    for i, (p, t) in enumerate(zip(phases, truth)):
        for field in TRUTH_FIELDS:
            if p.get(field) != t.get(field):
                out.append("phase %d %s: trace %r, truth %r" % (i, field, p.get(field),
                                                                 t.get(field)))
        if not p["begin_ns"] <= p["end_ns"]:
            out.append("phase %d: begin_ns %d after end_ns %d" % (i, p["begin_ns"], p["end_ns"]))
        if i and p["begin_ns"] < phases[i - 1]["end_ns"]:
            out.append("phase %d begins before phase %d ended" % (i, i - 1))
    return out
