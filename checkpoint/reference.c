#include "reference.h"

#include <stdio.h>
#include <stdlib.h>

#include "guard.h"
#include "h5.h"

struct eopt_reference {
    hid_t fid;
    char path[1024];
};

eopt_status eopt_reference_open(const char *path, eopt_reference **out)
{
    *out = NULL;
    EOPT_TRY(eopt_guard_open(path));
    eopt_reference *ref = calloc(1, sizeof *ref);
    if (!ref)
        return eopt_fail(EOPT_ERR_NOMEM, "out of memory");
    snprintf(ref->path, sizeof ref->path, "%s", path);
    ref->fid = eopt_h5_open_read(path);
    if (ref->fid < 0) {
        free(ref);
        return eopt_fail(EOPT_ERR_IO, "cannot open '%s' as HDF5", path);
    }
    *out = ref;
    return EOPT_OK;
}

void eopt_reference_close(eopt_reference *ref)
{
    if (!ref)
        return;
    H5Fclose(ref->fid);
    free(ref);
}

static eopt_status root_attr(const eopt_reference *ref, const char *key)
{
    if (!eopt_h5_attr_exists(ref->fid, key))
        return eopt_fail(EOPT_ERR_FORMAT, "%s: root attribute '%s' is missing", ref->path, key);
    return EOPT_OK;
}

eopt_status eopt_reference_str(const eopt_reference *ref, const char *key, char *buf, size_t size)
{
    EOPT_TRY(root_attr(ref, key));
    return eopt_h5_attr_read_str(ref->fid, key, ref->path, buf, size);
}

eopt_status eopt_reference_ints(const eopt_reference *ref, const char *key, int64_t *out, int max, int *n)
{
    EOPT_TRY(root_attr(ref, key));
    eopt_value v;
    int count = -1;
    if (eopt_h5_attr_read(ref->fid, key, ref->path, &v) == EOPT_OK) {
        if (v.kind == EOPT_VAL_INT || v.kind == EOPT_VAL_BOOL)
            count = 1, out[0] = v.i;
        else if (v.kind == EOPT_VAL_FLOATS && v.nf <= max)
            count = v.nf;
        for (int k = 0; v.kind == EOPT_VAL_FLOATS && k < count; k++) {
            out[k] = (int64_t)v.fv[k];
            count = (double)out[k] == v.fv[k] ? count : -1;
        }
    }
    if (count < 1 || count > max)
        return eopt_fail(EOPT_ERR_FORMAT, "%s: attribute '%s' is not 1..%d integers", ref->path, key, max);
    if (n)
        *n = count;
    return EOPT_OK;
}

eopt_status eopt_reference_tensor(const eopt_reference *ref, const char *name, eopt_dtype dt, eopt_tensor *out)
{
    *out = (eopt_tensor){0};
    if (eopt_h5_kind_of(ref->fid, name, NULL) != EOPT_H5_DATASET)
        return eopt_fail(EOPT_ERR_FORMAT, "%s: dataset '%s' is missing", ref->path, name);
    return eopt_h5_dataset_read_as(ref->fid, name, ref->path, dt, out);
}
