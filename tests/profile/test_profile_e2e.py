"""End to end: `warmcal profile` runs the plain C test server on the fake
driver and the fake CUPTI, and the traces it writes equal the truth the
server wrote from its own accounting, to the byte; failures of CUPTI or of
the output leave the server running to its normal exit with one message.

usage: test_profile_e2e.py CASE --warmcal BIN --server BIN --inject LIB
                           --fakes DIR --workdir DIR [-- MPIEXEC...]
Exit 0 pass, 1 fail, 77 skip (h5py missing).
"""
import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

try:
    import h5py
except ImportError:
    print("skip: h5py is not installed", file=sys.stderr)
    sys.exit(77)

U64_MAX = (1 << 64) - 1
LB_DROPPED, LB_UNEXPLAINED, LB_NO_ALLOCATION, LB_ABORTED = 1, 2, 4, 8
OUTCOMES = {"ok": 0, "oom": 1, "aborted": 2}
EXACT = ("tokens", "batch", "live_begin", "live_peak", "live_end", "failed_alloc_bytes",
         "pinned_peak", "device_free_begin", "device_free_end", "lower_bound")
ARGS = None
TMP = None


def check(cond, msg):
    if not cond:
        raise AssertionError(msg)


def fake_env(cupti_lib=True, **extra):
    """The environment every run gets: the fakes first on the loader's path
    (and named by WARMCAL_CUPTI_LIB unless cupti_lib is false)."""
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = ARGS.fakes + (":" + env["LD_LIBRARY_PATH"]
                                           if env.get("LD_LIBRARY_PATH") else "")
    env["WARMCAL_INJECT_LIB"] = ARGS.inject
    for k in ("FAKE_CUPTI", "WARMCAL_OUT", "CUDA_INJECTION64_PATH", "NVTX_INJECTION64_PATH",
              "RANK", "WORLD_SIZE", "WARMCAL_RANK", "WARMCAL_WORLD_SIZE", "WARMCAL_CUPTI_LIB"):
        env.pop(k, None)
    if cupti_lib:
        env["WARMCAL_CUPTI_LIB"] = os.path.join(ARGS.fakes, "libcupti.so")
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run(argv, env, timeout=90):
    p = subprocess.run(argv, capture_output=True, text=True, errors="replace", env=env,
                       timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def profile(out, *server_args, fake_cupti=None, launcher=(), env=None):
    env = env or fake_env()
    if fake_cupti:
        env["FAKE_CUPTI"] = fake_cupti
    argv = list(launcher) + [ARGS.warmcal, "profile", "--out", out, "--model", "test-model",
                             "--", ARGS.server, "--truth-dir", out, *server_args]
    return run(argv, env, timeout=120 if launcher else 60)


def truth(out, rank):
    with open(os.path.join(out, f"truth-rank-{rank}.json")) as f:
        return json.load(f)


def trace(path):
    """The trace's attributes and phases as plain Python values."""
    with h5py.File(path, "r") as f:
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
        rows = f["phases"][()] if "phases" in f else []
        names = rows.dtype.names if len(rows) else ()
        phases = []
        for r in rows:
            p = {n: (r[n].decode().rstrip("\0") if n == "label" else int(r[n])) for n in names}
            phases.append(p)
    return attrs, phases


def expected(tp):
    """A truth phase as the trace row it must be."""
    e = {k: tp[k] for k in EXACT}
    e["label"] = tp["label"]
    e["outcome"] = OUTCOMES[tp["outcome"]]
    for k in ("live_end", "device_free_end"):
        if e[k] is None:
            e[k] = U64_MAX if k == "device_free_end" else None
    return e


def compare_phase(where, got, want, keys=None):
    keys = keys or ["label", "outcome", *EXACT]
    for k in keys:
        if want.get(k) is None:
            continue
        check(got.get(k) == want[k],
              f"{where}: {k} is {got.get(k)}, the server's truth says {want[k]}")


def check_trace_equals_truth(out, rank, world_size):
    t = truth(out, rank)
    path = os.path.join(out, f"rank-{rank}.h5")
    check(os.path.exists(path), f"no trace {path}; the folder holds {sorted(os.listdir(out))}")
    attrs, phases = trace(path)
    for k, v in (("rank", rank), ("world_size", world_size), ("source", "cupti"),
                 ("model", "test-model"), ("gpu_name", t["gpu_name"]),
                 ("gpu_total_bytes", t["gpu_total_bytes"]), ("complete", 1)):
        check(attrs.get(k) == v, f"{path}: attribute {k} is {attrs.get(k)!r}, expected {v!r}")
    check(len(phases) == len(t["phases"]),
          f"{path}: {len(phases)} phases, the server ran {len(t['phases'])}")
    for i, (got, tp) in enumerate(zip(phases, t["phases"])):
        compare_phase(f"{path} phase {i} ({tp['label']} tokens={tp['tokens']})", got, expected(tp))
    check_times_and_anomalies(path, phases)
    rc, _, err = run([ARGS.warmcal, "inspect", path], fake_env())
    check(rc == 0, f"warmcal inspect {path}: exit {rc}: {err}")
    return attrs, phases, t


def check_times_and_anomalies(path, phases):
    """Each phase ends after it begins, phases follow one another in time,
    and the script never frees an unknown address or frees twice."""
    prev_end = None
    for i, p in enumerate(phases):
        check(p["begin_ns"] < p["end_ns"],
              f"{path} phase {i}: begin_ns {p['begin_ns']} is not before end_ns {p['end_ns']}")
        if prev_end is not None:
            check(prev_end <= p["begin_ns"],
                  f"{path} phase {i} begins at {p['begin_ns']}, before phase {i - 1} ended ({prev_end})")
        prev_end = p["end_ns"]
        check(p.get("anomalies", 0) == 0, f"{path} phase {i}: {p.get('anomalies')} anomalies in a clean script")


def warmcal_lines(stderr):
    return [l for l in stderr.splitlines() if l.startswith("warmcal")]


# ---- cases ----

def profile_records_every_kind_of_memory_exactly_as_the_server_did():
    out = os.path.join(TMP, "T")
    rc, _, err = profile(out)
    check(rc == 0, f"warmcal profile exit {rc}: {err}")
    _, phases, t = check_trace_equals_truth(out, 0, 1)
    kinds = {p["label"] for p in t["phases"]}
    check({"decode", "prefill", "sample"} <= kinds, "the script ran every phase")
    check(any(p["outcome"] == "oom" and p["failed_alloc_bytes"] > 0 for p in t["phases"]),
          "an out-of-memory phase with the size asked for")
    check(not glob.glob(os.path.join(out, "*.spool")), "spools are removed once converted")
    # only the convention's ranges are phases; malformed and nested ones are noted
    check(len(phases) == 9, f"9 phases, not {len(phases)}")
    recovered = phases[8]
    check(recovered["outcome"] == OUTCOMES["ok"] and recovered["failed_alloc_bytes"] == 0,
          f"an allocation that failed and succeeded on retry is no out-of-memory: {recovered}")


def profile_on_four_ranks_writes_four_traces_that_fit_a_table():
    out = os.path.join(TMP, "T")
    rc, _, err = profile(out, launcher=ARGS.mpiexec)
    check(rc == 0, f"mpirun warmcal profile exit {rc}: {err}")
    traces = sorted(glob.glob(os.path.join(out, "rank-*.h5")))
    check(len(traces) == 4, f"4 traces, found {traces}")
    outcomes = []
    for r in range(4):
        _, phases, _ = check_trace_equals_truth(out, r, 4)
        outcomes.append([p["outcome"] for p in phases])
    check(outcomes[0] != outcomes[1], "rank 0 (short of memory) ran out where the others did not")
    table = os.path.join(TMP, "table.json")
    rc, so, err = run([ARGS.warmcal, "fit", *traces, "-o", table], fake_env())
    check(rc == 0, f"warmcal fit exit {rc}: {so}{err}")
    with open(table) as f:
        check(json.load(f), "the table is JSON")


def dropped_records_mark_their_phases_lower_bound():
    n = 13  # the script's first phase loses nothing; the second and fourth do
    out = os.path.join(TMP, "T")
    rc, _, err = profile(out, fake_cupti=f"drop={n}")
    check(rc == 0, f"warmcal profile exit {rc}: {err}")
    t = truth(out, 0)
    attrs, phases = trace(os.path.join(out, "rank-0.h5"))
    check(len(phases) == len(t["phases"]), "every phase is in the trace")
    dropped = set(range(n, t["records_total"] + 1, n))  # 1-based record numbers lost
    first_drop = min(dropped)
    check(attrs.get("dropped_records", 0) == len(dropped),
          f"dropped_records {attrs.get('dropped_records')} counts the {len(dropped)} lost records")
    flagged = exact = 0
    for i, (got, tp) in enumerate(zip(phases, t["phases"])):
        where = f"phase {i} ({tp['label']} tokens={tp['tokens']})"
        lost = [d for d in dropped if tp["records_begin"] < d <= tp["records_end"]]
        if lost:
            check(got["lower_bound"] & LB_DROPPED, f"{where} lost records {lost} but is not marked")
            flagged += 1
        if tp["records_end"] < first_drop:
            compare_phase(where, got, expected(tp))
            exact += 1
    check(flagged >= 2 and exact >= 1, "the script loses records in some phases, not all")
    # the injected library warns, and `warmcal profile`'s summary counts them
    check(any("warning: CUPTI dropped" in l for l in warmcal_lines(err)),
          f"the injected library reports the loss: {err}")
    summary = re.findall(r"(\d+) dropped records", err)
    check(summary and int(summary[-1]) == len(dropped),
          f"warmcal profile's summary counts {len(dropped)} dropped records: {err}")


def late_out_of_order_buffers_give_the_same_traces():
    out = os.path.join(TMP, "T")
    rc, _, err = profile(out, fake_cupti="late,buffer_records=2")
    check(rc == 0, f"warmcal profile exit {rc}: {err}")
    check_trace_equals_truth(out, 0, 1)


def a_server_killed_mid_phase_leaves_a_readable_trace_with_that_phase_aborted():
    k = 3
    out = os.path.join(TMP, "T")
    # the buffer never fills (records stay in it until flushed), and the
    # server hangs until its spool grew after the phase began (at most 30 s)
    # before it is killed: only the profiler's periodic flush of partly
    # filled buffers makes it grow, and it must have spooled the records
    rc, _, err = profile(out, "--crash-in-phase", str(k), "--crash-wait-ms", "30000",
                         fake_cupti="buffer_records=1000000")
    check(rc == 128 + 9, f"warmcal profile passes on SIGKILL as 137, not {rc}: {err}")
    t = truth(out, 0)
    path = os.path.join(out, "rank-0.h5")
    check(os.path.exists(path), f"a trace is written for the killed server: {err}")
    _, phases = trace(path)
    check(len(phases) == k + 1, f"{k} complete phases and the aborted one, not {len(phases)}")
    for i in range(k):
        compare_phase(f"phase {i}", phases[i], expected(t["phases"][i]))
    got, tp = phases[k], t["phases"][k]
    compare_phase(f"aborted phase {k}", got, expected(tp),
                  keys=["label", "tokens", "batch", "outcome", "live_begin", "live_peak",
                        "device_free_begin"])
    check(got["lower_bound"] & LB_ABORTED, "the aborted phase is a lower bound")
    rc, _, err = run([ARGS.warmcal, "inspect", path], fake_env())
    check(rc == 0, f"warmcal inspect reads it: {err}")


def a_server_killed_right_after_running_out_of_memory_keeps_the_failed_size():
    k = 5  # out of memory everywhere, then killed at once (no wait)
    out = os.path.join(TMP, "T")
    rc, _, err = profile(out, "--crash-in-phase", str(k), fake_cupti="buffer_records=1000000")
    check(rc == 128 + 9, f"warmcal profile passes on SIGKILL as 137, not {rc}: {err}")
    t = truth(out, 0)
    _, phases = trace(os.path.join(out, "rank-0.h5"))
    check(len(phases) == k + 1, f"{k} complete phases and the aborted one, not {len(phases)}")
    got, tp = phases[k], t["phases"][k]
    check(tp["failed_alloc_bytes"] > 0, "the script ran out of memory before the kill")
    compare_phase(f"aborted phase {k}", got, expected(tp),
                  keys=["label", "tokens", "outcome", "failed_alloc_bytes"])


def by_hand(out_dir, fake_cupti=None, warmcal_out=True, server_args=(), env_extra=None, wrap=()):
    """Run the server with the variables set by hand, as docs/guide.md shows."""
    env = fake_env(CUDA_INJECTION64_PATH=ARGS.inject, NVTX_INJECTION64_PATH=ARGS.inject,
                   WARMCAL_SESSION="by-hand", WARMCAL_MODEL="test-model")
    if warmcal_out:
        env["WARMCAL_OUT"] = out_dir
    if fake_cupti:
        env["FAKE_CUPTI"] = fake_cupti
    env.update(env_extra or {})
    truth_dir = os.path.join(TMP, "truth")
    os.makedirs(truth_dir, exist_ok=True)
    return run([*wrap, ARGS.server, "--truth-dir", truth_dir, *server_args], env)


def one_failure(fake_cupti=None, out_dir=None, warmcal_out=True, at_start=True, server_args=(),
                env_extra=None):
    """The server runs to its normal end and warmcal says one thing: that it
    is disabled (a failure at start-up: nothing else at all; later: the
    warnings of the phases before it, then nothing)."""
    out_dir = out_dir or os.path.join(TMP, "out")
    os.makedirs(os.path.join(TMP, "out"), exist_ok=True)
    rc, _, err = by_hand(out_dir, fake_cupti, warmcal_out, server_args, env_extra)
    check(rc == 0, f"the server exits normally (0), not {rc}: {err}")
    check(os.path.exists(os.path.join(TMP, "truth", "truth-rank-0.json")),
          "the server ran its whole script")
    lines = warmcal_lines(err)
    disabled = [i for i, l in enumerate(lines) if "disabled" in l]
    check(len(disabled) == 1, f"one message says the profiler is disabled: {err!r}")
    if at_start:
        check(len(lines) == 1, f"exactly one message from warmcal, got {len(lines)}: {err!r}")
    else:
        check(disabled[0] == len(lines) - 1, f"nothing from warmcal once disabled: {err!r}")
    return lines[disabled[0]]


def a_cupti_subscribe_failure_leaves_the_server_running_with_one_message():
    # the fake answers as CUPTI does when another tool holds it, naming that
    # tool through cuptiSubscribe_v2's parameters
    line = one_failure("fail=subscribe")
    check("another CUPTI tool" in line and "torch.profiler" in line,
          f"the message says another tool holds CUPTI: {line}")
    check("fake profiling tool" in line, f"the message names the tool CUPTI named: {line}")


def server_own_cupti(name="libcupti.so.13"):
    """A copy of the fake CUPTI in a folder of its own, as PyTorch's wheel
    brings one: not on the loader's path, not under CUDA_HOME."""
    d = os.path.join(TMP, "nvidia", "cuda_cupti", "lib")
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, name)
    shutil.copy(os.path.join(ARGS.fakes, "libcupti.so.13"), path)
    return path


