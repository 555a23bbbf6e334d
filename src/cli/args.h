/* args.h - the one command-line parser of the moe tool. A command describes its options in a table;
 * the parser handles --name value, --name=value, -x value, generates --help from the table, and
 * reports bad flags or values in one line. -t/--threads and -h/--help are common to all commands. */
#ifndef MOE_CLI_ARGS_H
#define MOE_CLI_ARGS_H
#include <stddef.h>
#include <stdint.h>

typedef enum { ARG_FLAG, ARG_INT, ARG_FLOAT, ARG_STR, ARG_BYTES } moe_arg_type;

typedef struct moe_opt {
    const char *name;     /* long name without dashes */
    char short_name;      /* 0 if none */
    moe_arg_type type;
    void *dest;           /* int* (FLAG, INT), double* (FLOAT), const char** (STR), int64_t* (BYTES) */
    const char *metavar;  /* "N", "FILE", ... */
    const char *help;
    double min, max;      /* range for INT and FLOAT (ignored if min == max) */
} moe_opt;

typedef struct moe_cmd_spec {
    const char *name;      /* "logits" */
    const char *usage;     /* "MODEL --tokens IDS [options]" */
    const char *summary;   /* one line */
    const char *details;   /* optional paragraph printed after the options */
    const moe_opt *opts;   /* terminated by an entry with name == NULL */
    int min_pos, max_pos;  /* positional arguments */
} moe_cmd_spec;

enum { MOE_ARGS_OK = 0, MOE_ARGS_USAGE = 1, MOE_ARGS_HELP = 2 };

/* Parse argv[1..argc) for the command. Positionals go to pos[] (capacity max_pos). On a usage error
 * prints "moe NAME: problem" and a hint to stderr. Also applies -t to moe_set_threads. */
int moe_args_parse(const moe_cmd_spec *spec, int argc, char **argv, const char **pos, int *npos);
void moe_args_help(const moe_cmd_spec *spec);
/* Parse a comma-separated list of token ids. Returns count, or -1 with a message on stderr. */
int moe_parse_int_list(const char *cmd, const char *flag, const char *s, int32_t **out);
/* Strict number parsers: 0 ok, -1 bad. */
int moe_parse_long(const char *s, long long *out);
int moe_parse_double(const char *s, double *out);
int moe_parse_bytes(const char *s, int64_t *out); /* 123, 4K, 512M, 2G, 1.5G (powers of 1024) */
#endif
