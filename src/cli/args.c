/* args.c - table-driven option parsing (see args.h). */
#include "cli/args.h"
#include "moe.h"
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int g_threads_opt;

int moe_parse_long(const char *s, long long *out) {
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end) return -1;
    *out = v;
    return 0;
}

int moe_parse_double(const char *s, double *out) {
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || !isfinite(v)) return -1;
    *out = v;
    return 0;
}

int moe_parse_bytes(const char *s, int64_t *out) {
    if (!s || !*s) return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || !isfinite(v) || v < 0) return -1;
    double mul = 1;
    if (*end) {
        switch (*end) {
        case 'k': case 'K': mul = 1024.0; break;
        case 'm': case 'M': mul = 1024.0 * 1024; break;
        case 'g': case 'G': mul = 1024.0 * 1024 * 1024; break;
        case 't': case 'T': mul = 1024.0 * 1024 * 1024 * 1024; break;
        default: return -1;
        }
        end++;
        if (*end == 'i') end++;
        if (*end == 'B' || *end == 'b') end++;
        if (*end) return -1;
    }
    v *= mul;
    if (v > 9.2e18) return -1;
    *out = (int64_t)v;
    return 0;
}

static const moe_opt k_common[] = {
    {"threads", 't', ARG_INT, &g_threads_opt, "N", "worker threads (default: all cores)", 1, 1024},
    {"help", 'h', ARG_FLAG, NULL, NULL, "show this help and exit", 0, 0},
    {0},
};

static void print_opts(const moe_opt *o) {
    for (; o && o->name; o++) {
        char left[64];
        if (o->short_name) snprintf(left, sizeof left, "-%c, --%s%s%s", o->short_name, o->name, o->metavar ? " " : "", o->metavar ? o->metavar : "");
        else snprintf(left, sizeof left, "    --%s%s%s", o->name, o->metavar ? " " : "", o->metavar ? o->metavar : "");
        printf("  %-28s %s\n", left, o->help);
    }
}

void moe_args_help(const moe_cmd_spec *spec) {
    printf("usage: moe %s %s\n\n%s\n\noptions:\n", spec->name, spec->usage, spec->summary);
    print_opts(spec->opts);
    print_opts(k_common);
    if (spec->details) printf("\n%s\n", spec->details);
}

static const moe_opt *find_long(const moe_opt *t, const char *name, size_t len) {
    for (; t && t->name; t++)
        if (strlen(t->name) == len && strncmp(t->name, name, len) == 0) return t;
    return NULL;
}

static const moe_opt *find_short(const moe_opt *t, char c) {
    for (; t && t->name; t++)
        if (t->short_name == c) return t;
    return NULL;
}

static int usage_error(const moe_cmd_spec *spec, const char *fmt, const char *a, const char *b) {
    fprintf(stderr, "moe %s: ", spec->name);
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, " (see moe %s --help)\n", spec->name);
    return MOE_ARGS_USAGE;
}

static int set_value(const moe_cmd_spec *spec, const moe_opt *o, const char *flag, const char *val) {
    long long l;
    double d;
    int64_t b;
    switch (o->type) {
    case ARG_FLAG: *(int *)o->dest = 1; return 0;
    case ARG_INT:
        if (moe_parse_long(val, &l) || (o->min != o->max && (l < o->min || l > o->max)) || l < -2147483647LL ||
            l > 2147483647LL)
            return usage_error(spec, "bad value '%s' for %s: expected an integer in range", val, flag);
        *(int *)o->dest = (int)l;
        return 0;
    case ARG_FLOAT:
        if (moe_parse_double(val, &d) || (o->min != o->max && (d < o->min || d > o->max)))
            return usage_error(spec, "bad value '%s' for %s: expected a number in range", val, flag);
        *(double *)o->dest = d;
        return 0;
    case ARG_BYTES:
        if (moe_parse_bytes(val, &b))
            return usage_error(spec, "bad value '%s' for %s: expected a size such as 512M or 2G", val, flag);
        *(int64_t *)o->dest = b;
        return 0;
    case ARG_STR: *(const char **)o->dest = val; return 0;
    }
    return 0;
}

