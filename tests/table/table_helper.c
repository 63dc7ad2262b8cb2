/* table_helper — test helper for the command-line table tests: writes the
 * reference table of sample_table.h, and evaluates a table through the
 * library so the tests can compare `warmcal estimate` with it.
 *
 * usage: table_helper write PATH
 *        table_helper estimate PATH RANK LABEL TOKENS
 *          prints the bytes, or "error CODE WHERE" when the library refuses */
#define _POSIX_C_SOURCE 200809L
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sample_table.h"

int main(int argc, char **argv)
{
    warmcal_error err;
    warmcal_error_clear(&err);
    warmcal_table *t = NULL;
    if (argc == 3 && strcmp(argv[1], "write") == 0) {
        if (sample_table(&t, &err) == 0 && warmcal_table_write(t, argv[2], &err) == 0) {
            warmcal_table_free(t);
            return 0;
        }
    } else if (argc == 6 && strcmp(argv[1], "estimate") == 0) {
        if (warmcal_table_read(argv[2], &t, &err) == 0) {
            uint64_t bytes = 0;
            int rc = warmcal_table_estimate(t, atoi(argv[3]), argv[4], strtoull(argv[5], NULL, 10), 1,
                                            &bytes, &err);
            if (rc)
                printf("error %d %s\n", rc, err.where);
            else
                printf("%" PRIu64 "\n", bytes);
            warmcal_table_free(t);
            return 0;
        }
    } else {
        fprintf(stderr, "usage: table_helper write PATH | estimate PATH RANK LABEL TOKENS\n");
        return 2;
    }
    warmcal_table_free(t);
    char msg[512];
    fprintf(stderr, "table_helper: %s\n", warmcal_error_format(&err, msg, sizeof msg));
    return 1;
}
