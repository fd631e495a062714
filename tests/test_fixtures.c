/* The golden fixtures (../shared/fixtures/README.md), generically: every case is replayed from
 * scratch and from its midway checkpoint through eopt's checkpoint loader, its final state is
 * compared with the Python one, and its checkpoints survive a read / write round trip. This
 * file knows no optimizer: the class comes from each checkpoint. */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../checkpoint/h5.h"
#include "../cmd/replay.h"
#include "testutil.h"

/* Comparisons count their mismatches rather than stop, so that the tests below can also show
 * that a wrong state or a damaged copy is caught. The first is kept for the failure message, all
 * are logged (--verbose; Criterion 2.4 fails the run on any warning-level log). */
static int mismatches;
static char first_mismatch[4096];
#define MISMATCH_IF(bad, ...)                                                                                          \
    do {                                                                                                               \
        if (bad) {                                                                                                     \
            if (mismatches++ == 0)                                                                                     \
                snprintf(first_mismatch, sizeof first_mismatch, __VA_ARGS__);                                          \
            cr_log_info(__VA_ARGS__);                                                                                  \
        }                                                                                                              \
    } while (0)

static const char *const cases[] = {
    "adamuon_default",
    "dion2_plain",
    "dion2_soft",
    "dion_muon_soft",
    "dion_normuon_mixed_groups",
    "dion_normuon_soft",
    "gpt_muon_adamw",
    "moso_default",
    "muon_default",
    "muon_nesterov_polar_express",
    "muon_two_groups",
    "muown_default",
    "namo_default",
    "nordion2_soft",
    "normuon_default",
    "soap_default",
    "soap_eigh_kl",
    "soap_freq_warmup_clip",
    "soap_tall_wide",
    "torch_adamw",
};
#define NCASES ((int)(sizeof cases / sizeof cases[0]))

/* The checkpoint `file` of case c, restored on the backend EOPT_DEVICE names. */
static eopt_ckpt *restore(const char *c, const char *file, eopt_backend **be, eopt_restored *r)
{
    char path[1024];
    tu_fixture(path, sizeof path, "optimizers/%s/%s", c, file);
    eopt_ckpt *ck = NULL;
    cr_assert_eq(eopt_backend_open(NULL, 2, be), EOPT_OK, "%s", eopt_last_error());
    cr_assert_eq(eopt_checkpoint_open(path, NULL, &ck), EOPT_OK, "%s", eopt_last_error());
    cr_assert_eq(eopt_restore(ck, *be, r), EOPT_OK, "%s", eopt_last_error());
    return ck;
}

static void replay(const char *c, eopt_restored *r, const eopt_ckpt *ck, int64_t first, const char *label)
{
    char traj[1024];
    tu_fixture(traj, sizeof traj, "optimizers/%s/trajectory.h5", c);
    eopt_replay_result res;
    cr_assert_eq(eopt_replay_run(r, ck, traj, NULL, &res), EOPT_OK, "%s", eopt_last_error());
    cr_assert_eq(res.first, first, "%s: replay starts at %lld", c, (long long)res.first);
    cr_assert_gt(res.last, res.first, "%s: nothing replayed", c);
    cr_log_info("fixture %s %s: steps %lld..%lld worst_rel_err=%.3e tolerance=%.3e", c, label, (long long)res.first,
                (long long)res.last, res.worst, res.tolerance);
    cr_expect(res.ok, "%s %s: %s at step %lld is off by %.3e of its movement (tolerance %.3e)", c, label,
              res.worst_tensor, (long long)res.worst_step, res.worst, res.tolerance);
}

static void release(eopt_ckpt *ck, eopt_backend *be, eopt_restored *r)
{
    eopt_restored_free(r);
    eopt_checkpoint_close(ck);
    eopt_backend_close(be);
}

static void check_scratch(const char *c)
{
    eopt_backend *be;
    eopt_restored r;
    eopt_ckpt *ck = restore(c, "step_0.h5", &be, &r);
    cr_assert_eq(eopt_ckpt_step(ck), 0);
    replay(c, &r, ck, 1, "scratch");
    release(ck, be, &r);
}

/* ------------------------------------------------------------------------------------------
 * State against the reference. A key Q_* is an eigenbasis, compared column by column up to
 * sign; exp_avg lives in those bases, so its rows (left basis) / columns (right basis) are
 * flipped with the same signs first (soap-moso.md §5). Q_L acts on rows, Q_R on columns, and a
 * one-sided Q_M on the smaller side: rows when m <= n. */

