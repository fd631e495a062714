#include "checkpoint.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "../framework/log.h"
#include "guard.h"
#include "h5.h"

typedef struct {
    char name[EOPT_NAME_MAX];
    eopt_tensor t;
    uint64_t addr;
} ck_tensor;

typedef struct {
    char alias[EOPT_NAME_MAX];
    char target[EOPT_NAME_MAX];
} ck_alias;

typedef struct {
    char name[EOPT_NAME_MAX];
    eopt_dict attrs;
} ck_schedule;

struct eopt_ckpt {
    char path[1024];
    hid_t fid; /* open while the tensors' data stay in the file (defer_tensors); else -1 */
    int check; /* tensors must be finite */
    int64_t step;
    char producer[512];
    char *config; /* the root `config` attribute (a run's resolved config), or NULL */
    int ntensors, naliases;
    ck_tensor *tensors;
    ck_alias *aliases;
    int nopt;
    eopt_ckpt_opt_info *opts;
    int nsched;
    ck_schedule *sched;
    int has_trainer;
    eopt_dict trainer;
    int ntrainer_data;
    ck_tensor *trainer_data;
};

static void warn(const char *where, const char *what) { eopt_log(EOPT_LOG_WARN, "%s: %s", where, what); }

/* ------------------------------------------------------------------------------------------
 * Writing */

static eopt_status check_name(const char *kind, const char *name)
{
    if (!name[0] || strchr(name, '/') || strcmp(name, ".") == 0)
        return eopt_fail(EOPT_ERR_ARG, "%s name '%s' cannot be an HDF5 link name", kind, name);
    return EOPT_OK;
}

/* reserve: a data-parallel save, where an entry without data is another rank's (its space is
 * reserved for that rank to fill); otherwise every entry must have its data. */
