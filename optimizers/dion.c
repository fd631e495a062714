/* dion's Muon, NorMuon, Dion2 and NorDion2 (microsoft/dion@33777ce), dion-muown.md §1-§8.
 *
 * Per matrix X (m x n) with gradient G, momentum M, orthogonaliser f (polar express or NS5,
 * softened: lerp(f(A), A / (||A||_F + eps), s) when s > 0):
 *   Muon      M = mu M + G;  O = f(M or Nesterov mu M + G);  X = X (1 - lr wd) - adj O
 *   NorMuon   the same with O normalised per neuron:  V = lerp(V, rowmeansq(O), 1 - b2),
 *             O' = O / (sqrt(V) + 1e-8) rescaled to ||O||_F
 *   Dion2     M = M + G;  S = the k slices of M with largest L1 norm (rows if m <= n, else
 *             columns);  M[sel] = lambda S;  X = X (1 - lr wd);  X[sel] -= adj f(S)
 *   NorDion2  Dion2 on rows, with NorMuon's normalisation of f(S) against V[sel]
 * adj = lr sqrt(fan_out / fan_in) ("spectral_norm"), lr 0.2 sqrt(max(fan_out, fan_in))
 * ("rms_norm") or lr (None). Groups with algorithm "adamw" / "lion" take element-wise steps. */
#include "dion.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "newton_schulz.h"
#include "optim_util.h"
#include "softening.h"

typedef enum { ALG_MUON = 0, ALG_NORMUON, ALG_DION2, ALG_NORDION2, ALG_ADAMW, ALG_LION } dion_algo;
static const char *const algo_names[] = {"muon", "normuon", "dion2", "nordion2", "adamw", "lion"};

typedef enum { ADJ_SPECTRAL = 0, ADJ_RMS, ADJ_NONE } dion_adjust; /* adjust_lr's values, then None */

/* One param group's hyperparameters, as a step reads them. */
typedef struct {
    dion_algo algo;
    double lr, mu, muon_beta2, ef_decay, fraction, beta1, beta2, wd, eps;
    int cautious, nesterov, flatten;
    dion_adjust adjust;
    int64_t step, heads; /* heads: num_heads (1 when absent or None) */
} dion_hp;

/* What the step loop keeps per group: the hyperparameters, the orthogonaliser they select and
 * the softening (a constructor argument read at every step, so a schedule may change it). */
typedef struct {
    dion_hp h;
    int algorithm, adjust; /* indices into the class's algorithm / adjust_lr choices */
    eopt_ns_config ns;
    double soft;
} dion_group;

/* The constructor arguments, read once (opt->impl). */
typedef struct {
    double betas[2], soft;
    int gram, triton, polar;
} dion_cfg;

static dion_algo own_algo(const eopt_optimizer *opt)
{
    if (opt->cls == &eopt_class_normuon)
        return ALG_NORMUON;
    if (opt->cls == &eopt_class_dion2)
        return ALG_DION2;
    if (opt->cls == &eopt_class_nordion2)
        return ALG_NORDION2;
    return ALG_MUON;
}

int64_t eopt_dion2_select_count(double fraction, int64_t K)
{
    int64_t k = (int64_t)ceil(fraction * (double)K);
    return k < 1 ? 1 : k;
}

/* ---- hyperparameters (§1.2, constructor signatures of §4-§7) ---- */

#define ARG(f) EOPT_AT(dion_cfg, f)
#define MESH EOPT_HP_NONE("distributed_mesh", EOPT_HP_ANY, EOPT_NONE_KEEP, EOPT_NOWHERE)
#define BETAS EOPT_HP_F2("betas", 0.9, 0.95, ARG(betas))
#define GRAM EOPT_HP_B("use_gram_newton_schulz", 0, ARG(gram))
#define TRITON EOPT_HP_B("use_triton", 0, ARG(triton))
#define POLAR EOPT_HP_B("use_polar_express", 1, ARG(polar))
#define NS_FUNC EOPT_HP_NONE("newton_schulz_func", EOPT_HP_ANY, EOPT_NONE_KEEP, EOPT_NOWHERE)
#define SOFTENING EOPT_HP_F("softening", 0.0, ARG(soft))
#define POST_ORTHO EOPT_HP_B("triton_post_ortho", 0, EOPT_NOWHERE) /* the fused kernel's update is the same */

