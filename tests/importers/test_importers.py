#!/usr/bin/python3
"""`warmcal import` as users run it: PyTorch memory snapshots (several
versions' field sets, several files, annotations, out-of-memory, an
overflowed history ring, truncated, hostile and mutated pickles) and CSV
tables, then `warmcal inspect`, `fit`, `check` and `validate` on the traces.

usage: test_importers.py CASE --warmcal BIN
The environment gives PYTHONPATH (gate/python and this folder) and
WARMCAL_TRACE_LIB. Everything is written under a temporary folder, removed.
"""
import argparse
import copyreg
import io
import json
import os
import pickle
import random
import shutil
import subprocess
import sys
import tempfile

from snapshots import Allocator
from warmcal import _trace
from warmcal.importers import InputError
from warmcal.importers import torch_snapshot

ap = argparse.ArgumentParser()
ap.add_argument("case")
ap.add_argument("--warmcal", required=True)
ARGS = ap.parse_args()
FAILURES = []
TMP = tempfile.mkdtemp(prefix="warmcal-importers-")
MARKER = os.path.join(TMP, "code-ran")


def check(cond, what):
    if not cond:
        FAILURES.append(what)
        print("FAIL:", what)


def run(*argv):
    p = subprocess.run([ARGS.warmcal] + [str(a) for a in argv], capture_output=True, text=True,
                       timeout=120, cwd=TMP)
    return p.returncode, p.stdout, p.stderr


def path(name):
    return os.path.join(TMP, name)


def dump(snap, name):
    """As torch.cuda.memory._dump_snapshot does: pickle.dump of the dict."""
    with open(path(name), "wb") as f:
        pickle.dump(snap, f)
    return path(name)


def phases_of(trace_path):
    return _trace.read(trace_path)["phases"]


def expect_refusal(rc, err, *words):
    check(rc == 2, "exit 2 expected, got %d (%s)" % (rc, err.strip()))
    lines = [l for l in err.splitlines() if l.strip()]
    check(len(lines) == 1, "one line expected on stderr, got %r" % err)
    for w in words:
        check(w in err, "%r expected in %r" % (w, err))


# --- snapshots -------------------------------------------------------------------

def case_versions():
    """Each version's field set: the replayed peak, the live bytes at both
    edges and the reserved bytes equal the generator's own account."""
    for version, seed in (("2.0", 1), ("2.1", 2), ("2.6", 3)):
        a = Allocator(seed, version)
        begin, peak = a.run_pass(400, 1 << 22)
        snap = dump(a.snapshot(), "v%s.pickle" % version)
        out = path("out-%s" % version)
        rc, stdout, err = run("import", "torch-snapshot", snap, "--tokens", 2048, "--model",
                              "m", "-o", out)
        check(rc == 0, "%s: import failed: %s" % (version, err))
        if rc:
            continue
        t = _trace.read(os.path.join(out, "rank-0.h5"))
        p = t["phases"][0]
        check(len(t["phases"]) == 1, "%s: one phase" % version)
        check(p["live_begin"] == a.live_at_start == begin,
              "%s: live_begin %d, allocator had %d" % (version, p["live_begin"], begin))
        check(p["live_peak"] == peak,
              "%s: peak %d, allocator's %d" % (version, p["live_peak"], peak))
        check(p["live_end"] == a.live_bytes,
              "%s: live_end %d, allocator's %d" % (version, p["live_end"], a.live_bytes))
        check(p["reserved_begin"] == a.reserved_at_start and p["reserved_end"] == a.reserved,
              "%s: reserved %d..%d, allocator's %d..%d" % (version, p["reserved_begin"],
                                                           p["reserved_end"], a.reserved_at_start,
                                                           a.reserved))
        check(p["tokens"] == 2048 and p["batch"] == 1 and p["label"] == "context"
              and p["outcome"] == "ok" and p["lower_bound"] == 0, "%s: row %r" % (version, p))
        check(t["source"] == "import" and t["model"] == "m", "%s: run description" % version)
        at = t["attrs"]
        check(at.get("import_format") == "torch-snapshot"
              and at.get("producer") == "torch.cuda.memory._dump_snapshot"
              and at.get("import_files") == "v%s.pickle" % version, "%s: attrs %r" % (version, at))
        check(stdout.strip() == os.path.join(out, "rank-0.h5"), "trace path on stdout")
        if version == "2.0":
            check(p["begin_ns"] == 0 and p["end_ns"] == 0, "2.0 has no times")
    # torch < 2.0: memory_snapshot() is a bare list of segments, no history
    rc, _, err = run("import", "torch-snapshot", dump(Allocator(4).snapshot()["segments"],
                                                      "old.pickle"), "--tokens", 1, "-o",
                     path("o-old"))
    expect_refusal(rc, err, "old.pickle", "without allocation history")


def case_multifile():
    """One phase per file, tokens and batch in file order; a count that does
    not match is refused before anything is written."""
    files, truth = [], []
    for k, tokens in enumerate((512, 1024, 4096)):
        a = Allocator(10 + k, "2.1")
        truth.append(a.run_pass(100 + 50 * k, tokens * 1024))
        files.append(dump(a.snapshot(), "f%d.pickle" % k))
    out = path("multi")
    rc, _, err = run("import", "torch-snapshot", *files, "--tokens", 512, "--tokens", 1024,
                     "--tokens", 4096, "--batch", 8, "--label", "generation", "--rank", 2,
                     "--world-size", 4, "-o", out)
    check(rc == 0, "multifile import: %s" % err)
    t = _trace.read(os.path.join(out, "rank-2.h5"))
    check(t["rank"] == 2 and t["world_size"] == 4, "rank 2 of 4")
    check([p["tokens"] for p in t["phases"]] == [512, 1024, 4096], "tokens in file order")
    check(all(p["batch"] == 8 and p["label"] == "generation" for p in t["phases"]),
          "batch and label")
    check([(p["live_begin"], p["live_peak"]) for p in t["phases"]] == truth,
          "each file's edges and peak: %r vs %r"
          % ([(p["live_begin"], p["live_peak"]) for p in t["phases"]], truth))
    check(t["attrs"]["import_files"] == "f0.pickle,f1.pickle,f2.pickle", "import_files")
    out2 = path("multi-bad")
    rc, _, err = run("import", "torch-snapshot", *files, "--tokens", 512, "-o", out2)
    expect_refusal(rc, err, "--tokens", "given 1")
    check(not os.path.exists(os.path.join(out2, "rank-0.h5")), "nothing written on a mismatch")
    rc, _, err = run("import", "torch-snapshot", *files, "--tokens", 1, "--tokens", 2,
                     "--tokens", 3, "--batch", 1, "--batch", 2, "-o", out2)
    expect_refusal(rc, err, "--batch")
    rc, _, err = run("import", "torch-snapshot", files[0], "--tokens", 0, "-o", out2)
    expect_refusal(rc, err, "--tokens", "'0'")
    rc, _, err = run("import", "torch-snapshot", files[0], "--tokens", 5, "--rank", 4,
                     "--world-size", 4, "-o", out2)
    expect_refusal(rc, err, "--rank 4")


