#include "h5.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "../framework/backend.h"

void eopt_h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

hid_t eopt_h5_open_read(const char *path)
{
    eopt_h5_quiet();
    return H5Fis_hdf5(path) > 0 ? H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT) : -1;
}

static hid_t vlen_str_type(void)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    return t;
}

/* Creates attribute `name` of file type ft over space sp and writes buf (memory type mt). */
static eopt_status attr_put(hid_t obj, const char *name, hid_t ft, hid_t mt, hid_t sp, const void *buf)
{
    if (H5Aexists(obj, name) > 0)
        H5Adelete(obj, name);
    hid_t a = H5Acreate2(obj, name, ft, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t e = a < 0 ? -1 : H5Awrite(a, mt, buf);
    if (a >= 0)
        H5Aclose(a);
    return e < 0 ? eopt_fail(EOPT_ERR_IO, "cannot write attribute '%s'", name) : EOPT_OK;
}

eopt_status eopt_h5_attr_write_str(hid_t obj, const char *name, const char *s)
{
    hid_t t = vlen_str_type(), sp = H5Screate(H5S_SCALAR);
    eopt_status st = attr_put(obj, name, t, t, sp, &s);
    H5Sclose(sp);
    H5Tclose(t);
    return st;
}

eopt_status eopt_h5_attr_write_i64(hid_t obj, const char *name, int64_t v)
{
    hid_t sp = H5Screate(H5S_SCALAR);
    eopt_status st = attr_put(obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, sp, &v);
    H5Sclose(sp);
    return st;
}

eopt_status eopt_h5_attr_write(hid_t obj, const char *name, const eopt_value *v)
{
    if (v->kind == EOPT_VAL_NONE)
        return EOPT_OK;
    if (v->kind == EOPT_VAL_STR)
        return eopt_h5_attr_write_str(obj, name, v->s);
    if (v->kind == EOPT_VAL_INT)
        return eopt_h5_attr_write_i64(obj, name, v->i);
    eopt_status st;
    if (v->kind == EOPT_VAL_FLOATS) {
        hsize_t n = (hsize_t)v->nf;
        hid_t sp = H5Screate_simple(1, &n, NULL);
        st = attr_put(obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, sp, v->fv);
        H5Sclose(sp);
        return st;
    }
    hid_t sp = H5Screate(H5S_SCALAR);
    if (v->kind == EOPT_VAL_BOOL) {
        int8_t b = (int8_t)(v->i != 0);
        st = attr_put(obj, name, H5T_STD_I8LE, H5T_NATIVE_INT8, sp, &b);
    } else {
        st = attr_put(obj, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, sp, &v->f);
    }
    H5Sclose(sp);
    return st;
}

eopt_status eopt_h5_attrs_write(hid_t obj, const eopt_dict *d)
{
    for (int k = 0; k < d->n; k++)
        EOPT_TRY(eopt_h5_attr_write(obj, d->items[k].key, &d->items[k].v));
    return EOPT_OK;
}

int eopt_h5_attr_exists(hid_t obj, const char *name) { return H5Aexists(obj, name) > 0; }

/* Copies a string of len bytes into buf[size] (NUL-terminated), or fails if it does not fit. */
static eopt_status string_copy(const char *src, size_t len, const char *where, const char *name, char *buf, size_t size)
{
    if (len + 1 > size)
        return eopt_fail(EOPT_ERR_FORMAT, "%s: '%s' is longer than %zu characters", where, name, size - 1);
    memcpy(buf, src, len);
    buf[len] = 0;
    return EOPT_OK;
}

/* Fixed-length strings are padded with NULs or spaces; the padding is not part of the value. */
static size_t fixed_len(const char *s, size_t width, hid_t ft)
{
    size_t len = strnlen(s, width);
    if (H5Tget_strpad(ft) == H5T_STR_SPACEPAD)
        while (len > 0 && s[len - 1] == ' ')
            len--;
    return len;
}

static eopt_status attr_string(hid_t a, hid_t ft, const char *where, const char *name, char *buf, size_t size)
{
    eopt_status st;
    if (H5Tis_variable_str(ft) > 0) {
        hid_t mt = vlen_str_type();
        H5Tset_cset(mt, H5Tget_cset(ft));
        char *s = NULL;
        if (H5Aread(a, mt, &s) < 0 || !s)
            st = eopt_fail(EOPT_ERR_FORMAT, "%s: cannot read string attribute '%s'", where, name);
        else
            st = string_copy(s, strlen(s), where, name, buf, size);
        if (s)
            H5free_memory(s);
        H5Tclose(mt);
        return st;
    }
    size_t width = H5Tget_size(ft);
    char *tmp = calloc(1, width + 1);
    if (!tmp)
        return eopt_fail(EOPT_ERR_NOMEM, "out of memory");
    if (H5Aread(a, ft, tmp) < 0)
        st = eopt_fail(EOPT_ERR_FORMAT, "%s: cannot read string attribute '%s'", where, name);
    else
        st = string_copy(tmp, fixed_len(tmp, width, ft), where, name, buf, size);
    free(tmp);
    return st;
}

/* h5py stores numpy bools as an int8 enum {FALSE = 0, TRUE = 1}. */
static int is_bool_enum(hid_t ft)
{
    if (H5Tget_class(ft) != H5T_ENUM || H5Tget_size(ft) != 1 || H5Tget_nmembers(ft) != 2)
        return 0;
    return 1;
}

static eopt_status attr_value(hid_t a, const char *where, const char *name, eopt_value *v)
{
    hid_t ft = H5Aget_type(a), sp = H5Aget_space(a);
    int nd = H5Sget_simple_extent_ndims(sp);
    hssize_t n = H5Sget_simple_extent_npoints(sp);
    H5T_class_t c = H5Tget_class(ft);
    eopt_status st = EOPT_OK;
    *v = (eopt_value){0};
    if (c == H5T_STRING && nd == 0) {
        v->kind = EOPT_VAL_STR;
        st = attr_string(a, ft, where, name, v->s, sizeof v->s);
    } else if (is_bool_enum(ft) && nd == 0) {
        int8_t b = 0;
        if (H5Aread(a, ft, &b) < 0)
            st = eopt_fail(EOPT_ERR_FORMAT, "%s: cannot read attribute '%s'", where, name);
        *v = eopt_bool(b != 0);
    } else if ((c == H5T_INTEGER || c == H5T_FLOAT) && nd == 0) {
        int64_t i = 0;
        double f = 0;
        herr_t e = c == H5T_INTEGER ? H5Aread(a, H5T_NATIVE_INT64, &i) : H5Aread(a, H5T_NATIVE_DOUBLE, &f);
        if (e < 0)
            st = eopt_fail(EOPT_ERR_FORMAT, "%s: cannot read attribute '%s'", where, name);
        else if (c == H5T_FLOAT)
            *v = eopt_float(f);
        else if (H5Tget_size(ft) == 1 && (i == 0 || i == 1))
            *v = eopt_bool((int)i);
        else
            *v = eopt_int(i);
    } else if ((c == H5T_INTEGER || c == H5T_FLOAT) && nd == 1 && n >= 1 && n <= EOPT_FLOATS_MAX) {
        double fv[EOPT_FLOATS_MAX];
        if (H5Aread(a, H5T_NATIVE_DOUBLE, fv) < 0)
            st = eopt_fail(EOPT_ERR_FORMAT, "%s: cannot read attribute '%s'", where, name);
        *v = eopt_floats((int)n, fv);
    } else {
        st = eopt_fail(EOPT_ERR_FORMAT,
                       "%s: attribute '%s' has an unsupported type (class %d, %d dimensions, %lld values)", where, name,
                       (int)c, nd, (long long)n);
    }
    H5Sclose(sp);
    H5Tclose(ft);
    return st;
}

eopt_status eopt_h5_attr_read(hid_t obj, const char *name, const char *where, eopt_value *v)
{
    if (H5Aexists(obj, name) <= 0)
        return eopt_fail(EOPT_ERR_FORMAT, "%s: attribute '%s' is missing", where, name);
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0)
        return eopt_fail(EOPT_ERR_FORMAT, "%s: cannot open attribute '%s'", where, name);
    eopt_status st = attr_value(a, where, name, v);
    H5Aclose(a);
    return st;
}

