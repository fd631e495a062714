/* torch.optim.AdamW (documented algorithm, muon.md §6) and the inner Adam update (§5).
 *
 * Per parameter with gradient (lr, wd, betas (b1, b2), eps of its group), t = ++step:
 *   g = maximize ? -grad : grad
 *   P <- P (1 - lr wd)
 *   m <- lerp(m, g, 1 - b1);  v <- b2 v + (1 - b2) g^2
 *   P <- P - (lr / (1 - b1^t)) m / (sqrt(v) / sqrt(1 - b2^t) + eps)
 * one fused pass (kernel adamw); the bias corrections are doubles formed on the host from the
 * host-side float32 step counter. */
#include "adamw.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "optim_util.h"

typedef struct {
    double lr, betas[2], eps, wd;
    int maximize;
} adamw_hp;

void eopt_adam_update(eopt_backend *be, int64_t n, const float *g, float *m, float *v, const double betas[2],
                      double eps, int correct_bias, int nesterov, int64_t t, float *U)
{
    /* bias corrections in double, rounded to float32 where they meet the tensors (torch) */
    const double bc1 = correct_bias ? 1.0 - pow(betas[0], (double)t) : 1.0;
    const double bc2 = correct_bias ? 1.0 - pow(betas[1], (double)t) : 1.0;
    const double bcn = correct_bias ? 1.0 - pow(betas[0], (double)t + 1.0) : 1.0;
    eopt_ew_run(be, EOPT_EW(adam_update, n, .dir = U, .exp_avg = m, .exp_avg_sq = v, .grad = g,
                            .one_minus_beta1 = (float)(1.0 - betas[0]), .one_minus_beta2 = (float)(1.0 - betas[1]),
                            .bc1 = (float)bc1, .bc2 = (float)bc2, .eps = (float)eps, .beta1 = (float)betas[0],
                            .bcn = (float)bcn, .nesterov = nesterov));
}


static void adamw_defaults(eopt_dict *args, eopt_dict *group)
{
    (void)args; /* every constructor argument of AdamW is a param-group key */
    const double betas[2] = {0.9, 0.999};
    const eopt_value none = {.kind = EOPT_VAL_NONE};
    eopt_dict_set(group, "lr", eopt_float(1e-3));
    eopt_dict_set(group, "betas", eopt_floats(2, betas));
    eopt_dict_set(group, "eps", eopt_float(1e-8));
    eopt_dict_set(group, "weight_decay", eopt_float(1e-2));
    eopt_dict_set(group, "amsgrad", eopt_bool(0));
    eopt_dict_set(group, "maximize", eopt_bool(0));
    eopt_dict_set(group, "foreach", none);
    eopt_dict_set(group, "capturable", eopt_bool(0));
    eopt_dict_set(group, "differentiable", eopt_bool(0));
    eopt_dict_set(group, "fused", none);
}

/* An optional bool key: None (or absent) reads as False. */
static eopt_status opt_bool(const eopt_dict *d, const char *what, const char *key, int *out)
{
    *out = 0;
    return eopt_is_none(d, key) ? EOPT_OK : eopt_dict_bool(d, what, key, out);
}

/* One group's hyperparameters with torch's constructor checks. */
static eopt_status adamw_group(const eopt_optimizer *opt, int g, adamw_hp *h)
{
    char what[48], v[40];
    snprintf(what, sizeof what, "AdamW param group %d", g);
    const eopt_dict *d = &opt->groups[g].hp;
    int amsgrad, fused, foreach, differentiable, capturable;
    EOPT_TRY(eopt_dict_float(d, what, "lr", &h->lr));
    EOPT_TRY(eopt_dict_floats(d, what, "betas", 2, h->betas));
    EOPT_TRY(eopt_dict_float(d, what, "eps", &h->eps));
    EOPT_TRY(eopt_dict_float(d, what, "weight_decay", &h->wd));
    EOPT_TRY(eopt_dict_bool(d, what, "amsgrad", &amsgrad));
    EOPT_TRY(opt_bool(d, what, "maximize", &h->maximize));
    EOPT_TRY(opt_bool(d, what, "foreach", &foreach));
    EOPT_TRY(opt_bool(d, what, "capturable", &capturable));
    EOPT_TRY(opt_bool(d, what, "differentiable", &differentiable));
    EOPT_TRY(opt_bool(d, what, "fused", &fused));
    if (!(h->lr >= 0.0))
        return eopt_fail(EOPT_ERR_ARG, "%s: Invalid learning rate: %s", what, eopt_float_repr(h->lr, v, sizeof v));
    if (!(h->eps >= 0.0))
        return eopt_fail(EOPT_ERR_ARG, "%s: Invalid epsilon value: %s", what, eopt_float_repr(h->eps, v, sizeof v));
    for (int k = 0; k < 2; k++)
        if (!(h->betas[k] >= 0.0 && h->betas[k] < 1.0))
            return eopt_fail(EOPT_ERR_ARG, "%s: Invalid beta parameter at index %d: %s", what, k,
                             eopt_float_repr(h->betas[k], v, sizeof v));
    if (!(h->wd >= 0.0))
        return eopt_fail(EOPT_ERR_ARG, "%s: Invalid weight_decay value: %s", what, eopt_float_repr(h->wd, v, sizeof v));
    if (amsgrad)
        return eopt_fail(EOPT_ERR_UNSUPPORTED, "%s: amsgrad=True is not supported (eopt's AdamW has no AMSGrad "
                                               "variant; set amsgrad to False)", what);
    if (fused && differentiable)
        return eopt_fail(EOPT_ERR_ARG, "%s: `fused` does not support `differentiable`", what);
    if (fused && foreach)
        return eopt_fail(EOPT_ERR_ARG, "%s: `fused` and `foreach` cannot be `True` together.", what);
    return EOPT_OK;
}