typedef struct {
    char key[24];
    int n;
    double *sign; /* [n]: column signs of this basis relative to the reference */
} basis;

static double *host_copy(const eopt_tensor *t)
{
    double *v = malloc(sizeof *v * (size_t)(t->numel ? t->numel : 1));
    cr_assert(v);
    eopt_tensor h;
    cr_assert_eq(eopt_tensor_alloc(&h, NULL, t->dtype, t->ndim, t->shape), EOPT_OK);
    cr_assert_eq(eopt_tensor_copy(&h, t), EOPT_OK, "%s", eopt_last_error());
    for (int64_t k = 0; k < t->numel; k++)
        v[k] = t->dtype == EOPT_F32   ? ((float *)h.data)[k]
               : t->dtype == EOPT_I64 ? (double)((int64_t *)h.data)[k]
                                      : (double)((int32_t *)h.data)[k];
    eopt_tensor_free(&h);
    return v;
}

static double max_abs(const double *v, int64_t n)
{
    double m = 0;
    for (int64_t k = 0; k < n; k++)
        m = fabs(v[k]) > m ? fabs(v[k]) : m;
    return m;
}

static void compare_basis(const char *what, const double *q, const double *ref, int64_t rows, int64_t cols, double tol,
                          basis *b)
{
    b->n = (int)cols;
    b->sign = malloc(sizeof *b->sign * (size_t)cols);
    double bound = tol * max_abs(ref, rows * cols), worst = 0;
    int64_t worst_col = -1;
    for (int64_t c = 0; c < cols; c++) {
        double dot = 0, err = 0;
        for (int64_t r = 0; r < rows; r++)
            dot += q[r * cols + c] * ref[r * cols + c];
        b->sign[c] = dot < 0 ? -1 : 1;
        for (int64_t r = 0; r < rows; r++)
            err = fmax(err, fabs(b->sign[c] * q[r * cols + c] - ref[r * cols + c]));
        if (err > worst || worst_col < 0)
            worst = err, worst_col = c;
    }
    MISMATCH_IF(!(worst <= bound), "%s: column %lld differs by %.3e up to sign (bound %.3e)", what,
                (long long)worst_col, worst, bound);
}

/* Multiplies exp_avg's rows / columns by the basis signs. */
static void unflip(double *v, int64_t rows, int64_t cols, const basis *bases, int nb)
{
    for (int k = 0; k < nb; k++) {
        const basis *b = &bases[k];
        int on_rows = strcmp(b->key, "Q_L") == 0 || (strcmp(b->key, "Q_M") == 0 && b->n == rows && rows <= cols);
        cr_assert_eq(on_rows ? rows : cols, b->n, "basis %s of size %d does not fit exp_avg [%lld, %lld]", b->key, b->n,
                     (long long)rows, (long long)cols);
        for (int64_t r = 0; r < rows; r++)
            for (int64_t c = 0; c < cols; c++)
                v[r * cols + c] *= b->sign[on_rows ? r : c];
    }
}

static int optional_key(const eopt_optimizer *opt, const char *key)
{
    for (int k = 0; opt->cls->optional_state_keys && opt->cls->optional_state_keys[k]; k++)
        if (strcmp(opt->cls->optional_state_keys[k], key) == 0)
            return 1;
    return 0;
}

static void compare_entry(const char *what, const eopt_tensor *s, const eopt_tensor *ref, double tol,
                          const basis *bases, int nb, int in_basis)
{
    char sa[64], sb[64];
    cr_assert(eopt_tensor_same_shape(s, ref), "%s: shape %s, reference %s", what,
              eopt_shape_str(s->ndim, s->shape, sa, sizeof sa), eopt_shape_str(ref->ndim, ref->shape, sb, sizeof sb));
    double *v = host_copy(s), *w = host_copy(ref);
    if (ref->dtype != EOPT_F32) {
        MISMATCH_IF(s->dtype == EOPT_F32, "%s: float state where the reference is integer", what);
        for (int64_t k = 0; k < s->numel; k++)
            MISMATCH_IF(v[k] != w[k], "%s[%lld]: %g, reference %g", what, (long long)k, v[k], w[k]);
    } else {
        if (in_basis && nb > 0)
            unflip(v, eopt_tensor_rows(s), eopt_tensor_cols(s), bases, nb);
        double err = 0, bound = tol * max_abs(w, ref->numel);
        for (int64_t k = 0; k < s->numel; k++)
            err = fabs(v[k] - w[k]) > err || isnan(v[k]) ? fabs(v[k] - w[k]) : err;
        MISMATCH_IF(!(err <= bound), "%s: max|s - s_ref| = %.3e > %.3e = tolerance * max|s_ref|", what, err, bound);
    }
    free(v);
    free(w);
}

