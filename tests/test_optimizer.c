/* The step loop every class shares (optimizers/optimizer.c): a step that fails - a bad
 * gradient or a bad hyperparameter in the last param group - changes nothing, for every class
 * of eopt_optimizer_classes(), at the first step (lazy state) and at a later one. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eopt.h"
#include "tests/testutil.h"

static eopt_backend *be;

static void setup(void) { be = tu_backend(0); }
static void teardown(void) { eopt_backend_close(be); }

TestSuite(optimizer_step, .init = setup, .fini = teardown);

/* Every parameter's bytes and every state tensor's key and bytes, in order. */
typedef struct {
    int n;
    char key[64][32];
    size_t size[64];
    unsigned char *bytes[64];
} snapshot;

static void snap_add(snapshot *s, const char *key, const eopt_tensor *t)
{
    cr_assert_lt(s->n, 64);
    snprintf(s->key[s->n], sizeof s->key[0], "%s", key);
    s->size[s->n] = eopt_tensor_bytes(t);
    s->bytes[s->n] = malloc(s->size[s->n] ? s->size[s->n] : 1);
    cr_assert_eq(eopt_tensor_to_host(t, s->bytes[s->n], s->size[s->n]), EOPT_OK, "%s", eopt_last_error());
    s->n++;
}

static void snap_take(snapshot *s, const eopt_optimizer *opt)
{
    memset(s, 0, sizeof *s);
    for (int i = 0; i < opt->nparams; i++) {
        snap_add(s, opt->params[i].name, opt->params[i].w);
        for (int k = 0; k < opt->state[i].n; k++)
            snap_add(s, opt->state[i].key[k], &opt->state[i].t[k]);
    }
}

static void snap_free(snapshot *s)
{
    for (int k = 0; k < s->n; k++)
        free(s->bytes[k]);
}

static void expect_same(const snapshot *a, const snapshot *b, const char *what)
{
    cr_expect_eq(a->n, b->n, "%s: %d tensors before, %d after", what, a->n, b->n);
    for (int k = 0; k < a->n && k < b->n; k++)
        cr_expect(strcmp(a->key[k], b->key[k]) == 0 && a->size[k] == b->size[k] &&
                      memcmp(a->bytes[k], b->bytes[k], a->size[k]) == 0,
                  "%s: '%s' changed", what, a->key[k]);
}

typedef enum { BAD_SHAPE = 0, BAD_TRANSPOSED, BAD_DTYPE, BAD_HPARAM } bad_kind;
static const char *const bad_names[] = {"gradient of another shape", "transposed gradient", "bfloat16 gradient",
                                        "string lr"};

/* Two groups of one parameter each (6 x 4, 5 x 4); one good step first if `warm`, then a step
 * whose last group is bad: it must fail and leave every parameter and state tensor as it was. */
static void failing_step(const eopt_optimizer_class *cls, bad_kind bad, int warm)
{
    char what[160];
    snprintf(what, sizeof what, "%s, %s, %s step", cls->id, bad_names[bad], warm ? "second" : "first");
    rig r;
    const int sh[2][2] = {{6, 4}, {5, 4}};
    cr_assert_eq(rig_open(&r, be, NULL, NULL, NULL, 2, sh, 11), EOPT_OK);
    eopt_dict hp[2] = {{0}, {0}}, dargs = {0}, dgroup = {0};
    cr_assert_eq(eopt_optimizer_defaults(cls, &dargs, &dgroup), EOPT_OK);
    for (int g = 0; g < 2; g++) { /* lr (SOAP requires it); momentum, weight_decay (AdaptiveMuon) */
        eopt_dict_set(&hp[g], "lr", eopt_float(0.01));
        if (eopt_dict_get(&dgroup, "momentum"))
            eopt_dict_set(&hp[g], "momentum", eopt_float(0.9));
        eopt_dict_set(&hp[g], "weight_decay", eopt_float(0.1));
    }
    const int sizes[2] = {1, 1};
    cr_assert_eq(eopt_optimizer_create(cls->id, be, NULL, 2, hp, sizes, r.p, 2, &r.opt), EOPT_OK, "%s: %s", what,
                 eopt_last_error());
    rig_grads(&r, 3, 1, 1.0f);
    if (warm) {
        rig_step(&r);
        rig_grads(&r, 3, 2, 1.0f);
    }
    eopt_tensor wrong = {0};
    const int64_t s33[2] = {3, 3}, s45[2] = {4, 5}, s54[2] = {5, 4};
    if (bad == BAD_SHAPE)
        cr_assert_eq(eopt_tensor_alloc(&wrong, be, EOPT_F32, 2, s33), EOPT_OK);
    if (bad == BAD_TRANSPOSED)
        cr_assert_eq(eopt_tensor_alloc(&wrong, be, EOPT_F32, 2, s45), EOPT_OK);
    if (bad == BAD_DTYPE)
        cr_assert_eq(eopt_tensor_alloc(&wrong, be, EOPT_BF16, 2, s54), EOPT_OK);
    if (bad == BAD_HPARAM)
        eopt_dict_set(&r.opt->groups[1].hp, "lr", eopt_str("fast"));
    else
        r.opt->params[1].grad = &wrong;
    snapshot before, after;
    snap_take(&before, r.opt);
    cr_expect_neq(eopt_optimizer_step(r.opt), EOPT_OK, "%s: the step succeeded", what);
    snap_take(&after, r.opt);
    expect_same(&before, &after, what);
    snap_free(&before);
    snap_free(&after);
    eopt_tensor_free(&wrong);
    rig_close(&r);
}

