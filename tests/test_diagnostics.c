/* Training diagnostics (train/diagnostics.h): the linear algebra against LAPACK and known
 * spectra, the Newton-Schulz residual, the loss spike detector, and training runs with the
 * diagnostics on (documented lines, finite values, training unchanged bit for bit). */
#include <criterion/criterion.h>
#include <lapacke.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "checkpoint/checkpoint.h"
#include "eopt.h"
#include "optimizers/newton_schulz.h"
#include "tests/testutil.h"
#include "train/config.h"
#include "train/diagnostics.h"
#include "train/trainer.h"

/* A (m x n, device) = U diag(s) V^T with U (m x r), V (n x r) orthonormal from the QR of
 * Philox matrices, r = min(m, n): a matrix whose singular values are exactly s (in float32). */
static void known_spectrum(eopt_backend *be, int m, int n, const double *s, float *A)
{
    const int r = m < n ? m : n;
    float *U = be->alloc(be, sizeof(float) * (size_t)m * r), *V = be->alloc(be, sizeof(float) * (size_t)n * r);
    float *US = be->alloc(be, sizeof(float) * (size_t)m * r);
    be->random(be, EOPT_RAND_NORMAL, 11, 0, (int64_t)m * r, U);
    be->random(be, EOPT_RAND_NORMAL, 12, 0, (int64_t)n * r, V);
    cr_assert_eq(be->qr(be, m, r, U), EOPT_OK, "%s", eopt_last_error());
    cr_assert_eq(be->qr(be, n, r, V), EOPT_OK, "%s", eopt_last_error());
    float *h = malloc(sizeof(float) * (size_t)m * r);
    be->download(be, h, U, sizeof(float) * (size_t)m * r);
    for (int i = 0; i < m; i++)
        for (int k = 0; k < r; k++)
            h[i * r + k] *= (float)s[k];
    be->upload(be, US, h, sizeof(float) * (size_t)m * r);
    be->gemm(be, EOPT_PREC_FP32, 0, 1, m, n, r, 1.0f, US, r, 0, V, r, 0, 0.0f, A, n, 0, 1);
    free(h);
    be->free(be, U), be->free(be, V), be->free(be, US);
}

/* LAPACK's singular values of A (m x n, host row-major), descending. */
static void lapack_sv(int m, int n, const float *A, float *s)
{
    float *a = malloc(sizeof(float) * (size_t)m * n), u[1], vt[1];
    memcpy(a, A, sizeof(float) * (size_t)m * n);
    cr_assert_eq(LAPACKE_sgesdd(LAPACK_ROW_MAJOR, 'N', m, n, a, n, s, u, m, vt, n), 0);
    free(a);
}

Test(diag_linalg, power_iteration_matches_lapack)
{
    eopt_backend *be = tu_backend(1);
    const int m = 40, n = 25;
    float *A = be->alloc(be, sizeof(float) * m * n), *v = be->alloc(be, sizeof(float) * n);
    float *u = be->alloc(be, sizeof(float) * m), *norm = be->alloc(be, sizeof(float));
    float host[40 * 25], s[25];
    be->random(be, EOPT_RAND_NORMAL, 3, 0, m * n, A);
    be->download(be, host, A, sizeof host);
    lapack_sv(m, n, host, s);
    be->random(be, EOPT_RAND_NORMAL, 4, 0, n, v);
    double sigma, warm;
    cr_assert_eq(eopt_power_sn(be, m, n, A, v, u, norm, 300, &sigma), EOPT_OK, "%s", eopt_last_error());
    cr_expect_float_eq(sigma, s[0], 1e-4 * s[0], "power %.7g vs sgesdd %.7g", sigma, s[0]);
    /* warm-started from the converged vector: a few iterations keep the value */
    cr_assert_eq(eopt_power_sn(be, m, n, A, v, u, norm, 2, &warm), EOPT_OK);
    cr_expect_float_eq(warm, s[0], 1e-4 * s[0]);
    /* a known spectrum with a clear gap converges in the cold-start budget */
    const double known[5] = {7, 2, 1, 0.5, 0.25};
    known_spectrum(be, 9, 5, known, A);
    be->random(be, EOPT_RAND_NORMAL, 5, 0, 5, v);
    cr_assert_eq(eopt_power_sn(be, 9, 5, A, v, u, norm, EOPT_POWER_ITERS_COLD, &sigma), EOPT_OK);
    cr_expect_float_eq(sigma, 7.0, 1e-5 * 7, "%.9g", sigma);
    be->free(be, A), be->free(be, v), be->free(be, u), be->free(be, norm);
    eopt_backend_close(be);
}

