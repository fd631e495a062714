#include <criterion/criterion.h>

#include "eopt.h"

Test(smoke, gemm_2x2)
{
    eopt_backend *be;
    cr_assert_eq(eopt_backend_open("cpu", 1, &be), EOPT_OK);
    float A[4] = {1, 2, 3, 4}, B[4] = {5, 6, 7, 8}, C[4] = {0};
    be->gemm(be, EOPT_PREC_FP32, 0, 0, 2, 2, 2, 1.0f, A, 2, 0, B, 2, 0, 0.0f, C, 2, 0, 1);
    cr_assert_float_eq(C[0], 19.0f, 1e-6);
    cr_assert_float_eq(C[3], 50.0f, 1e-6);
    eopt_backend_close(be);
}
