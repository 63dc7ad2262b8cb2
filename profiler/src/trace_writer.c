/* HDF5 trace writer (warmcal/trace.h, DESIGN.md "Trace file"): one file per
 * rank; after every phase the /phases row and the buffered /events are
 * written and the file is flushed, so a process killed between phases leaves
 * a file that reads up to its last finished phase.
 *
 * String attributes are fixed-length UTF-8 strings exactly as long as the
 * text plus its terminating NUL (H5T_STR_NULLTERM); the reader also accepts
 * variable-length ones. The file keeps HDF5's default (earliest) format: its
 * superblock has no SWMR status flags, so a file whose writer was killed
 * opens in every reader without `h5clear`. */
#define _POSIX_C_SOURCE 200809L
#include "trace_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "warmcal/text.h"

/* Rows per chunk: /phases grows by one row per phase (tens to a few hundred
 * per run); /events by thousands, and compresses well. */
#define PHASE_CHUNK_ROWS 64
#define EVENT_CHUNK_ROWS 4096
#define EVENT_DEFLATE_LEVEL 4

const warmcal_col warmcal__phase_cols[] = {
    {"label", WARMCAL_COL_LABEL, offsetof(warmcal_phase, label), 0},
    {"tokens", WARMCAL_COL_U64, offsetof(warmcal_phase, tokens), 0},
    {"batch", WARMCAL_COL_U32, offsetof(warmcal_phase, batch), 0},
    {"begin_ns", WARMCAL_COL_U64, offsetof(warmcal_phase, begin_ns), 0},
    {"end_ns", WARMCAL_COL_U64, offsetof(warmcal_phase, end_ns), 0},
    {"live_begin", WARMCAL_COL_U64, offsetof(warmcal_phase, live_begin), 0},
    {"live_peak", WARMCAL_COL_U64, offsetof(warmcal_phase, live_peak), 0},
    {"live_end", WARMCAL_COL_U64, offsetof(warmcal_phase, live_end), 0},
    {"device_free_begin", WARMCAL_COL_U64, offsetof(warmcal_phase, device_free_begin), 0},
    {"device_free_end", WARMCAL_COL_U64, offsetof(warmcal_phase, device_free_end), 0},
    {"outcome", WARMCAL_COL_U8, offsetof(warmcal_phase, outcome), 0},
    {"failed_alloc_bytes", WARMCAL_COL_U64, offsetof(warmcal_phase, failed_alloc_bytes), 0},
    {"pinned_peak", WARMCAL_COL_U64, offsetof(warmcal_phase, pinned_peak), 1},
    {"anomalies", WARMCAL_COL_U32, offsetof(warmcal_phase, anomalies), 1},
    {"lower_bound", WARMCAL_COL_U32, offsetof(warmcal_phase, lower_bound), 1},
    {"reserved_begin", WARMCAL_COL_U64, offsetof(warmcal_phase, reserved_begin), 1},
    {"reserved_end", WARMCAL_COL_U64, offsetof(warmcal_phase, reserved_end), 1},
};
const size_t warmcal__n_phase_cols = sizeof warmcal__phase_cols / sizeof warmcal__phase_cols[0];

/* The /events fields in file order. */
static const warmcal_col event_cols[] = {
    {"time_ns", WARMCAL_COL_U64, offsetof(warmcal_event, time_ns), 0},
    {"kind", WARMCAL_COL_U8, offsetof(warmcal_event, kind), 0},
    {"mem_kind", WARMCAL_COL_U8, offsetof(warmcal_event, mem_kind), 0},
    {"bytes", WARMCAL_COL_U64, offsetof(warmcal_event, bytes), 0},
    {"address", WARMCAL_COL_U64, offsetof(warmcal_event, address), 0},
    {"phase", WARMCAL_COL_I64, offsetof(warmcal_event, phase), 0},
};
#define N_EVENT_COLS (sizeof event_cols / sizeof event_cols[0])

static const char *const known_sources[] = {"cupti", "torch", "simulated", "import"};

