/* The gate (see warmcal/gate.h): local need and headroom per shape, then one
 * MIN reduction for the whole list over packed (headroom, rank) integers —
 * MINLOC in one 64-bit word — either MPI_Iallreduce on a private duplicate
 * of the caller's communicator, polled against a deadline, or the caller's
 * own collective (torch.distributed). Both paths encode and decode alike.
 * Open is bounded by the same deadline: its duplicate and its agreement are
 * non-blocking collectives too. A token budget (max_tokens) is one more
 * value of the same kind — this rank's largest pass by the table, packed
 * with its rank — carried in a decision's first collective.
 *
 * Severity is ordered through the values themselves: an invalid batch is the
 * lowest possible headroom, then "outside the calibrated range", then "no
 * estimate", then "estimate too large", then real byte headrooms, so the
 * minimum is both the blocking
 * rank and its reason. Five extra values carry the checks that every rank
 * agrees: table digest (min and max), shape-list digest (min and max), and
 * whether any rank failed to probe its free memory. */
#define _POSIX_C_SOURCE 200809L
#include "warmcal/gate.h"
#include "warmcal/mpi_wait.h"
#include "warmcal/units.h"
#include "probe.h"
#include "table_internal.h"

#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define EXTRA 5
/* A decision's first collective: the count check (2), the checks, and this
 * many shapes, always; the rest of a longer list follows in a second. A
 * token budget takes the very same collective, its one value in the first
 * shape's place and BUDGET_COUNT as its count, so that a rank asking for a
 * budget while another decides is a mismatch, not an erroneous pair of MPI
 * collectives of different sizes. */
#define FIRST_SHAPES 64
#define HEAD (2 + EXTRA)
#define FIRST (HEAD + FIRST_SHAPES)
#define BUDGET_COUNT (-1) /* no list has -1 shapes */
#define DEFAULT_DEADLINE_S 60.0
#define DIGEST_BITS 46
/* a negated digest must unpack as itself, not as the saturated floor */
_Static_assert(DIGEST_BITS <= 46, "digests must fit the packed form's +-2^46");

/* Sentinel headrooms, below every real one. */
#define H_INVALID INT64_MIN
#define H_OUT_OF_RANGE (INT64_MIN + 1)
#define H_NO_ESTIMATE (INT64_MIN + 2)
#define H_TOO_LARGE (INT64_MIN + 3) /* an estimate beyond 64 bits inside its range */
#define H_FLOOR (INT64_MIN + 16)

/* Packed form (see pack): value * 2^16 + rank, real headrooms clamped to
 * +-2^46 bytes (64 TiB); so at most 2^16 ranks. */
#define RANK_BITS 16
#define PACK_LIMIT (INT64_C(1) << 46)
#define PACK_SENTINEL_BASE INT64_MIN

struct warmcal_gate {
    int code;
    char text[512];
    warmcal_table *table;
    warmcal_gate_options opts;
    int local, rank, size;
    MPI_Comm comm;
    int opened; /* on every rank or on none: open agrees */
    int broken;
    int64_t *spare; /* 2 * FIRST values: a rank that cannot decide still takes part */
    struct open_exchange *exchange; /* kept only when open timed out (MPI may write it) */
    int64_t table_digest;
    char probe_text[512]; /* this rank's probe failure, for the decision error */
    /* a local gate's last encoded shapes, so decode describes them as decide does */
    warmcal_shape *encoded;
    char (*encoded_labels)[WARMCAL_TABLE_LABEL_LEN];
    size_t n_encoded;
    /* the collective call in progress, for its error words: a decision over
     * call_shapes shapes, or a token budget for call_label (not NULL) */
    size_t call_shapes;
    const char *call_label;
    char budget_label[64]; /* a local gate's last encoded budget's label, for decode's words */
};

static int fail(warmcal_gate *g, int code, const char *fmt, ...) WARMCAL_PRINTF(3, 4);
static int fail(warmcal_gate *g, int code, const char *fmt, ...)
{
    g->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->text, sizeof g->text, fmt, ap);
    va_end(ap);
    return code;
}

static int fail_err(warmcal_gate *g, const warmcal_error *err)
{
    char buf[600];
    return fail(g, err->code ? err->code : WARMCAL_E_INVAL, "%s",
                warmcal_error_format(err, buf, sizeof buf));
}

void warmcal_gate_options_init(warmcal_gate_options *o)
{
    if (!o)
        return;
    memset(o, 0, sizeof *o);
    o->deadline_s = DEFAULT_DEADLINE_S;
    o->probe = WARMCAL_PROBE_CUDA;
    o->above_range = -1;
    o->need_policy = WARMCAL_NEED_TABLE;
}

static int64_t digest_of_hex(const char *hex)
{
    uint64_t v = 0;
    for (int i = 0; i < 16 && hex[i]; i++) {
        char c = hex[i];
        v = v << 4 | (uint64_t)(c <= '9' ? c - '0' : c - 'a' + 10);
    }
    return (int64_t)(v >> (64 - DIGEST_BITS));
}

/* splitmix64's finaliser: cheap and well spread. */
static uint64_t mix(uint64_t v)
{
    v ^= v >> 30;
    v *= 0xbf58476d1ce4e5b9ull;
    v ^= v >> 27;
    v *= 0x94d049bb133111ebull;
    v ^= v >> 31;
    return v;
}

/* A digest of the shapes every rank can compare. Each shape is mixed with
 * its position on its own and the results summed, so the order counts but
 * no shape waits for the one before it (a chained hash was a sixth of a
 * decision's local work); labels are hashed once per run of equal pointers,
 * as shape lists repeat their label. */
static int64_t digest_of_shapes(const warmcal_shape *s, size_t n)
{
    uint64_t h = mix(n), label_hash = 0;
    const char *last = NULL;
    for (size_t i = 0; i < n; i++) {
        const char *label = s[i].label ? s[i].label : "context";
        if (label != last) {
            label_hash = strlen(label);
            for (const char *c = label; *c; c++)
                label_hash = label_hash * 131 + (unsigned char)*c;
            label_hash = mix(label_hash);
            last = label;
        }
        uint64_t pos = (i + 1) * 0x9e3779b97f4a7c15ull;
        h += mix(s[i].tokens ^ pos) ^ mix(((uint64_t)s[i].batch << 32 | (i & 0xffffffffu)) ^ label_hash);
    }
    return (int64_t)(h >> (64 - DIGEST_BITS));
}

