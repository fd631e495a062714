/* The data-parallel plan (train/parallel.c) without a second process: owners balanced by the
 * estimated cost of each update, every batch row given to exactly one rank, the slices' pointers,
 * the classes' cost models, and the one-process world (framework/comm_single.c, or the MPI build
 * run without a launcher) in which every exchange is the identity. Runs with several processes
 * are tests/mpi/test.sh (make test-mpi). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eopt.h"
#include "framework/comm.h"
#include "tests/testutil.h"
#include "train/parallel.h"

/* GPT-2 small's 48 block matrices (12 x 2304x768, 768x768, 3072x768, 768x3072) under Muon's cost
 * model, and its 98 vectors and 2 embeddings under AdamW's. */
static int gpt2_costs(double *cost)
{
    static const int shapes[4][2] = {{2304, 768}, {768, 768}, {3072, 768}, {768, 3072}};
    int n = 0;
    for (int l = 0; l < 12; l++)
        for (int k = 0; k < 4; k++) {
            double m = shapes[k][0], c = shapes[k][1];
            cost[n++] = 30 * m * c * fmin(m, c);
        }
    for (int k = 0; k < 98; k++)
        cost[n++] = 10 * (k % 2 ? 768 : 3072);
    cost[n++] = 10 * 50257.0 * 768, cost[n++] = 10 * 1024.0 * 768;
    return n;
}

Test(parallel, balance_is_near_even_and_deterministic)
{
    double cost[160], load[8], load2[8];
    int owner[160], owner2[160], n = gpt2_costs(cost);
    for (int size = 1; size <= 8; size++) {
        double total = 0, biggest = 0, sum[8] = {0};
        cr_assert_eq(eopt_dp_balance(size, cost, n, owner, load), EOPT_OK);
        cr_assert_eq(eopt_dp_balance(size, cost, n, owner2, load2), EOPT_OK);
        for (int i = 0; i < n; i++) {
            cr_assert(owner[i] >= 0 && owner[i] < size, "item %d owned by %d of %d", i, owner[i], size);
            cr_assert_eq(owner[i], owner2[i], "the plan is not deterministic");
            sum[owner[i]] += cost[i];
            total += cost[i];
            biggest = fmax(biggest, cost[i]);
        }
        double worst = 0;
        for (int r = 0; r < size; r++) {
            cr_assert_float_eq(sum[r], load[r], 1e-6 * total, "rank %d: load %g, owned cost %g", r, load[r], sum[r]);
            worst = fmax(worst, load[r]);
        }
        /* Graham: LPT is within 4/3 of the optimum, which is at least max(total / size, biggest) */
        double bound = 4.0 / 3.0 * fmax(total / size, biggest);
        cr_assert_leq(worst, bound, "%d ranks: the busiest has %g, bound %g", size, worst, bound);
        if (size == 2) /* this model splits almost exactly in two */
            cr_assert_lt(fabs(load[0] - load[1]) / total, 0.01, "2 ranks: %g vs %g", load[0], load[1]);
    }
}

/* Rank r of `size` as parallel.c sees it: only rank and size are read by eopt_dp_rows. */
static eopt_dp rank_of(int r, int size) { return (eopt_dp){.rank = r, .size = size}; }

Test(parallel, every_row_goes_to_one_rank)
{
    for (int size = 1; size <= 5; size++)
        for (int B = size; B <= 13; B++) {
            int next = 0, least = B, most = 0;
            for (int r = 0; r < size; r++) {
                eopt_dp dp = rank_of(r, size);
                int row0, rows = eopt_dp_rows(&dp, B, &row0);
                cr_assert_eq(row0, next, "B %d, %d ranks: rank %d starts at %d, want %d", B, size, r, row0, next);
                next += rows;
                least = rows < least ? rows : least;
                most = rows > most ? rows : most;
            }
            cr_assert_eq(next, B, "B %d over %d ranks covers %d rows", B, size, next);
            cr_assert_leq(most - least, 1, "B %d over %d ranks: %d to %d rows", B, size, least, most);
        }
    eopt_dp dp = rank_of(2, 3); /* fewer rows than ranks (a last MLP test batch): some get none */
    int row0;
    cr_assert_eq(eopt_dp_rows(&dp, 2, &row0), 1);
    dp = rank_of(0, 3);
    cr_assert_eq(eopt_dp_rows(&dp, 2, &row0), 0);
}

Test(parallel, slices_point_at_their_rows)
{
    int32_t tok[6 * 4], tgt[6 * 4], labels[6];
    float x[6 * 3];
    eopt_batch text = {.B = 6, .T = 4, .tokens = tok, .targets = tgt};
    eopt_batch s = eopt_dp_slice(&text, 2, 3, 0);
    cr_assert(s.B == 3 && s.T == 4 && s.tokens == tok + 8 && s.targets == tgt + 8 && !s.x && !s.labels);
    eopt_batch images = {.B = 6, .x = x, .labels = labels};
    s = eopt_dp_slice(&images, 4, 2, 3);
    cr_assert(s.B == 2 && s.x == x + 12 && s.labels == labels + 4 && !s.tokens);
}

