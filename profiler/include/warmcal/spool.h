/* warmcal/spool.h — the injected profiler's append-only spool, and its
 * conversion into an HDF5 trace.
 *
 * The library injected into a server (libwarmcal-inject.so) links no HDF5:
 * the server may load its own (h5py brings one, often another version). It
 * appends what it sees — timestamped memory events, phase edges, dropped
 * record counts, run attributes — to a compact spool file, flushed at every
 * phase edge, and `warmcal profile` turns each spool into a trace once the
 * command has ended (`warmcal profile --convert DIR` for runs set up by
 * hand). The spool layout is in docs/formats.md ("Spool"). The writer is
 * pure C with no dependency beyond libc and warmcal-common; the reader and
 * the converter live in the trace library. */
#ifndef WARMCAL_SPOOL_H
#define WARMCAL_SPOOL_H

#include <signal.h>
#include <stdint.h>
#include <stddef.h>
#include "warmcal/error.h"
#include "warmcal/recorder.h"

#ifdef __cplusplus
extern "C" {
#endif

/* File layout: a 32-byte header, then records, each starting with a
 * warmcal_spool_rec_header. Integers are in the writer's byte order (the
 * header's byte_order field says which; a reader of the other order refuses
 * the file). A record cut short by a killed process is ignored by the
 * reader (and counted). */
#define WARMCAL_SPOOL_MAGIC "WARMCAL-SPOOL\0\0" /* 16 bytes with the final NUL */
#define WARMCAL_SPOOL_VERSION 1u
#define WARMCAL_SPOOL_BYTE_ORDER 0x01020304u

typedef struct {
    char magic[16];       /* WARMCAL_SPOOL_MAGIC */
    uint32_t version;     /* WARMCAL_SPOOL_VERSION */
    uint32_t byte_order;  /* WARMCAL_SPOOL_BYTE_ORDER as the writer stored it */
    uint64_t reserved;    /* 0 */
} warmcal_spool_file_header;

typedef enum {
    WARMCAL_SPOOL_INFO = 1,        /* a run attribute: key NUL value NUL */
    WARMCAL_SPOOL_EVENT = 2,       /* warmcal_spool_event */
    WARMCAL_SPOOL_PHASE_BEGIN = 3, /* warmcal_spool_phase_begin */
    WARMCAL_SPOOL_PHASE_END = 4,   /* warmcal_spool_time */
    WARMCAL_SPOOL_DROPPED = 5,     /* warmcal_spool_dropped */
    WARMCAL_SPOOL_NOTE = 6,        /* warmcal_spool_time, then a message: text NUL */
    WARMCAL_SPOOL_POOL = 7,        /* warmcal_spool_pool */
    WARMCAL_SPOOL_EXIT = 8         /* warmcal_spool_time: the process ended normally (atexit) */
} warmcal_spool_rec_type;

typedef struct {
    uint16_t type;   /* a warmcal_spool_rec_type; unknown types are skipped by readers */
    uint16_t reserved;
    uint32_t size;   /* bytes of the whole record, header included, a multiple of 8 */
} warmcal_spool_rec_header;

/* A memory event: kind is WARMCAL_EV_ALLOC, _FREE, _ALLOC_FAILED (bytes: the
 * size asked for) or _DEVICE_FREE (bytes: device free memory sampled). */
typedef struct {
    uint64_t time_ns;   /* CUPTI's clock (cuptiGetTimestamp / activity records) */
    uint64_t bytes;
    uint64_t address;
    uint8_t kind;       /* a warmcal_event_kind */
    uint8_t mem_kind;   /* a warmcal_mem_kind */
    uint8_t pad[6];
} warmcal_spool_event;

typedef struct {
    uint64_t time_ns;
    uint64_t tokens;
    uint32_t batch;
    uint32_t pad;
    char label[WARMCAL_LABEL_LEN]; /* NUL-padded */
} warmcal_spool_phase_begin;

typedef struct {
    uint64_t time_ns;
} warmcal_spool_time;

/* count records were lost by CUPTI between since_ns and until_ns: every
 * phase overlapping that span is a lower bound. */
typedef struct {
    uint64_t since_ns, until_ns;
    uint64_t count;
} warmcal_spool_dropped;

/* A stream-ordered pool's reserved size changed (CUPTI MEMORY_POOL record). */
typedef struct {
    uint64_t time_ns;
    uint64_t pool;           /* the pool's address/handle */
    uint64_t reserved_bytes; /* the pool's size after the change */
    uint64_t used_bytes;     /* utilizedSize, when the record carries it */
} warmcal_spool_pool;

/* Longest text a record carries: an INFO's key and value with their two
 * NULs, a NOTE's message with its NUL. Readers refuse longer records. */
#define WARMCAL_SPOOL_TEXT_MAX 4096u

/* ---- writer (used inside the injected library; not thread-safe: the caller
 * serialises). Every call appends to a memory buffer; warmcal_spool_flush
 * writes the buffer with write(2), and so does any call that leaves more
 * than WARMCAL_SPOOL_FLUSH_AT bytes buffered (memory stays bounded however
 * long a phase runs) unless writes are deferred (below). After a failed
 * write every call fails with WARMCAL_E_IO. Errors name the spool's path.
 *
 * Deferred writes, for a writer shared by threads that must never wait for
 * the disk: appends (the write_* calls) and warmcal_spool_take_pending run
 * under the caller's append lock and touch memory only; buffers they take
 * wait in the writer until warmcal_spool_write_pending, under another lock
 * of the caller's (the I/O lock), writes them, oldest first, while appends
 * go on in other threads. The file's record order is the append order. A
 * caller may take the I/O lock while holding the append lock, never the
 * other way; warmcal_spool_flush and warmcal_spool_writer_close need both
 * (or one thread alone). ---- */
#define WARMCAL_SPOOL_FLUSH_AT (256u * 1024u)
typedef struct warmcal_spool_writer warmcal_spool_writer;

/* Create a new spool file at path (O_EXCL: an existing file is an error,
 * WARMCAL_E_IO naming it) and write its header. *out is owned by the caller. */
WARMCAL_API int warmcal_spool_writer_open(warmcal_spool_writer **out, const char *path,
                                          warmcal_error *err);
/* Give the spool its name: link it at path and drop the name it was
 * created under, so that a spool appears under a listed name only once its
 * head is on disk. The injected library creates its spool under a name that
 * no lister takes (PATH.partial), writes the run's attributes, then
 * publishes it: a `warmcal profile` converting the folder while another
 * rank's process starts never meets a spool without its session. An
 * existing file at path is WARMCAL_E_IO naming it (link(2) never replaces),
 * and both names are left as they were. The writer goes on writing it. */
WARMCAL_API int warmcal_spool_writer_publish(warmcal_spool_writer *w, const char *path,
                                             warmcal_error *err);
/* key must be non-empty; key and value longer than WARMCAL_SPOOL_TEXT_MAX
 * together are WARMCAL_E_INVAL. */
WARMCAL_API int warmcal_spool_write_info(warmcal_spool_writer *w, const char *key,
                                         const char *value, warmcal_error *err);
/* kind or mem_kind out of range: WARMCAL_E_INVAL. */
WARMCAL_API int warmcal_spool_write_event(warmcal_spool_writer *w, const warmcal_spool_event *ev,
                                          warmcal_error *err);
/* label is cut to 31 bytes at a UTF-8 character boundary. */
WARMCAL_API int warmcal_spool_write_phase_begin(warmcal_spool_writer *w, uint64_t time_ns,
                                                const char *label, uint64_t tokens, uint32_t batch,
                                                warmcal_error *err);
WARMCAL_API int warmcal_spool_write_phase_end(warmcal_spool_writer *w, uint64_t time_ns,
                                              warmcal_error *err);
WARMCAL_API int warmcal_spool_write_dropped(warmcal_spool_writer *w,
                                            const warmcal_spool_dropped *d, warmcal_error *err);
/* text longer than WARMCAL_SPOOL_TEXT_MAX - 1 bytes is cut (at a character boundary). */
WARMCAL_API int warmcal_spool_write_note(warmcal_spool_writer *w, uint64_t time_ns,
                                         const char *text, warmcal_error *err);
WARMCAL_API int warmcal_spool_write_pool(warmcal_spool_writer *w, const warmcal_spool_pool *p,
                                         warmcal_error *err);
WARMCAL_API int warmcal_spool_write_exit(warmcal_spool_writer *w, uint64_t time_ns,
                                         warmcal_error *err);
/* Write everything buffered to the file (retrying short writes and EINTR):
 * warmcal_spool_take_pending then warmcal_spool_write_pending. */
WARMCAL_API int warmcal_spool_flush(warmcal_spool_writer *w, warmcal_error *err);
/* From now on no append writes to the file: a buffer that reaches
 * WARMCAL_SPOOL_FLUSH_AT bytes is taken (warmcal_spool_take_pending) and
 * waits for warmcal_spool_write_pending, which the caller must then call
 * often enough to bound memory. Call once, before the writer is shared. */
WARMCAL_API void warmcal_spool_writer_defer_writes(warmcal_spool_writer *w);
/* Append side: hand the records appended so far to the write side (memory
 * only; nothing when none). NULL is allowed. */
WARMCAL_API void warmcal_spool_take_pending(warmcal_spool_writer *w);
/* Whether taken buffers wait for warmcal_spool_write_pending. Any thread. */
WARMCAL_API int warmcal_spool_has_pending(warmcal_spool_writer *w);
/* Write side: write every taken buffer, oldest first, and free it (after a
 * failed write the rest is dropped: WARMCAL_E_IO, and so for every later
 * call). Safe while another thread appends and takes; one writer of
 * pending buffers at a time. */
WARMCAL_API int warmcal_spool_write_pending(warmcal_spool_writer *w, warmcal_error *err);
/* Flush, close and free. NULL is allowed. */
WARMCAL_API int warmcal_spool_writer_close(warmcal_spool_writer *w, warmcal_error *err);

/* ---- reader (trace library) ---- */

/* Longest record a reader accepts, of any type: a longer size field is
 * corruption (and not a record cut short). */
#define WARMCAL_SPOOL_RECORD_MAX 65536u

/* The index of a spool's timed records (memory events, phase edges, pool
 * changes): 16 bytes a record, whatever its type, so a spool read for
 * conversion costs its file mapping plus this index, not a decoded copy.
 * Decode one with warmcal_spool_entry_at. */
typedef struct {
    uint64_t time_ns;
    uint64_t key;      /* bit 63: 0 for a FREE event, 1 for any other record (FREEs
                        * go first among records of equal time); bits 0-62: the
                        * record's byte offset in the file */
} warmcal_spool_index;

#define WARMCAL_SPOOL_KEY_LATER (1ull << 63)
#define WARMCAL_SPOOL_INDEX_OFFSET(ix) ((ix).key & ~WARMCAL_SPOOL_KEY_LATER)

/* One timed record, decoded. */
typedef struct {
    uint64_t time_ns;
    uint64_t bytes;    /* EVENT: its bytes; POOL: the pool's reserved bytes; PHASE_BEGIN: tokens */
    uint64_t address;  /* EVENT: its address; POOL: the pool */
    uint64_t offset;   /* byte offset of its record in the file (for messages) */
    uint16_t type;     /* WARMCAL_SPOOL_EVENT, _PHASE_BEGIN, _PHASE_END or _POOL */
    uint8_t kind;      /* EVENT: a warmcal_event_kind */
    uint8_t mem_kind;  /* EVENT: a warmcal_mem_kind */
    uint32_t batch;    /* PHASE_BEGIN */
    char label[WARMCAL_LABEL_LEN]; /* PHASE_BEGIN: NUL-terminated */
} warmcal_spool_entry;

typedef struct {
    char *key, *value;
    uint64_t offset;
} warmcal_spool_info_entry;

typedef struct {
    uint64_t time_ns;
    char *text;
} warmcal_spool_note_entry;

/* A spool read into memory. Owned by the caller; free with warmcal_spool_free.
 * The records stay in the file's bytes (mapped read-only by
 * warmcal_spool_read, a private copy for warmcal_spool_parse); index holds
 * exactly n_entries elements, counted before it is allocated. */
typedef struct {
    char *path;
    warmcal_spool_info_entry *info;  /* in file order; a key written twice: the last counts */
    size_t n_info;
    warmcal_spool_index *index;      /* in file order until warmcal_spool_sort */
    size_t n_entries;
    size_t index_bytes;              /* bytes allocated for index: n_entries * 16 */
    warmcal_spool_phase_begin *begins; /* PHASE_BEGIN records, in file order */
    size_t n_begins;
    warmcal_spool_dropped *dropped;
    size_t n_dropped;
    warmcal_spool_note_entry *notes;
    size_t n_notes;
    size_t unknown_records;  /* records of types this reader does not know (skipped) */
    size_t truncated_bytes;  /* bytes of a last record cut short (a killed writer) */
    int exited;              /* holds an EXIT record */
    uint64_t exit_ns;
    /* the file's bytes (read-only) */
    const unsigned char *data;
    size_t size;
    int mapped;              /* data is a mapping of the file (else a malloc'd copy) */
} warmcal_spool;

/* Parse size bytes of spool data (copied: the caller keeps its buffer);
 * name is used in errors. Refused with
 * WARMCAL_E_FORMAT naming `name` and the byte offset: a bad header (magic,
 * version, the other byte order), a record whose size is not a multiple of
 * 8, below 8, above WARMCAL_SPOOL_RECORD_MAX or wrong for its type, a
 * non-zero reserved field, a kind out of range, text without its NUL.
 * WARMCAL_E_FIELD: a phase's tokens outside 1..2^40, text that is not
 * UTF-8. A record cut short at the very end, or a tail of zero bytes (a
 * file system that lost the last writes), is counted in truncated_bytes and
 * is not an error. Does not sort. */
WARMCAL_API int warmcal_spool_parse(const void *data, size_t size, const char *name,
                                    warmcal_spool **out, warmcal_error *err);

/* Read the regular file at path (WARMCAL_E_IO when it cannot be read or is
 * not a regular file) and parse it as warmcal_spool_parse does. The file is
 * mapped read-only (read into memory where mapping fails); it must not shrink
 * while the spool is in use (spools only grow). max_bytes > 0 reads only the
 * file's first max_bytes bytes (enough for its INFO records: the injected
 * library writes them first); what is cut off then counts as truncated. */
WARMCAL_API int warmcal_spool_read(const char *path, size_t max_bytes, warmcal_spool **out,
                                   warmcal_error *err);

/* The value of the last INFO record with this key, or NULL. */
WARMCAL_API const char *warmcal_spool_info_get(const warmcal_spool *s, const char *key);

/* Decode the i-th entry of the index (i < n_entries) into *out. */
WARMCAL_API void warmcal_spool_entry_at(const warmcal_spool *s, size_t i, warmcal_spool_entry *out);

/* Sort the index by time; at equal times FREE events come first (a block
 * released and another allocated at the same instant, by two threads whose
 * buffers arrive in either order, never count as both live), every other
 * record keeps its file order. */
WARMCAL_API void warmcal_spool_sort(warmcal_spool *s);

/* Free a spool; NULL is allowed. */
WARMCAL_API void warmcal_spool_free(warmcal_spool *s);

/* ---- conversion (trace library: HDF5) ---- */

/* Bits of warmcal_phase.lower_bound: why a phase's figure may be below the truth. */
#define WARMCAL_LOWER_BOUND_DROPPED 1u      /* CUPTI dropped records during the phase */
#define WARMCAL_LOWER_BOUND_UNEXPLAINED 2u  /* device free memory fell more than API events explain */
#define WARMCAL_LOWER_BOUND_NO_ALLOCATION 4u/* no allocation at all, though the process allocates */
#define WARMCAL_LOWER_BOUND_ABORTED 8u      /* the process died inside the phase before its end was spooled */

/* Device memory a phase may take beyond what its API events explain without
 * being flagged WARMCAL_LOWER_BOUND_UNEXPLAINED: the driver maps memory in
 * pages of up to 2 MiB, and creates small internal buffers on its own. */
#define WARMCAL_LOWER_BOUND_SLACK (2ull * 1024 * 1024)

/* The name of one WARMCAL_LOWER_BOUND_* bit ("dropped_records",
 * "unexplained_device_usage", "no_allocation", "aborted"), or "unknown". */
WARMCAL_API const char *warmcal_lower_bound_name(uint32_t bit);

/* Write the names of the bits set in mask, separated by sep, into buf of
 * size len (truncated to fit; "" for 0); returns buf. */
WARMCAL_API char *warmcal_lower_bound_describe(uint32_t mask, const char *sep, char *buf,
                                               size_t len);

typedef struct {
    const char *model;      /* overrides the spool's "model" info when non-NULL */
    int with_events;        /* write the /events timeline */
    /* When the run began (wall clock, ns since 1970; 0: the spool's
     * start_time info, and when that is absent too, any existing trace is
     * treated as older). A trace already at the trace path that another
     * session wrote at or after this moment is never replaced. */
    uint64_t run_start_ns;
    /* Non-NULL: the conversion stops at its next check once *cancel is
     * non-zero (a signal handler sets it), removing its temporary file. */
    volatile sig_atomic_t *cancel;
} warmcal_spool_convert_options;

/* Room for a session id (warmcal_spool_new_session), NUL included. */
#define WARMCAL_SPOOL_SESSION_LEN 64

/* Longest trace path a report holds. */
#define WARMCAL_SPOOL_PATH_MAX 4096

/* What a conversion found, for the caller to report. */
typedef struct {
    int rank, world_size;
    long pid;               /* the profiled process ("pid" info), 0 when absent */
    size_t phases;
    size_t lower_bound_phases;
    uint64_t dropped_records;
    uint64_t recovered_alloc_failures; /* failed allocations retried with success in the phase */
    size_t truncated_bytes; /* a record cut short at the end (killed writer) */
    int exited_normally;    /* the spool holds an EXIT record */
    int trace_written;      /* 0: the spool holds no phase, and no trace was written */
    char trace_path[WARMCAL_SPOOL_PATH_MAX]; /* where the trace went (trace_written) */
    size_t notes;           /* NOTE records (kept in the trace's "notes" attribute) */
    /* the process ended inside a phase (killed, or exited without ending it): */
    int ended_in_phase;
    char ended_label[WARMCAL_LABEL_LEN];
    uint64_t ended_tokens;
    /* the trace path held a trace another session wrote during this run:
     * two processes claim this rank; the trace went to rank-R.pid-P.h5 */
    int rank_claimed;
    char claimed_by_session[WARMCAL_SPOOL_SESSION_LEN]; /* "" when it had none */
    /* the spool's process found no rank in its environment (rank_from =
     * none) while other traces in the folder name a world size above 1:
     * the largest of them, else 0 */
    int other_world_size;
    int canceled;           /* stopped by opts->cancel (the error is WARMCAL_E_CANCELED) */
} warmcal_spool_convert_report;

/* Read the spool at spool_path, replay its events in timestamp order
 * through a recorder and write the trace at trace_path (source "cupti",
 * attributes from the spool's INFO records, tool_version this build's;
 * dropped_records, recovered_alloc_failures, session and notes as extra
 * attributes). Each phase's lower_bound gets the WARMCAL_LOWER_BOUND_* bits
 * that apply; a phase still open at the spool's end is closed as aborted at
 * the last time seen. A failed allocation followed, before the phase ends,
 * by a successful one of the same memory kind and size is recovered: not an
 * OOM (counted in recovered_alloc_failures, kept in /events).
 * The trace is written under a temporary name beside trace_path (mode 0666
 * less the umask), flushed to disk, and renamed into place, then the folder
 * is flushed: a failed conversion leaves nothing behind. What is at
 * trace_path decides: nothing or a regular file that this session wrote or
 * that is older than the run's start (opts->run_start_ns): replaced; a
 * regular file another session wrote since: kept, and the trace goes to
 * rank-R.pid-P.h5 in the same folder (report->rank_claimed); anything else
 * (a folder, a link, a device): WARMCAL_E_IO, nothing written. Placing is
 * serialised between converters through a lock on the folder.
 * A spool without any phase writes no trace (report->trace_written = 0) and
 * succeeds. Errors name the spool and the record: WARMCAL_E_IO,
 * WARMCAL_E_FORMAT (also a phase begun inside another, or ended when none
 * is open), WARMCAL_E_FIELD (rank, world_size, gpu_total_bytes not numbers
 * in range), WARMCAL_E_CANCELED (opts->cancel was set). report may be NULL; it is filled
 * as far as the conversion went. */
WARMCAL_API int warmcal_spool_convert(const char *spool_path, const char *trace_path,
                                      const warmcal_spool_convert_options *opts,
                                      warmcal_spool_convert_report *report, warmcal_error *err);

/* One spool of a folder, and the trace chosen for it. */
typedef struct {
    char *spool_path;
    char *trace_path;   /* DIR/rank-<R>.h5, or DIR/rank-<R>.pid-<P>.h5 (same_rank); NULL when rc */
    char *session;      /* its "session" info, NULL when absent */
    int rank;
    long pid;
    int same_rank;      /* another listed spool has this rank: the trace name holds the pid */
    int rc;             /* 0, or why the spool's first records could not be read (err) */
    warmcal_error err;
    int64_t mtime_ns;   /* the spool's last change (wall clock, ns since 1970) */
} warmcal_spool_job;

/* The regular files named *.spool in dir whose "session" info equals
 * session (every one when session is NULL), sorted by name, each with the
 * trace path to convert it to. Only a spool's head is read here: one whose
 * head is unreadable is listed with rc and err set, unless the records
 * before the damage name another session (session then holds what they
 * name, or NULL when they name none). *jobs is owned by the caller
 * (warmcal_spool_jobs_free). Errors: WARMCAL_E_IO (dir cannot be read),
 * WARMCAL_E_NOMEM. */
WARMCAL_API int warmcal_spool_list(const char *dir, const char *session, warmcal_spool_job **jobs,
                                   size_t *n, warmcal_error *err);
WARMCAL_API void warmcal_spool_jobs_free(warmcal_spool_job *jobs, size_t n);

/* ---- setting a run up (`warmcal profile`) ---- */

/* Create the folder dir and its missing parents (mode 0777 less the umask)
 * and check that this process can create files in it; *abs gets its
 * absolute path (malloc'd, owned by the caller). Errors: WARMCAL_E_IO
 * naming the part of the path that could not be made or used,
 * WARMCAL_E_NOMEM. */
WARMCAL_API int warmcal_spool_prepare_dir(const char *dir, char **abs, warmcal_error *err);

/* A fresh session id, "<pid>-<unix seconds>-<16 random hex digits>"
 * (getrandom), in buf of len bytes (at least WARMCAL_SPOOL_SESSION_LEN).
 * Errors: WARMCAL_E_INVAL (buf too small), WARMCAL_E_IO (no randomness). */
WARMCAL_API int warmcal_spool_new_session(char *buf, size_t len, warmcal_error *err);

#ifdef __cplusplus
}
#endif
#endif
