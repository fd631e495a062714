/* Data at scale: token shards in llm.c's and nanoGPT's formats (written here: tests never
 * download), their validation, the in-order and shuffled samplers and their resume, a small GPT
 * trained on them, the GPT-2-small config; and crafted Fashion-MNIST IDX files. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "eopt.h"
#include "train/config.h"
#include "train/data.h"
#include "train/trainer.h"
#include "tests/testutil.h"

enum { VOCAB = 300 }; /* more than a byte */

/* Token i of the test stream: every value below VOCAB, many above 255. */
static uint32_t stream(int64_t i) { return (uint32_t)((i * 37 + i / 7) % VOCAB); }

static void put_le(FILE *f, uint32_t v, int width)
{
    for (int k = 0; k < width; k++)
        fputc((int)(v >> (8 * k) & 0xff), f);
}

/* An llm.c shard: 256 int32 of header (magic, version, count), then n tokens of `width` bytes,
 * stream tokens first .. first + n - 1. */
static void write_llmc(const char *path, int32_t magic, int32_t version, int32_t count, int width, int64_t first,
                       int64_t n)
{
    FILE *f = fopen(path, "wb");
    cr_assert(f, "%s", path);
    put_le(f, (uint32_t)magic, 4);
    put_le(f, (uint32_t)version, 4);
    put_le(f, (uint32_t)count, 4);
    for (int k = 3; k < EOPT_LLMC_HEADER_INTS; k++)
        put_le(f, 0, 4);
    for (int64_t i = 0; i < n; i++)
        put_le(f, stream(first + i), width);
    fclose(f);
}

static void write_gpt2_shard(const char *dir, const char *name, int64_t first, int64_t n, char *path, size_t size)
{
    snprintf(path, size, "%s/%s", dir, name);
    write_llmc(path, EOPT_LLMC_MAGIC, 1, (int32_t)n, 2, first, n);
}

/* nanoGPT's train.bin: raw uint16 tokens. */
static void write_nanogpt(const char *path, int64_t first, int64_t n)
{
    FILE *f = fopen(path, "wb");
    cr_assert(f, "%s", path);
    for (int64_t i = 0; i < n; i++)
        put_le(f, stream(first + i), 2);
    fclose(f);
}

/* Batch b in order: slot s of the shards (first tokens and slot counts), B T + 1 tokens. */
static void expect_slot(const int32_t *tok, const int32_t *tgt, int64_t start, int n, const char *what)
{
    for (int i = 0; i < n; i++) {
        cr_assert_eq((uint32_t)tok[i], stream(start + i), "%s: token %d", what, i);
        cr_assert_eq((uint32_t)tgt[i], stream(start + i + 1), "%s: target %d", what, i);
    }
}

/* Three shards of 40, 17 and 33 tokens, B = 2, T = 8 (slots of 17 tokens, 16 apart): 2 + 1 + 2
 * slots an epoch, read in order and wrapping around. */
Test(data_tokens, llmc_shards_in_order)
{
    char dir[256], path[400], pattern[300];
    tu_tmpdir(dir, sizeof dir, "data", NULL);
    write_gpt2_shard(dir, "train_000001.bin", 0, 40, path, sizeof path);
    write_gpt2_shard(dir, "train_000002.bin", 1000, 17, path, sizeof path);
    write_gpt2_shard(dir, "train_000003.bin", 2000, 33, path, sizeof path);
    snprintf(pattern, sizeof pattern, "%s/train_*.bin", dir);
    const char *patterns[] = {pattern};
    eopt_tokens d;
    cr_assert_eq(eopt_tokens_open(EOPT_TOKENS_LLMC, 1, patterns, 2, 8, VOCAB, 0, &d), EOPT_OK, "%s",
                 eopt_last_error());
    cr_expect_eq(d.nshards, 3);
    cr_expect_eq(d.slots, 5);
    const int64_t starts[5] = {0, 16, 1000, 2000, 2016};
    int32_t tok[16], tgt[16];
    for (uint64_t b = 0; b < 12; b++) {
        char what[32];
        snprintf(what, sizeof what, "batch %d", (int)b);
        cr_assert_eq(eopt_tokens_batch(&d, 99, b, tok, tgt), EOPT_OK, "%s", eopt_last_error());
        expect_slot(tok, tgt, starts[b % 5], 16, what);
    }
    eopt_tokens_close(&d);
    /* a list of patterns: in the order given */
    char second[300], third[300];
    snprintf(second, sizeof second, "%s/train_000003.bin", dir);
    snprintf(third, sizeof third, "%s/train_00000[12].bin", dir);
    const char *list[] = {second, third};
    cr_assert_eq(eopt_tokens_open(EOPT_TOKENS_LLMC, 2, list, 2, 8, VOCAB, 0, &d), EOPT_OK, "%s", eopt_last_error());
    cr_assert_eq(eopt_tokens_batch(&d, 0, 0, tok, tgt), EOPT_OK);
    expect_slot(tok, tgt, 2000, 16, "list[0]");
    cr_assert_eq(eopt_tokens_batch(&d, 0, 2, tok, tgt), EOPT_OK);
    expect_slot(tok, tgt, 0, 16, "list[1]");
    eopt_tokens_close(&d);
    tu_rmdir_all(dir);
}

