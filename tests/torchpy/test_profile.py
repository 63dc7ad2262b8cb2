"""Tests of warmcal.profile against the stand-in for torch.cuda (standin.py):
each trace is read back with h5py and must equal the stand-in's own
accounting, field for field.

    test_profile.py CASE [ARGS...]

One case per process: the helper attaches PyTorch's OOM observer once per
process, and the fake torch module must be the first torch imported. Exit
0 passed, 1 failed, 77 skipped. Every case writes under a temporary folder
it removes.
"""

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile

try:
    import h5py   # noqa: F401 - the traces are read back with it (tracecheck)
except ImportError:
    print("SKIP: h5py is not installed")
    sys.exit(77)

import standin
import tracecheck
from standin import GiB, KiB, MiB

failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what)
    return cond


def expect_raises(kind, fn, contains=None):
    """The exception fn raised, checked to be a kind (and to say contains)."""
    try:
        fn()
    except kind as e:
        if contains is not None:
            check(contains in str(e), "%r should say %r" % (str(e), contains))
        return e
    except BaseException as e:   # noqa: B902 - any other kind is a failure here
        check(False, "expected %s, got %s: %s" % (kind.__name__, type(e).__name__, e))
        return e
    check(False, "expected %s, nothing was raised" % kind.__name__)
    return None


def fake(devices=((80 * GiB, 1 * GiB),), **kw):
    """A stand-in installed as the torch module, and warmcal.profile."""
    s = standin.StandIn(list(devices), **kw)
    s.install_fake_torch()
    import warmcal.profile as wp
    return s, wp


def clean_env():
    for k in ("CUDA_INJECTION64_PATH", "NVTX_INJECTION64_PATH", "WARMCAL_OUT",
              "PYTORCH_NO_CUDA_MEMORY_CACHING", "WARMCAL_RANK",
              "WARMCAL_WORLD_SIZE", "RANK", "WORLD_SIZE", "OMPI_COMM_WORLD_RANK",
              "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE", "SLURM_PROCID",
              "SLURM_NTASKS"):
        os.environ.pop(k, None)


def compare(path, truth):
    attrs, phases = tracecheck.read(path)
    for line in tracecheck.mismatches(phases, truth):
        check(False, "%s: %s" % (path, line))
    return attrs, phases


def pass_of(s, sizes, keep=(), device=None):
    """A warmup pass: allocate blocks of sizes (activations), free all but
    the indices in keep (what the pass leaves behind, e.g. a KV cache)."""
    blocks = [s.alloc(n, device) for n in sizes]
    for i, b in enumerate(blocks):
        if i not in keep:
            s.free(b)
    return [blocks[i] for i in keep]


# --- cases

