/* out_dir.c - staged model folders swapped in whole, under a lock (see out_dir.h). */
#include "io/out_dir.h"
#include "core/error.h"
#include "io/input_file.h"
#include "io/json.h"
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define STAGING_TAG ".moe-staging-"

int moe_outdir_owned_name(const char *name) {
    static const char *const names[] = {"config.json", "model.safetensors", "model.safetensors.index.json",
                                        "tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                                        "generation_config.json", "vocab.json", "merges.txt", "tokenizer.model",
                                        "added_tokens.json", "chat_template.jinja", "chat_template.json", "train.json",
                                        "train_state.bin", "moe_compression.json"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (!strcmp(name, names[i])) return 1;
    int a, b, n = 0;
    return sscanf(name, "model-%5d-of-%5d.safetensors%n", &a, &b, &n) == 2 && n > 0 && name[n] == 0;
}

/* NAME.tmp.XXXXXX of an owned NAME: what the atomic writer leaves when killed. */
static int is_owned_temporary(const char *name) {
    const char *t = strstr(name, ".tmp.");
    if (!t || strlen(t + 5) != 6 || strstr(t + 5, ".tmp.")) return 0;
    char base[NAME_MAX + 1];
    size_t n = (size_t)(t - name);
    if (n >= sizeof base) return 0;
    memcpy(base, name, n);
    base[n] = 0;
    return moe_outdir_owned_name(base);
}

static char *join(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", dir, name);
    return p;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)flag; (void)ftw;
    remove(path);
    return 0;
}

static void remove_tree(const char *path) { nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

static void fsync_path(const char *path) {
    int fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) { fsync(fd); close(fd); }
}

/* parent and base of the real path final, malloc'ed */
static int split(const char *final, char **parent, char **base) {
    const char *slash = strrchr(final, '/');
    *parent = slash == final ? strdup("/") : strndup(final, (size_t)(slash - final));
    *base = strdup(slash + 1);
    if (*parent && *base) return 0;
    free(*parent); free(*base);
    return -1;
}

/* Remove what killed writers left: PARENT/.BASE.moe-staging-XXXXXX, OUT/.moe-staging-XXXXXX and owned
 * NAME.tmp.XXXXXX files in OUT. Called with the lock held. */
static void clean_leftovers(const moe_outdir *o) {
    char *parent, *base;
    if (split(o->final, &parent, &base) == 0) {
        char prefix[NAME_MAX + 32];
        snprintf(prefix, sizeof prefix, ".%s" STAGING_TAG, base);
        size_t pl = strlen(prefix);
        DIR *d = opendir(parent);
        struct dirent *e;
        while (d && (e = readdir(d)) != NULL)
            if (!strncmp(e->d_name, prefix, pl) && strlen(e->d_name + pl) == 6) {
                char *p = join(parent, e->d_name);
                if (p) remove_tree(p);
                free(p);
            }
        if (d) closedir(d);
        free(parent); free(base);
    }
    DIR *d = opendir(o->final);
    struct dirent *e;
    size_t tl = strlen(STAGING_TAG);
    while (d && (e = readdir(d)) != NULL) {
        int staging = !strncmp(e->d_name, STAGING_TAG, tl) && strlen(e->d_name + tl) == 6;
        if (!staging && !is_owned_temporary(e->d_name)) continue;
        char *p = join(o->final, e->d_name);
        if (p) remove_tree(p);
        free(p);
    }
    if (d) closedir(d);
}

/* Whether final holds something that cannot be carried into a new folder (a subfolder, a FIFO, ...);
 * its name goes into o->why. */
static int has_uncarriable(moe_outdir *o) {
    DIR *d = opendir(o->final);
    struct dirent *e;
    int found = 0;
    while (!found && d && (e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || moe_outdir_owned_name(e->d_name)) continue;
        char *p = join(o->final, e->d_name);
        struct stat sb;
        if (p && lstat(p, &sb) == 0 && !S_ISREG(sb.st_mode) && !S_ISLNK(sb.st_mode)) {
            snprintf(o->why, sizeof o->why, "it holds %.100s, %s", e->d_name, moe_file_kind(sb.st_mode));
            found = 1;
        }
        free(p);
    }
    if (d) closedir(d);
    return found;
}

