/* error.h - the one error convention of libmoe.
 * A failing function calls moe_fail(status, "file: problem", ...) once, where the problem is found,
 * and returns its result; callers pass the status up unchanged. The message is thread-local. */
#ifndef MOE_CORE_ERROR_H
#define MOE_CORE_ERROR_H
#include "moe.h"

#if defined(__GNUC__)
#define MOE_PRINTF(a, b) __attribute__((format(printf, a, b)))
#else
#define MOE_PRINTF(a, b)
#endif

moe_status moe_fail(moe_status st, const char *fmt, ...) MOE_PRINTF(2, 3);
/* Prefix the current message with "prefix: " (used where a lower layer lacked the file name). */
void moe_error_prefix(const char *prefix);
void moe_clear_error(void);

#define MOE_TRY(expr) do { moe_status moe_try_st_ = (expr); if (moe_try_st_ != MOE_OK) return moe_try_st_; } while (0)

#endif
