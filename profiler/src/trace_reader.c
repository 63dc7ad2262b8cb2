/* HDF5 trace reader (warmcal/trace.h): accepts any file that follows the
 * schema, whoever wrote it (warmcal, h5py, ...). Strings may be fixed or
 * variable length; integers of any width and signedness are read by name
 * through a one-member memory compound, so extra fields and attributes are
 * ignored and every value is checked (no negatives, no overflow) before it
 * lands in the narrower C field. */
#define _POSIX_C_SOURCE 200809L
#include "trace_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "warmcal/text.h"

#define WHERE_LEN 96

static const char *class_name(H5T_class_t c)
{
    switch (c) {
    case H5T_INTEGER: return "integer";
    case H5T_FLOAT: return "float";
    case H5T_TIME: return "time";
    case H5T_STRING: return "string";
    case H5T_BITFIELD: return "bitfield";
    case H5T_OPAQUE: return "opaque";
    case H5T_COMPOUND: return "compound";
    case H5T_REFERENCE: return "reference";
    case H5T_ENUM: return "enum";
    case H5T_VLEN: return "vlen";
    case H5T_ARRAY: return "array";
    default: return "unknown type";
    }
}

static void hdf5_quiet_at_exit(void)
{
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

/* Some corrupt files make HDF5 leak internal objects; at exit its library
 * shutdown then prints "HDF5: infinite loop closing library" unless error
 * printing is off. Once HDF5 has failed on a file, switch printing off at
 * exit. Registered after HDF5's own exit handler (HDF5 registers it when first
 * called, and a failure means it was), this one runs before it. */
static void hdf5_failed(void)
{
    static int registered;
    if (!registered)
        registered = atexit(hdf5_quiet_at_exit) == 0;
}

static int read_failed(const char *path, const char *where, warmcal_error *err)
{
    hdf5_failed();
    return warmcal_error_set(err, WARMCAL_E_IO, path, where, "cannot read (corrupt file?)");
}

/* A fixed-length string value of `n` bytes with padding `pad`, as a
 * NUL-terminated copy; NULL when out of memory. */
static char *copy_fixed(const char *bytes, size_t n, H5T_str_t pad)
{
    size_t len = strnlen(bytes, n);
    if (pad == H5T_STR_SPACEPAD)
        while (len > 0 && bytes[len - 1] == ' ')
            len--;
    char *s = malloc(len + 1);
    if (s) {
        memcpy(s, bytes, len);
        s[len] = '\0';
    }
    return s;
}

/* A memory string type matching a file string type's length, padding and
 * character set (HDF5 refuses to convert between ASCII and UTF-8). */
static hid_t mem_string_type(hid_t ftype)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0)
        return t;
    int vlen = H5Tis_variable_str(ftype) > 0;
    if (H5Tset_size(t, vlen ? H5T_VARIABLE : H5Tget_size(ftype)) < 0 ||
        H5Tset_cset(t, H5Tget_cset(ftype)) < 0 ||
        (!vlen && H5Tset_strpad(t, H5Tget_strpad(ftype)) < 0)) {
        H5Tclose(t);
        return H5I_INVALID_HID;
    }
    return t;
}

/* --- root attributes ------------------------------------------------------ */

typedef enum { VALUE_OK, VALUE_WRONG_SHAPE, VALUE_FAILED, VALUE_NOMEM } value_status;

static value_status attr_check_single(hid_t attr)
{
    hid_t space = H5Aget_space(attr);
    if (space < 0)
        return VALUE_FAILED;
    hssize_t n = H5Sget_simple_extent_npoints(space);
    H5Sclose(space);
    return n == 1 ? VALUE_OK : n < 0 ? VALUE_FAILED : VALUE_WRONG_SHAPE;
}

/* A single string attribute (fixed or variable length) as a malloc'd copy. */
static value_status attr_string(hid_t attr, hid_t ftype, char **out)
{
    value_status st = attr_check_single(attr);
    if (st != VALUE_OK)
        return st;
    hid_t mtype = mem_string_type(ftype);
    if (mtype < 0)
        return VALUE_FAILED;
    st = VALUE_FAILED;
    if (H5Tis_variable_str(ftype) > 0) {
        char *v = NULL;
        if (H5Aread(attr, mtype, &v) >= 0) {
            *out = strdup(v ? v : "");
            st = *out ? VALUE_OK : VALUE_NOMEM;
            hid_t space = H5Screate(H5S_SCALAR);
            H5Dvlen_reclaim(mtype, space, H5P_DEFAULT, &v);
            H5Sclose(space);
        }
    } else {
        size_t n = H5Tget_size(ftype);
        char *buf = malloc(n);
        if (!buf)
            st = VALUE_NOMEM;
        else if (H5Aread(attr, mtype, buf) >= 0) {
            *out = copy_fixed(buf, n, H5Tget_strpad(ftype));
            st = *out ? VALUE_OK : VALUE_NOMEM;
        }
        free(buf);
    }
    H5Tclose(mtype);
    return st;
}

