/* cli_args.h — option values every subcommand reads alike. */
#ifndef WARMCAL_CLI_ARGS_H
#define WARMCAL_CLI_ARGS_H

#include <stddef.h>
#include <stdint.h>

/* An option that takes a value, as --name VALUE or --name=VALUE (or
 * short_name VALUE, "-o FILE", when short_name is not NULL): the value goes
 * to *slot, which must start NULL; a second one is refused. */
typedef struct {
    const char *name, *short_name;
    const char **slot;
} cli_option;

/* argv[*i] as one of opts[0..n_opts). Returns 1 when it was one (*i then
 * past its value), 0 when it is none of them, -1 on bad usage: a missing or
 * empty value, or the option given twice; then one line "warmcal CMD: ..."
 * naming the option is printed on stderr (cmd: "report", ...). */
int cli_take_option(const char *cmd, int argc, char **argv, int *i, const cli_option *opts,
                    size_t n_opts);

/* A decimal integer in [0, max]: digits only, no sign, no spaces. 0 and
 * *out set, or -1 (then *out is untouched). */
int cli_parse_uint(const char *text, uint64_t max, uint64_t *out);

#endif
