/* `eopt report STUDY_DIR [-o OUT_DIR]`: a study's summary table (train/report.h) as
 * OUT_DIR/summary.md and summary.csv, and its plots drawn by gnuplot: final eval loss against
 * the learning rate (the stability window), and per line group (the `--by` axes: an optimizer,
 * a softening value) the loss curves and the diagnostics over time, one line per configuration. */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "gnuplot.h"
#include "train/report.h"
#include "train/run_dir.h"

#define MAX_LINES 8  /* lines per plot: one color each */
#define MAX_PANELS 6 /* panels of the learning-rate plot */
#define NBINS 100    /* loss curves: the train loss averaged over this many spans of steps */

typedef struct {
    const eopt_report *r;
    const char *out;
    FILE *md;          /* the plots' section of summary.md, written as they are drawn */
    char notes[4096];  /* what was skipped, and why */
    int nplots, failed;
} plotter;

static void note(plotter *p, const char *fmt, const char *arg)
{
    size_t len = strlen(p->notes);
    snprintf(p->notes + len, sizeof p->notes - len, "- ");
    len = strlen(p->notes);
    snprintf(p->notes + len, sizeof p->notes - len, fmt, arg);
    len = strlen(p->notes);
    snprintf(p->notes + len, sizeof p->notes - len, "\n");
}

static const eopt_report_value *setting(const eopt_report *r, int config, int axis)
{
    return &r->runs[r->configs[config].first].values[axis];
}

static int is_by(const eopt_report *r, int axis)
{
    for (int k = 0; k < r->nby; k++)
        if (r->by[k] == axis)
            return 1;
    return 0;
}

/* "label=value, ..." over the `by` axes (by = 1: the line group) or the others but the seed
 * (by = 0: a configuration within its group). */
static void describe(const eopt_report *r, int config, int by, char *buf, size_t size)
{
    size_t len = 0;
    buf[0] = 0;
    for (int a = 0; a < r->naxes && len < size; a++)
        if (a != r->seed_axis && is_by(r, a) == by)
            len += (size_t)snprintf(buf + len, size - len, "%s%s=%s", len ? ", " : "", r->labels[a],
                                    setting(r, config, a)->text);
    if (!buf[0])
        snprintf(buf, size, "%s", by ? "all runs" : "runs");
}

/* Whether configurations a and b share their values on the `by` axes (one line group). */
static int same_group(const eopt_report *r, int a, int b)
{
    for (int k = 0; k < r->nby; k++)
        if (strcmp(setting(r, a, r->by[k])->text, setting(r, b, r->by[k])->text) != 0)
            return 0;
    return 1;
}

/* The group's configurations [first, end) thinned to at most MAX_LINES, evenly spread. */
static int pick_lines(int first, int end, int *pick)
{
    int n = end - first, m = n < MAX_LINES ? n : MAX_LINES;
    for (int k = 0; k < m; k++)
        pick[k] = first + (m > 1 ? (int)lround((double)k * (n - 1) / (m - 1)) : 0);
    return m;
}

static FILE *begin_png(plotter *p, const char *file, int width, int height)
{
    char path[1400];
    snprintf(path, sizeof path, "%s/%s", p->out, file);
    FILE *g = eopt_gnuplot_open("eopt report");
    if (!g)
        return p->failed = 1, NULL;
    fprintf(g, "set terminal pngcairo noenhanced size %d,%d font 'sans,11' linewidth 1.4\nset output ", width, height);
    eopt_gnuplot_quoted(g, path);
    fprintf(g, "\nset grid lc rgb '#dddddd'\nset border 3\nset tics nomirror\n");
    return g;
}

static void end_png(plotter *p, FILE *g, const char *file, const char *caption)
{
    if (eopt_gnuplot_close(g, "eopt report") != 0) {
        p->failed = 1;
        return;
    }
    fprintf(p->md, "### %s\n\n![%s](%s)\n\n", caption, caption, file);
    p->nplots++;
}