/* An integer of any width: u holds it unless it is negative, then s does. */
typedef struct {
    int negative;
    uint64_t u;
    int64_t s;
} any_int;

static value_status attr_integer(hid_t attr, hid_t ftype, any_int *v)
{
    value_status st = attr_check_single(attr);
    if (st != VALUE_OK)
        return st;
    memset(v, 0, sizeof *v);
    if (H5Tget_sign(ftype) == H5T_SGN_2) {
        if (H5Aread(attr, H5T_NATIVE_INT64, &v->s) < 0)
            return VALUE_FAILED;
        v->negative = v->s < 0;
        v->u = v->negative ? 0 : (uint64_t)v->s;
        return VALUE_OK;
    }
    return H5Aread(attr, H5T_NATIVE_UINT64, &v->u) < 0 ? VALUE_FAILED : VALUE_OK;
}

/* An attribute's value as display text; never fails but for memory. */
static char *attr_text(hid_t attr)
{
    char buf[64];
    char *text = NULL;
    hid_t ftype = H5Aget_type(attr);
    H5T_class_t cls = ftype < 0 ? H5T_NO_CLASS : H5Tget_class(ftype);
    value_status st = VALUE_WRONG_SHAPE;
    if (cls == H5T_STRING) {
        st = attr_string(attr, ftype, &text);
    } else if (cls == H5T_INTEGER && H5Tget_precision(ftype) <= 64) {
        any_int v;
        st = attr_integer(attr, ftype, &v);
        if (st == VALUE_OK) {
            if (v.negative)
                snprintf(buf, sizeof buf, "%" PRId64, v.s);
            else
                snprintf(buf, sizeof buf, "%" PRIu64, v.u);
        }
    } else if (cls == H5T_FLOAT) {
        double d;
        st = attr_check_single(attr);
        if (st == VALUE_OK && H5Aread(attr, H5T_NATIVE_DOUBLE, &d) < 0)
            st = VALUE_FAILED;
        if (st == VALUE_OK)
            snprintf(buf, sizeof buf, "%.17g", d);
    }
    if (st == VALUE_WRONG_SHAPE || (cls != H5T_STRING && cls != H5T_INTEGER && cls != H5T_FLOAT))
        snprintf(buf, sizeof buf, "<%s>", class_name(cls));
    else if (st == VALUE_FAILED) {
        hdf5_failed();
        snprintf(buf, sizeof buf, "<unreadable>");
    }
    if (ftype >= 0)
        H5Tclose(ftype);
    if (!text && st != VALUE_NOMEM)
        text = strdup(buf);
    return text;
}

typedef struct {
    warmcal_trace *t;
    int nomem;
} attr_walk;

static herr_t collect_attr(hid_t loc, const char *name, const H5A_info_t *info, void *data)
{
    (void)info;
    attr_walk *walk = data;
    warmcal_trace *t = walk->t;
    warmcal_trace_attr *grown = realloc(t->attrs, (t->n_attrs + 1) * sizeof *grown);
    if (!grown) {
        walk->nomem = 1;
        return -1;
    }
    t->attrs = grown;
    hid_t attr = H5Aopen(loc, name, H5P_DEFAULT);
    char *value = attr < 0 ? strdup("<unreadable>") : attr_text(attr);
    if (attr >= 0)
        H5Aclose(attr);
    char *copy = strdup(name);
    if (!value || !copy) {
        free(value);
        free(copy);
        walk->nomem = 1;
        return -1;
    }
    t->attrs[t->n_attrs].name = copy;
    t->attrs[t->n_attrs].value = value;
    t->n_attrs++;
    return 0;
}

typedef enum { WANT_INT, WANT_STRING } attr_want;

/* Open a required attribute and check its class. Returns the attribute and
 * its type, or an error naming it. `missing_code` lets the schema version
 * say "not a warmcal trace" (FORMAT) where the others say FIELD. */
