/* The spool writer (warmcal/spool.h): appends records to a memory buffer and
 * writes it with write(2). It runs inside the injected library, so it uses
 * libc and warmcal-common only: no stdio streams, no locks (callers
 * serialise), no signal handlers, nothing global. */
#define _POSIX_C_SOURCE 200809L
#include "warmcal/spool.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


struct warmcal_spool_writer {
    int fd;
    char *path;
    unsigned char *buf;
    size_t len, cap;
    int failed; /* a write failed: the file is no longer a faithful record */
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
            w->failed = 1;
            return warmcal_error_set(err, WARMCAL_E_IO, w->path, NULL, "cannot write the spool: %s",
                                     strerror(e));
        }
        if (k == 0) {
            w->failed = 1;
            return warmcal_error_set(err, WARMCAL_E_IO, w->path, NULL,
                                     "cannot write the spool: no progress");
        }
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

int warmcal_spool_flush(warmcal_spool_writer *w, warmcal_error *err)
{
    if (!w)
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, NULL, "spool flush: no writer");
    if (w->failed)
        return warmcal_error_set(err, WARMCAL_E_IO, w->path, NULL,
                                 "an earlier write to the spool failed");
    if (w->len == 0)
        return 0;
    int rc = write_all(w, w->buf, w->len, err);
    /* Whatever happened, the buffer is spent: after a failed write the
     * writer refuses everything, so keeping it would only hold memory. */
    w->len = 0;
    return rc;
}

/* Reserve room for one record of `size` bytes (a multiple of 8) and return
 * it zeroed, with its header filled; NULL with err set on failure. */
static unsigned char *append(warmcal_spool_writer *w, uint16_t type, size_t size, warmcal_error *err)
{
    if (!w) {
        warmcal_error_set(err, WARMCAL_E_INVAL, NULL, NULL, "spool write: no writer");
        return NULL;
    }
    if (w->failed) {
        warmcal_error_set(err, WARMCAL_E_IO, w->path, NULL, "an earlier write to the spool failed");
        return NULL;
    }
    if (w->len + size > w->cap) {
        size_t cap = w->cap ? w->cap : 4096;
        while (cap < w->len + size)
            cap *= 2;
        unsigned char *b = realloc(w->buf, cap);
        if (!b) {
            warmcal_error_set(err, WARMCAL_E_NOMEM, w->path, NULL,
                              "cannot grow the spool buffer to %zu bytes", cap);
            return NULL;
        }
        w->buf = b;
        w->cap = cap;
    }
    unsigned char *rec = w->buf + w->len;
    memset(rec, 0, size);
    warmcal_spool_rec_header h = {.type = type, .reserved = 0, .size = (uint32_t)size};
    memcpy(rec, &h, sizeof h);
    w->len += size;
    return rec;
}

/* After a record is complete: write the buffer out once it is large, so a
 * server that allocates millions of times inside one phase costs bounded memory. */
static int maybe_flush(warmcal_spool_writer *w, warmcal_error *err)
{
    return w->len >= WARMCAL_SPOOL_FLUSH_AT ? warmcal_spool_flush(w, err) : 0;
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
    int rc = w->failed ? warmcal_error_set(err, WARMCAL_E_IO, w->path, NULL,
                                           "an earlier write to the spool failed")
                       : warmcal_spool_flush(w, err);
    if (close(w->fd) != 0 && rc == 0 && errno != EINTR) {
        int e = errno;
        rc = warmcal_error_set(err, WARMCAL_E_IO, w->path, NULL, "cannot close the spool: %s",
                               strerror(e));
    }
    free(w->buf);
    free(w->path);
    free(w);
    return rc;
}
