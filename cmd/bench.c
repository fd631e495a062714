/* `eopt bench optimizer | ns | train | checkpoint`: parses the arguments, runs the measurements
 * of train/bench.h and prints a table, or with --json one JSON object per row. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "../train/bench.h"

static int run(int argc, char **argv);

static const eopt_option options[] = {
    {"--optimizer", "CLASS", "optimizer: the class to time (repeats)"},
    {"--shape", "MxN", "the parameter's shape (repeats; ns: default 768x768, 768x3072, 3072x768; checkpoint: "
                       "4096x1024)"},
    {"--model", "NAME", "optimizer: every weight matrix of a model in one step (gpt2-small-matrices: GPT-2 small's 48)"},
    {"--steps", "K", "timed steps (default 10; train 20)"},
    {"--warmup", "W", "untimed steps first (default 2)"},
    {"--set", "PATH=VALUE", "train: a config override (repeats)"},
    {"--coefficients", "NAME", "ns: the coefficient set (default quintic)"},
    {"--iters", "N", "ns: iterations (default 5)"},
    {"--dir", "DIR", "checkpoint: where to write (default /tmp)"},
    {"--matrices", "N", "checkpoint: weight matrices (default 22: 1 GiB with AdamW state)"},
    {"--device", "cpu|cuda", "the backend"},
    {"--threads", "T", "CPU threads (default: OMP_NUM_THREADS or all cores)"},
    {"--json", NULL, "one JSON object per row instead of a table"},
    {NULL, NULL, NULL},
};

static const char usage_text[] =
    "subcommands:\n"
    "  optimizer --optimizer CLASS [--optimizer CLASS]... --shape MxN [--shape MxN]... [--model NAME]\n"
    "            one parameter of each shape, default arguments: step time (median/min/max after the\n"
    "            warm-up), flops executed per step, and its ratio to a float32 sgemm of the same flops;\n"
    "            --model gpt2-small-matrices: one step over GPT-2 small's 48 block matrices at once\n"
    "  ns [--shape MxN]... [--coefficients quintic] [--iters 5]\n"
    "            Newton-Schulz orthogonalisation alone, with the same columns\n"
    "  train CONFIG [--steps K] [--set PATH=VALUE]...\n"
    "            tokens (samples) per second and the share of data, forward, backward and each optimizer\n"
    "  checkpoint [--dir DIR] [--matrices N] [--shape MxN]\n"
    "            save and load of N MxN weights with AdamW state beside a plain copy of the file\n"
    "Flops are counted from the operations that run (train/bench.h documents each).\n";

typedef struct {
    const char *sub, *config, *dir, *device, *coefficients, *model;
    const char *classes[32], *sets[64];
    int ncls, nset, nshape, shape[32][2];
    int steps, warmup, threads, iters, matrices, json;
} bench_args;

static int parse_shape(const char *s, int *out)
{
    char *end;
    out[0] = (int)strtol(s, &end, 10);
    if (*end != 'x' || out[0] <= 0)
        return 0;
    out[1] = (int)strtol(end + 1, &end, 10);
    return *end == 0 && out[1] > 0;
}

static int parse_args(int argc, char **argv, bench_args *a)
{
    *a = (bench_args){.steps = -1, .warmup = 2, .iters = 5, .matrices = 22, .dir = "/tmp", .coefficients = "quintic"};
    for (int k = 1; k < argc; k++) {
        const char *s = argv[k], *v = k + 1 < argc ? argv[k + 1] : NULL;
        int used = 1;
        if (strcmp(s, "--json") == 0)
            a->json = 1, used = 0;
        else if (!v && s[0] == '-')
            return 0;
        else if (strcmp(s, "--optimizer") == 0 && a->ncls < 32)
            a->classes[a->ncls++] = v;
        else if (strcmp(s, "--shape") == 0 && a->nshape < 32) {
            if (!parse_shape(v, a->shape[a->nshape++]))
                return 0;
        } else if (strcmp(s, "--set") == 0 && a->nset < 64)
            a->sets[a->nset++] = v;
        else if (strcmp(s, "--steps") == 0)
            a->steps = atoi(v);
        else if (strcmp(s, "--model") == 0)
            a->model = v;
        else if (strcmp(s, "--warmup") == 0)
            a->warmup = atoi(v);
        else if (strcmp(s, "--threads") == 0)
            a->threads = atoi(v);
        else if (strcmp(s, "--iters") == 0)
            a->iters = atoi(v);
        else if (strcmp(s, "--matrices") == 0)
            a->matrices = atoi(v);
        else if (strcmp(s, "--device") == 0)
            a->device = v;
        else if (strcmp(s, "--dir") == 0)
            a->dir = v;
        else if (strcmp(s, "--coefficients") == 0)
            a->coefficients = v;
        else if (s[0] != '-' && !a->sub)
            a->sub = s, used = 0;
        else if (s[0] != '-' && !a->config)
            a->config = s, used = 0;
        else
            return 0;
        k += used;
    }
    if (a->steps < 0)
        a->steps = a->sub && strcmp(a->sub, "train") == 0 ? 20 : 10;
    return a->sub != NULL;
}

static int fail(const char *what)
{
    fprintf(stderr, "eopt bench %s: %s\n", what, eopt_last_error());
    return 1;
}

/* One row of `optimizer` or `ns`: shape "MxN" of one rows x cols matrix, or a model's name. */
static void print_result(const bench_args *a, const char *name, const char *shape, int rows, int cols,
                         const eopt_bench_result *r, int first)
{
    double flops = eopt_flops_total(&r->flops), ratio = r->time.median / r->sgemm_s;
    if (a->json) {
        printf("{\"bench\": \"%s\", \"name\": \"%s\", \"shape\": \"%s\", \"rows\": %d, \"cols\": %d, "
               "\"steps\": %d, \"median_s\": %.6g, \"min_s\": %.6g, \"max_s\": %.6g, \"flops\": %.6g, "
               "\"flops_gemm\": %.6g, \"flops_syrk\": %.6g, \"flops_syevd\": %.6g, \"flops_qr\": %.6g, "
               "\"flops_elementwise\": %.6g, \"gflops_per_s\": %.6g, \"sgemm_s\": %.6g, \"ratio\": %.6g}\n",
               a->sub, name, shape, rows, cols, r->time.n, r->time.median, r->time.min,
               r->time.max, flops, r->flops.gemm, r->flops.syrk, r->flops.syevd, r->flops.qr, r->flops.elementwise,
               flops / r->time.median * 1e-9, r->sgemm_s, ratio);
        return;
    }
    if (first)
        printf("%-14s %-11s %10s %10s %10s %11s %9s %11s %7s\n", "name", "shape", "median ms", "min ms", "max ms",
               "MFLOP/step", "GFLOP/s", "sgemm ms", "ratio");
    printf("%-14s %-11s %10.3f %10.3f %10.3f %11.2f %9.2f %11.3f %7.2f\n", name, shape, 1e3 * r->time.median,
           1e3 * r->time.min, 1e3 * r->time.max, flops * 1e-6, flops / r->time.median * 1e-9, 1e3 * r->sgemm_s,
           ratio);
}

