/* atomic_file.h - write a file so that a crash at any moment leaves either the old file or the
 * complete new one: write to a temporary file in the same folder, fsync, rename over the target,
 * fsync the folder.
 *
 * An output path is user input too. It may be absent (its folder must exist and be writable), a
 * regular file, or a symbolic link to a regular file (the link stays and its target is replaced).
 * Anything else is refused with one line naming the path: a FIFO, a device node, a socket or a
 * folder is never replaced, directly or through a link, and a link to nothing is not followed to
 * create a file somewhere else. Commands check their outputs with moe_atomic_check before long
 * work, so that a bad path fails at once rather than after hours of training. */
#ifndef MOE_IO_ATOMIC_FILE_H
#define MOE_IO_ATOMIC_FILE_H
#include <stdio.h>
#include "moe.h"

typedef struct moe_atomic_file {
    FILE *f;
    char *path, *tmp;   /* path: the file replaced (a link's target when the output is a link) */
} moe_atomic_file;

/* Refuses a target that moe_atomic_check refuses. */
moe_status moe_atomic_open(moe_atomic_file *af, const char *path);
/* Flush, fsync, rename. Always releases af. */
moe_status moe_atomic_commit(moe_atomic_file *af);
/* Discard the temporary file. */
void moe_atomic_abort(moe_atomic_file *af);

/* Whether moe_atomic_open(path) would be allowed now (MOE_EINPUT naming the path if not). */
moe_status moe_atomic_check(const char *path);
/* Whether dir can hold outputs: an existing writable folder (or a link to one), or absent with a
 * writable parent folder so that it can be created (MOE_EINPUT naming dir if not). */
moe_status moe_atomic_check_dir(const char *dir);
#endif