static int open_required(hid_t file, const char *path, const char *name, attr_want want,
                         int missing_code, hid_t *attr, hid_t *ftype, warmcal_error *err)
{
    char where[WHERE_LEN];
    snprintf(where, sizeof where, "attribute '%s'", name);
    htri_t exists = H5Aexists(file, name);
    if (exists < 0)
        return read_failed(path, where, err);
    if (!exists)
        return warmcal_error_set(err, missing_code, path, where, "missing");
    *attr = H5Aopen(file, name, H5P_DEFAULT);
    *ftype = *attr < 0 ? H5I_INVALID_HID : H5Aget_type(*attr);
    if (*ftype < 0) {
        if (*attr >= 0)
            H5Aclose(*attr);
        return read_failed(path, where, err);
    }
    H5T_class_t cls = H5Tget_class(*ftype);
    H5T_class_t expect = want == WANT_INT ? H5T_INTEGER : H5T_STRING;
    int too_wide = want == WANT_INT && cls == H5T_INTEGER && H5Tget_precision(*ftype) > 64;
    if (cls == expect && !too_wide)
        return WARMCAL_OK;
    H5Tclose(*ftype);
    H5Aclose(*attr);
    if (too_wide)
        return warmcal_error_set(err, WARMCAL_E_FIELD, path, where,
                                 "expected an integer of at most 64 bits");
    return warmcal_error_set(err, WARMCAL_E_FIELD, path, where, "expected %s, found %s",
                             want == WANT_INT ? "an integer" : "a string", class_name(cls));
}

static int shape_error(value_status st, const char *path, const char *where, warmcal_error *err)
{
    if (st == VALUE_NOMEM)
        return warmcal_error_set(err, WARMCAL_E_NOMEM, path, where, "out of memory");
    if (st == VALUE_WRONG_SHAPE)
        return warmcal_error_set(err, WARMCAL_E_FIELD, path, where, "expected a single value");
    return read_failed(path, where, err);
}

/* A required integer attribute in [0, max]. */
static int req_uint(hid_t file, const char *path, const char *name, uint64_t max, int missing_code,
                    uint64_t *out, warmcal_error *err)
{
    hid_t attr, ftype;
    int rc = open_required(file, path, name, WANT_INT, missing_code, &attr, &ftype, err);
    if (rc)
        return rc;
    any_int v;
    value_status st = attr_integer(attr, ftype, &v);
    H5Tclose(ftype);
    H5Aclose(attr);
    char where[WHERE_LEN];
    snprintf(where, sizeof where, "attribute '%s'", name);
    if (st != VALUE_OK)
        return shape_error(st, path, where, err);
    if (v.negative)
        return warmcal_error_set(err, WARMCAL_E_FIELD, path, where, "expected >= 0, found %" PRId64,
                                 v.s);
    if (v.u > max)
        return warmcal_error_set(err, WARMCAL_E_FIELD, path, where,
                                 "expected <= %" PRIu64 ", found %" PRIu64, max, v.u);
    *out = v.u;
    return WARMCAL_OK;
}

static int req_string(hid_t file, const char *path, const char *name, char **out,
                      warmcal_error *err)
{
    hid_t attr, ftype;
    int rc = open_required(file, path, name, WANT_STRING, WARMCAL_E_FIELD, &attr, &ftype, err);
    if (rc)
        return rc;
    value_status st = attr_string(attr, ftype, out);
    H5Tclose(ftype);
    H5Aclose(attr);
    if (st == VALUE_OK)
        return WARMCAL_OK;
    char where[WHERE_LEN];
    snprintf(where, sizeof where, "attribute '%s'", name);
    return shape_error(st, path, where, err);
}

