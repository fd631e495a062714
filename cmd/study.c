/* `eopt study STUDY.cfg`: runs every run of a study (train/study.h) that has not finished, each as
 * a child `eopt train BASE --run-dir STUDY_DIR/runs/<name> --resume auto --set ...` (its output in
 * the run's train.log), up to `jobs` at once; SIGINT/SIGTERM are passed on to the children, which
 * checkpoint, and a later start resumes them. */
#include <errno.h>
#include <sched.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "commands.h"
#include "../train/run_dir.h"
#include "../train/slurm.h"
#include "../train/study.h"

static volatile sig_atomic_t caught;
static pid_t *volatile children; /* the running children (0: a free slot), told of a signal */
static volatile int nchildren;

/* Passed on to every child (kill is async-signal-safe), which checkpoints and exits. */
static void on_signal(int sig)
{
    caught = sig;
    for (int k = 0; k < nchildren; k++)
        if (children[k] > 0)
            kill(children[k], SIGTERM);
}

static int run(int argc, char **argv);

static const eopt_option options[] = {
    {"--dir", "DIR", "the study folder (default: the study file's `dir`, else studies/<study file name>)"},
    {"--jobs", "N", "runs at once (default: the file's `jobs`, else 1)"},
    {"--threads", "T", "CPU threads per run (default: the file's `threads`, else the cores / jobs); a resumed run "
                       "keeps the threads it started with"},
    {"--list", NULL, "check every run's config and print the run names, one per line, in task order"},
    {"--task", "I", "run only run number I (0-based, task order): what one Slurm array task runs"},
    {"--status", NULL, "print each run's state, step and last training loss (STUDY.cfg or a study folder)"},
    {"--force", NULL, "accept a study file that differs from the one the study folder started with"},
    {"--slurm", NULL, "write STUDY_DIR/slurm/study.sbatch, a job array of one task per run (--task I), submit it with "
                      "`sbatch --parsable` ($EOPT_SBATCH, else sbatch from PATH) and print the job id; submitting "
                      "again continues unfinished runs. --threads (default: the file's `threads`, else 1) is each "
                      "task's --cpus-per-task"},
    {"--sbatch-arg", "ARG", "with --slurm: one more sbatch option, e.g. --sbatch-arg=--partition=cpu (repeatable)"},
    {0}};

const eopt_command eopt_cmd_study = {
    "study", "STUDY.cfg", "run a study: a grid or list of training runs from one file (docs/studies.md)",
    "A study file names a base training config, settings for every run, and the axes to sweep (a grid, a list of "
    "runs, seeds). Each run is an ordinary run folder STUDY_DIR/runs/<name>, named from its settings. Started "
    "again, the study skips finished and diverged runs and resumes the others from their checkpoints. Exit status "
    "0 when every run asked for ended finished or diverged.\n"
    "Example:\n  eopt study configs/studies/softening.cfg --jobs 2\n  eopt study --status studies/softening",
    options, run};

typedef struct {
    const eopt_study *s;
    const char *base; /* the config file the children read */
    int threads;      /* per run (a resumed run keeps its own) */
    int force;
} runner;

static void run_dir(const eopt_study *s, int r, char *buf, size_t size)
{
    snprintf(buf, size, "%.511s/runs/%.199s", s->dir, s->runs[r].name);
}

