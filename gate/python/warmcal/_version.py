"""The package's version and the ABI name of the C libraries it loads.

The version is the project's one version: the top-level VERSION file, which
CMake's project() reads too. Every layout keeps a copy beside this file (a
link to it in a checkout, a copy in what pip or cmake --install put in
place), so the version is that of the code imported even where another
warmcal is installed too; the distribution's metadata is the fallback.
"""

import os


def _read() -> str:
    try:
        with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "VERSION"),
                  encoding="ascii") as f:
            v = f.read().strip()
        if v:
            return v
    except (OSError, UnicodeDecodeError):
        pass
    from importlib import metadata
    try:
        return metadata.version("warmcal")
    except metadata.PackageNotFoundError:
        return "unknown"


VERSION: str = _read()


def soversion(version: str = VERSION) -> str | None:
    """The ABI part of the libraries' SONAMEs for a version, as
    cmake/Abi.cmake makes it: "0.MINOR" while the major version is 0 (a
    minor release may change the API), the major alone from 1.0 on; None
    when the version is not MAJOR.MINOR[.PATCH...]."""
    parts = version.split(".")
    if len(parts) < 2 or not parts[0].isdigit() or not parts[1].isdigit():
        return None
    return "%d.%d" % (int(parts[0]), int(parts[1])) if int(parts[0]) == 0 else str(int(parts[0]))


def soname(base: str) -> str | None:
    """The run-time name of the warmcal library base ("warmcal-gate") that
    matches this package: libwarmcal-gate.so.0.1 for 0.1.x; None when the
    version is unknown (then only the development name can be tried)."""
    abi = soversion()
    return "lib%s.so.%s" % (base, abi) if abi else None
