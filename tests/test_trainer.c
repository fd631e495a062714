/* The trainer: schedules (schedule_*), configuration files and their messages (config_*), and
 * the training loop (trainer_*): exact resume for every optimizer class, non-finite steps,
 * --init, metrics and the `eopt train` command. Tiny models on a small generated text. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eopt.h"
#include "tests/testutil.h"
#include "checkpoint/checkpoint.h"
#include "train/config.h"
#include "framework/log.h"
#include "framework/schedule.h"
#include "train/trainer.h"

/* ---- schedules ---- */

Test(schedule_lr, shapes)
{
    eopt_lr_schedule c = {.kind = EOPT_LR_CONSTANT, .total = 100};
    cr_expect_eq(eopt_lr_factor(&c, 0), 1.0);
    cr_expect_eq(eopt_lr_factor(&c, 99), 1.0);

    eopt_lr_schedule w = {.kind = EOPT_LR_WARMUP, .warmup = 10, .total = 100};
    cr_expect_float_eq(eopt_lr_factor(&w, 0), 0.1, 1e-12);
    cr_expect_float_eq(eopt_lr_factor(&w, 4), 0.5, 1e-12);
    cr_expect_eq(eopt_lr_factor(&w, 9), 1.0);
    cr_expect_eq(eopt_lr_factor(&w, 50), 1.0);

    eopt_lr_schedule cos = {.kind = EOPT_LR_COSINE, .warmup = 10, .total = 110, .floor = 0.1};
    cr_expect_eq(eopt_lr_factor(&cos, 10), 1.0);
    cr_expect_float_eq(eopt_lr_factor(&cos, 60), 0.1 + 0.9 * 0.5, 1e-12);
    cr_expect_float_eq(eopt_lr_factor(&cos, 110), 0.1, 1e-12);
    cr_expect_float_eq(eopt_lr_factor(&cos, 500), 0.1, 1e-12); /* past the end: the floor */

    eopt_lr_schedule lin = {.kind = EOPT_LR_LINEAR, .total = 100};
    cr_expect_float_eq(eopt_lr_factor(&lin, 25), 0.75, 1e-12);
    cr_expect_float_eq(eopt_lr_factor(&lin, 100), 0.0, 1e-12);

    eopt_lr_schedule wsd = {.kind = EOPT_LR_WSD, .warmup = 10, .total = 100, .decay = 20, .floor = 0.2};
    cr_expect_eq(eopt_lr_factor(&wsd, 79), 1.0);
    cr_expect_eq(eopt_lr_factor(&wsd, 80), 1.0);
    cr_expect_float_eq(eopt_lr_factor(&wsd, 90), 0.6, 1e-12);
    cr_expect_float_eq(eopt_lr_factor(&wsd, 100), 0.2, 1e-12);

    /* (0, 0) -> (10, 1) -> (110, 0.1): warm-up then a linear decay, held at both ends */
    eopt_lr_schedule pw = {.kind = EOPT_LR_PIECEWISE, .points = {3, {0, 10, 110}, {0.0, 1.0, 0.1}}};
    cr_expect_eq(eopt_lr_schedule_check(&pw, "x"), EOPT_OK, "%s", eopt_last_error());
    cr_expect_eq(eopt_lr_factor(&pw, 0), 0.0);
    cr_expect_float_eq(eopt_lr_factor(&pw, 5), 0.5, 1e-12);
    cr_expect_eq(eopt_lr_factor(&pw, 10), 1.0);
    cr_expect_float_eq(eopt_lr_factor(&pw, 60), 0.55, 1e-12);
    cr_expect_float_eq(eopt_lr_factor(&pw, 110), 0.1, 1e-12);
    cr_expect_float_eq(eopt_lr_factor(&pw, 1000), 0.1, 1e-12);
}

Test(schedule_lr, checks)
{
    eopt_lr_schedule bad_floor = {.kind = EOPT_LR_COSINE, .total = 100, .floor = 1.5};
    cr_expect_eq(eopt_lr_schedule_check(&bad_floor, "x"), EOPT_ERR_CONFIG);
    cr_expect(strstr(eopt_last_error(), "floor"), "%s", eopt_last_error());
    eopt_lr_schedule bad_total = {.kind = EOPT_LR_LINEAR, .warmup = 100, .total = 50};
    cr_expect_eq(eopt_lr_schedule_check(&bad_total, "x"), EOPT_ERR_CONFIG);
    eopt_lr_schedule bad_decay = {.kind = EOPT_LR_WSD, .total = 100};
    cr_expect_eq(eopt_lr_schedule_check(&bad_decay, "x"), EOPT_ERR_CONFIG);
    eopt_lr_schedule ok = {.kind = EOPT_LR_WSD, .total = 100, .decay = 10};
    cr_expect_eq(eopt_lr_schedule_check(&ok, "x"), EOPT_OK);
    eopt_lr_schedule back = {.kind = EOPT_LR_PIECEWISE, .points = {2, {10, 10}, {1.0, 0.5}}};
    cr_expect_eq(eopt_lr_schedule_check(&back, "x"), EOPT_ERR_CONFIG);
    cr_expect(strstr(eopt_last_error(), "strictly increasing"), "%s", eopt_last_error());
    eopt_lr_schedule none = {.kind = EOPT_LR_PIECEWISE};
    cr_expect_eq(eopt_lr_schedule_check(&none, "x"), EOPT_ERR_CONFIG);
}

