/* warmcal/file_io.h — writing a file so that it is whole on disk: the
 * estimate table's writer and `warmcal report` write, flush and rename with
 * these. Internal to warmcal's own code (not installed). */
#ifndef WARMCAL_FILE_IO_H
#define WARMCAL_FILE_IO_H

#include <stddef.h>

/* write(2) until all n bytes are written (again after a signal, and
 * waiting while a non-blocking fd is full); 0, or -1 with errno. */
int warmcal_write_all(int fd, const char *p, size_t n);

/* fsync the folder holding path, so that a rename into it is on disk; 0 or
 * an errno value. File systems that cannot sync a folder (EINVAL, ENOTSUP)
 * have nothing more to flush: 0. */
int warmcal_sync_folder(const char *path);

#endif
