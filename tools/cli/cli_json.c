/* The command line's JSON output helpers (cli_json.h). */
#define _POSIX_C_SOURCE 200809L
#include "cli_json.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

json_t *cli_json_text(const char *s)
{
    json_t *j = json_string(s);
    if (j)
        return j;
    char *copy = strdup(s);
    if (!copy)
        return NULL;
    for (char *c = copy; *c; c++)
        if ((unsigned char)*c >= 0x80)
            *c = '?';
    j = json_string(copy);
    free(copy);
    return j;
}

json_t *cli_json_u64(uint64_t v)
{
    return v <= INT64_MAX ? json_integer((json_int_t)v) : json_sprintf("%" PRIu64, v);
}

int cli_json_put(json_t *obj, const char *key, json_t *value)
{
    /* a key may be a foreign file's attribute name: made valid like text */
    json_t *k = cli_json_text(key);
    int rc = k && value ? json_object_set_new(obj, json_string_value(k), value) : -1;
    if (rc < 0 && !k)
        json_decref(value);
    json_decref(k);
    return rc;
}

int cli_json_print(const json_t *doc)
{
    return json_dumpf(doc, stdout, JSON_INDENT(2)) != 0 || putchar('\n') == EOF;
}
