/* `warmcal fit`: not written yet. */
#include <stdio.h>

#include "commands.h"

int warmcal_cmd_fit(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "warmcal fit: not implemented yet\n");
    return WARMCAL_EXIT_USAGE;
}