/* nanoGPT's raw uint16 file reads as the same stream; llama-3's uint32 shards too. */
Test(data_tokens, nanogpt_and_llama3_files)
{
    char dir[256], path[400];
    tu_tmpdir(dir, sizeof dir, "data", NULL);
    snprintf(path, sizeof path, "%s/train.bin", dir);
    write_nanogpt(path, 500, 100);
    const char *p1[] = {path};
    eopt_tokens d;
    cr_assert_eq(eopt_tokens_open(EOPT_TOKENS_NANOGPT, 1, p1, 3, 5, VOCAB, 0, &d), EOPT_OK, "%s", eopt_last_error());
    cr_expect_eq(d.slots, 6); /* (100 - 1) / 15 */
    int32_t tok[15], tgt[15];
    cr_assert_eq(eopt_tokens_batch(&d, 0, 4, tok, tgt), EOPT_OK, "%s", eopt_last_error());
    expect_slot(tok, tgt, 500 + 4 * 15, 15, "nanogpt");
    eopt_tokens_close(&d);

    snprintf(path, sizeof path, "%s/llama.bin", dir);
    FILE *f = fopen(path, "wb");
    cr_assert(f);
    put_le(f, EOPT_LLMC_MAGIC_LLAMA3, 4);
    put_le(f, 7, 4);
    put_le(f, 20, 4);
    for (int k = 3; k < EOPT_LLMC_HEADER_INTS; k++)
        put_le(f, 0, 4);
    for (int i = 0; i < 20; i++)
        put_le(f, 100000u + (uint32_t)i, 4); /* beyond uint16 */
    fclose(f);
    cr_assert_eq(eopt_tokens_open(EOPT_TOKENS_LLMC, 1, p1, 2, 4, 128256, 0, &d), EOPT_OK, "%s", eopt_last_error());
    cr_assert_eq(eopt_tokens_batch(&d, 0, 1, tok, tgt), EOPT_OK, "%s", eopt_last_error());
    for (int i = 0; i < 8; i++)
        cr_expect(tok[i] == 100008 + i && tgt[i] == 100009 + i, "llama-3 token %d: %d", i, tok[i]);
    eopt_tokens_close(&d);
    tu_rmdir_all(dir);
}