def a_server_that_loaded_its_own_libcupti_is_profiled_with_that_copy():
    own = server_own_cupti()
    empty_home = os.path.join(TMP, "cuda-home")
    os.makedirs(empty_home)
    env = fake_env(cupti_lib=False, CUDA_HOME=empty_home)
    # the fakes only through the server's RPATH: the loader's search finds no
    # libcupti, and /usr/local/cuda's real one must not be loaded beside the copy
    env["LD_LIBRARY_PATH"] = os.environ.get("LD_LIBRARY_PATH", "")
    out = os.path.join(TMP, "T")
    rc, _, err = run([ARGS.warmcal, "profile", "--out", out, "--model", "test-model", "--keep-spool",
                      "--", ARGS.server, "--truth-dir", out, "--preload-cupti", own], env)
    check(rc == 0, f"warmcal profile exit {rc}: {err}")
    check(not [l for l in warmcal_lines(err) if "disabled" in l], f"the profiler ran: {err}")
    check_trace_equals_truth(out, 0, 1)
    spools = glob.glob(os.path.join(out, "*.spool"))
    check(len(spools) == 1, f"one spool kept, found {spools}")
    with open(spools[0], "rb") as f:
        data = f.read()
    check(b"cupti_lib\0" + own.encode() + b"\0" in data,
          f"the spool's cupti_lib is the server's own copy {own}")


