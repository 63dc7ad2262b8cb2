/* warmcal/launcher.h — this process's rank and world size from what its
 * launcher exported. The injected profiler cannot ask MPI (the server owns
 * it, and may not use MPI at all) and the Python phase helper must not, so
 * both read the launcher's variables by this one rule. */
#ifndef WARMCAL_LAUNCHER_H
#define WARMCAL_LAUNCHER_H

#include <stddef.h>
#include "warmcal/error.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Looks a variable up: its value, or NULL when unset. */
typedef const char *(*warmcal_getenv_fn)(void *user, const char *name);

/* Rank and world size from the launcher's environment: WARMCAL_RANK /
 * WARMCAL_WORLD_SIZE, torchrun's RANK / WORLD_SIZE, Open MPI's
 * OMPI_COMM_WORLD_RANK / _SIZE, PMIx's PMIX_RANK, PMI_RANK / PMI_SIZE,
 * Slurm's SLURM_PROCID / SLURM_NTASKS, in that order. *from names the
 * variable the rank came from ("none" when no launcher: rank 0 of 1).
 * The rank is the first set rank variable's (an empty variable counts as
 * unset); the size is the same source's size variable, else that of a later
 * source whose rank variable holds the same rank, else rank + 1 (the
 * smallest possible) with a note in msg. Numbers are digits only.
 * Returns 0 (msg then holds a note or ""), or WARMCAL_E_FIELD when a
 * variable holds no valid number, the rank is not below the size, or
 * WARMCAL_WORLD_SIZE is set without WARMCAL_RANK (msg, of size len, says
 * which; the outputs are then rank 0 of 1, "none"). Variables are read
 * through get (NULL: getenv), so that a caller can pass an environment of
 * its own. *from points to static text. */
WARMCAL_API int warmcal_launcher_rank(warmcal_getenv_fn get, void *user, int *rank,
                                      int *world_size, const char **from, char *msg, size_t len);

#ifdef __cplusplus
}
#endif
#endif
