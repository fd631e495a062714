#include "optimizer.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "classes.h"
#include "newton_schulz.h"

static const eopt_optimizer_class *const all_classes[] = {EOPT_OPTIMIZER_CLASSES NULL};

const eopt_optimizer_class *const *eopt_optimizer_classes(void) { return all_classes; }

const eopt_optimizer_class *eopt_optimizer_find(const char *id)
{
    for (int k = 0; all_classes[k]; k++)
        if (strcmp(all_classes[k]->id, id) == 0)
            return all_classes[k];
    return NULL;
}

const eopt_optimizer_class *eopt_optimizer_find_checkpoint(const char *name, const char *source)
{
    /* Prefer a class whose source_match occurs in the file's source; then one without a
     * source_match (NVIDIA's Muon for "Muon"); then any class of that name. */
    const eopt_optimizer_class *plain = NULL, *any = NULL;
    for (int k = 0; all_classes[k]; k++) {
        const eopt_optimizer_class *c = all_classes[k];
        if (strcmp(c->name, name) != 0)
            continue;
        if (source && c->source_match && strstr(source, c->source_match))
            return c;
        if (!plain && !c->source_match)
            plain = c;
        if (!any)
            any = c;
    }
    return plain ? plain : any;
}

void eopt_state_clear(eopt_state *s)
{
    for (int k = 0; k < s->n; k++)
        eopt_tensor_free(&s->t[k]);
    s->n = 0;
}

void eopt_optimizer_free(eopt_optimizer *opt)
{
    if (!opt)
        return;
    for (int i = 0; i < opt->nparams; i++)
        eopt_state_clear(&opt->state[i]);
    for (int g = 0; g < opt->ngroups; g++)
        free(opt->groups[g].index);
    free(opt->groups);
    free(opt->params);
    free(opt->state);
    free(opt->diag);
    eopt_ws_free(&opt->ws);
    for (int k = 0; k < opt->nthread_ws; k++)
        eopt_ws_free(&opt->thread_ws[k]);
    free(opt->thread_ws);
    free(opt->impl);
    free(opt);
}

eopt_status eopt_optimizer_defaults(const eopt_optimizer_class *cls, eopt_dict *args, eopt_dict *group)
{
    EOPT_TRY(eopt_hparams_defaults(cls->arg_keys, args));
    return eopt_hparams_defaults(cls->group_keys, group);
}

static eopt_status check_args(const eopt_optimizer_class *cls, const eopt_dict *given, eopt_dict *args)
{
    *args = (eopt_dict){0};
    EOPT_TRY(eopt_hparams_defaults(cls->arg_keys, args));
    for (int k = 0; given && k < given->n; k++) {
        const eopt_item *it = &given->items[k];
        if (!eopt_dict_get(args, it->key))
            return eopt_fail(EOPT_ERR_ARG, "%s: unknown constructor argument '%s'", cls->name, it->key);
        EOPT_TRY(eopt_dict_set(args, it->key, it->v));
    }
    return EOPT_OK;
}

/* ---- the step loop ---- */

/* The gradient of a stepped parameter must match it (the classes index both alike). */
static eopt_status check_grad(const eopt_optimizer *opt, const eopt_param *p)
{
    char a[64], b[64];
    if (!eopt_tensor_same_shape(p->w, p->grad))
        return eopt_fail(EOPT_ERR_SHAPE, "%s: the gradient of '%s' has shape %s, the parameter %s", opt->cls->id,
                         p->name, eopt_shape_str(p->grad->ndim, p->grad->shape, a, sizeof a),
                         eopt_shape_str(p->w->ndim, p->w->shape, b, sizeof b));
    if (p->grad->dtype != p->w->dtype)
        return eopt_fail(EOPT_ERR_UNSUPPORTED, "%s: the gradient of '%s' is %s, the parameter %s", opt->cls->id,
                         p->name, eopt_dtype_name(p->grad->dtype), eopt_dtype_name(p->w->dtype));
    return EOPT_OK;
}

/* Every group's hyperparameters into *hp (ngroups structs of hp_size bytes; caller frees). */
static eopt_status read_groups(const eopt_optimizer *opt, unsigned char **hp)
{
    const eopt_optimizer_class *c = opt->cls;
    *hp = calloc((size_t)opt->ngroups, c->hp_size ? c->hp_size : 1);
    if (!*hp)
        return eopt_fail(EOPT_ERR_NOMEM, "out of memory");
    for (int g = 0; g < opt->ngroups; g++)
        EOPT_TRY(c->read_group(opt, g, *hp + (size_t)g * c->hp_size));
    return EOPT_OK;
}

