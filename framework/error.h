/* Errors: every library function that can fail returns an eopt_status and leaves a
 * message (naming the file, key or value) in a thread-local buffer. Library code never
 * exits or aborts; the caller decides. */
#ifndef EOPT_ERROR_H
#define EOPT_ERROR_H

typedef enum {
    EOPT_OK = 0,
    EOPT_ERR_ARG,         /* a bad argument or hyperparameter value */
    EOPT_ERR_SHAPE,       /* shapes that do not fit */
    EOPT_ERR_NOMEM,       /* an allocation failed */
    EOPT_ERR_IO,          /* a file could not be read or written */
    EOPT_ERR_FORMAT,      /* a file that does not follow the layout */
    EOPT_ERR_NUMERIC,     /* a solver failed, or NaN/Inf where none is allowed */
    EOPT_ERR_DEVICE,      /* the requested device is absent or failed */
    EOPT_ERR_UNSUPPORTED, /* a valid request this build or backend cannot honour */
    EOPT_ERR_CONFIG,      /* a bad configuration file or setting */
    EOPT_ERR_INTERRUPTED, /* stopped by SIGINT/SIGTERM (eopt_interrupt) before finishing; nothing changed */
} eopt_status;

/* Sets the thread's error message (printf-style) and returns `st`, so that
 * `return eopt_fail(EOPT_ERR_ARG, "...", ...)` reads naturally. */
eopt_status eopt_fail(eopt_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prefixes the current message with more context ("loading x.h5: " + old message). */
eopt_status eopt_fail_context(eopt_status st, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *eopt_last_error(void);
/* A process-wide request to stop long operations (async-signal-safe: a program's SIGINT/SIGTERM
 * handler calls it). Operations that wait (the checkpoint guard) return EOPT_ERR_INTERRUPTED;
 * eopt_interrupt_clear() re-arms them. */
void eopt_interrupt(void);
int eopt_interrupted(void);
void eopt_interrupt_clear(void);
const char *eopt_status_name(eopt_status st);
void eopt_clear_error(void);

#define EOPT_TRY(expr)                          \
    do {                                        \
        eopt_status eopt_try_st_ = (expr);      \
        if (eopt_try_st_ != EOPT_OK)            \
            return eopt_try_st_;                \
    } while (0)

#endif
