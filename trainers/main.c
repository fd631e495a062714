/* The `eopt` command. */
#include <stdio.h>
#include <string.h>

#include "eopt.h"

static int cmd_selfcheck(int argc, char **argv)
{
    const char *device = argc > 2 ? argv[2] : NULL;
    eopt_backend *be;
    if (eopt_backend_open(device, 0, &be) != EOPT_OK) {
        fprintf(stderr, "eopt: %s\n", eopt_last_error());
        return 1;
    }
    char desc[256];
    eopt_backend_describe(be, desc, sizeof desc);
    printf("backend: %s\n", desc);
    eopt_backend_close(be);
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f, "usage: eopt <command> [args]\n"
               "  selfcheck [cpu|cuda]   check the backend and print what it can do\n");
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "selfcheck") == 0)
        return cmd_selfcheck(argc, argv);
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "eopt: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
