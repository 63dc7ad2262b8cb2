/* Naming a JSON value's kind for error messages (see warmcal/json_kind.h),
 * in one place so every reader words a wrong type alike. */
#include "warmcal/json_kind.h"

const char *warmcal_json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    default: return "null";
    }
}
