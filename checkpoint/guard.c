/* The checkpoint guard (guard.h): the walk that runs in the child, and the parent's wait. */
#include "guard.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "h5.h"

#if defined(__SANITIZE_ADDRESS__)
#define GUARD_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define GUARD_ASAN 1
#endif
#endif

/* ------------------------------------------------------------------------------------------
 * The walk (child side): every object, link and attribute, every size against the file. */

typedef struct {
    hsize_t flen;       /* the file's length in bytes */
    eopt_status st;
} walk;

/* bytes = n x size, or 0 with an error when that overflows. */
static int mul_ok(hsize_t n, size_t size, hsize_t *bytes)
{
    if (size && n > (hsize_t)-1 / size)
        return 0;
    *bytes = n * size;
    return 1;
}

/* Reads n values of file type ft through its native memory type (strings and other variable
 * length data included, then reclaimed): what the reader will ask libhdf5 to do. */
static eopt_status read_all(hid_t obj, int is_attr, hid_t ft, hid_t sp, hssize_t n, const char *name)
{
    hid_t mt = H5Tget_native_type(ft, H5T_DIR_DEFAULT);
    if (mt < 0)
        return eopt_fail(EOPT_ERR_FORMAT, "'%s' has an unreadable type", name);
    size_t size = H5Tget_size(mt);
    hsize_t bytes;
    eopt_status st = EOPT_OK;
    void *buf = NULL;
    if (!mul_ok((hsize_t)n, size, &bytes) || !(buf = calloc(1, bytes ? (size_t)bytes : 1)))
        st = eopt_fail(EOPT_ERR_FORMAT, "'%s': %lld values of %zu bytes do not fit in memory", name, (long long)n, size);
    else if ((is_attr ? H5Aread(obj, mt, buf) : H5Dread(obj, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf)) < 0)
        st = eopt_fail(EOPT_ERR_FORMAT, "'%s' cannot be read", name);
    else if (H5Tdetect_class(mt, H5T_VLEN) > 0 || H5Tis_variable_str(mt) > 0)
        H5Dvlen_reclaim(mt, sp, H5P_DEFAULT, buf);
    free(buf);
    H5Tclose(mt);
    return st;
}

/* The number of elements of a simple dataspace, or 0 with an error when the product of its
 * dimensions overflows (libhdf5's own count wraps: 2^61 x 16 elements reads as 0). */
static int count_ok(hid_t sp, int nd, hsize_t *count)
{
    hsize_t dims[H5S_MAX_RANK];
    if (H5Sget_simple_extent_type(sp) == H5S_NULL) {
        *count = 0;
        return 1;
    }
    if (H5Sget_simple_extent_dims(sp, dims, NULL) != nd)
        return 0;
    *count = 1;
    for (int k = 0; k < nd; k++)
        if (!mul_ok(*count, (size_t)dims[k], count))
            return 0;
    return 1;
}

/* Type, shape and declared size of an attribute or dataset: at most 32 dimensions, and its
 * bytes within `limit`. */
static eopt_status check_extent(hid_t ft, hid_t sp, hsize_t limit, const char *name, hssize_t *n)
{
    int nd = H5Sget_simple_extent_ndims(sp);
    *n = H5Sget_simple_extent_npoints(sp);
    size_t size = H5Tget_size(ft);
    hsize_t bytes, count;
    if (ft < 0 || sp < 0 || nd < 0 || nd > H5S_MAX_RANK || *n < 0 || size == 0)
        return eopt_fail(EOPT_ERR_FORMAT, "'%s' has an unreadable type or shape", name);
    if (!count_ok(sp, nd, &count) || count != (hsize_t)*n)
        return eopt_fail(EOPT_ERR_FORMAT, "'%s': the product of its dimensions does not fit in 64 bits", name);
    if (!mul_ok((hsize_t)*n, size, &bytes) || bytes > limit)
        return eopt_fail(EOPT_ERR_FORMAT, "'%s' declares %lld values of %zu bytes, more than the file's %llu bytes",
                         name, (long long)*n, size, (unsigned long long)limit);
    return EOPT_OK;
}

