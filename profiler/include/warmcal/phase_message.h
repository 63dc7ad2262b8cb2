/* warmcal/phase_message.h — the NVTX phase convention (docs/calibration.md):
 * "warmcal tokens=N batch=B label=L". Pure C, no state, no allocation:
 * fuzzed (tests/fuzz). The one definition of the convention: the NVTX
 * injection and the C phase API use it inside libwarmcal-inject, and the
 * Python phase helper and the snapshot importer through libwarmcal-trace. */
#ifndef WARMCAL_PHASE_MESSAGE_H
#define WARMCAL_PHASE_MESSAGE_H

#include <stddef.h>
#include <stdint.h>
#include "warmcal/error.h"
#include "warmcal/recorder.h"

/* The label of a phase whose message (or C API call) names none: the one
 * the gate evaluates for a shape without a label, so that such phases and
 * such shapes meet in the table. */
#define WARMCAL_PHASE_DEFAULT_LABEL "context"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    uint64_t tokens;                  /* 1..WARMCAL_TRACE_TOKENS_MAX */
    uint32_t batch;                   /* 1..UINT32_MAX, default 1 */
    char label[WARMCAL_LABEL_LEN];    /* NUL-terminated, default WARMCAL_PHASE_DEFAULT_LABEL */
} warmcal_phase_message;

typedef enum {
    WARMCAL_MSG_PHASE = 1,        /* a well-formed phase message: *out filled */
    WARMCAL_MSG_NOT_OURS = 0,     /* not a warmcal message: ignore silently */
    WARMCAL_MSG_BAD_TOKENS = -1,  /* tokens missing, not a number, 0 or too large */
    WARMCAL_MSG_BAD_BATCH = -2,   /* not a number, 0 or above UINT32_MAX */
    WARMCAL_MSG_BAD_LABEL = -3,   /* empty, too long, not printable UTF-8 */
    WARMCAL_MSG_BAD_KEY = -4,     /* an unknown or repeated key, or no '=' */
} warmcal_phase_message_result;

/* Parse msg (len bytes, not necessarily NUL-terminated; msg may be NULL when
 * len is 0). The grammar:
 *   - the message is ours when it is exactly "warmcal" or starts with
 *     "warmcal " (one space); anything else, leading spaces included, is
 *     NOT_OURS;
 *   - after the word come fields KEY=VALUE separated by one or more spaces
 *     (only ' '; trailing spaces allowed), in any order, each key at most
 *     once: tokens (required), batch (default 1), label (default
 *     WARMCAL_PHASE_DEFAULT_LABEL);
 *   - numbers are plain decimal digits (no sign, no spaces; leading zeros
 *     allowed); tokens lies in 1..WARMCAL_TRACE_TOKENS_MAX, batch in
 *     1..UINT32_MAX;
 *   - a label is 1..31 bytes of well-formed UTF-8 with no control
 *     character (below 0x20, 0x7F) and no space.
 * The first fault in message order decides the result; a missing tokens
 * field is found after the last field. *out (may be NULL) is written only
 * for WARMCAL_MSG_PHASE. */
WARMCAL_API int warmcal_phase_message_parse(const char *msg, size_t len, warmcal_phase_message *out);

/* Check a phase given by the C API with the parser's rules: label (NULL for
 * the default; else NUL-terminated), tokens and batch. Returns
 * WARMCAL_MSG_PHASE and fills *out (may be NULL), or the negative result
 * the same values would give in a message. */
WARMCAL_API int warmcal_phase_check(const char *label, uint64_t tokens, uint32_t batch,
                         warmcal_phase_message *out);

/* A short static text for a negative result, for the one warning per kind
 * ("tokens missing, not a number or outside 1..2^40", ...); never NULL. */
WARMCAL_API const char *warmcal_phase_message_error(int result);

#ifdef __cplusplus
}
#endif
#endif
