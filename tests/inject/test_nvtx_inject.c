/* The NVTX injection (nvtx_inject.c) driven through the real NVTX v3
 * headers: this program's NVTX calls reach a test copy of the injection
 * (loaded by NVTX through NVTX_INJECTION64_PATH, argv[1]) whose core is the
 * recording stub (stub_core.h). Also the C phase API (warmcal/profile.h),
 * which shares the rule "one phase at a time, closed by its opener". */
#define _POSIX_C_SOURCE 200809L
#include <nvtx3/nvToolsExt.h>

#include "inject.h"
#include "stub_core.h"

#include "warmcal/error.h"
#include "warmcal/profile.h"

#include "../check.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <wchar.h>

static nvtxEventAttributes_t ascii_attr(const char *msg)
{
    nvtxEventAttributes_t a;
    memset(&a, 0, sizeof a);
    a.version = NVTX_VERSION;
    a.size = NVTX_EVENT_ATTRIB_STRUCT_SIZE;
    a.messageType = NVTX_MESSAGE_TYPE_ASCII;
    a.message.ascii = msg;
    return a;
}

static void check_phase(const char *label, uint64_t tokens, uint32_t batch)
{
    stub_phase p = stub_last_phase();
    CHECK(strcmp(p.label, label) == 0);
    CHECK_EQ_U64(p.tokens, tokens);
    CHECK_EQ_U64(p.batch, batch);
}

static void a_phase_push_opens_a_phase_and_its_pop_closes_it(void)
{
    stub_reset(1);
    CHECK(nvtxRangePushA("warmcal tokens=4096 batch=2 label=generation") == 0);
    CHECK(stub_begins() == 1);
    check_phase("generation", 4096, 2);
    CHECK(nvtxRangePushA("attention") == 1);
    CHECK(nvtxRangePushA("matmul") == 2);
    CHECK(nvtxRangePop() == 2);
    CHECK(nvtxRangePop() == 1);
    CHECK(stub_ends() == 0);
    CHECK(nvtxRangePop() == 0);
    CHECK(stub_ends() == 1);
    CHECK(stub_all_warnings() == 0);
}

static void a_phase_push_inside_other_ranges_closes_at_its_own_level(void)
{
    stub_reset(1);
    CHECK(nvtxRangePushA("server step") == 0);
    CHECK(nvtxRangePushA("warmcal tokens=8") == 1);
    check_phase("context", 8, 1);
    CHECK(nvtxRangePushA("inner") == 2);
    CHECK(nvtxRangePop() == 2);
    CHECK(stub_ends() == 0);
    CHECK(nvtxRangePop() == 1);
    CHECK(stub_ends() == 1);
    CHECK(nvtxRangePop() == 0);
    CHECK(stub_ends() == 1);
}

static void ranges_outside_the_convention_are_ignored(void)
{
    stub_reset(1);
    const char *others[] = {"forward", "warmcalx tokens=1", " warmcal tokens=1", "Warmcal",
                            "", NULL};
    for (int i = 0; i < 6; i++)
        CHECK(nvtxRangePushA(others[i]) == i);
    for (int i = 5; i >= 0; i--)
        CHECK(nvtxRangePop() == i);
    CHECK(stub_begins() == 0 && stub_ends() == 0 && stub_all_warnings() == 0);
}

static void a_pop_without_push_returns_an_error_and_changes_nothing(void)
{
    stub_reset(1);
    CHECK(nvtxRangePop() < 0);
    CHECK(nvtxRangePushA("warmcal tokens=3") == 0);
    CHECK(nvtxRangePop() == 0);
    CHECK(nvtxRangePop() < 0);
    CHECK(stub_begins() == 1 && stub_ends() == 1 && stub_refused() == 0);
}

static void malformed_messages_warn_by_kind_and_open_nothing(void)
{
    static const struct {
        const char *msg;
        int kind;
    } bad[] = {
        {"warmcal", WARMCAL__WARN_MSG_SYNTAX},
        {"warmcal tokens=0", WARMCAL__WARN_MSG_SYNTAX},
        {"warmcal tokens=1 batch=0", WARMCAL__WARN_MSG_BATCH},
        {"warmcal tokens=1 label=much_too_long_for_a_label_of_31_bytes", WARMCAL__WARN_MSG_LABEL},
        {"warmcal tokens=1 seq=2", WARMCAL__WARN_MSG_KEY},
    };
    stub_reset(1);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int before = stub_warnings(bad[i].kind);
        CHECK(nvtxRangePushA(bad[i].msg) == 0);
        CHECK(stub_warnings(bad[i].kind) == before + 1);
        CHECK(nvtxRangePop() == 0);
        nvtxRangeId_t id = nvtxRangeStartA(bad[i].msg);
        CHECK(id != 0);
        CHECK(stub_warnings(bad[i].kind) == before + 2);
        nvtxRangeEnd(id);
    }
    CHECK_STR_CONTAINS(stub_last_warning(), "warmcal tokens=1 seq=2");
    CHECK(stub_begins() == 0 && stub_ends() == 0);
}

