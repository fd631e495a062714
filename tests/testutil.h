/* Helpers shared by the test files (every test file links into one Criterion binary, so the
 * non-static names here are unique): the backend, fixture paths, and a small harness of float32
 * parameters on the backend with host copies in and out. Failures are Criterion assertions. */
#ifndef EOPT_TESTUTIL_H
#define EOPT_TESTUTIL_H

#include <stdio.h>

#include "eopt.h"

/* The backend EOPT_DEVICE names (eopt_backend_open(NULL, threads)); asserts that it opens. Every
 * test that runs a model or an optimizer opens its backend so: EOPT_DEVICE=cuda moves them all. */
eopt_backend *tu_backend(int threads);
/* The device name EOPT_DEVICE gives ("cpu" when unset), for commands the tests run. */
const char *tu_device(void);

/* The fixture directory: $EOPT_FIXTURES (make test sets it), else ../shared/fixtures. */
const char *tu_fixture_dir(void);
/* A text corpus in /tmp/NAME shared by the test processes: written once by `write` under a private
 * name, then renamed into place, so a reader never sees a half-written file. Returns the path. */
const char *tu_text_corpus(const char *name, void (*write)(FILE *f));
/* A corpus writer for tu_text_corpus: 3000 words of Moby-Dick's vocabulary in a fixed
 * pseudo-random order, a line break every 12 words. */
void tu_write_words(FILE *f);
/* A fresh folder /tmp/eopt-SUITE-XXXXXX (or /tmp/eopt-SUITE-TAG-XXXXXX) into buf. */
void tu_tmpdir(char *buf, size_t size, const char *suite, const char *tag);
/* Removes a folder and everything in it (expected to succeed). */
void tu_rmdir_all(const char *dir);
/* Path of a file in the fixture directory, the rest formatted like printf ("models/%s", name). */
void tu_fixture(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Host <-> backend copies of a whole float32 tensor. */
void tu_upload(eopt_tensor *t, const float *h);
void tu_download(const eopt_tensor *t, float *h);
/* Host copy of a float32 tensor (caller frees). */
float *tu_host(const eopt_tensor *t);

/* Frobenius norm sqrt(sum_k a[k]^2), accumulated in double. */
double tu_fro(const float *a, int64_t n);
/* max_k |a[k] - b[k]| */
double tu_max_abs_diff(const float *a, const float *b, int64_t n);

/* ---- harness: up to TU_MAXP parameters "p0", "p1", ... with gradients, and an optimizer ---- */

#define TU_MAXP 4

typedef struct {
    eopt_backend *be;
    int np;
    eopt_tensor w[TU_MAXP], g[TU_MAXP];
    eopt_param p[TU_MAXP];
    eopt_optimizer *opt;
} rig;

/* Parameters of the given shapes (shape[1] == 0 makes a 1-D one), N(0, 1) weights from `seed`;
 * then the optimizer `cls` over them in one group `hp` (cls NULL: none yet). */
eopt_status rig_open(rig *r, eopt_backend *be, const char *cls, const eopt_dict *args, const eopt_dict *hp, int np,
                     const int (*shape)[2], uint64_t seed);
void rig_close(rig *r);
/* Gradients of step t: N(0, 1) times `scale`. */
void rig_grads(rig *r, uint64_t seed, int t, float scale);
void rig_step(rig *r);
/* Host copy of parameter i's state entry `key` (caller frees). */
float *rig_state(rig *r, int i, const char *key);

#endif
