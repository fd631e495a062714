/* A study's Slurm job array (train/slurm.h): the script it writes, how a missing, failing or odd
 * sbatch is reported, and `eopt study --slurm`. sbatch here is a stand-in script named by
 * EOPT_SBATCH; the real Slurm (munged, slurmctld, slurmd on localhost) runs in tests/slurm/test.sh
 * (make test-slurm). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "train/slurm.h"

static char made[64]; /* the test's folder, removed at the end */

static void remove_made(void)
{
    char cmd[96];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", made);
    if (made[0] && system(cmd) != 0)
        cr_log_warn("could not remove %s", made);
}

TestSuite(slurm, .fini = remove_made);

/* A fresh folder holding a study file "s.cfg" and a stand-in program "eopt"; fills the study. */
static void setup(char *dir, size_t size, eopt_slurm_study *s, char *cfg, char *eopt)
{
    snprintf(dir, size, "/tmp/eopt-slurm-XXXXXX");
    cr_assert(mkdtemp(dir));
    snprintf(made, sizeof made, "%s", dir);
    sprintf(cfg, "%s/s.cfg", dir);
    sprintf(eopt, "%s/eopt", dir);
    FILE *f = fopen(cfg, "w");
    cr_assert(f);
    fputs("base = \"x.cfg\";\n", f);
    fclose(f);
    f = fopen(eopt, "w");
    cr_assert(f);
    fclose(f);
    *s = (eopt_slurm_study){.study_dir = NULL, .study_cfg = cfg, .n_tasks = 3, .eopt = eopt, .threads = 2};
}

