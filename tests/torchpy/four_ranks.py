"""The issue's done-when: the three-line wrap, on the stand-in, under mpirun
with 4 ranks, writes 4 traces that `warmcal fit` turns into a table that
`warmcal check` accepts and `warmcal validate` finds no measured phase above.

    four_ranks.py WARMCAL DIR -- MPIEXEC... PYTHON

Runs MPIEXEC... PYTHON four_ranks_rank.py DIR/traces DIR/truth, then the
commands on its traces. Run under run_job.py, which kills the whole job at
its limit. Prints "ok fit, check and validate" when all passed.
"""

import glob
import json
import os
import subprocess
import sys


def run(cmd):
    print("$", " ".join(cmd), flush=True)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    print(p.stdout, end="", flush=True)
    return p


def main():
    warmcal, folder = sys.argv[1], sys.argv[2]
    launch = sys.argv[sys.argv.index("--") + 1:]
    here = os.path.dirname(os.path.abspath(__file__))
    traces, truth = os.path.join(folder, "traces"), os.path.join(folder, "truth")
    os.makedirs(truth)
    failures = []
    job = run(launch + [os.path.join(here, "four_ranks_rank.py"), traces, truth])
    if job.returncode != 0:
        failures.append("the 4-rank job failed with status %d" % job.returncode)
    files = sorted(glob.glob(os.path.join(traces, "rank-*.h5")))
    if [os.path.basename(f) for f in files] != ["rank-%d.h5" % r for r in range(4)]:
        failures.append("traces written: %r" % files)
    table = os.path.join(folder, "table.json")
    if not failures:
        for cmd, want in (([warmcal, "fit"] + files + ["-o", table], 0),
                          ([warmcal, "check", table], 0),
                          ([warmcal, "validate", table] + files, 0)):
            p = run(cmd)
            if p.returncode != want:
                failures.append("%s %s: status %d" % (cmd[0], cmd[1], p.returncode))
    if not failures:
        with open(table) as f:
            t = json.load(f)
        ranks = {e["rank"] for e in t["estimates"]}
        labels = {e["label"] for e in t["estimates"]}
        if not {"context", "generation"} <= labels:
            failures.append("labels in the table: %r" % labels)
        if not ({0, 1, 2, 3} <= ranks or -1 in ranks):
            failures.append("ranks in the table: %r" % ranks)
        # rank 0's estimate must cover what it really needed at its largest
        # pass that ran (the fitter's need from the stand-in's truth)
        with open(os.path.join(truth, "rank-0.json")) as f:
            rows = [r for r in json.load(f) if r["outcome"] == "ok" and r["label"] == "context"]
        top = max(rows, key=lambda r: r["tokens"])
        need = top["live_peak"] - top["live_begin"]
        p = run([warmcal, "estimate", table, "--tokens", str(top["tokens"]), "--rank", "0"])
        if p.returncode != 0 or int(p.stdout.split()[-1]) < need:
            failures.append("rank 0 at %d tokens: estimate %r below the %d bytes measured"
                            % (top["tokens"], p.stdout.strip(), need))
    for f in failures:
        print("FAIL:", f)
    if not failures:
        print("ok fit, check and validate")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
