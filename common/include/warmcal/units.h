/* warmcal/units.h — byte quantities as users type them ("3GiB", "512MiB",
 * "1048576") and as warmcal prints them. Shared by every command line and by
 * readers of files that hold sizes. */
#ifndef WARMCAL_UNITS_H
#define WARMCAL_UNITS_H

#include <stdint.h>
#include <stddef.h>
#include "warmcal/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Parse a byte count: a plain non-negative integer, optionally followed by
 * B, KiB, MiB, GiB or TiB (powers of 1024; KB/MB/GB/TB are powers of 1000).
 * A decimal fraction of any length is accepted before a suffix other than B
 * ("1.5GiB", "0.035KB"); the value is computed exactly, in integers, and
 * rounded down to whole bytes ("0.035KB" is 35 bytes, "1.3MiB" 1363148).
 * Returns 0 and sets *out, or WARMCAL_E_FIELD when the text is not such a
 * count or its value is 2^64 bytes or more (err names `what`). */
WARMCAL_API int warmcal_parse_bytes(const char *text, uint64_t *out, const char *what,
                                    warmcal_error *err);

/* Format bytes with a binary unit and 2 decimals ("3.00 GiB") into buf. */
WARMCAL_API char *warmcal_format_bytes(uint64_t bytes, char *buf, size_t len);

/* The current UTC time as ISO 8601 ("2026-11-25T04:00:00Z") into buf
 * ("" when the clock fails); returns buf. */
WARMCAL_API char *warmcal_utc_now(char *buf, size_t len);

/* Monotonic clock in nanoseconds, the time base of every warmcal event. */
WARMCAL_API uint64_t warmcal_now_ns(void);

#ifdef __cplusplus
}
#endif
#endif
