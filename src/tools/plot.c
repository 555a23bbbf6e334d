/* plot.c - canvas, font, colour map, heatmaps and PNG encoding (plot.h).
 *
 * The font is drawn for this file: 5x7 cells written as rows of '#' (on) and '.' (off), one string
 * of 35 characters per glyph, so that a glyph can be read and corrected in the source. */
#include "tools/plot.h"
#include "core/error.h"
#include "io/atomic_file.h"
#include <math.h>
#include <png.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct glyph { char c; const char *rows; } k_font[] = {
    {'0', ".###.#...##..###.#.###..##...#.###."}, {'1', "..#...##....#....#....#....#...###."},
    {'2', ".###.#...#....#...#...#...#...#####"}, {'3', "#####...#...#.....#.....##...#.###."},
    {'4', "...#...##..#.#.#..#.#####...#....#."}, {'5', "######....####.....#....##...#.###."},
    {'6', "..##..#...#....####.#...##...#.###."}, {'7', "#####....#...#...#...#....#....#..."},
    {'8', ".###.#...##...#.###.#...##...#.###."}, {'9', ".###.#...##...#.####....#...#..##.."},
    {'A', ".###.#...##...#######...##...##...#"}, {'B', "####.#...##...#####.#...##...#####."},
    {'C', ".###.#...##....#....#....#...#.###."}, {'D', "###..#..#.#...##...##...##..#.###.."},
    {'E', "######....#....####.#....#....#####"}, {'F', "######....#....####.#....#....#...."},
    {'G', ".###.#...##....#.####...##...#.####"}, {'H', "#...##...##...#######...##...##...#"},
    {'I', ".###...#....#....#....#....#...###."}, {'J', "..###...#....#....#....#.#..#..##.."},
    {'K', "#...##..#.#.#..##...#.#..#..#.#...#"}, {'L', "#....#....#....#....#....#....#####"},
    {'M', "#...###.###.#.##.#.##...##...##...#"}, {'N', "#...##...###..##.#.##..###...##...#"},
    {'O', ".###.#...##...##...##...##...#.###."}, {'P', "####.#...##...#####.#....#....#...."},
    {'Q', ".###.#...##...##...##.#.##..#..##.#"}, {'R', "####.#...##...#####.#.#..#..#.#...#"},
    {'S', ".#####....#.....###.....#....#####."}, {'T', "#####..#....#....#....#....#....#.."},
    {'U', "#...##...##...##...##...##...#.###."}, {'V', "#...##...##...##...##...#.#.#...#.."},
    {'W', "#...##...##...##.#.##.#.##.#.#.#.#."}, {'X', "#...##...#.#.#...#...#.#.#...##...#"},
    {'Y', "#...##...#.#.#...#....#....#....#.."}, {'Z', "#####....#...#...#...#...#....#####"},
    {' ', "..................................."}, {'.', "..........................##...##.."},
    {',', ".....................##....#...#..."}, {':', "......##...##........##...##......."},
    {'-', "...............#####..............."}, {'_', "..............................#####"},
    {'/', ".........#...#...#...#...#........."}, {'(', "...#...#...#....#....#.....#.....#."},
    {')', ".#.....#.....#....#....#...#...#..."}, {'%', "##...##..#...#...#...#...#..##...##"},
    {'=', "..........#####.....#####.........."}, {'+', ".......#....#..#####..#....#......."},
    {'<', "...#...#...#...#.....#.....#.....#."}, {'>', ".#.....#.....#.....#...#...#...#..."},
    {'[', ".###..#....#....#....#....#....###."}, {']', ".###....#....#....#....#....#..###."},
    {'#', ".#.#..#.#.#####.#.#.#####.#.#..#.#."}, {'\'', "..#....#...#......................."},
    {'?', ".###.#...#....#...#...#.........#.."}, {'!', "..#....#....#....#....#.........#.."},
    {'|', "..#....#....#....#....#....#....#.."}, {'*', ".......#..#.#.#.###.#.#.#..#......."},
};

static const char *glyph_of(char c) {
    if (c >= 'a' && c <= 'z') c = (char)(c - 'a' + 'A');
    for (size_t i = 0; i < sizeof k_font / sizeof *k_font; i++)
        if (k_font[i].c == c) return k_font[i].rows;
    for (size_t i = 0; i < sizeof k_font / sizeof *k_font; i++)
        if (k_font[i].c == '?') return k_font[i].rows;
    return NULL;
}