static eopt_status check_attr(hid_t obj, hsize_t k, const char *where, hsize_t flen)
{
    char name[1024];
    ssize_t len = H5Aget_name_by_idx(obj, ".", H5_INDEX_NAME, H5_ITER_INC, k, name, sizeof name, H5P_DEFAULT);
    if (len < 0 || len >= (ssize_t)sizeof name)
        return eopt_fail(EOPT_ERR_FORMAT, "%s: attribute %llu has no readable name", where, (unsigned long long)k);
    if (H5Aexists(obj, name) <= 0)
        return eopt_fail(EOPT_ERR_FORMAT, "%s: attribute '%s' cannot be found by name", where, name);
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0)
        return eopt_fail(EOPT_ERR_FORMAT, "%s: attribute '%s' cannot be opened", where, name);
    hid_t ft = H5Aget_type(a), sp = H5Aget_space(a);
    hssize_t n;
    eopt_status st = check_extent(ft, sp, flen, name, &n);
    if (st == EOPT_OK)
        st = read_all(a, 1, ft, sp, n, name);
    H5Sclose(sp);
    H5Tclose(ft);
    H5Aclose(a);
    return st == EOPT_OK ? st : eopt_fail_context(st, "%s", where);
}

/* A standard integer or IEEE float of 1..8 bytes: read by plain conversion, so a contiguous
 * dataset of it only needs its byte range inside the file. */
static int plain_numeric(hid_t ft)
{
    H5T_class_t c = H5Tget_class(ft);
    size_t size = H5Tget_size(ft);
    if (c == H5T_INTEGER)
        return size == 1 || size == 2 || size == 4 || size == 8;
    return c == H5T_FLOAT && (H5Tequal(ft, H5T_IEEE_F32LE) > 0 || H5Tequal(ft, H5T_IEEE_F32BE) > 0 ||
                              H5Tequal(ft, H5T_IEEE_F64LE) > 0 || H5Tequal(ft, H5T_IEEE_F64BE) > 0);
}

/* A dataset: declared bytes within the file (x 1032, deflate's largest ratio, when filtered);
 * a contiguous plain one lies inside the file; any other is read in full. */
static eopt_status check_dataset(hid_t d, const char *where, hsize_t flen)
{
    hid_t ft = H5Dget_type(d), sp = H5Dget_space(d), dcpl = H5Dget_create_plist(d);
    int filtered = dcpl >= 0 && H5Pget_nfilters(dcpl) > 0;
    H5D_layout_t layout = dcpl >= 0 ? H5Pget_layout(dcpl) : H5D_LAYOUT_ERROR;
    hsize_t limit = filtered ? (flen > (hsize_t)-1 / 1032 ? (hsize_t)-1 : flen * 1032) : flen;
    hssize_t n;
    eopt_status st = check_extent(ft, sp, limit, where, &n);
    if (st == EOPT_OK && layout == H5D_LAYOUT_ERROR)
        st = eopt_fail(EOPT_ERR_FORMAT, "'%s' has an unreadable layout", where);
    haddr_t off = layout == H5D_CONTIGUOUS ? H5Dget_offset(d) : HADDR_UNDEF;
    if (st == EOPT_OK && off != HADDR_UNDEF && plain_numeric(ft)) {
        hsize_t bytes = (hsize_t)n * H5Tget_size(ft);
        if (off > flen || bytes > flen - off)
            st = eopt_fail(EOPT_ERR_FORMAT, "'%s': its %llu bytes at offset %llu lie past the file's end (%llu bytes)",
                           where, (unsigned long long)bytes, (unsigned long long)off, (unsigned long long)flen);
    } else if (st == EOPT_OK && n > 0) {
        st = read_all(d, 0, ft, sp, n, where);
    }
    if (dcpl >= 0)
        H5Pclose(dcpl);
    H5Sclose(sp);
    H5Tclose(ft);
    return st;
}

