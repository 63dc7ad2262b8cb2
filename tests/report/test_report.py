#!/usr/bin/python3
"""`warmcal report` as users run it: pictures of warmcal-synth traces of the
original bug (4 MPI ranks, rank 0 short of memory) and of traces written
here with h5py, checked as files (PNG chunks and pixels, SVG and HTML
parsed), and its refusals: bad input, no gnuplot, a failing gnuplot, a
target that is not a regular file.

usage: test_report.py CASE --synth BIN --warmcal BIN --data DIR --mpiexec MPIEXEC...
"""
import argparse
import glob
import html.parser
import os
import re
import shutil
import signal
import stat
import struct
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
import zlib

import h5py
import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("case")
ap.add_argument("--synth", required=True)
ap.add_argument("--warmcal", required=True)
ap.add_argument("--data", required=True)
ap.add_argument("--mpiexec", nargs=argparse.REMAINDER, required=True)
ARGS = ap.parse_args()
FAILURES = []
GiB = 1 << 30
CONSTANT = "131072"  # the demo's constant guess, 128 KiB per token


def check(cond, what):
    if not cond:
        FAILURES.append(what)
        print("FAIL:", what)


def run(*argv, env=None, cwd=None):
    p = subprocess.run(list(argv), capture_output=True, text=True, timeout=240, env=env, cwd=cwd)
    return p.returncode, p.stdout, p.stderr


def env_with(tmp, **extra):
    """The environment with TMPDIR in the test's folder, so that the
    command's working folders can be seen to go away."""
    env = dict(os.environ)
    env["TMPDIR"] = f"{tmp}/tmpdir"
    os.makedirs(env["TMPDIR"], exist_ok=True)
    env.update(extra)
    return env


def report(tmp, *args, env=None, cwd=None):
    env = env or env_with(tmp)
    rc, out, err = run(ARGS.warmcal, "report", *args, env=env, cwd=cwd)
    left = os.listdir(env["TMPDIR"]) if "TMPDIR" in env and os.path.isdir(env["TMPDIR"]) else []
    check(left == [], f"report {args}: working folder left behind: {left}")
    return rc, out, err


def bug_traces(tmp):
    """The demo's deployment: DeepSeek-V3 on 4 ranks, rank 0 with 3 GiB less."""
    model = f"{ARGS.data}/models/deepseek-v3"
    out = f"{tmp}/traces"
    rc, _, err = run(*ARGS.mpiexec, ARGS.synth, "--model", f"{model}/config.json", "--deployment",
                     f"{model}/deploy-tp4-rank0-overhead.json", "--seed", "1", "--out", out)
    check(rc == 0, f"warmcal-synth: exit {rc}: {err}")
    traces = sorted(glob.glob(f"{out}/rank-*.h5"))
    table = f"{tmp}/table.json"
    rc, _, err = run(ARGS.warmcal, "fit", *traces, "-o", table)
    check(rc == 0, f"fit: exit {rc}: {err}")
    return traces, table


PHASE = np.dtype([("label", "S32"), ("tokens", "<u8"), ("batch", "<u4"), ("begin_ns", "<u8"),
                  ("end_ns", "<u8"), ("live_begin", "<u8"), ("live_peak", "<u8"),
                  ("live_end", "<u8"), ("device_free_begin", "<u8"), ("device_free_end", "<u8"),
                  ("outcome", "u1"), ("failed_alloc_bytes", "<u8")])


def write_trace(path, rank, world, rows, free=2**64 - 1):
    """rows: (label, tokens, outcome); a pass needs 1000 bytes a token."""
    with h5py.File(path, "w") as f:
        for k, v in (("warmcal_schema", 1), ("rank", rank), ("world_size", world), ("complete", 1)):
            f.attrs[k] = np.int32(v)
        for k, v in (("model", "m_with^odd_chars"), ("source", "import"), ("gpu_name", "g")):
            f.attrs[k] = v
        f.attrs["gpu_total_bytes"] = np.uint64(80 * GiB)
        data = np.array([(label.encode(), t, 1, 0, 1, 0, t * 1000, 0, free, free, outcome,
                          t * 2000 if outcome == 1 else 0) for label, t, outcome in rows],
                        dtype=PHASE)
        f.create_dataset("phases", data=data, maxshape=(None,), chunks=(16,))


