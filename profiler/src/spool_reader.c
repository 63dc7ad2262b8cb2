/* The spool reader (warmcal/spool.h): checks every record of a spool written
 * by the injected library and indexes its timed records for the converter.
 * The file is mapped, not copied, and the index (16 bytes a record) is
 * allocated once, at the size a first pass counted: a spool of any size costs
 * little more than its mapping. A record cut short at the end is what a
 * killed process leaves, and is tolerated; anything wrong before the end is
 * corruption, named by its byte offset. */
#define _DEFAULT_SOURCE /* MAP_NORESERVE */
#include "warmcal/spool.h"
#include "spool_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
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
    size_t cap_info, cap_begins, cap_dropped, cap_notes;
    size_t cap_index; /* counted by the first pass */
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

/* Index one timed record. The first pass counted them, so the index never
 * grows here; a count that disagrees is a bug, reported as corruption
 * rather than written past the end. */
static int add_index(parser *ps, uint64_t time_ns, uint64_t offset, int is_free)
{
    warmcal_spool *s = ps->s;
    if (s->n_entries >= ps->cap_index)
        return warmcal_error_set(ps->err, WARMCAL_E_FORMAT, ps->name, NULL,
                                 "internal: more timed records than counted");
    s->index[s->n_entries++] = (warmcal_spool_index){
        .time_ns = time_ns, .key = offset | (is_free ? 0 : WARMCAL_SPOOL_KEY_LATER)};
    return 0;
}

