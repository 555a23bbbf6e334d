/* input_file.c - opening user-named input files without blocking (see input_file.h). */
#include "io/input_file.h"
#include "core/error.h"
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

const char *moe_file_kind(mode_t mode) {
    if (S_ISREG(mode)) return "a regular file";
    if (S_ISDIR(mode)) return "a folder";
    if (S_ISFIFO(mode)) return "a FIFO";
    if (S_ISCHR(mode)) return "a character device";
    if (S_ISBLK(mode)) return "a block device";
    if (S_ISSOCK(mode)) return "a socket";
    if (S_ISLNK(mode)) return "a symbolic link";
    return "not a regular file";
}

moe_status moe_input_open(const char *path, int extra_flags, int *fd, struct stat *st) {
    *fd = -1;
    int f = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | extra_flags);
    if (f < 0) return moe_fail(MOE_EINPUT, "%s: cannot open: %s", path, strerror(errno));
    struct stat sb;
    if (fstat(f, &sb) != 0) {
        int e = errno;
        close(f);
        return moe_fail(MOE_EINPUT, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(f);
        return moe_fail(MOE_EINPUT, "%s: is %s, not a regular file", path, moe_file_kind(sb.st_mode));
    }
    int fl = fcntl(f, F_GETFL);   /* reads of a regular file never block; clear the flag anyway */
    if (fl >= 0) fcntl(f, F_SETFL, fl & ~O_NONBLOCK);
    *fd = f;
    if (st) *st = sb;
    return MOE_OK;
}

moe_status moe_input_fopen(const char *path, FILE **out) {
    *out = NULL;
    int fd;
    MOE_TRY(moe_input_open(path, 0, &fd, NULL));
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        return moe_fail(MOE_ENOMEM, "%s: out of memory", path);
    }
    *out = f;
    return MOE_OK;
}
