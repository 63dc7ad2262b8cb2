/* The spool reader (warmcal/spool.h): checks every record of a spool written
 * by the injected library and holds it in memory for the converter. A record
 * cut short at the end is what a killed process leaves, and is tolerated;
 * anything wrong before the end is corruption, named by its byte offset. */
#define _POSIX_C_SOURCE 200809L
#include "warmcal/spool.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "warmcal/text.h"

#define HDR sizeof(warmcal_spool_rec_header)
#define WHERE_LEN 48

static size_t pad8(size_t n)
{
    return (n + 7u) & ~(size_t)7u;
}

/* Grow *p (of *cap elements of elem bytes) to hold one more than n. */
static int grow(void **p, size_t *cap, size_t n, size_t elem)
{
    if (n < *cap)
        return 0;
    size_t c = *cap ? *cap * 2 : 16;
    if (c > SIZE_MAX / elem)
        return -1;
    void *q = realloc(*p, c * elem);
    if (!q)
        return -1;
    *p = q;
    *cap = c;
    return 0;
}

typedef struct {
    warmcal_spool *s;
    const char *name;
    size_t cap_info, cap_entries, cap_begins, cap_dropped, cap_notes;
    warmcal_error *err;
} parser;

static int at(parser *ps, uint64_t offset, int code, const char *fmt, const char *what)
{
    char where[WHERE_LEN];
    snprintf(where, sizeof where, "offset %" PRIu64, offset);
    return warmcal_error_set(ps->err, code, ps->name, where, fmt, what);
}

static int nomem(parser *ps)
{
    return warmcal_error_set(ps->err, WARMCAL_E_NOMEM, ps->name, NULL, "out of memory");
}

static warmcal_spool_entry *new_entry(parser *ps, uint16_t type, uint64_t offset)
{
    warmcal_spool *s = ps->s;
    if (grow((void **)&s->entries, &ps->cap_entries, s->n_entries, sizeof *s->entries) < 0)
        return NULL;
    warmcal_spool_entry *e = &s->entries[s->n_entries++];
    memset(e, 0, sizeof *e);
    e->type = type;
    e->offset = offset;
    return e;
}

/* The fixed body size of each known type; 0 for the text records. */
static size_t body_size(uint16_t type)
{
    switch (type) {
    case WARMCAL_SPOOL_EVENT: return sizeof(warmcal_spool_event);
    case WARMCAL_SPOOL_PHASE_BEGIN: return sizeof(warmcal_spool_phase_begin);
    case WARMCAL_SPOOL_PHASE_END: return sizeof(warmcal_spool_time);
    case WARMCAL_SPOOL_DROPPED: return sizeof(warmcal_spool_dropped);
    case WARMCAL_SPOOL_POOL: return sizeof(warmcal_spool_pool);
    case WARMCAL_SPOOL_EXIT: return sizeof(warmcal_spool_time);
    default: return 0;
    }
}

static int known_type(uint16_t type)
{
    return type >= WARMCAL_SPOOL_INFO && type <= WARMCAL_SPOOL_EXIT;
}

/* Text in [p, p + n): a NUL inside, valid UTF-8 before it; returns its
 * length or -1 (error set). */
static long text_at(parser *ps, const unsigned char *p, size_t n, uint64_t offset, const char *what)
{
    const unsigned char *nul = memchr(p, '\0', n);
    if (!nul)
        return at(ps, offset, WARMCAL_E_FORMAT, "%s without its terminating NUL", what), -1;
    if (!warmcal_utf8_valid((const char *)p))
        return at(ps, offset, WARMCAL_E_FIELD, "%s is not valid UTF-8", what), -1;
    return (long)(nul - p);
}

static int parse_info(parser *ps, const unsigned char *body, size_t n, uint64_t offset)
{
    long kl = text_at(ps, body, n, offset, "info key");
    if (kl < 0)
        return ps->err->code;
    if (kl == 0)
        return at(ps, offset, WARMCAL_E_FORMAT, "%s", "info record with an empty key");
    long vl = text_at(ps, body + kl + 1, n - (size_t)kl - 1, offset, "info value");
    if (vl < 0)
        return ps->err->code;
    warmcal_spool *s = ps->s;
    if (grow((void **)&s->info, &ps->cap_info, s->n_info, sizeof *s->info) < 0)
        return nomem(ps);
    char *key = strdup((const char *)body);
    char *value = strdup((const char *)body + kl + 1);
    if (!key || !value) {
        free(key);
        free(value);
        return nomem(ps);
    }
    s->info[s->n_info++] = (warmcal_spool_info_entry){.key = key, .value = value, .offset = offset};
    return 0;
}

