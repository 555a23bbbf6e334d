/* atomic_file.c - temporary file + fsync + rename (see atomic_file.h). */
#include "io/atomic_file.h"
#include "core/error.h"
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

moe_status moe_atomic_open(moe_atomic_file *af, const char *path) {
    memset(af, 0, sizeof *af);
    size_t n = strlen(path) + 32;
    af->path = strdup(path);
    af->tmp = malloc(n);
    if (!af->path || !af->tmp) { moe_atomic_abort(af); return moe_fail(MOE_ENOMEM, "out of memory"); }
    snprintf(af->tmp, n, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(af->tmp);
    if (fd < 0) {
        moe_status st = moe_fail(MOE_EIO, "%s: cannot create a temporary file: %s", path, strerror(errno));
        free(af->tmp); af->tmp = NULL;
        moe_atomic_abort(af);
        return st;
    }
    fchmod(fd, 0644);
    af->f = fdopen(fd, "wb");
    if (!af->f) { close(fd); moe_atomic_abort(af); return moe_fail(MOE_EIO, "%s: fdopen failed", path); }
    return MOE_OK;
}

static void fsync_dir(const char *path) {
    char *copy = strdup(path);
    if (!copy) return;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
    if (fd >= 0) { fsync(fd); close(fd); }
    free(copy);
}

moe_status moe_atomic_commit(moe_atomic_file *af) {
    moe_status st = MOE_OK;
    if (fflush(af->f) != 0 || ferror(af->f) || fsync(fileno(af->f)) != 0)
        st = moe_fail(MOE_EIO, "%s: write failed: %s", af->path, strerror(errno));
    if (fclose(af->f) != 0 && st == MOE_OK) st = moe_fail(MOE_EIO, "%s: close failed: %s", af->path, strerror(errno));
    af->f = NULL;
    if (st == MOE_OK && rename(af->tmp, af->path) != 0)
        st = moe_fail(MOE_EIO, "%s: rename failed: %s", af->path, strerror(errno));
    if (st != MOE_OK) unlink(af->tmp);
    else fsync_dir(af->path);
    free(af->tmp); free(af->path);
    af->tmp = af->path = NULL;
    return st;
}

void moe_atomic_abort(moe_atomic_file *af) {
    if (af->f) fclose(af->f);
    if (af->tmp) unlink(af->tmp);
    free(af->tmp); free(af->path);
    memset(af, 0, sizeof *af);
}