static int read_run_attrs(hid_t file, const char *path, warmcal_trace *t, warmcal_error *err)
{
    attr_walk walk = {t, 0};
    hsize_t idx = 0;
    /* Native order of the name index is the order the attributes are stored in. */
    if (H5Aiterate2(file, H5_INDEX_NAME, H5_ITER_NATIVE, &idx, collect_attr, &walk) < 0)
        return walk.nomem ? warmcal_error_set(err, WARMCAL_E_NOMEM, path, NULL, "out of memory")
                          : read_failed(path, "root attributes", err);

    uint64_t schema, rank, world, complete;
    int rc = req_uint(file, path, "warmcal_schema", UINT64_MAX, WARMCAL_E_FORMAT, &schema, err);
    if (rc)
        return rc;
    if (schema != WARMCAL_TRACE_SCHEMA)
        return warmcal_error_set(err, WARMCAL_E_FORMAT, path, "attribute 'warmcal_schema'",
                                 "expected %d, found %" PRIu64, WARMCAL_TRACE_SCHEMA, schema);
    if ((rc = req_uint(file, path, "world_size", INT32_MAX, WARMCAL_E_FIELD, &world, err)) ||
        (rc = req_uint(file, path, "rank", INT32_MAX, WARMCAL_E_FIELD, &rank, err)))
        return rc;
    if (world < 1)
        return warmcal_error_set(err, WARMCAL_E_FIELD, path, "attribute 'world_size'",
                                 "expected >= 1, found 0");
    if (rank >= world)
        return warmcal_error_set(err, WARMCAL_E_FIELD, path, "attribute 'rank'",
                                 "expected 0 <= rank < world_size (%" PRIu64 "), found %" PRIu64,
                                 world, rank);
    t->schema = (int)schema;
    t->rank = (int)rank;
    t->world_size = (int)world;
    if ((rc = req_string(file, path, "model", &t->model, err)) ||
        (rc = req_string(file, path, "source", &t->source, err)) ||
        (rc = req_string(file, path, "gpu_name", &t->gpu_name, err)))
        return rc;
    if (!warmcal__source_known(t->source))
        return warmcal_error_set(err, WARMCAL_E_FIELD, path, "attribute 'source'",
                                 "expected cupti, torch, simulated or import, found '%s'",
                                 t->source);
    /* refused here, where the file can be named, not later by a table
     * writer that only knows the table */
    if (!warmcal_utf8_valid(t->model))
        return warmcal_error_set(err, WARMCAL_E_FIELD, path, "attribute 'model'",
                                 "not valid UTF-8");
    if (!warmcal_utf8_valid(t->gpu_name))
        return warmcal_error_set(err, WARMCAL_E_FIELD, path, "attribute 'gpu_name'",
                                 "not valid UTF-8");
    if ((rc = req_uint(file, path, "gpu_total_bytes", UINT64_MAX, WARMCAL_E_FIELD,
                       &t->gpu_total_bytes, err)) ||
        (rc = req_uint(file, path, "complete", 1, WARMCAL_E_FIELD, &complete, err)))
        return rc;
    t->complete = (int)complete;
    return WARMCAL_OK;
}

/* --- /phases --------------------------------------------------------------- */

/* Read one column of n rows by name, as 64-bit integers of the file's
 * signedness. */
static int read_int_column(hid_t d, const char *name, int is_signed, size_t n, void *buf)
{
    hid_t mtype = H5Tcreate(H5T_COMPOUND, sizeof(uint64_t));
    herr_t rc = -1;
    if (mtype >= 0 &&
        H5Tinsert(mtype, name, 0, is_signed ? H5T_NATIVE_INT64 : H5T_NATIVE_UINT64) >= 0)
        rc = n ? H5Dread(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) : 0;
    if (mtype >= 0)
        H5Tclose(mtype);
    return rc < 0 ? -1 : 0;
}

static void store(warmcal_phase *p, const warmcal_col *col, uint64_t v)
{
    char *field = (char *)p + col->offset;
    switch (col->kind) {
    case WARMCAL_COL_U8: *(uint8_t *)field = (uint8_t)v; break;
    case WARMCAL_COL_U32: *(uint32_t *)field = (uint32_t)v; break;
    default: *(uint64_t *)field = v; break;
    }
}

