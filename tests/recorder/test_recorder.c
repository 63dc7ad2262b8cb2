/* Recorder and simulated-device behaviour: peaks, nesting, frees of older
 * blocks, anomalies, OOM, aborted phases, pinned memory kept apart. */
#include "../check.h"
#include "warmcal/recorder.h"
#include "warmcal/simdev.h"
#include "warmcal/units.h"

#define MiB (1ull << 20)

static warmcal_recorder *open_recorder(warmcal_recorder_options *opts)
{
    warmcal_recorder *r = NULL;
    warmcal_error err = {0};
    CHECK(warmcal_recorder_open(&r, opts, &err) == WARMCAL_OK);
    return r;
}

static const warmcal_phase *only_phase(warmcal_recorder *r, size_t index)
{
    size_t n = 0;
    const warmcal_phase *p = warmcal_recorder_phases(r, &n);
    CHECK(index < n);
    return index < n ? &p[index] : NULL;
}

static void peak_is_running_maximum_in_event_order(void)
{
    warmcal_recorder *r = open_recorder(NULL);
    warmcal_error err = {0};
    warmcal_recorder_alloc(r, 1, 0x1000, 100 * MiB, WARMCAL_MEM_DEVICE, &err); /* weights */
    warmcal_recorder_phase_begin(r, 10, "context", 4096, 1, &err);
    warmcal_recorder_alloc(r, 11, 0x2000, 30 * MiB, WARMCAL_MEM_DEVICE, &err);
    warmcal_recorder_alloc(r, 12, 0x3000, 50 * MiB, WARMCAL_MEM_POOL, &err);
    warmcal_recorder_free(r, 13, 0x2000, &err);
    warmcal_recorder_alloc(r, 14, 0x4000, 40 * MiB, WARMCAL_MEM_VIRTUAL, &err);
    warmcal_recorder_free(r, 15, 0x3000, &err);
    warmcal_recorder_free(r, 16, 0x4000, &err);
    warmcal_recorder_alloc(r, 17, 0x5000, 5 * MiB, WARMCAL_MEM_MANAGED, &err);
    CHECK(warmcal_recorder_phase_end(r, 20, &err) == WARMCAL_OK);
    const warmcal_phase *p = only_phase(r, 0);
    CHECK(p != NULL);
    if (p) {
        CHECK(strcmp(p->label, "context") == 0);
        CHECK_EQ_U64(p->tokens, 4096);
        CHECK_EQ_U64(p->batch, 1);
        CHECK_EQ_U64(p->live_begin, 100 * MiB);
        /* 100 + 30 + 50 = 180, then 100 + 50 + 40 = 190 */
        CHECK_EQ_U64(p->live_peak, 190 * MiB);
        CHECK_EQ_U64(p->live_end, 105 * MiB);
        CHECK_EQ_U64(p->begin_ns, 10);
        CHECK_EQ_U64(p->end_ns, 20);
        CHECK_EQ_U64(p->outcome, WARMCAL_OUTCOME_OK);
        CHECK_EQ_U64(p->failed_alloc_bytes, 0);
        CHECK_EQ_U64(p->anomalies, 0);
    }
    CHECK(err.code == 0);
    warmcal_recorder_close(r);
}

static void nested_allocations_each_count_until_freed(void)
{
    warmcal_recorder *r = open_recorder(NULL);
    warmcal_error err = {0};
    warmcal_recorder_phase_begin(r, 0, "nest", 1, 1, &err);
    /* a stack of scratch buffers: a, b inside a, c inside b, then unwound */
    warmcal_recorder_alloc(r, 1, 0xa, 10, WARMCAL_MEM_DEVICE, &err);
    warmcal_recorder_alloc(r, 2, 0xb, 20, WARMCAL_MEM_DEVICE, &err);
    warmcal_recorder_alloc(r, 3, 0xc, 30, WARMCAL_MEM_DEVICE, &err);
    warmcal_recorder_free(r, 4, 0xc, &err);
    warmcal_recorder_free(r, 5, 0xb, &err);
    warmcal_recorder_alloc(r, 6, 0xd, 45, WARMCAL_MEM_DEVICE, &err); /* 10 + 45 < 60 */
    warmcal_recorder_free(r, 7, 0xd, &err);
    warmcal_recorder_free(r, 8, 0xa, &err);
    warmcal_recorder_phase_end(r, 9, &err);
    const warmcal_phase *p = only_phase(r, 0);
    if (p) {
        CHECK_EQ_U64(p->live_begin, 0);
        CHECK_EQ_U64(p->live_peak, 60);
        CHECK_EQ_U64(p->live_end, 0);
    }
    warmcal_recorder_close(r);
}

