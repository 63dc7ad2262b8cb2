"""The Python package as a user installs it: pip into a fresh virtual
environment (with the system's site packages, offline: --no-index
--no-build-isolation), or cmake --install; the C libraries in a prefix P,
found after pip by the dynamic loader alone (LD_LIBRARY_PATH=P/lib), after
cmake --install by the folder it recorded alone (P/LIBDIR, the loader told
nothing), never through WARMCAL_*_LIB, PYTHONPATH into the source tree or
the working directory.

    test_pypkg.py pip SRC_PACKAGE_DIR VERSION_FILE LIB...
    test_pypkg.py cmake BUILD_DIR VERSION_FILE LIB...

LIB: SONAME=FILE, a built library and its run-time name; copied into P/lib
(P/LIBDIR for cmake) with the SONAME link the loader looks for. Exit 77 (skipped) when venv or
pip is missing.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

GiB = 1 << 30
MiB = 1 << 20

# run by the installed package, from a folder outside the source tree
CHECKS = r"""
import os, subprocess, sys
import warmcal
from warmcal import _capi

def check(cond, what):
    if not cond:
        sys.exit("FAIL: " + what)

want, table, lib_dir, pkg_dir = sys.argv[1:5]
here = os.path.dirname(os.path.abspath(warmcal.__file__))
check(os.path.realpath(here) == os.path.realpath(pkg_dir),
      "warmcal imported from %s, not the installed %s" % (here, pkg_dir))
check(warmcal.__version__ == want, "__version__ %r, VERSION says %r" % (warmcal.__version__, want))
check(os.path.isfile(os.path.join(here, "py.typed")), "py.typed is not installed")
# the distribution's metadata (pip's dist-info, or the one cmake --install writes)
import importlib.metadata as md
check(md.version("warmcal") == want, "importlib.metadata says %r, VERSION %r"
      % (md.version("warmcal"), want))

GiB, MiB = 1 << 30, 1 << 20
with warmcal.Gate(table, rank=0, world_size=1, free_bytes=8 * GiB,
                  reserve_bytes=256 * MiB) as gate:
    ds = gate.decide([(4096, 1, "context"), (32768, 1, "context")],
                     allreduce_min=lambda v: v)
    budget = gate.max_tokens(allreduce_min=lambda v: v)
check(isinstance(ds[0], warmcal.Decision) and ds[0].run and ds[0].reason_code == warmcal.REASON_RUN,
      "4096 tokens in 8 GiB: %r" % (ds[0],))
check(not ds[1].run and ds[1].reason_code == warmcal.REASON_LOW_MEMORY and ds[1].blocking_rank == 0
      and ds[1].short_bytes == GiB + 32768 * MiB + 256 * MiB - 8 * GiB,
      "32768 tokens in 8 GiB: %r" % (ds[1],))
# 1 GiB + T MiB + 256 MiB <= 8 GiB
check(budget == warmcal.Budget(8 * 1024 - 1024 - 256, 0), "max_tokens: %r" % (budget,))
# found by the loader, from P/lib (LD_LIBRARY_PATH), not from a build tree
path = _capi.library_path()
check(os.path.dirname(os.path.realpath(path)) == os.path.realpath(lib_dir),
      "the gate library came from %s, not %s" % (path, lib_dir))

import warmcal.profile as wp
import warmcal.importers
from warmcal.importers.__main__ import main
check(callable(main) and callable(wp.record) and callable(wp.phase), "the public names")
# the convention library (by its SONAME too): the phase helper's message
check(wp.phase_message(4096, 2, "context") == "warmcal tokens=4096 batch=2 label=context",
      "phase_message")
from warmcal import _trace
_trace.load()
r = subprocess.run([sys.executable, "-m", "warmcal.importers", "--help"], capture_output=True,
                   text=True, timeout=60)
check(r.returncode == 0 and "torch-snapshot" in r.stdout and "csv" in r.stdout,
      "python -m warmcal.importers --help: exit %d\n%s%s" % (r.returncode, r.stdout, r.stderr))
print("OK", warmcal.__version__, path)
"""


def table():
    margin = {"relative": 0.0, "bytes": 0.0, "residual": 0.0, "loo": 0.0, "granularity": 0.0}
    return {
        "format": "warmcal-table", "version": 1,
        "configuration": {"model": "test-model", "tp": 1, "gpu_name": "test GPU",
                          "gpu_total_bytes": 80 * GiB},
        "tool_version": "0.1.0", "created": "2026-11-25T00:00:00Z",
        "policy": {"above_range": "refuse", "below_range": "clamp"},
        "sources": [],
        "estimates": [{
            "rank": -1, "label": "context", "tokens_min": 1, "tokens_max": 32768,
            "model": {"form": "linear", "coefficients": [float(GiB), float(MiB)]},
            "margin": margin,
            "fit": {"points": 10, "rmse": 0.0, "max_residual": 0.0, "loo_rmse": 0.0},
            "failures": {"oom": 0, "oom_tokens_min": 0, "aborted": 0},
        }],
    }


def clean_env(tmp, lib_dir, extra=None):
    """Nothing of the build or the caller's Python set-up: no WARMCAL_*,
    no PYTHONPATH; the libraries only through the loader's path. A sanitizer
    build's runtime preload is kept (an instrumented library needs it)."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": tmp, "LANG": "C.UTF-8",
           "TMPDIR": tmp, "LD_LIBRARY_PATH": lib_dir, "PYTHONDONTWRITEBYTECODE": "1",
           "PYTHONNOUSERSITE": "1"}
    for k in ("LD_PRELOAD", "ASAN_OPTIONS", "UBSAN_OPTIONS"):
        if k in os.environ:
            env[k] = os.environ[k]
    env.update(extra or {})
    return env