def annotated(seed, shapes, version="2.6", use_metadata=False, gap=20):
    """A history with one annotated pass per (tokens, batch, label), with
    allocator activity between passes. Returns (allocator, truths)."""
    a = Allocator(seed, version)
    truths = []
    for tokens, batch, label in shapes:
        a.run_pass(gap, 1 << 20)             # outside any phase
        name = "warmcal tokens=%d batch=%d label=%s" % (tokens, batch, label)
        if use_metadata:
            a.metadata = name
        else:
            a.annotate(name, "START")
        truths.append(a.run_pass(60 + tokens // 64, tokens * 512))
        if use_metadata:
            a.metadata = ""
        else:
            a.annotate(name, "END")
    a.run_pass(gap, 1 << 20)
    return a, truths


def case_annotations():
    """record_function annotations following the NVTX convention (and
    user_metadata runs) make one phase each, with the right edges."""
    shapes = [(256, 1, "context"), (1024, 2, "context"), (4096, 4, "generation")]
    for use_metadata in (False, True):
        a, truths = annotated(21, shapes, use_metadata=use_metadata)
        snap = a.snapshot()
        # a record_function range that is not ours is ignored
        snap.setdefault("external_annotations", []).insert(
            0, {"name": "forward", "stage": "START", "device": 0, "time_us": 0})
        f = dump(snap, "ann-%d.pickle" % use_metadata)
        out = path("ann-%d" % use_metadata)
        rc, _, err = run("import", "torch-snapshot", f, "-o", out)
        check(rc == 0, "annotated import: %s" % err)
        if rc:
            continue
        ps = phases_of(os.path.join(out, "rank-0.h5"))
        check([(p["tokens"], p["batch"], p["label"]) for p in ps] == shapes,
              "phases from annotations: %r" % [(p["tokens"], p["batch"], p["label"]) for p in ps])
        check([(p["live_begin"], p["live_peak"]) for p in ps] == truths,
              "annotated edges and peaks %r vs %r"
              % ([(p["live_begin"], p["live_peak"]) for p in ps], truths))
        check(all(p["lower_bound"] == 0 for p in ps), "complete history: no lower bound")
        # --tokens is for files without annotations only
        rc, _, err = run("import", "torch-snapshot", f, "--tokens", 5, "-o", path("x"))
        expect_refusal(rc, err, "--tokens")
    # a malformed convention name is bad input, named
    a, _ = annotated(22, [(256, 1, "context")])
    snap = a.snapshot()
    snap["external_annotations"][0]["name"] = "warmcal tokens=zero"
    rc, _, err = run("import", "torch-snapshot", dump(snap, "bad-ann.pickle"), "-o", path("x"))
    expect_refusal(rc, err, "bad-ann.pickle", "external_annotations[0].name", "tokens")
    # a phase still open at the snapshot is aborted, marked
    a, _ = annotated(23, [(256, 1, "context"), (512, 1, "context")])
    snap = a.snapshot()
    snap["external_annotations"].pop()   # the last END
    rc, _, err = run("import", "torch-snapshot", dump(snap, "open.pickle"), "-o", path("open"))
    check(rc == 0, "open phase import: %s" % err)
    ps = phases_of(path("open/rank-0.h5"))
    check(ps[0]["outcome"] == "ok" and ps[1]["outcome"] == "aborted"
          and ps[1]["lower_bound"] & 8, "the unended phase is aborted: %r" % ps)


def case_oom():
    """An oom entry inside a phase: outcome oom, the size asked for, device
    free memory from the entry."""
    a = Allocator(31, "2.1")
    begin, peak = a.run_pass(80, 1 << 22)
    a.oom(123456789, 4567)
    f = dump(a.snapshot(), "oom.pickle")
    rc, _, err = run("import", "torch-snapshot", f, "--tokens", 8192, "-o", path("oom"))
    check(rc == 0, "oom import: %s" % err)
    p = phases_of(path("oom/rank-0.h5"))[0]
    check(p["outcome"] == "oom" and p["failed_alloc_bytes"] == 123456789
          and p["device_free_end"] == 4567 and p["live_peak"] == peak,
          "oom phase: %r" % p)
    # annotated: only the phase holding the oom is oom
    a, _ = annotated(32, [(256, 1, "context")])
    a.annotate("warmcal tokens=512", "START")
    a.run_pass(10, 1 << 20)
    a.oom(999, 0)
    a.annotate("warmcal tokens=512", "END")
    rc, _, err = run("import", "torch-snapshot", dump(a.snapshot(), "oom2.pickle"), "-o",
                     path("oom2"))
    ps = phases_of(path("oom2/rank-0.h5"))
    check([p["outcome"] for p in ps] == ["ok", "oom"] and ps[1]["failed_alloc_bytes"] == 999
          and ps[1]["device_free_end"] == 0, "oom in the second phase only: %r" % ps)


def case_overflow():
    """A history ring that lost its oldest entries is said: a warning on
    stderr, attributes, and lower_bound on the phases it cuts."""
    a = Allocator(41, "2.1", preexisting=0)
    _, full_peak = a.run_pass(600, 1 << 22)
    snap = a.snapshot()
    entries = snap["device_traces"][0]
    kept = 250
    snap["device_traces"][0] = entries[-kept:]   # what a ring of 250 entries keeps
    f = dump(snap, "ring.pickle")
    rc, _, err = run("import", "torch-snapshot", f, "--tokens", 100, "--max-entries", kept,
                     "-o", path("ring"))
    check(rc == 0, "ring import: %s" % err)
    t = _trace.read(path("ring/rank-0.h5"))
    p = t["phases"][0]
    check(p["lower_bound"] & 1, "full ring: lower_bound bit 1, got %r" % p["lower_bound"])
    check("warning" in err and "does not reach back" in err and "ring.pickle" in err,
          "full ring: warning on stderr: %r" % err)
    check(t["attrs"].get("history_incomplete") == "1", "history_incomplete attribute")
    check(p["live_peak"] <= full_peak, "the cut history's peak is not above the truth")
    check("allocated before its first entry" in err, "the cut ring's warning counts the "
          "blocks freed but never seen allocated: %r" % err)
    # a complete history that frees blocks allocated before recording began
    # (the weights, say) is normal: counted in attributes, no warning, no mark
    a = Allocator(44, "2.1", preexisting=4)
    for addr in sorted(a.live):
        a.free(addr)
    a.run_pass(60, 1 << 20)
    rc, _, err = run("import", "torch-snapshot", dump(a.snapshot(), "weights.pickle"), "--tokens",
                     100, "-o", path("ring2"))
    t = _trace.read(path("ring2/rank-0.h5")) if rc == 0 else {"attrs": {}, "phases": [{}]}
    check(rc == 0 and int(t["attrs"].get("history_orphan_frees", 0)) == 4
          and int(t["attrs"].get("history_orphan_free_bytes", 0)) == a.live_at_start
          and t["attrs"].get("history_incomplete") == "0"
          and t["phases"][0].get("lower_bound") == 0 and "warning" not in err,
          "orphan frees of a complete history: counted, not warned: %r %r" % (err, t["attrs"]))
    # a ring edge between a free_requested and its free_completed is evidence
    # enough on its own
    a = Allocator(42, "2.1", preexisting=0)
    for _ in range(30):
        a.alloc(1000)
    a.free(deferred=True)
    a.alloc(5)
    a.complete_pending()
    a.run_pass(50, 1 << 20)
    snap = a.snapshot()
    entries = snap["device_traces"][0]
    cut = min(i for i, e in enumerate(entries) if e["action"] == "free_requested"
              and entries[i + 1]["action"] != "free_completed")
    snap["device_traces"][0] = entries[cut + 1:]
    rc, _, err = run("import", "torch-snapshot", dump(snap, "split.pickle"), "--tokens", 7,
                     "-o", path("split"))
    p = phases_of(path("split/rank-0.h5"))[0]
    check(rc == 0 and p["lower_bound"] & 1 and "lack their free_requested" in err,
          "a split free pair marks the phase: %r %r" % (p["lower_bound"], err))
    # annotated: only the phase that began before the first kept entry
    a, _ = annotated(43, [(256, 1, "context"), (1024, 1, "context")], gap=40)
    snap = a.snapshot()
    ann = snap["external_annotations"]
    entries = snap["device_traces"][0]
    first_kept = next(i for i, e in enumerate(entries) if e["time_us"] > ann[0]["time_us"] + 3)
    snap["device_traces"][0] = entries[first_kept:]
    f = dump(snap, "ann-ring.pickle")
    rc, _, err = run("import", "torch-snapshot", f, "--max-entries", len(entries) - first_kept,
                     "-o", path("ann-ring"))
    ps = phases_of(path("ann-ring/rank-0.h5"))
    check(rc == 0 and ps[0]["lower_bound"] & 1 and not ps[1]["lower_bound"]
          and "before the first history entry" in err,
          "annotated ring: %r %r" % ([p["lower_bound"] for p in ps], err))
    # the same file without evidence of loss (no --max-entries, every free
    # pair whole, entries agreeing with the segments): recording may simply
    # have begun inside the phase; nothing is marked
    rc, _, err = run("import", "torch-snapshot", f, "-o", path("ann-ring2"))
    ps = phases_of(path("ann-ring2/rank-0.h5")) if rc == 0 else []
    check(rc == 0 and [p["lower_bound"] for p in ps] == [0, 0],
          "no evidence, no mark: %r %r" % ([p["lower_bound"] for p in ps], err))
    # C1: recording starts right at the phase (_record_memory_history(),
    # then record_function: the first START precedes every entry), the
    # history complete: the phase is exact, not a lower bound
    a = Allocator(45, "2.6", preexisting=2)
    name = "warmcal tokens=512 batch=1 label=context"
    a.annotate(name, "START")
    truth = a.run_pass(80, 1 << 20)
    a.annotate(name, "END")
    rc, _, err = run("import", "torch-snapshot", dump(a.snapshot(), "at-start.pickle"),
                     "--max-entries", 100000, "-o", path("at-start"))
    t = _trace.read(path("at-start/rank-0.h5")) if rc == 0 else {"attrs": {}, "phases": [{}]}
    p = t["phases"][0]
    check(rc == 0 and p.get("lower_bound") == 0 and (p.get("live_begin"), p.get("live_peak"))
          == truth and t["attrs"].get("history_incomplete") == "0" and "warning" not in err,
          "recording from the phase's start: exact: %r %r" % (p, err))
    # C2: the annotation ring (as long as the history's) lost the oldest
    # START: a warning, and a phase from the first history entry to that END
    # marked lower_bound bit 1, not an error
    a, truths = annotated(46, [(256, 1, "context"), (1024, 2, "context")])
    snap = a.snapshot()
    first_entry_time = snap["device_traces"][0][0]["time_us"]
    del snap["external_annotations"][0]        # START of the first phase
    rc, _, err = run("import", "torch-snapshot", dump(snap, "ann-lost.pickle"), "-o",
                     path("ann-lost"))
    t = _trace.read(path("ann-lost/rank-0.h5")) if rc == 0 else {"attrs": {}, "phases": []}
    ps = t["phases"]
    check(rc == 0 and len(ps) == 2, "END without START imports: %d %r" % (rc, err))
    if rc == 0 and len(ps) == 2:
        check(ps[0]["lower_bound"] == 1 and ps[0]["tokens"] == 256
              and ps[0]["begin_ns"] == first_entry_time * 1000
              and ps[0]["live_peak"] >= truths[0][1] and ps[1]["lower_bound"] == 0
              and (ps[1]["live_begin"], ps[1]["live_peak"]) == truths[1],
              "the START-less phase is a lower bound from the first entry: %r" % ps)
        check(t["attrs"].get("history_incomplete") == "1", "history_incomplete set")
        check("END of 'warmcal tokens=256 batch=1 label=context' without its START" in err
              and "ann-lost.pickle" in err and "warning" in err, "warned: %r" % err)


def case_truncated():
    a = Allocator(51, "2.1")
    a.run_pass(50, 1 << 20)
    data = pickle.dumps(a.snapshot())
    for n in (1, 2, len(data) // 3, len(data) // 2, len(data) - 1):
        with open(path("cut.pickle"), "wb") as f:
            f.write(data[:n])
        rc, _, err = run("import", "torch-snapshot", path("cut.pickle"), "--tokens", 1, "-o",
                         path("cut"))
        expect_refusal(rc, err, "cut.pickle", "truncated")
    # a memo slot far beyond the entries stored: CPython's unpickler would
    # size its memo by it and take all memory
    with open(path("memo.pickle"), "wb") as f:
        f.write(b"\x80\x02]r\xff\xff\xff\x7f.")
    rc, _, err = run("import", "torch-snapshot", path("memo.pickle"), "--tokens", 1, "-o",
                     path("cut"))
    expect_refusal(rc, err, "memo.pickle", "memo index 2147483647")
    open(path("empty.pickle"), "wb").close()
    rc, _, err = run("import", "torch-snapshot", path("empty.pickle"), "--tokens", 1, "-o",
                     path("cut"))
    expect_refusal(rc, err, "empty.pickle", "empty")
    rc, _, err = run("import", "torch-snapshot", path("missing.pickle"), "--tokens", 1, "-o",
                     path("cut"))
    expect_refusal(rc, err, "missing.pickle", "No such file")
    rc, _, err = run("import", "torch-snapshot", path("cut.pickle"), "--tokens", 1,
                     "--max-input-bytes", 10, "-o", path("cut"))
    expect_refusal(rc, err, "cut.pickle", "above the limit")
    check(not os.path.exists(path("cut/rank-0.h5")), "nothing written")


class _Payload:
    """Unpickled anywhere else, this would run a shell command."""

    def __reduce__(self):
        return (os.system, ("touch " + MARKER,))


def malicious_pickles():
    """(name, bytes, words the refusal must contain): every way a pickle can
    get hold of a callable, each inside an otherwise real snapshot."""
    a = Allocator(61, "2.1")
    a.run_pass(20, 1 << 20)
    snap = a.snapshot()
    out = []
    for proto in (0, 2, 4):
        s = dict(snap)
        s["allocator_settings"] = _Payload()
        op = "STACK_GLOBAL" if proto >= 4 else "GLOBAL"
        out.append(("reduce-p%d" % proto, pickle.dumps(s, protocol=proto), [op, "system"]))
    system = os.system.__module__  # "posix"
    cmd = b"touch " + MARKER.encode()
    out.append(("inst", b"(S'" + cmd + b"'\ni" + system.encode() + b"\nsystem\n.",
                ["INST", system + ".system"]))
    out.append(("obj", b"(S'x'\nS'" + cmd + b"'\no.", ["OBJ"]))
    out.append(("reduce-only", b"S'x'\n(S'" + cmd + b"'\ntR.", ["REDUCE"]))
    out.append(("build", b"}(dS'x'\nb.", ["BUILD"]))
    out.append(("newobj", b"\x80\x02X\x01\x00\x00\x00x)\x81.", ["NEWOBJ"]))
    copyreg.add_extension(system, "system", 240)
    try:
        out.append(("ext", pickle.dumps(_Payload(), protocol=2), ["EXT1"]))
    finally:
        copyreg.remove_extension(system, "system", 240)
    for proto, op in ((0, "PERSID"), (2, "BINPERSID")):
        buf = io.BytesIO()
        p = pickle.Pickler(buf, protocol=proto)
        p.persistent_id = lambda obj: "payload" if obj == "payload" else None
        p.dump({"segments": [], "device_traces": [["payload"]]})
        out.append(("persid-p%d" % proto, buf.getvalue(), [op]))
    return out


def case_malicious():
    """Hostile pickles are refused before anything runs: the command exits
    2 naming the file and what the pickle asked for, and the shell command
    they carry never ran. The unpickler refuses globals on its own too."""
    for name, data, words in malicious_pickles():
        with open(path(name + ".pickle"), "wb") as f:
            f.write(data)
        rc, _, err = run("import", "torch-snapshot", path(name + ".pickle"), "--tokens", 1,
                         "-o", path("mal"))
        expect_refusal(rc, err, name + ".pickle", "refused", *words)
        check(not os.path.exists(MARKER), "%s: the payload ran" % name)
    check(not os.path.exists(path("mal/rank-0.h5")), "nothing written")
    # the control: a plain pickle.load of the same file does run the payload,
    # so the marker checks above can fail
    subprocess.run([sys.executable, "-c",
                    "import pickle, sys; pickle.load(open(sys.argv[1], 'rb'))",
                    path("reduce-p2.pickle")], capture_output=True, timeout=60)
    check(os.path.exists(MARKER), "control: pickle.load should have run the payload")
    if os.path.exists(MARKER):
        os.unlink(MARKER)
    # the second lock: the unpickler alone, the opcode scan skipped
    data = pickle.dumps({"x": _Payload()}, protocol=2)
    try:
        torch_snapshot._NoGlobals(data, "direct.pickle").load()
        check(False, "the unpickler built a global")
    except InputError as e:
        check("direct.pickle" in str(e) and "system" in str(e), "unpickler refusal: %s" % e)
    check(not os.path.exists(MARKER), "the payload ran through the unpickler")


def case_types():
    """Fields of the wrong type or range are named by their path."""
    a = Allocator(71, "2.1")
    a.run_pass(30, 1 << 20)
    base = a.snapshot()

    def refused(mutate, *words, extra=()):
        s = pickle.loads(pickle.dumps(base))
        mutate(s)
        rc, _, err = run("import", "torch-snapshot", dump(s, "types.pickle"), "--tokens", 1,
                         *extra, "-o", path("types"))
        expect_refusal(rc, err, "types.pickle", *words)

    refused(lambda s: s["device_traces"][0][17].__setitem__("size", "12"),
            "device_traces[0][17].size: expected an integer in 0..", "a string")
    refused(lambda s: s["device_traces"][0][3].__setitem__("addr", 1.5),
            "device_traces[0][3].addr: expected an integer")
    refused(lambda s: s["device_traces"][0][3].__setitem__("size", -1),
            "device_traces[0][3].size", "-1")
    refused(lambda s: s["device_traces"][0][2].__setitem__("action", None),
            "device_traces[0][2].action: expected a string")
    refused(lambda s: s["device_traces"][0][4].pop("addr"), "device_traces[0][4].addr", "missing")
    refused(lambda s: s["segments"][1]["blocks"][0].__setitem__("state", 5),
            "segments[1].blocks[0].state: expected a string")
    refused(lambda s: s["segments"][0].__setitem__("blocks", {}),
            "segments[0].blocks: expected a list")
    refused(lambda s: s["segments"][0].__setitem__("total_size", True),
            "segments[0].total_size", "a boolean")
    refused(lambda s: s.pop("device_traces"), "device_traces", "_record_memory_history")
    refused(lambda s: s["device_traces"][0][5].__setitem__("frames", {1, 2}),
            "device_traces[0][5].frames: expected plain data", "set")
    refused(lambda s: s["device_traces"][0][5].__setitem__("frames", b"raw"),
            "device_traces[0][5].frames", "bytes")
    refused(lambda s: s["device_traces"].append([{"action": "alloc", "addr": 1, "size": 2}]),
            "--device")
    refused(lambda s: None, "--device 3", extra=("--device", 3))
    # a second device with history: --device picks it
    s = pickle.loads(pickle.dumps(base))
    s["device_traces"].append([{"action": "alloc", "addr": 1, "size": 2}])
    rc, _, err = run("import", "torch-snapshot", dump(s, "dev.pickle"), "--tokens", 1,
                     "--device", 1, "-o", path("dev"))
    p = phases_of(path("dev/rank-0.h5"))[0] if rc == 0 else {}
    check(rc == 0 and p.get("live_peak") == 2, "--device 1: %r %s" % (p, err))


def mutate(rng, data, hostile):
    data = bytearray(data)
    kind = rng.randrange(7)
    if kind == 0 and data:          # flip bytes
        for _ in range(rng.randrange(1, 4)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif kind == 1:                 # insert bytes
        i = rng.randrange(len(data) + 1)
        data[i:i] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 8)))
    elif kind == 2 and data:        # delete a range
        i = rng.randrange(len(data))
        del data[i:i + rng.randrange(1, 16)]
    elif kind == 3:                 # truncate
        data = data[:rng.randrange(len(data) + 1)]
    elif kind == 4 and data:        # duplicate a chunk
        i = rng.randrange(len(data))
        data[i:i] = data[i:i + rng.randrange(1, 32)]
    elif kind == 5:                 # splice a hostile pickle's bytes in
        h = hostile[rng.randrange(len(hostile))]
        i, j = rng.randrange(len(h)), rng.randrange(len(data) + 1)
        data[j:j] = h[i:i + rng.randrange(1, 24)]
    else:                           # a byte set to an opcode that calls
        if data:
            data[rng.randrange(len(data))] = rng.choice(b"cRi\x93o\x81\x92bP\x82Q")
    return bytes(data)


def case_fuzz():
    """Thousands of deterministic mutations of valid and hostile snapshots:
    every outcome is a success or the importer's own clean error, never
    another exception, and no payload ever runs. A sample goes through the
    command line too, whose status is then 0 or 2."""
    rng = random.Random(20261202)
    seeds = []
    for version, seed in (("2.0", 81), ("2.1", 82), ("2.6", 83)):
        a, _ = annotated(seed, [(256, 1, "context"), (1024, 2, "context")], version=version) \
            if version == "2.6" else (Allocator(seed, version), None)
        if version != "2.6":
            a.run_pass(40, 1 << 20)
        seeds.append(pickle.dumps(a.snapshot(), protocol=rng.choice((2, 4))))
    hostile = [d for _, d, _ in malicious_pickles()]
    pool = seeds + hostile
    outcomes = {"ok": 0, "refused": 0}
    f = path("fuzz.pickle")
    cases = int(os.environ.get("WARMCAL_IMPORT_FUZZ_CASES", "3000"))
    for i in range(cases):
        data = mutate(rng, pool[rng.randrange(len(pool))], hostile)
        if rng.random() < 0.3:
            data = mutate(rng, data, hostile)
        with open(f, "wb") as out:
            out.write(data)
        try:
            torch_snapshot.import_file(f)
            outcomes["ok"] += 1
        except InputError as e:
            outcomes["refused"] += 1
            check(str(e).startswith(f), "mutation %d: error does not name the file: %s" % (i, e))
        except Exception as e:   # anything else is a bug
            check(False, "mutation %d: %s: %s" % (i, type(e).__name__, e))
            with open(path("fuzz-failure-%d.pickle" % i), "wb") as out:
                out.write(data)
        check(not os.path.exists(MARKER), "mutation %d ran the payload" % i)
        if i % 100 == 0:
            rc, _, err = run("import", "torch-snapshot", f, "--tokens", 1, "-o", path("fz"))
            check(rc in (0, 2), "mutation %d: command exit %d: %s" % (i, rc, err))
            check(not os.path.exists(MARKER), "mutation %d ran the payload" % i)
    print("fuzz outcomes:", outcomes)
    check(outcomes["ok"] > 0 and outcomes["refused"] > 0, "both outcomes seen: %r" % outcomes)


# --- resource bounds and the replay corpus ---------------------------------------

# What a refusal may cost at most: far above what one takes now (well under
# a second to a few seconds, tens to hundreds of MB) and far below what the
# shapes took before the bounds (12+ GB, minutes), so a regression fails
# here instead of eating the machine.
BOUND_S = 30
BOUND_AS = 4 << 30
CORPUS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fuzz",
                      "corpus")