eopt_status eopt_h5_attr_read_str(hid_t obj, const char *name, const char *where, char *buf, size_t size)
{
    if (H5Aexists(obj, name) <= 0)
        return eopt_fail(EOPT_ERR_FORMAT, "%s: attribute '%s' is missing", where, name);
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT), ft = H5Aget_type(a), sp = H5Aget_space(a);
    eopt_status st;
    if (H5Tget_class(ft) != H5T_STRING || H5Sget_simple_extent_ndims(sp) != 0)
        st = eopt_fail(EOPT_ERR_FORMAT, "%s: attribute '%s' is not a string", where, name);
    else
        st = attr_string(a, ft, where, name, buf, size);
    H5Sclose(sp);
    H5Tclose(ft);
    H5Aclose(a);
    return st;
}

static int in_list(const char *const *list, const char *s)
{
    for (int k = 0; list && list[k]; k++)
        if (strcmp(list[k], s) == 0)
            return 1;
    return 0;
}

eopt_status eopt_h5_attrs_read(hid_t obj, const char *where, const char *const *skip, eopt_dict *d)
{
    *d = (eopt_dict){0};
    H5O_info_t info;
    if (H5Oget_info2(obj, &info, H5O_INFO_NUM_ATTRS) < 0)
        return eopt_fail(EOPT_ERR_FORMAT, "%s: cannot list attributes", where);
    for (hsize_t k = 0; k < info.num_attrs; k++) {
        char name[256];
        if (H5Aget_name_by_idx(obj, ".", H5_INDEX_NAME, H5_ITER_INC, k, name, sizeof name, H5P_DEFAULT) < 0)
            return eopt_fail(EOPT_ERR_FORMAT, "%s: cannot read attribute name %llu", where, (unsigned long long)k);
        if (in_list(skip, name))
            continue;
        if (strlen(name) >= EOPT_KEY_MAX)
            return eopt_fail(EOPT_ERR_FORMAT, "%s: attribute name '%s' is too long", where, name);
        eopt_value v;
        EOPT_TRY(eopt_h5_attr_read(obj, name, where, &v));
        if (eopt_dict_set(d, name, v) != EOPT_OK)
            return eopt_fail_context(EOPT_ERR_FORMAT, "%s", where);
    }
    return EOPT_OK;
}

