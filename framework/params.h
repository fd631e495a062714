/* Parameters and their groups. A parameter is a named weight tensor with its gradient; a group
 * selector says which parameters a param group takes (by name glob, exclusion and
 * dimensionality), and eopt_params_assign gives every parameter to exactly one selector. The
 * model owns the tensors; optimizers and groups only reference them. */
#ifndef EOPT_PARAMS_H
#define EOPT_PARAMS_H

#include "tensor.h"

#define EOPT_NAME_MAX 128
#define EOPT_SELECT_MAX_PATTERNS 16
#define EOPT_SELECT_WHERE_MAX 544

/* One model parameter as an optimizer sees it. `grad` NULL means "no gradient this step"
 * (torch's p.grad is None): the parameter is skipped, and lazy state is not created. */
typedef struct {
    char name[EOPT_NAME_MAX];
    eopt_tensor *w;
    eopt_tensor *grad;
} eopt_param;

/* A group takes the parameters whose name matches one of `patterns` (fnmatch globs; none
 * given: every name), none of `exclude`, and whose dimensionality d has bit d set in
 * `ndim_mask` (0: any). */
typedef struct {
    char where[EOPT_SELECT_WHERE_MAX]; /* names the selector in messages: "t.cfg:8: optimizers.[0].groups.[0]" */
    int npatterns, nexclude;
    char patterns[EOPT_SELECT_MAX_PATTERNS][EOPT_NAME_MAX];
    char exclude[EOPT_SELECT_MAX_PATTERNS][EOPT_NAME_MAX];
    unsigned ndim_mask;
} eopt_param_select;

int eopt_param_selected(const eopt_param_select *s, const eopt_param *p);

/* owner[i] = k for the one selector sel[k] that takes params[i]. A parameter no selector takes,
 * or that two selectors take, a pattern that matches no parameter and a selector that takes
 * none are errors; the message starts with `what` and names every such parameter (with the
 * selectors that claim it) or the pattern and its selector. */
eopt_status eopt_params_assign(const eopt_param_select *const *sel, int nsel, const eopt_param *params, int nparams,
                               const char *what, int *owner);

#endif