static int parse_note(parser *ps, const unsigned char *body, size_t n, uint64_t offset)
{
    warmcal_spool_time t;
    memcpy(&t, body, sizeof t);
    if (!memchr(body + sizeof t, '\0', n - sizeof t))
        return at(ps, offset, WARMCAL_E_FORMAT, "%s", "note without its terminating NUL");
    warmcal_spool *s = ps->s;
    if (grow((void **)&s->notes, &ps->cap_notes, s->n_notes, sizeof *s->notes) < 0)
        return nomem(ps);
    char *text = strdup((const char *)body + sizeof t);
    if (!text)
        return nomem(ps);
    /* A note may quote what a server passed (an NVTX message): it is kept
     * for people, with bytes that are not UTF-8 shown as '?'. */
    if (!warmcal_utf8_valid(text))
        for (char *c = text; *c; c++)
            if ((unsigned char)*c >= 0x80)
                *c = '?';
    s->notes[s->n_notes++] = (warmcal_spool_note_entry){.time_ns = t.time_ns, .text = text};
    return 0;
}

static int parse_event(parser *ps, const unsigned char *body, uint64_t offset)
{
    warmcal_spool_event ev;
    memcpy(&ev, body, sizeof ev);
    if (ev.kind > WARMCAL_EV_DEVICE_FREE)
        return at(ps, offset, WARMCAL_E_FORMAT, "%s", "event kind out of range");
    if (ev.mem_kind > WARMCAL_MEM_PINNED_HOST)
        return at(ps, offset, WARMCAL_E_FORMAT, "%s", "memory kind out of range");
    warmcal_spool_entry *e = new_entry(ps, WARMCAL_SPOOL_EVENT, offset);
    if (!e)
        return nomem(ps);
    e->time_ns = ev.time_ns;
    e->bytes = ev.bytes;
    e->address = ev.address;
    e->kind = ev.kind;
    e->mem_kind = ev.mem_kind;
    return 0;
}

static int parse_begin(parser *ps, const unsigned char *body, uint64_t offset)
{
    warmcal_spool_phase_begin b;
    memcpy(&b, body, sizeof b);
    if (!memchr(b.label, '\0', sizeof b.label))
        return at(ps, offset, WARMCAL_E_FORMAT, "%s", "phase label without its terminating NUL");
    if (!warmcal_utf8_valid(b.label))
        return at(ps, offset, WARMCAL_E_FIELD, "%s", "phase label is not valid UTF-8");
    if (b.tokens < 1 || b.tokens > (1ull << 40))
        return at(ps, offset, WARMCAL_E_FIELD, "%s", "phase tokens outside 1..2^40");
    warmcal_spool *s = ps->s;
    if (s->n_begins >= UINT32_MAX ||
        grow((void **)&s->begins, &ps->cap_begins, s->n_begins, sizeof *s->begins) < 0)
        return nomem(ps);
    warmcal_spool_entry *e = new_entry(ps, WARMCAL_SPOOL_PHASE_BEGIN, offset);
    if (!e)
        return nomem(ps);
    e->time_ns = b.time_ns;
    e->begin = (uint32_t)s->n_begins;
    s->begins[s->n_begins++] = b;
    return 0;
}

