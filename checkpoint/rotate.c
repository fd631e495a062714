/* Rotating checkpoints: list <prefix><digits>.h5 in a directory, newest first by step. */
#include "rotate.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
    long long step;
    int tmp; /* a leftover <name>.h5.tmp of an interrupted write */
    char name[256];
} ckpt_entry;

/* The step of "<prefix><digits>.h5" (tmp = 0) or "<prefix><digits>.h5.tmp" (tmp = 1); -1
 * for any other name. */
static long long entry_step(const char *name, const char *prefix, int *tmp) {
    size_t np = strlen(prefix);
    if (strncmp(name, prefix, np) != 0)
        return -1;
    const char *p = name + np, *q = p;
    while (*q >= '0' && *q <= '9')
        q++;
    if (q == p || q - p > 18)
        return -1;
    if (strcmp(q, ".h5") == 0)
        *tmp = 0;
    else if (strcmp(q, ".h5.tmp") == 0)
        *tmp = 1;
    else
        return -1;
    return strtoll(p, NULL, 10);
}

static int newest_first(const void *a, const void *b) {
    const ckpt_entry *x = a, *y = b;
    return (x->step < y->step) - (x->step > y->step);
}

/* Every checkpoint and stale .tmp of dir/prefix, newest first. *out is malloc'ed. */
static eopt_status list_entries(const char *dir, const char *prefix, ckpt_entry **out, int *n) {
    DIR *d = opendir(dir);
    if (!d)
        return eopt_fail(EOPT_ERR_IO, "cannot list checkpoint directory '%s': %s", dir, strerror(errno));
    int cap = 16, count = 0;
    ckpt_entry *e = malloc(cap * sizeof *e);
    eopt_status st = e ? EOPT_OK : eopt_fail(EOPT_ERR_NOMEM, "out of memory");
    struct dirent *de;
    while (st == EOPT_OK && (de = readdir(d))) {
        int tmp;
        long long step = entry_step(de->d_name, prefix, &tmp);
        if (step < 0 || strlen(de->d_name) >= sizeof e->name)
            continue;
        if (count == cap) {
            ckpt_entry *grown = realloc(e, 2 * cap * sizeof *e);
            if (!grown) {
                st = eopt_fail(EOPT_ERR_NOMEM, "out of memory");
                break;
            }
            e = grown, cap *= 2;
        }
        e[count].step = step;
        e[count].tmp = tmp;
        snprintf(e[count].name, sizeof e[count].name, "%s", de->d_name);
        count++;
    }
    closedir(d);
    if (st != EOPT_OK) {
        free(e);
        return st;
    }
    qsort(e, count, sizeof *e, newest_first);
    *out = e, *n = count;
    return EOPT_OK;
}

eopt_status eopt_checkpoint_prune(const char *dir, const char *prefix, int keep) {
    ckpt_entry *e;
    int n;
    EOPT_TRY(list_entries(dir, prefix, &e, &n));
    eopt_status st = EOPT_OK;
    int kept = 0;
    for (int k = 0; k < n && st == EOPT_OK; k++) {
        if (!e[k].tmp && (keep <= 0 || kept < keep)) {
            kept++;
            continue;
        }
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e[k].name);
        if (unlink(path) != 0 && errno != ENOENT)
            st = eopt_fail(EOPT_ERR_IO, "cannot delete old checkpoint '%s': %s", path, strerror(errno));
    }
    free(e);
    return st;
}

eopt_status eopt_checkpoint_save_rotating(const char *dir, const char *prefix, const eopt_ckpt_write *w, int keep,
                                          char *path_out, size_t size) {
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s%012lld.h5", dir, prefix, (long long)w->step) >= (int)sizeof path)
        return eopt_fail(EOPT_ERR_ARG, "checkpoint directory name too long: '%s'", dir);
    EOPT_TRY(eopt_checkpoint_save(path, w));
    if (path_out)
        snprintf(path_out, size, "%s", path);
    return eopt_checkpoint_prune(dir, prefix, keep);
}

eopt_status eopt_checkpoint_open_latest(const char *dir, const char *prefix, const eopt_ckpt_options *opt,
                                        eopt_ckpt **out) {
    ckpt_entry *e;
    int n;
    EOPT_TRY(list_entries(dir, prefix, &e, &n));
    eopt_status st = eopt_fail(EOPT_ERR_IO, "no checkpoint '%s/%s<step>.h5'", dir, prefix);
    for (int k = 0; k < n; k++) {
        if (e[k].tmp)
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e[k].name);
        st = eopt_checkpoint_open(path, opt, out);
        if (st == EOPT_OK)
            break;
    }
    free(e);
    return st;
}

/* The model side of eopt_checkpoint_apply: the same checks as eopt_ckpt_load_model, plus
 * strictness about tensors the model does not have. */
