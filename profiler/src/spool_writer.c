/* The spool writer (warmcal/spool.h): appends records to a memory buffer and
 * writes it with write(2). It runs inside the injected library, so it uses
 * libc and warmcal-common only: no stdio streams, no locks (callers
 * serialise appends, and writes apart: a lock-free hand-over joins the two),
 * no signal handlers, nothing global. */
#define _POSIX_C_SOURCE 200809L
#include "warmcal/spool.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* A buffer of whole records: the one being appended to, or one handed over
 * to the write side (warmcal_spool_take_pending). */
typedef struct spool_chunk {
    struct spool_chunk *next; /* in the hand-over stack: the one taken before */
    size_t len, cap;
    unsigned char data[];
} spool_chunk;

struct warmcal_spool_writer {
    int fd;
    char *path;
    int deferred; /* warmcal_spool_writer_defer_writes: appends never write */
    /* append side (the caller's append lock): the buffer being filled */
    spool_chunk *cur;
    /* Taken buffers waiting for warmcal_spool_write_pending, newest first.
     * One thread pushes at a time (append side), one takes them all at a
     * time (write side): a head swapped by one exchange, pushed with a
     * compare-and-swap that sees any concurrent take. */
    _Atomic(spool_chunk *) queued;
    /* a write failed: the file is no longer a faithful record (set on the
     * write side, read on the append side) */
    atomic_int failed;
};

static size_t pad8(size_t n)
{
    return (n + 7u) & ~(size_t)7u;
}

static int write_all(warmcal_spool_writer *w, const unsigned char *p, size_t n, warmcal_error *err)
{
    while (n > 0) {
        ssize_t k = write(w->fd, p, n);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            int e = errno;
            atomic_store(&w->failed, 1);
            return warmcal_error_set(err, WARMCAL_E_IO, w->path, NULL, "cannot write the spool: %s",
                                     strerror(e));
        }
        if (k == 0) {
            atomic_store(&w->failed, 1);
            return warmcal_error_set(err, WARMCAL_E_IO, w->path, NULL,
                                     "cannot write the spool: no progress");
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

void warmcal_spool_writer_defer_writes(warmcal_spool_writer *w)
{
    if (w)
        w->deferred = 1;
}

void warmcal_spool_take_pending(warmcal_spool_writer *w)
{
    if (!w || !w->cur || w->cur->len == 0)
        return;
    spool_chunk *c = w->cur;
    w->cur = NULL;
    spool_chunk *head = atomic_load(&w->queued);
    do
        c->next = head;
    while (!atomic_compare_exchange_weak(&w->queued, &head, c));
}

int warmcal_spool_has_pending(warmcal_spool_writer *w)
{
    return w && atomic_load(&w->queued) != NULL;
}

int warmcal_spool_write_pending(warmcal_spool_writer *w, warmcal_error *err)
{
    if (!w)
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, NULL, "spool write: no writer");
    spool_chunk *stack = atomic_exchange(&w->queued, NULL), *fifo = NULL;
    while (stack) { /* newest first: reversed into the order they were taken */
        spool_chunk *next = stack->next;
        stack->next = fifo;
        fifo = stack;
        stack = next;
    }
    int rc = 0;
    if (atomic_load(&w->failed))
        rc = warmcal_error_set(err, WARMCAL_E_IO, w->path, NULL, "an earlier write to the spool failed");
    while (fifo) {
        spool_chunk *next = fifo->next;
        /* after a failure the rest is dropped: the writer refuses
         * everything from then on, so keeping it would only hold memory */
        if (rc == 0)
            rc = write_all(w, fifo->data, fifo->len, err);
        free(fifo);
        fifo = next;
    }
    return rc;
}

int warmcal_spool_flush(warmcal_spool_writer *w, warmcal_error *err)
{
    if (!w)
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, NULL, "spool flush: no writer");
    warmcal_spool_take_pending(w);
    return warmcal_spool_write_pending(w, err);
}

/* Reserve room for one record of `size` bytes (a multiple of 8) and return
 * it zeroed, with its header filled; NULL with err set on failure. */
static unsigned char *append(warmcal_spool_writer *w, uint16_t type, size_t size, warmcal_error *err)
{
    if (!w) {
        warmcal_error_set(err, WARMCAL_E_INVAL, NULL, NULL, "spool write: no writer");
        return NULL;
    }
    if (atomic_load(&w->failed)) {
        warmcal_error_set(err, WARMCAL_E_IO, w->path, NULL, "an earlier write to the spool failed");
        return NULL;
    }
    size_t len = w->cur ? w->cur->len : 0, cap = w->cur ? w->cur->cap : 0;
    if (len + size > cap) {
        cap = cap ? cap : 4096;
        while (cap < len + size)
            cap *= 2;
        spool_chunk *c = realloc(w->cur, sizeof *c + cap);
        if (!c) {
            warmcal_error_set(err, WARMCAL_E_NOMEM, w->path, NULL,
                              "cannot grow the spool buffer to %zu bytes", cap);
            return NULL;
        }
        c->next = NULL;
        c->len = len;
        c->cap = cap;
        w->cur = c;
    }
    unsigned char *rec = w->cur->data + len;
    memset(rec, 0, size);
    warmcal_spool_rec_header h = {.type = type, .reserved = 0, .size = (uint32_t)size};
    memcpy(rec, &h, sizeof h);
    w->cur->len = len + size;
    return rec;
}