def a_cupti_lib_that_differs_from_the_loaded_one_leaves_the_server_running_with_one_message():
    own = server_own_cupti()
    line = one_failure(server_args=("--preload-cupti", own))
    check("WARMCAL_CUPTI_LIB" in line and own in line and "two copies" in line,
          f"the message names both libraries: {line}")


def a_cupti_older_than_cuda_13_is_refused_with_one_message_and_no_trace():
    # version=24 is CUDA 12.6's CUPTI, whose MEMORY_POOL records are laid
    # out otherwise: read as CUDA 13's they would give wrong sizes, silently
    out = os.path.join(TMP, "T")
    rc, _, err = profile(out, fake_cupti="version=24")
    check(rc == 0, f"warmcal profile passes on the server's exit 0, not {rc}: {err}")
    check(os.path.exists(os.path.join(out, "truth-rank-0.json")), "the server ran its whole script")
    lines = [l for l in warmcal_lines(err) if l.startswith("warmcal: ")]
    check(len(lines) == 1 and "profiler disabled" in lines[0],
          f"one message from the injected library, that it is disabled: {err!r}")
    line = lines[0]
    fake = os.path.join(ARGS.fakes, "libcupti.so")
    check(fake in line, f"the message names the library: {line}")
    check("CUPTI API version 24 (CUDA 12)" in line, f"the message gives the library's version: {line}")
    need = re.search(r"needs at least (\d+) \(CUDA (\d+)\.0\)", line)
    check(need and int(need.group(1)) == int(need.group(2)) * 10000 and int(need.group(2)) >= 13,
          f"the message gives the version needed, a CUDA 13 or later release: {line}")
    check("WARMCAL_CUPTI_LIB" in line, f"the message says how to point at another libcupti: {line}")
    check(not glob.glob(os.path.join(out, "*.spool")) and not glob.glob(os.path.join(out, "rank-*.h5")),
          f"nothing is recorded, no spool and no trace: {sorted(os.listdir(out))}")
    check(any("no spool from this run" in l for l in warmcal_lines(err)),
          f"warmcal profile says there is no spool: {err!r}")
    # the same library loaded by the server itself (a CUDA 12 PyTorch wheel):
    # no second CUPTI can join it, and the message says so
    own = server_own_cupti()
    line = one_failure("version=24", server_args=("--preload-cupti", own),
                       env_extra={"WARMCAL_CUPTI_LIB": ""})
    check(own in line and "CUPTI API version 24" in line and "loaded that libcupti itself" in line,
          f"the message names the server's own libcupti and why another cannot help: {line}")
    check(not os.listdir(os.path.join(TMP, "out")), "no spool for the server's own old CUPTI either")