def run_bounded(*argv):
    """`python -m warmcal.importers ARGV` under an address-space limit of
    BOUND_AS (not in a sanitizer build: its runtime reserves terabytes of
    address space) and a timeout a little past BOUND_S. Returns (rc,
    stderr, seconds)."""
    import resource
    import time
    env = dict(os.environ)
    sanitized = "asan" in env.get("LD_PRELOAD", "")

    def limit():
        if not sanitized:
            resource.setrlimit(resource.RLIMIT_AS, (BOUND_AS, BOUND_AS))

    t0 = time.monotonic()
    try:
        p = subprocess.run([os.environ.get("WARMCAL_PYTHON", sys.executable), "-m",
                            "warmcal.importers"] + [str(a) for a in argv],
                           capture_output=True, text=True, env=env, cwd=TMP,
                           preexec_fn=limit, timeout=BOUND_S * 2)
    except subprocess.TimeoutExpired:
        return None, "timed out", time.monotonic() - t0
    return p.returncode, p.stderr, time.monotonic() - t0


def case_bounds():
    """The review's resource shapes at the sizes that once took gigabytes
    or minutes are refused with one line, exit 2, in time and memory."""
    import hostile
    shapes = [
        # S1: one entry referenced 10^6 times by a list every device shares
        ("laughs", hostile.laughs(200, 1000000), [], ["devices 0, 1", "and 192 more"]),
        ("laughs-device", hostile.laughs(200, 1000000), ["--device", 7],
         ["device_traces[7][1]", "the same object as device_traces[7][0]"]),
        # S2: nesting a million deep, on the stack and through the memo
        ("deep-lists", hostile.deep_lists(1000000), [], ["refused", "objects"]),
        ("deep-dicts", hostile.deep_dicts(1000000), [], ["nested deeper than 64 levels"]),
        ("deep-memo", hostile.deep_memo(300000), [], ["nested deeper than 64 levels"]),
        # S3: 20 MB of one-byte empty dicts
        ("empty-dicts", hostile.empty_dicts(20000000), [], ["refused", "objects"]),
        ("wide-integer", hostile.wide_integer(50000000), [], ["integer of", "64 bits"]),
        ("decimal-integer", hostile.decimal_integer(1000000), [], ["decimal digits"]),
    ]
    for name, data, extra, words in shapes:
        f = path(name + ".pickle")
        with open(f, "wb") as out:
            out.write(data)
        del data
        rc, err, seconds = run_bounded("torch-snapshot", f, "--tokens", 1, *extra, "-o",
                                       path("bounds"))
        expect_refusal(rc if rc is not None else -1, err, name + ".pickle", *words)
        check(seconds < BOUND_S, "%s: refused in %.1f s, bound %d s" % (name, seconds, BOUND_S))
        os.unlink(f)
    # the object budget follows --max-input-bytes: a real snapshot passes
    # with a small limit only if its objects fit one per 16 bytes of it
    a = Allocator(111, "2.1")
    a.run_pass(200, 1 << 20)
    f = dump(a.snapshot(), "budget.pickle")
    size = os.path.getsize(f)
    rc, err, _ = run_bounded("torch-snapshot", f, "--tokens", 1, "--max-input-bytes", size,
                             "-o", path("budget"))
    check(rc == 0, "a real snapshot at --max-input-bytes = its size: %s" % err)
    # torch shares frame lists among entries: a snapshot doing so is read
    snap = a.snapshot()
    frames = [{"filename": "m.py", "line": n, "name": "f"} for n in range(200)]
    for e in snap["device_traces"][0]:
        e["frames"] = frames
    rc, err, _ = run_bounded("torch-snapshot", dump(snap, "shared.pickle"), "--tokens", 1,
                             "-o", path("shared"))
    check(rc == 0, "shared frames are read: %s" % err)


