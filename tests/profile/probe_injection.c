/* probe_injection.c — a stand-in for an injection library: counts the
 * driver's calls of InitializeInjection, and calls cuInit from inside it as
 * real injections may (the driver must not deadlock or call it twice). */
#include <dlfcn.h>

#include <cuda.h>

#define PROBE_EXPORT __attribute__((visibility("default")))

PROBE_EXPORT int probe_injection_calls;
PROBE_EXPORT int probe_injection_inner_init = -1;

PROBE_EXPORT int InitializeInjection(void)
{
    probe_injection_calls++;
    CUresult (*init)(unsigned int) = (CUresult(*)(unsigned int))dlsym(RTLD_DEFAULT, "cuInit");
    probe_injection_inner_init = init ? (int)init(0) : -2;
    return 1;
}