def a_phase_before_the_first_cuda_call_is_reported_once_and_not_measured():
    out = os.path.join(TMP, "T")
    rc, _, err = profile(out, "--phase-before-init")
    check(rc == 0, f"warmcal profile exit {rc}: {err}")
    early = [l for l in warmcal_lines(err) if "before CUDA initialised the profiler" in l]
    check(len(early) == 1 and "tokens=64" in early[0] and "label=early" in early[0],
          f"one warning names the early phase: {err}")
    check_trace_equals_truth(out, 0, 1)


def a_fork_while_a_phase_ends_leaves_child_and_server_running():
    out = os.path.join(TMP, "T")
    rc, _, err = profile(out, "--fork-in-phase-end")
    check(rc == 0, f"warmcal profile exit {rc}: {err}")
    t = truth(out, 0)
    check(t["fork_child_status"] == 0,
          f"the child forked inside the phase end used NVTX and exited 0, not {t['fork_child_status']} "
          f"(999: it hung on a lock): {err}")
    check_trace_equals_truth(out, 0, 1)


def a_message_never_reaches_a_file_that_took_over_descriptor_2():
    out = os.path.join(TMP, "out")
    os.makedirs(out)
    daemon_file = os.path.join(TMP, "daemon-data")
    rc, _, err = by_hand(out, "fail=flush", server_args=("--reopen-stderr", daemon_file))
    check(rc == 0, f"the server exits normally: {err}")
    with open(daemon_file, "rb") as f:
        data = f.read()
    check(b"warmcal" not in data, f"the profiler wrote into the daemon's file: {data!r}")
    # the message is not lost: the spool keeps it as a note
    rc, so, err = run([ARGS.warmcal, "profile", "--convert", out], fake_env())
    check(rc == 0, f"warmcal profile --convert exit {rc}: {so}{err}")
    attrs, _ = trace(os.path.join(out, "rank-0.h5"))
    check("profiler disabled" in str(attrs.get("notes", "")), f"the trace's notes keep the reason: {attrs}")


