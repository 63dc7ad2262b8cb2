/* Paths relative to the running executable: see install_paths.h. */
#define _POSIX_C_SOURCE 200809L
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "install_paths.h"

char *warmcal_beside_exe(const char *rel)
{
    if (rel[0] == '/')
        return strdup(rel);
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return NULL;
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (!slash)
        return NULL;
    *slash = '\0';
    size_t len = strlen(exe) + 1 + strlen(rel) + 1;
    char *out = malloc(len);
    if (out)
        snprintf(out, len, "%s/%s", exe, rel);
    return out;
}

char *warmcal_beside_exe_first(const char *const *rels, size_t n, int (*found)(const char *path))
{
    for (size_t i = 0; i < n; i++) {
        char *path = rels[i] ? warmcal_beside_exe(rels[i]) : NULL;
        if (path && found(path))
            return path;
        free(path);
    }
    return NULL;
}
