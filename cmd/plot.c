/* `eopt plot RUN_DIR... -o FILE.png`: the train loss (thin, light) and eval loss (bold, with
 * points) of each run against the step, drawn by gnuplot (Debian's gnuplot-nox) from inline data
 * blocks. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "commands.h"
#include "runs.h"

static const char *const colors[] = {"0072B2", "D55E00", "009E73", "CC79A7", "E69F00", "56B4E9", "000000", "F0E442"};

static int usage(FILE *f, int rc)
{
    fprintf(f, "usage: eopt plot RUN_DIR... -o FILE.png [--title TEXT]\n"
               "  loss curves of one or more runs against the step: train loss (thin) and eval loss\n"
               "  (bold, with points), drawn with gnuplot (Debian: apt-get install gnuplot-nox)\n"
               "  -o FILE.png     the image to write\n"
               "  --title TEXT    the plot's title (default: \"loss\")\n");
    return rc;
}

/* A string for a gnuplot double-quoted literal. */
static void quoted(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

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
    quoted(g, out);
    fprintf(g, "\nset title font ',15' ");
    quoted(g, title);
    fprintf(g, "\nset xlabel 'step'\nset ylabel 'loss'\nset grid lc rgb '#dddddd'\nset key top right box opaque\n"
               "set border 3\nset tics nomirror\nplot ");
    for (int k = 0; k < n; k++) {
        const char *c = colors[k % 8];
        fprintf(g, "%s$train%d using 1:2 with lines lw 0.8 lc rgb '#70%s' title ", k ? ", " : "", k, c);
        char t[300];
        snprintf(t, sizeof t, "%s train", runs[k].name);
        quoted(g, t);
        if (runs[k].ne > 0) {
            snprintf(t, sizeof t, "%s eval", runs[k].name);
            fprintf(g, ", $eval%d using 1:2 with linespoints lw 2.5 pt 7 ps 0.9 lc rgb '#%s' title ", k, c);
            quoted(g, t);
        }
    }
    fprintf(g, "\n");
}

int eopt_cmd_plot(int argc, char **argv)
{
    const char *out = NULL, *title = "loss";
    int n = 0, rc = 0;
    eopt_run_metrics *runs = calloc((size_t)argc, sizeof *runs);
    if (!runs)
        return 1;
    for (int k = 1; k < argc && rc == 0; k++) {
        char err[1200];
        if (strcmp(argv[k], "-o") == 0 && k + 1 < argc)
            out = argv[++k];
        else if (strcmp(argv[k], "--title") == 0 && k + 1 < argc)
            title = argv[++k];
        else if (strcmp(argv[k], "-h") == 0 || strcmp(argv[k], "--help") == 0)
            rc = -usage(stdout, 0) - 1;
        else if (argv[k][0] == '-') {
            fprintf(stderr, "eopt plot: unknown option '%s' (or a missing value)\n", argv[k]);
            rc = usage(stderr, 2);
        } else if (eopt_run_metrics_read(argv[k], &runs[n], err, sizeof err) != 0) {
            fprintf(stderr, "eopt plot: %s\n", err);
            rc = 1;
        } else
            n++;
    }
    if (rc == 0 && (n == 0 || !out))
        rc = usage(stderr, 2);
    if (rc == 0 && system("command -v gnuplot >/dev/null 2>&1") != 0) {
        fprintf(stderr, "eopt plot: gnuplot is not installed; on Debian or Ubuntu: sudo apt-get install gnuplot-nox\n");
        rc = 1;
    }
    if (rc == 0) {
        FILE *g = popen("gnuplot", "w");
        if (!g) {
            perror("eopt plot: gnuplot");
            rc = 1;
        } else {
            write_script(g, runs, n, out, title);
            int st = pclose(g);
            if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                fprintf(stderr, "eopt plot: gnuplot failed (its messages are above)\n");
                rc = 1;
            } else
                printf("wrote %s (%d run%s)\n", out, n, n > 1 ? "s" : "");
        }
    }
    for (int k = 0; k < n; k++)
        eopt_run_metrics_free(&runs[k]);
    free(runs);
    return rc < 0 ? 0 : rc;
}