/* Every parameter (the class's check) and every gradient (its parameter's shape and dtype). */
static eopt_status check_params(const eopt_optimizer *opt, const unsigned char *hp)
{
    const eopt_optimizer_class *c = opt->cls;
    for (int g = 0; g < opt->ngroups; g++)
        for (int k = 0; k < opt->groups[g].n; k++) {
            const int i = opt->groups[g].index[k];
            if (c->check_param)
                EOPT_TRY(c->check_param(opt, hp + (size_t)g * c->hp_size, i));
            if (opt->params[i].grad)
                EOPT_TRY(check_grad(opt, &opt->params[i]));
        }
    return EOPT_OK;
}

/* The constructor arguments into opt->impl (the class's setup completes it). */
static eopt_status read_args(eopt_optimizer *opt)
{
    return eopt_hparams_read(opt->cls->arg_keys, &opt->args, opt->cls->id, opt->impl);
}

eopt_status eopt_optimizer_create(const char *class_name, eopt_backend *be, const eopt_dict *args, int ngroups,
                                  const eopt_dict *group_hp, const int *group_size, const eopt_param *params,
                                  int nparams, eopt_optimizer **out)
{
    *out = NULL;
    const eopt_optimizer_class *cls = eopt_optimizer_find(class_name);
    if (!cls)
        return eopt_fail(EOPT_ERR_ARG, "unknown optimizer class '%s'", class_name);
    /* class_name is an id ("dion.Muon"); see eopt_optimizer_find_checkpoint for files. */
    if (nparams == 0)
        return eopt_fail(EOPT_ERR_ARG, "%s: optimizer got an empty parameter list", cls->name);
    int total = 0;
    for (int g = 0; g < ngroups; g++)
        total += group_size[g];
    if (total != nparams)
        return eopt_fail(EOPT_ERR_ARG, "%s: param groups hold %d parameters, %d given", cls->name, total, nparams);
    for (int i = 0; i < nparams; i++)
        for (int j = 0; j < i; j++)
            if (params[i].w == params[j].w || strcmp(params[i].name, params[j].name) == 0)
                return eopt_fail(EOPT_ERR_ARG, "%s: some parameters appear in more than one parameter group ('%s')",
                                 cls->name, params[i].name);

    eopt_optimizer *opt = calloc(1, sizeof *opt);
    if (!opt)
        return eopt_fail(EOPT_ERR_NOMEM, "out of memory");
    unsigned char *hp = NULL;
    opt->cls = cls;
    opt->be = be;
    eopt_ws_init(&opt->ws, be);
    opt->ngroups = ngroups;
    opt->nparams = nparams;
    opt->groups = calloc((size_t)ngroups, sizeof *opt->groups);
    opt->params = calloc((size_t)nparams, sizeof *opt->params);
    opt->state = calloc((size_t)nparams, sizeof *opt->state);
    opt->impl = calloc(1, cls->impl_size ? cls->impl_size : 1);
    opt->diag = calloc((size_t)nparams, sizeof *opt->diag);
    eopt_status st = EOPT_OK;
    if (!opt->groups || !opt->params || !opt->state || !opt->impl || !opt->diag) {
        st = eopt_fail(EOPT_ERR_NOMEM, "out of memory");
        goto fail;
    }
    memcpy(opt->params, params, (size_t)nparams * sizeof *params);
    if ((st = check_args(cls, args, &opt->args)) != EOPT_OK)
        goto fail;
    eopt_dict group_defaults = {0};
    if ((st = eopt_hparams_defaults(cls->group_keys, &group_defaults)) != EOPT_OK)
        goto fail;
    for (int g = 0, next = 0; g < ngroups; g++) {
        eopt_group *gr = &opt->groups[g];
        gr->hp = group_hp ? group_hp[g] : (eopt_dict){0};
        if ((st = eopt_dict_merge_defaults(&gr->hp, &group_defaults)) != EOPT_OK)
            goto fail;
        gr->n = group_size[g];
        gr->index = calloc((size_t)(gr->n ? gr->n : 1), sizeof *gr->index);
        if (!gr->index) {
            st = eopt_fail(EOPT_ERR_NOMEM, "out of memory");
            goto fail;
        }
        for (int k = 0; k < gr->n; k++)
            gr->index[k] = next++;
    }
    if ((st = read_args(opt)) != EOPT_OK || (cls->setup && (st = cls->setup(opt)) != EOPT_OK) ||
        (st = read_groups(opt, &hp)) != EOPT_OK)
        goto fail;
    free(hp);
    *out = opt;
    return EOPT_OK;
fail:
    free(hp);
    eopt_optimizer_free(opt);
    return st;
}