Test(schedule_ramp, values)
{
    eopt_ramp lin = {.kind = EOPT_RAMP_LINEAR, .from = 0.0, .to = 0.5, .start = 10, .end = 20};
    cr_expect_eq(eopt_ramp_value(&lin, 0), 0.0);
    cr_expect_float_eq(eopt_ramp_value(&lin, 15), 0.25, 1e-12);
    cr_expect_eq(eopt_ramp_value(&lin, 20), 0.5);
    cr_expect_eq(eopt_ramp_value(&lin, 1000), 0.5);
    eopt_ramp cos = {.kind = EOPT_RAMP_COSINE, .from = 1.0, .to = 0.0, .end = 10};
    cr_expect_float_eq(eopt_ramp_value(&cos, 5), 0.5, 1e-12);
    cr_expect_float_eq(eopt_ramp_value(&cos, 10), 0.0, 1e-12);
    eopt_ramp con = {.kind = EOPT_RAMP_CONSTANT, .from = 0.3, .to = 0.3};
    cr_expect_eq(eopt_ramp_value(&con, 7), 0.3);
    /* momentum 0.85 -> 0.95 over 300 steps, then held: any value, not only [0, 1] */
    eopt_ramp pw = {.kind = EOPT_RAMP_PIECEWISE, .points = {2, {0, 300}, {0.85, 0.95}}};
    cr_expect_float_eq(eopt_ramp_value(&pw, 150), 0.90, 1e-12);
    cr_expect_float_eq(eopt_ramp_value(&pw, 301), 0.95, 1e-12);
    eopt_ramp wd = {.kind = EOPT_RAMP_LINEAR, .from = 0.0, .to = 2.5, .end = 10};
    cr_expect_eq(eopt_ramp_check(&wd, "x"), EOPT_OK);
    cr_expect_float_eq(eopt_ramp_value(&wd, 4), 1.0, 1e-12);
    eopt_ramp nan = {.kind = EOPT_RAMP_LINEAR, .from = 0.0, .to = NAN, .end = 10};
    cr_expect_eq(eopt_ramp_check(&nan, "x"), EOPT_ERR_CONFIG);
    eopt_ramp steps = {.kind = EOPT_RAMP_LINEAR, .from = 0.0, .to = 1.0, .start = 5, .end = 5};
    cr_expect_eq(eopt_ramp_check(&steps, "x"), EOPT_ERR_CONFIG);
}

/* An optimizer's schedules: an lr schedule, group 1's own (piecewise), base lrs, an every-group
 * ramp and a group's own. */
static eopt_schedules sample_schedules(void)
{
    eopt_schedules s = {.lr = {.kind = EOPT_LR_WSD, .warmup = 5, .total = 100, .decay = 30, .floor = 0.25},
                        .ngroups = 2,
                        .base_lr = {0.02, 0.5},
                        .has_group_lr = {0, 1},
                        .group_lr = {{0}, {.kind = EOPT_LR_PIECEWISE, .points = {2, {0, 50}, {1.0, 0.1}}}},
                        .nramps = 2};
    s.ramps[0] = (eopt_named_ramp){"softening", -1, {.kind = EOPT_RAMP_COSINE, .from = 0.1, .to = 0.9, .start = 3,
                                                      .end = 40}};
    s.ramps[1] = (eopt_named_ramp){"weight_decay", 1, {.kind = EOPT_RAMP_PIECEWISE,
                                                         .points = {2, {0, 10}, {0.1, 0.0}}}};
    return s;
}

Test(schedule_dict, round_trip_and_diff)
{
    eopt_schedules s = sample_schedules(), back;
    eopt_dict d = {0};
    cr_assert_eq(eopt_schedules_to_dict(&s, &d), EOPT_OK, "%s", eopt_last_error());
    cr_expect_str_eq(eopt_dict_get(&d, "softening.kind")->s, "cosine");
    cr_expect_str_eq(eopt_dict_get(&d, "group1.weight_decay.kind")->s, "piecewise");
    cr_expect_eq(eopt_dict_get(&d, "group1.base_lr")->f, 0.5);
    eopt_dict_set(&d, "position", eopt_int(17)); /* the trainer's; ignored */
    cr_assert_eq(eopt_schedules_from_dict(&d, "t", &back), EOPT_OK, "%s", eopt_last_error());
    cr_expect(memcmp(&s.lr, &back.lr, sizeof s.lr) == 0);
    cr_expect_eq(back.ngroups, 2);
    cr_expect_eq(back.base_lr[1], 0.5);
    cr_expect(back.has_group_lr[1] && !back.has_group_lr[0]);
    cr_expect(memcmp(&s.group_lr[1], &back.group_lr[1], sizeof s.group_lr[1]) == 0);
    cr_assert_eq(back.nramps, 2);
    const eopt_named_ramp *soft = eopt_schedules_ramp(&back, 0, "softening"),
                          *wd1 = eopt_schedules_ramp(&back, 1, "weight_decay");
    cr_assert(soft && wd1 && !eopt_schedules_ramp(&back, 0, "weight_decay"));
    cr_expect(soft->group == -1 && memcmp(&soft->ramp, &s.ramps[0].ramp, sizeof soft->ramp) == 0);
    cr_expect(wd1->group == 1 && memcmp(&wd1->ramp, &s.ramps[1].ramp, sizeof wd1->ramp) == 0);

    char diff[1024];
    cr_expect_eq(eopt_schedules_diff(&d, &s, diff, sizeof diff), 0, "%s", diff);
    eopt_schedules c = s;
    c.lr.total = 200;
    c.base_lr[0] = 0.03;
    c.ramps[0].ramp.to = 0.5;
    cr_expect_eq(eopt_schedules_diff(&d, &c, diff, sizeof diff), 3, "%s", diff);
    cr_expect(strstr(diff, "total: 100 -> 200") && strstr(diff, "group0.base_lr: 0.02 -> 0.03") &&
                  strstr(diff, "softening.to: 0.9 -> 0.5"),
              "%s", diff);
    c = s;
    c.nramps = 1; /* the group's weight-decay ramp dropped */
    cr_expect_eq(eopt_schedules_diff(&d, &c, diff, sizeof diff), 6, "%s", diff);
    cr_expect(strstr(diff, "group1.weight_decay.kind: piecewise -> absent"), "%s", diff);

    eopt_dict_set(&d, "kind", eopt_str("sawtooth"));
    cr_expect_eq(eopt_schedules_from_dict(&d, "t", &back), EOPT_ERR_FORMAT);
}

