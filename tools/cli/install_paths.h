/* Where `warmcal` finds the files it needs beside itself: an installed tree
 * (PREFIX/bin/warmcal, PREFIX/lib, PREFIX/share/warmcal, ...) wherever
 * PREFIX was moved, and, after that, the build tree it was built in. Both
 * are paths relative to the folder of the running executable, fixed at
 * compile time by tools/cli/CMakeLists.txt (GNUInstallDirs' layout, the
 * build tree's folders): no absolute path of the build or install machine
 * is compiled in, and an installed command never reaches the build tree
 * while its own installed file is there. */
#ifndef WARMCAL_CLI_INSTALL_PATHS_H
#define WARMCAL_CLI_INSTALL_PATHS_H

#include <stddef.h>

/* "<folder of this executable>/rel", malloc'd, or rel itself (copied) when
 * absolute; NULL when the executable's folder is unknown or out of memory. */
char *warmcal_beside_exe(const char *rel);

/* The first of rels[0..n) (NULL entries skipped: a candidate this build
 * lacks), as warmcal_beside_exe gives it, for which found(path) is true:
 * the installed candidate first, then the build tree's, so that an
 * installed command never reaches a build tree while its own file is
 * there. malloc'd, or NULL when none is found (or out of memory). */
char *warmcal_beside_exe_first(const char *const *rels, size_t n, int (*found)(const char *path));

#endif