static void free_of_block_from_before_the_phase_lowers_live_bytes(void)
{
    warmcal_recorder *r = open_recorder(NULL);
    warmcal_error err = {0};
    warmcal_recorder_alloc(r, 0, 0x100, 500, WARMCAL_MEM_DEVICE, &err);
    warmcal_recorder_phase_begin(r, 1, "context", 8, 1, &err);
    warmcal_recorder_free(r, 2, 0x100, &err);
    warmcal_recorder_alloc(r, 3, 0x200, 300, WARMCAL_MEM_DEVICE, &err);
    warmcal_recorder_phase_end(r, 4, &err);
    const warmcal_phase *p = only_phase(r, 0);
    if (p) {
        CHECK_EQ_U64(p->live_begin, 500);
        CHECK_EQ_U64(p->live_peak, 500); /* never above where it began */
        CHECK_EQ_U64(p->live_end, 300);
        CHECK_EQ_U64(p->anomalies, 0);
    }
    warmcal_recorder_close(r);
}

static void unknown_and_double_frees_are_anomalies_not_crashes(void)
{
    warmcal_recorder *r = open_recorder(NULL);
    warmcal_error err = {0};
    warmcal_recorder_alloc(r, 0, 0x10, 64, WARMCAL_MEM_DEVICE, &err);
    warmcal_recorder_phase_begin(r, 1, "generation", 32, 32, &err);
    CHECK(warmcal_recorder_free(r, 2, 0xdead, &err) == WARMCAL_OK); /* before recording began */
    CHECK(warmcal_recorder_free(r, 3, 0x10, &err) == WARMCAL_OK);
    CHECK(warmcal_recorder_free(r, 4, 0x10, &err) == WARMCAL_OK); /* double free */
    warmcal_recorder_alloc(r, 5, 0x20, 8, WARMCAL_MEM_DEVICE, &err);
    warmcal_recorder_alloc(r, 6, 0x20, 16, WARMCAL_MEM_DEVICE, &err); /* free never seen */
    warmcal_recorder_phase_end(r, 7, &err);
    warmcal_recorder_stats st;
    warmcal_recorder_get_stats(r, &st);
    CHECK_EQ_U64(st.unknown_frees, 1);
    CHECK_EQ_U64(st.double_frees, 1);
    CHECK_EQ_U64(st.reused_live, 1);
    CHECK_EQ_U64(st.live_device, 16); /* the reused address counts once, at its new size */
    CHECK_EQ_U64(st.blocks_live, 1);
    const warmcal_phase *p = only_phase(r, 0);
    if (p) {
        CHECK_EQ_U64(p->anomalies, 3);
        CHECK_EQ_U64(p->live_end, 16);
        CHECK_EQ_U64(p->live_peak, 64);
    }
    CHECK(err.code == 0);
    warmcal_recorder_close(r);
}

static void failed_allocation_marks_phase_oom_with_first_size(void)
{
    warmcal_recorder *r = open_recorder(NULL);
    warmcal_error err = {0};
    warmcal_recorder_phase_begin(r, 0, "context", 32784, 1, &err);
    warmcal_recorder_alloc(r, 1, 0x1, 100, WARMCAL_MEM_DEVICE, &err);
    warmcal_recorder_alloc_failed(r, 2, 7000, WARMCAL_MEM_DEVICE, &err);
    warmcal_recorder_alloc_failed(r, 3, 9000, WARMCAL_MEM_DEVICE, &err);
    warmcal_recorder_phase_end(r, 4, &err);
    /* a failure outside any phase changes no phase */
    warmcal_recorder_alloc_failed(r, 5, 1, WARMCAL_MEM_DEVICE, &err);
    const warmcal_phase *p = only_phase(r, 0);
    if (p) {
        CHECK_EQ_U64(p->outcome, WARMCAL_OUTCOME_OOM);
        CHECK_EQ_U64(p->failed_alloc_bytes, 7000);
        CHECK_EQ_U64(p->live_peak, 100);
    }
    warmcal_recorder_close(r);
}

