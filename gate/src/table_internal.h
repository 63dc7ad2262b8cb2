/* Inside the gate library only: the table's evaluation with a search hint. */
#ifndef WARMCAL_TABLE_INTERNAL_H
#define WARMCAL_TABLE_INTERNAL_H

#include "warmcal/table.h"

/* warmcal_estimate_eval without an error record, for the gate's thousands of
 * evaluations per decision. *segment carries the envelope segment found for
 * the previous tokens between calls on the same entry (start it at 0; any
 * value is safe): ascending tokens then skip the search. Returns 0,
 * WARMCAL_E_RANGE (above the range under refuse, or beyond 64 bits) or
 * WARMCAL_E_INVAL (a malformed entry). */
int warmcal__estimate_eval_hint(const warmcal_estimate *e, warmcal_above_policy above,
                                uint64_t tokens, size_t *segment, uint64_t *bytes);

#endif
