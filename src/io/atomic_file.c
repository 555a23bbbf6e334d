/* atomic_file.c - temporary file + fsync + rename, and the rules for output paths (see atomic_file.h). */
#include "io/atomic_file.h"
#include "core/error.h"
#include "io/input_file.h"
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

/* The folder part of path ("." for a bare name), malloc'ed. */
static char *folder_of(const char *path) {
    char *copy = strdup(path);
    if (!copy) return NULL;
    char *d = strdup(dirname(copy));
    free(copy);
    return d;
}

static moe_status check_writable_folder(const char *path, const char *folder) {
    struct stat sb;
    if (stat(folder, &sb) != 0)
        return moe_fail(MOE_EINPUT, "%s: cannot write there: folder %s: %s", path, folder, strerror(errno));
    if (!S_ISDIR(sb.st_mode)) return moe_fail(MOE_EINPUT, "%s: cannot write there: %s is not a folder", path, folder);
    if (access(folder, W_OK | X_OK) != 0)
        return moe_fail(MOE_EINPUT, "%s: cannot write there: folder %s: %s", path, folder, strerror(errno));
    return MOE_OK;
}

/* The file an atomic write to path replaces (path itself, or a link's final target), malloc'ed in
 * *target; refuses what must not be replaced. */
static moe_status resolve_target(const char *path, char **target) {
    *target = NULL;
    if (!*path) return moe_fail(MOE_EINPUT, "output path is empty");
    struct stat sb;
    char *real = NULL;
    const char *file = path;
    if (lstat(path, &sb) != 0) {
        if (errno != ENOENT) return moe_fail(MOE_EINPUT, "%s: cannot check the output path: %s", path, strerror(errno));
    } else if (S_ISLNK(sb.st_mode)) {
        if (!(real = realpath(path, NULL)))
            return moe_fail(MOE_EINPUT, "%s: is a symbolic link to nothing (%s); refusing to write through it", path,
                            strerror(errno));
        if (stat(real, &sb) != 0) {
            moe_status st = moe_fail(MOE_EINPUT, "%s: cannot check the link target %s: %s", path, real, strerror(errno));
            free(real);
            return st;
        }
        if (!S_ISREG(sb.st_mode)) {
            moe_status st = moe_fail(MOE_EINPUT, "%s: is a symbolic link to %s, which is %s; refusing to replace it", path,
                                     real, moe_file_kind(sb.st_mode));
            free(real);
            return st;
        }
        file = real;
    } else if (!S_ISREG(sb.st_mode)) {
        return moe_fail(MOE_EINPUT, "%s: is %s, not a regular file; refusing to replace it", path, moe_file_kind(sb.st_mode));
    }
    char *folder = folder_of(file);
    moe_status st = folder ? check_writable_folder(path, folder) : moe_fail(MOE_ENOMEM, "out of memory");
    free(folder);
    if (st == MOE_OK && !real && !(real = strdup(path))) st = moe_fail(MOE_ENOMEM, "out of memory");
    if (st != MOE_OK) { free(real); return st; }
    *target = real;
    return MOE_OK;
}

moe_status moe_atomic_check(const char *path) {
    char *target;
    MOE_TRY(resolve_target(path, &target));
    free(target);
    return MOE_OK;
}

moe_status moe_atomic_check_dir(const char *dir) {
    if (!*dir) return moe_fail(MOE_EINPUT, "output folder is empty");
    struct stat sb;
    if (stat(dir, &sb) == 0) {
        if (!S_ISDIR(sb.st_mode)) return moe_fail(MOE_EINPUT, "%s: is %s, not a folder", dir, moe_file_kind(sb.st_mode));
        if (access(dir, W_OK | X_OK) != 0) return moe_fail(MOE_EINPUT, "%s: cannot write there: %s", dir, strerror(errno));
        return MOE_OK;
    }
    if (errno != ENOENT) return moe_fail(MOE_EINPUT, "%s: cannot check the output folder: %s", dir, strerror(errno));
    struct stat lsb;
    if (lstat(dir, &lsb) == 0) return moe_fail(MOE_EINPUT, "%s: is a symbolic link to nothing; refusing to create through it", dir);
    char *parent = folder_of(dir);
    moe_status st = parent ? check_writable_folder(dir, parent) : moe_fail(MOE_ENOMEM, "out of memory");
    free(parent);
    return st;
}

moe_status moe_atomic_open(moe_atomic_file *af, const char *path) {
    memset(af, 0, sizeof *af);
    MOE_TRY(resolve_target(path, &af->path));
    size_t n = strlen(af->path) + 32;
    af->tmp = malloc(n);
    if (!af->tmp) { moe_atomic_abort(af); return moe_fail(MOE_ENOMEM, "out of memory"); }
    snprintf(af->tmp, n, "%s.tmp.XXXXXX", af->path);
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
    /* the target may have been swapped for a FIFO or a device while we wrote: look again */
    struct stat sb;
    if (st == MOE_OK && lstat(af->path, &sb) == 0 && !S_ISREG(sb.st_mode))
        st = moe_fail(MOE_EINPUT, "%s: is now %s, not a regular file; refusing to replace it", af->path,
                      moe_file_kind(sb.st_mode));
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
