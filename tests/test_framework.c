/* The framework's own pieces: workspaces, value dictionaries, tensors, backend selection. */
#include <criterion/criterion.h>
#include <math.h>
#include <string.h>

#include "eopt.h"

Test(framework, workspace_grows_to_the_high_water_mark)
{
    eopt_backend *be;
    cr_assert_eq(eopt_backend_open("cpu", 1, &be), EOPT_OK);
    eopt_workspace ws;
    eopt_ws_init(&ws, be);
    for (int round = 0; round < 3; round++) {
        cr_assert_eq(eopt_ws_reset(&ws), EOPT_OK);
        float *prev = NULL;
        for (int k = 0; k < 300; k++) { /* more blocks than any fixed table would hold */
            float *p = eopt_ws_floats(&ws, 100 + k);
            cr_assert_not_null(p, "round %d block %d", round, k);
            cr_assert_neq(p, prev);
            p[99 + k] = 1.0f; /* the whole block is usable (ASan checks) */
            prev = p;
        }
        if (round > 0)
            cr_assert_eq(ws.nextra, 0, "after the first round every block comes from one arena");
    }
    eopt_ws_free(&ws);
    eopt_backend_close(be);
}

/* Host memory comes zeroed on both paths (calloc below EOPT_HOST_HUGE, a huge-page mapping from
 * it), every byte writable, and goes back through eopt_host_free. */
Test(framework, host_memory_zeroed_on_both_paths)
{
    const size_t sizes[] = {1, 100, EOPT_HOST_HUGE - 1, EOPT_HOST_HUGE, EOPT_HOST_HUGE + 4097};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        unsigned char *p = eopt_host_alloc(sizes[k]);
        cr_assert(p, "eopt_host_alloc(%zu)", sizes[k]);
        size_t nonzero = 0;
        for (size_t b = 0; b < sizes[k]; b++)
            nonzero += p[b] != 0;
        cr_expect_eq(nonzero, 0, "%zu of %zu bytes not zero", nonzero, sizes[k]);
        cr_expect_eq((uintptr_t)p % 16, 0, "alignment of %zu bytes", sizes[k]);
        memset(p, 0xab, sizes[k]);
        eopt_host_free(p);
    }
    eopt_host_free(NULL);
    cr_expect_null(eopt_host_alloc(SIZE_MAX - 16), "an impossible size gives NULL");
}

Test(framework, dict_keeps_torch_order_and_converts_like_python)
{
    eopt_dict d = {0}, defaults = {0};
    cr_assert_eq(eopt_dict_set(&d, "momentum", eopt_float(0.9)), EOPT_OK);
    eopt_dict_set(&defaults, "lr", eopt_float(3e-4));
    eopt_dict_set(&defaults, "momentum", eopt_float(0.95));
    eopt_dict_set(&defaults, "nesterov", eopt_bool(0));
    cr_assert_eq(eopt_dict_merge_defaults(&d, &defaults), EOPT_OK);
    cr_assert_eq(d.n, 3);
    cr_assert_str_eq(d.items[0].key, "momentum"); /* user keys first, then missing defaults */
    cr_assert_str_eq(d.items[1].key, "lr");
    cr_assert_eq(eopt_dict_get(&d, "momentum")->f, 0.9);
    double x;
    int64_t i;
    const char *s;
    cr_assert_eq(eopt_dict_float(&d, "g", "nesterov", &x), EOPT_OK); /* a bool is a number */
    cr_assert_eq(eopt_dict_int(&d, "g", "lr", &i), EOPT_ERR_ARG);
    cr_assert_eq(eopt_dict_str(&d, "Muon param group 0", "lr", &s), EOPT_ERR_ARG);
    cr_assert_str_eq(eopt_last_error(), "Muon param group 0: 'lr' must be a string, got 0.0003");
    cr_assert_eq(eopt_dict_float(&d, "g", "absent", &x), EOPT_ERR_ARG);
    cr_assert(strstr(eopt_last_error(), "missing key 'absent'"));
    eopt_dict_remove(&d, "lr");
    cr_assert_null(eopt_dict_get(&d, "lr"));
    cr_assert_str_eq(d.items[1].key, "nesterov");
}

Test(framework, python_reprs)
{
    char buf[64];
    const double xs[] = {0.01, 1e-08, 1.0, 2.5, -INFINITY, 1e16, 0.1 + 0.2};
    const char *want[] = {"0.01", "1e-08", "1.0", "2.5", "-inf", "1e+16", "0.30000000000000004"};
    for (int k = 0; k < 7; k++)
        cr_expect_str_eq(eopt_float_repr(xs[k], buf, sizeof buf), want[k]);
    double b[2] = {0.9, 0.95};
    eopt_value v = eopt_floats(2, b);
    cr_expect_str_eq(eopt_value_repr(&v, buf, sizeof buf), "(0.9, 0.95)");
    v = eopt_bool(1);
    cr_expect_str_eq(eopt_value_repr(&v, buf, sizeof buf), "True");
}