static void title(FILE *g, const char *what, const char *text)
{
    fprintf(g, "set %s ", what);
    eopt_gnuplot_quoted(g, text);
    fprintf(g, "\n");
}

/* ---- final eval loss against the learning rate ---- */

/* The `by` axis with the fewest distinct values (at least 2) makes the panels; -1: one panel. */
static int panel_axis(const eopt_report *r)
{
    int best = -1, fewest = 1 << 30;
    for (int k = 0; r->nby > 1 && k < r->nby; k++) {
        int distinct = 0;
        for (int c = 0; c < r->nconfigs; c++) {
            int seen = 0;
            for (int d = 0; d < c && !seen; d++)
                seen = strcmp(setting(r, c, r->by[k])->text, setting(r, d, r->by[k])->text) == 0;
            distinct += !seen;
        }
        if (distinct >= 2 && distinct < fewest)
            best = r->by[k], fewest = distinct;
    }
    return best;
}

/* Whether configurations [c, end of its group) have a final loss (what = 0) or a diverged run. */
static int group_has(const eopt_report *r, int c, int diverged)
{
    for (int d = c; d < r->nconfigs && same_group(r, c, d); d++)
        if (diverged ? r->configs[d].diverged > 0 : isfinite(r->configs[d].final_mean))
            return 1;
    return 0;
}

/* One panel: a line per group whose panel value is that of configuration `c0`; the diverged
 * configurations drawn at the top, each line's a little lower than the previous one's. */
static void lr_panel(plotter *p, FILE *g, int c0, int panel, double top, double step)
{
    const eopt_report *r = p->r;
    char text[512];
    int line = 0;
    if (panel >= 0) {
        snprintf(text, sizeof text, "%s = %s", r->labels[panel], setting(r, c0, panel)->text);
        title(g, "title", text);
    }
    fprintf(g, "plot NaN with points pt 9 ps 2 lc rgb '#555555' title 'diverged (drawn at the top)'");
    for (int c = 0; c < r->nconfigs; c++) {
        if ((panel >= 0 && strcmp(setting(r, c, panel)->text, setting(r, c0, panel)->text) != 0) ||
            (c > 0 && same_group(r, c, c - 1)))
            continue;
        const char *color = eopt_gnuplot_colors[line % EOPT_GNUPLOT_NCOLORS];
        size_t len = 0;
        text[0] = 0;
        for (int k = 0; k < r->nby; k++)
            if (r->by[k] != panel)
                len += (size_t)snprintf(text + len, sizeof text - len, "%s%s=%s", len ? ", " : "",
                                        r->labels[r->by[k]], setting(r, c, r->by[k])->text);
        int finals = group_has(r, c, 0), diverged = group_has(r, c, 1);
        const char *name = text[0] ? text : "final eval loss";
        if (finals) {
            fprintf(g, ", $m%d using 1:2:3 with yerrorlines lw 2 pt 7 ps 1 lc rgb '#%s' title ", c, color);
            eopt_gnuplot_quoted(g, name);
        }
        if (diverged) {
            fprintf(g, ", $d%d using 1:(%.9g) with points pt 9 ps 2 lc rgb '#%s' %s", c, top - line * step, color,
                    finals ? "notitle" : "title ");
            if (!finals)
                eopt_gnuplot_quoted(g, name);
        }
        line++;
    }
    fprintf(g, "\n");
}