def case_corpus():
    """Every file of the replay corpus (tests/fuzz/corpus/snapshot and
    import_csv, written by make_corpus.py): exit 0 or 2 with one line, never
    another exception, within the time and memory bounds; ok-* must import,
    bad-* must be refused."""
    seen = 0
    for kind, folder in (("torch-snapshot", "snapshot"), ("csv", "import_csv")):
        for name in sorted(os.listdir(os.path.join(CORPUS, folder))):
            f = os.path.join(CORPUS, folder, name)
            out = path("corpus-out")
            shutil.rmtree(out, ignore_errors=True)
            rc, err, seconds = run_bounded(kind, f, "-o", out)
            if kind == "torch-snapshot" and rc == 2 and "--tokens" in err:
                rc, err, seconds = run_bounded(kind, f, "--tokens", 1, "-o", out)
            seen += 1
            lines = [l for l in err.splitlines() if l.strip()]
            check(rc in (0, 2), "%s: exit %r: %s" % (name, rc, err))
            check("Traceback" not in err, "%s: an exception: %s" % (name, err))
            check(seconds < BOUND_S, "%s: %.1f s" % (name, seconds))
            if rc == 2:
                check(len(lines) == 1 and name in err, "%s: one line naming it: %r" % (name, err))
            if name.startswith("ok-"):
                check(rc == 0, "%s must import: %s" % (name, err))
            elif name.startswith("bad-"):
                check(rc == 2, "%s must be refused: %s" % (name, err))
    check(seen >= 20, "corpus files found: %d" % seen)