moe_status moe_image_new(moe_image *im, int w, int h) {
    im->w = w;
    im->h = h;
    im->rgb = NULL;
    if (w <= 0 || h <= 0 || w > 20000 || h > 20000) return moe_fail(MOE_EINTERNAL, "plot: image size %dx%d", w, h);
    if (!(im->rgb = malloc((size_t)w * h * 3))) return moe_fail(MOE_ENOMEM, "plot: out of memory for a %dx%d image", w, h);
    memset(im->rgb, 255, (size_t)w * h * 3);
    return MOE_OK;
}

void moe_image_free(moe_image *im) {
    free(im->rgb);
    im->rgb = NULL;
}

static void put(moe_image *im, int x, int y, const unsigned char c[3]) {
    if (x < 0 || y < 0 || x >= im->w || y >= im->h) return;
    memcpy(im->rgb + ((size_t)y * im->w + x) * 3, c, 3);
}

void moe_image_rect(moe_image *im, int x, int y, int w, int h, const unsigned char rgb[3]) {
    for (int j = y < 0 ? 0 : y; j < y + h && j < im->h; j++)
        for (int i = x < 0 ? 0 : x; i < x + w && i < im->w; i++) memcpy(im->rgb + ((size_t)j * im->w + i) * 3, rgb, 3);
}

int moe_text_width(const char *s, int scale) {
    int n = (int)strlen(s);
    return n ? (n * 6 - 1) * scale : 0;
}

void moe_image_text(moe_image *im, int x, int y, const char *s, int scale, int vertical, const unsigned char rgb[3]) {
    for (int ci = 0; s[ci]; ci++) {
        const char *g = glyph_of(s[ci]);
        if (!g) continue;
        for (int r = 0; r < 7; r++)
            for (int c = 0; c < 5; c++) {
                if (g[r * 5 + c] != '#') continue;
                for (int dy = 0; dy < scale; dy++)
                    for (int dx = 0; dx < scale; dx++) {
                        int px = (ci * 6 + c) * scale + dx, py = r * scale + dy;
                        if (vertical) put(im, x + py, y - px, rgb);
                        else put(im, x + px, y + py, rgb);
                    }
            }
    }
}

void moe_colormap(double v, unsigned char rgb[3]) {
    /* anchor colours of a viridis-like ramp: dark purple, blue, teal, green, yellow */
    static const double k[5][3] = {{68, 1, 84}, {59, 82, 139}, {33, 145, 140}, {94, 201, 98}, {253, 231, 37}};
    if (isnan(v)) { rgb[0] = rgb[1] = rgb[2] = 200; return; }
    v = v < 0 ? 0 : v > 1 ? 1 : v;
    double f = v * 4;
    int i = (int)f;
    if (i > 3) i = 3;
    f -= i;
    for (int c = 0; c < 3; c++) rgb[c] = (unsigned char)lround(k[i][c] + (k[i + 1][c] - k[i][c]) * f);
}

/* The smallest "nice" step (1, 2, 5 x 10^n) such that labels every step cells do not overlap. */
static int tick_step(int cell_px, int label_px) {
    static const int nice[] = {1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000};
    for (size_t i = 0; i < sizeof nice / sizeof *nice; i++)
        if (nice[i] * cell_px >= label_px) return nice[i];
    return 100000;
}

static void fmt_num(char *buf, size_t cap, double v) {
    double a = fabs(v);
    if (v == 0) snprintf(buf, cap, "0");
    else if (a >= 1e4 || a < 1e-3) snprintf(buf, cap, "%.1E", v);
    else if (a >= 100) snprintf(buf, cap, "%.0f", v);
    else if (a >= 10) snprintf(buf, cap, "%.1f", v);
    else snprintf(buf, cap, "%.3g", v);
}