def case_truth(out):
    """Phases recorded from the counters equal the stand-in's accounting:
    cache reuse, a pass that keeps memory, growth outside the allocator."""
    s, wp = fake()
    weights = s.alloc(3 * GiB + 5)      # before recording: live at every phase's begin
    with wp.record(out, model="tiny-llm", rank=1, world_size=2, tp=2, pp=1) as rec:
        check(rec.path is None, "no trace under its name before the first phase")
        with wp.phase(tokens=4096, batch=1):
            pass_of(s, [300 * MiB, 700 * KiB, 40 * MiB])
        with wp.phase(tokens=128, batch=8, label="generation"):
            pass_of(s, [10 * MiB, 12345])            # served from the cache
        with wp.phase(tokens=8192):
            pass_of(s, [600 * MiB, 600 * MiB])
            s.grow_outside(64 * MiB)                # a library workspace
        with wp.phase(tokens=1024, label="kv-cache"):
            kept = pass_of(s, [5 * MiB, 2 * GiB], keep=(1,))
        check(rec.path == os.path.join(out, "rank-1.h5"), "trace named rank-1.h5: %s" % rec.path)
    s.free(weights)
    for b in kept:
        s.free(b)
    attrs, phases = compare(os.path.join(out, "rank-1.h5"), s.truth[0])
    check(len(phases) == 4, "4 phases: %d" % len(phases))
    want = {"source": "torch", "model": "tiny-llm", "rank": 1, "world_size": 2, "tp": 2, "pp": 1,
            "gpu_name": "Stand-in GPU", "gpu_total_bytes": 80 * GiB, "complete": 1,
            "producer": wp.PRODUCER, "torch_version": "2.4.0", "cuda_version": "12.4",
            "device": 0, "oom_size_source": wp.OOM_SIZE_FROM_OBSERVER}
    for k, v in want.items():
        check(attrs.get(k) == v, "attribute %s: %r, expected %r" % (k, attrs.get(k), v))
    # the cache case really was served from the cache, and growth outside the
    # allocator shows only in free memory
    check(phases[1]["reserved_end"] == phases[1]["reserved_begin"], "pass 2 reused the cache")
    check(phases[2]["device_free_begin"] - phases[2]["device_free_end"]
          > phases[2]["reserved_end"] - phases[2]["reserved_begin"],
          "pass 3's free memory fell by more than the cache grew")
    pushes = [m for k, m in s.nvtx if k == "push"]
    check(pushes == ["warmcal tokens=4096 batch=1 label=context",
                     "warmcal tokens=128 batch=8 label=generation",
                     "warmcal tokens=8192 batch=1 label=context",
                     "warmcal tokens=1024 batch=1 label=kv-cache"], "NVTX messages: %r" % pushes)
    check(len(s.nvtx) == 8 and [k for k, _ in s.nvtx] == ["push", "pop"] * 4,
          "every push popped: %r" % s.nvtx)
    # warmcal's own reader agrees and the fitter's need counts cache growth once
    from warmcal import _trace
    t = _trace.read(os.path.join(out, "rank-1.h5"))
    check(t["complete"] and len(t["phases"]) == 4, "the C reader reads the trace")
    check([p["live_peak"] for p in t["phases"]] == [p["live_peak"] for p in phases],
          "C reader and h5py agree")
    check(not [f for f in os.listdir(out) if f != "rank-1.h5"],
          "nothing else left in the folder: %r" % os.listdir(out))
    # the need warmcal fit takes: the peak delta, plus only the growth outside
    # the allocator (64 MiB in pass 3), never the cache the passes left
    shown = subprocess.run([os.environ["WARMCAL"], "inspect", "--json",
                            os.path.join(out, "rank-1.h5")], capture_output=True, text=True)
    check(shown.returncode == 0, "warmcal inspect: %s" % shown.stderr)
    needs = [p["need"] for p in json.loads(shown.stdout)[0]["phases"]]
    outside = [0, 0, 64 * MiB, 0]
    expected = [t["live_peak"] - t["live_begin"] + o for t, o in zip(s.truth[0], outside)]
    check(needs == expected, "needs %r, expected %r" % (needs, expected))



def case_oom(out):
    """An OOM inside a phase: recorded as oom with the exact size PyTorch
    asked for (through the OOM observer) and re-raised; caught inside the
    pass, or wrapped in another error, it is still an oom; later phases are
    ok again."""
    s, wp = fake(devices=((6 * GiB, 1 * GiB),))
    asked = 3 * GiB + 7 * MiB                      # segment: rounded up to 2 MiB
    segment = 3 * GiB + 8 * MiB
    base = s.alloc(2 * GiB)
    with wp.record(out, model="m", rank=0, world_size=1):
        with wp.phase(tokens=1024):
            pass_of(s, [100 * MiB])

        def too_big():
            with wp.phase(tokens=65536):
                s.alloc(600 * MiB)
                s.alloc(asked)                     # 6 - 1 - 2 - 0.6 GiB free: fails
        e = expect_raises(s.oom_error, too_big, "Tried to allocate 3.01 GiB")

        with wp.phase(tokens=32768):               # the pass catches its own OOM
            try:
                s.alloc(asked)
            except s.oom_error:
                s.empty_cache()

        def wrapped():
            with wp.phase(tokens=49152, label="generation"):
                try:
                    s.alloc(asked)
                except s.oom_error as oom:
                    raise RuntimeError("warmup pass failed") from oom
        expect_raises(RuntimeError, wrapped, "warmup pass failed")

        with wp.phase(tokens=2048):
            pass_of(s, [200 * MiB])
    s.free(base)
    attrs, phases = compare(os.path.join(out, "rank-0.h5"), s.truth[0])
    check([p["outcome"] for p in phases] == ["ok", "oom", "oom", "oom", "ok"],
          "outcomes: %r" % [p["outcome"] for p in phases])
    check(phases[1]["failed_alloc_bytes"] == segment,
          "exact size asked for: %d, expected %d" % (phases[1]["failed_alloc_bytes"], segment))
    check(e is not None and type(e) is s.oom_error, "the OOM itself is re-raised")
    check("notes" not in attrs, "no notes for observed OOMs: %r" % attrs.get("notes"))