/* Shuffled: every slot once an epoch, another order the next, a pure function of (seed, b). */
Test(data_tokens, shuffled_epochs_resume)
{
    char dir[256], path[400];
    tu_tmpdir(dir, sizeof dir, "data", NULL);
    write_gpt2_shard(dir, "a.bin", 0, 8 * 20 + 1, path, sizeof path);
    const char *p1[] = {path};
    eopt_tokens d;
    cr_assert_eq(eopt_tokens_open(EOPT_TOKENS_LLMC, 1, p1, 1, 8, VOCAB, 1, &d), EOPT_OK, "%s", eopt_last_error());
    cr_assert_eq(d.slots, 20);
    int seen[20] = {0}, first[20], moved = 0;
    int32_t tok[8], tgt[8];
    for (int b = 0; b < 40; b++) {
        cr_assert_eq(eopt_tokens_batch(&d, 5, (uint64_t)b, tok, tgt), EOPT_OK);
        int64_t start = -1;
        for (int s = 0; s < 20 && start < 0; s++)
            if ((uint32_t)tok[0] == stream(8 * s) && (uint32_t)tok[1] == stream(8 * s + 1) &&
                (uint32_t)tok[7] == stream(8 * s + 7))
                start = s;
        cr_assert_geq(start, 0, "batch %d is no slot", b);
        expect_slot(tok, tgt, 8 * start, 8, "shuffled");
        if (b < 20)
            seen[start]++, first[b] = (int)start;
        else
            moved |= first[b - 20] != start;
    }
    for (int s = 0; s < 20; s++)
        cr_expect_eq(seen[s], 1, "slot %d seen %d times in epoch 0", s, seen[s]);
    cr_expect(moved, "epoch 1 repeats epoch 0's order");
    int32_t again[8], other[8];
    cr_assert_eq(eopt_tokens_batch(&d, 5, 3, tok, tgt), EOPT_OK);
    cr_assert_eq(eopt_tokens_batch(&d, 5, 3, again, tgt), EOPT_OK);
    cr_expect_eq(memcmp(tok, again, sizeof tok), 0);
    int differs = 0;
    for (int b = 0; b < 4; b++) {
        cr_assert_eq(eopt_tokens_batch(&d, 5, (uint64_t)b, tok, tgt), EOPT_OK);
        cr_assert_eq(eopt_tokens_batch(&d, 6, (uint64_t)b, other, tgt), EOPT_OK);
        differs |= memcmp(tok, other, sizeof tok) != 0;
    }
    cr_expect(differs, "seeds 5 and 6 give the same batches");

    /* the device batch and the sampler: position advances, a resumed sampler repeats */
    eopt_backend *be = tu_backend(1);
    eopt_batch_buffer bb;
    cr_assert_eq(eopt_batch_buffer_create(be, 1, 8, 0, &bb), EOPT_OK);
    eopt_sampler s = {.seed = 5, .position = 7}, r = s;
    cr_assert_eq(eopt_tokens_next(&d, &s, 1, &bb), EOPT_OK, "%s", eopt_last_error());
    cr_expect_eq(s.position, 8);
    be->download(be, tok, bb.batch.tokens, sizeof tok);
    cr_assert_eq(eopt_tokens_batch(&d, r.seed, r.position, again, other), EOPT_OK);
    cr_expect_eq(memcmp(tok, again, sizeof tok), 0);
    cr_expect_eq(eopt_tokens_next(&d, &s, 1, &(eopt_batch_buffer){0}), EOPT_ERR_ARG);
    eopt_batch_buffer_free(&bb);
    cr_assert_eq(eopt_batch_buffer_create(be, 1, 4, 0, &bb), EOPT_OK);
    cr_expect_eq(eopt_tokens_next(&d, &s, 1, &bb), EOPT_ERR_ARG, "a buffer of another T");
    cr_expect_eq(s.position, 8, "a failed batch leaves the position");
    eopt_batch_buffer_free(&bb);
    eopt_backend_close(be);
    eopt_tokens_close(&d);
    tu_rmdir_all(dir);
}

static void expect_open_fails(eopt_token_format format, const char *path, int B, int T, eopt_status want,
                              const char *needle)
{
    const char *p1[] = {path};
    eopt_tokens d;
    cr_expect_eq(eopt_tokens_open(format, 1, p1, B, T, VOCAB, 0, &d), want, "%s: %s", needle, eopt_last_error());
    cr_expect(strstr(eopt_last_error(), needle), "%s", eopt_last_error());
    cr_expect(strstr(eopt_last_error(), path), "the message names the file: %s", eopt_last_error());
    cr_expect(d.shards == NULL && d.raw == NULL, "nothing is left allocated");
}

