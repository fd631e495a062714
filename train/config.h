/* Training configurations: libconfig files (configs/NAME.cfg) with the sections
 *
 *   model      = { kind = "gpt"; vocab_size; block_size; n_layer; n_head; n_embd; }
 *              | { kind = "mlp"; dims = [784, 256, 10]; }
 *   data       = { kind = "text"; path; val_fraction; }
 *              | { kind = "fashion-mnist"; path; normalize; }
 *              | { kind = "tokens"; format = "llmc" | "nanogpt"; train; val; shuffle; }
 *   run        = { steps; batch_size; seq_len; grad_accum; eval_interval; eval_batches; seed;
 *                  device (default: EOPT_DEVICE, else "cpu"); threads; on_nonfinite = "stop" | "skip"; max_nonfinite_skips (default 10:
 *                  "skip" stops the run with an error after that many non-finite steps in a row);
 *                  sample_tokens; sample_prompt; temperature; top_k; grad_clip;
 *                  diverge_loss (> 0: a loss above it ends the run as diverged, trainer.h); }
 *   optimizers = ( { name; class; args = {...}; schedule = {...}; ramps = { <key> = {...}; ... };
 *                    groups = ( { params = ["glob", ...]; exclude = [...]; ndim = 2 | [0, 1];
 *                                 schedule = {...}; ramps = {...}; <hyperparameter> = value; ... } ); } )
 *   checkpoint = { dir; interval; keep; }
 *   log        = { metrics; interval; progress = "auto" | "bar" | "lines" | "none";
 *                  diagnostics_interval; spike_window; spike_z; }
 *
 * Token data (train/data.h): `train` and `val` are each a glob of shard files or a list of them
 * (matches sorted, the patterns in order), e.g. llm.c's dev/data/fineweb.py output
 * "data/fineweb10B/fineweb_train_*.bin" with format "llmc" (the default), or nanoGPT's
 * "data/openwebtext/train.bin" with format "nanogpt". Training batches read the shards in order
 * (shuffle = true: a seeded permutation of each epoch's batches); evaluation reads the first
 * run.eval_batches batches of `val`. Every token must lie below model.vocab_size; the sample at
 * the end (run.sample_tokens) is only for byte-level text.
 *
 * `args` holds constructor arguments and default group hyperparameters (as torch's
 * constructor does); a group's own keys override them. A parameter belongs to the one group
 * whose params/exclude/ndim select it (none or two: an error).
 *
 * Schedules (framework/schedule.h): `schedule` moves every group's lr (a group's own replaces
 * it): { kind = "constant" | "warmup" | "cosine" | "linear" | "wsd"; warmup; total (default
 * run.steps); decay (wsd); floor; } or { kind = "piecewise"; points = ((step, factor), ...); }.
 * `ramps` move any hyperparameter the class declares schedulable (dion's softening, momentum,
 * weight_decay, beta2, ...): <key> = { kind = "constant"; value; } | { kind = "linear" |
 * "cosine"; from; to; start (default 0); end (default run.steps); } | { kind = "piecewise";
 * points = ((step, value), ...); }. An optimizer's ramps set every group; a group's own
 * replace them there; a constructor argument (softening) is ramped only at the optimizer. Every problem is reported as
 * "FILE:LINE: key.path: what is wrong" (unknown keys with the nearest valid one). Settings
 * given with --set PATH=VALUE replace or add to the file's before validation; a path is
 * libconfig's ("run.steps", "optimizers.[0].args.lr") and a list element may also be named by
 * its `name` ("optimizers.muon.args.lr"). Every key, its type, default and meaning:
 * docs/config.md (a test compares it with eopt_config_key_tables). */
#ifndef EOPT_CONFIG_H
#define EOPT_CONFIG_H

#include <stdint.h>
#include <stdio.h>

#include "../framework/value.h"
#include "../optimizers/optimizer.h"
#include "../models/model.h"
#include "../framework/params.h"
#include "../framework/schedule.h"
#include "data.h"

#define EOPT_CFG_PATH_MAX 512
#define EOPT_CFG_MAX_OPTS 8
#define EOPT_CFG_MAX_GROUPS EOPT_SCHEDULE_MAX_GROUPS
#define EOPT_CFG_MAX_SHARD_PATTERNS 16

typedef enum { EOPT_DATA_TEXT = 0, EOPT_DATA_FASHION_MNIST, EOPT_DATA_TOKENS } eopt_data_kind;
typedef enum { EOPT_NONFINITE_STOP = 0, EOPT_NONFINITE_SKIP } eopt_nonfinite_policy;
typedef enum { EOPT_PROGRESS_AUTO = 0, EOPT_PROGRESS_BAR, EOPT_PROGRESS_LINES, EOPT_PROGRESS_NONE } eopt_progress;