int eopt_h5_host_memory(const eopt_tensor *t) { return !t->be || t->be->device == EOPT_DEV_CPU; }

static eopt_status dtype_types(eopt_dtype dt, hid_t *ft, hid_t *mt)
{
    switch (dt) {
    case EOPT_F32: *ft = H5T_IEEE_F32LE, *mt = H5T_NATIVE_FLOAT; return EOPT_OK;
    case EOPT_I32: *ft = H5T_STD_I32LE, *mt = H5T_NATIVE_INT32; return EOPT_OK;
    case EOPT_I64: *ft = H5T_STD_I64LE, *mt = H5T_NATIVE_INT64; return EOPT_OK;
    default: return eopt_fail(EOPT_ERR_UNSUPPORTED, "%s tensors cannot be stored in a checkpoint", eopt_dtype_name(dt));
    }
}

/* t's data as host memory: t->data itself, or a staging copy (free it when it is not t->data). */
static eopt_status host_data(const eopt_tensor *t, const char *name, void **host)
{
    size_t bytes = eopt_tensor_bytes(t);
    *host = t->data;
    if (eopt_h5_host_memory(t))
        return EOPT_OK;
    *host = malloc(bytes ? bytes : 1);
    if (!*host)
        return eopt_fail(EOPT_ERR_NOMEM, "out of memory writing '%s'", name);
    eopt_status st = eopt_tensor_to_host(t, *host, bytes);
    if (st != EOPT_OK) {
        free(*host);
        *host = NULL;
    }
    return st;
}

/* The dataspace of t's shape (0-D: a scalar). */
static hid_t tensor_space(const eopt_tensor *t)
{
    hsize_t dims[EOPT_MAX_DIMS];
    for (int k = 0; k < t->ndim; k++)
        dims[k] = (hsize_t)t->shape[k];
    return t->ndim ? H5Screate_simple(t->ndim, dims, NULL) : H5Screate(H5S_SCALAR);
}

/* A dataset created without data: its space allocated now (contiguous, in the file's final
 * size) and never filled, so that another process writes its bytes later without changing any
 * of the file's metadata (eopt_h5_dataset_fill). */
