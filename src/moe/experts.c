/* experts.c - the expert executor (see experts.h). */
#include "moe/experts.h"
#include "core/error.h"
#include "core/matmul.h"
#include "moe/ffn.h"
#include <omp.h>
#include <string.h>

#define ROW_BLOCK 96   /* least output rows per task: a multiple of the 48-row kernel tiles */

/* Rows per task for matrices of `rows` rows in `n_mats` products over `avg_tokens` tokens each.
 * Decode (few tokens) uses small tasks for balance; with many tokens every kernel call packs its x
 * block again, so tasks grow until there are just enough of them (4 per thread) to balance. Task
 * boundaries are multiples of 48, which keeps every product's bits those of one call over all rows. */
static int rows_per_task(int rows, int n_mats, double avg_tokens) {
    if (avg_tokens < 8) return ROW_BLOCK;
    int want = 4 * omp_get_max_threads(), parts = (want + n_mats - 1) / n_mats;
    int r = (rows + parts - 1) / parts;
    r = (r + 47) / 48 * 48;
    return r < ROW_BLOCK ? ROW_BLOCK : r;
}

/* A matrix of `rows` rows cut into tasks of rb rows, the last one running to the end (rb to 2 rb - 1
 * rows): every call starts at a multiple of 48 and no call is a short tail on its own, which is what
 * keeps a product's bits independent of the cut (a kernel may tile a call of a few rows differently
 * from the same rows at the end of a longer call), hence of the thread count and the wave size. */
static int blocks_of(int rows, int rb) { return rows / rb > 0 ? rows / rb : 1; }
static void block_range(int rows, int rb, int nb, int b, int *o0, int *o1) {
    *o0 = b * rb;
    *o1 = b == nb - 1 ? rows : *o0 + rb;
}

typedef struct expert_job {
    int e, first, cnt;       /* expert id; its rows are [first, first+cnt) */
    moe_ffn_weights w;
    moe_gemm_kernel gate_k, up_k, down_k;
} expert_job;

/* What every wave shares. */
typedef struct exec {
    const moe_experts_call *c;
    int d, ff, nl, rank;     /* rank > 0: factored gates read Z rows of that width */
    int on_input;            /* the weight scales the row's input, not its output (sparse decisions only) */
    float *X, *Y, *HG, *HU, *Z;
    float *out;
} exec;

static int same_act(const moe_ffn_act *a, const moe_ffn_act *b) {
    return a->kind == b->kind && a->alpha == b->alpha && a->limit == b->limit;
}

