/* out_dir.h - a model folder written as a whole: a kill at any moment leaves the previous folder or
 * the new one, never a mix, and one writer at a time.
 *
 * Writing a checkpoint file by file (even each file atomically) can leave the new config.json beside
 * the old weights when the process dies between two renames; a model of another shape then fails to
 * load, and one of the same shape loads the wrong weights. So every save goes to a staging folder
 * beside the output (PARENT/.BASE.moe-staging-XXXXXX, each file fsynced), and the commit exchanges the
 * two folders in one step with renameat2(RENAME_EXCHANGE): the path OUT names the old folder or the new
 * one, nothing in between. The old folder, now under the staging name, is then removed; files in it that
 * are not part of a model (notes, plots: any regular file the writer does not own) are carried over
 * into the new folder by hard link first.
 *
 * Where the folders cannot be exchanged (the parent is not writable, OUT is a mount point, the file
 * system lacks the exchange, or OUT holds a folder of its own), the staging folder lies inside OUT and
 * the commit renames its files into OUT one by one, config.json last: config.json is then the commit
 * point (a folder whose config.json is new holds only new files) but a kill between two renames can
 * leave new weights under the old config.json. `in_place` and `why` say when this weaker mode is used.
 *
 * The lock: the writer holds flock() on the folder that OUT names (the new folder is locked before it
 * is swapped in), so a second writer on the same OUT fails at once; the kernel drops the lock when the
 * process exits or is killed. Leftover staging folders and NAME.tmp.XXXXXX files of killed writers are
 * removed when the next writer takes the lock. */
#ifndef MOE_IO_OUT_DIR_H
#define MOE_IO_OUT_DIR_H
#include <stddef.h>
#include "moe.h"

typedef struct moe_outdir {
    char *final;        /* the output folder (its real path) */
    char *write;        /* the staging folder of the save in progress (after moe_outdir_begin), else NULL */
    int lock_fd;        /* the locked folder at `final` */
    int in_place;       /* 1: files are renamed into `final` one by one, config.json last (see above) */
    char why[160];      /* why in_place, for a note to the user */
} moe_outdir;

/* Create dir if absent, take the lock (MOE_EUSAGE naming dir if another process holds it), remove
 * leftovers of killed writers and choose the mode. flag names the option in messages ("--out", "OUT"). */
moe_status moe_outdir_open(moe_outdir *o, const char *flag, const char *dir);
/* Start a save: a fresh, empty staging folder in o->write. */
moe_status moe_outdir_begin(moe_outdir *o);
/* Write name in the staging folder with buf[0..len), fsynced; when the current folder already holds
 * exactly these bytes under that name, link that file instead of writing it again. */
moe_status moe_outdir_put(moe_outdir *o, const char *name, const void *buf, size_t len);
/* Copy a file (e.g. a tokenizer) into the staging folder as name (moe_outdir_put of its bytes). */
moe_status moe_outdir_copy(moe_outdir *o, const char *name, const char *from);
/* Make the staged folder the output (see above); o->write becomes NULL. On failure the staging folder
 * is removed and the output is left as it was. */
moe_status moe_outdir_commit(moe_outdir *o);
/* Drop the save in progress (remove the staging folder). */
void moe_outdir_abort(moe_outdir *o);
/* Abort any save in progress and release the lock. */
void moe_outdir_close(moe_outdir *o);
/* Whether name is a file of a model folder that a writer owns (config, weights and shards, index,
 * tokenizer files, train state...): such files are replaced with the folder and never carried over. */
int moe_outdir_owned_name(const char *name);
#endif
