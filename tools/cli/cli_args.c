/* Option values every subcommand reads alike (cli_args.h). */
#include "cli_args.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cli_take_option(const char *cmd, int argc, char **argv, int *i, const cli_option *opts,
                    size_t n_opts)
{
    const char *a = argv[*i];
    for (size_t k = 0; k < n_opts; k++) {
        size_t n = strlen(opts[k].name);
        const char *value = NULL;
        if (strncmp(a, opts[k].name, n) == 0 && a[n] == '=') {
            value = a + n + 1;
        } else if (strcmp(a, opts[k].name) == 0 ||
                   (opts[k].short_name && strcmp(a, opts[k].short_name) == 0)) {
            if (*i + 1 < argc)
                value = argv[++*i];
        } else {
            continue;
        }
        if (!value || !value[0]) {
            fprintf(stderr, "warmcal %s: %s needs a value (see 'warmcal %s --help')\n", cmd,
                    strchr(a, '=') ? opts[k].name : a, cmd);
            return -1;
        }
        if (*opts[k].slot) {
            fprintf(stderr, "warmcal %s: %s given twice ('%s' and '%s')\n", cmd, opts[k].name,
                    *opts[k].slot, value);
            return -1;
        }
        *opts[k].slot = value;
        return 1;
    }
    return 0;
}

int cli_parse_uint(const char *text, uint64_t max, uint64_t *out)
{
    if (!text[0])
        return -1;
    for (const char *p = text; *p; p++)
        if (!isdigit((unsigned char)*p))
            return -1;
    errno = 0;
    unsigned long long v = strtoull(text, NULL, 10);
    if (errno == ERANGE || v > max)
        return -1;
    *out = v;
    return 0;
}
