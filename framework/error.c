#include "error.h"

#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char eopt_msg[2048];

eopt_status eopt_fail(eopt_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(eopt_msg, sizeof eopt_msg, fmt, ap);
    va_end(ap);
    return st;
}

eopt_status eopt_fail_context(eopt_status st, const char *fmt, ...)
{
    char prefix[1024], old[sizeof eopt_msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, eopt_msg, sizeof old);
    snprintf(eopt_msg, sizeof eopt_msg, "%.1000s: %.1000s", prefix, old);
    return st;
}

const char *eopt_last_error(void) { return eopt_msg; }

static volatile sig_atomic_t interrupt_flag;
void eopt_interrupt(void) { interrupt_flag = 1; }
int eopt_interrupted(void) { return interrupt_flag != 0; }
void eopt_interrupt_clear(void) { interrupt_flag = 0; }
void eopt_clear_error(void) { eopt_msg[0] = '\0'; }

const char *eopt_status_name(eopt_status st)
{
    static const char *names[] = {"ok", "bad argument", "shape mismatch", "out of memory", "i/o error",
                                  "bad file format", "numerical failure", "device error", "unsupported",
                                  "configuration error", "interrupted"};
    return (unsigned)st < sizeof names / sizeof names[0] ? names[st] : "unknown error";
}
