/* atomic_file.h - write a file so that a crash at any moment leaves either the old file or the
 * complete new one: write to a temporary file in the same folder, fsync, rename over the target,
 * fsync the folder. */
#ifndef MOE_IO_ATOMIC_FILE_H
#define MOE_IO_ATOMIC_FILE_H
#include <stdio.h>
#include "moe.h"

typedef struct moe_atomic_file {
    FILE *f;
    char *path, *tmp;
} moe_atomic_file;

moe_status moe_atomic_open(moe_atomic_file *af, const char *path);
/* Flush, fsync, rename. Always releases af. */
moe_status moe_atomic_commit(moe_atomic_file *af);
/* Discard the temporary file. */
void moe_atomic_abort(moe_atomic_file *af);
#endif