static void choose_mode(moe_outdir *o) {
    char *parent, *base;
    struct stat a, b;
    if (split(o->final, &parent, &base) != 0) { o->in_place = 1; snprintf(o->why, sizeof o->why, "out of memory"); return; }
    if (!strcmp(o->final, "/")) {
        o->in_place = 1;
        snprintf(o->why, sizeof o->why, "it is the root folder");
    } else if (stat(parent, &a) != 0 || stat(o->final, &b) != 0 || a.st_dev != b.st_dev) {
        o->in_place = 1;
        snprintf(o->why, sizeof o->why, "it is a mount point");
    } else if (access(parent, W_OK | X_OK) != 0) {
        o->in_place = 1;
        snprintf(o->why, sizeof o->why, "its parent folder %.100s is not writable", parent);
    } else if (has_uncarriable(o)) {
        o->in_place = 1;
    }
    free(parent); free(base);
}

moe_status moe_outdir_open(moe_outdir *o, const char *flag, const char *dir) {
    memset(o, 0, sizeof *o);
    o->lock_fd = -1;
    struct stat sb;
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) return moe_fail(MOE_EIO, "%s: cannot create the folder: %s", dir, strerror(errno));
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode)) return moe_fail(MOE_EINPUT, "%s: not a folder", dir);
    if (!(o->final = realpath(dir, NULL))) return moe_fail(MOE_EIO, "%s: cannot resolve the path: %s", dir, strerror(errno));
    /* the folder at the path may be exchanged between our open and our flock: lock, then check that the
     * path still names what we locked */
    for (int tries = 0; tries < 100; tries++) {
        int fd = open(o->final, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0) { moe_outdir_close(o); return moe_fail(MOE_EIO, "%s: cannot open the folder: %s", dir, strerror(errno)); }
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            int e = errno;
            close(fd);
            moe_outdir_close(o);
            if (e == EWOULDBLOCK)
                return moe_fail(MOE_EUSAGE, "%s %s: another moe process is writing this folder (it holds the lock); wait "
                                "for it to end or choose another folder", flag, dir);
            return moe_fail(MOE_EIO, "%s: cannot lock the folder: %s", dir, strerror(e));
        }
        struct stat now, held;
        if (stat(o->final, &now) == 0 && fstat(fd, &held) == 0 && now.st_dev == held.st_dev && now.st_ino == held.st_ino) {
            o->lock_fd = fd;
            break;
        }
        close(fd);
    }
    if (o->lock_fd < 0) { moe_outdir_close(o); return moe_fail(MOE_EIO, "%s: the folder keeps changing; cannot lock it", dir); }
    clean_leftovers(o);
    choose_mode(o);
    return MOE_OK;
}

moe_status moe_outdir_begin(moe_outdir *o) {
    moe_outdir_abort(o);
    struct stat sb;
    mode_t mode = stat(o->final, &sb) == 0 ? (sb.st_mode & 07777) : 0755;
    for (int attempt = 0; attempt < 2 && !o->write; attempt++) {
        char *parent = NULL, *base = NULL, *tmpl;
        if (o->in_place) {
            tmpl = join(o->final, STAGING_TAG "XXXXXX");
        } else {
            if (split(o->final, &parent, &base) != 0) return moe_fail(MOE_ENOMEM, "out of memory");
            char name[NAME_MAX + 32];
            snprintf(name, sizeof name, ".%s" STAGING_TAG "XXXXXX", base);
            tmpl = join(parent, name);
        }
        free(parent); free(base);
        if (!tmpl) return moe_fail(MOE_ENOMEM, "out of memory");
        if (mkdtemp(tmpl)) {
            chmod(tmpl, mode);
            o->write = tmpl;
        } else {
            int e = errno;
            free(tmpl);
            if (o->in_place) return moe_fail(MOE_EIO, "%s: cannot create a staging folder: %s", o->final, strerror(e));
            o->in_place = 1;
            snprintf(o->why, sizeof o->why, "no staging folder can be made beside it (%s)", strerror(e));
        }
    }
    return MOE_OK;
}

