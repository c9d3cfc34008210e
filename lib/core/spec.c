/* spec.c — method specs: "name" or "name:key=value,key=value".
 *
 * Parsing fills every parameter with its default and overrides the ones given; each value is
 * checked against the parameter's range and integrality.  A parameter whose default lies outside
 * its range is chosen from the problem when the plan is made; its default is written "auto" (and
 * "auto" may be given explicitly).  The canonical form lists every
 * parameter in table order, numbers in the shortest form that reads back to the same double, so
 * that parse(format(x)) == x bit for bit.
 */
#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "attn_impl.h"

#define SPEC_MAX 1024

static void trim(char **s)
{
    char *b = *s;
    while (isspace((unsigned char) *b))
        b++;
    char *e = b + strlen(b);
    while (e > b && isspace((unsigned char) e[-1]))
        *--e = '\0';
    *s = b;
}

static int unknown_method(const char *name)
{
    char known[SPEC_MAX] = "";
    size_t pos = 0;
    for (size_t t = 0; t < attn_method_count() && pos < sizeof known; t++) {
        int k = snprintf(known + pos, sizeof known - pos, "%s%s", t ? ", " : "",
                         attn_method_name(attn_method_at(t)));
        if (k > 0)
            pos += (size_t) k;
    }
    return ATTN_ERR(ATTN_ENOMETHOD, "unknown method '%s' (known: %s)", name, known);
}

static int unknown_param(const attn_method *method, const char *key)
{
    char names[SPEC_MAX] = "";
    size_t pos = 0;
    for (const attn_param *p = method->params; p->name != NULL && pos < sizeof names; p++) {
        int k = snprintf(names + pos, sizeof names - pos, "%s%s", p == method->params ? "" : ", ",
                         p->name);
        if (k > 0)
            pos += (size_t) k;
    }
    return ATTN_ERR(ATTN_EPARAM, "%s: unknown parameter '%s' (parameters: %s)", method->id, key,
                    pos ? names : "none");
}

static int parse_value(const attn_method *method, const attn_param *p, const char *text,
                       double *value)
{
    if (p->choices != NULL) {
        for (size_t c = 0; p->choices[c] != NULL; c++)
            if (strcmp(p->choices[c], text) == 0) {
                *value = (double) c;
                return ATTN_OK;
            }
        char names[SPEC_MAX] = "";
        size_t pos = 0;
        for (size_t c = 0; p->choices[c] != NULL && pos < sizeof names; c++) {
            int k = snprintf(names + pos, sizeof names - pos, "%s%s", c ? ", " : "",
                             p->choices[c]);
            if (k > 0)
                pos += (size_t) k;
        }
        return ATTN_ERR(ATTN_EPARAM, "%s: parameter %s = '%s' is not one of {%s}", method->id,
                        p->name, text, names);
    }
    /* A default outside the range means "chosen from the problem" and is written "auto". */
    int has_auto = p->value < p->lo || p->value > p->hi;
    if (has_auto && strcmp(text, "auto") == 0) {
        *value = p->value;
        return ATTN_OK;
    }
    char *end = NULL;
    errno = 0;
    double x = strtod(text, &end);
    if (end == text || *end != '\0' || isnan(x))
        return ATTN_ERR(ATTN_EPARAM, "%s: parameter %s = '%s' is not a number", method->id,
                        p->name, text);
    if (p->integer && x != floor(x))
        return ATTN_ERR(ATTN_EPARAM, "%s: parameter %s = %s must be an integer", method->id,
                        p->name, text);
    if (x < p->lo || x > p->hi)
        return ATTN_ERR(ATTN_EPARAM, "%s: parameter %s = %s is out of range [%g, %g]",
                        method->id, p->name, text, p->lo, p->hi);
    *value = x;
    return ATTN_OK;
}

int attn_spec_parse(const char *spec, const attn_method **out, double *values)
{
    char copy[SPEC_MAX];
    if (spec == NULL || strlen(spec) >= sizeof copy)
        return ATTN_ERR(ATTN_EINVAL, "spec is %s", spec == NULL ? "NULL" : "too long");
    strcpy(copy, spec);
    char *name = copy;
    char *rest = strchr(copy, ':');
    if (rest != NULL)
        *rest++ = '\0';
    trim(&name);
    const attn_method *method = attn_method_find(name);
    if (method == NULL)
        return unknown_method(name);
    size_t count = 0;
    for (const attn_param *p = method->params; p->name != NULL; p++)
        values[count++] = p->value;
    unsigned char seen[64] = { 0 };
    while (rest != NULL) {
        char *item = rest;
        rest = strchr(item, ',');
        if (rest != NULL)
            *rest++ = '\0';
        trim(&item);
        if (*item == '\0')
            continue;
        char *eq = strchr(item, '=');
        if (eq == NULL)
            return ATTN_ERR(ATTN_EPARAM, "%s: '%s' is not key=value", method->id, item);
        *eq = '\0';
        char *key = item, *text = eq + 1;
        trim(&key);
        trim(&text);
        long t = attn_param_index(method, key);
        if (t < 0)
            return unknown_param(method, key);
        if (seen[t])
            return ATTN_ERR(ATTN_EPARAM, "%s: parameter %s given twice", method->id, key);
        seen[t] = 1;
        ATTN_TRY(parse_value(method, &method->params[t], text, &values[t]), "spec '%s'", spec);
    }
    *out = method;
    return ATTN_OK;
}

/* Integers as integers; otherwise the shortest %.Ng that reads back to exactly x. */
static void format_number(double x, char *buf, size_t len)
{
    if (x == floor(x) && fabs(x) < 1e15) {
        snprintf(buf, len, "%.0f", x);
        return;
    }
    for (int digits = 1; digits <= 17; digits++) {
        snprintf(buf, len, "%.*g", digits, x);
        if (strtod(buf, NULL) == x)
            return;
    }
}

size_t attn_spec_format(const attn_method *method, const double *values, char *buf, size_t len)
{
    size_t pos = 0;
    char number[64];
    int k = snprintf(buf, len, "%s", method->id);
    pos = k > 0 ? (size_t) k : 0;
    size_t t = 0;
    for (const attn_param *p = method->params; p->name != NULL; p++, t++) {
        const char *text = number;
        if (p->choices != NULL)
            text = p->choices[(size_t) values[t]];
        else if (values[t] == p->value && (p->value < p->lo || p->value > p->hi))
            text = "auto";
        else
            format_number(values[t], number, sizeof number);
        k = snprintf(pos < len ? buf + pos : NULL, pos < len ? len - pos : 0, "%c%s=%s",
                     t == 0 ? ':' : ',', p->name, text);
        if (k > 0)
            pos += (size_t) k;
    }
    return pos;
}
