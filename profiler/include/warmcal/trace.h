/* warmcal/trace.h — per-rank HDF5 trace files (schema in DESIGN.md and
 * docs/formats.md): a writer that flushes after every phase, so a killed
 * process loses at most the phase in flight, and a reader that accepts any
 * HDF5 file following the schema (strings fixed or variable length,
 * integers of any width) and rejects everything else with the file and the
 * attribute or field named. Neither prints: HDF5's own error printing is
 * switched off around every call. */
#ifndef WARMCAL_TRACE_H
#define WARMCAL_TRACE_H

#include <stdint.h>
#include <stddef.h>
#include "warmcal/error.h"
#include "warmcal/recorder.h"

#ifdef __cplusplus
extern "C" {
#endif

#define WARMCAL_TRACE_SCHEMA 1

/* A phase's tokens lie in 1..WARMCAL_TRACE_TOKENS_MAX (2^40): a pass runs at
 * least one token, and the fitter computes in doubles, where every count up
 * to this bound (and far beyond) is exact. The writer refuses a row outside
 * it and the reader a file that holds one. */
#define WARMCAL_TRACE_TOKENS_MAX (1ull << 40)

/* Run description written as root attributes. Required: model, source,
 * gpu_name (non-NULL), rank/world_size (0 <= rank < world_size). The rest
 * may be NULL/0 and is then left out. Strings are copied. */
typedef struct {
    int rank;
    int world_size;
    const char *model;
    const char *source;        /* "cupti", "torch", "simulated" or "import" */
    const char *gpu_name;
    uint64_t gpu_total_bytes;
    int tp, pp;                /* 0: not written */
    const char *host;
    const char *start_time;    /* ISO 8601 */
    const char *tool_version;
    const char *driver_version;
    const char *cuda_version;
} warmcal_trace_info;

typedef struct warmcal_trace_writer warmcal_trace_writer;

/* Create (truncate) the trace at path with complete = 0 and an empty
 * /phases table; with_events adds the /events timeline. *out is owned by
 * the caller until warmcal_trace_writer_close. Errors: WARMCAL_E_INVAL for
 * a bad info, WARMCAL_E_IO when HDF5 cannot create the file. */
WARMCAL_API int warmcal_trace_writer_open(warmcal_trace_writer **out, const char *path,
                                          const warmcal_trace_info *info, int with_events,
                                          warmcal_error *err);

/* Append one phase row (and the events buffered since the last phase), then
 * flush the file to disk. */
WARMCAL_API int warmcal_trace_writer_add_phase(warmcal_trace_writer *w, const warmcal_phase *phase,
                                               warmcal_error *err);

/* Append count phase rows at once (and the buffered events), then flush:
 * for programs that convert measurements from other tools, where one flush
 * per row would cost more than the data. All rows are checked before any is
 * written. Errors as warmcal_trace_writer_add_phase, and WARMCAL_E_NOMEM. */
WARMCAL_API int warmcal_trace_writer_add_phases(warmcal_trace_writer *w, const warmcal_phase *phases,
                                                size_t count, warmcal_error *err);

/* Buffer one timeline event; written at the next phase or at close. A no-op
 * success when the writer has no timeline. */
WARMCAL_API int warmcal_trace_writer_add_event(warmcal_trace_writer *w, const warmcal_event *event,
                                               warmcal_error *err);

/* Write buffered events, set complete = 1, close and free the writer (also
 * on error). NULL is allowed. */
WARMCAL_API int warmcal_trace_writer_close(warmcal_trace_writer *w, warmcal_error *err);

/* Move the open trace to path (rename(2): same file system, replacing what
 * is there) and name it so in later errors; the writer goes on writing it.
 * For a caller that creates the trace under a temporary name and moves it
 * into place only once it knows the run goes ahead. Errors: WARMCAL_E_IO
 * (the trace stays where it was), WARMCAL_E_NOMEM, WARMCAL_E_INVAL. */
WARMCAL_API int warmcal_trace_writer_rename(warmcal_trace_writer *w, const char *path,
                                            warmcal_error *err);

/* Add a root attribute beyond the run description (a source's own
 * figures: "dropped_records", "session"): a UTF-8 string, or an unsigned
 * 64-bit integer. Errors: WARMCAL_E_INVAL (no name, text that is not UTF-8,
 * a name already written), WARMCAL_E_IO. */
WARMCAL_API int warmcal_trace_writer_set_attr_string(warmcal_trace_writer *w, const char *name,
                                                     const char *value, warmcal_error *err);
WARMCAL_API int warmcal_trace_writer_set_attr_u64(warmcal_trace_writer *w, const char *name,
                                                  uint64_t value, warmcal_error *err);

/* Sinks that plug a writer into a recorder: pass the writer as user data. */
WARMCAL_API int warmcal_trace_phase_sink(void *writer, const warmcal_phase *phase, warmcal_error *err);
WARMCAL_API int warmcal_trace_event_sink(void *writer, const warmcal_event *event, warmcal_error *err);

/* One root attribute as text, for display ("inspect"). */
typedef struct {
    char *name;
    char *value;
} warmcal_trace_attr;

/* A trace read into memory. Owned by the caller; free with warmcal_trace_free. */
typedef struct {
    char *path;
    int schema;
    int rank, world_size;
    char *model, *source, *gpu_name;
    uint64_t gpu_total_bytes;
    int complete;              /* 0: the writer did not finish (crash) — read anyway */
    warmcal_phase *phases;
    size_t n_phases;
    size_t n_events;           /* rows of /events, 0 when absent (not loaded) */
    warmcal_trace_attr *attrs; /* every root attribute, in file order */
    size_t n_attrs;
} warmcal_trace;

/* Read the trace at path. On success *out is set and the caller checks
 * (*out)->complete to warn about a crashed writer. On failure *out is NULL
 * and err names the file and the attribute or field: WARMCAL_E_IO (cannot
 * open: missing, truncated or not HDF5), WARMCAL_E_FORMAT (schema version,
 * missing dataset), WARMCAL_E_FIELD (an attribute or column missing, of the
 * wrong type, or out of range: tokens outside 1..WARMCAL_TRACE_TOKENS_MAX,
 * model, gpu_name or a label that is not UTF-8). Strings are kept whole,
 * whatever their length. */
WARMCAL_API int warmcal_trace_read(const char *path, warmcal_trace **out, warmcal_error *err);

/* Free a trace from warmcal_trace_read. NULL is allowed. */
WARMCAL_API void warmcal_trace_free(warmcal_trace *t);

/* Name of an outcome ("ok", "oom", "aborted", "?"). */
WARMCAL_API const char *warmcal_outcome_name(int outcome);

#ifdef __cplusplus
}
#endif
#endif
