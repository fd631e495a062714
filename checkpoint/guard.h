/* The checkpoint guard: an HDF5 file from outside is checked in a child process before this
 * process reads it, because libhdf5 (1.10.8) crashes, hangs or allocates without bound on
 * damaged files and eopt cannot fix libhdf5.
 *
 * The child (fork, no exec) opens the file, visits every object and link, reads every attribute
 * and every dataset whose bytes are not a plain range of the file, and checks every size against
 * the file's length. It runs under limits: RLIMIT_CPU at the time limit (libhdf5's hangs spin;
 * CPU time, so that a loaded machine or valgrind does not fail a sound file), and
 * EOPT_GUARD_WALL_FACTOR times it of wall-clock time (alarm() in the child, and the parent kills
 * it at that deadline) for one that sleeps; RLIMIT_AS at the address space it started with plus the
 * memory limit (not under AddressSanitizer, whose shadow reservation it would break), RLIMIT_CORE
 * and RLIMIT_FSIZE 0 (no core dumps, no writes). It never prints (its standard streams go to
 * /dev/null, so sanitizer reports too), dies with the parent (PR_SET_PDEATHSIG) and leaves by
 * _exit, sending one status byte and a message through a pipe; the parent reaps it in every case.
 *
 * Files this process wrote itself (eopt_checkpoint_save records device, inode, size and mtime of
 * the last few) skip the check while they are unchanged. */
#ifndef EOPT_GUARD_H
#define EOPT_GUARD_H

#include <stddef.h>

#include "../framework/error.h"

/* Defaults: EOPT_GUARD_SECONDS + 1 s per EOPT_GUARD_BYTES_PER_SECOND of file, and
 * EOPT_GUARD_MEMORY + 2 x the file size of address space for the child. */
#define EOPT_GUARD_SECONDS 10.0
#define EOPT_GUARD_BYTES_PER_SECOND (100.0 * (1 << 20))
#define EOPT_GUARD_MEMORY ((size_t)1 << 30)
#define EOPT_GUARD_WALL_FACTOR 6

typedef struct {
    double seconds; /* CPU-time limit of the check; 0: the default above */
    size_t memory;  /* address space the child may add; 0: the default above */
} eopt_guard_limits;

/* Checks `path` in a child process (lim may be NULL). EOPT_ERR_FORMAT "damaged checkpoint
 * '<path>': <why>" when the child finds a problem, crashes, hangs or runs over a limit;
 * EOPT_ERR_INTERRUPTED (the child killed) when eopt_interrupt() is called during the wait;
 * EOPT_ERR_IO when the file cannot be opened at all. */
eopt_status eopt_guard_check(const char *path, const eopt_guard_limits *lim);

/* The check above, skipped for a file eopt_guard_trust recorded and that is unchanged since. */
eopt_status eopt_guard_open(const char *path);
/* Records a file this process has just written completely (called by eopt_checkpoint_save). */
void eopt_guard_trust(const char *path);

#endif
