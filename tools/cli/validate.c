/* `warmcal validate`: not written yet. */
#include <stdio.h>

#include "commands.h"

int warmcal_cmd_validate(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "warmcal validate: not implemented yet\n");
    return WARMCAL_EXIT_USAGE;
}
