/* Fuzz target for the NVTX phase message parser (phase_message.h), which
 * reads every range message a profiled server pushes: whatever the bytes,
 * it returns one of its results, and a phase it accepts holds in-range
 * values that read back the same when written out in the convention.
 * Built like the readers' targets (fuzz_readers.c): with -fsanitize=fuzzer
 * (cmake -DWARMCAL_FUZZ=ON), and with replay.c as a ctest over the corpus. */
#include "warmcal/phase_message.h"

#include "warmcal/text.h"
#include "warmcal/trace.h"

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* a copy of exactly size bytes, so a read past the end is caught */
    char *msg = malloc(size ? size : 1);
    if (!msg)
        abort();
    if (size)
        memcpy(msg, data, size);
    warmcal_phase_message m;
    memset(&m, 0xAB, sizeof m);
    int r = warmcal_phase_message_parse(msg, size, &m);
    if (r < WARMCAL_MSG_BAD_KEY || r > WARMCAL_MSG_PHASE)
        abort();
    const char *text = warmcal_phase_message_error(r);
    if (!text || !text[0])
        abort();
    if (r == WARMCAL_MSG_PHASE) {
        if (m.tokens < 1 || m.tokens > WARMCAL_TRACE_TOKENS_MAX || m.batch < 1)
            abort();
        const char *nul = memchr(m.label, '\0', sizeof m.label);
        if (!nul || nul == m.label || strchr(m.label, ' ') || !warmcal_utf8_valid(m.label))
            abort();
        /* the accepted phase, written back in the convention, reads the same */
        char again[128];
        int k = snprintf(again, sizeof again, "warmcal tokens=%" PRIu64 " batch=%" PRIu32 " label=%s",
                         m.tokens, m.batch, m.label);
        warmcal_phase_message m2;
        if (k < 0 || (size_t)k >= sizeof again ||
            warmcal_phase_message_parse(again, (size_t)k, &m2) != WARMCAL_MSG_PHASE ||
            m2.tokens != m.tokens || m2.batch != m.batch || strcmp(m2.label, m.label) != 0)
            abort();
        /* and the C API's check agrees */
        if (warmcal_phase_check(m.label, m.tokens, m.batch, NULL) != WARMCAL_MSG_PHASE)
            abort();
    } else {
        /* a message that is not a phase leaves the output alone */
        for (size_t i = 0; i < sizeof m; i++)
            if (((const unsigned char *)&m)[i] != 0xAB)
                abort();
    }
    /* a message is ours exactly when it is the word or starts with "warmcal " */
    int ours = size >= 7 && memcmp(msg, "warmcal", 7) == 0 && (size == 7 || msg[7] == ' ');
    if (ours != (r != WARMCAL_MSG_NOT_OURS))
        abort();
    free(msg);
    return 0;
}
