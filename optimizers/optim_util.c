#include "optim_util.h"

#include <limits.h>

int eopt_is_none(const eopt_dict *d, const char *key)
{
    const eopt_value *v = eopt_dict_get(d, key);
    return !v || v->kind == EOPT_VAL_NONE;
}

eopt_status eopt_param_check_f32(const char *cls, const eopt_param *p)
{
    if (p->w->dtype != EOPT_F32 || p->grad->dtype != EOPT_F32 || !eopt_tensor_same_shape(p->w, p->grad))
        return eopt_fail(EOPT_ERR_UNSUPPORTED, "%s: parameter '%s' and its gradient must be float32 of one shape", cls,
                         p->name);
    return EOPT_OK;
}

eopt_status eopt_param_check_sides(const char *cls, const eopt_param *p)
{
    const int nd = p->w->ndim;
    const int64_t rows = nd >= 2 ? p->w->shape[nd - 2] : 1, cols = nd >= 1 ? p->w->shape[nd - 1] : 1;
    if (rows > INT_MAX || cols > INT_MAX)
        return eopt_fail(EOPT_ERR_SHAPE,
                         "%s: parameter '%s' is %lldx%lld, a side beyond the int sizes and leading dimensions of BLAS",
                         cls, p->name, (long long)rows, (long long)cols);
    return EOPT_OK;
}

eopt_status eopt_param_check_2d(const char *cls, const char *noun, const eopt_param *p)
{
    if (p->w->ndim != 2)
        return eopt_fail(EOPT_ERR_SHAPE, "%s is only supported for 2D %s (parameter '%s')", cls, noun, p->name);
    EOPT_TRY(eopt_param_check_sides(cls, p));
    return eopt_param_check_f32(cls, p);
}