def small_traces(tmp):
    rows = [("context", t, 0) for t in (16, 64, 256, 1024, 4096)]
    paths = []
    for rank in (0, 1):
        paths.append(f"{tmp}/rank-{rank}.h5")
        write_trace(paths[-1], rank, 2, rows + ([("context", 8192, 2)] if rank == 1 else []))
    return paths


# --- files as other programs read them ---------------------------------------------


def png_facts(data):
    """Width, height and decoded rows of a PNG, or an error text: the chunk
    CRCs, IHDR and the zlib stream of the IDAT chunks, row by row."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return "no PNG signature"
    pos, chunks = 8, []
    while pos < len(data):
        if pos + 8 > len(data):
            return "truncated chunk header"
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        crc = data[pos + 8 + n:pos + 12 + n]
        if len(body) != n or len(crc) != 4:
            return f"truncated {kind!r} chunk"
        if zlib.crc32(kind + body) != struct.unpack(">I", crc)[0]:
            return f"bad CRC in {kind!r}"
        chunks.append((kind, body))
        pos += 12 + n
    if not chunks or chunks[0][0] != b"IHDR" or chunks[-1][0] != b"IEND":
        return "IHDR not first or IEND not last"
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}.get(colour)
    if channels is None or depth != 8 or interlace != 0:
        return f"unexpected format: depth {depth}, colour {colour}, interlace {interlace}"
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    stride = width * channels
    if len(raw) != height * (stride + 1):
        return f"IDAT holds {len(raw)} bytes, {height} rows of {stride + 1} expected"
    filters = set(raw[r * (stride + 1)] for r in range(height))
    if not filters <= {0, 1, 2, 3, 4}:
        return f"row filter types {filters}"
    return width, height, raw


def svg_texts(root):
    """Every text the picture shows, one string per <text> element."""
    return ["".join(t.itertext()).strip() for t in root.iter() if t.tag.endswith("}text") or t.tag == "text"]


class Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.tags, self.attrs, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.extend(attrs)

    def handle_data(self, data):
        self.text.append(data)


# --- cases ---------------------------------------------------------------------


def case_png(tmp):
    traces, table = bug_traces(tmp)
    out = f"{tmp}/report.png"
    rc, stdout, err = report(tmp, *traces, "--table", table, "--compare-constant", CONSTANT, "-o", out)
    check(rc == 0, f"png: exit {rc}: {err}")
    check(err == "", f"png: gnuplot or warmcal said something: {err!r}")
    check(out in stdout, f"png: the path is printed: {stdout!r}")
    facts = png_facts(open(out, "rb").read())
    check(not isinstance(facts, str), f"png: not a valid PNG: {facts}")
    if not isinstance(facts, str):
        width, height, raw = facts
        # one need panel per label (context, generation) and the free-memory panel
        check(800 <= width <= 4000 and 3 * 300 <= height <= 3 * 1000,
              f"png: size {width}x{height}")
        check(len(set(raw)) > 16, "png: the picture is not blank")
    mask = os.umask(0)
    os.umask(mask)
    check(stat.S_IMODE(os.stat(out).st_mode) == 0o666 & ~mask,
          f"png: a new file's permissions under the umask: {oct(os.stat(out).st_mode)}")
    check(sorted(os.listdir(tmp)) == ["report.png", "table.json", "tmpdir", "traces"],
          f"png: no temporary file left beside it: {sorted(os.listdir(tmp))}")


def case_svg(tmp):
    traces, table = bug_traces(tmp)
    out = f"{tmp}/report.svg"
    rc, _, err = report(tmp, *traces, "--table", table, "--compare-constant", "128KiB", "-o", out)
    check(rc == 0 and err == "", f"svg: exit {rc}: {err!r}")
    root = ET.parse(out).getroot()
    check(root.tag in ("{http://www.w3.org/2000/svg}svg", "svg"), f"svg: root {root.tag}")
    texts = svg_texts(root)
    for want in ("rank 0 measured", "rank 1 measured", "rank 2 measured", "rank 3 measured",
                 "rank 0 estimate (band: margin)", "any rank estimate (band: margin)",
                 "rank 0 out of memory (size asked)", "constant 128.00 KiB/token, every pass",
                 "rank 0 above its range (any-rank)",
                 "context passes: memory needed per pass, by rank",
                 "generation passes: memory needed per pass, by rank"):
        check(want in texts, f"svg: no text {want!r}")
    check("rank 1 out of memory (size asked)" not in texts, "svg: rank 1 never ran out of memory")
    # rank 0 alone stopped early (its OOM): it alone is continued by the any-rank entry
    check(not any(re.fullmatch(r"rank [123] above its range.*", t) for t in texts),
          "svg: only rank 0's range ends below the any-rank one's")
    # rank 0 alone is short: its free memory is the lowest; the sizes asked are shown
    lowest = {m.group(1): float(m.group(2)) for t in texts
              for m in [re.match(r"rank (\d), lowest ([\d.]+) GiB", t)] if m}
    check(sorted(lowest) == ["0", "1", "2", "3"], f"svg: free memory of each rank: {lowest}")
    if len(lowest) == 4:
        check(lowest["0"] + 2.5 < min(lowest[r] for r in "123"),
              f"svg: rank 0 has about 3 GiB less free: {lowest}")
    check(any(re.fullmatch(r"[\d.]+(, [\d.]+)* MiB", t) for t in texts),
          f"svg: the size asked by a failed allocation is written: {texts[-40:]}")

    # without a table or a constant: neither is drawn
    out2 = f"{tmp}/bare.svg"
    rc, _, err = report(tmp, *traces, "-o", out2)
    check(rc == 0, f"svg without table: exit {rc}: {err}")
    texts = svg_texts(ET.parse(out2).getroot())
    check("rank 0 measured" in texts and not any("estimate" in t or "constant" in t for t in texts),
          f"svg without table: no estimate, no constant: {[t for t in texts if 'rank' in t]}")


def case_html(tmp):
    traces, table = bug_traces(tmp)
    out = f"{tmp}/report.html"
    rc, _, err = report(tmp, *traces, "--table", table, "--compare-constant", CONSTANT, "-o", out)
    check(rc == 0 and err == "", f"html: exit {rc}: {err!r}")
    text = open(out, encoding="utf-8").read()
    page = Page()
    page.feed(text)
    page.close()
    check(page.tags.count("svg") == 3, f"html: 3 inline pictures, found {page.tags.count('svg')}")
    check(page.tags.count("table") == 2, f"html: 2 tables, found {page.tags.count('table')}")
    for bad in ("http:", "https:", "src=", "<script", "<link", "<img", "<iframe", "@import"):
        check(bad not in text.lower(), f"html: refers elsewhere: {bad!r}")
    refs = [v for k, v in page.attrs if k in ("href", "xlink:href")]
    check(refs and all(v.startswith("#") for v in refs), f"html: only in-page references: {set(refs)}")
    ids = [v for k, v in page.attrs if k == "id"]
    check(len(ids) == len(set(ids)), "html: no id is used twice (three pictures share none)")
    missing = [r for r in refs if r[1:] not in ids]
    check(not missing, f"html: every reference has its target: {set(missing)}")
    for i, svg in enumerate(re.findall(r"<svg\b.*?</svg>", text, re.S)):
        try:
            ET.fromstring(svg)
        except ET.ParseError as e:
            check(False, f"html: picture {i} is not well-formed: {e}")
    body = "".join(page.text)
    for want in ("deepseek-ai/DeepSeek-V3", table, *traces, "rank 0 out of memory (size asked)",
                 "128.00 KiB per token", "out of memory, from 24576 tokens", "envelope"):
        check(want in body, f"html: no {want!r}")
    rows = re.findall(r"<tr[^>]*><td class=\"n\">(\d+|any)</td><td>(\w+)</td>", text)
    check(("0", "context") in rows and ("any", "context") in rows and ("3", "generation") in rows,
          f"html: rows of both tables: {rows}")


def case_aborted(tmp):
    paths = small_traces(tmp)
    out = f"{tmp}/r.svg"
    rc, _, err = report(tmp, *paths, "-o", out)
    check(rc == 0 and err == "", f"aborted: exit {rc}: {err!r}")
    texts = svg_texts(ET.parse(out).getroot())
    check("rank 1 never ended" in texts, f"aborted: marker in the key: {texts}")
    check("rank 0 never ended" not in texts, "aborted: rank 0 had none")
    check(not any("free memory" in t for t in texts), "aborted: no free memory sampled, no panel")
    check(texts.count("context passes: memory needed per pass, by rank") == 1, "aborted: one panel")
    # the model name's ^ and _ are shown as they are in the page
    out = f"{tmp}/r.html"
    rc, _, err = report(tmp, *paths, "-o", out)
    check(rc == 0 and "m_with^odd_chars" in open(out).read(), f"html: model name as is: {err}")


def one_line(err):
    return len(err.strip().splitlines()) == 1


def case_bad_input(tmp):
    paths = small_traces(tmp)
    out = f"{tmp}/r.png"
    open(f"{tmp}/bad.json", "w").write("{ not json")
    open(f"{tmp}/garbage.h5", "w").write("not hdf5")
    cases = [
        ((f"{tmp}/missing.h5", "-o", out), f"{tmp}/missing.h5"),
        ((f"{tmp}/garbage.h5", "-o", out), f"{tmp}/garbage.h5"),
        ((*paths, "--table", f"{tmp}/bad.json", "-o", out), f"{tmp}/bad.json"),
        ((*paths, "--table", f"{tmp}/missing.json", "-o", out), f"{tmp}/missing.json"),
        ((*paths, "-o", f"{tmp}/r.pdf"), ".png, .svg or .html"),
        ((*paths, "-o", f"{tmp}/no-such-folder/r.png"), "no-such-folder"),
        ((*paths, "--compare-constant", "lots", "-o", out), "--compare-constant"),
        ((*paths, "--compare-constant", "0", "-o", out), "--compare-constant"),
        ((*paths, "--compare-constant", "-5", "-o", out), "--compare-constant"),
        ((*paths, "--table", paths[0], "-o", out), paths[0]),
    ]
    for args, named in cases:
        rc, stdout, err = report(tmp, *args)
        check(rc == 2, f"{args}: exit {rc}, expected 2: {err!r}")
        check(one_line(err) and named in err and err.startswith("warmcal report: "),
              f"{args}: one line naming {named!r}: {err!r}")
        check(stdout == "", f"{args}: nothing on stdout: {stdout!r}")
    for args in ((*paths,), (*paths, "-o"), ("-o", out), (*paths, "--bogus", "-o", out)):
        rc, _, err = report(tmp, *args)
        check(rc == 2 and err.startswith("warmcal report: "), f"{args}: exit {rc}: {err!r}")
    # an output that is one of the inputs, under another name
    os.link(paths[0], f"{tmp}/trace.png")
    rc, _, err = report(tmp, *paths, "-o", f"{tmp}/trace.png")
    check(rc == 2 and "also an input" in err, f"output is an input: exit {rc}: {err!r}")
    check(open(f"{tmp}/trace.png", "rb").read(4) == b"\x89HDF", "the trace is untouched")
    check(not os.path.exists(out), "nothing written on bad input")
    rc, stdout, _ = run(ARGS.warmcal, "report", "--help")
    check(rc == 0 and "example" in stdout and "--compare-constant" in stdout, f"--help: {rc}")


def case_no_gnuplot(tmp):
    paths = small_traces(tmp)
    out = f"{tmp}/r.png"
    empty = f"{tmp}/empty-bin"
    os.makedirs(empty)
    env = env_with(tmp, PATH=empty)
    env.pop("WARMCAL_GNUPLOT", None)
    rc, stdout, err = report(tmp, *paths, "-o", out, env=env)
    check(rc == 2 and one_line(err) and "gnuplot" in err and "gnuplot-nox" in err,
          f"no gnuplot on PATH: exit {rc}: {err!r}")
    env = env_with(tmp, WARMCAL_GNUPLOT=f"{tmp}/no-such-gnuplot")
    rc, _, err = report(tmp, *paths, "-o", out, env=env)
    check(rc == 2 and one_line(err) and f"{tmp}/no-such-gnuplot" in err,
          f"WARMCAL_GNUPLOT missing: exit {rc}: {err!r}")
    env = env_with(tmp, WARMCAL_REPORT_TEMPLATES=empty)
    rc, _, err = report(tmp, *paths, "-o", out, env=env)
    check(rc == 2 and one_line(err) and empty in err, f"no templates: exit {rc}: {err!r}")
    check(not os.path.exists(out), "nothing written without gnuplot")


def case_gnuplot_fails(tmp):
    paths = small_traces(tmp)
    out = f"{tmp}/r.png"
    open(out, "wb").write(b"the old report")
    fake = f"{tmp}/fake-gnuplot"
    for name, body, code in (("fails", 'echo "report.gp line 7: boom: this went wrong" >&2; exit 1', 1),
                             ("writes nothing", "exit 0", 1),
                             ("killed", "kill -9 $$", 1)):
        open(fake, "w").write(f"#!/bin/sh\n{body}\n")
        os.chmod(fake, 0o755)
        rc, _, err = report(tmp, *paths, "-o", out, env=env_with(tmp, WARMCAL_GNUPLOT=fake))
        check(rc == code, f"gnuplot {name}: exit {rc}, expected {code}: {err!r}")
        check("nothing was written" in err, f"gnuplot {name}: says so: {err!r}")
        check(open(out, "rb").read() == b"the old report", f"gnuplot {name}: old report kept")
        check(sorted(os.listdir(tmp)) == ["fake-gnuplot", "r.png", "rank-0.h5", "rank-1.h5", "tmpdir"],
              f"gnuplot {name}: nothing left beside it: {os.listdir(tmp)}")
    open(fake, "w").write('#!/bin/sh\necho "report.gp line 7: boom: this went wrong" >&2; exit 1\n')
    rc, _, err = report(tmp, *paths, "-o", out, env=env_with(tmp, WARMCAL_GNUPLOT=fake))
    check("boom: this went wrong" in err, f"gnuplot's message is shown: {err!r}")
    # the real gnuplot replaces the old report
    rc, _, err = report(tmp, *paths, "-o", out)
    check(rc == 0 and open(out, "rb").read(4) == b"\x89PNG", f"real gnuplot: exit {rc}: {err!r}")


def case_target(tmp):
    paths = small_traces(tmp)
    folder = f"{tmp}/folder.png"
    os.makedirs(folder)
    fifo = f"{tmp}/fifo.svg"
    os.mkfifo(fifo)
    os.symlink(f"{tmp}/nowhere.png", f"{tmp}/dangling.png")
    for target in (folder, fifo, "/dev/null.png" if os.path.exists("/dev/null.png") else None,
                   f"{tmp}/dangling.png"):
        if not target:
            continue
        rc, _, err = report(tmp, *paths, "-o", target)
        check(rc == 2 and one_line(err) and target in err, f"{target}: exit {rc}: {err!r}")
    check(os.listdir(folder) == [] and stat.S_ISFIFO(os.stat(fifo).st_mode)
          and os.path.islink(f"{tmp}/dangling.png"), "targets left as they were")
    # a link to a regular file: the file is replaced, the link stays
    real = f"{tmp}/real.svg"
    open(real, "w").write("old")
    os.symlink(real, f"{tmp}/link.svg")
    rc, _, err = report(tmp, *paths, "-o", f"{tmp}/link.svg")
    check(rc == 0 and os.path.islink(f"{tmp}/link.svg") and open(real).read().lstrip().startswith("<"),
          f"link to a file: exit {rc}: {err!r}")


def wrapper(path, body):
    """An executable shell script at path."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write("#!/bin/sh\n" + body + "\n")
    os.chmod(path, 0o755)


