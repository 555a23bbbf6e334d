/* plot.h - pictures without a plotting library: an RGB canvas, a built-in 5x7 bitmap font (upper-case
 * letters, digits, punctuation; lower case is drawn as upper case), a perceptually ordered colour map
 * (viridis-like), labelled heatmaps with a colour scale, and PNG encoding with libpng, to a file
 * (atomically) or to memory (for the self-contained HTML report). */
#ifndef MOE_TOOLS_PLOT_H
#define MOE_TOOLS_PLOT_H
#include <stddef.h>
#include "moe.h"

typedef struct moe_image {
    int w, h;
    unsigned char *rgb;   /* [h][w][3] */
} moe_image;

moe_status moe_image_new(moe_image *im, int w, int h);   /* white */
void moe_image_free(moe_image *im);
void moe_image_rect(moe_image *im, int x, int y, int w, int h, const unsigned char rgb[3]);
/* Text at (x, y) = top-left corner, glyphs scale x scale pixels per font pixel; vertical = rotated a
 * quarter turn anticlockwise (reads bottom to top; (x, y) is then the bottom-left corner). */
void moe_image_text(moe_image *im, int x, int y, const char *s, int scale, int vertical, const unsigned char rgb[3]);
int moe_text_width(const char *s, int scale);
#define MOE_FONT_H 7
/* v in [0, 1] (clamped; NaN gives grey) -> colour. */
void moe_colormap(double v, unsigned char rgb[3]);

typedef struct moe_heatmap {
    const double *v;              /* [rows][cols]; NaN cells are drawn grey */
    int rows, cols;
    const char *title, *xlabel, *ylabel, *scale_label;
    const int *row_ids, *col_ids; /* tick numbers of rows and columns (NULL: 0, 1, 2, ...) */
    double vmin, vmax;            /* colour range (vmin == vmax: the data's range) */
    int max_side;                 /* largest width or height of the cells' area in pixels (0: 720) */
} moe_heatmap;

/* Draw a heatmap with title, axis labels, tick labels and a colour bar into a new image. */
moe_status moe_heatmap_draw(const moe_heatmap *h, moe_image *out);

/* PNG bytes of an image (malloc'ed). */
moe_status moe_image_png(const moe_image *im, unsigned char **buf, size_t *len);
/* Write a PNG file atomically. */
moe_status moe_image_write_png(const moe_image *im, const char *path);
#endif
