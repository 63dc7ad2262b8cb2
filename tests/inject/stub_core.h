/* stub_core.h — a stand-in for the injected profiler's core (inject.h's
 * warmcal__inject_* functions), built into a test copy of the NVTX
 * injection so the NVTX path and the C API are tested without CUPTI: it
 * records every phase edge and warning for the test to read back. */
#ifndef WARMCAL_TEST_STUB_CORE_H
#define WARMCAL_TEST_STUB_CORE_H

#include <stdint.h>

#define STUB_API __attribute__((visibility("default")))

typedef struct {
    char label[32];
    uint64_t tokens;
    uint32_t batch;
} stub_phase;

/* Forget everything recorded; active: what warmcal__inject_active says. */
STUB_API void stub_reset(int active);
STUB_API int stub_begins(void);         /* phases opened */
STUB_API int stub_ends(void);           /* phases closed */
STUB_API int stub_refused(void);        /* begin or end calls the core refused */
STUB_API int stub_inactive(void);       /* phases asked for while inactive (refused before the core) */
STUB_API int stub_phase_open(void);
STUB_API stub_phase stub_last_phase(void);
STUB_API int stub_warnings(int kind);   /* warn_once calls of that kind */
STUB_API int stub_all_warnings(void);
STUB_API const char *stub_last_warning(void);

#endif
