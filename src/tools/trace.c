/* trace.c - the routing trace file: streaming writer, bounds-checked parser, CSV export (trace.h). */
#include "tools/trace.h"
#include "core/error.h"
#include "io/json.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define HEADER_BYTES 64

static size_t pad4(size_t n) { return (n + 3) & ~(size_t)3; }

/* Bytes of one token record for L layers and K slots, or 0 on overflow. */
static size_t record_bytes(uint64_t L, uint64_t K) {
    if (L > 65536 || K > MOE_TRACE_MAX_SLOTS) return 0;
    uint64_t lk = L * K;
    return (size_t)pad4(8 + 4 * L + 4 * lk + 2 * lk);
}

static void put_u32(unsigned char *p, uint32_t v) { for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static void put_u64(unsigned char *p, uint64_t v) { for (int i = 0; i < 8; i++) p[i] = (unsigned char)(v >> (8 * i)); }
static void put_f32(unsigned char *p, float f) { uint32_t u; memcpy(&u, &f, 4); put_u32(p, u); }
static uint32_t get_u32(const unsigned char *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t get_u64(const unsigned char *p) { return (uint64_t)get_u32(p) | (uint64_t)get_u32(p + 4) << 32; }
static float get_f32(const unsigned char *p) { uint32_t u = get_u32(p); float f; memcpy(&f, &u, 4); return f; }

/* ---- writer ------------------------------------------------------------------------------------ */

static void header(const moe_trace_writer *w, uint32_t n_pieces, unsigned char *h) {
    memset(h, 0, HEADER_BYTES);
    memcpy(h, MOE_TRACE_MAGIC, 8);
    put_u32(h + 8, MOE_TRACE_VERSION);
    put_u32(h + 12, HEADER_BYTES);
    put_u32(h + 16, w->n_layers);
    put_u32(h + 20, w->n_moe);
    put_u32(h + 24, w->n_experts);
    put_u32(h + 28, w->k);
    put_u64(h + 32, w->n_tokens);
    put_u32(h + 40, w->vocab);
    put_u32(h + 44, n_pieces);
    put_u32(h + 48, w->name_len);
}

static moe_status wr(moe_trace_writer *w, const void *p, size_t n) {
    if (w->err == MOE_OK && n && fwrite(p, 1, n, w->af.f) != n)
        w->err = moe_fail(MOE_EIO, "%s: write failed", w->af.path);
    return w->err;
}

moe_status moe_trace_writer_open(moe_trace_writer *w, const char *path, const char *model, uint32_t n_layers,
                                 const uint32_t *layers, uint32_t n_moe, uint32_t n_experts, uint32_t k,
                                 uint32_t vocab) {
    memset(w, 0, sizeof *w);
    if (n_moe == 0 || n_experts == 0 || n_experts > MOE_TRACE_MAX_EXPERTS || k == 0 || k > MOE_TRACE_MAX_SLOTS)
        return moe_fail(MOE_EUSAGE, "%s: cannot trace %u MoE layers of %u experts with %u slots", path, n_moe, n_experts, k);
    size_t nl = strlen(model);
    if (nl > 4096) nl = 4096;
    w->n_layers = n_layers; w->n_moe = n_moe; w->n_experts = n_experts; w->k = k; w->vocab = vocab;
    w->name_len = (uint32_t)nl;
    w->rec_bytes = record_bytes(n_moe, k);
    if (!w->rec_bytes || !(w->rec = calloc(1, w->rec_bytes))) return moe_fail(MOE_ENOMEM, "out of memory");
    moe_status st = moe_atomic_open(&w->af, path);
    if (st) { free(w->rec); w->rec = NULL; return st; }
    unsigned char h[HEADER_BYTES], zero[4] = {0};
    header(w, 0, h);
    wr(w, h, sizeof h);
    wr(w, model, nl);
    wr(w, zero, pad4(nl) - nl);
    for (uint32_t i = 0; i < n_moe; i++) {
        unsigned char b[4];
        put_u32(b, layers[i]);
        wr(w, b, 4);
    }
    if (w->err) moe_trace_writer_abort(w);
    return w->err;
}

moe_status moe_trace_writer_add(moe_trace_writer *w, int32_t token, int32_t pos, const float *entropy,
                                const float *weight, const int *expert) {
    if (w->err) return w->err;
    unsigned char *p = w->rec;
    size_t lk = (size_t)w->n_moe * w->k;
    memset(p, 0, w->rec_bytes);
    put_u32(p, (uint32_t)token);
    put_u32(p + 4, (uint32_t)pos);
    p += 8;
    for (uint32_t l = 0; l < w->n_moe; l++, p += 4) put_f32(p, entropy[l]);
    for (size_t i = 0; i < lk; i++, p += 4) put_f32(p, expert[i] < 0 ? 0.0f : weight[i]);
    for (size_t i = 0; i < lk; i++, p += 2) {
        uint32_t e = expert[i] < 0 ? MOE_TRACE_NO_EXPERT : (uint32_t)expert[i];
        p[0] = (unsigned char)e;
        p[1] = (unsigned char)(e >> 8);
    }
    w->n_tokens++;
    return wr(w, w->rec, w->rec_bytes);
}

moe_status moe_trace_writer_finish(moe_trace_writer *w, uint32_t n_pieces, const int32_t *ids, const char *const *texts) {
    for (uint32_t i = 0; i < n_pieces && !w->err; i++) {
        size_t len = strlen(texts[i]);
        if (len > MOE_TRACE_MAX_PIECE) len = MOE_TRACE_MAX_PIECE;
        unsigned char b[8];
        put_u32(b, (uint32_t)ids[i]);
        put_u32(b + 4, (uint32_t)len);
        wr(w, b, 8);
        wr(w, texts[i], len);
    }
    unsigned char h[HEADER_BYTES];
    header(w, n_pieces, h);
    if (!w->err && (fseek(w->af.f, 0, SEEK_SET) != 0)) w->err = moe_fail(MOE_EIO, "%s: seek failed", w->af.path);
    wr(w, h, sizeof h);
    moe_status st = w->err;
    if (st) moe_atomic_abort(&w->af);
    else st = moe_atomic_commit(&w->af);
    free(w->rec);
    w->rec = NULL;
    return st;
}

void moe_trace_writer_abort(moe_trace_writer *w) {
    moe_atomic_abort(&w->af);
    free(w->rec);
    w->rec = NULL;
}

/* ---- reader ------------------------------------------------------------------------------------ */

void moe_trace_free(moe_trace *t) {
    free(t->model); free(t->layer); free(t->token); free(t->pos);
    free(t->entropy); free(t->weight); free(t->expert); free(t->piece_id);
    for (uint32_t i = 0; t->piece && i < t->n_pieces; i++) free(t->piece[i]);
    free(t->piece);
    memset(t, 0, sizeof *t);
}

static moe_status bad(const char *path, moe_trace *t, const char *what) {
    moe_trace_free(t);
    return moe_fail(MOE_EINPUT, "%s: %s", path, what);
}

moe_status moe_trace_parse(const char *path, const unsigned char *buf, size_t len, moe_trace *t) {
    memset(t, 0, sizeof *t);
    char msg[200];
    if (len < HEADER_BYTES) return bad(path, t, "too short for a trace header (truncated?)");
    if (memcmp(buf, MOE_TRACE_MAGIC, 8) != 0) return bad(path, t, "not a moe trace (bad magic)");
    uint32_t version = get_u32(buf + 8), hbytes = get_u32(buf + 12);
    if (version != MOE_TRACE_VERSION) {
        snprintf(msg, sizeof msg, "trace version %u is not supported (this moe reads version %d)", version, MOE_TRACE_VERSION);
        return bad(path, t, msg);
    }
    if (hbytes != HEADER_BYTES) return bad(path, t, "header size is not 64");
    t->n_layers = get_u32(buf + 16);
    t->n_moe = get_u32(buf + 20);
    t->n_experts = get_u32(buf + 24);
    t->k = get_u32(buf + 28);
    t->n_tokens = get_u64(buf + 32);
    t->vocab = get_u32(buf + 40);
    uint32_t n_pieces = get_u32(buf + 44), name_len = get_u32(buf + 48), flags = get_u32(buf + 52);
    uint64_t reserved = get_u64(buf + 56);
    if (flags != 0 || reserved != 0) return bad(path, t, "unknown flags or non-zero reserved header bytes");
    if (t->n_layers == 0 || t->n_layers > 65536) return bad(path, t, "layer count out of range");
    if (t->n_moe == 0 || t->n_moe > t->n_layers) return bad(path, t, "MoE layer count out of range");
    if (t->n_experts == 0 || t->n_experts > MOE_TRACE_MAX_EXPERTS) return bad(path, t, "expert count out of range");
    if (t->k == 0 || t->k > MOE_TRACE_MAX_SLOTS || t->k > t->n_experts) return bad(path, t, "slot count out of range");
    if (name_len > 4096) return bad(path, t, "model name longer than 4096 bytes");
    if (t->vocab > (1u << 30)) return bad(path, t, "vocabulary size out of range");
    if (n_pieces > (t->vocab ? t->vocab : 0)) return bad(path, t, "more token pieces than the vocabulary has");
    size_t rec = record_bytes(t->n_moe, t->k), off = HEADER_BYTES;
    size_t fixed = off + pad4(name_len) + (size_t)t->n_moe * 4;
    if (fixed > len) return bad(path, t, "truncated before the token records");
    if (t->n_tokens > (len - fixed) / rec) return bad(path, t, "truncated: fewer token records than the header says");
    size_t T = (size_t)t->n_tokens, L = t->n_moe, K = t->k;
    /* every piece takes at least 8 bytes (id, length): memory in proportion to what the file holds */
    if (n_pieces > (len - fixed - T * rec) / 8) return bad(path, t, "truncated: fewer token pieces than the header says");
    t->model = malloc((size_t)name_len + 1);
    t->layer = malloc(L * 4);
    t->token = malloc(T * 4 + 4);
    t->pos = malloc(T * 4 + 4);
    t->entropy = malloc(T * L * 4 + 4);
    t->weight = malloc(T * L * K * 4 + 4);
    t->expert = malloc(T * L * K * 2 + 2);
    t->piece_id = malloc((size_t)n_pieces * 4 + 4);
    t->piece = calloc((size_t)n_pieces + 1, sizeof *t->piece);
    if (!t->model || !t->layer || !t->token || !t->pos || !t->entropy || !t->weight || !t->expert || !t->piece_id || !t->piece) {
        moe_trace_free(t);
        return moe_fail(MOE_ENOMEM, "%s: out of memory for %zu token records", path, T);
    }
    memcpy(t->model, buf + off, name_len);
    t->model[name_len] = 0;
    if (memchr(t->model, 0, name_len) || moe_utf8_check((const unsigned char *)t->model, name_len) != name_len)
        return bad(path, t, "model name is not valid UTF-8 text");
    off += pad4(name_len);
    for (size_t l = 0; l < L; l++, off += 4) {
        t->layer[l] = get_u32(buf + off);
        if (t->layer[l] >= t->n_layers || (l > 0 && t->layer[l] <= t->layer[l - 1]))
            return bad(path, t, "MoE layer indices are not ascending layer numbers below the layer count");
    }
    for (size_t i = 0; i < T; i++, off += rec) {
        const unsigned char *p = buf + off;
        t->token[i] = (int32_t)get_u32(p);
        t->pos[i] = (int32_t)get_u32(p + 4);
        if (t->token[i] < 0 || (t->vocab && (uint32_t)t->token[i] >= t->vocab)) {
            snprintf(msg, sizeof msg, "token %zu: id %d outside the vocabulary of %u", i, t->token[i], t->vocab);
            return bad(path, t, msg);
        }
        if (t->pos[i] < 0) { snprintf(msg, sizeof msg, "token %zu: negative position", i); return bad(path, t, msg); }
        p += 8;
        for (size_t l = 0; l < L; l++, p += 4) {
            float h = get_f32(p);
            if (!(h == -1.0f || (isfinite(h) && h >= 0 && h <= 12.0f))) {
                snprintf(msg, sizeof msg, "token %zu: entropy of layer %zu is not -1 or within [0, log 65535]", i, l);
                return bad(path, t, msg);
            }
            t->entropy[i * L + l] = h;
        }
        const unsigned char *pe = p + 4 * L * K;
        for (size_t j = 0; j < L * K; j++, p += 4) {
            float wv = get_f32(p);
            uint16_t e = (uint16_t)(pe[2 * j] | pe[2 * j + 1] << 8);
            if (!isfinite(wv) || (e != MOE_TRACE_NO_EXPERT && e >= t->n_experts) || (e == MOE_TRACE_NO_EXPERT && wv != 0)) {
                snprintf(msg, sizeof msg, "token %zu, layer %zu, slot %zu: bad expert %u or weight", i, j / K, j % K, e);
                return bad(path, t, msg);
            }
            t->weight[i * L * K + j] = wv;
            t->expert[i * L * K + j] = e;
        }
        for (size_t b = 8 + 4 * L + 6 * L * K; b < rec; b++)
            if (buf[off + b]) return bad(path, t, "non-zero padding in a token record");
    }
    for (uint32_t i = 0; i < n_pieces; i++) {
        if (len - off < 8) return bad(path, t, "truncated in the token pieces");
        int32_t id = (int32_t)get_u32(buf + off);
        uint32_t pl = get_u32(buf + off + 4);
        off += 8;
        if (id < 0 || (uint32_t)id >= t->vocab || (i > 0 && id <= t->piece_id[i - 1]))
            return bad(path, t, "token piece ids are not ascending ids below the vocabulary");
        if (pl > MOE_TRACE_MAX_PIECE || pl > len - off) return bad(path, t, "token piece longer than 1024 bytes or truncated");
        if (memchr(buf + off, 0, pl) || moe_utf8_check(buf + off, pl) != pl) return bad(path, t, "token piece is not valid UTF-8 text");
        t->piece_id[i] = id;
        if (!(t->piece[i] = malloc((size_t)pl + 1))) { moe_trace_free(t); return moe_fail(MOE_ENOMEM, "%s: out of memory", path); }
        memcpy(t->piece[i], buf + off, pl);
        t->piece[i][pl] = 0;
        t->n_pieces = i + 1;
        off += pl;
    }
    if (off != len) return bad(path, t, "unexpected bytes after the last token piece");
    return MOE_OK;
}

moe_status moe_trace_read(const char *path, moe_trace *t) {
    memset(t, 0, sizeof *t);
    char *buf;
    size_t len;
    MOE_TRY(moe_read_file(path, (size_t)1 << 40, &buf, &len));
    moe_status st = moe_trace_parse(path, (const unsigned char *)buf, len, t);
    free(buf);
    return st;
}

const char *moe_trace_piece(const moe_trace *t, int32_t id) {
    uint32_t lo = 0, hi = t->n_pieces;
    while (lo < hi) {
        uint32_t mid = lo + (hi - lo) / 2;
        if (t->piece_id[mid] == id) return t->piece[mid];
        if (t->piece_id[mid] < id) lo = mid + 1;
        else hi = mid;
    }
    return NULL;
}

/* ---- CSV ------------------------------------------------------------------------------------- */

/* RFC 4180: quote fields with commas, quotes or line breaks; double the quotes. */
static void csv_text(FILE *f, const char *s) {
    if (!strpbrk(s, ",\"\r\n")) { fputs(s, f); return; }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static moe_status open_csv(moe_atomic_file *af, const char *dir, const char *name) {
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path) return moe_fail(MOE_EUSAGE, "%s: path too long", dir);
    return moe_atomic_open(af, path);
}

moe_status moe_trace_write_csv(const moe_trace *t, const char *dir) {
    size_t T = (size_t)t->n_tokens, L = t->n_moe, K = t->k;
    moe_atomic_file af;
    MOE_TRY(open_csv(&af, dir, "routes.csv"));
    fprintf(af.f, "token,pos,token_id,layer,slot,expert,weight\n");
    for (size_t i = 0; i < T; i++)
        for (size_t l = 0; l < L; l++)
            for (size_t j = 0; j < K; j++) {
                size_t a = (i * L + l) * K + j;
                if (t->expert[a] == MOE_TRACE_NO_EXPERT) continue;
                fprintf(af.f, "%zu,%d,%d,%u,%zu,%u,%.9g\n", i, t->pos[i], t->token[i], t->layer[l], j, t->expert[a],
                        (double)t->weight[a]);
            }
    MOE_TRY(moe_atomic_commit(&af));
    MOE_TRY(open_csv(&af, dir, "entropy.csv"));
    fprintf(af.f, "token,layer,entropy\n");
    for (size_t i = 0; i < T; i++)
        for (size_t l = 0; l < L; l++) fprintf(af.f, "%zu,%u,%.9g\n", i, t->layer[l], (double)t->entropy[i * L + l]);
    MOE_TRY(moe_atomic_commit(&af));
    MOE_TRY(open_csv(&af, dir, "tokens.csv"));
    fprintf(af.f, "token,pos,token_id,text\n");
    for (size_t i = 0; i < T; i++) {
        const char *p = moe_trace_piece(t, t->token[i]);
        fprintf(af.f, "%zu,%d,%d,", i, t->pos[i], t->token[i]);
        csv_text(af.f, p ? p : "");
        fputc('\n', af.f);
    }
    return moe_atomic_commit(&af);
}
