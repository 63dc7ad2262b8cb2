"""warmcal: the start-up gate for multi-rank LLM server warmup, in Python.

    from mpi4py import MPI
    import warmcal
    with warmcal.Gate("table.json", comm=MPI.COMM_WORLD, free_bytes=free) as gate:
        for d in gate.decide([(4096, 1, "context"), (8192, 1, "context")]):
            ... run the pass if d.run, else log d.reason (every rank skips it)

A thin ctypes layer over the C library warmcal-gate (warmcal/gate.h), found
through $WARMCAL_GATE_LIB, next to this package, in the folder it was
installed in with this package (cmake --install, the .deb: _installed.py),
in <repo>/build/gate (a checkout only), or by the dynamic loader as
libwarmcal-gate.so.0.MINOR (LD_LIBRARY_PATH, the ld.so cache); only a
library of this package's own version is used. An installed package needs
no variable.
Servers that are not MPI programs open Gate(table, rank=R, world_size=W) and
pass decide(shapes, allreduce_min=fn). See docs/integration.md.
"""

from ._capi import (E_FIELD, E_FORMAT, E_INVAL, E_IO, E_MISMATCH, E_NOMEM, E_OVERFLOW, E_RANGE,
                    E_STATE, E_TIMEOUT, E_UNSUPPORTED, REASON_ESTIMATE_TOO_LARGE,
                    REASON_INVALID_BATCH, REASON_LOW_MEMORY, REASON_NO_ESTIMATE,
                    REASON_OUT_OF_RANGE, REASON_RUN)
from .gate import Budget, Decision, Gate, GateError, LibraryNotFoundError
from ._version import VERSION as __version__

__all__ = [
    "Gate", "Decision", "Budget", "GateError", "LibraryNotFoundError",
    "REASON_RUN", "REASON_LOW_MEMORY", "REASON_INVALID_BATCH", "REASON_OUT_OF_RANGE",
    "REASON_NO_ESTIMATE", "REASON_ESTIMATE_TOO_LARGE",
    "E_INVAL", "E_NOMEM", "E_IO", "E_FORMAT", "E_FIELD", "E_STATE", "E_TIMEOUT", "E_MISMATCH",
    "E_UNSUPPORTED", "E_RANGE", "E_OVERFLOW",
]