static void a_phase_inside_an_open_phase_is_ignored_with_a_warning(void)
{
    stub_reset(1);
    CHECK(nvtxRangePushA("warmcal tokens=16") == 0);
    CHECK(nvtxRangePushA("warmcal tokens=32") == 1);
    CHECK(stub_begins() == 1);
    check_phase("context", 16, 1);
    CHECK(stub_warnings(WARMCAL__WARN_NESTED) == 1);
    /* the warning names the phase that blocks, and why it may never close */
    CHECK_STR_CONTAINS(stub_last_warning(), "tokens=32");
    CHECK_STR_CONTAINS(stub_last_warning(), "opened by an NVTX range at tokens=16 batch=1 label=context");
    CHECK_STR_CONTAINS(stub_last_warning(), "a phase whose range was never closed");
    CHECK_STR_CONTAINS(stub_last_warning(), "blocks all later ones");
    nvtxRangeId_t id = nvtxRangeStartA("warmcal tokens=64");
    CHECK(stub_warnings(WARMCAL__WARN_NESTED) == 2);
    nvtxRangeEnd(id);
    CHECK(nvtxRangePop() == 1);
    CHECK(stub_ends() == 0);
    CHECK(nvtxRangePop() == 0);
    CHECK(stub_ends() == 1);
    CHECK(stub_begins() == 1);
}

static void a_start_end_phase_closes_on_its_own_id_only(void)
{
    stub_reset(1);
    nvtxRangeId_t phase = nvtxRangeStartA("warmcal tokens=128 batch=4 label=decode");
    nvtxRangeId_t other = nvtxRangeStartA("other");
    CHECK(phase != 0 && other != 0 && phase != other);
    CHECK(stub_begins() == 1);
    check_phase("decode", 128, 4);
    nvtxRangeEnd(other);
    nvtxRangeEnd(0);
    CHECK(stub_ends() == 0);
    nvtxRangeEnd(phase);
    CHECK(stub_ends() == 1);
    nvtxRangeEnd(phase); /* twice: nothing more */
    CHECK(stub_ends() == 1);
    CHECK(stub_refused() == 0);
}

static void *end_range(void *arg)
{
    nvtxRangeEnd(*(nvtxRangeId_t *)arg);
    return NULL;
}

static void a_start_end_phase_may_end_on_another_thread(void)
{
    stub_reset(1);
    nvtxRangeId_t id = nvtxRangeStartA("warmcal tokens=5");
    pthread_t t;
    CHECK(pthread_create(&t, NULL, end_range, &id) == 0);
    pthread_join(t, NULL);
    CHECK(stub_begins() == 1 && stub_ends() == 1);
}

static void event_attributes_carry_ascii_wide_and_registered_messages(void)
{
    stub_reset(1);
    nvtxEventAttributes_t a = ascii_attr("warmcal tokens=10 label=ex");
    CHECK(nvtxRangePushEx(&a) == 0);
    check_phase("ex", 10, 1);
    CHECK(nvtxRangePop() == 0);

    a.messageType = NVTX_MESSAGE_TYPE_UNICODE;
    a.message.unicode = L"warmcal tokens=11 label=wide";
    CHECK(nvtxRangePushEx(&a) == 0);
    check_phase("wide", 11, 1);
    CHECK(nvtxRangePop() == 0);

    nvtxStringHandle_t reg = nvtxDomainRegisterStringA(NULL, "warmcal tokens=12 label=reg");
    CHECK(reg != NULL);
    a.messageType = NVTX_MESSAGE_TYPE_REGISTERED;
    a.message.registered = reg;
    nvtxRangeId_t id = nvtxRangeStartEx(&a);
    check_phase("reg", 12, 1);
    nvtxRangeEnd(id);

    nvtxStringHandle_t wreg = nvtxDomainRegisterStringW(NULL, L"warmcal tokens=13 label=wreg");
    a.message.registered = wreg;
    CHECK(nvtxRangePushEx(&a) == 0);
    check_phase("wreg", 13, 1);
    CHECK(nvtxRangePop() == 0);
    CHECK(stub_begins() == 4 && stub_ends() == 4);

    /* a registered string that is not ours, and a malformed one (warned at use) */
    a.message.registered = nvtxDomainRegisterStringA(NULL, "layer 3");
    CHECK(nvtxRangePushEx(&a) == 0);
    CHECK(nvtxRangePop() == 0);
    a.message.registered = nvtxDomainRegisterStringA(NULL, "warmcal tokens=1 batch=-1");
    CHECK(stub_warnings(WARMCAL__WARN_MSG_BATCH) == 0);
    CHECK(nvtxRangePushEx(&a) == 0);
    CHECK(stub_warnings(WARMCAL__WARN_MSG_BATCH) == 1);
    CHECK(nvtxRangePop() == 0);
    CHECK(stub_begins() == 4);
}

