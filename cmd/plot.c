/* `eopt plot RUN_DIR... -o FILE.png`: the train loss (thin, light) and eval loss (bold, with
 * points) of each run against the step, drawn by gnuplot (Debian's gnuplot-nox) from inline data
 * blocks. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "gnuplot.h"
#include "train/runs.h"

static void write_script(FILE *g, const eopt_run_metrics *runs, int n, const char *out, const char *title)
{
    for (int k = 0; k < n; k++) {
        fprintf(g, "$train%d << EOD\n", k);
        for (int i = 0; i < runs[k].n; i++)
            if (isfinite(runs[k].train[i]))
                fprintf(g, "%lld %.9g\n", (long long)runs[k].step[i], runs[k].train[i]);
        fprintf(g, "EOD\n$eval%d << EOD\n", k);
        for (int i = 0; i < runs[k].ne; i++)
            if (isfinite(runs[k].eval[i]))
                fprintf(g, "%lld %.9g\n", (long long)runs[k].estep[i], runs[k].eval[i]);
        fprintf(g, "EOD\n");
    }
    fprintf(g, "set terminal pngcairo noenhanced size 960,600 font 'sans,12' linewidth 1.5\nset output ");
    eopt_gnuplot_quoted(g, out);
    fprintf(g, "\nset title font ',15' ");
    eopt_gnuplot_quoted(g, title);
    fprintf(g, "\nset xlabel 'step'\nset ylabel 'loss'\nset grid lc rgb '#dddddd'\nset key top right box opaque\n"
               "set border 3\nset tics nomirror\nplot ");
    for (int k = 0; k < n; k++) {
        const char *c = eopt_gnuplot_colors[k % EOPT_GNUPLOT_NCOLORS];
        fprintf(g, "%s$train%d using 1:2 with lines lw 0.8 lc rgb '#70%s' title ", k ? ", " : "", k, c);
        char t[300];
        snprintf(t, sizeof t, "%s train", runs[k].name);
        eopt_gnuplot_quoted(g, t);
        if (runs[k].ne > 0) {
            snprintf(t, sizeof t, "%s eval", runs[k].name);
            fprintf(g, ", $eval%d using 1:2 with linespoints lw 2.5 pt 7 ps 0.9 lc rgb '#%s' title ", k, c);
            eopt_gnuplot_quoted(g, t);
        }
    }
    fprintf(g, "\n");
}

static int run(int argc, char **argv);

static const eopt_option options[] = {
    {"-o", "FILE.png", "the image to write (required)"},
    {"--title", "TEXT", "the plot's title (default: \"loss\")"},
    {0}};

const eopt_command eopt_cmd_plot = {
    "plot", "RUN_DIR...",
    "loss curves of one or more runs against the step: train loss (thin) and eval loss (bold, with points), "
    "drawn with gnuplot",
    "Needs gnuplot (Debian: apt-get install gnuplot-nox).", options, run};

static int run(int argc, char **argv)
{
    const char *out = NULL, *title = "loss";
    int n = 0, rc = 0;
    eopt_run_metrics *runs = calloc((size_t)argc, sizeof *runs);
    if (!runs)
        return 1;
    eopt_args a;
    eopt_args_init(&a, &eopt_cmd_plot, argc, argv);
    for (int id; rc == 0 && (id = eopt_args_next(&a)) != EOPT_ARGS_END;) {
        if (id == EOPT_ARGS_EXIT)
            rc = a.status ? a.status : -1;
        else if (id >= 0 && strcmp(options[id].name, "-o") == 0)
            out = a.val[0];
        else if (id >= 0) /* --title */
            title = a.val[0];
        else if (eopt_run_metrics_read(a.val[0], &runs[n]) != EOPT_OK) {
            fprintf(stderr, "eopt plot: %s\n", eopt_last_error());
            rc = 1;
        } else
            n++;
    }
    if (rc == 0 && (n == 0 || !out))
        rc = eopt_usage_error(&eopt_cmd_plot, n ? "no -o FILE.png" : "no run folder");
    if (rc == 0 && !eopt_gnuplot_present()) {
        fprintf(stderr, "eopt plot: gnuplot is not installed; on Debian or Ubuntu: sudo apt-get install gnuplot-nox\n");
        rc = 1;
    }
    FILE *g = rc == 0 ? eopt_gnuplot_open("eopt plot") : NULL;
    if (rc == 0 && !g)
        rc = 1;
    if (g) {
        write_script(g, runs, n, out, title);
        rc = eopt_gnuplot_close(g, "eopt plot");
        if (rc == 0)
            printf("wrote %s (%d run%s)\n", out, n, n > 1 ? "s" : "");
    }
    for (int k = 0; k < n; k++)
        eopt_run_metrics_free(&runs[k]);
    free(runs);
    return rc < 0 ? 0 : rc;
}
