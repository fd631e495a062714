/* eopt checkpoints: one HDF5 file per training state, laid out as ../shared/spec/checkpoint.md
 * (a contract shared with PyTorch). This layer knows no optimizer: it writes and reads the
 * class name, constructor arguments, param groups and named state tensors that
 * optimizers/optimizer.h exposes, and builds optimizers through the class registry.
 *
 * Writing is atomic (<path>.tmp, flush, fsync file and directory, rename). Reading validates
 * the whole file into host memory first, or (defer_tensors) everything but the tensors' data,
 * which is then read once straight into the optimizer state being built and a staging copy of
 * the model; applying it to a model or optimizer either succeeds completely or changes nothing. */
#ifndef EOPT_CHECKPOINT_H
#define EOPT_CHECKPOINT_H

#include "../framework/comm.h"
#include "../framework/tensor.h"
#include "../framework/value.h"
#include "../optimizers/optimizer.h"

#define EOPT_CKPT_FORMAT "eopt-checkpoint"
#define EOPT_CKPT_VERSION 1

/* A second name for a stored tensor (GPT's lm_head.weight -> transformer.wte.weight), written
 * as an HDF5 hard link. */
typedef struct {
    const char *alias;
    const char *target;
} eopt_ckpt_alias;

typedef struct {
    const char *name;          /* "/optimizers/<name>": "muon", "adamw", "0" */
    const eopt_optimizer *opt;
    const eopt_dict *schedule; /* optional: attrs of /schedules/<name> */
    const eopt_state *state;   /* optional: [opt->nparams] the state to write instead of opt->state;
                                * in a data-parallel save, entries whose data is NULL are written by
                                * the rank that holds them */
} eopt_ckpt_optimizer;

typedef struct {
    const char *name;
    const eopt_tensor *t; /* any placement */
} eopt_ckpt_dataset;

typedef struct {
    int64_t step;
    const char *producer;
    int nparams;
    const eopt_param *params; /* /model/<name> = params[i].w */
    int naliases;
    const eopt_ckpt_alias *aliases;
    int nopt;
    const eopt_ckpt_optimizer *opts;
    const eopt_dict *trainer;  /* optional: attrs of /trainer */
    int ntrainer_data;
    const eopt_ckpt_dataset *trainer_data; /* optional: datasets under /trainer */
    const char *config; /* optional: root attribute `config`, the resolved config of the run that wrote it */
    eopt_comm *comm;    /* optional: a data-parallel save by every rank of comm (below); NULL: this process */
} eopt_ckpt_write;

#define EOPT_CKPT_CONFIG_MAX (1 << 20) /* the longest `config` a reader takes */

/* A data-parallel save (w->comm with more than one rank, `make MPI=1`) is called by every rank
 * with the same description, except that each holds the data of its own optimizer state only
 * (the others' entries have their key, dtype and shape, data NULL). Rank 0 writes the file as one
 * process would, reserving the space of the state it does not hold; then every rank opens it
 * through MPI-IO (parallel HDF5) and writes the bytes of its own state in place, in parallel;
 * rank 0 syncs and renames. No rank ever holds another's state, and every rank returns the same
 * status (the failing rank's message). */
eopt_status eopt_checkpoint_save(const char *path, const eopt_ckpt_write *w);

typedef struct eopt_ckpt eopt_ckpt; /* a validated checkpoint held in host memory */

/* Options for opening: allow_nonfinite = 1 accepts NaN/Inf in model and state tensors;
 * trusted = 1 skips the guard (guard.h) for a file the caller vouches for. Without it, every
 * file is first checked in a child process, except one this process saved and nobody changed
 * since. A damaged file fails with EOPT_ERR_FORMAT "damaged checkpoint '<path>': ...", an
 * interrupted check (eopt_interrupt) with EOPT_ERR_INTERRUPTED.
 * defer_tensors = 1 (a resume): the data of /model and of the optimizers' state stay in the file,
 * which stays open, and are read once, straight into their destination, by load_model,
 * read_tensor, create_optimizer, load_optimizer and apply, which check them finite there (still
 * before anything changes). Until then eopt_ckpt_tensor and the state entries give shapes and
 * dtypes with data NULL. Without it, open reads and checks every tensor into host memory. */
typedef struct {
    int allow_nonfinite;
    int trusted;
    int defer_tensors;
} eopt_ckpt_options;

eopt_status eopt_checkpoint_open(const char *path, const eopt_ckpt_options *opt, eopt_ckpt **out);
void eopt_checkpoint_close(eopt_ckpt *ck);
const char *eopt_ckpt_path(const eopt_ckpt *ck);
int64_t eopt_ckpt_step(const eopt_ckpt *ck);

/* Model tensors: names, shapes and host data (float32; NULL with defer_tensors). */
int eopt_ckpt_num_tensors(const eopt_ckpt *ck);
const char *eopt_ckpt_tensor_name(const eopt_ckpt *ck, int k);
const eopt_tensor *eopt_ckpt_tensor(const eopt_ckpt *ck, const char *name); /* NULL if absent */
/* Copies /model into params (matched by name; every param must be present with its shape;
 * aliases of the file are accepted). All checked before anything is written. */
eopt_status eopt_ckpt_load_model(const eopt_ckpt *ck, eopt_param *params, int nparams);
/* Puts /model/<name> (aliases accepted) into dst, which must have its shape and dtype (any
 * placement): a copy, or with defer_tensors a read from the file, checked finite. */
