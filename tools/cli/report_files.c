/* Files of `warmcal report`: the private working folder that holds the
 * data, the script and gnuplot's outputs (removed at the end, on error
 * too), and the report put at its target only when complete: written
 * beside it under a temporary name, flushed, and renamed over it, so the
 * target holds the old report or the new one, never part of one. */
#define _XOPEN_SOURCE 700 /* realpath */
#include "warmcal/file_io.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "report.h"
#include "warmcal/file_io.h"

char *report_make_workdir(void)
{
    const char *base = getenv("TMPDIR");
    if (!base || !base[0])
        base = "/tmp";
    size_t n = strlen(base) + sizeof "/warmcal-report-XXXXXX";
    char *dir = malloc(n);
    if (!dir) {
        fprintf(stderr, "warmcal report: out of memory\n");
        return NULL;
    }
    snprintf(dir, n, "%s/warmcal-report-XXXXXX", base);
    if (!mkdtemp(dir)) {
        fprintf(stderr, "warmcal report: cannot make a working folder in %s: %s\n", base,
                strerror(errno));
        free(dir);
        return NULL;
    }
    return dir;
}

void report_remove_workdir(char *dir)
{
    if (!dir)
        return;
    /* for whoever edits a template: the script and its data, to run again */
    const char *keep = getenv("WARMCAL_REPORT_KEEP");
    if (keep && keep[0] && strcmp(keep, "0") != 0) {
        fprintf(stderr, "warmcal report: WARMCAL_REPORT_KEEP: the script and its data are kept "
                        "in %s (cd there; gnuplot report.gp)\n", dir);
        free(dir);
        return;
    }
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char path[PATH_MAX];
            int n = snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            if (n > 0 && (size_t)n < sizeof path)
                unlink(path);
        }
        closedir(d);
    }
    if (rmdir(dir) != 0)
        fprintf(stderr, "warning: cannot remove the working folder %s: %s\n", dir, strerror(errno));
    free(dir);
}

static const char *kind_of(mode_t mode)
{
    if (S_ISDIR(mode))
        return "a folder";
    if (S_ISCHR(mode))
        return "a character device";
    if (S_ISBLK(mode))
        return "a block device";
    if (S_ISFIFO(mode))
        return "a FIFO";
    if (S_ISSOCK(mode))
        return "a socket";
    if (S_ISLNK(mode))
        return "a link";
    return "not a regular file";
}

/* The folder part of path ("." for a bare name), malloc'd. */
static char *folder_of(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return NULL;
    char *folder = strdup(dirname(copy));
    free(copy);
    return folder;
}

int report_check_target(const char *target, const char *const *inputs, size_t n_inputs)
{
    struct stat st;
    if (lstat(target, &st) == 0) {
        struct stat real;
        if (S_ISLNK(st.st_mode) && stat(target, &real) != 0) {
            fprintf(stderr, "warmcal report: -o %s: a link to nothing (%s); not written\n", target,
                    strerror(errno));
            return -1;
        }
        if (S_ISLNK(st.st_mode))
            st = real;
        if (!S_ISREG(st.st_mode)) {
            fprintf(stderr, "warmcal report: -o %s: %s, not a regular file; it is left as it "
                            "is and nothing was written\n", target, kind_of(st.st_mode));
            return -1;
        }
        for (size_t i = 0; i < n_inputs; i++) {
            struct stat in;
            if (stat(inputs[i], &in) == 0 && in.st_dev == st.st_dev && in.st_ino == st.st_ino) {
                fprintf(stderr, "warmcal report: -o %s: it is also an input (%s); nothing was "
                                "written\n", target, inputs[i]);
                return -1;
            }
        }
    } else if (errno != ENOENT) {
        fprintf(stderr, "warmcal report: -o %s: %s\n", target, strerror(errno));
        return -1;
    }
    char *folder = folder_of(target);
    if (!folder) {
        fprintf(stderr, "warmcal report: out of memory\n");
        return -1;
    }
    int rc = 0;
    if (stat(folder, &st) != 0 || !S_ISDIR(st.st_mode)) {
        fprintf(stderr, "warmcal report: -o %s: the folder %s does not exist\n", target, folder);
        rc = -1;
    } else if (access(folder, W_OK | X_OK) != 0) {
        fprintf(stderr, "warmcal report: -o %s: cannot write in the folder %s: %s\n", target,
                folder, strerror(errno));
        rc = -1;
    }
    free(folder);
    return rc;
}

int report_install(const char *target, const char *data, size_t len)
{
    /* a link stays a link: its target is replaced */
    struct stat st;
    char *real = NULL;
    if (lstat(target, &st) == 0 && S_ISLNK(st.st_mode))
        real = realpath(target, NULL);
    else
        real = strdup(target);
    if (!real) {
        fprintf(stderr, "warmcal report: -o %s: %s; nothing was written\n", target, strerror(errno));
        return -1;
    }
    size_t n = strlen(real) + sizeof ".partial-XXXXXX";
    char *tmp = malloc(n);
    if (!tmp) {
        free(real);
        fprintf(stderr, "warmcal report: out of memory\n");
        return -1;
    }
    snprintf(tmp, n, "%s.partial-XXXXXX", real);
    const char *step = "cannot create a temporary file beside it";
    int fd = mkstemp(tmp), created = fd >= 0;
    if (fd < 0)
        goto fail;
    /* mkstemp makes the file private; a report is meant to be shared: the
     * old file's permissions, or what a new file gets under the umask */
    mode_t mask = umask(0);
    umask(mask);
    mode_t mode = stat(real, &st) == 0 && S_ISREG(st.st_mode) ? st.st_mode & 07777 : 0666 & ~mask;
    step = "cannot write the temporary file";
    if (fchmod(fd, mode) != 0 || warmcal_write_all(fd, data, len) != 0)
        goto fail;
    step = "cannot flush the temporary file to disk";
    if (fsync(fd) != 0)
        goto fail;
    int rc = close(fd);
    fd = -1;
    if (rc != 0)
        goto fail;
    /* what was checked at the start may have become a folder or a device
     * since: only a regular file, or nothing, is renamed over */
    if (lstat(real, &st) == 0 && !S_ISREG(st.st_mode)) {
        unlink(tmp);
        fprintf(stderr, "warmcal report: -o %s: it became %s while the report was made; it is "
                        "left as it is and nothing was written\n", target, kind_of(st.st_mode));
        free(tmp);
        free(real);
        return REPORT_INSTALL_TARGET;
    }
    step = "cannot rename the temporary file over it";
    if (rename(tmp, real) != 0)
        goto fail;
    warmcal_sync_folder(real); /* the rename on disk, best effort: the report is in place */
    free(tmp);
    free(real);
    return 0;
fail:;
    int e = errno;
    if (fd >= 0)
        close(fd);
    if (created)
        unlink(tmp);
    fprintf(stderr, "warmcal report: -o %s: %s: %s; nothing was written\n", target, step,
            strerror(e));
    free(tmp);
    free(real);
    return REPORT_INSTALL_IO;
}
