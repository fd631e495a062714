/* A study as a Slurm job array: the script, and its submission with sbatch (see slurm.h). */
#include "slurm.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "framework/version.h"
#include "run_dir.h"

extern char **environ;

/* An #SBATCH line is split on blanks and reads %A, %a, ... as placeholders: a path written into
 * one must hold none of those characters. */
static eopt_status directive_safe(const char *what, const char *path)
{
    if (strpbrk(path, " \t\n\r'\"\\%"))
        return eopt_fail(EOPT_ERR_ARG,
                         "slurm: %s '%s' holds a blank, quote, backslash or %%, which an #SBATCH line "
                         "cannot carry: use a folder without them",
                         what, path);
    return EOPT_OK;
}

static eopt_status absolute(const char *what, const char *path, char *buf)
{
    if (!realpath(path, buf))
        return eopt_fail(EOPT_ERR_IO, "slurm: %s '%s': %s", what, path, strerror(errno));
    if (strchr(buf, '\n'))
        return eopt_fail(EOPT_ERR_ARG, "slurm: %s '%s' holds a newline", what, buf);
    return EOPT_OK;
}

/* s as one shell word: '...' with each ' written as '\''. */
static void shell_word(FILE *f, const char *s)
{
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'')
            fputs("'\\''", f);
        else
            fputc(*s, f);
    }
    fputc('\'', f);
}

static void write_script(FILE *f, const eopt_slurm_study *s, const char *dir, const char *cfg, const char *eopt,
                         const char *script)
{
    const char *name = strrchr(dir, '/') ? strrchr(dir, '/') + 1 : dir;
    fprintf(f, "#!/bin/sh\n");
    fprintf(f, "# The study %s as a Slurm job array, written by `eopt study --slurm` (eopt %s).\n", cfg,
            EOPT_VERSION);
    fprintf(f, "# Array task I runs the study's run number I (the order of `eopt study STUDY.cfg --list`)\n"
               "# and nothing else: `eopt study --task I` resumes that run from its checkpoints, or exits at\n"
               "# once when the run has already ended (finished or diverged). Submitting this file again\n"
               "# therefore continues the study and never repeats a finished run.\n");
    fprintf(f, "# Submitted as: sbatch --parsable");
    for (int i = 0; i < s->n_sbatch_args; i++) {
        fputc(' ', f);
        shell_word(f, s->sbatch_args[i]);
    }
    fprintf(f, " %s\n", script);
    fprintf(f, "# (options given to sbatch override the #SBATCH lines below.)\n");
    fprintf(f, "#SBATCH --job-name=eopt-%s\n", name);
    fprintf(f, "#SBATCH --array=0-%d\n", s->n_tasks - 1);
    fprintf(f, "#SBATCH --ntasks=1\n");
    fprintf(f, "#SBATCH --cpus-per-task=%d\n", s->threads);
    fprintf(f, "#SBATCH --output=%s/%s/%%A_%%a.out\n", dir, EOPT_SLURM_SUBDIR);
    fprintf(f, "\n# One OpenMP thread per core Slurm gave the task (BLAS shares the pool).\n");
    fprintf(f, "export OMP_NUM_THREADS=\"${SLURM_CPUS_PER_TASK:-%d}\"\n", s->threads);
    fprintf(f, "exec ");
    shell_word(f, eopt);
    fprintf(f, " study ");
    shell_word(f, cfg);
    fprintf(f, " --task \"$SLURM_ARRAY_TASK_ID\" --dir ");
    shell_word(f, dir);
    fprintf(f, " --threads \"$OMP_NUM_THREADS\"\n");
}