static void compare_param_state(const char *c, const eopt_ckpt_opt_info *o, int64_t i, eopt_optimizer *opt, int j,
                                double tol)
{
    char what[512];
    const eopt_state *s = &opt->state[j];
    for (int q = 0; q < s->n; q++) {
        int found = 0;
        for (int k = 0; k < o->nstate[i]; k++)
            found |= strcmp(o->state[i][k].key, s->key[q]) == 0;
        MISMATCH_IF(!found && !optional_key(opt, s->key[q]),
                    "%s: %s state %lld ('%s') has key '%s' the reference lacks", c, o->name, (long long)i,
                    o->param_names[i], s->key[q]);
    }
    basis bases[EOPT_STATE_MAX];
    int nb = 0;
    for (int pass = 0; pass < 2; pass++) /* bases first: their signs apply to exp_avg */
        for (int k = 0; k < o->nstate[i]; k++) {
            const eopt_ckpt_entry *e = &o->state[i][k];
            int is_basis = strncmp(e->key, "Q_", 2) == 0;
            if (is_basis != (pass == 0))
                continue;
            const eopt_tensor *t = eopt_state_get(opt, j, e->key);
            snprintf(what, sizeof what, "%s: /optimizers/%s/state/%lld/%s ('%s')", c, o->name, (long long)i, e->key,
                     o->param_names[i]);
            if (!t) {
                MISMATCH_IF(!optional_key(opt, e->key), "%s: missing in eopt's state", what);
                continue;
            }
            if (is_basis) {
                cr_assert(eopt_tensor_same_shape(t, &e->t) && t->ndim == 2, "%s: shape differs", what);
                double *v = host_copy(t), *w = host_copy(&e->t);
                snprintf(bases[nb].key, sizeof bases[nb].key, "%s", e->key);
                compare_basis(what, v, w, t->shape[0], t->shape[1], tol, &bases[nb++]);
                free(v);
                free(w);
            } else {
                compare_entry(what, t, &e->t, tol, bases, nb, strcmp(e->key, "exp_avg") == 0);
            }
        }
    for (int k = 0; k < nb; k++)
        free(bases[k].sign);
}

static double trajectory_tolerance(const char *c)
{
    char traj[1024];
    tu_fixture(traj, sizeof traj, "optimizers/%s/trajectory.h5", c);
    eopt_trajectory *tr;
    cr_assert_eq(eopt_trajectory_open(traj, &tr), EOPT_OK, "%s", eopt_last_error());
    double tol = eopt_trajectory_tolerance(tr);
    eopt_trajectory_close(tr);
    return tol;
}

static void compare_state(const char *c, const eopt_restored *r, const eopt_ckpt *ref)
{
    double tol = trajectory_tolerance(c);
    cr_assert_eq(r->nopt, eopt_ckpt_num_optimizers(ref), "%s: optimizer count differs", c);
    for (int k = 0; k < r->nopt; k++) {
        const eopt_ckpt_opt_info *o = eopt_ckpt_optimizer_info(ref, r->opt_names[k]);
        cr_assert(o, "%s: the reference has no optimizer '%s'", c, r->opt_names[k]);
        eopt_optimizer *opt = r->opts[k];
        cr_assert_eq(opt->nparams, o->nparams, "%s: %s has %d parameters, reference %d", c, o->name, opt->nparams,
                     o->nparams);
        for (int64_t i = 0; i < o->nparams; i++) {
            int j = -1;
            for (int q = 0; q < opt->nparams; q++)
                if (eopt_ckpt_tensor(ref, o->param_names[i]) == eopt_ckpt_tensor(ref, opt->params[q].name))
                    j = q;
            cr_assert_geq(j, 0, "%s: %s: eopt has no parameter '%s'", c, o->name, o->param_names[i]);
            MISMATCH_IF((opt->state[j].n > 0) != (o->nstate[i] > 0), "%s: %s state of '%s': eopt %s, reference %s", c,
                        o->name, o->param_names[i], opt->state[j].n ? "present" : "absent",
                        o->nstate[i] ? "present" : "absent");
            compare_param_state(c, o, i, opt, j, tol);
        }
    }
}