Test(optimizer_step, failed_step_changes_nothing)
{
    const eopt_optimizer_class *const *all = eopt_optimizer_classes();
    for (int k = 0; all[k]; k++)
        for (int bad = BAD_SHAPE; bad <= BAD_HPARAM; bad++)
            for (int warm = 0; warm < 2; warm++)
                failing_step(all[k], (bad_kind)bad, warm);
}

/* A backend that refuses allocations once `allocs_left` reaches zero (-1: never). */
static eopt_backend *real_be;
static int allocs_left = -1;

static void *counted_alloc(eopt_backend *b, size_t bytes)
{
    (void)b;
    if (allocs_left == 0)
        return NULL;
    if (allocs_left > 0)
        allocs_left--;
    return real_be->alloc(real_be, bytes);
}

/* torch creates lazy state group by group; eopt creates it for every stepped parameter before
 * any update, and an allocation failing part way removes what this step created: SOAP (six
 * device tensors per parameter, two groups) with every allocation budget that fails within
 * the state leaves no state and the parameters as they were, and steps normally afterwards. */
Test(optimizer_step, failed_state_allocation_changes_nothing)
{
    real_be = be;
    eopt_backend fake = *be;
    fake.alloc = counted_alloc;
    for (int budget = 0; budget < 12; budget++) {
        rig r;
        const int sh[2][2] = {{6, 4}, {5, 4}};
        cr_assert_eq(rig_open(&r, be, NULL, NULL, NULL, 2, sh, 11), EOPT_OK);
        eopt_dict hp[2] = {{0}, {0}};
        eopt_dict_set(&hp[0], "lr", eopt_float(0.01));
        eopt_dict_set(&hp[1], "lr", eopt_float(0.02));
        allocs_left = -1;
        cr_assert_eq(eopt_optimizer_create("SOAP", &fake, NULL, 2, hp, (const int[]){1, 1}, r.p, 2, &r.opt), EOPT_OK,
                     "%s", eopt_last_error());
        rig_grads(&r, 3, 1, 1.0f);
        snapshot before, after;
        snap_take(&before, r.opt);
        allocs_left = budget;
        cr_expect_eq(eopt_optimizer_step(r.opt), EOPT_ERR_NOMEM, "budget %d: %s", budget, eopt_last_error());
        allocs_left = -1;
        snap_take(&after, r.opt);
        expect_same(&before, &after, "SOAP after a failed state allocation");
        cr_expect(r.opt->state[0].n == 0 && r.opt->state[1].n == 0, "budget %d: state left behind", budget);
        rig_step(&r);
        cr_expect(r.opt->state[0].n == 7 && r.opt->state[1].n == 7);
        snap_free(&before);
        snap_free(&after);
        rig_close(&r);
    }
}