static void lr_plot(plotter *p)
{
    const eopt_report *r = p->r;
    const int x = r->x_axis;
    double lo = INFINITY, hi = -INFINITY, xmin = INFINITY, xmax = -INFINITY;
    int groups = 0;
    for (int c = 0; c < r->nconfigs; c++) {
        groups += c == 0 || !same_group(r, c, c - 1);
        const eopt_report_config *cf = &r->configs[c];
        double s = isfinite(cf->final_std) ? cf->final_std : 0;
        if (!setting(r, c, x)->is_num)
            return note(p, "no learning-rate plot: the values of %s are not all numbers", r->axes[x]);
        xmin = fmin(xmin, setting(r, c, x)->num), xmax = fmax(xmax, setting(r, c, x)->num);
        if (isfinite(cf->final_mean))
            lo = fmin(lo, cf->final_mean - s), hi = fmax(hi, cf->final_mean + s);
    }
    if (!isfinite(lo))
        lo = 0, hi = 1;
    double span = hi > lo ? hi - lo : fmax(fabs(hi) * 0.1, 0.1), step = 0.04 * span;
    double top = hi + 0.08 * span + step * ((groups < MAX_LINES ? groups : MAX_LINES) - 1);
    int panel = panel_axis(r), npanels = 0, first[MAX_PANELS];
    for (int c = 0; c < r->nconfigs && npanels < MAX_PANELS; c++) {
        int seen = 0;
        for (int k = 0; k < npanels && panel >= 0; k++)
            seen |= strcmp(setting(r, c, panel)->text, setting(r, first[k], panel)->text) == 0;
        if (!seen && (panel >= 0 || npanels == 0))
            first[npanels++] = c;
    }
    int cols = npanels < 2 ? 1 : 2, rows = (npanels + cols - 1) / cols;
    FILE *g = begin_png(p, "lr.png", cols == 1 ? 900 : 1300, 60 + 500 * rows);
    if (!g)
        return;
    for (int c = 0; c < r->nconfigs; c++) { /* per group: its configurations, sorted by x */
        fprintf(g, "$m%d << EOD\n", c);
        for (int d = c; d < r->nconfigs && same_group(r, c, d); d++)
            if (isfinite(r->configs[d].final_mean))
                fprintf(g, "%.9g %.9g %.9g\n", setting(r, d, x)->num, r->configs[d].final_mean,
                        isfinite(r->configs[d].final_std) ? r->configs[d].final_std : 0.0);
        fprintf(g, "EOD\n$d%d << EOD\n", c);
        for (int d = c; d < r->nconfigs && same_group(r, c, d); d++)
            if (r->configs[d].diverged)
                fprintf(g, "%.9g\n", setting(r, d, x)->num);
        fprintf(g, "EOD\n");
    }
    if (xmin > 0)
        fprintf(g, "set logscale x\nset xrange [%.9g:%.9g]\n", xmin / 1.5, xmax * 1.5);
    else
        fprintf(g, "set xrange [%.9g:%.9g]\n", xmin - 0.05 * (xmax - xmin) - 1e-9, xmax + 0.05 * (xmax - xmin) + 1e-9);
    fprintf(g, "set yrange [%.9g:%.9g]\nset key below\n", lo - 0.08 * span, top + 0.05 * span);
    title(g, "xlabel", r->axes[x]);
    title(g, "ylabel", "final eval loss (mean ± std over seeds)");
    char head[512];
    snprintf(head, sizeof head, "%s: final eval loss against %s", r->name, r->labels[x]);
    fprintf(g, "set multiplot layout %d,%d title ", rows, cols);
    eopt_gnuplot_quoted(g, head);
    fprintf(g, " font ',14'\n");
    for (int k = 0; k < npanels; k++)
        lr_panel(p, g, first[k], panel, top, step);
    fprintf(g, "unset multiplot\n");
    if (panel >= 0 && npanels == MAX_PANELS)
        note(p, "the learning-rate plot shows the first %s panels", "6");
    end_png(p, g, "lr.png", "Final eval loss against the learning rate (the stability window)");
}

/* ---- per line group: loss curves and diagnostics over time ---- */

/* The train loss of configuration c averaged per span of `width` steps, per run, then over its
 * runs: mean, min and max per span (NaN where no run has a value). */