def run(cmd, what, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, **kw)
    if r.returncode != 0:
        sys.exit("FAIL: %s: exit %d: %s\n%s%s" % (what, r.returncode, " ".join(cmd), r.stdout,
                                                   r.stderr))
    return r


def install_libs(libs, lib_dir):
    os.makedirs(lib_dir, exist_ok=True)
    for spec in libs:
        soname, file = spec.split("=", 1)
        real = os.path.realpath(file)
        shutil.copy2(real, os.path.join(lib_dir, os.path.basename(real)))
        if soname != os.path.basename(real):
            os.symlink(os.path.basename(real), os.path.join(lib_dir, soname))


def main():
    mode, where, version_file = sys.argv[1:4]
    libs = sys.argv[4:]
    with open(version_file) as f:
        want = f.read().strip()
    # one version: CMake's project() read the same file
    project = os.environ.get("WARMCAL_PROJECT_VERSION")
    if project is not None and project != want:
        sys.exit("FAIL: CMake's PROJECT_VERSION is %r, %s says %r (reconfigure?)"
                 % (project, version_file, want))
    tmp = tempfile.mkdtemp(prefix="warmcal-pypkg-")
    try:
        prefix = os.path.join(tmp, "prefix")
        # cmake --install records the build's library folder for the package
        # (_installed.py): the libraries go there, and the loader is told
        # nothing, so that only that route can find them
        libdir = "lib"
        if mode == "cmake":
            with open(os.path.join(where, "CMakeCache.txt")) as f:
                for line in f:
                    if line.startswith("CMAKE_INSTALL_LIBDIR:"):
                        libdir = line.split("=", 1)[1].strip()
        by_record = mode == "cmake" and not os.path.isabs(libdir)
        lib_dir = os.path.join(prefix, libdir if by_record else "lib")
        install_libs(libs, lib_dir)
        tpath = os.path.join(tmp, "table.json")
        with open(tpath, "w") as f:
            json.dump(table(), f)
        work = os.path.join(tmp, "work")   # the checks' cwd: no warmcal/ there
        os.mkdir(work)

        if mode == "pip":
            for mod in ("venv", "ensurepip"):
                r = subprocess.run([sys.executable, "-c", "import " + mod], capture_output=True)
                if r.returncode != 0:
                    print("SKIP: %s has no %s module (Debian: apt-get install python3-venv)"
                          % (sys.executable, mod))
                    return 77
            # a copy: pip builds in the folder it is given (build/, *.egg-info),
            # and a test writes only under its temporary folder. The link
            # warmcal/VERSION becomes a file, as in an sdist.
            src = os.path.join(tmp, "src")
            shutil.copytree(where, src, ignore=shutil.ignore_patterns(
                "__pycache__", "*.pyc", "build", "*.egg-info"))
            venv = os.path.join(tmp, "venv")
            r = subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", venv],
                               capture_output=True, text=True, timeout=120,
                               env=clean_env(tmp, lib_dir, {"LD_PRELOAD": ""}))
            if r.returncode != 0:
                print("SKIP: %s -m venv failed (no python3-venv?): %s%s"
                      % (sys.executable, r.stdout, r.stderr))
                return 77
            py = os.path.join(venv, "bin", "python")
            r = subprocess.run([py, "-m", "pip", "--version"], capture_output=True, text=True,
                               timeout=60, env=clean_env(tmp, lib_dir, {"LD_PRELOAD": ""}))
            if r.returncode != 0:
                print("SKIP: no pip in the virtual environment: %s" % r.stderr)
                return 77
            run([py, "-m", "pip", "install", "--no-index", "--no-build-isolation",
                 "--disable-pip-version-check", "--no-cache-dir", src],
                "pip install", cwd=work, env=clean_env(tmp, lib_dir, {"LD_PRELOAD": ""}))
            r = run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                    "site-packages", env=clean_env(tmp, lib_dir, {"LD_PRELOAD": ""}))
            pkg_dir = os.path.join(r.stdout.strip(), "warmcal")
            env = clean_env(tmp, lib_dir)
        else:
            # cmake --install of the package's component: into P, on PYTHONPATH
            cmake = os.environ.get("CMAKE_COMMAND", "cmake")
            plain = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
            run([cmake, "--install", where, "--prefix", prefix, "--component", "python"],
                "cmake --install --component python", env=plain)
            py = sys.executable
            found = [d for d, _, files in os.walk(prefix) if os.path.basename(d) == "warmcal"
                     and "__init__.py" in files]
            if len(found) != 1:
                sys.exit("FAIL: cmake --install put %d warmcal packages under %s: %s"
                         % (len(found), prefix, found))
            pkg_dir = found[0]
            if os.path.islink(os.path.join(pkg_dir, "VERSION")):
                sys.exit("FAIL: the installed VERSION is a link, not a copy")
            nowhere = os.path.join(tmp, "empty")
            os.mkdir(nowhere)
            env = clean_env(tmp, lib_dir, {"PYTHONPATH": os.path.dirname(pkg_dir)})
            if by_record:
                env["LD_LIBRARY_PATH"] = nowhere

        r = run([py, "-c", CHECKS, want, tpath, lib_dir, pkg_dir], "the installed package",
                cwd=work, env=env)
        print(r.stdout.strip())
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