static const eopt_hparam muon_arg_keys[] = {MESH, BETAS, GRAM, TRITON, POLAR, NS_FUNC, SOFTENING, EOPT_HP_END};
static const eopt_hparam dion2_arg_keys[] = {
    MESH, BETAS, TRITON, POLAR, GRAM, NS_FUNC, SOFTENING, EOPT_HP_B("verbose", 0, EOPT_NOWHERE), POST_ORTHO, EOPT_HP_END,
};
static const eopt_hparam nordion2_arg_keys[] = {
    MESH, BETAS, TRITON, POLAR, GRAM, NS_FUNC, SOFTENING, POST_ORTHO, EOPT_HP_END,
};

/* beta1 / beta2 are None placeholders that setup fills from `betas` (they keep their place in
 * the key order; a group that sets them keeps its own). */
#define AT(f) EOPT_AT(dion_group, f)
#define LR EOPT_HP_F("lr", 0.01, AT(h.lr))
#define MU EOPT_HP_F("mu", 0.95, AT(h.mu))
#define MUON_BETA2 EOPT_HP_F("muon_beta2", 0.95, AT(h.muon_beta2))
#define EF_DECAY EOPT_HP_F("ef_decay", 0.95, AT(h.ef_decay))
#define FRACTION EOPT_HP_F("fraction", 0.25, AT(h.fraction))
#define BETA1 EOPT_HP_NONE("beta1", EOPT_HP_FLOAT, EOPT_NONE_TYPE, AT(h.beta1))
#define BETA2 EOPT_HP_NONE("beta2", EOPT_HP_FLOAT, EOPT_NONE_TYPE, AT(h.beta2))
#define WD EOPT_HP_F("weight_decay", 0.01, AT(h.wd))
#define CAUTIOUS EOPT_HP_B("cautious_wd", 0, AT(h.cautious))
#define STEP EOPT_HP_I("step", 0, AT(h.step))
#define EPSILON EOPT_HP_F("epsilon", 1e-8, AT(h.eps))
#define NESTEROV EOPT_HP_B("nesterov", 0, AT(h.nesterov))
#define FLATTEN EOPT_HP_B("flatten", 0, AT(h.flatten))
/* the class's own algorithm, or an element-wise one */
#define ALGORITHM(own)                                                                                                 \
    EOPT_HP_E("algorithm", own, AT(algorithm), ((const char *const[]){own, "adamw", "lion", NULL}),                    \
              "Unknown algorithm: %s (expected '" own "', 'adamw' or 'lion')")
static const char *const adjust_names[] = {"spectral_norm", "rms_norm", NULL}; /* dion_adjust order */
#define ADJUST_LR                                                                                                      \
    {"adjust_lr", EOPT_HP_ENUM, {.kind = EOPT_VAL_STR, .s = "spectral_norm"}, EOPT_NONE_KEEP, AT(adjust), 0,             \
     adjust_names, "Invalid adjust_lr value: %s. Must be 'spectral_norm', 'rms_norm', or None."}

static const eopt_hparam muon_group_keys[] = {
    LR, MU, BETA1, BETA2, WD, CAUTIOUS, ALGORITHM("muon"), STEP, EPSILON, NESTEROV, FLATTEN, ADJUST_LR, EOPT_HP_END,
};
static const eopt_hparam normuon_group_keys[] = {
    LR,   MU,      MUON_BETA2, BETA1,   BETA2,     WD, CAUTIOUS, ALGORITHM("normuon"),
    STEP, EPSILON, NESTEROV,   FLATTEN, ADJUST_LR, EOPT_HP_END,
};
static const eopt_hparam dion2_group_keys[] = {
    LR, EF_DECAY, FRACTION, BETA1, BETA2, WD, EPSILON, FLATTEN, ADJUST_LR, ALGORITHM("dion2"), STEP, EOPT_HP_END,
};
static const eopt_hparam nordion2_group_keys[] = {
    LR, FRACTION, MU, MUON_BETA2, BETA1, BETA2, WD, EPSILON, FLATTEN, ADJUST_LR, ALGORITHM("nordion2"), STEP,
    EOPT_HP_END,
};

/* ---- validation ---- */

