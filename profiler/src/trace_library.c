/* The translation unit of libwarmcal-trace.so: the library's code is the
 * static warmcal-trace, warmcal-recorder and warmcal-common archives, linked
 * in whole (profiler/CMakeLists.txt). CMake needs one source of its own to
 * build a shared library; this is it, and it adds nothing. */
#include "warmcal/trace.h"