eopt_status eopt_study_slurm_write(const eopt_slurm_study *s, char *script, size_t script_len)
{
    if (s->n_tasks < 1)
        return eopt_fail(EOPT_ERR_ARG, "slurm: the study has %d runs: nothing to submit", s->n_tasks);
    if (s->threads < 1)
        return eopt_fail(EOPT_ERR_ARG, "slurm: threads per task = %d must be at least 1", s->threads);
    char dir[PATH_MAX], cfg[PATH_MAX], eopt[PATH_MAX], sub[PATH_MAX + 8];
    EOPT_TRY(absolute("study file", s->study_cfg, cfg));
    EOPT_TRY(absolute("eopt program", s->eopt, eopt));
    /* Checked before the folder is made, so that a refused request creates nothing. */
    EOPT_TRY(directive_safe("study folder", s->study_dir));
    if (s->study_dir[0] != '/' && getcwd(dir, sizeof dir))
        EOPT_TRY(directive_safe("current folder", dir));
    snprintf(sub, sizeof sub, "%s/%s", s->study_dir, EOPT_SLURM_SUBDIR);
    EOPT_TRY(eopt_make_dirs(sub));
    EOPT_TRY(absolute("study folder", s->study_dir, dir));
    EOPT_TRY(directive_safe("study folder", dir));
    if ((size_t)snprintf(script, script_len, "%s/%s/%s", dir, EOPT_SLURM_SUBDIR, EOPT_SLURM_SCRIPT) >= script_len)
        return eopt_fail(EOPT_ERR_ARG, "slurm: the script's path under '%s' is too long", dir);

    /* Written beside its place and renamed over it: a submission never reads half a script. */
    char tmp[PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", script);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return eopt_fail(EOPT_ERR_IO, "slurm: cannot write '%s': %s", tmp, strerror(errno));
    write_script(f, s, dir, cfg, eopt, script);
    int bad = ferror(f) | fflush(f) | fsync(fileno(f));
    bad |= fclose(f);
    if (bad || chmod(tmp, 0755) != 0 || rename(tmp, script) != 0) {
        eopt_status st = eopt_fail(EOPT_ERR_IO, "slurm: cannot write '%s': %s", script, strerror(errno));
        unlink(tmp);
        return st;
    }
    return EOPT_OK;
}

/* Appends what fd has to buf (keeps the first size-1 bytes, drains the rest); 0 at end of file. */
static int drain(int fd, char *buf, size_t size, size_t *len)
{
    char chunk[512];
    ssize_t n = read(fd, chunk, sizeof chunk);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return 1;
    if (n <= 0)
        return 0;
    size_t keep = *len + (size_t)n < size ? (size_t)n : size - 1 - *len;
    memcpy(buf + *len, chunk, keep);
    *len += keep;
    buf[*len] = 0;
    return 1;
}

/* Drops trailing blanks and newlines. */
static void trim(char *s)
{
    size_t n = strlen(s);
    while (n > 0 && strchr(" \t\r\n", s[n - 1]))
        s[--n] = 0;
}

/* Runs argv (argv[0] found on PATH unless it holds a '/'), collecting stdout and stderr; status is
 * its wait status. */
static eopt_status spawn_collect(char *const *argv, char *out, size_t out_size, char *err, size_t err_size,
                                 int *status)
{
    int po[2], pe[2];
    if (pipe(po) != 0)
        return eopt_fail(EOPT_ERR_IO, "slurm: cannot run %s: pipe: %s", argv[0], strerror(errno));
    if (pipe(pe) != 0) {
        close(po[0]);
        close(po[1]);
        return eopt_fail(EOPT_ERR_IO, "slurm: cannot run %s: pipe: %s", argv[0], strerror(errno));
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, po[1], 1);
    posix_spawn_file_actions_adddup2(&fa, pe[1], 2);
    posix_spawn_file_actions_addclose(&fa, po[0]);
    posix_spawn_file_actions_addclose(&fa, pe[0]);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(po[1]);
    close(pe[1]);
    if (rc != 0) {
        close(po[0]);
        close(pe[0]);
        if (rc == ENOENT)
            return eopt_fail(EOPT_ERR_UNSUPPORTED,
                             "slurm: cannot run '%s': not found%s (install Slurm's client, e.g. Debian's "
                             "slurm-client, or set EOPT_SBATCH to the sbatch program)",
                             argv[0], strchr(argv[0], '/') ? "" : " on PATH");
        return eopt_fail(EOPT_ERR_IO, "slurm: cannot run '%s': %s", argv[0], strerror(rc));
    }
    size_t no = 0, ne = 0;
    out[0] = err[0] = 0;
    struct pollfd p[2] = {{.fd = po[0], .events = POLLIN}, {.fd = pe[0], .events = POLLIN}};
    int open_fds = 2;
    while (open_fds > 0) {
        if (poll(p, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (p[0].revents && !drain(p[0].fd, out, out_size, &no)) {
            p[0].fd = -1;
            open_fds--;
        }
        if (p[1].revents && !drain(p[1].fd, err, err_size, &ne)) {
            p[1].fd = -1;
            open_fds--;
        }
    }
    close(po[0]);
    close(pe[0]);
    while (waitpid(pid, status, 0) < 0)
        if (errno != EINTR)
            return eopt_fail(EOPT_ERR_IO, "slurm: waiting for '%s': %s", argv[0], strerror(errno));
    trim(out);
    trim(err);
    return EOPT_OK;
}

eopt_status eopt_study_slurm_submit(const eopt_slurm_study *s, char *job_id, size_t job_id_len)
{
    char script[PATH_MAX];
    EOPT_TRY(eopt_study_slurm_write(s, script, sizeof script));
    const char *sbatch = getenv("EOPT_SBATCH");
    if (!sbatch || !*sbatch)
        sbatch = "sbatch";
    char **argv = calloc((size_t)s->n_sbatch_args + 4, sizeof *argv);
    if (!argv)
        return eopt_fail(EOPT_ERR_NOMEM, "slurm: out of memory");
    int argc = 0;
    argv[argc++] = (char *)sbatch;
    argv[argc++] = "--parsable";
    for (int i = 0; i < s->n_sbatch_args; i++)
        argv[argc++] = (char *)s->sbatch_args[i];
    argv[argc++] = script;
    char out[256], err[2048];
    int status = 0;
    eopt_status st = spawn_collect(argv, out, sizeof out, err, sizeof err, &status);
    free(argv);
    EOPT_TRY(st);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return eopt_fail(EOPT_ERR_IO, "slurm: '%s' failed (%s %d) submitting '%s': %s", sbatch,
                         WIFEXITED(status) ? "exit status" : "signal",
                         WIFEXITED(status) ? WEXITSTATUS(status) : WTERMSIG(status), script,
                         err[0] ? err : "(nothing on stderr)");
    /* --parsable prints "<job id>" or "<job id>;<cluster>". */
    out[strcspn(out, ";\n")] = 0;
    if (!out[0] || strspn(out, "0123456789") != strlen(out))
        return eopt_fail(EOPT_ERR_FORMAT, "slurm: '%s' answered '%s' instead of a job id (stderr: %s)", sbatch,
                         out, err[0] ? err : "nothing");
    if (strlen(out) >= job_id_len)
        return eopt_fail(EOPT_ERR_ARG, "slurm: job id '%s' does not fit %zu bytes", out, job_id_len);
    memcpy(job_id, out, strlen(out) + 1);
    return EOPT_OK;
}
