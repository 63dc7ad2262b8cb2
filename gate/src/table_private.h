/* Inside the table library only: what its files (table.c, table_read.c,
 * table_validate.c, table_write.c, table_file.c, table_json.c) share.
 * Nothing here is exported from the gate library. */
#ifndef WARMCAL_TABLE_PRIVATE_H
#define WARMCAL_TABLE_PRIVATE_H

#include <nettle/sha2.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "warmcal/table.h"

/* --- validation (table_validate.c) --- */

/* 64 lowercase hex digits and a NUL; else E_FIELD at file/where. */
int warmcal__check_sha256(const char *hex, const char *file, const char *where, warmcal_error *err);
/* Every rule for one entry except uniqueness; i is its index in the file. */
int warmcal__check_estimate(const warmcal_estimate *e, size_t i, const char *file,
                            warmcal_error *err);

/* --- reading (table_read.c) --- */

/* Parse and validate a table held in memory (len bytes, no NUL needed), as
 * warmcal_table_read does a file's bytes; errors name `file`. *out is the
 * caller's (NULL on error); its sha256 is left empty. */
int warmcal__table_parse(const char *data, size_t len, const char *file, warmcal_table **out,
                         warmcal_error *err);

/* --- JSON (table_json.c) --- */

/* 1 when text[0..len) is well-formed JSON with an object or an array at the
 * top, as jansson's loader parses it, decided without allocating: a load
 * that failed on such a text ran out of memory. Encoding, duplicate keys,
 * numeric range and nesting beyond 2048 are jansson's own errors, with codes
 * of their own, and are not checked. */
int warmcal__json_well_formed(const char *text, size_t len);
/* 1 when the document jansson loaded from text[0..len) holds every key,
 * string and number as the text writes them, in the same order: 0 means a
 * failed allocation cut a token short while it was read (root may be NULL:
 * then 0). The type is jansson's json_t. */
struct json_t;
int warmcal__json_same_as_text(struct json_t *root, const char *text, size_t len);

/* --- file I/O (table_file.c) --- */

/* Finish a SHA-256 as 64 lowercase hex digits and a NUL. */
void warmcal__hex_digest(struct sha256_ctx *ctx, char hex[65]);
/* Open path for reading, refusing anything but a regular file; *fd, *size. */
int warmcal__open_regular(const char *path, int *fd, off_t *size, warmcal_error *err);
/* read(2), again when a signal interrupts it. */
ssize_t warmcal__read_retry(int fd, void *dst, size_t len);
/* The whole regular file into *data (malloc'd, the caller frees it), *len bytes. */
int warmcal__slurp(const char *path, char **data, size_t *len, warmcal_error *err);

#endif