# --- fit and validate ------------------------------------------------------------

def fit_and_validate(traces, what):
    table = path("table-%s.json" % what)
    rc, _, err = run("fit", *traces, "-o", table)
    check(rc == 0, "%s: fit: %s" % (what, err))
    rc, _, err = run("check", table)
    check(rc == 0, "%s: check: %s" % (what, err))
    rc, out, err = run("validate", table, *traces)
    check(rc == 0, "%s: validate: %s %s" % (what, out, err))
    return table


def case_snapshot_fit():
    """Traces imported from snapshots fit and validate like any other."""
    files, tokens = [], [256, 512, 1024, 2048, 4096, 8192]
    for k, t in enumerate(tokens):
        a = Allocator(90 + k, "2.1")
        for _ in range(3):
            a.alloc(t * 4096)
        a.run_pass(40, 1 << 16)
        files.append(dump(a.snapshot(), "fit%d.pickle" % k))
    argv = ["import", "torch-snapshot"] + files
    for t in tokens:
        argv += ["--tokens", t]
    rc, _, err = run(*argv, "--model", "snap-model", "-o", path("snapfit"))
    check(rc == 0, "import for fit: %s" % err)
    fit_and_validate([path("snapfit/rank-0.h5")], "snapshots")
    shapes = [(t, 1, "context") for t in tokens]
    a, _ = annotated(99, shapes)
    rc, _, err = run("import", "torch-snapshot", dump(a.snapshot(), "annfit.pickle"), "-o",
                     path("annfit"))
    check(rc == 0, "annotated import for fit: %s" % err)
    fit_and_validate([path("annfit/rank-0.h5")], "annotated")