Test(data_tokens, every_defect_is_an_error_naming_the_file)
{
    char dir[256], path[400];
    tu_tmpdir(dir, sizeof dir, "data", NULL);
    snprintf(path, sizeof path, "%s/bad.bin", dir);
    write_llmc(path, 20240521, 1, 100, 2, 0, 100);
    expect_open_fails(EOPT_TOKENS_LLMC, path, 1, 8, EOPT_ERR_FORMAT, "magic 20240521");
    write_llmc(path, EOPT_LLMC_MAGIC, 2, 100, 2, 0, 100);
    expect_open_fails(EOPT_TOKENS_LLMC, path, 1, 8, EOPT_ERR_FORMAT, "version 2");
    write_llmc(path, EOPT_LLMC_MAGIC, 1, 101, 2, 0, 100);
    expect_open_fails(EOPT_TOKENS_LLMC, path, 1, 8, EOPT_ERR_FORMAT, "counts 101 tokens");
    write_llmc(path, EOPT_LLMC_MAGIC, 1, 0, 2, 0, 0);
    expect_open_fails(EOPT_TOKENS_LLMC, path, 1, 8, EOPT_ERR_FORMAT, "holds no tokens");
    write_llmc(path, EOPT_LLMC_MAGIC, 1, 16, 2, 0, 16);
    expect_open_fails(EOPT_TOKENS_LLMC, path, 2, 8, EOPT_ERR_FORMAT, "too few for one batch of 2 x 8 + 1");
    write_nanogpt(path, 0, 100); /* a raw file read as llm.c's */
    expect_open_fails(EOPT_TOKENS_LLMC, path, 1, 8, EOPT_ERR_FORMAT, "shorter than llm.c's header");
    write_nanogpt(path, 0, 1000);
    expect_open_fails(EOPT_TOKENS_LLMC, path, 1, 8, EOPT_ERR_FORMAT, "data.format = \"nanogpt\"");
    write_llmc(path, EOPT_LLMC_MAGIC, 1, 100, 2, 0, 100); /* llm.c's read as nanoGPT's */
    expect_open_fails(EOPT_TOKENS_NANOGPT, path, 1, 8, EOPT_ERR_FORMAT, "data.format = \"llmc\"");
    FILE *f = fopen(path, "wb");
    fputs("abc", f);
    fclose(f);
    expect_open_fails(EOPT_TOKENS_NANOGPT, path, 1, 1, EOPT_ERR_FORMAT, "not a whole number of uint16 tokens");
    f = fopen(path, "wb");
    fclose(f);
    expect_open_fails(EOPT_TOKENS_NANOGPT, path, 1, 1, EOPT_ERR_FORMAT, "holds no tokens");
    snprintf(path, sizeof path, "%s/none_*.bin", dir);
    expect_open_fails(EOPT_TOKENS_LLMC, path, 1, 8, EOPT_ERR_IO, "no file matches");

    /* a token outside the vocabulary: found as its batch is read, with the file and byte offset */
    snprintf(path, sizeof path, "%s/vocab.bin", dir);
    write_nanogpt(path, 0, 64);
    const char *p1[] = {path};
    eopt_tokens d;
    cr_assert_eq(eopt_tokens_open(EOPT_TOKENS_NANOGPT, 1, p1, 1, 8, 200, 0, &d), EOPT_OK, "%s", eopt_last_error());
    int32_t tok[8], tgt[8];
    cr_assert_eq(eopt_tokens_batch(&d, 0, 0, tok, tgt), EOPT_ERR_FORMAT); /* stream(5) = 185, stream(6) = 222 */
    char want[600];
    snprintf(want, sizeof want, "'%s': token 6 (byte 12) is 222, outside the vocabulary of 200", path);
    cr_expect(strstr(eopt_last_error(), want), "%s", eopt_last_error());
    eopt_tokens_close(&d);
    tu_rmdir_all(dir);
}

/* ---- training on token shards ---- */

static const char *token_cfg =
    "model = { kind = \"gpt\"; vocab_size = %d; block_size = 16; n_layer = 2; n_head = 2; n_embd = 16; };\n"
    "data = { kind = \"tokens\"; format = \"%s\"; train = %s; val = \"%s\"; shuffle = %s; };\n"
    "run = { steps = 6; batch_size = 2; seq_len = 16; grad_accum = 2; eval_interval = 3; eval_batches = 2;\n"
    "        seed = 7; threads = 1; };\n"
    "optimizers = (\n"
    "  { name = \"matrix\"; class = \"Muon\"; args = { lr = 0.02; };\n"
    "    groups = ( { params = \"transformer.h.*\"; ndim = 2; } ); },\n"
    "  { name = \"adamw\"; class = \"AdamW\"; args = { lr = 0.003; weight_decay = 0.0; };\n"
    "    groups = ( { params = [\"transformer.w*\", \"*.bias\", \"*ln_*.weight\"]; } ); }\n"
    ");\n"
    "checkpoint = { dir = \"%s\"; keep = 2; };\n"
    "log = { progress = \"none\"; };\n";

static eopt_config cfg_a, cfg_b; /* large */