/* torch's lazy state: created for every parameter with a gradient and none yet, before any
 * update; if one fails, the state made here is removed again. */
static eopt_status start_states(eopt_optimizer *opt)
{
    const eopt_optimizer_class *c = opt->cls;
    unsigned char *fresh = calloc((size_t)opt->nparams, 1);
    if (!fresh)
        return eopt_fail(EOPT_ERR_NOMEM, "out of memory");
    eopt_status st = EOPT_OK;
    for (int i = 0; i < opt->nparams && st == EOPT_OK; i++)
        if (opt->params[i].grad && opt->state[i].n == 0) {
            fresh[i] = 1;
            st = c->start_state ? c->start_state(opt, i) : c->init_state(opt, i);
        }
    for (int i = 0; i < opt->nparams && st != EOPT_OK; i++)
        if (fresh[i])
            eopt_state_clear(&opt->state[i]);
    free(fresh);
    return st;
}

/* How many threads update a group's parameters at once (eopt_optimizer_step): the CPU
 * backend's thread count when the group has at least that many parameters with a gradient,
 * else 1 (one parameter after the other, each with multi-threaded BLAS). */
static int group_threads(const eopt_optimizer *opt, int g)
{
    if (opt->be->device != EOPT_DEV_CPU)
        return 1; /* the CUDA backend orders its operations on one stream */
    int threads = opt->be->threads > 0 ? opt->be->threads : omp_get_max_threads(), graded = 0;
    threads = threads < EOPT_BACKEND_SLOTS ? threads : EOPT_BACKEND_SLOTS;
    for (int k = 0; k < opt->groups[g].n; k++)
        graded += opt->params[opt->groups[g].index[k]].grad != NULL;
    return threads > 1 && graded >= threads ? threads : 1;
}

/* The workspace of thread t of a parallel step (t = 0: opt->ws, also the sequential one's). */
static eopt_workspace *thread_ws(eopt_optimizer *opt, int t) { return t ? &opt->thread_ws[t - 1] : &opt->ws; }

/* The first failure of a parallel region in parameter order (what a sequential loop reports):
 * the message is thread-local (error.h), so it is copied out of the thread that failed. */
typedef struct {
    eopt_status st;
    int at;
    char msg[2048];
} step_failure;

static void failure_note(step_failure *f, eopt_status st, int at)
{
    if (st == EOPT_OK)
        return;
#pragma omp critical(eopt_step_failure)
    if (f->st == EOPT_OK || at < f->at) {
        f->st = st;
        f->at = at;
        snprintf(f->msg, sizeof f->msg, "%s", eopt_last_error());
    }
}

static eopt_status failure_status(const step_failure *f)
{
    return f->st == EOPT_OK ? EOPT_OK : eopt_fail(f->st, "%s", f->msg);
}

/* The backend's solver workspace of each of `threads` threads (the CPU backend keeps one per
 * thread of a parallel region): reserved from those threads themselves. */
static eopt_status reserve_solvers(eopt_backend *be, int n, int threads)
{
    if (threads == 1)
        return be->reserve_solver(be, n);
    step_failure f = {0};
#pragma omp parallel num_threads(threads)
    failure_note(&f, be->reserve_solver(be, n), omp_get_thread_num());
    return failure_status(&f);
}

/* Every update's workspace, reserved before the first, for each thread that updates: the
 * largest bound of the parameters with a gradient (each update starts from a reset arena), and
 * the backend's solver workspace for the largest eigenproblem or QR a class declares. */
static eopt_status reserve_updates(eopt_optimizer *opt, const unsigned char *hp)
{
    const eopt_optimizer_class *c = opt->cls;
    size_t need = 0;
    int solver = 0, threads = 1;
    for (int g = 0; g < opt->ngroups; g++) {
        const int t = group_threads(opt, g);
        threads = t > threads ? t : threads;
        for (int k = 0; k < opt->groups[g].n; k++) {
            const int i = opt->groups[g].index[k];
            if (!opt->params[i].grad)
                continue;
            const size_t b = c->workspace_bytes ? c->workspace_bytes(opt, hp + (size_t)g * c->hp_size, i) : 0;
            const int s = c->solver_size ? c->solver_size(opt, i) : 0;
            need = b > need ? b : need;
            solver = s > solver ? s : solver;
        }
    }
    if (solver > 0 && opt->be->reserve_solver)
        EOPT_TRY(reserve_solvers(opt->be, solver, threads));
    if (threads - 1 > opt->nthread_ws) {
        eopt_workspace *grown = realloc(opt->thread_ws, (size_t)(threads - 1) * sizeof *grown);
        if (!grown)
            return eopt_fail(EOPT_ERR_NOMEM, "out of memory for the workspaces of %d threads", threads);
        opt->thread_ws = grown;
        for (; opt->nthread_ws < threads - 1; opt->nthread_ws++)
            eopt_ws_init(&opt->thread_ws[opt->nthread_ws], opt->be);
    }
    for (int t = 0; t < threads; t++)
        EOPT_TRY(eopt_ws_reserve(thread_ws(opt, t), need));
    return EOPT_OK;
}

