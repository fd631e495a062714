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
    int amsgrad, maximize, foreach, capturable, differentiable, fused;
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


/* torch's signature order; a None flag reads as False */
static const eopt_hparam adamw_group_keys[] = {
    EOPT_HP_F("lr", 1e-3, EOPT_AT(adamw_hp, lr)),
    EOPT_HP_F2("betas", 0.9, 0.999, EOPT_AT(adamw_hp, betas)),
    EOPT_HP_F("eps", 1e-8, EOPT_AT(adamw_hp, eps)),
    EOPT_HP_F("weight_decay", 1e-2, EOPT_AT(adamw_hp, wd)),
    EOPT_HP_B("amsgrad", 0, EOPT_AT(adamw_hp, amsgrad)),
    EOPT_HP_BN("maximize", 0, EOPT_AT(adamw_hp, maximize)),
    EOPT_HP_NONE("foreach", EOPT_HP_BOOL, EOPT_NONE_KEEP, EOPT_AT(adamw_hp, foreach)),
    EOPT_HP_BN("capturable", 0, EOPT_AT(adamw_hp, capturable)),
    EOPT_HP_BN("differentiable", 0, EOPT_AT(adamw_hp, differentiable)),
    EOPT_HP_NONE("fused", EOPT_HP_BOOL, EOPT_NONE_KEEP, EOPT_AT(adamw_hp, fused)),
    EOPT_HP_END,
};

/* One group's hyperparameters with torch's constructor checks. */
static eopt_status adamw_group(const eopt_optimizer *opt, int g, void *out)
{
    char what[48], v[40];
    snprintf(what, sizeof what, "AdamW param group %d", g);
    adamw_hp *h = out;
    EOPT_TRY(eopt_hparams_read(adamw_group_keys, &opt->groups[g].hp, what, h));
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
    if (h->amsgrad)
        return eopt_fail(EOPT_ERR_UNSUPPORTED, "%s: amsgrad=True is not supported (eopt's AdamW has no AMSGrad "
                                               "variant; set amsgrad to False)", what);
    if (h->fused && h->differentiable)
        return eopt_fail(EOPT_ERR_ARG, "%s: `fused` does not support `differentiable`", what);
    if (h->fused && h->foreach)
        return eopt_fail(EOPT_ERR_ARG, "%s: `fused` and `foreach` cannot be `True` together.", what);
    return EOPT_OK;
}

static eopt_status adamw_check(const eopt_optimizer *opt, const void *hp, int i)
{
    (void)hp;
    return opt->params[i].grad ? eopt_param_check_f32("AdamW", &opt->params[i]) : EOPT_OK;
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

static eopt_status adamw_update(eopt_optimizer *opt, eopt_workspace *ws, const void *hp, int i)
{
    (void)ws;
    adamw_param(opt, hp, i);
    return EOPT_OK;
}

const eopt_optimizer_class eopt_class_adamw = {
    .id = "AdamW",
    .name = "AdamW",
    .source = "torch.optim.AdamW",
    .source_match = NULL,
    .arg_keys = (const eopt_hparam[]){EOPT_HP_END}, /* every argument is a param-group key */
    .group_keys = adamw_group_keys,
    .hp_size = sizeof(adamw_hp),
    .init_state = adamw_init_state,
    .read_group = adamw_group,
    .check_param = adamw_check,
    .update = adamw_update,
    .schedulable = (const char *const[]){"lr", "eps", "weight_decay", NULL},
};