static void check_resume(const char *c)
{
    eopt_backend *be;
    eopt_restored r;
    eopt_ckpt *ck = restore(c, "step_5.h5", &be, &r);
    cr_assert_eq(eopt_ckpt_step(ck), 5);
    replay(c, &r, ck, 6, "resume");
    char path[1024];
    tu_fixture(path, sizeof path, "optimizers/%s/step_12.h5", c);
    eopt_ckpt *ref = NULL;
    cr_assert_eq(eopt_checkpoint_open(path, NULL, &ref), EOPT_OK, "%s", eopt_last_error());
    cr_assert_eq(eopt_ckpt_step(ref), r.step, "%s: replay ended at step %lld, reference at %lld", c, (long long)r.step,
                 (long long)eopt_ckpt_step(ref));
    mismatches = 0;
    compare_state(c, &r, ref);
    cr_expect_eq(mismatches, 0, "%s: %d state entries differ from step_12.h5, first: %s", c, mismatches,
                 first_mismatch);
    eopt_checkpoint_close(ref);
    release(ck, be, &r);
}

/* ------------------------------------------------------------------------------------------
 * Round trip: every group, dataset and attribute of the original is in eopt's copy with the
 * same type class, width, shape and value. An optimizer's `source` is free text naming where
 * the class came from; eopt writes its own, so there the check is that both pick one class. */

static double *read_numbers(hid_t obj, int is_attr, int64_t n)
{
    double *v = calloc((size_t)(n ? n : 1), sizeof *v);
    cr_assert(v);
    if (n > 0)
        cr_assert_geq(is_attr ? H5Aread(obj, H5T_NATIVE_DOUBLE, v)
                              : H5Dread(obj, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, v),
                      0);
    return v;
}

/* Compares type and extent of two attributes or datasets: the number of elements, -1 if they
 * differ. */
static int64_t same_kind(const char *what, hid_t ta, hid_t sa, hid_t tb, hid_t sb)
{
    int bad = 0;
    MISMATCH_IF(H5Tget_class(ta) != H5Tget_class(tb), "%s: type class %d, copy %d", what, (int)H5Tget_class(ta),
                (int)H5Tget_class(tb));
    if (H5Tget_class(ta) != H5T_STRING && H5Tget_size(ta) != H5Tget_size(tb)) {
        MISMATCH_IF(1, "%s: %zu-byte type, copy %zu", what, H5Tget_size(ta), H5Tget_size(tb));
        bad = 1;
    }
    int nd = H5Sget_simple_extent_ndims(sa);
    hsize_t da[8] = {0}, db[8] = {0};
    H5Sget_simple_extent_dims(sa, da, NULL);
    H5Sget_simple_extent_dims(sb, db, NULL);
    bad |= H5Tget_class(ta) != H5Tget_class(tb) || nd != H5Sget_simple_extent_ndims(sb);
    for (int k = 0; k < nd; k++)
        bad |= da[k] != db[k];
    MISMATCH_IF(nd != H5Sget_simple_extent_ndims(sb) || (bad && H5Tget_class(ta) == H5Tget_class(tb)),
                "%s: extent differs from the copy's", what);
    return bad ? -1 : (int64_t)H5Sget_simple_extent_npoints(sa);
}

static void same_numbers(const char *what, const double *a, const double *b, int64_t n)
{
    for (int64_t k = 0; k < n; k++)
        if (!(a[k] == b[k] || (isnan(a[k]) && isnan(b[k])))) {
            MISMATCH_IF(1, "%s[%lld]: %.17g, copy %.17g", what, (long long)k, a[k], b[k]);
            return;
        }
}