static void odd_event_attributes_are_ignored_without_harm(void)
{
    stub_reset(1);
    CHECK(nvtxRangePushEx(NULL) == 0);
    nvtxEventAttributes_t a = ascii_attr("warmcal tokens=1");
    a.size = 8; /* too small to hold a message */
    CHECK(nvtxRangePushEx(&a) == 1);
    a = ascii_attr("warmcal tokens=1");
    a.version = 0;
    CHECK(nvtxRangePushEx(&a) == 2);
    a = ascii_attr("warmcal tokens=1");
    a.messageType = 0; /* NVTX_MESSAGE_UNKNOWN */
    CHECK(nvtxRangePushEx(&a) == 3);
    a.messageType = 77;
    CHECK(nvtxRangePushEx(&a) == 4);
    a = ascii_attr(NULL);
    CHECK(nvtxRangePushEx(&a) == 5);
    a.messageType = NVTX_MESSAGE_TYPE_UNICODE;
    CHECK(nvtxRangePushEx(&a) == 6);
    a.messageType = NVTX_MESSAGE_TYPE_REGISTERED;
    CHECK(nvtxRangePushEx(&a) == 7);
    CHECK(nvtxRangeStartEx(NULL) != 0);
    for (int i = 7; i >= 0; i--)
        CHECK(nvtxRangePop() == i);
    CHECK(stub_begins() == 0 && stub_all_warnings() == 0);
}

static void wide_messages_are_read_as_utf8(void)
{
    stub_reset(1);
    CHECK(nvtxRangePushW(L"warmcal tokens=20 batch=3 label=g\u00e9n\u00e9ration") == 0);
    check_phase("g\xC3\xA9n\xC3\xA9ration", 20, 3);
    CHECK(nvtxRangePop() == 0);
    nvtxRangeId_t id = nvtxRangeStartW(L"warmcal tokens=21 label=\U0001F680");
    check_phase("\xF0\x9F\x9A\x80", 21, 1);
    nvtxRangeEnd(id);
    /* a code point that is no Unicode scalar value: the label is refused */
    wchar_t bad[] = L"warmcal tokens=22 label=ab";
    bad[wcslen(bad) - 1] = (wchar_t)0xD800;
    CHECK(nvtxRangePushW(bad) == 0);
    CHECK(stub_warnings(WARMCAL__WARN_MSG_LABEL) == 1);
    CHECK(nvtxRangePop() == 0);
    /* longer than any phase message: refused, never cut into a valid one */
    wchar_t longer[700];
    wcscpy(longer, L"warmcal tokens=23");
    for (size_t i = wcslen(longer); i < 690; i++)
        longer[i] = L' ';
    wcscpy(longer + 690, L"seq=1");
    CHECK(nvtxRangePushW(longer) == 0);
    CHECK(stub_warnings(WARMCAL__WARN_MSG_KEY) == 1);
    CHECK(nvtxRangePop() == 0);
    CHECK(nvtxRangePushW(L"not ours") == 0);
    CHECK(nvtxRangePushW(NULL) == 1);
    CHECK(nvtxRangePop() == 1 && nvtxRangePop() == 0);
    CHECK(stub_begins() == 2 && stub_ends() == 2);
}