static void expect_same_checkpoint_model(const char *a, const char *b)
{
    eopt_ckpt *ca, *cb;
    cr_assert_eq(eopt_checkpoint_open(a, NULL, &ca), EOPT_OK, "%s", eopt_last_error());
    cr_assert_eq(eopt_checkpoint_open(b, NULL, &cb), EOPT_OK, "%s", eopt_last_error());
    cr_expect_eq(eopt_ckpt_step(ca), eopt_ckpt_step(cb));
    for (int k = 0; k < eopt_ckpt_num_tensors(ca); k++) {
        const char *name = eopt_ckpt_tensor_name(ca, k);
        const eopt_tensor *ta = eopt_ckpt_tensor(ca, name), *tb = eopt_ckpt_tensor(cb, name);
        cr_assert(tb, "%s missing", name);
        cr_expect(memcmp(ta->data, tb->data, eopt_tensor_bytes(ta)) == 0, "%s differs after resume", name);
    }
    eopt_checkpoint_close(ca);
    eopt_checkpoint_close(cb);
}

/* A GPT with 300 tokens trains on llm.c shards (two train shards, shuffled or in order) and on
 * nanoGPT files; N steps in one go equal k steps, a resume and N - k steps, bit for bit. */
Test(data_train, small_gpt_on_shards_resumes_bit_exact, .timeout = 120)
{
    char dir[256], path[400], train[700], val[400], ra[400], rb[400], text[4096];
    tu_tmpdir(dir, sizeof dir, "data", NULL);
    write_gpt2_shard(dir, "fw_train_000001.bin", 0, 300, path, sizeof path);
    write_gpt2_shard(dir, "fw_train_000002.bin", 7000, 200, path, sizeof path);
    write_gpt2_shard(dir, "fw_val_000000.bin", 90000, 100, val, sizeof val);
    snprintf(train, sizeof train, "[\"%s/fw_train_*.bin\"]", dir);
    for (int shuffle = 0; shuffle < 2; shuffle++) {
        snprintf(ra, sizeof ra, "%s/run_a%d", dir, shuffle);
        snprintf(rb, sizeof rb, "%s/run_b%d", dir, shuffle);
        snprintf(text, sizeof text, token_cfg, VOCAB, "llmc", train, val, shuffle ? "true" : "false", ra);
        cr_assert_eq(eopt_config_parse(text, "tokens.cfg", 0, NULL, &cfg_a), EOPT_OK, "%s", eopt_last_error());
        snprintf(text, sizeof text, token_cfg, VOCAB, "llmc", train, val, shuffle ? "true" : "false", rb);
        cr_assert_eq(eopt_config_parse(text, "tokens.cfg", 0, NULL, &cfg_b), EOPT_OK, "%s", eopt_last_error());
        eopt_train_result a, b1, b2;
        eopt_train_options quiet = {.quiet = 1}, first = {.quiet = 1, .stop_at = 2},
                           resume = {.quiet = 1, .resume = "auto"};
        cr_assert_eq(eopt_train(&cfg_a, &quiet, &a), EOPT_OK, "%s", eopt_last_error());
        cr_expect_eq(a.step, 6);
        cr_expect(isfinite(a.eval_loss) && a.eval_loss < 1.5 * log(VOCAB), "eval loss %g", a.eval_loss);
        cr_assert_eq(eopt_train(&cfg_b, &first, &b1), EOPT_OK, "%s", eopt_last_error());
        cr_assert_eq(eopt_train(&cfg_b, &resume, &b2), EOPT_OK, "%s", eopt_last_error());
        cr_expect(b2.start_step == 2 && b2.step == 6);
        cr_expect_eq(a.eval_loss, b2.eval_loss, "shuffle %d: %.9g vs %.9g", shuffle, a.eval_loss, b2.eval_loss);
        expect_same_checkpoint_model(a.last_checkpoint, b2.last_checkpoint);
    }
    /* nanoGPT's train.bin / val.bin */
    snprintf(path, sizeof path, "%s/train.bin", dir);
    write_nanogpt(path, 0, 400);
    snprintf(train, sizeof train, "\"%s\"", path);
    snprintf(val, sizeof val, "%s/val.bin", dir);
    write_nanogpt(val, 5000, 100);
    snprintf(ra, sizeof ra, "%s/run_nanogpt", dir);
    snprintf(text, sizeof text, token_cfg, VOCAB, "nanogpt", train, val, "false", ra);
    cr_assert_eq(eopt_config_parse(text, "tokens.cfg", 0, NULL, &cfg_a), EOPT_OK, "%s", eopt_last_error());
    eopt_train_result r;
    eopt_train_options quiet = {.quiet = 1};
    cr_assert_eq(eopt_train(&cfg_a, &quiet, &r), EOPT_OK, "%s", eopt_last_error());
    cr_expect(r.step == 6 && isfinite(r.eval_loss));
    /* a model vocabulary smaller than the data's: the first batch fails, naming the file */
    snprintf(ra, sizeof ra, "%s/run_nanogpt_v256", dir);
    snprintf(text, sizeof text, token_cfg, 256, "nanogpt", train, val, "false", ra);
    cr_assert_eq(eopt_config_parse(text, "tokens.cfg", 0, NULL, &cfg_a), EOPT_OK, "%s", eopt_last_error());
    cr_expect_eq(eopt_train(&cfg_a, &quiet, &r), EOPT_ERR_FORMAT);
    cr_expect(strstr(eopt_last_error(), path) && strstr(eopt_last_error(), "outside the vocabulary of 256"), "%s",
              eopt_last_error());
    tu_rmdir_all(dir);
}

