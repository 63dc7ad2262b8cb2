/* warmcal/error.h — the error record every warmcal reader and library fills.
 *
 * Modelled on jansson's json_error_t: the caller owns the struct, the first
 * error set wins (a later cleanup failure never hides the cause), and there is
 * no global state. Command-line tools print it as "SOURCE: WHERE: TEXT". */
#ifndef WARMCAL_ERROR_H
#define WARMCAL_ERROR_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(__GNUC__)
#define WARMCAL_API __attribute__((visibility("default")))
#define WARMCAL_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define WARMCAL_API
#define WARMCAL_PRINTF(f, a)
#endif

/* Error codes: 0 is success, every failure is negative. */
typedef enum {
    WARMCAL_OK = 0,
    WARMCAL_E_INVAL = -1,    /* bad argument from the caller */
    WARMCAL_E_NOMEM = -2,    /* an allocation failed */
    WARMCAL_E_IO = -3,       /* a file could not be opened, read or written */
    WARMCAL_E_FORMAT = -4,   /* a file is not in the expected format */
    WARMCAL_E_FIELD = -5,    /* a field is missing, of the wrong type or out of range */
    WARMCAL_E_STATE = -6,    /* a call made in the wrong state (phase end without begin) */
    WARMCAL_E_OOM = -7,      /* the (simulated) device is out of memory */
    WARMCAL_E_TIMEOUT = -8,  /* a deadline passed */
    WARMCAL_E_MISMATCH = -9, /* ranks disagree (different tables, passes or shapes) */
    WARMCAL_E_UNSUPPORTED = -10, /* a feature this build or machine lacks */
    WARMCAL_E_RANGE = -11,      /* outside the range an estimate was calibrated on */
    WARMCAL_E_OVERFLOW = -12,   /* a result too large for its type (an estimate beyond 64 bits) */
    WARMCAL_E_CANCELED = -13    /* stopped on the caller's request (a signal), nothing left half-done */
} warmcal_code;

#define WARMCAL_ERROR_SOURCE_LEN 160
#define WARMCAL_ERROR_WHERE_LEN 96
#define WARMCAL_ERROR_TEXT_LEN 256

typedef struct {
    int code;                                  /* a warmcal_code, 0 while unset */
    char source[WARMCAL_ERROR_SOURCE_LEN];     /* file name, front-shortened with "..." */
    char where[WARMCAL_ERROR_WHERE_LEN];       /* field path or attribute name, may be "" */
    char text[WARMCAL_ERROR_TEXT_LEN];         /* what was wrong and what was expected */
} warmcal_error;

/* Static text for a code ("invalid argument", ...); never NULL. */
WARMCAL_API const char *warmcal_strerror(int code);

/* Reset an error record to "no error". err may be NULL. */
WARMCAL_API void warmcal_error_clear(warmcal_error *err);

/* Fill err unless it already holds an error (first error wins) and return
 * code, so callers can write `return warmcal_error_set(err, ...)`.
 * err may be NULL; source and where may be NULL. */
WARMCAL_API int warmcal_error_set(warmcal_error *err, int code, const char *source,
                                  const char *where, const char *fmt, ...)
    WARMCAL_PRINTF(5, 6);

#ifdef WARMCAL_BUILDING
/* Inside warmcal's own build only (clients keep the plain function): calls
 * go through this macro so that what they return is the code argument
 * itself, in sight of the compiler: `return warmcal_error_set(err,
 * WARMCAL_E_FIELD, ...)` is then visibly a failure, and an optimizing build
 * does not warn that outputs a failed call leaves unset may be used. The
 * function stays exported as is (take its address as usual). code is
 * evaluated twice: pass a constant or a variable, nothing with side effects. */
static inline int warmcal__error_code(int set_result, int code)
{
    (void)set_result;
    return code;
}
#define warmcal_error_set(err, code, ...) \
    warmcal__error_code(warmcal_error_set((err), (code), __VA_ARGS__), (code))
#endif

/* Format err as "SOURCE: WHERE: TEXT" (parts that are empty are left out)
 * into buf of size len; returns buf. */
WARMCAL_API char *warmcal_error_format(const warmcal_error *err, char *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif
