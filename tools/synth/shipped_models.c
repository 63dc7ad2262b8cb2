/* Shipped model configs and deployments by name: see shipped_models.h. */
#define _XOPEN_SOURCE 700 /* realpath, strndup */
#include "shipped_models.h"

#include "install_paths.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* set by tools/synth/CMakeLists.txt: relative to the executable's folder */
#ifndef WARMCAL_MODELS_INSTALL_REL
#define WARMCAL_MODELS_INSTALL_REL "../share/warmcal/models"
#endif
#ifndef WARMCAL_MODELS_BUILD_REL
#define WARMCAL_MODELS_BUILD_REL NULL
#endif

static int is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int ends_with(const char *s, const char *tail)
{
    size_t n = strlen(s), t = strlen(tail);
    return n >= t && strcmp(s + n - t, tail) == 0;
}

/* A path rather than a name: what the user typed is used as it is. */
static int is_path(const char *arg)
{
    return strchr(arg, '/') || ends_with(arg, ".json") || is_file(arg);
}

static char *join(const char *a, const char *b, const char *c)
{
    size_t len = strlen(a) + strlen(b) + strlen(c) + 1;
    char *out = malloc(len);
    if (out)
        snprintf(out, len, "%s%s%s", a, b, c);
    return out;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The entries of dir that hold rel (a model's "/config.json"), or else end
 * in suffix (".json": deployments, the model's config.json left out),
 * sorted and comma-separated into buf, suffix cut. */
static void list_entries(const char *dir, const char *rel, const char *suffix, char *buf, size_t len)
{
    buf[0] = '\0';
    DIR *d = opendir(dir);
    if (!d)
        return;
    char *names[256] = {0};
    size_t n = 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < sizeof names / sizeof names[0]) {
        if (e->d_name[0] == '.')
            continue;
        char *name = NULL;
        if (rel) {
            char *inside = join(dir, "/", e->d_name);
            char *file = inside ? join(inside, rel, "") : NULL;
            if (file && is_file(file))
                name = strdup(e->d_name);
            free(file);
            free(inside);
        } else if (ends_with(e->d_name, suffix) && strcmp(e->d_name, "config.json") != 0) {
            name = strndup(e->d_name, strlen(e->d_name) - strlen(suffix));
        }
        if (name)
            names[n++] = name;
    }
    closedir(d);
    qsort(names, n, sizeof names[0], by_name);
    size_t used = 0;
    int full = 0;
    for (size_t i = 0; i < n; i++) {
        /* room for this entry and a closing ", ..." */
        if (!full && used + 2 + strlen(names[i]) + 5 < len)
            used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? ", " : "", names[i]);
        else if (!full && used + 5 < len)
            full = 1, used += (size_t)snprintf(buf + used, len - used, ", ...");
        free(names[i]);
    }
}

char *warmcal_synth_model_file(const char *arg, char *why, size_t len)
{
    if (is_path(arg))
        return strdup(arg);
    /* the first of the installed and the build tree's folders that exists,
     * and only that one: an installed command never reaches a build tree */
    const char *const rels[] = {WARMCAL_MODELS_INSTALL_REL, WARMCAL_MODELS_BUILD_REL};
    char *dir = warmcal_beside_exe_first(rels, sizeof rels / sizeof rels[0], is_dir);
    char *first_dir = dir ? realpath(dir, NULL) : NULL; /* bin/../share/...: named plainly */
    free(dir);
    if (first_dir && arg[0] != '.') {
        char *file = join(first_dir, "/", arg);
        char *config = file ? join(file, "/config.json", "") : NULL;
        free(file);
        if (config && is_file(config)) {
            free(first_dir);
            return config;
        }
        free(config);
    }
    char list[1024] = "";
    if (first_dir) {
        list_entries(first_dir, "/config.json", NULL, list, sizeof list);
        snprintf(why, len, "'%s' is not a file and not a model shipped with warmcal (in %s: %s)",
                 arg, first_dir, *list ? list : "none");
    } else {
        snprintf(why, len, "'%s' is not a file, and no models shipped with warmcal were found "
                           "beside the command", arg);
    }
    free(first_dir);
    return NULL;
}

char *warmcal_synth_deployment_file(const char *arg, const char *model_arg, char *why, size_t len)
{
    if (is_path(arg))
        return strdup(arg);
    if (!model_arg) {
        snprintf(why, len, "'%s' is not a file, and a deployment by name is looked up beside "
                           "the model: give --model too", arg);
        return NULL;
    }
    char *dir = warmcal_synth_model_file(model_arg, why, len);
    if (!dir)
        return NULL;
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    else
        strcpy(dir, ".");
    char *file = join(dir, "/", arg);
    char *json = file ? join(file, ".json", "") : NULL;
    free(file);
    /* config.json is the model, never a deployment */
    if (json && arg[0] != '.' && strcmp(arg, "config") != 0 && is_file(json)) {
        free(dir);
        return json;
    }
    free(json);
    char list[1024] = "";
    list_entries(dir, NULL, ".json", list, sizeof list);
    snprintf(why, len, "'%s' is not a file and not a deployment beside the model in %s (%s)", arg,
             dir, *list ? list : "none there");
    free(dir);
    return NULL;
}