def case_oom_message(out, style):
    """Without the OOM observer (torch < 2.0, or an allocator backend that
    refuses observers) the size comes from the error's text, rounded to two
    decimals, and the trace says so; an OOM on another
    device is not this device's: aborted, with a note."""
    s, wp = fake(devices=((8 * GiB, 1 * GiB), (8 * GiB, 0)),
                 observer="refused" if style == "refused" else False,
                 old_message=(style == "old"))
    asked = 3 * GiB + 7 * MiB
    with wp.record(out, model="m", rank=0, world_size=1, device=0):
        s.alloc(2 * GiB)

        def too_big(device):
            def run():
                with wp.phase(tokens=65536):
                    s.alloc(1 * GiB, device)
                    s.alloc(asked + 4 * GiB, device)
            return run
        expect_raises(s.oom_error, too_big(0), "Tried to allocate 7.01 GiB")
        expect_raises(s.oom_error, too_big(1), "Tried to allocate 7.01 GiB")
    attrs, phases = tracecheck.read(os.path.join(out, "rank-0.h5"))
    truth = s.truth[0]
    check(truth[0]["failed_alloc_bytes"] == 7 * GiB + 8 * MiB, "the stand-in's truth")
    check(phases[0]["outcome"] == "oom" and phases[0]["failed_alloc_bytes"] == round(7.01 * GiB),
          "size from the message, rounded: %r" % phases[0])
    check(phases[0]["failed_alloc_bytes"] != truth[0]["failed_alloc_bytes"],
          "rounded, hence not the exact size (which is why the trace says so)")
    # everything else equals the truth
    truth[0]["failed_alloc_bytes"] = phases[0]["failed_alloc_bytes"]
    truth[1]["outcome"] = "aborted"            # device 1 ran out, device 0 did not
    for line in tracecheck.mismatches(phases, truth):
        check(False, line)
    check(attrs.get("oom_size_source") == wp.OOM_SIZE_FROM_MESSAGE,
          "oom_size_source: %r" % attrs.get("oom_size_source"))
    check("out of memory on another device (GPU 1)" in attrs.get("notes", ""),
          "notes: %r" % attrs.get("notes"))


def case_aborted(out):
    """Any other exception: the phase is aborted, the exception re-raised
    untouched, the range popped; the recording goes on."""
    s, wp = fake()
    with wp.record(out, model="m", rank=0, world_size=1):
        class Boom(Exception):
            pass

        def fails():
            with wp.phase(tokens=512):
                s.alloc(50 * MiB)
                raise Boom("a kernel failed")
        expect_raises(Boom, fails, "a kernel failed")
        with wp.phase(tokens=1024):
            pass_of(s, [10 * MiB])
    truth = s.truth[0]
    truth[0]["outcome"] = "aborted"
    attrs, phases = compare(os.path.join(out, "rank-0.h5"), truth)
    check([p["outcome"] for p in phases] == ["aborted", "ok"], "outcomes")
    check([k for k, _ in s.nvtx] == ["push", "pop", "push", "pop"], "popped: %r" % s.nvtx)

    # an exception that ends the recording itself: the trace is closed whole
    def ends_recording():
        with wp.record(out + "/b", model="m", rank=0, world_size=1):
            with wp.phase(tokens=64):
                pass_of(s, [MiB])
            raise KeyboardInterrupt
    expect_raises(KeyboardInterrupt, ends_recording)
    attrs, phases = tracecheck.read(out + "/b/rank-0.h5")
    check(attrs["complete"] == 1 and len(phases) == 1, "closed after the interrupt")


