/* A program outside warmcal's build that marks its warmup passes with
 * warmcal/profile.h, linked with pkg-config's warmcal-inject. Run without
 * `warmcal profile` (the driver never initialised the profiler), both calls
 * must do nothing and say so: WARMCAL_E_STATE; a bad label is refused first,
 * profiled or not: WARMCAL_E_INVAL. */
#include <stdio.h>

#include "warmcal/profile.h"

int main(void)
{
    int bad = warmcal_phase_begin("has space", 512, 1);
    int begin = warmcal_phase_begin("context", 512, 1);
    int end = warmcal_phase_end();
    printf("bad label %d, begin %d, end %d\n", bad, begin, end);
    return bad == WARMCAL_E_INVAL && begin == WARMCAL_E_STATE && end == WARMCAL_E_STATE ? 0 : 1;
}
