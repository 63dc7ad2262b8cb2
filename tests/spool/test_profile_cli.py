#!/usr/bin/python3
"""`warmcal profile` as a process wrapper, with plain shell commands (no
CUDA): exit status and signals pass through like a shell's, the output folder
is checked before anything runs, the injection environment is set, and the
spools of the run (written here by make_spool, as the injected library would)
become one trace per rank; `--convert` does the same for spools written by hand.

usage: test_profile_cli.py CASE --warmcal BIN --make-spool BIN --workdir DIR
Exit 0 pass, 1 fail.
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ARGS = None
FAILURES = []
MIB = 1024 * 1024


def check(cond, what):
    if not cond:
        FAILURES.append(what)
        print(f"FAIL {what}", file=sys.stderr)


def env_for(work):
    env = dict(os.environ)
    # nothing here loads it: the commands are not CUDA programs
    lib = os.path.join(work, "libwarmcal-inject.so")
    if not os.path.exists(lib):
        open(lib, "wb").close()
    env["WARMCAL_INJECT_LIB"] = lib
    for name in ("WARMCAL_MODEL", "WARMCAL_DEVICE", "WARMCAL_SESSION", "WARMCAL_OUT"):
        env.pop(name, None)
    return env


def profile(work, *args, timeout=60):
    p = subprocess.run([ARGS.warmcal, "profile", *args], cwd=work, env=env_for(work),
                       capture_output=True, text=True, timeout=timeout)
    return p.returncode, p.stdout, p.stderr


def inspect(path):
    p = subprocess.run([ARGS.warmcal, "inspect", "--json", path], capture_output=True, text=True)
    check(p.returncode == 0, f"inspect {path}: {p.stderr}")
    return json.loads(p.stdout)[0] if p.returncode == 0 else None


def spools(d):
    return sorted(f for f in os.listdir(d) if f.endswith(".spool"))


# --- process control --------------------------------------------------------

def case_exit_status_is_the_commands(work):
    rc, _, err = profile(work, "--out", "o", "--", "sh", "-c", "exit 3")
    check(rc == 3, f"exit 3 gives {rc}: {err}")
    rc, _, err = profile(work, "--out", "o", "--", "true")
    check(rc == 0, f"true gives {rc}: {err}")


def case_command_killed_by_a_signal_gives_128_plus_n(work):
    rc, _, err = profile(work, "--out", "o", "--", "sh", "-c", "kill -KILL $$")
    check(rc == 128 + signal.SIGKILL, f"SIGKILL gives {rc}: {err}")
    rc, _, err = profile(work, "--out", "o", "--", "sh", "-c", "kill -TERM $$")
    check(rc == 128 + signal.SIGTERM, f"SIGTERM gives {rc}: {err}")


def case_signals_sent_to_profile_reach_the_command(work):
    for sig, code in ((signal.SIGTERM, 7), (signal.SIGUSR1, 8), (signal.SIGHUP, 9)):
        ready = os.path.join(work, f"ready-{sig}")
        got = os.path.join(work, f"got-{sig}")
        name = signal.Signals(sig).name[3:]
        script = (f"trap 'echo {name} > {got}; exit {code}' {name}; touch {ready}; "
                  "while :; do sleep 0.05; done")
        p = subprocess.Popen([ARGS.warmcal, "profile", "--out", "o", "--", "sh", "-c", script],
                             cwd=work, env=env_for(work), stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        while not os.path.exists(ready) and time.monotonic() < deadline and p.poll() is None:
            time.sleep(0.02)
        check(os.path.exists(ready), f"{name}: the command started")
        p.send_signal(sig)
        try:
            _, err = p.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            p.kill()
            _, err = p.communicate()
        check(p.returncode == code, f"{name}: exit {p.returncode} (want {code}): {err}")
        check(os.path.exists(got) and open(got).read().strip() == name,
              f"{name}: the command's trap ran")


def case_command_not_found_exits_127_and_not_runnable_126(work):
    rc, _, err = profile(work, "--out", "o", "--", "no-such-command-warmcal")
    check(rc == 127, f"not found gives {rc}")
    check("no-such-command-warmcal" in err and "not found" in err, f"message: {err!r}")
    script = os.path.join(work, "not-executable.sh")
    with open(script, "w") as f:
        f.write("#!/bin/sh\nexit 0\n")
    os.chmod(script, 0o644)
    rc, _, err = profile(work, "--out", "o", "--", script)
    # root may run anything: only a non-root user gets 126 for a file without x
    if os.geteuid() != 0:
        check(rc == 126, f"not executable gives {rc}: {err}")
    rc, _, err = profile(work, "--out", "o", "--", work)
    check(rc == 126, f"a folder gives {rc}: {err}")


def case_unusable_out_exits_2_before_running(work):
    blocker = os.path.join(work, "a-file")
    open(blocker, "w").close()
    marker = os.path.join(work, "ran")
    rc, _, err = profile(work, "--out", os.path.join(blocker, "sub"), "--", "touch", marker)
    check(rc == 2, f"out under a file gives {rc}")
    check(not os.path.exists(marker), "the command did not run")
    check("a-file" in err, f"the message names the path: {err!r}")
    rc, _, err = profile(work, "--out", "o")
    check(rc == 2 and "no command" in err, f"no command: {rc} {err!r}")
    rc, _, err = profile(work, "--device", "x", "--", "true")
    check(rc == 2 and "--device" in err, f"bad device: {rc} {err!r}")


def case_the_injection_environment_is_set(work):
    dump = os.path.join(work, "env.txt")
    rc, _, err = profile(work, "--out", "deep/er/o", "--model", "m-1", "--device", "3", "--",
                         "sh", "-c", f"env > {dump}")
    check(rc == 0, f"exit {rc}: {err}")
    env = dict(l.split("=", 1) for l in open(dump).read().splitlines() if "=" in l)
    out = os.path.realpath(os.path.join(work, "deep/er/o"))
    lib = os.path.realpath(os.path.join(work, "libwarmcal-inject.so"))
    check(os.path.isdir(out), "the output folder and its parents were made")
    check(env.get("WARMCAL_OUT") == out, f"WARMCAL_OUT {env.get('WARMCAL_OUT')}")
    check(env.get("CUDA_INJECTION64_PATH") == lib, "CUDA_INJECTION64_PATH is absolute")
    check(env.get("NVTX_INJECTION64_PATH") == lib, "NVTX_INJECTION64_PATH is absolute")
    check(env.get("WARMCAL_MODEL") == "m-1" and env.get("WARMCAL_DEVICE") == "3", "model, device")
    first = env.get("WARMCAL_SESSION", "")
    profile(work, "--out", "o", "--", "sh", "-c", f"env > {dump}")
    env = dict(l.split("=", 1) for l in open(dump).read().splitlines() if "=" in l)
    check(first and env.get("WARMCAL_SESSION") and env["WARMCAL_SESSION"] != first,
          "each run gets a fresh session")
    check("WARMCAL_MODEL" not in env, "no model unless asked")


# --- conversion -------------------------------------------------------------

def case_the_runs_spools_become_rank_traces(work):
    out = os.path.join(work, "o")
    os.makedirs(out)
    # a spool another session left: not ours, left alone
    subprocess.run([ARGS.make_spool, "ok", "0", os.path.join(out, "rank-0.1.spool"), "other"],
                   check=True)
    rc, _, err = profile(work, "--out", "o", "--model", "given", "--", ARGS.make_spool, "ok", "2")
    check(rc == 0, f"exit {rc}: {err}")
    check(spools(out) == ["rank-0.1.spool"], f"our spool removed, the other kept: {spools(out)}")
    check(not os.path.exists(os.path.join(out, "rank-0.h5")), "the other session not converted")
    check("rank 2:" in err and "2 phases" in err and "0 lower-bound" in err, f"report: {err!r}")
    t = inspect(os.path.join(out, "rank-2.h5"))
    if t:
        check(t["rank"] == 2 and t["world_size"] == 4 and t["source"] == "cupti", "attributes")
        check(t["model"] == "given", f"model {t['model']}")
        check([p["live_peak"] for p in t["phases"]] == [64 * MIB, 128 * MIB], "peaks")
        check([p["tokens"] for p in t["phases"]] == [256, 512], "tokens")
        check(all(p["lower_bound"] == 0 for p in t["phases"]), "no lower bound")
    rc, _, err = profile(work, "--out", "o", "--keep-spool", "--", ARGS.make_spool, "ok", "3")
    check(rc == 0 and len(spools(out)) == 2, f"--keep-spool keeps it: {spools(out)}")


def case_a_process_killed_inside_a_phase_is_reported_and_kept_aborted(work):
    rc, _, err = profile(work, "--out", "o", "--", "sh", "-c",
                         f"{ARGS.make_spool} killed 0; kill -KILL $$")
    check(rc == 137, f"exit {rc}")
    check("killed inside phase 'context'" in err and "1 lower-bound" in err, f"report: {err!r}")
    t = inspect(os.path.join(work, "o", "rank-0.h5"))
    if t:
        last = t["phases"][-1]
        check(last["outcome"] == "aborted", "aborted")
        check(last["lower_bound_reasons"] == ["aborted"], f"reasons {last['lower_bound_reasons']}")
        check(last["live_peak"] == 128 * MIB, "peak up to the kill")
    p = subprocess.run([ARGS.warmcal, "inspect", os.path.join(work, "o", "rank-0.h5")],
                       capture_output=True, text=True)
    check("lower_bound" in p.stdout and "aborted" in p.stdout and "1 lower-bound phase" in p.stdout,
          f"inspect shows the lower bound: {p.stdout}")


def case_two_spools_of_one_rank_are_named_by_pid(work):
    rc, _, err = profile(work, "--out", "o", "--", "sh", "-c",
                         f"{ARGS.make_spool} ok 0 & {ARGS.make_spool} ok 0; wait")
    out = os.path.join(work, "o")
    traces = sorted(f for f in os.listdir(out) if f.endswith(".h5"))
    check(rc == 0, f"exit {rc}: {err}")
    check(len(traces) == 2 and all(t.startswith("rank-0.pid-") for t in traces), f"{traces}")
    check("several spools of rank 0" in err, f"warning: {err!r}")


def case_an_idle_process_writes_no_trace(work):
    rc, _, err = profile(work, "--out", "o", "--", ARGS.make_spool, "idle", "0")
    check(rc == 0, f"exit {rc}: {err}")
    check("no phase recorded" in err, f"note: {err!r}")
    check(os.listdir(os.path.join(work, "o")) == [], "nothing left")


def corrupt(path, offset, data):
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(data)


def case_a_failed_conversion_after_success_exits_2(work):
    script = (f"import glob, os, subprocess; subprocess.run(['{ARGS.make_spool}', 'ok', '0'], "
              "check=True); p = glob.glob(os.environ['WARMCAL_OUT'] + '/*.spool')[0]; "
              "f = open(p, 'r+b'); f.seek(32 + 4); f.write(bytes([12, 0, 0, 0]))")
    rc, _, err = profile(work, "--out", "o", "--", "/usr/bin/python3", "-c", script)
    check(rc == 2, f"exit {rc}")
    check("offset 32" in err and "record size 12" in err, f"message: {err!r}")
    out = os.path.join(work, "o")
    check(len(spools(out)) == 1, "the spool that failed is kept")
    check(not [f for f in os.listdir(out) if ".h5" in f], "no trace, no partial file")


def case_convert_turns_spools_written_by_hand_into_traces(work):
    d = os.path.join(work, "by-hand")
    os.makedirs(d)
    subprocess.run([ARGS.make_spool, "ok", "1", os.path.join(d, "rank-1.500.spool"), "s"],
                   check=True)
    rc, _, err = profile(work, "--convert", d, "--keep-spool", "--events")
    check(rc == 0, f"exit {rc}: {err}")
    check(spools(d) == ["rank-1.500.spool"], "--keep-spool")
    t = inspect(os.path.join(d, "rank-1.h5"))
    check(t is not None and t["events"] > 0, "the timeline is there with --events")
    rc, _, err = profile(work, "--convert", d)
    check(rc == 0 and spools(d) == [], f"converted again and removed: {rc} {err}")
    rc, _, err = profile(work, "--convert", d)
    check(rc == 2 and "no spool" in err, f"nothing to convert: {rc} {err!r}")
    subprocess.run([ARGS.make_spool, "ok", "0", os.path.join(d, "rank-0.7.spool"), "s"],
                   check=True)
    corrupt(os.path.join(d, "rank-0.7.spool"), 0, b"NOT-A-SPOOL")
    rc, _, err = profile(work, "--convert", d)
    check(rc == 2 and "rank-0.7.spool" in err and "magic" in err, f"corrupt: {rc} {err!r}")
    rc, _, err = profile(work, "--convert", d, "--", "true")
    check(rc == 2, "--convert takes no command")


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("case")
    parser.add_argument("--warmcal", required=True)
    parser.add_argument("--make-spool", required=True)
    parser.add_argument("--workdir", required=True)
    ARGS = parser.parse_args()
    fn = globals().get("case_" + ARGS.case)
    if not fn:
        print(f"unknown case {ARGS.case}", file=sys.stderr)
        return 1
    os.makedirs(ARGS.workdir, exist_ok=True)
    work = tempfile.mkdtemp(prefix=ARGS.case[:20] + "-", dir=ARGS.workdir)
    try:
        fn(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if FAILURES else 0


if __name__ == "__main__":
    sys.exit(main())