def a_message_never_reaches_the_spool_when_descriptor_2_was_closed_at_start():
    out = os.path.join(TMP, "out")
    os.makedirs(out)
    # 2>&-: the spool is then the first file opened, and gets descriptor 2
    rc, _, err = by_hand(out, "fail=flush", wrap=("sh", "-c", 'exec "$@" 2>&-', "sh"))
    check(rc == 0, f"the server exits normally: {err}")
    spools = glob.glob(os.path.join(out, "*.spool"))
    check(len(spools) == 1, f"one spool, found {spools}")
    with open(spools[0], "rb") as f:
        data = f.read()
    check(b"warmcal: " not in data, "a message was written into the spool")
    rc, so, err = run([ARGS.warmcal, "profile", "--convert", out], fake_env())
    check(rc == 0, f"warmcal profile --convert exit {rc}: {so}{err}")


def a_cupti_activity_failure_leaves_the_server_running_with_one_message():
    one_failure("fail=activity_enable")


def a_cupti_buffer_registration_failure_leaves_the_server_running_with_one_message():
    one_failure("fail=register_callbacks")


def a_cupti_clock_failure_leaves_the_server_running_with_one_message():
    one_failure("fail=timestamp")


def a_cupti_flush_failure_at_a_phase_end_disables_the_profiler_with_one_message():
    one_failure("fail=flush", at_start=False)