static eopt_status check_model(const eopt_ckpt *ck, const eopt_param *params, int nparams)
{
    char sa[64], sb[64];
    for (int i = 0; i < nparams; i++) {
        const eopt_tensor *t = eopt_ckpt_tensor(ck, params[i].name);
        if (!t)
            return eopt_fail(EOPT_ERR_FORMAT, "%s:/model/%s: parameter is missing", eopt_ckpt_path(ck), params[i].name);
        if (!eopt_tensor_same_shape(t, params[i].w))
            return eopt_fail(EOPT_ERR_SHAPE, "%s:/model/%s: shape %s in the file, %s in the model", eopt_ckpt_path(ck),
                             params[i].name, eopt_shape_str(t->ndim, t->shape, sa, sizeof sa),
                             eopt_shape_str(params[i].w->ndim, params[i].w->shape, sb, sizeof sb));
    }
    for (int k = 0; k < eopt_ckpt_num_tensors(ck); k++) {
        const char *name = eopt_ckpt_tensor_name(ck, k);
        int found = 0;
        for (int i = 0; i < nparams && !found; i++)
            found = strcmp(params[i].name, name) == 0;
        if (!found)
            return eopt_fail(EOPT_ERR_FORMAT, "%s:/model/%s: the model has no such parameter", eopt_ckpt_path(ck), name);
    }
    return EOPT_OK;
}

/* Python's == on numbers (1 == 1.0 == True), exact otherwise. */
static int same_value(const eopt_value *a, const eopt_value *b)
{
    int na = a->kind == EOPT_VAL_BOOL || a->kind == EOPT_VAL_INT || a->kind == EOPT_VAL_FLOAT;
    int nb = b->kind == EOPT_VAL_BOOL || b->kind == EOPT_VAL_INT || b->kind == EOPT_VAL_FLOAT;
    if (na && nb)
        return (a->kind == EOPT_VAL_FLOAT ? a->f : (double)a->i) == (b->kind == EOPT_VAL_FLOAT ? b->f : (double)b->i);
    return eopt_value_equal(a, b);
}

/* The optimizer rebuilt from the file must be the running one: class, arguments, group sizes
 * and the parameter behind every state index. */
static eopt_status check_same(const eopt_optimizer *file, const eopt_optimizer *opt, const char *where)
{
    char va[128], vb[128];
    if (file->cls != opt->cls)
        return eopt_fail(EOPT_ERR_ARG, "%s: class %s in the file, the optimizer is %s", where, file->cls->id,
                         opt->cls->id);
    for (int k = 0; k < opt->args.n; k++) {
        const eopt_item *it = &opt->args.items[k];
        const eopt_value *v = eopt_dict_get(&file->args, it->key);
        if (!v || !same_value(v, &it->v))
            return eopt_fail(EOPT_ERR_ARG, "%s: argument '%s' is %s in the file, %s in the optimizer", where, it->key,
                             v ? eopt_value_repr(v, va, sizeof va) : "absent", eopt_value_repr(&it->v, vb, sizeof vb));
    }
    if (file->ngroups != opt->ngroups)
        return eopt_fail(EOPT_ERR_ARG, "%s: %d param groups in the file, %d in the optimizer", where, file->ngroups,
                         opt->ngroups);
    for (int g = 0; g < opt->ngroups; g++)
        if (file->groups[g].n != opt->groups[g].n)
            return eopt_fail(EOPT_ERR_ARG, "%s: param group %d holds %d parameters in the file, %d in the optimizer",
                             where, g, file->groups[g].n, opt->groups[g].n);
    for (int i = 0; i < opt->nparams; i++)
        if (file->params[i].w != opt->params[i].w)
            return eopt_fail(EOPT_ERR_ARG, "%s: state index %d is '%s' in the file, '%s' in the optimizer", where, i,
                             file->params[i].name, opt->params[i].name);
    return EOPT_OK;
}

eopt_status eopt_checkpoint_apply(const eopt_ckpt *ck, eopt_param *params, int nparams, int nopt,
                                  const char *const *names, eopt_optimizer *const *opts)
{
    EOPT_TRY(check_model(ck, params, nparams));
    eopt_optimizer **fresh = calloc((size_t)(nopt ? nopt : 1), sizeof *fresh);
    if (!fresh)
        return eopt_fail(EOPT_ERR_NOMEM, "out of memory");
    eopt_status st = EOPT_OK;
    for (int k = 0; k < nopt && st == EOPT_OK; k++) {
        char where[2048];
        snprintf(where, sizeof where, "%.1500s:/optimizers/%.300s", eopt_ckpt_path(ck), names[k]);
        st = eopt_ckpt_create_optimizer(ck, names[k], opts[k]->be, opts[k]->params, opts[k]->nparams, &fresh[k]);
        if (st == EOPT_OK)
            st = check_same(fresh[k], opts[k], where);
    }
    if (st == EOPT_OK)
        st = eopt_ckpt_load_model(ck, params, nparams); /* validated above: only copies */
    for (int k = 0; k < nopt && st == EOPT_OK; k++) {
        /* swap whole objects: the class's impl was built for the file's groups and state */
        eopt_optimizer tmp = *opts[k];
        *opts[k] = *fresh[k];
        *fresh[k] = tmp;
    }
    for (int k = 0; k < nopt; k++)
        eopt_optimizer_free(fresh[k]);
    free(fresh);
    return st;
}
