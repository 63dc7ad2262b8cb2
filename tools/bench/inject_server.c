/* A warmup-like server for bench-inject: phases marked with NVTX ranges in
 * warmcal's convention, each allocating and freeing device and pool memory
 * through the driver (the fake one in the build). Run profiled and
 * unprofiled by bench-inject, which compares the two times.
 * Usage: bench-inject-server PHASES ALLOCS_PER_PHASE */
#include <cuda.h>
#include <nvtx3/nvToolsExt.h>

#include <stdio.h>
#include <stdlib.h>

#define CHECK_CU(call)                                                        \
    do {                                                                      \
        CUresult rc_ = (call);                                                \
        if (rc_ != CUDA_SUCCESS) {                                            \
            fprintf(stderr, "bench-inject-server: %s: error %d\n", #call, (int)rc_); \
            return 1;                                                         \
        }                                                                     \
    } while (0)

int main(int argc, char **argv)
{
    long phases = argc > 1 ? strtol(argv[1], NULL, 10) : 50;
    long allocs = argc > 2 ? strtol(argv[2], NULL, 10) : 2000;
    if (phases < 1 || allocs < 1)
        return 2;
    CUdevice dev;
    CUcontext ctx;
    CUstream stream;
    CHECK_CU(cuInit(0));
    CHECK_CU(cuDeviceGet(&dev, 0));
    CHECK_CU(cuDevicePrimaryCtxRetain(&ctx, dev));
    CHECK_CU(cuCtxSetCurrent(ctx));
    CHECK_CU(cuStreamCreate(&stream, 0));
    CUdeviceptr *live = calloc((size_t)allocs, sizeof *live);
    if (!live)
        return 1;
    for (long p = 0; p < phases; p++) {
        char msg[96];
        snprintf(msg, sizeof msg, "warmcal tokens=%ld batch=1 label=context", 16 * (p + 1));
        nvtxRangePushA(msg);
        /* activations that grow and shrink: every other block is freed at
         * once, the rest at the end of the pass; one in eight from the pool */
        for (long i = 0; i < allocs; i++) {
            size_t bytes = (size_t)(1 + i % 7) << 16;
            if (i % 8 == 7)
                CHECK_CU(cuMemAllocAsync(&live[i], bytes, stream));
            else
                CHECK_CU(cuMemAlloc(&live[i], bytes));
            if (i % 2 == 1) {
                CHECK_CU(i % 8 == 7 ? cuMemFreeAsync(live[i], stream) : cuMemFree(live[i]));
                live[i] = 0;
            }
        }
        for (long i = 0; i < allocs; i++)
            if (live[i])
                CHECK_CU(i % 8 == 7 ? cuMemFreeAsync(live[i], stream) : cuMemFree(live[i]));
        CHECK_CU(cuStreamSynchronize(stream));
        nvtxRangePop();
    }
    free(live);
    CHECK_CU(cuStreamDestroy(stream));
    CHECK_CU(cuDevicePrimaryCtxRelease(dev));
    return 0;
}
