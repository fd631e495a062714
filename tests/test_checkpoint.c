/* The checkpoint layer: HDF5 attribute / dataset conversions (checkpoint.md's type rules), the
 * writer and reader on a model-only file, and the loader's refusals on files eopt wrote and
 * then damaged (a state tensor of the wrong shape, an unknown class, amsgrad = 1, ...). */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../checkpoint/h5.h"
#include "../cmd/replay.h"

static char dir[64];

static void make_dir(void)
{
    eopt_h5_quiet();
    snprintf(dir, sizeof dir, "/tmp/eopt-ckpt-XXXXXX");
    cr_assert(mkdtemp(dir));
}

static void remove_dir(void)
{
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

static const char *tmp(const char *name)
{
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

TestSuite(checkpoint, .init = make_dir, .fini = remove_dir);

/* Writes a raw attribute of file type ft from memory type mt. */
static void raw_attr(hid_t obj, const char *name, hid_t ft, hid_t mt, int n, const void *buf)
{
    hsize_t dim = (hsize_t)n;
    hid_t sp = n ? H5Screate_simple(1, &dim, NULL) : H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(obj, name, ft, sp, H5P_DEFAULT, H5P_DEFAULT);
    cr_assert_geq(H5Awrite(a, mt, buf), 0);
    H5Aclose(a);
    H5Sclose(sp);
}

Test(checkpoint, attribute_types)
{
    hid_t f = H5Fcreate(tmp("a.h5"), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    const double betas[2] = {0.9, 0.95};
    eopt_dict d = {0};
    eopt_dict_set(&d, "nesterov", eopt_bool(1));
    eopt_dict_set(&d, "num_ns_steps", eopt_int(5));
    eopt_dict_set(&d, "lr", eopt_float(0.1));
    eopt_dict_set(&d, "scale_mode", eopt_str("spectral"));
    eopt_dict_set(&d, "betas", eopt_floats(2, betas));
    eopt_dict_set(&d, "foreach", (eopt_value){.kind = EOPT_VAL_NONE});
    cr_assert_eq(eopt_h5_attrs_write(f, &d), EOPT_OK, "%s", eopt_last_error());
    cr_expect_not(eopt_h5_attr_exists(f, "foreach"), "None must be an absent attribute");

    /* What other writers produce: fixed-length strings, int32, float32, h5py's bool enum,
     * int8 that is not a bool, an integer tuple. */
    hid_t fixed = H5Tcopy(H5T_C_S1);
    H5Tset_size(fixed, 8);
    H5Tset_strpad(fixed, H5T_STR_NULLPAD);
    raw_attr(f, "fixed", fixed, fixed, 0, "abc\0\0\0\0\0");
    H5Tclose(fixed);
    int32_t i32 = -7;
    raw_attr(f, "i32", H5T_STD_I32BE, H5T_NATIVE_INT32, 0, &i32);
    float f32 = 0.25f;
    raw_attr(f, "f32", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, 0, &f32);
    hid_t en = H5Tenum_create(H5T_NATIVE_INT8);
    int8_t no = 0, yes = 1;
    H5Tenum_insert(en, "FALSE", &no);
    H5Tenum_insert(en, "TRUE", &yes);
    raw_attr(f, "h5py_bool", en, en, 0, &yes);
    H5Tclose(en);
    int8_t three = 3;
    raw_attr(f, "i8", H5T_STD_I8LE, H5T_NATIVE_INT8, 0, &three);
    int64_t pair[2] = {1, 2};
    raw_attr(f, "ints", H5T_STD_I64LE, H5T_NATIVE_INT64, 2, pair);
    double many[EOPT_FLOATS_MAX + 1] = {0}; /* one more than a value holds */
    raw_attr(f, "too_long", H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, EOPT_FLOATS_MAX + 1, many);

    eopt_dict back;
    static const char *const skip[] = {"too_long", NULL};
    cr_assert_eq(eopt_h5_attrs_read(f, "a.h5:/", skip, &back), EOPT_OK, "%s", eopt_last_error());
    for (int k = 0; k < d.n; k++) {
        const eopt_value *v = eopt_dict_get(&back, d.items[k].key);
        if (d.items[k].v.kind == EOPT_VAL_NONE)
            cr_expect_null(v);
        else
            cr_expect(v && eopt_value_equal(v, &d.items[k].v), "'%s' changed in the round trip", d.items[k].key);
    }
    cr_expect_str_eq(eopt_dict_get(&back, "fixed")->s, "abc");
    cr_expect_eq(eopt_dict_get(&back, "i32")->kind, EOPT_VAL_INT);
    cr_expect_eq(eopt_dict_get(&back, "i32")->i, -7);
    cr_expect_eq(eopt_dict_get(&back, "f32")->kind, EOPT_VAL_FLOAT);
    cr_expect_eq(eopt_dict_get(&back, "f32")->f, 0.25);
    cr_expect_eq(eopt_dict_get(&back, "h5py_bool")->kind, EOPT_VAL_BOOL);
    cr_expect_eq(eopt_dict_get(&back, "h5py_bool")->i, 1);
    cr_expect_eq(eopt_dict_get(&back, "i8")->kind, EOPT_VAL_INT);
    cr_expect_eq(eopt_dict_get(&back, "ints")->kind, EOPT_VAL_FLOATS);
    cr_expect_eq(eopt_dict_get(&back, "ints")->fv[1], 2.0);

    /* Types as written: bool int8, int int64, float float64, string variable-length UTF-8. */
    static const struct {
        const char *name;
        H5T_class_t cls;
        size_t size;
    } want[] = {
        {"nesterov", H5T_INTEGER, 1}, {"num_ns_steps", H5T_INTEGER, 8}, {"lr", H5T_FLOAT, 8}, {"betas", H5T_FLOAT, 8}};
    for (size_t k = 0; k < sizeof want / sizeof want[0]; k++) {
        hid_t a = H5Aopen(f, want[k].name, H5P_DEFAULT), t = H5Aget_type(a);
        cr_expect_eq(H5Tget_class(t), want[k].cls, "%s", want[k].name);
        cr_expect_eq(H5Tget_size(t), want[k].size, "%s", want[k].name);
        H5Tclose(t);
        H5Aclose(a);
    }
    hid_t a = H5Aopen(f, "scale_mode", H5P_DEFAULT), t = H5Aget_type(a);
    cr_expect(H5Tis_variable_str(t) > 0 && H5Tget_cset(t) == H5T_CSET_UTF8);
    H5Tclose(t);
    H5Aclose(a);

    eopt_value v;
    cr_expect_neq(eopt_h5_attr_read(f, "too_long", "a.h5:/", &v), EOPT_OK);
    cr_expect(strstr(eopt_last_error(), "too_long"), "%s", eopt_last_error());
    cr_expect_neq(eopt_h5_attr_read(f, "absent", "a.h5:/", &v), EOPT_OK);
    H5Fclose(f);
}

Test(checkpoint, datasets_strings_and_children)
{
    hid_t f = H5Fcreate(tmp("d.h5"), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    float m[6] = {1, -2, 3.5f, 4, 5, 6e-30f};
    int64_t shape[2] = {2, 3}, step = 42;
    eopt_tensor t = eopt_tensor_view(m, NULL, EOPT_F32, 2, shape);
    eopt_tensor s = eopt_tensor_view(&step, NULL, EOPT_I64, 0, NULL);
    cr_assert_eq(eopt_h5_dataset_write(f, "m", &t), EOPT_OK, "%s", eopt_last_error());
    cr_assert_eq(eopt_h5_dataset_write(f, "step", &s), EOPT_OK, "%s", eopt_last_error());
    double d64[3] = {0.5, 1.5, -2};
    hsize_t three = 3;
    hid_t sp = H5Screate_simple(1, &three, NULL);
    hid_t ds = H5Dcreate2(f, "f64", H5T_IEEE_F64LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(ds, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, d64);
    H5Dclose(ds);
    hid_t fixed = H5Tcopy(H5T_C_S1);
    H5Tset_size(fixed, 4);
    ds = H5Dcreate2(f, "fixed_names", fixed, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(ds, fixed, H5S_ALL, H5S_ALL, H5P_DEFAULT, "ab\0\0cdefg\0\0\0");
    H5Dclose(ds);
    H5Tclose(fixed);
    H5Sclose(sp);
    const char *names[2] = {"transformer.wte.weight", "b"};
    cr_assert_eq(eopt_h5_strings_write(f, "names", 2, names), EOPT_OK);
    cr_assert_eq(eopt_h5_link(f, "m_alias", "m"), EOPT_OK);
    static const char *const groups[] = {"10", "2", "0", "1"};
    hid_t g = H5Gcreate2(f, "g", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    for (int k = 0; k < 4; k++)
        H5Gclose(H5Gcreate2(g, groups[k], H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));

    eopt_tensor r;
    cr_assert_eq(eopt_h5_dataset_read(f, "m", "d.h5", &r), EOPT_OK, "%s", eopt_last_error());
    cr_expect(r.dtype == EOPT_F32 && eopt_tensor_same_shape(&r, &t) && memcmp(r.data, m, sizeof m) == 0);
    eopt_tensor_free(&r);
    cr_assert_eq(eopt_h5_dataset_read(f, "step", "d.h5", &r), EOPT_OK);
    cr_expect(r.dtype == EOPT_I64 && r.ndim == 0 && *(int64_t *)r.data == 42);
    eopt_tensor_free(&r);
    cr_assert_eq(eopt_h5_dataset_read(f, "f64", "d.h5", &r), EOPT_OK);
    cr_expect(r.dtype == EOPT_F32 && r.numel == 3 && eopt_f32(&r)[2] == -2.0f);
    eopt_tensor_free(&r);
    cr_expect_neq(eopt_h5_dataset_read(f, "names", "d.h5", &r), EOPT_OK, "strings are not a tensor");

    int n;
    char *str;
    cr_assert_eq(eopt_h5_strings_read(f, "names", "d.h5", 32, &n, &str), EOPT_OK, "%s", eopt_last_error());
    cr_expect(n == 2 && strcmp(str, names[0]) == 0 && strcmp(str + 32, "b") == 0);
    free(str);
    cr_expect_neq(eopt_h5_strings_read(f, "names", "d.h5", 8, &n, &str), EOPT_OK, "a name longer than the width");
    cr_assert_eq(eopt_h5_strings_read(f, "fixed_names", "d.h5", 8, &n, &str), EOPT_OK, "%s", eopt_last_error());
    cr_expect(n == 3 && strcmp(str, "ab") == 0 && strcmp(str + 8, "cdef") == 0 && strcmp(str + 16, "g") == 0);
    free(str);

    uint64_t a1, a2, a3;
    cr_expect_eq(eopt_h5_kind_of(f, "m", &a1), EOPT_H5_DATASET);
    cr_expect_eq(eopt_h5_kind_of(f, "m_alias", &a2), EOPT_H5_DATASET);
    cr_expect_eq(eopt_h5_kind_of(f, "step", &a3), EOPT_H5_DATASET);
    cr_expect(a1 == a2 && a1 != a3, "a hard link is the same object, another dataset is not");
    cr_expect_eq(eopt_h5_kind_of(f, "g", NULL), EOPT_H5_GROUP);
    cr_expect_eq(eopt_h5_kind_of(f, "nothing", NULL), EOPT_H5_NONE);

    char **kids;
    cr_assert_eq(eopt_h5_children(g, "g", 1, &n, &kids), EOPT_OK);
    cr_expect(n == 4 && !strcmp(kids[0], "0") && !strcmp(kids[1], "1") && !strcmp(kids[2], "2") &&
              !strcmp(kids[3], "10"));
    eopt_h5_names_free(n, kids);
    H5Gclose(H5Gcreate2(g, "x", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT));
    cr_expect_neq(eopt_h5_children(g, "g", 1, &n, &kids), EOPT_OK, "'x' is not an index");
    cr_expect_eq(eopt_h5_index_name("012"), -1);
    cr_expect_eq(eopt_h5_index_name("12"), 12);
    H5Gclose(g);
    H5Fclose(f);
}

/* A model-only checkpoint with a tied name, a schedule-free optimizer list, and trainer state. */
static void write_model_file(const char *path, int64_t step, float first)
{
    static float w[6], b[3];
    int64_t ws[2] = {2, 3}, bs[1] = {3}, order[4] = {3, 1, 0, 2}, os[1] = {4};
    for (int k = 0; k < 6; k++)
        w[k] = first + (float)k;
    for (int k = 0; k < 3; k++)
        b[k] = -(float)k;
    static eopt_tensor tw, tb, to;
    tw = eopt_tensor_view(w, NULL, EOPT_F32, 2, ws);
    tb = eopt_tensor_view(b, NULL, EOPT_F32, 1, bs);
    to = eopt_tensor_view(order, NULL, EOPT_I64, 1, os);
    eopt_param params[2] = {{.name = "wte.weight", .w = &tw}, {.name = "bias", .w = &tb}};
    eopt_ckpt_alias alias = {"lm_head.weight", "wte.weight"};
    eopt_dict trainer = {0};
    eopt_dict_set(&trainer, "best_eval_loss", eopt_float(1.25));
    eopt_dict_set(&trainer, "seed", eopt_int(1337));
    eopt_ckpt_dataset data = {"order", &to};
    eopt_ckpt_write wr = {.step = step,
                          .producer = "test",
                          .nparams = 2,
                          .params = params,
                          .naliases = 1,
                          .aliases = &alias,
                          .trainer = &trainer,
                          .ntrainer_data = 1,
                          .trainer_data = &data};
    cr_assert_eq(eopt_checkpoint_save(path, &wr), EOPT_OK, "%s", eopt_last_error());
}

Test(checkpoint, model_file_round_trip_and_atomic_replace)
{
    const char *path = tmp("model.h5");
    write_model_file(path, 7, 1.0f);
    write_model_file(path, 8, 10.0f); /* replaces the first */
    cr_expect_neq(access(tmp("model.h5.tmp"), F_OK), 0, "the temporary file must be renamed away");
    eopt_ckpt_write empty = {.step = 1};
    cr_expect_neq(eopt_checkpoint_save(tmp("no-such-dir/x.h5"), &empty), EOPT_OK);
    cr_expect(strstr(eopt_last_error(), "no-such-dir/x.h5"), "%s", eopt_last_error());
    eopt_ckpt *ck;
    cr_assert_eq(eopt_checkpoint_open(path, NULL, &ck), EOPT_OK, "%s", eopt_last_error());
    cr_expect_eq(eopt_ckpt_step(ck), 8);
    cr_expect_str_eq(eopt_ckpt_producer(ck), "test");
    cr_expect_eq(eopt_ckpt_num_tensors(ck), 2, "the tied name is not a second tensor");
    cr_assert_eq(eopt_ckpt_num_aliases(ck), 1);
    /* Without an optimizer naming one of them, either name may be the stored one. */
    eopt_ckpt_alias al = eopt_ckpt_alias_at(ck, 0);
    cr_expect((!strcmp(al.alias, "lm_head.weight") && !strcmp(al.target, "wte.weight")) ||
                  (!strcmp(al.alias, "wte.weight") && !strcmp(al.target, "lm_head.weight")),
              "alias %s -> %s", al.alias, al.target);
    const eopt_tensor *w = eopt_ckpt_tensor(ck, "lm_head.weight");
    cr_assert(w && w == eopt_ckpt_tensor(ck, "wte.weight"));
    cr_expect_eq(eopt_f32(w)[5], 15.0f);
    cr_expect_eq(eopt_ckpt_num_optimizers(ck), 0);
    cr_expect_null(eopt_ckpt_schedule(ck, "muon"));
    cr_assert(eopt_ckpt_trainer(ck));
    cr_expect_eq(eopt_dict_get(eopt_ckpt_trainer(ck), "seed")->i, 1337);
    cr_expect_eq(eopt_dict_get(eopt_ckpt_trainer(ck), "best_eval_loss")->f, 1.25);
    const eopt_tensor *order = eopt_ckpt_trainer_data(ck, "order");
    cr_assert(order && order->dtype == EOPT_I64 && order->numel == 4);
    cr_expect_eq(((int64_t *)order->data)[0], 3);

    /* load_model: by name, shapes checked before anything is written. */
    float w0[6] = {0}, b0[3] = {9, 9, 9}, bad[4] = {0};
    int64_t ws[2] = {2, 3}, bs[1] = {3}, badshape[1] = {4};
    eopt_tensor tw = eopt_tensor_view(w0, NULL, EOPT_F32, 2, ws), tb = eopt_tensor_view(b0, NULL, EOPT_F32, 1, bs);
    eopt_tensor tbad = eopt_tensor_view(bad, NULL, EOPT_F32, 1, badshape);
    eopt_param ok[2] = {{.name = "bias", .w = &tb}, {.name = "lm_head.weight", .w = &tw}};
    eopt_param wrong[2] = {{.name = "wte.weight", .w = &tw}, {.name = "bias", .w = &tbad}};
    cr_expect_neq(eopt_ckpt_load_model(ck, wrong, 2), EOPT_OK);
    cr_expect(strstr(eopt_last_error(), "/model/bias"), "%s", eopt_last_error());
    cr_expect_eq(w0[0], 0.0f, "a failed load wrote a tensor");
    cr_assert_eq(eopt_ckpt_load_model(ck, ok, 2), EOPT_OK, "%s", eopt_last_error());
    cr_expect(w0[0] == 10.0f && b0[2] == -2.0f);
    eopt_checkpoint_close(ck);
}

/* Opens `path` read-write and applies `edit` to the object at `obj`. */
static void edit_file(const char *path, const char *obj, void (*edit)(hid_t))
{
    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    cr_assert_geq(f, 0, "cannot open %s", path);
    hid_t o = H5Oopen(f, obj, H5P_DEFAULT);
    cr_assert_geq(o, 0, "no %s in %s", obj, path);
    edit(o);
    H5Oclose(o);
    H5Fclose(f);
}

static void version_2(hid_t o)
{
    int64_t v = 2;
    H5Adelete(o, "format_version");
    raw_attr(o, "format_version", H5T_STD_I64LE, H5T_NATIVE_INT64, 0, &v);
}
static void wrong_format(hid_t o) { eopt_h5_attr_write_str(o, "format", "something-else"); }
static void nan_in_row(hid_t o)
{
    float v[6] = {1, 2, NAN, 4, 5, 6};
    H5Dwrite(o, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
}

static void expect_open_error(const char *path, const char *fragment)
{
    eopt_ckpt *ck = NULL;
    cr_expect_neq(eopt_checkpoint_open(path, NULL, &ck), EOPT_OK, "%s opened", path);
    cr_expect_null(ck);
    cr_expect(strstr(eopt_last_error(), fragment) && strstr(eopt_last_error(), path), "message '%s' lacks '%s'",
              eopt_last_error(), fragment);
}

Test(checkpoint, refuses_what_it_cannot_honour)
{
    const char *path = tmp("bad.h5");
    write_model_file(path, 1, 0);
    edit_file(path, "/", version_2);
    expect_open_error(path, "format_version 2");
    write_model_file(path, 1, 0);
    edit_file(path, "/", wrong_format);
    expect_open_error(path, "something-else");
    write_model_file(path, 1, 0);
    edit_file(path, "/model/wte.weight", nan_in_row);
    expect_open_error(path, "non-finite value nan at flat index 2");
    eopt_ckpt *ck = NULL;
    eopt_ckpt_options allow = {.allow_nonfinite = 1};
    cr_expect_eq(eopt_checkpoint_open(path, &allow, &ck), EOPT_OK, "allow_nonfinite: %s", eopt_last_error());
    eopt_checkpoint_close(ck);
    expect_open_error(tmp("missing.h5"), "missing.h5");
}

/* ------------------------------------------------------------------------------------------
 * With a real optimizer class: a fixture checkpoint is loaded, written by eopt, the copy damaged
 * and loaded again. Runs on the first fixture case whose classes eopt implements. */

static const char *const cases[] = {"torch_adamw",   "muon_default", "soap_default",   "moso_default",
                                    "muown_default", "dion2_plain",  "adamuon_default"};

static eopt_ckpt *load_case(const char **name, eopt_backend *be, eopt_restored *r)
{
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        char path[1024];
        const char *root = getenv("EOPT_FIXTURES");
        snprintf(path, sizeof path, "%s/optimizers/%s/step_5.h5", root ? root : "../shared/fixtures", cases[k]);
        eopt_ckpt *ck = NULL;
        if (eopt_checkpoint_open(path, NULL, &ck) == EOPT_OK && eopt_restore(ck, be, r) == EOPT_OK) {
            *name = cases[k];
            return ck;
        }
        eopt_checkpoint_close(ck);
    }
    cr_skip_test("no optimizer class implemented yet");
    return NULL;
}

static char first_state_key[24];
static void delete_first_state_key(hid_t o) { H5Ldelete(o, first_state_key, H5P_DEFAULT); }
static void add_bogus_key(hid_t o)
{
    int64_t one = 1;
    eopt_tensor t = eopt_tensor_view(&one, NULL, EOPT_I64, 0, NULL);
    eopt_h5_dataset_write(o, "bogus", &t);
}
static void unknown_class(hid_t o) { eopt_h5_attr_write_str(o, "class", "NoSuchOptimizer"); }
static void unknown_arg(hid_t o)
{
    eopt_value v = eopt_int(3);
    eopt_h5_attr_write(o, "future_argument", &v);
}
static void amsgrad_on(hid_t o)
{
    eopt_value v = eopt_bool(1);
    eopt_h5_attr_write(o, "amsgrad", &v);
}
static void reshape_first_key(hid_t o)
{
    H5Ldelete(o, first_state_key, H5P_DEFAULT);
    float v[3] = {0};
    int64_t s[1] = {3};
    eopt_tensor t = eopt_tensor_view(v, NULL, EOPT_F32, 1, s);
    eopt_h5_dataset_write(o, first_state_key, &t);
}

/* Loading the damaged copy into the running optimizer fails, names `fragment`, and changes
 * nothing. */
static void expect_load_error(const char *path, eopt_optimizer *opt, const char *fragment)
{
    eopt_ckpt *ck = NULL;
    cr_assert_eq(eopt_checkpoint_open(path, NULL, &ck), EOPT_OK, "%s", eopt_last_error());
    eopt_optimizer before = *opt;
    eopt_status st = eopt_ckpt_load_optimizer(ck, "0", opt);
    cr_expect_neq(st, EOPT_OK, "a damaged file loaded (%s)", fragment);
    cr_expect(strstr(eopt_last_error(), fragment) && strstr(eopt_last_error(), path), "message '%s' lacks '%s'",
              eopt_last_error(), fragment);
    cr_expect(memcmp(&before, opt, sizeof before) == 0, "a failed load changed the optimizer");
    eopt_checkpoint_close(ck);
}

Test(checkpoint, loader_validates_state_and_class)
{
    eopt_backend *be;
    cr_assert_eq(eopt_backend_open(NULL, 2, &be), EOPT_OK);
    eopt_restored r;
    const char *c;
    eopt_ckpt *ck = load_case(&c, be, &r);
    cr_assert_eq(eopt_ckpt_num_optimizers(ck), 1, "%s", c);
    eopt_optimizer *opt = r.opts[0];
    int j = 0;
    while (j < opt->nparams && opt->state[j].n == 0)
        j++;
    cr_assert_lt(j, opt->nparams, "%s: step_5 has no state", c);
    snprintf(first_state_key, sizeof first_state_key, "%s", opt->state[j].key[0]);
    char state_path[64];
    snprintf(state_path, sizeof state_path, "/optimizers/0/state/%d", j);
    const char *good = tmp("good.h5"), *bad = tmp("bad.h5");
    cr_assert_eq(eopt_restored_save(&r, ck, 5, "test", 0, good), EOPT_OK, "%s", eopt_last_error());

    /* The copy loads back into the same optimizer (the object is rebuilt and swapped in). */
    eopt_ckpt *back;
    cr_assert_eq(eopt_checkpoint_open(good, NULL, &back), EOPT_OK, "%s", eopt_last_error());
    cr_expect_eq(eopt_ckpt_load_optimizer(back, "0", opt), EOPT_OK, "%s", eopt_last_error());
    eopt_checkpoint_close(back);

    struct {
        const char *obj;
        void (*edit)(hid_t);
        const char *fragment;
    } damage[] = {
        {state_path, delete_first_state_key, first_state_key},
        {state_path, add_bogus_key, "bogus"},
        {state_path, reshape_first_key, "[3]"},
        {"/optimizers/0", unknown_class, "NoSuchOptimizer"},
    };
    for (size_t k = 0; k < sizeof damage / sizeof damage[0]; k++) {
        cr_assert_eq(eopt_restored_save(&r, ck, 5, "test", 0, bad), EOPT_OK, "%s", eopt_last_error());
        edit_file(bad, damage[k].obj, damage[k].edit);
        expect_load_error(bad, opt, damage[k].fragment);
    }
    /* An argument the class does not know is ignored (with a warning on stderr). */
    cr_assert_eq(eopt_restored_save(&r, ck, 5, "test", 0, bad), EOPT_OK);
    edit_file(bad, "/optimizers/0", unknown_arg);
    cr_assert_eq(eopt_checkpoint_open(bad, NULL, &back), EOPT_OK, "%s", eopt_last_error());
    cr_expect_eq(eopt_ckpt_load_optimizer(back, "0", opt), EOPT_OK, "%s", eopt_last_error());
    eopt_checkpoint_close(back);
    eopt_restored_free(&r);
    eopt_checkpoint_close(ck);
    eopt_backend_close(be);
}

/* torch's AdamW has AMSGrad; eopt's does not, so a file asking for it is refused. */
Test(checkpoint, amsgrad_is_refused)
{
    if (!eopt_optimizer_find_checkpoint("AdamW", NULL))
        cr_skip_test("AdamW is not implemented yet");
    eopt_backend *be;
    cr_assert_eq(eopt_backend_open(NULL, 2, &be), EOPT_OK);
    char path[1024];
    const char *root = getenv("EOPT_FIXTURES");
    snprintf(path, sizeof path, "%s/optimizers/torch_adamw/step_5.h5", root ? root : "../shared/fixtures");
    eopt_ckpt *ck;
    eopt_restored r;
    cr_assert_eq(eopt_checkpoint_open(path, NULL, &ck), EOPT_OK, "%s", eopt_last_error());
    cr_assert_eq(eopt_restore(ck, be, &r), EOPT_OK, "%s", eopt_last_error());
    const char *bad = tmp("amsgrad.h5");
    cr_assert_eq(eopt_restored_save(&r, ck, 5, "test", 0, bad), EOPT_OK);
    edit_file(bad, "/optimizers/0/param_groups/0", amsgrad_on);
    expect_load_error(bad, r.opts[0], "amsgrad");
    eopt_restored_free(&r);
    eopt_checkpoint_close(ck);
    eopt_backend_close(be);
}

/* ------------------------------------------------------------------------------------------
 * The commands, through the built binary (EOPT_BIN). */

/* Runs a shell command; returns its exit status and its output's last line. */
static int run(const char *cmd, char *last, size_t size)
{
    FILE *p = popen(cmd, "r");
    cr_assert(p, "cannot run %s", cmd);
    char line[2048];
    last[0] = 0;
    while (fgets(line, sizeof line, p))
        snprintf(last, size, "%s", line);
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static const char *bin(void)
{
    const char *b = getenv("EOPT_BIN");
    if (!b)
        cr_skip_test("EOPT_BIN is not set");
    return b;
}

Test(checkpoint, replay_command_and_save_at)
{
    eopt_backend *be;
    cr_assert_eq(eopt_backend_open(NULL, 2, &be), EOPT_OK);
    eopt_restored r;
    const char *c;
    eopt_ckpt *ck = load_case(&c, be, &r);
    char traj[1024], cmd[4096], last[2048];
    snprintf(traj, sizeof traj, "%s", eopt_ckpt_path(ck));
    strcpy(strrchr(traj, '/') + 1, "trajectory.h5");
    const char *saved = tmp("at8.h5");
    snprintf(cmd, sizeof cmd, "%s replay '%s' '%s' --save-at 8 '%s' 2>&1", bin(), eopt_ckpt_path(ck), traj, saved);
    cr_expect_eq(run(cmd, last, sizeof last), 0, "%s -> %s", cmd, last);
    char want[256];
    snprintf(want, sizeof want, "replay ok: case=%s steps=6..12 worst_rel_err=", c);
    cr_expect(strncmp(last, want, strlen(want)) == 0, "last line: %s", last);

    /* The file written after step 8 resumes the replay at step 9. */
    eopt_ckpt *at8;
    cr_assert_eq(eopt_checkpoint_open(saved, NULL, &at8), EOPT_OK, "%s", eopt_last_error());
    cr_expect_eq(eopt_ckpt_step(at8), 8);
    eopt_checkpoint_close(at8);
    snprintf(cmd, sizeof cmd, "%s replay '%s' '%s' 2>&1", bin(), saved, traj);
    cr_expect_eq(run(cmd, last, sizeof last), 0, "%s -> %s", cmd, last);
    snprintf(want, sizeof want, "replay ok: case=%s steps=9..12 ", c);
    cr_expect(strncmp(last, want, strlen(want)) == 0, "last line: %s", last);

    /* A model moved off its trajectory: FAIL, with the same fields, and exit status 1. */
    eopt_tensor *w = r.params[0].w;
    float *h = malloc(eopt_tensor_bytes(w));
    cr_assert_eq(eopt_tensor_to_host(w, h, eopt_tensor_bytes(w)), EOPT_OK);
    for (int64_t k = 0; k < w->numel; k++)
        h[k] *= 1.1f;
    cr_assert_eq(eopt_tensor_from_host(w, h, eopt_tensor_bytes(w)), EOPT_OK);
    free(h);
    const char *moved = tmp("moved.h5");
    cr_assert_eq(eopt_restored_save(&r, ck, 5, "test", 0, moved), EOPT_OK, "%s", eopt_last_error());
    snprintf(cmd, sizeof cmd, "%s replay '%s' '%s' 2>&1", bin(), moved, traj);
    cr_expect_eq(run(cmd, last, sizeof last), 1, "%s -> %s", cmd, last);
    snprintf(want, sizeof want, "replay FAIL: case=%s steps=6..12 worst_rel_err=", c);
    cr_expect(strncmp(last, want, strlen(want)) == 0 && strstr(last, " tolerance="), "last line: %s", last);

    /* eopt's file passes eopt's own check. */
    snprintf(cmd, sizeof cmd, "%s inspect '%s' --check 2>&1", bin(), saved);
    cr_expect_eq(run(cmd, last, sizeof last), 0, "%s -> %s", cmd, last);
    cr_expect(strstr(last, "0 problems"), "%s", last);
    eopt_restored_free(&r);
    eopt_checkpoint_close(ck);
    eopt_backend_close(be);
}

static void nan_state(hid_t o)
{
    hid_t sp = H5Dget_space(o);
    hssize_t n = H5Sget_simple_extent_npoints(sp);
    float *v = calloc((size_t)n, sizeof *v);
    v[n - 1] = INFINITY;
    H5Dwrite(o, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
    free(v);
    H5Sclose(sp);
}

Test(checkpoint, inspect_check_lists_problems)
{
    eopt_backend *be;
    cr_assert_eq(eopt_backend_open(NULL, 2, &be), EOPT_OK);
    eopt_restored r;
    const char *c;
    eopt_ckpt *ck = load_case(&c, be, &r);
    const eopt_optimizer *opt = r.opts[0];
    int j = 0, q = -1;
    for (; j < opt->nparams && q < 0; j++)
        for (int k = 0; k < opt->state[j].n && q < 0; k++)
            if (opt->state[j].t[k].dtype == EOPT_F32 && opt->state[j].t[k].numel > 1)
                q = k;
    cr_assert_geq(q, 0, "%s: no float state", c);
    char obj[128], cmd[4096], last[2048];
    snprintf(obj, sizeof obj, "/optimizers/0/state/%d/%s", j - 1, opt->state[j - 1].key[q]);
    const char *bad = tmp("inf.h5");
    cr_assert_eq(eopt_restored_save(&r, ck, 5, "test", 0, bad), EOPT_OK);
    edit_file(bad, obj, nan_state);
    edit_file(bad, "/optimizers/0", unknown_class);
    snprintf(cmd, sizeof cmd, "%s inspect '%s' --check 2>&1 | grep -c '^problem:'", bin(), bad);
    cr_expect_eq(run(cmd, last, sizeof last), 0);
    cr_expect_eq(atoi(last), 2, "%s: want the infinity and the class, got %s problems", cmd, last);
    snprintf(cmd, sizeof cmd, "%s inspect '%s' --check >/dev/null 2>&1", bin(), bad);
    cr_expect_eq(run(cmd, last, sizeof last), 1);
    snprintf(cmd, sizeof cmd, "%s inspect '%s' 2>&1 | grep -c '%s'", bin(), bad, opt->state[j - 1].key[q]);
    cr_expect_eq(run(cmd, last, sizeof last), 0, "the summary lists state keys");
    eopt_restored_free(&r);
    eopt_checkpoint_close(ck);
    eopt_backend_close(be);
}
