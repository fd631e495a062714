/* The PyTorch side of checkpoints (checkpoint/python/eopt_checkpoint): each test runs one
 * script of tests/python/ with the system Python (which has torch, h5py and numpy) and the
 * EOPT_BIN / EOPT_FIXTURES of `make test`, and fails with the script's output. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>

static void run_script(const char *script)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 tests/python/%s 2>&1", script);
    FILE *p = popen(cmd, "r");
    cr_assert_not_null(p, "cannot run %s", cmd);
    char *out = NULL;
    size_t len = 0;
    FILE *mem = open_memstream(&out, &len);
    char buf[4096];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, p)) > 0)
        fwrite(buf, 1, n, mem);
    int status = pclose(p);
    fclose(mem);
    int ok = status != -1 && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!ok)
        cr_log_error("%s", out);
    cr_expect(ok, "%s failed (status %d); its output is above", cmd, status);
    free(out);
}

/* (b) every fixture -> torch objects -> file with identical content */
Test(python_ckpt, fixture_roundtrip) { run_script("fixture_roundtrip.py"); }

/* exporter and importer details: explicit arguments, refusals, types, atomic write */
Test(python_ckpt, exporter_units) { run_script("exporter_units.py"); }

/* (a) a torch model trained with AdamW, exported with its next steps; eopt replay continues it */
Test(python_ckpt, torch_to_eopt_replay) { run_script("torch_to_eopt.py"); }

/* (c) a checkpoint written by eopt replay imports into torch and resumes there */
Test(python_ckpt, eopt_to_torch_resume) { run_script("eopt_to_torch.py"); }
