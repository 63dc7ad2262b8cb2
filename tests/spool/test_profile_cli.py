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


# --- review fixes: process groups, terminals, signals after the command ----

def wait_for(path, proc=None, seconds=30):
    deadline = time.monotonic() + seconds
    while not os.path.exists(path) and time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            break
        time.sleep(0.01)
    return os.path.exists(path)


def finish(p, seconds=60):
    try:
        _, err = p.communicate(timeout=seconds)
    except subprocess.TimeoutExpired:
        p.kill()
        _, err = p.communicate()
    return p.returncode, err or ""


def counts(path):
    """make_spool count-signals' file: (INT, TERM, HUP, foreground)."""
    try:
        return tuple(int(x) for x in open(path).read().split())
    except (OSError, ValueError):
        return None


def case_a_signal_to_the_whole_group_reaches_the_command_once(work):
    # `setsid warmcal profile`, then kill -TERM -- -PGID, as launchers,
    # service managers and job schedulers signal a job
    out = os.path.join(work, "count")
    p = subprocess.Popen([ARGS.warmcal, "profile", "--out", "o", "--", ARGS.make_spool,
                          "count-signals", out], cwd=work, env=env_for(work),
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    check(wait_for(out + ".ready", p), "the command started")
    os.killpg(p.pid, signal.SIGTERM)
    rc, err = finish(p)
    check(rc == 0, f"exit {rc}: {err}")
    check(counts(out) == (0, 1, 0, 0), f"the command got (INT, TERM, HUP, fg) {counts(out)}")
    # and sent to warmcal profile alone, still once
    os.unlink(out)
    os.unlink(out + ".ready")
    p = subprocess.Popen([ARGS.warmcal, "profile", "--out", "o", "--", ARGS.make_spool,
                          "count-signals", out], cwd=work, env=env_for(work),
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    check(wait_for(out + ".ready", p), "the command started")
    p.send_signal(signal.SIGTERM)
    rc, err = finish(p)
    check(rc == 0 and counts(out) == (0, 1, 0, 0), f"direct: exit {rc}, got {counts(out)}: {err}")


def case_ctrl_c_at_a_terminal_reaches_the_command_once(work):
    import fcntl
    import pty
    import termios
    out = os.path.join(work, "count")
    master, slave = pty.openpty()

    def take_terminal():
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    p = subprocess.Popen([ARGS.warmcal, "profile", "--out", "o", "--", ARGS.make_spool,
                          "count-signals", out], cwd=work, env=env_for(work), stdin=slave,
                         stdout=slave, stderr=slave, start_new_session=True,
                         preexec_fn=take_terminal)
    os.close(slave)
    check(wait_for(out + ".ready", p), "the command started")
    os.write(master, b"\x03")  # Ctrl-C: the terminal signals its foreground group
    try:
        p.wait(timeout=60)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()
    os.close(master)
    check(p.returncode == 0, f"exit {p.returncode}")
    # one SIGINT, and the command's group held the terminal
    check(counts(out) == (1, 0, 0, 1), f"the command got (INT, TERM, HUP, fg) {counts(out)}")


def case_sigint_that_ended_the_command_ends_profile_as_sigint(work):
    # a shell loop stops at Ctrl-C only when its command dies of SIGINT
    rc, _, err = profile(work, "--out", "o", "--", "sh", "-c", "kill -INT $$")
    check(rc == -signal.SIGINT, f"killed by SIGINT: {rc}: {err}")
    rc, _, err = profile(work, "--out", "o", "--", "sh", "-c", "kill -HUP $$")
    check(rc == 128 + signal.SIGHUP, f"other signals give 128+N: {rc}: {err}")


def case_a_signal_during_conversion_stops_it_and_keeps_the_spool(work):
    import fcntl
    out = os.path.join(work, "o")
    os.makedirs(out)
    # Another converter's lock on the folder holds this one just before it
    # moves its trace into place: the signal arrives while it converts.
    lock = os.open(out, os.O_RDONLY)
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        p = subprocess.Popen([ARGS.warmcal, "profile", "--out", "o", "--", ARGS.make_spool,
                              "ok", "0"], cwd=work, env=env_for(work), stderr=subprocess.PIPE,
                             text=True)
        deadline = time.monotonic() + 30
        while (not [f for f in os.listdir(out) if ".partial-" in f]
               and time.monotonic() < deadline and p.poll() is None):
            time.sleep(0.005)
        check([f for f in os.listdir(out) if ".partial-" in f], "the conversion started")
        p.send_signal(signal.SIGTERM)
        rc, err = finish(p)
    finally:
        os.close(lock)
    check(rc == 128 + signal.SIGTERM, f"exit {rc}: {err}")
    check("conversion stopped" in err and "--convert" in err, f"message: {err!r}")
    check(len(spools(out)) == 1, f"the spool is kept: {os.listdir(out)}")
    check(not [f for f in os.listdir(out) if ".h5" in f], f"no trace, no partial file: {os.listdir(out)}")
    rc, _, err = profile(work, "--convert", out)
    check(rc == 0 and os.path.exists(os.path.join(out, "rank-0.h5")), f"converted later: {rc} {err}")


def case_an_ignored_sigchld_still_gives_the_commands_status(work):
    show = os.path.join(work, "chld.txt")
    ignore = lambda: signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # noqa: E731
    script = ("import signal, sys; "
              f"open({show!r}, 'w').write(str(signal.getsignal(signal.SIGCHLD) == signal.SIG_IGN)); "
              "sys.exit(3)")
    p = subprocess.run([ARGS.warmcal, "profile", "--out", "o", "--", "/usr/bin/python3", "-c",
                        script], cwd=work, env=env_for(work), capture_output=True, text=True,
                       timeout=60, preexec_fn=ignore)
    check(p.returncode == 3, f"exit {p.returncode}: {p.stderr}")
    check(os.path.exists(show) and open(show).read() == "True",
          "the command keeps the caller's ignored SIGCHLD")
    p = subprocess.run([ARGS.warmcal, "profile", "--out", "o", "--", ARGS.make_spool, "ok", "0"],
                       cwd=work, env=env_for(work), capture_output=True, text=True, timeout=60,
                       preexec_fn=ignore)
    check(p.returncode == 0 and os.path.exists(os.path.join(work, "o", "rank-0.h5")),
          f"converted: exit {p.returncode}: {p.stderr}")


def case_signals_the_caller_ignores_stay_ignored_in_the_command(work):
    # nohup warmcal profile ...: SIGHUP ignored, in the command too
    ready, done = os.path.join(work, "ready"), os.path.join(work, "done")
    script = f"kill -HUP $$; touch {ready}; sleep 1; touch {done}"
    p = subprocess.Popen([ARGS.warmcal, "profile", "--out", "o", "--", "sh", "-c", script],
                         cwd=work, env=env_for(work), stderr=subprocess.PIPE, text=True,
                         preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    check(wait_for(ready, p), "the command survived its own SIGHUP")
    p.send_signal(signal.SIGHUP)
    rc, err = finish(p)
    check(rc == 0 and os.path.exists(done), f"exit {rc}, done {os.path.exists(done)}: {err}")


def case_concurrent_runs_claiming_one_rank_keep_both_traces(work):
    out = os.path.join(work, "o")
    go = os.path.join(work, "go")
    # run A writes its spool, then waits while run B (same rank 0, as every
    # process without launcher variables) starts and finishes
    a = subprocess.Popen([ARGS.warmcal, "profile", "--out", "o", "--", "sh", "-c",
                          f"{ARGS.make_spool} ok 0; while [ ! -e {go} ]; do sleep 0.02; done"],
                         cwd=work, env=env_for(work), stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while (not (os.path.isdir(out) and spools(out))) and time.monotonic() < deadline:
        time.sleep(0.01)
    rc, _, err = profile(work, "--out", "o", "--", ARGS.make_spool, "ok", "0")
    check(rc == 0 and "claim" not in err, f"B: {rc} {err}")
    open(go, "w").close()
    rc, err = finish(a)
    traces = sorted(f for f in os.listdir(out) if f.endswith(".h5"))
    check(rc == 0, f"A: exit {rc}: {err}")
    check(len(traces) == 2 and "rank-0.h5" in traces and traces[1].startswith("rank-0.pid-"),
          f"both kept: {traces}")
    check("two processes claim rank 0" in err and "WARMCAL_RANK" in err, f"A warns: {err!r}")
    # a later run into the same folder replaces the older trace, quietly
    before = os.stat(os.path.join(out, "rank-0.h5")).st_mtime_ns
    time.sleep(0.01)
    rc, _, err = profile(work, "--out", "o", "--", ARGS.make_spool, "ok", "0")
    check(rc == 0 and "claim" not in err, f"C: {rc} {err}")
    check(os.stat(os.path.join(out, "rank-0.h5")).st_mtime_ns > before, "C replaced rank-0.h5")
    check(len([f for f in os.listdir(out) if f.endswith(".h5")]) == 2, "no third trace")


def case_a_process_without_rank_beside_a_larger_run_is_warned(work):
    rc, _, err = profile(work, "--out", "o", "--", ARGS.make_spool, "ok", "1")
    check(rc == 0, f"rank 1 of 4: {rc} {err}")
    env = env_for(work)
    env.update(MAKE_SPOOL_RANK_FROM="none", MAKE_SPOOL_WORLD="1")
    p = subprocess.run([ARGS.warmcal, "profile", "--out", "o", "--", ARGS.make_spool, "ok", "0"],
                       cwd=work, env=env, capture_output=True, text=True, timeout=60)
    check(p.returncode == 0, f"exit {p.returncode}: {p.stderr}")
    check("found no rank in its environment" in p.stderr and "run of 4 ranks" in p.stderr,
          f"warning: {p.stderr!r}")


def case_another_runs_unreadable_spool_is_a_warning(work):
    out = os.path.join(work, "o")
    os.makedirs(out)
    old = os.path.join(out, "rank-0.99.spool")
    with open(old, "wb") as f:
        f.write(b"NOT-A-SPOOL" * 4)
    past = time.time() - 3600
    os.utime(old, (past, past))
    rc, _, err = profile(work, "--out", "o", "--", ARGS.make_spool, "ok", "0")
    check(rc == 0, f"exit {rc}: {err}")
    check("rank-0.99.spool" in err and "earlier run" in err, f"warning: {err!r}")
    check(os.path.exists(old) and os.path.exists(os.path.join(out, "rank-0.h5")),
          f"left as it is, this run converted: {os.listdir(out)}")
    rc, _, err = profile(work, "--convert", out)
    check(rc == 2 and "rank-0.99.spool" in err, f"--convert still fails on it: {rc} {err!r}")


# --- review fixes: job control, Slurm, exit 130 ------------------------------

def proc_state(pid):
    """The state letter of /proc/<pid>/stat ('T' stopped), or None when gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def poll(cond, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return cond()


def children_of(pid):
    kids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        kids.append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    return kids


class JobShell:
    """What an interactive shell does with a job, in a forked session leader
    holding a pty: the job (warmcal profile) runs in a process group of its
    own, which is given the terminal (fg) or not (bg); waits see it stop."""

    def __init__(self, master, tty):
        self.master, self.tty = master, tty

    def take_terminal(self):
        old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
        os.tcsetpgrp(self.tty, os.getpgrp())
        signal.signal(signal.SIGTTOU, old)

    def give_terminal(self, pgid):
        old = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
        os.tcsetpgrp(self.tty, pgid)
        signal.signal(signal.SIGTTOU, old)

    def spawn(self, argv, env, stdin):
        """A foreground job: its own group, holding the terminal before it runs."""
        pid = os.fork()
        if pid == 0:
            try:
                os.setpgid(0, 0)
                self.give_terminal(os.getpid())
                os.dup2(stdin, 0)
                log = os.open(env["JOB_LOG"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
                os.dup2(log, 1)
                os.dup2(log, 2)
                os.execve(argv[0], argv, env)
            finally:
                os._exit(126)
        try:
            os.setpgid(pid, pid)
        except OSError:
            pass  # the job ran exec already: it set its group itself
        self.give_terminal(pid)
        self.pid = pid
        return pid

    def wait_event(self, seconds=30):
        """('stopped', sig), ('exited', code), ('killed', sig) or ('running', None)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG | os.WUNTRACED)
            if pid:
                if os.WIFSTOPPED(status):
                    return ("stopped", os.WSTOPSIG(status))
                if os.WIFEXITED(status):
                    return ("exited", os.WEXITSTATUS(status))
                return ("killed", os.WTERMSIG(status))
            time.sleep(0.02)
        return ("running", None)


def in_job_shell(work, body):
    """Run body(shell, problems) in a session leader of its own with a pty as
    its controlling terminal; the problems it lists become failures here."""
    import pty
    master, slave = pty.openpty()
    slave_name = os.ttyname(slave)
    result = os.path.join(work, "job-shell.json")
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setsid()
            os.close(slave)
            tty = os.open(slave_name, os.O_RDWR)  # the session's controlling terminal
            problems = []
            try:
                body(JobShell(master, tty), problems)
            except Exception as e:  # noqa: BLE001 - reported to the test
                problems.append(f"job shell: {type(e).__name__}: {e}")
            with open(result, "w") as f:
                json.dump(problems, f)
            code = 0
        finally:
            os._exit(code)
    os.close(slave)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    os.close(master)
    if not os.path.exists(result):
        check(False, "the job shell reported nothing")
        return
    for p in json.load(open(result)):
        check(False, p)


def job_env(work):
    env = env_for(work)
    env["JOB_LOG"] = os.path.join(work, "job.log")
    return env


def job_log(work):
    try:
        return open(os.path.join(work, "job.log")).read()
    except OSError:
        return ""


def end_job(shell, problems, work):
    """Whatever state the job is in, end it (the test has its answer)."""
    try:
        os.killpg(shell.pid, signal.SIGKILL)
    except OSError:
        pass
    shell.wait_event(30)


def case_ctrl_z_with_input_not_a_terminal_stops_the_command_too(work):
    # `warmcal profile ... < /dev/null` in the foreground: Ctrl-Z reaches
    # warmcal profile's group, not the command's; the job must stop whole
    ready = os.path.join(work, "ready")
    script = ("import os, signal, sys, time\n"
              "signal.signal(signal.SIGTERM, lambda *a: sys.exit(5))\n"
              f"open({ready!r} + '.tmp', 'w').write(str(os.getpid()))\n"
              f"os.rename({ready!r} + '.tmp', {ready!r})\n"
              "while True: time.sleep(0.05)\n")

    def body(shell, problems):
        def want(cond, what):
            if not cond:
                problems.append(f"{what} (log: {job_log(work)!r})")
            return cond

        null = os.open(os.devnull, os.O_RDONLY)
        shell.spawn([ARGS.warmcal, "profile", "--out", "o", "--", "/usr/bin/python3", "-c",
                     script], job_env(work), null)
        if not want(wait_for(ready), "the command started"):
            return end_job(shell, problems, work)
        cmd = int(open(ready).read())
        os.write(shell.master, b"\x1a")  # Ctrl-Z
        event = shell.wait_event()
        want(event == ("stopped", signal.SIGTSTP), f"warmcal profile stopped: {event}")
        want(poll(lambda: proc_state(cmd) == "T"),
             f"the command is stopped too: state {proc_state(cmd)}")
        # bg: the shell keeps the terminal and continues the job's group
        shell.take_terminal()
        os.killpg(shell.pid, signal.SIGCONT)
        want(poll(lambda: proc_state(shell.pid) not in ("T", None)),
             f"warmcal profile continued: state {proc_state(shell.pid)}")
        want(poll(lambda: proc_state(cmd) not in ("T", None)),
             f"the command continued: state {proc_state(cmd)}")
        os.kill(shell.pid, signal.SIGTERM)
        event = shell.wait_event()
        want(event == ("exited", 5), f"SIGTERM then ends both: {event}")
        if event[0] in ("stopped", "running"):
            end_job(shell, problems, work)

    in_job_shell(work, body)


def case_fg_after_bg_gives_the_terminal_back_to_the_command(work):
    # Ctrl-Z, bg, then fg of the running job: bash gives the terminal to
    # warmcal profile's group and sends no SIGCONT; the command, reading the
    # terminal, must get it and not stop the job
    ready, go, got = (os.path.join(work, n) for n in ("ready", "go", "got"))
    script = ("import os, sys, time\n"
              f"open({ready!r} + '.tmp', 'w').write(str(os.getpid()))\n"
              f"os.rename({ready!r} + '.tmp', {ready!r})\n"
              f"while not os.path.exists({go!r}): time.sleep(0.02)\n"
              "line = sys.stdin.readline()\n"
              f"open({got!r}, 'w').write(line)\n")

    def body(shell, problems):
        def want(cond, what):
            if not cond:
                problems.append(f"{what} (log: {job_log(work)!r})")
            return cond

        shell.spawn([ARGS.warmcal, "profile", "--out", "o", "--", "/usr/bin/python3", "-c",
                     script], job_env(work), shell.tty)
        if not want(wait_for(ready), "the command started"):
            return end_job(shell, problems, work)
        cmd = int(open(ready).read())
        os.write(shell.master, b"\x1a")  # Ctrl-Z: the command holds the terminal
        event = shell.wait_event()
        if not want(event == ("stopped", signal.SIGTSTP), f"Ctrl-Z stops the job: {event}"):
            return end_job(shell, problems, work)
        shell.take_terminal()
        os.killpg(shell.pid, signal.SIGCONT)  # bg
        want(poll(lambda: proc_state(cmd) not in ("T", None)), "bg continues the command")
        shell.give_terminal(shell.pid)  # fg of a running job: no SIGCONT
        os.write(shell.master, b"typed\n")
        open(go, "w").close()
        event = shell.wait_event()
        want(event == ("exited", 0), f"the job read its line and ended: {event}")
        want(os.path.exists(got) and open(got).read() == "typed\n",
             f"the command read the terminal: {open(got).read() if os.path.exists(got) else None!r}")
        if event[0] in ("stopped", "running"):
            end_job(shell, problems, work)

    in_job_shell(work, body)


def case_a_command_exiting_130_by_itself_is_not_a_sigint(work):
    rc, _, err = profile(work, "--out", "o", "--", "sh", "-c", "exit 130")
    check(rc == 130, f"exit 130 gives {rc} (a negative value: killed by a signal): {err}")


def case_under_slurmstepd_a_signal_the_command_got_directly_is_not_passed_again(work):
    # proctrack/cgroup: slurmstepd, warmcal profile's parent, signals every
    # process of the step, the command included
    out = os.path.join(work, "count")
    stepd = os.path.join(work, "slurmstepd")  # the parent's name, as under srun
    os.symlink("/usr/bin/python3", stepd)
    wrapper = ("import os, signal, subprocess, sys, time\n"
               "out, argv = sys.argv[1], sys.argv[2:]\n"
               "p = subprocess.Popen(argv, start_new_session=True)\n"
               "deadline = time.monotonic() + 30\n"
               "while not os.path.exists(out + '.ready') and time.monotonic() < deadline:\n"
               "    time.sleep(0.02)\n"
               "kids = []\n"
               "for d in (x for x in os.listdir('/proc') if x.isdigit()):\n"
               "    try:\n"
               "        s = open(f'/proc/{d}/stat').read().rsplit(')', 1)[1].split()\n"
               "    except OSError:\n"
               "        continue\n"
               "    if int(s[1]) == p.pid:\n"
               "        kids.append(int(d))\n"
               "def pending(k):\n"
               "    try:\n"
               "        for line in open(f'/proc/{k}/status'):\n"
               "            if line.startswith(('SigPnd:', 'ShdPnd:')) and int(line.split()[1], 16) & (1 << (signal.SIGTERM - 1)):\n"
               "                return True\n"
               "    except OSError:\n"
               "        pass\n"
               "    return False\n"
               "for k in kids:\n"
               "    os.kill(k, signal.SIGTERM)\n"
               "    while pending(k) and time.monotonic() < deadline + 30:\n"
               "        time.sleep(0.01)\n"
               "os.kill(p.pid, signal.SIGTERM)\n"
               "sys.exit(p.wait(timeout=60) if len(kids) == 1 else 99)\n")
    env = env_for(work)
    env.update(SLURM_JOB_ID="77", SLURM_STEP_ID="0", SLURM_PROCID="0", SLURM_NTASKS="1")
    p = subprocess.run([stepd, "-c", wrapper, out, ARGS.warmcal, "profile", "--out", "o", "--",
                        ARGS.make_spool, "count-signals", out], cwd=work, env=env,
                       capture_output=True, text=True, timeout=120)
    check(p.returncode == 0, f"exit {p.returncode} (99: no single command found): {p.stderr}")
    check(counts(out) == (0, 1, 0, 0), f"the command got (INT, TERM, HUP, fg) {counts(out)}")
    # the same variables, but the signal comes from another parent (mpirun's
    # daemon inside a Slurm allocation signals its children only): passed on
    os.unlink(out)
    os.unlink(out + ".ready")
    p = subprocess.Popen([ARGS.warmcal, "profile", "--out", "o", "--", ARGS.make_spool,
                          "count-signals", out], cwd=work, env=env, stderr=subprocess.PIPE,
                         text=True, start_new_session=True)
    check(wait_for(out + ".ready", p), "the command started")
    p.send_signal(signal.SIGTERM)
    rc, err = finish(p)
    check(rc == 0 and counts(out) == (0, 1, 0, 0), f"another sender: exit {rc}, got {counts(out)}: {err}")


def case_a_command_not_found_gets_no_note_about_spools(work):
    rc, _, err = profile(work, "--out", "o", "--", "no-such-command-warmcal")
    check(rc == 127, f"not found gives {rc}")
    check("no spool" not in err and "CUDA program" not in err, f"one message only: {err!r}")
    rc, _, err = profile(work, "--out", "o", "--", "sh", "-c", "exit 127")
    check(rc == 127 and "no spool from this run" in err,
          f"a command that ran and exited 127 keeps the note: {rc} {err!r}")


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
