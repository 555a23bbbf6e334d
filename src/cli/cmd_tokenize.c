/* cmd_tokenize.c - `moe tokenize MODEL TEXT`: text to token ids (and back) with a model's
 * tokenizer.json, exactly as Hugging Face tokenizers does with add_special_tokens=False.
 * Pieces are printed escaped (control bytes as \n, \t, \xNN) so that one token stays one line. */
#include "cli/args.h"
#include "cli/commands.h"
#include "core/error.h"
#include "io/json.h"
#include "moe.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_TEXT_FILE ((size_t)1 << 30)

static void print_escaped(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n') fputs("\\n", stdout);
        else if (c == '\t') fputs("\\t", stdout);
        else if (c == '\r') fputs("\\r", stdout);
        else if (c == '\\') fputs("\\\\", stdout);
        else if (c < 0x20 || c == 0x7f) printf("\\x%02x", c);
        else putchar(c);
    }
}

static moe_status decode_one(const moe_tokenizer *t, const int32_t *ids, int n, int skip, int stream) {
    moe_status st = MOE_OK;
    if (stream) {   /* the streaming decoder, as generation uses it */
        moe_detokenizer *d;
        MOE_TRY(moe_detokenizer_new(t, skip, &d));
        const char *piece;
        size_t len;
        for (int i = 0; i < n && !st; i++) {
            st = moe_detokenizer_push(d, ids[i], &piece, &len);
            if (!st) fwrite(piece, 1, len, stdout);
        }
        if (!st) st = moe_detokenizer_flush(d, &piece, &len);
        if (!st) fwrite(piece, 1, len, stdout);
        moe_detokenizer_free(d);
        return st;
    }
    char *text;
    size_t len;
    MOE_TRY(moe_tokenizer_decode(t, ids, (size_t)n, skip, &text, &len));
    fwrite(text, 1, len, stdout);
    free(text);
    return MOE_OK;
}

/* --decode IDS, or --decode @FILE with one comma-separated list per line (an empty line is an
 * empty list); each decoded text is followed by a newline, or a NUL byte with --nul. */
static int decode(const moe_tokenizer *t, const char *arg, int skip, int stream, int nul) {
    char *buf = NULL;
    size_t blen = 0;
    if (arg[0] == '@') {
        moe_status st = moe_read_file(arg + 1, MAX_TEXT_FILE, &buf, &blen);
        if (st) return moe_cli_error(st);
    }
    const char *p = buf ? buf : arg, *end = buf ? buf + blen : arg + strlen(arg);
    int rc = 0;
    while (p < end && !rc) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t l = nl ? (size_t)(nl - p) : (size_t)(end - p);
        char *line = malloc(l + 1);
        if (!line) { rc = 2; break; }
        memcpy(line, p, l);
        line[l] = 0;
        if (l && line[l - 1] == '\r') line[--l] = 0;
        int32_t *ids = NULL;
        int n = l ? moe_parse_int_list("tokenize", "--decode", line, &ids) : 0;
        free(line);
        if (n < 0) { rc = 1; break; }
        moe_status st = decode_one(t, ids, n, skip, stream);
        free(ids);
        if (st) { rc = moe_cli_error(st); break; }
        putchar(nul ? 0 : '\n');
        if (ferror(stdout)) { rc = moe_cli_error(moe_cli_stdout_check()); break; }   /* stop at a full disk */
        p += l + (nl ? 1 + (p[l] == '\r') : 0);
        if (!nl) break;
    }
    free(buf);
    return rc;
}

