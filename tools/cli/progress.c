/* The stderr side of the progress line (progress.h): stderr is unbuffered,
 * so each line reaches the terminal whole, in order with the messages the
 * program prints between warmcal_progress_clear calls. */
#include "progress.h"

#include <stdio.h>
#include <unistd.h>

static void write_stderr(void *user, const char *text, size_t len)
{
    (void)user;
    fflush(stderr);
    (void)!fwrite(text, 1, len, stderr);
    fflush(stderr);
}

void cli_progress_start(warmcal_progress *p, int allowed)
{
    warmcal_progress_init(p, allowed && warmcal_progress_wanted(STDERR_FILENO), write_stderr, NULL);
}
