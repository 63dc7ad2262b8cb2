/* spool_internal.h — what the spool reader shares with the converter inside
 * warmcal-trace and is no public interface. Not installed. */
#ifndef WARMCAL_SPOOL_INTERNAL_H
#define WARMCAL_SPOOL_INTERNAL_H

#include "warmcal/spool.h"

/* As warmcal_spool_read, but a damaged spool still gives *out: the records
 * before the damage (its INFO records name the session a damaged spool
 * belongs to). Returns the error all the same; *out is NULL only when
 * nothing could be read (the file cannot be opened, no memory). */
int warmcal__spool_read_partial(const char *path, size_t max_bytes, warmcal_spool **out,
                                warmcal_error *err);

/* Let go of the mapped file pages this process holds (a mapped spool only;
 * they come back from the page cache when read again): a long pass over a
 * large spool then holds a window of it, not all of it, in its resident
 * set. Entries between two calls in a pass: */
#define WARMCAL__SPOOL_DROP_EVERY (1u << 20)
void warmcal__spool_drop_pages(const warmcal_spool *s);

#endif