# --- CSV -------------------------------------------------------------------------

def write_csv(name, text):
    with open(path(name), "w", encoding="utf-8", newline="") as f:
        f.write(text)
    return path(name)


def case_csv_roundtrip():
    """A table of measurements -> traces -> `warmcal inspect` shows the same
    numbers -> `warmcal fit` -> `check` accepts the table -> `validate`
    holds against the same traces."""
    rng = random.Random(7)
    rows, expected = [], {}
    for rank in (0, 1, 2):
        for tokens in (128, 512, 1024, 2048, 4096, 8192):
            peak = 2_000_000_000 + rank * 300_000_000 + tokens * 180_000 + rng.randrange(1 << 20)
            free_b = "" if tokens == 128 else str(70_000_000_000 - rank * 1_000_000)
            free_a = "" if tokens == 128 else str(int(free_b) - peak)
            rows.append("%d,%s,%d,%d,%d,%s,%s" % (tokens, free_b, rank, 1, peak, free_a,
                                                  "ok" if tokens != 4096 or rank else ""))
            expected.setdefault(rank, []).append((tokens, peak, free_b, free_a))
    rows.append("16384,,0,1,0,,oom")
    # label goes last, to show any order works
    text = "tokens,free_before,rank,batch,peak_bytes,free_after,outcome,label\n" + \
        "".join(r + ",context\n" for r in rows)
    f = write_csv("measurements.csv", text)
    out = path("csv")
    rc, stdout, err = run("import", "csv", f, "--model", "csv-model", "--producer", "vllm-log",
                          "-o", out)
    check(rc == 0, "csv import: %s" % err)
    traces = [os.path.join(out, "rank-%d.h5" % r) for r in (0, 1, 2)]
    check(stdout.split() == traces, "paths on stdout: %r" % stdout)
    rc, js, err = run("inspect", "--json", *traces)
    check(rc == 0, "inspect: %s" % err)
    shown = json.loads(js)
    for t in shown:
        r = t["rank"]
        check(t["world_size"] == 3 and t["source"] == "import" and t["model"] == "csv-model",
              "rank %d run description" % r)
        check(t["attributes"].get("import_format") == "csv"
              and t["attributes"].get("producer") == "vllm-log"
              and t["attributes"].get("import_files") == "measurements.csv", "csv attrs")
        got = [(p["tokens"], p["live_peak"],
                "" if p["device_free_begin"] is None else str(p["device_free_begin"]),
                "" if p["device_free_end"] is None else str(p["device_free_end"]))
               for p in t["phases"] if p["outcome"] == "ok"]
        check(got == expected[r], "rank %d: inspect shows %r, table had %r" % (r, got, expected[r]))
        check(all(p["live_begin"] == 0 and p["live_end"] == 0 for p in t["phases"]),
              "live edges are 0")
    oom = [p for p in shown[0]["phases"] if p["outcome"] == "oom"]
    check(len(oom) == 1 and oom[0]["tokens"] == 16384, "the oom row")
    fit_and_validate(traces, "csv")
    # --world-size larger than the table's ranks
    rc, _, err = run("import", "csv", f, "--world-size", 8, "-o", path("csv8"))
    check(rc == 0 and _trace.read(path("csv8/rank-0.h5"))["world_size"] == 8, "--world-size 8")
    check(_trace.read(path("csv8/rank-0.h5"))["attrs"]["producer"] == "csv", "default producer")
    # The free columns see the peak too: rows whose free memory fell by
    # exactly peak_bytes need peak_bytes, as rows without free columns do;
    # a fall beyond the peak (memory taken beside the allocator) adds only
    # the excess.
    head = "rank,label,tokens,batch,peak_bytes"
    plain, same, beyond, estimates = [head], [head + ",free_before,free_after"], \
        [head + ",free_before,free_after"], {}
    for k in range(1, 7):
        peak, free = k * 1_000_000_000, 100_000_000_000_000
        plain.append("0,context,%d,1,%d" % (k * 1024, peak))
        same.append("0,context,%d,1,%d,%d,%d" % (k * 1024, peak, free, free - peak))
        beyond.append("0,context,%d,1,%d,%d,%d" % (k * 1024, peak, free, free - peak - (3 << 20)))
    for name, lines in (("plain", plain), ("same", same), ("beyond", beyond)):
        f = write_csv("need-%s.csv" % name, "\n".join(lines) + "\n")
        rc, _, err = run("import", "csv", f, "-o", path("need-" + name))
        check(rc == 0, "need %s: import: %s" % (name, err))
        table = fit_and_validate([path("need-%s/rank-0.h5" % name)], "need-" + name)
        rc, out, err = run("estimate", table, "--tokens", 4096)
        check(rc == 0, "need %s: estimate: %s" % (name, err))
        estimates[name] = int(out) if rc == 0 else None
    check(estimates["same"] == estimates["plain"] is not None,
          "a free drop equal to the peak is not counted twice: %r" % estimates)
    check(estimates["beyond"] is not None and estimates["plain"] is not None
          and estimates["beyond"] > estimates["plain"],
          "a free drop beyond the peak adds to the need: %r" % estimates)
    p = phases_of(path("need-same/rank-0.h5"))[0]
    check(p["reserved_begin"] == 0 and p["reserved_end"] == p["live_peak"],
          "the mapping: reserved 0 -> peak_bytes: %r" % p)