/* After a record is complete: once the buffer is large, write it out (or,
 * deferred, hand it to the write side), so that a server that allocates
 * millions of times inside one phase costs bounded memory. */
static int maybe_flush(warmcal_spool_writer *w, warmcal_error *err)
{
    if (!w->cur || w->cur->len < WARMCAL_SPOOL_FLUSH_AT)
        return 0;
    if (w->deferred) {
        warmcal_spool_take_pending(w);
        return 0;
    }
    return warmcal_spool_flush(w, err);
}

static int put_fixed(warmcal_spool_writer *w, uint16_t type, const void *body, size_t n,
                     warmcal_error *err)
{
    unsigned char *rec = append(w, type, pad8(sizeof(warmcal_spool_rec_header) + n), err);
    if (!rec)
        return err ? err->code : WARMCAL_E_IO;
    memcpy(rec + sizeof(warmcal_spool_rec_header), body, n);
    return maybe_flush(w, err);
}

int warmcal_spool_writer_open(warmcal_spool_writer **out, const char *path, warmcal_error *err)
{
    if (!out || !path)
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, NULL, "spool open: no path");
    *out = NULL;
    warmcal_spool_writer *w = calloc(1, sizeof *w);
    char *p = w ? strdup(path) : NULL;
    if (!w || !p) {
        free(w);
        return warmcal_error_set(err, WARMCAL_E_NOMEM, path, NULL, "cannot allocate a spool writer");
    }
    w->path = p;
    atomic_init(&w->queued, NULL);
    atomic_init(&w->failed, 0);
    do {
        w->fd = open(path, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC, 0644);
    } while (w->fd < 0 && errno == EINTR);
    if (w->fd < 0) {
        int e = errno;
        free(w->path);
        free(w);
        return warmcal_error_set(err, WARMCAL_E_IO, path, NULL, "cannot create the spool: %s",
                                 strerror(e));
    }
    warmcal_spool_file_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, WARMCAL_SPOOL_MAGIC, sizeof h.magic);
    h.version = WARMCAL_SPOOL_VERSION;
    h.byte_order = WARMCAL_SPOOL_BYTE_ORDER;
    /* The header goes out at once: a spool found on disk is recognisable
     * even when its process died before the first flush. */
    int rc = write_all(w, (const unsigned char *)&h, sizeof h, err);
    if (rc < 0) {
        close(w->fd);
        unlink(path); /* we created it a moment ago (O_EXCL) */
        free(w->path);
        free(w);
        return rc;
    }
    *out = w;
    return 0;
}

int warmcal_spool_writer_publish(warmcal_spool_writer *w, const char *path, warmcal_error *err)
{
    if (!w || !path)
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, NULL, "spool publish: no path");
    char *p = strdup(path);
    if (!p)
        return warmcal_error_set(err, WARMCAL_E_NOMEM, path, NULL, "out of memory");
    if (link(w->path, path) != 0) {
        int e = errno;
        free(p);
        return warmcal_error_set(err, WARMCAL_E_IO, path, NULL, "cannot give the spool %s this name: %s",
                                 w->path, strerror(e));
    }
    /* the spool now has both names; an old name left behind by a failed
     * unlink would only be a second name of the same file, never listed */
    unlink(w->path);
    free(w->path);
    w->path = p;
    return 0;
}

int warmcal_spool_write_info(warmcal_spool_writer *w, const char *key, const char *value,
                             warmcal_error *err)
{
    if (!key || !value || !key[0])
        return warmcal_error_set(err, WARMCAL_E_INVAL, w ? w->path : NULL, NULL,
                                 "spool info: empty key or no value");
    size_t kl = strlen(key), vl = strlen(value);
    if (kl + vl + 2 > WARMCAL_SPOOL_TEXT_MAX)
        return warmcal_error_set(err, WARMCAL_E_INVAL, w ? w->path : NULL, key,
                                 "spool info: key and value longer than %u bytes",
                                 (unsigned)WARMCAL_SPOOL_TEXT_MAX);
    unsigned char *rec =
        append(w, WARMCAL_SPOOL_INFO, pad8(sizeof(warmcal_spool_rec_header) + kl + vl + 2), err);
    if (!rec)
        return err ? err->code : WARMCAL_E_IO;
    unsigned char *p = rec + sizeof(warmcal_spool_rec_header);
    memcpy(p, key, kl + 1);
    memcpy(p + kl + 1, value, vl + 1);
    return maybe_flush(w, err);
}

