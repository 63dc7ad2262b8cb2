/* kill_writer — test helper: writes a trace of N phases with values the
 * tests recompute (see phase_for), then either closes it (--close) or
 * buffers the events of a phase in flight, prints "ready" on stdout and
 * waits to be killed, as a crashing profiled process would.
 *
 * usage: kill_writer PATH N [--close] [--events] */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "warmcal/trace.h"

#define MIB (1024ull * 1024ull)
#define GPU_BYTES (80ull * 1024ull * MIB)

/* Phase i: outcomes cycle ok, oom, aborted; odd phases have no free-memory
 * sample at their end. trace_cli_test.py mirrors this. */
static warmcal_phase phase_for(unsigned i)
{
    warmcal_phase p;
    memset(&p, 0, sizeof p);
    snprintf(p.label, sizeof p.label, "%s", i % 2 ? "generation" : "context");
    p.tokens = 128ull * (i + 1);
    p.batch = i + 1;
    p.begin_ns = 1000000ull * i;
    p.end_ns = p.begin_ns + 500000;
    p.live_begin = (uint64_t)i * MIB;
    p.live_peak = p.live_begin + (uint64_t)(i + 1) * 3 * MIB;
    p.live_end = p.live_begin;
    p.device_free_begin = GPU_BYTES - p.live_begin;
    p.device_free_end = i % 2 ? WARMCAL_FREE_UNKNOWN : GPU_BYTES - p.live_end;
    p.outcome = (uint8_t)(i % 3);
    p.failed_alloc_bytes = p.outcome == WARMCAL_OUTCOME_OOM ? 64 * MIB * (i + 1) : 0;
    p.pinned_peak = MIB / 2 * i;
    p.anomalies = i;
    return p;
}

static int buffer_events(warmcal_trace_writer *w, unsigned phase, warmcal_error *err)
{
    const warmcal_event evs[] = {
        {1000000ull * phase, WARMCAL_EV_PHASE_BEGIN, 0, 0, 0, phase},
        {1000000ull * phase + 10, WARMCAL_EV_ALLOC, WARMCAL_MEM_DEVICE, 3 * MIB, 0x7f0000000000ull, phase},
        {1000000ull * phase + 20, WARMCAL_EV_FREE, WARMCAL_MEM_DEVICE, 3 * MIB, 0x7f0000000000ull, phase},
        {1000000ull * phase + 30, WARMCAL_EV_PHASE_END, 0, 0, 0, phase},
    };
    for (size_t k = 0; k < sizeof evs / sizeof evs[0]; k++) {
        int rc = warmcal_trace_writer_add_event(w, &evs[k], err);
        if (rc)
            return rc;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: kill_writer PATH N [--close] [--events]\n");
        return 2;
    }
    int close_it = 0, events = 0;
    for (int i = 3; i < argc; i++) {
        close_it |= strcmp(argv[i], "--close") == 0;
        events |= strcmp(argv[i], "--events") == 0;
    }
    unsigned n = (unsigned)strtoul(argv[2], NULL, 10);
    warmcal_trace_info info = {
        .rank = 1, .world_size = 2, .model = "tiny-llama", .source = "simulated",
        .gpu_name = "Simulated GPU", .gpu_total_bytes = GPU_BYTES, .tp = 2,
        .host = "node-7", .start_time = "2024-05-01T12:00:00Z", .tool_version = "0.1.0",
    };
    warmcal_error err;
    warmcal_error_clear(&err);
    warmcal_trace_writer *w = NULL;
    int rc = warmcal_trace_writer_open(&w, argv[1], &info, events, &err);
    for (unsigned i = 0; !rc && i < n; i++) {
        warmcal_phase p = phase_for(i);
        rc = events ? buffer_events(w, i, &err) : 0;
        if (!rc)
            rc = warmcal_trace_writer_add_phase(w, &p, &err);
    }
    if (!rc && close_it)
        rc = warmcal_trace_writer_close(w, &err);
    else if (!rc)
        rc = events ? buffer_events(w, n, &err) : 0;
    if (rc) {
        char msg[512];
        fprintf(stderr, "kill_writer: %s\n", warmcal_error_format(&err, msg, sizeof msg));
        return 1;
    }
    if (close_it)
        return 0;
    printf("ready\n");
    fflush(stdout);
    for (int s = 0; s < 60; s++) /* the test kills us long before */
        sleep(1);
    return 3;
}