static int sink_calls;
static warmcal_phase sink_last;
static int count_sink(void *user, const warmcal_phase *phase, warmcal_error *err)
{
    (void)err;
    (*(int *)user)++;
    sink_last = *phase;
    sink_calls++;
    return 0;
}

static void open_phase_is_closed_as_aborted_and_reaches_the_sink(void)
{
    int calls = 0;
    warmcal_recorder_options opts = {.on_phase = count_sink, .user = &calls};
    warmcal_recorder *r = open_recorder(&opts);
    warmcal_error err = {0};
    CHECK(warmcal_recorder_abort_phase(r, 0, &err) == WARMCAL_OK); /* nothing open: no-op */
    CHECK_EQ_U64(calls, 0);
    warmcal_recorder_phase_begin(r, 5, "context", 2048, 1, &err);
    warmcal_recorder_alloc(r, 6, 0x1, 77, WARMCAL_MEM_DEVICE, &err);
    CHECK(warmcal_recorder_in_phase(r));
    CHECK(warmcal_recorder_abort_phase(r, 9, &err) == WARMCAL_OK);
    CHECK(!warmcal_recorder_in_phase(r));
    CHECK_EQ_U64(calls, 1);
    CHECK_EQ_U64(sink_last.outcome, WARMCAL_OUTCOME_ABORTED);
    CHECK_EQ_U64(sink_last.live_peak, 77);
    CHECK_EQ_U64(sink_last.end_ns, 9);
    warmcal_recorder_close(r);
}

static void phases_do_not_nest_and_end_needs_begin(void)
{
    warmcal_recorder *r = open_recorder(NULL);
    warmcal_error err = {0};
    CHECK(warmcal_recorder_phase_end(r, 0, &err) == WARMCAL_E_STATE);
    CHECK_STR_CONTAINS(err.text, "no phase is open");
    warmcal_error_clear(&err);
    CHECK(warmcal_recorder_phase_begin(r, 0, "a", 1, 1, &err) == WARMCAL_OK);
    CHECK(warmcal_recorder_phase_begin(r, 1, "b", 1, 1, &err) == WARMCAL_E_STATE);
    CHECK_STR_CONTAINS(err.text, "'a' is still open");
    warmcal_recorder_close(r);
}

static void pinned_host_memory_is_kept_apart(void)
{
    warmcal_recorder *r = open_recorder(NULL);
    warmcal_error err = {0};
    warmcal_recorder_phase_begin(r, 0, "context", 16, 1, &err);
    warmcal_recorder_alloc(r, 1, 0x1, 1000, WARMCAL_MEM_PINNED_HOST, &err);
    warmcal_recorder_alloc(r, 2, 0x2, 10, WARMCAL_MEM_DEVICE, &err);
    warmcal_recorder_free(r, 3, 0x1, &err);
    warmcal_recorder_phase_end(r, 4, &err);
    const warmcal_phase *p = only_phase(r, 0);
    if (p) {
        CHECK_EQ_U64(p->live_peak, 10);
        CHECK_EQ_U64(p->pinned_peak, 1000);
    }
    warmcal_recorder_close(r);
}

static void label_is_truncated_to_31_characters(void)
{
    warmcal_recorder *r = open_recorder(NULL);
    warmcal_error err = {0};
    warmcal_recorder_phase_begin(r, 0, "a-label-that-is-much-longer-than-thirty-two-bytes", 1, 1, &err);
    warmcal_recorder_phase_end(r, 1, &err);
    const warmcal_phase *p = only_phase(r, 0);
    if (p) {
        CHECK_EQ_U64(strlen(p->label), 31);
        CHECK(strncmp(p->label, "a-label-that-is-much-longer-tha", 31) == 0);
    }
    warmcal_recorder_close(r);
}