/* One parameter's update from a reset workspace (reserved: the reset allocates nothing). */
static eopt_status update_param(eopt_optimizer *opt, eopt_workspace *ws, const void *h, int i)
{
    const eopt_optimizer_class *c = opt->cls;
    eopt_status st = eopt_ws_reset(ws);
    if (st == EOPT_OK)
        st = c->update(opt, ws, h, i);
    if (st != EOPT_OK)
        return eopt_fail_context(st, "%s parameter '%s'", c->id, opt->params[i].name);
    if (eopt_ws_taken(ws) > (c->workspace_bytes ? c->workspace_bytes(opt, h, i) : 0)) {
#pragma omp atomic
        opt->ws_overruns++;
    }
    return EOPT_OK;
}

/* Group g's parameters with a gradient, in order, or `threads` at a time (one per thread,
 * BLAS single-threaded inside a parallel region): each update reads and writes only its own
 * parameter and state, so the order changes no bit. After a failure no further update starts. */
static eopt_status update_group(eopt_optimizer *opt, int g, const void *h, int threads)
{
    const eopt_group *gr = &opt->groups[g];
    if (threads == 1) {
        for (int k = 0; k < gr->n; k++)
            if (opt->params[gr->index[k]].grad)
                EOPT_TRY(update_param(opt, &opt->ws, h, gr->index[k]));
        return EOPT_OK;
    }
    step_failure f = {0};
    int stop = 0;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int k = 0; k < gr->n; k++) {
        int stopped;
#pragma omp atomic read
        stopped = stop;
        if (stopped || !opt->params[gr->index[k]].grad)
            continue;
        const eopt_status st = update_param(opt, thread_ws(opt, omp_get_thread_num()), h, gr->index[k]);
        if (st != EOPT_OK) {
            failure_note(&f, st, k);
#pragma omp atomic write
            stop = 1;
        }
    }
    return failure_status(&f);
}

eopt_status eopt_optimizer_step(eopt_optimizer *opt)
{
    const eopt_optimizer_class *c = opt->cls;
    unsigned char *hp = NULL;
    eopt_status st = read_groups(opt, &hp);
    if (st == EOPT_OK)
        st = check_params(opt, hp);
    if (st == EOPT_OK)
        st = reserve_updates(opt, hp);
    if (st == EOPT_OK)
        st = start_states(opt);
    /* From here on nothing allocates: a failure below is numeric (a solver, a device error) and
     * leaves the parameters before it updated; rolling those back would cost a copy of every
     * parameter and state tensor per step. */
    for (int g = 0; g < opt->ngroups && st == EOPT_OK; g++) {
        void *h = hp + (size_t)g * c->hp_size;
        if (c->begin_group)
            c->begin_group(opt, g, h);
        st = update_group(opt, g, h, group_threads(opt, g));
    }
    free(hp);
    if (st != EOPT_OK)
        return st;
    char what[96]; /* a failed backend operation of the step (backend.h) is the step's failure */
    snprintf(what, sizeof what, "%s step", c->name);
    return eopt_backend_check(opt->be, what);
}

void eopt_optimizer_diag_begin(eopt_optimizer *opt)
{
    for (int i = 0; i < opt->nparams; i++)
        opt->diag[i].n = 0;
    opt->diag_on = 1;
}

eopt_status eopt_optimizer_diag_end(eopt_optimizer *opt)
{
    eopt_status st = EOPT_OK;
    for (int i = 0; i < opt->nparams && st == EOPT_OK && opt->cls->diagnostics; i++)
        if (opt->state[i].n > 0 && (st = eopt_ws_reset(&opt->ws)) == EOPT_OK)
            st = opt->cls->diagnostics(opt, i);
    opt->diag_on = 0;
    if (st != EOPT_OK)
        return st;
    return eopt_backend_check(opt->be, "optimizer diagnostics");
}