/* What the tables do not say (§1.1, §1.2). */
static eopt_status dion_args(const eopt_optimizer *opt)
{
    const eopt_dict *a = &opt->args;
    const dion_cfg *c = opt->impl;
    const char *w = opt->cls->id;
    char buf[64];
    if (!eopt_is_none(a, "distributed_mesh"))
        return eopt_fail(EOPT_ERR_ARG, "%s: distributed_mesh must be None (eopt runs one process), got %s", w,
                         eopt_value_repr(eopt_dict_get(a, "distributed_mesh"), buf, sizeof buf));
    if (!eopt_is_none(a, "newton_schulz_func"))
        return eopt_fail(EOPT_ERR_UNSUPPORTED, "%s: a custom newton_schulz_func is not supported, got %s", w,
                         eopt_value_repr(eopt_dict_get(a, "newton_schulz_func"), buf, sizeof buf));
    if (c->betas[0] < 0.0 || c->betas[1] < 0.0)
        return eopt_fail(EOPT_ERR_ARG, "%s: Invalid betas: %s", w,
                         eopt_value_repr(eopt_dict_get(a, "betas"), buf, sizeof buf));
    if (c->gram)
        return eopt_fail(EOPT_ERR_UNSUPPORTED,
                         "%s: use_gram_newton_schulz = True needs the external gram-newton-schulz package, "
                         "which eopt does not provide",
                         w);
    if (c->triton)
        return eopt_fail(EOPT_ERR_UNSUPPORTED, "%s: use_triton = True needs Triton kernels, which eopt does not provide",
                         w);
    return eopt_softening_check(c->soft, w);
}

static eopt_status check_nonneg(const char *what, const char *label, const char *key, double v)
{
    if (v < 0.0) /* as upstream: NaN passes */
        return eopt_fail(EOPT_ERR_ARG, "%s: Invalid %s: %s = %g", what, label, key, v);
    return EOPT_OK;
}

/* Reads and validates group g, with the softening of this step. The constructor's checks (§1.2)
 * are applied to every group: eopt has no separate constructor values. */
static eopt_status read_group(const eopt_optimizer *opt, int g, void *out)
{
    const eopt_dict *d = &opt->groups[g].hp;
    const dion_algo own = own_algo(opt);
    dion_group *dg = out;
    dion_hp *h = &dg->h;
    char what[96];
    snprintf(what, sizeof what, "%s param group %d", opt->cls->id, g);
    memset(dg, 0, sizeof *dg);
    dg->adjust = ADJ_NONE; /* adjust_lr None (an absent attribute in a checkpoint) keeps it */
    EOPT_TRY(eopt_hparams_read(opt->cls->group_keys, d, what, dg));
    const dion_algo picked[3] = {own, ALG_ADAMW, ALG_LION};
    h->algo = picked[dg->algorithm];
    h->adjust = (dion_adjust)dg->adjust;
    EOPT_TRY(check_nonneg(what, "learning rate", "lr", h->lr));
    if (h->beta1 < 0.0 || h->beta2 < 0.0)
        return eopt_fail(EOPT_ERR_ARG, "%s: Invalid betas: (%g, %g)", what, h->beta1, h->beta2);
    if ((own == ALG_DION2 || own == ALG_NORDION2) && !eopt_is_none(d, "cautious_wd")) /* group.get("cautious_wd", False) */
        EOPT_TRY(eopt_dict_bool(d, what, "cautious_wd", &h->cautious));
    if (own != ALG_DION2)
        EOPT_TRY(check_nonneg(what, "momentum factor (mu)", "mu", h->mu));
    if (own == ALG_NORMUON || own == ALG_NORDION2)
        EOPT_TRY(check_nonneg(what, "muon_beta2", "muon_beta2", h->muon_beta2));
    if (own == ALG_DION2)
        EOPT_TRY(check_nonneg(what, "error-feedback decay", "ef_decay", h->ef_decay));
    if ((own == ALG_DION2 || own == ALG_NORDION2) && !(h->fraction > 0.0 && h->fraction <= 1.0))
        return eopt_fail(EOPT_ERR_ARG, "%s: fraction must be in (0, 1], got %g", what, h->fraction);
    h->heads = 1;
    const eopt_value *nh = eopt_dict_get(d, "num_heads");
    if (nh && nh->kind != EOPT_VAL_NONE) {
        char buf[64];
        if (nh->kind != EOPT_VAL_INT || nh->i < 1)
            return eopt_fail(EOPT_ERR_ARG, "%s: num_heads must be a positive integer, got %s", what,
                             eopt_value_repr(nh, buf, sizeof buf));
        h->heads = nh->i;
        if (h->heads > 1 && h->flatten)
            return eopt_fail(EOPT_ERR_ARG, "%s: num_heads = %lld cannot be combined with flatten = True", what,
                             (long long)h->heads);
    }
    EOPT_TRY(eopt_dict_float(&opt->args, opt->cls->id, "softening", &dg->soft));
    EOPT_TRY(eopt_softening_check(dg->soft, opt->cls->id));
    eopt_ns_dion(((const dion_cfg *)opt->impl)->polar, (double)(float)h->eps, &dg->ns);
    return EOPT_OK;
}