/* Whether path holds exactly buf[0..len). */
static int same_bytes(const char *path, const void *buf, size_t len) {
    struct stat sb;
    if (lstat(path, &sb) != 0 || !S_ISREG(sb.st_mode) || (uint64_t)sb.st_size != (uint64_t)len) return 0;
    FILE *f;
    if (moe_input_fopen(path, &f) != MOE_OK) { moe_clear_error(); return 0; }
    char chunk[65536];
    size_t off = 0, n;
    int same = 1;
    while (same && (n = fread(chunk, 1, sizeof chunk, f)) > 0) {
        same = off + n <= len && !memcmp(chunk, (const char *)buf + off, n);
        off += n;
    }
    fclose(f);
    return same && off == len;
}

moe_status moe_outdir_put(moe_outdir *o, const char *name, const void *buf, size_t len) {
    if (!o->write) return moe_fail(MOE_EINTERNAL, "moe_outdir_put outside a save");
    char *path = join(o->write, name), *prev = join(o->final, name);
    moe_status st = path && prev ? MOE_OK : moe_fail(MOE_ENOMEM, "out of memory");
    if (!st && !(same_bytes(prev, buf, len) && link(prev, path) == 0)) {
        int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd < 0) st = moe_fail(MOE_EIO, "%s/%s: cannot create: %s", o->final, name, strerror(errno));
        const char *p = buf;
        size_t left = len;
        while (!st && left > 0) {
            ssize_t w = write(fd, p, left);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) st = moe_fail(MOE_EIO, "%s/%s: write failed: %s", o->final, name, w < 0 ? strerror(errno) : "no progress");
            else { p += w; left -= (size_t)w; }
        }
        if (!st && fsync(fd) != 0) st = moe_fail(MOE_EIO, "%s/%s: write failed: %s", o->final, name, strerror(errno));
        if (fd >= 0 && close(fd) != 0 && !st) st = moe_fail(MOE_EIO, "%s/%s: close failed: %s", o->final, name, strerror(errno));
    }
    free(path); free(prev);
    return st;
}

moe_status moe_outdir_copy(moe_outdir *o, const char *name, const char *from) {
    char *buf;
    size_t len;
    MOE_TRY(moe_read_file(from, (size_t)1 << 30, &buf, &len));
    moe_status st = moe_outdir_put(o, name, buf, len);
    free(buf);
    return st;
}