Test(diag_linalg, singular_value_summary_of_a_known_spectrum)
{
    eopt_backend *be = tu_backend(1);
    /* rank 5 of 6: the zero is not the smallest nonzero value */
    const double s[6] = {5, 3, 2, 1, 0.5, 0};
    for (int tall = 0; tall < 2; tall++) {
        const int m = tall ? 10 : 6, n = tall ? 6 : 10;
        float *A = be->alloc(be, sizeof(float) * m * n), *gram = be->alloc(be, sizeof(float) * 36);
        float *w = be->alloc(be, sizeof(float) * 6), host[6];
        known_spectrum(be, m, n, s, A);
        eopt_sv_summary sv;
        cr_assert_eq(eopt_sv_summary_of(be, m, n, A, gram, w, host, &sv), EOPT_OK, "%s", eopt_last_error());
        double nuc = 0, fro = 0, H = 0;
        for (int k = 0; k < 6; k++)
            nuc += s[k], fro += s[k] * s[k];
        for (int k = 0; k < 5; k++)
            H -= s[k] / nuc * log(s[k] / nuc);
        cr_expect_float_eq(sv.max, 5.0, 1e-5 * 5, "max %.9g", sv.max);
        cr_expect_float_eq(sv.min, 0.5, 1e-3, "min %.9g", sv.min);
        cr_expect_float_eq(sv.fro, sqrt(fro), 1e-5 * sqrt(fro), "fro %.9g", sv.fro);
        cr_expect_float_eq(sv.nuc, nuc, 1e-3 * nuc, "nuc %.9g", sv.nuc);
        cr_expect_float_eq(sv.erank, exp(H), 1e-3 * exp(H), "erank %.9g vs %.9g", sv.erank, exp(H));
        be->free(be, A), be->free(be, gram), be->free(be, w);
    }
    /* a zero matrix: max 0, no smallest nonzero value nor effective rank (null in the metrics) */
    float *Z = be->alloc(be, sizeof(float) * 12), *gram = be->alloc(be, sizeof(float) * 9);
    float *w = be->alloc(be, sizeof(float) * 3), host[3];
    eopt_sv_summary sv;
    cr_assert_eq(eopt_sv_summary_of(be, 4, 3, Z, gram, w, host, &sv), EOPT_OK);
    cr_expect(sv.max == 0 && sv.fro == 0 && isnan(sv.min) && isnan(sv.erank));
    /* non-finite: NaN everywhere, not an error */
    eopt_fill(be, 12, NAN, Z);
    cr_expect_eq(eopt_sv_summary_of(be, 4, 3, Z, gram, w, host, &sv), EOPT_OK);
    cr_expect(isnan(sv.max) && isnan(sv.fro));
    be->free(be, Z), be->free(be, gram), be->free(be, w);
    eopt_backend_close(be);
}

/* ||O O^T - I||_F / sqrt(r) of a host matrix, in double. */
static double host_residual(int m, int n, const float *O)
{
    const int tall = m > n, r = tall ? n : m;
    double sum = 0;
    for (int a = 0; a < r; a++)
        for (int b = 0; b < r; b++) {
            double g = 0;
            for (int k = 0; k < (tall ? m : n); k++)
                g += tall ? (double)O[k * n + a] * O[k * n + b] : (double)O[a * n + k] * O[b * n + k];
            g -= a == b;
            sum += g * g;
        }
    return sqrt(sum / r);
}