/* The matrix view of parameter i for a matrix group: `batch` independent m x n matrices
 * (a 3-D+ parameter is a batch; num_heads splits the rows of a 2-D one). */
static eopt_status matrix_shape(const eopt_optimizer *opt, int i, const dion_hp *h, int *m, int *n, int64_t *batch)
{
    const eopt_tensor *w = opt->params[i].w;
    char buf[64];
    const char *what = opt->cls->id, *name = opt->params[i].name;
    if (w->ndim < 2)
        return eopt_fail(EOPT_ERR_SHAPE, "%s: parameter '%s' of shape %s is in a '%s' group, which only supports "
                         "matrix parameters (ndim >= 2)", what, name, eopt_shape_str(w->ndim, w->shape, buf, sizeof buf),
                         algo_names[h->algo]);
    if (h->flatten && w->ndim >= 3) /* upstream's flatten batches same-shape parameters jointly (§2.4) */
        return eopt_fail(EOPT_ERR_UNSUPPORTED, "%s: flatten = True with the %d-D parameter '%s' is not supported", what,
                         w->ndim, name);
    if (h->heads > 1 && (w->ndim != 2 || w->shape[0] % h->heads != 0))
        return eopt_fail(EOPT_ERR_ARG, "%s: num_heads = %lld needs a 2-D parameter whose rows it divides; '%s' has "
                         "shape %s", what, (long long)h->heads, name, eopt_shape_str(w->ndim, w->shape, buf, sizeof buf));
    EOPT_TRY(eopt_param_check_sides(what, &opt->params[i]));
    *m = (int)(w->shape[w->ndim - 2] / h->heads);
    *n = (int)w->shape[w->ndim - 1];
    *batch = *m && *n ? w->numel / ((int64_t)*m * *n) : 0;
    return EOPT_OK;
}

/* ---- state (§1.3) ---- */

static eopt_status init_state_for(eopt_optimizer *opt, int i, dion_algo algo)
{
    const eopt_tensor *w = opt->params[i].w;
    eopt_state_clear(&opt->state[i]);
    EOPT_TRY(eopt_state_add(opt, i, "momentum", EOPT_F32, w->ndim, w->shape, 0));
    if (algo == ALG_NORMUON || algo == ALG_NORDION2) {
        int64_t shape[EOPT_MAX_DIMS];
        memcpy(shape, w->shape, sizeof shape);
        shape[w->ndim - 1] = 1; /* param.shape[:-1] + (1,) */
        EOPT_TRY(eopt_state_add(opt, i, "variance_neuron", EOPT_F32, w->ndim, shape, 0));
    } else if (algo == ALG_ADAMW) {
        EOPT_TRY(eopt_state_add(opt, i, "variance", EOPT_F32, w->ndim, w->shape, 0));
    }
    return EOPT_OK;
}

static eopt_status dion_init_state(eopt_optimizer *opt, int i)
{
    const int g = eopt_optimizer_group_of(opt, i);
    if (g < 0)
        return eopt_fail(EOPT_ERR_ARG, "%s: no param group holds state index %d", opt->cls->id, i);
    dion_group dg;
    EOPT_TRY(read_group(opt, g, &dg));
    return init_state_for(opt, i, dg.h.algo);
}

/* What a group's algorithm needs of parameter i: a float32 matrix for the matrix algorithms. */
static eopt_status check_shape(const eopt_optimizer *opt, const dion_hp *h, int i)
{
    const eopt_param *p = &opt->params[i];
    int m, n;
    int64_t batch;
    if (h->algo != ALG_ADAMW && h->algo != ALG_LION)
        EOPT_TRY(matrix_shape(opt, i, h, &m, &n, &batch));
    if (p->w->dtype != EOPT_F32)
        return eopt_fail(EOPT_ERR_UNSUPPORTED, "%s: parameter '%s' is %s; only float32 is supported", opt->cls->id,
                         p->name, eopt_dtype_name(p->w->dtype));
    return EOPT_OK;
}

static int has_state(const eopt_state *s, const char *key)
{
    for (int k = 0; k < s->n; k++)
        if (strcmp(s->key[k], key) == 0)
            return 1;
    return 0;
}