static int integer_column(hid_t d, hid_t member, const warmcal_col *col, const char *path,
                          warmcal_phase *phases, size_t n, warmcal_error *err)
{
    char where[WHERE_LEN];
    snprintf(where, sizeof where, "phases.%s", col->name);
    H5T_class_t cls = H5Tget_class(member);
    if (cls != H5T_INTEGER)
        return warmcal_error_set(err, WARMCAL_E_FIELD, path, where,
                                 "expected an integer, found %s", class_name(cls));
    if (H5Tget_precision(member) > 64)
        return warmcal_error_set(err, WARMCAL_E_FIELD, path, where,
                                 "expected an integer of at most 64 bits");
    int is_signed = H5Tget_sign(member) == H5T_SGN_2;
    uint64_t max = col->kind == WARMCAL_COL_U8 ? UINT8_MAX
                 : col->kind == WARMCAL_COL_U32 ? UINT32_MAX : UINT64_MAX;
    uint64_t *vals = malloc((n ? n : 1) * sizeof *vals);
    if (!vals)
        return warmcal_error_set(err, WARMCAL_E_NOMEM, path, where, "out of memory");
    int rc = WARMCAL_OK;
    if (read_int_column(d, col->name, is_signed, n, vals) < 0)
        rc = read_failed(path, where, err);
    for (size_t i = 0; !rc && i < n; i++) {
        int64_t s;
        memcpy(&s, &vals[i], sizeof s);
        snprintf(where, sizeof where, "phases[%zu].%s", i, col->name);
        if (is_signed && s < 0)
            rc = warmcal_error_set(err, WARMCAL_E_FIELD, path, where,
                                   "expected >= 0, found %" PRId64, s);
        else if (vals[i] > max)
            rc = warmcal_error_set(err, WARMCAL_E_FIELD, path, where,
                                   "expected <= %" PRIu64 ", found %" PRIu64, max, vals[i]);
        else
            store(&phases[i], col, vals[i]);
    }
    free(vals);
    return rc;
}

/* Copy one label, refusing what warmcal_phase cannot hold rather than
 * silently merging two long labels into one. */
static int store_label(warmcal_phase *p, size_t i, const char *s, size_t len, const char *path,
                       warmcal_error *err)
{
    if (len >= WARMCAL_LABEL_LEN) {
        char where[WHERE_LEN];
        snprintf(where, sizeof where, "phases[%zu].label", i);
        return warmcal_error_set(err, WARMCAL_E_FIELD, path, where,
                                 "expected at most %d bytes, found %zu", WARMCAL_LABEL_LEN - 1,
                                 len);
    }
    memcpy(p->label, s, len);
    return WARMCAL_OK;
}