struct warmcal_trace_writer {
    char *path;
    hid_t file;
    hid_t phases, phase_ftype, phase_mtype;
    hid_t events, event_ftype, event_mtype; /* H5I_INVALID_HID without a timeline */
    hsize_t n_phases, n_events;
    warmcal_event *pending; /* events buffered since the last phase */
    size_t n_pending, cap_pending;
};

const char *warmcal_outcome_name(int outcome)
{
    switch (outcome) {
    case WARMCAL_OUTCOME_OK: return "ok";
    case WARMCAL_OUTCOME_OOM: return "oom";
    case WARMCAL_OUTCOME_ABORTED: return "aborted";
    default: return "?";
    }
}

int warmcal__source_known(const char *source)
{
    for (size_t i = 0; source && i < sizeof known_sources / sizeof known_sources[0]; i++)
        if (strcmp(source, known_sources[i]) == 0)
            return 1;
    return 0;
}

int warmcal__check_phase(const warmcal_phase *p, size_t index, const char *source, int code,
                         warmcal_error *err)
{
    char where[64];
    if (p->tokens < 1 || p->tokens > WARMCAL_TRACE_TOKENS_MAX) {
        snprintf(where, sizeof where, "phases[%zu].tokens", index);
        return warmcal_error_set(err, code, source, where,
                                 "expected 1 to %llu (2^40), found %llu",
                                 (unsigned long long)WARMCAL_TRACE_TOKENS_MAX,
                                 (unsigned long long)p->tokens);
    }
    if (!warmcal_utf8_valid(p->label)) {
        snprintf(where, sizeof where, "phases[%zu].label", index);
        return warmcal_error_set(err, code, source, where, "not valid UTF-8");
    }
    if (p->outcome > WARMCAL_OUTCOME_ABORTED) {
        snprintf(where, sizeof where, "phases[%zu].outcome", index);
        return warmcal_error_set(err, code, source, where,
                                 "expected 0 (ok), 1 (oom) or 2 (aborted), found %u",
                                 (unsigned)p->outcome);
    }
    if (p->end_ns < p->begin_ns) {
        snprintf(where, sizeof where, "phases[%zu].end_ns", index);
        return warmcal_error_set(err, code, source, where,
                                 "expected >= begin_ns (%llu), found %llu",
                                 (unsigned long long)p->begin_ns, (unsigned long long)p->end_ns);
    }
    if (p->live_peak < p->live_begin || p->live_peak < p->live_end) {
        int vs_begin = p->live_peak < p->live_begin;
        snprintf(where, sizeof where, "phases[%zu].live_peak", index);
        return warmcal_error_set(err, code, source, where, "expected >= %s (%llu), found %llu",
                                 vs_begin ? "live_begin" : "live_end",
                                 (unsigned long long)(vs_begin ? p->live_begin : p->live_end),
                                 (unsigned long long)p->live_peak);
    }
    return WARMCAL_OK;
}

#define CAUSE_LEN 160

/* HDF5's innermost error description (the one that says what really failed,
 * e.g. "unable to open file: ... errno = 13"). */
static herr_t keep_innermost(unsigned n, const H5E_error2_t *e, void *buf)
{
    if (n == 0 && e->desc)
        snprintf(buf, CAUSE_LEN, "%s", e->desc);
    return 0;
}

static const char *h5_cause(char buf[CAUSE_LEN])
{
    buf[0] = '\0';
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, keep_innermost, buf);
    return buf[0] ? buf : "HDF5 gave no reason";
}

static int io_error(warmcal_trace_writer *w, const char *where, const char *what, warmcal_error *err)
{
    char cause[CAUSE_LEN];
    return warmcal_error_set(err, WARMCAL_E_IO, w->path, where, "%s (%s)", what, h5_cause(cause));
}

static void close_id(hid_t *id, herr_t (*closer)(hid_t))
{
    if (*id >= 0)
        closer(*id);
    *id = H5I_INVALID_HID;
}

