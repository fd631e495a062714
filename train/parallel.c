/* Data parallelism with the optimizer state sharded by parameter (parallel.h). */
#include "parallel.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    int index;
    double cost;
} costed;

/* Largest first; equal costs in parameter order, so every rank sorts the same way. */
static int by_cost(const void *a, const void *b)
{
    const costed *x = a, *y = b;
    if (x->cost != y->cost)
        return x->cost > y->cost ? -1 : 1;
    return x->index - y->index;
}

eopt_status eopt_dp_balance(int size, const double *cost, int n, int *owner, double *load)
{
    costed *c = malloc(sizeof *c * (size_t)(n ? n : 1));
    if (!c)
        return eopt_fail(EOPT_ERR_NOMEM, "data-parallel plan: out of memory");
    for (int i = 0; i < n; i++)
        c[i] = (costed){i, cost[i]};
    qsort(c, (size_t)n, sizeof *c, by_cost);
    for (int r = 0; r < size; r++)
        load[r] = 0;
    for (int k = 0; k < n; k++) {
        int best = 0;
        for (int r = 1; r < size; r++)
            if (load[r] < load[best])
                best = r;
        owner[c[k].index] = best;
        load[best] += c[k].cost;
    }
    free(c);
    return EOPT_OK;
}

eopt_status eopt_dp_create(eopt_comm *comm, eopt_model *m, int nopt, eopt_optimizer *const *opt,
                           int *const *model_index, eopt_dp *dp)
{
    memset(dp, 0, sizeof *dp);
    dp->comm = comm;
    dp->rank = eopt_comm_rank(comm);
    dp->size = eopt_comm_size(comm);
    dp->nparams = m->nparams;
    dp->owner = calloc((size_t)m->nparams, sizeof *dp->owner);
    dp->grad = calloc((size_t)m->nparams, sizeof *dp->grad);
    dp->weight = calloc((size_t)m->nparams, sizeof *dp->weight);
    dp->load = calloc((size_t)dp->size, sizeof *dp->load);
    double *cost = calloc((size_t)m->nparams, sizeof *cost);
    if (!dp->owner || !dp->grad || !dp->weight || !dp->load || !cost) {
        free(cost);
        eopt_dp_free(dp);
        return eopt_fail(EOPT_ERR_NOMEM, "data-parallel plan: out of memory");
    }
    for (int i = 0; i < m->nparams; i++) {
        dp->grad[i] = m->params[i].grad;
        dp->weight[i] = m->params[i].w;
        cost[i] = 10.0 * (double)m->params[i].w->numel; /* a parameter no optimizer takes */
    }
    for (int o = 0; o < nopt; o++)
        for (int k = 0; k < opt[o]->nparams; k++)
            cost[model_index[o][k]] = eopt_optimizer_update_cost(opt[o], k);
    eopt_status st = eopt_dp_balance(dp->size, cost, m->nparams, dp->owner, dp->load);
    free(cost);
    if (st != EOPT_OK)
        eopt_dp_free(dp);
    return st;
}

/* The plan's arrays; the world (comm, rank, size) stays, so that a failed plan is still agreed on. */
void eopt_dp_free(eopt_dp *dp)
{
    free(dp->owner), free(dp->grad), free(dp->weight), free(dp->load);
    dp->owner = NULL, dp->grad = dp->weight = NULL, dp->load = NULL;
}

int eopt_dp_rows(const eopt_dp *dp, int B, int *row0)
{
    *row0 = (int)((int64_t)B * dp->rank / dp->size);
    return (int)((int64_t)B * (dp->rank + 1) / dp->size) - *row0;
}

eopt_batch eopt_dp_slice(const eopt_batch *b, int row0, int rows, int dim)
{
    eopt_batch s = *b;
    s.B = rows;
    if (b->x)
        s.x = b->x + (size_t)row0 * (size_t)dim;
    if (b->labels)
        s.labels = b->labels + row0;
    if (b->tokens)
        s.tokens = b->tokens + (size_t)row0 * (size_t)b->T;
    if (b->targets)
        s.targets = b->targets + (size_t)row0 * (size_t)b->T;
    return s;
}

void eopt_dp_localize(const eopt_dp *dp, eopt_optimizer *opt, const int *model_index)
{
    if (dp->size == 1)
        return;
    for (int k = 0; k < opt->nparams; k++)
        if (dp->owner[model_index[k]] != dp->rank) {
            opt->params[k].grad = NULL;
            eopt_state_clear(&opt->state[k]);
        }
}

eopt_status eopt_dp_keep(const eopt_dp *dp, int nopt, eopt_optimizer *const *opt, int *const *model_index,
                         unsigned char **keep)
{
    for (int o = 0; o < nopt; o++) {
        if (!(keep[o] = malloc((size_t)opt[o]->nparams)))
            return eopt_fail(EOPT_ERR_NOMEM, "out of memory");
        for (int k = 0; k < opt[o]->nparams; k++)
            keep[o][k] = dp->owner[model_index[o][k]] == dp->rank;
    }
    return EOPT_OK;
}

void eopt_dp_free_keep(int nopt, unsigned char **keep)
{
    for (int o = 0; o < nopt; o++)
        free(keep[o]), keep[o] = NULL;
}

/* Also with one rank: the transport decides (comm.h: NCCL runs then too, the others return). */
eopt_status eopt_dp_reduce_gradients(eopt_dp *dp, eopt_backend *be)
{
    return eopt_comm_reduce_to_owners(dp->comm, be, dp->nparams, dp->grad, dp->owner);
}