/* /schedules as eopt wrote it before piecewise kinds, base lrs and named ramps. */
Test(schedule_dict, reads_older_files)
{
    eopt_dict d = {0};
    eopt_dict_set(&d, "kind", eopt_str("cosine"));
    eopt_dict_set(&d, "warmup", eopt_int(30));
    eopt_dict_set(&d, "total", eopt_int(500));
    eopt_dict_set(&d, "decay", eopt_int(0));
    eopt_dict_set(&d, "floor", eopt_float(0.1));
    eopt_dict_set(&d, "softening.kind", eopt_str("linear"));
    eopt_dict_set(&d, "softening.from", eopt_float(0.2));
    eopt_dict_set(&d, "softening.to", eopt_float(0.0));
    eopt_dict_set(&d, "softening.start", eopt_int(0));
    eopt_dict_set(&d, "softening.end", eopt_int(250));
    eopt_dict_set(&d, "position", eopt_int(100));
    eopt_schedules s;
    cr_assert_eq(eopt_schedules_from_dict(&d, "t", &s), EOPT_OK, "%s", eopt_last_error());
    cr_expect_eq(s.lr.kind, EOPT_LR_COSINE);
    cr_expect_eq(s.lr.total, 500);
    cr_assert_eq(s.nramps, 1);
    cr_expect_str_eq(s.ramps[0].key, "softening");
    cr_expect_eq(s.ramps[0].group, -1);
    cr_expect_float_eq(eopt_ramp_value(&s.ramps[0].ramp, 125), 0.1, 1e-12);
}

/* ---- configuration files ---- */

static const char *base_cfg =
    "model = { kind = \"gpt\"; block_size = 16; n_layer = 2; n_head = 2; n_embd = 16; };\n" /* line 1 */
    "data = { kind = \"text\"; path = \"%s\"; };\n"                                          /* line 2 */
    "run = { steps = 6; batch_size = 2; seq_len = 16; eval_interval = 3; eval_batches = 2;\n" /* line 3 */
    "        seed = 7; threads = 1; sample_tokens = 0; };\n"                                   /* line 4 */
    "optimizers = (\n"                                                                       /* line 5 */
    "  { name = \"matrix\"; class = \"%s\"; args = { %s };\n"                                 /* line 6 */
    "    schedule = { kind = \"cosine\"; warmup = 2; floor = 0.1; }; %s\n"                    /* line 7 */
    "    groups = ( { params = \"transformer.h.*\"; ndim = 2; } ); },\n"                     /* line 8 */
    "  { name = \"adamw\"; class = \"AdamW\"; args = { lr = 0.003; weight_decay = 0.0; };\n" /* line 9 */
    "    groups = ( { params = [\"transformer.w*\"]; },\n"                                   /* line 10 */
    "               { params = [\"*.bias\", \"*ln_*.weight\"]; weight_decay = 0.0; } ); }\n" /* line 11 */
    ");\n"
    "checkpoint = { dir = \"%s\"; keep = 2; };\n"
    "log = { interval = 2; progress = \"none\"; };\n";

static const char *corpus(void) { return tu_text_corpus("eopt-trainer-text-v1.txt", tu_write_words); }

static void make_cfg(char *buf, size_t size, const char *cls, const char *args, const char *extra, const char *dir)
{
    snprintf(buf, size, base_cfg, corpus(), cls, args, extra, dir);
}

static eopt_status parse(const char *text, int nset, const char *const *sets, eopt_config *cfg)
{
    return eopt_config_parse(text, "t.cfg", nset, sets, cfg);
}

static eopt_config cfg_buf; /* large */

Test(config_parse, reads_every_section)
{
    char text[4096];
    make_cfg(text, sizeof text, "Muon", "lr = 0.02; nesterov = true; momentum = 0.9;", "", "/tmp/x");
    cr_assert_eq(parse(text, 0, NULL, &cfg_buf), EOPT_OK, "%s", eopt_last_error());
    eopt_config *c = &cfg_buf;
    cr_expect_eq(c->model.kind, EOPT_MODEL_GPT);
    cr_expect_eq(c->model.n_embd, 16);
    cr_expect_eq(c->model.vocab_size, 256);
    cr_expect_eq(c->run.steps, 6);
    cr_expect_eq(c->run.grad_accum, 1);
    cr_expect_eq(c->nopt, 2);
    cr_expect_str_eq(c->opts[0].cls, "Muon");
    cr_expect_eq(eopt_dict_get(&c->opts[0].args, "nesterov")->i, 1);
    cr_expect_eq(eopt_dict_get(&c->opts[0].hp, "lr")->f, 0.02);
    cr_expect_eq(eopt_dict_get(&c->opts[0].hp, "momentum")->kind, EOPT_VAL_FLOAT);
    cr_expect_eq(c->opts[0].sched.lr.kind, EOPT_LR_COSINE);
    cr_expect_eq(c->opts[0].sched.lr.total, 6); /* defaults to run.steps */
    cr_expect_eq(c->opts[1].ngroups, 2);
    cr_expect_eq(c->opts[1].groups[0].sel.npatterns, 1);
    cr_expect_eq(c->opts[1].groups[1].sel.npatterns, 2);
    cr_expect_eq(c->opts[0].groups[0].sel.ndim_mask, 1u << 2);
    cr_expect_str_eq(c->log.metrics, "/tmp/x/metrics.jsonl");
}

/* run.device defaults to EOPT_DEVICE (else cpu), so EOPT_DEVICE=cuda moves the trainer and resume
 * tests to the GPU; a device the config names wins. */
Test(config_parse, device_defaults_to_eopt_device)
{
    char text[4096];
    make_cfg(text, sizeof text, "Muon", "lr = 0.02;", "", "/tmp/x");
    unsetenv("EOPT_DEVICE");
    cr_assert_eq(parse(text, 0, NULL, &cfg_buf), EOPT_OK, "%s", eopt_last_error());
    cr_expect_str_eq(cfg_buf.run.device, "cpu");
    setenv("EOPT_DEVICE", "cuda", 1);
    cr_assert_eq(parse(text, 0, NULL, &cfg_buf), EOPT_OK, "%s", eopt_last_error());
    cr_expect_str_eq(cfg_buf.run.device, "cuda");
    const char *set[] = {"run.device=cpu"};
    cr_assert_eq(parse(text, 1, set, &cfg_buf), EOPT_OK, "%s", eopt_last_error());
    cr_expect_str_eq(cfg_buf.run.device, "cpu");
    unsetenv("EOPT_DEVICE");
}

/* The message of a failed parse contains every needle. */
static void expect_error(const char *text, int nset, const char *const *sets, const char *n1, const char *n2)
{
    cr_assert_eq(parse(text, nset, sets, &cfg_buf), EOPT_ERR_CONFIG, "parsed: %s", text);
    const char *msg = eopt_last_error();
    cr_expect(strstr(msg, n1), "'%s' not in: %s", n1, msg);
    if (n2)
        cr_expect(strstr(msg, n2), "'%s' not in: %s", n2, msg);
}