static int parse_record(parser *ps, uint16_t type, const unsigned char *body, size_t n,
                        uint64_t offset)
{
    warmcal_spool *s = ps->s;
    switch (type) {
    case WARMCAL_SPOOL_INFO: return parse_info(ps, body, n, offset);
    case WARMCAL_SPOOL_NOTE: return parse_note(ps, body, n, offset);
    case WARMCAL_SPOOL_EVENT: return parse_event(ps, body, offset);
    case WARMCAL_SPOOL_PHASE_BEGIN: return parse_begin(ps, body, offset);
    case WARMCAL_SPOOL_PHASE_END: {
        warmcal_spool_time t;
        memcpy(&t, body, sizeof t);
        warmcal_spool_entry *e = new_entry(ps, WARMCAL_SPOOL_PHASE_END, offset);
        if (!e)
            return nomem(ps);
        e->time_ns = t.time_ns;
        return 0;
    }
    case WARMCAL_SPOOL_DROPPED: {
        warmcal_spool_dropped d;
        memcpy(&d, body, sizeof d);
        if (d.until_ns < d.since_ns)
            return at(ps, offset, WARMCAL_E_FORMAT, "%s", "dropped span ends before it starts");
        if (grow((void **)&s->dropped, &ps->cap_dropped, s->n_dropped, sizeof *s->dropped) < 0)
            return nomem(ps);
        s->dropped[s->n_dropped++] = d;
        return 0;
    }
    case WARMCAL_SPOOL_POOL: {
        warmcal_spool_pool p;
        memcpy(&p, body, sizeof p);
        warmcal_spool_entry *e = new_entry(ps, WARMCAL_SPOOL_POOL, offset);
        if (!e)
            return nomem(ps);
        e->time_ns = p.time_ns;
        e->address = p.pool;
        e->bytes = p.reserved_bytes;
        return 0;
    }
    case WARMCAL_SPOOL_EXIT: {
        warmcal_spool_time t;
        memcpy(&t, body, sizeof t);
        s->exited = 1;
        s->exit_ns = t.time_ns;
        return 0;
    }
    default:
        s->unknown_records++;
        return 0;
    }
}

static int all_zero(const unsigned char *p, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (p[i])
            return 0;
    return 1;
}

static int parse_header(parser *ps, const unsigned char *data, size_t size)
{
    warmcal_spool_file_header h;
    if (size < sizeof h)
        return warmcal_error_set(ps->err, WARMCAL_E_FORMAT, ps->name, "header",
                                 "%zu bytes: too short for a spool header (%zu bytes)", size,
                                 sizeof h);
    memcpy(&h, data, sizeof h);
    if (memcmp(h.magic, WARMCAL_SPOOL_MAGIC, sizeof h.magic) != 0)
        return warmcal_error_set(ps->err, WARMCAL_E_FORMAT, ps->name, "header",
                                 "not a warmcal spool (bad magic)");
    if (h.byte_order != WARMCAL_SPOOL_BYTE_ORDER) {
        uint32_t swapped = ((h.byte_order & 0xFFu) << 24) | ((h.byte_order & 0xFF00u) << 8) |
                           ((h.byte_order >> 8) & 0xFF00u) | (h.byte_order >> 24);
        if (swapped == WARMCAL_SPOOL_BYTE_ORDER)
            return warmcal_error_set(ps->err, WARMCAL_E_FORMAT, ps->name, "header",
                                     "written on a machine of the other byte order: convert "
                                     "it where it was written");
        return warmcal_error_set(ps->err, WARMCAL_E_FORMAT, ps->name, "header",
                                 "bad byte-order mark 0x%08" PRIx32, h.byte_order);
    }
    if (h.version != WARMCAL_SPOOL_VERSION)
        return warmcal_error_set(ps->err, WARMCAL_E_FORMAT, ps->name, "header",
                                 "spool version %" PRIu32 " (this reader knows version %u)",
                                 h.version, WARMCAL_SPOOL_VERSION);
    return 0;
}

static int parse_all(parser *ps, const unsigned char *data, size_t size)
{
    int rc = parse_header(ps, data, size);
    if (rc)
        return rc;
    size_t off = sizeof(warmcal_spool_file_header);
    while (off < size) {
        size_t left = size - off;
        warmcal_spool_rec_header h;
        if (left < HDR) {
            ps->s->truncated_bytes = left;
            break;
        }
        memcpy(&h, data + off, HDR);
        /* A record's header is never zero: zeros to the end are writes the
         * file system lost (the file grew but the data never landed). */
        if (h.type == 0 && h.size == 0 && all_zero(data + off, left)) {
            ps->s->truncated_bytes = left;
            break;
        }
        if (h.size < HDR || h.size % 8 != 0 || h.size > WARMCAL_SPOOL_RECORD_MAX) {
            char text[96];
            snprintf(text, sizeof text, "record size %" PRIu32 " (expected a multiple of 8, %zu to %u)",
                     h.size, HDR, WARMCAL_SPOOL_RECORD_MAX);
            return at(ps, off, WARMCAL_E_FORMAT, "%s", text);
        }
        if (h.reserved != 0)
            return at(ps, off, WARMCAL_E_FORMAT, "%s", "record header's reserved field is not 0");
        if (known_type(h.type)) {
            size_t want = body_size(h.type);
            int bad = want ? h.size != pad8(HDR + want)
                           : h.size < HDR + (h.type == WARMCAL_SPOOL_NOTE ? 16u : 8u);
            if (bad) {
                char text[96];
                snprintf(text, sizeof text, "record of type %u with size %" PRIu32, h.type, h.size);
                return at(ps, off, WARMCAL_E_FORMAT, "%s", text);
            }
        }
        if (h.size > left) {
            /* only the last record can run past the end */
            ps->s->truncated_bytes = left;
            break;
        }
        rc = parse_record(ps, h.type, data + off + HDR, h.size - HDR, off);
        if (rc)
            return rc;
        off += h.size;
    }
    return 0;
}

