/* The simulated device (see warmcal/simdev.h). Addresses come from a bump
 * pointer and are never reused, so the recorder's anomaly counters stay at
 * zero unless a test provokes them on purpose. */
#include "warmcal/simdev.h"
#include "warmcal/units.h"

#include <stdlib.h>

#define HASH_NONFATAL_OOM 1
#define uthash_nonfatal_oom(elt) ((elt)->hash_oom = 1)
#include <uthash.h>

typedef struct {
    uint64_t address;
    uint64_t bytes; /* after rounding; what the device lost */
    uint8_t kind;
    uint8_t hash_oom;
    UT_hash_handle hh;
} sim_block;

struct warmcal_simdev {
    uint64_t total, granularity, used;
    uint64_t next_address;
    warmcal_recorder *rec;
    sim_block *blocks;
};

int warmcal_simdev_open(warmcal_simdev **out, const warmcal_simdev_options *opts,
                        warmcal_recorder *rec, warmcal_error *err)
{
    if (!out || !opts || opts->total_bytes == 0)
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, "total_bytes",
                                 "simulated device needs a total memory > 0");
    *out = NULL;
    warmcal_simdev *d = calloc(1, sizeof *d);
    if (!d)
        return warmcal_error_set(err, WARMCAL_E_NOMEM, NULL, NULL, "simdev: out of memory");
    d->total = opts->total_bytes;
    d->granularity = opts->granularity ? opts->granularity : WARMCAL_SIMDEV_DEFAULT_GRANULARITY;
    d->next_address = 0x7f0000000000ull;
    d->rec = rec;
    *out = d;
    return WARMCAL_OK;
}

static uint64_t round_up(uint64_t v, uint64_t g)
{
    uint64_t r = v % g;
    return r ? v + (g - r) : v;
}

int warmcal_simdev_alloc(warmcal_simdev *d, uint64_t bytes, warmcal_mem_kind kind, uint64_t *address,
                         warmcal_error *err)
{
    if (!d || !address || (unsigned)kind > WARMCAL_MEM_PINNED_HOST)
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, NULL, "simdev_alloc: bad argument");
    int device = kind != WARMCAL_MEM_PINNED_HOST;
    uint64_t size = bytes ? bytes : 1;
    if (device) {
        if (size > UINT64_MAX - d->granularity)
            size = UINT64_MAX - d->granularity; /* cannot fit anyway */
        size = round_up(size, d->granularity);
        if (size > d->total - d->used) {
            int rc = d->rec ? warmcal_recorder_alloc_failed(d->rec, warmcal_now_ns(), bytes, kind, err)
                            : WARMCAL_OK;
            if (rc != WARMCAL_OK)
                return rc;
            char need[32], avail[32];
            return warmcal_error_set(err, WARMCAL_E_OOM, NULL, NULL,
                                     "out of device memory: asked for %s, %s free",
                                     warmcal_format_bytes(size, need, sizeof need),
                                     warmcal_format_bytes(d->total - d->used, avail, sizeof avail));
        }
    }
    uint64_t span = round_up(size, 4096);
    if (span < size || span > UINT64_MAX - d->next_address)
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, NULL,
                                 "simdev_alloc: %llu bytes exceed the address space",
                                 (unsigned long long)bytes);
    sim_block *b = calloc(1, sizeof *b);
    if (!b)
        return warmcal_error_set(err, WARMCAL_E_NOMEM, NULL, NULL, "simdev: out of memory");
    b->address = d->next_address;
    b->bytes = size;
    b->kind = (uint8_t)kind;
    HASH_ADD(hh, d->blocks, address, sizeof b->address, b);
    if (b->hash_oom) {
        free(b);
        return warmcal_error_set(err, WARMCAL_E_NOMEM, NULL, NULL, "simdev: out of memory");
    }
    int rc = d->rec ? warmcal_recorder_alloc(d->rec, warmcal_now_ns(), b->address, size, kind, err)
                    : WARMCAL_OK;
    if (rc != WARMCAL_OK) { /* the recorder never saw it: neither did the device */
        HASH_DEL(d->blocks, b);
        free(b);
        return rc;
    }
    d->next_address += span;
    if (device)
        d->used += size;
    *address = b->address;
    return WARMCAL_OK;
}

int warmcal_simdev_free(warmcal_simdev *d, uint64_t address, warmcal_error *err)
{
    if (!d)
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, NULL, "simdev_free: no device");
    sim_block *b = NULL;
    HASH_FIND(hh, d->blocks, &address, sizeof address, b);
    if (!b)
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, NULL,
                                 "simdev_free: address 0x%llx was not allocated here",
                                 (unsigned long long)address);
    if (b->kind != WARMCAL_MEM_PINNED_HOST)
        d->used -= b->bytes;
    HASH_DEL(d->blocks, b);
    free(b);
    return d->rec ? warmcal_recorder_free(d->rec, warmcal_now_ns(), address, err) : WARMCAL_OK;
}

int warmcal_simdev_reserve_hidden(warmcal_simdev *d, uint64_t bytes, warmcal_error *err)
{
    if (!d)
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, NULL, "simdev: no device");
    if (bytes > d->total - d->used)
        return warmcal_error_set(err, WARMCAL_E_OOM, NULL, NULL,
                                 "out of device memory: %llu hidden bytes do not fit",
                                 (unsigned long long)bytes);
    d->used += bytes;
    return WARMCAL_OK;
}

uint64_t warmcal_simdev_free_bytes(const warmcal_simdev *d)
{
    return d ? d->total - d->used : 0;
}

uint64_t warmcal_simdev_total_bytes(const warmcal_simdev *d)
{
    return d ? d->total : 0;
}

int warmcal_simdev_sample(warmcal_simdev *d, warmcal_error *err)
{
    if (!d)
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, NULL, "simdev: no device");
    return d->rec ? warmcal_recorder_device_free(d->rec, warmcal_now_ns(), d->total - d->used, err)
                  : WARMCAL_OK;
}

void warmcal_simdev_close(warmcal_simdev *d)
{
    if (!d)
        return;
    sim_block *b, *tmp;
    HASH_ITER(hh, d->blocks, b, tmp)
    {
        HASH_DEL(d->blocks, b);
        free(b);
    }
    free(d);
}
