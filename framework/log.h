/* Logging: library code never prints. It hands each message to the handler the program set
 * (cmd/main.c prints to the terminal); with no handler, messages are dropped. The handler is
 * process-wide: set it once, before any other eopt call, and make it thread-safe if eopt is
 * called from several threads. */
#ifndef EOPT_LOG_H
#define EOPT_LOG_H

typedef enum {
    EOPT_LOG_PROGRESS = 0, /* a transient status line (a terminal may overwrite it in place) */
    EOPT_LOG_INFO,         /* what a run did: resumed from, finished at, a sample of text */
    EOPT_LOG_WARN,         /* something was ignored or changed on the user's behalf */
} eopt_log_level;

typedef void (*eopt_log_fn)(eopt_log_level level, const char *msg, void *user);

/* NULL drops every message. */
void eopt_log_set_handler(eopt_log_fn fn, void *user);
void eopt_log(eopt_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
