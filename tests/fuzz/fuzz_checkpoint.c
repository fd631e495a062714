/* libFuzzer targets: the checkpoint reader on arbitrary bytes (seeded with the fixtures).
 *
 * fuzz_checkpoint (CI): eopt_checkpoint_open, the guarded open every reader path uses, then
 * eopt_restore (`eopt replay` and `inspect --check`: every stored optimizer built from the file's
 * arguments and state). The guard checks the file in a child process first, so no input may
 * crash or hang this process.
 * fuzz_checkpoint_raw (EOPT_FUZZ_RAW): the in-process reader without the guard. It finds the
 * libhdf5 crashes and hangs the guard is for; each becomes a regression input in
 * tests/corpus/checkpoint/, which the guarded open must refuse (tests/test_guard.c). */
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

#include "checkpoint/checkpoint.h"
#include "checkpoint/guard.h"
#include "checkpoint/restore.h"

#ifndef EOPT_FUZZ_RAW
#define EOPT_FUZZ_RAW 0
#endif

/* A compressed dataset may legitimately declare ~1000x the file's bytes; the restore holds a few
 * copies of the model (stored, weights, gradients, optimizer state), so it runs only on models
 * whose copies stay well inside the fuzzer's memory limit (the seeds' are under 1 MiB). */
#define RESTORE_MAX_BYTES ((size_t)16 << 20)

static size_t model_bytes(const eopt_ckpt *ck)
{
    size_t bytes = 0;
    for (int k = 0; k < eopt_ckpt_num_tensors(ck); k++)
        bytes += eopt_tensor_bytes(eopt_ckpt_tensor(ck, eopt_ckpt_tensor_name(ck, k)));
    return bytes;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/eopt-fuzz-%d.h5", (int)getpid());
    FILE *f = fopen(path, "wb");
    if (!f)
        return 0;
    size_t wrote = fwrite(data, 1, size, f);
    fclose(f);
    if (wrote != size)
        return 0;
    /* A short time limit: a 1 MiB input walks in milliseconds; a hang is what is being looked for. */
    eopt_ckpt_options o = {.allow_nonfinite = 1, .trusted = EOPT_FUZZ_RAW};
    eopt_ckpt *ck = NULL;
    if (EOPT_FUZZ_RAW || eopt_guard_check(path, &(eopt_guard_limits){.seconds = 2}) == EOPT_OK)
        o.trusted = 1;
    static eopt_backend *cpu;
    if (!cpu && eopt_backend_open("cpu", 1, &cpu) != EOPT_OK)
        return 0;
    if (o.trusted && eopt_checkpoint_open(path, &o, &ck) == EOPT_OK) {
        eopt_restored r;
        if (model_bytes(ck) <= RESTORE_MAX_BYTES && eopt_restore(ck, cpu, &r) == EOPT_OK)
            eopt_restored_free(&r);
        eopt_checkpoint_close(ck);
    }
    unlink(path);
    return 0;
}
