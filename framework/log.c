#include "log.h"

#include <stdarg.h>
#include <stdio.h>

static eopt_log_fn handler;
static void *handler_user;

void eopt_log_set_handler(eopt_log_fn fn, void *user)
{
    handler = fn;
    handler_user = user;
}

void eopt_log(eopt_log_level level, const char *fmt, ...)
{
    if (!handler)
        return;
    char msg[4096];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    handler(level, msg, handler_user);
}
