/* Recorder throughput: events per second fed through the recorder (hash
 * table lookups, peak tracking, phase bookkeeping), against a plain memcpy of
 * the same event bytes, measured in one run. Usage: bench-recorder [EVENTS] */
#include "warmcal/recorder.h"
#include "warmcal/units.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A warmup-like stream: phases of nested allocations and frees over a
 * working set of live blocks, so lookups hit a table of realistic size. */
static warmcal_event *make_events(size_t n)
{
    warmcal_event *ev = calloc(n, sizeof *ev);
    if (!ev)
        return NULL;
    uint64_t live[64];
    size_t n_live = 0, next = 1;
    for (size_t i = 0; i < n; i++) {
        if (i % 1000 == 0) {
            ev[i].kind = WARMCAL_EV_PHASE_BEGIN;
            ev[i].bytes = 1 + i % 32768;
        } else if (i % 1000 == 999) {
            ev[i].kind = WARMCAL_EV_PHASE_END;
        } else if (n_live == 64 || (n_live > 0 && (i * 2654435761u) % 3 == 0)) {
            ev[i].kind = WARMCAL_EV_FREE;
            ev[i].address = live[--n_live];
        } else {
            ev[i].kind = WARMCAL_EV_ALLOC;
            ev[i].address = 0x7f0000000000ull + (next++ << 21);
            ev[i].bytes = (1 + (i % 97)) << 20;
            live[n_live++] = ev[i].address;
        }
        ev[i].time_ns = i;
    }
    return ev;
}

static int feed(warmcal_recorder *r, const warmcal_event *ev, size_t n, warmcal_error *err)
{
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        const warmcal_event *e = &ev[i];
        switch (e->kind) {
        case WARMCAL_EV_PHASE_BEGIN:
            rc = warmcal_recorder_phase_begin(r, e->time_ns, "context", e->bytes, 1, err);
            break;
        case WARMCAL_EV_PHASE_END:
            rc = warmcal_recorder_phase_end(r, e->time_ns, err);
            break;
        case WARMCAL_EV_FREE:
            rc = warmcal_recorder_free(r, e->time_ns, e->address, err);
            break;
        default:
            rc = warmcal_recorder_alloc(r, e->time_ns, e->address, e->bytes, WARMCAL_MEM_DEVICE, err);
        }
    }
    return rc;
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? strtoull(argv[1], NULL, 10) : 4000000;
    if (n < 1000)
        n = 1000;
    warmcal_event *ev = make_events(n);
    warmcal_event *copy = malloc(n * sizeof *copy);
    if (!ev || !copy)
        return 1;
    const int rounds = 5;
    double best_rec = 1e30, best_copy = 1e30;
    uint64_t checksum = 0;
    for (int round = 0; round < rounds; round++) {
        warmcal_recorder *r = NULL;
        warmcal_error err = {0};
        if (warmcal_recorder_open(&r, NULL, &err))
            return 1;
        uint64_t t0 = warmcal_now_ns();
        if (feed(r, ev, n, &err)) {
            fprintf(stderr, "bench-recorder: %s\n", err.text);
            return 1;
        }
        uint64_t t1 = warmcal_now_ns();
        size_t phases = 0;
        const warmcal_phase *p = warmcal_recorder_phases(r, &phases);
        checksum += phases ? p[phases - 1].live_peak : 0;
        warmcal_recorder_close(r);

        uint64_t t2 = warmcal_now_ns();
        memcpy(copy, ev, n * sizeof *ev);
        uint64_t t3 = warmcal_now_ns();
        checksum += copy[n / 2].address;
        if ((double)(t1 - t0) < best_rec)
            best_rec = (double)(t1 - t0);
        if ((double)(t3 - t2) < best_copy)
            best_copy = (double)(t3 - t2);
    }
    double eps = (double)n / (best_rec / 1e9);
    double copy_eps = (double)n / (best_copy / 1e9);
    printf("events                 %zu (%zu bytes each, best of %d rounds)\n", n, sizeof(warmcal_event),
           rounds);
    printf("recorder               %.1f ns/event, %.2f M events/s\n", best_rec / (double)n, eps / 1e6);
    printf("memcpy of same bytes   %.2f ns/event, %.2f M events/s\n", best_copy / (double)n,
           copy_eps / 1e6);
    printf("ratio recorder/memcpy  %.1fx the time of copying the events\n", best_rec / best_copy);
    printf("(checksum %llu)\n", (unsigned long long)checksum);
    free(ev);
    free(copy);
    return 0;
}
