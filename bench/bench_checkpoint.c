/* Checkpoint save and load of about 1 GiB of training state beside a plain `cp` of the same
 * bytes, measured in the same run on the same disk.
 *
 * State: 22 matrices [4096, 1024] float32 (352 MiB of weights) with torch-AdamW state
 * (exp_avg, exp_avg_sq: 704 MiB), 1056 MiB in all. save = eopt_checkpoint_save (write .tmp,
 * flush, fsync file and directory, rename); load = eopt_checkpoint_open (read and validate the
 * whole file into host memory, NaN/Inf scan included) + eopt_ckpt_load_optimizer +
 * eopt_ckpt_load_model. The reference copies the saved file with cp(1), then fsyncs the copy
 * (so that both write the bytes to the disk). Loads read from the page cache, as cp does here.
 * The file was written by this process, so the open skips the guard (checkpoint/guard.h); its
 * cost for a file from elsewhere (fork + walk in a child) is measured on its own. 
 * usage: bench_checkpoint [directory (default /tmp)] */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint/checkpoint.h"
#include "checkpoint/guard.h"
#include "eopt.h"

enum { NMAT = 22, ROWS = 4096, COLS = 1024 };

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

static void check(eopt_status st, const char *what)
{
    if (st != EOPT_OK) {
        fprintf(stderr, "bench_checkpoint: %s: %s\n", what, eopt_last_error());
        exit(1);
    }
}

/* Copies src to dst with cp(1) and fsyncs dst; returns the seconds taken. */
static double cp_time(const char *src, const char *dst)
{
    char cmd[2100];
    snprintf(cmd, sizeof cmd, "cp '%s' '%s'", src, dst);
    double t0 = now();
    if (system(cmd) != 0) {
        fprintf(stderr, "bench_checkpoint: %s failed\n", cmd);
        exit(1);
    }
    int fd = open(dst, O_RDONLY);
    if (fd < 0 || fsync(fd) != 0) {
        fprintf(stderr, "bench_checkpoint: cannot fsync %s\n", dst);
        exit(1);
    }
    close(fd);
    return now() - t0;
}

int main(int argc, char **argv)
{
    const char *dir = argc > 1 ? argv[1] : "/tmp";
    char path[1024], copy[1032];
    snprintf(path, sizeof path, "%s/eopt-bench-ckpt-%d.h5", dir, (int)getpid());
    snprintf(copy, sizeof copy, "%s.cp", path);
    eopt_backend *be;
    check(eopt_backend_cpu_create(0, &be), "backend");
    eopt_param params[NMAT];
    eopt_tensor w[NMAT], g[NMAT];
    for (int i = 0; i < NMAT; i++) {
        snprintf(params[i].name, sizeof params[i].name, "layers.%d.weight", i);
        check(eopt_tensor_alloc(&w[i], be, EOPT_F32, 2, (int64_t[]){ROWS, COLS}), "alloc");
        check(eopt_tensor_alloc(&g[i], be, EOPT_F32, 2, (int64_t[]){ROWS, COLS}), "alloc");
        be->random(be, EOPT_RAND_NORMAL, 1, (uint64_t)i * w[i].numel, w[i].numel, eopt_f32(&w[i]));
        be->random(be, EOPT_RAND_NORMAL, 2, (uint64_t)i * g[i].numel, g[i].numel, eopt_f32(&g[i]));
        params[i].w = &w[i], params[i].grad = &g[i];
    }
    eopt_dict args = {0}, group = {0};
    int size = NMAT;
    eopt_optimizer *opt;
    check(eopt_optimizer_create("AdamW", be, &args, 1, &group, &size, params, NMAT, &opt), "AdamW");
    check(eopt_optimizer_step(opt), "step"); /* creates the state */
    eopt_ckpt_optimizer o = {.name = "0", .opt = opt};
    eopt_ckpt_write cw = {.step = 1, .producer = "bench_checkpoint", .nparams = NMAT, .params = params, .nopt = 1,
                          .opts = &o};

    double t0 = now();
    check(eopt_checkpoint_save(path, &cw), "save");
    double t_save = now() - t0;
    struct stat sb;
    stat(path, &sb);
    double t_cp = cp_time(path, copy);

    t0 = now();
    eopt_ckpt *ck;
    check(eopt_checkpoint_open(path, NULL, &ck), "open");
    double t_open = now() - t0;
    check(eopt_ckpt_load_optimizer(ck, "0", opt), "load optimizer");
    check(eopt_ckpt_load_model(ck, params, NMAT), "load model");
    double t_load = now() - t0;
    eopt_checkpoint_close(ck);
    t0 = now();
    check(eopt_guard_check(path, NULL), "guard");
    double t_guard = now() - t0;

    double mib = (double)sb.st_size / (1 << 20);
    printf("checkpoint of %.0f MiB (%d x [%d, %d] weights + AdamW state) in %s\n", mib, NMAT, ROWS, COLS, dir);
    printf("  save (atomic, fsync)       %7.3f s  %7.0f MiB/s  %.2fx cp\n", t_save, mib / t_save, t_save / t_cp);
    printf("  cp + fsync of the file     %7.3f s  %7.0f MiB/s\n", t_cp, mib / t_cp);
    printf("  load: open + validate      %7.3f s  %7.0f MiB/s\n", t_open, mib / t_open);
    printf("  load: + apply to optimizer %7.3f s  %7.0f MiB/s  %.2fx cp\n", t_load, mib / t_load, t_load / t_cp);
    printf("  guard of a file from elsewhere %5.3f s  (+%.1f%% on the load)\n", t_guard, 100 * t_guard / t_load);
    unlink(path);
    unlink(copy);
    eopt_optimizer_free(opt);
    for (int i = 0; i < NMAT; i++) {
        eopt_tensor_free(&w[i]);
        eopt_tensor_free(&g[i]);
    }
    eopt_backend_close(be);
    return 0;
}