def is_png(path):
    return os.path.exists(path) and open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def case_relative_gnuplot(tmp):
    """gnuplot runs in the working folder: a relative name must still reach it."""
    paths = small_traces(tmp)
    real = shutil.which("gnuplot")
    wrapper(f"{tmp}/bin/gnuplot", f'exec {real} "$@"')
    empty = f"{tmp}/empty-bin"
    os.makedirs(empty)
    for what, extra, cwd in (("WARMCAL_GNUPLOT=bin/gnuplot", {"WARMCAL_GNUPLOT": "bin/gnuplot"}, tmp),
                             ("PATH entry 'bin'", {"PATH": f"bin:{empty}"}, tmp),
                             ("empty PATH entry", {"PATH": f":{empty}"}, f"{tmp}/bin")):
        out = f"{tmp}/r.png"
        env = env_with(tmp, **extra)
        if "WARMCAL_GNUPLOT" not in extra:
            env.pop("WARMCAL_GNUPLOT", None)
        rc, _, err = report(tmp, *paths, "-o", out, env=env, cwd=cwd)
        check(rc == 0 and err == "" and is_png(out), f"{what}: exit {rc}: {err!r}")
        if os.path.exists(out):
            os.unlink(out)


def start_report(tmp, args, env, ignore_hangup=False):
    def child_setup():
        if ignore_hangup:  # as nohup leaves it
            signal.signal(signal.SIGHUP, signal.SIG_IGN)
    return subprocess.Popen([ARGS.warmcal, "report", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, preexec_fn=child_setup)


def wait_for_file(path, what, lines=1):
    """Until path holds `lines` lines; False after 60 s (the command never got there)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if os.path.exists(path) and open(path).read().count("\n") >= lines:
            return True
        time.sleep(0.05)
    check(False, f"{what}: {path} never appeared")
    return False


def case_nohup(tmp):
    """Under nohup (SIGHUP ignored) a hang-up does not end the report."""
    paths = small_traces(tmp)
    out = f"{tmp}/r.png"
    started = f"{tmp}/started"
    wrapper(f"{tmp}/slow-gnuplot", f'echo $$ > {started}; sleep 2; exec {shutil.which("gnuplot")} "$@"')
    env = env_with(tmp, WARMCAL_GNUPLOT=f"{tmp}/slow-gnuplot")
    p = start_report(tmp, (*paths, "-o", out), env, ignore_hangup=True)
    if wait_for_file(started, "nohup"):
        p.send_signal(signal.SIGHUP)
    stdout, err = p.communicate(timeout=120)
    check(p.returncode == 0 and err == "" and is_png(out),
          f"nohup: a hang-up ended the report: exit {p.returncode}: {err!r}")
    check(os.listdir(env["TMPDIR"]) == [], "nohup: working folder left behind")


def process_gone(pid):
    """Ended (or only a zombie left for its new parent to reap)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def case_stop(tmp):
    """SIGTERM or SIGINT to the report ends gnuplot (and what it started) at
    once instead of waiting for it; the working folder goes, nothing is
    written, and the command ends by the signal."""
    paths = small_traces(tmp)
    out = f"{tmp}/r.png"
    pids = f"{tmp}/pids"
    # the shell and a child of its own: both must go; the background sleep
    # ignores SIGINT (as a shell's background jobs do), so SIGINT takes the
    # SIGKILL that follows a short grace
    wrapper(f"{tmp}/stuck-gnuplot", f"echo $$ > {pids}; sleep 60 & echo $! >> {pids}; wait")
    env = env_with(tmp, WARMCAL_GNUPLOT=f"{tmp}/stuck-gnuplot")
    for sig in (signal.SIGTERM, signal.SIGINT):
        if os.path.exists(pids):
            os.unlink(pids)
        p = start_report(tmp, (*paths, "-o", out), env)
        if not wait_for_file(pids, sig.name, lines=2):
            p.kill()
            p.communicate()
            continue
        start = time.monotonic()
        p.send_signal(sig)
        try:
            _, err = p.communicate(timeout=30)  # gnuplot would take 60 s
        except subprocess.TimeoutExpired:
            p.kill()
            _, err = p.communicate()
            check(False, f"{sig.name}: the report waited for gnuplot to finish")
        took = time.monotonic() - start
        check(p.returncode == -sig, f"{sig.name}: ends by the signal: exit {p.returncode}: {err!r}")
        check("interrupted; nothing was written" in err, f"{sig.name}: says so: {err!r}")
        check(took < 30, f"{sig.name}: took {took:.1f} s")
        check(os.listdir(env["TMPDIR"]) == [], f"{sig.name}: working folder left behind")
        check(not os.path.exists(out), f"{sig.name}: nothing written")
        # SIGKILL is delivered asynchronously: give the killed processes time
        # to go (the failure this excludes is a sleep that lives 60 s)
        started = [int(x) for x in open(pids).read().split()]
        deadline = time.monotonic() + 20
        left = [pid for pid in started if not process_gone(pid)]
        while left and time.monotonic() < deadline:
            time.sleep(0.05)
            left = [pid for pid in left if not process_gone(pid)]
        check(not left, f"{sig.name}: gnuplot's processes still running 20 s after the "
                        f"report ended: {left}")
        for pid in left:
            os.kill(pid, signal.SIGKILL)


def case_home_gnuplotrc(tmp):
    """gnuplot runs with its default settings: a ~/.gnuplot that would make
    it read the data files wrongly changes nothing."""
    paths = small_traces(tmp)
    home = f"{tmp}/home"
    os.makedirs(home)
    open(f"{home}/.gnuplot", "w").write('set datafile separator ","\nset style data boxes\n')
    out, plain = f"{tmp}/r.svg", f"{tmp}/plain.svg"
    rc, _, err = report(tmp, *paths, "-o", out, env=env_with(tmp, HOME=home))
    check(rc == 0 and err == "", f"~/.gnuplot: exit {rc}: {err!r}")
    rc, _, err = report(tmp, *paths, "-o", plain, env=env_with(tmp, HOME=f"{tmp}/tmpdir"))
    check(rc == 0 and os.path.exists(out) and open(out).read() == open(plain).read(),
          "~/.gnuplot: the picture differs from one made without it")


def case_options(tmp):
    paths = small_traces(tmp)
    table = f"{tmp}/table.json"
    rc, _, err = run(ARGS.warmcal, "fit", *paths, "-o", table)
    check(rc == 0, f"fit: {err}")
    out = f"{tmp}/r.svg"
    rc, stdout, err = report(tmp, *paths, f"--table={table}", "--compare-constant=128KiB",
                             f"--output={out}")
    check(rc == 0 and out in stdout, f"--opt=value: exit {rc}: {err!r}")
    texts = svg_texts(ET.parse(out).getroot()) if os.path.exists(out) else []
    check("constant 128.00 KiB/token, every pass" in texts and "rank 0 estimate (band: margin)" in texts,
          f"--opt=value: the table and the constant are drawn: {texts[:20]}")
    if os.path.exists(out):
        os.unlink(out)
    for args, named in (((*paths, "--table", table, f"--table={table}", "-o", out), "--table"),
                        ((*paths, "-o", out, f"--output={out}"), "--output"),
                        ((*paths, "--compare-constant=1", "--compare-constant", "2", "-o", out),
                         "--compare-constant"),
                        ((*paths, "--output=", "-o", out), "--output"),
                        ((*paths, "--table=", "-o", out), "--table")):
        rc, stdout, err = report(tmp, *args)
        check(rc == 2 and one_line(err) and named in err and err.startswith("warmcal report: "),
              f"{args}: exit {rc}, one line naming {named}: {err!r}")
        check(not os.path.exists(out) and stdout == "", f"{args}: nothing written")
    # after --, an argument that looks like an option is a trace
    os.link(paths[0], f"{tmp}/-odd.h5")
    rc, _, err = report(tmp, "-o", out, "--", "-odd.h5", paths[1], cwd=tmp)
    check(rc == 0, f"a trace after --: exit {rc}: {err!r}")


def case_exit_status(tmp):
    """After the checks, a report that cannot be written exits 1; a target
    that became something that cannot be a report exits 2. A fake gnuplot
    draws a picture and then does the damage, as another program might."""
    paths = small_traces(tmp)
    folder = f"{tmp}/out"
    out = f"{folder}/r.png"
    fake = f"{tmp}/fake-gnuplot"
    for what, damage, code in (("folder removed", f'rmdir "{folder}"', 1),
                               ("target became a folder", f'mkdir "{out}"', 2)):
        os.makedirs(folder, exist_ok=True)
        wrapper(fake, f"printf '\\211PNG' > out.png; {damage}")
        rc, stdout, err = report(tmp, *paths, "-o", out, env=env_with(tmp, WARMCAL_GNUPLOT=fake))
        check(rc == code and one_line(err) and "nothing was written" in err and stdout == "",
              f"{what}: exit {rc}, expected {code}: {err!r}")
        check(not os.path.isfile(out), f"{what}: nothing written")
        if os.path.isdir(out):
            os.rmdir(out)
        check(not os.path.isdir(folder) or os.listdir(folder) == [],
              f"{what}: nothing left beside it: {os.listdir(folder) if os.path.isdir(folder) else ''}")
    rc, stdout, _ = run(ARGS.warmcal, "report", "--help")
    check("1 drawing or writing it failed" in stdout and "2 bad usage or bad input" in stdout,
          "--help says what 1 and 2 mean")


CASES = {k[5:]: v for k, v in globals().items() if k.startswith("case_")}
if ARGS.case not in CASES:
    sys.exit(f"unknown case {ARGS.case}")
# these never get as far as running gnuplot; every other case draws for real
if ARGS.case not in ("bad_input", "no_gnuplot") and not shutil.which("gnuplot"):
    print("skipped: gnuplot not found on PATH (apt-get install gnuplot-nox)")
    sys.exit(77)
with tempfile.TemporaryDirectory() as tmp:
    CASES[ARGS.case](tmp)
sys.exit(1 if FAILURES else 0)
