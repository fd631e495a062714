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
