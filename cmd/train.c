/* `eopt train CONFIG [options]` (the table below): loads the configuration and runs eopt_train; SIGINT/SIGTERM
 * checkpoint and exit cleanly. --run-dir sets checkpoint.dir (and the metrics file, unless the
 * config names one); otherwise a run with overrides goes to runs/<config>-<hash of the overrides>. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "../framework/comm.h"
#include "../framework/log.h"
#include "../train/trainer.h"

static volatile sig_atomic_t caught;

static void on_signal(int sig)
{
    caught = sig;
    eopt_train_interrupt();
    eopt_interrupt(); /* a checkpoint check under way stops too */
}

/* Ranks other than 0 of a data-parallel run say nothing but their errors: rank 0 logs for all. */
static void drop_log(eopt_log_level level, const char *msg, void *user) { (void)level, (void)msg, (void)user; }

/* The exit status of a run stopped by a signal: that of the signal this process caught, or, on a
 * rank the signal did not reach (another rank's stopped them all), SIGTERM's. */
static int signal_status(void) { return 128 + (caught ? caught : SIGTERM); }

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

static int run(int argc, char **argv);

static const eopt_option options[] = {
    {"--set", "PATH=VALUE",
     "replace or add one setting of the config before it is checked (repeatable): run.steps=100, "
     "optimizers.matrix.args.lr=0.01 (an optimizer by its name, or optimizers.[0]); a value that is not a "
     "libconfig number, boolean, array or list is a string"},
    {"--run-dir", "DIR",
     "the run's folder (checkpoints, metrics, the resolved config and run record); default: checkpoint.dir, "
     "which is runs/<config name>, or runs/<config name>-<hash of the --set overrides> with overrides"},
    {"--resume", "FILE|auto",
     "continue from a checkpoint: model, optimizer state, schedules, data position and random state, so that "
     "the run goes on bit for bit; auto takes the newest step_*.h5 in the run's folder that opens, naming each "
     "newer one it skips (none at all: a fresh start; none that opens: an error, --force starts over). "
     "The folder's config must match (every difference is reported; --force accepts them)"},
    {"--force", NULL,
     "start a new run in a folder that holds another run's files (they are moved aside, never deleted), or "
     "resume although the config differs, or (with --resume auto) start over when no checkpoint opens"},
    {"--dry-run", NULL, "print the startup summary (parameters per optimizer and group, schedules, data, "
                        "device) and exit without training"},
    {"--init", "FILE", "start from the model weights of a checkpoint, at step 0 with fresh optimizers"},
    {"--init-optimizer", NULL, "with --init: take the optimizer state of the file too (its classes must match)"},
    {0}};

const eopt_command eopt_cmd_train = {
    "train", "CONFIG", "train a model from a config file (configs/*.cfg)",
    "Every config key, its type, default and meaning: docs/config.md; an optimizer's arguments: eopt describe "
    "CLASS. SIGINT or SIGTERM writes a checkpoint and exits (status 128 + the signal); --resume auto continues. "
    "A run that diverges (run.diverge_loss) exits 0; outcome.json in the run's folder says how it ended.\n"
    "Example:\n  eopt train configs/gpt_muon_adamw.cfg --set run.steps=200 --set optimizers.matrix.args.lr=0.01",
    options, run};

static int run(int argc, char **argv)
{
    const char *path = NULL, *sets[64], *run_dir = NULL;
    int nset = 0;
    eopt_train_options o = {0};
    eopt_args a;
    eopt_args_init(&a, &eopt_cmd_train, argc, argv);
    for (int id; (id = eopt_args_next(&a)) != EOPT_ARGS_END;) {
        const char *opt = id >= 0 ? options[id].name : "";
        if (id == EOPT_ARGS_EXIT)
            return a.status;
        if (id == EOPT_ARGS_POS && path)
            return eopt_usage_error(&eopt_cmd_train, "one config file, not '%s' as well", a.val[0]);
        if (id == EOPT_ARGS_POS)
            path = a.val[0];
        else if (strcmp(opt, "--set") == 0 && nset == 64)
            return eopt_usage_error(&eopt_cmd_train, "at most 64 --set");
        else if (strcmp(opt, "--set") == 0)
            sets[nset++] = a.val[0];
        else if (strcmp(opt, "--run-dir") == 0)
            run_dir = a.val[0];
        else if (strcmp(opt, "--resume") == 0)
            o.resume = a.val[0];
        else if (strcmp(opt, "--force") == 0)
            o.force = 1;
        else if (strcmp(opt, "--dry-run") == 0)
            o.dry_run = 1;
        else if (strcmp(opt, "--init") == 0)
            o.init = a.val[0];
        else if (strcmp(opt, "--init-optimizer") == 0)
            o.init_optimizer = 1;
    }
    if (!path)
        return eopt_usage_error(&eopt_cmd_train, "no config file");
    if (o.resume && o.init)
        return eopt_usage_error(&eopt_cmd_train, "--resume and --init exclude each other");
    if (o.init_optimizer && !o.init)
        return eopt_usage_error(&eopt_cmd_train, "--init-optimizer needs --init FILE");

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

    eopt_comm *world;
    if (eopt_comm_world(&world) == EOPT_OK && eopt_comm_rank(world) != 0)
        eopt_log_set_handler(drop_log, NULL);
    eopt_train_result res;
    st = eopt_train(&cfg, &o, &res);
    if (st != EOPT_OK) {
        fprintf(stderr, "eopt train: %s\n", eopt_last_error());
        return st == EOPT_ERR_INTERRUPTED ? signal_status() : 1;
    }
    if (o.dry_run)
        return 0;
    if (res.interrupted) /* checkpointed: exit as the signal would have, without a core */
        return signal_status();
    if (res.rank != 0) /* rank 0 reports a data-parallel run */
        return 0;
    if (res.diverged) { /* an outcome, not an error: a study records it and goes on */
        printf("diverged at step %lld: %s\n", (long long)res.step + 1, res.diverge_reason);
        return fflush(stdout) == 0 ? 0 : 1;
    }
    if (res.already_finished) {
        printf("run already finished at step %lld (run.steps = %lld): nothing to do; raise run.steps to continue "
               "it\n", (long long)res.step, (long long)cfg.run.steps);
        return 0;
    }
    printf("eval loss %.4f", res.eval_loss);
    if (cfg.model.kind == EOPT_MODEL_MLP)
        printf(", test accuracy %.2f%%", 100 * res.accuracy);
    printf(", %.0f %s/s", res.throughput, cfg.model.kind == EOPT_MODEL_GPT ? "tokens" : "samples");
    if (res.nonfinite_steps > 0)
        printf(", %lld non-finite steps skipped", (long long)res.nonfinite_steps);
    printf("\n");
    return fflush(stdout) == 0 ? 0 : 1;
}
