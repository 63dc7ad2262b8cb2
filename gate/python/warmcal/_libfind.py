"""Finding and loading warmcal's C libraries (the gate, the trace writer).

Both are found the same way, in this order: the file an environment variable
names (and then only that), a copy next to the package, the folder the
libraries were installed in with the package (cmake --install records it in
_installed.py), the source tree's build folder (modules imported from a
checkout), and last the dynamic loader's own search (LD_LIBRARY_PATH, the
ld.so cache).
The run-time name (the SONAME of this package's version) comes before the
development symlink everywhere: a distribution's run-time package has only
the SONAME. Whatever file is found, it is used only when it is of this
package's ABI (its symbols' version node, cmake/Abi.cmake).
"""

import ctypes
import os

from . import _version


class LibraryNotFound(ImportError):
    """A C library cannot be found or loaded; the message names every place
    tried and why each failed."""


def _candidates(env, base, build_subdir):
    value = os.environ.get(env)
    if value:
        # an explicit choice is the only candidate: never fall back silently
        return [(value, "$" + env)]
    soname = _version.soname(base)
    names = tuple(n for n in (soname, "lib%s.so" % base) if n)
    here = os.path.dirname(os.path.abspath(__file__))
    out = []
    for d in (here, os.path.dirname(here)):
        for name in names:
            out.append((os.path.join(d, name), "next to the package"))
    # the libraries installed with the package (cmake --install, the .deb):
    # their folder relative to it, so any prefix works without the loader's path
    try:
        from . import _installed
        libdir = os.path.normpath(os.path.join(here, _installed.LIBDIR))
        for name in names:
            out.append((os.path.join(libdir, name), "installed with the package"))
    except (ImportError, AttributeError, TypeError):
        pass
    # source tree: <repo>/gate/python/warmcal -> <repo>/build/<subdir>, the
    # build that matches these modules when imported from the checkout; only
    # there: an installed package (site-packages/warmcal) looks in no folder
    # that merely happens to sit three levels up
    repo = os.path.dirname(os.path.dirname(os.path.dirname(here)))
    if _in_source_tree(here, repo):
        for name in names:
            out.append((os.path.join(repo, "build", build_subdir, name),
                        "the source tree's build folder"))
    search = "the dynamic loader, LD_LIBRARY_PATH=%s" % (os.environ.get("LD_LIBRARY_PATH")
                                                          or "(unset)")
    for name in names:
        out.append((name, search))
    return out


def _in_source_tree(here, repo):
    """True when the package at here is <repo>/gate/python/warmcal of a
    warmcal checkout."""
    return (os.path.basename(here) == "warmcal"
            and os.path.dirname(here) == os.path.join(repo, "gate", "python")
            and os.path.isfile(os.path.join(repo, "VERSION"))
            and os.path.isfile(os.path.join(repo, "gate", "include", "warmcal", "gate.h")))


def _loader_would_open(name):
    """The file the dynamic loader would take for a bare name from
    LD_LIBRARY_PATH, which it searches first; None when it is elsewhere."""
    for d in os.environ.get("LD_LIBRARY_PATH", "").split(":"):
        path = os.path.join(d or ".", name)
        if os.path.isfile(path):
            return path
    return None


def _instrumented_without_runtime(path):
    """Name the sanitizer runtime a library needs but this process lacks.

    An AddressSanitizer-instrumented library dlopen'ed into a process whose
    first library is not libasan makes the ASan runtime end the process
    ("ASan runtime does not come first in initial library list"), so look
    before loading and say how to preload it instead."""
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError:
        return None
    if b"libasan.so" not in blob:
        return None
    try:
        with open("/proc/self/maps") as f:
            if "libasan.so" in f.read():
                return None
    except OSError:
        return None
    return "libasan"


class _DlInfo(ctypes.Structure):
    """Dl_info of <dlfcn.h>."""
    _fields_ = [("dli_fname", ctypes.c_char_p), ("dli_fbase", ctypes.c_void_p),
                ("dli_sname", ctypes.c_char_p), ("dli_saddr", ctypes.c_void_p)]


def _file_of(function, fallback):
    """The file the dynamic loader mapped a library from, as it opened it,
    found through one of its functions."""
    try:
        dladdr = ctypes.CDLL(None).dladdr
    except (OSError, AttributeError):
        return fallback
    dladdr.argtypes = [ctypes.c_void_p, ctypes.POINTER(_DlInfo)]
    dladdr.restype = ctypes.c_int
    info = _DlInfo()
    if dladdr(ctypes.cast(function, ctypes.c_void_p), ctypes.byref(info)) and info.dli_fname:
        return os.fsdecode(info.dli_fname)
    return fallback


def _abi_mismatch(lib, base, probe):
    """Why a loaded library is not of this package's ABI, or None. ctypes
    mirrors the C structures field for field, so a library of another
    version must never be used: its probe function must carry the version
    node of this package's SONAME (warmcal_gate_close@@WARMCAL_GATE_0.1,
    cmake/Abi.cmake). A development link or an explicit path may name any
    version; the SONAME alone would not tell."""
    abi = _version.soversion()
    if not abi:
        return None
    node = "%s_%s" % (base.upper().replace("-", "_"), abi)
    try:
        dlvsym = ctypes.CDLL(None).dlvsym
    except (OSError, AttributeError):
        return None  # not glibc: the SONAME is all that is checked
    dlvsym.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p]
    dlvsym.restype = ctypes.c_void_p
    if dlvsym(lib._handle, probe.encode(), node.encode()):
        return None
    return ("not of the ABI this package (warmcal %s) needs: no %s@%s in it (another "
            "version of warmcal?)" % (_version.VERSION, probe, node))


def load(what, env, base, build_subdir, probe):
    """Load the library base ("warmcal-gate": libwarmcal-gate.so.0.1, the
    SONAME of this package's version, else libwarmcal-gate.so); returns (lib,
    the file it was loaded from). what names it in errors ("gate library");
    probe is one of its functions, used to find the file and to check the
    library's ABI. Raises LibraryNotFound."""
    soname = _version.soname(base) or "lib%s.so" % base
    tried = []
    for path, why in _candidates(env, base, build_subdir):
        by_loader = os.sep not in path
        if not by_loader and not os.path.exists(path):
            tried.append("%s (%s): no such file" % (path, why))
            continue
        file = _loader_would_open(path) if by_loader else path
        runtime = file and _instrumented_without_runtime(file)
        if runtime:
            raise LibraryNotFound(
                "%s was built with AddressSanitizer; load it into Python only with the "
                "runtime preloaded: LD_PRELOAD=$(cc -print-file-name=%s.so) "
                "ASAN_OPTIONS=detect_leaks=0 python3 ..." % (file, runtime))
        try:
            lib = ctypes.CDLL(path)
        except OSError as e:
            tried.append("%s (%s): %s" % (path, why, e))
            continue
        mismatch = _abi_mismatch(lib, base, probe)
        if mismatch:
            tried.append("%s (%s): %s" % (_file_of(getattr(lib, probe, None), path), why,
                                          mismatch))
            continue
        return lib, _file_of(getattr(lib, probe), path)
    raise LibraryNotFound(
        "cannot load the warmcal %s %s; install it where the dynamic loader finds it (or add "
        "its folder to LD_LIBRARY_PATH), or set %s to its full path (a build's <build>/%s/%s). "
        "Tried: %s" % (what, soname, env, build_subdir, soname, "; ".join(tried)))
