#include "softening.h"

#include <math.h>

eopt_status eopt_softening_check(double s, const char *what)
{
    if (!(s >= 0.0 && s <= 1.0)) /* written so that NaN fails too */
        return eopt_fail(EOPT_ERR_ARG, "%s: softening must be in [0, 1], got %g", what, s);
    return EOPT_OK;
}

eopt_status eopt_soften(eopt_backend *be, eopt_workspace *ws, int m, int n, const float *X, float *O, double s,
                        double eps)
{
    float *norm = eopt_ws_floats(ws, 1);
    if (!norm)
        return eopt_fail(EOPT_ERR_NOMEM, "softening workspace");
    /* N = X / (||X||_F + eps);  O <- lerp(O, N, s) = (1 - s) O + s N (exactly N at s = 1) */
    be->reduce(be, EOPT_RED_NORM, EOPT_AXIS_ALL, m, n, X, NULL, n, 1.0f, norm);
    eopt_ew_run(be, EOPT_EW(lerp_normalized, (int64_t)m * n, .y = O, .a = O, .b = X, .norm = norm, .w = (float)s,
                            .eps = (float)eps));
    return EOPT_OK;
}
