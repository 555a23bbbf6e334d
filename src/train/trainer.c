/* trainer.c - the training loop (see trainer.h). */
#include "train/trainer.h"
#include "core/error.h"
#include "io/json.h"
#include "train/checkpoint.h"
#include "train/data.h"
#include "train/optim.h"
#include "train/tmodel.h"
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t g_stop;
static void on_sigint(int sig) { (void)sig; g_stop = 1; }

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void fmt_time(char *b, size_t n, double s) {
    if (s < 0 || !isfinite(s)) s = 0;
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(b, n, "%ldh%02ldm", t / 3600, t / 60 % 60);
    else snprintf(b, n, "%ldm%02lds", t / 60, t % 60);
}

static double evaluate(moe_tmodel *m, const moe_data *d, int batches, int32_t *x, int32_t *y, moe_status *st) {
    double total = 0;
    for (int i = 0; i < batches; i++) {
        double loss;
        moe_data_eval_batch(d, i, m->B, m->T, x, y);
        if ((*st = moe_tmodel_forward(m, x, y, 0, &loss)) != MOE_OK) return NAN;
        total += loss;
    }
    return total / batches;
}

/* Mean routing statistics over the MoE layers of the last forward. */
static void layer_stats(const moe_tmodel *m, moe_route_stats *s) {
    int n = 0;
    memset(s, 0, sizeof *s);
    for (int l = 0; l < m->cfg.n_layers; l++) {
        const moe_tmoe *mo = &m->act[l].moe;
        if (!mo->N) continue;
        s->load_cv += mo->stats.load_cv;
        s->dropped += mo->stats.dropped;
        s->entropy += mo->stats.entropy;
        s->per_token += mo->stats.per_token;
        n++;
    }
    if (n) { s->load_cv /= n; s->dropped /= n; s->entropy /= n; s->per_token /= n; }
}

static uint64_t count_active(const moe_tparams *p) {
    const moe_tconfig *c = &p->cfg;
    uint64_t total = 0;
    for (int i = 0; i < p->n; i++)
        if (p->t[i].trainable) total += p->t[i].numel;
    const moe_router_ops *ops = moe_router_find(c->router);
    if (c->n_experts > 0 && ops && ops->kind != MOE_ROUTE_SOFT) {
        int gcols = ops->expert_gate_factored ? c->aoe_rank : c->d_model;
        uint64_t per = (uint64_t)c->d_expert * ((uint64_t)gcols + 2u * c->d_model);
        int moe_layers = c->n_layers - c->n_dense_layers;
        total -= (uint64_t)moe_layers * (uint64_t)(c->n_experts - c->top_k) * per;
    }
    return total;
}

/* Memory available to this process: /proc/meminfo's MemAvailable (sysconf's free pages where there is
 * none), and no more than the cgroup (v2) leaves; < 0 when nothing says. */
static double available_bytes(void) {
    double avail = -1;
    FILE *f = fopen("/proc/meminfo", "r");
    char line[256];
    while (f && fgets(line, sizeof line, f)) {
        long long kb;
        if (sscanf(line, "MemAvailable: %lld kB", &kb) == 1) { avail = (double)kb * 1024.0; break; }
    }
    if (f) fclose(f);
    if (avail < 0) {
        long pages = sysconf(_SC_AVPHYS_PAGES), size = sysconf(_SC_PAGESIZE);
        if (pages > 0 && size > 0) avail = (double)pages * (double)size;
    }
    double lim = -1, cur = 0;
    if ((f = fopen("/sys/fs/cgroup/memory.max", "r")) != NULL) {
        if (fgets(line, sizeof line, f) && strncmp(line, "max", 3)) lim = strtod(line, NULL);
        fclose(f);
    }
    if (lim > 0 && (f = fopen("/sys/fs/cgroup/memory.current", "r")) != NULL) {
        if (fgets(line, sizeof line, f)) cur = strtod(line, NULL);
        fclose(f);
    }
    if (lim > 0 && (avail < 0 || lim - cur < avail)) avail = lim - cur > 0 ? lim - cur : 0;
    return avail;
}