def case_injected(out):
    """Under `warmcal profile` (CUPTI injected) record() writes nothing and
    phase() emits only the NVTX range, with no counter read; without
    WARMCAL_OUT, or with another injection library, the helper records."""
    s, wp = fake()
    os.environ["CUDA_INJECTION64_PATH"] = "/opt/warmcal/lib/libwarmcal-inject.so"
    os.environ["NVTX_INJECTION64_PATH"] = "/opt/warmcal/lib/libwarmcal-inject.so"
    os.environ["WARMCAL_OUT"] = out + "/spools"
    check(wp.cupti_profiler_injected(), "injected seen")
    with wp.record(out + "/traces", model="m", rank=0, world_size=1) as rec:
        check(rec.injected, "the recording knows it")
        with wp.phase(tokens=4096, batch=2, label="context"):
            pass_of(s, [100 * MiB])

        def fails():
            with wp.phase(tokens=8192):
                s.alloc(100 * GiB)
        expect_raises(s.oom_error, fails)
    check(not os.path.exists(out + "/traces"), "nothing written: %r" % os.listdir(out))
    check(s.nvtx == [("push", "warmcal tokens=4096 batch=2 label=context"),
                     ("pop", "warmcal tokens=4096 batch=2 label=context"),
                     ("push", "warmcal tokens=8192 batch=1 label=context"),
                     ("pop", "warmcal tokens=8192 batch=1 label=context")],
          "NVTX ranges: %r" % s.nvtx)
    read = [c for c in s.calls if c[0] != "synchronize"]
    check(not read, "no counter read: %r" % read)
    check(("synchronize", 0) in s.calls, "the pass is synchronized before its range ends")
    for env, injected in (({"CUDA_INJECTION64_PATH": "/x/libwarmcal-inject.so"}, False),
                          ({"CUDA_INJECTION64_PATH": "/x/libcupti.so", "WARMCAL_OUT": "/t"},
                           False),
                          ({"CUDA_INJECTION64_PATH": "", "WARMCAL_OUT": "/t"}, False),
                          ({"CUDA_INJECTION64_PATH": "/x/libwarmcal-inject.so.0",
                            "WARMCAL_OUT": "/t"}, True)):
        check(wp.cupti_profiler_injected(env) == injected, "injected(%r)" % env)
    # without WARMCAL_OUT the injected library is off: the helper records
    del os.environ["WARMCAL_OUT"]
    with wp.record(out + "/traces", model="m", rank=0, world_size=1) as rec:
        check(not rec.injected, "recording")
        with wp.phase(tokens=64):
            pass_of(s, [MiB])
    check(os.path.isfile(out + "/traces/rank-0.h5"), "recorded without WARMCAL_OUT")


def case_no_torch_at_import(out):
    """import warmcal.profile loads no torch; the checks of the convention
    and the launcher variables work without it."""
    import warmcal.profile as wp
    check("torch" not in sys.modules, "torch imported by warmcal.profile")
    check(wp.phase_message(4096, 2, "generation") == "warmcal tokens=4096 batch=2 label=generation",
          "message")
    check(wp.launcher_rank({"RANK": "3", "WORLD_SIZE": "8"})[:2] == (3, 8), "launcher rank")
    check("torch" not in sys.modules, "torch imported by the checks")


def case_cpu_torch(out):
    """The real CPU-only torch: record() refuses with "no CUDA device" and
    writes nothing (not even the folder)."""
    try:
        import torch
    except ImportError:
        print("SKIP: torch is not installed")
        sys.exit(77)
    if torch.cuda.is_available():
        print("SKIP: this torch sees a CUDA device")
        sys.exit(77)
    import warmcal.profile as wp
    target = os.path.join(out, "traces")

    def run():
        with wp.record(target, model="m", rank=0, world_size=1):
            with wp.phase(tokens=64):
                pass
    expect_raises(RuntimeError, run, "no CUDA device")
    check(not os.path.exists(target), "nothing written")

    def mark_only():
        # outside record(): only the NVTX range, which CPU torch cannot open
        with wp.phase(tokens=64):
            pass
    expect_raises(RuntimeError, mark_only, "no CUDA device")