static void simulated_device_rounds_reports_free_and_fails_when_full(void)
{
    warmcal_recorder *r = open_recorder(NULL);
    warmcal_error err = {0};
    warmcal_simdev *d = NULL;
    warmcal_simdev_options o = {.total_bytes = 100 * MiB};
    CHECK(warmcal_simdev_open(&d, &o, r, &err) == WARMCAL_OK);
    CHECK(warmcal_simdev_reserve_hidden(d, 10 * MiB, &err) == WARMCAL_OK);
    CHECK_EQ_U64(warmcal_simdev_free_bytes(d), 90 * MiB);
    warmcal_simdev_sample(d, &err);
    warmcal_recorder_phase_begin(r, warmcal_now_ns(), "context", 100, 1, &err);
    uint64_t a = 0, b = 0, c = 0;
    CHECK(warmcal_simdev_alloc(d, 1, WARMCAL_MEM_DEVICE, &a, &err) == WARMCAL_OK); /* -> 2 MiB */
    CHECK_EQ_U64(warmcal_simdev_free_bytes(d), 88 * MiB);
    CHECK(warmcal_simdev_alloc(d, 80 * MiB, WARMCAL_MEM_DEVICE, &b, &err) == WARMCAL_OK);
    CHECK(warmcal_simdev_alloc(d, 64 * MiB, WARMCAL_MEM_PINNED_HOST, &c, &err) == WARMCAL_OK);
    CHECK_EQ_U64(warmcal_simdev_free_bytes(d), 8 * MiB);
    uint64_t x = 0;
    CHECK(warmcal_simdev_alloc(d, 8 * MiB + 1, WARMCAL_MEM_DEVICE, &x, &err) == WARMCAL_E_OOM);
    CHECK_STR_CONTAINS(err.text, "out of device memory");
    warmcal_error_clear(&err);
    CHECK(warmcal_simdev_free(d, b, &err) == WARMCAL_OK);
    CHECK(warmcal_simdev_free(d, b, &err) == WARMCAL_E_INVAL);
    warmcal_error_clear(&err);
    warmcal_simdev_sample(d, &err);
    warmcal_recorder_phase_end(r, warmcal_now_ns(), &err);
    const warmcal_phase *p = only_phase(r, 0);
    if (p) {
        CHECK_EQ_U64(p->outcome, WARMCAL_OUTCOME_OOM);
        CHECK_EQ_U64(p->failed_alloc_bytes, 8 * MiB + 1);
        CHECK_EQ_U64(p->live_peak, 82 * MiB);
        CHECK_EQ_U64(p->live_end, 2 * MiB);
        CHECK_EQ_U64(p->pinned_peak, 64 * MiB);
        CHECK_EQ_U64(p->device_free_begin, 90 * MiB);
        CHECK_EQ_U64(p->device_free_end, 88 * MiB);
    }
    warmcal_simdev_close(d);
    warmcal_recorder_close(r);
}

static int event_count;
static int count_events(void *user, const warmcal_event *ev, warmcal_error *err)
{
    (void)user;
    (void)err;
    if (ev->kind == WARMCAL_EV_ALLOC)
        CHECK(ev->phase == 0);
    event_count++;
    return 0;
}

static int failing_sink(void *user, const warmcal_phase *phase, warmcal_error *err)
{
    (void)user;
    (void)phase;
    return warmcal_error_set(err, WARMCAL_E_IO, "rank-0.h5", NULL, "disk full");
}

static void sink_errors_reach_the_caller(void)
{
    warmcal_recorder_options opts = {.on_phase = failing_sink, .on_event = count_events};
    warmcal_recorder *r = open_recorder(&opts);
    warmcal_error err = {0};
    warmcal_recorder_phase_begin(r, 0, "x", 1, 1, &err);
    warmcal_recorder_alloc(r, 1, 0x1, 1, WARMCAL_MEM_DEVICE, &err);
    CHECK(warmcal_recorder_phase_end(r, 2, &err) == WARMCAL_E_IO);
    CHECK_STR_CONTAINS(err.text, "disk full");
    CHECK_EQ_U64(event_count, 3);
    warmcal_recorder_close(r);
}

int main(void)
{
    RUN(peak_is_running_maximum_in_event_order);
    RUN(nested_allocations_each_count_until_freed);
    RUN(free_of_block_from_before_the_phase_lowers_live_bytes);
    RUN(unknown_and_double_frees_are_anomalies_not_crashes);
    RUN(failed_allocation_marks_phase_oom_with_first_size);
    RUN(open_phase_is_closed_as_aborted_and_reaches_the_sink);
    RUN(phases_do_not_nest_and_end_needs_begin);
    RUN(pinned_host_memory_is_kept_apart);
    RUN(label_is_truncated_to_31_characters);
    RUN(simulated_device_rounds_reports_free_and_fails_when_full);
    RUN(sink_errors_reach_the_caller);
    (void)sink_calls;
    CHECK_DONE();
}
