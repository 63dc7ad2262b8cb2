/* probe.h — the gate's free-memory probes (internal to warmcal-gate). The
 * CUDA driver is loaded at run time, so the gate builds and runs where there
 * is none; the simulated probe reads WARMCAL_SIM_FREE_BYTES. */
#ifndef WARMCAL_GATE_PROBE_H
#define WARMCAL_GATE_PROBE_H

#include <stddef.h>
#include <stdint.h>
#include "warmcal/error.h"

/* Free and total memory of the device of the calling thread's current CUDA
 * context, and that device's name (name may be NULL). The driver
 * (libcuda.so.1) is dlopen'd on first use and kept. Errors:
 * WARMCAL_E_UNSUPPORTED with a clear text when there is no driver, no
 * current context or a driver call fails (the CUresult is named). */
int warmcal__probe_cuda(uint64_t *free_bytes, uint64_t *total_bytes, char *name, size_t name_len,
                        warmcal_error *err);

/* WARMCAL_SIM_FREE_BYTES parsed as a byte count (units allowed). Errors:
 * WARMCAL_E_UNSUPPORTED when unset, WARMCAL_E_FIELD when malformed. */
int warmcal__probe_simulated(uint64_t *free_bytes, warmcal_error *err);

#endif