def case_csv_bad():
    """Bad tables are refused with file, line and column named; nothing is
    written; a trace name held by a folder is never replaced."""
    head = "rank,label,tokens,batch,peak_bytes\n"
    cases = [
        (head + "0,context,512,1,100\n0,context,0,1,100\n", "line 3, column 3 (tokens)", "'0'"),
        (head + "0,context,abc,1,100\n", "line 2, column 3 (tokens)", "'abc'"),
        (head + "-1,context,5,1,100\n", "line 2, column 1 (rank)", "'-1'"),
        (head + "0,%s,5,1,100\n" % ("x" * 32), "line 2, column 2 (label)", "32 bytes"),
        (head + "0,two words,5,1,100\n", "line 2, column 2 (label)", "space"),
        (head + "0,context,5,0,100\n", "line 2, column 4 (batch)", "'0'"),
        (head + "0,context,5,1,1.5e9\n", "line 2, column 5 (peak_bytes)", "'1.5e9'"),
        (head + "0,context,5,1,%d\n" % (1 << 64), "line 2, column 5 (peak_bytes)", "2^64"),
        (head + "0,context,5,1\n", "line 2", "4 fields, expected 5"),
        ("rank,label,tokens,batch,peak_bytes,outcome\n0,context,5,1,9,crashed\n",
         "line 2, column 6 (outcome)", "'crashed'"),
        ("rank,label,tokens,batch,peak_bytes,free_before\n0,context,5,1,9,%d\n" % ((1 << 64) - 1),
         "line 2, column 6 (free_before)", "2^64-2"),
        ("rank,label,tokens,batch,peak_bytes,gpu\n0,context,5,1,9,x\n", "line 1",
         "unknown column 'gpu'"),
        ("rank,label,tokens,peak_bytes\n0,context,5,9\n", "line 1", "missing column batch"),
        ("rank,label,tokens,batch,peak_bytes,rank\n", "line 1, column 6", "given twice"),
        ("", "empty"),
        (head, "no measurements"),
        (head + "0,context,5,1,9\n\n\n0,\"x,5,1,9\n", "line 5", "not valid CSV"),
    ]
    for i, (text, *words) in enumerate(cases):
        f = write_csv("bad%d.csv" % i, text)
        out = path("badcsv%d" % i)
        rc, _, err = run("import", "csv", f, "-o", out)
        expect_refusal(rc, err, "bad%d.csv" % i, *words)
        check(not os.path.exists(out) or not os.listdir(out), "case %d: nothing written" % i)
    # line numbers as the CSV reader counts them: a quoted field may hold a
    # line break (the record is named by its first line), and \x85, \x0c or
    # \u2028 inside a field neither end a line nor shift the count
    text = head + '0,"con\ntext",5,1,9\n0,context,5,1,9\n0,a\x85b,5,1,9\n' \
        '0,c\x0cd,5,1,9\n0,e\u2028f,5,1,9\n0,context,5,1,x\n'
    f = write_csv("lines.csv", text)
    rc, _, err = run("import", "csv", f, "-o", path("lines"))
    expect_refusal(rc, err, "lines.csv", "line 2, column 2 (label)", "control character")
    text = head + '0,"quoted\nlabel-free",5,1,9\n0,context,5,1,9\n' \
        '0,context,5,1,9\n0,context,5,1,x\n'
    f = write_csv("lines2.csv", text)
    rc, _, err = run("import", "csv", f, "-o", path("lines"))
    expect_refusal(rc, err, "lines2.csv", "line 2, column 2 (label)")
    text = head + '0,context,5,1,9\n0,context,5,1,9\r0,context,5,1,9\r\n' \
        '0,"two words",5,1,"9"\n0,context,5,1,x\n'
    f = write_csv("lines3.csv", text)
    rc, _, err = run("import", "csv", f, "-o", path("lines"))
    expect_refusal(rc, err, "lines3.csv", "line 5, column 2 (label)")
    # a label with \x85 (NEL) is refused as a control character, on its own line
    text = head + "0,context,5,1,9\n0,a\x85b,5,1,9\n"
    f = write_csv("nel.csv", text)
    rc, _, err = run("import", "csv", f, "-o", path("lines"))
    expect_refusal(rc, err, "nel.csv", "line 3, column 2 (label)")
    # a record spanning lines, then a bad one: named by the line it starts on
    text = head + '0,context,5,1,"9"\n0,context,"5\n",1,9\n0,context,5,1,x\n'
    f = write_csv("span.csv", text)
    rc, _, err = run("import", "csv", f, "-o", path("lines"))
    expect_refusal(rc, err, "span.csv", "line 5, column 5 (peak_bytes)")
    text = head + '0,context,5,1,"9"\n0,context,"5\nx",1,9\n0,context,5,1,x\n'
    f = write_csv("span2.csv", text)
    rc, _, err = run("import", "csv", f, "-o", path("lines"))
    expect_refusal(rc, err, "span2.csv", "line 3, column 3 (tokens)", "'5\\nx'")
    with open(path("utf8.csv"), "wb") as f:
        f.write(head.encode() + b"0,context,5,1,9\n0,cont\xffext,5,1,9\n")
    rc, _, err = run("import", "csv", path("utf8.csv"), "-o", path("u"))
    expect_refusal(rc, err, "utf8.csv", "line 3", "UTF-8")
    f = write_csv("ranks.csv", head + "0,context,5,1,9\n3,context,5,1,9\n")
    rc, _, err = run("import", "csv", f, "--world-size", 2, "-o", path("r"))
    expect_refusal(rc, err, "ranks.csv", "line 3", "--world-size 2")
    # outputs: a folder at rank-1.h5 is refused and left alone; an old
    # regular trace is replaced; no temporary file is left
    out = path("guarded")
    os.makedirs(os.path.join(out, "rank-1.h5"))
    f = write_csv("two.csv", head + "0,context,5,1,9\n1,context,5,1,9\n")
    rc, _, err = run("import", "csv", f, "-o", out)
    expect_refusal(rc, err, "rank-1.h5", "not a regular file")
    check(sorted(os.listdir(out)) == ["rank-1.h5"]
          and os.path.isdir(os.path.join(out, "rank-1.h5")),
          "the folder stays, nothing else written: %r" % os.listdir(out))
    os.rmdir(os.path.join(out, "rank-1.h5"))
    os.symlink(path("elsewhere"), os.path.join(out, "rank-1.h5"))
    rc, _, err = run("import", "csv", f, "-o", out)
    expect_refusal(rc, err, "rank-1.h5", "not a regular file")
    check(not os.path.exists(path("elsewhere")), "the link's target was not written")
    os.unlink(os.path.join(out, "rank-1.h5"))
    with open(os.path.join(out, "rank-0.h5"), "w") as old:
        old.write("an older trace")
    rc, _, err = run("import", "csv", f, "-o", out)
    check(rc == 0 and sorted(os.listdir(out)) == ["rank-0.h5", "rank-1.h5"],
          "replaced in place, no temporary left: %r %s" % (os.listdir(out), err))
    check(_trace.read(os.path.join(out, "rank-0.h5"))["phases"][0]["live_peak"] == 9,
          "the old trace was replaced")