Test(config_errors, syntax_error_names_the_line)
{
    expect_error("model = { kind = \"gpt\"; };\nrun = { steps = ; };\n", 0, NULL, "t.cfg:2:", "syntax error");
}

Test(config_errors, unknown_key_suggests_the_nearest)
{
    char text[4096];
    make_cfg(text, sizeof text, "Muon", "lr = 0.02;", "", "/tmp/x");
    char *p = strstr(text, "eval_batches");
    memcpy(p, "eval_bathces", 12);
    expect_error(text, 0, NULL, "t.cfg:3: run.eval_bathces: unknown key", "did you mean 'eval_batches'");
    make_cfg(text, sizeof text, "Muon", "lr = 0.02; nestrov = true;", "", "/tmp/x");
    expect_error(text, 0, NULL, "t.cfg:6: optimizers.[0].args.nestrov", "did you mean 'nesterov'");
    make_cfg(text, sizeof text, "Muonn", "lr = 0.02;", "", "/tmp/x");
    expect_error(text, 0, NULL, "t.cfg:6:", "did you mean 'Muon'");
}

Test(config_errors, wrong_types_and_ranges)
{
    char text[4096];
    make_cfg(text, sizeof text, "Muon", "lr = \"fast\";", "", "/tmp/x");
    expect_error(text, 0, NULL, "t.cfg:6: optimizers.[0].args.lr", "expected a finite number, got a string");
    make_cfg(text, sizeof text, "Muon", "lr = 0.02; num_ns_steps = 2.5;", "", "/tmp/x");
    expect_error(text, 0, NULL, "args.num_ns_steps", "expected an integer");
    make_cfg(text, sizeof text, "Muon", "lr = 0.02;", "", "/tmp/x");
    const char *neg[] = {"run.batch_size=0"};
    expect_error(text, 1, neg, "--set run.batch_size", "out of range");
    const char *seq[] = {"run.seq_len=32"};
    expect_error(text, 1, seq, "run.seq_len", "out of range [1, 16]");
    const char *floor[] = {"optimizers.matrix.schedule.floor=2.0"};
    expect_error(text, 1, floor, "floor", "out of range");
    const char *kind[] = {"optimizers.[0].schedule.kind=cosin"};
    expect_error(text, 1, kind, "did you mean 'cosine'", NULL);
}

Test(config_errors, ramps_only_for_schedulable_keys)
{
    char text[4096];
    make_cfg(text, sizeof text, "Muon", "lr = 0.02;",
             "ramps = { softening = { kind = \"linear\"; from = 0.0; to = 0.5; }; };", "/tmp/x");
    expect_error(text, 0, NULL, "t.cfg:7: optimizers.[0].ramps.softening: Muon cannot schedule 'softening'",
                 "(schedulable: lr, momentum, weight_decay)");
    make_cfg(text, sizeof text, "Muon", "lr = 0.02;", "ramps = { momentun = { kind = \"constant\"; value = 0.9; }; };",
             "/tmp/x");
    expect_error(text, 0, NULL, "ramps.momentun", "did you mean 'momentum'");
    make_cfg(text, sizeof text, "Muon", "lr = 0.02;", "ramps = { lr = { kind = \"constant\"; value = 0.1; }; };",
             "/tmp/x");
    expect_error(text, 0, NULL, "t.cfg:7: optimizers.[0].ramps.lr", "lr follows `schedule`");
    make_cfg(text, sizeof text, "dion.Muon", "lr = 0.02;",
             "softening = { kind = \"linear\"; from = 0.0; to = 0.5; };", "/tmp/x");
    expect_error(text, 0, NULL, "t.cfg:7: optimizers.[0].softening", "ramps = { softening = { ... }; }");
    make_cfg(text, sizeof text, "Muon", "lr = 0.02;", "ramps = { momentum = { kind = \"linear\"; from = 0.8; }; };",
             "/tmp/x");
    expect_error(text, 0, NULL, "t.cfg:7: optimizers.[0].ramps.momentum", "missing key 'to'");
    make_cfg(text, sizeof text, "dion.Muon", "lr = 0.02;", "", "/tmp/x");
    const char *group_arg[] = {"optimizers.matrix.groups.[0].ramps.softening.kind=constant",
                               "optimizers.matrix.groups.[0].ramps.softening.value=0.5"};
    expect_error(text, 2, group_arg, "groups.[0].ramps.softening", "constructor argument");
}

Test(config_errors, piecewise_points)
{
    char text[4096];
    make_cfg(text, sizeof text, "Muon", "lr = 0.02;", "", "/tmp/x");
    const char *unsorted[] = {"optimizers.matrix.schedule={kind=\"piecewise\"; points=((0, 1.0), (5, 0.5), (5, 0.1));}"};
    expect_error(text, 1, unsorted, "optimizers.[0].schedule", "strictly increasing");
    const char *missing[] = {"optimizers.matrix.schedule={kind=\"piecewise\";}"};
    expect_error(text, 1, missing, "missing key 'points'", NULL);
    const char *extra[] = {"optimizers.matrix.schedule.kind=piecewise", "optimizers.matrix.schedule.points=((0, 1.0))"};
    expect_error(text, 2, extra, "schedule.warmup: unknown key", NULL); /* the file's warmup has no meaning now */
    const char *pair[] = {"optimizers.matrix.schedule={kind=\"piecewise\"; points=((0, 1.0, 2.0));}"};
    expect_error(text, 1, pair, "point 0: expected (step, value)", NULL);
}

