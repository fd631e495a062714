/* Rotating checkpoints: list <prefix><digits>.h5 in a directory, newest first by step. */
#include "rotate.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../framework/log.h"

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
    if (!w->comm) /* one process */
        return eopt_checkpoint_prune(dir, prefix, keep);
    /* a data-parallel save: rank 0 keeps the folder, and every rank learns how that went */
    return eopt_comm_agree(w->comm, eopt_comm_rank(w->comm) == 0 ? eopt_checkpoint_prune(dir, prefix, keep) : EOPT_OK);
}

eopt_status eopt_checkpoint_open_latest(const char *dir, const char *prefix, const eopt_ckpt_options *opt,
                                        eopt_ckpt **out) {
    ckpt_entry *e;
    int n, tried = 0;
    EOPT_TRY(list_entries(dir, prefix, &e, &n));
    eopt_status st = EOPT_ERR_IO;
    char failed[4096] = "", reason[1024] = ""; /* the last file that did not open, and why */
    for (int k = 0; k < n; k++) {
        if (e[k].tmp)
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e[k].name);
        if (tried > 0) /* the newer file is skipped only now that an older one exists */
            eopt_log(EOPT_LOG_WARN, "%s: skipped, it does not open (%s); trying the older %s", failed, reason, path);
        st = eopt_checkpoint_open(path, opt, out);
        if (st == EOPT_OK || st == EOPT_ERR_INTERRUPTED)
            break;
        snprintf(failed, sizeof failed, "%s", path);
        snprintf(reason, sizeof reason, "%s", eopt_last_error());
        tried++;
    }
    free(e);
    if (st == EOPT_OK || st == EOPT_ERR_INTERRUPTED)
        return st;
    if (tried == 0)
        return eopt_fail(EOPT_ERR_IO, "no checkpoint '%s/%s<step>.h5'", dir, prefix);
    return eopt_fail(EOPT_ERR_FORMAT, "none of the %d checkpoint%s in %s opens (the oldest, %s: %s)", tried,
                     tried > 1 ? "s" : "", dir, failed, reason);
}
