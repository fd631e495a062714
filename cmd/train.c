/* `eopt train CONFIG [--set PATH=VALUE]... [--run-dir DIR] [--resume FILE|auto] [--force] [--dry-run]
 * [--init FILE [--init-optimizer]]`: loads the configuration and runs eopt_train; SIGINT/SIGTERM
 * checkpoint and exit cleanly. --run-dir sets checkpoint.dir (and the metrics file, unless the
 * config names one); otherwise a run with overrides goes to runs/<config>-<hash of the overrides>. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "../train/trainer.h"

static volatile sig_atomic_t caught;

static void on_signal(int sig)
{
    caught = sig;
    eopt_train_interrupt();
}

static int usage(void)
{
    fprintf(stderr, "usage: eopt train CONFIG [--set PATH=VALUE]... [--run-dir DIR] [--resume FILE|auto] [--force] "
                    "[--dry-run] [--init FILE [--init-optimizer]]\n");
    return 2;
}

/* --run-dir: the run's folder, and its metrics file where the config left it at the default. */
static int set_run_dir(eopt_config *cfg, const char *dir)
{
    char def[sizeof cfg->checkpoint.dir + 16];
    snprintf(def, sizeof def, "%s/metrics.jsonl", cfg->checkpoint.dir);
    if (strlen(dir) + 16 >= sizeof cfg->checkpoint.dir) {
        fprintf(stderr, "eopt train: --run-dir %s: the path is too long\n", dir);
        return 1;
    }
    if (strcmp(cfg->log.metrics, def) == 0)
        snprintf(cfg->log.metrics, sizeof cfg->log.metrics, "%s/metrics.jsonl", dir);
    snprintf(cfg->checkpoint.dir, sizeof cfg->checkpoint.dir, "%s", dir);
    return 0;
}

int eopt_cmd_train(int argc, char **argv)
{
    const char *path = NULL, *sets[64], *run_dir = NULL;
    int nset = 0;
    eopt_train_options o = {0};
    for (int k = 1; k < argc; k++) {
        const char *a = argv[k];
        if (strcmp(a, "--set") == 0 && k + 1 < argc && nset < 64)
            sets[nset++] = argv[++k];
        else if (strncmp(a, "--set=", 6) == 0 && nset < 64)
            sets[nset++] = a + 6;
        else if (strcmp(a, "--resume") == 0 && k + 1 < argc)
            o.resume = argv[++k];
        else if (strcmp(a, "--init") == 0 && k + 1 < argc)
            o.init = argv[++k];
        else if (strcmp(a, "--init-optimizer") == 0)
            o.init_optimizer = 1;
        else if (strcmp(a, "--run-dir") == 0 && k + 1 < argc)
            run_dir = argv[++k];
        else if (strcmp(a, "--force") == 0)
            o.force = 1;
        else if (strcmp(a, "--dry-run") == 0)
            o.dry_run = 1;
        else if (a[0] != '-' && !path)
            path = a;
        else
            return usage();
    }
    if (!path || (o.resume && o.init) || (o.init_optimizer && !o.init))
        return usage();

    static eopt_config cfg; /* large: keep it off the stack */
    eopt_status st = eopt_config_load(path, nset, sets, &cfg);
    if (st != EOPT_OK) {
        fprintf(stderr, "eopt train: %s\n", eopt_last_error());
        return 2;
    }
    if (run_dir && set_run_dir(&cfg, run_dir) != 0)
        return 2;
    char command[4096];
    int n = 0;
    for (int k = -1; k < argc && n < (int)sizeof command; k++) /* "eopt train ..." */
        n += snprintf(command + n, sizeof command - (size_t)n, "%s%s", k < 0 ? "eopt" : " ", k < 0 ? "" : argv[k]);
    o.command = command;
    struct sigaction sa = {0};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    eopt_train_result res;
    st = eopt_train(&cfg, &o, &res);
    if (st != EOPT_OK) {
        fprintf(stderr, "eopt train: %s\n", eopt_last_error());
        return 1;
    }
    if (o.dry_run)
        return 0;
    if (res.interrupted) /* checkpointed: exit as the signal would have, without a core */
        return 128 + caught;
    {
        printf("eval loss %.4f", res.eval_loss);
        if (cfg.model.kind == EOPT_MODEL_MLP)
            printf(", test accuracy %.2f%%", 100 * res.accuracy);
        printf(", %.0f %s/s\n", res.throughput, cfg.model.kind == EOPT_MODEL_GPT ? "tokens" : "samples");
    }
    return 0;
}
