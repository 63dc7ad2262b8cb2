/* `warmcal import SUBCOMMAND ...`: traces from measurements other tools made
 * (PyTorch memory snapshots, CSV tables). Reading a pickle safely needs
 * Python's own unpickler, so this command only hands over to the Python
 * package (gate/python/warmcal/importers): it replaces itself with
 * `PYTHON -m warmcal.importers ARGS...`, the package on PYTHONPATH and the
 * trace library named in WARMCAL_TRACE_LIB. */
#define _GNU_SOURCE /* setenv */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "commands.h"
#include "install_paths.h"

#define DEFAULT_PYTHON "/usr/bin/python3"
#define PACKAGE_MAIN "warmcal/importers/__main__.py"

static void usage(FILE *out)
{
    fprintf(out,
            "usage: warmcal import torch-snapshot SNAPSHOT.pickle... -o DIR [--tokens N]...\n"
            "                      [--batch B]... [--label L] [--rank R] [--world-size W]\n"
            "                      [--model M] [--device D] [--max-entries N]\n"
            "                      [--max-input-bytes BYTES]\n"
            "       warmcal import csv FILE.csv -o DIR [--model M] [--producer P]\n"
            "                      [--world-size W]\n\n"
            "Write warmcal traces (source = import) from measurements people already have:\n"
            "  torch-snapshot  PyTorch memory snapshots (torch.cuda.memory._dump_snapshot):\n"
            "                  one phase per file, its tokens from --tokens in file order, or\n"
            "                  one per 'warmcal tokens=N batch=B label=L' annotation; the\n"
            "                  peak is the allocator's history replayed. Only plain data is\n"
            "                  read from a pickle: one that asks for code is refused.\n"
            "  csv             a table with columns rank,label,tokens,batch,peak_bytes and\n"
            "                  optionally free_before,free_after,outcome; one trace per rank\n\n"
            "'warmcal import SUBCOMMAND --help' lists every option. The importers are\n"
            "Python: $WARMCAL_PYTHON, else %s, runs them. Exit 0 when every trace\n"
            "was written, 2 on bad arguments or bad input (nothing is written then).\n"
            "A progress line goes to stderr when it is a terminal.\n\n"
            "examples:\n"
            "  warmcal import torch-snapshot warmup-512.pickle warmup-4096.pickle \\\n"
            "      --tokens 512 --tokens 4096 --model my-model -o traces/\n"
            "  warmcal import csv measurements.csv --model my-model -o traces/\n",
            DEFAULT_PYTHON);
}

static int is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* Name a library in variable, unless the environment names one already:
 * the installed one beside this command (installed_rel, relative to its
 * folder), else the build tree's (build_rel, likewise), whichever is there. */
static void default_env(const char *variable, const char *installed_rel, const char *build_rel)
{
    const char *set = getenv(variable);
    if (set && set[0])
        return;
    const char *const beside[] = {installed_rel, build_rel};
    char *path = warmcal_beside_exe_first(beside, 2, is_file);
    if (path)
        setenv(variable, path, 1);
    free(path);
}

/* A folder that holds the package's importers (PACKAGE_MAIN). */
static int has_package(const char *dir)
{
    char probe[PATH_MAX];
    int n = snprintf(probe, sizeof probe, "%s/%s", dir, PACKAGE_MAIN);
    return n > 0 && (size_t)n < sizeof probe && is_file(probe);
}

/* The folder that holds the `warmcal` Python package with its importers
 * (malloc'd), or NULL. An installed warmcal looks in the folder the package
 * was installed to (WARMCAL_PYTHON_INSTALL_DIR, relative to this command's
 * own folder); a build tree uses the source tree's gate/python. */
