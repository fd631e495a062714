#include "trajectory.h"

#include <stdio.h>
#include <stdlib.h>

#include "guard.h"
#include "h5.h"

struct eopt_trajectory {
    hid_t fid;
    char path[1024];
    char case_name[128];
    int64_t steps;
    double tolerance;
};

static eopt_status read_root(eopt_trajectory *tr)
{
    char where[1100];
    snprintf(where, sizeof where, "%.1000s:/", tr->path);
    eopt_value v;
    EOPT_TRY(eopt_h5_attr_read(tr->fid, "tolerance", where, &v));
    if (v.kind != EOPT_VAL_FLOAT || !(v.f > 0))
        return eopt_fail(EOPT_ERR_FORMAT, "%s: tolerance must be a positive number", where);
    tr->tolerance = v.f;
    EOPT_TRY(eopt_h5_attr_read(tr->fid, "steps", where, &v));
    if (v.kind != EOPT_VAL_INT && v.kind != EOPT_VAL_BOOL)
        return eopt_fail(EOPT_ERR_FORMAT, "%s: steps must be an integer", where);
    tr->steps = v.i;
    if (eopt_h5_attr_exists(tr->fid, "case"))
        EOPT_TRY(eopt_h5_attr_read_str(tr->fid, "case", where, tr->case_name, sizeof tr->case_name));
    return EOPT_OK;
}

eopt_status eopt_trajectory_open(const char *path, eopt_trajectory **out)
{
    *out = NULL;
    EOPT_TRY(eopt_guard_open(path));
    eopt_trajectory tr = {.fid = eopt_h5_open_read(path)};
    snprintf(tr.path, sizeof tr.path, "%s", path);
    eopt_status st = tr.fid < 0 ? eopt_fail(EOPT_ERR_IO, "cannot open trajectory '%s'", path) : read_root(&tr);
    if (st == EOPT_OK && !(*out = malloc(sizeof tr)))
        st = eopt_fail(EOPT_ERR_NOMEM, "out of memory");
    if (st != EOPT_OK) {
        if (tr.fid >= 0)
            H5Fclose(tr.fid);
        *out = NULL;
        return st;
    }
    **out = tr;
    return EOPT_OK;
}

void eopt_trajectory_close(eopt_trajectory *tr)
{
    if (!tr)
        return;
    H5Fclose(tr->fid);
    free(tr);
}

int64_t eopt_trajectory_steps(const eopt_trajectory *tr) { return tr->steps; }
double eopt_trajectory_tolerance(const eopt_trajectory *tr) { return tr->tolerance; }
const char *eopt_trajectory_case(const eopt_trajectory *tr) { return tr->case_name; }

/* Opens the record's group; `where` gets "<path>:<group>" for messages. */
static eopt_status open_record(const eopt_trajectory *tr, eopt_traj_record rec, int64_t t, char *where, size_t size,
                               hid_t *g)
{
    char group[64];
    if (rec == EOPT_TRAJ_INIT)
        snprintf(group, sizeof group, "/init");
    else
        snprintf(group, sizeof group, "/%s/%lld", rec == EOPT_TRAJ_GRADS ? "grads" : "params", (long long)t);
    snprintf(where, size, "%.1000s:%s", tr->path, group);
    *g = eopt_h5_kind_of(tr->fid, group, NULL) == EOPT_H5_GROUP ? H5Gopen2(tr->fid, group, H5P_DEFAULT) : -1;
    return *g < 0 ? eopt_fail(EOPT_ERR_FORMAT, "%s: group is missing", where) : EOPT_OK;
}

eopt_status eopt_trajectory_has(const eopt_trajectory *tr, eopt_traj_record rec, int64_t t, const char *name,
                                int *has)
{
    char where[1100];
    hid_t g;
    *has = 0;
    EOPT_TRY(open_record(tr, rec, t, where, sizeof where, &g));
    *has = eopt_h5_kind_of(g, name, NULL) == EOPT_H5_DATASET;
    H5Gclose(g);
    return EOPT_OK;
}

eopt_status eopt_trajectory_read(const eopt_trajectory *tr, eopt_traj_record rec, int64_t t, const char *name,
                                 const eopt_tensor *like, eopt_tensor *out)
{
    char where[1100], sa[64], sb[64];
    hid_t g;
    *out = (eopt_tensor){0};
    EOPT_TRY(open_record(tr, rec, t, where, sizeof where, &g));
    eopt_status st;
    if (eopt_h5_kind_of(g, name, NULL) != EOPT_H5_DATASET)
        st = eopt_fail(EOPT_ERR_FORMAT, "%s/%s: dataset is missing", where, name);
    else if ((st = eopt_h5_dataset_read(g, name, where, out)) == EOPT_OK &&
             (out->dtype != EOPT_F32 || !eopt_tensor_same_shape(out, like))) {
        st = eopt_fail(EOPT_ERR_SHAPE, "%s/%s: shape %s, the model has %s", where, name,
                       eopt_shape_str(out->ndim, out->shape, sa, sizeof sa),
                       eopt_shape_str(like->ndim, like->shape, sb, sizeof sb));
        eopt_tensor_free(out);
    }
    H5Gclose(g);
    return st;
}
