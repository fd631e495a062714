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

typedef struct {
    const char *id;     /* unique name in eopt (configs, API): "Muon", "dion.Muon", "SOAP", ... */
    const char *name;   /* the checkpoint's `class` attribute: "Muon", "SOAP", ... (not unique:
                         * NVIDIA's and dion's Muon are both "Muon") */
    const char *source; /* the checkpoint's `source` attribute written by eopt; a file whose
                         * `source` contains `source_match` picks this class among equal names */
    const char *source_match;
    /* Constructor-argument defaults (instance-level, not in param groups) and param-group
     * defaults, both in the upstream order. */
    void (*defaults)(eopt_dict *args, eopt_dict *group);
    /* Validates args and groups (messages name the argument and value, as upstream), builds
     * `impl`, and creates eager state (dion's classes). Called once by eopt_optimizer_create. */
    eopt_status (*setup)(eopt_optimizer *opt);
    /* Creates the zero-initialised state of parameter i (shapes and dtypes as upstream). The
     * checkpoint loader calls it too, then fills the tensors from the file. */
    eopt_status (*init_state)(eopt_optimizer *opt, int i);
    /* Upstream's step(): every group, every parameter that has a gradient. */
    eopt_status (*step)(eopt_optimizer *opt);
    void (*teardown)(eopt_optimizer *opt);
    /* State keys a newer upstream may add and this class ignores (SOAP's eigvals_L/R). */
    const char *const *optional_state_keys;
    /* Float hyperparameters a schedule may move between steps (group keys, or constructor
     * arguments such as dion's softening), NULL-terminated; the class reads them at every step. */
    const char *const *schedulable;
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
    void *impl;
    eopt_workspace ws;
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
eopt_status eopt_optimizer_step(eopt_optimizer *opt);

/* Whether the class declares `key` schedulable; its schedulable keys as "lr, momentum, ...". */
int eopt_optimizer_schedulable(const eopt_optimizer_class *cls, const char *key);
const char *eopt_optimizer_schedulable_names(const eopt_optimizer_class *cls, char *buf, size_t size);
/* Sets a schedulable hyperparameter for the coming steps: the group key `key` of group g (g < 0:
 * every group), or the constructor argument `key` (one value for all groups; g is ignored).
 * The value is what torch's state_dict would then hold. A key the class does not declare
 * schedulable is refused with the allowed ones named; the class checks the value's range when
 * it steps. */
eopt_status eopt_optimizer_set_hparam(eopt_optimizer *opt, int g, const char *key, double value);

/* State helpers for the classes. */
eopt_status eopt_state_add(eopt_optimizer *opt, int i, const char *key, eopt_dtype dt, int ndim, const int64_t *shape,
                           int on_host);
eopt_tensor *eopt_state_get(eopt_optimizer *opt, int i, const char *key);
void eopt_state_clear(eopt_state *s);
/* The group that owns state index i. */
int eopt_optimizer_group_of(const eopt_optimizer *opt, int i);

#endif
