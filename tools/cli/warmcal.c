/* The `warmcal` command: looks the subcommand up in a table and hands it the
 * rest of the command line. Subcommands parse their own options, print data
 * on stdout and messages on stderr. */
#include <stdio.h>
#include <string.h>

#include "commands.h"

static const struct {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} commands[] = {
    {"inspect", warmcal_cmd_inspect, "show traces' run attributes and phase tables"},
    {"fit", warmcal_cmd_fit, "fit per-rank estimates from traces into a table"},
    {"check", warmcal_cmd_check, "validate an estimate table"},
    {"estimate", warmcal_cmd_estimate, "print the estimated bytes for a pass"},
    {"validate", warmcal_cmd_validate, "compare a table with measured phases"},
    {"profile", warmcal_cmd_profile, "run a command under the CUPTI profiler, one trace per rank"},
    {"import", warmcal_cmd_import, "traces from PyTorch memory snapshots or a CSV table"},
    {"report", warmcal_cmd_report, "draw needs, estimates and free memory (PNG, SVG, HTML)"},
    {"plan", warmcal_cmd_plan, "largest pass per label, shapes that fit, for given free memory"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: warmcal SUBCOMMAND [ARGS...]\n"
                 "       warmcal --help | --version\n\n"
                 "subcommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(out, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(out, "\n'warmcal SUBCOMMAND --help' describes a subcommand; 'man warmcal' all of\n"
                 "them. Exit status: 0 success, 1 a negative verdict (a phase that needed more\n"
                 "than its estimate), 2 bad usage or bad input.\n\n"
                 "examples:\n"
                 "  mpirun -np 4 warmcal-synth --model data/models/deepseek-v3/config.json \\\n"
                 "      --deployment data/models/deepseek-v3/deploy-tp4-rank0-overhead.json \\\n"
                 "      --seed 1 --out traces\n"
                 "  warmcal inspect traces/rank-0.h5\n"
                 "  warmcal fit traces/rank-*.h5 -o table.json\n"
                 "  warmcal estimate table.json --tokens 16384 --rank 0\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "warmcal: no subcommand given (usage: warmcal SUBCOMMAND [ARGS...]; "
                        "'warmcal --help' lists them)\n");
        return WARMCAL_EXIT_USAGE;
    }
    const char *name = argv[1];
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0) {
        usage(stdout);
        return WARMCAL_EXIT_OK;
    }
    if (strcmp(name, "--version") == 0) {
        printf("warmcal %s\n", WARMCAL_VERSION);
        return WARMCAL_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (strcmp(name, commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "warmcal: unknown %s '%s' ('warmcal --help' lists them)\n",
            name[0] == '-' ? "option" : "subcommand", name);
    return WARMCAL_EXIT_USAGE;
}