Test(config_parse, schedules_and_ramps)
{
    char text[4096];
    make_cfg(text, sizeof text, "Muon", "lr = 0.02;",
             "ramps = { momentum = { kind = \"piecewise\"; points = ((0, 0.85), (4, 0.95)); }; };", "/tmp/x");
    const char *sets[] = {"optimizers.matrix.schedule={kind=\"piecewise\"; points=((0, 0.0), (2, 1.0), (6, 0.1));}",
                          "optimizers.adamw.groups.[0].ramps.weight_decay.kind=linear",
                          "optimizers.adamw.groups.[0].ramps.weight_decay.from=0.1",
                          "optimizers.adamw.groups.[0].ramps.weight_decay.to=0.0"};
    cr_assert_eq(parse(text, 4, sets, &cfg_buf), EOPT_OK, "%s", eopt_last_error());
    const eopt_schedules *m = &cfg_buf.opts[0].sched, *a = &cfg_buf.opts[1].sched;
    cr_expect_eq(m->lr.kind, EOPT_LR_PIECEWISE);
    cr_expect_eq(m->lr.points.n, 3);
    cr_expect_float_eq(eopt_schedules_lr(m, 0, 1), 0.01, 1e-15);
    cr_expect_float_eq(eopt_ramp_value(&eopt_schedules_ramp(m, 0, "momentum")->ramp, 2), 0.90, 1e-12);
    cr_expect_eq(a->ngroups, 2);
    cr_expect_eq(a->base_lr[1], 0.003);
    const eopt_named_ramp *wd = eopt_schedules_ramp(a, 0, "weight_decay");
    cr_assert(wd);
    cr_expect_eq(wd->group, 0);
    cr_expect_eq(wd->ramp.end, 6); /* defaults to run.steps */
    cr_expect_null(eopt_schedules_ramp(a, 1, "weight_decay"));
}

Test(config_set, overrides_and_adds)
{
    char text[4096];
    make_cfg(text, sizeof text, "Muon", "lr = 0.02;", "", "/tmp/x");
    const char *sets[] = {"run.steps=50", "optimizers.adamw.args.lr=1e-4", "optimizers.[0].args.nesterov=true",
                          "run.device=cpu", "checkpoint.keep=5", "optimizers.matrix.groups.[0].lr=0.5"};
    cr_assert_eq(parse(text, 6, sets, &cfg_buf), EOPT_OK, "%s", eopt_last_error());
    cr_expect_eq(cfg_buf.run.steps, 50);
    cr_expect_eq(cfg_buf.opts[0].sched.lr.total, 50);
    cr_expect_eq(eopt_dict_get(&cfg_buf.opts[1].hp, "lr")->f, 1e-4);
    cr_expect_eq(eopt_dict_get(&cfg_buf.opts[0].args, "nesterov")->i, 1);
    cr_expect_eq(cfg_buf.checkpoint.keep, 5);
    cr_expect_eq(eopt_dict_get(&cfg_buf.opts[0].groups[0].hp, "lr")->f, 0.5);
    const char *bad[] = {"optimizers.nosuch.args.lr=1"};
    expect_error(text, 1, bad, "--set optimizers.nosuch.args.lr=1", "nosuch");
    const char *noeq[] = {"run.steps"};
    expect_error(text, 1, noeq, "PATH=VALUE", NULL);
}

static void tiny_params(eopt_model **m, eopt_backend **be)
{
    eopt_model_config mc = {.kind = EOPT_MODEL_GPT, .vocab_size = 256, .block_size = 16, .n_layer = 2, .n_head = 2,
                            .n_embd = 16};
    cr_assert_eq(eopt_backend_open(NULL, 1, be), EOPT_OK);
    cr_assert_eq(eopt_model_create(&mc, *be, 2, 16, m), EOPT_OK, "%s", eopt_last_error());
}

Test(config_assign, every_parameter_in_exactly_one_group)
{
    char text[4096];
    eopt_model *m;
    eopt_backend *be;
    tiny_params(&m, &be);
    int opt_of[64], group_of[64];
    make_cfg(text, sizeof text, "Muon", "lr = 0.02;", "", "/tmp/x");
    cr_assert_eq(parse(text, 0, NULL, &cfg_buf), EOPT_OK, "%s", eopt_last_error());
    cr_assert_eq(eopt_config_assign(&cfg_buf, m->params, m->nparams, opt_of, group_of), EOPT_OK, "%s",
                 eopt_last_error());
    int k = eopt_model_find(m, "transformer.h.0.attn.c_attn.weight");
    cr_expect(opt_of[k] == 0 && group_of[k] == 0);
    k = eopt_model_find(m, "transformer.wte.weight");
    cr_expect(opt_of[k] == 1 && group_of[k] == 0);
    k = eopt_model_find(m, "transformer.h.0.ln_1.bias");
    cr_expect(opt_of[k] == 1 && group_of[k] == 1);

    /* without the biases group: unowned parameters are named */
    const char *drop[] = {"optimizers.adamw.groups.[1].params=\"nothing*\""};
    cr_assert_eq(parse(text, 1, drop, &cfg_buf), EOPT_OK, "%s", eopt_last_error());
    cr_expect_eq(eopt_config_assign(&cfg_buf, m->params, m->nparams, opt_of, group_of), EOPT_ERR_CONFIG);
    cr_expect(strstr(eopt_last_error(), "parameters in no group: transformer.h.0.ln_1.weight"), "%s",
              eopt_last_error());

    /* a greedy pattern: doubly-owned parameters are named with both groups */
    const char *greedy[] = {"optimizers.adamw.groups.[1].params=\"*\""};
    cr_assert_eq(parse(text, 1, greedy, &cfg_buf), EOPT_OK, "%s", eopt_last_error());
    cr_expect_eq(eopt_config_assign(&cfg_buf, m->params, m->nparams, opt_of, group_of), EOPT_ERR_CONFIG);
    cr_expect(strstr(eopt_last_error(), "transformer.h.0.attn.c_attn.weight (claimed by t.cfg:8:"), "%s",
              eopt_last_error());

    /* a pattern that matches nothing, with its line */
    const char *none[] = {"optimizers.adamw.groups.[1].params=[\"*.bias\", \"*ln_*.weight\", \"head.*\"]"};
    cr_assert_eq(parse(text, 1, none, &cfg_buf), EOPT_OK, "%s", eopt_last_error());
    cr_expect_eq(eopt_config_assign(&cfg_buf, m->params, m->nparams, opt_of, group_of), EOPT_ERR_CONFIG);
    cr_expect(strstr(eopt_last_error(), "pattern 'head.*' matches no parameter"), "%s", eopt_last_error());
    eopt_model_free(m);
    eopt_backend_close(be);
}