/* A group: its size and every member by index, as the reader lists them. */
static eopt_status check_group(hid_t g, const char *where)
{
    H5G_info_t info;
    if (H5Gget_info(g, &info) < 0)
        return eopt_fail(EOPT_ERR_FORMAT, "'%s': the group cannot be listed", where);
    for (hsize_t k = 0; k < info.nlinks; k++) {
        char name[1024];
        ssize_t len = H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, k, name, sizeof name, H5P_DEFAULT);
        if (len < 0 || len >= (ssize_t)sizeof name || H5Lexists(g, name, H5P_DEFAULT) <= 0)
            return eopt_fail(EOPT_ERR_FORMAT, "'%s': member %llu has no readable name", where, (unsigned long long)k);
    }
    return EOPT_OK;
}

static herr_t visit_object(hid_t loc, const char *name, const H5O_info_t *info, void *user)
{
    walk *w = user;
    hid_t o = H5Oopen(loc, name, H5P_DEFAULT);
    if (o < 0) {
        w->st = eopt_fail(EOPT_ERR_FORMAT, "'%s' cannot be opened", name);
        return -1;
    }
    for (hsize_t k = 0; w->st == EOPT_OK && k < info->num_attrs; k++)
        w->st = check_attr(o, k, name, w->flen);
    if (w->st == EOPT_OK && info->type == H5O_TYPE_DATASET)
        w->st = check_dataset(o, name, w->flen);
    else if (w->st == EOPT_OK && info->type == H5O_TYPE_GROUP)
        w->st = check_group(o, name);
    H5Oclose(o);
    return w->st == EOPT_OK ? 0 : -1;
}

/* Links: hard and soft only (an external link would open another, unchecked file); each one
 * resolves to an object whose information can be read. */
static herr_t visit_link(hid_t g, const char *name, const H5L_info_t *info, void *user)
{
    walk *w = user;
    H5O_info_t oi;
    if (info->type == H5L_TYPE_EXTERNAL || info->type >= H5L_TYPE_UD_MIN)
        w->st = eopt_fail(EOPT_ERR_FORMAT, "'%s' is a link to another file", name);
    else if (info->type == H5L_TYPE_SOFT && H5Lexists(g, name, H5P_DEFAULT) <= 0)
        return 0; /* a dangling soft link names nothing: the reader finds nothing there */
    else if (H5Oget_info_by_name2(g, name, &oi, H5O_INFO_BASIC, H5P_DEFAULT) < 0)
        w->st = eopt_fail(EOPT_ERR_FORMAT, "'%s' names no readable object", name);
    return w->st == EOPT_OK ? 0 : -1;
}

static eopt_status walk_file(const char *path)
{
    eopt_h5_quiet();
    struct stat sb;
    if (stat(path, &sb) != 0 || H5Fis_hdf5(path) <= 0)
        return eopt_fail(EOPT_ERR_FORMAT, "not an HDF5 file");
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return eopt_fail(EOPT_ERR_FORMAT, "libhdf5 cannot open it");
    walk w = {.flen = (hsize_t)sb.st_size, .st = EOPT_OK};
    if (H5Lvisit(f, H5_INDEX_NAME, H5_ITER_INC, visit_link, &w) < 0 && w.st == EOPT_OK)
        w.st = eopt_fail(EOPT_ERR_FORMAT, "its links cannot be listed");
    if (w.st == EOPT_OK && H5Ovisit2(f, H5_INDEX_NAME, H5_ITER_INC, visit_object, &w, H5O_INFO_ALL) < 0 &&
        w.st == EOPT_OK)
        w.st = eopt_fail(EOPT_ERR_FORMAT, "its objects cannot be listed");
    if (H5Fclose(f) < 0 && w.st == EOPT_OK)
        w.st = eopt_fail(EOPT_ERR_FORMAT, "libhdf5 cannot close it");
    return w.st;
}

/* ------------------------------------------------------------------------------------------
 * The child: limits, the walk, one status byte and a message, _exit. */