eopt_status eopt_h5_dataset_reserve(hid_t loc, const char *name, const eopt_tensor *t)
{
    hid_t ft, mt;
    EOPT_TRY(dtype_types(t->dtype, &ft, &mt));
    hid_t sp = tensor_space(t);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY);
    H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER);
    hid_t d = H5Dcreate2(loc, name, ft, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    H5Pclose(dcpl);
    H5Sclose(sp);
    if (d >= 0)
        H5Dclose(d);
    return d < 0 ? eopt_fail(EOPT_ERR_IO, "cannot create dataset '%s'", name) : EOPT_OK;
}

eopt_status eopt_h5_dataset_write(hid_t loc, const char *name, const eopt_tensor *t)
{
    hid_t ft, mt;
    EOPT_TRY(dtype_types(t->dtype, &ft, &mt));
    if (!t->data)
        return eopt_fail(EOPT_ERR_ARG, "dataset '%s': a tensor without data", name);
    void *host;
    EOPT_TRY(host_data(t, name, &host));
    hid_t sp = tensor_space(t);
    hid_t d = H5Dcreate2(loc, name, ft, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    herr_t e = d < 0 ? -1 : H5Dwrite(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, host);
    if (d >= 0)
        H5Dclose(d);
    H5Sclose(sp);
    if (host != t->data)
        free(host);
    return e < 0 ? eopt_fail(EOPT_ERR_IO, "cannot write dataset '%s'", name) : EOPT_OK;
}

eopt_status eopt_h5_dataset_fill(hid_t loc, const char *path, const eopt_tensor *t)
{
    hid_t ft, mt;
    EOPT_TRY(dtype_types(t->dtype, &ft, &mt));
    void *host;
    EOPT_TRY(host_data(t, path, &host));
    hid_t d = H5Dopen2(loc, path, H5P_DEFAULT);
    hid_t sp = d < 0 ? -1 : H5Dget_space(d);
    int ok = sp >= 0 && H5Sget_simple_extent_npoints(sp) == (hssize_t)(t->ndim ? t->numel : 1);
    herr_t e = ok ? H5Dwrite(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, host) : -1;
    if (sp >= 0)
        H5Sclose(sp);
    if (d >= 0)
        H5Dclose(d);
    if (host != t->data)
        free(host);
    return e < 0 ? eopt_fail(EOPT_ERR_IO, "cannot write dataset '%s'", path) : EOPT_OK;
}

/* The dtype a numeric dataset reads into by default: floats -> float32, 64-bit integers -> int64,
 * other integers -> int32. */
static eopt_dtype natural_dtype(hid_t ft)
{
    return H5Tget_class(ft) == H5T_FLOAT ? EOPT_F32 : H5Tget_size(ft) == 8 ? EOPT_I64 : EOPT_I32;
}

/* Describes an open numeric dataset in *out (data NULL): its shape, and dtype `want` (< 0: its
 * natural dtype). */
static eopt_status dataset_describe(hid_t d, const char *name, const char *where, int want, eopt_tensor *out)
{
    *out = (eopt_tensor){0};
    hid_t ft = H5Dget_type(d), sp = H5Dget_space(d);
    H5T_class_t c = H5Tget_class(ft);
    int nd = H5Sget_simple_extent_ndims(sp);
    eopt_status st = EOPT_OK;
    if (c != H5T_FLOAT && c != H5T_INTEGER) {
        st = eopt_fail(EOPT_ERR_FORMAT, "%s/%s: dataset is not numeric (class %d)", where, name, (int)c);
    } else if (nd < 0 || nd > EOPT_MAX_DIMS) {
        st = eopt_fail(EOPT_ERR_FORMAT, "%s/%s: %d dimensions (at most %d)", where, name, nd, EOPT_MAX_DIMS);
    } else {
        hsize_t dims[EOPT_MAX_DIMS];
        int64_t shape[EOPT_MAX_DIMS];
        H5Sget_simple_extent_dims(sp, dims, NULL);
        for (int k = 0; k < nd; k++) /* beyond INT64_MAX: negative, which the check refuses */
            shape[k] = dims[k] > (hsize_t)INT64_MAX ? -1 : (int64_t)dims[k];
        eopt_dtype dt = want < 0 ? natural_dtype(ft) : (eopt_dtype)want;
        if (eopt_shape_check(nd, shape, dt) != EOPT_OK)
            st = eopt_fail_context(EOPT_ERR_FORMAT, "%s/%s: ", where, name);
        else
            *out = eopt_tensor_view(NULL, NULL, dt, nd, shape);
    }
    H5Sclose(sp);
    H5Tclose(ft);
    return st;
}

/* Reads the open dataset d into t's host memory, converted by HDF5 to t's dtype. */
static eopt_status dataset_fetch(hid_t d, const char *name, const char *where, eopt_tensor *t)
{
    hid_t ft, mt;
    EOPT_TRY(dtype_types(t->dtype, &ft, &mt));
    if (t->numel > 0 && H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, t->data) < 0)
        return eopt_fail(EOPT_ERR_FORMAT, "%s/%s: cannot read dataset", where, name);
    return EOPT_OK;
}