static int check_options(warmcal_gate *g, const char *table_path)
{
    const warmcal_gate_options *o = &g->opts;
    if ((unsigned)o->probe > WARMCAL_PROBE_SIMULATED)
        return fail(g, WARMCAL_E_INVAL, "options: unknown probe %d", (int)o->probe);
    if (o->probe == WARMCAL_PROBE_CALLBACK && !o->free_fn)
        return fail(g, WARMCAL_E_INVAL, "options: the callback probe needs free_fn");
    if (o->above_range < -1 || o->above_range > WARMCAL_ABOVE_EXTRAPOLATE)
        return fail(g, WARMCAL_E_INVAL, "options: above_range must be -1, refuse or extrapolate");
    if ((unsigned)o->need_policy > WARMCAL_NEED_CONSTANT)
        return fail(g, WARMCAL_E_INVAL, "options: unknown need policy %d", (int)o->need_policy);
    if (o->need_policy == WARMCAL_NEED_TABLE && !table_path)
        return fail(g, WARMCAL_E_INVAL, "options: the table need policy needs a table path");
    if (o->need_policy == WARMCAL_NEED_CONSTANT && o->constant_bytes_per_token == 0)
        return fail(g, WARMCAL_E_INVAL, "options: the constant need policy needs bytes per token > 0");
    if (!(o->deadline_s == o->deadline_s) || o->deadline_s > 1e7)
        return fail(g, WARMCAL_E_INVAL, "options: deadline_s must be a number of seconds");
    return WARMCAL_OK;
}

/* Everything of open but the communicator: options, table, configuration. */
static int setup(warmcal_gate *g, const char *table_path)
{
    int rc = check_options(g, table_path);
    if (rc)
        return rc;
    warmcal_error err = {0};
    if (g->opts.need_policy == WARMCAL_NEED_TABLE) {
        /* the digest of the very bytes parsed: no second read that could see another file */
        if (warmcal_table_read(table_path, &g->table, &err) != WARMCAL_OK)
            return fail_err(g, &err);
        g->table_digest = digest_of_hex(g->table->sha256);
    } else {
        char policy[96];
        snprintf(policy, sizeof policy, "constant:%" PRIu64 ":%" PRIu64,
                 g->opts.constant_bytes_per_token, g->opts.constant_min_tokens);
        g->table_digest = digest_of_shapes(&(warmcal_shape){.label = policy}, 1);
    }
    if (g->table && !g->opts.allow_config_mismatch && g->table->config.tp != g->size)
        return fail(g, WARMCAL_E_MISMATCH,
                    "%s: calibrated for tp %d, this gate has %d ranks (allow_config_mismatch to "
                    "use it anyway)",
                    table_path, g->table->config.tp, g->size);
    if (g->opts.probe == WARMCAL_PROBE_CUDA) {
        uint64_t free_bytes, total;
        char name[128] = "";
        if (warmcal__probe_cuda(&free_bytes, &total, name, sizeof name, &err) != WARMCAL_OK)
            return fail_err(g, &err);
        if (g->table && !g->opts.allow_config_mismatch && name[0] &&
            strcmp(name, g->table->config.gpu_name) != 0)
            return fail(g, WARMCAL_E_MISMATCH,
                        "%s: calibrated on '%s', this device is '%s' (allow_config_mismatch to "
                        "use it anyway)",
                        table_path, g->table->config.gpu_name, name);
    }
    return WARMCAL_OK;
}

static warmcal_gate *new_gate(const warmcal_gate_options *opts)
{
    warmcal_gate *g = calloc(1, sizeof *g);
    if (!g)
        return NULL;
    if (opts)
        g->opts = *opts;
    else
        warmcal_gate_options_init(&g->opts);
    if (g->opts.deadline_s <= 0)
        g->opts.deadline_s = DEFAULT_DEADLINE_S;
    g->comm = MPI_COMM_NULL;
    return g;
}

/* The usable deadline of an open: a rank whose deadline_s is not a number
 * fails its options check, but must still wait for the others like them. */
static double open_deadline_s(const warmcal_gate *g)
{
    double d = g->opts.deadline_s;
    return d > 0 && d <= 1e7 ? d : DEFAULT_DEADLINE_S;
}

/* What an open's collectives write. After a timeout MPI may still write any
 * of it, so it lives apart from the gate and is then never freed. */
struct open_exchange {
    MPI_Comm dup;
    struct {
        int code, rank;
    } mine, first;
    char text[sizeof ((warmcal_gate *)0)->text];
};

static int open_timed_out(warmcal_gate *g, const char *waiting_for, int own_rc)
{
    char own[sizeof g->text];
    snprintf(own, sizeof own, "%s", own_rc ? g->text : "");
    g->broken = 1; /* g->exchange stays: its collective is still pending */
    return fail(g, WARMCAL_E_TIMEOUT,
                "open timed out after %.1f s waiting for %s: a rank did not join the open; the "
                "communicator is unusable now (end the job, e.g. MPI_Abort)%s%s",
                open_deadline_s(g), waiting_for, own_rc ? "; this rank had failed too: " : "",
                own);
}