/* The step's check of parameter i (with or without gradient): its shape, and the state of its
 * group's algorithm (a group may switch between its matrix algorithm and adamw / lion). */
static eopt_status dion_check(const eopt_optimizer *opt, const void *hp, int i)
{
    const dion_hp *h = &((const dion_group *)hp)->h;
    EOPT_TRY(check_shape(opt, h, i));
    /* a parameter this step does not update and that has no state has none to check (another
     * rank's, in a data-parallel run: train/parallel.h) */
    if (!opt->params[i].grad && opt->state[i].n == 0)
        return EOPT_OK;
    const char *need = h->algo == ALG_NORMUON || h->algo == ALG_NORDION2 ? "variance_neuron"
                       : h->algo == ALG_ADAMW                            ? "variance"
                                                                         : "momentum";
    if (!has_state(&opt->state[i], "momentum") || !has_state(&opt->state[i], need))
        return eopt_fail(EOPT_ERR_ARG, "%s: parameter '%s' lacks the state of algorithm '%s'", opt->cls->id,
                         opt->params[i].name, algo_names[h->algo]);
    return EOPT_OK;
}

/* Fills the groups' beta1 / beta2 placeholders from `betas`, checks every parameter and creates
 * the state of all of them, as dion's constructor does. */
static eopt_status dion_setup(eopt_optimizer *opt)
{
    EOPT_TRY(dion_args(opt));
    const dion_cfg *c = opt->impl;
    for (int g = 0; g < opt->ngroups; g++) {
        eopt_dict *d = &opt->groups[g].hp;
        if (eopt_is_none(d, "beta1"))
            EOPT_TRY(eopt_dict_set(d, "beta1", eopt_float(c->betas[0])));
        if (eopt_is_none(d, "beta2"))
            EOPT_TRY(eopt_dict_set(d, "beta2", eopt_float(c->betas[1])));
        dion_group dg;
        EOPT_TRY(read_group(opt, g, &dg));
        for (int k = 0; k < opt->groups[g].n; k++) {
            const int i = opt->groups[g].index[k];
            EOPT_TRY(check_shape(opt, &dg.h, i));
            EOPT_TRY(init_state_for(opt, i, dg.h.algo));
        }
    }
    return EOPT_OK;
}

/* ---- the matrix updates ---- */

/* What one matrix step needs besides its tensors. */
typedef struct {
    eopt_backend *be;
    eopt_workspace *ws;
    eopt_optimizer *opt; /* and the parameter index i: diagnostics */
    int i;
    const dion_hp *h;
    const eopt_ns_config *ns;
    double soft;
    float adj_lr; /* §3, from the full (per-head) matrix shape */
} dion_ctx;

static float adjusted_lr(const dion_hp *h, int m, int n)
{
    const float lr = (float)h->lr;
    if (h->adjust == ADJ_SPECTRAL)
        return lr * (float)sqrt((double)m / (double)n);
    if (h->adjust == ADJ_RMS)
        return lr * 0.2f * (float)sqrt((double)(m > n ? m : n));
    return lr;
}

/* O = f(A) for an r x c matrix A, softened towards A / (||A||_F + eps) when s > 0 (§2.3). */
static eopt_status orthogonalize(const dion_ctx *c, int r, int cols, const float *A, float *O)
{
    EOPT_TRY(eopt_ns_orthogonalize(c->be, c->ws, c->ns, r, cols, A, O));
    EOPT_TRY(eopt_diag_ns_residual(c->opt, c->ws, c->i, r, cols, O));
    if (c->soft > 0.0)
        EOPT_TRY(eopt_soften(c->be, c->ws, r, cols, A, O, c->soft, c->h->eps));
    return EOPT_OK;
}

/* NorMuon's neuron-wise normalisation of O (r x c) against V (r) in place (§5):
 *   nu = ||O||_F,  V = lerp(V, rowmeansq(O), 1 - b2),  O = O / (sqrt(V) + 1e-8),
 *   O = O (nu / max(||O||_F, 1e-8)) */