int moe_args_parse(const moe_cmd_spec *spec, int argc, char **argv, const char **pos, int *npos) {
    *npos = 0;
    g_threads_opt = 0;
    int only_pos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const moe_opt *o = NULL;
        const char *val = NULL, *flag = a;
        char flagbuf[64];
        if (!only_pos && strcmp(a, "--") == 0) { only_pos = 1; continue; }
        if (!only_pos && a[0] == '-' && a[1] == '-' && a[2]) {
            const char *eq = strchr(a + 2, '=');
            size_t len = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
            o = find_long(spec->opts, a + 2, len);
            if (!o) o = find_long(k_common, a + 2, len);
            snprintf(flagbuf, sizeof flagbuf, "--%.*s", (int)(len < 40 ? len : 40), a + 2);
            flag = flagbuf;
            if (!o) return usage_error(spec, "unknown option %s%s", flag, "");
            if (eq) {
                if (o->type == ARG_FLAG) return usage_error(spec, "%s takes no value%s", flag, "");
                val = eq + 1;
            }
        } else if (!only_pos && a[0] == '-' && a[1] && a[1] != '-' && !(a[1] >= '0' && a[1] <= '9')) {
            o = find_short(spec->opts, a[1]);
            if (!o) o = find_short(k_common, a[1]);
            snprintf(flagbuf, sizeof flagbuf, "-%c", a[1]);
            flag = flagbuf;
            if (!o) return usage_error(spec, "unknown option %s%s", flag, "");
            if (a[2]) {
                if (o->type == ARG_FLAG) return usage_error(spec, "unknown option %s%s", a, "");
                val = a + 2;
            }
        } else {
            if (*npos >= spec->max_pos) return usage_error(spec, "unexpected argument '%s'%s", a, "");
            pos[(*npos)++] = a;
            continue;
        }
        if (o->dest == NULL) { /* --help */
            moe_args_help(spec);
            return MOE_ARGS_HELP;
        }
        if (o->type != ARG_FLAG && !val) {
            if (i + 1 >= argc) return usage_error(spec, "%s needs a value%s", flag, "");
            val = argv[++i];
        }
        int r = set_value(spec, o, flag, val);
        if (r) return r;
    }
    if (*npos < spec->min_pos) return usage_error(spec, "missing argument: %s%s", spec->usage, "");
    moe_set_threads(g_threads_opt > 0 ? g_threads_opt : 0);
    return MOE_ARGS_OK;
}

int moe_parse_int_list(const char *cmd, const char *flag, const char *s, int32_t **out) {
    *out = NULL;
    if (!s || !*s) { fprintf(stderr, "moe %s: %s is empty\n", cmd, flag); return -1; }
    int cap = 16, n = 0;
    int32_t *v = malloc(sizeof *v * (size_t)cap);
    if (!v) return -1;
    const char *p = s;
    while (*p) {
        char *end = (char *)p;
        errno = 0;
        long long x = *p >= '0' && *p <= '9' ? strtoll(p, &end, 10) : -1; /* digits only: no sign, no spaces */
        if (end == p || errno || x < 0 || x > 2147483647LL || (*end && *end != ',')) {
            fprintf(stderr, "moe %s: bad token id in %s near '%.20s' (expected comma-separated non-negative integers)\n", cmd, flag, p);
            free(v);
            return -1;
        }
        if (n == cap) {
            int32_t *nv = realloc(v, sizeof *v * (size_t)(cap *= 2));
            if (!nv) { free(v); return -1; }
            v = nv;
        }
        v[n++] = (int32_t)x;
        p = *end ? end + 1 : end;
        if (*end == ',' && !*p) { fprintf(stderr, "moe %s: trailing comma in %s\n", cmd, flag); free(v); return -1; }
    }
    *out = v;
    return n;
}