Test(config_files, every_shipped_config_parses)
{
    FILE *ls = popen("ls configs/*.cfg 2>/dev/null", "r");
    cr_assert(ls);
    char path[512];
    int n = 0;
    while (fgets(path, sizeof path, ls)) {
        path[strcspn(path, "\n")] = 0;
        cr_expect_eq(eopt_config_load(path, 0, NULL, &cfg_buf), EOPT_OK, "%s: %s", path, eopt_last_error());
        n++;
    }
    pclose(ls);
    cr_expect_geq(n, 1);
}

/* ---- the training loop ---- */

/* The arguments a class needs on a 2-D matrix (hyperparameters without defaults filled in). */
static void class_args(const eopt_optimizer_class *cls, char *buf, size_t size)
{
    eopt_dict args = {0}, group = {0};
    eopt_optimizer_defaults(cls, &args, &group);
    snprintf(buf, size, "lr = 0.01;");
    if (eopt_dict_get(&group, "momentum") && eopt_dict_get(&group, "momentum")->kind == EOPT_VAL_NONE)
        strncat(buf, " momentum = 0.9;", size - strlen(buf) - 1);
    if (eopt_dict_get(&group, "weight_decay") && eopt_dict_get(&group, "weight_decay")->kind == EOPT_VAL_NONE)
        strncat(buf, " weight_decay = 0.0;", size - strlen(buf) - 1);
}

static void train_ok(const eopt_config *c, const eopt_train_options *o, eopt_train_result *r)
{
    eopt_status st = eopt_train(c, o, r);
    cr_assert_eq(st, EOPT_OK, "%s", eopt_last_error());
}

/* The model tensors of two checkpoints are bit-identical. */
static void expect_same_model(const char *a, const char *b, const char *what)
{
    eopt_ckpt *ca, *cb;
    cr_assert_eq(eopt_checkpoint_open(a, NULL, &ca), EOPT_OK, "%s", eopt_last_error());
    cr_assert_eq(eopt_checkpoint_open(b, NULL, &cb), EOPT_OK, "%s", eopt_last_error());
    cr_expect_eq(eopt_ckpt_step(ca), eopt_ckpt_step(cb));
    for (int k = 0; k < eopt_ckpt_num_tensors(ca); k++) {
        const char *name = eopt_ckpt_tensor_name(ca, k);
        const eopt_tensor *ta = eopt_ckpt_tensor(ca, name), *tb = eopt_ckpt_tensor(cb, name);
        cr_assert(tb, "%s: %s missing", what, name);
        cr_expect(memcmp(ta->data, tb->data, eopt_tensor_bytes(ta)) == 0, "%s: %s differs after resume", what, name);
    }
    eopt_checkpoint_close(ca);
    eopt_checkpoint_close(cb);
}

/* N steps in one go == k steps, resume, N - k steps: bit for bit, for every class. */
Test(trainer_resume, bit_exact_for_every_class, .timeout = 240)
{
    const eopt_optimizer_class *const *all = eopt_optimizer_classes();
    int n = 0;
    for (int k = 0; all[k]; k++, n++) {
        char args[256], text[4096], da[300], db[300], extra[160] = "";
        eopt_dict dargs = {0}, dgroup = {0};
        eopt_optimizer_defaults(all[k], &dargs, &dgroup);
        if (eopt_dict_get(&dargs, "softening")) /* dion's: exercise the ramp as well */
            snprintf(extra, sizeof extra,
                     "ramps = { softening = { kind = \"linear\"; from = 0.0; to = 0.4; end = 5; }; };");
        class_args(all[k], args, sizeof args);
        tu_tmpdir(da, sizeof da, "trainer", "a");
        tu_tmpdir(db, sizeof db, "trainer", "b");
        eopt_train_result ra, rb1, rb2;
        make_cfg(text, sizeof text, all[k]->id, args, extra, da);
        cr_assert_eq(parse(text, 0, NULL, &cfg_buf), EOPT_OK, "%s: %s", all[k]->id, eopt_last_error());
        eopt_train_options quiet = {.quiet = 1};
        eopt_status st = eopt_train(&cfg_buf, &quiet, &ra);
        cr_assert_eq(st, EOPT_OK, "%s: %s", all[k]->id, eopt_last_error());
        cr_expect_eq(ra.step, 6);
        cr_expect(isfinite(ra.eval_loss));

        make_cfg(text, sizeof text, all[k]->id, args, extra, db);
        cr_assert_eq(parse(text, 0, NULL, &cfg_buf), EOPT_OK);
        eopt_train_options first = {.quiet = 1, .stop_at = 2}, resume = {.quiet = 1, .resume = "auto"};
        train_ok(&cfg_buf, &first, &rb1);
        cr_expect(rb1.interrupted && rb1.step == 2);
        train_ok(&cfg_buf, &resume, &rb2);
        cr_expect(!rb2.interrupted && rb2.start_step == 2 && rb2.step == 6, "%s: resumed at %lld", all[k]->id,
                  (long long)rb2.start_step);
        cr_expect_eq(ra.eval_loss, rb2.eval_loss, "%s: eval loss %.9g vs %.9g", all[k]->id, ra.eval_loss,
                     rb2.eval_loss);
        expect_same_model(ra.last_checkpoint, rb2.last_checkpoint, all[k]->id);
        tu_rmdir_all(da);
        tu_rmdir_all(db);
    }
    cr_expect_geq(n, 10, "only %d optimizer classes registered", n);
}

Test(trainer_resume, every_issue_class_is_registered)
{
    const char *ids[] = {"Muon", "AdaptiveMuon", "Muown", "AdamW", "SOAP",
                         "MOSO", "dion.Muon",    "NorMuon", "Dion2", "NorDion2"};
    for (int k = 0; k < 10; k++)
        cr_expect(eopt_optimizer_find(ids[k]), "optimizer class %s is not registered", ids[k]);
}

