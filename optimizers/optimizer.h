/* The optimizer interface. An optimizer is a class (a table of functions) plus flat data
 * that mirror torch's state_dict: constructor arguments, param groups (hyperparameter dicts
 * in torch's key order plus the state indices they own) and per-parameter named state
 * tensors. The checkpoint layer reads and writes exactly these, by name, without knowing any
 * class; an optimizer never touches a file. */
#ifndef EOPT_OPTIMIZER_H
#define EOPT_OPTIMIZER_H

#include "../framework/backend.h"
#include "../framework/params.h"
#include "../framework/tensor.h"
#include "../framework/value.h"
#include "hparams.h"

#define EOPT_STATE_MAX 8

/* torch's state[i]: named tensors in insertion order. Float tensors live on the optimizer's
 * backend; 0-d counters (SOAP's int64 `step`, AdamW's float32 `step`) live on the host
 * (be == NULL) so that reading them never crosses the bus. n == 0: no state yet. */
typedef struct {
    int n;
    char key[EOPT_STATE_MAX][24];
    eopt_tensor t[EOPT_STATE_MAX];
} eopt_state;

typedef struct {
    eopt_dict hp; /* the group's keys except "params", in torch's order */
    int n;
    int *index;   /* the state indices of this group's parameters */
} eopt_group;

typedef struct eopt_optimizer eopt_optimizer;

/* Diagnostics of one parameter (train/diagnostics.c reads them): named scalars an optimizer
 * reports on a diagnostic step (NS residual, basis drift, factor conditioning, ...), and the
 * count of numerical fallbacks its updates took since the optimizer was built. */
#define EOPT_DIAG_MAX 8
typedef struct {
    int n;
    char key[EOPT_DIAG_MAX][16];
    double value[EOPT_DIAG_MAX];
    int64_t fallbacks;
} eopt_diag_values;

/* How one update's work grows with its parameter's shape (m x n, k = min(m, n)), for balancing
 * matrices over the ranks of a data-parallel run (eopt_optimizer_update_cost). */
typedef enum {
    EOPT_COST_ELEMENTWISE = 0, /* AdamW: ~ m n */
    EOPT_COST_ORTHOGONALIZE,   /* Newton-Schulz: ~ m n k per iteration */
    EOPT_COST_EIGENBASIS,      /* SOAP, MOSO: rotations ~ m n (m + n), eigenbases ~ m^3 + n^3 */
} eopt_cost_model;