/* An executable sh script at path with the given body. */
static void script(const char *path, const char *body)
{
    FILE *f = fopen(path, "w");
    cr_assert(f);
    fprintf(f, "#!/bin/sh\n%s\n", body);
    fclose(f);
    cr_assert_eq(chmod(path, 0755), 0);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    cr_assert(f, "%s missing", path);
    static char buf[8192];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

/* The script: an array of one task per run, the cores, the output files, the task's command with
 * absolute paths, and the extra sbatch options recorded; submitted with them before the script. */
Test(slurm, script_and_submission)
{
    char dir[64], cfg[96], eopt[96], study[128], fake[512], line[512];
    eopt_slurm_study s;
    setup(dir, sizeof dir, &s, cfg, eopt);
    snprintf(study, sizeof study, "%s/study", dir);
    s.study_dir = study;
    const char *extra[] = {"--partition=gpu", "--time=1:00:00"};
    s.sbatch_args = extra;
    s.n_sbatch_args = 2;
    snprintf(fake, sizeof fake, "%s/sbatch", dir);
    snprintf(line, sizeof line, "echo \"$@\" > %s/args; echo '4242;cluster'", dir);
    script(fake, line);
    setenv("EOPT_SBATCH", fake, 1);
    char id[16];
    cr_assert_eq(eopt_study_slurm_submit(&s, id, sizeof id), EOPT_OK, "%s", eopt_last_error());
    cr_expect_str_eq(id, "4242");

    char path[256];
    snprintf(path, sizeof path, "%s/slurm/study.sbatch", study);
    struct stat sb;
    cr_assert_eq(stat(path, &sb), 0);
    cr_expect(sb.st_mode & S_IXUSR, "the script is executable");
    const char *text = slurp(path);
    cr_expect(strstr(text, "#SBATCH --array=0-2\n"), "%s", text);
    cr_expect(strstr(text, "#SBATCH --cpus-per-task=2\n"), "%s", text);
    snprintf(line, sizeof line, "#SBATCH --output=%s/slurm/%%A_%%a.out\n", study);
    cr_expect(strstr(text, line), "%s", text);
    snprintf(line, sizeof line, "exec '%s' study '%s' --task \"$SLURM_ARRAY_TASK_ID\" --dir '%s'", eopt, cfg, study);
    cr_expect(strstr(text, line), "%s\nwanted: %s", text, line);
    cr_expect(strstr(text, "--parsable '--partition=gpu' '--time=1:00:00'"), "%s", text);

    snprintf(line, sizeof line, "%s/args", dir);
    snprintf(fake, sizeof fake, "--parsable --partition=gpu --time=1:00:00 %s\n", path);
    cr_expect_str_eq(slurp(line), fake);
}

/* No sbatch: the message says so and how to fix it; the script is still written. */
Test(slurm, missing_sbatch)
{
    char dir[64], cfg[96], eopt[96], path[256];
    eopt_slurm_study s;
    setup(dir, sizeof dir, &s, cfg, eopt);
    s.study_dir = dir;
    setenv("EOPT_SBATCH", "/nonexistent/sbatch", 1);
    char id[16];
    cr_assert_eq(eopt_study_slurm_submit(&s, id, sizeof id), EOPT_ERR_UNSUPPORTED);
    cr_expect(strstr(eopt_last_error(), "'/nonexistent/sbatch': not found"), "%s", eopt_last_error());
    cr_expect(strstr(eopt_last_error(), "EOPT_SBATCH"), "%s", eopt_last_error());
    snprintf(path, sizeof path, "%s/slurm/study.sbatch", dir);
    cr_expect_eq(access(path, R_OK), 0);
    setenv("EOPT_SBATCH", "eopt-no-such-sbatch", 1);
    cr_assert_eq(eopt_study_slurm_submit(&s, id, sizeof id), EOPT_ERR_UNSUPPORTED);
    cr_expect(strstr(eopt_last_error(), "not found on PATH"), "%s", eopt_last_error());
}

/* sbatch refuses: its exit status and stderr are in the message. An answer that is no job id is
 * an error too. */
Test(slurm, failing_sbatch)
{
    char dir[64], cfg[96], eopt[96], fake[128];
    eopt_slurm_study s;
    setup(dir, sizeof dir, &s, cfg, eopt);
    s.study_dir = dir;
    snprintf(fake, sizeof fake, "%s/sbatch", dir);
    script(fake, "echo 'sbatch: error: Batch job submission failed: Invalid partition name specified' >&2; exit 1");
    setenv("EOPT_SBATCH", fake, 1);
    char id[16];
    cr_assert_eq(eopt_study_slurm_submit(&s, id, sizeof id), EOPT_ERR_IO);
    cr_expect(strstr(eopt_last_error(), "exit status 1"), "%s", eopt_last_error());
    cr_expect(strstr(eopt_last_error(), "Invalid partition name specified"), "%s", eopt_last_error());
    script(fake, "echo 'Submitted batch job 17'");
    cr_assert_eq(eopt_study_slurm_submit(&s, id, sizeof id), EOPT_ERR_FORMAT);
    cr_expect(strstr(eopt_last_error(), "instead of a job id"), "%s", eopt_last_error());
}

/* What cannot become a script is refused before anything is submitted. */
Test(slurm, bad_requests)
{
    char dir[64], cfg[96], eopt[96], odd[128];
    eopt_slurm_study s;
    setup(dir, sizeof dir, &s, cfg, eopt);
    setenv("EOPT_SBATCH", "/nonexistent/sbatch", 1);
    char id[16];
    snprintf(odd, sizeof odd, "%s/my study", dir); /* a blank: an #SBATCH line would split it */
    s.study_dir = odd;
    cr_assert_eq(eopt_study_slurm_submit(&s, id, sizeof id), EOPT_ERR_ARG);
    cr_expect(strstr(eopt_last_error(), "my study"), "%s", eopt_last_error());
    cr_expect_neq(access(odd, F_OK), 0, "a refused request creates no folder");
    s.study_dir = dir;
    s.n_tasks = 0;
    cr_assert_eq(eopt_study_slurm_submit(&s, id, sizeof id), EOPT_ERR_ARG);
    s.n_tasks = 1;
    s.threads = 0;
    cr_assert_eq(eopt_study_slurm_submit(&s, id, sizeof id), EOPT_ERR_ARG);
    s.threads = 1;
    s.study_cfg = "/nonexistent/study.cfg";
    cr_assert_eq(eopt_study_slurm_submit(&s, id, sizeof id), EOPT_ERR_IO);
    cr_expect(strstr(eopt_last_error(), "/nonexistent/study.cfg"), "%s", eopt_last_error());
}

/* `eopt study --slurm`: the study folder made, one array task per run, the job id printed alone
 * on stdout; --sbatch-arg without --slurm and --jobs with it are usage errors; no sbatch exits 1. */
Test(slurm, study_command)
{
    char dir[64], cfg[96], eopt[96], fake[128], cmd[1024], out[256] = "";
    eopt_slurm_study s;
    setup(dir, sizeof dir, &s, cfg, eopt);
    FILE *f = fopen(cfg, "w");
    cr_assert(f);
    fprintf(f, "base = \"%s/configs/mlp_adamw.cfg\";\nset = [\"run.steps=20\", \"optimizers.[0].schedule.warmup=2\"];\n"
               "seeds = [1, 2, 3];\nthreads = 2;\n",
            getcwd(cmd, sizeof cmd));
    fclose(f);
    snprintf(fake, sizeof fake, "%s/sbatch", dir);
    script(fake, "echo 4242");
    const char *bin = getenv("EOPT_BIN") ? getenv("EOPT_BIN") : "build/eopt";
    snprintf(cmd, sizeof cmd, "EOPT_SBATCH=%s %s study %s --dir %s/st --slurm --sbatch-arg=--partition=p 2>/dev/null",
             fake, bin, cfg, dir);
    FILE *p = popen(cmd, "r");
    cr_assert(p);
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = 0;
    cr_expect_eq(pclose(p), 0, "%s", cmd);
    cr_expect_str_eq(out, "4242\n");
    char path[256];
    snprintf(path, sizeof path, "%s/st/study.json", dir);
    cr_expect_eq(access(path, R_OK), 0, "the study folder is prepared before the tasks start");
    snprintf(path, sizeof path, "%s/st/slurm/study.sbatch", dir);
    const char *text = slurp(path);
    cr_expect(strstr(text, "#SBATCH --array=0-2\n"), "%s", text);
    cr_expect(strstr(text, "#SBATCH --cpus-per-task=2\n"), "%s", text);
    cr_expect(strstr(text, "'--partition=p'"), "%s", text);
    char exe[512];
    cr_assert(realpath(bin, exe));
    snprintf(cmd, sizeof cmd, "exec '%s' study '%s' --task", exe, cfg);
    cr_expect(strstr(text, cmd), "%s\nwanted: %s", text, cmd);

    snprintf(cmd, sizeof cmd, "%s study %s --sbatch-arg=-p 2>/dev/null", bin, cfg);
    cr_expect_eq(WEXITSTATUS(system(cmd)), 2, "%s", cmd);
    snprintf(cmd, sizeof cmd, "%s study %s --slurm --jobs 2 2>/dev/null", bin, cfg);
    cr_expect_eq(WEXITSTATUS(system(cmd)), 2, "%s", cmd);
    snprintf(cmd, sizeof cmd, "EOPT_SBATCH=/nonexistent/sbatch %s study %s --dir %s/st --slurm 2>&1", bin, cfg, dir);
    p = popen(cmd, "r");
    cr_assert(p);
    n = fread(out, 1, sizeof out - 1, p);
    out[n] = 0;
    cr_expect_eq(WEXITSTATUS(pclose(p)), 1, "%s", cmd);
    cr_expect(strstr(out, "not found"), "%s", out);
}
