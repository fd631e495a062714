/* Data-parallel training over the ranks of a world (framework/comm.h), with the optimizers'
 * state and work sharded by whole parameters, as dion's megabatch scheme shards its matrices:
 *
 *   - every rank computes the gradients of its own rows of each global batch (the sampler stays
 *     global: every rank draws the same batch and takes rows [row0, row0 + rows)), scaled by
 *     rows / B so that their sum over ranks is the gradient of the whole batch;
 *   - each parameter is owned by one rank, which keeps its optimizer state (momentum, L/R or M
 *     factors, Q bases, AdamW moments, ...) and computes its update: the gradients go to their
 *     owners in one reduce-scatter, and the updated weights come back in one all-gather, so
 *     every rank ends each step with identical parameters. AdamW's state is sharded the same
 *     way, by whole tensors (ZeRO-1 as torch's ZeroRedundancyOptimizer partitions it);
 *   - owners are balanced by the estimated flops of each update (eopt_optimizer_update_cost:
 *     Newton-Schulz grows as m n min(m, n), an eigenbasis as n^3), largest first onto the least
 *     loaded rank; every rank computes the same plan from the same shapes.
 *
 * Checkpoints keep the one layout of checkpoint.md whatever the number of ranks: rank 0 lays the
 * file out and every rank writes its own state into it through parallel HDF5 (checkpoint.h); a
 * load checks the whole file on every rank and each keeps what it owns (eopt_dp_keep). With
 * one rank everything here is the identity and costs nothing. */
#ifndef EOPT_PARALLEL_H
#define EOPT_PARALLEL_H

#include "../framework/comm.h"
#include "../models/model.h"
#include "../optimizers/optimizer.h"

typedef struct {
    eopt_comm *comm;
    int rank, size;
    int nparams;            /* the model's */
    int *owner;             /* [nparams]: the rank that owns each model parameter */
    eopt_tensor **grad;     /* [nparams]: the model's gradients and weights, for the exchanges */
    eopt_tensor **weight;
    double *load;           /* [size]: the estimated flops of each rank's updates */
} eopt_dp;

/* The plan for model m and its optimizers (model_index[o][k]: the model parameter of optimizer
 * o's parameter k). */
eopt_status eopt_dp_create(eopt_comm *comm, eopt_model *m, int nopt, eopt_optimizer *const *opt,
                           int *const *model_index, eopt_dp *dp);
void eopt_dp_free(eopt_dp *dp);
/* The plan itself: n items of estimated cost[i] over `size` ranks, longest first onto the least
 * loaded rank (ties: the lower rank; equal costs in index order), so every rank computes the same
 * owner[i]; load[r]: the sum of rank r's costs. The largest load is at most 4/3 of the best
 * possible (Graham's bound for this rule). */
eopt_status eopt_dp_balance(int size, const double *cost, int n, int *owner, double *load);

/* This rank's rows of a batch of B rows: [*row0, *row0 + rows), rows may be 0 (B < ranks). */
int eopt_dp_rows(const eopt_dp *dp, int B, int *row0);
/* A view of rows [row0, row0 + rows) of batch b (images of dim pixels, or token rows). */
eopt_batch eopt_dp_slice(const eopt_batch *b, int row0, int rows, int dim);

/* Optimizer opt (its parameter k is model parameter model_index[k]) works on the parameters this
 * rank owns only: the others lose their gradient (the step skips them) and their state. Called
 * after the optimizer is built and after every load into it. */
void eopt_dp_localize(const eopt_dp *dp, eopt_optimizer *opt, const int *model_index);

/* For a resume (eopt_checkpoint_apply_shard): keep[o][k] = 1 where this rank owns optimizer o's
 * parameter k. Free with eopt_dp_free_keep. */
eopt_status eopt_dp_keep(const eopt_dp *dp, int nopt, eopt_optimizer *const *opt, int *const *model_index,
                         unsigned char **keep);
void eopt_dp_free_keep(int nopt, unsigned char **keep);

/* The step's exchanges: the gradients summed into their owners; the owners' weights to all. */
eopt_status eopt_dp_reduce_gradients(eopt_dp *dp, eopt_backend *be);
eopt_status eopt_dp_gather_weights(eopt_dp *dp, eopt_backend *be);
/* On a diagnostic step: every parameter's optimizer diagnostics (eopt_diag_values) from its owner. */
eopt_status eopt_dp_share_diagnostics(eopt_dp *dp, int nopt, eopt_optimizer *const *opt, int *const *model_index);

/* Before a save (checkpoint.h's data-parallel save): each rank's view of every optimizer's state,
 * views[o][k] for optimizer o's parameter k: what the rank owns (its own tensors, not copies); on
 * rank 0 also every other rank's entries with key, dtype and shape but no data (each owner sends
 * them), so that rank 0 can lay out the whole file. No state moves between ranks: each writes its
 * own into the file. Free the arrays with eopt_dp_free_views (the tensors stay). */
eopt_status eopt_dp_state_views(eopt_dp *dp, int nopt, eopt_optimizer *const *opt, int *const *model_index,
                                eopt_state **views);
void eopt_dp_free_views(int nopt, eopt_state **views);

/* Bytes of optimizer state this process holds. */
int64_t eopt_dp_state_bytes(int nopt, eopt_optimizer *const *opt);

#endif