/* Each class's cost grows with the shape as its update does: orthogonalisation as m n min(m, n),
 * eigenbases as m^3 + n^3 (plus the rotations), element-wise and every 1-D parameter as m n. */
Test(parallel, update_costs_follow_the_classes)
{
    eopt_backend *be = tu_backend(1);
    static const int shape[2][2] = {{48, 16}, {16, 0}};
    static const char *const classes[] = {"Muon", "AdaptiveMuon", "SOAP", "MOSO", "AdamW"};
    for (size_t c = 0; c < sizeof classes / sizeof classes[0]; c++) {
        rig r;
        eopt_dict hp = {0};
        cr_assert_eq(eopt_dict_set(&hp, "lr", eopt_float(0.01)), EOPT_OK);
        if (c < 2) /* the Muon classes have no default momentum and weight decay */
            eopt_dict_set(&hp, "momentum", eopt_float(0.9)), eopt_dict_set(&hp, "weight_decay", eopt_float(0));
        cr_assert_eq(rig_open(&r, be, classes[c], NULL, &hp, 2, shape, 1), EOPT_OK, "%s: %s", classes[c],
                     eopt_last_error());
        double m = 48, n = 16, want = 10 * m * n;
        if (c < 2)
            want = 30 * m * n * n;
        else if (c < 4)
            want = 4 * m * n * (m + n) + m * m * m + n * n * n;
        cr_assert_float_eq(eopt_optimizer_update_cost(r.opt, 0), want, 1e-9 * want, "%s", classes[c]);
        cr_assert_float_eq(eopt_optimizer_update_cost(r.opt, 1), 160.0, 1e-9, "%s: a vector", classes[c]);
        rig_close(&r);
    }
    eopt_backend_close(be);
}

/* Alone (no launcher), the world has one rank, and its exchanges change nothing. */
Test(parallel, one_process_world)
{
    eopt_comm *c;
    cr_assert_eq(eopt_comm_world(&c), EOPT_OK);
    cr_assert_eq(eopt_comm_size(c), 1);
    cr_assert_eq(eopt_comm_rank(c), 0);
    double x[2] = {1.5, -2};
    cr_assert_eq(eopt_comm_allreduce(c, x, 2, EOPT_COMM_SUM), EOPT_OK);
    cr_assert(x[0] == 1.5 && x[1] == -2);
    cr_assert_eq(eopt_comm_agree(c, EOPT_OK), EOPT_OK);
    eopt_fail(EOPT_ERR_IO, "disk full");
    cr_assert_eq(eopt_comm_agree(c, EOPT_ERR_IO), EOPT_ERR_IO);
    cr_assert_str_eq(eopt_last_error(), "disk full");
    eopt_backend *be = tu_backend(1);
    float h[3] = {1, 2, 3}, back[3];
    int64_t sh = 3;
    eopt_tensor t;
    cr_assert_eq(eopt_tensor_alloc(&t, be, EOPT_F32, 1, &sh), EOPT_OK);
    tu_upload(&t, h);
    eopt_tensor *ts[1] = {&t};
    int owner[1] = {0};
    cr_assert_eq(eopt_comm_reduce_to_owners(c, be, 1, ts, owner), EOPT_OK);
    cr_assert_eq(eopt_comm_bcast_from_owners(c, be, 1, ts, owner), EOPT_OK);
    tu_download(&t, back);
    cr_assert(back[0] == 1 && back[1] == 2 && back[2] == 3);
    eopt_tensor_free(&t);
    eopt_backend_close(be);
}

/* A verdict that refuses the first time it is asked (as another rank's failure would). */
static eopt_status refuse_once(void *user, eopt_status st)
{
    int *n = user;
    if ((*n)++ == 0 && st == EOPT_OK)
        return eopt_fail(EOPT_ERR_IO, "rank 1 of 2: damaged checkpoint");
    return st;
}

/* A resume on one rank of several (eopt_checkpoint_apply_shard): the parameters the rank owns get
 * their state from the file, the others none; and the others' state is checked all the same: a
 * NaN in a state tensor this rank will not keep still refuses the whole file, changing nothing;
 * and the ranks' verdict, asked once everything is checked, can still stop it unchanged. */
