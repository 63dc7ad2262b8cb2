/* handle_set.c — the set of recorded cuMemCreate handles (handle_set.h).
 * A release does not say its device; this set tells our handles from the
 * other devices'. A server may create and release handles millions of times
 * with a few live at once, so deletion leaves no tombstone behind: the
 * entries after the hole are shifted back (Knuth's algorithm R), and the
 * table shrinks again once the live count falls. */
#include "handle_set.h"

#include <stdlib.h>

static size_t slot_of(uint64_t v, size_t cap)
{
    v ^= v >> 33;
    v *= UINT64_C(0xff51afd7ed558ccd);
    v ^= v >> 33;
    return (size_t)v & (cap - 1);
}

/* Move every value into a fresh table of cap slots; -1 without memory. */
static int rehash(warmcal__handle_set *s, size_t cap)
{
    uint64_t *t = calloc(cap, sizeof *t);
    if (!t)
        return -1;
    for (size_t i = 0; i < s->cap; i++) {
        uint64_t v = s->slots[i];
        if (!v)
            continue;
        size_t j = slot_of(v, cap);
        while (t[j])
            j = (j + 1) & (cap - 1);
        t[j] = v;
    }
    free(s->slots);
    s->slots = t;
    s->cap = cap;
    return 0;
}

/* The slot holding v, or the empty slot that ends its probe run. */
static size_t find(const warmcal__handle_set *s, uint64_t v)
{
    size_t j = slot_of(v, s->cap);
    while (s->slots[j] && s->slots[j] != v)
        j = (j + 1) & (s->cap - 1);
    return j;
}

int warmcal__handle_set_add(warmcal__handle_set *s, uint64_t v)
{
    if (v == 0) {
        s->has_zero = 1;
        return 0;
    }
    if (s->cap && s->slots[find(s, v)] == v)
        return 0;
    /* at most half full: probe runs stay short */
    if ((s->count + 1) * 2 > s->cap &&
        rehash(s, s->cap ? s->cap * 2 : WARMCAL__HANDLE_SET_MIN) != 0)
        return -1;
    s->slots[find(s, v)] = v;
    s->count++;
    return 0;
}

int warmcal__handle_set_remove(warmcal__handle_set *s, uint64_t v)
{
    if (v == 0) {
        int had = s->has_zero;
        s->has_zero = 0;
        return had;
    }
    if (!s->cap)
        return 0;
    size_t mask = s->cap - 1, hole = find(s, v);
    if (s->slots[hole] != v)
        return 0;
    /* Backward shift: a later entry of the run moves into the hole unless
     * its home slot lies cyclically in (hole, j], where it already sits on
     * its own probe path. */
    for (size_t j = (hole + 1) & mask; s->slots[j]; j = (j + 1) & mask) {
        size_t home = slot_of(s->slots[j], s->cap);
        int stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
        if (!stays) {
            s->slots[hole] = s->slots[j];
            hole = j;
        }
    }
    s->slots[hole] = 0;
    s->count--;
    if (s->cap > WARMCAL__HANDLE_SET_MIN && s->count * 8 < s->cap)
        (void)rehash(s, s->cap / 2); /* no memory: the larger table still works */
    return 1;
}

int warmcal__handle_set_contains(const warmcal__handle_set *s, uint64_t v)
{
    if (v == 0)
        return s->has_zero;
    return s->cap && s->slots[find(s, v)] == v;
}

size_t warmcal__handle_set_size(const warmcal__handle_set *s)
{
    return s->count + (s->has_zero ? 1u : 0u);
}

void warmcal__handle_set_clear(warmcal__handle_set *s)
{
    free(s->slots);
    s->slots = NULL;
    s->cap = s->count = 0;
    s->has_zero = 0;
}
