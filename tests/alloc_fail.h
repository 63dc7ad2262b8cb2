/* alloc_fail.h — the failing allocator of the allocation-failure tests
 * (SQLite-style: every allocation made to fail in turn). A test binary
 * compiles alloc_fail.c in and links with
 * -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc, which reaches the static
 * libraries too; jansson gets it through json_set_alloc_funcs(__wrap_malloc,
 * free). */
#ifndef WARMCAL_TEST_ALLOC_FAIL_H
#define WARMCAL_TEST_ALLOC_FAIL_H

#include <stddef.h>

/* Allocations left before one fails; -1 (the start): none ever fails. */
extern long alloc_fail_countdown;
/* How many allocations were made to fail so far. */
extern long alloc_fail_count;

void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t m);
void *__wrap_realloc(void *p, size_t n);

#endif
