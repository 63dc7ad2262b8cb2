/* warmcal/json_kind.h — how every warmcal reader of JSON (the estimate
 * table, the synthetic workload's model and deployment files) names the kind
 * of value it found where another was expected. Only parts that read JSON
 * link it (target warmcal-json). Internal: not installed, not part of the
 * gate's API. */
#ifndef WARMCAL_JSON_KIND_H
#define WARMCAL_JSON_KIND_H

#include <jansson.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The kind of v with its article, for "expected X, found Y" messages: "an
 * object", "an array", "a string", "an integer", "a real number", "a
 * boolean" or "null". Static text; v must not be NULL (a missing member is
 * the caller's own message). */
const char *warmcal_json_kind(const json_t *v);

#ifdef __cplusplus
}
#endif
#endif