static eopt_status normalize_neurons(const dion_ctx *c, int r, int cols, float *O, float *V)
{
    eopt_backend *be = c->be;
    float *norms = eopt_ws_floats(c->ws, 2), *rms = eopt_ws_floats(c->ws, r), *den = eopt_ws_floats(c->ws, r);
    if (!norms || !rms || !den)
        return eopt_fail(EOPT_ERR_NOMEM, "out of memory in the NorMuon normalisation (%dx%d)", r, cols);
    const int64_t rc = (int64_t)r * cols;
    be->reduce(be, EOPT_RED_NORM, EOPT_AXIS_ALL, r, cols, O, NULL, cols, 1.0f, norms);
    be->reduce(be, EOPT_RED_SUMSQ, EOPT_AXIS_ROWS, r, cols, O, NULL, cols, 1.0f / (float)cols, rms);
    eopt_ew_run(be, EOPT_EW(dion_variance, r, .variance = V, .den = den, .row_ms = rms,
                            .one_minus_beta2 = 1.0f - (float)c->h->muon_beta2, .eps = 1e-8f));
    eopt_ew_run(be, EOPT_EW(div_row, rc, .y = O, .a = O, .b = den, .cols = cols));
    be->reduce(be, EOPT_RED_NORM, EOPT_AXIS_ALL, r, cols, O, NULL, cols, 1.0f, norms + 1);
    eopt_ew_run(be, EOPT_EW(scale_ds_ratio, rc, .y = O, .a = O, .num = norms, .den = norms + 1, .min_den = 1e-8f));
    return EOPT_OK;
}

/* Muon / NorMuon on one m x n matrix (§4, §5). V: NorMuon's variance_neuron (m), else NULL. */
static eopt_status muon_matrix(const dion_ctx *c, int m, int n, float *X, const float *G, float *M, float *V)
{
    eopt_backend *be = c->be;
    const dion_hp *h = c->h;
    const int64_t mn = (int64_t)m * n;
    float *O = eopt_ws_floats(c->ws, mn), *U = h->nesterov ? eopt_ws_floats(c->ws, mn) : M;
    if (!O || !U)
        return eopt_fail(EOPT_ERR_NOMEM, "out of memory in the Muon update (%dx%d)", m, n);
    eopt_ew_run(be, EOPT_EW(dion_momentum, mn, .momentum = M, .nesterov = h->nesterov ? U : NULL, .grad = G,
                            .mu = (float)h->mu));
    EOPT_TRY(orthogonalize(c, m, n, U, O));
    if (V)
        EOPT_TRY(normalize_neurons(c, m, n, O, V));
    const float lr = (float)h->lr, wd = (float)h->wd;
    eopt_ew_run(be, EOPT_EW(dion_apply, mn, .param = X, .update = O, .decay = 1.0f - lr * wd, .adj_lr = c->adj_lr,
                            .lr_wd = lr * wd, .cautious = h->cautious));
    return EOPT_OK;
}

/* Dion2 / NorDion2 on one m x n matrix (§6, §7). V: NorDion2's variance_neuron (m), else NULL. */
static eopt_status dion2_matrix(const dion_ctx *c, int m, int n, float *X, const float *G, float *M, float *V)
{
    eopt_backend *be = c->be;
    const dion_hp *h = c->h;
    const int64_t mn = (int64_t)m * n;
    const int rows = V || m <= n; /* NorDion2 always selects whole neurons (rows) */
    const eopt_axis axis = rows ? EOPT_AXIS_ROWS : EOPT_AXIS_COLS;
    const int K = rows ? m : n, k = (int)eopt_dion2_select_count(h->fraction, K);
    const int pr = rows ? k : m, pc = rows ? n : k; /* the selected sub-matrix S: pr x pc */
    const float decay = V ? (float)h->mu : (float)h->ef_decay;
    float *l1 = eopt_ws_floats(c->ws, K), *S = eopt_ws_floats(c->ws, (int64_t)pr * pc);
    float *T = eopt_ws_floats(c->ws, (int64_t)pr * pc), *O = eopt_ws_floats(c->ws, (int64_t)pr * pc);
    float *Vs = eopt_ws_floats(c->ws, k);
    int32_t *idx = eopt_ws_ints(c->ws, K);
    if (!l1 || !S || !T || !O || !Vs || !idx)
        return eopt_fail(EOPT_ERR_NOMEM, "out of memory in the Dion2 update (%dx%d)", m, n);
    /* error feedback: M = M + G, rank the slices by L1 norm, take the k largest */
    eopt_axpby(be, mn, 1.0f, M, 1.0f, G, M);
    be->reduce(be, EOPT_RED_ABSSUM, axis, m, n, M, NULL, n, 1.0f, l1);
    be->argsort_desc(be, K, l1, idx);
    be->index(be, EOPT_INDEX_GATHER, axis, m, n, idx, k, M, S, 1.0f);
    /* M[sel] = decay S: the selected slices give up what they now apply */
    eopt_scale(be, (int64_t)pr * pc, decay, S, T);
    be->index(be, EOPT_INDEX_SCATTER, axis, m, n, idx, k, M, T, 1.0f);
    EOPT_TRY(orthogonalize(c, pr, pc, S, O));
    if (V) {
        be->index(be, EOPT_INDEX_GATHER, EOPT_AXIS_ROWS, m, 1, idx, k, V, Vs, 1.0f);
        EOPT_TRY(normalize_neurons(c, pr, pc, O, Vs));
        be->index(be, EOPT_INDEX_SCATTER, EOPT_AXIS_ROWS, m, 1, idx, k, V, Vs, 1.0f);
    }
    /* decay every entry, then X[sel] -= adj O */
    const float lr = (float)h->lr, wd = (float)h->wd;
    eopt_scale(be, mn, 1.0f - lr * wd, X, X);
    be->index(be, EOPT_INDEX_SCATTER_ADD, axis, m, n, idx, k, X, O, -c->adj_lr);
    return EOPT_OK;
}

