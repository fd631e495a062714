/* Driving gnuplot (Debian's gnuplot-nox) for the commands that draw: a pipe to a gnuplot process
 * that reads the script (inline data blocks, then the plot commands). */
#ifndef EOPT_CMD_GNUPLOT_H
#define EOPT_CMD_GNUPLOT_H

#include <stdio.h>

/* Line colors (Okabe-Ito, distinguishable in color blindness), as "RRGGBB". */
#define EOPT_GNUPLOT_NCOLORS 8
extern const char *const eopt_gnuplot_colors[EOPT_GNUPLOT_NCOLORS];

/* 1 when gnuplot is on PATH. */
int eopt_gnuplot_present(void);
/* A pipe to a new gnuplot; NULL (with the reason on stderr, prefixed by `who`) if it cannot start. */
FILE *eopt_gnuplot_open(const char *who);
/* Closes the pipe and waits; 0 when gnuplot exited cleanly, else 1 (said on stderr). */
int eopt_gnuplot_close(FILE *g, const char *who);
/* Writes s as a gnuplot double-quoted literal. */
void eopt_gnuplot_quoted(FILE *g, const char *s);

#endif
