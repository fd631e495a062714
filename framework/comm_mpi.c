/* The MPI world (make MPI=1), and NCCL for device tensors (make CUDA=1 MPI=1): comm.h.
 *
 * MPI is initialised only when a launcher started this process (mpirun sets OMPI_COMM_WORLD_SIZE,
 * srun and PMIx-aware launchers PMIX_RANK or PMI_RANK): the MPI build run by hand is a world of
 * one, as the plain build, without an MPI runtime starting underneath it. Errors return (the
 * communicator's handler is MPI_ERRORS_RETURN), so a failed call becomes an eopt error. */
#include "comm.h"

#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifdef EOPT_NCCL
#include <cuda_runtime.h>
#include <nccl.h>
#endif

struct eopt_comm {
    int rank, size, mpi; /* mpi: MPI is initialised and MPI_COMM_WORLD is this world */
    float *send, *recv;  /* packing buffers of the host reduce-scatter and all-gather */
    size_t cap;          /* floats in each */
#ifdef EOPT_NCCL
    ncclComm_t nccl;     /* created at the first device collective */
    int nccl_ready;
#endif
};

static eopt_comm world = {.rank = 0, .size = 1};

static eopt_status mpi_fail(int rc, const char *call)
{
    char msg[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS)
        snprintf(msg, sizeof msg, "error %d", rc);
    return eopt_fail(EOPT_ERR_IO, "%s failed: %s", call, msg);
}