typedef struct {
    const char *id;     /* unique name in eopt (configs, API): "Muon", "dion.Muon", "SOAP", ... */
    const char *name;   /* the checkpoint's `class` attribute: "Muon", "SOAP", ... (not unique:
                         * NVIDIA's and dion's Muon are both "Muon") */
    const char *source; /* the checkpoint's `source` attribute written by eopt; a file whose
                         * `source` contains `source_match` picks this class among equal names */
    const char *source_match;
    /* Constructor arguments (instance-level, not in param groups) and param-group keys, in
     * upstream's key order: defaults, typed reads and their messages (hparams.h). */
    const eopt_hparam *arg_keys, *group_keys;
    /* opt->impl: the constructor arguments, read from arg_keys into a zeroed struct of this
     * size once at construction (setup completes it); groups are read at every step. */
    size_t impl_size;
    size_t hp_size; /* one group's hyperparameters as read_group fills them */
    /* Optional: validates what the tables cannot (messages name the argument and value, as
     * upstream) and completes `impl`; dion's classes create their eager state. Called once by
     * eopt_optimizer_create, before every group is read through read_group. */
    eopt_status (*setup)(eopt_optimizer *opt);
    /* Creates the zero-initialised state of parameter i (shapes and dtypes as upstream). The
     * checkpoint loader calls it too, then fills the tensors from the file. */
    eopt_status (*init_state)(eopt_optimizer *opt, int i);
    /* ---- the step hooks; the loop (eopt_optimizer_step) is upstream's step(): every group,
     * every parameter that has a gradient ---- */
    /* Group g's hyperparameters into `hp` (hp_size bytes, zeroed), with upstream's checks. */
    eopt_status (*read_group)(const eopt_optimizer *opt, int g, void *hp);
    /* Optional: what upstream rejects about parameter i of a group (with or without gradient);
     * the loop then checks that a gradient matches its parameter's shape and dtype. */
    eopt_status (*check_param)(const eopt_optimizer *opt, const void *hp, int i);
    /* Optional: the lazy state of parameter i at its first step, filled as upstream (Muown's
     * row norms); NULL: init_state. */
    eopt_status (*start_state)(eopt_optimizer *opt, int i);
    /* Optional: what a step does to a group before its parameters (dion's step counter). */
    void (*begin_group)(eopt_optimizer *opt, int g, void *hp);
    /* One parameter's update (it has a gradient and state). Its temporaries come from ws, reset
     * before each update. Updates of different parameters may run at once on different threads
     * (each with its own ws): an update writes only parameter i, its gradient and its state. */
    eopt_status (*update)(eopt_optimizer *opt, eopt_workspace *ws, const void *hp, int i);
    /* Optional (NULL: update takes no workspace): an upper bound of the workspace update(i)
     * takes, from shapes and configuration alone (sums of eopt_ws_size), written next to the
     * update it bounds. The loop reserves the largest before the first update, so that no
     * update allocates; opt->ws_overruns counts updates that took more (tests check it is 0). */
    size_t (*workspace_bytes)(const eopt_optimizer *opt, const void *hp, int i);
    /* Optional (NULL: no solver): the largest n of the backend's syevd(n) / qr(n, n) that
     * update(i) calls; the loop reserves the solver workspace of the largest (reserve_solver). */
    int (*solver_size)(const eopt_optimizer *opt, int i);
    /* Optional: on a diagnostic step, after the update, what parameter i's state shows
     * (eopt_diag_note: SOAP's basis drift and factor conditions). May use opt->ws. */
    eopt_status (*diagnostics)(eopt_optimizer *opt, int i);
    /* State keys a newer upstream may add and this class ignores (SOAP's eigvals_L/R). */
    const char *const *optional_state_keys;
    /* Float hyperparameters a schedule may move between steps (group keys, or constructor
     * arguments such as dion's softening), NULL-terminated; the class reads them at every step. */
    const char *const *schedulable;
    eopt_cost_model cost; /* how an update's flops grow with the shape (0: element-wise) */
} eopt_optimizer_class;

struct eopt_optimizer {
    const eopt_optimizer_class *cls;
    eopt_backend *be;
    eopt_dict args;
    int ngroups;
    eopt_group *groups;
    int nparams;
    eopt_param *params; /* in state-index order (groups in order) */
    eopt_state *state;  /* [nparams] */
    void *impl; /* the class's constructor arguments, read (impl_size bytes) */
    eopt_workspace ws; /* the updates' temporaries (the first thread's of a parallel step) */
    int nthread_ws;
    eopt_workspace *thread_ws; /* [nthread_ws]: the other threads' of a parallel step */
    int ws_overruns; /* updates that took more workspace than workspace_bytes declared (a bug) */
    /* Diagnostics: with diag_on set (eopt_optimizer_diag_begin), updates record named scalars
     * into diag[i] (eopt_diag_note); off, they cost nothing. diag: [nparams]. */
    int diag_on;
    eopt_diag_values *diag;
};

/* The class table: every optimizer eopt knows, looked up by id ("dion.Muon"). */
const eopt_optimizer_class *eopt_optimizer_find(const char *id);
/* The class a checkpoint names: `class` attribute plus optional `source` (NULL if absent).
 * Among classes of that name, the one whose source_match occurs in `source` wins; without a
 * match, the first without a source_match (NVIDIA's Muon for "Muon"), else the first of that
 * name. NULL if the name is unknown. */
const eopt_optimizer_class *eopt_optimizer_find_checkpoint(const char *name, const char *source);
/* A NULL-terminated list of every class (for messages and `eopt inspect`). */
const eopt_optimizer_class *const *eopt_optimizer_classes(void);

