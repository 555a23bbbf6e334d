/* input_file.h - the one way to open a file the user named for reading (model files, token and text
 * files, tokenizers, configs, training state). Opening a FIFO or a device for reading can wait
 * forever for a writer, so the file is opened with O_NONBLOCK and checked with fstat on the open
 * descriptor (no race with a swap between a stat and the open) before anything is read; anything but
 * a regular file is refused with one line naming the file. */
#ifndef MOE_IO_INPUT_FILE_H
#define MOE_IO_INPUT_FILE_H
#include <stdio.h>
#include <sys/stat.h>
#include "moe.h"

/* Open path read-only; *fd gets a blocking descriptor of a regular file (close it), *st its stat
 * (optional). Fails with MOE_EINPUT "path: cannot open: ..." or "path: not a regular file (...)". */
moe_status moe_input_open(const char *path, int extra_flags, int *fd, struct stat *st);
/* The same as a stdio stream ("rb"). */
moe_status moe_input_fopen(const char *path, FILE **out);
/* What a non-regular file is, for messages: "a FIFO", "a folder", "a character device", ... */
const char *moe_file_kind(mode_t mode);
#endif