static eopt_status write_state(hid_t og, const eopt_optimizer *opt, const eopt_state *state, int reserve)
{
    hid_t sg = H5Gcreate2(og, "state", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (sg < 0)
        return eopt_fail(EOPT_ERR_IO, "cannot create group 'state'");
    eopt_status st = EOPT_OK;
    for (int i = 0; i < opt->nparams && st == EOPT_OK; i++) {
        const eopt_state *s = &state[i];
        if (s->n == 0)
            continue;
        char name[16];
        snprintf(name, sizeof name, "%d", i);
        hid_t g = H5Gcreate2(sg, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (g < 0) {
            st = eopt_fail(EOPT_ERR_IO, "cannot create group 'state/%s'", name);
            break;
        }
        for (int k = 0; k < s->n && st == EOPT_OK; k++)
            st = s->t[k].data || !reserve ? eopt_h5_dataset_write(g, s->key[k], &s->t[k])
                                          : eopt_h5_dataset_reserve(g, s->key[k], &s->t[k]);
        H5Gclose(g);
    }
    H5Gclose(sg);
    return st;
}

static eopt_status write_groups(hid_t og, const eopt_optimizer *opt)
{
    hid_t pg = H5Gcreate2(og, "param_groups", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (pg < 0)
        return eopt_fail(EOPT_ERR_IO, "cannot create group 'param_groups'");
    eopt_status st = EOPT_OK;
    for (int gi = 0; gi < opt->ngroups && st == EOPT_OK; gi++) {
        const eopt_group *gr = &opt->groups[gi];
        char name[16];
        snprintf(name, sizeof name, "%d", gi);
        hid_t g = H5Gcreate2(pg, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (g < 0) {
            st = eopt_fail(EOPT_ERR_IO, "cannot create group 'param_groups/%s'", name);
            break;
        }
        int64_t *idx = malloc(sizeof *idx * (size_t)(gr->n ? gr->n : 1));
        if (!idx)
            st = eopt_fail(EOPT_ERR_NOMEM, "out of memory");
        for (int k = 0; idx && k < gr->n; k++)
            idx[k] = gr->index[k];
        int64_t n = gr->n;
        eopt_tensor t = eopt_tensor_view(idx, NULL, EOPT_I64, 1, &n);
        if (st == EOPT_OK)
            st = eopt_h5_attrs_write(g, &gr->hp);
        if (st == EOPT_OK)
            st = eopt_h5_dataset_write(g, "params", &t);
        free(idx);
        H5Gclose(g);
    }
    H5Gclose(pg);
    return st;
}

static eopt_status write_optimizer(hid_t og, const eopt_optimizer *opt, const eopt_state *state, int reserve)
{
    EOPT_TRY(eopt_h5_attr_write_str(og, "class", opt->cls->name));
    if (opt->cls->source)
        EOPT_TRY(eopt_h5_attr_write_str(og, "source", opt->cls->source));
    EOPT_TRY(eopt_h5_attrs_write(og, &opt->args));
    const char **names = malloc(sizeof *names * (size_t)opt->nparams);
    if (!names)
        return eopt_fail(EOPT_ERR_NOMEM, "out of memory");
    for (int i = 0; i < opt->nparams; i++)
        names[i] = opt->params[i].name;
    eopt_status st = eopt_h5_strings_write(og, "param_names", opt->nparams, names);
    free(names);
    EOPT_TRY(st);
    EOPT_TRY(write_groups(og, opt));
    return write_state(og, opt, state, reserve);
}

/* The state a save writes of optimizer o: the one given, or the optimizer's own. */
static const eopt_state *state_of(const eopt_ckpt_optimizer *o) { return o->state ? o->state : o->opt->state; }

static hid_t group_new(hid_t loc, const char *name)
{
    return H5Gcreate2(loc, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
}

static eopt_status write_model(hid_t fid, const eopt_ckpt_write *w)
{
    hid_t mg = group_new(fid, "model");
    if (mg < 0)
        return eopt_fail(EOPT_ERR_IO, "cannot create group /model");
    eopt_status st = EOPT_OK;
    for (int i = 0; i < w->nparams && st == EOPT_OK; i++)
        if ((st = check_name("parameter", w->params[i].name)) == EOPT_OK)
            st = eopt_h5_dataset_write(mg, w->params[i].name, w->params[i].w);
    for (int k = 0; k < w->naliases && st == EOPT_OK; k++)
        if ((st = check_name("parameter", w->aliases[k].alias)) == EOPT_OK)
            st = eopt_h5_link(mg, w->aliases[k].alias, w->aliases[k].target);
    H5Gclose(mg);
    return st;
}

static eopt_status write_trainer(hid_t fid, const eopt_ckpt_write *w)
{
    if (!w->trainer && w->ntrainer_data == 0)
        return EOPT_OK;
    hid_t g = group_new(fid, "trainer");
    if (g < 0)
        return eopt_fail(EOPT_ERR_IO, "cannot create group /trainer");
    eopt_status st = w->trainer ? eopt_h5_attrs_write(g, w->trainer) : EOPT_OK;
    for (int k = 0; k < w->ntrainer_data && st == EOPT_OK; k++)
        if ((st = check_name("trainer dataset", w->trainer_data[k].name)) == EOPT_OK)
            st = eopt_h5_dataset_write(g, w->trainer_data[k].name, w->trainer_data[k].t);
    H5Gclose(g);
    return st;
}

/* One group per optimizer under /optimizers (always present) or /schedules (only if some
 * optimizer has a schedule). */
static eopt_status write_optimizers(hid_t fid, const eopt_ckpt_write *w, int schedules)
{
    int any = !schedules;
    for (int k = 0; k < w->nopt; k++)
        any |= w->opts[k].schedule != NULL;
    if (!any)
        return EOPT_OK;
    hid_t top = group_new(fid, schedules ? "schedules" : "optimizers");
    if (top < 0)
        return eopt_fail(EOPT_ERR_IO, "cannot create group /%s", schedules ? "schedules" : "optimizers");
    eopt_status st = EOPT_OK;
    for (int k = 0; k < w->nopt && st == EOPT_OK; k++) {
        const eopt_ckpt_optimizer *o = &w->opts[k];
        if (schedules && !o->schedule)
            continue;
        if ((st = check_name("optimizer", o->name)) != EOPT_OK)
            break;
        hid_t g = group_new(top, o->name);
        if (g < 0) {
            st = eopt_fail(EOPT_ERR_IO, "cannot create group for optimizer '%s'", o->name);
            break;
        }
        st = schedules ? eopt_h5_attrs_write(g, o->schedule) : write_optimizer(g, o->opt, state_of(o), w->comm != NULL);
        if (st != EOPT_OK)
            eopt_fail_context(st, "/%s/%s", schedules ? "schedules" : "optimizers", o->name);
        H5Gclose(g);
    }
    H5Gclose(top);
    return st;
}

static eopt_status write_file(hid_t fid, const eopt_ckpt_write *w)
{
    EOPT_TRY(eopt_h5_attr_write_str(fid, "format", EOPT_CKPT_FORMAT));
    EOPT_TRY(eopt_h5_attr_write_i64(fid, "format_version", EOPT_CKPT_VERSION));
    EOPT_TRY(eopt_h5_attr_write_i64(fid, "step", w->step));
    EOPT_TRY(eopt_h5_attr_write_str(fid, "producer", w->producer ? w->producer : "eopt"));
    if (w->config)
        EOPT_TRY(eopt_h5_attr_write_str(fid, "config", w->config));
    EOPT_TRY(write_model(fid, w));
    EOPT_TRY(write_optimizers(fid, w, 0));
    EOPT_TRY(write_optimizers(fid, w, 1));
    return write_trainer(fid, w);
}

/* A backend that recorded a failure (backend.h) may hold anything: nothing is written from it.
 * Checked before writing and again after the downloads, which can be where a failure shows. */
static eopt_status devices_ok(const eopt_ckpt_write *w)
{
    for (int i = 0; i < w->nparams; i++)
        if (w->params[i].w->be)
            EOPT_TRY(eopt_backend_check(w->params[i].w->be, "backend"));
    for (int k = 0; k < w->nopt; k++)
        EOPT_TRY(eopt_backend_check(w->opts[k].opt->be, "backend"));
    for (int k = 0; k < w->ntrainer_data; k++)
        if (w->trainer_data[k].t->be)
            EOPT_TRY(eopt_backend_check(w->trainer_data[k].t->be, "backend"));
    return EOPT_OK;
}

/* fsync of the file or folder at path, opened with flags; 0 or -1 (errno set). */
static int fsync_path(const char *path, int flags)
{
    int fd = open(path, flags);
    if (fd < 0)
        return -1;
    int r = fsync(fd);
    close(fd);
    return r;
}

/* Makes the rename itself durable. */
static void fsync_dir(const char *path)
{
    char *copy = strdup(path);
    if (copy)
        fsync_path(dirname(copy), O_RDONLY | O_DIRECTORY);
    free(copy);
}

/* After a failed write, closing would flush HDF5's dirty metadata to the same full disk, fail,
 * and leave the file open, and libhdf5 1.10 then crashes at exit (H5_term_library). The .tmp is
 * deleted anyway: its descriptor is pointed at an empty in-memory file so that the close
 * succeeds and nothing stays open. */
static void discard_writes(hid_t fid)
{
    int *fd = NULL, m = memfd_create("eopt-discard", MFD_CLOEXEC);
    if (m >= 0 && H5Fget_vfd_handle(fid, H5P_DEFAULT, (void **)&fd) >= 0 && fd)
        dup2(m, *fd);
    if (m >= 0)
        close(m);
}

/* The system's reason when a write failed for lack of room or a device error, else "". */
static const char *disk_reason(int err)
{
    return err == ENOSPC || err == EFBIG || err == EDQUOT || err == EIO || err == EROFS ? strerror(err) : "";
}

/* An upper bound of the bytes a save writes: the tensors, the config, and per object (dataset
 * or group, with its attributes, link names and B-tree) a generous 16 KiB of HDF5 metadata. */
static uint64_t save_bound(const eopt_ckpt_write *w)
{
    uint64_t bytes = 1 << 20, objects = (uint64_t)w->nparams + (uint64_t)w->naliases + (uint64_t)w->ntrainer_data;
    for (int i = 0; i < w->nparams; i++)
        bytes += eopt_tensor_bytes(w->params[i].w);
    for (int k = 0; k < w->ntrainer_data; k++)
        bytes += eopt_tensor_bytes(w->trainer_data[k].t);
    for (int k = 0; k < w->nopt; k++) {
        const eopt_optimizer *o = w->opts[k].opt;
        const eopt_state *state = state_of(&w->opts[k]);
        objects += 4 + (uint64_t)o->ngroups + (uint64_t)o->nparams;
        for (int i = 0; i < o->nparams; i++)
            for (int q = 0; q < state[i].n; q++, objects++)
                bytes += eopt_tensor_bytes(&state[i].t[q]);
    }
    return bytes + (w->config ? strlen(w->config) : 0) + (objects << 14);
}

/* libhdf5 1.10 cannot close a file whose flush failed (its cache is left inconsistent and the
 * file stays open until a crash at exit), and a file size limit (RLIMIT_FSIZE) also binds the
 * stand-in discard_writes gives it: a save that may pass the limit is refused before any write. */
static eopt_status check_size_limit(const char *path, const eopt_ckpt_write *w)
{
    struct rlimit r;
    uint64_t need = save_bound(w);
    if (getrlimit(RLIMIT_FSIZE, &r) != 0 || r.rlim_cur == RLIM_INFINITY || need <= (uint64_t)r.rlim_cur)
        return EOPT_OK;
    return eopt_fail(EOPT_ERR_IO,
                     "writing checkpoint '%s': it takes up to %llu bytes, more than the file size limit of %llu bytes "
                     "(RLIMIT_FSIZE, `ulimit -f`)",
                     path, (unsigned long long)need, (unsigned long long)r.rlim_cur);
}

/* Writes w into `tmp`, flushed and synced; on failure the file is removed and the message names
 * `path` (and the system's reason for a full or failing disk). */
static eopt_status write_tmp(const char *path, const char *tmp, const eopt_ckpt_write *w)
{
    eopt_status st = devices_ok(w);
    if (st != EOPT_OK)
        return eopt_fail_context(st, "writing checkpoint '%s'", path);
    EOPT_TRY(check_size_limit(path, w));
    hid_t fid = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (fid < 0)
        return eopt_fail(EOPT_ERR_IO, "cannot create '%s'", tmp);
    errno = 0;
    st = write_file(fid, w);
    if (st == EOPT_OK)
        st = devices_ok(w);
    if (st == EOPT_OK && H5Fflush(fid, H5F_SCOPE_GLOBAL) < 0)
        st = eopt_fail(EOPT_ERR_IO, "cannot flush '%s'", tmp);
    int *fd = NULL;
    if (st == EOPT_OK && (H5Fget_vfd_handle(fid, H5P_DEFAULT, (void **)&fd) < 0 || !fd || fsync(*fd) != 0))
        st = eopt_fail(EOPT_ERR_IO, "cannot sync '%s'", tmp);
    const char *reason = disk_reason(errno);
    if (st != EOPT_OK)
        discard_writes(fid);
    if (H5Fclose(fid) < 0 && st == EOPT_OK)
        st = eopt_fail(EOPT_ERR_IO, "cannot close '%s'", tmp);
    if (st != EOPT_OK) {
        unlink(tmp);
        return eopt_fail_context(st, "writing checkpoint '%s'%s%s%s", path, *reason ? " (" : "", reason,
                                 *reason ? ")" : "");
    }
    return EOPT_OK;
}

/* The finished `tmp` becomes `path`, durably (the rename and its directory synced). */
static eopt_status commit(const char *path, const char *tmp)
{
    if (rename(tmp, path) != 0) {
        eopt_status st = eopt_fail(EOPT_ERR_IO, "cannot rename '%s' to '%s'", tmp, path);
        unlink(tmp);
        return eopt_fail_context(st, "writing checkpoint '%s'", path);
    }
    fsync_dir(path);
    return EOPT_OK;
}

#ifdef EOPT_MPI
/* The second phase of a data-parallel save: this rank's optimizer state into the datasets rank 0
 * reserved for it, through MPI-IO (raw bytes at their place; no metadata changes). */
static eopt_status fill_own_state(hid_t fid, const eopt_ckpt_write *w)
{
    EOPT_TRY(devices_ok(w));
    for (int k = 0; k < w->nopt; k++) {
        const eopt_state *state = state_of(&w->opts[k]);
        for (int i = 0; i < w->opts[k].opt->nparams; i++)
            for (int e = 0; e < state[i].n; e++) {
                char p[EOPT_NAME_MAX + 96];
                if (!state[i].t[e].data)
                    continue;
                snprintf(p, sizeof p, "/optimizers/%s/state/%d/%s", w->opts[k].name, i, state[i].key[e]);
                EOPT_TRY(eopt_h5_dataset_fill(fid, p, &state[i].t[e]));
            }
    }
    return EOPT_OK;
}

/* checkpoint.h: rank 0 lays the file out and writes all it holds; then all ranks write their
 * state in place through MPI-IO; rank 0 syncs and renames. Each phase ends with the ranks'
 * verdict (eopt_comm_agree), so a failure anywhere stops all of them at the same point. */
static eopt_status save_parallel(const char *path, const char *tmp, const eopt_ckpt_write *w)
{
    eopt_comm *c = w->comm;
    int lead = eopt_comm_rank(c) == 0;
    eopt_status st = eopt_comm_agree(c, lead ? write_tmp(path, tmp, w) : EOPT_OK);
    if (st != EOPT_OK)
        return st;
    /* Opening through MPI-IO is collective: every rank must see rank 0's file first. */
    if (access(tmp, R_OK | W_OK) != 0)
        st = eopt_fail(EOPT_ERR_IO, "writing checkpoint '%s': this rank cannot open '%s' (%s); checkpoint.dir must be "
                       "a folder every rank sees (a shared file system)", path, tmp, strerror(errno));
    if ((st = eopt_comm_agree(c, st)) != EOPT_OK) {
        if (lead)
            unlink(tmp);
        return st;
    }
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_fapl_mpio(fapl, MPI_COMM_WORLD, MPI_INFO_NULL);
    hid_t fid = H5Fopen(tmp, H5F_ACC_RDWR, fapl);
    H5Pclose(fapl);
    if (fid < 0)
        st = eopt_fail(EOPT_ERR_IO, "cannot open '%s' through MPI-IO", tmp);
    if (st == EOPT_OK && !lead)
        st = fill_own_state(fid, w);
    if (fid >= 0 && H5Fclose(fid) < 0 && st == EOPT_OK)
        st = eopt_fail(EOPT_ERR_IO, "cannot close '%s'", tmp);
    if (st != EOPT_OK)
        st = eopt_fail_context(st, "writing checkpoint '%s'", path);
    st = eopt_comm_agree(c, st);
    if (st == EOPT_OK && lead && fsync_path(tmp, O_RDWR) != 0)
        st = eopt_fail(EOPT_ERR_IO, "writing checkpoint '%s': cannot sync '%s': %s", path, tmp, strerror(errno));
    if (st == EOPT_OK && lead)
        st = commit(path, tmp);
    else if (lead)
        unlink(tmp);
    return eopt_comm_agree(c, st);
}
#endif

eopt_status eopt_checkpoint_save(const char *path, const eopt_ckpt_write *w)
{
    eopt_h5_quiet();
    char tmp[1100];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return eopt_fail(EOPT_ERR_ARG, "checkpoint path too long: '%s'", path);
    if (w->comm && eopt_comm_size(w->comm) > 1) {
#ifdef EOPT_MPI
        EOPT_TRY(save_parallel(path, tmp, w));
        eopt_guard_trust(path);
        return EOPT_OK;
#else
        return eopt_fail(EOPT_ERR_UNSUPPORTED, "a data-parallel save needs the MPI build (make MPI=1)");
#endif
    }
    EOPT_TRY(write_tmp(path, tmp, w));
    EOPT_TRY(commit(path, tmp));
    eopt_guard_trust(path);
    return EOPT_OK;
}

/* ------------------------------------------------------------------------------------------
 * Reading: the whole file into host memory, validated. */

static void opt_info_free(eopt_ckpt_opt_info *o)
{
    for (int g = 0; g < o->ngroups; g++)
        free(o->group_index ? o->group_index[g] : NULL);
    free(o->group_index);
    free(o->group_hp);
    free(o->group_n);
    for (int i = 0; o->state && i < o->nparams; i++) {
        for (int k = 0; k < o->nstate[i]; k++)
            eopt_tensor_free(&o->state[i][k].t);
        free(o->state[i]);
    }
    free(o->state);
    free(o->nstate);
    free(o->param_names);
}

void eopt_checkpoint_close(eopt_ckpt *ck)
{
    if (!ck)
        return;
    if (ck->fid >= 0)
        H5Fclose(ck->fid);
    free(ck->config);
    for (int k = 0; k < ck->ntensors; k++)
        eopt_tensor_free(&ck->tensors[k].t);
    for (int k = 0; k < ck->ntrainer_data; k++)
        eopt_tensor_free(&ck->trainer_data[k].t);
    for (int k = 0; k < ck->nopt; k++)
        opt_info_free(&ck->opts[k]);
    free(ck->tensors);
    free(ck->aliases);
    free(ck->opts);
    free(ck->sched);
    free(ck->trainer_data);
    free(ck);
}

/* A float32 is Inf or NaN when its exponent bits are all ones, that is when adding 1 to them
 * carries into the sign bit: or-ed over a block without a branch (vectorised), the index
 * looked for only in a block that holds one. */
static eopt_status check_finite(const eopt_tensor *t, const char *where)
{
    if (t->dtype != EOPT_F32)
        return EOPT_OK;
    const float *p = eopt_f32(t);
    const uint32_t *bits = t->data;
    for (int64_t b = 0; b < t->numel; b += 4096) {
        int64_t end = b + 4096 < t->numel ? b + 4096 : t->numel;
        uint32_t bad = 0;
#pragma omp simd reduction(| : bad)
        for (int64_t k = b; k < end; k++)
            bad |= (bits[k] & 0x7f800000u) + 0x00800000u;
        for (int64_t k = b; (bad & 0x80000000u) && k < end; k++)
            if (!isfinite(p[k]))
                return eopt_fail(EOPT_ERR_NUMERIC, "%s: non-finite value %g at flat index %lld", where, (double)p[k],
                                 (long long)k);
    }
    return EOPT_OK;
}

/* Reads every dataset of group `g` into tensors[n] (name order); defer: shapes and dtypes only. */
static eopt_status read_datasets(hid_t g, const char *where, int check, int defer, ck_tensor **out, int *nout)
{
    int n;
    char **names;
    EOPT_TRY(eopt_h5_children(g, where, 0, &n, &names));
    ck_tensor *v = calloc((size_t)(n ? n : 1), sizeof *v);
    eopt_status st = v ? EOPT_OK : eopt_fail(EOPT_ERR_NOMEM, "out of memory");
    int m = 0;
    for (int k = 0; k < n && st == EOPT_OK; k++) {
        char path[2048];
        snprintf(path, sizeof path, "%.1500s/%.300s", where, names[k]);
        if (eopt_h5_kind_of(g, names[k], &v[m].addr) != EOPT_H5_DATASET) {
            st = eopt_fail(EOPT_ERR_FORMAT, "%s: expected a dataset", path);
        } else if (strlen(names[k]) >= EOPT_NAME_MAX) {
            st = eopt_fail(EOPT_ERR_FORMAT, "%s: name longer than %d characters", path, EOPT_NAME_MAX - 1);
        } else {
            snprintf(v[m].name, sizeof v[m].name, "%s", names[k]);
            st = defer ? eopt_h5_dataset_describe(g, names[k], where, &v[m].t)
                       : eopt_h5_dataset_read(g, names[k], where, &v[m].t);
            if (st == EOPT_OK)
                m++;
            if (st == EOPT_OK && check && !defer)
                st = check_finite(&v[m - 1].t, path);
        }
    }
    eopt_h5_names_free(n, names);
    if (st != EOPT_OK) {
        for (int k = 0; k < m; k++)
            eopt_tensor_free(&v[k].t);
        free(v);
        return st;
    }
    *out = v;
    *nout = m;
    return EOPT_OK;
}

static eopt_status read_groups(hid_t og, const char *where, eopt_ckpt_opt_info *o)
{
    char w[2048];
    snprintf(w, sizeof w, "%.1500s/param_groups", where);
    if (eopt_h5_kind_of(og, "param_groups", NULL) != EOPT_H5_GROUP)
        return eopt_fail(EOPT_ERR_FORMAT, "%s: group is missing", w);
    hid_t pg = H5Gopen2(og, "param_groups", H5P_DEFAULT);
    int n;
    char **names;
    eopt_status st = eopt_h5_children(pg, w, 1, &n, &names);
    if (st != EOPT_OK) {
        H5Gclose(pg);
        return st;
    }
    o->ngroups = n;
    o->group_hp = calloc((size_t)(n ? n : 1), sizeof *o->group_hp);
    o->group_n = calloc((size_t)(n ? n : 1), sizeof *o->group_n);
    o->group_index = calloc((size_t)(n ? n : 1), sizeof *o->group_index);
    char *seen = calloc((size_t)(o->nparams ? o->nparams : 1), 1);
    if (!o->group_hp || !o->group_n || !o->group_index || !seen)
        st = eopt_fail(EOPT_ERR_NOMEM, "out of memory");
    for (int g = 0; g < n && st == EOPT_OK; g++) {
        char gw[2048];
        snprintf(gw, sizeof gw, "%.1500s/%.300s", w, names[g]);
        if (eopt_h5_index_name(names[g]) != g) {
            st = eopt_fail(EOPT_ERR_FORMAT, "%s: groups must be numbered 0..%d without gaps", gw, n - 1);
            break;
        }
        hid_t gg = H5Gopen2(pg, names[g], H5P_DEFAULT);
        if (gg < 0) {
            st = eopt_fail(EOPT_ERR_FORMAT, "%s: not a group", gw);
            break;
        }
        eopt_tensor idx = {0};
        st = eopt_h5_attrs_read(gg, gw, NULL, &o->group_hp[g]);
        if (st == EOPT_OK)
            st = eopt_h5_dataset_read(gg, "params", gw, &idx);
        H5Gclose(gg);
        if (st == EOPT_OK && (idx.dtype == EOPT_F32 || idx.ndim != 1))
            st = eopt_fail(EOPT_ERR_FORMAT, "%s/params: expected a 1-D integer dataset", gw);
        if (st == EOPT_OK) {
            o->group_n[g] = (int)idx.numel;
            o->group_index[g] = malloc(sizeof(int64_t) * (size_t)(idx.numel ? idx.numel : 1));
            if (!o->group_index[g])
                st = eopt_fail(EOPT_ERR_NOMEM, "out of memory");
        }
        for (int64_t k = 0; st == EOPT_OK && k < idx.numel; k++) {
            int64_t i = idx.dtype == EOPT_I64 ? ((int64_t *)idx.data)[k] : ((int32_t *)idx.data)[k];
            if (i < 0 || i >= o->nparams)
                st = eopt_fail(EOPT_ERR_FORMAT, "%s/params: index %lld outside param_names [0, %d)", gw, (long long)i,
                               o->nparams);
            else if (seen[i]++)
                st = eopt_fail(EOPT_ERR_FORMAT, "%s/params: index %lld ('%s') appears in more than one group", gw,
                               (long long)i, o->param_names[i]);
            else
                o->group_index[g][k] = i;
        }
        eopt_tensor_free(&idx);
    }
    for (int i = 0; st == EOPT_OK && i < o->nparams; i++)
        if (!seen[i])
            st = eopt_fail(EOPT_ERR_FORMAT, "%s: parameter %d ('%s') of param_names is in no group", w, i,
                           o->param_names[i]);
    free(seen);
    eopt_h5_names_free(n, names);
    H5Gclose(pg);
    return st;
}

/* Opens the optional group `name` of loc: *g < 0 (and no error) if it is absent. */
static eopt_status open_optional(hid_t loc, const char *name, const char *where, hid_t *g)
{
    *g = -1;
    eopt_h5_kind kind = eopt_h5_kind_of(loc, name, NULL);
    if (kind == EOPT_H5_NONE)
        return EOPT_OK;
    if (kind != EOPT_H5_GROUP)
        return eopt_fail(EOPT_ERR_FORMAT, "%s: expected a group", where);
    *g = H5Gopen2(loc, name, H5P_DEFAULT);
    return EOPT_OK;
}

static eopt_status read_state(hid_t og, const char *where, int check, int defer, eopt_ckpt_opt_info *o)
{
    o->nstate = calloc((size_t)(o->nparams ? o->nparams : 1), sizeof *o->nstate);
    o->state = calloc((size_t)(o->nparams ? o->nparams : 1), sizeof *o->state);
    if (!o->nstate || !o->state)
        return eopt_fail(EOPT_ERR_NOMEM, "out of memory");
    char w[2048];
    snprintf(w, sizeof w, "%.1500s/state", where);
    hid_t sg;
    EOPT_TRY(open_optional(og, "state", w, &sg));
    if (sg < 0)
        return EOPT_OK; /* no state yet: it starts lazily */
    int n;
    char **names;
    eopt_status st = eopt_h5_children(sg, w, 1, &n, &names);
    for (int k = 0; k < n && st == EOPT_OK; k++) {
        char iw[2048];
        snprintf(iw, sizeof iw, "%.1500s/%.300s", w, names[k]);
        long i = eopt_h5_index_name(names[k]);
        if (i >= o->nparams) {
            st = eopt_fail(EOPT_ERR_FORMAT, "%s: state index %ld outside param_names [0, %d)", iw, i, o->nparams);
            break;
        }
        if (eopt_h5_kind_of(sg, names[k], NULL) != EOPT_H5_GROUP) {
            st = eopt_fail(EOPT_ERR_FORMAT, "%s: expected a group", iw);
            break;
        }
        hid_t ig = H5Gopen2(sg, names[k], H5P_DEFAULT);
        ck_tensor *t = NULL;
        int m = 0;
        st = read_datasets(ig, iw, check, defer, &t, &m);
        H5Gclose(ig);
        if (st != EOPT_OK)
            break;
        o->state[i] = calloc((size_t)(m ? m : 1), sizeof *o->state[i]);
        if (!o->state[i]) {
            for (int j = 0; j < m; j++)
                eopt_tensor_free(&t[j].t);
            free(t);
            st = eopt_fail(EOPT_ERR_NOMEM, "out of memory");
            break;
        }
        o->nstate[i] = m; /* the tensors now belong to o (freed with it) */
        for (int j = 0; j < m; j++) {
            o->state[i][j].t = t[j].t;
            if (strlen(t[j].name) >= sizeof o->state[i][j].key)
                st = eopt_fail(EOPT_ERR_FORMAT, "%s/%s: state key longer than %zu characters", iw, t[j].name,
                               sizeof o->state[i][j].key - 1);
            snprintf(o->state[i][j].key, sizeof o->state[i][j].key, "%.23s", t[j].name);
        }
        free(t);
    }
    eopt_h5_names_free(n, names);
    H5Gclose(sg);
    return st;
}

static eopt_status read_optimizer(hid_t top, const char *name, const char *path, int check, int defer,
                                  eopt_ckpt_opt_info *o)
{
    char where[2048];
    snprintf(where, sizeof where, "%.1500s:/optimizers/%.300s", path, name);
    if (strlen(name) >= EOPT_NAME_MAX)
        return eopt_fail(EOPT_ERR_FORMAT, "%s: optimizer name too long", where);
    snprintf(o->name, sizeof o->name, "%s", name);
    if (eopt_h5_kind_of(top, name, NULL) != EOPT_H5_GROUP)
        return eopt_fail(EOPT_ERR_FORMAT, "%s: expected a group", where);
    hid_t og = H5Gopen2(top, name, H5P_DEFAULT);
    static const char *const skip[] = {"class", "source", NULL};
    eopt_status st = eopt_h5_attr_read_str(og, "class", where, o->cls, sizeof o->cls);
    if (st == EOPT_OK && eopt_h5_attr_exists(og, "source"))
        st = eopt_h5_attr_read_str(og, "source", where, o->source, sizeof o->source);
    if (st == EOPT_OK)
        st = eopt_h5_attrs_read(og, where, skip, &o->args);
    char *names = NULL;
    if (st == EOPT_OK)
        st = eopt_h5_strings_read(og, "param_names", where, EOPT_NAME_MAX, &o->nparams, &names);
    o->param_names = (char(*)[EOPT_NAME_MAX])names;
    if (st == EOPT_OK)
        st = read_groups(og, where, o);
    if (st == EOPT_OK)
        st = read_state(og, where, check, defer, o);
    H5Gclose(og);
    return st;
}

/* Opens the optional root group /<group> (*top < 0 if absent) and lists its members (name
 * order) into *n, *names; `where` gets "<path>:/<group>". */
static eopt_status list_members(hid_t fid, const eopt_ckpt *ck, const char *group, char *where, size_t size,
                                hid_t *top, int *n, char ***names)
{
    *n = 0;
    *names = NULL;
    snprintf(where, size, "%.1500s:/%s", ck->path, group);
    EOPT_TRY(open_optional(fid, group, where, top));
    eopt_status st = *top < 0 ? EOPT_OK : eopt_h5_children(*top, where, 0, n, names);
    if (st != EOPT_OK) {
        H5Gclose(*top);
        *top = -1;
    }
    return st;
}

static eopt_status read_optimizers(hid_t fid, eopt_ckpt *ck, int defer)
{
    char where[2048];
    hid_t top;
    int n;
    char **names;
    EOPT_TRY(list_members(fid, ck, "optimizers", where, sizeof where, &top, &n, &names));
    ck->opts = calloc((size_t)(n ? n : 1), sizeof *ck->opts);
    eopt_status st = ck->opts ? EOPT_OK : eopt_fail(EOPT_ERR_NOMEM, "out of memory");
    for (int k = 0; k < n && st == EOPT_OK; k++) {
        ck->nopt = k + 1;
        st = read_optimizer(top, names[k], ck->path, ck->check, defer, &ck->opts[k]);
    }
    eopt_h5_names_free(n, names);
    if (top >= 0)
        H5Gclose(top);
    return st;
}

static eopt_status read_schedules(hid_t fid, eopt_ckpt *ck)
{
    char where[2048];
    hid_t top;
    int n;
    char **names;
    EOPT_TRY(list_members(fid, ck, "schedules", where, sizeof where, &top, &n, &names));
    ck->sched = calloc((size_t)(n ? n : 1), sizeof *ck->sched);
    eopt_status st = ck->sched ? EOPT_OK : eopt_fail(EOPT_ERR_NOMEM, "out of memory");
    for (int k = 0; k < n && st == EOPT_OK; k++) {
        char w[2048];
        snprintf(w, sizeof w, "%.1500s/%.300s", where, names[k]);
        hid_t g = H5Gopen2(top, names[k], H5P_DEFAULT);
        if (g < 0 || strlen(names[k]) >= EOPT_NAME_MAX) {
            st = eopt_fail(EOPT_ERR_FORMAT, "%s: expected a group with a short name", w);
        } else {
            snprintf(ck->sched[k].name, sizeof ck->sched[k].name, "%s", names[k]);
            st = eopt_h5_attrs_read(g, w, NULL, &ck->sched[k].attrs);
            ck->nsched = k + 1;
        }
        if (g >= 0)
            H5Gclose(g);
    }
    eopt_h5_names_free(n, names);
    if (top >= 0)
        H5Gclose(top);
    return st;
}

static eopt_status read_trainer(hid_t fid, eopt_ckpt *ck)
{
    char where[2048];
    snprintf(where, sizeof where, "%.1500s:/trainer", ck->path);
    hid_t g;
    EOPT_TRY(open_optional(fid, "trainer", where, &g));
    if (g < 0)
        return EOPT_OK;
    ck->has_trainer = 1;
    eopt_status st = eopt_h5_attrs_read(g, where, NULL, &ck->trainer);
    if (st == EOPT_OK)
        st = read_datasets(g, where, 0, 0, &ck->trainer_data, &ck->ntrainer_data);
    H5Gclose(g);
    return st;
}

/* Names in /model that are hard links to one object: the name an optimizer uses is the stored
 * tensor, the others its aliases (ties otherwise go to the first name in order). */
static int used_by_optimizer(const eopt_ckpt *ck, const char *name)
{
    for (int k = 0; k < ck->nopt; k++)
        for (int i = 0; i < ck->opts[k].nparams; i++)
            if (strcmp(ck->opts[k].param_names[i], name) == 0)
                return 1;
    return 0;
}

static eopt_status split_aliases(eopt_ckpt *ck)
{
    ck->aliases = calloc((size_t)(ck->ntensors ? ck->ntensors : 1), sizeof *ck->aliases);
    if (!ck->aliases)
        return eopt_fail(EOPT_ERR_NOMEM, "out of memory");
    int m = 0;
    for (int k = 0; k < ck->ntensors; k++) {
        int primary = k;
        for (int j = 0; j < ck->ntensors; j++)
            if (ck->tensors[j].addr == ck->tensors[k].addr && j != k &&
                (used_by_optimizer(ck, ck->tensors[j].name) > used_by_optimizer(ck, ck->tensors[primary].name) ||
                 (j < primary &&
                  used_by_optimizer(ck, ck->tensors[j].name) == used_by_optimizer(ck, ck->tensors[primary].name))))
                primary = j;
        if (primary == k) {
            ck->tensors[m++] = ck->tensors[k];
            continue;
        }
        ck_alias *a = &ck->aliases[ck->naliases++];
        snprintf(a->alias, sizeof a->alias, "%s", ck->tensors[k].name);
        snprintf(a->target, sizeof a->target, "%s", ck->tensors[primary].name);
        eopt_tensor_free(&ck->tensors[k].t);
    }
    ck->ntensors = m;
    return EOPT_OK;
}

static eopt_status read_root(hid_t fid, eopt_ckpt *ck)
{
    char where[2048], fmt[64];
    snprintf(where, sizeof where, "%.1500s:/", ck->path);
    EOPT_TRY(eopt_h5_attr_read_str(fid, "format", where, fmt, sizeof fmt));
    if (strcmp(fmt, EOPT_CKPT_FORMAT) != 0)
        return eopt_fail(EOPT_ERR_FORMAT, "%s: format is '%s', expected '%s'", where, fmt, EOPT_CKPT_FORMAT);
    eopt_value v;
    EOPT_TRY(eopt_h5_attr_read(fid, "format_version", where, &v));
    if (v.kind != EOPT_VAL_INT && v.kind != EOPT_VAL_BOOL)
        return eopt_fail(EOPT_ERR_FORMAT, "%s: format_version must be an integer", where);
    if (v.i > EOPT_CKPT_VERSION || v.i < 1)
        return eopt_fail(EOPT_ERR_FORMAT, "%s: format_version %lld is not supported (this reader knows 1..%d)", where,
                         (long long)v.i, EOPT_CKPT_VERSION);
    EOPT_TRY(eopt_h5_attr_read(fid, "step", where, &v));
    if ((v.kind != EOPT_VAL_INT && v.kind != EOPT_VAL_BOOL) || v.i < 0)
        return eopt_fail(EOPT_ERR_FORMAT, "%s: step must be a non-negative integer", where);
    ck->step = v.i;
    if (eopt_h5_attr_exists(fid, "producer"))
        EOPT_TRY(eopt_h5_attr_read_str(fid, "producer", where, ck->producer, sizeof ck->producer));
    if (eopt_h5_attr_exists(fid, "config")) {
        ck->config = malloc(EOPT_CKPT_CONFIG_MAX);
        if (!ck->config)
            return eopt_fail(EOPT_ERR_NOMEM, "%s: out of memory", where);
        EOPT_TRY(eopt_h5_attr_read_str(fid, "config", where, ck->config, EOPT_CKPT_CONFIG_MAX));
    }
    static const char *const known[] = {"format", "format_version", "step", "producer", "config", NULL};
    eopt_dict rest;
    EOPT_TRY(eopt_h5_attrs_read(fid, where, known, &rest));
    for (int k = 0; k < rest.n; k++) {
        char msg[128];
        snprintf(msg, sizeof msg, "unknown attribute '%s' ignored", rest.items[k].key);
        warn(where, msg);
    }
    return EOPT_OK;
}

static eopt_status read_model(hid_t fid, eopt_ckpt *ck, int defer)
{
    char where[2048];
    snprintf(where, sizeof where, "%.1500s:/model", ck->path);
    if (eopt_h5_kind_of(fid, "model", NULL) != EOPT_H5_GROUP)
        return eopt_fail(EOPT_ERR_FORMAT, "%s: group is missing", where);
    hid_t g = H5Gopen2(fid, "model", H5P_DEFAULT);
    eopt_status st = read_datasets(g, where, ck->check, defer, &ck->tensors, &ck->ntensors);
    H5Gclose(g);
    for (int k = 0; st == EOPT_OK && k < ck->ntensors; k++)
        if (ck->tensors[k].t.dtype != EOPT_F32)
            st = eopt_fail(EOPT_ERR_FORMAT, "%s/%s: model tensors must be floating point", where, ck->tensors[k].name);
    return st;
}

eopt_status eopt_checkpoint_open(const char *path, const eopt_ckpt_options *opt, eopt_ckpt **out)
{
    *out = NULL;
    eopt_h5_quiet();
    int defer = opt && opt->defer_tensors;
    eopt_ckpt *ck = calloc(1, sizeof *ck);
    if (!ck)
        return eopt_fail(EOPT_ERR_NOMEM, "out of memory");
    snprintf(ck->path, sizeof ck->path, "%s", path);
    ck->fid = -1;
    ck->check = !(opt && opt->allow_nonfinite);
    eopt_status st = opt && opt->trusted ? EOPT_OK : eopt_guard_open(path);
    if (st != EOPT_OK) {
        free(ck);
        return st;
    }
    if (access(path, R_OK) != 0 || H5Fis_hdf5(path) <= 0) {
        free(ck);
        return eopt_fail(EOPT_ERR_IO, "cannot open checkpoint '%s' (missing, unreadable or not HDF5)", path);
    }
    hid_t fid = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (fid < 0) {
        free(ck);
        return eopt_fail(EOPT_ERR_IO, "cannot open checkpoint '%s'", path);
    }
    st = read_root(fid, ck);
    if (st == EOPT_OK)
        st = read_model(fid, ck, defer);
    if (st == EOPT_OK)
        st = read_optimizers(fid, ck, defer);
    if (st == EOPT_OK)
        st = read_schedules(fid, ck);
    if (st == EOPT_OK)
        st = read_trainer(fid, ck);
    if (st == EOPT_OK)
        st = split_aliases(ck);
    if (st == EOPT_OK && defer)
        ck->fid = fid; /* read from by fill() until eopt_checkpoint_close */
    else
        H5Fclose(fid);
    if (st != EOPT_OK) {
        eopt_checkpoint_close(ck);
        return st;
    }
    *out = ck;
    return EOPT_OK;
}

/* ------------------------------------------------------------------------------------------
 * Accessors */

const char *eopt_ckpt_path(const eopt_ckpt *ck) { return ck->path; }
int64_t eopt_ckpt_step(const eopt_ckpt *ck) { return ck->step; }
const char *eopt_ckpt_producer(const eopt_ckpt *ck) { return ck->producer; }
const char *eopt_ckpt_config(const eopt_ckpt *ck) { return ck->config ? ck->config : ""; }
int eopt_ckpt_num_tensors(const eopt_ckpt *ck) { return ck->ntensors; }
const char *eopt_ckpt_tensor_name(const eopt_ckpt *ck, int k) { return ck->tensors[k].name; }
int eopt_ckpt_num_aliases(const eopt_ckpt *ck) { return ck->naliases; }

eopt_ckpt_alias eopt_ckpt_alias_at(const eopt_ckpt *ck, int k)
{
    return (eopt_ckpt_alias){ck->aliases[k].alias, ck->aliases[k].target};
}

/* The stored name behind `name` (itself, or the target of an alias). */
static const char *resolve(const eopt_ckpt *ck, const char *name)
{
    for (int k = 0; k < ck->naliases; k++)
        if (strcmp(ck->aliases[k].alias, name) == 0)
            return ck->aliases[k].target;
    return name;
}

const eopt_tensor *eopt_ckpt_tensor(const eopt_ckpt *ck, const char *name)
{
    name = resolve(ck, name);
    for (int k = 0; k < ck->ntensors; k++)
        if (strcmp(ck->tensors[k].name, name) == 0)
            return &ck->tensors[k].t;
    return NULL;
}

int eopt_ckpt_num_optimizers(const eopt_ckpt *ck) { return ck->nopt; }
const char *eopt_ckpt_optimizer_name(const eopt_ckpt *ck, int k) { return ck->opts[k].name; }

const eopt_ckpt_opt_info *eopt_ckpt_optimizer_info(const eopt_ckpt *ck, const char *name)
{
    for (int k = 0; k < ck->nopt; k++)
        if (strcmp(ck->opts[k].name, name) == 0)
            return &ck->opts[k];
    return NULL;
}

int eopt_ckpt_num_schedules(const eopt_ckpt *ck) { return ck->nsched; }
const char *eopt_ckpt_schedule_name(const eopt_ckpt *ck, int k) { return ck->sched[k].name; }

const eopt_dict *eopt_ckpt_schedule(const eopt_ckpt *ck, const char *name)
{
    for (int k = 0; k < ck->nsched; k++)
        if (strcmp(ck->sched[k].name, name) == 0)
            return &ck->sched[k].attrs;
    return NULL;
}

const eopt_dict *eopt_ckpt_trainer(const eopt_ckpt *ck) { return ck->has_trainer ? &ck->trainer : NULL; }
int eopt_ckpt_num_trainer_data(const eopt_ckpt *ck) { return ck->ntrainer_data; }
const char *eopt_ckpt_trainer_data_name(const eopt_ckpt *ck, int k) { return ck->trainer_data[k].name; }

const eopt_tensor *eopt_ckpt_trainer_data(const eopt_ckpt *ck, const char *name)
{
    for (int k = 0; k < ck->ntrainer_data; k++)
        if (strcmp(ck->trainer_data[k].name, name) == 0)
            return &ck->trainer_data[k].t;
    return NULL;
}

/* ------------------------------------------------------------------------------------------
 * Applying a checkpoint */

/* The model must match the file exactly, as torch's strict load_state_dict: every parameter
 * present with its shape, and no stored tensor (alias names aside) the model lacks. */
static eopt_status check_model(const eopt_ckpt *ck, const eopt_param *params, int nparams)
{
    char sa[64], sb[64];
    for (int i = 0; i < nparams; i++) {
        const eopt_tensor *t = eopt_ckpt_tensor(ck, params[i].name);
        if (!t)
            return eopt_fail(EOPT_ERR_FORMAT, "%s:/model/%s: parameter is missing", ck->path, params[i].name);
        if (params[i].w->dtype != EOPT_F32)
            return eopt_fail(EOPT_ERR_ARG, "%s:/model/%s: the model's tensor is %s, checkpoints hold float32",
                             ck->path, params[i].name, eopt_dtype_name(params[i].w->dtype));
        if (!eopt_tensor_same_shape(t, params[i].w))
            return eopt_fail(EOPT_ERR_SHAPE, "%s:/model/%s: shape %s in the file, %s in the model", ck->path,
                             params[i].name, eopt_shape_str(t->ndim, t->shape, sa, sizeof sa),
                             eopt_shape_str(params[i].w->ndim, params[i].w->shape, sb, sizeof sb));
    }
    for (int k = 0; k < eopt_ckpt_num_tensors(ck); k++) {
        const char *name = eopt_ckpt_tensor_name(ck, k);
        int found = 0;
        for (int i = 0; i < nparams && !found; i++)
            found = strcmp(params[i].name, name) == 0 || eopt_ckpt_tensor(ck, params[i].name) == eopt_ckpt_tensor(ck, name);
        if (!found)
            return eopt_fail(EOPT_ERR_FORMAT, "%s:/model/%s: the model has no such parameter", ck->path, name);
    }
    return EOPT_OK;
}

/* The model's tensor for each parameter in host memory, all read and checked before the
 * model changes: ck's own, or (defer_tensors) read from the file into staged[i]. */
static eopt_status stage_model(const eopt_ckpt *ck, const eopt_param *params, int nparams, eopt_tensor *staged,
                               const eopt_tensor **src)
{
    for (int i = 0; i < nparams; i++) {
        src[i] = eopt_ckpt_tensor(ck, params[i].name);
        if (src[i]->data)
            continue;
        EOPT_TRY(eopt_tensor_alloc(&staged[i], NULL, src[i]->dtype, src[i]->ndim, src[i]->shape));
        EOPT_TRY(eopt_ckpt_read_tensor(ck, params[i].name, &staged[i]));
        src[i] = &staged[i];
    }
    return EOPT_OK;
}

eopt_status eopt_ckpt_load_model(const eopt_ckpt *ck, eopt_param *params, int nparams)
{
    EOPT_TRY(check_model(ck, params, nparams));
    eopt_tensor *staged = calloc((size_t)(nparams ? nparams : 1), sizeof *staged);
    const eopt_tensor **src = calloc((size_t)(nparams ? nparams : 1), sizeof *src);
    eopt_status st = staged && src ? stage_model(ck, params, nparams, staged, src)
                                   : eopt_fail(EOPT_ERR_NOMEM, "out of memory");
    for (int i = 0; i < nparams && st == EOPT_OK; i++)
        st = eopt_tensor_copy(params[i].w, src[i]); /* all read and checked: only copies */
    for (int i = 0; staged && i < nparams; i++)
        eopt_tensor_free(&staged[i]);
    free(staged);
    free(src);
    return st;
}

static int is_optional(const eopt_optimizer_class *cls, const char *key)
{
    for (int k = 0; cls->optional_state_keys && cls->optional_state_keys[k]; k++)
        if (strcmp(cls->optional_state_keys[k], key) == 0)
            return 1;
    return 0;
}

static const eopt_ckpt_entry *find_entry(const eopt_ckpt_opt_info *o, int64_t i, const char *key)
{
    for (int k = 0; k < o->nstate[i]; k++)
        if (strcmp(o->state[i][k].key, key) == 0)
            return &o->state[i][k];
    return NULL;
}

static int is_int(eopt_dtype dt) { return dt == EOPT_I32 || dt == EOPT_I64; }

/* Copies a file tensor into a state tensor; integer widths convert, floats must be float32. */
static eopt_status copy_entry(eopt_tensor *dst, const eopt_tensor *src)
{
    if (dst->dtype == src->dtype)
        return eopt_tensor_copy(dst, src);
    int64_t *tmp = malloc(sizeof *tmp * (size_t)(src->numel ? src->numel : 1));
    if (!tmp)
        return eopt_fail(EOPT_ERR_NOMEM, "out of memory");
    for (int64_t k = 0; k < src->numel; k++)
        tmp[k] = src->dtype == EOPT_I64 ? ((int64_t *)src->data)[k] : ((int32_t *)src->data)[k];
    eopt_tensor conv;
    eopt_status st = eopt_tensor_alloc(&conv, NULL, dst->dtype, dst->ndim, dst->shape);
    for (int64_t k = 0; st == EOPT_OK && k < src->numel; k++) {
        if (dst->dtype == EOPT_I64)
            ((int64_t *)conv.data)[k] = tmp[k];
        else
            ((int32_t *)conv.data)[k] = (int32_t)tmp[k];
    }
    if (st == EOPT_OK) {
        st = eopt_tensor_copy(dst, &conv);
        eopt_tensor_free(&conv);
    }
    free(tmp);
    return st;
}

/* Puts a stored tensor (`h5path` in the file, "model/<name>" ...) into dst, which has its shape
 * (any placement): copied from ck's memory, or (defer_tensors) read from the file straight into
 * dst's memory (through a host buffer for a device tensor) and checked finite there. */
static eopt_status fill(const eopt_ckpt *ck, const char *h5path, const eopt_tensor *src, eopt_tensor *dst)
{
    if (src->data)
        return copy_entry(dst, src);
    char where[1100], what[2048];
    snprintf(where, sizeof where, "%s:", ck->path);
    snprintf(what, sizeof what, "%s/%.900s", where, h5path);
    eopt_tensor host = *dst;
    eopt_status st = eopt_h5_host_memory(dst) ? EOPT_OK : eopt_tensor_alloc(&host, NULL, dst->dtype, dst->ndim, dst->shape);
    if (st == EOPT_OK)
        st = eopt_h5_dataset_read_into(ck->fid, h5path, where, &host);
    if (st == EOPT_OK && ck->check)
        st = check_finite(&host, what);
    if (host.data != dst->data) {
        if (st == EOPT_OK)
            st = eopt_tensor_copy(dst, &host);
        eopt_tensor_free(&host);
    }
    return st;
}

eopt_status eopt_ckpt_read_tensor(const eopt_ckpt *ck, const char *name, eopt_tensor *dst)
{
    const eopt_tensor *t = eopt_ckpt_tensor(ck, name);
    char sa[64], sb[64], h5path[EOPT_NAME_MAX + 8];
    if (!t)
        return eopt_fail(EOPT_ERR_FORMAT, "%s:/model/%s: parameter is missing", ck->path, name);
    if (!eopt_tensor_same_shape(t, dst) || t->dtype != dst->dtype)
        return eopt_fail(EOPT_ERR_SHAPE, "%s:/model/%s: %s %s in the file, %s %s expected", ck->path, name,
                         eopt_shape_str(t->ndim, t->shape, sa, sizeof sa), eopt_dtype_name(t->dtype),
                         eopt_shape_str(dst->ndim, dst->shape, sb, sizeof sb), eopt_dtype_name(dst->dtype));
    snprintf(h5path, sizeof h5path, "model/%s", resolve(ck, name));
    return fill(ck, h5path, t, dst);
}

/* Fills state j of `opt` (file index i) from the file: every key the class has must be there with
 * its shape and dtype (extra keys are errors unless the class lists them as optional), every value
 * finite. keep == 0 (another rank's parameter): checked the same way, one tensor at a time through
 * a scratch copy, and then not kept. */
static eopt_status load_state(const eopt_ckpt *ck, const eopt_ckpt_opt_info *o, const char *where, int64_t i,
                              eopt_optimizer *opt, int j, int keep)
{
    char sa[64], sb[64];
    if (o->nstate[i] == 0)
        return EOPT_OK;
    if (opt->state[j].n == 0)
        EOPT_TRY(opt->cls->init_state(opt, j));
    const eopt_state *s = &opt->state[j];
    for (int k = 0; k < o->nstate[i]; k++) {
        const char *key = o->state[i][k].key;
        int known = 0;
        for (int q = 0; q < s->n; q++)
            known |= strcmp(s->key[q], key) == 0;
        if (!known && !is_optional(opt->cls, key))
            return eopt_fail(EOPT_ERR_FORMAT, "%s/state/%lld/%s: unexpected state key for %s", where, (long long)i, key,
                             opt->cls->name);
    }
    for (int q = 0; q < s->n; q++) {
        const eopt_ckpt_entry *e = find_entry(o, i, s->key[q]);
        if (!e)
            return eopt_fail(EOPT_ERR_FORMAT, "%s/state/%lld: missing state key '%s' ('%s')", where, (long long)i,
                             s->key[q], o->param_names[i]);
        const eopt_tensor *t = &s->t[q];
        if (!eopt_tensor_same_shape(t, &e->t))
            return eopt_fail(EOPT_ERR_SHAPE, "%s/state/%lld/%s: shape %s in the file, %s expected", where, (long long)i,
                             e->key, eopt_shape_str(e->t.ndim, e->t.shape, sa, sizeof sa),
                             eopt_shape_str(t->ndim, t->shape, sb, sizeof sb));
        if (t->dtype != e->t.dtype && !(is_int(t->dtype) && is_int(e->t.dtype)))
            return eopt_fail(EOPT_ERR_FORMAT, "%s/state/%lld/%s: dtype %s in the file, %s expected", where,
                             (long long)i, e->key, eopt_dtype_name(e->t.dtype), eopt_dtype_name(t->dtype));
    }
    eopt_status st = EOPT_OK;
    for (int q = 0; q < s->n && st == EOPT_OK; q++) {
        char h5path[EOPT_NAME_MAX + 64];
        snprintf(h5path, sizeof h5path, "optimizers/%s/state/%lld/%s", o->name, (long long)i, s->key[q]);
        const eopt_tensor *src = &find_entry(o, i, s->key[q])->t;
        if (keep) {
            st = fill(ck, h5path, src, &opt->state[j].t[q]);
            continue;
        }
        eopt_tensor scratch;
        st = eopt_tensor_alloc(&scratch, NULL, s->t[q].dtype, s->t[q].ndim, s->t[q].shape);
        if (st == EOPT_OK)
            st = fill(ck, h5path, src, &scratch);
        eopt_tensor_free(&scratch);
    }
    if (!keep)
        eopt_state_clear(&opt->state[j]);
    return st;
}

/* The caller's parameter for a file name (directly or through an alias of the file). */
static const eopt_param *bind(const eopt_ckpt *ck, const char *name, const eopt_param *params, int nparams)
{
    const char *stored = resolve(ck, name);
    for (int k = 0; k < nparams; k++)
        if (strcmp(params[k].name, name) == 0 || strcmp(params[k].name, stored) == 0)
            return &params[k];
    return NULL;
}

/* Builds args, groups and the bound parameter list from the file, in torch's group order. */
static eopt_status build_inputs(const eopt_ckpt *ck, const eopt_ckpt_opt_info *o, const char *where,
                                const eopt_optimizer_class *cls, const eopt_param *params, int nparams, eopt_dict *args,
                                eopt_param *bound, int *sizes, int64_t *file_index)
{
    char sa[64], sb[64];
    eopt_dict arg_defaults = {0}, group_defaults = {0};
    eopt_optimizer_defaults(cls, &arg_defaults, &group_defaults);
    *args = (eopt_dict){0};
    for (int k = 0; k < o->args.n; k++) {
        const eopt_item *it = &o->args.items[k];
        if (!eopt_dict_get(&arg_defaults, it->key)) {
            char msg[160];
            snprintf(msg, sizeof msg, "unknown attribute '%s' for class %s ignored", it->key, cls->name);
            warn(where, msg);
            continue;
        }
        EOPT_TRY(eopt_dict_set(args, it->key, it->v));
    }
    int j = 0;
    for (int g = 0; g < o->ngroups; g++) {
        sizes[g] = o->group_n[g];
        for (int k = 0; k < o->group_n[g]; k++, j++) {
            int64_t i = o->group_index[g][k];
            const eopt_param *p = bind(ck, o->param_names[i], params, nparams);
            if (!p)
                return eopt_fail(EOPT_ERR_FORMAT, "%s/param_names[%lld]: no model parameter named '%s'", where,
                                 (long long)i, o->param_names[i]);
            const eopt_tensor *m = eopt_ckpt_tensor(ck, o->param_names[i]);
            if (m && !eopt_tensor_same_shape(m, p->w))
                return eopt_fail(EOPT_ERR_SHAPE, "%s: parameter '%s' has shape %s in the file, %s in the model", where,
                                 o->param_names[i], eopt_shape_str(m->ndim, m->shape, sa, sizeof sa),
                                 eopt_shape_str(p->w->ndim, p->w->shape, sb, sizeof sb));
            bound[j] = *p;
            file_index[j] = i;
        }
    }
    return EOPT_OK;
}

/* torch keeps every default key in a param group and a checkpoint stores None as an absent
 * attribute, so a default key the file lacks was None (dion's adjust_lr = None), never the default. */
static eopt_status groups_with_nones(const eopt_optimizer_class *cls, const eopt_ckpt_opt_info *o, eopt_dict *hp)
{
    eopt_dict arg_defaults = {0}, group_defaults = {0};
    eopt_optimizer_defaults(cls, &arg_defaults, &group_defaults);
    for (int g = 0; g < o->ngroups; g++) {
        hp[g] = o->group_hp[g];
        for (int k = 0; k < group_defaults.n; k++)
            if (!eopt_dict_get(&hp[g], group_defaults.items[k].key))
                EOPT_TRY(eopt_dict_set(&hp[g], group_defaults.items[k].key, (eopt_value){.kind = EOPT_VAL_NONE}));
    }
    return EOPT_OK;
}

/* The file's optimizer `name`, or an error naming the file. */
static eopt_status optimizer_info(const eopt_ckpt *ck, const char *name, const eopt_ckpt_opt_info **o)
{
    *o = eopt_ckpt_optimizer_info(ck, name);
    return *o ? EOPT_OK : eopt_fail(EOPT_ERR_FORMAT, "%s: no optimizer '/optimizers/%s'", ck->path, name);
}

static eopt_status create_from(const eopt_ckpt *ck, const eopt_ckpt_opt_info *o, eopt_backend *be,
                               const eopt_param *params, int nparams, const unsigned char *keep, eopt_optimizer **out)
{
    char where[2048];
    snprintf(where, sizeof where, "%.1500s:/optimizers/%.300s", ck->path, o->name);
    const eopt_optimizer_class *cls = eopt_optimizer_find_checkpoint(o->cls, o->source[0] ? o->source : NULL);
    if (!cls)
        return eopt_fail(EOPT_ERR_FORMAT, "%s: unknown optimizer class '%s'", where, o->cls);
    eopt_dict args;
    eopt_param *bound = calloc((size_t)(o->nparams ? o->nparams : 1), sizeof *bound);
    int *sizes = calloc((size_t)(o->ngroups ? o->ngroups : 1), sizeof *sizes);
    int64_t *file_index = calloc((size_t)(o->nparams ? o->nparams : 1), sizeof *file_index);
    eopt_dict *hp = calloc((size_t)(o->ngroups ? o->ngroups : 1), sizeof *hp);
    eopt_optimizer *opt = NULL;
    eopt_status st = bound && sizes && file_index && hp ? EOPT_OK : eopt_fail(EOPT_ERR_NOMEM, "out of memory");
    if (st == EOPT_OK)
        st = build_inputs(ck, o, where, cls, params, nparams, &args, bound, sizes, file_index);
    if (st == EOPT_OK)
        st = groups_with_nones(cls, o, hp);
    if (st == EOPT_OK) {
        st = eopt_optimizer_create(cls->id, be, &args, o->ngroups, hp, sizes, bound, o->nparams, &opt);
        if (st != EOPT_OK)
            eopt_fail_context(st, "%s", where);
    }
    for (int j = 0; st == EOPT_OK && j < o->nparams; j++)
        st = load_state(ck, o, where, file_index[j], opt, j, !keep || keep[j]);
    free(hp);
    free(bound);
    free(sizes);
    free(file_index);
    if (st != EOPT_OK) {
        eopt_optimizer_free(opt);
        return st;
    }
    *out = opt;
    return EOPT_OK;
}

eopt_status eopt_ckpt_create_optimizer(const eopt_ckpt *ck, const char *name, eopt_backend *be,
                                       const eopt_param *params, int nparams, eopt_optimizer **out)
{
    *out = NULL;
    const eopt_ckpt_opt_info *o;
    EOPT_TRY(optimizer_info(ck, name, &o));
    return create_from(ck, o, be, params, nparams, NULL, out);
}

/* Python's equality for numbers (1 == 1.0 == True), exact for the rest. */
static int same_value(const eopt_value *a, const eopt_value *b)
{
    int na = a->kind == EOPT_VAL_BOOL || a->kind == EOPT_VAL_INT || a->kind == EOPT_VAL_FLOAT;
    int nb = b->kind == EOPT_VAL_BOOL || b->kind == EOPT_VAL_INT || b->kind == EOPT_VAL_FLOAT;
    if (na && nb)
        return (a->kind == EOPT_VAL_FLOAT ? a->f : (double)a->i) == (b->kind == EOPT_VAL_FLOAT ? b->f : (double)b->i);
    return eopt_value_equal(a, b);
}

/* The file's optimizer must be the caller's: class, arguments, groups, parameter names. An
 * argument the class declares schedulable is, like a group hyperparameter, a value a schedule
 * moves: the file's is taken with its state, not compared. */
static eopt_status same_structure(const eopt_optimizer *file, const eopt_optimizer *opt, const char *where)
{
    char va[128], vb[128];
    if (file->cls != opt->cls)
        return eopt_fail(EOPT_ERR_ARG, "%s: class %s (%s) in the file, the optimizer is %s", where, file->cls->name,
                         file->cls->id, opt->cls->id);
    for (int k = 0; k < opt->args.n; k++) {
        const eopt_item *it = &opt->args.items[k];
        const eopt_value *v = eopt_dict_get(&file->args, it->key);
        if (eopt_optimizer_schedulable(opt->cls, it->key))
            continue;
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

/* Replaces the running optimizer's contents by the one built from the file: the class's impl
 * was built for the file's groups and state, so whole objects are exchanged. */
static void swap_optimizers(eopt_optimizer *a, eopt_optimizer *b)
{
    eopt_optimizer tmp = *a;
    *a = *b;
    *b = tmp;
}

/* Builds the file's optimizer `name` for the running `opt` and checks they agree. */
static eopt_status build_matching(const eopt_ckpt *ck, const char *name, const eopt_optimizer *opt,
                                  const unsigned char *keep, eopt_optimizer **file)
{
    char where[2048];
    snprintf(where, sizeof where, "%.1500s:/optimizers/%.300s", ck->path, name);
    const eopt_ckpt_opt_info *o;
    EOPT_TRY(optimizer_info(ck, name, &o));
    EOPT_TRY(create_from(ck, o, opt->be, opt->params, opt->nparams, keep, file));
    eopt_status st = same_structure(*file, opt, where);
    if (st != EOPT_OK) {
        eopt_optimizer_free(*file);
        *file = NULL;
    }
    return st;
}

eopt_status eopt_ckpt_load_optimizer(const eopt_ckpt *ck, const char *name, eopt_optimizer *opt)
{
    eopt_optimizer *file = NULL;
    EOPT_TRY(build_matching(ck, name, opt, NULL, &file));
    swap_optimizers(opt, file);
    eopt_optimizer_free(file);
    return EOPT_OK;
}

eopt_status eopt_checkpoint_apply(const eopt_ckpt *ck, eopt_param *params, int nparams, int nopt,
                                  const char *const *names, eopt_optimizer *const *opts)
{
    return eopt_checkpoint_apply_shard(ck, params, nparams, nopt, names, opts, NULL, NULL, NULL);
}

eopt_status eopt_checkpoint_apply_shard(const eopt_ckpt *ck, eopt_param *params, int nparams, int nopt,
                                        const char *const *names, eopt_optimizer *const *opts,
                                        const unsigned char *const *keep, eopt_ckpt_verdict verdict, void *user)
{
    eopt_optimizer **fresh = calloc((size_t)(nopt ? nopt : 1), sizeof *fresh);
    eopt_tensor *staged = calloc((size_t)(nparams ? nparams : 1), sizeof *staged);
    const eopt_tensor **src = calloc((size_t)(nparams ? nparams : 1), sizeof *src);
    eopt_status st = fresh && staged && src ? check_model(ck, params, nparams)
                                            : eopt_fail(EOPT_ERR_NOMEM, "out of memory");
    for (int k = 0; k < nopt && st == EOPT_OK; k++)
        st = build_matching(ck, names[k], opts[k], keep ? keep[k] : NULL, &fresh[k]);
    if (st == EOPT_OK)
        st = stage_model(ck, params, nparams, staged, src);
    if (verdict) /* everything read and checked; nothing changed yet */
        st = verdict(user, st);
    for (int i = 0; i < nparams && st == EOPT_OK; i++)
        st = eopt_tensor_copy(params[i].w, src[i]); /* host to backend copies of checked tensors */
    for (int k = 0; k < nopt && st == EOPT_OK; k++)
        swap_optimizers(opts[k], fresh[k]);
    for (int k = 0; fresh && k < nopt; k++)
        eopt_optimizer_free(fresh[k]);
    for (int i = 0; staged && i < nparams; i++)
        eopt_tensor_free(&staged[i]);
    free(fresh), free(staged), free(src);
    return st;
}