static eopt_status adamw_setup(eopt_optimizer *opt)
{
    adamw_hp h;
    for (int g = 0; g < opt->ngroups; g++)
        EOPT_TRY(adamw_group(opt, g, &h));
    return EOPT_OK;
}

static eopt_status adamw_init_state(eopt_optimizer *opt, int i)
{
    const eopt_tensor *w = opt->params[i].w;
    eopt_state_clear(&opt->state[i]);
    EOPT_TRY(eopt_state_add(opt, i, "step", EOPT_F32, 0, NULL, 1));
    EOPT_TRY(eopt_state_add(opt, i, "exp_avg", EOPT_F32, w->ndim, w->shape, 0));
    EOPT_TRY(eopt_state_add(opt, i, "exp_avg_sq", EOPT_F32, w->ndim, w->shape, 0));
    return EOPT_OK;
}

static void adamw_param(eopt_optimizer *opt, const adamw_hp *h, int i)
{
    const eopt_param *p = &opt->params[i];
    float *step = eopt_f32(eopt_state_get(opt, i, "step"));
    *step = *step + 1.0f; /* a float32 tensor, incremented before use */
    const double t = (double)*step;
    const double bc1 = 1.0 - pow(h->betas[0], t), bc2 = 1.0 - pow(h->betas[1], t);
    eopt_ew_run(opt->be, EOPT_EW(adamw, p->w->numel, .param = eopt_f32(p->w),
                                 .exp_avg = eopt_f32(eopt_state_get(opt, i, "exp_avg")),
                                 .exp_avg_sq = eopt_f32(eopt_state_get(opt, i, "exp_avg_sq")),
                                 .grad = eopt_f32(p->grad),
                                 .decay = (float)(1.0 - h->lr * h->wd), .one_minus_beta1 = (float)(1.0 - h->betas[0]),
                                 .beta2 = (float)h->betas[1], .one_minus_beta2 = (float)(1.0 - h->betas[1]),
                                 .sqrt_bc2 = (float)sqrt(bc2), .eps = (float)h->eps,
                                 .neg_step_size = (float)-(h->lr / bc1), .maximize = h->maximize));
}

static eopt_status adamw_step(eopt_optimizer *opt)
{
    adamw_hp h;
    for (int g = 0; g < opt->ngroups; g++) { /* validate everything before changing anything */
        EOPT_TRY(adamw_group(opt, g, &h));
        for (int k = 0; k < opt->groups[g].n; k++) {
            const eopt_param *p = &opt->params[opt->groups[g].index[k]];
            if (p->grad)
                EOPT_TRY(eopt_param_check_f32("AdamW", p));
        }
    }
    for (int g = 0; g < opt->ngroups; g++) {
        EOPT_TRY(adamw_group(opt, g, &h));
        for (int k = 0; k < opt->groups[g].n; k++) {
            const int i = opt->groups[g].index[k];
            if (!opt->params[i].grad)
                continue;
            if (opt->state[i].n == 0)
                EOPT_TRY(adamw_init_state(opt, i));
            adamw_param(opt, &h, i);
        }
    }
    return EOPT_OK;
}

const eopt_optimizer_class eopt_class_adamw = {
    .id = "AdamW",
    .name = "AdamW",
    .source = "torch.optim.AdamW",
    .source_match = NULL,
    .defaults = adamw_defaults,
    .setup = adamw_setup,
    .init_state = adamw_init_state,
    .step = adamw_step,
    .schedulable = (const char *const[]){"lr", "eps", "weight_decay", NULL},
};