/* Four parameters stepped three times by class `cls` on backend b, in one group of four (on a
 * 2-thread backend updated in parallel, one parameter per thread) or in four groups of one (one
 * after the other), same hyperparameters; the snapshot after the last step. */
static void step_four(const eopt_optimizer_class *cls, eopt_backend *b, int one_group, snapshot *out)
{
    rig r;
    const int sh[4][2] = {{192, 256}, {256, 192}, {128, 128}, {64, 300}};
    cr_assert_eq(rig_open(&r, b, NULL, NULL, NULL, 4, sh, 5), EOPT_OK);
    eopt_dict hp[4] = {{0}}, dargs = {0}, dgroup = {0};
    cr_assert_eq(eopt_optimizer_defaults(cls, &dargs, &dgroup), EOPT_OK);
    for (int g = 0; g < 4; g++) {
        eopt_dict_set(&hp[g], "lr", eopt_float(0.01));
        if (eopt_dict_get(&dgroup, "momentum"))
            eopt_dict_set(&hp[g], "momentum", eopt_float(0.9));
        eopt_dict_set(&hp[g], "weight_decay", eopt_float(0.1));
    }
    const int four[1] = {4}, ones[4] = {1, 1, 1, 1};
    cr_assert_eq(eopt_optimizer_create(cls->id, b, NULL, one_group ? 1 : 4, hp, one_group ? four : ones, r.p, 4,
                                       &r.opt),
                 EOPT_OK, "%s: %s", cls->id, eopt_last_error());
    for (int t = 1; t <= 3; t++) {
        rig_grads(&r, 3, t, 1.0f);
        rig_step(&r);
    }
    cr_expect_eq(r.opt->nthread_ws > 0, one_group && b->threads > 1, "%s: the %s step ran %s", cls->id, one_group ? "grouped" : "split",
                 one_group ? "sequentially" : "in parallel");
    snap_take(out, r.opt);
    rig_close(&r);
}

/* The step updates a group's matrices concurrently (one per thread, single-threaded BLAS) when
 * it has at least as many as the backend has threads: every class gives the same bytes as one
 * after the other on a 1-thread backend. (Against 2-thread BLAS the bytes differ in the last
 * bits: OpenBLAS's products depend on its thread count.) */
Test(optimizer_step, parallel_updates_are_bit_identical)
{
    eopt_backend *b2 = tu_backend(2), *b1 = tu_backend(1);
    const eopt_optimizer_class *const *all = eopt_optimizer_classes();
    for (int k = 0; all[k]; k++) {
        snapshot seq, par;
        step_four(all[k], b1, 0, &seq);
        step_four(all[k], b2, 1, &par);
        expect_same(&seq, &par, all[k]->id);
        snap_free(&seq);
        snap_free(&par);
    }
    eopt_backend_close(b2);
    eopt_backend_close(b1);
}

/* A numeric failure in one of the concurrent updates (SOAP's eigensolver refuses a NaN) is the
 * step's one status, naming that parameter; the backend's status stays clear. */
Test(optimizer_step, parallel_failure_names_its_parameter)
{
    eopt_backend *b2 = tu_backend(2);
    rig r;
    const int sh[4][2] = {{24, 16}, {16, 24}, {20, 20}, {8, 30}};
    cr_assert_eq(rig_open(&r, b2, NULL, NULL, NULL, 4, sh, 5), EOPT_OK);
    eopt_dict hp = {0};
    eopt_dict_set(&hp, "lr", eopt_float(0.01));
    cr_assert_eq(eopt_optimizer_create("SOAP", b2, NULL, 1, &hp, (const int[]){4}, r.p, 4, &r.opt), EOPT_OK, "%s",
                 eopt_last_error());
    rig_grads(&r, 3, 1, 1.0f);
    eopt_f32(&r.g[2])[7] = NAN;
    cr_expect_eq(eopt_optimizer_step(r.opt), EOPT_ERR_NUMERIC);
    cr_expect(strstr(eopt_last_error(), "parameter 'p2'") != NULL, "%s", eopt_last_error());
    cr_expect(r.opt->nthread_ws > 0, "the step ran sequentially");
    cr_expect_eq(eopt_backend_check(b2, "test"), EOPT_OK);
    rig_close(&r);
    eopt_backend_close(b2);
}
