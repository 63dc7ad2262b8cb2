/* cli_json.h — what every `--json` output of the command line shares
 * (inspect, fit, validate, plan; docs/formats.md "Command output"):
 * text that jansson accepts whatever bytes a foreign name holds, 64-bit
 * byte counts that stay exact, and one way to print the document. */
#ifndef WARMCAL_CLI_JSON_H
#define WARMCAL_CLI_JSON_H

#include <jansson.h>
#include <stdint.h>

/* s as a JSON string; a text that is not valid UTF-8 has its non-ASCII
 * bytes replaced by '?' (jansson holds only UTF-8). NULL when out of memory. */
json_t *cli_json_text(const char *s);

/* v as a JSON integer, or as decimal text above 2^63-1 (jansson's integers
 * are signed 64-bit). */
json_t *cli_json_u64(uint64_t v);

/* obj[key] = value, stealing value (also on failure); key is made valid
 * UTF-8 as cli_json_text does. -1 on failure (value NULL included), else 0. */
int cli_json_put(json_t *obj, const char *key, json_t *value);

/* Print doc indented on stdout with a final newline; doc stays the
 * caller's. Nonzero when stdout cannot be written. */
int cli_json_print(const json_t *doc);

#endif