int warmcal_spool_write_event(warmcal_spool_writer *w, const warmcal_spool_event *ev,
                              warmcal_error *err)
{
    if (!ev || ev->kind > WARMCAL_EV_DEVICE_FREE || ev->mem_kind > WARMCAL_MEM_PINNED_HOST)
        return warmcal_error_set(err, WARMCAL_E_INVAL, w ? w->path : NULL, NULL,
                                 "spool event: no event, or a kind out of range");
    warmcal_spool_event e = *ev;
    memset(e.pad, 0, sizeof e.pad);
    return put_fixed(w, WARMCAL_SPOOL_EVENT, &e, sizeof e, err);
}

int warmcal_spool_write_phase_begin(warmcal_spool_writer *w, uint64_t time_ns, const char *label,
                                    uint64_t tokens, uint32_t batch, warmcal_error *err)
{
    if (!label)
        return warmcal_error_set(err, WARMCAL_E_INVAL, w ? w->path : NULL, NULL,
                                 "spool phase begin: no label");
    warmcal_spool_phase_begin b;
    memset(&b, 0, sizeof b);
    b.time_ns = time_ns;
    b.tokens = tokens;
    b.batch = batch;
    size_t n = strlen(label);
    if (n > WARMCAL_LABEL_LEN - 1) {
        n = WARMCAL_LABEL_LEN - 1;
        /* cut at a character boundary: the trace holds UTF-8 */
        while (n > 0 && ((unsigned char)label[n] & 0xC0u) == 0x80u)
            n--;
    }
    memcpy(b.label, label, n);
    return put_fixed(w, WARMCAL_SPOOL_PHASE_BEGIN, &b, sizeof b, err);
}

int warmcal_spool_write_phase_end(warmcal_spool_writer *w, uint64_t time_ns, warmcal_error *err)
{
    warmcal_spool_time t = {.time_ns = time_ns};
    return put_fixed(w, WARMCAL_SPOOL_PHASE_END, &t, sizeof t, err);
}

int warmcal_spool_write_dropped(warmcal_spool_writer *w, const warmcal_spool_dropped *d,
                                warmcal_error *err)
{
    if (!d)
        return warmcal_error_set(err, WARMCAL_E_INVAL, w ? w->path : NULL, NULL,
                                 "spool dropped: no record");
    return put_fixed(w, WARMCAL_SPOOL_DROPPED, d, sizeof *d, err);
}

int warmcal_spool_write_note(warmcal_spool_writer *w, uint64_t time_ns, const char *text,
                             warmcal_error *err)
{
    if (!text)
        return warmcal_error_set(err, WARMCAL_E_INVAL, w ? w->path : NULL, NULL,
                                 "spool note: no text");
    size_t n = strlen(text);
    if (n > WARMCAL_SPOOL_TEXT_MAX - 1) {
        /* a note is for people: keep its start rather than lose it */
        n = WARMCAL_SPOOL_TEXT_MAX - 1;
        while (n > 0 && ((unsigned char)text[n] & 0xC0u) == 0x80u)
            n--;
    }
    size_t head = sizeof(warmcal_spool_rec_header) + sizeof(warmcal_spool_time);
    unsigned char *rec = append(w, WARMCAL_SPOOL_NOTE, pad8(head + n + 1), err);
    if (!rec)
        return err ? err->code : WARMCAL_E_IO;
    warmcal_spool_time t = {.time_ns = time_ns};
    memcpy(rec + sizeof(warmcal_spool_rec_header), &t, sizeof t);
    memcpy(rec + head, text, n); /* NUL and padding: append zeroed them */
    return maybe_flush(w, err);
}

int warmcal_spool_write_pool(warmcal_spool_writer *w, const warmcal_spool_pool *p,
                             warmcal_error *err)
{
    if (!p)
        return warmcal_error_set(err, WARMCAL_E_INVAL, w ? w->path : NULL, NULL,
                                 "spool pool: no record");
    return put_fixed(w, WARMCAL_SPOOL_POOL, p, sizeof *p, err);
}

int warmcal_spool_write_exit(warmcal_spool_writer *w, uint64_t time_ns, warmcal_error *err)
{
    warmcal_spool_time t = {.time_ns = time_ns};
    return put_fixed(w, WARMCAL_SPOOL_EXIT, &t, sizeof t, err);
}

int warmcal_spool_writer_close(warmcal_spool_writer *w, warmcal_error *err)
{
    if (!w)
        return 0;
    int rc = atomic_load(&w->failed) ? warmcal_error_set(err, WARMCAL_E_IO, w->path, NULL,
                                                         "an earlier write to the spool failed")
                                     : warmcal_spool_flush(w, err);
    if (close(w->fd) != 0 && rc == 0 && errno != EINTR) {
        int e = errno;
        rc = warmcal_error_set(err, WARMCAL_E_IO, w->path, NULL, "cannot close the spool: %s",
                               strerror(e));
    }
    spool_chunk *c = atomic_exchange(&w->queued, NULL);
    while (c) { /* left by a failed write */
        spool_chunk *next = c->next;
        free(c);
        c = next;
    }
    free(w->cur);
    free(w->path);
    free(w);
    return rc;
}
