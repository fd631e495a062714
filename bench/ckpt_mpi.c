/* How a data-parallel run should write its checkpoint (issue 20): gather to rank 0, or parallel
 * HDF5. Both write the same file: NT float32 datasets of equal size under /optimizers/o/state/<i>
 * (the state of parameter i, owned by rank i % ranks, as train/parallel.c shards it), BYTES in
 * all, then flush and fsync, as eopt's save does before its rename.
 *
 *   gather:   every rank sends its datasets to rank 0 (MPI_Send / MPI_Recv, as
 *             eopt_dp_gather_state), which writes the whole file alone (the sec2 driver);
 *   parallel: every rank opens the file through MPI-IO (H5Pset_fapl_mpio), all create every
 *             dataset (HDF5 wants metadata changes collective), each writes its own (independent
 *             transfers), and all close it.
 *
 * usage: mpirun -np N build-mpi/ckpt-mpi-bench DIR [MiB] [datasets]   (make bench-ckpt-mpi)
 * Prints one line per method: seconds (median of 3) and GiB/s. Needs libhdf5-openmpi-dev. */
#include <hdf5.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int rank, ranks;

static void die(const char *what)
{
    fprintf(stderr, "ckpt-mpi-bench: rank %d: %s failed\n", rank, what);
    MPI_Abort(MPI_COMM_WORLD, 1);
}

static void path_of(char *buf, size_t size, int i) { snprintf(buf, size, "/optimizers/o/state/%d/exp_avg", i); }

/* The groups /optimizers/o/state/<i> of every dataset (lcpl makes the parents). */
static hid_t create_dataset(hid_t f, int i, hsize_t n)
{
    char p[128];
    path_of(p, sizeof p, i);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE), space = H5Screate_simple(1, &n, NULL);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t d = H5Dcreate2(f, p, H5T_IEEE_F32LE, space, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    H5Sclose(space), H5Pclose(lcpl);
    if (d < 0)
        die("H5Dcreate2");
    return d;
}

static void sync_file(const char *path)
{
    FILE *f = fopen(path, "r+");
    if (!f || fsync(fileno(f)) != 0)
        die("fsync");
    fclose(f);
}

/* Rank 0 writes everything; the others send their datasets first. */
static void write_gather(const char *path, int nt, hsize_t n, float *mine, float *buf)
{
    if (rank != 0) {
        for (int i = rank; i < nt; i += ranks)
            MPI_Send(mine + (size_t)(i / ranks) * n, (int)n, MPI_FLOAT, 0, 0, MPI_COMM_WORLD);
        return;
    }
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0)
        die("H5Fcreate");
    for (int i = 0; i < nt; i++) {
        const float *src = mine + (size_t)(i / ranks) * n;
        if (i % ranks != 0) {
            MPI_Recv(buf, (int)n, MPI_FLOAT, i % ranks, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
            src = buf;
        }
        hid_t d = create_dataset(f, i, n);
        if (H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, src) < 0)
            die("H5Dwrite");
        H5Dclose(d);
    }
    H5Fflush(f, H5F_SCOPE_GLOBAL);
    H5Fclose(f);
    sync_file(path);
}

/* Every rank creates every dataset (collective metadata), writes its own. */
static void write_parallel(const char *path, int nt, hsize_t n, float *mine)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_fapl_mpio(fapl, MPI_COMM_WORLD, MPI_INFO_NULL);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (f < 0)
        die("H5Fcreate (mpio)");
    hid_t *d = malloc(sizeof *d * (size_t)nt);
    for (int i = 0; i < nt; i++)
        d[i] = create_dataset(f, i, n);
    for (int i = rank; i < nt; i += ranks)
        if (H5Dwrite(d[i], H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, mine + (size_t)(i / ranks) * n) < 0)
            die("H5Dwrite (mpio)");
    for (int i = 0; i < nt; i++)
        H5Dclose(d[i]);
    free(d);
    H5Fflush(f, H5F_SCOPE_GLOBAL);
    H5Fclose(f);
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0)
        sync_file(path);
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &ranks);
    if (argc < 2) {
        if (rank == 0)
            fprintf(stderr, "usage: mpirun -np N ckpt-mpi-bench DIR [MiB] [datasets]\n");
        MPI_Finalize();
        return 2;
    }
    double mib = argc > 2 ? atof(argv[2]) : 1024;
    int nt = argc > 3 ? atoi(argv[3]) : 256;
    hsize_t n = (hsize_t)(mib * 1048576.0 / 4 / nt);
    int own = (nt - rank + ranks - 1) / ranks;
    float *mine = malloc(sizeof(float) * n * (size_t)own), *buf = malloc(sizeof(float) * n);
    if (!mine || !buf)
        die("malloc");
    for (size_t k = 0; k < n * (size_t)own; k++)
        mine[k] = (float)(k % 1000) * 1e-3f + (float)rank;
    char path[4096];
    snprintf(path, sizeof path, "%s/ckpt-mpi-bench.h5", argv[1]);
    const char *names[2] = {"gather to rank 0", "parallel HDF5"};
    for (int m = 0; m < 2; m++) {
        double t[3];
        for (int rep = 0; rep < 3; rep++) {
            MPI_Barrier(MPI_COMM_WORLD);
            double t0 = now();
            if (m == 0)
                write_gather(path, nt, n, mine, buf);
            else
                write_parallel(path, nt, n, mine);
            MPI_Barrier(MPI_COMM_WORLD);
            t[rep] = now() - t0;
            if (rank == 0)
                unlink(path);
        }
        qsort(t, 3, sizeof t[0], cmp);
        double gib = (double)n * 4 * nt / 1073741824.0;
        if (rank == 0)
            printf("%-18s %d ranks, %d datasets, %.2f GiB: %.3f s (min %.3f, max %.3f), %.2f GiB/s\n", names[m],
                   ranks, nt, gib, t[1], t[0], t[2], gib / t[1]);
    }
    free(mine), free(buf);
    MPI_Finalize();
    return 0;
}