/* `optimizer --model NAME`: every class on all of the model's matrices (rows, cols: 0). */
static int bench_model(const bench_args *a, eopt_backend *be)
{
    int shapes[256][2], n = eopt_bench_model_shapes(a->model, shapes, 256);
    if (n == 0 || a->ncls == 0) {
        fprintf(stderr, "eopt bench optimizer: give --optimizer CLASS and --model gpt2-small-matrices (got '%s')\n",
                a->model);
        return 2;
    }
    for (int c = 0; c < a->ncls; c++) {
        eopt_bench_result r;
        if (eopt_bench_optimizer_params(be, a->classes[c], NULL, n, (const int (*)[2])shapes, a->warmup, a->steps,
                                        &r) != EOPT_OK)
            return fail(a->sub);
        print_result(a, a->classes[c], a->model, 0, 0, &r, c == 0);
        fflush(stdout);
    }
    return 0;
}

/* `optimizer` (every class on every shape) and `ns` (every shape). */
static int bench_matrices(const bench_args *a, eopt_backend *be)
{
    int ns = strcmp(a->sub, "ns") == 0, nshape = a->nshape, shapes[32][2];
    memcpy(shapes, a->shape, sizeof shapes);
    if (ns && nshape == 0) /* the shapes of a GPT-2 small block and its MLP */
        nshape = 3, memcpy(shapes, (int[][2]){{768, 768}, {768, 3072}, {3072, 768}}, 6 * sizeof(int));
    if (!ns && a->model) /* one row per class: every matrix of the model in one optimizer */
        return bench_model(a, be);
    if ((!ns && a->ncls == 0) || nshape == 0) {
        fprintf(stderr, "eopt bench %s: give %s--shape MxN\n", a->sub, ns ? "" : "--optimizer CLASS and ");
        return 2;
    }
    for (int c = 0; c < (ns ? 1 : a->ncls); c++)
        for (int s = 0; s < nshape; s++) {
            eopt_bench_result r;
            eopt_status st = ns ? eopt_bench_ns(be, a->coefficients, a->iters, shapes[s][0], shapes[s][1], a->warmup,
                                                a->steps, &r)
                                : eopt_bench_optimizer(be, a->classes[c], NULL, shapes[s][0], shapes[s][1],
                                                       a->warmup, a->steps, &r);
            if (st != EOPT_OK)
                return fail(a->sub);
            char name[64], sh[32];
            snprintf(name, sizeof name, "NS(%s,%d)", a->coefficients, a->iters);
            snprintf(sh, sizeof sh, "%dx%d", shapes[s][0], shapes[s][1]);
            print_result(a, ns ? name : a->classes[c], sh, shapes[s][0], shapes[s][1], &r, c == 0 && s == 0);
            fflush(stdout);
        }
    return 0;
}

