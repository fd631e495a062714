/* Driving gnuplot (gnuplot.h). */
#include "gnuplot.h"

#include <stdlib.h>
#include <sys/wait.h>

const char *const eopt_gnuplot_colors[EOPT_GNUPLOT_NCOLORS] = {"0072B2", "D55E00", "009E73", "CC79A7",
                                                               "E69F00", "56B4E9", "000000", "F0E442"};

int eopt_gnuplot_present(void) { return system("command -v gnuplot >/dev/null 2>&1") == 0; }

FILE *eopt_gnuplot_open(const char *who)
{
    FILE *g = popen("gnuplot", "w");
    if (!g)
        fprintf(stderr, "%s: cannot start gnuplot\n", who);
    return g;
}

int eopt_gnuplot_close(FILE *g, const char *who)
{
    int st = pclose(g);
    if (st == -1 || !WIFEXITED(st) || WEXITSTATUS(st) != 0) {
        fprintf(stderr, "%s: gnuplot failed (its messages are above)\n", who);
        return 1;
    }
    return 0;
}

void eopt_gnuplot_quoted(FILE *g, const char *s)
{
    fputc('"', g);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', g);
        fputc(*s, g);
    }
    fputc('"', g);
}