Test(framework, tensors_and_devices)
{
    eopt_backend *be;
    cr_assert_eq(eopt_backend_open("cpu", 1, &be), EOPT_OK);
    eopt_tensor t, h;
    int64_t shape[2] = {3, 5};
    cr_assert_eq(eopt_tensor_alloc(&t, be, EOPT_F32, 2, shape), EOPT_OK);
    cr_assert_eq(eopt_tensor_alloc(&h, NULL, EOPT_F32, 2, shape), EOPT_OK);
    cr_assert_eq(eopt_tensor_rows(&t), 3);
    cr_assert_eq(eopt_tensor_cols(&t), 5);
    for (int k = 0; k < 15; k++)
        eopt_f32(&h)[k] = (float)k;
    cr_assert_eq(eopt_tensor_copy(&t, &h), EOPT_OK);
    float back[15];
    cr_assert_eq(eopt_tensor_to_host(&t, back, sizeof back), EOPT_OK);
    cr_assert_eq(back[14], 14.0f);
    cr_assert_eq(eopt_tensor_to_host(&t, back, 8), EOPT_ERR_SHAPE);
    eopt_tensor_free(&t);
    eopt_tensor_free(&h);
    eopt_backend_close(be);
    eopt_backend *none;
    cr_assert_eq(eopt_backend_open("tpu", 1, &none), EOPT_ERR_DEVICE);
    cr_assert(strstr(eopt_last_error(), "'tpu'"));
#ifndef EOPT_CUDA
    cr_assert_eq(eopt_backend_open("cuda", 1, &none), EOPT_ERR_DEVICE, "no silent fallback to the CPU");
#endif
}

/* A shape whose element or byte count does not fit in 64 bits is refused, not wrapped: 2^61 x 16
 * float32 is 2^65 elements' worth of bytes, and wraps to 0 elements. */
Test(framework, tensor_sizes_that_overflow_are_refused)
{
    eopt_tensor t;
    int64_t wraps[2] = {(int64_t)1 << 61, 16};
    cr_expect_eq(eopt_tensor_alloc(&t, NULL, EOPT_F32, 2, wraps), EOPT_ERR_SHAPE);
    cr_expect(strstr(eopt_last_error(), "[2305843009213693952, 16]"), "%s", eopt_last_error());
    int64_t bytes_wrap[1] = {(int64_t)1 << 62}; /* fits as elements, not as float32 bytes */
    cr_expect_eq(eopt_tensor_alloc(&t, NULL, EOPT_F32, 1, bytes_wrap), EOPT_ERR_SHAPE);
    int64_t negative[2] = {4, -1};
    cr_expect_eq(eopt_tensor_alloc(&t, NULL, EOPT_F32, 2, negative), EOPT_ERR_SHAPE);
    int64_t empty[2] = {0, (int64_t)1 << 62};
    cr_assert_eq(eopt_tensor_alloc(&t, NULL, EOPT_F32, 2, empty), EOPT_OK, "zero elements is a valid size");
    cr_expect_eq(t.numel, 0);
    eopt_tensor_free(&t);
}

/* ---- parameters and groups (framework/params.h) ---- */

static eopt_tensor shaped[4] = {{.ndim = 2}, {.ndim = 1}, {.ndim = 2}, {.ndim = 1}};
static const eopt_param named[4] = {
    {"h.0.weight", &shaped[0], NULL}, {"h.0.bias", &shaped[1], NULL}, {"wte.weight", &shaped[2], NULL},
    {"ln_f.weight", &shaped[3], NULL}};

Test(params_assign, globs_exclusions_and_dimensions)
{
    eopt_param_select matrices = {.where = "matrices", .npatterns = 1, .patterns = {"*.weight"},
                                  .nexclude = 1, .exclude = {"wte.*"}, .ndim_mask = 1u << 2};
    eopt_param_select rest = {.where = "rest", .npatterns = 3, .patterns = {"*.bias", "ln_*", "wte.*"}};
    const eopt_param_select *sel[] = {&matrices, &rest};
    int owner[4];
    cr_assert_eq(eopt_params_assign(sel, 2, named, 4, "t", owner), EOPT_OK, "%s", eopt_last_error());
    cr_expect(owner[0] == 0 && owner[1] == 1 && owner[2] == 1 && owner[3] == 1);
    eopt_param_select any = {.where = "any"}; /* no patterns: every name */
    const eopt_param_select *all[] = {&any};
    cr_assert_eq(eopt_params_assign(all, 1, named, 4, "t", owner), EOPT_OK, "%s", eopt_last_error());
}