void moe_train_estimate(const moe_tconfig *c, double *param_bytes, double *act_bytes) {
    double N = (double)c->batch * c->seq_len, E = c->n_experts > 0 ? c->n_experts : 1;
    (void)E;
    /* bytes, in double so that no product can overflow: parameters with gradients and both AdamW
     * moments (4 x 4 bytes each), and the activations one step keeps (see tmodel.c, tmoe.c) */
    double d = c->d_model, V = c->vocab, L = c->n_layers, H = c->n_heads, KV = c->n_kv_heads, hd = c->head_dim;
    double qd = H * hd, kvd = KV * hd, ff = c->d_ff, de = c->d_expert, S = c->n_shared, k = c->top_k;
    double T = c->seq_len, B = c->batch, Ex = c->n_experts;
    double Lm = 0;
    for (int l = 0; l < c->n_layers; l++) Lm += moe_tconfig_is_moe_layer(c, l);
    double Ld = L - Lm;
    double P = 2 * V * d + d + L * (2 * d + 2 * d * qd + 2 * d * kvd + 2 * hd) + Ld * 3 * d * ff +
               Lm * (Ex * d + Ex + Ex * 3 * d * de + S * 3 * d * de);
    double attn = N * (4 * d + 3 * qd + 3 * kvd + H + KV + 2) + B * H * T * T;
    double nl = c->n_experts > 0 ? moe_tconfig_n_logits(c) : 1;
    double moe = N * (4 * nl + 2 * E + k * (3 * de + 2 * d)) + (S > 0 ? N * (3 * S * de + d) : 0);
    double wide = qd > d ? qd : d;
    if (ff > wide) wide = ff;
    if (V > wide) wide = V;
    double scratch = V * d > ff * d ? V * d : ff * d;
    double acts = 4 * (Ld * (attn + 2 * N * ff) + Lm * (attn + moe) + N * V + 4 * N * d + N * (qd + 2 * kvd) +
                       4 * N * wide + scratch);
    *param_bytes = 16 * P;
    *act_bytes = acts;
}

moe_status moe_train_check_size(const moe_tconfig *c, double available) {
    /* the step's int arithmetic: tokens per step, and tokens x experts for the routing tables */
    double N = (double)c->batch * c->seq_len, E = c->n_experts > 0 ? c->n_experts : 1;
    if (c->n_experts > 0 && moe_tconfig_n_logits(c) > E) E = moe_tconfig_n_logits(c);   /* soft slots */
    if (N > (double)(1 << 24))
        return moe_fail(MOE_EUSAGE, "--batch %d x --seq-len %d = %.0f tokens per step; at most %d", c->batch, c->seq_len,
                        N, 1 << 24);
    if (N * E > (double)(1 << 30))
        return moe_fail(MOE_EUSAGE, "--batch %d x --seq-len %d x --experts %d = %.0f routing entries per layer and step; "
                        "at most %d", c->batch, c->seq_len, c->n_experts, N * E, 1 << 30);
    double pb, ab;
    moe_train_estimate(c, &pb, &ab);
    double P = pb / 16, acts = ab;
    double need = 16 * P + acts, gib = 1024.0 * 1024.0 * 1024.0;
    if (available >= 0 && need > available)
        return moe_fail(MOE_EUSAGE, "training needs about %.1f GiB but %.1f GiB of memory is available: %.0fM parameters "
                        "(--vocab %d, --d-model %d, --layers %d, --heads %d, --d-ff %d, --experts %d, --d-expert %d, "
                        "--shared %d) take %.1f GiB with their gradients and AdamW moments, and the activations of "
                        "--batch %d x --seq-len %d tokens %.1f GiB", need / gib, available / gib, P / 1e6, c->vocab,
                        c->d_model, c->n_layers, c->n_heads, c->d_ff, c->n_experts, c->d_expert, c->n_shared,
                        16 * P / gib, c->batch, c->seq_len, acts / gib);
    return MOE_OK;
}

moe_status moe_train_check_memory(const moe_tconfig *c) { return moe_train_check_size(c, available_bytes()); }

/* One checkpoint: every file staged, then swapped in whole (src/io/out_dir.h). */
static moe_status save_all(const moe_tmodel *m, moe_outdir *od, int64_t step, uint64_t data_rng) {
    moe_train_state s = {step, data_rng, m->rng};
    moe_status st = moe_outdir_begin(od);
    if (!st) st = moe_ckpt_write_model(m->p, od);
    if (!st) st = moe_ckpt_write_state(m->p, &s, od);
    if (!st) return moe_outdir_commit(od);
    moe_outdir_abort(od);
    return st;
}