Test(diag_ns, residual_small_after_orthogonalisation_large_before)
{
    eopt_backend *be = tu_backend(1);
    eopt_workspace ws;
    eopt_ws_init(&ws, be);
    /* the classic cubic Newton-Schulz iteration converges to the polar factor */
    eopt_ns_config cfg;
    const eopt_ns_triple cubic = {1.5, -0.5, 0.0};
    cr_assert_eq(eopt_ns_emerging("custom", 40, &cubic, 1, &cfg), EOPT_OK);
    for (int tall = 0; tall < 2; tall++) {
        const int m = tall ? 32 : 16, n = tall ? 16 : 32;
        float *X = be->alloc(be, sizeof(float) * m * n), *O = be->alloc(be, sizeof(float) * m * n);
        float *res = be->alloc(be, sizeof(float)), host[512];
        be->random(be, EOPT_RAND_NORMAL, 21, 0, m * n, X);
        cr_assert_eq(eopt_ws_reset(&ws), EOPT_OK);
        cr_assert_eq(eopt_ns_residual(be, &ws, m, n, X, res), EOPT_OK);
        be->download(be, host, X, sizeof(float) * m * n);
        const double before = eopt_read_scalar(be, res);
        cr_expect_float_eq(before, host_residual(m, n, host), 1e-4 * before, "%.9g", before);
        cr_expect_gt(before, 1.0, "before: %.9g", before);
        cr_assert_eq(eopt_ws_reset(&ws), EOPT_OK);
        cr_assert_eq(eopt_ns_orthogonalize(be, &ws, &cfg, m, n, X, O), EOPT_OK, "%s", eopt_last_error());
        cr_assert_eq(eopt_ns_residual(be, &ws, m, n, O, res), EOPT_OK);
        const double after = eopt_read_scalar(be, res);
        cr_expect_lt(after, 1e-4, "after: %.9g", after);
        cr_expect_leq(eopt_ws_taken(&ws), eopt_ns_workspace_bytes(be, &cfg, m, n));
        be->free(be, X), be->free(be, O), be->free(be, res);
    }
    eopt_ws_free(&ws);
    eopt_backend_close(be);
}

/* The optimizer hook: a diagnostic step records ns_residual for Muon, q_drift / cond_L / cond_R /
 * fallbacks for SOAP; an ordinary step records nothing and both leave the same parameters. */
Test(diag_ns, optimizers_report_only_on_diagnostic_steps)
{
    const char *classes[] = {"Muon", "SOAP", "MOSO", "NorDion2"};
    const char *keys[][4] = {{"ns_residual"}, {"q_drift", "cond_L", "cond_R", "fallbacks"}, {"q_drift", "cond_L"},
                             {"ns_residual"}};
    const int shape[1][2] = {{8, 12}};
    for (int c = 0; c < 4; c++) {
        eopt_backend *be = tu_backend(1);
        rig on, off;
        eopt_dict hp = {0};
        eopt_dict_set(&hp, "lr", eopt_float(0.01));
        if (c == 0)
            eopt_dict_set(&hp, "momentum", eopt_float(0.9)), eopt_dict_set(&hp, "weight_decay", eopt_float(0.0));
        cr_assert_eq(rig_open(&on, be, classes[c], NULL, &hp, 1, shape, 5), EOPT_OK, "%s", eopt_last_error());
        cr_assert_eq(rig_open(&off, be, classes[c], NULL, &hp, 1, shape, 5), EOPT_OK, "%s", eopt_last_error());
        for (int t = 1; t <= 3; t++) {
            rig_grads(&on, 9, t, 1.0f);
            rig_grads(&off, 9, t, 1.0f);
            if (t == 3)
                eopt_optimizer_diag_begin(on.opt);
            rig_step(&on);
            rig_step(&off);
            if (t == 3)
                cr_assert_eq(eopt_optimizer_diag_end(on.opt), EOPT_OK, "%s", eopt_last_error());
        }
        cr_expect_eq(off.opt->diag[0].n, 0, "%s: recorded without a diagnostic step", classes[c]);
        for (int k = 0; k < 4 && keys[c][k]; k++) {
            const eopt_diag_values *d = &on.opt->diag[0];
            int j = 0;
            while (j < d->n && strcmp(d->key[j], keys[c][k]) != 0)
                j++;
            cr_expect_lt(j, d->n, "%s: no %s", classes[c], keys[c][k]);
            if (j < d->n)
                cr_expect(isfinite(d->value[j]) && d->value[j] >= 0, "%s: %s = %g", classes[c], keys[c][k], d->value[j]);
        }
        float *a = tu_host(&on.w[0]), *b = tu_host(&off.w[0]);
        cr_expect(memcmp(a, b, sizeof(float) * 96) == 0, "%s: the diagnostic step changed the update", classes[c]);
        cr_expect_eq(on.opt->ws_overruns, 0, "%s: the diagnostics overran the declared workspace", classes[c]);
        free(a), free(b);
        rig_close(&on), rig_close(&off);
        eopt_backend_close(be);
    }
}