#ifndef GUARD_ASAN
/* The address space in use now (the child starts as a copy of the parent). */
static size_t address_space(void)
{
    unsigned long long pages = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%llu", &pages) != 1)
            pages = 0;
        fclose(f);
    }
    return (size_t)pages * (size_t)sysconf(_SC_PAGESIZE);
}
#endif

static void set_limit(int resource, rlim_t value)
{
    struct rlimit r = {value, value};
    setrlimit(resource, &r);
}

static void child_limits(double seconds, double wall, size_t memory)
{
    int null = open("/dev/null", O_RDWR);
    for (int fd = 0; fd < 3 && null >= 0; fd++)
        dup2(null, fd);
    static const int defaults[] = {SIGINT, SIGTERM, SIGXCPU, SIGALRM, SIGSEGV, SIGBUS, SIGABRT, SIGPIPE};
    for (size_t k = 0; k < sizeof defaults / sizeof defaults[0]; k++)
        signal(defaults[k], SIG_DFL);
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    /* SIGXCPU at `seconds` of CPU time (libhdf5's hangs spin), SIGKILL a second later. */
    struct rlimit cpu = {(rlim_t)seconds + 1, (rlim_t)seconds + 2};
    setrlimit(RLIMIT_CPU, &cpu);
    set_limit(RLIMIT_CORE, 0);
    set_limit(RLIMIT_FSIZE, 0);
#ifndef GUARD_ASAN
    set_limit(RLIMIT_AS, (rlim_t)(address_space() + memory));
#else
    (void)memory;
#endif
    alarm((unsigned)wall + 1);
}

static void child_run(const char *path, int fd, double seconds, double wall, size_t memory)
{
    child_limits(seconds, wall, memory);
    eopt_status st = walk_file(path);
    char msg[1200];
    int len = snprintf(msg, sizeof msg, "%c%.1100s", st == EOPT_OK ? '0' : '1', st == EOPT_OK ? "" : eopt_last_error());
    if (write(fd, msg, (size_t)len) < 0)
        _exit(3);
    _exit(0);
}

/* ------------------------------------------------------------------------------------------
 * The parent: wait for the child's answer, its death, the deadline or an interruption. */

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* Reads the child's message until it closes the pipe. Returns 1 at EOF, 0 at the deadline,
 * -1 when interrupted. */
static int read_answer(int fd, double deadline, char *buf, size_t size, size_t *len)
{
    for (;;) {
        if (eopt_interrupted())
            return -1;
        double left = deadline - now();
        if (left <= 0)
            return 0;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        /* Slices of at most 100 ms: an interruption that lands before poll is seen at the next. */
        int r = poll(&p, 1, left > 0.1 ? 100 : (int)(left * 1000) + 1);
        if (r <= 0)
            continue; /* timeout slice or EINTR: check the flag and the deadline again */
        ssize_t got = read(fd, buf + *len, size - 1 - *len);
        if (got < 0 && errno == EINTR)
            continue;
        if (got <= 0 || *len + (size_t)got >= size - 1)
            return 1;
        *len += (size_t)got;
    }
}

static int reap(pid_t pid)
{
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    return status;
}

