/* fuzz_common.h - what every harness checks besides "no crash": a failure leaves exactly one
 * message, on one line, that starts with the path the parser was given (the CLI prints it as
 * "moe: <path>: <problem>"). A violation aborts, so libFuzzer keeps the input. */
#ifndef MOE_FUZZ_COMMON_H
#define MOE_FUZZ_COMMON_H
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "moe.h"

#define FUZZ_ASSERT(cond) do { if (!(cond)) { fprintf(stderr, "fuzz invariant failed: %s (%s:%d)\n", #cond, \
    __FILE__, __LINE__); abort(); } } while (0)

static inline void fuzz_check_message(const char *path) {
    const char *msg = moe_last_error();
    size_t n = strlen(path);
    if (strncmp(msg, path, n) != 0 || strncmp(msg + n, ": ", 2) != 0 || !msg[n + 2] || strchr(msg, '\n')) {
        fprintf(stderr, "bad error message: \"%s\"\n", msg);
        abort();
    }
}
#endif