/* want < 0: the dataset's natural dtype; describe_only: shape and dtype, no data. */
static eopt_status dataset_read(hid_t loc, const char *name, const char *where, int want, int describe_only,
                                eopt_tensor *out)
{
    *out = (eopt_tensor){0};
    hid_t d = H5Dopen2(loc, name, H5P_DEFAULT);
    if (d < 0)
        return eopt_fail(EOPT_ERR_FORMAT, "%s: dataset '%s' is missing", where, name);
    eopt_tensor desc;
    eopt_status st = dataset_describe(d, name, where, want, &desc);
    if (st == EOPT_OK && describe_only)
        *out = desc;
    else if (st == EOPT_OK && (st = eopt_tensor_alloc(out, NULL, desc.dtype, desc.ndim, desc.shape)) == EOPT_OK &&
             (st = dataset_fetch(d, name, where, out)) != EOPT_OK)
        eopt_tensor_free(out);
    H5Dclose(d);
    return st;
}

eopt_status eopt_h5_dataset_read(hid_t loc, const char *name, const char *where, eopt_tensor *out)
{
    return dataset_read(loc, name, where, -1, 0, out);
}

eopt_status eopt_h5_dataset_read_as(hid_t loc, const char *name, const char *where, eopt_dtype dt, eopt_tensor *out)
{
    return dataset_read(loc, name, where, (int)dt, 0, out);
}

eopt_status eopt_h5_dataset_describe(hid_t loc, const char *name, const char *where, eopt_tensor *out)
{
    return dataset_read(loc, name, where, -1, 1, out);
}

eopt_status eopt_h5_dataset_read_into(hid_t loc, const char *name, const char *where, eopt_tensor *t)
{
    char sa[64], sb[64];
    hid_t d = H5Dopen2(loc, name, H5P_DEFAULT);
    if (d < 0)
        return eopt_fail(EOPT_ERR_FORMAT, "%s: dataset '%s' is missing", where, name);
    eopt_tensor desc;
    eopt_status st = dataset_describe(d, name, where, (int)t->dtype, &desc);
    if (st == EOPT_OK && !eopt_tensor_same_shape(&desc, t))
        st = eopt_fail(EOPT_ERR_SHAPE, "%s/%s: shape %s in the file, %s expected", where, name,
                       eopt_shape_str(desc.ndim, desc.shape, sa, sizeof sa), eopt_shape_str(t->ndim, t->shape, sb, sizeof sb));
    if (st == EOPT_OK)
        st = dataset_fetch(d, name, where, t);
    H5Dclose(d);
    return st;
}

eopt_status eopt_h5_strings_write(hid_t loc, const char *name, int n, const char *const *s)
{
    hsize_t dim = (hsize_t)n;
    hid_t t = vlen_str_type(), sp = H5Screate_simple(1, &dim, NULL);
    hid_t d = H5Dcreate2(loc, name, t, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    herr_t e = d < 0 ? -1 : n == 0 ? 0 : H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, s);
    if (d >= 0)
        H5Dclose(d);
    H5Sclose(sp);
    H5Tclose(t);
    return e < 0 ? eopt_fail(EOPT_ERR_IO, "cannot write string dataset '%s'", name) : EOPT_OK;
}

