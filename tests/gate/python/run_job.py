"""Run one multi-rank test job under a hard time limit and judge it from its
exit status, output and timing, so that no Python gate test can hang.

    run_job.py [--limit S] [--fail] [--expect REGEX=N]... [--max-elapsed REGEX=S]
               [--skip-unless-module NAME] -- COMMAND...

"{dir}" in COMMAND becomes a fresh temporary folder (removed afterwards). The
job runs in its own session and is killed whole (SIGKILL to the group) at the
limit, which fails the test. --fail: the job must end with a non-zero status
(a rank aborted it on purpose). --expect: REGEX must match at least N times in the
output. --max-elapsed: for every line REGEX matches, its first group (seconds)
must be at most S. --skip-unless-module: exit 77 (skipped) when Python lacks
the module.
"""

import argparse
import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time


def pair(text, conv):
    regex, _, value = text.rpartition("=")
    if not regex:
        raise argparse.ArgumentTypeError("expected REGEX=VALUE, found %r" % text)
    return re.compile(regex), conv(value)


def descendants(pid):
    """Every live process below pid (ranks may sit in their own process
    groups, out of reach of killpg)."""
    children = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open("/proc/%s/stat" % entry) as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            out.append(c)
            todo.append(c)
    return out


def kill_tree(p):
    """End the job: mpirun forwards SIGTERM to its ranks; whatever is left a
    moment later is killed outright."""
    tree = descendants(p.pid)
    try:
        os.killpg(p.pid, signal.SIGTERM)
        p.wait(timeout=3)
    except (OSError, subprocess.TimeoutExpired):
        pass
    for pid in [p.pid] + tree:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except OSError:
        pass


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=float, default=60.0)
    ap.add_argument("--fail", action="store_true")
    ap.add_argument("--expect", action="append", default=[], type=lambda t: pair(t, int))
    ap.add_argument("--max-elapsed", action="append", default=[], type=lambda t: pair(t, float))
    ap.add_argument("--skip-unless-module", action="append", default=[])
    ap.add_argument("command", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    cmd = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not cmd:
        ap.error("no command")
    for m in a.skip_unless_module:
        if importlib.util.find_spec(m) is None:
            print("SKIP: Python module %s is not installed" % m)
            return 77

    folder = tempfile.mkdtemp(prefix="warmcal-pytest-")
    try:
        cmd = [c.replace("{dir}", folder) for c in cmd]
        start = time.monotonic()
        p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             start_new_session=True)
        try:
            out, _ = p.communicate(timeout=a.limit)
            timed_out = False
        except subprocess.TimeoutExpired:
            kill_tree(p)
            out, _ = p.communicate()
            timed_out = True
        elapsed = time.monotonic() - start
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    text = out.decode("utf-8", "replace")
    sys.stdout.write(text)
    print("--- job ended with status %s after %.1f s" % (p.returncode, elapsed))

    failures = []
    if timed_out:
        failures.append("the job did not end within %.0f s (killed)" % a.limit)
    elif a.fail and p.returncode == 0:
        failures.append("the job succeeded; it should have been ended by a failure")
    elif not a.fail and p.returncode != 0:
        failures.append("the job failed with status %d" % p.returncode)
    # matched over the whole output: mpirun may join lines of different ranks
    for regex, n in a.expect:
        found = len(regex.findall(text))
        if found < n:
            failures.append("expected %d match(es) of %r, found %d" % (n, regex.pattern, found))
    for regex, limit in a.max_elapsed:
        for m in regex.finditer(text):
            if float(m.group(1)) > limit:
                failures.append("took %s s, more than %.1f s: %s" % (m.group(1), limit,
                                                                     m.group(0)))
    for f in failures:
        print("FAIL:", f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