/* Wait for one of open's collectives; 0, or the error that ends the open. */
static int open_wait(warmcal_gate *g, MPI_Request *req, uint64_t deadline, const char *what,
                     int own_rc)
{
    int mpi_rc = MPI_SUCCESS;
    if (!warmcal_mpi_wait(req, deadline, &mpi_rc))
        return open_timed_out(g, what, own_rc);
    if (mpi_rc == MPI_SUCCESS)
        return WARMCAL_OK;
    char msg[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    MPI_Error_string(mpi_rc, msg, &len);
    g->broken = 1;
    return fail(g, WARMCAL_E_STATE, "open: %s failed (%s); the communicator is unusable now",
                what, msg);
}

/* A gate opens on every rank or on none: a table missing on one node must
 * not leave the others to wait in their first decision until its deadline.
 * Every rank takes part in the same three steps, all bounded by one
 * deadline — the duplicate (during which this rank reads its table), a
 * MINLOC of (code, rank), and on failure a broadcast of the first failing
 * rank's words — even a rank that already failed (refused: its code, with
 * why as its words), so that every rank fails at once. */
static int open_collective(warmcal_gate *g, const char *table_path, MPI_Comm comm, int refused,
                           const char *why)
{
    int initialized = 0, finalized = 0;
    MPI_Initialized(&initialized);
    if (initialized)
        MPI_Finalized(&finalized);
    if (!initialized || finalized || comm == MPI_COMM_NULL)
        return fail(g, WARMCAL_E_INVAL, "open: MPI is not initialised (or already finalised) or "
                                        "the communicator is null");
    struct open_exchange *ex = calloc(1, sizeof *ex);
    if (!ex)
        return fail(g, WARMCAL_E_NOMEM, "open: out of memory");
    MPI_Request req;
    if (MPI_Comm_idup(comm, &ex->dup, &req) != MPI_SUCCESS) {
        free(ex);
        return fail(g, WARMCAL_E_INVAL, "open: cannot duplicate the communicator");
    }
    g->exchange = ex;
    MPI_Comm_rank(comm, &g->rank);
    MPI_Comm_size(comm, &g->size);
    /* the table is read while the duplicate is made */
    int rc = refused                     ? fail(g, refused, "%s", why)
             : g->size > (1 << RANK_BITS) ? fail(g, WARMCAL_E_UNSUPPORTED,
                                                 "open: the communicator has %d ranks; the gate "
                                                 "decides for at most %d",
                                                 g->size, 1 << RANK_BITS)
                                          : setup(g, table_path);
    if (rc == WARMCAL_OK && !(g->spare = malloc(2 * FIRST * sizeof *g->spare)))
        rc = fail(g, WARMCAL_E_NOMEM, "open: out of memory");
    /* The deadline bounds the wait for the other ranks, so it starts once
     * this rank's own work is done: a slow table read or driver start here
     * must not time this rank out while every peer is waiting for it (they
     * are bounded by their own deadlines). */
    uint64_t deadline = warmcal_deadline_after(open_deadline_s(g));
    int wait_rc = open_wait(g, &req, deadline, "the communicator's duplicate", rc);
    if (wait_rc)
        return wait_rc;
    g->comm = ex->dup;
    MPI_Comm_set_errhandler(g->comm, MPI_ERRORS_RETURN);

    ex->mine.code = rc;
    ex->mine.rank = g->rank;
    if (MPI_Iallreduce(&ex->mine, &ex->first, 1, MPI_2INT, MPI_MINLOC, g->comm, &req) !=
        MPI_SUCCESS)
        return rc ? rc : fail(g, WARMCAL_E_STATE, "open: the ranks could not agree that it opened");
    wait_rc = open_wait(g, &req, deadline, "the agreement that it opened", rc);
    if (wait_rc)
        return wait_rc;
    if (ex->first.code == WARMCAL_OK) {
        g->opened = 1;
        g->exchange = NULL;
        free(ex);
        return WARMCAL_OK;
    }
    int first_code = ex->first.code, first_rank = ex->first.rank;
    memcpy(ex->text, g->text, sizeof ex->text);
    if (MPI_Ibcast(ex->text, (int)sizeof ex->text, MPI_CHAR, first_rank, g->comm, &req) !=
        MPI_SUCCESS)
        snprintf(ex->text, sizeof ex->text, "%s", warmcal_strerror(first_code));
    else if ((wait_rc = open_wait(g, &req, deadline, "the failing rank's message", rc)))
        return wait_rc;
    ex->text[sizeof ex->text - 1] = '\0';
    char text[sizeof ex->text];
    memcpy(text, ex->text, sizeof text);
    g->exchange = NULL;
    free(ex);
    if (rc)
        return rc; /* this rank's own failure, in its own words */
    return fail(g, first_code, "rank %d could not open the gate: %s", first_rank, text);
}

int warmcal_gate_open(warmcal_gate **out, const char *table_path, MPI_Comm comm,
                      const warmcal_gate_options *opts)
{
    /* without a place for the handle this rank still takes part, failed */
    warmcal_gate *unwanted = NULL, **into = out ? out : &unwanted;
    warmcal_gate *g = *into = new_gate(opts);
    if (!g)
        return WARMCAL_E_NOMEM;
    int rc = open_collective(g, table_path, comm, out ? 0 : WARMCAL_E_INVAL,
                             "open: no place for the handle (out is NULL)");
    warmcal_gate_close(unwanted);
    return rc;
}

int warmcal_gate_open_f(warmcal_gate **out, const char *table_path, MPI_Fint comm,
                        const warmcal_gate_options *opts)
{
    return warmcal_gate_open(out, table_path, MPI_Comm_f2c(comm), opts);
}

int warmcal_gate_open_failed(warmcal_gate **out, MPI_Comm comm, int code, const char *text,
                             double deadline_s)
{
    warmcal_gate_options o;
    warmcal_gate_options_init(&o);
    o.deadline_s = deadline_s;
    warmcal_gate *unwanted = NULL, **into = out ? out : &unwanted;
    warmcal_gate *g = *into = new_gate(&o);
    if (!g)
        return WARMCAL_E_NOMEM;
    int rc = open_collective(g, NULL, comm, code < 0 ? code : WARMCAL_E_INVAL,
                             text && text[0] ? text : "this rank could not open the gate");
    warmcal_gate_close(unwanted);
    return rc;
}

int warmcal_gate_open_failed_f(warmcal_gate **out, MPI_Fint comm, int code, const char *text,
                               double deadline_s)
{
    return warmcal_gate_open_failed(out, MPI_Comm_f2c(comm), code, text, deadline_s);
}

int warmcal_gate_open_local(warmcal_gate **out, const char *table_path, int rank, int world_size,
                            const warmcal_gate_options *opts)
{
    if (!out)
        return WARMCAL_E_INVAL;
    warmcal_gate *g = *out = new_gate(opts);
    if (!g)
        return WARMCAL_E_NOMEM;
    g->local = 1;
    if (world_size < 1 || world_size > (1 << RANK_BITS) || rank < 0 || rank >= world_size)
        return fail(g, WARMCAL_E_INVAL, "open: rank %d of world size %d (expected 0 <= rank < "
                                        "world_size <= %d)",
                    rank, world_size, 1 << RANK_BITS);
    g->rank = rank;
    g->size = world_size;
    int rc = setup(g, table_path);
    g->opened = rc == WARMCAL_OK;
    return rc;
}

int warmcal_gate_probe_free(warmcal_gate *g, uint64_t *free_bytes)
{
    if (!g || !free_bytes)
        return WARMCAL_E_INVAL;
    warmcal_error err = {0};
    int rc = WARMCAL_OK;
    switch (g->opts.probe) {
    case WARMCAL_PROBE_VALUE: *free_bytes = g->opts.free_bytes; break;
    case WARMCAL_PROBE_CALLBACK:
        if (g->opts.free_fn(g->opts.free_user, free_bytes) != 0)
            rc = warmcal_error_set(&err, WARMCAL_E_UNSUPPORTED, NULL, NULL,
                                   "the free-memory callback failed");
        break;
    case WARMCAL_PROBE_SIMULATED: rc = warmcal__probe_simulated(free_bytes, &err); break;
    default: rc = warmcal__probe_cuda(free_bytes, NULL, NULL, 0, &err); break;
    }
    if (rc)
        return fail_err(g, &err);
    return WARMCAL_OK;
}

/* A shape of 0 tokens is no pass: the gate refuses it as an argument error,
 * as warmcal_table_estimate and Python do, rather than decide it. Writes
 * the error text into why and returns 1 when shapes[0..n) hold one. */
static int zero_tokens(const warmcal_shape *shapes, size_t n, const char *call, char *why,
                       size_t len)
{
    for (size_t i = 0; i < n; i++)
        if (shapes[i].tokens == 0) {
            snprintf(why, len, "%s: shapes[%zu]: tokens must be at least 1, found 0", call, i);
            return 1;
        }
    return 0;
}

/* This rank's headroom for one shape, or a sentinel. *cache remembers the
 * entries of the last label seen: shape lists run through one label at a
 * time. */
typedef struct {
    const char *label;
    const warmcal_estimate *own, *any; /* this rank's entry and the any-rank one */
    size_t segment[2]; /* each one's last envelope segment, a search hint */
} entry_cache;

static int64_t headroom(const warmcal_gate *g, const warmcal_shape *s, uint64_t free_bytes,
                        entry_cache *cache)
{
    if (!s->batch_valid)
        return H_INVALID;
    const char *label = s->label ? s->label : "context";
    uint64_t need = 0;
    if (g->opts.need_policy == WARMCAL_NEED_CONSTANT) {
        if (s->tokens > g->opts.constant_min_tokens)
            need = s->tokens > UINT64_MAX / g->opts.constant_bytes_per_token
                       ? UINT64_MAX
                       : s->tokens * g->opts.constant_bytes_per_token;
    } else {
        if (cache->label != label) {
            warmcal__find_entries(g->table, g->rank, label, &cache->own, &cache->any);
            cache->label = label;
            cache->segment[0] = cache->segment[1] = 0;
        }
        warmcal_above_policy above = g->opts.above_range >= 0 ? (warmcal_above_policy)g->opts.above_range
                                                              : g->table->above_range;
        double value;
        int rc = warmcal__need_at(cache->own, cache->any, above, s->tokens, cache->segment, &need,
                                  &value);
        if (rc == WARMCAL__EVAL_NO_ENTRY)
            return H_NO_ESTIMATE;
        if (rc == WARMCAL__EVAL_ABOVE)
            return H_OUT_OF_RANGE;
        if (rc == WARMCAL__EVAL_TOO_BIG)
            return H_TOO_LARGE;
        if (rc) /* tokens 0 is refused before; a table read is never malformed */
            return H_NO_ESTIMATE;
    }
    need = warmcal__add_sat(need, g->opts.reserve_bytes);
    /* free - need in 64-bit signed arithmetic without overflow */
    if (free_bytes >= need) {
        uint64_t h = free_bytes - need;
        return h > (uint64_t)INT64_MAX ? INT64_MAX : (int64_t)h;
    }
    uint64_t lack = need - free_bytes;
    return lack >= (uint64_t)INT64_MAX - 16 ? H_FLOOR : -(int64_t)lack;
}

/* The packed form both collectives reduce with one MIN: value * 2^16 +
 * rank. MIN of these is MINLOC over (value, rank) — the lowest value, ties to
 * the lowest rank — at half the bytes of MPI_LONG_INT pairs and with a
 * built-in operation on a built-in type (MPI's fastest reductions, and the
 * only thing a torch.distributed group can do). Real headrooms are exact to
 * the byte within +-64 TiB; beyond, they saturate there. */
static int64_t pack(int64_t h, int rank)
{
    int64_t base;
    if (h == H_INVALID)
        base = PACK_SENTINEL_BASE;
    else if (h == H_OUT_OF_RANGE)
        base = PACK_SENTINEL_BASE + (INT64_C(1) << RANK_BITS);
    else if (h == H_NO_ESTIMATE)
        base = PACK_SENTINEL_BASE + 2 * (INT64_C(1) << RANK_BITS);
    else if (h == H_TOO_LARGE)
        base = PACK_SENTINEL_BASE + 3 * (INT64_C(1) << RANK_BITS);
    else {
        int64_t c = h < -PACK_LIMIT ? -PACK_LIMIT : h >= PACK_LIMIT ? PACK_LIMIT - 1 : h;
        base = c * (INT64_C(1) << RANK_BITS);
    }
    return base + rank;
}

static void unpack(int64_t v, int64_t *h, int *rank)
{
    int64_t unit = INT64_C(1) << RANK_BITS;
    /* floor division, so negative values keep their rank in the low bits */
    int64_t q = v / unit, r = v % unit;
    if (r < 0) {
        q -= 1;
        r += unit;
    }
    *rank = (int)r;
    int64_t sentinel = PACK_SENTINEL_BASE / unit; /* = -2^47 */
    if (q == sentinel)
        *h = H_INVALID;
    else if (q == sentinel + 1)
        *h = H_OUT_OF_RANGE;
    else if (q == sentinel + 2)
        *h = H_NO_ESTIMATE;
    else if (q == sentinel + 3)
        *h = H_TOO_LARGE;
    else
        *h = q <= -PACK_LIMIT ? H_FLOOR : q;
}

/* A bounded text builder for decision texts. Skips come by the hundred in a
 * decision (a tight rank, a list that reaches past the calibrated range), and
 * snprintf cost a quarter of a microsecond each — more than the rest of the
 * decision's work for the shape. */
typedef struct {
    char *p, *end; /* end: the last byte, kept for the NUL */
} text_out;

static inline void put_n(text_out *t, const char *s, size_t n)
{
    size_t room = (size_t)(t->end - t->p);
    if (n <= room) {
        memcpy(t->p, s, n); /* a constant n for literals: a few moves */
        t->p += n;
    } else {
        memcpy(t->p, s, room);
        t->p += room;
    }
}

#define PUT(t, literal) put_n((t), (literal), sizeof(literal) - 1)

static void put(text_out *t, const char *s)
{
    put_n(t, s, strlen(s));
}

static void put_u64(text_out *t, uint64_t v)
{
    char digits[20], *d = digits + sizeof digits;
    do {
        *--d = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    put_n(t, d, (size_t)(digits + sizeof digits - d));
}

static void put_rank(text_out *t, int who)
{
    PUT(t, "rank ");
    put_u64(t, (uint64_t)(who < 0 ? 0 : who));
}

/* label and label_len: the shape's label ("context" for NULL) and its
 * length, measured once per run of equal labels by the caller. */
static void describe(char *text, size_t len, const warmcal_shape *s, const char *label,
                     size_t label_len, int64_t h, int who)
{
    if (h >= 0) { /* the common case */
        memcpy(text, "run", 4);
        return;
    }
    text_out t = {text, text + len - 1};
    PUT(&t, "skip: ");
    if (h == H_INVALID) {
        put_rank(&t, who);
        PUT(&t, " cannot run batch ");
        put_u64(&t, s->batch);
        PUT(&t, " (invalid batch)");
    } else if (h == H_OUT_OF_RANGE) {
        put_u64(&t, s->tokens);
        PUT(&t, " tokens is outside the calibrated range of ");
        put_rank(&t, who);
        PUT(&t, "'s ");
        put_n(&t, label, label_len);
        PUT(&t, " estimate");
    } else if (h == H_NO_ESTIMATE) {
        PUT(&t, "the table has no ");
        put_n(&t, label, label_len);
        PUT(&t, " estimate for ");
        put_rank(&t, who);
    } else if (h == H_TOO_LARGE) {
        put_rank(&t, who);
        PUT(&t, "'s ");
        put_n(&t, label, label_len);
        PUT(&t, " estimate at ");
        put_u64(&t, s->tokens);
        PUT(&t, " tokens does not fit in 64 bits");
    } else {
        char bytes[32];
        put_rank(&t, who);
        PUT(&t, " is short of ");
        if (h == H_FLOOR)
            PUT(&t, "64 TiB or more");
        else
            put(&t, warmcal_format_bytes((uint64_t)(-h), bytes, sizeof bytes));
        PUT(&t, " for ");
        put_u64(&t, s->tokens);
        PUT(&t, " tokens (");
        put_n(&t, label, label_len);
        PUT(&t, ")");
    }
    *t.p = '\0';
}

/* The call in progress (g->call_shapes, g->call_label) in words. */
static void call_words(const warmcal_gate *g, char *buf, size_t len)
{
    size_t n = g->call_shapes;
    if (g->call_label)
        snprintf(buf, len, "token budget (max_tokens) for %.64s", g->call_label);
    else
        snprintf(buf, len, "decision over %zu shape%s", n, n == 1 ? "" : "s");
}

/* What the reduced checks say, the same on every rank, so that every rank
 * takes the same path. First: did a rank fail to probe, or to take part at
 * all? */
static int check_failures(warmcal_gate *g, const int64_t *checks)
{
    int64_t e;
    int who;
    unpack(checks[4], &e, &who);
    if (e < 0) {
        int code = (int)e, own = who == g->rank;
        if (code == WARMCAL_E_UNSUPPORTED)
            return fail(g, code, "rank %d could not probe its free memory%s%s", who,
                        own ? ": " : "", own ? g->probe_text : "");
        if (own)
            return fail(g, code, "%s", g->probe_text);
        return fail(g, code, "rank %d could not take part in the %s (%s)", who,
                    g->call_label ? "token budget" : "decision", warmcal_strerror(code));
    }
    return WARMCAL_OK;
}

/* Then: the same table everywhere, and the same shape list? */
static int check_digests(warmcal_gate *g, const int64_t *checks)
{
    int64_t e[4];
    int er[4];
    for (int k = 0; k < 4; k++)
        unpack(checks[k], &e[k], &er[k]);
    if (e[0] != -e[1])
        return fail(g, WARMCAL_E_MISMATCH,
                    "ranks %d and %d loaded different tables (or need policies): every rank must "
                    "open the gate on the same table file",
                    er[0], er[1]);
    if (e[2] != -e[3])
        return g->call_label
                   ? fail(g, WARMCAL_E_MISMATCH,
                          "ranks %d and %d asked for token budgets of different labels (or one "
                          "decided shapes): every rank must ask about the same label",
                          er[2], er[3])
                   : fail(g, WARMCAL_E_MISMATCH,
                          "ranks %d and %d asked about different shape lists: every rank must "
                          "pass the same shapes in the same order",
                          er[2], er[3]);
    return WARMCAL_OK;
}

/* A count of the first collective in words: n shapes, or a token budget. */
static void count_words(char *buf, size_t len, int64_t count)
{
    if (count == BUDGET_COUNT)
        snprintf(buf, len, "a token budget");
    else
        snprintf(buf, len, "%" PRId64 " shape%s", count, count == 1 ? "" : "s");
}

/* Everything the first collective checks, from its reduced values (the same
 * on every rank, so every rank goes on or stops alike): a rank that failed
 * or could not probe, the same call everywhere (the count: least, and
 * greatest negated), the same table and shapes or label. */
static int check_agreement(warmcal_gate *g, const int64_t *res)
{
    int rc = check_failures(g, res + 2);
    if (rc)
        return rc;
    int64_t least, most;
    int least_rank, most_rank;
    unpack(res[0], &least, &least_rank);
    unpack(res[1], &most, &most_rank);
    if (least != -most) {
        char a[48], b[48];
        count_words(a, sizeof a, least);
        count_words(b, sizeof b, -most);
        return fail(g, WARMCAL_E_MISMATCH,
                    "rank %d asked about %s and rank %d about %s: every rank must make the same "
                    "call, with the same shapes in the same order",
                    least_rank, a, most_rank, b);
    }
    return check_digests(g, res + 2);
}

/* Decisions from the MIN-reduced packed values of n shapes, the same on
 * every rank since the values are. */
static void finish(const warmcal_shape *shapes, size_t n, const int64_t *res,
                   warmcal_decision *out)
{
    const char *last_label = NULL, *label = "context";
    size_t label_len = 7;
    int measured = 0;
    for (size_t i = 0; i < n; i++) {
        warmcal_decision *d = &out[i];
        int64_t h;
        int who;
        unpack(res[i], &h, &who);
        d->short_bytes = 0;
        d->min_headroom = h == H_FLOOR ? -PACK_LIMIT : h;
        d->run = h >= 0;
        d->blocking_rank = d->run ? -1 : who;
        d->reason = h == H_INVALID        ? WARMCAL_REASON_INVALID_BATCH
                    : h == H_OUT_OF_RANGE ? WARMCAL_REASON_OUT_OF_RANGE
                    : h == H_NO_ESTIMATE  ? WARMCAL_REASON_NO_ESTIMATE
                    : h == H_TOO_LARGE    ? WARMCAL_REASON_ESTIMATE_TOO_LARGE
                    : h < 0               ? WARMCAL_REASON_LOW_MEMORY
                                          : WARMCAL_REASON_RUN;
        if (d->reason == WARMCAL_REASON_LOW_MEMORY)
            d->short_bytes = h == H_FLOOR ? UINT64_MAX : (uint64_t)(-h);
        if (d->reason > WARMCAL_REASON_LOW_MEMORY)
            d->min_headroom = INT64_MIN;
        if (h < 0 && (!measured || shapes[i].label != last_label)) {
            measured = 1;
            last_label = shapes[i].label;
            label = last_label ? last_label : "context";
            label_len = strlen(label);
        }
        describe(d->text, sizeof d->text, &shapes[i], label, label_len, h, who);
    }
}

/* This rank's packed contribution, in pieces so that a decision can send
 * its first collective before all shapes are evaluated. */
typedef struct {
    uint64_t free_bytes;
    int probe_ok;
    entry_cache cache;
} encoder;

static void encode_start(warmcal_gate *g, encoder *en)
{
    memset(en, 0, sizeof *en);
    en->probe_ok = warmcal_gate_probe_free(g, &en->free_bytes) == WARMCAL_OK;
    if (!en->probe_ok)
        snprintf(g->probe_text, sizeof g->probe_text, "%s", g->text);
}

/* Shapes [from, to) into vals[from..to). */
static void encode_shapes(warmcal_gate *g, encoder *en, const warmcal_shape *shapes, size_t from,
                          size_t to, int64_t *vals)
{
    for (size_t i = from; i < to; i++)
        vals[i] = pack(en->probe_ok ? headroom(g, &shapes[i], en->free_bytes, &en->cache)
                                    : H_INVALID,
                       g->rank);
}

/* The EXTRA checks: table digest and its negation, so MIN sees both the
 * lowest and the highest; the same for the shape-list digest; 0, or the
 * code of this rank's failure to probe (or to take part at all). */
static void encode_checks(warmcal_gate *g, const encoder *en, const warmcal_shape *shapes,
                          size_t n, int64_t *checks)
{
    int64_t shape_digest = digest_of_shapes(shapes, n);
    int64_t unit = INT64_C(1) << RANK_BITS;
    checks[0] = g->table_digest * unit + g->rank;
    checks[1] = -g->table_digest * unit + g->rank;
    checks[2] = shape_digest * unit + g->rank;
    checks[3] = -shape_digest * unit + g->rank;
    checks[4] = (en->probe_ok ? 0 : WARMCAL_E_UNSUPPORTED) * unit + g->rank;
}

static int timed_out(warmcal_gate *g, const char *waiting_for)
{
    char call[128];
    call_words(g, call, sizeof call);
    g->broken = 1;
    return fail(g, WARMCAL_E_TIMEOUT,
                "%s timed out after %.1f s waiting for %s: a rank did not join; the communicator "
                "is unusable now (end the job, e.g. MPI_Abort)",
                call, g->opts.deadline_s, waiting_for);
}

static int collective_failed(warmcal_gate *g, int mpi_rc)
{
    char msg[MPI_MAX_ERROR_STRING] = "", call[128];
    int len = 0;
    MPI_Error_string(mpi_rc, msg, &len);
    call_words(g, call, sizeof call);
    g->broken = 1;
    return fail(g, WARMCAL_E_STATE, "the collective of the %s failed (%s); the communicator is "
                                    "unusable now",
                call, msg);
}

/* Wait for a posted collective until the deadline; 0, or the error (a
 * timeout or MPI's failure leaves the gate broken and the buffers to MPI). */
static int wait_for(warmcal_gate *g, MPI_Request *req, int mpi_rc, uint64_t deadline,
                    const char *what)
{
    if (mpi_rc == MPI_SUCCESS && !warmcal_mpi_wait(req, deadline, &mpi_rc))
        return timed_out(g, what);
    return mpi_rc == MPI_SUCCESS ? WARMCAL_OK : collective_failed(g, mpi_rc);
}

/* Post a collective of count values and wait for it until the deadline. */
static int reduce(warmcal_gate *g, const int64_t *in, int64_t *res, int count, uint64_t deadline,
                  const char *what)
{
    MPI_Request req;
    int mpi_rc = MPI_Iallreduce(in, res, count, MPI_INT64_T, MPI_MIN, g->comm, &req);
    return wait_for(g, &req, mpi_rc, deadline, what);
}

/* The first collective's count values: the count (least) and its negation
 * (greatest), so that one MIN finds both. */
static void encode_count(const warmcal_gate *g, int64_t count, int64_t *vals)
{
    int64_t unit = INT64_C(1) << RANK_BITS;
    vals[0] = count * unit + g->rank;
    vals[1] = -count * unit + g->rank;
}

/* Whether g can take a collective call now (every rank answers alike: open
 * agrees, and a broken collective broke it everywhere). local_way: what a
 * local gate calls instead. */
static int check_collective_gate(warmcal_gate *g, const char *call, const char *local_way)
{
    if (g->local)
        return fail(g, WARMCAL_E_STATE, "%s: a local gate goes through %s and the caller's "
                                        "collective",
                    call, local_way);
    if (!g->opened)
        return fail(g, WARMCAL_E_STATE, "%s: the gate did not open", call);
    if (g->broken)
        return fail(g, WARMCAL_E_STATE, "%s: an earlier collective of this gate failed; the "
                                        "communicator is unusable",
                    call);
    return WARMCAL_OK;
}

/* This rank cannot decide (bad arguments, out of memory) but still takes
 * part in the first collective, flagged, so that every rank fails at once
 * instead of waiting out the deadline for it. */
static int take_part_failed(warmcal_gate *g, int code, const char *why, uint64_t deadline)
{
    snprintf(g->probe_text, sizeof g->probe_text, "%s", why);
    int64_t unit = INT64_C(1) << RANK_BITS, *vals = g->spare, *res = g->spare + FIRST;
    for (size_t i = 0; i < FIRST; i++)
        vals[i] = INT64_MAX;
    encode_count(g, 0, vals);
    vals[2 + 4] = (int64_t)code * unit + g->rank;
    int rc = reduce(g, vals, res, FIRST, deadline, "the other ranks");
    if (rc)
        return rc;
    rc = check_failures(g, res + 2);
    return rc ? rc : fail(g, code, "%s", why); /* never 0: this rank's flag is in res */
}

int warmcal_gate_decide(warmcal_gate *g, const warmcal_shape *shapes, size_t n, warmcal_decision *out)
{
    if (!g)
        return WARMCAL_E_INVAL;
    int rc = check_collective_gate(g, "decide", "warmcal_gate_encode/decode");
    if (rc)
        return rc;
    g->call_shapes = n;
    g->call_label = NULL;
    uint64_t deadline = warmcal_deadline_after(g->opts.deadline_s);
    if ((n && (!shapes || !out)) || n > (size_t)INT_MAX - FIRST)
        return take_part_failed(g, WARMCAL_E_INVAL, "decide: bad shapes or decisions array",
                                deadline);
    char why[96];
    if (zero_tokens(shapes, n, "decide", why, sizeof why))
        return take_part_failed(g, WARMCAL_E_INVAL, why, deadline);
    /* [count, -count, EXTRA checks, shapes...], padded to at least FIRST */
    size_t total = HEAD + (n > FIRST_SHAPES ? n : FIRST_SHAPES);
    /* one block: on a timeout MPI may still write any of it, so all of it stays */
    int64_t *vals = malloc(2 * total * sizeof *vals);
    if (!vals)
        return take_part_failed(g, WARMCAL_E_NOMEM, "decide: out of memory", deadline);
    int64_t *res = vals + total;

    /* The first collective always has FIRST values, whatever n: MPI
     * collectives whose counts differ between ranks are erroneous (Open MPI
     * aborted the job or crashed when lists had different lengths). It
     * carries every rank's count (least, and greatest negated), the checks
     * and the first FIRST_SHAPES shapes, padded with the MIN's identity: a
     * short list is decided in it alone. A longer one, its count now agreed,
     * goes on in a second collective, evaluated while the first runs. */
    encode_count(g, (int64_t)n, vals);
    encoder en;
    encode_start(g, &en);
    encode_checks(g, &en, shapes, n, vals + 2);
    size_t first = n < FIRST_SHAPES ? n : FIRST_SHAPES;
    encode_shapes(g, &en, shapes, 0, first, vals + HEAD);
    for (size_t i = HEAD + first; i < FIRST; i++)
        vals[i] = INT64_MAX;
    MPI_Request req;
    int mpi_rc = MPI_Iallreduce(vals, res, FIRST, MPI_INT64_T, MPI_MIN, g->comm, &req);
    if (mpi_rc != MPI_SUCCESS) {
        free(vals);
        return collective_failed(g, mpi_rc);
    }
    encode_shapes(g, &en, shapes, first, n, vals + HEAD);
    /* on failure the buffers are kept: their state is unknown */
    if ((rc = wait_for(g, &req, mpi_rc, deadline, "the decision")))
        return rc;
    rc = check_agreement(g, res);
    if (rc == WARMCAL_OK && n > FIRST_SHAPES) {
        rc = reduce(g, vals + FIRST, res + FIRST, (int)(n - FIRST_SHAPES), deadline,
                    "the rest of the decision");
        if (rc)
            return rc; /* buffers kept: MPI may still write them */
    }
    if (rc == WARMCAL_OK) {
        finish(shapes, n, res + HEAD, out);
        g->code = 0;
        g->text[0] = '\0';
    }
    free(vals);
    return rc;
}

size_t warmcal_gate_encoded_count(size_t n)
{
    return n + EXTRA;
}

/* Whether g may encode or decode (a local gate that opened). */
static int check_local_gate(warmcal_gate *g, const char *call)
{
    if (!g->local)
        return fail(g, WARMCAL_E_STATE, "%s: only a local gate encodes and decodes; this one "
                                        "reduces over its communicator",
                    call);
    if (!g->opened)
        return fail(g, WARMCAL_E_STATE, "%s: the gate did not open", call);
    return WARMCAL_OK;
}

int warmcal_gate_encode(warmcal_gate *g, const warmcal_shape *shapes, size_t n, int64_t *vals)
{
    if (!g)
        return WARMCAL_E_INVAL;
    int rc = check_local_gate(g, "encode");
    if (rc)
        return rc;
    if ((n && !shapes) || !vals)
        return fail(g, WARMCAL_E_INVAL, "encode: bad shapes or values array");
    char why[96];
    if (zero_tokens(shapes, n, "encode", why, sizeof why))
        return fail(g, WARMCAL_E_INVAL, "%s", why);
    encoder en;
    encode_start(g, &en);
    encode_shapes(g, &en, shapes, 0, n, vals);
    encode_checks(g, &en, shapes, n, vals + n);
    /* decode describes these shapes as decide would */
    warmcal_shape *keep = realloc(g->encoded, (n ? n : 1) * sizeof *keep);
    if (keep)
        g->encoded = keep;
    char(*labels)[WARMCAL_TABLE_LABEL_LEN] = realloc(g->encoded_labels, (n ? n : 1) * sizeof *labels);
    if (labels)
        g->encoded_labels = labels;
    g->n_encoded = keep && labels ? n : 0;
    for (size_t i = 0; i < g->n_encoded; i++) {
        snprintf(labels[i], sizeof labels[i], "%s", shapes[i].label ? shapes[i].label : "context");
        keep[i] = shapes[i];
        keep[i].label = labels[i];
    }
    return WARMCAL_OK;
}

int warmcal_gate_decode(warmcal_gate *g, const int64_t *vals, size_t n, warmcal_decision *out)
{
    if (!g)
        return WARMCAL_E_INVAL;
    int rc = check_local_gate(g, "decode");
    if (rc)
        return rc;
    if (!vals || (n && !out))
        return fail(g, WARMCAL_E_INVAL, "decode: bad values or decisions array");
    /* the shapes come from the last encode when it was for this many */
    warmcal_shape *shapes = calloc(n ? n : 1, sizeof *shapes);
    if (!shapes)
        return fail(g, WARMCAL_E_NOMEM, "decode: out of memory");
    if (g->n_encoded == n && n)
        memcpy(shapes, g->encoded, n * sizeof *shapes);
    g->call_shapes = n;
    g->call_label = NULL;
    rc = check_failures(g, vals + n);
    if (rc == WARMCAL_OK)
        rc = check_digests(g, vals + n);
    if (rc == WARMCAL_OK) {
        finish(shapes, n, vals, out);
        g->code = 0;
        g->text[0] = '\0';
    }
    free(shapes);
    return rc;
}

/* Token budgets (warmcal_gate_max_tokens): this rank's largest pass by
 * warmcal_table_max_tokens, packed as (tokens, rank) like a headroom, so one
 * MIN gives the smallest budget and, on ties, the lowest rank. */

/* The constant need policy's budget: every pass up to constant_min_tokens
 * runs unchecked, above it tokens x bytes per token must fit (headroom's
 * rule, solved for tokens). */
static uint64_t constant_budget(const warmcal_gate *g, uint64_t free_bytes, uint64_t reserve)
{
    if (reserve > free_bytes)
        return 0;
    uint64_t room = free_bytes - reserve;
    uint64_t t = room == UINT64_MAX ? WARMCAL_TABLE_TOKENS_MAX
                                    : room / g->opts.constant_bytes_per_token;
    if (t < g->opts.constant_min_tokens)
        t = g->opts.constant_min_tokens;
    return t < WARMCAL_TABLE_TOKENS_MAX ? t : WARMCAL_TABLE_TOKENS_MAX;
}

/* This rank's budget for label, packed (H_NO_ESTIMATE when the table has
 * no entry for it), and the EXTRA checks into checks: the label stands in
 * for the shape list, as a list of one shape of 0 tokens, which no decision
 * can have. */
static void encode_budget(warmcal_gate *g, const char *label, uint64_t reserve, int64_t *value,
                          int64_t *checks)
{
    encoder en;
    encode_start(g, &en);
    /* a failed probe is flagged in the checks, which every rank reads first */
    uint64_t r = warmcal__add_sat(g->opts.reserve_bytes, reserve), t = 0;
    int64_t budget = 0;
    int failed = WARMCAL_OK; /* a failure other than a missing estimate */
    warmcal_error err;
    warmcal_error_clear(&err);
    if (en.probe_ok && g->opts.need_policy == WARMCAL_NEED_CONSTANT) {
        budget = (int64_t)constant_budget(g, en.free_bytes, r);
    } else if (en.probe_ok) {
        int rc = warmcal_table_max_tokens(g->table, g->rank, label, 1, g->opts.above_range,
                                          en.free_bytes, r, &t, NULL, &err);
        if (rc == WARMCAL_OK)
            budget = (int64_t)t; /* at most 2^40: exact in the packed form */
        else if (rc == WARMCAL_E_FIELD)
            budget = H_NO_ESTIMATE; /* no entry serves this rank for the label */
        else
            failed = rc;
    }
    *value = pack(budget, g->rank);
    warmcal_shape as_shape = {.tokens = 0, .batch = 0, .label = label, .batch_valid = 1};
    encode_checks(g, &en, &as_shape, 1, checks);
    if (failed && en.probe_ok) {
        /* flagged like a failure to take part: every rank fails at once,
         * and this one says why */
        char text[sizeof g->probe_text];
        snprintf(g->probe_text, sizeof g->probe_text, "max_tokens: %s",
                 warmcal_error_format(&err, text, sizeof text));
        checks[4] = (int64_t)failed * (INT64_C(1) << RANK_BITS) + g->rank;
    }
}

/* The budget from the MIN-reduced packed value, the same on every rank. */
static int decode_budget(warmcal_gate *g, int64_t reduced, const char *label, uint64_t *tokens,
                         int *limiting_rank)
{
    int64_t h;
    unpack(reduced, &h, limiting_rank);
    *tokens = h > 0 ? (uint64_t)h : 0;
    if (h == H_NO_ESTIMATE)
        return fail(g, WARMCAL_E_FIELD, "max_tokens: the table has no %s estimate for rank %d",
                    label, *limiting_rank);
    g->code = 0;
    g->text[0] = '\0';
    return WARMCAL_OK;
}

int warmcal_gate_max_tokens(warmcal_gate *g, const char *label, uint64_t reserve,
                            uint64_t *tokens, int *limiting_rank)
{
    if (!g)
        return WARMCAL_E_INVAL;
    int rc = check_collective_gate(g, "max_tokens", "warmcal_gate_max_tokens_encode/decode");
    if (rc)
        return rc;
    label = label ? label : "context";
    g->call_label = label;
    uint64_t deadline = warmcal_deadline_after(g->opts.deadline_s);
    if (!tokens || !limiting_rank)
        return take_part_failed(g, WARMCAL_E_INVAL,
                                "max_tokens: no place for the result (tokens or limiting_rank "
                                "is NULL)",
                                deadline);
    /* decide's first collective, in the gate's spare block (never freed
     * after a timeout, as MPI may still write it) */
    int64_t *vals = g->spare, *res = g->spare + FIRST;
    encode_count(g, BUDGET_COUNT, vals);
    encode_budget(g, label, reserve, vals + HEAD, vals + 2);
    for (size_t i = HEAD + 1; i < FIRST; i++)
        vals[i] = INT64_MAX;
    if ((rc = reduce(g, vals, res, FIRST, deadline, "the other ranks' budgets")))
        return rc;
    if ((rc = check_agreement(g, res)))
        return rc;
    return decode_budget(g, res[HEAD], label, tokens, limiting_rank);
}

size_t warmcal_gate_max_tokens_encoded_count(void)
{
    return 1 + EXTRA;
}

int warmcal_gate_max_tokens_encode(warmcal_gate *g, const char *label, uint64_t reserve,
                                   int64_t *vals)
{
    if (!g)
        return WARMCAL_E_INVAL;
    int rc = check_local_gate(g, "max_tokens_encode");
    if (rc)
        return rc;
    if (!vals)
        return fail(g, WARMCAL_E_INVAL, "max_tokens_encode: no values array");
    label = label ? label : "context";
    snprintf(g->budget_label, sizeof g->budget_label, "%s", label); /* for decode's words */
    encode_budget(g, label, reserve, vals, vals + 1);
    return WARMCAL_OK;
}

int warmcal_gate_max_tokens_decode(warmcal_gate *g, const int64_t *reduced, uint64_t *tokens,
                                   int *limiting_rank)
{
    if (!g)
        return WARMCAL_E_INVAL;
    int rc = check_local_gate(g, "max_tokens_decode");
    if (rc)
        return rc;
    if (!reduced || !tokens || !limiting_rank)
        return fail(g, WARMCAL_E_INVAL, "max_tokens_decode: bad values or result pointers");
    g->call_label = g->budget_label;
    if ((rc = check_failures(g, reduced + 1)) || (rc = check_digests(g, reduced + 1)))
        return rc;
    return decode_budget(g, reduced[0], g->budget_label, tokens, limiting_rank);
}

const char *warmcal_gate_last_error(const warmcal_gate *g)
{
    return g ? g->text : "no gate (out of memory)";
}

int warmcal_gate_last_code(const warmcal_gate *g)
{
    return g ? g->code : WARMCAL_E_NOMEM;
}

void warmcal_gate_close(warmcal_gate *g)
{
    if (!g)
        return;
    if (g->comm != MPI_COMM_NULL && !g->broken) {
        int finalized = 0;
        MPI_Finalized(&finalized);
        if (!finalized)
            MPI_Comm_free(&g->comm);
    }
    if (!g->broken) { /* else MPI may still write them */
        free(g->spare);
        free(g->exchange);
    }
    warmcal_table_free(g->table);
    free(g->encoded);
    free(g->encoded_labels);
    free(g);
}

const char *warmcal_reason_name(int reason)
{
    switch (reason) {
    case WARMCAL_REASON_RUN: return "run";
    case WARMCAL_REASON_LOW_MEMORY: return "low memory";
    case WARMCAL_REASON_INVALID_BATCH: return "invalid batch";
    case WARMCAL_REASON_OUT_OF_RANGE: return "outside the calibrated range";
    case WARMCAL_REASON_NO_ESTIMATE: return "no estimate";
    case WARMCAL_REASON_ESTIMATE_TOO_LARGE: return "estimate too large";
    default: return "?";
    }
}