static int is_timed(uint16_t type)
{
    return type == WARMCAL_SPOOL_EVENT || type == WARMCAL_SPOOL_PHASE_BEGIN ||
           type == WARMCAL_SPOOL_PHASE_END || type == WARMCAL_SPOOL_POOL;
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
    return add_index(ps, ev.time_ns, offset, ev.kind == WARMCAL_EV_FREE);
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
    if (grow((void **)&s->begins, &ps->cap_begins, s->n_begins, sizeof *s->begins) < 0)
        return nomem(ps);
    s->begins[s->n_begins++] = b;
    return add_index(ps, b.time_ns, offset, 0);
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
        return add_index(ps, t.time_ns, offset, 0);
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
        return add_index(ps, p.time_ns, offset, 0);
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

/* The record at off: 1 with its header in *h, 0 at the end (what is left is
 * counted as truncated), or an error code for a bad header (set in ps->err
 * unless quiet). */
static int record_at(parser *ps, const unsigned char *data, size_t size, size_t off,
                     warmcal_spool_rec_header *h, int quiet)
{
    size_t left = size - off;
    if (left < HDR) {
        ps->s->truncated_bytes = left;
        return 0;
    }
    memcpy(h, data + off, HDR);
    /* A record's header is never zero: zeros to the end are writes the
     * file system lost (the file grew but the data never landed). */
    if (h->type == 0 && h->size == 0 && all_zero(data + off, left)) {
        ps->s->truncated_bytes = left;
        return 0;
    }
    if (h->size < HDR || h->size % 8 != 0 || h->size > WARMCAL_SPOOL_RECORD_MAX) {
        if (quiet)
            return WARMCAL_E_FORMAT;
        char text[96];
        snprintf(text, sizeof text, "record size %" PRIu32 " (expected a multiple of 8, %zu to %u)",
                 h->size, HDR, WARMCAL_SPOOL_RECORD_MAX);
        return at(ps, off, WARMCAL_E_FORMAT, "%s", text);
    }
    if (h->reserved != 0)
        return quiet ? WARMCAL_E_FORMAT
                     : at(ps, off, WARMCAL_E_FORMAT, "%s", "record header's reserved field is not 0");
    if (known_type(h->type)) {
        size_t want = body_size(h->type);
        int bad = want ? h->size != pad8(HDR + want)
                       : h->size < HDR + (h->type == WARMCAL_SPOOL_NOTE ? 16u : 8u);
        if (bad) {
            if (quiet)
                return WARMCAL_E_FORMAT;
            char text[96];
            snprintf(text, sizeof text, "record of type %u with size %" PRIu32, h->type, h->size);
            return at(ps, off, WARMCAL_E_FORMAT, "%s", text);
        }
    }
    if (h->size > left) {
        /* only the last record can run past the end */
        ps->s->truncated_bytes = left;
        return 0;
    }
    return 1;
}

/* First pass: the timed records, counted up to the end or the first bad
 * header (the second pass reports it), so the index is allocated once at
 * its exact size. */
static size_t count_timed(parser *ps, const unsigned char *data, size_t size)
{
    size_t n = 0, records = 0;
    warmcal_spool_rec_header h;
    for (size_t off = sizeof(warmcal_spool_file_header);
         off < size && record_at(ps, data, size, off, &h, 1) == 1; off += h.size) {
        n += is_timed(h.type);
        if (++records % WARMCAL__SPOOL_DROP_EVERY == 0)
            warmcal__spool_drop_pages(ps->s);
    }
    ps->s->truncated_bytes = 0;
    return n;
}

/* Parse every record, stopping at the first damaged one (what came before
 * stays in ps->s). */
static int parse_all(parser *ps, const unsigned char *data, size_t size)
{
    int rc = parse_header(ps, data, size);
    if (rc)
        return rc;
    size_t n = count_timed(ps, data, size);
    if (n) {
        if (n > SIZE_MAX / sizeof(warmcal_spool_index) ||
            !(ps->s->index = malloc(n * sizeof(warmcal_spool_index))))
            return nomem(ps);
        ps->cap_index = n;
        ps->s->index_bytes = n * sizeof(warmcal_spool_index);
    }
    size_t off = sizeof(warmcal_spool_file_header), records = 0;
    while (off < size) {
        if (++records % WARMCAL__SPOOL_DROP_EVERY == 0)
            warmcal__spool_drop_pages(ps->s);
        warmcal_spool_rec_header h;
        rc = record_at(ps, data, size, off, &h, 0);
        if (rc <= 0)
            return rc;
        rc = parse_record(ps, h.type, data + off + HDR, h.size - HDR, off);
        if (rc)
            return rc;
        off += h.size;
    }
    return 0;
}

static warmcal_spool *new_spool(const char *name, warmcal_error *err)
{
    warmcal_spool *s = calloc(1, sizeof *s);
    if (!s || !(s->path = strdup(name ? name : "(spool)"))) {
        free(s);
        warmcal_error_set(err, WARMCAL_E_NOMEM, name, NULL, "out of memory");
        return NULL;
    }
    return s;
}

/* Parse s->data (already set); on failure s keeps what came before the
 * damage when keep_partial, else it is freed. */
static int parse_into(warmcal_spool **sp, int keep_partial, warmcal_error *err)
{
    warmcal_spool *s = *sp;
    warmcal_error local;
    warmcal_error_clear(&local);
    parser ps = {.s = s, .name = s->path, .err = err ? err : &local};
    int rc = parse_all(&ps, s->data ? s->data : (const unsigned char *)"", s->size);
    if (rc && !keep_partial) {
        warmcal_spool_free(s);
        *sp = NULL;
    }
    return rc;
}

int warmcal_spool_parse(const void *data, size_t size, const char *name, warmcal_spool **out,
                        warmcal_error *err)
{
    if (!out || (!data && size))
        return warmcal_error_set(err, WARMCAL_E_INVAL, name, NULL, "spool parse: no output or data");
    *out = NULL;
    warmcal_spool *s = new_spool(name, err);
    if (!s)
        return WARMCAL_E_NOMEM;
    unsigned char *copy = malloc(size ? size : 1);
    if (!copy) {
        warmcal_spool_free(s);
        return warmcal_error_set(err, WARMCAL_E_NOMEM, name, NULL, "out of memory");
    }
    if (size)
        memcpy(copy, data, size);
    s->data = copy;
    s->size = size;
    int rc = parse_into(&s, 0, err);
    *out = s;
    return rc;
}

/* The first size bytes of the open file fd: mapped read-only, or read into
 * memory where mapping fails (a file system without mmap). */
static int load(int fd, const char *path, size_t size, warmcal_spool *s, warmcal_error *err)
{
    if (size) {
        void *m = mmap(NULL, size, PROT_READ, MAP_PRIVATE | MAP_NORESERVE, fd, 0);
        if (m != MAP_FAILED) {
            /* read once, front to back, twice (count, then parse) */
            (void)madvise(m, size, MADV_SEQUENTIAL);
            s->data = m;
            s->size = size;
            s->mapped = 1;
            return 0;
        }
    }
    unsigned char *buf = malloc(size ? size : 1);
    if (!buf)
        return warmcal_error_set(err, WARMCAL_E_NOMEM, path, NULL,
                                 "cannot hold the spool's %zu bytes in memory", size);
    size_t got = 0;
    while (got < size) {
        ssize_t k = read(fd, buf + got, size - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            int e = errno;
            free(buf);
            return warmcal_error_set(err, WARMCAL_E_IO, path, NULL, "cannot read: %s", strerror(e));
        }
        if (k == 0)
            break; /* shrank while we read: parse what is there */
        got += (size_t)k;
    }
    s->data = buf;
    s->size = got;
    return 0;
}

static int read_spool(const char *path, size_t max_bytes, int keep_partial, warmcal_spool **out,
                      warmcal_error *err)
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
    warmcal_spool *s = new_spool(path, err);
    if (!s) {
        close(fd);
        return WARMCAL_E_NOMEM;
    }
    int rc = load(fd, path, size, s, err);
    close(fd);
    if (rc) {
        warmcal_spool_free(s);
        return rc;
    }
    rc = parse_into(&s, keep_partial, err);
    warmcal__spool_drop_pages(s);
    *out = s;
    return rc;
}

