/* error.c - thread-local last-error message (see error.h for the convention). */
#include "core/error.h"
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char g_message[1024];

moe_status moe_fail(moe_status st, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g_message, sizeof g_message, fmt, ap);
    va_end(ap);
    /* One line: messages embed file contents at times, so strip control characters. */
    for (char *p = g_message; *p; p++)
        if ((unsigned char)*p < 0x20) *p = ' ';
    return st;
}

void moe_error_prefix(const char *prefix) {
    char tmp[sizeof g_message];
    snprintf(tmp, sizeof tmp, "%.200s: %.800s", prefix, g_message);
    memcpy(g_message, tmp, sizeof g_message);
}

void moe_clear_error(void) { g_message[0] = 0; }

const char *moe_last_error(void) { return g_message; }

int moe_exit_code(moe_status st) {
    switch (st) {
    case MOE_OK: return 0;
    case MOE_EUSAGE: return 1;
    case MOE_EINPUT: case MOE_EIO: case MOE_ENOMEM: return 2;
    case MOE_EINTERRUPTED: return 130;
    default: return 3;
    }
}