/* One wave: jobs[0..n_jobs) own the rows [p0, p1). The first wave zeroes out. */
static void run_wave(const exec *x, const expert_job *jobs, int n_jobs, int p0, int p1, int first_wave) {
    const moe_assign *a = x->c->a;
    const float *in = x->c->x;
    int d = x->d, ff = x->ff, nl = x->nl, rank = x->rank, n = x->c->n, rows = p1 - p0;
    int soft = a->dispatch != NULL, gin_w = rank > 0 ? rank : d;
    float *X = x->X, *Y = x->Y, *HG = x->HG, *HU = x->HU, *Z = x->Z, *out = x->out;
    const float *GIN = rank > 0 ? Z : X;
    int uniform = 1;
    for (int i = 1; i < n_jobs; i++) uniform &= same_act(&jobs[i].w.act, &jobs[0].w.act);
    double avg = n_jobs ? (double)rows / n_jobs : 0;
    int rb_up = rows_per_task(ff, 2 * n_jobs, avg), rb_down = rows_per_task(d, n_jobs, avg);
    int up_blocks = blocks_of(ff, rb_up), down_blocks = blocks_of(d, rb_down);
    int n_up_tasks = n_jobs * up_blocks * 2, n_down_tasks = n_jobs * down_blocks;
    int small = (double)rows * ff * d < 32768.0;
    #pragma omp parallel if (!small)
    {
        /* row inputs: a token's row, or a slot's mixture of tokens (Soft MoE: sum_t D[t][p] x_t) */
        if (soft) {
            #pragma omp for schedule(static)
            for (int p = p0; p < p1; p++) {
                float *r = X + (size_t)p * d;
                memset(r, 0, sizeof(float) * (size_t)d);
                for (int t = 0; t < n; t++) {
                    float D = a->dispatch[(size_t)t * nl + p];
                    const float *xr = in + (size_t)t * d;
                    for (int i = 0; i < d; i++) r[i] += D * xr[i];
                }
            }
        } else if (x->c->run) {   /* a share of the experts: only their rows, which need not be adjacent */
            #pragma omp for schedule(dynamic, 1)
            for (int i = 0; i < n_jobs; i++)
                for (int p = jobs[i].first; p < jobs[i].first + jobs[i].cnt; p++) {
                    int t = a->row_tok[p];
                    memcpy(X + (size_t)p * d, in + (size_t)(x->c->x_row ? x->c->x_row[t] : t) * d, (size_t)d * 4);
                }
        } else {
            #pragma omp for schedule(static)
            for (int p = p0; p < p1; p++) {
                int t = a->row_tok[p];
                memcpy(X + (size_t)p * d, in + (size_t)(x->c->x_row ? x->c->x_row[t] : t) * d, (size_t)d * 4);
                if (x->on_input)   /* Llama 4: the weight scales the input (x * w in f32, as torch) */
                    for (int i = 0; i < d; i++) X[(size_t)p * d + i] *= a->row_w[p];
            }
        }
        if (rank > 0) {
            #pragma omp for schedule(static)
            for (int i = 0; i < n_jobs; i++) {
                const expert_job *j = &jobs[i];
                for (int p = j->first; p < j->first + j->cnt; p++)
                    memcpy(Z + (size_t)p * rank, x->c->logits + (size_t)a->row_tok[p] * nl + (size_t)j->e * rank,
                           (size_t)rank * 4);
            }
        }
        #pragma omp for schedule(dynamic, 1)
        for (int t = 0; t < n_up_tasks; t++) {
            const expert_job *j = &jobs[t / (up_blocks * 2)];
            int r = t % (up_blocks * 2), is_up = r >= up_blocks, o0, o1;
            block_range(ff, rb_up, up_blocks, r % up_blocks, &o0, &o1);
            if (is_up) {
                float *h = HU + (size_t)j->first * ff;
                j->up_k(h, ff, X + (size_t)j->first * d, d, j->cnt, j->w.up.data, d, o0, o1);
                if (j->w.up_bias) moe_ffn_add_bias(h, (size_t)ff, j->cnt, j->w.up_bias, o0, o1);
            } else {
                float *h = HG + (size_t)j->first * ff;
                j->gate_k(h, ff, GIN + (size_t)j->first * gin_w, gin_w, j->cnt, j->w.gate.data, gin_w, o0, o1);
                if (j->w.gate_bias) moe_ffn_add_bias(h, (size_t)ff, j->cnt, j->w.gate_bias, o0, o1);
            }
        }
        if (uniform && !x->c->run) {
            #pragma omp for schedule(static)
            for (int p = p0; p < p1; p++) moe_ffn_act_apply(&jobs[0].w.act, HG + (size_t)p * ff, HU + (size_t)p * ff, (size_t)ff);
        } else {
            #pragma omp for schedule(dynamic, 1)
            for (int i = 0; i < n_jobs; i++)
                for (int p = jobs[i].first; p < jobs[i].first + jobs[i].cnt; p++)
                    moe_ffn_act_apply(&jobs[i].w.act, HG + (size_t)p * ff, HU + (size_t)p * ff, (size_t)ff);
        }
        #pragma omp for schedule(dynamic, 1)
        for (int t = 0; t < n_down_tasks; t++) {
            const expert_job *j = &jobs[t / down_blocks];
            int o0, o1;
            block_range(d, rb_down, down_blocks, t % down_blocks, &o0, &o1);
            float *y = Y + (size_t)j->first * d;
            j->down_k(y, d, HG + (size_t)j->first * ff, ff, j->cnt, j->w.down.data, ff, o0, o1);
            if (j->w.down_bias) moe_ffn_add_bias(y, (size_t)d, j->cnt, j->w.down_bias, o0, o1);
        }
        /* combine: each thread owns a column range; rows are in ascending expert order */
        if (out) {   /* else the rows are kept for a combine elsewhere (moe/ep.h) */
            int id = omp_get_thread_num(), nt = omp_get_num_threads();
            int c0 = (int)((long)d * id / nt), c1 = (int)((long)d * (id + 1) / nt);
            if (first_wave)
                for (int t = 0; t < n; t++) memset(out + (size_t)t * d + c0, 0, (size_t)(c1 - c0) * 4);
            #pragma omp barrier
            if (soft) {
                for (int t = 0; t < n; t++) {
                    float *o = out + (size_t)t * d;
                    for (int p = p0; p < p1; p++) {
                        float C = a->combine[(size_t)t * nl + p];
                        const float *y = Y + (size_t)p * d;
                        for (int c = c0; c < c1; c++) o[c] += C * y[c];
                    }
                }
            } else {
                for (int p = p0; p < p1; p++) {
                    float *o = out + (size_t)a->row_tok[p] * d;
                    const float *y = Y + (size_t)p * d;
                    if (x->on_input) {   /* Llama 4: the output counts unscaled */
                        for (int c = c0; c < c1; c++) o[c] += y[c];
                        continue;
                    }
                    float wt = a->row_w[p];
                    for (int c = c0; c < c1; c++) o[c] += y[c] * wt;
                }
            }
        }
    }
}