def case_cli():
    """`warmcal import --help` lists both subcommands with an example; a
    missing Python is one line and exit 2."""
    rc, out, _ = run("import", "--help")
    check(rc == 0 and "torch-snapshot" in out and "csv" in out and "examples:" in out,
          "import --help: %r" % out)
    rc, out, _ = run("--help")
    check("import" in out, "warmcal --help lists import")
    rc, out, err = run("import", "csv", "--help")
    check(rc == 0 and "--producer" in out, "import csv --help (Python's): %r %r" % (out, err))
    env = dict(os.environ, WARMCAL_PYTHON=path("no-python"))
    p = subprocess.run([ARGS.warmcal, "import", "csv", "x.csv", "-o", path("np")],
                       capture_output=True, text=True, env=env, timeout=60)
    check(p.returncode == 2 and len(p.stderr.splitlines()) == 1 and "no-python" in p.stderr,
          "missing python: %d %r" % (p.returncode, p.stderr))
    rc, _, err = run("import", "frobnicate")
    check(rc == 2 and len(err.splitlines()) == 1, "unknown importer: %r" % err)
    # the command finds the package and the library without the environment
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "WARMCAL_TRACE_LIB")}
    f = write_csv("plain.csv", "rank,label,tokens,batch,peak_bytes\n0,context,5,1,9\n")
    p = subprocess.run([ARGS.warmcal, "import", "csv", f, "-o", path("plain")],
                       capture_output=True, text=True, env=env, timeout=60, cwd=TMP)
    check(p.returncode == 0 and os.path.exists(path("plain/rank-0.h5")),
          "runs from the build tree alone: %s" % p.stderr)


CASES = {name[5:]: fn for name, fn in globals().items() if name.startswith("case_")}

try:
    if ARGS.case not in CASES:
        sys.exit("unknown case %s (known: %s)" % (ARGS.case, ", ".join(CASES)))
    CASES[ARGS.case]()
finally:
    shutil.rmtree(TMP, ignore_errors=True)
if FAILURES:
    print("%d failure(s)" % len(FAILURES))
    sys.exit(1)
print("ok", ARGS.case)