eopt_status eopt_ckpt_read_tensor(const eopt_ckpt *ck, const char *name, eopt_tensor *dst);

int eopt_ckpt_num_optimizers(const eopt_ckpt *ck);
const char *eopt_ckpt_optimizer_name(const eopt_ckpt *ck, int k);
/* Builds the optimizer stored under `name` from its class, arguments and groups, binding its
 * param_names to `params` by name, and loads its state (an empty state starts lazily). */
eopt_status eopt_ckpt_create_optimizer(const eopt_ckpt *ck, const char *name, eopt_backend *be,
                                       const eopt_param *params, int nparams, eopt_optimizer **out);
/* Loads into an optimizer the caller built: class, arguments, group structure and parameter
 * names must agree (messages name what differs); group hyperparameters, the arguments the class
 * declares schedulable, and state come from the file. Nothing changes on error. */
eopt_status eopt_ckpt_load_optimizer(const eopt_ckpt *ck, const char *name, eopt_optimizer *opt);

/* Resumes a running model and its optimizers from an open checkpoint, all or nothing: the
 * model must match the file exactly (every parameter present with its shape, no stored tensor
 * the model lacks, as torch's strict load_state_dict), and every optimizer names[k] is rebuilt
 * from the file, bound to its running parameters and checked against opts[k] (class,
 * arguments, groups, parameter names) before the model or any optimizer changes. */
eopt_status eopt_checkpoint_apply(const eopt_ckpt *ck, eopt_param *params, int nparams, int nopt,
                                  const char *const *names, eopt_optimizer *const *opts);
/* The same on one rank of a data-parallel run: keep[k][i] == 0 marks parameter i of opts[k] as
 * another rank's. Its state in the file is checked exactly as the rest (keys, shapes, dtypes,
 * finite values; read one tensor at a time into a scratch copy) and then not kept, so that the
 * rank never holds more than its own share. When everything is read and checked, and before
 * anything changes, verdict(user, status) is called once, on every path (the ranks' agreement,
 * eopt_comm_agree): what it returns decides whether the load goes on. keep, verdict NULL:
 * eopt_checkpoint_apply. */
typedef eopt_status (*eopt_ckpt_verdict)(void *user, eopt_status st);
eopt_status eopt_checkpoint_apply_shard(const eopt_ckpt *ck, eopt_param *params, int nparams, int nopt,
                                        const char *const *names, eopt_optimizer *const *opts,
                                        const unsigned char *const *keep, eopt_ckpt_verdict verdict, void *user);

const eopt_dict *eopt_ckpt_schedule(const eopt_ckpt *ck, const char *name); /* NULL if absent */
const eopt_dict *eopt_ckpt_trainer(const eopt_ckpt *ck);                   /* NULL if absent */
const eopt_tensor *eopt_ckpt_trainer_data(const eopt_ckpt *ck, const char *name);

/* Additions for `eopt inspect`, replay and tests: read-only views of what the file holds. */
const char *eopt_ckpt_producer(const eopt_ckpt *ck); /* "" if absent */
const char *eopt_ckpt_config(const eopt_ckpt *ck);   /* the root `config` attribute; "" if absent */
/* Second names of stored tensors (hard links in /model). */
int eopt_ckpt_num_aliases(const eopt_ckpt *ck);
eopt_ckpt_alias eopt_ckpt_alias_at(const eopt_ckpt *ck, int k);
int eopt_ckpt_num_schedules(const eopt_ckpt *ck);
const char *eopt_ckpt_schedule_name(const eopt_ckpt *ck, int k);
int eopt_ckpt_num_trainer_data(const eopt_ckpt *ck);
const char *eopt_ckpt_trainer_data_name(const eopt_ckpt *ck, int k);

typedef struct {
    char key[24];
    eopt_tensor t; /* host */
} eopt_ckpt_entry;

/* One /optimizers/<name> group as stored (state indices are the file's). */
typedef struct {
    char name[EOPT_NAME_MAX];
    char cls[EOPT_NAME_MAX];
    char source[256];        /* "" if absent */
    eopt_dict args;          /* every attribute except class and source */
    int ngroups;
    eopt_dict *group_hp;     /* [ngroups] */
    int *group_n;            /* [ngroups] */
    int64_t **group_index;   /* [ngroups][group_n[g]] */
    int nparams;
    char (*param_names)[EOPT_NAME_MAX];
    int *nstate;             /* [nparams]; 0: no state/<i> */
    eopt_ckpt_entry **state; /* [nparams][nstate[i]] */
} eopt_ckpt_opt_info;

const eopt_ckpt_opt_info *eopt_ckpt_optimizer_info(const eopt_ckpt *ck, const char *name); /* NULL if absent */

/* Problems a check finds, handed over one by one (each message names the file and HDF5 path). */
typedef struct {
    void (*problem)(void *user, const char *msg); /* may be NULL: only count */
    void *user;
    int count;
} eopt_ckpt_report;

/* Holds a checkpoint (open it with allow_nonfinite = 1 so that the check sees them) to the letter
 * of ../shared/spec/checkpoint.md: finite tensors, the stored types the spec fixes (the reader
 * accepts more), every param_names entry in /model and owned by one optimizer, and every
 * optimizer buildable from its class, arguments and state. Reports every problem, not just the
 * first; returns their number (report->count). */
int eopt_ckpt_check_layout(const eopt_ckpt *ck, eopt_ckpt_report *report);

#endif