void warmcal__spool_drop_pages(const warmcal_spool *s)
{
    if (s && s->mapped && s->size)
        (void)madvise((void *)s->data, s->size, MADV_DONTNEED);
}

int warmcal_spool_read(const char *path, size_t max_bytes, warmcal_spool **out, warmcal_error *err)
{
    return read_spool(path, max_bytes, 0, out, err);
}

int warmcal__spool_read_partial(const char *path, size_t max_bytes, warmcal_spool **out,
                                warmcal_error *err)
{
    return read_spool(path, max_bytes, 1, out, err);
}

const char *warmcal_spool_info_get(const warmcal_spool *s, const char *key)
{
    for (size_t i = s && key ? s->n_info : 0; i > 0; i--)
        if (strcmp(s->info[i - 1].key, key) == 0)
            return s->info[i - 1].value;
    return NULL;
}

/* Time order; at equal times FREE events first (key bit 63 clear), then
 * file order: keys are unique (offsets are), so the order never depends on
 * the sort algorithm. */
static int before(const warmcal_spool_index *x, const warmcal_spool_index *y)
{
    return x->time_ns != y->time_ns ? x->time_ns < y->time_ns : x->key < y->key;
}

static void swap_ix(warmcal_spool_index *a, warmcal_spool_index *b)
{
    warmcal_spool_index t = *a;
    *a = *b;
    *b = t;
}

static void insertion_sort(warmcal_spool_index *a, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        warmcal_spool_index v = a[i];
        size_t j = i;
        for (; j > 0 && before(&v, &a[j - 1]); j--)
            a[j] = a[j - 1];
        a[j] = v;
    }
}

static void sift_down(warmcal_spool_index *a, size_t at, size_t n)
{
    for (size_t child; (child = 2 * at + 1) < n; at = child) {
        if (child + 1 < n && before(&a[child], &a[child + 1]))
            child++;
        if (!before(&a[at], &a[child]))
            return;
        swap_ix(&a[at], &a[child]);
    }
}

static void heap_sort(warmcal_spool_index *a, size_t n)
{
    for (size_t i = n / 2; i > 0; i--)
        sift_down(a, i - 1, n);
    for (size_t end = n; end > 1; end--) {
        swap_ix(&a[0], &a[end - 1]);
        sift_down(a, 0, end - 1);
    }
}