static void loss_bands(const eopt_report *r, int c, int64_t width, double *mean, double *lo, double *hi)
{
    const eopt_report_config *cf = &r->configs[c];
    double sum[NBINS], cnt[NBINS];
    int runs[NBINS];
    for (int b = 0; b < NBINS; b++)
        mean[b] = 0, lo[b] = INFINITY, hi[b] = -INFINITY, runs[b] = 0;
    for (int k = 0; k < cf->nruns; k++) {
        const eopt_run_metrics *m = &r->runs[cf->runs[k]].m;
        memset(sum, 0, sizeof sum), memset(cnt, 0, sizeof cnt);
        for (int i = 0; i < m->n; i++) {
            int64_t b = (m->step[i] - 1) / width;
            if (b >= 0 && b < NBINS && isfinite(m->train[i]))
                sum[b] += m->train[i], cnt[b]++;
        }
        for (int b = 0; b < NBINS; b++)
            if (cnt[b] > 0) {
                double v = sum[b] / cnt[b];
                mean[b] += v, lo[b] = fmin(lo[b], v), hi[b] = fmax(hi[b], v), runs[b]++;
            }
    }
    for (int b = 0; b < NBINS; b++)
        if (runs[b])
            mean[b] /= runs[b];
        else
            mean[b] = lo[b] = hi[b] = NAN;
}

static int64_t last_step(const eopt_report *r, const int *pick, int n)
{
    int64_t last = 1;
    for (int k = 0; k < n; k++) {
        const eopt_report_config *cf = &r->configs[pick[k]];
        for (int j = 0; j < cf->nruns; j++) {
            const eopt_run_metrics *m = &r->runs[cf->runs[j]].m;
            int64_t s = m->steps > 0 ? m->steps : m->n ? m->step[m->n - 1] : 0;
            last = s > last ? s : last;
        }
    }
    return last;
}

