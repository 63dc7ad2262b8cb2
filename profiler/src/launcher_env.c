/* Rank and world size from the launcher's environment (warmcal/launcher.h):
 * what mpirun, torchrun, PMI launchers and Slurm export. */
#define _POSIX_C_SOURCE 200809L
#include "warmcal/launcher.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
    const char *rank;  /* the variable holding this process's rank */
    const char *size;  /* the one holding the job's size; NULL: the launcher sets none */
} source;

/* In order of precedence: our own override, then the launchers from the most
 * specific to the most general (torchrun runs under Slurm and mpirun; Open
 * MPI exports PMIx variables too). */
static const source sources[] = {
    {"WARMCAL_RANK", "WARMCAL_WORLD_SIZE"},
    {"RANK", "WORLD_SIZE"},
    {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"},
    {"PMIX_RANK", NULL},
    {"PMI_RANK", "PMI_SIZE"},
    {"SLURM_PROCID", "SLURM_NTASKS"},
};
#define N_SOURCES (sizeof sources / sizeof sources[0])

/* Where variables are read from: getenv unless the caller gave a lookup. */
typedef struct {
    warmcal_getenv_fn get;
    void *user;
} lookup;

/* A variable's value, NULL when unset or empty: `export RANK=` says nothing. */
static const char *value_in(const lookup *env, const char *name)
{
    if (!name)
        return NULL;
    const char *v = env->get ? env->get(env->user, name) : getenv(name);
    return v && v[0] ? v : NULL;
}

/* Strictly a decimal number in min..INT_MAX: digits only (no sign, no
 * spaces, nothing after). */
static int parse_int(const char *s, int min, int *out)
{
    long long v = 0;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return 0;
        v = v * 10 + (*p - '0');
        if (v > INT_MAX)
            return 0;
    }
    if (v < min)
        return 0;
    *out = (int)v;
    return 1;
}

int warmcal_launcher_rank(warmcal_getenv_fn get, void *user, int *rank, int *world_size,
                          const char **from, char *msg, size_t len)
{
    const lookup env = {get, user};
    if (msg && len)
        msg[0] = '\0';
    *rank = 0;
    *world_size = 1;
    *from = "none";

    const char *alone = value_in(&env, "WARMCAL_WORLD_SIZE");
    if (alone && !value_in(&env, "WARMCAL_RANK")) {
        if (msg)
            snprintf(msg, len, "WARMCAL_WORLD_SIZE=%s is set without WARMCAL_RANK", alone);
        return WARMCAL_E_FIELD;
    }

    size_t k = 0;
    while (k < N_SOURCES && !value_in(&env, sources[k].rank))
        k++;
    if (k == N_SOURCES)
        return WARMCAL_OK;

    int r = 0, n = 0;
    const char *rv = value_in(&env, sources[k].rank);
    if (!parse_int(rv, 0, &r)) {
        if (msg)
            snprintf(msg, len, "%s=%s is not a rank (a decimal number 0..%d)", sources[k].rank,
                     rv, INT_MAX);
        return WARMCAL_E_FIELD;
    }

    /* The size: the same source's; else that of a later source that agrees
     * on the rank (PMIX_RANK under srun: SLURM_PROCID, SLURM_NTASKS), since
     * launchers that agree describe the same job; else unknown. */
    const char *size_name = NULL, *sv = NULL;
    for (size_t j = k; j < N_SOURCES && !sv; j++) {
        int other = -1;
        if (j != k && !(value_in(&env, sources[j].rank) && parse_int(value_in(&env, sources[j].rank), 0, &other)
                        && other == r))
            continue;
        if (value_in(&env, sources[j].size))
            size_name = sources[j].size, sv = value_in(&env, sources[j].size);
    }
    if (sv) {
        if (!parse_int(sv, 1, &n)) {
            if (msg)
                snprintf(msg, len, "%s=%s is not a world size (a decimal number 1..%d)",
                         size_name, sv, INT_MAX);
            return WARMCAL_E_FIELD;
        }
        if (r >= n) {
            if (msg)
                snprintf(msg, len, "%s=%d is not below %s=%d", sources[k].rank, r, size_name, n);
            return WARMCAL_E_FIELD;
        }
    } else {
        if (r == INT_MAX) {
            if (msg)
                snprintf(msg, len, "%s=%d leaves no room for a world size", sources[k].rank, r);
            return WARMCAL_E_FIELD;
        }
        n = r + 1;
        if (msg)
            snprintf(msg, len,
                     "%s=%d but no variable gives the world size: recorded as %d (rank + 1), "
                     "the smallest it can be",
                     sources[k].rank, r, n);
    }
    *rank = r;
    *world_size = n;
    *from = sources[k].rank;
    return WARMCAL_OK;
}