/* Staged mode: the old folder's own files (not owned by the writer) go into the new one. */
static moe_status carry_foreign(moe_outdir *o) {
    DIR *d = opendir(o->final);
    if (!d) return moe_fail(MOE_EIO, "%s: cannot list the folder: %s", o->final, strerror(errno));
    struct dirent *e;
    moe_status st = MOE_OK;
    while (!st && (e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..") || moe_outdir_owned_name(e->d_name)) continue;
        char *from = join(o->final, e->d_name), *to = join(o->write, e->d_name);
        struct stat sb;
        if (!from || !to) st = moe_fail(MOE_ENOMEM, "out of memory");
        else if (lstat(from, &sb) != 0 || lstat(to, &sb) == 0) { /* gone, or the writer made one */ }
        else if (S_ISLNK(sb.st_mode)) {
            char target[PATH_MAX];
            ssize_t n = readlink(from, target, sizeof target - 1);
            if (n >= 0) target[n] = 0;
            if (n < 0 || symlink(target, to) != 0)
                st = moe_fail(MOE_EIO, "%s: cannot carry the link into the new folder: %s", from, strerror(errno));
        } else if (S_ISREG(sb.st_mode) && link(from, to) != 0) {
            st = moe_fail(MOE_EIO, "%s: cannot carry the file into the new folder: %s", from, strerror(errno));
        }
        free(from); free(to);
    }
    closedir(d);
    return st;
}

/* In-place mode: rename the staged files into final, config.json last; owned files of the old model
 * that the new one lacks (stale shards, an old index) are removed before config.json, the commit
 * point, is renamed. */
static moe_status commit_in_place(moe_outdir *o) {
    DIR *d = opendir(o->write);
    if (!d) return moe_fail(MOE_EIO, "%s: cannot list the staging folder: %s", o->write, strerror(errno));
    struct dirent *e;
    moe_status st = MOE_OK;
    char **names = NULL;
    int n = 0, cap = 0, has_config = 0;
    while (!st && (e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (n == cap) {
            char **g = realloc(names, sizeof *names * (size_t)(cap = cap ? cap * 2 : 16));
            if (!g) { st = moe_fail(MOE_ENOMEM, "out of memory"); break; }
            names = g;
        }
        if (!(names[n++] = strdup(e->d_name))) st = moe_fail(MOE_ENOMEM, "out of memory");
    }
    closedir(d);
    for (int i = 0; !st && i < n; i++) {
        if (!strcmp(names[i], "config.json")) { has_config = 1; continue; }
        char *from = join(o->write, names[i]), *to = join(o->final, names[i]);
        if (!from || !to) st = moe_fail(MOE_ENOMEM, "out of memory");
        else if (rename(from, to) != 0) st = moe_fail(MOE_EIO, "%s: cannot move into place: %s", to, strerror(errno));
        free(from); free(to);
    }
    if (!st && (d = opendir(o->final)) != NULL) {
        while ((e = readdir(d)) != NULL) {
            if (!moe_outdir_owned_name(e->d_name) || !strcmp(e->d_name, "config.json")) continue;
            int staged = 0;
            for (int i = 0; i < n && !staged; i++) staged = !strcmp(names[i], e->d_name);
            if (staged) continue;
            char *old = join(o->final, e->d_name);
            if (old) unlink(old);
            free(old);
        }
        closedir(d);
    }
    if (!st && has_config) {
        char *from = join(o->write, "config.json"), *to = join(o->final, "config.json");
        fsync_path(o->final);
        if (!from || !to) st = moe_fail(MOE_ENOMEM, "out of memory");
        else if (rename(from, to) != 0) st = moe_fail(MOE_EIO, "%s: cannot move into place: %s", to, strerror(errno));
        free(from); free(to);
    }
    fsync_path(o->final);
    for (int i = 0; i < n; i++) free(names[i]);
    free(names);
    return st;
}

moe_status moe_outdir_commit(moe_outdir *o) {
    if (!o->write) return moe_fail(MOE_EINTERNAL, "moe_outdir_commit outside a save");
    moe_status st = MOE_OK;
    fsync_path(o->write);
    if (!o->in_place && carry_foreign(o) != MOE_OK) {
        /* a file of the user's that cannot be linked (another owner under protected_hardlinks, too many
         * links): leave the folder in place and rename the new files in instead */
        snprintf(o->why, sizeof o->why, "%.150s", moe_last_error());
        moe_clear_error();
        o->in_place = 1;
    }
    if (!o->in_place) {
        int nfd = open(o->write, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (!st && (nfd < 0 || flock(nfd, LOCK_EX | LOCK_NB) != 0))
            st = moe_fail(MOE_EIO, "%s: cannot lock the staging folder: %s", o->write, strerror(errno));
        if (!st) fsync_path(o->write);
        if (!st && renameat2(AT_FDCWD, o->write, AT_FDCWD, o->final, RENAME_EXCHANGE) == 0) {
            char *parent, *base;
            if (split(o->final, &parent, &base) == 0) { fsync_path(parent); free(parent); free(base); }
            close(o->lock_fd);        /* the old folder, now under the staging name */
            o->lock_fd = nfd;
            remove_tree(o->write);
            free(o->write);
            o->write = NULL;
            return MOE_OK;
        }
        if (nfd >= 0) close(nfd);
        if (st) { moe_outdir_abort(o); return st; }
        /* no exchange here (EINVAL: the file system lacks it; EBUSY: a mount point): from now on the
         * files are renamed in one by one */
        o->in_place = 1;
        snprintf(o->why, sizeof o->why, "the file system cannot exchange folders (%s)", strerror(errno));
    }
    st = commit_in_place(o);
    moe_outdir_abort(o);
    return st;
}

void moe_outdir_abort(moe_outdir *o) {
    if (o->write) remove_tree(o->write);
    free(o->write);
    o->write = NULL;
}

void moe_outdir_close(moe_outdir *o) {
    moe_outdir_abort(o);
    if (o->lock_fd >= 0) close(o->lock_fd);
    o->lock_fd = -1;
    free(o->final);
    o->final = NULL;
}