def case_devices(out):
    """Several devices per process: only the given device's counters are
    read, and the trace equals that device's truth; the default is the
    current device."""
    s, wp = fake(devices=((80 * GiB, GiB), (40 * GiB, 3 * GiB), (80 * GiB, 0)))
    s.devices[1].name = "Stand-in GPU 40GB"
    with wp.record(out, model="m", rank=0, world_size=1, device="cuda:1"):
        for tokens in (1024, 2048):
            with wp.phase(tokens=tokens):
                pass_of(s, [tokens * 100 * KiB], device=0)     # current device: not ours
                pass_of(s, [tokens * 10 * KiB, 5 * MiB], device=1)
                pass_of(s, [GiB], device=2)
    attrs, _ = compare(os.path.join(out, "rank-0.h5"), s.truth[1])
    others = sorted({c for c in s.calls if c[1] != 1})
    check(not others, "read other devices: %r" % others)
    check(attrs["gpu_name"] == "Stand-in GPU 40GB" and attrs["gpu_total_bytes"] == 40 * GiB,
          "the device's properties: %r" % attrs)
    check(attrs["device"] == 1, "device attribute")
    check(s.truth[1] != s.truth[0], "the devices differ, so the test can tell them apart")
    # default: the current device
    s.set_device(2)
    s.calls.clear()
    with wp.record(out + "/b", model="m", rank=0, world_size=1):
        with wp.phase(tokens=64):
            pass_of(s, [MiB], device=2)
    check({c[1] for c in s.calls} == {2}, "current device read only: %r" % s.calls)
    compare(out + "/b/rank-0.h5", s.truth[2][-1:])
    expect_raises(ValueError, lambda: wp.record(out, model="m", device=3).__enter__(),
                  "sees 3 CUDA device(s)")


def case_bad_arguments(out):
    """Labels, tokens and batches the profiler's parser refuses are refused
    here (ValueError, before any range is pushed); its limits are accepted;
    phases do not nest; bad launcher variables are named."""
    s, wp = fake()
    with wp.record(out, model="m", rank=0, world_size=1) as rec:
        bad = [dict(tokens=0), dict(tokens=2**40 + 1), dict(tokens=-1), dict(tokens=1.5),
               dict(tokens=True), dict(tokens="64"), dict(tokens=64, batch=0),
               dict(tokens=64, batch=2**32), dict(tokens=64, label=""),
               dict(tokens=64, label="a b"), dict(tokens=64, label="x" * 32),
               dict(tokens=64, label="\u00e9" * 16), dict(tokens=64, label="tab\there"),
               dict(tokens=64, label="del\x7f"), dict(tokens=64, label="c1\x85"),
               dict(tokens=64, label="lone\ud800"), dict(tokens=64, label=None)]
        for kw in bad:
            def run(kw=kw):
                with wp.phase(**kw):
                    pass
            check(expect_raises(ValueError, run) is not None, "refused: %r" % kw)
        check(s.nvtx == [] and rec.phases == 0, "nothing pushed or written for bad phases")
        good = [dict(tokens=2**40, batch=2**32 - 1, label="x" * 31),
                dict(tokens=1, label="\u00e9" * 15), dict(tokens=7, label="cuda-graph"),
                dict(tokens=8, label="\u00a0nbsp")]   # a non-control Unicode space: allowed
        for kw in good:
            with wp.phase(**kw):
                pass
        check(rec.phases == len(good), "limits accepted: %d" % rec.phases)

        def nested():
            with wp.phase(tokens=64):
                with wp.phase(tokens=128):
                    pass
        expect_raises(RuntimeError, nested, "phases do not nest")
        with wp.phase(tokens=9):   # the outer one closed: phases go on
            pass
        expect_raises(RuntimeError, lambda: wp.record(out, model="m").__enter__(), "do not nest")
    expect_raises(ValueError, lambda: wp.record(out, model="").__enter__(), "model")
    expect_raises(ValueError, lambda: wp.record(out, model="m", rank=4, world_size=4).__enter__(),
                  "not below")
    # with caching disabled PyTorch keeps no counters: refused, unless the
    # CUPTI profiler measures
    os.environ["PYTORCH_NO_CUDA_MEMORY_CACHING"] = "1"
    expect_raises(RuntimeError, lambda: wp.record(out + "/x", model="m").__enter__(),
                  "PYTORCH_NO_CUDA_MEMORY_CACHING=1 disables")
    check(not os.path.exists(out + "/x"), "nothing written")
    os.environ.update(CUDA_INJECTION64_PATH="/l/libwarmcal-inject.so", WARMCAL_OUT=out + "/s")
    with wp.record(out + "/x", model="m") as rec:
        check(rec.injected, "injected with caching disabled: the way CUPTI wants it")
    clean_env()
    os.environ["OMPI_COMM_WORLD_RANK"] = "+1"
    expect_raises(ValueError, lambda: wp.record(out, model="m").__enter__(),
                  "OMPI_COMM_WORLD_RANK=+1 is not a rank")