/* Builds an optimizer. `args`: constructor arguments (missing ones take the class default;
 * unknown ones are an error). Group g gets `group_hp[g]` (user keys first, then missing
 * defaults appended) and the next `group_size[g]` entries of `params` (state indices follow).
 * Parameters are referenced, not copied. On error nothing is left allocated. */
eopt_status eopt_optimizer_create(const char *class_name, eopt_backend *be, const eopt_dict *args, int ngroups,
                                  const eopt_dict *group_hp, const int *group_size, const eopt_param *params,
                                  int nparams, eopt_optimizer **out);
void eopt_optimizer_free(eopt_optimizer *opt);
/* One step. On the CPU, a group with at least as many parameters with a gradient as the
 * backend has threads updates them concurrently, one parameter per thread with single-threaded
 * BLAS inside (small matrices gain most: a 256x256 product barely uses two threads); otherwise
 * one after the other, each with multi-threaded BLAS. Both orders give the same bits. Everything
 * upstream would reject (a group's hyperparameters, a parameter, a
 * gradient's shape or dtype) is checked first, the memory of every update reserved (workspace,
 * solver workspace) and missing state created for every parameter with a gradient (undone if
 * that fails): a failure there, allocation failures included, leaves every parameter and state
 * tensor as it was. Only a numeric failure inside an update (an eigensolver that does not
 * converge, a device error) can stop a step after some parameters were updated. */
eopt_status eopt_optimizer_step(eopt_optimizer *opt);
/* The class's defaults: constructor arguments and param-group keys, in upstream's order. */
eopt_status eopt_optimizer_defaults(const eopt_optimizer_class *cls, eopt_dict *args, eopt_dict *group);

/* Whether the class declares `key` schedulable; its schedulable keys as "lr, momentum, ...". */
int eopt_optimizer_schedulable(const eopt_optimizer_class *cls, const char *key);
const char *eopt_optimizer_schedulable_names(const eopt_optimizer_class *cls, char *buf, size_t size);
/* Sets a schedulable hyperparameter for the coming steps: the group key `key` of group g (g < 0:
 * every group), or the constructor argument `key` (one value for all groups; g is ignored).
 * The value is what torch's state_dict would then hold. A key the class does not declare
 * schedulable is refused with the allowed ones named; the class checks the value's range when
 * it steps. */
eopt_status eopt_optimizer_set_hparam(eopt_optimizer *opt, int g, const char *key, double value);

/* Diagnostics around one step: begin clears every parameter's values and turns recording on;
 * end runs the classes' diagnostics hooks on the parameters with state and turns it off. */
void eopt_optimizer_diag_begin(eopt_optimizer *opt);
eopt_status eopt_optimizer_diag_end(eopt_optimizer *opt);
/* Records (or replaces) the scalar `key` of parameter i; a key past EOPT_DIAG_MAX is dropped. */
void eopt_diag_note(eopt_optimizer *opt, int i, const char *key, double value);
/* On a diagnostic step: "ns_residual" of parameter i from its last orthogonalisation O (m x n),
 * ||O O^T - I||_F / sqrt(min(m, n)) (eopt_ns_residual; workspace from ws, the update's own, within
 * eopt_ns_workspace_bytes). Does nothing when recording is off. */
eopt_status eopt_diag_ns_residual(eopt_optimizer *opt, eopt_workspace *ws, int i, int m, int n, const float *O);

/* The estimated flops of one update of parameter i from its shape and the class's cost model
 * (a 1-D parameter always costs as element-wise): what the data-parallel trainer balances. */
double eopt_optimizer_update_cost(const eopt_optimizer *opt, int i);

/* State helpers for the classes. */
eopt_status eopt_state_add(eopt_optimizer *opt, int i, const char *key, eopt_dtype dt, int ndim, const int64_t *shape,
                           int on_host);
eopt_tensor *eopt_state_get(eopt_optimizer *opt, int i, const char *key);
void eopt_state_clear(eopt_state *s);
/* The group that owns state index i. */
int eopt_optimizer_group_of(const eopt_optimizer *opt, int i);

#endif
