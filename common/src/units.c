/* Byte quantities and the monotonic clock (see warmcal/units.h). */
#define _POSIX_C_SOURCE 200809L
#include "warmcal/units.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static const struct {
    const char *name;
    uint64_t scale;
} suffixes[] = {
    {"", 1},          {"B", 1},
    {"KiB", 1ull << 10}, {"MiB", 1ull << 20}, {"GiB", 1ull << 30}, {"TiB", 1ull << 40},
    {"K", 1ull << 10},   {"M", 1ull << 20},   {"G", 1ull << 30},   {"T", 1ull << 40},
    {"KB", 1000ull},  {"MB", 1000000ull}, {"GB", 1000000000ull}, {"TB", 1000000000000ull},
};

/* floor(0.DIGITS x scale) for the fraction digits in [digits, end), exactly:
 * the digit string times scale by schoolbook multiplication from its last
 * digit, whose carry out of the first digit is the whole part. scale is at
 * most 2^40, so digit x scale + carry stays far below 2^64. */
static uint64_t fraction_times(const char *digits, const char *end, uint64_t scale)
{
    uint64_t carry = 0;
    for (const char *d = end; d > digits;) {
        d--;
        carry = ((uint64_t)(*d - '0') * scale + carry) / 10;
    }
    return carry;
}

int warmcal_parse_bytes(const char *text, uint64_t *out, const char *what, warmcal_error *err)
{
    if (!text || !out)
        return warmcal_error_set(err, WARMCAL_E_INVAL, NULL, what, "no byte count given");
    const char *p = text;
    while (isspace((unsigned char)*p))
        p++;
    if (!isdigit((unsigned char)*p))
        goto bad;
    errno = 0;
    char *end = NULL;
    unsigned long long whole = strtoull(p, &end, 10);
    if (errno == ERANGE)
        goto overflow;
    /* digits after a point only (strtod would also take exponents and hex),
     * kept as text: a binary double would turn 0.035KB into 34 bytes */
    const char *frac = NULL, *frac_end = NULL;
    if (*end == '.') {
        frac = ++end;
        if (!isdigit((unsigned char)*end))
            goto bad;
        while (isdigit((unsigned char)*end))
            end++;
        frac_end = end;
    }
    while (isspace((unsigned char)*end))
        end++;
    for (size_t i = 0; i < sizeof suffixes / sizeof suffixes[0]; i++) {
        if (strcmp(end, suffixes[i].name) != 0 &&
            !(suffixes[i].name[0] && strcasecmp(end, suffixes[i].name) == 0))
            continue;
        uint64_t scale = suffixes[i].scale;
        if (frac && scale == 1)
            goto bad; /* "1.5" bytes means nothing */
        if (whole > UINT64_MAX / scale)
            goto overflow;
        uint64_t v = (uint64_t)whole * scale;
        uint64_t extra = frac ? fraction_times(frac, frac_end, scale) : 0;
        if (extra > UINT64_MAX - v)
            goto overflow;
        *out = v + extra;
        return WARMCAL_OK;
    }
bad:
    return warmcal_error_set(err, WARMCAL_E_FIELD, NULL, what,
                             "'%s' is not a byte count (expected an integer with an optional "
                             "B/KiB/MiB/GiB/TiB suffix)",
                             text ? text : "");
overflow:
    return warmcal_error_set(err, WARMCAL_E_FIELD, NULL, what,
                             "'%s' does not fit in 64 bits", text);
}

/* Integer arithmetic only, no printf: the gate writes one of these into
 * every skipped shape's text, thousands per decision, and floating-point
 * printf cost a quarter of a microsecond each. Rounds as "%.2f" does on the
 * exact quotient: to nearest, ties to even (the same text as printf of the
 * double below 2^53 bytes; above, where the double was already rounded,
 * this is the exact one). */
char *warmcal_format_bytes(uint64_t bytes, char *buf, size_t len)
{
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    if (!buf || !len)
        return buf;
    int u = 0;
    while (u < 4 && bytes >> (10 * (u + 1)))
        u++;
    int shift = 10 * u;
    uint64_t whole = bytes >> shift, cents = 0;
    if (u) {
        uint64_t unit = 1ull << shift, rest = bytes & (unit - 1);
        uint64_t scaled = rest * 100; /* < 2^40 * 100: no overflow */
        cents = scaled >> shift;
        uint64_t rem = scaled & (unit - 1);
        if (2 * rem > unit || (2 * rem == unit && (cents & 1)))
            cents++;
        if (cents == 100) {
            whole++;
            cents = 0;
        }
    }
    static const size_t unit_len[] = {1, 3, 3, 3, 3};
    char text[40], *p = text + sizeof text;
    *--p = '\0';
    for (const char *unit = units[u] + unit_len[u]; unit > units[u];)
        *--p = *--unit;
    *--p = ' ';
    if (u) {
        *--p = (char)('0' + cents % 10);
        *--p = (char)('0' + cents / 10);
        *--p = '.';
    }
    do {
        *--p = (char)('0' + whole % 10);
        whole /= 10;
    } while (whole);
    size_t n = (size_t)(text + sizeof text - 1 - p);
    if (n >= len)
        n = len - 1;
    memcpy(buf, p, n);
    buf[n] = '\0';
    return buf;
}

uint64_t warmcal_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

char *warmcal_utc_now(char *buf, size_t len)
{
    time_t now = time(NULL);
    struct tm tm;
    if (len)
        buf[0] = '\0';
    if (len && now != (time_t)-1 && gmtime_r(&now, &tm))
        strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return buf;
}