/* The texts of a --nul file: NUL-separated (a trailing NUL ends the last text). */
static int encode_all(const moe_tokenizer *t, const char *text, size_t len, int nul, int ids_only, const char *file) {
    size_t start = 0;
    do {
        size_t n_text = len - start;
        if (nul) {
            const char *z = memchr(text + start, 0, len - start);
            if (z) n_text = (size_t)(z - (text + start));
        }
        int32_t *ids = NULL;
        size_t n = 0;
        moe_status st = moe_tokenizer_encode(t, text + start, n_text, &ids, &n);
        if (st) {
            if (file) moe_error_prefix(file);   /* "FILE: text: not valid UTF-8 at byte N" */
            return moe_cli_error(st);
        }
        for (size_t i = 0; i < n; i++) {
            if (ids_only) printf("%s%d", i ? "," : "", ids[i]);
            else {
                size_t pl;
                const char *p = moe_tokenizer_piece(t, ids[i], &pl);
                printf("%d\t", ids[i]);
                print_escaped(p ? p : "", p ? pl : 0);
                putchar('\n');
            }
        }
        if (ids_only || nul) putchar('\n');
        free(ids);
        if (ferror(stdout)) return moe_cli_error(moe_cli_stdout_check());
        start += n_text + 1;
    } while (nul && start < len);
    return 0;
}

int cmd_tokenize(int argc, char **argv) {
    int ids_only = 0, skip = 0, stream = 0, nul = 0;
    const char *file = NULL, *decode_s = NULL;
    const moe_opt opts[] = {
        {"ids", 0, ARG_FLAG, &ids_only, NULL, "print only the ids, comma-separated, on one line", 0, 0},
        {"file", 'f', ARG_STR, &file, "FILE", "read the text from FILE instead of the command line", 0, 0},
        {"decode", 'd', ARG_STR, &decode_s, "IDS", "turn comma-separated ids (or @FILE, one list per line) into text", 0, 0},
        {"skip-special", 0, ARG_FLAG, &skip, NULL, "with --decode: leave out special tokens", 0, 0},
        {"stream", 0, ARG_FLAG, &stream, NULL, "with --decode: decode one id at a time (streaming decoder)", 0, 0},
        {"nul", 0, ARG_FLAG, &nul, NULL, "--file holds NUL-separated texts, one ids line each; --decode ends texts with NUL", 0, 0},
        {0},
    };
    const moe_cmd_spec spec = {
        "tokenize", "MODEL_OR_TOKENIZER_JSON [TEXT] [options]",
        "Encode text with a Hugging Face tokenizer.json (BPE, byte-level or SentencePiece-style) and print\n"
        "one token per line as id<TAB>piece, or decode ids with --decode.",
        "Ids equal tokenizers' encode(text, add_special_tokens=False): special-token strings in the text\n"
        "become their ids; no BOS/EOS is added. Pieces are vocabulary strings, escaped (\\n, \\t, \\xNN).\n"
        "Decoded text is followed by one newline. --nul batches many texts in one run (--ids implied per\n"
        "line with --file; a blank line separates the pieces of successive texts otherwise).",
        opts, 1, 2};
    const char *pos[2];
    int npos, r = moe_args_parse(&spec, argc, argv, pos, &npos);
    if (r) return r == MOE_ARGS_HELP ? 0 : 1;
    int have_text = npos == 2;
    if (decode_s && (have_text || file)) {
        fprintf(stderr, "moe tokenize: --decode takes no TEXT or --file (see moe tokenize --help)\n");
        return 1;
    }
    if (!decode_s && have_text == !!file) {
        fprintf(stderr, "moe tokenize: give the text as an argument or with --file, not both (see moe tokenize --help)\n");
        return 1;
    }
    if (nul && !decode_s && !file) {
        fprintf(stderr, "moe tokenize: --nul needs --file or --decode (see moe tokenize --help)\n");
        return 1;
    }
    if (!decode_s && (skip || stream)) {
        fprintf(stderr, "moe tokenize: --skip-special and --stream go with --decode (see moe tokenize --help)\n");
        return 1;
    }
    moe_tokenizer *t;
    moe_status st = moe_tokenizer_load(pos[0], &t);
    if (st) return moe_cli_error(st);
    int rc;
    if (decode_s) {
        rc = decode(t, decode_s, skip, stream, nul);
    } else if (file) {
        char *buf;
        size_t len;
        st = moe_read_file(file, MAX_TEXT_FILE, &buf, &len);
        rc = st ? moe_cli_error(st) : encode_all(t, buf, len, nul, ids_only, file);
        if (!st) free(buf);
    } else {
        rc = encode_all(t, pos[1], strlen(pos[1]), 0, ids_only, NULL);
    }
    moe_tokenizer_free(t);
    return rc;
}