def a_cupti_callback_failure_leaves_the_server_running_with_one_message():
    one_failure("fail=enable_callback")


def an_unwritable_output_leaves_the_server_running_with_one_message():
    blocker = os.path.join(TMP, "a-file")
    with open(blocker, "w") as f:
        f.write("not a folder\n")
    line = one_failure(out_dir=os.path.join(blocker, "traces"))
    check("a-file" in line, f"the message names the output: {line}")


def a_missing_output_variable_leaves_the_server_running_with_one_message():
    line = one_failure(warmcal_out=False)
    check("WARMCAL_OUT" in line, f"the message names WARMCAL_OUT: {line}")


def a_by_hand_run_converts_with_profile_convert():
    out = os.path.join(TMP, "out")
    os.makedirs(out)
    rc, _, err = by_hand(out)
    check(rc == 0, f"the server exits 0: {err}")
    check(not warmcal_lines(err) or all("warning" in l for l in warmcal_lines(err)),
          f"no failure message: {err}")
    spools = glob.glob(os.path.join(out, "*.spool"))
    check(len(spools) == 1, f"one spool, found {spools}")
    rc, so, err = run([ARGS.warmcal, "profile", "--convert", out], fake_env())
    check(rc == 0, f"warmcal profile --convert exit {rc}: {so}{err}")
    shutil.copy(os.path.join(TMP, "truth", "truth-rank-0.json"), out)
    check_trace_equals_truth(out, 0, 1)


