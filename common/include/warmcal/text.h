/* warmcal/text.h — checks on text that crosses a file boundary: every
 * warmcal file format holds UTF-8, and a reader that lets other bytes through
 * only moves the failure to a writer that then blames the wrong file. */
#ifndef WARMCAL_TEXT_H
#define WARMCAL_TEXT_H

#include "warmcal/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Whether the NUL-terminated s is well-formed UTF-8: no overlong forms, no
 * surrogates, nothing above U+10FFFF (what jansson accepts). s must not be
 * NULL. Never fails. */
WARMCAL_API int warmcal_utf8_valid(const char *s);

#ifdef __cplusplus
}
#endif
#endif