/* Fixed-length strings: `size` bytes including room for the padding. */
static hid_t string_type(size_t size, H5T_str_t pad)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0)
        return t;
    if (H5Tset_size(t, size) < 0 || H5Tset_strpad(t, pad) < 0 ||
        H5Tset_cset(t, H5T_CSET_UTF8) < 0) {
        H5Tclose(t);
        return H5I_INVALID_HID;
    }
    return t;
}

/* The file (little-endian, standard) or memory (native) type of a column.
 * Labels get a fresh string type the caller closes; the rest are library
 * constants. */
static hid_t col_type(warmcal_col_kind kind, int file)
{
    switch (kind) {
    case WARMCAL_COL_LABEL: return string_type(WARMCAL_LABEL_LEN, H5T_STR_NULLPAD);
    case WARMCAL_COL_U8: return file ? H5T_STD_U8LE : H5T_NATIVE_UINT8;
    case WARMCAL_COL_U32: return file ? H5T_STD_U32LE : H5T_NATIVE_UINT32;
    case WARMCAL_COL_U64: return file ? H5T_STD_U64LE : H5T_NATIVE_UINT64;
    case WARMCAL_COL_I64: return file ? H5T_STD_I64LE : H5T_NATIVE_INT64;
    }
    return H5I_INVALID_HID;
}

/* A compound of `cols` laid out like their C struct of size struct_size; for
 * the file, packed in order (H5Tpack drops the room left for the padding). */
static hid_t compound_type(const warmcal_col *cols, size_t n, size_t struct_size, int file)
{
    hid_t c = H5Tcreate(H5T_COMPOUND, struct_size);
    size_t offset = 0;
    for (size_t i = 0; c >= 0 && i < n; i++) {
        hid_t t = col_type(cols[i].kind, file);
        herr_t rc = t < 0 ? -1 : H5Tinsert(c, cols[i].name, file ? offset : cols[i].offset, t);
        offset += t < 0 ? 0 : H5Tget_size(t);
        if (cols[i].kind == WARMCAL_COL_LABEL && t >= 0)
            H5Tclose(t);
        if (rc < 0) {
            H5Tclose(c);
            c = H5I_INVALID_HID;
        }
    }
    if (c >= 0 && file && H5Tpack(c) < 0) {
        H5Tclose(c);
        c = H5I_INVALID_HID;
    }
    return c;
}

