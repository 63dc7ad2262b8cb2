/* The profiler's set of live cuMemCreate handles (profiler/src/inject/
 * handle_set.c): its memory follows the number of live handles however many
 * are created and released, and it always agrees with a plain list. */
#include "../check.h"
#include "handle_set.h"

/* A server with expandable segments creates and releases physical chunks
 * all day with a few alive at once: the table must not grow with the
 * number of operations (tombstones once made it double every ~64 pairs). */
static void memory_stays_bounded_over_millions_of_create_release_pairs(void)
{
    warmcal__handle_set s = {0};
    const uint64_t live = 4, pairs = 3000000;
    size_t max_cap = 0;
    uint64_t next = 0x5500000000ull;
    for (uint64_t i = 0; i < live; i++)
        CHECK(warmcal__handle_set_add(&s, next + i) == 0);
    for (uint64_t i = 0; i < pairs; i++) {
        /* a new handle value each time, as the driver gives */
        CHECK(warmcal__handle_set_remove(&s, next + i) == 1);
        if (warmcal__handle_set_add(&s, next + i + live) != 0) {
            CHECK(!"add failed");
            break;
        }
        if (s.cap > max_cap)
            max_cap = s.cap;
    }
    CHECK_EQ_U64(warmcal__handle_set_size(&s), live);
    CHECK_EQ_U64(max_cap, WARMCAL__HANDLE_SET_MIN);
    warmcal__handle_set_clear(&s);
}

/* A burst of many live handles grows the table; once they are released it
 * shrinks back to the minimum. */
static void the_table_shrinks_back_after_a_burst(void)
{
    warmcal__handle_set s = {0};
    const uint64_t n = 100000;
    for (uint64_t i = 1; i <= n; i++)
        CHECK(warmcal__handle_set_add(&s, i * 0x200000ull) == 0);
    CHECK_EQ_U64(warmcal__handle_set_size(&s), n);
    CHECK(s.cap >= 2 * n && s.cap <= 4 * n);
    for (uint64_t i = 1; i <= n - 3; i++)
        CHECK(warmcal__handle_set_remove(&s, i * 0x200000ull) == 1);
    CHECK_EQ_U64(warmcal__handle_set_size(&s), 3);
    CHECK_EQ_U64(s.cap, WARMCAL__HANDLE_SET_MIN);
    for (uint64_t i = n - 2; i <= n; i++)
        CHECK(warmcal__handle_set_contains(&s, i * 0x200000ull));
    warmcal__handle_set_clear(&s);
}

/* Random adds and removes over a small universe (0 and the largest value
 * included, many in the same probe runs) against a plain array. */
static void the_set_agrees_with_a_plain_list(void)
{
    enum { UNIVERSE = 3000 };
    static unsigned char in[UNIVERSE];
    uint64_t values[UNIVERSE];
    for (size_t i = 0; i < UNIVERSE; i++)
        values[i] = i * 64; /* multiples of the table size: clustered homes are likely */
    values[1] = UINT64_MAX;
    values[2] = UINT64_MAX - 1;
    warmcal__handle_set s = {0};
    uint64_t x = 88172645463325252ull; /* xorshift: the same sequence every run */
    size_t expected = 0;
    for (int step = 0; step < 2000000; step++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        size_t i = (size_t)(x % UNIVERSE);
        /* more removes than adds in the second half: the table shrinks too */
        int add = step < 1000000 ? (x >> 32) % 3 != 0 : (x >> 32) % 3 == 0;
        if (add) {
            CHECK(warmcal__handle_set_add(&s, values[i]) == 0);
            expected += !in[i];
            in[i] = 1;
        } else {
            CHECK(warmcal__handle_set_remove(&s, values[i]) == in[i]);
            expected -= in[i];
            in[i] = 0;
        }
        if (step % 100000 == 0) {
            for (size_t k = 0; k < UNIVERSE; k++)
                if (warmcal__handle_set_contains(&s, values[k]) != in[k]) {
                    CHECK(!"the set and the list disagree");
                    step = 2000000;
                    break;
                }
            CHECK_EQ_U64(warmcal__handle_set_size(&s), expected);
        }
    }
    for (size_t k = 0; k < UNIVERSE; k++)
        CHECK(warmcal__handle_set_contains(&s, values[k]) == in[k]);
    warmcal__handle_set_clear(&s);
    CHECK(!warmcal__handle_set_contains(&s, values[5]));
    CHECK(warmcal__handle_set_remove(&s, values[5]) == 0);
}

int main(void)
{
    RUN(memory_stays_bounded_over_millions_of_create_release_pairs);
    RUN(the_table_shrinks_back_after_a_burst);
    RUN(the_set_agrees_with_a_plain_list);
    CHECK_DONE();
}