moe_status moe_heatmap_draw(const moe_heatmap *h, moe_image *out) {
    static const unsigned char black[3] = {0, 0, 0}, grey[3] = {110, 110, 110};
    const int S = 2, FH = MOE_FONT_H * S, pad = 8;
    int R = h->rows, C = h->cols, side = h->max_side > 0 ? h->max_side : 720;
    if (R <= 0 || C <= 0) return moe_fail(MOE_EINTERNAL, "plot: empty heatmap");
    int cw = side / C, ch = side / R;
    cw = cw < 1 ? 1 : cw > 28 ? 28 : cw;
    ch = ch < 1 ? 1 : ch > 28 ? 28 : ch;
    if (R == C) cw = ch = cw < ch ? cw : ch; /* square matrices get square cells */
    double lo = h->vmin, hi = h->vmax;
    if (lo == hi) {
        lo = INFINITY; hi = -INFINITY;
        for (size_t i = 0; i < (size_t)R * C; i++)
            if (!isnan(h->v[i])) { lo = h->v[i] < lo ? h->v[i] : lo; hi = h->v[i] > hi ? h->v[i] : hi; }
        if (!(lo <= hi)) lo = hi = 0;
    }
    double span = hi > lo ? hi - lo : 1;
    /* tick label sizes */
    char buf[32];
    int max_row = 0, max_col = 0;
    for (int r = 0; r < R; r++) max_row = (h->row_ids ? h->row_ids[r] : r) > max_row ? (h->row_ids ? h->row_ids[r] : r) : max_row;
    for (int c = 0; c < C; c++) max_col = (h->col_ids ? h->col_ids[c] : c) > max_col ? (h->col_ids ? h->col_ids[c] : c) : max_col;
    snprintf(buf, sizeof buf, "%d", max_row);
    int ylab_w = moe_text_width(buf, S);
    snprintf(buf, sizeof buf, "%d", max_col);
    int xlab_w = moe_text_width(buf, S);
    int xstep = tick_step(cw, xlab_w + 6), ystep = tick_step(ch, FH + 4);
    int left = pad + FH + pad + ylab_w + 6, top = pad + FH + pad;
    int gw = C * cw, gh = R * ch;
    int bar_x = left + gw + 16, bar_w = 18;
    char lo_s[32], hi_s[32], mid_s[32];
    fmt_num(lo_s, sizeof lo_s, lo);
    fmt_num(hi_s, sizeof hi_s, hi);
    fmt_num(mid_s, sizeof mid_s, (lo + hi) / 2);
    int bar_lab = moe_text_width(lo_s, S);
    if (moe_text_width(hi_s, S) > bar_lab) bar_lab = moe_text_width(hi_s, S);
    if (moe_text_width(mid_s, S) > bar_lab) bar_lab = moe_text_width(mid_s, S);
    int right = bar_x + bar_w + 6 + bar_lab + pad + (h->scale_label ? FH + pad : 0);
    /* height: the grid with its tick labels and x label, the colour bar, and the vertical labels */
    int bh = gh > 140 ? gh : 140, content = gh + 6 + FH + pad + FH;
    int yl_w = h->ylabel ? moe_text_width(h->ylabel, S) : 0, sl_w = h->scale_label ? moe_text_width(h->scale_label, S) : 0;
    if (bh > content) content = bh;
    if (yl_w > content) content = yl_w;
    if (sl_w > content) content = sl_w;
    int bottom = top + content + pad;
    int title_w = h->title ? moe_text_width(h->title, S) + 2 * pad : 0;
    int W = right > title_w ? right : title_w, xl = h->xlabel ? left + moe_text_width(h->xlabel, S) + pad : 0;
    if (xl > W) W = xl;
    MOE_TRY(moe_image_new(out, W, bottom));
    if (h->title) moe_image_text(out, pad, pad, h->title, S, 0, black);
    for (int r = 0; r < R; r++)
        for (int c = 0; c < C; c++) {
            unsigned char col[3];
            double v = h->v[(size_t)r * C + c];
            moe_colormap(isnan(v) ? NAN : (v - lo) / span, col);
            moe_image_rect(out, left + c * cw, top + r * ch, cw, ch, col);
        }
    /* frame, ticks and labels */
    moe_image_rect(out, left - 1, top - 1, gw + 2, 1, black);
    moe_image_rect(out, left - 1, top + gh, gw + 2, 1, black);
    moe_image_rect(out, left - 1, top - 1, 1, gh + 2, black);
    moe_image_rect(out, left + gw, top - 1, 1, gh + 2, black);
    for (int c = 0; c < C; c += xstep) {
        snprintf(buf, sizeof buf, "%d", h->col_ids ? h->col_ids[c] : c);
        int cx = left + c * cw + cw / 2;
        moe_image_rect(out, cx, top + gh + 1, 1, 4, black);
        moe_image_text(out, cx - moe_text_width(buf, S) / 2, top + gh + 6, buf, S, 0, black);
    }
    for (int r = 0; r < R; r += ystep) {
        snprintf(buf, sizeof buf, "%d", h->row_ids ? h->row_ids[r] : r);
        int cy = top + r * ch + ch / 2;
        moe_image_rect(out, left - 5, cy, 4, 1, black);
        moe_image_text(out, left - 6 - moe_text_width(buf, S), cy - FH / 2, buf, S, 0, black);
    }
    if (h->xlabel) moe_image_text(out, left + (gw - moe_text_width(h->xlabel, S)) / 2 > pad ? left + (gw - moe_text_width(h->xlabel, S)) / 2 : pad,
                                  top + gh + 6 + FH + pad, h->xlabel, S, 0, black);
    if (h->ylabel) {
        int y0 = top + gh / 2 + yl_w / 2;
        moe_image_text(out, pad, y0 > top + yl_w ? y0 : top + yl_w, h->ylabel, S, 1, black);
    }
    /* colour bar: top = hi, bottom = lo */
    for (int y = 0; y < bh; y++) {
        unsigned char col[3];
        moe_colormap(1.0 - (double)y / (bh - 1), col);
        moe_image_rect(out, bar_x, top + y, bar_w, 1, col);
    }
    moe_image_rect(out, bar_x - 1, top - 1, bar_w + 2, 1, grey);
    moe_image_rect(out, bar_x - 1, top + bh, bar_w + 2, 1, grey);
    moe_image_text(out, bar_x + bar_w + 6, top, hi_s, S, 0, black);
    moe_image_text(out, bar_x + bar_w + 6, top + bh / 2 - FH / 2, mid_s, S, 0, black);
    moe_image_text(out, bar_x + bar_w + 6, top + bh - FH, lo_s, S, 0, black);
    if (h->scale_label) {
        int y0 = top + bh / 2 + sl_w / 2;
        moe_image_text(out, bar_x + bar_w + 6 + bar_lab + pad, y0 > top + sl_w ? y0 : top + sl_w, h->scale_label, S, 1, black);
    }
    return MOE_OK;
}

