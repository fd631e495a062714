/* Checkpoint files that never break: rotation keeps the newest K, a writer killed at random
 * moments never leaves the newest complete checkpoint unloadable, and loading validates the
 * whole file before it applies anything. Corrupted files are copies of fixtures made in /tmp
 * with the HDF5 C API; the fixtures themselves are only read. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "checkpoint/checkpoint.h"
#include "checkpoint/h5.h" /* corrupting copies: raw HDF5 edits have no API */
#include "checkpoint/rotate.h"

#define CASE "soap_default" /* SOAP: 2 matrices, every kind of state (int64 step, factors, bases) */
#define OPT "0"

static void fixture(char *buf, size_t size, const char *c, const char *file)
{
    const char *root = getenv("EOPT_FIXTURES");
    snprintf(buf, size, "%s/optimizers/%s/%s", root ? root : "../shared/fixtures", c, file);
}

static void tmp_path(char *buf, size_t size, const char *tag)
{
    snprintf(buf, size, "/tmp/eopt-robust-%d-%s", (int)getpid(), tag);
}

static void copy_file(const char *src, const char *dst)
{
    FILE *in = fopen(src, "rb"), *out = fopen(dst, "wb");
    cr_assert(in && out, "cannot copy %s to %s", src, dst);
    char buf[1 << 16];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        cr_assert_eq(fwrite(buf, 1, n, out), n);
    fclose(in);
    fclose(out);
}

/* A copy of the case's step_5.h5 in /tmp, opened read-write for editing. */
static hid_t edit_copy(char *path, size_t size, const char *c, const char *tag)
{
    char src[1024];
    fixture(src, sizeof src, c, "step_5.h5");
    tmp_path(path, size, tag);
    copy_file(src, path);
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    cr_assert(f >= 0, "cannot open %s", path);
    return f;
}