static void compare_attr(const char *path, hid_t a_obj, hid_t b_obj, const char *name)
{
    char what[1200];
    snprintf(what, sizeof what, "%s @%s", path, name);
    if (!eopt_h5_attr_exists(b_obj, name)) {
        MISMATCH_IF(1, "%s: attribute missing in the copy", what);
        return;
    }
    hid_t a = H5Aopen(a_obj, name, H5P_DEFAULT), b = H5Aopen(b_obj, name, H5P_DEFAULT);
    hid_t ta = H5Aget_type(a), tb = H5Aget_type(b), sa = H5Aget_space(a), sb = H5Aget_space(b);
    int64_t n = same_kind(what, ta, sa, tb, sb);
    if (n >= 0 && H5Tget_class(ta) == H5T_STRING) {
        char x[512], y[512];
        cr_assert_eq(eopt_h5_attr_read_str(a_obj, name, path, x, sizeof x), EOPT_OK, "%s", eopt_last_error());
        cr_assert_eq(eopt_h5_attr_read_str(b_obj, name, path, y, sizeof y), EOPT_OK, "%s", eopt_last_error());
        MISMATCH_IF(strcmp(x, y) != 0, "%s: '%s', copy '%s'", what, x, y);
    } else if (n >= 0) {
        double *x = read_numbers(a, 1, n), *y = read_numbers(b, 1, n);
        same_numbers(what, x, y, n);
        free(x);
        free(y);
    }
    H5Sclose(sa), H5Sclose(sb), H5Tclose(ta), H5Tclose(tb), H5Aclose(a), H5Aclose(b);
}

static void compare_dataset(const char *path, hid_t a, hid_t b)
{
    hid_t ta = H5Dget_type(a), tb = H5Dget_type(b), sa = H5Dget_space(a), sb = H5Dget_space(b);
    int64_t n = same_kind(path, ta, sa, tb, sb);
    if (n >= 0 && H5Tget_class(ta) == H5T_STRING) {
        int na, nb;
        char *x, *y;
        cr_assert_eq(eopt_h5_strings_read(a, ".", path, 256, &na, &x), EOPT_OK, "%s", eopt_last_error());
        cr_assert_eq(eopt_h5_strings_read(b, ".", path, 256, &nb, &y), EOPT_OK, "%s", eopt_last_error());
        for (int k = 0; k < na; k++)
            MISMATCH_IF(strcmp(x + 256 * k, y + 256 * k) != 0, "%s[%d]: '%s', copy '%s'", path, k, x + 256 * k,
                        y + 256 * k);
        free(x);
        free(y);
    } else if (n >= 0) {
        double *x = read_numbers(a, 0, n), *y = read_numbers(b, 0, n);
        same_numbers(path, x, y, n);
        free(x);
        free(y);
    }
    H5Sclose(sa), H5Sclose(sb), H5Tclose(ta), H5Tclose(tb);
}

/* The class a file's /optimizers/<name> names. */
static const eopt_optimizer_class *class_of(hid_t g, const char *path)
{
    char cls[128] = "", src[512] = "";
    eopt_h5_attr_read_str(g, "class", path, cls, sizeof cls);
    if (eopt_h5_attr_exists(g, "source"))
        eopt_h5_attr_read_str(g, "source", path, src, sizeof src);
    return eopt_optimizer_find_checkpoint(cls, src[0] ? src : NULL);
}

/* Tied weights: names that are one object in the original are one object in the copy. */
static void compare_links(const char *path, hid_t a, hid_t b, int n, char **names)
{
    for (int k = 0; k < n; k++)
        for (int q = k + 1; q < n; q++) {
            uint64_t xa = 0, ya = 1, xb = 0, yb = 1;
            eopt_h5_kind_of(a, names[k], &xa);
            eopt_h5_kind_of(a, names[q], &ya);
            eopt_h5_kind_of(b, names[k], &xb);
            eopt_h5_kind_of(b, names[q], &yb);
            MISMATCH_IF(xa == ya && xb != yb, "%s: '%s' and '%s' are one object in the original, two in the copy", path,
                        names[k], names[q]);
        }
}