Test(parallel, resume_keeps_only_the_owned_state)
{
    eopt_backend *be = tu_backend(1);
    static const int shape[3][2] = {{12, 8}, {8, 8}, {8, 0}};
    eopt_dict hp = {0};
    eopt_dict_set(&hp, "lr", eopt_float(0.01));
    rig r;
    cr_assert_eq(rig_open(&r, be, "AdamW", NULL, &hp, 3, shape, 7), EOPT_OK, "%s", eopt_last_error());
    rig_grads(&r, 11, 0, 1.0f);
    rig_step(&r);
    char dir[64], good[96], bad[96];
    tu_tmpdir(dir, sizeof dir, "parallel", "shard");
    snprintf(good, sizeof good, "%s/good.h5", dir);
    snprintf(bad, sizeof bad, "%s/bad.h5", dir);
    eopt_ckpt_optimizer o = {.name = "adamw", .opt = r.opt};
    eopt_ckpt_write w = {.step = 1, .producer = "test", .nparams = 3, .params = r.p, .nopt = 1, .opts = &o};
    cr_assert_eq(eopt_checkpoint_save(good, &w), EOPT_OK, "%s", eopt_last_error());
    float *avg2 = rig_state(&r, 2, "exp_avg"), nan = NAN;
    eopt_tensor *t = eopt_state_get(r.opt, 2, "exp_avg");
    cr_assert_eq(eopt_tensor_from_host(t, (float[8]){nan, 0, 0, 0, 0, 0, 0, 0}, 8 * sizeof(float)), EOPT_OK);
    cr_assert_eq(eopt_checkpoint_save(bad, &w), EOPT_OK, "%s", eopt_last_error());
    cr_assert_eq(eopt_tensor_from_host(t, avg2, 8 * sizeof(float)), EOPT_OK);

    /* a fresh optimizer over the same parameters resumes with parameters 0 and 2 its own */
    rig fresh;
    cr_assert_eq(rig_open(&fresh, be, "AdamW", NULL, &hp, 3, shape, 7), EOPT_OK, "%s", eopt_last_error());
    const char *names[1] = {"adamw"};
    const unsigned char mine[3] = {1, 0, 1}, *keep[1] = {mine};
    eopt_ckpt *ck;
    const eopt_ckpt_options deferred = {.defer_tensors = 1};
    cr_assert_eq(eopt_checkpoint_open(bad, &deferred, &ck), EOPT_OK, "%s", eopt_last_error());
    const unsigned char others[3] = {1, 1, 0}, *keep_others[1] = {others}; /* the NaN is another rank's */
    cr_assert_eq(eopt_checkpoint_apply_shard(ck, fresh.p, 3, 1, names, &fresh.opt, keep_others, NULL, NULL), EOPT_ERR_NUMERIC,
                 "%s", eopt_last_error());
    cr_assert_eq(fresh.opt->state[0].n + fresh.opt->state[1].n + fresh.opt->state[2].n, 0, "a refused load kept state");
    eopt_checkpoint_close(ck);
    /* another rank's refusal (the verdict) after this rank read and checked everything: nothing
     * changes here either; the next verdict lets it through */
    int refusals = 0;
    float *w0 = tu_host(&fresh.w[0]);
    cr_assert_eq(eopt_checkpoint_open(good, &deferred, &ck), EOPT_OK, "%s", eopt_last_error());
    cr_assert_eq(eopt_checkpoint_apply_shard(ck, fresh.p, 3, 1, names, &fresh.opt, keep, refuse_once, &refusals),
                 EOPT_ERR_IO);
    cr_assert_eq(refusals, 1);
    cr_assert_str_eq(eopt_last_error(), "rank 1 of 2: damaged checkpoint");
    cr_assert_eq(fresh.opt->state[0].n + fresh.opt->state[2].n, 0, "state applied against the verdict");
    float *w0b = tu_host(&fresh.w[0]);
    cr_assert(memcmp(w0, w0b, sizeof(float) * 96) == 0, "weights changed against the verdict");
    cr_assert_eq(eopt_checkpoint_apply_shard(ck, fresh.p, 3, 1, names, &fresh.opt, keep, refuse_once, &refusals),
                 EOPT_OK, "%s", eopt_last_error());
    cr_assert_eq(refusals, 2);
    eopt_checkpoint_close(ck);
    free(w0), free(w0b);
    cr_assert_eq(fresh.opt->state[1].n, 0, "parameter 1 is another rank's: no state kept");
    for (int i = 0; i < 3; i += 2) {
        cr_assert_eq(fresh.opt->state[i].n, r.opt->state[i].n);
        for (int e = 0; e < r.opt->state[i].n; e++) { /* AdamW's state, its step too, is float32 */
            const eopt_tensor *b = &r.opt->state[i].t[e];
            float *x = tu_host(&fresh.opt->state[i].t[e]), *y = tu_host(b);
            cr_assert(memcmp(x, y, sizeof(float) * (size_t)b->numel) == 0, "parameter %d, %s differs from the file", i,
                      fresh.opt->state[i].key[e]);
            free(x), free(y);
        }
    }
    free(avg2);
    tu_rmdir_all(dir);
    rig_close(&fresh);
    rig_close(&r);
    eopt_backend_close(be);
}
