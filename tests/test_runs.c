/* Run folders, the record of a run and its metrics (issue 15): the resolved config, refusing to
 * mix runs, resuming checks, metrics cut back on resume, contradicting settings refused. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "checkpoint/checkpoint.h"
#include "framework/log.h"
#include "train/config.h"
#include "train/trainer.h"

static eopt_config cfg_a, cfg_b; /* large */

/* The resolved config of every shipped config reads back to itself. */
Test(run_config, resolved_config_reads_back_as_is)
{
    FILE *ls = popen("ls configs/*.cfg 2>/dev/null", "r");
    cr_assert(ls);
    char path[512];
    int n = 0;
    while (fgets(path, sizeof path, ls)) {
        path[strcspn(path, "\n")] = 0;
        const char *sets[] = {"run.steps=50", "optimizers.[0].schedule.warmup=5"};
        cr_assert_eq(eopt_config_load(path, 2, sets, &cfg_a), EOPT_OK, "%s: %s", path, eopt_last_error());
        char *t1 = eopt_config_text(&cfg_a);
        cr_assert(t1);
        cr_assert_eq(eopt_config_parse(t1, "resolved.cfg", 0, NULL, &cfg_b), EOPT_OK, "%s: %s\n%s", path,
                     eopt_last_error(), t1);
        char *t2 = eopt_config_text(&cfg_b);
        cr_expect_str_eq(t1, t2, "%s", path);
        cr_expect_eq(cfg_b.run.steps, 50);
        cr_expect_eq(cfg_b.opts[0].sched.lr.warmup, 5);
        cr_expect_eq(cfg_b.nopt, cfg_a.nopt);
        for (int o = 0; o < cfg_a.nopt; o++) {
            cr_expect_eq(cfg_b.opts[o].ngroups, cfg_a.opts[o].ngroups);
            cr_expect_eq(cfg_b.opts[o].sched.nramps, cfg_a.opts[o].sched.nramps);
            for (int g = 0; g < cfg_a.opts[o].ngroups; g++)
                cr_expect_eq(cfg_b.opts[o].sched.base_lr[g], cfg_a.opts[o].sched.base_lr[g]);
        }
        cr_expect_str_eq(cfg_b.checkpoint.dir, cfg_a.checkpoint.dir);
        free(t1);
        free(t2);
        n++;
    }
    pclose(ls);
    cr_expect_geq(n, 1);
}
