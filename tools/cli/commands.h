/* commands.h — the `warmcal` subcommands the dispatcher in warmcal.c knows.
 * Each takes its own argv (argv[0] is the subcommand's name) and returns the
 * process exit status (DESIGN.md, "Command line"). */
#ifndef WARMCAL_CLI_COMMANDS_H
#define WARMCAL_CLI_COMMANDS_H

enum {
    WARMCAL_EXIT_OK = 0,
    WARMCAL_EXIT_NEGATIVE = 1, /* a negative verdict, such as an under-estimate found */
    WARMCAL_EXIT_USAGE = 2     /* bad usage or bad input */
};

int warmcal_cmd_inspect(int argc, char **argv);
int warmcal_cmd_fit(int argc, char **argv);
int warmcal_cmd_check(int argc, char **argv);
int warmcal_cmd_estimate(int argc, char **argv);
int warmcal_cmd_validate(int argc, char **argv);
int warmcal_cmd_profile(int argc, char **argv);
int warmcal_cmd_import(int argc, char **argv);
int warmcal_cmd_report(int argc, char **argv);
int warmcal_cmd_plan(int argc, char **argv);

#endif
