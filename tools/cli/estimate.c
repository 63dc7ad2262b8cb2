/* `warmcal estimate`: not written yet. */
#include <stdio.h>

#include "commands.h"

int warmcal_cmd_estimate(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "warmcal estimate: not implemented yet\n");
    return WARMCAL_EXIT_USAGE;
}
