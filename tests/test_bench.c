/* `eopt bench`: the counting backend's flops, the timing summary, and the command's JSON row and
 * help (through the built binary, EOPT_BIN). Small sizes: the whole suite takes about a second. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "../train/bench.h"

Test(bench, counting_backend_counts_what_runs)
{
    eopt_backend *be = tu_backend(1);
    eopt_counting_backend c;
    eopt_counting_backend_init(&c, be);
    float *a = c.be.alloc(&c.be, sizeof(float) * 6 * 4), *s = c.be.alloc(&c.be, sizeof(float) * 6 * 6);
    c.be.gemm(&c.be, EOPT_PREC_FP32, 0, 1, 6, 6, 4, 1, a, 4, 0, a, 4, 0, 0, s, 6, 0, 1); /* 2 m n k */
    c.be.syrk(&c.be, EOPT_PREC_FP32, 0, 6, 4, 1, a, 4, 0, s, 6);                          /* n (n + 1) k */
    eopt_scale(&c.be, 24, 2.0f, a, a);                                                    /* 1 per element */
    cr_expect_eq(c.flops.gemm, 2.0 * 6 * 6 * 4);
    cr_expect_eq(c.flops.syrk, 6.0 * 7 * 4);
    cr_expect_eq(c.flops.elementwise, 24.0);
    cr_expect_eq(c.flops.syevd + c.flops.qr, 0.0);
    cr_expect_eq(eopt_backend_sync(&c.be), EOPT_OK);
    c.be.free(&c.be, a), c.be.free(&c.be, s);
    eopt_backend_close(be);
}

Test(bench, summary_median_min_max)
{
    eopt_bench_times t;
    eopt_bench_summarize((double[]){3, 1, 2, 10}, 4, &t);
    cr_expect_eq(t.median, 2.5);
    cr_expect_eq(t.min, 1.0);
    cr_expect_eq(t.max, 10.0);
    eopt_bench_summarize((double[]){3, 1, 2}, 3, &t);
    cr_expect_eq(t.median, 2.0);
}

/* The number after "key": in a JSON row (NAN if absent). */
static double json_number(const char *row, const char *key)
{
    char k[64];
    snprintf(k, sizeof k, "\"%s\": ", key);
    const char *p = strstr(row, k);
    return p ? strtod(p + strlen(k), NULL) : NAN;
}

static void run_bin(const char *args, char *out, size_t size, int *rc)
{
    const char *bin = getenv("EOPT_BIN");
    cr_assert(bin, "EOPT_BIN is not set");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' %s", bin, args);
    FILE *p = popen(cmd, "r");
    cr_assert(p);
    size_t n = fread(out, 1, size - 1, p);
    out[n] = 0;
    *rc = pclose(p);
}

Test(bench, optimizer_json_row)
{
    char out[4096];
    int rc;
    run_bin("bench optimizer --optimizer Muon --shape 64x64 --steps 3 --threads 1 --json", out, sizeof out, &rc);
    cr_assert_eq(rc, 0, "%s", out);
    cr_expect(out[0] == '{' && strchr(out, '\n') == out + strlen(out) - 1 && out[strlen(out) - 2] == '}',
              "one JSON object on one line: %s", out);
    cr_expect(strstr(out, "\"name\": \"Muon\"") && strstr(out, "\"shape\": \"64x64\""), "%s", out);
    for (const char *const *k = (const char *const[]){"median_s", "min_s", "max_s", "flops", "sgemm_s", "ratio", 0};
         *k; k++)
        cr_expect(json_number(out, *k) > 0, "%s > 0: %s", *k, out);
    cr_expect(json_number(out, "min_s") <= json_number(out, "median_s"));
    cr_expect(json_number(out, "median_s") <= json_number(out, "max_s"));
    /* 5 Newton-Schulz iterations on 64x64: two syrk and one gemm each, at least */
    cr_expect(json_number(out, "flops_syrk") >= 5 * 2 * 64.0 * 65 * 64, "%s", out);
    cr_expect(json_number(out, "flops_gemm") >= 5 * 2 * 64.0 * 64 * 64, "%s", out);
}

Test(bench, help_documents_subcommands)
{
    char out[4096];
    int rc;
    run_bin("bench --help", out, sizeof out, &rc);
    cr_expect_eq(rc, 0);
    for (const char *const *k = (const char *const[]){"optimizer", "ns", "train", "checkpoint", "--json", "--shape",
                                                       "--optimizer", "--steps", 0};
         *k; k++)
        cr_expect(strstr(out, *k), "help names %s: %s", *k, out);
    run_bin("bench nonsense 2>&1", out, sizeof out, &rc);
    cr_expect_neq(rc, 0);
    run_bin("bench optimizer --optimizer NoSuchClass --shape 8x8 2>&1", out, sizeof out, &rc);
    cr_expect_neq(rc, 0);
    cr_expect(strstr(out, "NoSuchClass"), "%s", out);
}