/* ---- PNG ----------------------------------------------------------------------------------- */

typedef struct membuf { unsigned char *p; size_t len, cap; int oom; } membuf;

static void mem_write(png_structp png, png_bytep data, png_size_t n) {
    membuf *b = png_get_io_ptr(png);
    if (b->oom) return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 65536;
        while (cap < b->len + n) cap *= 2;
        unsigned char *q = realloc(b->p, cap);
        if (!q) { b->oom = 1; return; }
        b->p = q;
        b->cap = cap;
    }
    memcpy(b->p + b->len, data, n);
    b->len += n;
}

static void mem_flush(png_structp png) { (void)png; }

moe_status moe_image_png(const moe_image *im, unsigned char **buf, size_t *len) {
    *buf = NULL;
    *len = 0;
    membuf b = {0};
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, NULL, NULL, NULL);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    png_bytep *rows = malloc(sizeof *rows * (size_t)im->h);
    if (!png || !info || !rows) {
        png_destroy_write_struct(&png, &info);
        free(rows);
        return moe_fail(MOE_ENOMEM, "plot: out of memory for a PNG");
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        free(rows);
        free(b.p);
        return moe_fail(MOE_EINTERNAL, "plot: libpng failed to encode a %dx%d image", im->w, im->h);
    }
    png_set_write_fn(png, &b, mem_write, mem_flush);
    png_set_IHDR(png, info, (png_uint_32)im->w, (png_uint_32)im->h, 8, PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
                 PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_set_compression_level(png, 6);
    for (int y = 0; y < im->h; y++) rows[y] = im->rgb + (size_t)y * im->w * 3;
    png_write_info(png, info);
    png_write_image(png, rows);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    free(rows);
    if (b.oom) { free(b.p); return moe_fail(MOE_ENOMEM, "plot: out of memory for a PNG"); }
    *buf = b.p;
    *len = b.len;
    return MOE_OK;
}

moe_status moe_image_write_png(const moe_image *im, const char *path) {
    unsigned char *buf;
    size_t len;
    MOE_TRY(moe_image_png(im, &buf, &len));
    moe_atomic_file af;
    moe_status st = moe_atomic_open(&af, path);
    if (st == MOE_OK) {
        if (fwrite(buf, 1, len, af.f) != len) { moe_atomic_abort(&af); st = moe_fail(MOE_EIO, "%s: write failed", path); }
        else st = moe_atomic_commit(&af);
    }
    free(buf);
    return st;
}