eopt_status eopt_dp_gather_weights(eopt_dp *dp, eopt_backend *be)
{
    return eopt_comm_bcast_from_owners(dp->comm, be, dp->nparams, dp->weight, dp->owner);
}

eopt_status eopt_dp_share_diagnostics(eopt_dp *dp, int nopt, eopt_optimizer *const *opt, int *const *model_index)
{
    if (dp->size == 1)
        return EOPT_OK;
    for (int o = 0; o < nopt; o++)
        for (int k = 0; k < opt[o]->nparams; k++)
            EOPT_TRY(eopt_comm_bcast(dp->comm, &opt[o]->diag[k], sizeof opt[o]->diag[k],
                                     dp->owner[model_index[o][k]]));
    return EOPT_OK;
}

/* What an owner tells rank 0 of one state entry (a save lays out every rank's datasets). */
typedef struct {
    char key[24];
    int32_t dtype, ndim, on_host;
    int64_t shape[EOPT_MAX_DIMS];
} state_header;

static eopt_status send_headers(eopt_dp *dp, const eopt_state *s)
{
    state_header h[EOPT_STATE_MAX];
    int32_t n = s->n;
    memset(h, 0, sizeof h);
    for (int e = 0; e < s->n; e++) {
        memcpy(h[e].key, s->key[e], sizeof h[e].key);
        h[e].dtype = s->t[e].dtype, h[e].ndim = s->t[e].ndim, h[e].on_host = s->t[e].be == NULL;
        memcpy(h[e].shape, s->t[e].shape, sizeof h[e].shape);
    }
    EOPT_TRY(eopt_comm_send(dp->comm, &n, sizeof n, 0));
    return eopt_comm_send(dp->comm, h, sizeof h[0] * (size_t)n, 0);
}

/* Rank 0's view of another rank's entries: keys, dtypes and shapes; no data. */
static eopt_status recv_headers(eopt_dp *dp, const eopt_optimizer *opt, int k, int from, eopt_state *view)
{
    state_header h[EOPT_STATE_MAX];
    int32_t n;
    EOPT_TRY(eopt_comm_recv(dp->comm, &n, sizeof n, from));
    if (n < 0 || n > EOPT_STATE_MAX)
        return eopt_fail(EOPT_ERR_FORMAT, "rank %d sent %d state entries for '%s'", from, n, opt->params[k].name);
    EOPT_TRY(eopt_comm_recv(dp->comm, h, sizeof h[0] * (size_t)n, from));
    view->n = n;
    for (int e = 0; e < n; e++) {
        eopt_tensor *t = &view->t[e];
        if (h[e].ndim < 0 || h[e].ndim > EOPT_MAX_DIMS || h[e].dtype < EOPT_F32 || h[e].dtype > EOPT_I64)
            return eopt_fail(EOPT_ERR_FORMAT, "rank %d sent a bad state entry for '%s'", from, opt->params[k].name);
        memcpy(view->key[e], h[e].key, sizeof view->key[e]);
        view->key[e][sizeof view->key[e] - 1] = 0;
        *t = (eopt_tensor){.dtype = (eopt_dtype)h[e].dtype, .ndim = h[e].ndim, .numel = 1,
                           .be = h[e].on_host ? NULL : opt->be};
        for (int d = 0; d < t->ndim; d++)
            t->shape[d] = h[e].shape[d], t->numel *= h[e].shape[d];
    }
    return EOPT_OK;
}

/* Rank 0 takes the parameters in order and each owner sends its own in the same order, so the
 * point-to-point messages between any two ranks match up one by one. */
eopt_status eopt_dp_state_views(eopt_dp *dp, int nopt, eopt_optimizer *const *opt, int *const *model_index,
                                eopt_state **views)
{
    eopt_status st = EOPT_OK;
    for (int o = 0; o < nopt && st == EOPT_OK; o++)
        if (!(views[o] = calloc((size_t)opt[o]->nparams, sizeof *views[o])))
            st = eopt_fail(EOPT_ERR_NOMEM, "out of memory");
    EOPT_TRY(eopt_comm_agree(dp->comm, st)); /* before the messages, which all ranks must take part in */
    for (int o = 0; o < nopt; o++)
        for (int k = 0; k < opt[o]->nparams; k++) {
            int owner = dp->owner[model_index[o][k]];
            if (owner == dp->rank)
                views[o][k] = opt[o]->state[k]; /* the tensors themselves, not copies */
            if (owner != 0 && dp->rank == owner)
                EOPT_TRY(send_headers(dp, &opt[o]->state[k]));
            else if (owner != 0 && dp->rank == 0)
                EOPT_TRY(recv_headers(dp, opt[o], k, owner, &views[o][k]));
        }
    return EOPT_OK;
}

void eopt_dp_free_views(int nopt, eopt_state **views)
{
    for (int o = 0; o < nopt; o++)
        free(views[o]), views[o] = NULL;
}

int64_t eopt_dp_state_bytes(int nopt, eopt_optimizer *const *opt)
{
    int64_t bytes = 0;
    for (int o = 0; o < nopt; o++)
        for (int k = 0; k < opt[o]->nparams; k++)
            for (int e = 0; e < opt[o]->state[k].n; e++)
                bytes += (int64_t)eopt_tensor_bytes(&opt[o]->state[k].t[e]);
    return bytes;
}