/* Introsort, in place: qsort(3) may allocate a copy of the whole index to
 * merge into, and the index is most of what a conversion holds. Quicksort
 * (median of three, Hoare partition), heapsort past a depth of 2 log2 n,
 * insertion sort for short runs. */
static void intro_sort(warmcal_spool_index *a, size_t n, unsigned depth)
{
    while (n > 16) {
        if (depth-- == 0) {
            heap_sort(a, n);
            return;
        }
        size_t mid = n / 2;
        if (before(&a[mid], &a[0]))
            swap_ix(&a[mid], &a[0]);
        if (before(&a[n - 1], &a[0]))
            swap_ix(&a[n - 1], &a[0]);
        if (before(&a[n - 1], &a[mid]))
            swap_ix(&a[n - 1], &a[mid]);
        warmcal_spool_index pivot = a[mid];
        size_t i = 0, j = n - 1;
        /* a[0] <= pivot <= a[n - 1] keep both scans inside the array */
        for (;;) {
            while (before(&a[i], &pivot))
                i++;
            while (before(&pivot, &a[j]))
                j--;
            if (i >= j)
                break;
            swap_ix(&a[i], &a[j]);
            i++;
            j--;
        }
        /* [0, j] <= pivot <= [j + 1, n); j < n - 1 because the pivot is
         * not the last element; recurse into the smaller side */
        size_t left = j + 1;
        if (left < n - left) {
            intro_sort(a, left, depth);
            a += left;
            n -= left;
        } else {
            intro_sort(a + left, n - left, depth);
            n = left;
        }
    }
    insertion_sort(a, n);
}

void warmcal_spool_sort(warmcal_spool *s)
{
    if (!s || s->n_entries < 2)
        return;
    size_t n = s->n_entries, i = 1;
    while (i < n && before(&s->index[i - 1], &s->index[i]))
        i++;
    if (i == n)
        return; /* already in order: a single-threaded server's usual spool */
    unsigned depth = 0;
    for (size_t k = n; k > 1; k >>= 1)
        depth += 2;
    intro_sort(s->index, n, depth);
}

void warmcal_spool_entry_at(const warmcal_spool *s, size_t i, warmcal_spool_entry *out)
{
    memset(out, 0, sizeof *out);
    if (!s || i >= s->n_entries)
        return;
    uint64_t off = WARMCAL_SPOOL_INDEX_OFFSET(s->index[i]);
    warmcal_spool_rec_header h;
    memcpy(&h, s->data + off, HDR);
    const unsigned char *body = s->data + off + HDR;
    out->offset = off;
    out->type = h.type;
    out->time_ns = s->index[i].time_ns;
    switch (h.type) {
    case WARMCAL_SPOOL_EVENT: {
        warmcal_spool_event ev;
        memcpy(&ev, body, sizeof ev);
        out->bytes = ev.bytes;
        out->address = ev.address;
        out->kind = ev.kind;
        out->mem_kind = ev.mem_kind;
        break;
    }
    case WARMCAL_SPOOL_PHASE_BEGIN: {
        warmcal_spool_phase_begin b;
        memcpy(&b, body, sizeof b);
        out->bytes = b.tokens;
        out->batch = b.batch;
        memcpy(out->label, b.label, sizeof out->label);
        out->label[sizeof out->label - 1] = '\0';
        break;
    }
    case WARMCAL_SPOOL_POOL: {
        warmcal_spool_pool p;
        memcpy(&p, body, sizeof p);
        out->address = p.pool;
        out->bytes = p.reserved_bytes;
        break;
    }
    default:
        break;
    }
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
    if (s->mapped)
        munmap((void *)s->data, s->size);
    else
        free((void *)s->data);
    free(s->info);
    free(s->index);
    free(s->begins);
    free(s->dropped);
    free(s->notes);
    free(s->path);
    free(s);
}