int warmcal_spool_parse(const void *data, size_t size, const char *name, warmcal_spool **out,
                        warmcal_error *err)
{
    if (!out || (!data && size))
        return warmcal_error_set(err, WARMCAL_E_INVAL, name, NULL, "spool parse: no output or data");
    *out = NULL;
    warmcal_spool *s = calloc(1, sizeof *s);
    if (!s || !(s->path = strdup(name ? name : "(spool)"))) {
        free(s);
        return warmcal_error_set(err, WARMCAL_E_NOMEM, name, NULL, "out of memory");
    }
    warmcal_error local;
    warmcal_error_clear(&local);
    parser ps = {.s = s, .name = s->path, .err = err ? err : &local};
    int rc = parse_all(&ps, data ? data : "", size);
    if (rc) {
        warmcal_spool_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

int warmcal_spool_read(const char *path, size_t max_bytes, warmcal_spool **out, warmcal_error *err)
{
    if (!out || !path)
        return warmcal_error_set(err, WARMCAL_E_INVAL, path, NULL, "spool read: no path");
    *out = NULL;
    int fd;
    do {
        /* non-blocking: a FIFO put where a spool was expected must not hang us */
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0)
        return warmcal_error_set(err, WARMCAL_E_IO, path, NULL, "cannot open: %s", strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return warmcal_error_set(err, WARMCAL_E_IO, path, NULL, "not a regular file");
    }
    size_t size = (uint64_t)st.st_size > SIZE_MAX ? SIZE_MAX : (size_t)st.st_size;
    if (max_bytes && size > max_bytes)
        size = max_bytes;
    unsigned char *buf = malloc(size ? size : 1);
    if (!buf) {
        close(fd);
        return warmcal_error_set(err, WARMCAL_E_NOMEM, path, NULL,
                                 "cannot hold the spool's %zu bytes in memory", size);
    }
    size_t got = 0;
    while (got < size) {
        ssize_t k = read(fd, buf + got, size - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            int e = errno;
            free(buf);
            close(fd);
            return warmcal_error_set(err, WARMCAL_E_IO, path, NULL, "cannot read: %s", strerror(e));
        }
        if (k == 0)
            break; /* shrank while we read: parse what is there */
        got += (size_t)k;
    }
    close(fd);
    int rc = warmcal_spool_parse(buf, got, path, out, err);
    free(buf);
    return rc;
}

const char *warmcal_spool_info_get(const warmcal_spool *s, const char *key)
{
    for (size_t i = s && key ? s->n_info : 0; i > 0; i--)
        if (strcmp(s->info[i - 1].key, key) == 0)
            return s->info[i - 1].value;
    return NULL;
}

static int by_time(const void *a, const void *b)
{
    const warmcal_spool_entry *x = a, *y = b;
    if (x->time_ns != y->time_ns)
        return x->time_ns < y->time_ns ? -1 : 1;
    /* offsets are unique: equal times keep file order, so the sort is stable */
    return x->offset < y->offset ? -1 : x->offset > y->offset;
}

void warmcal_spool_sort(warmcal_spool *s)
{
    if (s && s->n_entries > 1)
        qsort(s->entries, s->n_entries, sizeof *s->entries, by_time);
}

void warmcal_spool_free(warmcal_spool *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->n_info; i++) {
        free(s->info[i].key);
        free(s->info[i].value);
    }
    for (size_t i = 0; i < s->n_notes; i++)
        free(s->notes[i].text);
    free(s->info);
    free(s->entries);
    free(s->begins);
    free(s->dropped);
    free(s->notes);
    free(s->path);
    free(s);
}
