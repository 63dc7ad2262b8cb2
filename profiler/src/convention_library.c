/* The translation unit of libwarmcal-convention.so: the library's code is
 * the static warmcal-convention archive, linked in whole
 * (profiler/CMakeLists.txt). CMake needs one source of its own to build a
 * shared library; this is it, and it adds nothing. */
#include "warmcal/launcher.h"
#include "warmcal/phase_message.h"
