/* progress.c - see progress.h. */
#include "cli/progress.h"

void moe_cli_bar(FILE *f, long long done, long long total, int width) {
    int fill = total > 0 ? (int)(width * done / total) : width;
    fputc('[', f);
    for (int i = 0; i < width; i++) fputc(i < fill ? '#' : '.', f);
    fprintf(f, "] %3d%%", total > 0 ? (int)(100 * done / total) : 100);
}