Test(data_config, token_keys)
{
    const char *base = "model = { kind = \"gpt\"; vocab_size = 300; block_size = 16; };\n"
                       "data = { %s };\n"
                       "run = { %s };\n"
                       "optimizers = ( { name = \"a\"; class = \"AdamW\"; args = { lr = 0.001; };\n"
                       "                 groups = ( { params = \"*\"; } ); } );\n";
    char text[2048];
    snprintf(text, sizeof text, base, "kind = \"tokens\"; train = [\"a_*.bin\", \"b.bin\"]; val = \"v.bin\";",
             "steps = 1;");
    cr_assert_eq(eopt_config_parse(text, "t.cfg", 0, NULL, &cfg_a), EOPT_OK, "%s", eopt_last_error());
    cr_expect_eq(cfg_a.data.kind, EOPT_DATA_TOKENS);
    cr_expect_eq(cfg_a.data.format, EOPT_TOKENS_LLMC);
    cr_expect_eq(cfg_a.data.shuffle, 0);
    cr_expect_eq(cfg_a.data.nshards[EOPT_SPLIT_TRAIN], 2);
    cr_expect_str_eq(cfg_a.data.shards[EOPT_SPLIT_TRAIN][1], "b.bin");
    cr_expect_str_eq(cfg_a.data.shards[EOPT_SPLIT_VAL][0], "v.bin");
    cr_expect_eq(cfg_a.run.sample_tokens, 0, "no byte sample from token data");
    const char *sets[] = {"data.format=\"nanogpt\"", "data.shuffle=true"};
    cr_assert_eq(eopt_config_parse(text, "t.cfg", 2, sets, &cfg_a), EOPT_OK, "%s", eopt_last_error());
    cr_expect(cfg_a.data.format == EOPT_TOKENS_NANOGPT && cfg_a.data.shuffle);
    struct {
        const char *data, *run, *needle;
    } bad[] = {
        {"kind = \"tokens\"; val = \"v.bin\";", "", "t.cfg:2: data: 'train' needs token shards"},
        {"kind = \"tokens\"; train = []; val = \"v.bin\";", "", "'train' needs token shards"},
        {"kind = \"tokens\"; train = 3; val = \"v.bin\";", "", "expected a shard path or glob or an array"},
        {"kind = \"tokens\"; train = \"t\"; val = \"v\"; format = \"llm\";", "", "did you mean 'llmc'"},
        {"kind = \"tokens\"; train = \"t\"; val = \"v\"; path = \"x\";", "", "unknown key 'path'"},
        {"kind = \"text\"; train = \"t\";", "", "unknown key 'train'"},
        {"kind = \"tokens\"; train = \"t\"; val = \"v\";", "sample_tokens = 10;", "a sample needs byte-level text"},
    };
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        snprintf(text, sizeof text, base, bad[k].data, bad[k].run);
        cr_expect_eq(eopt_config_parse(text, "t.cfg", 0, NULL, &cfg_a), EOPT_ERR_CONFIG, "%s", bad[k].needle);
        cr_expect(strstr(eopt_last_error(), bad[k].needle), "want '%s', got: %s", bad[k].needle, eopt_last_error());
    }
}

/* configs/gpt2_small.cfg parses, its optimizers cover every parameter, and its model builds
 * (124,439,808 parameters) and runs forward and backward on B = 1, T = 64 of a written shard.
 * Zero weights instead of the random initialisation (124M normal draws, seconds here) give
 * uniform logits: the loss is ln 50257 exactly. An optimizer step would cost Muon's
 * Newton-Schulz on every block matrix, about 1.4 TFLOP: too slow for the suite on two cores. */