/* ---- the loss spike detector ---- */

/* 3 + noise in [-0.01, 0.01), with spikes at 5 (warm-up), 60 and 61 (back to back). */
static double series(int k)
{
    uint32_t x = 2463534242u + (uint32_t)k * 2654435761u;
    x ^= x << 13, x ^= x >> 17, x ^= x << 5;
    double v = 3.0 + 0.02 * ((double)(x % 10000) / 10000.0 - 0.5);
    return k == 5 ? 10.0 : k == 60 ? 3.5 : k == 61 ? 3.3 : v;
}

Test(diag_spike, fires_on_spikes_not_on_noise_nor_in_warm_up)
{
    eopt_spike_detector d;
    cr_assert_eq(eopt_spike_init(&d, 20, 6.0), EOPT_OK);
    for (int k = 0; k < 120; k++) {
        eopt_spike s;
        int fired = eopt_spike_check(&d, series(k), &s);
        cr_expect_eq(fired, k == 60 || k == 61, "step %d: fired %d", k, fired);
        if (fired)
            cr_expect(s.z > 6 && fabs(s.mean - 3.0) < 0.01 && s.std < 0.02, "z %g mean %g std %g", s.z, s.mean, s.std);
    }
    cr_expect_eq(d.spikes, 2);
    cr_expect_eq(eopt_spike_check(&d, NAN, &(eopt_spike){0}), 0); /* non-finite: not judged, not kept */
    eopt_spike_free(&d);
    /* z = 0 turns it off */
    cr_assert_eq(eopt_spike_init(&d, 20, 0.0), EOPT_OK);
    for (int k = 0; k < 120; k++)
        cr_expect_eq(eopt_spike_check(&d, series(k), &(eopt_spike){0}), 0);
    eopt_spike_free(&d);
}

Test(diag_spike, state_survives_a_resume_bit_for_bit)
{
    eopt_spike_detector a, b, c;
    cr_assert_eq(eopt_spike_init(&a, 20, 6.0), EOPT_OK);
    cr_assert_eq(eopt_spike_init(&b, 20, 6.0), EOPT_OK);
    cr_assert_eq(eopt_spike_init(&c, 20, 6.0), EOPT_OK);
    for (int k = 0; k < 57; k++) {
        eopt_spike s;
        eopt_spike_check(&a, series(k), &s);
        eopt_spike_check(&b, series(k), &s);
    }
    double window[20];
    int n = eopt_spike_values(&b, window);
    cr_expect_eq(n, 20);
    eopt_spike_restore(&c, window, n);
    for (int k = 57; k < 120; k++) {
        eopt_spike sa = {0}, sc = {0};
        int fa = eopt_spike_check(&a, series(k), &sa), fc = eopt_spike_check(&c, series(k), &sc);
        cr_expect_eq(fa, fc, "step %d", k);
        cr_expect(memcmp(&sa, &sc, sizeof sa) == 0, "step %d: z %.17g vs %.17g", k, sa.z, sc.z);
    }
    eopt_spike_free(&a), eopt_spike_free(&b), eopt_spike_free(&c);
}

/* ---- training runs ---- */

static const char *run_cfg =
    "model = { kind = \"gpt\"; block_size = 16; n_layer = 2; n_head = 2; n_embd = 16; };\n"
    "data = { kind = \"text\"; path = \"%s\"; };\n"
    "run = { steps = 6; batch_size = 2; seq_len = 16; eval_interval = 3; eval_batches = 2;\n"
    "        seed = 7; threads = 1; sample_tokens = 0; };\n"
    "optimizers = (\n"
    "  { name = \"matrix\"; class = \"%s\"; args = { lr = 0.01; %s };\n"
    "    groups = ( { params = \"transformer.h.*\"; ndim = 2; } ); },\n"
    "  { name = \"adamw\"; class = \"AdamW\"; args = { lr = %g; weight_decay = 0.0; };\n"
    "    groups = ( { params = [\"transformer.w*\"]; }, { params = [\"*.bias\", \"*ln_*.weight\"]; } ); }\n"
    ");\n"
    "checkpoint = { dir = \"%s\"; keep = 2; };\n"
    "log = { interval = 2; progress = \"none\"; diagnostics_interval = %d; spike_window = %d; spike_z = %g; };\n";

