/* Parameters and group selectors (params.h). */
#include "params.h"

#include <fnmatch.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int matches_any(const char (*patterns)[EOPT_NAME_MAX], int n, const char *name)
{
    for (int k = 0; k < n; k++)
        if (fnmatch(patterns[k], name, 0) == 0)
            return 1;
    return 0;
}

int eopt_param_selected(const eopt_param_select *s, const eopt_param *p)
{
    if (s->npatterns > 0 && !matches_any(s->patterns, s->npatterns, p->name))
        return 0;
    if (matches_any(s->exclude, s->nexclude, p->name))
        return 0;
    return s->ndim_mask == 0 || (s->ndim_mask >> p->w->ndim) & 1u;
}

/* Appends to a message buffer, silently truncating (the message stays readable). */
__attribute__((format(printf, 3, 4))) static void append(char *buf, size_t size, const char *fmt, ...)
{
    size_t len = strlen(buf);
    if (len + 8 >= size)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + len, size - len, fmt, ap);
    va_end(ap);
}

/* Every pattern matches some parameter and every selector takes one. */
static eopt_status check_selectors(const eopt_param_select *const *sel, int nsel, const eopt_param *params,
                                   int nparams, const int *owner)
{
    for (int k = 0; k < nsel; k++) {
        for (int j = 0; j < sel[k]->npatterns; j++) {
            int any = 0;
            for (int i = 0; i < nparams && !any; i++)
                any = fnmatch(sel[k]->patterns[j], params[i].name, 0) == 0;
            if (!any)
                return eopt_fail(EOPT_ERR_CONFIG, "%s: pattern '%s' matches no parameter", sel[k]->where,
                                 sel[k]->patterns[j]);
        }
        int n = 0;
        for (int i = 0; i < nparams; i++)
            n += owner[i] == k;
        if (n == 0)
            return eopt_fail(EOPT_ERR_CONFIG, "%s: this group owns no parameter", sel[k]->where);
    }
    return EOPT_OK;
}

eopt_status eopt_params_assign(const eopt_param_select *const *sel, int nsel, const eopt_param *params, int nparams,
                               const char *what, int *owner)
{
    char unowned[2048] = "", twice[2048] = "";
    for (int i = 0; i < nparams; i++) {
        owner[i] = -1;
        for (int k = 0; k < nsel; k++) {
            if (!eopt_param_selected(sel[k], &params[i]))
                continue;
            if (owner[i] >= 0)
                append(twice, sizeof twice, "\n  %s (claimed by %s and %s)", params[i].name, sel[owner[i]]->where,
                       sel[k]->where);
            else
                owner[i] = k;
        }
        if (owner[i] < 0)
            append(unowned, sizeof unowned, "%s%s", unowned[0] ? ", " : "", params[i].name);
    }
    if (unowned[0] || twice[0])
        return eopt_fail(EOPT_ERR_CONFIG, "%s: %s%s%s%s", what, unowned[0] ? "parameters in no group: " : "", unowned,
                         twice[0] ? (unowned[0] ? "; parameters in two groups:" : "parameters in two groups:") : "",
                         twice);
    return check_selectors(sel, nsel, params, nparams, owner);
}