void eopt_diag_note(eopt_optimizer *opt, int i, const char *key, double value)
{
    eopt_diag_values *d = &opt->diag[i];
    int k = 0;
    while (k < d->n && strcmp(d->key[k], key) != 0)
        k++;
    if (k == EOPT_DIAG_MAX)
        return;
    if (k == d->n)
        snprintf(d->key[d->n++], sizeof d->key[0], "%s", key);
    d->value[k] = value;
}

eopt_status eopt_diag_ns_residual(eopt_optimizer *opt, eopt_workspace *ws, int i, int m, int n, const float *O)
{
    if (!opt->diag_on)
        return EOPT_OK;
    float *r = eopt_ws_floats(ws, 1);
    if (!r)
        return eopt_fail(EOPT_ERR_NOMEM, "out of memory for the Newton-Schulz residual (%dx%d)", m, n);
    EOPT_TRY(eopt_ns_residual(opt->be, ws, m, n, O, r));
    eopt_diag_note(opt, i, "ns_residual", eopt_read_scalar(opt->be, r));
    return EOPT_OK;
}

eopt_status eopt_state_add(eopt_optimizer *opt, int i, const char *key, eopt_dtype dt, int ndim, const int64_t *shape,
                           int on_host)
{
    eopt_state *s = &opt->state[i];
    if (s->n == EOPT_STATE_MAX)
        return eopt_fail(EOPT_ERR_ARG, "%s: too many state entries for parameter %d", opt->cls->name, i);
    EOPT_TRY(eopt_tensor_alloc(&s->t[s->n], on_host ? NULL : opt->be, dt, ndim, shape));
    snprintf(s->key[s->n], sizeof s->key[0], "%s", key);
    s->n++;
    return EOPT_OK;
}

eopt_tensor *eopt_state_get(eopt_optimizer *opt, int i, const char *key)
{
    eopt_state *s = &opt->state[i];
    for (int k = 0; k < s->n; k++)
        if (strcmp(s->key[k], key) == 0)
            return &s->t[k];
    return NULL;
}

int eopt_optimizer_group_of(const eopt_optimizer *opt, int i)
{
    for (int g = 0; g < opt->ngroups; g++)
        for (int k = 0; k < opt->groups[g].n; k++)
            if (opt->groups[g].index[k] == i)
                return g;
    return -1;
}

int eopt_optimizer_schedulable(const eopt_optimizer_class *cls, const char *key)
{
    for (int k = 0; cls->schedulable && cls->schedulable[k]; k++)
        if (strcmp(cls->schedulable[k], key) == 0)
            return 1;
    return 0;
}

const char *eopt_optimizer_schedulable_names(const eopt_optimizer_class *cls, char *buf, size_t size)
{
    snprintf(buf, size, "%s", cls->schedulable && cls->schedulable[0] ? "" : "none");
    for (int k = 0; cls->schedulable && cls->schedulable[k]; k++)
        snprintf(buf + strlen(buf), size - strlen(buf), "%s%s", k ? ", " : "", cls->schedulable[k]);
    return buf;
}

eopt_status eopt_optimizer_set_hparam(eopt_optimizer *opt, int g, const char *key, double value)
{
    char names[256];
    if (!eopt_optimizer_schedulable(opt->cls, key))
        return eopt_fail(EOPT_ERR_ARG, "%s: hyperparameter '%s' cannot be scheduled (schedulable: %s)", opt->cls->id,
                         key, eopt_optimizer_schedulable_names(opt->cls, names, sizeof names));
    if (g >= opt->ngroups)
        return eopt_fail(EOPT_ERR_ARG, "%s: no param group %d (it has %d)", opt->cls->id, g, opt->ngroups);
    if (eopt_dict_get(&opt->args, key))
        return eopt_dict_set(&opt->args, key, eopt_float(value));
    for (int k = g < 0 ? 0 : g; k < (g < 0 ? opt->ngroups : g + 1); k++)
        EOPT_TRY(eopt_dict_set(&opt->groups[k].hp, key, eopt_float(value))); /* keys exist: never fails */
    return EOPT_OK;
}

double eopt_optimizer_update_cost(const eopt_optimizer *opt, int i)
{
    const eopt_tensor *w = opt->params[i].w;
    double m = (double)eopt_tensor_rows(w), n = (double)eopt_tensor_cols(w), k = m < n ? m : n;
    if (w->ndim < 2 || opt->cls->cost == EOPT_COST_ELEMENTWISE)
        return 10 * m * n;
    if (opt->cls->cost == EOPT_COST_ORTHOGONALIZE) /* 5 iterations of 3 products of ~2 m n k flops */
        return 30 * m * n * k;
    return 4 * m * n * (m + n) + m * m * m + n * n * n; /* four rotations, both factors' eigenbases */
}
