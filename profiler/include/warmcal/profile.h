/* warmcal/profile.h — mark warmup passes as phases from C, for programs that
 * prefer a call to the NVTX convention ("warmcal tokens=N batch=B label=L",
 * docs/calibration.md). Exported by libwarmcal-inject.so, the library that
 * `warmcal profile` injects: link it (-lwarmcal-inject; the very file that
 * CUDA_INJECTION64_PATH names, or the loader holds two copies and the linked
 * one is never initialised), or, to run unchanged without it, look the two
 * functions up with dlsym on dlopen(getenv("CUDA_INJECTION64_PATH"),
 * RTLD_NOW | RTLD_NOLOAD): loaders may open it with local scope (NVTX's
 * does), where dlsym(RTLD_DEFAULT, ...) does not see it.
 * In a process that is not being profiled (the driver never initialised the
 * profiler) or whose profiler disabled itself, both calls do nothing and
 * return WARMCAL_E_STATE, quietly. */
#ifndef WARMCAL_PROFILE_H
#define WARMCAL_PROFILE_H

#include <stdint.h>
#include "warmcal/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Open a phase: one warmup pass of tokens tokens (1..2^40) at batch size
 * batch (>= 1), labelled label (NULL for "context"; else 1..31 bytes of
 * printable UTF-8 without spaces; copied). Phases do not nest: at most one
 * is open per process, whether opened here or by an NVTX range. Returns 0;
 * WARMCAL_E_INVAL for a bad label, tokens or batch (checked first, profiled
 * or not); WARMCAL_E_STATE when not profiled, or when a phase is already
 * open; another negative warmcal_code when the profiler fails (it then
 * disables itself with one message and the program runs on). Thread-safe. */
WARMCAL_API int warmcal_phase_begin(const char *label, uint64_t tokens, uint32_t batch);

/* Close the phase warmcal_phase_begin opened (from any thread): its records
 * are flushed to the spool before this returns. Returns 0, or
 * WARMCAL_E_STATE when not profiled or when no phase opened by
 * warmcal_phase_begin is open (a phase opened by an NVTX range is closed by
 * that range's pop or end only), or another negative warmcal_code as above. */
WARMCAL_API int warmcal_phase_end(void);

#ifdef __cplusplus
}
#endif
#endif
