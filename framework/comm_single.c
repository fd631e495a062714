/* Built when eopt is compiled without MPI (make without MPI=1): a world of one process, where
 * every collective is what it means for a single rank. */
#include "comm.h"

#include <stdio.h>

struct eopt_comm {
    int rank, size;
};

static eopt_comm world = {0, 1};

eopt_status eopt_comm_world(eopt_comm **out)
{
    *out = &world;
    return EOPT_OK;
}

int eopt_comm_rank(const eopt_comm *c) { return c->rank; }
int eopt_comm_size(const eopt_comm *c) { return c->size; }

void eopt_comm_describe(const eopt_comm *c, char *buf, size_t size)
{
    (void)c;
    snprintf(buf, size, "one process (built without MPI: `make MPI=1` for mpirun and srun)");
}

eopt_status eopt_comm_agree(eopt_comm *c, eopt_status st)
{
    (void)c;
    return st;
}

eopt_status eopt_comm_allreduce(eopt_comm *c, double *x, int n, eopt_comm_op op)
{
    (void)c, (void)x, (void)n, (void)op;
    return EOPT_OK;
}

eopt_status eopt_comm_bcast(eopt_comm *c, void *buf, size_t bytes, int root)
{
    (void)buf, (void)bytes;
    if (root != c->rank)
        return eopt_fail(EOPT_ERR_ARG, "broadcast from rank %d in a world of one process", root);
    return EOPT_OK;
}

eopt_status eopt_comm_send(eopt_comm *c, const void *buf, size_t bytes, int to)
{
    (void)c, (void)buf, (void)bytes;
    return eopt_fail(EOPT_ERR_ARG, "send to rank %d in a world of one process", to);
}

eopt_status eopt_comm_recv(eopt_comm *c, void *buf, size_t bytes, int from)
{
    (void)c, (void)buf, (void)bytes;
    return eopt_fail(EOPT_ERR_ARG, "receive from rank %d in a world of one process", from);
}

/* One rank owns everything: its tensors already are the sums and the gathered values. */
static eopt_status check_owners(const eopt_comm *c, int n, const int *owner)
{
    for (int k = 0; k < n; k++)
        if (owner[k] != c->rank)
            return eopt_fail(EOPT_ERR_ARG, "tensor %d owned by rank %d in a world of one process", k, owner[k]);
    return EOPT_OK;
}

eopt_status eopt_comm_reduce_to_owners(eopt_comm *c, eopt_backend *be, int n, eopt_tensor *const *t, const int *owner)
{
    (void)be, (void)t;
    return check_owners(c, n, owner);
}

eopt_status eopt_comm_bcast_from_owners(eopt_comm *c, eopt_backend *be, int n, eopt_tensor *const *t, const int *owner)
{
    (void)be, (void)t;
    return check_owners(c, n, owner);
}