static char *package_dir(void)
{
    static const char *const candidates[] = {
#ifdef WARMCAL_PYTHON_INSTALL_DIR
        WARMCAL_PYTHON_INSTALL_DIR,
#endif
#ifdef WARMCAL_PYTHON_BUILD_DIR
        WARMCAL_PYTHON_BUILD_DIR,
#endif
    };
    return warmcal_beside_exe_first(candidates, sizeof candidates / sizeof candidates[0],
                                    has_package);
}

/* PYTHONPATH with dir in front, so this warmcal's package wins over any
 * other on the path. */
static int prepend_pythonpath(const char *dir)
{
    const char *old = getenv("PYTHONPATH");
    if (!old || !old[0])
        return setenv("PYTHONPATH", dir, 1);
    size_t n = strlen(dir) + 1 + strlen(old) + 1;
    char *value = malloc(n);
    if (!value)
        return -1;
    snprintf(value, n, "%s:%s", dir, old);
    int rc = setenv("PYTHONPATH", value, 1);
    free(value);
    return rc;
}

int warmcal_cmd_import(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "warmcal import: no format given: expected torch-snapshot or csv (see "
                        "'warmcal import --help')\n");
        return WARMCAL_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(stdout);
        return WARMCAL_EXIT_OK;
    }
    if (argv[1][0] == '-') { /* the format comes first; Python would only say it is missing */
        fprintf(stderr, "warmcal import: unknown option '%s': expected torch-snapshot or csv "
                        "first (see 'warmcal import --help')\n", argv[1]);
        return WARMCAL_EXIT_USAGE;
    }
    const char *python = getenv("WARMCAL_PYTHON");
    if (!python || !python[0])
        python = DEFAULT_PYTHON;
    if (access(python, X_OK) != 0) {
        fprintf(stderr, "warmcal import: no Python at %s (%s): the importers need Python 3; "
                        "set WARMCAL_PYTHON to one\n", python, strerror(errno));
        return WARMCAL_EXIT_USAGE;
    }
    char *dir = package_dir();
    if (dir && prepend_pythonpath(dir) != 0) {
        fprintf(stderr, "warmcal import: cannot set PYTHONPATH: %s\n", strerror(errno));
        free(dir);
        return WARMCAL_EXIT_USAGE;
    }
    free(dir);
    /* Python 3.11 and later: keep the current folder off sys.path, so that a
     * folder named "warmcal" where the command runs cannot stand in for the
     * package. Older versions ignore it. */
    setenv("PYTHONSAFEPATH", "1", 1);
#ifndef WARMCAL_TRACE_LIB_BUILD_PATH
#define WARMCAL_TRACE_LIB_BUILD_PATH NULL
#endif
#ifndef WARMCAL_CONVENTION_LIB_BUILD_PATH
#define WARMCAL_CONVENTION_LIB_BUILD_PATH NULL
#endif
    /* the run-time names (SONAMEs): a runtime-only install has no development links */
    default_env("WARMCAL_TRACE_LIB",
                WARMCAL_INSTALL_LIBDIR_REL "/libwarmcal-trace.so." WARMCAL_SOVERSION,
                WARMCAL_TRACE_LIB_BUILD_PATH);
    default_env("WARMCAL_CONVENTION_LIB",
                WARMCAL_INSTALL_LIBDIR_REL "/libwarmcal-convention.so." WARMCAL_SOVERSION,
                WARMCAL_CONVENTION_LIB_BUILD_PATH);

    /* python -m warmcal.importers argv[1..] */
    char **args = calloc((size_t)argc + 3, sizeof *args);
    if (!args) {
        fprintf(stderr, "warmcal import: out of memory\n");
        return WARMCAL_EXIT_USAGE;
    }
    args[0] = (char *)python;
    args[1] = "-m";
    args[2] = "warmcal.importers";
    for (int i = 1; i < argc; i++)
        args[i + 2] = argv[i];
    fflush(stdout);
    execv(python, args);
    fprintf(stderr, "warmcal import: cannot run %s: %s\n", python, strerror(errno));
    free(args);
    return WARMCAL_EXIT_USAGE;
}