moe_status moe_train(const moe_tconfig *cfg, const moe_train_opts *o, moe_train_result *res) {
    memset(res, 0, sizeof *res);
    MOE_TRY(moe_train_check_memory(cfg));   /* before anything is allocated */
    moe_outdir own = {0}, *od = o->outdir;
    own.lock_fd = -1;
    if (o->out && !od) {
        MOE_TRY(moe_outdir_open(&own, "--out", o->out));
        od = &own;
    }
    moe_data data;
    moe_status lst = moe_data_load(o->data, cfg->val_fraction, cfg->seq_len, cfg->vocab, cfg->tokenizer, &data);
    if (lst) { moe_outdir_close(&own); return lst; }
    moe_tmodel *m = NULL;
    moe_status st = moe_tmodel_new(cfg, cfg->batch, &m);
    int32_t *x = NULL, *y = NULL;
    if (st) goto done;
    const moe_tconfig *c = &m->cfg;
    int N = m->N;
    x = malloc(sizeof(int32_t) * (size_t)N);
    y = malloc(sizeof(int32_t) * (size_t)N);
    if (!x || !y) { st = moe_fail(MOE_ENOMEM, "out of memory"); goto done; }
    uint64_t data_rng = moe_hash64((uint64_t)c->seed ^ 0x64617461ULL);
    int64_t start = 0;
    if (o->resume) {
        moe_train_state s;
        if ((st = moe_ckpt_load_state(m->p, &s, o->out)) != MOE_OK) goto done;
        if (s.step >= c->steps) {
            st = moe_fail(MOE_EUSAGE, "%s: the checkpoint is at step %lld already; give more --steps than that", o->out,
                          (long long)s.step);
            goto done;
        }
        start = s.step;
        data_rng = s.data_rng;
        m->rng = s.model_rng;
    } else {
        moe_tparams_init(m->p, (uint64_t)c->seed);
        if (o->init && (st = moe_ckpt_load_weights(m->p, o->init)) != MOE_OK) goto done;
    }
    res->n_params = m->p->n_trainable;
    res->n_active = count_active(m->p);
    int tty = isatty(2) && !o->quiet;
    int log_every = o->log_every > 0 ? o->log_every : (c->steps >= 50 ? c->steps / 50 : 1);
    if (!o->quiet)
        fprintf(stderr, "moe train: %s layout, %d layers, d=%d, %d experts top-%d (%s), %.2fM params (%.2fM active), "
                        "%d x %d tokens per step, %d threads\n",
                c->layout, c->n_layers, c->d_model, c->n_experts, c->top_k, c->n_experts ? c->router : "dense",
                res->n_params / 1e6, res->n_active / 1e6, c->batch, c->seq_len, moe_get_threads());
    g_stop = 0;
    void (*old)(int) = signal(SIGINT, on_sigint);
    double t_train = 0, val = NAN, loss_tail = 0, tail_cv = 0, tail_drop = 0, tail_ent = 0, tail_pt = 0;
    int n_tail = 0;
    int64_t tail_n = (c->steps - start) / 10 > 0 ? (c->steps - start) / 10 : 1, tail_from = c->steps - tail_n;
    int64_t step = start;
    for (step = start + 1; step <= c->steps; step++) {
        double t0 = now_s(), loss;
        moe_data_batch(&data, &data_rng, m->B, m->T, x, y);
        memset(m->p->grad, 0, sizeof(float) * m->p->total);
        if ((st = moe_tmodel_forward(m, x, y, 1, &loss)) != MOE_OK) break;
        moe_tmodel_backward(m);
        double norm = moe_grad_norm(m->p);
        double scale = c->grad_clip > 0 && norm > c->grad_clip ? c->grad_clip / norm : 1.0;
        double lr = moe_lr_at(c, step);
        moe_adamw_step(m->p, c, step, lr, scale);
        for (int l = 0; l < c->n_layers; l++) {
            moe_tmoe *mo = &m->act[l].moe;
            if (mo->N && mo->router.ops->update) mo->router.ops->update(&mo->router, mo->load, c->bias_rate);
        }
        t_train += now_s() - t0;
        if (!isfinite(loss)) { st = moe_fail(MOE_EINPUT, "training diverged at step %lld (loss %g): the updates overflowed; lower --lr "
                                                "or --grad-clip, or raise --warmup", (long long)step, loss); break; }
        moe_route_stats rs;
        layer_stats(m, &rs);
        if (step > tail_from) {
            loss_tail += loss; tail_cv += rs.load_cv; tail_drop += rs.dropped; tail_ent += rs.entropy;
            tail_pt += rs.per_token; n_tail++;
        }
        int evaled = 0;
        if ((c->eval_every && step % c->eval_every == 0) || step == c->steps) {
            val = evaluate(m, &data, c->eval_batches, x, y, &st);
            if (st) break;
            evaled = 1;
        }
        double tps = (double)(step - start) * N / (t_train > 0 ? t_train : 1e-9);
        char eta[32];
        fmt_time(eta, sizeof eta, (double)(c->steps - step) * t_train / (double)(step - start));
        if (o->json) {
            /* a value that is not finite (an overflowing gradient norm) is null: the line stays JSON */
            const char *key[] = {"loss", "aux", "lr", "grad_norm", "load_cv", "dropped", "entropy", "experts_per_token",
                                 "tok_per_s", "val_loss"};
            const char *fmt[] = {"%.6f", "%.6f", "%.6g", "%.6g", "%.4f", "%.4f", "%.4f", "%.3f", "%.1f", "%.6f"};
            const double v[] = {loss, m->aux, lr, norm, rs.load_cv, rs.dropped, rs.entropy, rs.per_token, tps, val};
            printf("{\"step\": %lld", (long long)step);
            for (int k = 0; k < 10 - !evaled; k++) {
                printf(", \"%s\": ", key[k]);
                moe_json_put_num(stdout, fmt[k], v[k]);
            }
            printf("}\n");
            if (fflush(stdout) != 0 || ferror(stdout)) {   /* a full disk or closed stdout: stop now, not hours later */
                st = moe_fail(MOE_EIO, "standard output: cannot write: %s", strerror(errno));
                break;
            }
        }
        if (!o->quiet) {
            char vb[32] = "";
            if (!isnan(val)) snprintf(vb, sizeof vb, " | val %.4f", val);
            if (tty)
                fprintf(stderr, "\r\033[Kstep %lld/%d | loss %.4f%s | cv %.2f drop %.1f%% H %.2f | %.1fk tok/s | ETA %s",
                        (long long)step, c->steps, loss, vb, rs.load_cv, 100 * rs.dropped, rs.entropy, tps / 1e3, eta);
            else if (step % log_every == 0 || evaled || step == c->steps)
                fprintf(stderr, "step %lld/%d | loss %.4f%s | cv %.2f drop %.1f%% H %.2f | %.1fk tok/s | ETA %s\n",
                        (long long)step, c->steps, loss, vb, rs.load_cv, 100 * rs.dropped, rs.entropy, tps / 1e3, eta);
        }
        int last = step == c->steps || g_stop || (o->stop_after && step == o->stop_after);
        if (o->out && ((c->save_every && step % c->save_every == 0) || (last && !(o->stop_after && step == o->stop_after))))
            if ((st = save_all(m, od, step, data_rng)) != MOE_OK) break;
        res->tok_per_s = tps;
        if (last) break;
    }
    if (tty) fprintf(stderr, "\n");
    signal(SIGINT, old);
    if (!st && g_stop) st = moe_fail(MOE_EINTERRUPTED, "interrupted at step %lld%s", (long long)step,
                                     o->out ? " (checkpoint saved)" : "");
    res->steps = step > c->steps ? c->steps : step;
    res->val_loss = val;
    if (n_tail) {
        res->train_loss = loss_tail / n_tail;
        res->stats.load_cv = tail_cv / n_tail;
        res->stats.dropped = tail_drop / n_tail;
        res->stats.entropy = tail_ent / n_tail;
        res->stats.per_token = tail_pt / n_tail;
    }
done:
    free(x);
    free(y);
    moe_tmodel_free(m);
    moe_data_free(&data);
    moe_outdir_close(&own);
    return st;
}
