/* cli_args.h — option values every subcommand reads alike. */
#ifndef WARMCAL_CLI_ARGS_H
#define WARMCAL_CLI_ARGS_H

#include <stdint.h>

/* A decimal integer in [0, max]: digits only, no sign, no spaces. 0 and
 * *out set, or -1 (then *out is untouched). */
int cli_parse_uint(const char *text, uint64_t max, uint64_t *out);

#endif