static eopt_status matrix_param(eopt_optimizer *opt, eopt_workspace *ws, int i, const dion_hp *h,
                                const eopt_ns_config *ns, double soft)
{
    int m, n;
    int64_t batch;
    EOPT_TRY(matrix_shape(opt, i, h, &m, &n, &batch));
    float *X = eopt_f32(opt->params[i].w), *M = eopt_f32(eopt_state_get(opt, i, "momentum"));
    const float *G = eopt_f32(opt->params[i].grad);
    const eopt_tensor *vt = eopt_state_get(opt, i, "variance_neuron");
    float *V = vt ? eopt_f32(vt) : NULL;
    if (h->algo == ALG_MUON || h->algo == ALG_DION2)
        V = NULL;
    const dion_ctx c = {.be = opt->be, .ws = ws, .opt = opt, .i = i, .h = h, .ns = ns, .soft = soft,
                        .adj_lr = adjusted_lr(h, m, n)};
    const int64_t mn = (int64_t)m * n;
    for (int64_t b = 0; b < batch; b++) {
        float *Vb = V ? V + b * m : NULL;
        if (h->algo == ALG_MUON || h->algo == ALG_NORMUON)
            EOPT_TRY(muon_matrix(&c, m, n, X + b * mn, G + b * mn, M + b * mn, Vb));
        else
            EOPT_TRY(dion2_matrix(&c, m, n, X + b * mn, G + b * mn, M + b * mn, Vb));
    }
    return EOPT_OK;
}

/* ---- the element-wise groups (§8) ---- */

static eopt_status elementwise_param(eopt_optimizer *opt, int i, const dion_hp *h)
{
    eopt_backend *be = opt->be;
    const eopt_tensor *w = opt->params[i].w;
    float *X = eopt_f32(w), *M = eopt_f32(eopt_state_get(opt, i, "momentum"));
    const float *G = eopt_f32(opt->params[i].grad);
    const eopt_tensor *vt = eopt_state_get(opt, i, "variance");
    const float lr = (float)h->lr, wd = (float)h->wd, b1 = (float)h->beta1, b2 = (float)h->beta2;
    if (h->algo == ALG_ADAMW) {
        const float bc1 = 1.0f - powf(b1, (float)h->step), bc2 = 1.0f - powf(b2, (float)h->step);
        const float kappa = h->cautious && h->wd > 0.0 ? lr * wd : 0.0f;
        eopt_ew_run(be, EOPT_EW(dion_adamw, w->numel, .param = X, .exp_avg = M, .exp_avg_sq = eopt_f32(vt), .grad = G,
                                .one_minus_beta1 = 1.0f - b1, .beta2 = b2, .one_minus_beta2 = 1.0f - b2,
                                .sqrt_bc2 = sqrtf(bc2), .eps = (float)h->eps, .step_size = lr / bc1,
                                .decay = 1.0f - lr * wd, .cautious_lr_wd = kappa));
    } else {
        eopt_ew_run(be, EOPT_EW(dion_lion, w->numel, .param = X, .momentum = M, .grad = G, .one_minus_beta1 = 1.0f - b1,
                                .one_minus_beta2 = 1.0f - b2, .lr = lr, .decay = 1.0f - lr * wd, .lr_wd = lr * wd,
                                .cautious = h->cautious));
    }
    return EOPT_OK;
}

