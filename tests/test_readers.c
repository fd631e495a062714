/* The readers of checkpoint/ that replay, verify-model and inspect --check go through: a
 * trajectory by record and parameter name, a model reference by path, and the layout check's
 * report. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "checkpoint/reference.h"
#include "checkpoint/restore.h"
#include "checkpoint/trajectory.h"
#include "tests/testutil.h"

Test(readers, trajectory_records)
{
    char path[1024];
    tu_fixture(path, sizeof path, "optimizers/gpt_muon_adamw/trajectory.h5");
    eopt_trajectory *tr;
    cr_assert_eq(eopt_trajectory_open(path, &tr), EOPT_OK, "%s", eopt_last_error());
    cr_expect_eq(eopt_trajectory_steps(tr), 12);
    cr_expect_gt(eopt_trajectory_tolerance(tr), 0);
    cr_expect_str_eq(eopt_trajectory_case(tr), "gpt_muon_adamw");
    tu_fixture(path, sizeof path, "optimizers/gpt_muon_adamw/step_0.h5");
    eopt_ckpt *ck;
    cr_assert_eq(eopt_checkpoint_open(path, NULL, &ck), EOPT_OK, "%s", eopt_last_error());
    const char *name = eopt_ckpt_tensor_name(ck, 0);
    const eopt_tensor *like = eopt_ckpt_tensor(ck, name);
    int has = 0;
    cr_assert_eq(eopt_trajectory_has(tr, EOPT_TRAJ_GRADS, 1, name, &has), EOPT_OK, "%s", eopt_last_error());
    cr_expect(has);
    cr_assert_eq(eopt_trajectory_has(tr, EOPT_TRAJ_PARAMS, 1, "no.such.param", &has), EOPT_OK);
    cr_expect(!has);
    eopt_tensor t;
    cr_assert_eq(eopt_trajectory_read(tr, EOPT_TRAJ_INIT, 0, name, like, &t), EOPT_OK, "%s", eopt_last_error());
    cr_expect(t.dtype == EOPT_F32 && eopt_tensor_same_shape(&t, like));
    cr_expect(memcmp(t.data, like->data, eopt_tensor_bytes(like)) == 0, "/init is the step-0 model");
    eopt_tensor_free(&t);
    /* a step the run never recorded is an error, not a step without gradients */
    cr_expect_eq(eopt_trajectory_has(tr, EOPT_TRAJ_GRADS, 13, name, &has), EOPT_ERR_FORMAT);
    cr_expect(strstr(eopt_last_error(), "/grads/13: group is missing"), "%s", eopt_last_error());
    cr_expect_eq(eopt_trajectory_read(tr, EOPT_TRAJ_PARAMS, 1, "no.such.param", like, &t), EOPT_ERR_FORMAT);
    cr_expect(strstr(eopt_last_error(), "/params/1/no.such.param: dataset is missing"), "%s", eopt_last_error());
    int64_t wrong_shape[1] = {like->numel + 1};
    eopt_tensor other = eopt_tensor_view(NULL, NULL, EOPT_F32, 1, wrong_shape);
    cr_expect_eq(eopt_trajectory_read(tr, EOPT_TRAJ_GRADS, 1, name, &other, &t), EOPT_ERR_SHAPE);
    cr_expect(t.data == NULL, "nothing is left allocated on error");
    eopt_checkpoint_close(ck);
    eopt_trajectory_close(tr);
    cr_expect_eq(eopt_trajectory_open("/nonexistent/trajectory.h5", &tr), EOPT_ERR_IO);
    cr_expect(tr == NULL);
    tu_fixture(path, sizeof path, "optimizers/gpt_muon_adamw/step_0.h5");
    cr_expect_eq(eopt_trajectory_open(path, &tr), EOPT_ERR_FORMAT, "a checkpoint is no trajectory");
    cr_expect(strstr(eopt_last_error(), "attribute 'tolerance' is missing"), "%s", eopt_last_error());
}

