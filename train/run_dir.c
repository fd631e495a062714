/* Run folders (run_dir.h). */
#include "run_dir.h"

#include <dirent.h>
#include <errno.h>
#include <libconfig.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "../framework/log.h"
#include "../framework/version.h"

eopt_status eopt_make_dirs(const char *path)
{
    char buf[EOPT_CFG_PATH_MAX];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1;; p++) {
        int end = *p == 0;
        if (*p == '/' || end) {
            *p = 0;
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return eopt_fail(EOPT_ERR_IO, "cannot create directory %s: %s", buf, strerror(errno));
            if (end)
                return EOPT_OK;
            *p = '/';
        }
    }
}

static void utc_stamp(char *buf, size_t size, const char *fmt)
{
    time_t now = time(NULL);
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(buf, size, fmt, &tm);
}

static void join(char *buf, size_t size, const char *dir, const char *name)
{
    snprintf(buf, size, "%s/%s", dir, name);
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* A file of the run in `dir`: its config, records, metrics, checkpoints. */
static int run_file(const eopt_config *cfg, const char *name)
{
    const char *metrics = strrchr(cfg->log.metrics, '/');
    size_t np = strlen(EOPT_RUN_CKPT_PREFIX);
    return strcmp(name, EOPT_RUN_CONFIG) == 0 || strcmp(name, EOPT_RUN_INFO) == 0 || strcmp(name, EOPT_RUN_OUTCOME) == 0 ||
           strcmp(name, EOPT_RUN_RESUMES) == 0 || (metrics && strcmp(name, metrics + 1) == 0) ||
           (strncmp(name, EOPT_RUN_CKPT_PREFIX, np) == 0 && strstr(name, ".h5"));
}

/* The run files in the folder, as "config.cfg, metrics.jsonl, 2 checkpoints" into buf; the count.
 * With `aside` set, each moves into that folder. */
static eopt_status scan(const eopt_config *cfg, const char *aside, char *buf, size_t size, int *count)
{
    const char *dir = cfg->checkpoint.dir;
    int nckpt = 0;
    *count = 0;
    buf[0] = 0;
    DIR *d = opendir(dir);
    if (!d)
        return EOPT_OK;
    eopt_status st = EOPT_OK;
    for (struct dirent *e; st == EOPT_OK && (e = readdir(d));) {
        if (!run_file(cfg, e->d_name))
            continue;
        (*count)++;
        if (strncmp(e->d_name, EOPT_RUN_CKPT_PREFIX, strlen(EOPT_RUN_CKPT_PREFIX)) == 0)
            nckpt++;
        else
            snprintf(buf + strlen(buf), size - strlen(buf), "%s%s", buf[0] ? ", " : "", e->d_name);
        if (aside) {
            char from[2 * EOPT_CFG_PATH_MAX], to[3 * EOPT_CFG_PATH_MAX];
            join(from, sizeof from, dir, e->d_name);
            join(to, sizeof to, aside, e->d_name);
            if (rename(from, to) != 0)
                st = eopt_fail(EOPT_ERR_IO, "cannot move %s to %s: %s", from, to, strerror(errno));
        }
    }
    closedir(d);
    if (nckpt)
        snprintf(buf + strlen(buf), size - strlen(buf), "%s%d checkpoint%s", buf[0] ? ", " : "", nckpt,
                 nckpt > 1 ? "s" : "");
    return st;
}

/* A metrics file outside the folder counts too (moved aside with a suffix). */
static int outside_metrics(const eopt_config *cfg)
{
    size_t n = strlen(cfg->checkpoint.dir);
    const char *m = cfg->log.metrics;
    return m[0] && !(strncmp(m, cfg->checkpoint.dir, n) == 0 && m[n] == '/' && !strchr(m + n + 1, '/')) &&
           exists(m);
}

static eopt_status claim_fresh(const eopt_config *cfg, int force)
{
    const char *dir = cfg->checkpoint.dir;
    char have[2 * EOPT_CFG_PATH_MAX], aside[2 * EOPT_CFG_PATH_MAX], stamp[32];
    int n;
    EOPT_TRY(scan(cfg, NULL, have, sizeof have, &n));
    if (outside_metrics(cfg))
        snprintf(have + strlen(have), sizeof have - strlen(have), "%s%s", have[0] ? ", " : "", cfg->log.metrics), n++;
    if (n == 0)
        return EOPT_OK;
    if (!force)
        return eopt_fail(EOPT_ERR_CONFIG, "%s holds another run's files (%s): continue that run with --resume auto, "
                         "give this one its own folder with --run-dir DIR, or move the old files aside with --force",
                         dir, have);
    utc_stamp(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ");
    for (int k = 0;; k++) {
        snprintf(aside, sizeof aside, "%s/previous-%s%s%.0d", dir, stamp, k ? "-" : "", k);
        if (!exists(aside))
            break;
    }
    EOPT_TRY(eopt_make_dirs(aside));
    EOPT_TRY(scan(cfg, aside, have, sizeof have, &n));
    if (outside_metrics(cfg)) {
        char to[3 * EOPT_CFG_PATH_MAX];
        snprintf(to, sizeof to, "%s.previous-%s", cfg->log.metrics, stamp);
        if (rename(cfg->log.metrics, to) != 0)
            return eopt_fail(EOPT_ERR_IO, "cannot move %s to %s: %s", cfg->log.metrics, to, strerror(errno));
    }
    eopt_log(EOPT_LOG_WARN, "%s: the previous run's files moved to %s", dir, aside);
    return EOPT_OK;
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *text = n >= 0 ? malloc((size_t)n + 1) : NULL;
    if (text && fread(text, 1, (size_t)n, f) != (size_t)n) {
        free(text);
        text = NULL;
    }
    if (text)
        text[n] = 0;
    fclose(f);
    return text;
}

static eopt_status claim_resume(const eopt_config *cfg, const char *text, int force)
{
    char path[2 * EOPT_CFG_PATH_MAX], diff[4096];
    join(path, sizeof path, cfg->checkpoint.dir, EOPT_RUN_CONFIG);
    char *old = read_text(path);
    if (!old) /* a folder from before run records: nothing to compare */
        return EOPT_OK;
    int n = eopt_config_text_diff(old, text, diff, sizeof diff);
    free(old);
    if (n == 0)
        return EOPT_OK;
    if (n < 0)
        snprintf(diff, sizeof diff, "%s does not parse", path);
    if (!force)
        return eopt_fail(EOPT_ERR_CONFIG, "%s: this run's config differs from the one it resumes (folder -> now): %s; "
                         "resume with --force to continue with the new settings", path, diff);
    char stamp[32], to[3 * EOPT_CFG_PATH_MAX];
    utc_stamp(stamp, sizeof stamp, "%Y%m%dT%H%M%SZ");
    snprintf(to, sizeof to, "%s/config.replaced-%s.cfg", cfg->checkpoint.dir, stamp);
    if (rename(path, to) != 0)
        return eopt_fail(EOPT_ERR_IO, "cannot move %s to %s: %s", path, to, strerror(errno));
    eopt_log(EOPT_LOG_WARN, "%s: resuming with a changed config (the old one is %s): %s", path, to, diff);
    return EOPT_OK;
}

eopt_status eopt_run_dir_claim(const eopt_config *cfg, const char *config_text, int resume, int force)
{
    return resume ? claim_resume(cfg, config_text, force) : claim_fresh(cfg, force);
}

/* ---- records ---- */

static void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fprintf(f, "\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            fprintf(f, "\\u%04x", (unsigned char)*s);
        else
            fputc(*s, f);
    }
    fputc('"', f);
}

static void write_record(FILE *f, const eopt_config *cfg, const eopt_run_record *r)
{
    char stamp[32];
    utc_stamp(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%SZ");
    fprintf(f, "{\"schema\": 1, \"eopt_version\": \"%s\", \"command\": ", EOPT_VERSION);
    json_str(f, r->command ? r->command : "");
    fputs(", \"config_source\": ", f);
    json_str(f, cfg->path);
    fprintf(f, ", \"started\": \"%s\", \"step\": %lld, \"machine\": {\"device\": ", stamp, (long long)r->step);
    json_str(f, cfg->run.device);
    fprintf(f, ", \"threads\": %d, \"backend\": ", cfg->run.threads);
    json_str(f, r->backend ? r->backend : "");
    fputs("}}\n", f);
}

/* Writes `path` atomically from text (or, text NULL, from the record). */
static eopt_status write_file(const char *path, const char *text, const eopt_config *cfg, const eopt_run_record *r,
                              int append)
{
    char tmp[2 * EOPT_CFG_PATH_MAX + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(append ? path : tmp, append ? "a" : "w");
    if (!f)
        return eopt_fail(EOPT_ERR_IO, "cannot write %s: %s", append ? path : tmp, strerror(errno));
    if (text)
        fputs(text, f);
    else
        write_record(f, cfg, r);
    int failed = fflush(f) != 0 || ferror(f); /* a full disk: the error flag of any write above */
    failed |= fclose(f) != 0;
    if (failed || (!append && rename(tmp, path) != 0)) {
        eopt_status st = eopt_fail(EOPT_ERR_IO, "cannot write %s: %s", path, strerror(errno));
        if (!append)
            unlink(tmp);
        return st;
    }
    return EOPT_OK;
}

eopt_status eopt_run_dir_record(const eopt_config *cfg, const char *config_text, const eopt_run_record *r)
{
    char path[2 * EOPT_CFG_PATH_MAX];
    const char *dir = cfg->checkpoint.dir;
    EOPT_TRY(eopt_make_dirs(dir));
    join(path, sizeof path, dir, EOPT_RUN_CONFIG);
    EOPT_TRY(write_file(path, config_text, cfg, r, 0));
    join(path, sizeof path, dir, r->step > 0 ? EOPT_RUN_RESUMES : EOPT_RUN_INFO);
    return write_file(path, NULL, cfg, r, r->step > 0);
}

eopt_status eopt_run_dir_outcome(const char *dir, const char *state, int64_t step, const char *reason)
{
    char path[2 * EOPT_CFG_PATH_MAX], tmp[2 * EOPT_CFG_PATH_MAX + 8];
    join(path, sizeof path, dir, EOPT_RUN_OUTCOME);
    if (!state)
        return unlink(path) == 0 || errno == ENOENT ? EOPT_OK
                                                    : eopt_fail(EOPT_ERR_IO, "cannot remove %s: %s", path, strerror(errno));
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return eopt_fail(EOPT_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
    fprintf(f, "{\"state\": \"%s\", \"step\": %lld, \"reason\": ", state, (long long)step);
    json_str(f, reason ? reason : "");
    fputs("}\n", f);
    EOPT_TRY(eopt_file_commit(f, tmp, path));
    return EOPT_OK;
}

eopt_status eopt_file_commit(FILE *f, const char *tmp, const char *path)
{
    int failed = fflush(f) != 0 || ferror(f);
    failed |= fclose(f) != 0;
    if (failed || rename(tmp, path) != 0) {
        eopt_status st = eopt_fail(EOPT_ERR_IO, "cannot write %s: %s", path, strerror(errno));
        unlink(tmp);
        return st;
    }
    return EOPT_OK;
}

/* ---- comparing configs ---- */

static void repr(const config_setting_t *s, char *buf, size_t size)
{
    int t = config_setting_type(s);
    switch (t) {
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64: snprintf(buf, size, "%lld", (long long)config_setting_get_int64(s)); return;
    case CONFIG_TYPE_FLOAT: { /* the shortest form that reads back the same */
        double v = config_setting_get_float(s);
        snprintf(buf, size, "%.15g", v);
        if (strtod(buf, NULL) != v)
            snprintf(buf, size, "%.17g", v);
        return;
    }
    case CONFIG_TYPE_BOOL: snprintf(buf, size, "%s", config_setting_get_bool(s) ? "true" : "false"); return;
    case CONFIG_TYPE_STRING: snprintf(buf, size, "\"%s\"", config_setting_get_string(s)); return;
    default: {
        size_t n = (size_t)snprintf(buf, size, "%c", t == CONFIG_TYPE_GROUP ? '{' : '[');
        for (int k = 0; k < config_setting_length(s) && n < size; k++) {
            const config_setting_t *e = config_setting_get_elem(s, k);
            if (t == CONFIG_TYPE_GROUP)
                n += (size_t)snprintf(buf + n, size - n, "%s%s = ", k ? ", " : "", config_setting_name(e));
            else
                n += (size_t)snprintf(buf + n, size - n, "%s", k ? ", " : "");
            if (n < size)
                repr(e, buf + n, size - n);
            n += strlen(buf + n);
        }
        if (n < size)
            snprintf(buf + n, size - n, "%c", t == CONFIG_TYPE_GROUP ? '}' : ']');
    }
    }
}

typedef struct {
    char *buf;
    size_t size;
    int count;
} diff_out;

static void add_diff(diff_out *d, const char *path, const config_setting_t *a, const config_setting_t *b)
{
    char va[512] = "absent", vb[512] = "absent";
    if (a)
        repr(a, va, sizeof va);
    if (b)
        repr(b, vb, sizeof vb);
    if (strcmp(va, vb) == 0)
        return;
    size_t n = strlen(d->buf);
    snprintf(d->buf + n, d->size - n, "%s%s: %s -> %s", d->count ? "; " : "", path, va, vb);
    d->count++;
}

/* A list element's name for a path: its `name` member, or [k]. */
static void elem_name(const config_setting_t *e, int k, char *buf, size_t size)
{
    const char *name;
    if (config_setting_type(e) == CONFIG_TYPE_GROUP && config_setting_lookup_string(e, "name", &name))
        snprintf(buf, size, "%s", name);
    else
        snprintf(buf, size, "[%d]", k);
}

static void diff_settings(diff_out *d, const char *path, const config_setting_t *a, const config_setting_t *b)
{
    char sub[EOPT_CFG_PATH_MAX], name[EOPT_NAME_MAX];
    int ta = a ? config_setting_type(a) : -1, tb = b ? config_setting_type(b) : -1;
    if (ta == CONFIG_TYPE_GROUP && tb == CONFIG_TYPE_GROUP) {
        for (int k = 0; k < config_setting_length(a); k++) {
            const config_setting_t *e = config_setting_get_elem(a, k);
            snprintf(sub, sizeof sub, "%s%s%s", path, path[0] ? "." : "", config_setting_name(e));
            diff_settings(d, sub, e, config_setting_get_member(b, config_setting_name(e)));
        }
        for (int k = 0; k < config_setting_length(b); k++) {
            const config_setting_t *e = config_setting_get_elem(b, k);
            snprintf(sub, sizeof sub, "%s%s%s", path, path[0] ? "." : "", config_setting_name(e));
            if (!config_setting_get_member(a, config_setting_name(e)))
                add_diff(d, sub, NULL, e);
        }
    } else if (ta == CONFIG_TYPE_LIST && tb == CONFIG_TYPE_LIST &&
               config_setting_length(a) == config_setting_length(b)) {
        for (int k = 0; k < config_setting_length(a); k++) {
            elem_name(config_setting_get_elem(a, k), k, name, sizeof name);
            snprintf(sub, sizeof sub, "%s.%s", path, name);
            diff_settings(d, sub, config_setting_get_elem(a, k), config_setting_get_elem(b, k));
        }
    } else
        add_diff(d, path, a, b);
}

int eopt_config_text_diff(const char *a, const char *b, char *buf, size_t size)
{
    config_t ca, cb;
    config_init(&ca);
    config_init(&cb);
    diff_out d = {buf, size, 0};
    buf[0] = 0;
    if (config_read_string(&ca, a) != CONFIG_TRUE || config_read_string(&cb, b) != CONFIG_TRUE)
        d.count = -1;
    else
        diff_settings(&d, "", config_root_setting(&ca), config_root_setting(&cb));
    config_destroy(&ca);
    config_destroy(&cb);
    return d.count;
}

/* ---- metrics ---- */

eopt_status eopt_metrics_truncate(const char *path, int64_t step)
{
    if (!path[0])
        return EOPT_OK;
    FILE *in = fopen(path, "r");
    if (!in)
        return EOPT_OK;
    char tmp[EOPT_CFG_PATH_MAX + 8], *line = NULL;
    size_t cap = 0;
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *out = fopen(tmp, "w");
    if (!out) {
        fclose(in);
        return eopt_fail(EOPT_ERR_IO, "cannot write %s: %s", tmp, strerror(errno));
    }
    int64_t dropped = 0;
    while (getline(&line, &cap, in) > 0) {
        const char *s = strstr(line, "\"step\":");
        if (s && strtoll(s + 7, NULL, 10) > step)
            dropped++;
        else if (line[strlen(line) - 1] == '\n') /* a line cut by a kill is dropped too */
            fputs(line, out);
    }
    free(line);
    fclose(in);
    EOPT_TRY(eopt_file_commit(out, tmp, path));
    if (dropped)
        eopt_log(EOPT_LOG_INFO, "%s: %lld records after step %lld dropped (the run continues from there)", path,
                 (long long)dropped, (long long)step);
    return EOPT_OK;
}
