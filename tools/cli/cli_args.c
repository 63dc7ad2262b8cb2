/* Option values every subcommand reads alike (cli_args.h). */
#include "cli_args.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>

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