static int write_attr(hid_t file, const char *name, hid_t type, const void *value)
{
    hid_t space = H5Screate(H5S_SCALAR);
    hid_t attr = space < 0 ? H5I_INVALID_HID
                           : H5Acreate2(file, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = attr < 0 ? -1 : H5Awrite(attr, type, value);
    if (attr >= 0)
        H5Aclose(attr);
    if (space >= 0)
        H5Sclose(space);
    return rc < 0 ? -1 : 0;
}

static int write_int_attr(hid_t file, const char *name, int value)
{
    int32_t v = value;
    return write_attr(file, name, H5T_STD_I32LE, &v) < 0 ? -1 : 0;
}

static int write_string_attr(hid_t file, const char *name, const char *value)
{
    hid_t t = string_type(strlen(value) + 1, H5T_STR_NULLTERM);
    int rc = t < 0 ? -1 : write_attr(file, name, t, value);
    if (t >= 0)
        H5Tclose(t);
    return rc;
}

/* Root attributes in DESIGN.md's order, then the optional ones that are set.
 * Returns the name of the attribute that failed, or NULL. */
static const char *write_run_attrs(hid_t file, const warmcal_trace_info *info)
{
    uint64_t total = info->gpu_total_bytes;
    if (write_int_attr(file, "warmcal_schema", WARMCAL_TRACE_SCHEMA) < 0)
        return "warmcal_schema";
    if (write_int_attr(file, "rank", info->rank) < 0)
        return "rank";
    if (write_int_attr(file, "world_size", info->world_size) < 0)
        return "world_size";
    if (write_string_attr(file, "model", info->model) < 0)
        return "model";
    if (write_string_attr(file, "source", info->source) < 0)
        return "source";
    if (write_string_attr(file, "gpu_name", info->gpu_name) < 0)
        return "gpu_name";
    if (write_attr(file, "gpu_total_bytes", H5T_STD_U64LE, &total) < 0)
        return "gpu_total_bytes";
    if (write_int_attr(file, "complete", 0) < 0)
        return "complete";
    if (info->tp > 0 && write_int_attr(file, "tp", info->tp) < 0)
        return "tp";
    if (info->pp > 0 && write_int_attr(file, "pp", info->pp) < 0)
        return "pp";
    const struct {
        const char *name, *value;
    } optional[] = {
        {"host", info->host},
        {"start_time", info->start_time},
        {"tool_version", info->tool_version},
        {"driver_version", info->driver_version},
        {"cuda_version", info->cuda_version},
    };
    for (size_t i = 0; i < sizeof optional / sizeof optional[0]; i++)
        if (optional[i].value && write_string_attr(file, optional[i].name, optional[i].value) < 0)
            return optional[i].name;
    return NULL;
}

/* An empty, extendable, chunked 1-D table. */
static hid_t create_table(hid_t file, const char *name, hid_t ftype, hsize_t chunk, int compress)
{
    hsize_t dims = 0, maxdims = H5S_UNLIMITED;
    hid_t space = H5Screate_simple(1, &dims, &maxdims);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hid_t d = H5I_INVALID_HID;
    if (space >= 0 && dcpl >= 0 && H5Pset_chunk(dcpl, 1, &chunk) >= 0 &&
        (!compress || (H5Pset_shuffle(dcpl) >= 0 && H5Pset_deflate(dcpl, EVENT_DEFLATE_LEVEL) >= 0)))
        d = H5Dcreate2(file, name, ftype, space, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (dcpl >= 0)
        H5Pclose(dcpl);
    if (space >= 0)
        H5Sclose(space);
    return d;
}

/* Append `count` rows to a table holding *rows rows. On failure the table is
 * shrunk back so no half-written row stays behind. */
static int append_rows(hid_t d, hid_t mtype, const void *buf, hsize_t count, hsize_t *rows)
{
    hsize_t start = *rows, total = *rows + count;
    if (H5Dset_extent(d, &total) < 0)
        return -1;
    hid_t fspace = H5Dget_space(d);
    hid_t mspace = H5Screate_simple(1, &count, NULL);
    herr_t rc = -1;
    if (fspace >= 0 && mspace >= 0 &&
        H5Sselect_hyperslab(fspace, H5S_SELECT_SET, &start, NULL, &count, NULL) >= 0)
        rc = H5Dwrite(d, mtype, mspace, fspace, H5P_DEFAULT, buf);
    if (mspace >= 0)
        H5Sclose(mspace);
    if (fspace >= 0)
        H5Sclose(fspace);
    if (rc < 0) {
        H5Dset_extent(d, &start);
        return -1;
    }
    *rows = total;
    return 0;
}

static int write_pending_events(warmcal_trace_writer *w, warmcal_error *err)
{
    if (w->n_pending == 0)
        return WARMCAL_OK;
    if (append_rows(w->events, w->event_mtype, w->pending, w->n_pending, &w->n_events) < 0)
        return io_error(w, "events", "cannot append events", err);
    w->n_pending = 0;
    return WARMCAL_OK;
}

/* Close every HDF5 object but the file. */
static void close_objects(warmcal_trace_writer *w)
{
    close_id(&w->phases, H5Dclose);
    close_id(&w->events, H5Dclose);
    close_id(&w->phase_ftype, H5Tclose);
    close_id(&w->phase_mtype, H5Tclose);
    close_id(&w->event_ftype, H5Tclose);
    close_id(&w->event_mtype, H5Tclose);
}

static void release(warmcal_trace_writer *w)
{
    close_objects(w);
    close_id(&w->file, H5Fclose);
    free(w->pending);
    free(w->path);
    free(w);
}

static int check_info(const char *path, const warmcal_trace_info *info, warmcal_error *err)
{
    if (!info)
        return warmcal_error_set(err, WARMCAL_E_INVAL, path, NULL, "no run description given");
    if (info->world_size < 1)
        return warmcal_error_set(err, WARMCAL_E_INVAL, path, "world_size",
                                 "expected >= 1, found %d", info->world_size);
    if (info->rank < 0 || info->rank >= info->world_size)
        return warmcal_error_set(err, WARMCAL_E_INVAL, path, "rank",
                                 "expected 0 <= rank < world_size (%d), found %d",
                                 info->world_size, info->rank);
    if (!info->model)
        return warmcal_error_set(err, WARMCAL_E_INVAL, path, "model", "missing");
    if (!info->gpu_name)
        return warmcal_error_set(err, WARMCAL_E_INVAL, path, "gpu_name", "missing");
    /* the attributes are stored as UTF-8 and the reader refuses anything else */
    if (!warmcal_utf8_valid(info->model) || !warmcal_utf8_valid(info->gpu_name))
        return warmcal_error_set(err, WARMCAL_E_INVAL, path,
                                 warmcal_utf8_valid(info->model) ? "gpu_name" : "model",
                                 "not valid UTF-8");
    if (!warmcal__source_known(info->source))
        return warmcal_error_set(err, WARMCAL_E_INVAL, path, "source",
                                 "expected cupti, torch, simulated or import, found '%s'",
                                 info->source ? info->source : "(none)");
    if (info->tp < 0 || info->pp < 0)
        return warmcal_error_set(err, WARMCAL_E_INVAL, path, info->tp < 0 ? "tp" : "pp",
                                 "expected >= 0 (0: not written), found %d",
                                 info->tp < 0 ? info->tp : info->pp);
    return WARMCAL_OK;
}

static int open_file(warmcal_trace_writer *w, const warmcal_trace_info *info, int with_events,
                     warmcal_error *err)
{
    w->file = H5Fcreate(w->path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (w->file < 0)
        return io_error(w, NULL, "cannot create the trace file", err);
    const char *failed = write_run_attrs(w->file, info);
    if (failed) {
        char where[64];
        snprintf(where, sizeof where, "attribute '%s'", failed);
        return io_error(w, where, "cannot write", err);
    }
    w->phase_ftype = compound_type(warmcal__phase_cols, warmcal__n_phase_cols,
                                   sizeof(warmcal_phase), 1);
    w->phase_mtype = compound_type(warmcal__phase_cols, warmcal__n_phase_cols,
                                   sizeof(warmcal_phase), 0);
    if (w->phase_ftype < 0 || w->phase_mtype < 0)
        return io_error(w, "phases", "cannot build the row type", err);
    w->phases = create_table(w->file, "phases", w->phase_ftype, PHASE_CHUNK_ROWS, 0);
    if (w->phases < 0)
        return io_error(w, "phases", "cannot create the dataset", err);
    if (with_events) {
        w->event_ftype = compound_type(event_cols, N_EVENT_COLS, sizeof(warmcal_event), 1);
        w->event_mtype = compound_type(event_cols, N_EVENT_COLS, sizeof(warmcal_event), 0);
        if (w->event_ftype < 0 || w->event_mtype < 0)
            return io_error(w, "events", "cannot build the row type", err);
        w->events = create_table(w->file, "events", w->event_ftype, EVENT_CHUNK_ROWS, 1);
        if (w->events < 0)
            return io_error(w, "events", "cannot create the dataset", err);
    }
    /* A crash before the first phase still leaves a readable, empty trace. */
    if (H5Fflush(w->file, H5F_SCOPE_GLOBAL) < 0)
        return io_error(w, NULL, "cannot flush", err);
    return WARMCAL_OK;
}

int warmcal_trace_writer_open(warmcal_trace_writer **out, const char *path,
                              const warmcal_trace_info *info, int with_events, warmcal_error *err)
{
    if (out)
        *out = NULL;
    if (!out || !path || !path[0])
        return warmcal_error_set(err, WARMCAL_E_INVAL, path, NULL, "no output path given");
    int rc = check_info(path, info, err);
    if (rc)
        return rc;
    warmcal_trace_writer *w = calloc(1, sizeof *w);
    if (!w || !(w->path = strdup(path))) {
        free(w);
        return warmcal_error_set(err, WARMCAL_E_NOMEM, path, NULL, "cannot allocate the writer");
    }
    w->file = w->phases = w->phase_ftype = w->phase_mtype = H5I_INVALID_HID;
    w->events = w->event_ftype = w->event_mtype = H5I_INVALID_HID;

    warmcal_h5_quiet q;
    warmcal__h5_quiet_begin(&q);
    rc = open_file(w, info, with_events, err);
    if (rc)
        release(w);
    warmcal__h5_quiet_end(&q);
    if (rc)
        return rc;
    *out = w;
    return WARMCAL_OK;
}

int warmcal_trace_writer_add_phases(warmcal_trace_writer *w, const warmcal_phase *phases,
                                    size_t count, warmcal_error *err)
{
    if (!w || (!phases && count))
        return warmcal_error_set(err, WARMCAL_E_INVAL, w ? w->path : NULL, NULL,
                                 "no writer or phases given");
    for (size_t i = 0; i < count; i++) {
        int rc = warmcal__check_phase(&phases[i], (size_t)w->n_phases + i, w->path, WARMCAL_E_INVAL, err);
        if (rc)
            return rc;
    }
    warmcal_phase one, *rows = count == 1 ? &one : malloc(count * sizeof *rows);
    if (!rows && count)
        return warmcal_error_set(err, WARMCAL_E_NOMEM, w->path, NULL, "out of memory");
    /* The label goes to disk as all 32 bytes: clear whatever follows its NUL. */
    for (size_t i = 0; i < count; i++) {
        rows[i] = phases[i];
        memset(rows[i].label, 0, sizeof rows[i].label);
        memcpy(rows[i].label, phases[i].label, strnlen(phases[i].label, WARMCAL_LABEL_LEN - 1));
    }
    int rc = WARMCAL_OK;
    warmcal_h5_quiet q;
    warmcal__h5_quiet_begin(&q);
    if (count && append_rows(w->phases, w->phase_mtype, rows, count, &w->n_phases) < 0)
        rc = io_error(w, "phases", "cannot append the rows", err);
    if (!rc)
        rc = write_pending_events(w, err);
    if (!rc && H5Fflush(w->file, H5F_SCOPE_GLOBAL) < 0)
        rc = io_error(w, NULL, "cannot flush", err);
    warmcal__h5_quiet_end(&q);
    if (rows != &one)
        free(rows);
    return rc;
}

int warmcal_trace_writer_add_phase(warmcal_trace_writer *w, const warmcal_phase *phase,
                                   warmcal_error *err)
{
    if (!phase)
        return warmcal_error_set(err, WARMCAL_E_INVAL, w ? w->path : NULL, NULL,
                                 "no writer or phase given");
    return warmcal_trace_writer_add_phases(w, phase, 1, err);
}

int warmcal_trace_writer_add_event(warmcal_trace_writer *w, const warmcal_event *event,
                                   warmcal_error *err)
{
    if (!w || !event)
        return warmcal_error_set(err, WARMCAL_E_INVAL, w ? w->path : NULL, NULL,
                                 "no writer or event given");
    if (w->events < 0)
        return WARMCAL_OK;
    if (w->n_pending == w->cap_pending) {
        size_t cap = w->cap_pending ? 2 * w->cap_pending : 256;
        warmcal_event *grown = realloc(w->pending, cap * sizeof *grown);
        if (!grown)
            return warmcal_error_set(err, WARMCAL_E_NOMEM, w->path, "events",
                                     "cannot buffer %zu events", cap);
        w->pending = grown;
        w->cap_pending = cap;
    }
    w->pending[w->n_pending++] = *event;
    return WARMCAL_OK;
}

int warmcal_trace_writer_close(warmcal_trace_writer *w, warmcal_error *err)
{
    if (!w)
        return WARMCAL_OK;
    warmcal_h5_quiet q;
    warmcal__h5_quiet_begin(&q);
    int rc = write_pending_events(w, err);
    if (!rc) {
        int32_t one = 1;
        hid_t attr = H5Aopen(w->file, "complete", H5P_DEFAULT);
        if (attr < 0 || H5Awrite(attr, H5T_STD_I32LE, &one) < 0)
            rc = io_error(w, "attribute 'complete'", "cannot write", err);
        if (attr >= 0)
            H5Aclose(attr);
    }
    /* Close everything but the file first, so H5Fclose really closes it and
     * its failure (a full disk on the final flush) can be reported. */
    close_objects(w);
    if (H5Fclose(w->file) < 0 && !rc)
        rc = io_error(w, NULL, "cannot close", err);
    w->file = H5I_INVALID_HID;
    release(w);
    warmcal__h5_quiet_end(&q);
    return rc;
}

int warmcal_trace_writer_rename(warmcal_trace_writer *w, const char *path, warmcal_error *err)
{
    if (!w || !path || !path[0])
        return warmcal_error_set(err, WARMCAL_E_INVAL, w ? w->path : NULL, NULL,
                                 "no writer or new path given");
    char *named = strdup(path);
    if (!named)
        return warmcal_error_set(err, WARMCAL_E_NOMEM, path, NULL, "out of memory");
    /* HDF5 holds the file open by descriptor: it goes on writing it under
     * the new name */
    if (rename(w->path, path) != 0) {
        int rc = warmcal_error_set(err, WARMCAL_E_IO, path, NULL, "cannot move %s here: %s",
                                   w->path, strerror(errno));
        free(named);
        return rc;
    }
    free(w->path);
    w->path = named;
    return WARMCAL_OK;
}

static int check_extra_attr(warmcal_trace_writer *w, const char *name, warmcal_error *err)
{
    if (!w || !name || !name[0] || !warmcal_utf8_valid(name))
        return warmcal_error_set(err, WARMCAL_E_INVAL, w ? w->path : NULL, NULL,
                                 "no writer, or an empty or non-UTF-8 attribute name");
    htri_t exists = H5Aexists(w->file, name);
    if (exists != 0)
        return warmcal_error_set(err, exists > 0 ? WARMCAL_E_INVAL : WARMCAL_E_IO, w->path, name,
                                 exists > 0 ? "attribute already written"
                                            : "cannot look the attribute up");
    return WARMCAL_OK;
}

int warmcal_trace_writer_set_attr_string(warmcal_trace_writer *w, const char *name,
                                         const char *value, warmcal_error *err)
{
    if (!value || !warmcal_utf8_valid(value))
        return warmcal_error_set(err, WARMCAL_E_INVAL, w ? w->path : NULL, name,
                                 "no value, or a value that is not UTF-8");
    warmcal_h5_quiet q;
    warmcal__h5_quiet_begin(&q);
    int rc = check_extra_attr(w, name, err);
    if (!rc && write_string_attr(w->file, name, value) < 0)
        rc = io_error(w, name, "cannot write the attribute", err);
    warmcal__h5_quiet_end(&q);
    return rc;
}

int warmcal_trace_writer_set_attr_u64(warmcal_trace_writer *w, const char *name, uint64_t value,
                                      warmcal_error *err)
{
    warmcal_h5_quiet q;
    warmcal__h5_quiet_begin(&q);
    int rc = check_extra_attr(w, name, err);
    if (!rc && write_attr(w->file, name, H5T_STD_U64LE, &value) < 0)
        rc = io_error(w, name, "cannot write the attribute", err);
    warmcal__h5_quiet_end(&q);
    return rc;
}

int warmcal_trace_phase_sink(void *writer, const warmcal_phase *phase, warmcal_error *err)
{
    return warmcal_trace_writer_add_phase(writer, phase, err);
}

int warmcal_trace_event_sink(void *writer, const warmcal_event *event, warmcal_error *err)
{
    return warmcal_trace_writer_add_event(writer, event, err);
}
