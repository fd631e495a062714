/* Thin HDF5 helpers for the checkpoint layer: attributes as eopt_values (with the type rules of
 * ../shared/spec/checkpoint.md), tensors as datasets, string lists, hard links and sorted
 * child listings. `where` arguments name the object in messages ("run.h5:/optimizers/0"). */
#ifndef EOPT_H5_H
#define EOPT_H5_H

#include <hdf5.h>

#include "../framework/tensor.h"
#include "../framework/value.h"

/* Turns off HDF5's own error printing: failures are reported through eopt_fail. */
void eopt_h5_quiet(void);
/* Opens an existing file read-only (quietly); < 0 if it is missing, unreadable or not HDF5. */
hid_t eopt_h5_open_read(const char *path);

/* Writes a value: BOOL -> int8, INT -> int64, FLOAT -> float64, STR -> variable-length UTF-8,
 * FLOATS -> float64 array; NONE writes nothing (Python's None is an absent attribute). */
eopt_status eopt_h5_attr_write(hid_t obj, const char *name, const eopt_value *v);
eopt_status eopt_h5_attr_write_str(hid_t obj, const char *name, const char *s);
eopt_status eopt_h5_attr_write_i64(hid_t obj, const char *name, int64_t v);

int eopt_h5_attr_exists(hid_t obj, const char *name);
/* Reads an attribute: strings (variable or fixed length) -> STR; int8 0/1 and h5py's boolean
 * enum -> BOOL; other integers (any width) -> INT; floats (32 or 64 bit) -> FLOAT; 1-D numeric
 * arrays of up to EOPT_FLOATS_MAX entries -> FLOATS. Anything else is an error. */
eopt_status eopt_h5_attr_read(hid_t obj, const char *name, const char *where, eopt_value *v);
/* A string attribute of any length that fits in `size` bytes (class, source, producer). */
eopt_status eopt_h5_attr_read_str(hid_t obj, const char *name, const char *where, char *buf, size_t size);
/* Every attribute of obj except those in `skip` (NULL-terminated, may be NULL), in name order. */
eopt_status eopt_h5_attrs_read(hid_t obj, const char *where, const char *const *skip, eopt_dict *d);
/* Every attribute of a dict, in the dict's order. */
eopt_status eopt_h5_attrs_write(hid_t obj, const eopt_dict *d);

/* Whether a tensor's data is host memory (no backend, or the CPU backend's): HDF5 reads and
 * writes it in place, without a staging copy. */
int eopt_h5_host_memory(const eopt_tensor *t);
/* A tensor (any placement; float32, int32 or int64) as a dataset of its shape; 0-d -> scalar. */
eopt_status eopt_h5_dataset_write(hid_t loc, const char *name, const eopt_tensor *t);
/* The dataset of t's dtype and shape (t->data unused: another process holds it), its space
 * allocated in the file now and never filled, so that the other process writes its bytes later
 * without changing any metadata (eopt_h5_dataset_fill). */
eopt_status eopt_h5_dataset_reserve(hid_t loc, const char *name, const eopt_tensor *t);
/* Writes t's data into the existing dataset at `path` (relative to loc) of its size: the bytes
 * only, no metadata changes (a data-parallel save's second phase, through MPI-IO). */
eopt_status eopt_h5_dataset_fill(hid_t loc, const char *path, const eopt_tensor *t);
/* Reads a numeric dataset into a new host tensor: floats -> float32, 64-bit integers -> int64,
 * other integers -> int32. */
eopt_status eopt_h5_dataset_read(hid_t loc, const char *name, const char *where, eopt_tensor *out);
/* The same, converted by HDF5 to dt (float32, int32 or int64) whatever the stored type. */
eopt_status eopt_h5_dataset_read_as(hid_t loc, const char *name, const char *where, eopt_dtype dt, eopt_tensor *out);

/* Shape and natural dtype of a numeric dataset, as eopt_h5_dataset_read gives them, without its
 * data (out->data is NULL). */
eopt_status eopt_h5_dataset_describe(hid_t loc, const char *name, const char *where, eopt_tensor *out);
/* Reads a numeric dataset straight into t's host memory (eopt_h5_host_memory), converted by HDF5
 * to t's dtype; its shape must be t's. */
eopt_status eopt_h5_dataset_read_into(hid_t loc, const char *name, const char *where, eopt_tensor *t);

/* A 1-D dataset of variable-length UTF-8 strings. */
eopt_status eopt_h5_strings_write(hid_t loc, const char *name, int n, const char *const *s);
/* Reads a 1-D string dataset (variable or fixed length); each string must fit in `width`
 * bytes. *out is one malloc'ed block of n * width chars. */
eopt_status eopt_h5_strings_read(hid_t loc, const char *name, const char *where, int width, int *n, char **out);

/* `alias` becomes a second (hard) link to the object at `target` (paths relative to loc). */
eopt_status eopt_h5_link(hid_t loc, const char *alias, const char *target);

typedef enum { EOPT_H5_NONE = 0, EOPT_H5_GROUP, EOPT_H5_DATASET, EOPT_H5_OTHER } eopt_h5_kind;
/* What `name` (relative to loc) is; EOPT_H5_NONE if it does not exist. addr (optional) gets the
 * object's address in the file: two names with one address are hard links to one object. */
eopt_h5_kind eopt_h5_kind_of(hid_t loc, const char *name, uint64_t *addr);

/* The names of a group's members. numeric = 1: names must be 0, 1, ... (decimal, no gaps
 * needed) and come back in numeric order; otherwise in name order. Free with eopt_h5_names_free. */
eopt_status eopt_h5_children(hid_t group, const char *where, int numeric, int *n, char ***names);
void eopt_h5_names_free(int n, char **names);
/* Parses a decimal index name ("12"); -1 if it is not one. */
long eopt_h5_index_name(const char *s);

/* How attribute `attr` of the object at `name` (attr NULL: the dataset at `name`) is stored, for
 * checks that hold a file to the exact types of the spec: 'f' float, 'i' integer, 0 anything
 * else or absent; *bytes is the stored width. */
char eopt_h5_stored_type(hid_t loc, const char *name, const char *attr, size_t *bytes);

#endif