def case_launcher(out):
    """Rank and world size from the launcher's variables, by the injected
    profiler's rule (profiler/src/inject/launcher_env.c)."""
    s, wp = fake()
    cases = [
        ({}, (0, 1, "none")),
        ({"RANK": "", "WORLD_SIZE": "4"}, (0, 1, "none")),
        ({"WARMCAL_RANK": "2", "WARMCAL_WORLD_SIZE": "4", "RANK": "1", "WORLD_SIZE": "8"},
         (2, 4, "WARMCAL_RANK")),
        ({"RANK": "1", "WORLD_SIZE": "8", "OMPI_COMM_WORLD_RANK": "3"}, (1, 8, "RANK")),
        ({"OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_SIZE": "4"},
         (3, 4, "OMPI_COMM_WORLD_RANK")),
        ({"PMIX_RANK": "5", "SLURM_PROCID": "5", "SLURM_NTASKS": "16"}, (5, 16, "PMIX_RANK")),
        ({"PMIX_RANK": "5", "SLURM_PROCID": "6", "SLURM_NTASKS": "16"}, (5, 6, "PMIX_RANK")),
        ({"PMI_RANK": "0", "PMI_SIZE": "2"}, (0, 2, "PMI_RANK")),
        ({"SLURM_PROCID": "007", "SLURM_NTASKS": "8"}, (7, 8, "SLURM_PROCID")),
        ({"RANK": "2"}, (2, 3, "RANK")),
    ]
    for env, want in cases:
        got = wp.launcher_rank(env)
        check(got[:3] == want, "%r: %r, expected %r" % (env, got, want))
    check(wp.launcher_rank({"RANK": "2"})[3] and "rank + 1" in wp.launcher_rank({"RANK": "2"})[3],
          "a rank without a size is noted")
    for env, says in (({"WARMCAL_WORLD_SIZE": "4"}, "without WARMCAL_RANK"),
                      ({"RANK": "-1"}, "RANK=-1 is not a rank"),
                      ({"RANK": " 1"}, "is not a rank"),
                      ({"RANK": "1x"}, "is not a rank"),
                      ({"RANK": "2147483648"}, "is not a rank"),
                      ({"RANK": "2147483647"}, "leaves no room"),
                      ({"RANK": "1", "WORLD_SIZE": "0"}, "WORLD_SIZE=0 is not a world size"),
                      ({"RANK": "4", "WORLD_SIZE": "4"}, "RANK=4 is not below WORLD_SIZE=4")):
        expect_raises(ValueError, lambda env=env: wp.launcher_rank(env), says)
    # record() takes them by default, and keeps the note in the trace
    os.environ["SLURM_PROCID"] = "3"
    with wp.record(out, model="m") as rec:
        with wp.phase(tokens=64):
            pass
    check((rec.rank, rec.world_size) == (3, 4), "from the environment: %r" % ((rec.rank,
                                                                               rec.world_size),))
    attrs, _ = tracecheck.read(os.path.join(out, "rank-3.h5"))
    check((attrs["rank"], attrs["world_size"]) == (3, 4) and "rank + 1" in attrs.get("notes", ""),
          "trace: %r" % attrs)
    # given arguments win; a rank alone takes the launcher's size only when
    # the launcher names the same rank
    os.environ.update(SLURM_PROCID="3", SLURM_NTASKS="8")
    for kw, want in ((dict(rank=1, world_size=2), (1, 2)), (dict(rank=3), (3, 8)),
                     (dict(rank=5), (5, 6)), (dict(world_size=16), (3, 16))):
        with wp.record(out + "/k", model="m", **kw) as rec:
            pass
        check((rec.rank, rec.world_size) == want, "%r: %r" % (kw, (rec.rank, rec.world_size)))