void moe_experts_combine(const moe_assign *a, const float *Y, const int *ypos, int t0, int t1, int d, float *out) {
    int small = (double)(t1 - t0) * d < 32768.0;
    #pragma omp parallel if (!small)
    {
        int id = omp_get_thread_num(), nt = omp_get_num_threads();
        int c0 = (int)((long)d * id / nt), c1 = (int)((long)d * (id + 1) / nt);
        for (int t = t0; t < t1; t++) memset(out + (size_t)t * d + c0, 0, (size_t)(c1 - c0) * 4);
        for (int p = 0; p < a->rows; p++) {
            int t = a->row_tok[p];
            if (t < t0 || t >= t1) continue;
            float *o = out + (size_t)t * d;
            const float *y = Y + (size_t)ypos[p] * d;
            float wt = a->row_w[p];
            for (int c = c0; c < c1; c++) o[c] += y[c] * wt;
        }
    }
}

moe_status moe_experts_forward(const moe_layer *L, const moe_experts_call *c, float *out, moe_arena *scratch) {
    const moe_assign *a = c->a;
    int E = a->n_experts, d = L->d_model, ff = L->d_expert, n = c->n;
    int e0 = c->e0 < 0 ? 0 : c->e0, e1 = c->e1 > E ? E : c->e1;
    int rank = L->router.ops->expert_gate_factored && E > 0 ? a->n_logits / E : 0;
    if (n != a->n_tokens) return moe_fail(MOE_EINTERNAL, "MoE layer %d: a decision for %d tokens, %d given", L->layer, a->n_tokens, n);
    if (rank > 0 && !c->logits) return moe_fail(MOE_EINTERNAL, "MoE layer %d: factored expert gates need the router outputs", L->layer);
    moe_arena_mark mark = moe_arena_push(scratch);
    size_t rows = (size_t)(a->rows > 0 ? a->rows : 1);
    expert_job *jobs = moe_arena_alloc(scratch, (size_t)(E > 0 ? E : 1) * sizeof *jobs);
    exec x = {c, d, ff, a->n_logits, rank, L->weight_on_input && !a->dispatch,
              moe_arena_alloc(scratch, rows * d * 4), c->rows_out ? c->rows_out : moe_arena_alloc(scratch, rows * d * 4),
              moe_arena_alloc(scratch, rows * ff * 4), moe_arena_alloc(scratch, rows * ff * 4),
              rank > 0 ? moe_arena_alloc(scratch, rows * rank * 4) : NULL, c->rows_out ? NULL : out};
    if (!jobs || !x.X || !x.Y || !x.HG || !x.HU || (rank > 0 && !x.Z)) {
        moe_arena_pop(scratch, mark);
        return moe_fail(MOE_ENOMEM, "MoE layer %d: out of memory for %d expert rows", L->layer, a->rows);
    }
    int n_jobs = 0;
    for (int e = e0; e < e1; e++)
        if (a->offset[e + 1] > a->offset[e] && (!c->run || c->run[e])) jobs[n_jobs++].e = e;
    if (n_jobs == 0 && !c->rows_out) memset(out, 0, sizeof(float) * (size_t)n * d);
    moe_status st = MOE_OK;
    int wave = L->store->max_pinned > 0 && L->store->max_pinned < n_jobs ? L->store->max_pinned : n_jobs;
    for (int w0 = 0; w0 < n_jobs && st == MOE_OK; w0 += wave) {
        int w1 = w0 + wave < n_jobs ? w0 + wave : n_jobs, acquired = w0;
        for (; acquired < w1; acquired++) {
            expert_job *j = &jobs[acquired];
            j->first = a->offset[j->e];
            j->cnt = a->offset[j->e + 1] - j->first;
            if ((st = moe_store_acquire(L->store, L->layer, j->e, &j->w)) != MOE_OK) break;
            j->gate_k = moe_gemm_pick(j->w.gate.dtype);
            j->up_k = moe_gemm_pick(j->w.up.dtype);
            j->down_k = moe_gemm_pick(j->w.down.dtype);
            if (!j->gate_k || !j->up_k || !j->down_k) {
                acquired++;
                st = moe_fail(MOE_EINTERNAL, "MoE layer %d: no kernel for expert %d's dtype", L->layer, j->e);
                break;
            }
        }
        if (st == MOE_OK) run_wave(&x, jobs + w0, w1 - w0, jobs[w0].first, jobs[w1 - 1].first + jobs[w1 - 1].cnt, w0 == 0);
        for (int i = w0; i < acquired; i++) moe_store_release(L->store, L->layer, jobs[i].e);
    }
    moe_arena_pop(scratch, mark);
    return st;
}