Test(data_config, gpt2_small_parses_builds_and_runs, .timeout = 120)
{
    char dir[256], path[400], train[500], val[500];
    tu_tmpdir(dir, sizeof dir, "data", NULL);
    write_gpt2_shard(dir, "train_000001.bin", 0, 200, path, sizeof path);
    snprintf(train, sizeof train, "data.train=\"%s\"", path);
    snprintf(val, sizeof val, "data.val=\"%s\"", path);
    const char *sets[] = {train, val, "run.batch_size=1", "run.seq_len=64", "run.threads=2"};
    cr_assert_eq(eopt_config_load("configs/gpt2_small.cfg", 5, sets, &cfg_a), EOPT_OK, "%s", eopt_last_error());
    const eopt_model_config *m = &cfg_a.model;
    cr_expect(m->n_layer == 12 && m->n_embd == 768 && m->n_head == 12 && m->block_size == 1024 &&
              m->vocab_size == 50257);
    cr_expect_eq(cfg_a.data.kind, EOPT_DATA_TOKENS);
    eopt_backend *be;
    cr_assert_eq(eopt_backend_open(cfg_a.run.device, cfg_a.run.threads, &be), EOPT_OK, "%s", eopt_last_error());
    eopt_model *model;
    cr_assert_eq(eopt_model_create(m, be, 1, 64, &model), EOPT_OK, "%s", eopt_last_error());
    int64_t n = 0;
    for (int i = 0; i < model->nparams; i++) {
        n += model->params[i].w->numel;
        eopt_fill(be, model->params[i].w->numel, 0.0f, eopt_f32(model->params[i].w));
    }
    cr_expect_eq(n, 124439808);
    int *owner = malloc(2 * sizeof(int) * (size_t)model->nparams);
    cr_assert_eq(eopt_config_assign(&cfg_a, model->params, model->nparams, owner, owner + model->nparams), EOPT_OK,
                 "%s", eopt_last_error());
    for (int i = 0; i < model->nparams; i++)
        cr_expect_eq(owner[i], model->params[i].w->ndim == 2 && strncmp(model->params[i].name, "transformer.h.", 14) == 0
                                   ? 0 : 1, "%s", model->params[i].name);
    free(owner);
    const char *p1[] = {path};
    eopt_tokens d;
    eopt_batch_buffer bb;
    eopt_sampler s = {.seed = cfg_a.run.seed};
    cr_assert_eq(eopt_tokens_open(cfg_a.data.format, 1, p1, 1, 64, m->vocab_size, 0, &d), EOPT_OK, "%s",
                 eopt_last_error());
    cr_assert_eq(eopt_batch_buffer_create(be, 1, 64, 0, &bb), EOPT_OK);
    cr_assert_eq(eopt_tokens_next(&d, &s, 1, &bb), EOPT_OK, "%s", eopt_last_error());
    float loss;
    cr_assert_eq(eopt_model_forward(model, &bb.batch, 1, 1.0f, &loss, NULL), EOPT_OK, "%s", eopt_last_error());
    cr_expect(fabs(loss - log(50257.0)) < 1e-4, "loss %g of uniform logits", loss);
    eopt_batch_buffer_free(&bb);
    eopt_tokens_close(&d);
    eopt_model_free(model);
    eopt_backend_close(be);
    tu_rmdir_all(dir);
}

/* ---- Fashion-MNIST: crafted IDX files ---- */

/* A gzip IDX file of unsigned bytes: magic 0x0000 08 ndim, big-endian sizes, `bytes` bytes. */
static void write_idx(const char *path, int ndim, const uint32_t *sizes, size_t bytes)
{
    gzFile g = gzopen(path, "wb");
    cr_assert(g, "%s", path);
    uint8_t head[16] = {0, 0, 8, (uint8_t)ndim};
    for (int k = 0; k < ndim; k++)
        for (int j = 0; j < 4; j++)
            head[4 + 4 * k + j] = (uint8_t)(sizes[k] >> (24 - 8 * j));
    cr_assert_eq(gzwrite(g, head, 4 + 4 * (unsigned)ndim), 4 + 4 * ndim);
    for (size_t i = 0; i < bytes; i++)
        gzputc(g, (int)(i % 10)); /* pixels, and labels 0..9 */
    gzclose(g);
}