static eopt_config cfg_buf; /* large */

/* A run of `cls` on the matrices, AdamW (lr adam_lr) on the rest. */
static void train(const char *cls, const char *args, double adam_lr, const char *dir, int interval, int window,
                  double z, const eopt_train_options *o, eopt_train_result *r)
{
    char text[4096];
    snprintf(text, sizeof text, run_cfg, tu_text_corpus("eopt-diag-text-v1.txt", tu_write_words), cls, args, adam_lr, dir,
             interval, window, z);
    cr_assert_eq(eopt_config_parse(text, "t.cfg", 0, NULL, &cfg_buf), EOPT_OK, "%s", eopt_last_error());
    cr_assert_eq(eopt_train(&cfg_buf, o, r), EOPT_OK, "%s: %s", cls, eopt_last_error());
}

/* The metrics file's lines with `needle`, concatenated (at most size bytes). */
static int lines_with(const char *dir, const char *needle, char *out, size_t size)
{
    char path[400], line[16384];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    FILE *f = fopen(path, "r");
    cr_assert(f, "%s", path);
    int n = 0;
    out[0] = 0;
    while (fgets(line, sizeof line, f))
        if (strstr(line, needle)) {
            n++;
            strncat(out, line, size - strlen(out) - 1);
        }
    fclose(f);
    return n;
}

Test(diag_run, gpt_diagnostics_lines_are_complete_and_finite, .timeout = 120)
{
    const char *classes[] = {"Muon", "SOAP"}, *args[] = {"momentum = 0.9; weight_decay = 0.0;", ""};
    const char *want[][6] = {{"\"ns_residual\": ", NULL}, {"\"q_drift\": ", "\"cond_L\": ", "\"cond_R\": ", "\"fallbacks\": "}};
    static char all[1 << 16];
    for (int c = 0; c < 2; c++) {
        char dir[64];
        tu_tmpdir(dir, sizeof dir, "diag", NULL);
        eopt_train_result r;
        eopt_train_options quiet = {.quiet = 1};
        train(classes[c], args[c], 0.003, dir, 2, 50, 0.0, &quiet, &r);
        cr_expect_eq(lines_with(dir, "\"diagnostics\"", all, sizeof all), 3, "%s: %s", classes[c], all);
        for (const char *p = all; (p = strstr(p, "{\"step\": ")); p++) { /* every 2 steps, in order */
            static int expect_step;
            expect_step = p == strstr(all, "{\"step\": ") ? 2 : expect_step + 2;
            cr_expect_eq(atoi(p + 9), expect_step, "%s", p);
        }
        const char *common[] = {"\"transformer.h.0.attn.c_attn.weight\": {\"weight_sn\": ", "\"update_sn\": ",
                                "\"update_sv\": {\"max\": ", "\"min\": ", "\"fro\": ", "\"nuc\": ", "\"erank\": ",
                                "\"transformer.wte.weight\": {\"weight_sn\": ", "\"attn_logit_max\": ["};
        for (size_t k = 0; k < sizeof common / sizeof *common; k++)
            cr_expect(strstr(all, common[k]), "%s: no %s in %s", classes[c], common[k], all);
        for (int k = 0; k < 6 && want[c][k]; k++)
            cr_expect(strstr(all, want[c][k]), "%s: no %s", classes[c], want[c][k]);
        cr_expect_null(strstr(all, "null"), "%s: a non-finite diagnostic: %s", classes[c], all);
        /* two layers: two logits */
        const char *l = strstr(all, "\"attn_logit_max\": [");
        cr_expect(l && strchr(l, ',') < strchr(l, ']') && isfinite(strtod(l + 19, NULL)));
        /* every step: per-group statistics */
        cr_expect_eq(lines_with(dir, "\"update_rms\": [", all, sizeof all), 6);
        tu_rmdir_all(dir);
    }
}