static void set_str_attr(hid_t f, const char *obj, const char *name, const char *value)
{
    if (H5Aexists_by_name(f, obj, name, H5P_DEFAULT) > 0)
        H5Adelete_by_name(f, obj, name, H5P_DEFAULT);
    hid_t t = H5Tcopy(H5T_C_S1), s = H5Screate(H5S_SCALAR);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    hid_t a = H5Acreate_by_name(f, obj, name, t, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert(a >= 0 && H5Awrite(a, t, &value) >= 0, "cannot write %s@%s", obj, name);
    H5Aclose(a);
    H5Sclose(s);
    H5Tclose(t);
}

static void set_i64_attr(hid_t f, const char *obj, const char *name, int64_t value)
{
    if (H5Aexists_by_name(f, obj, name, H5P_DEFAULT) > 0)
        H5Adelete_by_name(f, obj, name, H5P_DEFAULT);
    hid_t s = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate_by_name(f, obj, name, H5T_STD_I64LE, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert(a >= 0 && H5Awrite(a, H5T_NATIVE_INT64, &value) >= 0, "cannot write %s@%s", obj, name);
    H5Aclose(a);
    H5Sclose(s);
}

/* (Re)creates dataset `name` with the given shape, filled with `fill` (float32 or int64). */
static void put_dataset(hid_t f, const char *name, int ndim, const hsize_t *shape, int as_int64, double fill)
{
    if (H5Lexists(f, name, H5P_DEFAULT) > 0)
        H5Ldelete(f, name, H5P_DEFAULT);
    hsize_t n = 1;
    for (int d = 0; d < ndim; d++)
        n *= shape[d];
    hid_t s = ndim ? H5Screate_simple(ndim, shape, NULL) : H5Screate(H5S_SCALAR);
    hid_t ft = as_int64 ? H5T_STD_I64LE : H5T_IEEE_F32LE, mt = as_int64 ? H5T_NATIVE_INT64 : H5T_NATIVE_FLOAT;
    hid_t d = H5Dcreate2(f, name, ft, s, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    void *buf = malloc(n * 8);
    for (hsize_t k = 0; k < n; k++) {
        if (as_int64)
            ((int64_t *)buf)[k] = (int64_t)fill;
        else
            ((float *)buf)[k] = (float)fill;
    }
    cr_assert(d >= 0 && H5Dwrite(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0, "cannot write %s", name);
    free(buf);
    H5Dclose(d);
    H5Sclose(s);
}

/* Sets flat element k of a float32 dataset. */
static void poke(hid_t f, const char *name, hsize_t k, float value)
{
    hid_t d = H5Dopen2(f, name, H5P_DEFAULT);
    cr_assert(d >= 0, "no dataset %s", name);
    hid_t s = H5Dget_space(d);
    hssize_t n = H5Sget_simple_extent_npoints(s);
    cr_assert((hssize_t)k < n);
    float *buf = malloc((size_t)n * sizeof *buf);
    cr_assert(H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0);
    buf[k] = value;
    cr_assert(H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0);
    free(buf);
    H5Sclose(s);
    H5Dclose(d);
}

/* ------------------------------------------------------------------------------------------
 * A running model and optimizer (the case's step_12 state) and a bitwise snapshot of it. */

typedef struct {
    eopt_backend *be;
    int n;
    eopt_param *params;
    eopt_optimizer *opt;
} running;

/* params: every /model tensor of ck (aliases excluded), on be, with zeroed gradients. */
static void params_from(const eopt_ckpt *ck, eopt_backend *be, int extra, eopt_param **out, int *n)
{
    int m = eopt_ckpt_num_tensors(ck);
    eopt_param *p = calloc((size_t)(m + extra), sizeof *p);
    for (int i = 0; i < m; i++) {
        const eopt_tensor *t = eopt_ckpt_tensor(ck, eopt_ckpt_tensor_name(ck, i));
        snprintf(p[i].name, sizeof p[i].name, "%s", eopt_ckpt_tensor_name(ck, i));
        p[i].w = calloc(1, sizeof *p[i].w);
        p[i].grad = calloc(1, sizeof *p[i].grad);
        cr_assert_eq(eopt_tensor_alloc(p[i].w, be, EOPT_F32, t->ndim, t->shape), EOPT_OK);
        cr_assert_eq(eopt_tensor_copy(p[i].w, t), EOPT_OK);
        cr_assert_eq(eopt_tensor_alloc(p[i].grad, be, EOPT_F32, t->ndim, t->shape), EOPT_OK);
        eopt_fill(be, t->numel, 0.0f, eopt_f32(p[i].grad));
    }
    *out = p;
    *n = m;
}

static void params_free(eopt_param *p, int n)
{
    for (int i = 0; i < n; i++) {
        eopt_tensor_free(p[i].w);
        eopt_tensor_free(p[i].grad);
        free(p[i].w);
        free(p[i].grad);
    }
    free(p);
}

static void running_open(running *r, const char *c)
{
    char path[1024];
    fixture(path, sizeof path, c, "step_12.h5");
    eopt_ckpt *ck;
    cr_assert_eq(eopt_backend_cpu_create(1, &r->be), EOPT_OK);
    cr_assert_eq(eopt_checkpoint_open(path, NULL, &ck), EOPT_OK, "%s", eopt_last_error());
    params_from(ck, r->be, 0, &r->params, &r->n);
    cr_assert_eq(eopt_ckpt_create_optimizer(ck, OPT, r->be, r->params, r->n, &r->opt), EOPT_OK, "%s",
                 eopt_last_error());
    eopt_checkpoint_close(ck);
}

static void running_close(running *r)
{
    eopt_optimizer_free(r->opt);
    params_free(r->params, r->n);
    eopt_backend_close(r->be);
}

/* Every byte of the model and of the optimizer state, in order, as one host buffer. */
static unsigned char *snapshot(const running *r, size_t *len)
{
    size_t n = 0;
    for (int i = 0; i < r->n; i++)
        n += eopt_tensor_bytes(r->params[i].w);
    for (int i = 0; i < r->opt->nparams; i++)
        for (int j = 0; j < r->opt->state[i].n; j++)
            n += eopt_tensor_bytes(&r->opt->state[i].t[j]) + sizeof r->opt->state[i].key[j];
    unsigned char *buf = malloc(n ? n : 1), *p = buf;
    for (int i = 0; i < r->n; i++) {
        eopt_tensor_to_host(r->params[i].w, p, eopt_tensor_bytes(r->params[i].w));
        p += eopt_tensor_bytes(r->params[i].w);
    }
    for (int i = 0; i < r->opt->nparams; i++)
        for (int j = 0; j < r->opt->state[i].n; j++) {
            const eopt_tensor *t = &r->opt->state[i].t[j];
            memcpy(p, r->opt->state[i].key[j], sizeof r->opt->state[i].key[j]);
            p += sizeof r->opt->state[i].key[j];
            eopt_tensor_to_host(t, p, eopt_tensor_bytes(t));
            p += eopt_tensor_bytes(t);
        }
    *len = n;
    return buf;
}

/* What a trainer does to resume: open (validates the file), then apply it all or nothing.
 * defer = 1 as `eopt train` does: the tensors are read by the apply, straight into the state
 * it builds; every refusal below is checked both ways. */
static eopt_status resume_as(const char *path, int allow_nonfinite, int defer, running *r)
{
    eopt_ckpt_options o = {.allow_nonfinite = allow_nonfinite, .defer_tensors = defer};
    eopt_ckpt *ck;
    EOPT_TRY(eopt_checkpoint_open(path, &o, &ck));
    const char *names[] = {OPT};
    eopt_status st = eopt_checkpoint_apply(ck, r->params, r->n, 1, names, &r->opt);
    eopt_checkpoint_close(ck);
    return st;
}

static eopt_status resume(const char *path, int allow_nonfinite, running *r)
{
    return resume_as(path, allow_nonfinite, 1, r);
}

/* Loading `path` into the running step_12 state of case c must fail with a message holding
 * every needle, and leave the running state bitwise untouched: with the tensors read at open
 * and with them read by the apply (defer_tensors). */
static void expect_refused(const char *c, const char *path, const char *const *needles)
{
    for (int defer = 0; defer < 2; defer++) {
        running r;
        running_open(&r, c);
        size_t n0, n1;
        unsigned char *before = snapshot(&r, &n0);
        eopt_status st = resume_as(path, 0, defer, &r);
        cr_assert_neq(st, EOPT_OK, "loading %s succeeded (defer_tensors %d)", path, defer);
        const char *msg = eopt_last_error();
        for (int k = 0; needles[k]; k++)
            cr_expect(strstr(msg, needles[k]) != NULL, "message \"%s\" does not name \"%s\" (defer_tensors %d)", msg,
                      needles[k], defer);
        unsigned char *after = snapshot(&r, &n1);
        cr_expect(n0 == n1 && memcmp(before, after, n0) == 0,
                  "a refused load of %s changed the running state (defer_tensors %d)", path, defer);
        free(before);
        free(after);
        running_close(&r);
    }
    unlink(path);
}

#define REFUSED_IN(c, path, ...) expect_refused(c, path, (const char *const[]){__VA_ARGS__, NULL})
#define REFUSED(path, ...) REFUSED_IN(CASE, path, __VA_ARGS__)

/* The control: the unmodified copy loads and does change the running state. */
Test(ckpt_robust, intact_copy_loads)
{
    char path[512];
    H5Fclose(edit_copy(path, sizeof path, CASE, "intact.h5"));
    running r;
    running_open(&r, CASE);
    size_t n0, n1;
    unsigned char *before = snapshot(&r, &n0);
    cr_assert_eq(resume(path, 0, &r), EOPT_OK, "%s", eopt_last_error());
    unsigned char *after = snapshot(&r, &n1);
    cr_expect(n0 != n1 || memcmp(before, after, n0) != 0, "loading step 5 over step 12 changed nothing");
    running e; /* the tensors read at open: the same state to the bit */
    running_open(&e, CASE);
    cr_assert_eq(resume_as(path, 0, 0, &e), EOPT_OK, "%s", eopt_last_error());
    size_t n2;
    unsigned char *eager = snapshot(&e, &n2);
    cr_expect(n1 == n2 && memcmp(after, eager, n1) == 0, "defer_tensors loads another state");
    free(eager);
    running_close(&e);
    free(before);
    free(after);
    running_close(&r);
    unlink(path);
}

Test(ckpt_robust, missing_file)
{
    char path[512];
    tmp_path(path, sizeof path, "does-not-exist.h5");
    REFUSED(path, path);
}

Test(ckpt_robust, not_hdf5)
{
    char path[512];
    tmp_path(path, sizeof path, "text.h5");
    FILE *f = fopen(path, "w");
    fputs("step = 5\nthis is not an HDF5 file\n", f);
    fclose(f);
    REFUSED(path, path, "HDF5");
}

Test(ckpt_robust, truncated)
{
    char path[512];
    H5Fclose(edit_copy(path, sizeof path, CASE, "truncated.h5"));
    struct stat sb;
    stat(path, &sb);
    cr_assert_eq(truncate(path, sb.st_size / 2), 0);
    REFUSED(path, path);
}

Test(ckpt_robust, wrong_format)
{
    char path[512];
    hid_t f = edit_copy(path, sizeof path, CASE, "format.h5");
    set_str_attr(f, "/", "format", "pytorch-zip");
    H5Fclose(f);
    REFUSED(path, path, "format", "pytorch-zip");
}

Test(ckpt_robust, newer_format_version)
{
    char path[512];
    hid_t f = edit_copy(path, sizeof path, CASE, "version.h5");
    set_i64_attr(f, "/", "format_version", 2);
    H5Fclose(f);
    REFUSED(path, path, "format_version", "2");
}

Test(ckpt_robust, parameter_missing)
{
    char path[512];
    hid_t f = edit_copy(path, sizeof path, CASE, "param-missing.h5");
    H5Ldelete(f, "/model/blocks.0.mlp.gate.weight", H5P_DEFAULT);
    H5Fclose(f);
    REFUSED(path, path, "blocks.0.mlp.gate.weight");
}

Test(ckpt_robust, parameter_extra)
{
    char path[512];
    hid_t f = edit_copy(path, sizeof path, CASE, "param-extra.h5");
    put_dataset(f, "/model/blocks.0.extra.weight", 2, (hsize_t[]){4, 4}, 0, 0.5);
    H5Fclose(f);
    REFUSED(path, path, "/model/blocks.0.extra.weight");
}

Test(ckpt_robust, parameter_wrong_shape)
{
    char path[512];
    hid_t f = edit_copy(path, sizeof path, CASE, "param-shape.h5");
    put_dataset(f, "/model/blocks.0.mlp.gate.weight", 2, (hsize_t[]){24, 23}, 0, 0.5);
    H5Fclose(f);
    REFUSED(path, path, "blocks.0.mlp.gate.weight", "23");
}

Test(ckpt_robust, parameter_wrong_dtype)
{
    char path[512];
    hid_t f = edit_copy(path, sizeof path, CASE, "param-dtype.h5");
    put_dataset(f, "/model/blocks.0.mlp.gate.weight", 2, (hsize_t[]){24, 24}, 1, 1);
    H5Fclose(f);
    REFUSED(path, path, "/model/blocks.0.mlp.gate.weight");
}

Test(ckpt_robust, param_names_not_matching_groups)
{
    char path[512];
    hid_t f = edit_copy(path, sizeof path, CASE, "names-groups.h5");
    put_dataset(f, "/optimizers/0/param_groups/0/params", 1, (hsize_t[]){1}, 1, 0); /* index 1 in no group */
    H5Fclose(f);
    REFUSED(path, path, "/optimizers/0", "blocks.0.mlp.gate.weight");
}

Test(ckpt_robust, state_key_missing)
{
    char path[512];
    hid_t f = edit_copy(path, sizeof path, CASE, "state-missing.h5");
    H5Ldelete(f, "/optimizers/0/state/1/exp_avg_sq", H5P_DEFAULT);
    H5Fclose(f);
    REFUSED(path, path, "/optimizers/0/state/1", "exp_avg_sq");
}

Test(ckpt_robust, state_wrong_shape)
{
    char path[512];
    hid_t f = edit_copy(path, sizeof path, CASE, "state-shape.h5");
    put_dataset(f, "/optimizers/0/state/1/L", 2, (hsize_t[]){24, 23}, 0, 0.0);
    H5Fclose(f);
    REFUSED(path, path, "/optimizers/0/state/1/L", "23");
}

/* A dataset whose dimensions multiply past 64 bits (chunked, so the file stays small): refused by
 * name, never sized by a wrapped product. */
static void put_huge_dataset(hid_t f, const char *name, int ndim, const hsize_t *shape)
{
    if (H5Lexists(f, name, H5P_DEFAULT) > 0)
        H5Ldelete(f, name, H5P_DEFAULT);
    hsize_t chunk[2] = {1, 1};
    hid_t s = H5Screate_simple(ndim, shape, NULL), pl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(pl, ndim, chunk);
    hid_t d = H5Dcreate2(f, name, H5T_IEEE_F32LE, s, H5P_DEFAULT, pl, H5P_DEFAULT);
    cr_assert(d >= 0, "cannot create %s", name);
    H5Dclose(d);
    H5Pclose(pl);
    H5Sclose(s);
}

Test(ckpt_robust, dimensions_overflowing_64_bits)
{
    const char *names[] = {"/optimizers/0/state/1/L", "/model/blocks.0.mlp.gate.weight"};
    for (int k = 0; k < 2; k++) {
        char path[512];
        hid_t f = edit_copy(path, sizeof path, CASE, k ? "huge-param.h5" : "huge-state.h5");
        put_huge_dataset(f, names[k], 2, (hsize_t[]){(hsize_t)1 << 61, 16});
        H5Fclose(f);
        /* the in-process reader, without the guard's check in a child first */
        eopt_ckpt *ck = NULL;
        eopt_ckpt_options trusted = {.trusted = 1};
        cr_expect_eq(eopt_checkpoint_open(path, &trusted, &ck), EOPT_ERR_FORMAT);
        cr_expect(strstr(eopt_last_error(), names[k]) && strstr(eopt_last_error(), "64 bits"), "%s",
                  eopt_last_error());
        REFUSED(path, path, names[k] + 1, "64 bits"); /* the guard names it without the leading '/' */
    }
}

/* A damaged group listing one member name twice (found by fuzzing: /optimizers/0/state holds
 * "1" twice and no "0"; libhdf5 opens it, and the reader read state 1 twice, leaking the first
 * and leaving parameter 0 without state). Refused by name, with or without the guard. */
Test(ckpt_robust, duplicate_member_names)
{
    const char *path = "tests/corpus/reader/duplicate-state-b3f35f389440.h5";
    for (int trusted = 0; trusted < 2; trusted++) {
        eopt_ckpt *ck = NULL;
        eopt_ckpt_options o = {.trusted = trusted};
        cr_expect_eq(eopt_checkpoint_open(path, &o, &ck), EOPT_ERR_FORMAT, "trusted %d: opened", trusted);
        cr_expect(strstr(eopt_last_error(), "/optimizers/0/state") && strstr(eopt_last_error(), "'1'") &&
                      strstr(eopt_last_error(), "more than once"), "%s", eopt_last_error());
        eopt_checkpoint_close(ck);
    }
}

Test(ckpt_robust, unknown_class)
{
    char path[512];
    hid_t f = edit_copy(path, sizeof path, CASE, "class.h5");
    set_str_attr(f, "/optimizers/0", "class", "Adafactor");
    H5Fclose(f);
    REFUSED(path, path, "/optimizers/0", "Adafactor");
}

Test(ckpt_robust, bad_argument_value)
{
    char path[512];
    hid_t f = edit_copy(path, sizeof path, CASE, "argument.h5");
    set_str_attr(f, "/optimizers/0", "use_eigh", "sometimes");
    H5Fclose(f);
    REFUSED(path, path, "/optimizers/0", "use_eigh");
}

/* checkpoint.md's example of a value the reader cannot honour: AdamW without AMSGrad. */
Test(ckpt_robust, adamw_amsgrad_refused)
{
    char path[512];
    hid_t f = edit_copy(path, sizeof path, "torch_adamw", "amsgrad.h5");
    hid_t g = H5Gopen2(f, "/optimizers/0/param_groups/0", H5P_DEFAULT);
    H5Adelete(g, "amsgrad");
    hid_t s = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(g, "amsgrad", H5T_STD_I8LE, s, H5P_DEFAULT, H5P_DEFAULT);
    int8_t one = 1;
    cr_assert(a >= 0 && H5Awrite(a, H5T_NATIVE_INT8, &one) >= 0);
    H5Aclose(a);
    H5Sclose(s);
    H5Gclose(g);
    H5Fclose(f);
    REFUSED_IN("torch_adamw", path, path, "/optimizers/0", "amsgrad");
}

Test(ckpt_robust, nonfinite_state_refused_unless_allowed)
{
    char path[512];
    hid_t f = edit_copy(path, sizeof path, CASE, "nan.h5");
    poke(f, "/optimizers/0/state/0/exp_avg", 3, NAN);
    H5Fclose(f);
    running r;
    running_open(&r, CASE);
    cr_expect_eq(resume(path, 1, &r), EOPT_OK, "allow_nonfinite: %s", eopt_last_error());
    running_close(&r);
    REFUSED(path, path, "/optimizers/0/state/0/exp_avg", "nan");
}

Test(ckpt_robust, infinite_model_refused)
{
    char path[512];
    hid_t f = edit_copy(path, sizeof path, CASE, "inf.h5");
    poke(f, "/model/blocks.0.attn.proj.weight", 7, INFINITY);
    H5Fclose(f);
    REFUSED(path, path, "/model/blocks.0.attn.proj.weight", "inf");
}

/* One optimizer step with fixed gradients; returns the updated model bytes. */
static unsigned char *step_once(running *r, size_t *len)
{
    for (int i = 0; i < r->n; i++) {
        float *g = malloc(eopt_tensor_bytes(r->params[i].grad));
        for (int64_t k = 0; k < r->params[i].grad->numel; k++)
            g[k] = sinf(0.37f * (float)k + (float)i);
        eopt_tensor_from_host(r->params[i].grad, g, eopt_tensor_bytes(r->params[i].grad));
        free(g);
    }
    cr_assert_eq(eopt_optimizer_step(r->opt), EOPT_OK, "%s", eopt_last_error());
    return snapshot(r, len);
}

/* Newer upstream SOAP writes eigvals_L / eigvals_R: accepted, and the run goes on as without. */
Test(ckpt_robust, soap_version_drift_eigvals)
{
    char path[512], plain[512];
    fixture(plain, sizeof plain, CASE, "step_5.h5");
    hid_t f = edit_copy(path, sizeof path, CASE, "eigvals.h5");
    const hsize_t m[2] = {16, 24};
    for (int i = 0; i < 2; i++) {
        char name[128];
        snprintf(name, sizeof name, "/optimizers/0/state/%d/eigvals_L", i);
        put_dataset(f, name, 1, &m[i], 0, 1.0);
        snprintf(name, sizeof name, "/optimizers/0/state/%d/eigvals_R", i);
        put_dataset(f, name, 1, &m[i], 0, 1.0);
    }
    H5Fclose(f);
    running a, b;
    running_open(&a, CASE);
    running_open(&b, CASE);
    cr_assert_eq(resume(path, 0, &a), EOPT_OK, "%s", eopt_last_error());
    cr_assert_eq(resume(plain, 0, &b), EOPT_OK, "%s", eopt_last_error());
    size_t na, nb;
    unsigned char *sa = step_once(&a, &na), *sb = step_once(&b, &nb);
    cr_expect(na == nb && memcmp(sa, sb, na) == 0, "eigvals changed the continued run");
    free(sa);
    free(sb);
    running_close(&a);
    running_close(&b);
    unlink(path);
}

/* Two optimizers in one file (Muon on the block matrices, AdamW on the rest, tied head). */
Test(ckpt_robust, several_optimizers)
{
    char path[1024];
    fixture(path, sizeof path, "gpt_muon_adamw", "step_5.h5");
    eopt_backend *be;
    eopt_ckpt *ck;
    cr_assert_eq(eopt_backend_cpu_create(1, &be), EOPT_OK);
    cr_assert_eq(eopt_checkpoint_open(path, NULL, &ck), EOPT_OK, "%s", eopt_last_error());
    cr_assert_eq(eopt_ckpt_num_optimizers(ck), 2);
    eopt_param *params;
    int n;
    params_from(ck, be, 0, &params, &n);
    cr_expect_eq(n, 28, "%d stored tensors (the tied head is an alias)", n);
    cr_assert_eq(eopt_ckpt_load_model(ck, params, n), EOPT_OK, "%s", eopt_last_error());
    int total = 0;
    for (int k = 0; k < 2; k++) {
        eopt_optimizer *opt;
        const char *name = eopt_ckpt_optimizer_name(ck, k);
        cr_assert_eq(eopt_ckpt_create_optimizer(ck, name, be, params, n, &opt), EOPT_OK, "%s", eopt_last_error());
        total += opt->nparams;
        eopt_optimizer_free(opt);
    }
    cr_expect_eq(total, 28, "the two optimizers cover %d parameters", total);
    eopt_checkpoint_close(ck);
    params_free(params, n);
    eopt_backend_close(be);
}

/* ------------------------------------------------------------------------------------------
 * Rotation and crashes */

static void make_dir(char *dir, size_t size, const char *tag)
{
    tmp_path(dir, size, tag);
    cr_assert(mkdir(dir, 0700) == 0, "cannot create %s", dir);
}

static void remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.')
            continue;
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

/* Names in dir ending with `suffix`; the largest (zero-padded names sort by step) in last. */
static int count_files(const char *dir, const char *suffix, char *last, size_t size)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    int n = 0;
    if (last)
        last[0] = 0;
    while ((e = readdir(d))) {
        size_t l = strlen(e->d_name), s = strlen(suffix);
        if (l < s || strcmp(e->d_name + l - s, suffix) != 0)
            continue;
        n++;
        if (last && strcmp(e->d_name, last) > 0)
            snprintf(last, size, "%s", e->d_name);
    }
    closedir(d);
    return n;
}

/* The saving workload: the case's step_0 model and optimizer plus a 1 MiB tensor the optimizer
 * does not own (so that a write takes long enough to be interrupted). Step s feeds fixed
 * gradients and sets the big tensor to s. */
typedef struct {
    running r;
    eopt_param *all; /* r.params + big */
    eopt_tensor big;
} workload;

static void workload_open(workload *w)
{
    char path[1024];
    fixture(path, sizeof path, CASE, "step_0.h5");
    eopt_ckpt *ck;
    cr_assert_eq(eopt_backend_cpu_create(1, &w->r.be), EOPT_OK);
    cr_assert_eq(eopt_checkpoint_open(path, NULL, &ck), EOPT_OK, "%s", eopt_last_error());
    params_from(ck, w->r.be, 1, &w->r.params, &w->r.n);
    cr_assert_eq(eopt_ckpt_create_optimizer(ck, OPT, w->r.be, w->r.params, w->r.n, &w->r.opt), EOPT_OK, "%s",
                 eopt_last_error());
    eopt_checkpoint_close(ck);
    eopt_param *big = &w->r.params[w->r.n];
    snprintf(big->name, sizeof big->name, "big.weight");
    big->w = &w->big;
    cr_assert_eq(eopt_tensor_alloc(&w->big, w->r.be, EOPT_F32, 2, (int64_t[]){512, 512}), EOPT_OK);
    eopt_fill(w->r.be, w->big.numel, 0.0f, eopt_f32(&w->big));
    w->all = w->r.params;
}

static void workload_step(workload *w, int64_t s)
{
    for (int i = 0; i < w->r.n; i++) {
        float *g = malloc(eopt_tensor_bytes(w->r.params[i].grad));
        for (int64_t k = 0; k < w->r.params[i].grad->numel; k++)
            g[k] = sinf(0.01f * (float)k + (float)s) * 0.1f;
        eopt_tensor_from_host(w->r.params[i].grad, g, eopt_tensor_bytes(w->r.params[i].grad));
        free(g);
    }
    cr_assert_eq(eopt_optimizer_step(w->r.opt), EOPT_OK, "%s", eopt_last_error());
    eopt_fill(w->r.be, w->big.numel, (float)s, eopt_f32(&w->big));
}

static eopt_status workload_save(workload *w, const char *dir, int64_t s, int keep)
{
    eopt_ckpt_optimizer o = {.name = OPT, .opt = w->r.opt};
    eopt_ckpt_write cw = {.step = s, .producer = "test_ckpt_robust", .nparams = w->r.n + 1, .params = w->all,
                          .nopt = 1, .opts = &o};
    return eopt_checkpoint_save_rotating(dir, "ckpt_", &cw, keep, NULL, 0);
}

static void workload_close(workload *w)
{
    eopt_tensor_free(&w->big);
    running_close(&w->r);
}

Test(ckpt_robust, keeps_last_k)
{
    char dir[512], stale[1024], last[256];
    make_dir(dir, sizeof dir, "rotate");
    snprintf(stale, sizeof stale, "%s/ckpt_000000000099.h5.tmp", dir); /* a killed writer's leftover */
    fclose(fopen(stale, "w"));
    workload w;
    workload_open(&w);
    for (int64_t s = 1; s <= 7; s++) {
        workload_step(&w, s);
        cr_assert_eq(workload_save(&w, dir, s, 3), EOPT_OK, "%s", eopt_last_error());
    }
    cr_expect_eq(count_files(dir, ".h5", last, sizeof last), 3);
    cr_expect_str_eq(last, "ckpt_000000000007.h5");
    cr_expect_eq(count_files(dir, ".tmp", NULL, 0), 0, "the stale .tmp survived pruning");
    eopt_ckpt *ck;
    cr_assert_eq(eopt_checkpoint_open_latest(dir, "ckpt_", NULL, &ck), EOPT_OK, "%s", eopt_last_error());
    cr_expect_eq(eopt_ckpt_step(ck), 7);
    eopt_checkpoint_close(ck);
    workload_close(&w);
    remove_dir(dir);
}

/* The child saves step after step until killed; once its first checkpoint is there, the parent
 * kills it at a random moment (mostly inside a write: saving is most of a step). Then the newest
 * file must open, hold exactly the state of its step (an uninterrupted run recomputed here), and
 * resume to the same next step. */
Test(ckpt_robust, sigkill_while_saving)
{
    enum { TRIALS = 24, KEEP = 3 };
    char dir[512];
    int mid_write = 0;
    srand((unsigned)time(NULL) ^ (unsigned)getpid());
    for (int trial = 0; trial < TRIALS; trial++) {
        make_dir(dir, sizeof dir, "kill");
        pid_t pid = fork();
        cr_assert(pid >= 0);
        if (pid == 0) {
            workload w;
            workload_open(&w);
            for (int64_t s = 1;; s++) {
                workload_step(&w, s);
                if (workload_save(&w, dir, s, KEEP) != EOPT_OK)
                    _exit(3);
            }
        }
        for (int wait = 0; wait < 3000 && count_files(dir, ".h5", NULL, 0) == 0; wait++)
            usleep(10000);
        usleep((useconds_t)(rand() % 250000)); /* a save takes ~50 ms (more under ASan) */
        kill(pid, SIGKILL);
        int status;
        waitpid(pid, &status, 0);
        cr_assert(WIFSIGNALED(status), "the saving child exited by itself (status %d)", status);
        char newest[256];
        int files = count_files(dir, ".h5", newest, sizeof newest);
        mid_write += count_files(dir, ".tmp", NULL, 0) > 0;
        cr_assert_leq(files, KEEP + 1, "%d checkpoints kept", files);
        cr_assert_gt(files, 0, "trial %d: no checkpoint left", trial);
        eopt_ckpt *ck;
        cr_assert_eq(eopt_checkpoint_open_latest(dir, "ckpt_", NULL, &ck), EOPT_OK, "trial %d: %s", trial,
                     eopt_last_error());
        int64_t S = eopt_ckpt_step(ck);
        char expect[256];
        snprintf(expect, sizeof expect, "ckpt_%012lld.h5", (long long)S);
        cr_assert_str_eq(newest, expect, "trial %d: the newest file %s did not load", trial, newest);
        /* the reference: an uninterrupted run to S, then one more step */
        workload ref, got;
        workload_open(&ref);
        workload_open(&got);
        for (int64_t s = 1; s <= S; s++)
            workload_step(&ref, s);
        const char *names[] = {OPT};
        cr_assert_eq(eopt_checkpoint_apply(ck, got.all, got.r.n + 1, 1, names, &got.r.opt), EOPT_OK, "%s",
                     eopt_last_error());
        eopt_checkpoint_close(ck);
        size_t na, nb;
        unsigned char *a = snapshot(&ref.r, &na), *b = snapshot(&got.r, &nb);
        cr_expect(na == nb && memcmp(a, b, na) == 0, "trial %d: step %lld loaded differs from the run", trial,
                  (long long)S);
        free(a);
        free(b);
        workload_step(&ref, S + 1);
        workload_step(&got, S + 1);
        a = snapshot(&ref.r, &na), b = snapshot(&got.r, &nb);
        cr_expect(na == nb && memcmp(a, b, na) == 0, "trial %d: resumed step %lld differs", trial, (long long)S + 1);
        free(a);
        free(b);
        workload_close(&ref);
        workload_close(&got);
        remove_dir(dir);
    }
    cr_log_info("sigkill_while_saving: %d kills, each resumed from the newest checkpoint; %d inside a write", TRIALS,
                mid_write);
}