static int label_column(hid_t d, hid_t member, const char *path, warmcal_phase *phases, size_t n,
                        warmcal_error *err)
{
    H5T_class_t cls = H5Tget_class(member);
    if (cls != H5T_STRING)
        return warmcal_error_set(err, WARMCAL_E_FIELD, path, "phases.label",
                                 "expected a string, found %s", class_name(cls));
    int vlen = H5Tis_variable_str(member) > 0;
    size_t width = vlen ? sizeof(char *) : H5Tget_size(member);
    H5T_str_t pad = vlen ? H5T_STR_NULLTERM : H5Tget_strpad(member);
    hid_t stype = mem_string_type(member);
    hid_t mtype = stype < 0 ? H5I_INVALID_HID : H5Tcreate(H5T_COMPOUND, width);
    hid_t space = H5Dget_space(d);
    char *buf = calloc(n ? n : 1, width);
    int rc = WARMCAL_OK;
    if (!buf)
        rc = warmcal_error_set(err, WARMCAL_E_NOMEM, path, "phases.label", "out of memory");
    else if (mtype < 0 || space < 0 || H5Tinsert(mtype, "label", 0, stype) < 0 ||
             (n && H5Dread(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0))
        rc = read_failed(path, "phases.label", err);
    else {
        for (size_t i = 0; !rc && i < n; i++) {
            if (vlen) {
                const char *s;
                memcpy(&s, buf + i * width, sizeof s);
                rc = store_label(&phases[i], i, s ? s : "", s ? strlen(s) : 0, path, err);
            } else {
                char *s = copy_fixed(buf + i * width, width, pad);
                rc = s ? store_label(&phases[i], i, s, strlen(s), path, err)
                       : warmcal_error_set(err, WARMCAL_E_NOMEM, path, "phases.label",
                                           "out of memory");
                free(s);
            }
        }
        if (vlen && n)
            H5Dvlen_reclaim(mtype, space, H5P_DEFAULT, buf);
    }
    free(buf);
    if (space >= 0)
        H5Sclose(space);
    if (mtype >= 0)
        H5Tclose(mtype);
    if (stype >= 0)
        H5Tclose(stype);
    return rc;
}

/* Open /name as a one-dimensional dataset and return its row count. */
/* A damaged row type can describe fields outside the row, and HDF5 1.10
 * then reads out of bounds while converting: check the layout first. */
static int compound_layout_ok(hid_t ftype)
{
    size_t size = H5Tget_size(ftype);
    int members = H5Tget_nmembers(ftype);
    if (size == 0 || members < 0)
        return 0;
    for (int i = 0; i < members; i++) {
        hid_t m = H5Tget_member_type(ftype, (unsigned)i);
        size_t msize = m < 0 ? 0 : H5Tget_size(m);
        size_t offset = H5Tget_member_offset(ftype, (unsigned)i);
        if (m >= 0)
            H5Tclose(m);
        if (msize == 0 || offset > size || msize > size - offset)
            return 0;
    }
    return 1;
}

/* Rows claimed by a dataset must be storable in the file: a damaged extent
 * would otherwise ask for more memory than the machine has. */
static int rows_fit_file(hid_t file, hsize_t rows)
{
    hsize_t bytes = 0;
    return H5Fget_filesize(file, &bytes) >= 0 && rows <= bytes;
}

static int open_table(hid_t file, const char *path, const char *name, hid_t *d, hsize_t *rows,
                      warmcal_error *err)
{
    *d = H5Oopen(file, name, H5P_DEFAULT);
    if (*d < 0)
        return read_failed(path, name, err);
    if (H5Iget_type(*d) != H5I_DATASET) {
        H5Oclose(*d);
        *d = H5I_INVALID_HID;
        return warmcal_error_set(err, WARMCAL_E_FORMAT, path, name, "expected a dataset");
    }
    hid_t space = H5Dget_space(*d);
    int ndims = space < 0 ? -1 : H5Sget_simple_extent_ndims(space);
    int rc = WARMCAL_OK;
    if (ndims < 0)
        rc = read_failed(path, name, err);
    else if (ndims != 1)
        rc = warmcal_error_set(err, WARMCAL_E_FORMAT, path, name,
                               "expected one dimension, found %d", ndims);
    else if (H5Sget_simple_extent_dims(space, rows, NULL) < 0)
        rc = read_failed(path, name, err);
    else if (!rows_fit_file(file, *rows))
        rc = warmcal_error_set(err, WARMCAL_E_FORMAT, path, name,
                               "%llu rows cannot be stored in this file (corrupt?)",
                               (unsigned long long)*rows);
    if (space >= 0)
        H5Sclose(space);
    if (rc && *d >= 0) {
        H5Dclose(*d);
        *d = H5I_INVALID_HID;
    }
    return rc;
}

static int read_phases(hid_t file, const char *path, warmcal_trace *t, warmcal_error *err)
{
    htri_t exists = H5Lexists(file, "phases", H5P_DEFAULT);
    if (exists < 0)
        return read_failed(path, "phases", err);
    if (!exists)
        return warmcal_error_set(err, WARMCAL_E_FORMAT, path, "phases", "dataset missing");
    hid_t d = H5I_INVALID_HID;
    hsize_t rows = 0;
    int rc = open_table(file, path, "phases", &d, &rows, err);
    if (rc)
        return rc;
    hid_t ftype = H5Dget_type(d);
    if (ftype < 0)
        rc = read_failed(path, "phases", err);
    else if (H5Tget_class(ftype) != H5T_COMPOUND)
        rc = warmcal_error_set(err, WARMCAL_E_FORMAT, path, "phases",
                               "expected a compound (table), found %s",
                               class_name(H5Tget_class(ftype)));
    else if (!compound_layout_ok(ftype))
        rc = warmcal_error_set(err, WARMCAL_E_FORMAT, path, "phases",
                               "row type has fields outside its row (corrupt?)");
    else if (rows > SIZE_MAX / sizeof(warmcal_phase) ||
             !(t->phases = calloc(rows ? (size_t)rows : 1, sizeof *t->phases)))
        rc = warmcal_error_set(err, WARMCAL_E_NOMEM, path, "phases",
                               "out of memory for %llu rows", (unsigned long long)rows);
    size_t n = (size_t)rows;
    for (size_t c = 0; !rc && c < warmcal__n_phase_cols; c++) {
        const warmcal_col *col = &warmcal__phase_cols[c];
        int idx = H5Tget_member_index(ftype, col->name);
        if (idx < 0) {
            if (!col->optional) {
                char where[WHERE_LEN];
                snprintf(where, sizeof where, "phases.%s", col->name);
                rc = warmcal_error_set(err, WARMCAL_E_FIELD, path, where, "missing");
            }
            continue;
        }
        hid_t member = H5Tget_member_type(ftype, (unsigned)idx);
        if (member < 0)
            rc = read_failed(path, "phases", err);
        else if (col->kind == WARMCAL_COL_LABEL)
            rc = label_column(d, member, path, t->phases, n, err);
        else
            rc = integer_column(d, member, col, path, t->phases, n, err);
        if (member >= 0)
            H5Tclose(member);
    }
    for (size_t i = 0; !rc && i < n; i++)
        rc = warmcal__check_phase(&t->phases[i], i, path, WARMCAL_E_FIELD, err);
    if (!rc)
        t->n_phases = n;
    if (ftype >= 0)
        H5Tclose(ftype);
    H5Dclose(d);
    return rc;
}

static int count_events(hid_t file, const char *path, warmcal_trace *t, warmcal_error *err)
{
    htri_t exists = H5Lexists(file, "events", H5P_DEFAULT);
    if (exists < 0)
        return read_failed(path, "events", err);
    if (!exists)
        return WARMCAL_OK;
    hid_t d;
    hsize_t rows;
    int rc = open_table(file, path, "events", &d, &rows, err);
    if (rc)
        return rc;
    H5Dclose(d);
    t->n_events = (size_t)rows;
    return WARMCAL_OK;
}

static herr_t find_lock_error(unsigned n, const H5E_error2_t *e, void *found)
{
    (void)n;
    if (e->min_num == H5E_CANTLOCKFILE)
        *(int *)found = 1;
    return 0;
}

/* Whether H5Fopen failed only because a process has the file open for
 * writing: HDF5 locks files it writes, and a live trace is one. */
static int open_was_locked_out(void)
{
    int found = 0;
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, find_lock_error, &found);
    return found;
}