static int bench_train(const bench_args *a)
{
    static eopt_config cfg; /* large: keep it off the stack */
    if (!a->config) {
        fprintf(stderr, "eopt bench train: give a CONFIG file\n");
        return 2;
    }
    if (eopt_config_load(a->config, a->nset, a->sets, &cfg) != EOPT_OK)
        return fail("train");
    if (a->device)
        snprintf(cfg.run.device, sizeof cfg.run.device, "%s", a->device);
    if (a->threads)
        cfg.run.threads = a->threads;
    eopt_bench_train_result r;
    if (eopt_bench_train(&cfg, a->warmup, a->steps, &r) != EOPT_OK)
        return fail("train");
    const char *unit = r.gpt ? "tokens" : "samples";
    if (a->json) {
        printf("{\"bench\": \"train\", \"config\": \"%s\", \"steps\": %d, \"%s_per_s\": %.6g, \"step_s\": %.6g",
               a->config, r.step.n, unit, r.items_per_s, r.step.median);
        for (int p = 0; p < r.nparts; p++)
            printf(", \"%s_s\": %.6g, \"%s_share\": %.4f", r.name[p], r.part[p].median, r.name[p], r.share[p]);
        printf("}\n");
        return 0;
    }
    printf("%s: %d steps after %d warm-up, %.0f %s/s, step %.2f ms (median)\n", a->config, r.step.n, a->warmup,
           r.items_per_s, unit, 1e3 * r.step.median);
    printf("%-16s %10s %10s %10s %7s\n", "part", "median ms", "min ms", "max ms", "share");
    for (int p = 0; p < r.nparts; p++)
        printf("%-16s %10.2f %10.2f %10.2f %6.1f%%\n", r.name[p], 1e3 * r.part[p].median, 1e3 * r.part[p].min,
               1e3 * r.part[p].max, 100 * r.share[p]);
    return 0;
}