/* The model checkpoints of two runs are bit-identical. */
static void expect_same_model(const char *a, const char *b, const char *what)
{
    eopt_ckpt *ca, *cb;
    cr_assert_eq(eopt_checkpoint_open(a, NULL, &ca), EOPT_OK, "%s", eopt_last_error());
    cr_assert_eq(eopt_checkpoint_open(b, NULL, &cb), EOPT_OK, "%s", eopt_last_error());
    for (int k = 0; k < eopt_ckpt_num_tensors(ca); k++) {
        const char *name = eopt_ckpt_tensor_name(ca, k);
        const eopt_tensor *ta = eopt_ckpt_tensor(ca, name), *tb = eopt_ckpt_tensor(cb, name);
        cr_assert(tb, "%s: %s missing", what, name);
        cr_expect(memcmp(ta->data, tb->data, eopt_tensor_bytes(ta)) == 0, "%s: %s differs", what, name);
    }
    eopt_checkpoint_close(ca);
    eopt_checkpoint_close(cb);
}

Test(diag_run, diagnostics_do_not_change_training, .timeout = 240)
{
    const char *classes[] = {"Muon", "SOAP", "MOSO", "NorDion2", "Muown"};
    const char *args[] = {"momentum = 0.9; weight_decay = 0.0;", "", "", "", "momentum = 0.9; weight_decay = 0.0;"};
    for (int c = 0; c < 5; c++) {
        char on[64], off[64];
        tu_tmpdir(on, sizeof on, "diag", NULL);
        tu_tmpdir(off, sizeof off, "diag", NULL);
        eopt_train_result ra, rb;
        eopt_train_options quiet = {.quiet = 1};
        train(classes[c], args[c], 0.2, on, 1, 2, 0.5, &quiet, &ra); /* every step, and spikes */
        train(classes[c], args[c], 0.2, off, 0, 50, 0.0, &quiet, &rb);
        cr_expect_eq(ra.eval_loss, rb.eval_loss, "%s", classes[c]);
        expect_same_model(ra.last_checkpoint, rb.last_checkpoint, classes[c]);
        tu_rmdir_all(on);
        tu_rmdir_all(off);
    }
}

/* A hair-trigger detector (window 2, z 0.5) fires at step 4 or 5 of this run (AdamW at lr 0.2
 * makes the loss bounce); the spike lines and their forced diagnostics lines are the same in one
 * go and across a resume after step 3 (the window is checkpointed; without it the detector
 * would be warming up at steps 4 and 5). */
Test(diag_run, spikes_logged_with_diagnostics_and_kept_across_resume, .timeout = 120)
{
    char da[64], db[64];
    static char a[1 << 16], b[1 << 16];
    tu_tmpdir(da, sizeof da, "diag", NULL);
    tu_tmpdir(db, sizeof db, "diag", NULL);
    eopt_train_result ra, rb1, rb2;
    eopt_train_options quiet = {.quiet = 1}, first = {.quiet = 1, .stop_at = 3}, resume = {.quiet = 1, .resume = "auto"};
    const char *args = "momentum = 0.9; weight_decay = 0.0;";
    train("Muon", args, 0.2, da, 0, 2, 0.5, &quiet, &ra);
    train("Muon", args, 0.2, db, 0, 2, 0.5, &first, &rb1);
    train("Muon", args, 0.2, db, 0, 2, 0.5, &resume, &rb2);
    int na = lines_with(da, "\"spike\": {\"z\": ", a, sizeof a), nb = lines_with(db, "\"spike\": {\"z\": ", b, sizeof b);
    /* what the test needs: a spike at step 4 or 5, inside the window restored at the resume */
    cr_assert(na >= 1 && (strncmp(a, "{\"step\": 4,", 11) == 0 || strncmp(a, "{\"step\": 5,", 11) == 0),
              "the test needs a spike at step 4 or 5: %s", a);
    cr_expect_eq(na, nb);
    /* the same steps, z, mean and std (time and throughput differ) */
    for (const char *p = a, *q = b; (p = strstr(p, "\"spike\"")) && (q = strstr(q, "\"spike\"")); p++, q++)
        cr_expect(strncmp(p, q, (size_t)(strchr(p, '}') - p)) == 0, "%.80s vs %.80s", p, q);
    /* each spike step has a diagnostics line */
    static char diag[1 << 16];
    cr_expect_eq(lines_with(da, "\"diagnostics\"", diag, sizeof diag), na);
    tu_rmdir_all(da);
    tu_rmdir_all(db);
}
