/* registry.c — the table of methods, expanded from lib/methods.def, and its queries. */
#include "config.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "attn_impl.h"

#define ATTN_METHOD(id) extern const attn_method attn_method_##id;
#include "methods.def"
#undef ATTN_METHOD

static const attn_method *const registry[] = {
#define ATTN_METHOD(id) &attn_method_##id,
#include "methods.def"
#undef ATTN_METHOD
};

size_t attn_method_count(void)
{
    return sizeof registry / sizeof registry[0];
}

const attn_method *attn_method_at(size_t index)
{
    return index < attn_method_count() ? registry[index] : NULL;
}

const attn_method *attn_method_find(const char *id)
{
    for (size_t t = 0; t < attn_method_count(); t++)
        if (strcmp(registry[t]->id, id) == 0)
            return registry[t];
    return NULL;
}

const char *attn_method_name(const attn_method *method)
{
    return method->id;
}

const char *attn_method_summary(const attn_method *method)
{
    return method->summary;
}

const char *attn_method_reference(const attn_method *method)
{
    return method->reference;
}

unsigned attn_method_caps(const attn_method *method)
{
    return method->caps;
}

const attn_param *attn_method_params(const attn_method *method)
{
    return method->params;
}

const char *attn_method_budget(const attn_method *method)
{
    return method->budget;
}

long attn_param_index(const attn_method *method, const char *name)
{
    for (long t = 0; method->params[t].name != NULL; t++)
        if (strcmp(method->params[t].name, name) == 0)
            return t;
    return -1;
}

static size_t param_count(const attn_method *method)
{
    size_t count = 0;
    while (method->params[count].name != NULL)
        count++;
    return count;
}

int attn_method_exact_spec(const attn_method *method, const attn_problem *problem, char *buf,
                           size_t len)
{
    double values[64];
    size_t count = param_count(method);
    if (method->exact_limit == NULL)
        return ATTN_ERR(ATTN_EUNSUP, "%s has no exact limit", method->id);
    ATTN_TRY(attn_problem_check(problem), "%s exact limit", method->id);
    for (size_t t = 0; t < count; t++)
        values[t] = method->params[t].value;
    ATTN_TRY(method->exact_limit(problem, values), "%s exact limit", method->id);
    attn_spec_format(method, values, buf, len);
    return ATTN_OK;
}

/* Append printf output to buf at *pos, tracking the length needed even when buf is full. */
static void put(char *buf, size_t len, size_t *pos, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

static void put(char *buf, size_t len, size_t *pos, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(*pos < len ? buf + *pos : NULL, *pos < len ? len - *pos : 0, fmt, ap);
    va_end(ap);
    if (k > 0)
        *pos += (size_t) k;
}

size_t attn_method_describe(const attn_method *method, char *buf, size_t len)
{
    size_t pos = 0;
    unsigned caps = method->caps;
    if (len > 0)
        buf[0] = '\0';
    put(buf, len, &pos, "%s — %s\n    reference: %s\n    supports:%s%s%s%s%s%s\n", method->id,
        method->summary, method->reference, caps & ATTN_CAN_BIDIR ? " bidirectional" : "",
        caps & ATTN_CAN_CAUSAL ? " causal" : "", caps & ATTN_CAN_RECT ? " m!=n" : "",
        caps & ATTN_ROW_STOCHASTIC ? " row-stochastic" : "", caps & ATTN_RANDOM ? " seeded" : "",
        caps & ATTN_WEIGHTS_DEPEND_ON_V ? " V-dependent-weights" : "");
    put(buf, len, &pos, "    budget parameter: %s; exact limit: %s\n",
        method->budget != NULL ? method->budget : "none",
        method->exact_limit != NULL ? "yes" : "none");
    for (const attn_param *p = method->params; p->name != NULL; p++) {
        if (p->choices != NULL) {
            put(buf, len, &pos, "    %-12s = %-10s {", p->name, p->choices[(size_t) p->value]);
            for (size_t c = 0; p->choices[c] != NULL; c++)
                put(buf, len, &pos, "%s%s", c ? ", " : "", p->choices[c]);
            put(buf, len, &pos, "}  %s\n", p->doc);
        } else {
            /* A default outside the range means "chosen from the problem" (see the doc). */
            char def[32];
            if (p->value < p->lo || p->value > p->hi)
                snprintf(def, sizeof def, "auto");
            else
                snprintf(def, sizeof def, "%.6g", p->value);
            put(buf, len, &pos, "    %-12s = %-10s [%g, %g]%s  %s\n", p->name, def, p->lo, p->hi,
                p->integer ? " integer" : "", p->doc);
        }
    }
    return pos;
}
