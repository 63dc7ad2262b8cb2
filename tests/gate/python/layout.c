/* Prints the sizes and field offsets of the structs warmcal/gate.h shares
 * with Python, as JSON, for gate_python_structs_match_the_c_header to compare
 * with the ctypes mirrors in gate/python/warmcal/_capi.py. */
#include "warmcal/gate.h"

#include <stddef.h>
#include <stdio.h>

#define FIELD(t, f) printf("\"%s.%s\": %zu, ", #t, #f, offsetof(t, f))
#define SIZE(t) printf("\"%s\": %zu, ", #t, sizeof(t))

int main(void)
{
    printf("{");
    SIZE(warmcal_gate_options);
    FIELD(warmcal_gate_options, reserve_bytes);
    FIELD(warmcal_gate_options, deadline_s);
    FIELD(warmcal_gate_options, probe);
    FIELD(warmcal_gate_options, free_bytes);
    FIELD(warmcal_gate_options, free_fn);
    FIELD(warmcal_gate_options, free_user);
    FIELD(warmcal_gate_options, above_range);
    FIELD(warmcal_gate_options, allow_config_mismatch);
    FIELD(warmcal_gate_options, need_policy);
    FIELD(warmcal_gate_options, constant_bytes_per_token);
    FIELD(warmcal_gate_options, constant_min_tokens);
    SIZE(warmcal_shape);
    FIELD(warmcal_shape, tokens);
    FIELD(warmcal_shape, batch);
    FIELD(warmcal_shape, label);
    FIELD(warmcal_shape, batch_valid);
    SIZE(warmcal_decision);
    FIELD(warmcal_decision, run);
    FIELD(warmcal_decision, reason);
    FIELD(warmcal_decision, blocking_rank);
    FIELD(warmcal_decision, short_bytes);
    FIELD(warmcal_decision, min_headroom);
    FIELD(warmcal_decision, text);
    printf("\"MPI_Fint\": %zu, ", sizeof(MPI_Fint));
    printf("\"warmcal_probe_kind\": %zu, ", sizeof(warmcal_probe_kind));
    printf("\"enums\": [%d, %d, %d, %d, %d, %d, %d, %d, %d, %d, %d, %d, %d, %d]}\n",
           WARMCAL_PROBE_CUDA, WARMCAL_PROBE_VALUE, WARMCAL_PROBE_CALLBACK, WARMCAL_PROBE_SIMULATED,
           WARMCAL_NEED_TABLE, WARMCAL_NEED_CONSTANT, WARMCAL_ABOVE_REFUSE,
           WARMCAL_ABOVE_EXTRAPOLATE,
           WARMCAL_REASON_RUN, WARMCAL_REASON_LOW_MEMORY, WARMCAL_REASON_INVALID_BATCH,
           WARMCAL_REASON_OUT_OF_RANGE, WARMCAL_REASON_NO_ESTIMATE,
           WARMCAL_REASON_ESTIMATE_TOO_LARGE);
    return 0;
}