static void each_domain_keeps_its_own_levels(void)
{
    stub_reset(1);
    nvtxDomainHandle_t d = nvtxDomainCreateA("com.example.server");
    nvtxDomainHandle_t e = nvtxDomainCreateA("com.example.other");
    CHECK(d != NULL && e != NULL && d != e);
    CHECK(nvtxDomainCreateA("com.example.server") == d);
    CHECK(nvtxDomainCreateW(L"com.example.server") == d);
    nvtxEventAttributes_t a = ascii_attr("warmcal tokens=256 label=dom");
    CHECK(nvtxRangePushA("global 0") == 0);
    CHECK(nvtxDomainRangePushEx(d, &a) == 0);
    check_phase("dom", 256, 1);
    CHECK(nvtxRangePushA("global 1") == 1);
    a = ascii_attr("other domain");
    CHECK(nvtxDomainRangePushEx(e, &a) == 0);
    CHECK(nvtxDomainRangePushEx(d, &a) == 1);
    /* pops in other domains at the phase's level do not close it */
    CHECK(nvtxDomainRangePop(e) == 0);
    CHECK(nvtxRangePop() == 1);
    CHECK(nvtxRangePop() == 0);
    CHECK(stub_ends() == 0);
    CHECK(nvtxDomainRangePop(d) == 1);
    CHECK(stub_ends() == 0);
    CHECK(nvtxDomainRangePop(d) == 0);
    CHECK(stub_ends() == 1);
    /* start/end in a domain */
    a = ascii_attr("warmcal tokens=257");
    nvtxRangeId_t id = nvtxDomainRangeStartEx(d, &a);
    CHECK(stub_begins() == 2);
    nvtxDomainRangeEnd(e, id + 1000);
    CHECK(stub_ends() == 1);
    nvtxDomainRangeEnd(d, id);
    CHECK(stub_ends() == 2);
    /* the global domain by handle */
    a = ascii_attr("warmcal tokens=258");
    CHECK(nvtxDomainRangePushEx(NULL, &a) == 0);
    CHECK(nvtxRangePop() == 0);
    CHECK(stub_ends() == 3);
}

/* Threads: a push opens the phase on one thread; another thread's ranges do
 * not close it, and its own phase push is nested. */
static pthread_barrier_t step;

static void *phase_thread(void *arg)
{
    (void)arg;
    CHECK(nvtxRangePushA("warmcal tokens=512 label=thread") == 0);
    pthread_barrier_wait(&step); /* 1: phase open */
    pthread_barrier_wait(&step); /* 2: the other thread is done */
    CHECK(nvtxRangePop() == 0);
    return NULL;
}

static void pushes_are_per_thread(void)
{
    stub_reset(1);
    pthread_barrier_init(&step, NULL, 2);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, phase_thread, NULL) == 0);
    pthread_barrier_wait(&step);
    CHECK(stub_begins() == 1);
    CHECK(nvtxRangePushA("main's own range") == 0);
    CHECK(nvtxRangePop() == 0);
    CHECK(nvtxRangePushA("warmcal tokens=1024") == 0);
    CHECK(stub_warnings(WARMCAL__WARN_NESTED) == 1);
    CHECK(nvtxRangePop() == 0);
    CHECK(stub_ends() == 0);
    pthread_barrier_wait(&step);
    pthread_join(t, NULL);
    pthread_barrier_destroy(&step);
    CHECK(stub_begins() == 1 && stub_ends() == 1);
    check_phase("thread", 512, 1);
}

/* Many threads push phases and plain ranges at once: every push returns its
 * thread's level, every phase opened is closed, and every phase push either
 * opened a phase or was reported as nested. */
#define STRESS_THREADS 4
#define STRESS_ROUNDS 4000

static void *stress_thread(void *arg)
{
    long failures = 0;
    (void)arg;
    for (int i = 0; i < STRESS_ROUNDS; i++) {
        failures += nvtxRangePushA("step") != 0;
        failures += nvtxRangePushA("warmcal tokens=7 batch=1") != 1;
        failures += nvtxRangePushA("kernel") != 2;
        failures += nvtxRangePop() != 2;
        failures += nvtxRangePop() != 1;
        nvtxRangeId_t id = nvtxRangeStartA("warmcal tokens=9");
        nvtxRangeEnd(id);
        failures += nvtxRangePop() != 0;
    }
    return (void *)failures;
}

static void concurrent_ranges_keep_levels_and_balance_phases(void)
{
    stub_reset(1);
    pthread_t t[STRESS_THREADS];
    for (int i = 0; i < STRESS_THREADS; i++)
        CHECK(pthread_create(&t[i], NULL, stress_thread, NULL) == 0);
    for (int i = 0; i < STRESS_THREADS; i++) {
        void *failures;
        pthread_join(t[i], &failures);
        CHECK(failures == NULL);
    }
    CHECK(stub_begins() >= 1);
    CHECK(stub_begins() == stub_ends());
    CHECK(!stub_phase_open());
    CHECK(stub_refused() == 0);
    CHECK_EQ_U64(stub_begins() + stub_warnings(WARMCAL__WARN_NESTED),
                 2 * STRESS_THREADS * STRESS_ROUNDS);
}