Test(trainer_checkpoint, schedules_trainer_state_and_metrics)
{
    char text[4096], dir[300], path[400];
    tu_tmpdir(dir, sizeof dir, "trainer", "c");
    make_cfg(text, sizeof text, "Muon", "lr = 0.02;", "", dir);
    const char *sets[] = {"checkpoint.interval=2"};
    cr_assert_eq(parse(text, 1, sets, &cfg_buf), EOPT_OK, "%s", eopt_last_error());
    eopt_train_options quiet = {.quiet = 1};
    eopt_train_result r;
    train_ok(&cfg_buf, &quiet, &r);

    eopt_ckpt *ck;
    cr_assert_eq(eopt_checkpoint_open(r.last_checkpoint, NULL, &ck), EOPT_OK, "%s", eopt_last_error());
    const eopt_dict *s = eopt_ckpt_schedule(ck, "matrix");
    cr_assert(s);
    eopt_schedules sched;
    cr_expect_eq(eopt_schedules_from_dict(s, "t", &sched), EOPT_OK, "%s", eopt_last_error());
    eopt_lr_schedule back = sched.lr;
    cr_expect_eq(back.kind, EOPT_LR_COSINE);
    cr_expect_eq(back.warmup, 2);
    cr_expect_eq(sched.base_lr[0], 0.02);
    cr_expect_eq(eopt_dict_get(s, "position")->i, 6);
    const eopt_dict *tr = eopt_ckpt_trainer(ck);
    cr_assert(tr);
    cr_expect_eq(eopt_dict_get(tr, "step")->i, 6);
    cr_expect_eq(eopt_dict_get(tr, "data_position")->i, 6);
    cr_expect(eopt_ckpt_trainer_data(ck, "sampler"));
    /* the lr the optimizer last used: base x cosine factor of step 5 (0-based) */
    const eopt_ckpt_opt_info *info = eopt_ckpt_optimizer_info(ck, "matrix");
    cr_assert(info);
    double lr = eopt_dict_get(&info->group_hp[0], "lr")->f, fac = eopt_lr_factor(&back, 5);
    cr_expect_float_eq(lr, 0.02 * fac, 1e-15, "lr %g", lr);
    eopt_checkpoint_close(ck);

    /* keep = 2: steps 4 and 6 remain */
    snprintf(path, sizeof path, "%s/step_000000000002.h5", dir);
    cr_expect(access(path, F_OK) != 0, "%s should have been pruned", path);
    snprintf(path, sizeof path, "%s/step_000000000004.h5", dir);
    cr_expect(access(path, F_OK) == 0);

    /* metrics: one line per step; eval every 3 steps; per-group statistics on every step */
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    FILE *f = fopen(path, "r");
    cr_assert(f);
    char line[2048];
    int n = 0, evals = 0, stats = 0;
    while (fgets(line, sizeof line, f)) {
        n += strstr(line, "\"train_loss\"") != NULL;
        evals += strstr(line, "\"eval_loss\"") != NULL;
        stats += strstr(line, "\"matrix\": {\"lr\"") && strstr(line, "\"update_rms\"") &&
                 strstr(line, "\"tokens_per_s\"");
    }
    fclose(f);
    cr_expect_eq(n, 6);
    cr_expect_eq(evals, 2);
    cr_expect_eq(stats, 6);
    tu_rmdir_all(dir);
}

/* Warnings the library logs, collected for the tests. */
static char warnings[8192];

static void collect_warnings(eopt_log_level level, const char *msg, void *user)
{
    (void)user;
    if (level == EOPT_LOG_WARN)
        snprintf(warnings + strlen(warnings), sizeof warnings - strlen(warnings), "%s\n", msg);
}

/* Resume reads /schedules: the same config resumes without a word; a changed total, base lr and
 * ramp are each named in one warning, and the run continues with the config's schedules. */
Test(trainer_resume, changed_schedules_apply_with_a_notice, .timeout = 120)
{
    char text[4096], dir[300];
    tu_tmpdir(dir, sizeof dir, "trainer", "s");
    make_cfg(text, sizeof text, "dion.Muon", "lr = 0.02;",
             "ramps = { softening = { kind = \"linear\"; from = 0.0; to = 0.4; end = 5; }; };", dir);
    cr_assert_eq(parse(text, 0, NULL, &cfg_buf), EOPT_OK, "%s", eopt_last_error());
    eopt_train_options first = {.quiet = 1, .stop_at = 2}, resume = {.quiet = 1, .resume = "auto"};
    eopt_train_result r;
    eopt_log_set_handler(collect_warnings, NULL);
    warnings[0] = 0;
    train_ok(&cfg_buf, &first, &r);
    train_ok(&cfg_buf, &(eopt_train_options){.quiet = 1, .resume = "auto", .stop_at = 3}, &r);
    cr_expect_eq(r.start_step, 2);
    cr_expect_str_eq(warnings, "", "unchanged schedules: %s", warnings);

    const char *sets[] = {"optimizers.matrix.schedule.total=12", "optimizers.matrix.args.lr=0.03",
                          "optimizers.matrix.ramps.softening.to=0.2"};
    cr_assert_eq(parse(text, 3, sets, &cfg_buf), EOPT_OK, "%s", eopt_last_error());
    /* refused, every difference named, until forced (issue 15, defect 4) */
    cr_expect_eq(eopt_train(&cfg_buf, &resume, &r), EOPT_ERR_CONFIG);
    cr_expect(strstr(eopt_last_error(), "optimizers.matrix.args.lr: 0.02 -> 0.03") &&
              strstr(eopt_last_error(), "optimizers.matrix.schedule.total: 6 -> 12") &&
              strstr(eopt_last_error(), "--force"), "%s", eopt_last_error());
    cr_expect_eq(r.step, 0);
    resume.force = 1;
    train_ok(&cfg_buf, &resume, &r);
    eopt_log_set_handler(NULL, NULL);
    cr_expect_eq(r.start_step, 3);
    cr_expect(strstr(warnings, "optimizer 'matrix'") && strstr(warnings, "applies from step 3"), "%s", warnings);
    cr_expect(strstr(warnings, "total: 6 -> 12"), "%s", warnings);
    cr_expect(strstr(warnings, "group0.base_lr: 0.02 -> 0.03"), "%s", warnings);
    cr_expect(strstr(warnings, "softening.to: 0.4 -> 0.2"), "%s", warnings);
    cr_expect_null(strstr(warnings, "'adamw'"), "%s", warnings);

    /* the last step (5, 0-based) ran with the config's schedules */
    eopt_ckpt *ck;
    cr_assert_eq(eopt_checkpoint_open(r.last_checkpoint, NULL, &ck), EOPT_OK, "%s", eopt_last_error());
    const eopt_ckpt_opt_info *info = eopt_ckpt_optimizer_info(ck, "matrix");
    eopt_lr_schedule cos = {.kind = EOPT_LR_COSINE, .warmup = 2, .total = 12, .floor = 0.1};
    eopt_ramp soft = {.kind = EOPT_RAMP_LINEAR, .from = 0.0, .to = 0.2, .end = 5};
    cr_expect_float_eq(eopt_dict_get(&info->group_hp[0], "lr")->f, 0.03 * eopt_lr_factor(&cos, 5), 1e-15);
    cr_expect_float_eq(eopt_dict_get(&info->args, "softening")->f, eopt_ramp_value(&soft, 5), 1e-15);
    cr_expect_eq(eopt_dict_get(eopt_ckpt_schedule(ck, "matrix"), "total")->i, 12);
    eopt_checkpoint_close(ck);
    tu_rmdir_all(dir);
}

