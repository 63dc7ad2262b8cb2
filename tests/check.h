/* tests/check.h — the minimal assertion kit every C test here uses: a failed
 * check prints file:line and the expression, and the test exits 1 at the end. */
#ifndef WARMCAL_TEST_CHECK_H
#define WARMCAL_TEST_CHECK_H

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int check_failures;

#define CHECK(cond)                                                                 \
    do {                                                                            \
        if (!(cond)) {                                                              \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
            check_failures++;                                                       \
        }                                                                           \
    } while (0)

#define CHECK_EQ_U64(a, b)                                                            \
    do {                                                                              \
        uint64_t check_a_ = (uint64_t)(a), check_b_ = (uint64_t)(b);                  \
        if (check_a_ != check_b_) {                                                   \
            fprintf(stderr, "%s:%d: CHECK failed: %s == %s (%" PRIu64 " != %" PRIu64 ")\n", \
                    __FILE__, __LINE__, #a, #b, check_a_, check_b_);                  \
            check_failures++;                                                         \
        }                                                                             \
    } while (0)

#define CHECK_STR_CONTAINS(hay, needle)                                                \
    do {                                                                               \
        const char *check_h_ = (hay), *check_n_ = (needle);                            \
        if (!check_h_ || !strstr(check_h_, check_n_)) {                                \
            fprintf(stderr, "%s:%d: CHECK failed: \"%s\" does not contain \"%s\"\n",   \
                    __FILE__, __LINE__, check_h_ ? check_h_ : "(null)", check_n_);     \
            check_failures++;                                                          \
        }                                                                              \
    } while (0)

/* Run a named test case: prints its name so a failure is easy to place. */
#define RUN(test)                            \
    do {                                     \
        fprintf(stderr, "-- %s\n", #test);   \
        test();                              \
    } while (0)

#define CHECK_DONE()                                                        \
    do {                                                                    \
        if (check_failures)                                                 \
            fprintf(stderr, "%d check(s) failed\n", check_failures);        \
        return check_failures ? 1 : 0;                                      \
    } while (0)

#endif