def case_target(out):
    """A target that exists and is not a regular file is refused, with
    nothing written; an older trace stays whole until this run's first phase
    replaces it; a run without phases leaves it as it was."""
    s, wp = fake()
    os.umask(0o022)
    os.makedirs(out + "/a/rank-0.h5")
    e = expect_raises(OSError, lambda: wp.record(out + "/a", model="m", rank=0,
                                                 world_size=1).__enter__(), "not a regular file")
    check(e is not None and (out + "/a/rank-0.h5") in str(e), "names the path: %s" % e)
    check(os.listdir(out + "/a") == ["rank-0.h5"], "nothing else written")
    os.makedirs(out + "/b")
    os.symlink(out + "/elsewhere.h5", out + "/b/rank-0.h5")
    expect_raises(OSError, lambda: wp.record(out + "/b", model="m", rank=0,
                                             world_size=1).__enter__(), "not a regular file")

    # an older trace
    os.makedirs(out + "/c")
    with wp.record(out + "/c", model="old", rank=0, world_size=1):
        with wp.phase(tokens=64):
            pass
    old = open(out + "/c/rank-0.h5", "rb").read()
    with wp.record(out + "/c", model="new", rank=0, world_size=1):
        check(open(out + "/c/rank-0.h5", "rb").read() == old, "old trace whole before phase 1")
        check(len(os.listdir(out + "/c")) == 2, "a temporary file beside it")
    check(open(out + "/c/rank-0.h5", "rb").read() == old, "a run without phases keeps it")
    check(os.listdir(out + "/c") == ["rank-0.h5"], "and leaves nothing else")
    with wp.record(out + "/c", model="new", rank=0, world_size=1):
        with wp.phase(tokens=64):
            pass
        attrs, _ = tracecheck.read(out + "/c/rank-0.h5")
        check(attrs["model"] == "new" and attrs["complete"] == 0,
              "replaced at the first phase, still open: %r" % attrs)
    check(tracecheck.read(out + "/c/rank-0.h5")[0]["complete"] == 1, "closed")
    mode = stat.S_IMODE(os.stat(out + "/c/rank-0.h5").st_mode)
    check(mode == 0o666 & ~0o022, "created under the umask like any trace: %o" % mode)

    # a directory appearing at the target before the first phase: refused
    # then, the pass's own exception unaffected when there is one
    os.makedirs(out + "/d")
    with wp.record(out + "/d", model="m", rank=0, world_size=1):
        os.makedirs(out + "/d/rank-0.h5")

        def first():
            with wp.phase(tokens=64):
                pass
        expect_raises(OSError, first, "not a regular file")
    check(os.listdir(out + "/d") == ["rank-0.h5"] and os.path.isdir(out + "/d/rank-0.h5"),
          "the directory is untouched and no temporary file is left: %r" % os.listdir(out + "/d"))