typedef struct {
    eopt_param_select sel; /* where: "file:line: optimizers.[0].groups.[1]" for messages */
    eopt_dict hp;          /* this group's overrides (typed as the class's defaults) */
} eopt_cfg_group;

typedef struct {
    char where[EOPT_CFG_PATH_MAX + 16];
    char name[EOPT_NAME_MAX];
    char cls[EOPT_NAME_MAX]; /* eopt class id */
    eopt_dict args;          /* constructor arguments given in `args` */
    eopt_dict hp;            /* group hyperparameters given in `args` (defaults of every group) */
    eopt_schedules sched;    /* lr schedules, each group's base lr, ramps */
    int ngroups;
    eopt_cfg_group groups[EOPT_CFG_MAX_GROUPS];
} eopt_cfg_optimizer;

typedef struct {
    eopt_data_kind kind;
    char path[EOPT_CFG_PATH_MAX]; /* text file, or the Fashion-MNIST directory ("" = default) */
    double val_fraction;
    int normalize;
    eopt_token_format format; /* tokens: */
    int shuffle;
    int nshards[2]; /* glob patterns of the train [0] and val [1] shards */
    char shards[2][EOPT_CFG_MAX_SHARD_PATTERNS][EOPT_CFG_PATH_MAX];
} eopt_data_config;

typedef struct {
    char path[EOPT_CFG_PATH_MAX]; /* the file read ("<string>" for text) */
    eopt_model_config model;
    eopt_data_config data;
    struct {
        int64_t steps, eval_interval;
        int batch_size, seq_len, grad_accum, eval_batches, threads;
        uint64_t seed;
        char device[16];
        eopt_nonfinite_policy on_nonfinite;
        int max_nonfinite_skips; /* "skip": more consecutive non-finite steps than this stop the run */
        int sample_tokens, top_k;
        double temperature;
        double grad_clip; /* > 0: gradients scaled to this global norm when above it (0: off) */
        double diverge_loss; /* > 0: a loss above it (or a non-finite one under "stop") ends the run as diverged */
        char sample_prompt[256];
    } run;
    int nopt;
    eopt_cfg_optimizer opts[EOPT_CFG_MAX_OPTS];
    struct {
        char dir[EOPT_CFG_PATH_MAX];
        int64_t interval; /* 0: only at the end and on a signal */
        int keep;         /* 0: keep all */
    } checkpoint;
    struct {
        char metrics[EOPT_CFG_PATH_MAX];
        int64_t interval;
        eopt_progress progress;
        int64_t diagnostics_interval; /* a diagnostics line every this many steps (0: off) */
        int spike_window;             /* losses the spike detector's mean and std run over */
        double spike_z;               /* z-score above which a loss is a spike (0: no detector) */
    } log;
} eopt_config;

/* Reads and validates `path` after applying the `nset` overrides "PATH=VALUE". */
eopt_status eopt_config_load(const char *path, int nset, const char *const *sets, eopt_config *cfg);
/* The same from text (tests); `name` stands for the file name in messages and defaults. */
eopt_status eopt_config_parse(const char *text, const char *name, int nset, const char *const *sets,
                              eopt_config *cfg);

/* The resolved configuration (every setting after the overrides, defaults included) as a
 * libconfig file that eopt_config_load reads back to the same settings; _text returns it as a
 * malloc'd string (NULL when out of memory). */
void eopt_config_write(const eopt_config *cfg, FILE *f);
char *eopt_config_text(const eopt_config *cfg);

/* A stable hash of a set of --set overrides (their order does not matter): the default run
 * folder is runs/<config name>-<hash as 8 hex digits> when there are any. */
uint32_t eopt_config_overrides_hash(int nset, const char *const *sets);

/* Assigns each parameter to one (optimizer, group): opt_of[i], group_of[i] (eopt_params_assign
 * over every group of every optimizer, in order). */
eopt_status eopt_config_assign(const eopt_config *cfg, const eopt_param *params, int nparams, int *opt_of,
                               int *group_of);

/* The keys the parser accepts, section by section: the tables it checks a file against, ending
 * with section NULL. Sections are named as docs/config.md names them: "" (the top level), "model",
 * "data", "run", "optimizers[]", "optimizers[].groups[]", "schedule" (every schedule = {...}),
 * "ramps.KEY" (every ramp), "checkpoint", "log"; a section may have several tables (one per
 * kind). An optimizer's args and a group's hyperparameters are its class's (`eopt describe`). */
typedef struct {
    const char *section;
    const char *const *keys; /* NULL-terminated */
} eopt_config_keys;
const eopt_config_keys *eopt_config_key_tables(void);

/* Levenshtein distance, and the nearest of `n` words to `word` within a third of its length (at
 * least 2 edits) or NULL: the "did you mean" of config keys, commands and options. */
int eopt_edit_distance(const char *a, const char *b);
const char *eopt_nearest(const char *word, const char *const *words, int n);

#endif
