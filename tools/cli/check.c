/* `warmcal check`: not written yet. */
#include <stdio.h>

#include "commands.h"

int warmcal_cmd_check(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "warmcal check: not implemented yet\n");
    return WARMCAL_EXIT_USAGE;
}
