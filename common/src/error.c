/* Error records (see warmcal/error.h): the first error set wins, file names
 * are shortened from the front so the name's end stays readable. */
#include "warmcal/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *warmcal_strerror(int code)
{
    switch (code) {
    case WARMCAL_OK: return "success";
    case WARMCAL_E_INVAL: return "invalid argument";
    case WARMCAL_E_NOMEM: return "out of host memory";
    case WARMCAL_E_IO: return "input/output error";
    case WARMCAL_E_FORMAT: return "bad file format";
    case WARMCAL_E_FIELD: return "bad field";
    case WARMCAL_E_STATE: return "call made in the wrong state";
    case WARMCAL_E_OOM: return "out of device memory";
    case WARMCAL_E_TIMEOUT: return "deadline passed";
    case WARMCAL_E_MISMATCH: return "ranks disagree";
    case WARMCAL_E_UNSUPPORTED: return "not supported";
    case WARMCAL_E_RANGE: return "outside the calibrated range";
    case WARMCAL_E_OVERFLOW: return "result too large";
    case WARMCAL_E_CANCELED: return "canceled";
    default: return "unknown error";
    }
}

void warmcal_error_clear(warmcal_error *err)
{
    if (err)
        memset(err, 0, sizeof *err);
}

static void copy_shortened(char *dst, size_t cap, const char *src)
{
    size_t n = strlen(src);
    if (n < cap) {
        memcpy(dst, src, n + 1);
        return;
    }
    /* keep the tail: it holds the file's own name */
    memcpy(dst, "...", 3);
    memcpy(dst + 3, src + n - (cap - 4), cap - 4);
    dst[cap - 1] = '\0';
}

/* in parentheses: the name is also error.h's macro */
int (warmcal_error_set)(warmcal_error *err, int code, const char *source, const char *where,
                        const char *fmt, ...)
{
    if (!err || err->code != 0)
        return code;
    err->code = code;
    copy_shortened(err->source, sizeof err->source, source ? source : "");
    copy_shortened(err->where, sizeof err->where, where ? where : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->text, sizeof err->text, fmt, ap);
    va_end(ap);
    return code;
}

char *warmcal_error_format(const warmcal_error *err, char *buf, size_t len)
{
    if (!buf || len == 0)
        return buf;
    const char *text = err->text[0] ? err->text : warmcal_strerror(err->code);
    if (err->source[0] && err->where[0])
        snprintf(buf, len, "%s: %s: %s", err->source, err->where, text);
    else if (err->source[0] || err->where[0])
        snprintf(buf, len, "%s: %s", err->source[0] ? err->source : err->where, text);
    else
        snprintf(buf, len, "%s", text);
    return buf;
}