/* dir/train-* and dir/t10k-* with n images of rows x cols pixels (sizes[0] = count) and n labels. */
static void write_fashion(const char *dir, uint32_t n, uint32_t rows, uint32_t cols, size_t pixels)
{
    char path[400];
    const char *prefix[] = {"train", "t10k"};
    for (int k = 0; k < 2; k++) {
        uint32_t isize[3] = {n, rows, cols}, lsize[1] = {n};
        snprintf(path, sizeof path, "%s/%s-images-idx3-ubyte.gz", dir, prefix[k]);
        write_idx(path, 3, isize, pixels);
        snprintf(path, sizeof path, "%s/%s-labels-idx1-ubyte.gz", dir, prefix[k]);
        write_idx(path, 1, lsize, n);
    }
}

static void expect_fashion_fails(const char *dir, const char *needle)
{
    eopt_images d;
    cr_expect_eq(eopt_fashion_mnist_load(dir, 1, 0, &d), EOPT_ERR_FORMAT, "%s", needle);
    cr_expect(strstr(eopt_last_error(), needle), "want '%s', got: %s", needle, eopt_last_error());
    cr_expect(strstr(eopt_last_error(), "train-images-idx3-ubyte.gz"), "names the file: %s", eopt_last_error());
    cr_expect(d.x == NULL && d.labels == NULL);
}

/* Issue 16: images of another size than 28 x 28 (they used to be read past the batch buffer
 * for a whole run), an IDX header whose sizes overflow 64 bits (256 x 2^31 x 2^31 = 2^70 wrapped
 * to 0 and passed as an empty file), and a zero count (0 images loaded "successfully"). */
Test(data_fashion, crafted_idx_files_are_rejected)
{
    char dir[256];
    tu_tmpdir(dir, sizeof dir, "data", NULL);
    write_fashion(dir, 4, 27, 28, 4 * 27 * 28);
    expect_fashion_fails(dir, "images of 27 x 28 pixels; Fashion-MNIST's are 28 x 28");
    write_fashion(dir, 256, 1u << 31, 1u << 31, 0);
    expect_fashion_fails(dir, "IDX header's sizes need more than its 0 bytes of data");
    write_fashion(dir, 0, 28, 28, 0);
    expect_fashion_fails(dir, "size 0 of its IDX header is 0");
    write_fashion(dir, 3, 28, 28, 3 * 28 * 28 + 1);
    expect_fashion_fails(dir, "sizes make 2352 bytes, the file has 2353");
    write_fashion(dir, 3, 28, 28, 3 * 28 * 28);
    eopt_images d;
    cr_assert_eq(eopt_fashion_mnist_load(dir, 0, 0, &d), EOPT_OK, "%s", eopt_last_error());
    cr_expect(d.n == 3 && d.dim == 784 && d.labels[2] == 2);
    eopt_images_free(&d);
    tu_rmdir_all(dir);
}

/* The trainer refuses such images at setup instead of training on them. */
Test(data_fashion, trainer_refuses_other_image_sizes)
{
    char dir[256], text[2048], ck[300];
    tu_tmpdir(dir, sizeof dir, "data", NULL);
    write_fashion(dir, 64, 28, 27, 64 * 28 * 27);
    snprintf(ck, sizeof ck, "%s/run", dir);
    snprintf(text, sizeof text,
             "model = { kind = \"mlp\"; dims = [784, 16, 10]; };\n"
             "data = { kind = \"fashion-mnist\"; path = \"%s\"; };\n"
             "run = { steps = 40; batch_size = 8; eval_interval = 40; threads = 1; };\n"
             "optimizers = ( { name = \"a\"; class = \"AdamW\"; args = { lr = 0.001; };\n"
             "                 groups = ( { params = \"*\"; } ); } );\n"
             "checkpoint = { dir = \"%s\"; };\nlog = { progress = \"none\"; };\n",
             dir, ck);
    cr_assert_eq(eopt_config_parse(text, "f.cfg", 0, NULL, &cfg_a), EOPT_OK, "%s", eopt_last_error());
    eopt_train_options quiet = {.quiet = 1};
    eopt_train_result r;
    cr_expect_eq(eopt_train(&cfg_a, &quiet, &r), EOPT_ERR_FORMAT, "%s", eopt_last_error());
    cr_expect(strstr(eopt_last_error(), "images of 28 x 27 pixels"), "%s", eopt_last_error());
    cr_expect(access(ck, F_OK) != 0, "no run was started");
    tu_rmdir_all(dir);
}