def injection_library_exports_initialize_injection_and_links_no_mpi_or_cudart():
    rc, so, err = run(["nm", "-D", "--defined-only", ARGS.inject], os.environ)
    check(rc == 0, f"nm -D: {err}")
    # NAME@@WARMCAL_INJECT_<ABI>; the version node itself is an absolute (A) symbol
    names = {l.split()[-1].split("@")[0] for l in so.splitlines()
             if len(l.split()) == 3 and l.split()[1] != "A"}
    check("InitializeInjection" in names, f"InitializeInjection exported: {sorted(names)}")
    rc, so, err = run(["ldd", ARGS.inject], os.environ)
    check(rc == 0, f"ldd: {err}")
    for bad in ("libmpi", "libcudart", "libcupti", "libcuda.so", "libhdf5"):
        check(bad not in so, f"the injection library links {bad}:\n{so}")
    # a C++ runtime only as a sanitizer runtime's own dependency, never directly
    rc, so, err = run(["readelf", "-d", ARGS.inject], os.environ)
    check(rc == 0, f"readelf -d: {err}")
    needed = [l for l in so.splitlines() if "(NEEDED)" in l]
    check(not any("libstdc++" in l for l in needed), f"the injection library needs libstdc++: {needed}")


CASES = {f.__name__: f for f in [
    profile_records_every_kind_of_memory_exactly_as_the_server_did,
    profile_on_four_ranks_writes_four_traces_that_fit_a_table,
    dropped_records_mark_their_phases_lower_bound,
    late_out_of_order_buffers_give_the_same_traces,
    a_server_killed_mid_phase_leaves_a_readable_trace_with_that_phase_aborted,
    a_server_killed_right_after_running_out_of_memory_keeps_the_failed_size,
    a_server_that_loaded_its_own_libcupti_is_profiled_with_that_copy,
    a_cupti_lib_that_differs_from_the_loaded_one_leaves_the_server_running_with_one_message,
    a_cupti_older_than_cuda_13_is_refused_with_one_message_and_no_trace,
    a_phase_before_the_first_cuda_call_is_reported_once_and_not_measured,
    a_fork_while_a_phase_ends_leaves_child_and_server_running,
    a_message_never_reaches_a_file_that_took_over_descriptor_2,
    a_message_never_reaches_the_spool_when_descriptor_2_was_closed_at_start,
    a_cupti_subscribe_failure_leaves_the_server_running_with_one_message,
    a_cupti_activity_failure_leaves_the_server_running_with_one_message,
    a_cupti_buffer_registration_failure_leaves_the_server_running_with_one_message,
    a_cupti_clock_failure_leaves_the_server_running_with_one_message,
    a_cupti_flush_failure_at_a_phase_end_disables_the_profiler_with_one_message,
    a_cupti_callback_failure_leaves_the_server_running_with_one_message,
    an_unwritable_output_leaves_the_server_running_with_one_message,
    a_missing_output_variable_leaves_the_server_running_with_one_message,
    a_by_hand_run_converts_with_profile_convert,
    injection_library_exports_initialize_injection_and_links_no_mpi_or_cudart,
]}


def main():
    global ARGS, TMP
    ap = argparse.ArgumentParser()
    ap.add_argument("case", choices=sorted(CASES))
    ap.add_argument("--warmcal", required=True)
    ap.add_argument("--server", required=True)
    ap.add_argument("--inject", required=True)
    ap.add_argument("--fakes", required=True)
    ap.add_argument("--workdir", required=True)
    argv = sys.argv[1:]
    launcher = argv[argv.index("--") + 1:] if "--" in argv else []
    ARGS = ap.parse_args(argv[:len(argv) - len(launcher) - (1 if launcher else 0)])
    ARGS.mpiexec = launcher
    os.makedirs(ARGS.workdir, exist_ok=True)
    TMP = tempfile.mkdtemp(prefix=ARGS.case[:40] + ".", dir=ARGS.workdir)
    try:
        CASES[ARGS.case]()
    except AssertionError as e:
        print(f"FAIL {ARGS.case}: {e}", file=sys.stderr)
        return 1
    finally:
        if os.environ.get("WARMCAL_KEEP_TEST_FILES"):
            print(f"(files kept in {TMP})", file=sys.stderr)
        else:
            shutil.rmtree(TMP, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