def case_crash(out):
    """A process killed inside a phase keeps every phase it finished: each
    is flushed when it ends."""
    code = r"""
import os, sys
sys.path.insert(0, %r)
import standin
s = standin.StandIn([(80 << 30, 1 << 30)])
s.install_fake_torch()
import warmcal.profile as wp
with wp.record(%r, model="m", rank=0, world_size=1):
    for t in (64, 128):
        with wp.phase(tokens=t):
            s.free(s.alloc(t << 20))
    with wp.phase(tokens=256):
        s.alloc(1 << 30)
        os._exit(9)
""" % (os.path.dirname(os.path.abspath(__file__)), out)
    p = subprocess.run([sys.executable, "-c", code], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT)
    check(p.returncode == 9, "child ended by os._exit: %d %s" % (p.returncode, p.stdout))
    attrs, phases = tracecheck.read(os.path.join(out, "rank-0.h5"))
    check(attrs["complete"] == 0 and [p["tokens"] for p in phases] == [64, 128],
          "the two finished phases are there: %r %r" % (attrs, phases))


def case_example(out):
    """The worked example (tools/examples/torch_warmup.py), a plain PyTorch
    warmup loop, run on the CPU-only torch with the stand-in patched onto
    torch.cuda and every tensor storage accounted on the simulated device:
    its trace equals the stand-in's truth, and its largest passes run out
    of memory and are skipped as a server skips them."""
    try:
        import torch   # noqa: F401
    except ImportError:
        print("SKIP: torch is not installed")
        sys.exit(77)
    examples = sys.argv[2]
    sys.path.insert(0, examples)
    import torch_warmup
    s = standin.StandIn([(96 * MiB, 8 * MiB)])
    undo = s.patch_real_torch()
    try:
        with s.accounting():
            rc = torch_warmup.main(["--out", out, "--device", "cpu", "--max-num-tokens", "2048",
                                    "--max-batch", "8"])
    finally:
        undo()
    check(rc == 0, "example's status %r" % rc)
    attrs, phases = compare(os.path.join(out, "rank-0.h5"), s.truth[0])
    labels = {p["label"] for p in phases}
    check(labels == {"context", "generation"}, "both labels: %r" % labels)
    outcomes = [p["outcome"] for p in phases]
    check("oom" in outcomes and outcomes.count("ok") >= 6, "outcomes: %r" % outcomes)
    ctx = [p for p in phases if p["label"] == "context" and p["outcome"] == "ok"]
    peaks = [p["live_peak"] - p["live_begin"] for p in ctx]
    check(peaks == sorted(peaks) and peaks[0] < peaks[-1],
          "the peak grows with the token count: %r" % peaks)
    check(attrs["model"] == "tiny-decoder" and attrs["source"] == "torch", "attrs %r" % attrs)
    # the excerpt docs/calibration.md shows is the script's own code
    doc = open(os.path.join(examples, "..", "..", "docs", "calibration.md")).read()
    blocks = [b.split("```")[0] for b in doc.split("```python")[1:]]
    excerpt = [b for b in blocks if "run_warmup_forward(model" in b]
    code = [line.split("#")[0].strip() for line in open(torch_warmup.__file__)]
    check(len(excerpt) == 1, "one excerpt of the example in docs/calibration.md")
    for line in excerpt[0].splitlines() if excerpt else []:
        line = line.split("#")[0].strip()
        check(not line or line in code, "docs/calibration.md shows a line the example lacks: "
              "%r" % line)


CASES = {
    "truth": case_truth, "oom": case_oom, "aborted": case_aborted, "injected": case_injected,
    "no_torch_at_import": case_no_torch_at_import, "cpu_torch": case_cpu_torch,
    "devices": case_devices, "bad_arguments": case_bad_arguments, "launcher": case_launcher,
    "target": case_target, "crash": case_crash, "example": case_example,
}


def main():
    name = sys.argv[1]
    clean_env()
    out = tempfile.mkdtemp(prefix="warmcal-torchpy-")
    try:
        if name == "oom_message":
            case_oom_message(out, sys.argv[2])
        else:
            CASES[name](out)
    finally:
        # a test may leave a folder it made read-only or odd: remove it anyway
        for root, dirs, _ in os.walk(out):
            for d in dirs:
                p = os.path.join(root, d)
                if not os.path.islink(p):
                    os.chmod(p, stat.S_IRWXU)
        shutil.rmtree(out, ignore_errors=True)
    if failures:
        print("%d failure(s) in %s" % (len(failures), name))
        return 1
    print("ok", name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