static void compare_tree(const char *path, hid_t a, hid_t b)
{
    int is_optimizer = strncmp(path, "/optimizers/", 12) == 0 && !strchr(path + 12, '/');
    H5O_info_t info;
    cr_assert_geq(H5Oget_info2(a, &info, H5O_INFO_NUM_ATTRS), 0);
    for (hsize_t k = 0; k < info.num_attrs; k++) {
        char name[256];
        H5Aget_name_by_idx(a, ".", H5_INDEX_NAME, H5_ITER_INC, k, name, sizeof name, H5P_DEFAULT);
        if (is_optimizer && strcmp(name, "source") == 0)
            MISMATCH_IF(class_of(a, path) != class_of(b, path), "%s: the copy's source picks another class", path);
        else
            compare_attr(path, a, b, name);
    }
    if (H5Iget_type(a) != H5I_GROUP)
        return;
    int n;
    char **names;
    cr_assert_eq(eopt_h5_children(a, path, 0, &n, &names), EOPT_OK, "%s", eopt_last_error());
    for (int k = 0; k < n; k++) {
        char child[1024];
        snprintf(child, sizeof child, "%s/%s", strcmp(path, "/") ? path : "", names[k]);
        eopt_h5_kind kind = eopt_h5_kind_of(a, names[k], NULL);
        if (eopt_h5_kind_of(b, names[k], NULL) != kind) {
            MISMATCH_IF(1, "%s: missing or of another kind in the copy", child);
            continue;
        }
        hid_t ca = H5Oopen(a, names[k], H5P_DEFAULT), cb = H5Oopen(b, names[k], H5P_DEFAULT);
        if (kind == EOPT_H5_DATASET)
            compare_dataset(child, ca, cb);
        compare_tree(child, ca, cb);
        H5Oclose(ca);
        H5Oclose(cb);
    }
    compare_links(path, a, b, n, names);
    eopt_h5_names_free(n, names);
}

/* Mismatches between the original file and a copy. */
static int compare_files(const char *orig, const char *copy)
{
    hid_t a = H5Fopen(orig, H5F_ACC_RDONLY, H5P_DEFAULT), b = H5Fopen(copy, H5F_ACC_RDONLY, H5P_DEFAULT);
    cr_assert(a >= 0 && b >= 0, "cannot open %s or %s", orig, copy);
    hid_t ra = H5Gopen2(a, "/", H5P_DEFAULT), rb = H5Gopen2(b, "/", H5P_DEFAULT);
    mismatches = 0;
    compare_tree("/", ra, rb);
    H5Gclose(ra), H5Gclose(rb), H5Fclose(a), H5Fclose(b);
    return mismatches;
}

static void check_roundtrip_file(const char *c, const char *file)
{
    eopt_backend *be;
    eopt_restored r;
    eopt_ckpt *ck = restore(c, file, &be, &r);
    char dir[] = "/tmp/eopt-roundtrip-XXXXXX", copy[128], orig[1024];
    cr_assert(mkdtemp(dir));
    snprintf(copy, sizeof copy, "%s/copy.h5", dir);
    cr_assert_eq(eopt_restored_save(&r, ck, eopt_ckpt_step(ck), eopt_ckpt_producer(ck), 1, copy), EOPT_OK, "%s",
                 eopt_last_error());
    tu_fixture(orig, sizeof orig, "optimizers/%s/%s", c, file);
    int bad = compare_files(orig, copy);
    cr_expect_eq(bad, 0, "%s/%s: %d differences in eopt's copy, first: %s", c, file, bad, first_mismatch);
    unlink(copy);
    rmdir(dir);
    release(ck, be, &r);
}

static void check_roundtrip(const char *c)
{
    eopt_h5_quiet();
    check_roundtrip_file(c, "step_0.h5");
    check_roundtrip_file(c, "step_5.h5");
}