/* Starts `eopt train` for run r, its output appended to the run's train.log; the child's pid. */
static pid_t spawn(const runner *ru, int r)
{
    const eopt_study *s = ru->s;
    char dir[EOPT_CFG_PATH_MAX + EOPT_STUDY_NAME_MAX + 16], path[sizeof dir + 16], threads[32], host[256] = "";
    run_dir(s, r, dir, sizeof dir);
    if (eopt_make_dirs(dir) != EOPT_OK) {
        fprintf(stderr, "eopt study: %s\n", eopt_last_error());
        return -1;
    }
    snprintf(threads, sizeof threads, "run.threads=%d", eopt_study_run_threads(dir, ru->threads));
    const char *sets[EOPT_STUDY_MAX_SETS + EOPT_STUDY_MAX_AXES + 1], *argv[2 * (EOPT_STUDY_MAX_SETS + EOPT_STUDY_MAX_AXES) + 16];
    int nset, argc = 0;
    eopt_study_run_sets(s, r, threads, sets, &nset);
    argv[argc++] = "eopt";
    argv[argc++] = "train";
    argv[argc++] = ru->base;
    argv[argc++] = "--run-dir";
    argv[argc++] = dir;
    argv[argc++] = "--resume";
    argv[argc++] = "auto";
    for (int k = 0; k < nset; k++) {
        argv[argc++] = "--set";
        argv[argc++] = sets[k];
    }
    argv[argc] = NULL;
    snprintf(path, sizeof path, "%s/train.log", dir);
    int log = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0666);
    if (log < 0) {
        fprintf(stderr, "eopt study: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    snprintf(path, sizeof path, "%s/running", dir); /* the marker --status reads: "host pid" */
    FILE *m = fopen(path, "w");
    gethostname(host, sizeof host - 1);
    if (m) {
        fprintf(m, "%s %ld\n", host[0] ? host : "localhost", (long)getpid());
        fclose(m);
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        signal(SIGINT, SIG_DFL);
        signal(SIGTERM, SIG_DFL);
        dup2(log, STDOUT_FILENO);
        dup2(log, STDERR_FILENO);
        execv("/proc/self/exe", (char *const *)argv);
        fprintf(stderr, "eopt study: cannot run /proc/self/exe: %s\n", strerror(errno));
        _exit(127);
    }
    close(log);
    if (pid < 0)
        fprintf(stderr, "eopt study: cannot start run %s: %s\n", s->runs[r].name, strerror(errno));
    return pid;
}

static void print_state(const eopt_study *s, int r, const eopt_study_run_state *st)
{
    printf("%s: %s", s->runs[r].name, st->state);
    if (st->step >= 0)
        printf(" at step %lld", (long long)st->step);
    if (st->steps > 0)
        printf("/%lld", (long long)st->steps);
    if (isfinite(st->loss))
        printf(", train loss %.4f", st->loss);
    if (st->reason[0] && strcmp(st->state, "finished") != 0)
        printf(" (%s)", st->reason);
    printf("\n");
}

/* A child ended: its marker goes, its outcome is reported; whether it ended finished or diverged. */
static int finish(const runner *ru, int r, int status, int done, int total)
{
    char dir[EOPT_CFG_PATH_MAX + EOPT_STUDY_NAME_MAX + 16], path[sizeof dir + 16];
    eopt_study_run_state st;
    run_dir(ru->s, r, dir, sizeof dir);
    snprintf(path, sizeof path, "%s/running", dir);
    unlink(path);
    eopt_study_state(dir, &st);
    int exited = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    if (strcmp(st.state, "finished") != 0 && strcmp(st.state, "diverged") != 0 && strcmp(st.state, "interrupted") != 0)
        snprintf(st.state, sizeof st.state, "failed");
    printf("[%d/%d] ", done, total);
    print_state(ru->s, r, &st);
    if (strcmp(st.state, "failed") == 0)
        printf("  eopt train exited with status %d: see %s/train.log\n", exited, dir);
    fflush(stdout);
    return strcmp(st.state, "finished") == 0 || strcmp(st.state, "diverged") == 0;
}

/* Runs the tasks, up to `jobs` at once; 0 when every one ended finished or diverged. */
static int run_tasks(const runner *ru, const int *tasks, int ntasks, int jobs)
{
    pid_t *pid = calloc((size_t)ntasks, sizeof *pid);
    int next = 0, running = 0, done = 0, ok = 1;
    if (!pid)
        return 1;
    children = pid;
    while ((next < ntasks || running > 0)) {
        while (!caught && next < ntasks && running < jobs) {
            printf("start %s\n", ru->s->runs[tasks[next]].name);
            pid[next] = spawn(ru, tasks[next]);
            nchildren = next + 1;
            if (pid[next] < 0) {
                ok = 0;
                done++;
            } else
                running++;
            next++;
        }
        if (running == 0)
            break;
        int status;
        pid_t got = waitpid(-1, &status, 0);
        if (got < 0 && errno == EINTR)
            continue;
        for (int k = 0; k < next && got > 0; k++)
            if (pid[k] == got) {
                pid[k] = 0;
                running--;
                ok &= finish(ru, tasks[k], status, ++done, ntasks);
            }
    }
    nchildren = 0;
    children = NULL;
    free(pid);
    if (caught) {
        printf("stopped by signal %d: %d of %d runs not ended; start the study again to resume them\n", (int)caught,
               ntasks - done, ntasks);
        return 128 + caught;
    }
    return ok ? 0 : 1;
}

static void status_table(const char *dir, char (*names)[EOPT_STUDY_NAME_MAX], int n)
{
    int width = 4;
    for (int r = 0; r < n; r++)
        if ((int)strlen(names[r]) > width)
            width = (int)strlen(names[r]);
    printf("%-*s  %-11s  %13s  %10s\n", width, "name", "state", "step/steps", "train loss");
    int count[8] = {0};
    static const char *const states[] = {"finished", "diverged", "running", "unfinished", "interrupted", "failed",
                                         "pending", NULL};
    for (int r = 0; r < n; r++) {
        char rd[EOPT_CFG_PATH_MAX + EOPT_STUDY_NAME_MAX + 16], step[48] = "-", loss[32] = "-";
        eopt_study_run_state st;
        snprintf(rd, sizeof rd, "%s/runs/%s", dir, names[r]);
        eopt_study_state(rd, &st);
        if (st.step >= 0)
            snprintf(step, sizeof step, "%lld/%lld", (long long)st.step, (long long)st.steps);
        if (isfinite(st.loss))
            snprintf(loss, sizeof loss, "%.4f", st.loss);
        printf("%-*s  %-11s  %13s  %10s\n", width, names[r], st.state, step, loss);
        for (int k = 0; states[k]; k++)
            count[k] += strcmp(states[k], st.state) == 0;
    }
    printf("%d runs:", n);
    for (int k = 0, first = 1; states[k]; k++)
        if (count[k]) {
            printf("%s %d %s", first ? "" : ",", count[k], states[k]);
            first = 0;
        }
    printf("\n");
}

static int status_of_dir(const char *dir)
{
    char(*names)[EOPT_STUDY_NAME_MAX];
    int n;
    if (eopt_study_read_names(dir, &names, &n) != EOPT_OK) {
        fprintf(stderr, "eopt study: %s\n", eopt_last_error());
        return 2;
    }
    status_table(dir, names, n);
    free(names);
    return 0;
}

static int is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

typedef struct {
    const char *path, *dir;
    int jobs, threads, list, task, status, force, slurm;
    int nsbatch;
    const char *sbatch[64]; /* --sbatch-arg values */
} study_args;

static int parse_count(const char *v, int lo, int *out)
{
    char *end;
    long n = strtol(v, &end, 10);
    if (end == v || *end || n < lo || n > 1000000)
        return eopt_usage_error(&eopt_cmd_study, "'%s' is not a count (an integer >= %d)", v, lo);
    *out = (int)n;
    return 0;
}

static int parse_args(int argc, char **argv, study_args *a)
{
    eopt_args ar;
    memset(a, 0, sizeof *a);
    a->task = -1;
    eopt_args_init(&ar, &eopt_cmd_study, argc, argv);
    for (int id; (id = eopt_args_next(&ar)) != EOPT_ARGS_END;) {
        const char *opt = id >= 0 ? options[id].name : "";
        if (id == EOPT_ARGS_EXIT)
            return ar.status == 0 ? -1 : ar.status;
        if (id == EOPT_ARGS_POS && a->path)
            return eopt_usage_error(&eopt_cmd_study, "one study file, not '%s' as well", ar.val[0]);
        if (id == EOPT_ARGS_POS)
            a->path = ar.val[0];
        else if (strcmp(opt, "--dir") == 0)
            a->dir = ar.val[0];
        else if (strcmp(opt, "--jobs") == 0 && parse_count(ar.val[0], 1, &a->jobs))
            return 2;
        else if (strcmp(opt, "--threads") == 0 && parse_count(ar.val[0], 1, &a->threads))
            return 2;
        else if (strcmp(opt, "--task") == 0 && parse_count(ar.val[0], 0, &a->task))
            return 2;
        else if (strcmp(opt, "--list") == 0)
            a->list = 1;
        else if (strcmp(opt, "--status") == 0)
            a->status = 1;
        else if (strcmp(opt, "--force") == 0)
            a->force = 1;
        else if (strcmp(opt, "--slurm") == 0)
            a->slurm = 1;
        else if (strcmp(opt, "--sbatch-arg") == 0 && a->nsbatch == 64)
            return eopt_usage_error(&eopt_cmd_study, "more than 64 --sbatch-arg");
        else if (strcmp(opt, "--sbatch-arg") == 0)
            a->sbatch[a->nsbatch++] = ar.val[0];
    }
    if (!a->path)
        return eopt_usage_error(&eopt_cmd_study, "no study file");
    if (a->list + a->status + (a->task >= 0) + a->slurm > 1)
        return eopt_usage_error(&eopt_cmd_study, "--list, --status, --task and --slurm exclude each other");
    if (a->nsbatch && !a->slurm)
        return eopt_usage_error(&eopt_cmd_study, "--sbatch-arg needs --slurm");
    if (a->jobs && a->slurm)
        return eopt_usage_error(&eopt_cmd_study, "--jobs does not apply to --slurm (Slurm starts tasks wherever "
                                                 "cores are free; --sbatch-arg=--array=0-N%%K runs at most K at once)");
    return 0;
}

/* Every run to do (all, or --task I) that has not ended finished or diverged. */
static int pending_tasks(const eopt_study *s, int task, int *tasks, int *ended)
{
    int n = 0;
    *ended = 0;
    for (int r = task >= 0 ? task : 0; r < (task >= 0 ? task + 1 : s->nruns); r++) {
        char dir[EOPT_CFG_PATH_MAX + EOPT_STUDY_NAME_MAX + 16];
        eopt_study_run_state st;
        run_dir(s, r, dir, sizeof dir);
        eopt_study_state(dir, &st);
        if (strcmp(st.state, "finished") == 0 || strcmp(st.state, "diverged") == 0)
            (*ended)++;
        else
            tasks[n++] = r;
    }
    return n;
}

/* --slurm, once the study's folder is made (so that the array's tasks never race to make it): the
 * job id on stdout, what was submitted on stderr. */
static int submit(const eopt_study *s, const study_args *a)
{
    char eopt[4096], id[64];
    ssize_t n = readlink("/proc/self/exe", eopt, sizeof eopt - 1);
    if (n <= 0) {
        fprintf(stderr, "eopt study: cannot find this eopt program (/proc/self/exe): %s\n", strerror(errno));
        return 1;
    }
    eopt[n] = 0;
    eopt_slurm_study job = {.study_dir = s->dir, .study_cfg = a->path, .n_tasks = s->nruns, .eopt = eopt,
                            .threads = a->threads ? a->threads : s->threads ? s->threads : 1,
                            .sbatch_args = a->sbatch, .n_sbatch_args = a->nsbatch};
    if (eopt_study_slurm_submit(&job, id, sizeof id) != EOPT_OK) {
        fprintf(stderr, "eopt study: %s\n", eopt_last_error());
        return 1;
    }
    fprintf(stderr, "study %s: job array %s submitted, %d tasks of %d core%s: %s/slurm/study.sbatch; output in "
                    "%s/slurm/%s_<task>.out; progress: eopt study --status %s\n",
            s->name, id, s->nruns, job.threads, job.threads > 1 ? "s" : "", s->dir, s->dir, id, s->dir);
    printf("%s\n", id);
    return 0;
}

static int run(int argc, char **argv)
{
    study_args a;
    int rc = parse_args(argc, argv, &a);
    if (rc)
        return rc < 0 ? 0 : rc;
    if (a.status && is_dir(a.path))
        return status_of_dir(a.path);
    static eopt_study s; /* large: off the stack */
    if (eopt_study_load(a.path, &s) != EOPT_OK) {
        fprintf(stderr, "eopt study: %s\n", eopt_last_error());
        return 2;
    }
    if (a.dir)
        snprintf(s.dir, sizeof s.dir, "%s", a.dir);
    if (a.task >= s.nruns) {
        eopt_study_free(&s);
        return eopt_usage_error(&eopt_cmd_study, "--task %d: the study has %d runs (0 to %d)", a.task, s.nruns,
                                s.nruns - 1);
    }
    rc = 0;
    if (a.list && eopt_study_check(&s) != EOPT_OK) {
        fprintf(stderr, "eopt study: %s\n", eopt_last_error());
        rc = 2;
    } else if (a.list)
        for (int r = 0; r < s.nruns; r++)
            printf("%s\n", s.runs[r].name);
    else if (a.status) {
        char(*names)[EOPT_STUDY_NAME_MAX] = malloc(sizeof *names * (size_t)s.nruns);
        for (int r = 0; names && r < s.nruns; r++)
            memcpy(names[r], s.runs[r].name, sizeof names[r]);
        if (names)
            status_table(s.dir, names, s.nruns);
        free(names);
    } else {
        runner ru = {&s, NULL, 1, a.force};
        char base[EOPT_CFG_PATH_MAX + 16];
        int jobs = a.jobs ? a.jobs : s.jobs ? s.jobs : 1, *tasks = malloc(sizeof(int) * (size_t)s.nruns);
        cpu_set_t cpus; /* the cores this process may use (taskset, a Slurm allocation), else all */
        long cores = sched_getaffinity(0, sizeof cpus, &cpus) == 0 ? CPU_COUNT(&cpus) : sysconf(_SC_NPROCESSORS_ONLN);
        if (a.task >= 0)
            jobs = 1;
        ru.threads = a.threads ? a.threads : s.threads ? s.threads : cores / jobs > 1 ? (int)(cores / jobs) : 1;
        if (!tasks || eopt_study_check(&s) != EOPT_OK || eopt_study_prepare_dir(&s, a.force, base, sizeof base) != EOPT_OK) {
            fprintf(stderr, "eopt study: %s\n", tasks ? eopt_last_error() : "out of memory");
            rc = 2;
        } else if (a.slurm) {
            rc = submit(&s, &a);
        } else {
            ru.base = base;
            struct sigaction sa = {0};
            sa.sa_handler = on_signal; /* no SA_RESTART: the wait for a child returns to pass the signal on */
            sigemptyset(&sa.sa_mask);
            sigaction(SIGINT, &sa, NULL);
            sigaction(SIGTERM, &sa, NULL);
            int ended, n = pending_tasks(&s, a.task, tasks, &ended);
            printf("study %s: %d run%s, %d ended before (finished or diverged), %d to run, %d at once, %d thread%s "
                   "each, in %s\n", s.name, a.task >= 0 ? 1 : s.nruns, s.nruns > 1 && a.task < 0 ? "s" : "", ended, n,
                   jobs, ru.threads, ru.threads > 1 ? "s" : "", s.dir);
            rc = run_tasks(&ru, tasks, n, jobs);
        }
        free(tasks);
    }
    eopt_study_free(&s);
    return rc;
}