static eopt_status verdict(const char *path, int answer, const char *msg, size_t len, int status, double seconds)
{
    if (answer < 0)
        return eopt_fail(EOPT_ERR_INTERRUPTED, "interrupted while checking checkpoint '%s'", path);
    if (answer == 0 || (WIFSIGNALED(status) && WTERMSIG(status) == SIGXCPU))
        return eopt_fail(EOPT_ERR_FORMAT,
                         "damaged checkpoint '%s': reading it did not finish within %.0f s (libhdf5 hangs on it)",
                         path, seconds);
    /* A Ctrl-C at the terminal reaches the whole process group, the child too. */
    if (WIFSIGNALED(status) && (WTERMSIG(status) == SIGINT || WTERMSIG(status) == SIGTERM))
        return eopt_fail(EOPT_ERR_INTERRUPTED, "interrupted while checking checkpoint '%s'", path);
    if (WIFSIGNALED(status) && len == 0)
        return eopt_fail(EOPT_ERR_FORMAT, "damaged checkpoint '%s': reading it crashes libhdf5 (signal %d, %s)", path,
                         WTERMSIG(status), strsignal(WTERMSIG(status)));
    if (len == 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return eopt_fail(EOPT_ERR_FORMAT,
                         "damaged checkpoint '%s': reading it crashes libhdf5 or runs out of memory (exit status %d)",
                         path, WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    if (msg[0] != '0')
        return eopt_fail(EOPT_ERR_FORMAT, "damaged checkpoint '%s': %s", path, msg + 1);
    return EOPT_OK;
}

eopt_status eopt_guard_check(const char *path, const eopt_guard_limits *lim)
{
    struct stat sb;
    /* Anything but a directory goes to the child: a FIFO or device hangs or fails there. */
    if (stat(path, &sb) != 0 || S_ISDIR(sb.st_mode) || access(path, R_OK) != 0)
        return eopt_fail(EOPT_ERR_IO, "cannot open checkpoint '%s' (missing, unreadable or a directory)", path);
    double seconds = lim && lim->seconds > 0 ? lim->seconds
                                             : EOPT_GUARD_SECONDS + (double)sb.st_size / EOPT_GUARD_BYTES_PER_SECOND;
    size_t memory = lim && lim->memory ? lim->memory : EOPT_GUARD_MEMORY + 2 * (size_t)sb.st_size;
    double wall = EOPT_GUARD_WALL_FACTOR * seconds;
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) != 0)
        return eopt_fail(EOPT_ERR_IO, "cannot check checkpoint '%s': pipe: %s", path, strerror(errno));
    fflush(NULL); /* nothing buffered is written twice by the child's copy */
    pid_t pid = fork();
    if (pid < 0) {
        close(fds[0]);
        close(fds[1]);
        return eopt_fail(EOPT_ERR_IO, "cannot check checkpoint '%s': fork: %s", path, strerror(errno));
    }
    if (pid == 0) {
        close(fds[0]);
        child_run(path, fds[1], seconds, wall, memory);
    }
    close(fds[1]);
    char msg[1200];
    size_t len = 0;
    int answer = read_answer(fds[0], now() + wall, msg, sizeof msg, &len);
    close(fds[0]);
    msg[len] = 0;
    if (answer <= 0)
        kill(pid, SIGKILL);
    int status = reap(pid);
    return verdict(path, answer, msg, len, status, seconds);
}

/* ------------------------------------------------------------------------------------------
 * Files this process wrote: skipped while device, inode, size and mtime are unchanged. */

#define TRUSTED_MAX 8

typedef struct {
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
} file_id;

static file_id trusted[TRUSTED_MAX];
static int trusted_next;
static pthread_mutex_t trusted_lock = PTHREAD_MUTEX_INITIALIZER;

static int same_file(const file_id *a, const struct stat *b)
{
    return a->dev == b->st_dev && a->ino == b->st_ino && a->size == b->st_size &&
           a->mtime.tv_sec == b->st_mtim.tv_sec && a->mtime.tv_nsec == b->st_mtim.tv_nsec;
}

void eopt_guard_trust(const char *path)
{
    struct stat sb;
    if (stat(path, &sb) != 0)
        return;
    pthread_mutex_lock(&trusted_lock);
    trusted[trusted_next] = (file_id){sb.st_dev, sb.st_ino, sb.st_size, sb.st_mtim};
    trusted_next = (trusted_next + 1) % TRUSTED_MAX;
    pthread_mutex_unlock(&trusted_lock);
}

eopt_status eopt_guard_open(const char *path)
{
    struct stat sb;
    int known = 0;
    if (stat(path, &sb) == 0) {
        pthread_mutex_lock(&trusted_lock);
        for (int k = 0; k < TRUSTED_MAX && !known; k++)
            known = trusted[k].ino != 0 && same_file(&trusted[k], &sb);
        pthread_mutex_unlock(&trusted_lock);
    }
    return known ? EOPT_OK : eopt_guard_check(path, NULL);
}
