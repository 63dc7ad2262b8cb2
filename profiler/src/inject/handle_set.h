/* handle_set.h — a set of 64-bit values (the cuMemCreate handles the
 * profiler recorded and that are not yet released), kept by inject.c under
 * its state lock. Internal to libwarmcal-inject.so; its own file so that a
 * unit test can drive it through millions of operations. */
#ifndef WARMCAL_HANDLE_SET_H
#define WARMCAL_HANDLE_SET_H

#include <stddef.h>
#include <stdint.h>

/* Open addressing with linear probing and backward-shift deletion: no
 * tombstones, so the table's size follows the number of live values (it
 * grows past half full and shrinks below an eighth, never under
 * WARMCAL__HANDLE_SET_MIN slots). Zero-initialised is an empty set. Not
 * thread-safe: the caller serialises. */
#define WARMCAL__HANDLE_SET_MIN 64u
typedef struct {
    uint64_t *slots; /* 0 marks an empty slot; the value 0 lives in has_zero */
    size_t cap;      /* a power of two, or 0 before the first add */
    size_t count;    /* values in slots (the value 0 not included) */
    int has_zero;
} warmcal__handle_set;

/* Add v (already there: nothing changes). 0, or -1 when memory runs out
 * (the set is unchanged). */
int warmcal__handle_set_add(warmcal__handle_set *s, uint64_t v);

/* Remove v; whether it was there. Never fails (a shrink that finds no
 * memory keeps the larger table). */
int warmcal__handle_set_remove(warmcal__handle_set *s, uint64_t v);

/* Whether v is in the set. */
int warmcal__handle_set_contains(const warmcal__handle_set *s, uint64_t v);

/* Values in the set. */
size_t warmcal__handle_set_size(const warmcal__handle_set *s);

/* Free the table; the set is empty again. */
void warmcal__handle_set_clear(warmcal__handle_set *s);

#endif