/* ---- step (§1.4) ---- */

/* Every group advances its step counter, with or without gradients. */
static void dion_begin_group(eopt_optimizer *opt, int g, void *hp)
{
    dion_hp *h = &((dion_group *)hp)->h;
    h->step++;
    eopt_dict_set(&opt->groups[g].hp, "step", eopt_int(h->step)); /* replaces a present key: cannot fail */
}

/* The workspace of one matrix of matrix_param (muon_matrix / dion2_matrix with orthogonalize
 * and normalize_neurons); the matrices of a batch each take theirs. */
static size_t matrix_workspace_bytes(const eopt_backend *be, const dion_group *dg, int m, int n)
{
    const dion_hp *h = &dg->h;
    const int nor = h->algo == ALG_NORMUON || h->algo == ALG_NORDION2;
    int r = m, cols = n;
    size_t b = 0;
    if (h->algo == ALG_MUON || h->algo == ALG_NORMUON) {
        b = eopt_ws_floats_size((int64_t)m * n) * (h->nesterov ? 2 : 1);
    } else {
        const int rows = nor || m <= n, K = rows ? m : n, k = (int)eopt_dion2_select_count(h->fraction, K);
        r = rows ? k : m, cols = rows ? n : k;
        b = eopt_ws_floats_size(K) + 3 * eopt_ws_floats_size((int64_t)r * cols) + eopt_ws_floats_size(k) +
            eopt_ws_size((size_t)K * sizeof(int32_t));
    }
    b += eopt_ns_workspace_bytes(be, &dg->ns, r, cols) + (dg->soft > 0.0 ? eopt_soften_workspace_bytes() : 0);
    if (nor)
        b += eopt_ws_floats_size(2) + 2 * eopt_ws_floats_size(r);
    return b;
}

static size_t dion_workspace_bytes(const eopt_optimizer *opt, const void *hp, int i)
{
    const dion_group *dg = hp;
    int m, n;
    int64_t batch;
    if (dg->h.algo == ALG_ADAMW || dg->h.algo == ALG_LION || matrix_shape(opt, i, &dg->h, &m, &n, &batch) != EOPT_OK)
        return 0;
    return (size_t)batch * matrix_workspace_bytes(opt->be, dg, m, n);
}

static eopt_status dion_update(eopt_optimizer *opt, eopt_workspace *ws, const void *hp, int i)
{
    const dion_group *dg = hp;
    if (dg->h.algo == ALG_ADAMW || dg->h.algo == ALG_LION)
        return elementwise_param(opt, i, &dg->h);
    return matrix_param(opt, ws, i, &dg->h, &dg->ns, dg->soft);
}

#define DION_CLASS(var, id_, name_, args, group, ...)                                                                       \
    const eopt_optimizer_class var = {                                                                                 \
        .id = id_,                                                                                                     \
        .name = name_,                                                                                                 \
        .source = "microsoft/dion@33777ce",                                                                            \
        .source_match = "microsoft/dion",                                                                              \
        .arg_keys = args,                                                                                               \
        .group_keys = group,                                                                                            \
        .impl_size = sizeof(dion_cfg),                                                                                 \
        .hp_size = sizeof(dion_group),                                                                                 \
        .setup = dion_setup,                                                                                           \
        .init_state = dion_init_state,                                                                                 \
        .read_group = read_group,                                                                                      \
        .check_param = dion_check,                                                                                     \
        .begin_group = dion_begin_group,                                                                               \
        .update = dion_update,                                                                                         \
        .workspace_bytes = dion_workspace_bytes,                                                                       \
        .schedulable = (const char *const[]){__VA_ARGS__, "beta1", "beta2", "weight_decay", "epsilon",                 \
                                             "softening", NULL},                                                       \
        .cost = EOPT_COST_ORTHOGONALIZE,                                                                               \
    }

DION_CLASS(eopt_class_dion_muon, "dion.Muon", "Muon", muon_arg_keys, muon_group_keys, "lr", "mu");
DION_CLASS(eopt_class_normuon, "NorMuon", "NorMuon", muon_arg_keys, normuon_group_keys, "lr", "mu", "muon_beta2");
DION_CLASS(eopt_class_dion2, "Dion2", "Dion2", dion2_arg_keys, dion2_group_keys, "lr", "ef_decay");
DION_CLASS(eopt_class_nordion2, "NorDion2", "NorDion2", nordion2_arg_keys, nordion2_group_keys, "lr", "mu",
           "muon_beta2");
