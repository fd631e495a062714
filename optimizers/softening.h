/* Soft-Muon softening (dion): O <- (1 - s) O + s X / (||X||_F + eps), s in [0, 1].
 * s = 0 leaves O untouched (the caller skips the call); s = 1 gives exactly the normalised X. */
#ifndef EOPT_SOFTENING_H
#define EOPT_SOFTENING_H

#include "../framework/backend.h"
#include "../framework/tensor.h"

/* Checks s as dion does: 0 <= s <= 1 (NaN rejected); `what` names the owner in the message. */
eopt_status eopt_softening_check(double s, const char *what);
/* Blends in place: O (m x n) <- lerp(O, X / (||X||_F + eps), s). */
/* The workspace eopt_soften takes. */
static inline size_t eopt_soften_workspace_bytes(void) { return eopt_ws_floats_size(1); }
eopt_status eopt_soften(eopt_backend *be, eopt_workspace *ws, int m, int n, const float *X, float *O, double s,
                        double eps);

#endif
