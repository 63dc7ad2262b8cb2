/* progress.h — the command lines' progress line on stderr: warmcal/progress.h
 * (in warmcal-common, which never writes) decides and paces it; this part
 * is the one that writes, so it lives with the programs, not the libraries.
 * Used by `warmcal` and by `warmcal-synth`. */
#ifndef WARMCAL_CLI_PROGRESS_H
#define WARMCAL_CLI_PROGRESS_H

#include "warmcal/progress.h"

/* Set p up to write to stderr when stderr is a terminal or
 * WARMCAL_PROGRESS=1 (WARMCAL_PROGRESS=0: never); allowed 0 turns it off
 * whatever those say (a rank other than 0, a run printing nothing). */
void cli_progress_start(warmcal_progress *p, int allowed);

#endif
