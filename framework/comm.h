/* The processes of a run and what they exchange. With `make MPI=1` a run started by mpirun or
 * srun is one process per rank of MPI_COMM_WORLD: host data goes through MPI collectives, and
 * device tensors of the CUDA backend through NCCL (`make CUDA=1 MPI=1`; one GPU per process).
 * Without MPI (comm_single.c) there is one process, and every operation is what it means for one
 * rank. Nothing here is a transport of eopt's own.
 *
 * Every function is collective (all ranks call it, in the same order) except send and recv.
 * Transport failures are EOPT_ERR_IO naming the call; a rank that dies makes mpirun end the job. */
#ifndef EOPT_COMM_H
#define EOPT_COMM_H

#include <stddef.h>

#include "backend.h"
#include "error.h"
#include "tensor.h"

typedef struct eopt_comm eopt_comm;

/* The processes this one was started with: MPI_COMM_WORLD (MPI initialised on first use,
 * finalised at exit), or a world of one. One instance per process; never freed. */
eopt_status eopt_comm_world(eopt_comm **out);
int eopt_comm_rank(const eopt_comm *c);
int eopt_comm_size(const eopt_comm *c);
/* "MPI (Open MPI v4.1.4), 3 processes" or "one process (built without MPI)". */
void eopt_comm_describe(const eopt_comm *c, char *buf, size_t size);

/* The verdict of all ranks: each passes its own status (a failure's message in eopt_last_error);
 * every rank returns EOPT_OK if all succeeded, else the status and message of the lowest failing
 * rank, prefixed "rank r of N: " when not every rank failed. So a failure on one rank reaches all
 * of them as the same clear error, and no rank goes on into a collective the others left. */
eopt_status eopt_comm_agree(eopt_comm *c, eopt_status st);

typedef enum { EOPT_COMM_SUM = 0, EOPT_COMM_MAX } eopt_comm_op;

/* x[0..n) over all ranks, in place (host doubles). */
eopt_status eopt_comm_allreduce(eopt_comm *c, double *x, int n, eopt_comm_op op);
/* Host bytes of rank root to every rank. */
eopt_status eopt_comm_bcast(eopt_comm *c, void *buf, size_t bytes, int root);
/* Point to point, host bytes (the checkpoint's gather of optimizer state to rank 0). */
eopt_status eopt_comm_send(eopt_comm *c, const void *buf, size_t bytes, int to);
eopt_status eopt_comm_recv(eopt_comm *c, void *buf, size_t bytes, int from);

/* Tensors of backend be (float32, any placement), t[k] owned by rank owner[k]:
 * reduce_to_owners leaves the sum over ranks of t[k] in owner[k]'s t[k] (a reduce-scatter by
 * whole tensors; the other ranks' t[k] are unspecified afterwards); bcast_from_owners copies
 * owner[k]'s t[k] to every rank (an all-gather by whole tensors). Host tensors go through one
 * MPI_Reduce_scatter / MPI_Allgatherv over a packed buffer; CUDA tensors through grouped NCCL
 * reduce / broadcast calls, in place (with one rank too, so that one GPU runs the NCCL path).
 * The packing buffers are kept in c (grown once). */
eopt_status eopt_comm_reduce_to_owners(eopt_comm *c, eopt_backend *be, int n, eopt_tensor *const *t,
                                       const int *owner);
eopt_status eopt_comm_bcast_from_owners(eopt_comm *c, eopt_backend *be, int n, eopt_tensor *const *t,
                                        const int *owner);

#endif