/* Copies n strings (vlen pointers or a fixed-width block) into out[n][width]. */
static eopt_status strings_fetch(hid_t d, hid_t ft, hid_t sp, int n, const char *where, const char *name, int width,
                                 char *out)
{
    eopt_status st = EOPT_OK;
    if (H5Tis_variable_str(ft) > 0) {
        hid_t mt = vlen_str_type();
        H5Tset_cset(mt, H5Tget_cset(ft));
        char **p = calloc((size_t)n, sizeof *p);
        if (!p)
            st = eopt_fail(EOPT_ERR_NOMEM, "out of memory");
        else if (H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, p) < 0)
            st = eopt_fail(EOPT_ERR_FORMAT, "%s/%s: cannot read strings", where, name);
        else {
            for (int k = 0; k < n && st == EOPT_OK; k++)
                st = string_copy(p[k] ? p[k] : "", p[k] ? strlen(p[k]) : 0, where, name, out + (size_t)k * width,
                                 (size_t)width);
            H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, p);
        }
        free(p);
        H5Tclose(mt);
        return st;
    }
    size_t w = H5Tget_size(ft);
    char *tmp = calloc((size_t)n, w);
    if (!tmp)
        return eopt_fail(EOPT_ERR_NOMEM, "out of memory");
    if (H5Dread(d, ft, H5S_ALL, H5S_ALL, H5P_DEFAULT, tmp) < 0)
        st = eopt_fail(EOPT_ERR_FORMAT, "%s/%s: cannot read strings", where, name);
    for (int k = 0; k < n && st == EOPT_OK; k++) {
        const char *s = tmp + (size_t)k * w;
        st = string_copy(s, fixed_len(s, w, ft), where, name, out + (size_t)k * width, (size_t)width);
    }
    free(tmp);
    return st;
}

eopt_status eopt_h5_strings_read(hid_t loc, const char *name, const char *where, int width, int *n, char **out)
{
    *n = 0;
    *out = NULL;
    hid_t d = H5Dopen2(loc, name, H5P_DEFAULT);
    if (d < 0)
        return eopt_fail(EOPT_ERR_FORMAT, "%s: dataset '%s' is missing", where, name);
    hid_t ft = H5Dget_type(d), sp = H5Dget_space(d);
    eopt_status st = EOPT_OK;
    hssize_t npoints = H5Sget_simple_extent_npoints(sp);
    if (H5Tget_class(ft) != H5T_STRING || H5Sget_simple_extent_ndims(sp) != 1) {
        st = eopt_fail(EOPT_ERR_FORMAT, "%s/%s: expected a 1-D dataset of strings", where, name);
    } else if (npoints < 0 || npoints > INT_MAX / width) { /* the buffer below is count x width */
        st = eopt_fail(EOPT_ERR_FORMAT, "%s/%s: %lld strings is too many", where, name, (long long)npoints);
    } else {
        int count = (int)npoints;
        char *buf = calloc((size_t)(count ? count : 1), (size_t)width);
        if (!buf)
            st = eopt_fail(EOPT_ERR_NOMEM, "out of memory");
        else if (count > 0)
            st = strings_fetch(d, ft, sp, count, where, name, width, buf);
        if (st == EOPT_OK) {
            *n = count;
            *out = buf;
        } else {
            free(buf);
        }
    }
    H5Sclose(sp);
    H5Tclose(ft);
    H5Dclose(d);
    return st;
}

eopt_status eopt_h5_link(hid_t loc, const char *alias, const char *target)
{
    if (H5Lcreate_hard(loc, target, loc, alias, H5P_DEFAULT, H5P_DEFAULT) < 0)
        return eopt_fail(EOPT_ERR_IO, "cannot link '%s' to '%s'", alias, target);
    return EOPT_OK;
}

eopt_h5_kind eopt_h5_kind_of(hid_t loc, const char *name, uint64_t *addr)
{
    if (H5Lexists(loc, name, H5P_DEFAULT) <= 0)
        return EOPT_H5_NONE;
    H5O_info_t info;
    if (H5Oget_info_by_name2(loc, name, &info, H5O_INFO_BASIC, H5P_DEFAULT) < 0)
        return EOPT_H5_NONE;
    if (addr)
        *addr = (uint64_t)info.addr;
    return info.type == H5O_TYPE_GROUP     ? EOPT_H5_GROUP
           : info.type == H5O_TYPE_DATASET ? EOPT_H5_DATASET
                                           : EOPT_H5_OTHER;
}