static void an_inactive_profiler_opens_no_phase_and_warns_nothing(void)
{
    stub_reset(0);
    CHECK(nvtxRangePushA("warmcal tokens=2") == 0);
    CHECK(nvtxRangePushA("warmcal tokens=3") == 1);
    CHECK(nvtxRangePop() == 1 && nvtxRangePop() == 0);
    CHECK(stub_begins() == 0 && stub_all_warnings() == 0);
    CHECK(warmcal_phase_begin("context", 1, 1) == WARMCAL_E_STATE);
    CHECK(warmcal_phase_end() == WARMCAL_E_STATE);
    /* refused before the core's phase edge (no lock taken): the two NVTX
     * pushes and the C API's begin; the end has nothing to report */
    CHECK(stub_refused() == 0);
    CHECK(stub_inactive() == 3);
}

static void the_c_api_opens_and_closes_its_own_phase(void)
{
    stub_reset(1);
    CHECK(warmcal_phase_begin("prefill", 2048, 4) == 0);
    check_phase("prefill", 2048, 4);
    CHECK(warmcal_phase_begin("prefill", 2048, 4) == WARMCAL_E_STATE);
    CHECK(nvtxRangePushA("warmcal tokens=9") == 0); /* nested: ignored */
    CHECK(stub_warnings(WARMCAL__WARN_NESTED) == 1);
    CHECK_STR_CONTAINS(stub_last_warning(), "opened by warmcal_phase_begin at tokens=2048 batch=4 label=prefill");
    CHECK(nvtxRangePop() == 0);
    CHECK(stub_ends() == 0);
    CHECK(warmcal_phase_end() == 0);
    CHECK(stub_ends() == 1);
    CHECK(warmcal_phase_end() == WARMCAL_E_STATE);
    CHECK(warmcal_phase_begin(NULL, 1, 1) == 0);
    check_phase("context", 1, 1);
    CHECK(warmcal_phase_end() == 0);
    /* a phase an NVTX range opened is closed by that range only */
    CHECK(nvtxRangePushA("warmcal tokens=77") == 0);
    CHECK(warmcal_phase_end() == WARMCAL_E_STATE);
    CHECK(stub_ends() == 2);
    CHECK(nvtxRangePop() == 0);
    CHECK(stub_ends() == 3);
}

static void the_c_api_refuses_what_a_message_could_not_say(void)
{
    stub_reset(1);
    CHECK(warmcal_phase_begin("two words", 1, 1) == WARMCAL_E_INVAL);
    CHECK(warmcal_phase_begin("", 1, 1) == WARMCAL_E_INVAL);
    CHECK(warmcal_phase_begin("abcdefghijklmnopqrstuvwxyz012345", 1, 1) == WARMCAL_E_INVAL);
    CHECK(warmcal_phase_begin("x", 0, 1) == WARMCAL_E_INVAL);
    CHECK(warmcal_phase_begin("x", (1ull << 40) + 1, 1) == WARMCAL_E_INVAL);
    CHECK(warmcal_phase_begin("x", 1, 0) == WARMCAL_E_INVAL);
    CHECK(stub_begins() == 0);
    /* checked before whether the profiler is active */
    stub_reset(0);
    CHECK(warmcal_phase_begin("x", 0, 1) == WARMCAL_E_INVAL);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s PATH-OF-THE-TEST-INJECTION-LIBRARY\n", argv[0]);
        return 2;
    }
    /* read by NVTX at this program's first NVTX call */
    setenv("NVTX_INJECTION64_PATH", argv[1], 1);
    RUN(a_phase_push_opens_a_phase_and_its_pop_closes_it);
    RUN(a_phase_push_inside_other_ranges_closes_at_its_own_level);
    RUN(ranges_outside_the_convention_are_ignored);
    RUN(a_pop_without_push_returns_an_error_and_changes_nothing);
    RUN(malformed_messages_warn_by_kind_and_open_nothing);
    RUN(a_phase_inside_an_open_phase_is_ignored_with_a_warning);
    RUN(a_start_end_phase_closes_on_its_own_id_only);
    RUN(a_start_end_phase_may_end_on_another_thread);
    RUN(event_attributes_carry_ascii_wide_and_registered_messages);
    RUN(odd_event_attributes_are_ignored_without_harm);
    RUN(wide_messages_are_read_as_utf8);
    RUN(each_domain_keeps_its_own_levels);
    RUN(pushes_are_per_thread);
    RUN(concurrent_ranges_keep_levels_and_balance_phases);
    RUN(an_inactive_profiler_opens_no_phase_and_warns_nothing);
    RUN(the_c_api_opens_and_closes_its_own_phase);
    RUN(the_c_api_refuses_what_a_message_could_not_say);
    CHECK_DONE();
}