/* A schedulable argument no ramp moves is not compared by the checkpoint: the config's value
 * applies after a resume, and the change is named. */
Test(trainer_resume, changed_fixed_softening_applies_with_a_notice, .timeout = 120)
{
    char text[4096], dir[300];
    tu_tmpdir(dir, sizeof dir, "trainer", "f");
    make_cfg(text, sizeof text, "Dion2", "lr = 0.02; softening = 0.1;", "", dir);
    cr_assert_eq(parse(text, 0, NULL, &cfg_buf), EOPT_OK, "%s", eopt_last_error());
    eopt_train_result r;
    train_ok(&cfg_buf, &(eopt_train_options){.quiet = 1, .stop_at = 2}, &r);
    const char *sets[] = {"optimizers.matrix.args.softening=0.3"};
    cr_assert_eq(parse(text, 1, sets, &cfg_buf), EOPT_OK, "%s", eopt_last_error());
    eopt_log_set_handler(collect_warnings, NULL);
    warnings[0] = 0;
    train_ok(&cfg_buf, &(eopt_train_options){.quiet = 1, .resume = "auto", .force = 1}, &r);
    eopt_log_set_handler(NULL, NULL);
    cr_expect(strstr(warnings, "softening: 0.1 -> 0.3"), "%s", warnings);
    eopt_ckpt *ck;
    cr_assert_eq(eopt_checkpoint_open(r.last_checkpoint, NULL, &ck), EOPT_OK, "%s", eopt_last_error());
    cr_expect_eq(eopt_dict_get(&eopt_ckpt_optimizer_info(ck, "matrix")->args, "softening")->f, 0.3);
    eopt_checkpoint_close(ck);
    tu_rmdir_all(dir);
}

Test(trainer_nonfinite, stop_or_skip)
{
    char text[4096], dir[300];
    tu_tmpdir(dir, sizeof dir, "trainer", "n");
    make_cfg(text, sizeof text, "Muon", "lr = 0.02;", "", dir);
    const char *stop[] = {"optimizers.adamw.args.lr=1e38", "optimizers.adamw.schedule.kind=constant"};
    cr_assert_eq(parse(text, 2, stop, &cfg_buf), EOPT_OK, "%s", eopt_last_error());
    eopt_train_options quiet = {.quiet = 1};
    eopt_train_result r;
    cr_expect_eq(eopt_train(&cfg_buf, &quiet, &r), EOPT_ERR_NUMERIC);
    cr_expect(strstr(eopt_last_error(), "non-finite"), "%s", eopt_last_error());

    const char *skip[] = {"optimizers.adamw.args.lr=1e38", "optimizers.adamw.schedule.kind=constant",
                          "run.on_nonfinite=skip"};
    cr_assert_eq(parse(text, 3, skip, &cfg_buf), EOPT_OK, "%s", eopt_last_error());
    /* every step skipped: the run ends with a NaN evaluation, an error (tests/test_reliability.c) */
    cr_expect_eq(eopt_train(&cfg_buf, &(eopt_train_options){.quiet = 1, .force = 1}, &r), EOPT_ERR_NUMERIC);
    cr_expect_eq(r.step, 6);
    cr_expect_gt(r.nonfinite_steps, 0);
    tu_rmdir_all(dir);
}

Test(trainer_init, starts_from_exported_weights)
{
    char text[4096], da[300], db[300];
    tu_tmpdir(da, sizeof da, "trainer", "i");
    tu_tmpdir(db, sizeof db, "trainer", "j");
    make_cfg(text, sizeof text, "Muon", "lr = 0.02;", "", da);
    cr_assert_eq(parse(text, 0, NULL, &cfg_buf), EOPT_OK);
    eopt_train_options quiet = {.quiet = 1};
    eopt_train_result ra, rb;
    train_ok(&cfg_buf, &quiet, &ra);
    make_cfg(text, sizeof text, "Muon", "lr = 0.02;", "", db);
    cr_assert_eq(parse(text, 0, NULL, &cfg_buf), EOPT_OK);
    eopt_train_options init = {.quiet = 1, .init = ra.last_checkpoint, .init_optimizer = 1};
    train_ok(&cfg_buf, &init, &rb);
    cr_expect_eq(rb.step, 6);
    cr_expect_lt(rb.eval_loss, ra.eval_loss, "continuing from trained weights: %g vs %g", rb.eval_loss,
                 ra.eval_loss);
    tu_rmdir_all(da);
    tu_rmdir_all(db);
}

Test(trainer_cmd, bad_config_exits_with_file_and_line)
{
    const char *bin = getenv("EOPT_BIN");
    if (!bin)
        cr_skip_test("EOPT_BIN is not set");
    char cfg[] = "/tmp/eopt-trainer-cfg-XXXXXX";
    int fd = mkstemp(cfg);
    cr_assert(fd >= 0);
    const char *body = "model = { kind = \"gpt\"; n_layers = 2; };\n";
    cr_assert_eq(write(fd, body, strlen(body)), (ssize_t)strlen(body));
    close(fd);
    char cmd[1024], out[1024] = "";
    snprintf(cmd, sizeof cmd, "%s train %s 2>&1", bin, cfg);
    FILE *p = popen(cmd, "r");
    cr_assert(p);
    size_t n = fread(out, 1, sizeof out - 1, p);
    out[n] = 0;
    int rc = pclose(p);
    cr_expect_eq(WEXITSTATUS(rc), 2);
    cr_expect(strstr(out, ":1: model.n_layers: unknown key 'n_layers' (did you mean 'n_layer'?)"), "%s", out);
    unlink(cfg);
}
