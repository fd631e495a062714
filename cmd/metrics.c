/* `eopt metrics RUN_DIR... [--csv]`: runs side by side (docs/metrics.md): steps, the final train
 * loss, the final and best eval loss, the final accuracy (MLP), training time, throughput. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "train/runs.h"

typedef struct {
    double final_train, final_eval, best_eval, acc;
    int64_t best_step;
} run_summary;

static run_summary summarize(const eopt_run_metrics *m)
{
    run_summary s = {m->train[m->n - 1], NAN, NAN, NAN, 0};
    for (int k = 0; k < m->ne; k++) {
        if (isfinite(m->eval[k]) && !(m->eval[k] >= s.best_eval))
            s.best_eval = m->eval[k], s.best_step = m->estep[k];
        s.final_eval = m->eval[k], s.acc = m->acc[k];
    }
    return s;
}

/* A number, or "-" when there is none. */
static const char *num(double v, const char *fmt, char *buf, size_t size)
{
    if (!isfinite(v))
        return "-";
    snprintf(buf, size, fmt, v);
    return buf;
}

static void print_csv(const eopt_run_metrics *runs, int n)
{
    printf("run,steps,of_steps,final_train_loss,final_eval_loss,best_eval_loss,best_eval_step,final_accuracy,"
           "train_seconds,items_per_s\n");
    for (int k = 0; k < n; k++) {
        const eopt_run_metrics *m = &runs[k];
        run_summary s = summarize(m);
        char a[6][32];
        printf("\"%s\",%lld,%lld,%s,%s,%s,%lld,%s,%s,%s\n", m->name, (long long)m->step[m->n - 1],
               (long long)m->steps, num(s.final_train, "%.6g", a[0], 32), num(s.final_eval, "%.6g", a[1], 32),
               num(s.best_eval, "%.6g", a[2], 32), (long long)s.best_step, num(s.acc, "%.6g", a[3], 32),
               num(m->time_s, "%.3f", a[4], 32), num(m->rate, "%.1f", a[5], 32));
    }
}

static void print_table(const eopt_run_metrics *runs, int n)
{
    int w = 3;
    for (int k = 0; k < n; k++)
        if ((int)strlen(runs[k].name) > w)
            w = (int)strlen(runs[k].name);
    printf("%-*s  %13s  %10s  %10s  %18s  %8s  %9s  %10s\n", w, "run", "steps", "train loss", "eval loss",
           "best eval (step)", "accuracy", "time", "items/s");
    for (int k = 0; k < n; k++) {
        const eopt_run_metrics *m = &runs[k];
        run_summary s = summarize(m);
        char steps[32], best[48], a[6][32];
        snprintf(steps, sizeof steps, "%lld/%lld", (long long)m->step[m->n - 1], (long long)m->steps);
        if (isfinite(s.best_eval))
            snprintf(best, sizeof best, "%.4f (%lld)", s.best_eval, (long long)s.best_step);
        else
            snprintf(best, sizeof best, "-");
        printf("%-*s  %13s  %10s  %10s  %18s  %8s  %8ss  %10s\n", w, m->name, steps,
               num(s.final_train, "%.4f", a[0], 32), num(s.final_eval, "%.4f", a[1], 32), best,
               num(100 * s.acc, "%.2f%%", a[2], 32), num(m->time_s, "%.1f", a[3], 32), num(m->rate, "%.0f", a[4], 32));
    }
}

static int run(int argc, char **argv);

static const eopt_option options[] = {{"--csv", NULL, "print the same as CSV on stdout"}, {0}};

const eopt_command eopt_cmd_metrics = {
    "metrics", "RUN_DIR...",
    "a table of runs side by side: steps done (of run.steps), final train loss, final and best eval loss "
    "(with its step), final accuracy (MLP), training time, throughput",
    "The metrics file's schema: docs/metrics.md.", options, run};

static int run(int argc, char **argv)
{
    int csv = 0, n = 0;
    eopt_run_metrics *runs = calloc((size_t)argc, sizeof *runs);
    if (!runs)
        return 1;
    int rc = 0;
    eopt_args a;
    eopt_args_init(&a, &eopt_cmd_metrics, argc, argv);
    for (int id; rc == 0 && (id = eopt_args_next(&a)) != EOPT_ARGS_END;) {
        if (id == EOPT_ARGS_EXIT)
            rc = a.status ? a.status : -1;
        else if (id != EOPT_ARGS_POS) /* --csv */
            csv = 1;
        else if (eopt_run_metrics_read(a.val[0], &runs[n]) != EOPT_OK) {
            fprintf(stderr, "eopt metrics: %s\n", eopt_last_error());
            rc = 1;
        } else
            n++;
    }
    if (rc == 0 && n == 0)
        rc = eopt_usage_error(&eopt_cmd_metrics, "no run folder");
    if (rc == 0)
        csv ? print_csv(runs, n) : print_table(runs, n);
    for (int k = 0; k < n; k++)
        eopt_run_metrics_free(&runs[k]);
    free(runs);
    return rc < 0 ? 0 : rc;
}
