/* trace_internal.h — what the trace writer and reader share inside
 * warmcal-trace: the /phases column list, the row checks both apply (so the
 * writer never produces a file the reader refuses), and the switch that keeps
 * HDF5 from printing its error stack. Not installed. */
#ifndef WARMCAL_TRACE_INTERNAL_H
#define WARMCAL_TRACE_INTERNAL_H

#include <hdf5.h>
#include <stddef.h>

#include "warmcal/trace.h"

typedef enum {
    WARMCAL_COL_LABEL,
    WARMCAL_COL_U8,
    WARMCAL_COL_U32,
    WARMCAL_COL_U64,
    WARMCAL_COL_I64 /* only in /events (the phase index, -1 outside phases) */
} warmcal_col_kind;

/* One /phases or /events field: its name in the file, its width in the schema and where
 * it lives in warmcal_phase or warmcal_event. */
typedef struct {
    const char *name;
    warmcal_col_kind kind;
    size_t offset;
    int optional; /* an extension: other writers may leave it out (read as 0) */
} warmcal_col;

/* The /phases fields in file order (defined in trace_writer.c). */
extern const warmcal_col warmcal__phase_cols[];
extern const size_t warmcal__n_phase_cols;

/* Whether source is one of the names DESIGN.md allows. */
int warmcal__source_known(const char *source);

/* Check one phase row against the schema's invariants (tokens in
 * 1..WARMCAL_TRACE_TOKENS_MAX, a UTF-8 label, outcome 0..2,
 * end_ns >= begin_ns, live_peak >= live_begin and >= live_end). On failure
 * sets err with `code`, names `source` and "phases[index].FIELD", and
 * returns code. */
int warmcal__check_phase(const warmcal_phase *p, size_t index, const char *source, int code,
                         warmcal_error *err);

/* Libraries never print: every public entry point switches HDF5's automatic
 * error printing off and restores the caller's handler on the way out. */
typedef struct {
    H5E_auto2_t func;
    void *data;
} warmcal_h5_quiet;

static inline void warmcal__h5_quiet_begin(warmcal_h5_quiet *q)
{
    H5Eget_auto2(H5E_DEFAULT, &q->func, &q->data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

static inline void warmcal__h5_quiet_end(const warmcal_h5_quiet *q)
{
    H5Eset_auto2(H5E_DEFAULT, q->func, q->data);
}

#endif
