/* Inside the table library only: what its files (table.c, table_read.c,
 * table_validate.c, table_write.c, table_file.c) share. Nothing here is
 * exported from the gate library. */
#ifndef WARMCAL_TABLE_PRIVATE_H
#define WARMCAL_TABLE_PRIVATE_H

#include <nettle/sha2.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "warmcal/table.h"

/* --- validation (table_validate.c) --- */

/* Well-formed UTF-8: no overlong forms, no surrogates, at most U+10FFFF. */
int warmcal__utf8_ok(const char *s);
/* 64 lowercase hex digits and a NUL; else E_FIELD at file/where. */
int warmcal__check_sha256(const char *hex, const char *file, const char *where, warmcal_error *err);
/* Every rule for one entry except uniqueness; i is its index in the file. */
int warmcal__check_estimate(const warmcal_estimate *e, size_t i, const char *file,
                            warmcal_error *err);

/* --- file I/O (table_file.c) --- */

/* Finish a SHA-256 as 64 lowercase hex digits and a NUL. */
void warmcal__hex_digest(struct sha256_ctx *ctx, char hex[65]);
/* Open path for reading, refusing anything but a regular file; *fd, *size. */
int warmcal__open_regular(const char *path, int *fd, off_t *size, warmcal_error *err);
/* read(2), again when a signal interrupts it. */
ssize_t warmcal__read_retry(int fd, void *dst, size_t len);
/* The whole regular file into *data (malloc'd, the caller frees it), *len bytes. */
int warmcal__slurp(const char *path, char **data, size_t *len, warmcal_error *err);
/* write(2) until all n bytes are written; 0, or -1 with errno. */
int warmcal__write_all(int fd, const char *p, size_t n);
/* fsync the folder holding path; 0 or an errno value. */
int warmcal__sync_folder(const char *path);

#endif