/* Say why a file cannot even be opened in the words of the system ("No such
 * file or directory", "Permission denied") before HDF5's vaguer failure. */
static int check_openable(const char *path, warmcal_error *err)
{
    /* O_NONBLOCK: opening a FIFO must not wait for a writer */
    int fd = open(path, O_RDONLY | O_NONBLOCK);
    if (fd < 0)
        return warmcal_error_set(err, WARMCAL_E_IO, path, NULL, "cannot open: %s",
                                 strerror(errno));
    struct stat st;
    int ok = fstat(fd, &st) == 0;
    close(fd);
    if (ok && S_ISDIR(st.st_mode))
        return warmcal_error_set(err, WARMCAL_E_IO, path, NULL, "cannot open: is a directory");
    if (!ok || !S_ISREG(st.st_mode))
        return warmcal_error_set(err, WARMCAL_E_IO, path, NULL, "cannot open: not a regular file");
    return WARMCAL_OK;
}

int warmcal_trace_read(const char *path, warmcal_trace **out, warmcal_error *err)
{
    if (out)
        *out = NULL;
    if (!path || !out)
        return warmcal_error_set(err, WARMCAL_E_INVAL, path, NULL, "no path or output given");
    int rc = check_openable(path, err);
    if (rc)
        return rc;
    warmcal_trace *t = calloc(1, sizeof *t);
    if (!t || !(t->path = strdup(path))) {
        free(t);
        return warmcal_error_set(err, WARMCAL_E_NOMEM, path, NULL, "out of memory");
    }

    warmcal_h5_quiet q;
    warmcal__h5_quiet_begin(&q);
    hid_t file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (file < 0) {
        hdf5_failed();
        if (open_was_locked_out())
            rc = warmcal_error_set(err, WARMCAL_E_IO, path, NULL,
                                   "cannot open: locked by a writer (still running?); "
                                   "HDF5_USE_FILE_LOCKING=FALSE reads it anyway");
        else
            rc = warmcal_error_set(err, WARMCAL_E_IO, path, NULL,
                                   "cannot open as HDF5 (missing, truncated or corrupt)");
    }
    if (!rc)
        rc = read_run_attrs(file, path, t, err);
    if (!rc)
        rc = read_phases(file, path, t, err);
    if (!rc)
        rc = count_events(file, path, t, err);
    if (file >= 0)
        H5Fclose(file);
    warmcal__h5_quiet_end(&q);

    if (rc) {
        warmcal_trace_free(t);
        return rc;
    }
    *out = t;
    return WARMCAL_OK;
}

void warmcal_trace_free(warmcal_trace *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n_attrs; i++) {
        free(t->attrs[i].name);
        free(t->attrs[i].value);
    }
    free(t->attrs);
    free(t->phases);
    free(t->model);
    free(t->source);
    free(t->gpu_name);
    free(t->path);
    free(t);
}