static int bench_checkpoint(const bench_args *a, eopt_backend *be)
{
    int rows = a->nshape ? a->shape[0][0] : 4096, cols = a->nshape ? a->shape[0][1] : 1024;
    eopt_bench_checkpoint_result r;
    if (eopt_bench_checkpoint(be, a->dir, a->matrices, rows, cols, &r) != EOPT_OK)
        return fail("checkpoint");
    if (a->json) {
        printf("{\"bench\": \"checkpoint\", \"mib\": %.1f, \"save_s\": %.6g, \"copy_s\": %.6g, "
               "\"copy_sync_s\": %.6g, \"open_s\": %.6g, \"load_s\": %.6g, \"save_ratio\": %.4g, "
               "\"load_ratio\": %.4g, \"save_cpu_s\": %.6g, \"copy_cpu_s\": %.6g, \"load_cpu_s\": %.6g}\n",
               r.mib, r.save_s, r.copy_s, r.copy_sync_s, r.open_s, r.load_s, r.save_s / r.copy_sync_s,
               r.load_s / r.copy_s, r.save_cpu_s, r.copy_cpu_s, r.load_cpu_s);
        return 0;
    }
    printf("checkpoint of %.0f MiB (%d x [%d, %d] weights + AdamW state) in %s\n", r.mib, a->matrices, rows, cols,
           a->dir);
    printf("  save (atomic, fsync)        %7.3f s %7.0f MiB/s  %.2fx cp + fsync  (cpu %.3f s)\n", r.save_s,
           r.mib / r.save_s, r.save_s / r.copy_sync_s, r.save_cpu_s);
    printf("  cp of the file + fsync      %7.3f s %7.0f MiB/s\n", r.copy_sync_s, r.mib / r.copy_sync_s);
    printf("  cp of the file              %7.3f s %7.0f MiB/s                  (cpu %.3f s)\n", r.copy_s,
           r.mib / r.copy_s, r.copy_cpu_s);
    printf("  load: guard + open          %7.3f s %7.0f MiB/s\n", r.open_s, r.mib / r.open_s);
    printf("  load: + apply (all)         %7.3f s %7.0f MiB/s  %.2fx cp         (cpu %.3f s)\n", r.load_s,
           r.mib / r.load_s, r.load_s / r.copy_s, r.load_cpu_s);
    return 0;
}

const eopt_command eopt_cmd_bench = {
    "bench", "optimizer|ns|train|checkpoint", "time optimizer steps, Newton-Schulz, training steps and checkpoints "
    "against a float32 sgemm of the same flops (table or --json)", usage_text, options, run};

static int run(int argc, char **argv)
{
    bench_args a;
    for (int k = 1; k < argc; k++)
        if (strcmp(argv[k], "--help") == 0 || strcmp(argv[k], "-h") == 0) {
            eopt_command_help(&eopt_cmd_bench, stdout);
            return 0;
        }
    for (int k = 1; k < argc; k++) { /* an option of the table, or a value after one */
        const eopt_option *o = options;
        while (o->name && strcmp(o->name, argv[k]) != 0)
            o++;
        if (argv[k][0] == '-' && !o->name)
            return eopt_usage_error(&eopt_cmd_bench, "unknown option '%s'", argv[k]);
        k += o->name && o->arg;
    }
    if (!parse_args(argc, argv, &a))
        return eopt_usage_error(&eopt_cmd_bench, "give a subcommand and its options");
    if (strcmp(a.sub, "train") == 0)
        return bench_train(&a);
    int matrices = strcmp(a.sub, "optimizer") == 0 || strcmp(a.sub, "ns") == 0;
    if (!matrices && strcmp(a.sub, "checkpoint") != 0) {
        return eopt_usage_error(&eopt_cmd_bench, "unknown subcommand '%s'", a.sub);
    }
    eopt_backend *be;
    if (eopt_backend_open(a.device, a.threads, &be) != EOPT_OK)
        return fail(a.sub);
    if (!a.json) {
        char desc[256];
        eopt_backend_describe(be, desc, sizeof desc);
        printf("backend: %s\n", desc);
    }
    int rc = matrices ? bench_matrices(&a, be) : bench_checkpoint(&a, be);
    eopt_backend_close(be);
    return rc;
}
