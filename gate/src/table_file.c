/* File I/O for the table library: reading only regular files (a FIFO or a
 * device given by mistake must not block), writing whole buffers, flushing a
 * folder after a rename, and SHA-256 digests of what was read. */
#define _POSIX_C_SOURCE 200809L
#include "warmcal/table.h"
#include "table_private.h"

#include <errno.h>
#include <fcntl.h>
#include <nettle/sha2.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Finish a SHA-256 as 64 lowercase hex digits and a NUL. */
void warmcal__hex_digest(struct sha256_ctx *ctx, char hex[65])
{
    uint8_t digest[SHA256_DIGEST_SIZE];
    sha256_digest(ctx, sizeof digest, digest);
    static const char digits[] = "0123456789abcdef";
    for (int i = 0; i < SHA256_DIGEST_SIZE; i++) {
        hex[2 * i] = digits[digest[i] >> 4];
        hex[2 * i + 1] = digits[digest[i] & 15];
    }
    hex[64] = '\0';
}

/* Open path for reading, refusing anything but a regular file (a FIFO or a
 * device would block or never end); *fd and *size on success. */
int warmcal__open_regular(const char *path, int *fd, off_t *size, warmcal_error *err)
{
    *fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (*fd < 0)
        return warmcal_error_set(err, WARMCAL_E_IO, path, NULL, "cannot open: %s", strerror(errno));
    struct stat st;
    if (fstat(*fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(*fd);
        return warmcal_error_set(err, WARMCAL_E_IO, path, NULL, "not a regular file");
    }
    *size = st.st_size;
    return WARMCAL_OK;
}

/* read(2), again when a signal interrupts it. */
ssize_t warmcal__read_retry(int fd, void *dst, size_t len)
{
    ssize_t got;
    do
        got = read(fd, dst, len);
    while (got < 0 && errno == EINTR);
    return got;
}

/* The whole file, which must be a regular file, into a new buffer (*data,
 * the caller frees it) of *len bytes. */
int warmcal__slurp(const char *path, char **data, size_t *len, warmcal_error *err)
{
    int fd;
    off_t size;
    int rc = warmcal__open_regular(path, &fd, &size, err);
    if (rc)
        return rc;
    size_t cap = size > 0 ? (size_t)size + 1 : 4096, n = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf) {
            close(fd);
            return warmcal_error_set(err, WARMCAL_E_NOMEM, path, NULL, "out of memory");
        }
        if (n == cap) { /* the file grew while read */
            char *grown = realloc(buf, cap * 2);
            if (!grown)
                free(buf);
            buf = grown;
            cap *= 2;
            continue;
        }
        ssize_t got = warmcal__read_retry(fd, buf + n, cap - n);
        if (got < 0) {
            int e = errno;
            free(buf);
            close(fd);
            return warmcal_error_set(err, WARMCAL_E_IO, path, NULL, "cannot read: %s", strerror(e));
        }
        if (got == 0)
            break;
        n += (size_t)got;
    }
    close(fd);
    *data = buf;
    *len = n;
    return WARMCAL_OK;
}

int warmcal_sha256_file(const char *path, char hex[65], warmcal_error *err)
{
    if (!path || !hex)
        return warmcal_error_set(err, WARMCAL_E_INVAL, path, NULL, "sha256_file: bad argument");
    int fd;
    off_t size;
    int rc = warmcal__open_regular(path, &fd, &size, err);
    if (rc)
        return rc;
    struct sha256_ctx ctx;
    sha256_init(&ctx);
    static const size_t chunk = 1 << 16;
    uint8_t *buf = malloc(chunk);
    if (!buf) {
        close(fd);
        return warmcal_error_set(err, WARMCAL_E_NOMEM, path, NULL, "out of memory");
    }
    for (;;) {
        ssize_t got = warmcal__read_retry(fd, buf, chunk);
        if (got < 0) {
            int e = errno;
            free(buf);
            close(fd);
            return warmcal_error_set(err, WARMCAL_E_IO, path, NULL, "cannot read: %s", strerror(e));
        }
        if (got == 0)
            break;
        sha256_update(&ctx, (size_t)got, buf);
    }
    free(buf);
    close(fd);
    warmcal__hex_digest(&ctx, hex);
    return WARMCAL_OK;
}