#define MPI_TRY(call)                                                                                                 \
    do {                                                                                                              \
        int rc_ = (call);                                                                                             \
        if (rc_ != MPI_SUCCESS)                                                                                       \
            return mpi_fail(rc_, #call);                                                                              \
    } while (0)

static void finalize(void)
{
    int done = 1;
    MPI_Finalized(&done);
    if (!done)
        MPI_Finalize();
}

static int launched(void)
{
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"};
    for (size_t k = 0; k < sizeof vars / sizeof vars[0]; k++)
        if (getenv(vars[k]))
            return 1;
    return 0;
}

#ifdef EOPT_NCCL
/* One GPU per process: the node-local rank picks the device, before any backend opens it. */
static void pick_device(void)
{
    const char *lr = getenv("OMPI_COMM_WORLD_LOCAL_RANK");
    if (!lr)
        lr = getenv("SLURM_LOCALID");
    int count = 0;
    if (lr && cudaGetDeviceCount(&count) == cudaSuccess && count > 0)
        cudaSetDevice(atoi(lr) % count);
}
#endif

eopt_status eopt_comm_world(eopt_comm **out)
{
    static int ready;
    *out = &world;
    if (ready || !launched())
        return EOPT_OK;
    int init = 0, provided = 0;
    MPI_TRY(MPI_Initialized(&init));
    if (!init) {
        /* Only the thread that calls eopt talks to MPI; OpenMP threads never do. */
        MPI_TRY(MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided));
        atexit(finalize);
    }
    MPI_TRY(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
    MPI_TRY(MPI_Comm_rank(MPI_COMM_WORLD, &world.rank));
    MPI_TRY(MPI_Comm_size(MPI_COMM_WORLD, &world.size));
    world.mpi = 1;
#ifdef EOPT_NCCL
    pick_device();
#endif
    ready = 1;
    return EOPT_OK;
}

int eopt_comm_rank(const eopt_comm *c) { return c->rank; }
int eopt_comm_size(const eopt_comm *c) { return c->size; }

void eopt_comm_describe(const eopt_comm *c, char *buf, size_t size)
{
    char lib[MPI_MAX_LIBRARY_VERSION_STRING] = "MPI";
    int len = 0;
    if (!c->mpi) {
        snprintf(buf, size, "one process (not started by mpirun or srun)");
        return;
    }
    MPI_Get_library_version(lib, &len);
    lib[strcspn(lib, ",\n")] = 0; /* "Open MPI v4.1.4, package: ..." -> "Open MPI v4.1.4" */
    snprintf(buf, size, "MPI (%s), %d process%s", lib, c->size, c->size == 1 ? "" : "es");
}

eopt_status eopt_comm_agree(eopt_comm *c, eopt_status st)
{
    if (!c->mpi)
        return st;
    int mine = (int)st, all[c->size], first = -1, failed = 0;
    char msg[2048] = "";
    MPI_TRY(MPI_Allgather(&mine, 1, MPI_INT, all, 1, MPI_INT, MPI_COMM_WORLD));
    for (int r = 0; r < c->size; r++)
        if (all[r] != EOPT_OK) {
            failed++;
            if (first < 0)
                first = r;
        }
    if (first < 0)
        return EOPT_OK;
    if (c->rank == first)
        snprintf(msg, sizeof msg, "%s", eopt_last_error());
    MPI_TRY(MPI_Bcast(msg, (int)sizeof msg, MPI_CHAR, first, MPI_COMM_WORLD));
    msg[sizeof msg - 1] = 0;
    if (failed == c->size)
        return eopt_fail((eopt_status)all[first], "%s", msg);
    return eopt_fail((eopt_status)all[first], "rank %d of %d: %s", first, c->size, msg);
}

eopt_status eopt_comm_allreduce(eopt_comm *c, double *x, int n, eopt_comm_op op)
{
    if (!c->mpi || n == 0)
        return EOPT_OK;
    MPI_TRY(MPI_Allreduce(MPI_IN_PLACE, x, n, MPI_DOUBLE, op == EOPT_COMM_MAX ? MPI_MAX : MPI_SUM, MPI_COMM_WORLD));
    return EOPT_OK;
}

/* MPI counts are ints: larger messages go in pieces. */
#define CHUNK ((size_t)1 << 30)

eopt_status eopt_comm_bcast(eopt_comm *c, void *buf, size_t bytes, int root)
{
    if (!c->mpi)
        return root == 0 ? EOPT_OK : eopt_fail(EOPT_ERR_ARG, "broadcast from rank %d in a world of one", root);
    for (size_t off = 0; off < bytes; off += CHUNK) {
        int n = (int)(bytes - off < CHUNK ? bytes - off : CHUNK);
        MPI_TRY(MPI_Bcast((char *)buf + off, n, MPI_BYTE, root, MPI_COMM_WORLD));
    }
    return EOPT_OK;
}

eopt_status eopt_comm_send(eopt_comm *c, const void *buf, size_t bytes, int to)
{
    if (!c->mpi || to < 0 || to >= c->size)
        return eopt_fail(EOPT_ERR_ARG, "send to rank %d of %d", to, c->size);
    for (size_t off = 0; off < bytes; off += CHUNK) {
        int n = (int)(bytes - off < CHUNK ? bytes - off : CHUNK);
        MPI_TRY(MPI_Send((const char *)buf + off, n, MPI_BYTE, to, 0, MPI_COMM_WORLD));
    }
    return EOPT_OK;
}

eopt_status eopt_comm_recv(eopt_comm *c, void *buf, size_t bytes, int from)
{
    if (!c->mpi || from < 0 || from >= c->size)
        return eopt_fail(EOPT_ERR_ARG, "receive from rank %d of %d", from, c->size);
    for (size_t off = 0; off < bytes; off += CHUNK) {
        int n = (int)(bytes - off < CHUNK ? bytes - off : CHUNK);
        MPI_TRY(MPI_Recv((char *)buf + off, n, MPI_BYTE, from, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE));
    }
    return EOPT_OK;
}

/* ---- tensors ---- */

/* counts[r] / displs[r]: the floats of the tensors rank r owns and where they start in a buffer
 * packed rank after rank; the total must fit MPI's int counts. */
static eopt_status layout(const eopt_comm *c, int n, eopt_tensor *const *t, const int *owner, int *counts,
                          int *displs, size_t *total)
{
    size_t sum[c->size];
    memset(sum, 0, sizeof sum);
    for (int k = 0; k < n; k++) {
        if (owner[k] < 0 || owner[k] >= c->size || t[k]->dtype != EOPT_F32)
            return eopt_fail(EOPT_ERR_ARG, "tensor %d: owner %d of %d ranks, or not float32", k, owner[k], c->size);
        sum[owner[k]] += (size_t)t[k]->numel;
    }
    *total = 0;
    for (int r = 0; r < c->size; r++) {
        if (*total + sum[r] > (size_t)INT_MAX)
            return eopt_fail(EOPT_ERR_UNSUPPORTED, "more than 2^31 floats in one exchange of %d ranks", c->size);
        displs[r] = (int)*total;
        counts[r] = (int)sum[r];
        *total += sum[r];
    }
    return EOPT_OK;
}

static eopt_status reserve(eopt_comm *c, size_t floats)
{
    if (floats <= c->cap)
        return EOPT_OK;
    float *s = malloc(floats * sizeof(float)), *r = malloc(floats * sizeof(float));
    if (!s || !r) {
        free(s), free(r);
        return eopt_fail(EOPT_ERR_NOMEM, "out of memory for %zu floats of exchange buffers", 2 * floats);
    }
    free(c->send), free(c->recv);
    c->send = s, c->recv = r, c->cap = floats;
    return EOPT_OK;
}

/* Copies between tensor k and its place in a buffer packed rank after rank (dir 0: into it). */
static eopt_status pack(const eopt_comm *c, int n, eopt_tensor *const *t, const int *owner, const int *displs,
                        float *buf, int only, int dir)
{
    size_t at[c->size];
    for (int r = 0; r < c->size; r++)
        at[r] = (size_t)displs[r];
    for (int k = 0; k < n; k++) {
        float *p = buf + at[owner[k]];
        at[owner[k]] += (size_t)t[k]->numel;
        if (only >= 0 && owner[k] != only)
            continue;
        size_t bytes = sizeof(float) * (size_t)t[k]->numel;
        EOPT_TRY(dir == 0 ? eopt_tensor_to_host(t[k], p, bytes) : eopt_tensor_from_host(t[k], p, bytes));
    }
    return EOPT_OK;
}

/* The send buffer of an exchange: the layout, the buffers (grown at the first exchange), the
 * tensors packed (only: those of one rank, -1 all). A rank that fails here tells the others
 * before they enter the collective (eopt_comm_agree), rather than leaving them in it. */
static eopt_status prepare(eopt_comm *c, int n, eopt_tensor *const *t, const int *owner, int *counts, int *displs,
                           int only)
{
    size_t total = 0;
    eopt_status st = layout(c, n, t, owner, counts, displs, &total);
    if (st == EOPT_OK)
        st = reserve(c, total);
    if (st == EOPT_OK)
        st = pack(c, n, t, owner, displs, c->send, only, 0);
    return eopt_comm_agree(c, st);
}

#ifdef EOPT_NCCL
static eopt_status nccl_fail(ncclResult_t r, const char *call)
{
    return eopt_fail(EOPT_ERR_DEVICE, "%s failed: %s", call, ncclGetErrorString(r));
}

#define NCCL_TRY(call)                                                                                                \
    do {                                                                                                              \
        ncclResult_t r_ = (call);                                                                                     \
        if (r_ != ncclSuccess)                                                                                        \
            return nccl_fail(r_, #call);                                                                              \
    } while (0)

/* The NCCL communicator of the world: rank 0's unique id goes to every rank over MPI. */
static eopt_status nccl_world(eopt_comm *c)
{
    if (c->nccl_ready)
        return EOPT_OK;
    ncclUniqueId id;
    if (c->rank == 0)
        NCCL_TRY(ncclGetUniqueId(&id));
    MPI_TRY(MPI_Bcast(&id, (int)sizeof id, MPI_BYTE, 0, MPI_COMM_WORLD));
    NCCL_TRY(ncclCommInitRank(&c->nccl, c->size, id, c->rank));
    c->nccl_ready = 1;
    return EOPT_OK;
}

/* Grouped reduces (op 0) or broadcasts (op 1) in place, on the legacy default stream the CUDA
 * backend runs everything on, so they order with its kernels without a host sync. */
static eopt_status nccl_exchange(eopt_comm *c, int n, eopt_tensor *const *t, const int *owner, int op)
{
    EOPT_TRY(nccl_world(c));
    NCCL_TRY(ncclGroupStart());
    for (int k = 0; k < n; k++) {
        float *p = t[k]->data;
        ncclResult_t r = op == 0 ? ncclReduce(p, p, (size_t)t[k]->numel, ncclFloat, ncclSum, owner[k], c->nccl,
                                              cudaStreamLegacy)
                                 : ncclBroadcast(p, p, (size_t)t[k]->numel, ncclFloat, owner[k], c->nccl,
                                                 cudaStreamLegacy);
        if (r != ncclSuccess) {
            ncclGroupEnd();
            return nccl_fail(r, op == 0 ? "ncclReduce" : "ncclBroadcast");
        }
    }
    NCCL_TRY(ncclGroupEnd());
    return EOPT_OK;
}
#endif

/* A reduce-scatter (op 0) or an all-gather (op 1) by whole tensors (comm.h). */
static eopt_status exchange(eopt_comm *c, eopt_backend *be, int n, eopt_tensor *const *t, const int *owner, int op)
{
    if (!c->mpi)
        return EOPT_OK;
#ifdef EOPT_NCCL
    if (be->device == EOPT_DEV_CUDA) /* one rank too: the path a single lent GPU checks */
        return nccl_exchange(c, n, t, owner, op);
#else
    (void)be;
#endif
    if (c->size == 1)
        return EOPT_OK;
    int counts[c->size], displs[c->size];
    EOPT_TRY(prepare(c, n, t, owner, counts, displs, op == 0 ? -1 : c->rank));
    if (op == 0) {
        MPI_TRY(MPI_Reduce_scatter(c->send, c->recv + displs[c->rank], counts, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD));
        return pack(c, n, t, owner, displs, c->recv, c->rank, 1);
    }
    MPI_TRY(MPI_Allgatherv(c->send + displs[c->rank], counts[c->rank], MPI_FLOAT, c->recv, counts, displs, MPI_FLOAT,
                           MPI_COMM_WORLD));
    for (int r = 0; r < c->size; r++)
        if (r != c->rank)
            EOPT_TRY(pack(c, n, t, owner, displs, c->recv, r, 1));
    return EOPT_OK;
}

eopt_status eopt_comm_reduce_to_owners(eopt_comm *c, eopt_backend *be, int n, eopt_tensor *const *t, const int *owner)
{
    return exchange(c, be, n, t, owner, 0);
}

eopt_status eopt_comm_bcast_from_owners(eopt_comm *c, eopt_backend *be, int n, eopt_tensor *const *t,
                                        const int *owner)
{
    return exchange(c, be, n, t, owner, 1);
}