static void loss_plot(plotter *p, const int *pick, int n, const char *file, const char *group)
{
    const eopt_report *r = p->r;
    int64_t last = last_step(r, pick, n), width = (last + NBINS - 1) / NBINS;
    double mean[NBINS], lo[NBINS], hi[NBINS], ymin = INFINITY, ymax = -INFINITY, yall = -INFINITY;
    int spikes[MAX_LINES], bands[MAX_LINES];
    FILE *g = begin_png(p, file, 1000, 600);
    if (!g)
        return;
    for (int k = 0; k < n; k++) {
        const eopt_report_config *cf = &r->configs[pick[k]];
        loss_bands(r, pick[k], width, mean, lo, hi);
        fprintf(g, "$b%d << EOD\n", k);
        bands[k] = 0;
        for (int b = 0; b < NBINS; b++)
            if (isfinite(mean[b])) {
                bands[k]++;
                fprintf(g, "%.9g %.9g %.9g %.9g\n", (b + 0.5) * (double)width, mean[b], lo[b], hi[b]);
                ymin = fmin(ymin, lo[b]), yall = fmax(yall, hi[b]);
                if (b > 0 && cf->diverged == 0) /* the first span (the initial drop) and diverged runs set no range */
                    ymax = fmax(ymax, hi[b]);
            }
        fprintf(g, "EOD\n$s%d << EOD\n", k);
        spikes[k] = 0;
        for (int j = 0; j < cf->nruns; j++) {
            const eopt_run_metrics *m = &r->runs[cf->runs[j]].m;
            for (int i = 0; i < m->nspike; i++)
                if (isfinite(m->spike_loss[i]))
                    fprintf(g, "%lld %.9g\n", (long long)m->spike_step[i], m->spike_loss[i]), spikes[k]++;
        }
        fprintf(g, "EOD\n$x%d << EOD\n", k);
        for (int j = 0; j < cf->nruns; j++)
            if (r->runs[cf->runs[j]].state == EOPT_RUN_DIVERGED)
                fprintf(g, "%lld\n", (long long)r->runs[cf->runs[j]].step);
        fprintf(g, "EOD\n");
    }
    if (!isfinite(ymax))
        ymax = yall;
    double span = ymax > ymin ? ymax - ymin : 1, top = ymax + 0.1 * span;
    char head[1024];
    snprintf(head, sizeof head, "%s: train loss, %s (band: min-max over seeds)", r->name, group);
    title(g, "title", head);
    fprintf(g, "set xlabel 'step'\nset ylabel 'train loss (mean per %lld steps)'\nset xrange [0:%lld]\n"
               "set yrange [%.9g:%.9g]\nset key top right box opaque\nset style fill transparent solid 0.18 noborder\n",
            (long long)width, (long long)last, ymin - 0.05 * span, top + 0.04 * span);
    fprintf(g, "plot NaN with points pt 6 ps 1.6 lw 2 lc rgb '#555555' title 'spike', NaN with points pt 2 ps 2.2 lw 2.5 "
               "lc rgb '#555555' title 'diverged (at its step)'");
    for (int k = 0; k < n; k++) {
        const char *color = eopt_gnuplot_colors[k % EOPT_GNUPLOT_NCOLORS];
        char t[512];
        describe(r, pick[k], 0, t, sizeof t);
        if (bands[k]) {
            fprintf(g, ", $b%d using 1:3:4 with filledcurves lc rgb '#%s' notitle, $b%d using 1:2 with lines lw 2 lc rgb '#%s' title ",
                    k, color, k, color);
            eopt_gnuplot_quoted(g, t);
        }
        if (spikes[k]) /* spikes above the range are drawn at its top */
            fprintf(g, ", $s%d using 1:($2 < %.9g ? $2 : %.9g) with points pt 6 ps 1.6 lw 2 lc rgb '#%s' notitle", k,
                    top, top, color);
        if (r->configs[pick[k]].diverged)
            fprintf(g, ", $x%d using 1:(%.9g) with points pt 2 ps 2.2 lw 2.5 lc rgb '#%s' notitle", k, top, color);
    }
    fprintf(g, "\n");
    char caption[600];
    snprintf(caption, sizeof caption, "Loss curves: %s", group);
    end_png(p, g, file, caption);
}

typedef struct {
    const char *label;
    size_t offset; /* of the series in eopt_run_metrics */
    int log;
} diag_series;

static const diag_series diag_kinds[] = {
    {"largest weight spectral norm (max over matrices)", offsetof(eopt_run_metrics, weight_sn), 1},
    {"largest update spectral norm (max over matrices)", offsetof(eopt_run_metrics, update_sn), 1},
    {"largest attention logit (max over layers)", offsetof(eopt_run_metrics, attn_logit), 0},
};

static const double *series_of(const eopt_run_metrics *m, const diag_series *d)
{
    return *(double *const *)((const char *)m + d->offset);
}

/* Whether any run of the picked configurations has a usable value of series d. */
static int has_series(const eopt_report *r, const int *pick, int n, const diag_series *d)
{
    for (int k = 0; k < n; k++) {
        const eopt_report_config *cf = &r->configs[pick[k]];
        for (int j = 0; j < cf->nruns; j++) {
            const eopt_run_metrics *m = &r->runs[cf->runs[j]].m;
            for (int i = 0; i < m->nd; i++)
                if (isfinite(series_of(m, d)[i]) && (!d->log || series_of(m, d)[i] > 0))
                    return 1;
        }
    }
    return 0;
}