long eopt_h5_index_name(const char *s)
{
    if (!*s || strlen(s) > 9 || (s[0] == '0' && s[1]))
        return -1;
    long v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        v = v * 10 + (*s - '0');
    }
    return v;
}

static int by_index(const void *a, const void *b)
{
    long x = eopt_h5_index_name(*(char *const *)a), y = eopt_h5_index_name(*(char *const *)b);
    return (x > y) - (x < y);
}

void eopt_h5_names_free(int n, char **names)
{
    for (int k = 0; names && k < n; k++)
        free(names[k]);
    free(names);
}

static int by_name(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Every member name once: libhdf5 lists a damaged group's duplicate links as they are, and a
 * reader indexing by name would read one member twice and another never. */
static eopt_status check_unique(char **v, hsize_t n, const char *where)
{
    char **sorted = malloc((n ? n : 1) * sizeof *sorted);
    if (!sorted)
        return eopt_fail(EOPT_ERR_NOMEM, "out of memory");
    memcpy(sorted, v, n * sizeof *sorted);
    qsort(sorted, n, sizeof *sorted, by_name);
    eopt_status st = EOPT_OK;
    for (hsize_t k = 1; k < n && st == EOPT_OK; k++)
        if (strcmp(sorted[k - 1], sorted[k]) == 0)
            st = eopt_fail(EOPT_ERR_FORMAT, "%s: member '%s' appears more than once (a damaged group)", where,
                           sorted[k]);
    free(sorted);
    return st;
}

eopt_status eopt_h5_children(hid_t group, const char *where, int numeric, int *n, char ***names)
{
    *n = 0;
    *names = NULL;
    H5G_info_t info;
    if (H5Gget_info(group, &info) < 0)
        return eopt_fail(EOPT_ERR_FORMAT, "%s: cannot list the group", where);
    char **v = calloc(info.nlinks ? info.nlinks : 1, sizeof *v);
    if (!v)
        return eopt_fail(EOPT_ERR_NOMEM, "out of memory");
    for (hsize_t k = 0; k < info.nlinks; k++) {
        ssize_t len = H5Lget_name_by_idx(group, ".", H5_INDEX_NAME, H5_ITER_INC, k, NULL, 0, H5P_DEFAULT);
        v[k] = len < 0 ? NULL : malloc((size_t)len + 1);
        if (!v[k] ||
            H5Lget_name_by_idx(group, ".", H5_INDEX_NAME, H5_ITER_INC, k, v[k], (size_t)len + 1, H5P_DEFAULT) < 0) {
            eopt_h5_names_free((int)info.nlinks, v);
            return eopt_fail(EOPT_ERR_FORMAT, "%s: cannot read member %llu", where, (unsigned long long)k);
        }
        if (numeric && eopt_h5_index_name(v[k]) < 0) {
            eopt_status st = eopt_fail(EOPT_ERR_FORMAT, "%s: member '%s' is not an index 0, 1, ...", where, v[k]);
            eopt_h5_names_free((int)info.nlinks, v);
            return st;
        }
    }
    if (numeric)
        qsort(v, info.nlinks, sizeof *v, by_index);
    eopt_status st = check_unique(v, info.nlinks, where);
    if (st != EOPT_OK) {
        eopt_h5_names_free((int)info.nlinks, v);
        return st;
    }
    *n = (int)info.nlinks;
    *names = v;
    return EOPT_OK;
}

char eopt_h5_stored_type(hid_t loc, const char *name, const char *attr, size_t *bytes)
{
    *bytes = 0;
    hid_t obj = attr ? H5Aopen_by_name(loc, name, attr, H5P_DEFAULT, H5P_DEFAULT) : H5Dopen2(loc, name, H5P_DEFAULT);
    if (obj < 0)
        return 0;
    hid_t t = attr ? H5Aget_type(obj) : H5Dget_type(obj);
    H5T_class_t c = H5Tget_class(t);
    *bytes = H5Tget_size(t);
    H5Tclose(t);
    if (attr)
        H5Aclose(obj);
    else
        H5Dclose(obj);
    return c == H5T_FLOAT ? 'f' : c == H5T_INTEGER ? 'i' : 0;
}