Test(readers, model_reference)
{
    char path[1024], kind[16];
    tu_fixture(path, sizeof path, "models/mlp_tiny.h5");
    eopt_reference *ref;
    cr_assert_eq(eopt_reference_open(path, &ref), EOPT_OK, "%s", eopt_last_error());
    cr_assert_eq(eopt_reference_str(ref, "model", kind, sizeof kind), EOPT_OK, "%s", eopt_last_error());
    cr_expect_str_eq(kind, "mlp");
    int64_t dims[8], b;
    int n = 0;
    cr_assert_eq(eopt_reference_ints(ref, "dims", dims, 8, &n), EOPT_OK, "%s", eopt_last_error());
    cr_expect_eq(n, 4);
    cr_expect_eq(eopt_reference_ints(ref, "dims", dims, 3, &n), EOPT_ERR_FORMAT, "more values than room");
    cr_assert_eq(eopt_reference_ints(ref, "batch_size", &b, 1, NULL), EOPT_OK, "%s", eopt_last_error());
    cr_expect_eq(eopt_reference_ints(ref, "model", &b, 1, NULL), EOPT_ERR_FORMAT, "a string is no integer");
    cr_expect_eq(eopt_reference_ints(ref, "n_layer", &b, 1, NULL), EOPT_ERR_FORMAT);
    cr_expect(strstr(eopt_last_error(), "root attribute 'n_layer' is missing"), "%s", eopt_last_error());
    eopt_tensor labels, x;
    cr_assert_eq(eopt_reference_tensor(ref, "/inputs/labels", EOPT_I32, &labels), EOPT_OK, "%s", eopt_last_error());
    cr_expect(labels.dtype == EOPT_I32 && labels.ndim == 1 && labels.shape[0] == b);
    cr_assert_eq(eopt_reference_tensor(ref, "/inputs/x", EOPT_F32, &x), EOPT_OK, "%s", eopt_last_error());
    cr_expect(x.ndim == 2 && x.shape[0] == b && x.shape[1] == dims[0]);
    eopt_tensor_free(&labels);
    eopt_tensor_free(&x);
    cr_expect_eq(eopt_reference_tensor(ref, "/expected/grads/none", EOPT_F32, &x), EOPT_ERR_FORMAT);
    cr_expect(strstr(eopt_last_error(), "dataset '/expected/grads/none' is missing"), "%s", eopt_last_error());
    eopt_reference_close(ref);
    cr_expect_eq(eopt_reference_open("/nonexistent/ref.h5", &ref), EOPT_ERR_IO);
}

typedef struct {
    int calls;
    char first[512];
} collected;

static void collect(void *user, const char *msg)
{
    collected *c = user;
    if (c->calls++ == 0)
        snprintf(c->first, sizeof c->first, "%s", msg);
}

Test(readers, layout_check_reports_every_problem)
{
    char path[1024], bad[256];
    tu_fixture(path, sizeof path, "optimizers/gpt_muon_adamw/step_5.h5");
    eopt_ckpt_options allow = {.allow_nonfinite = 1};
    eopt_ckpt *ck;
    cr_assert_eq(eopt_checkpoint_open(path, &allow, &ck), EOPT_OK, "%s", eopt_last_error());
    collected c = {0};
    eopt_ckpt_report report = {.problem = collect, .user = &c, .count = 7};
    cr_expect_eq(eopt_ckpt_check_layout(ck, &report), 0, "%s", c.first);
    cr_expect_eq(report.count, 0);
    cr_expect_eq(c.calls, 0);
    /* two non-finite model tensors: two problems, each naming its tensor */
    eopt_backend *be = tu_backend(1);
    eopt_restored r;
    cr_assert_eq(eopt_restore(ck, be, &r), EOPT_OK, "%s", eopt_last_error());
    for (int i = 0; i < 2; i++) {
        float *v = tu_host(r.params[i].w);
        v[0] = NAN;
        cr_assert_eq(eopt_tensor_from_host(r.params[i].w, v, eopt_tensor_bytes(r.params[i].w)), EOPT_OK, "%s",
                     eopt_last_error());
        free(v);
    }
    snprintf(bad, sizeof bad, "/tmp/eopt_test_readers_%d.h5", (int)getpid());
    cr_assert_eq(eopt_restored_save(&r, ck, 5, "test", 0, bad), EOPT_OK, "%s", eopt_last_error());
    eopt_restored_free(&r);
    eopt_backend_close(be);
    eopt_checkpoint_close(ck);
    cr_assert_eq(eopt_checkpoint_open(bad, &allow, &ck), EOPT_OK, "%s", eopt_last_error());
    c = (collected){0};
    cr_expect_eq(eopt_ckpt_check_layout(ck, &report), 2, "%s", c.first);
    cr_expect_eq(c.calls, 2);
    cr_expect(strstr(c.first, "non-finite") && strstr(c.first, bad), "%s", c.first);
    report.problem = NULL; /* counting only */
    cr_expect_eq(eopt_ckpt_check_layout(ck, &report), 2);
    eopt_checkpoint_close(ck);
    remove(bad);
}