Test(params_assign, every_parameter_in_exactly_one_group)
{
    int owner[4];
    eopt_param_select weights = {.where = "t.cfg:8: weights", .npatterns = 1, .patterns = {"*.weight"}};
    const eopt_param_select *one[] = {&weights};
    cr_expect_eq(eopt_params_assign(one, 1, named, 4, "t.cfg", owner), EOPT_ERR_CONFIG);
    cr_expect(strstr(eopt_last_error(), "t.cfg: parameters in no group: h.0.bias"), "%s", eopt_last_error());

    eopt_param_select all = {.where = "t.cfg:9: all"};
    const eopt_param_select *two[] = {&weights, &all};
    cr_expect_eq(eopt_params_assign(two, 2, named, 4, "t.cfg", owner), EOPT_ERR_CONFIG);
    cr_expect(strstr(eopt_last_error(), "wte.weight (claimed by t.cfg:8: weights and t.cfg:9: all)"), "%s",
              eopt_last_error());

    eopt_param_select typo = {.where = "t.cfg:10: typo", .npatterns = 2, .patterns = {"*", "h.*.wieght"}};
    const eopt_param_select *bad[] = {&typo};
    cr_expect_eq(eopt_params_assign(bad, 1, named, 4, "t.cfg", owner), EOPT_ERR_CONFIG);
    cr_expect(strstr(eopt_last_error(), "t.cfg:10: typo: pattern 'h.*.wieght' matches no parameter"), "%s",
              eopt_last_error());

    eopt_param_select cubes = {.where = "t.cfg:11: cubes", .ndim_mask = 1u << 3};
    const eopt_param_select *empty[] = {&all, &cubes};
    cr_expect_eq(eopt_params_assign(empty, 2, named, 4, "t.cfg", owner), EOPT_ERR_CONFIG);
    cr_expect(strstr(eopt_last_error(), "t.cfg:11: cubes: this group owns no parameter"), "%s", eopt_last_error());
}

/* ---- scheduled hyperparameters (eopt_optimizer_set_hparam) ---- */

static eopt_optimizer *one_param_optimizer(const char *cls, eopt_backend *be, eopt_tensor *w)
{
    int64_t shape[2] = {4, 3};
    cr_assert_eq(eopt_tensor_alloc(w, be, EOPT_F32, 2, shape), EOPT_OK);
    eopt_param p = {"w", w, NULL};
    eopt_dict hp[2] = {{0}, {0}};
    int size[2] = {1, 0};
    eopt_dict_set(&hp[0], "lr", eopt_float(0.01));
    eopt_dict_set(&hp[1], "lr", eopt_float(0.02));
    eopt_optimizer *opt;
    cr_assert_eq(eopt_optimizer_create(cls, be, NULL, 2, hp, size, &p, 1, &opt), EOPT_OK, "%s", eopt_last_error());
    return opt;
}

Test(optimizer_hparam, only_declared_keys)
{
    eopt_backend *be;
    eopt_tensor w;
    cr_assert_eq(eopt_backend_open("cpu", 1, &be), EOPT_OK);
    eopt_optimizer *opt = one_param_optimizer("AdamW", be, &w);
    cr_expect_eq(eopt_optimizer_set_hparam(opt, 1, "lr", 0.5), EOPT_OK);
    cr_expect_eq(eopt_dict_get(&opt->groups[1].hp, "lr")->f, 0.5);
    cr_expect_eq(eopt_dict_get(&opt->groups[0].hp, "lr")->f, 0.01);
    cr_expect_eq(eopt_optimizer_set_hparam(opt, -1, "weight_decay", 0.25), EOPT_OK);
    cr_expect(eopt_dict_get(&opt->groups[0].hp, "weight_decay")->f == 0.25 &&
              eopt_dict_get(&opt->groups[1].hp, "weight_decay")->f == 0.25);
    cr_expect_eq(eopt_optimizer_set_hparam(opt, 0, "amsgrad", 1), EOPT_ERR_ARG);
    cr_expect(strstr(eopt_last_error(), "AdamW: hyperparameter 'amsgrad' cannot be scheduled (schedulable: lr, eps, "
                                        "weight_decay)"),
              "%s", eopt_last_error());
    cr_expect_eq(eopt_optimizer_set_hparam(opt, 2, "lr", 0.1), EOPT_ERR_ARG);
    eopt_optimizer_free(opt);
    eopt_tensor_free(&w);

    /* dion's softening is a constructor argument: one value whatever the group */
    opt = one_param_optimizer("dion.Muon", be, &w);
    cr_expect_eq(eopt_optimizer_set_hparam(opt, 0, "softening", 0.3), EOPT_OK, "%s", eopt_last_error());
    cr_expect_eq(eopt_dict_get(&opt->args, "softening")->f, 0.3);
    cr_expect_null(eopt_dict_get(&opt->groups[0].hp, "softening"));
    cr_expect_eq(eopt_optimizer_set_hparam(opt, 0, "nesterov", 1), EOPT_ERR_ARG);
    for (const eopt_optimizer_class *const *c = eopt_optimizer_classes(); *c; c++) {
        eopt_dict args = {0}, group = {0};
        cr_assert_eq(eopt_optimizer_defaults(*c, &args, &group), EOPT_OK);
        cr_expect(eopt_optimizer_schedulable(*c, "lr"), "%s: lr is not schedulable", (*c)->id);
        for (int k = 0; (*c)->schedulable[k]; k++) /* every declared key is an argument or a group key */
            cr_expect(eopt_dict_get(&args, (*c)->schedulable[k]) || eopt_dict_get(&group, (*c)->schedulable[k]),
                      "%s: no hyperparameter '%s'", (*c)->id, (*c)->schedulable[k]);
    }
    eopt_optimizer_free(opt);
    eopt_tensor_free(&w);
    eopt_backend_close(be);
}
