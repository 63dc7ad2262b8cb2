/* Prints the sizes and field offsets of the structs warmcal/trace.h shares
 * with Python, as JSON, for test_trace_py.py to compare with the ctypes
 * mirrors in gate/python/warmcal/_trace.py. */
#include "warmcal/trace.h"

#include <stddef.h>
#include <stdio.h>

#define FIELD(t, f) printf("\"%s.%s\": %zu, ", #t, #f, offsetof(t, f))
#define SIZE(t) printf("\"%s\": %zu, ", #t, sizeof(t))

int main(void)
{
    printf("{");
    SIZE(warmcal_error);
    FIELD(warmcal_error, code);
    FIELD(warmcal_error, source);
    FIELD(warmcal_error, where);
    FIELD(warmcal_error, text);
    SIZE(warmcal_phase);
    FIELD(warmcal_phase, label);
    FIELD(warmcal_phase, tokens);
    FIELD(warmcal_phase, batch);
    FIELD(warmcal_phase, begin_ns);
    FIELD(warmcal_phase, end_ns);
    FIELD(warmcal_phase, live_begin);
    FIELD(warmcal_phase, live_peak);
    FIELD(warmcal_phase, live_end);
    FIELD(warmcal_phase, device_free_begin);
    FIELD(warmcal_phase, device_free_end);
    FIELD(warmcal_phase, outcome);
    FIELD(warmcal_phase, failed_alloc_bytes);
    FIELD(warmcal_phase, pinned_peak);
    FIELD(warmcal_phase, anomalies);
    FIELD(warmcal_phase, lower_bound);
    FIELD(warmcal_phase, reserved_begin);
    FIELD(warmcal_phase, reserved_end);
    SIZE(warmcal_trace_info);
    FIELD(warmcal_trace_info, rank);
    FIELD(warmcal_trace_info, world_size);
    FIELD(warmcal_trace_info, model);
    FIELD(warmcal_trace_info, source);
    FIELD(warmcal_trace_info, gpu_name);
    FIELD(warmcal_trace_info, gpu_total_bytes);
    FIELD(warmcal_trace_info, tp);
    FIELD(warmcal_trace_info, pp);
    FIELD(warmcal_trace_info, host);
    FIELD(warmcal_trace_info, start_time);
    FIELD(warmcal_trace_info, tool_version);
    FIELD(warmcal_trace_info, driver_version);
    FIELD(warmcal_trace_info, cuda_version);
    SIZE(warmcal_trace_attr);
    FIELD(warmcal_trace_attr, name);
    FIELD(warmcal_trace_attr, value);
    SIZE(warmcal_trace);
    FIELD(warmcal_trace, path);
    FIELD(warmcal_trace, schema);
    FIELD(warmcal_trace, rank);
    FIELD(warmcal_trace, world_size);
    FIELD(warmcal_trace, model);
    FIELD(warmcal_trace, source);
    FIELD(warmcal_trace, gpu_name);
    FIELD(warmcal_trace, gpu_total_bytes);
    FIELD(warmcal_trace, complete);
    FIELD(warmcal_trace, phases);
    FIELD(warmcal_trace, n_phases);
    FIELD(warmcal_trace, n_events);
    FIELD(warmcal_trace, attrs);
    FIELD(warmcal_trace, n_attrs);
    printf("\"end\": 0}\n");
    return 0;
}