/* One test per case and check, so that each reports on its own. */
#define FIXTURE_CASE(name)                                                                                             \
    Test(fixtures, name##_scratch) { check_scratch(#name); }                                                           \
    Test(fixtures, name##_resume) { check_resume(#name); }                                                             \
    Test(fixtures, name##_roundtrip) { check_roundtrip(#name); }

FIXTURE_CASE(adamuon_default)
FIXTURE_CASE(dion2_plain)
FIXTURE_CASE(dion2_soft)
FIXTURE_CASE(dion_muon_soft)
FIXTURE_CASE(dion_normuon_mixed_groups)
FIXTURE_CASE(dion_normuon_soft)
FIXTURE_CASE(gpt_muon_adamw)
FIXTURE_CASE(moso_default)
FIXTURE_CASE(muon_default)
FIXTURE_CASE(muon_nesterov_polar_express)
FIXTURE_CASE(muon_two_groups)
FIXTURE_CASE(muown_default)
FIXTURE_CASE(namo_default)
FIXTURE_CASE(nordion2_soft)
FIXTURE_CASE(normuon_default)
FIXTURE_CASE(soap_default)
FIXTURE_CASE(soap_eigh_kl)
FIXTURE_CASE(soap_freq_warmup_clip)
FIXTURE_CASE(soap_tall_wide)
FIXTURE_CASE(torch_adamw)

/* Every case directory on disk is in the list above (and so has its three tests). */
Test(fixtures, every_case_listed)
{
    char dir[1024];
    tu_fixture(dir, sizeof dir, "optimizers");
    DIR *d = opendir(dir);
    cr_assert(d, "cannot open %s", dir);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.')
            continue;
        int listed = 0;
        for (int k = 0; k < NCASES; k++)
            listed |= strcmp(cases[k], e->d_name) == 0;
        cr_expect(listed, "fixture case '%s' is not tested", e->d_name);
        n++;
    }
    closedir(d);
    cr_expect_eq(n, NCASES, "%d case directories, %d listed", n, NCASES);
}

/* ------------------------------------------------------------------------------------------
 * The checks above can fail: each is shown a wrong state, a wrong model or a changed copy. They
 * run on the first case (in list order) whose file passes `want` and whose classes eopt has. */

static const char *usable_case(const char *file, int (*want)(const eopt_ckpt *))
{
    for (int k = 0; k < NCASES; k++) {
        char path[1024];
        tu_fixture(path, sizeof path, "optimizers/%s/%s", cases[k], file);
        eopt_ckpt *ck = NULL;
        eopt_backend *be = NULL;
        eopt_restored r = {0};
        int ok = eopt_backend_open(NULL, 2, &be) == EOPT_OK && eopt_checkpoint_open(path, NULL, &ck) == EOPT_OK &&
                 (!want || want(ck)) && eopt_restore(ck, be, &r) == EOPT_OK;
        eopt_restored_free(&r);
        eopt_checkpoint_close(ck);
        if (be)
            eopt_backend_close(be);
        if (ok)
            return cases[k];
    }
    cr_skip_test("no fixture case has an optimizer class eopt implements");
    return NULL;
}

static int has_basis(const eopt_ckpt *ck)
{
    const eopt_ckpt_opt_info *o = eopt_ckpt_optimizer_info(ck, eopt_ckpt_optimizer_name(ck, 0));
    for (int i = 0; o && i < o->nparams; i++)
        for (int k = 0; k < o->nstate[i]; k++)
            if (strncmp(o->state[i][k].key, "Q_", 2) == 0)
                return 1;
    return 0;
}

/* Multiplies a float state tensor (any placement) element-wise: rows (axis 0) or columns (axis
 * 1) whose index is `which` by `f`, or everything with which < 0. */
static void scale_tensor(eopt_tensor *t, int axis, int64_t which, float f)
{
    eopt_tensor h;
    cr_assert_eq(eopt_tensor_alloc(&h, NULL, t->dtype, t->ndim, t->shape), EOPT_OK);
    cr_assert_eq(eopt_tensor_copy(&h, t), EOPT_OK);
    int64_t cols = eopt_tensor_cols(t);
    for (int64_t k = 0; k < t->numel; k++)
        if (which < 0 || (axis == 0 ? k / cols : k % cols) == which)
            eopt_f32(&h)[k] *= f;
    cr_assert_eq(eopt_tensor_copy(t, &h), EOPT_OK);
    eopt_tensor_free(&h);
}

static int state_mismatches(const char *c, const eopt_restored *r, const eopt_ckpt *ref)
{
    mismatches = 0;
    compare_state(c, r, ref);
    return mismatches;
}

/* A state loaded from step_12.h5 matches step_12.h5; a moment off by 10% (tolerances reach 2%) does not. With a basis:
 * flipping a basis column together with the matching exp_avg row / column changes nothing, the
 * column alone is caught. */
Test(fixtures, state_check_catches_errors)
{
    const char *c = usable_case("step_12.h5", has_basis);
    eopt_backend *be;
    eopt_restored r;
    eopt_ckpt *ck = restore(c, "step_12.h5", &be, &r);
    cr_assert_eq(state_mismatches(c, &r, ck), 0, "%s: a loaded state differs from its file", c);
    eopt_optimizer *opt = r.opts[0];
    int j = 0;
    while (j < opt->nparams && !eopt_state_get(opt, j, "exp_avg"))
        j++;
    cr_assert_lt(j, opt->nparams);
    eopt_tensor *m = eopt_state_get(opt, j, "exp_avg");
    const char *qkey = eopt_state_get(opt, j, "Q_L") ? "Q_L" : eopt_state_get(opt, j, "Q_R") ? "Q_R" : "Q_M";
    eopt_tensor *q = eopt_state_get(opt, j, qkey);
    cr_assert(q, "%s: no basis next to exp_avg", c);
    int on_rows = strcmp(qkey, "Q_L") == 0 ||
                  (strcmp(qkey, "Q_M") == 0 && q->shape[0] == m->shape[0] && m->shape[0] <= m->shape[1]);

    scale_tensor(q, 1, 0, -1);
    scale_tensor(m, on_rows ? 0 : 1, 0, -1);
    cr_expect_eq(state_mismatches(c, &r, ck), 0, "%s: a sign flip of %s column 0 and exp_avg was not forgiven", c,
                 qkey);
    scale_tensor(m, on_rows ? 0 : 1, 0, -1);
    cr_expect_gt(state_mismatches(c, &r, ck), 0, "%s: %s flipped alone went unnoticed", c, qkey);
    scale_tensor(q, 1, 0, -1);
    cr_expect_eq(state_mismatches(c, &r, ck), 0);
    scale_tensor(m, 0, -1, 1.1f);
    cr_expect_gt(state_mismatches(c, &r, ck), 0, "%s: exp_avg off by 10%% went unnoticed", c);
    release(ck, be, &r);
}

/* A model moved off its checkpoint fails the replay check. */
Test(fixtures, replay_catches_errors)
{
    const char *c = usable_case("step_5.h5", NULL);
    char traj[1024];
    tu_fixture(traj, sizeof traj, "optimizers/%s/trajectory.h5", c);
    eopt_backend *be;
    eopt_restored r;
    eopt_ckpt *ck = restore(c, "step_5.h5", &be, &r);
    scale_tensor(r.params[r.nparams - 1].w, 0, -1, 1.05f);
    eopt_replay_result res;
    cr_assert_eq(eopt_replay_run(&r, ck, traj, NULL, &res), EOPT_OK, "%s", eopt_last_error());
    cr_expect_not(res.ok, "%s: a 5%% change of '%s' went unnoticed (worst %.3e)", c, r.params[r.nparams - 1].name,
                  res.worst);
    cr_expect_gt(res.worst, res.tolerance);
    release(ck, be, &r);
}

/* A copy with another step or another hyperparameter value is not the original. */
Test(fixtures, roundtrip_catches_changes)
{
    eopt_h5_quiet();
    const char *c = usable_case("step_5.h5", NULL);
    eopt_backend *be;
    eopt_restored r;
    eopt_ckpt *ck = restore(c, "step_5.h5", &be, &r);
    char dir[] = "/tmp/eopt-roundtrip-XXXXXX", copy[128], orig[1024];
    cr_assert(mkdtemp(dir));
    snprintf(copy, sizeof copy, "%s/copy.h5", dir);
    tu_fixture(orig, sizeof orig, "optimizers/%s/step_5.h5", c);
    cr_assert_eq(eopt_restored_save(&r, ck, 6, eopt_ckpt_producer(ck), 1, copy), EOPT_OK, "%s", eopt_last_error());
    cr_expect_eq(compare_files(orig, copy), 1, "%s: a changed step must be the one difference", c);
    eopt_group *g = &r.opts[0]->groups[0];
    double lr;
    cr_assert_eq(eopt_dict_float(&g->hp, "group", "lr", &lr), EOPT_OK);
    eopt_dict_set(&g->hp, "lr", eopt_float(lr * 2));
    cr_assert_eq(eopt_restored_save(&r, ck, 5, eopt_ckpt_producer(ck), 1, copy), EOPT_OK, "%s", eopt_last_error());
    cr_expect_eq(compare_files(orig, copy), 1, "%s: a changed lr must be the one difference", c);
    scale_tensor(r.params[0].w, 0, 0, 2.0f);
    cr_assert_eq(eopt_restored_save(&r, ck, 5, eopt_ckpt_producer(ck), 1, copy), EOPT_OK, "%s", eopt_last_error());
    cr_expect_eq(compare_files(orig, copy), 2, "%s: lr and a model row changed", c);
    unlink(copy);
    rmdir(dir);
    release(ck, be, &r);
}
