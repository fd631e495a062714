/* Muon through eopt's public API: one 4 x 3 weight matrix, a known gradient, a few steps, and a
 * checkpoint written and read back.
 *
 * Muon (Jordan et al. 2024) steps along the orthogonal polar factor of the momentum M = U S V^T:
 *   M <- mu M + (1 - mu) G,   W <- W - lr * scale * NS(M),   NS(M) ~ U V^T (a Newton-Schulz iteration),
 * scale = sqrt(max(rows, cols)) for the default scale_mode "spectral". Every singular direction
 * of the gradient moves by about the same amount, however small its singular value: with
 * G = diag(4, 2, 1) the update is about lr * scale * diag(1, 1, 1) (5 quintic Newton-Schulz
 * iterations land each singular value of U V^T within ~30% of 1, not exactly on it).
 *
 * Build against an installed eopt (README, "Using the library"):
 *   cc muon_step.c -o muon_step $(pkg-config --cflags --libs eopt)
 * Run: ./muon_step [checkpoint.h5]   (exit status 0 when every check holds) */
#include <math.h>
#include <stdio.h>

#include <eopt/eopt.h>

#define ROWS 4
#define COLS 3
#define STEPS 3

/* Prints eopt's message for a failed call and leaves main with status 1. */
#define CHECK(call)                                                                           \
    do {                                                                                      \
        if ((call) != EOPT_OK) {                                                              \
            fprintf(stderr, "muon_step: %s: %s\n", #call, eopt_last_error());                 \
            return 1;                                                                         \
        }                                                                                     \
    } while (0)

static int close_to(double x, double want, double tol) { return fabs(x - want) <= tol; }

int main(int argc, char **argv)
{
    const char *ckpt_path = argc > 1 ? argv[1] : "muon_step.h5";

    /* The CPU backend with 1 thread (the device could also be "cuda" in a CUDA build). */
    eopt_backend *be;
    CHECK(eopt_backend_open("cpu", 1, &be));

    /* The parameter W (zeros) and its gradient G = diag(4, 2, 1), on the backend. */
    const int64_t shape[2] = {ROWS, COLS};
    eopt_tensor w, g;
    CHECK(eopt_tensor_alloc(&w, be, EOPT_F32, 2, shape));
    CHECK(eopt_tensor_alloc(&g, be, EOPT_F32, 2, shape));
    float host[ROWS * COLS] = {0};
    host[0 * COLS + 0] = 4, host[1 * COLS + 1] = 2, host[2 * COLS + 2] = 1;
    CHECK(eopt_tensor_from_host(&g, host, sizeof host));
    eopt_param p = {.name = "w", .w = &w, .grad = &g};

    /* Muon with one param group: lr and momentum set, no weight decay, so that W changes by
     * the Muon update alone. Constructor arguments (none here: nesterov, scale_mode, ...) and
     * unset group keys take upstream's defaults. */
    eopt_dict args = {0}, group = {0};
    CHECK(eopt_dict_set(&group, "lr", eopt_float(0.01)));
    CHECK(eopt_dict_set(&group, "momentum", eopt_float(0.9)));
    CHECK(eopt_dict_set(&group, "weight_decay", eopt_float(0.0)));
    const int group_size = 1;
    eopt_optimizer *opt;
    CHECK(eopt_optimizer_create("Muon", be, &args, 1, &group, &group_size, &p, 1, &opt));

    /* Each step's update divided by lr * scale: the diagonal near 1, the rest near 0. */
    const double lr_scale = 0.01 * sqrt(ROWS);
    float before[ROWS * COLS], after[ROWS * COLS];
    int ok = 1;
    for (int t = 1; t <= STEPS; t++) {
        CHECK(eopt_tensor_to_host(&w, before, sizeof before));
        CHECK(eopt_optimizer_step(opt));
        CHECK(eopt_tensor_to_host(&w, after, sizeof after));
        printf("step %d: update / (lr * scale) =", t);
        for (int r = 0; r < ROWS; r++)
            for (int c = 0; c < COLS; c++) {
                const double u = (before[r * COLS + c] - after[r * COLS + c]) / lr_scale;
                if (r == c)
                    printf(" %.3f", u);
                ok &= r == c ? close_to(u, 1.0, 0.3) : close_to(u, 0.0, 1e-6);
            }
        printf(" (diagonal; gradient 4, 2, 1)\n");
    }

    /* A checkpoint of W and Muon's state, then a second optimizer built from the file alone:
     * its momentum buffer must equal the running one. */
    eopt_ckpt_optimizer saved = {.name = "muon", .opt = opt};
    eopt_ckpt_write wr = {.step = STEPS, .producer = "muon_step example", .nparams = 1, .params = &p,
                          .nopt = 1, .opts = &saved};
    CHECK(eopt_checkpoint_save(ckpt_path, &wr));
    eopt_ckpt *ck;
    CHECK(eopt_checkpoint_open(ckpt_path, NULL, &ck));
    eopt_optimizer *loaded;
    CHECK(eopt_ckpt_create_optimizer(ck, "muon", be, &p, 1, &loaded));
    float m_run[ROWS * COLS], m_file[ROWS * COLS];
    CHECK(eopt_tensor_to_host(eopt_state_get(opt, 0, "momentum_buffer"), m_run, sizeof m_run));
    CHECK(eopt_tensor_to_host(eopt_state_get(loaded, 0, "momentum_buffer"), m_file, sizeof m_file));
    for (int k = 0; k < ROWS * COLS; k++)
        ok &= m_run[k] == m_file[k];
    /* The momentum is an average of the gradients, M <- lerp(M, G, 1 - mu): 4 (1 - 0.9^3) after 3 steps. */
    ok &= eopt_ckpt_step(ck) == STEPS && close_to(m_file[0], 4 * (1 - pow(0.9, STEPS)), 1e-5);
    printf("checkpoint %s: step %lld, momentum_buffer[0][0] = %.4f (4 (1 - 0.9^%d))\n", ckpt_path,
           (long long)eopt_ckpt_step(ck), m_file[0], STEPS);

    eopt_optimizer_free(loaded);
    eopt_checkpoint_close(ck);
    eopt_optimizer_free(opt);
    eopt_tensor_free(&w);
    eopt_tensor_free(&g);
    eopt_backend_close(be);
    printf("%s\n", ok ? "muon_step ok" : "muon_step FAIL");
    return ok ? 0 : 1;
}