static int compare_steps(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* The series' mean over configuration c's runs at each step where one of them has a value;
 * the number of points written. */
static int diag_block(FILE *g, const eopt_report *r, int c, const diag_series *d)
{
    const eopt_report_config *cf = &r->configs[c];
    int total = 0, n = 0, points = 0;
    for (int j = 0; j < cf->nruns; j++)
        total += r->runs[cf->runs[j]].m.nd;
    int64_t *at = malloc((size_t)total * sizeof *at + 1);
    for (int j = 0; at && j < cf->nruns; j++) {
        const eopt_run_metrics *m = &r->runs[cf->runs[j]].m;
        for (int q = 0; q < m->nd; q++)
            if (isfinite(series_of(m, d)[q]) && (!d->log || series_of(m, d)[q] > 0))
                at[n++] = m->dstep[q];
    }
    if (at)
        qsort(at, (size_t)n, sizeof *at, compare_steps);
    for (int i = 0; i < n; i++) {
        if (i > 0 && at[i] == at[i - 1])
            continue;
        double sum = 0;
        int cnt = 0;
        for (int j = 0; j < cf->nruns; j++) {
            const eopt_run_metrics *m = &r->runs[cf->runs[j]].m;
            for (int q = 0; q < m->nd; q++)
                if (m->dstep[q] == at[i] && isfinite(series_of(m, d)[q]) && (!d->log || series_of(m, d)[q] > 0))
                    sum += series_of(m, d)[q], cnt++;
        }
        fprintf(g, "%lld %.9g\n", (long long)at[i], sum / cnt);
        points++;
    }
    free(at);
    return points;
}

static void diag_plot(plotter *p, const int *pick, int n, const char *file, const char *group)
{
    const eopt_report *r = p->r;
    int kinds[3], nk = 0;
    for (int k = 0; k < 3; k++)
        if (has_series(r, pick, n, &diag_kinds[k]))
            kinds[nk++] = k;
    if (nk == 0)
        return note(p, "no diagnostics plot for %s: its runs have no diagnostics lines (log.diagnostics_interval)", group);
    FILE *g = begin_png(p, file, 560 * nk, 480);
    if (!g)
        return;
    int points[3][MAX_LINES];
    for (int q = 0; q < nk; q++)
        for (int k = 0; k < n; k++) {
            fprintf(g, "$d%d_%d << EOD\n", q, k);
            points[q][k] = diag_block(g, r, pick[k], &diag_kinds[kinds[q]]);
            fprintf(g, "EOD\n");
        }
    char head[1024];
    snprintf(head, sizeof head, "%s: diagnostics, %s (mean over seeds)", r->name, group);
    fprintf(g, "set multiplot layout 1,%d title ", nk);
    eopt_gnuplot_quoted(g, head);
    fprintf(g, " font ',13'\nset xlabel 'step'\nset key top left box opaque font ',9'\n");
    for (int q = 0; q < nk; q++) {
        const diag_series *d = &diag_kinds[kinds[q]];
        title(g, "title", d->label);
        fprintf(g, "%s\nplot ", d->log ? "set logscale y" : "unset logscale y");
        for (int k = 0, first = 1; k < n; k++) {
            if (!points[q][k])
                continue;
            char t[512];
            describe(r, pick[k], 0, t, sizeof t);
            fprintf(g, "%s$d%d_%d using 1:2 with linespoints lw 1.8 pt 7 ps 0.5 lc rgb '#%s' title ", first ? "" : ", ", q, k,
                    eopt_gnuplot_colors[k % EOPT_GNUPLOT_NCOLORS]);
            first = 0;
            eopt_gnuplot_quoted(g, t);
        }
        fprintf(g, "\n");
    }
    fprintf(g, "unset multiplot\n");
    char caption[600];
    snprintf(caption, sizeof caption, "Diagnostics: %s", group);
    end_png(p, g, file, caption);
}

/* A plot's file name: kind, index and the group's values, keeping letters, digits, '.', '-', '_'. */
static void file_name(const eopt_report *r, const char *kind, int index, int c, char *buf, size_t size)
{
    int len = snprintf(buf, size, "%s-%02d", kind, index);
    for (int k = 0; k < r->nby; k++) {
        buf[len++] = '-';
        for (const char *s = setting(r, c, r->by[k])->text; *s && len + 5 < (int)size; s++) {
            char ch = *s;
            int keep = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' || ch == '_';
            buf[len++] = keep ? ch : '-';
        }
        if (len + 5 >= (int)size)
            break;
    }
    snprintf(buf + len, size - (size_t)len, ".png");
}

static void group_plots(plotter *p)
{
    const eopt_report *r = p->r;
    int index = 0;
    for (int c = 0; c < r->nconfigs; index++) {
        int end = c + 1, pick[MAX_LINES];
        while (end < r->nconfigs && same_group(r, c, end))
            end++;
        int n = pick_lines(c, end, pick), has_steps = 0;
        char group[512], file[600];
        describe(r, c, 1, group, sizeof group);
        if (end - c > n)
            note(p, "%s: the loss and diagnostics plots show 8 of its configurations, evenly spread", group);
        for (int k = c; k < end; k++)
            for (int j = 0; j < r->configs[k].nruns; j++)
                has_steps |= r->runs[r->configs[k].runs[j]].m.n > 0;
        file_name(r, "loss", index, c, file, sizeof file);
        if (has_steps)
            loss_plot(p, pick, n, file, group);
        else
            note(p, "no loss plot for %s: none of its runs has recorded a step", group);
        file_name(r, "diag", index, c, file, sizeof file);
        diag_plot(p, pick, n, file, group);
        c = end;
    }
}

/* ---- the command ---- */

static int run(int argc, char **argv);

static const eopt_option options[] = {
    {"-o", "OUT_DIR", "the folder to write into (default: STUDY_DIR/report)"},
    {"--x", "AXIS", "the axis along x in the learning-rate plot (a config path, or its last components; "
                    "default: the axis whose path ends in lr)"},
    {"--by", "AXES", "comma-separated axes that tell the plots' lines apart (default: every axis but the seed and x)"},
    {0}};

const eopt_command eopt_cmd_report = {
    "report", "STUDY_DIR",
    "a study's results: a summary table per configuration over seeds (summary.md, summary.csv) and plots "
    "(final loss against the learning rate, loss curves, diagnostics), drawn with gnuplot",
    "Reads STUDY_DIR/study.json and each run's outcome.json, run.json and metrics.jsonl (docs/studies.md). "
    "Plots need gnuplot (Debian: apt-get install gnuplot-nox); without it only the tables are written.",
    options, run};

static void write_runs_left(const eopt_report *r, FILE *f)
{
    int any = 0;
    for (int k = 0; k < r->nruns; k++) {
        const eopt_report_run *run = &r->runs[k];
        if (run->state == EOPT_RUN_FINISHED)
            continue;
        if (!any++)
            fprintf(f, "\n## Runs not finished\n\n| run | state | step | reason |\n|---|---|---:|---|\n");
        fprintf(f, "| %s | %s | %lld | %s |\n", run->name, eopt_run_state_name(run->state), (long long)run->step,
                run->reason);
    }
}

static void write_header(const eopt_report *r, FILE *f)
{
    int state[EOPT_RUN_FAILED + 1] = {0}, threads = 0, mixed = 0;
    for (int k = 0; k < r->nruns; k++) {
        state[r->runs[k].state]++;
        if (r->runs[k].threads)
            mixed |= threads && threads != r->runs[k].threads, threads = r->runs[k].threads;
    }
    fprintf(f, "# Study %s\n\n%d runs in %d configurations:", r->name, r->nruns, r->nconfigs);
    for (int s = 0; s <= EOPT_RUN_FAILED; s++)
        if (state[s])
            fprintf(f, " %d %s,", state[s], eopt_run_state_name((eopt_run_state)s));
    fprintf(f, " over %s.\n\n", r->seed_axis >= 0 ? r->axes[r->seed_axis] : "no seed axis");
    fprintf(f, "Final and best eval loss: mean ± sample std over the n finished runs of a configuration; spikes and "
               "tokens/s over all its runs%s.\n\n",
            threads && !mixed ? "" : " (runs used different thread counts)");
}

static int write_tables(const eopt_report *r, const char *out, FILE **md)
{
    char path[1400];
    snprintf(path, sizeof path, "%s/summary.csv", out);
    FILE *csv = fopen(path, "w");
    eopt_status st = csv ? eopt_report_write_csv(r, csv) : eopt_fail(EOPT_ERR_IO, "cannot write %s", path);
    if (csv && fclose(csv) != 0 && st == EOPT_OK)
        st = eopt_fail(EOPT_ERR_IO, "cannot write %s", path);
    snprintf(path, sizeof path, "%s/summary.md", out);
    *md = st == EOPT_OK ? fopen(path, "w") : NULL;
    if (st == EOPT_OK && !*md)
        st = eopt_fail(EOPT_ERR_IO, "cannot write %s", path);
    if (st == EOPT_OK) {
        write_header(r, *md);
        st = eopt_report_write_md(r, *md);
        write_runs_left(r, *md);
        fprintf(*md, "\n## Plots\n\n");
    }
    if (st != EOPT_OK)
        fprintf(stderr, "eopt report: %s\n", eopt_last_error());
    return st != EOPT_OK;
}

static int report(const char *dir, const char *out, const char *x, const char *by)
{
    eopt_report r;
    if (eopt_report_load(dir, x, by, &r) != EOPT_OK) {
        fprintf(stderr, "eopt report: %s\n", eopt_last_error());
        return 1;
    }
    char def[1100];
    snprintf(def, sizeof def, "%s/report", dir);
    out = out ? out : def;
    FILE *md = NULL;
    int rc = eopt_make_dirs(out) != EOPT_OK;
    if (rc)
        fprintf(stderr, "eopt report: %s\n", eopt_last_error());
    rc = rc || write_tables(&r, out, &md);
    plotter p = {&r, out, md, "", 0, 0};
    if (rc == 0 && !eopt_gnuplot_present()) {
        note(&p, "no plots: %s is not installed (Debian: apt-get install gnuplot-nox)", "gnuplot");
        fprintf(stderr, "eopt report: gnuplot is not installed; only the tables are written\n");
    } else if (rc == 0) {
        if (r.x_axis >= 0)
            lr_plot(&p);
        else
            note(&p, "no learning-rate plot: no axis ends in %s (--x AXIS names one)", "lr");
        group_plots(&p);
    }
    if (md) {
        fprintf(md, "%s%s", p.notes[0] ? "Skipped:\n\n" : "", p.notes);
        rc |= fclose(md) != 0;
    }
    rc |= p.failed;
    if (rc == 0)
        printf("wrote %s/summary.md, summary.csv and %d plot%s (%d configurations, %d runs)\n", out, p.nplots,
               p.nplots == 1 ? "" : "s", r.nconfigs, r.nruns);
    eopt_report_free(&r);
    return rc;
}

static int run(int argc, char **argv)
{
    const char *dir = NULL, *out = NULL, *x = NULL, *by = NULL;
    eopt_args a;
    eopt_args_init(&a, &eopt_cmd_report, argc, argv);
    for (int id; (id = eopt_args_next(&a)) != EOPT_ARGS_END;) {
        if (id == EOPT_ARGS_EXIT)
            return a.status;
        if (id == EOPT_ARGS_POS) {
            if (dir)
                return eopt_usage_error(&eopt_cmd_report, "one study folder only (%s, then %s)", dir, a.val[0]);
            dir = a.val[0];
        } else if (strcmp(options[id].name, "-o") == 0)
            out = a.val[0];
        else if (strcmp(options[id].name, "--x") == 0)
            x = a.val[0];
        else
            by = a.val[0];
    }
    if (!dir)
        return eopt_usage_error(&eopt_cmd_report, "no study folder");
    return report(dir, out, x, by);
}
