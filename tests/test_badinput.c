/* Bad input to toolcall_batch_submit and toolcall_manager_new: each refusal
 * has its exact code and index, never runs the callback or a tool, and counts
 * nothing. Then what the model can get wrong (unknown tool names), which is
 * not a refusal but a per-call status. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "toolcall.h"

/* ---- fixture ------------------------------------------------------------ */

typedef struct {
  uv_loop_t loop;
  toolcall_registry_t *reg;
  toolcall_manager_t *m;
  bool closed; /* the test closed the manager itself */
  int close_cb_calls;
  int batch_cb_calls;
  atomic_int tool_runs;
  toolcall_batch_t *batch; /* the last finished batch, freed by the test */
} fixture_t;

static const char *const tool_names[] = {"echo", "upper", "lookup.v2"};
#define NTOOLS (sizeof(tool_names) / sizeof(tool_names[0]))

/* echo: a loop tool answering with its arguments. */
static void echo_tool(toolcall_call_t *call, void *data) {
  fixture_t *fx = data;
  atomic_fetch_add(&fx->tool_runs, 1);
  size_t len = 0;
  const char *args = toolcall_call_arguments(call, &len);
  toolcall_call_complete(call, TOOLCALL_OK, args, len);
}

/* upper and lookup.v2: worker tools answering with their own name. */
static void named_tool(toolcall_call_t *call, void *data) {
  fixture_t *fx = data;
  atomic_fetch_add(&fx->tool_runs, 1);
  toolcall_call_complete(call, TOOLCALL_OK, toolcall_call_tool(call), 0);
}

static void on_manager_closed(toolcall_manager_t *m) {
  fixture_t *fx = toolcall_manager_data(m);
  assert_non_null(fx);
  fx->close_cb_calls++;
}

static void on_batch_done(toolcall_batch_t *batch, int status) {
  fixture_t *fx = toolcall_batch_data(batch);
  assert_int_equal(status, 0);
  assert_non_null(fx);
  assert_ptr_equal(toolcall_batch_manager(batch), fx->m);
  assert_null(fx->batch);
  fx->batch = batch;
  fx->batch_cb_calls++;
}

static void fixture_open_opts(fixture_t *fx, size_t max_argument_bytes,
                              size_t max_batch_calls, size_t max_concurrency,
                              uint64_t timeout_ms) {
  memset(fx, 0, sizeof(*fx));
  atomic_init(&fx->tool_runs, 0);
  assert_int_equal(uv_loop_init(&fx->loop), 0);
  assert_int_equal(toolcall_registry_new(&fx->reg), 0);
  for (size_t i = 0; i < NTOOLS; i++) {
    toolcall_tool_t def;
    toolcall_tool_init(&def);
    def.name = tool_names[i];
    def.kind = i == 0 ? TOOLCALL_TOOL_LOOP : TOOLCALL_TOOL_WORKER;
    def.fn = i == 0 ? echo_tool : named_tool;
    def.data = fx;
    assert_int_equal(toolcall_registry_add(fx->reg, &def, NULL), 0);
  }
  toolcall_manager_options_t opts;
  toolcall_manager_options_init(&opts);
  opts.registry = fx->reg;
  opts.data = fx;
  if (max_argument_bytes != 0)
    opts.max_argument_bytes = max_argument_bytes;
  if (max_batch_calls != 0)
    opts.max_batch_calls = max_batch_calls;
  opts.max_concurrency = max_concurrency;
  opts.timeout_ms = timeout_ms;
  assert_int_equal(toolcall_manager_new(&fx->m, &fx->loop, &opts), 0);
}

static void fixture_open_with(fixture_t *fx, size_t max_argument_bytes,
                              size_t max_batch_calls) {
  fixture_open_opts(fx, max_argument_bytes, max_batch_calls, 0, 0);
}

static void fixture_open(fixture_t *fx) { fixture_open_with(fx, 0, 0); }

/* Close the manager (unless the test did), run the loop dry, check the
 * callback counts and that the loop closes. */
static void fixture_close(fixture_t *fx, int batches, int tool_runs) {
  if (!fx->closed)
    assert_int_equal(toolcall_manager_close(fx->m, on_manager_closed), 0);
  assert_int_equal(uv_run(&fx->loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(fx->close_cb_calls, 1);
  assert_int_equal(fx->batch_cb_calls, batches);
  assert_int_equal(atomic_load(&fx->tool_runs), tool_runs);
  assert_null(fx->batch);
  assert_int_equal(uv_loop_close(&fx->loop), 0);
  toolcall_registry_free(fx->reg);
  fx->reg = NULL;
  fx->m = NULL;
}

static void snapshot(const fixture_t *fx, toolcall_snapshot_t *s) {
  assert_int_equal(toolcall_ledger_snapshot(toolcall_manager_ledger(fx->m), s),
                   0);
}

/* toolcall_batch_submit(m, calls, n, cb) must return code with err->index ==
 * index, with or without err, and change nothing. The loop is run after the
 * refusal so a callback queued by mistake would show up. */
static void expect_reject_on(fixture_t *fx, toolcall_manager_t *m,
                             const toolcall_call_spec_t *calls, size_t n,
                             const toolcall_batch_options_t *opts,
                             toolcall_batch_cb cb, int code, size_t index) {
  toolcall_snapshot_t before, after;
  snapshot(fx, &before);
  int batches = fx->batch_cb_calls;
  int runs = atomic_load(&fx->tool_runs);

  toolcall_error_t err;
  memset(&err, 0, sizeof(err));
  err.index = 424242;
  toolcall_batch_t *out = NULL;
  int rc = toolcall_batch_submit(m, calls, n, opts, cb, fx, &out, &err);
  if (rc != code)
    fail_msg("submit returned %s (%s), expected %s", toolcall_err_name(rc),
             err.message, toolcall_err_name(code));
  assert_int_equal(err.code, code);
  assert_int_equal(err.index, index);
  assert_true(strlen(err.message) > 0);
  assert_int_equal(toolcall_batch_submit(m, calls, n, opts, cb, fx, NULL, NULL),
                   code);
  assert_int_equal(fx->batch_cb_calls, batches);

  if (!fx->closed)
    assert_int_equal(uv_run(&fx->loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(fx->batch_cb_calls, batches);
  assert_int_equal(atomic_load(&fx->tool_runs), runs);
  snapshot(fx, &after);
  assert_memory_equal(&before, &after, sizeof(before));
}

static void expect_reject(fixture_t *fx, const toolcall_call_spec_t *calls,
                          size_t n, int code, size_t index) {
  expect_reject_on(fx, fx->m, calls, n, NULL, on_batch_done, code, index);
}

/* Submit and run to the end; fx->batch holds the finished batch. */
static void run_batch(fixture_t *fx, const toolcall_call_spec_t *calls,
                      size_t n) {
  int batches = fx->batch_cb_calls;
  toolcall_error_t err;
  memset(&err, 0, sizeof(err));
  toolcall_batch_t *out = NULL;
  int rc = toolcall_batch_submit(fx->m, calls, n, NULL, on_batch_done, fx, &out,
                                 &err);
  if (rc != 0)
    fail_msg("submit: %s: %s (call %zu)", toolcall_err_name(rc), err.message,
             err.index);
  assert_non_null(out);
  assert_int_equal(fx->batch_cb_calls, batches);
  assert_int_equal(uv_run(&fx->loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(fx->batch_cb_calls, batches + 1);
  assert_ptr_equal(fx->batch, out);
  assert_int_equal(toolcall_batch_size(fx->batch), n);
}

static void free_batch(fixture_t *fx) {
  toolcall_batch_free(fx->batch);
  fx->batch = NULL;
}

static void assert_nothing_counted(const fixture_t *fx) {
  toolcall_snapshot_t s, zero;
  memset(&zero, 0, sizeof(zero));
  snapshot(fx, &s);
  assert_int_equal(s.dispatched, 0);
  assert_memory_equal(&s, &zero, sizeof(s));
}

/* Well-formed UTF-8 (RFC 3629), for checking messages the model will read. */
static bool utf8_ok(const char *s) {
  const unsigned char *p = (const unsigned char *)s;
  while (*p) {
    unsigned char c = *p;
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c < 0x80) {
      p++;
      continue;
    } else if (c >= 0xC2 && c <= 0xDF) {
      need = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
      need = 2;
      lo = c == 0xE0 ? 0xA0 : 0x80;
      hi = c == 0xED ? 0x9F : 0xBF;
    } else if (c >= 0xF0 && c <= 0xF4) {
      need = 3;
      lo = c == 0xF0 ? 0x90 : 0x80;
      hi = c == 0xF4 ? 0x8F : 0xBF;
    } else {
      return false;
    }
    if (p[1] < lo || p[1] > hi)
      return false;
    for (size_t i = 2; i <= need; i++)
      if (p[i] < 0x80 || p[i] > 0xBF)
        return false;
    p += need + 1;
  }
  return true;
}

/* ---- refused submissions ----------------------------------------------- */

static void test_badinput_null_arguments(void **state) {
  (void)state;
  fixture_t fx;
  fixture_open(&fx);
  toolcall_call_spec_t calls[] = {{"a", "echo", NULL, 0, 0},
                                  {"b", "upper", NULL, 0, 0}};
  expect_reject_on(&fx, NULL, calls, 2, NULL, on_batch_done, UV_EINVAL,
                   SIZE_MAX);
  expect_reject_on(&fx, fx.m, NULL, 1, NULL, on_batch_done, UV_EINVAL,
                   SIZE_MAX);
  expect_reject_on(&fx, fx.m, NULL, 2, NULL, on_batch_done, UV_EINVAL,
                   SIZE_MAX);
  expect_reject_on(&fx, fx.m, calls, 2, NULL, NULL, UV_EINVAL, SIZE_MAX);
  /* an unknown limit policy in the batch options */
  toolcall_batch_options_t opts;
  toolcall_batch_options_init(&opts);
  opts.limit_policy = (toolcall_limit_policy_t)99;
  expect_reject_on(&fx, fx.m, calls, 2, &opts, on_batch_done, UV_EINVAL,
                   SIZE_MAX);
  opts.limit_policy = (toolcall_limit_policy_t)-1;
  expect_reject_on(&fx, fx.m, calls, 2, &opts, on_batch_done, UV_EINVAL,
                   SIZE_MAX);
  assert_nothing_counted(&fx);
  fixture_close(&fx, 0, 0);
}

static void test_badinput_empty_batch(void **state) {
  (void)state;
  fixture_t fx;
  fixture_open(&fx);
  toolcall_call_spec_t calls[] = {{"a", "echo", NULL, 0, 0}};
  expect_reject(&fx, calls, 0, TOOLCALL_EEMPTY, SIZE_MAX);
  assert_nothing_counted(&fx);
  fixture_close(&fx, 0, 0);
}

static void test_badinput_null_id_or_name(void **state) {
  (void)state;
  fixture_t fx;
  fixture_open(&fx);
  toolcall_call_spec_t calls[] = {
      {"a", "echo", NULL, 0, 0}, {NULL, "echo", NULL, 0, 0}, {"c", "upper", NULL, 0, 0}};
  expect_reject(&fx, calls, 3, UV_EINVAL, 1);
  calls[1] = (toolcall_call_spec_t){"b", NULL, NULL, 0, 0};
  expect_reject(&fx, calls, 3, UV_EINVAL, 1);
  calls[1] = (toolcall_call_spec_t){"b", "echo", NULL, 0, 0};
  calls[0].id = NULL;
  expect_reject(&fx, calls, 3, UV_EINVAL, 0);
  calls[0].id = "a";
  calls[2].name = NULL;
  expect_reject(&fx, calls, 3, UV_EINVAL, 2);
  assert_nothing_counted(&fx);
  fixture_close(&fx, 0, 0);
}

static void test_badinput_empty_id(void **state) {
  (void)state;
  fixture_t fx;
  fixture_open(&fx);
  toolcall_call_spec_t calls[] = {{"a", "echo", NULL, 0, 0},
                                  {"", "echo", NULL, 0, 0}};
  expect_reject(&fx, calls, 2, UV_EINVAL, 1);
  expect_reject(&fx, &calls[1], 1, UV_EINVAL, 0);
  assert_nothing_counted(&fx);
  fixture_close(&fx, 0, 0);
}

static void test_badinput_id_length(void **state) {
  (void)state;
  fixture_t fx;
  fixture_open(&fx);
  char id[TOOLCALL_ID_MAX + 2];
  memset(id, 'i', TOOLCALL_ID_MAX + 1);
  id[TOOLCALL_ID_MAX + 1] = '\0';
  assert_int_equal(strlen(id), 257);
  toolcall_call_spec_t calls[] = {
      {"a", "echo", NULL, 0, 0}, {"b", "upper", NULL, 0, 0}, {id, "echo", NULL, 0, 0}};
  expect_reject(&fx, calls, 3, UV_ENAMETOOLONG, 2);
  char *huge = malloc(100001);
  assert_non_null(huge);
  memset(huge, 'h', 100000);
  huge[100000] = '\0';
  calls[0].id = huge;
  expect_reject(&fx, calls, 3, UV_ENAMETOOLONG, 0);
  free(huge);
  calls[0].id = "a";
  assert_nothing_counted(&fx);

  /* 256 bytes is the limit itself; a 256-byte id of multi-byte characters
   * too. */
  id[TOOLCALL_ID_MAX] = '\0';
  char wide[TOOLCALL_ID_MAX + 1];
  for (size_t i = 0; i < TOOLCALL_ID_MAX; i += 2)
    memcpy(&wide[i], "\xC3\xA9", 2); /* U+00E9 */
  wide[TOOLCALL_ID_MAX] = '\0';
  calls[1].id = wide;
  run_batch(&fx, calls, 3);
  for (size_t i = 0; i < 3; i++)
    assert_int_equal(toolcall_batch_result(fx.batch, i)->status, TOOLCALL_OK);
  assert_string_equal(toolcall_batch_result(fx.batch, 2)->id, id);
  assert_string_equal(toolcall_batch_result(fx.batch, 1)->id, wide);
  free_batch(&fx);
  fixture_close(&fx, 1, 3);
}

static void test_badinput_duplicate_ids_small(void **state) {
  (void)state;
  fixture_t fx;
  fixture_open(&fx);
  toolcall_call_spec_t three[] = {{"call_a", "echo", NULL, 0, 0},
                                  {"call_b", "upper", NULL, 0, 0},
                                  {"call_a", "upper", NULL, 0, 0}};
  expect_reject(&fx, three, 3, TOOLCALL_EDUPID, 2);
  toolcall_call_spec_t two[] = {{"x", "echo", NULL, 0, 0}, {"x", "echo", NULL, 0, 0}};
  expect_reject(&fx, two, 2, TOOLCALL_EDUPID, 1);
  /* eight calls, the largest batch compared pairwise */
  toolcall_call_spec_t eight[8];
  char ids[8][8];
  for (int i = 0; i < 8; i++) {
    snprintf(ids[i], sizeof(ids[i]), "id%d", i);
    eight[i] = (toolcall_call_spec_t){ids[i], "echo", NULL, 0, 0};
  }
  eight[7].id = ids[3];
  expect_reject(&fx, eight, 8, TOOLCALL_EDUPID, 7);
  assert_nothing_counted(&fx);

  /* prefixes are not duplicates */
  toolcall_call_spec_t prefixes[] = {{"call_1", "echo", NULL, 0, 0},
                                     {"call_10", "echo", NULL, 0, 0},
                                     {"call_", "echo", NULL, 0, 0}};
  run_batch(&fx, prefixes, 3);
  free_batch(&fx);
  fixture_close(&fx, 1, 3);
}

static void test_badinput_duplicate_ids_hashed(void **state) {
  (void)state;
  fixture_t fx;
  fixture_open(&fx);
  enum { N = 100 };
  toolcall_call_spec_t *calls = calloc(N, sizeof(*calls));
  char(*ids)[16] = calloc(N, sizeof(*ids));
  assert_non_null(calls);
  assert_non_null(ids);
  for (int i = 0; i < N; i++) {
    snprintf(ids[i], sizeof(ids[i]), "toolu_%03d", i);
    calls[i] = (toolcall_call_spec_t){ids[i], "echo", NULL, 0, 0};
  }
  calls[73].id = ids[10];
  expect_reject(&fx, calls, N, TOOLCALL_EDUPID, 73);
  calls[73].id = ids[73];
  calls[99].id = ids[0];
  expect_reject(&fx, calls, N, TOOLCALL_EDUPID, 99);
  calls[99].id = ids[99];
  calls[1].id = ids[0];
  expect_reject(&fx, calls, N, TOOLCALL_EDUPID, 1);
  calls[1].id = ids[1];
  /* nine calls: the smallest batch that takes the hash path */
  calls[8].id = ids[0];
  expect_reject(&fx, calls, 9, TOOLCALL_EDUPID, 8);
  calls[8].id = ids[8];
  assert_nothing_counted(&fx);

  /* all distinct: accepted, every call runs */
  run_batch(&fx, calls, N);
  for (int i = 0; i < N; i++) {
    const toolcall_result_t *r = toolcall_batch_result(fx.batch, (size_t)i);
    assert_int_equal(r->status, TOOLCALL_OK);
    assert_string_equal(r->id, ids[i]);
  }
  free_batch(&fx);
  free(ids);
  free(calls);
  fixture_close(&fx, 1, N);
}

static void test_badinput_utf8_id(void **state) {
  (void)state;
  fixture_t fx;
  fixture_open(&fx);
  static const char *const bad[] = {
      "\xC3\x28",         /* bad continuation */
      "ok\x80",           /* lone continuation byte */
      "\xC0\xAF",         /* overlong '/' */
      "\xE0\x80\xAF",     /* overlong, three bytes */
      "\xED\xA0\x80",     /* UTF-16 surrogate */
      "\xF4\x90\x80\x80", /* above U+10FFFF */
      "\xF5\x80\x80\x80", /* never valid lead */
      "\xFF",             /* never valid */
      "id\xE2\x82",       /* truncated at the end */
  };
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    toolcall_call_spec_t calls[] = {{"good", "echo", NULL, 0, 0},
                                    {bad[i], "echo", NULL, 0, 0}};
    expect_reject(&fx, calls, 2, UV_EILSEQ, 1);
  }
  assert_nothing_counted(&fx);
  fixture_close(&fx, 0, 0);
}

static void test_badinput_utf8_name(void **state) {
  (void)state;
  fixture_t fx;
  fixture_open(&fx);
  static const char *const bad[] = {"\xFF", "echo\xC3", "ech\xC0\xAF",
                                    "\xED\xA0\x80"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    toolcall_call_spec_t calls[] = {{"a", "echo", NULL, 0, 0},
                                    {"b", "upper", NULL, 0, 0},
                                    {"c", bad[i], NULL, 0, 0}};
    expect_reject(&fx, calls, 3, UV_EILSEQ, 2);
  }
  assert_nothing_counted(&fx);
  fixture_close(&fx, 0, 0);
}

static void test_badinput_utf8_arguments(void **state) {
  (void)state;
  fixture_t fx;
  fixture_open(&fx);
  static const char *const bad[] = {"{\"q\":\"\xC3\x28\"}",
                                    "{\"q\":\"\xED\xA0\x80\"}",
                                    "{\"q\":\"\xF0\x9F\x98\"}", "\xFF{}"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    toolcall_call_spec_t calls[] = {{"a", "echo", "{}", 0, 0},
                                    {"b", "echo", bad[i], 0, 0}};
    expect_reject(&fx, calls, 2, UV_EILSEQ, 1);
    /* with the length given as well */
    calls[1].arguments_len = strlen(bad[i]);
    expect_reject(&fx, calls, 2, UV_EILSEQ, 1);
  }
  /* an embedded NUL, made visible by arguments_len */
  static const char with_nul[] = "{\"a\":\"x\0y\"}";
  toolcall_call_spec_t calls[] = {{"a", "echo", with_nul, sizeof(with_nul) - 1, 0},
                                  {"b", "echo", "{}", 0, 0}};
  expect_reject(&fx, calls, 2, UV_EILSEQ, 0);
  assert_nothing_counted(&fx);

  /* Multi-byte text is fine, and arguments_len cuts a longer buffer. */
  static const char wide[] =
      "{\"q\":\"caf\xC3\xA9 \xE2\x9C\x93 \xF0\x9F\x98\x80\"}";
  static const char longer[] = "{\"n\":1}TRAILING";
  toolcall_call_spec_t good[] = {{"a", "echo", wide, 0, 0},
                                 {"b", "echo", longer, 7, 0}};
  run_batch(&fx, good, 2);
  const toolcall_result_t *r0 = toolcall_batch_result(fx.batch, 0);
  const toolcall_result_t *r1 = toolcall_batch_result(fx.batch, 1);
  assert_int_equal(r0->status, TOOLCALL_OK);
  assert_string_equal(r0->output, wide);
  assert_int_equal(r1->status, TOOLCALL_OK);
  assert_int_equal(r1->output_len, 7);
  assert_string_equal(r1->output, "{\"n\":1}");
  free_batch(&fx);
  fixture_close(&fx, 1, 2);
}

static void test_badinput_arguments_too_big(void **state) {
  (void)state;
  fixture_t fx;
  fixture_open_with(&fx, 16, 0);
  static const char args17[] = "{\"k\":\"123456789\"}";
  static const char args16[] = "{\"k\":\"12345678\"}";
  assert_int_equal(strlen(args17), 17);
  assert_int_equal(strlen(args16), 16);
  toolcall_call_spec_t calls[] = {{"a", "echo", args16, 0, 0},
                                  {"b", "echo", args17, 0, 0},
                                  {"c", "echo", NULL, 0, 0}};
  expect_reject(&fx, calls, 3, UV_E2BIG, 1);
  calls[1].arguments_len = 17;
  expect_reject(&fx, calls, 3, UV_E2BIG, 1);
  /* a long string with a short length is not too big, and vice versa */
  char *big = malloc(1 << 20);
  assert_non_null(big);
  memset(big, ' ', (1 << 20) - 1);
  big[(1 << 20) - 1] = '\0';
  calls[1].arguments = big;
  calls[1].arguments_len = 0;
  expect_reject(&fx, calls, 3, UV_E2BIG, 1);
  calls[1].arguments_len = 2;
  big[0] = '{';
  big[1] = '}';
  calls[2].arguments = args17;
  calls[2].arguments_len = 0;
  expect_reject(&fx, calls, 3, UV_E2BIG, 2);
  assert_nothing_counted(&fx);

  /* 16 bytes is the limit itself */
  calls[2].arguments = args16;
  run_batch(&fx, calls, 3);
  assert_string_equal(toolcall_batch_result(fx.batch, 0)->output, args16);
  assert_string_equal(toolcall_batch_result(fx.batch, 1)->output, "{}");
  assert_string_equal(toolcall_batch_result(fx.batch, 2)->output, args16);
  free_batch(&fx);
  free(big);
  fixture_close(&fx, 1, 3);
}

/* The largest limit there is means "no limit": arguments reach the tool
 * whole, whether their length is given or found. */
static void test_badinput_arguments_unbounded_limit(void **state) {
  (void)state;
  fixture_t fx;
  fixture_open_with(&fx, SIZE_MAX, 0);
  static const char args[] = "{\"q\":\"the whole text\"}";
  toolcall_call_spec_t calls[] = {{"a", "echo", args, 0, 0},
                                  {"b", "echo", args, sizeof(args) - 1, 0}};
  run_batch(&fx, calls, 2);
  for (size_t i = 0; i < 2; i++) {
    const toolcall_result_t *r = toolcall_batch_result(fx.batch, i);
    assert_int_equal(r->status, TOOLCALL_OK);
    assert_int_equal(r->output_len, sizeof(args) - 1);
    assert_string_equal(r->output, args);
  }
  free_batch(&fx);
  fixture_close(&fx, 1, 2);
}

static void test_badinput_too_many_calls(void **state) {
  (void)state;
  fixture_t fx;
  fixture_open_with(&fx, 0, 4);
  toolcall_call_spec_t calls[] = {{"a", "echo", NULL, 0, 0},
                                  {"b", "echo", NULL, 0, 0},
                                  {"c", "echo", NULL, 0, 0},
                                  {"d", "echo", NULL, 0, 0},
                                  {"e", "echo", NULL, 0, 0}};
  expect_reject(&fx, calls, 5, UV_E2BIG, SIZE_MAX);
  assert_nothing_counted(&fx);
  run_batch(&fx, calls, 4);
  free_batch(&fx);
  fixture_close(&fx, 1, 4);
}

static void test_badinput_after_close(void **state) {
  (void)state;
  fixture_t fx;
  fixture_open(&fx);
  assert_int_equal(toolcall_manager_close(fx.m, on_manager_closed), 0);
  fx.closed = true;
  toolcall_call_spec_t calls[] = {{"a", "echo", NULL, 0, 0}};
  expect_reject(&fx, calls, 1, TOOLCALL_ECLOSING, SIZE_MAX);
  assert_int_equal(toolcall_manager_close(fx.m, on_manager_closed),
                   TOOLCALL_ECLOSING);
  assert_int_equal(toolcall_manager_close(fx.m, NULL), TOOLCALL_ECLOSING);
  assert_nothing_counted(&fx);
  assert_int_equal(fx.close_cb_calls, 0); /* not before the loop runs */
  assert_int_equal(toolcall_manager_close(NULL, on_manager_closed), UV_EINVAL);
  fixture_close(&fx, 0, 0);
}

/* ---- manager_new ----------------------------------------------------------
 */

static void test_badinput_manager_new(void **state) {
  (void)state;
  fixture_t fx;
  fixture_open(&fx);
  toolcall_manager_options_t opts;
  toolcall_manager_options_init(&opts);
  opts.registry = fx.reg;
  toolcall_manager_t *m = NULL;
  assert_int_equal(toolcall_manager_new(&m, &fx.loop, NULL), UV_EINVAL);
  assert_int_equal(toolcall_manager_new(NULL, &fx.loop, &opts), UV_EINVAL);
  assert_int_equal(toolcall_manager_new(&m, NULL, &opts), UV_EINVAL);
  opts.registry = NULL;
  assert_int_equal(toolcall_manager_new(&m, &fx.loop, &opts), UV_EINVAL);
  opts.registry = fx.reg;
  opts.max_argument_bytes = 0;
  assert_int_equal(toolcall_manager_new(&m, &fx.loop, &opts), UV_EINVAL);
  opts.max_argument_bytes = 1;
  opts.max_batch_calls = 0;
  assert_int_equal(toolcall_manager_new(&m, &fx.loop, &opts), UV_EINVAL);
  opts.max_batch_calls = 1;
  opts.limit_policy = (toolcall_limit_policy_t)99;
  assert_int_equal(toolcall_manager_new(&m, &fx.loop, &opts), UV_EINVAL);
  assert_null(m);
  /* none of those touched the loop: only the fixture's handle is on it */
  fixture_close(&fx, 0, 0);
}

/* ---- what the model gets wrong: unknown tools -----------------------------
 */

static void assert_lists_tools(const toolcall_result_t *r) {
  assert_int_equal(r->status, TOOLCALL_UNKNOWN_TOOL);
  assert_non_null(r->message);
  for (size_t i = 0; i < NTOOLS; i++)
    if (strstr(r->message, tool_names[i]) == NULL)
      fail_msg("message '%s' does not list '%s'", r->message, tool_names[i]);
  assert_true(utf8_ok(r->message));
  assert_non_null(r->output);
  assert_string_equal(r->output, "");
  assert_int_equal(r->output_len, 0);
  assert_int_equal(r->duration_ns, 0);
}

/* The batch [echo, <name>, upper]: the middle call is unknown, the others
 * run; the ledger counts three dispatched, one unknown, two ok. */
static void check_unknown_in_batch(const char *name) {
  fixture_t fx;
  fixture_open(&fx);
  toolcall_call_spec_t calls[] = {{"a", "echo", "{\"x\":1}", 0, 0},
                                  {"b", name, "{}", 0, 0},
                                  {"c", "upper", NULL, 0, 0}};
  run_batch(&fx, calls, 3);
  const toolcall_result_t *r0 = toolcall_batch_result(fx.batch, 0);
  const toolcall_result_t *r1 = toolcall_batch_result(fx.batch, 1);
  const toolcall_result_t *r2 = toolcall_batch_result(fx.batch, 2);
  assert_int_equal(r0->status, TOOLCALL_OK);
  assert_string_equal(r0->output, "{\"x\":1}");
  assert_null(r0->message);
  assert_string_equal(r1->id, "b");
  assert_string_equal(r1->tool, name); /* as the model gave it */
  assert_lists_tools(r1);
  assert_int_equal(r2->status, TOOLCALL_OK);
  assert_string_equal(r2->output, "upper");
  assert_null(r2->message);

  toolcall_snapshot_t s;
  snapshot(&fx, &s);
  assert_int_equal(s.dispatched, 3);
  assert_int_equal(s.calls[TOOLCALL_UNKNOWN_TOOL], 1);
  assert_int_equal(s.calls[TOOLCALL_OK], 2);
  assert_int_equal(s.tool_calls, 2);
  uint64_t sum = 0;
  for (int i = 0; i < TOOLCALL_STATUS_SLOTS_; i++)
    sum += s.calls[i];
  assert_int_equal(sum, s.dispatched);
  assert_int_equal(s.reserved_tool_calls, 0);
  free_batch(&fx);
  fixture_close(&fx, 1, 2);
}

static void test_badinput_unknown_tool(void **state) {
  (void)state;
  check_unknown_in_batch("no_such_tool");
  check_unknown_in_batch("Echo");   /* names are exact */
  check_unknown_in_batch("echo ");  /* not a valid tool name at all */
  check_unknown_in_batch("lookup"); /* a prefix of a tool */
}

static void test_badinput_empty_tool_name(void **state) {
  (void)state;
  check_unknown_in_batch("");
}

static void test_badinput_long_tool_name(void **state) {
  (void)state;
  char name[201];
  memset(name, 'x', 200);
  name[200] = '\0';
  check_unknown_in_batch(name);
  /* 200 bytes of two-byte characters, offset by one so a cut at any even
   * length splits a character: the message must stay valid UTF-8. */
  name[0] = 'a';
  for (size_t i = 1; i + 1 < 200; i += 2)
    memcpy(&name[i], "\xC3\xA9", 2);
  name[199] = 'z';
  check_unknown_in_batch(name);
  /* a name that starts like a tool and then goes on */
  memset(name, 'x', 200);
  memcpy(name, "upper", 5);
  check_unknown_in_batch(name);
}

static void test_badinput_only_unknown_tools(void **state) {
  (void)state;
  fixture_t fx;
  fixture_open(&fx);
  toolcall_call_spec_t calls[] = {{"a", "nope", NULL, 0, 0}, {"b", "", NULL, 0, 0}};
  run_batch(&fx, calls, 2);
  assert_lists_tools(toolcall_batch_result(fx.batch, 0));
  assert_lists_tools(toolcall_batch_result(fx.batch, 1));
  toolcall_snapshot_t s;
  snapshot(&fx, &s);
  assert_int_equal(s.dispatched, 2);
  assert_int_equal(s.calls[TOOLCALL_UNKNOWN_TOOL], 2);
  assert_int_equal(s.tool_calls, 0);
  free_batch(&fx);
  fixture_close(&fx, 1, 0);
}

/* ---- the issue 4 corpus: sizes and shapes a hostile model can send ----- */

/* Arguments of 16 MiB: over the default 8 MiB limit they are refused with
 * UV_E2BIG and nothing counts; under a larger limit they reach the tool
 * whole. */
static void test_badinput_arguments_16mib(void **state) {
  (void)state;
  const size_t size = (size_t)16 << 20;
  char *args = malloc(size + 1);
  assert_non_null(args);
  memset(args, 'x', size);
  memcpy(args, "{\"k\":\"", 6);
  memcpy(args + size - 2, "\"}", 2);
  args[size] = '\0';
  toolcall_call_spec_t call = {"big", "echo", args, 0, 0};

  fixture_t fx;
  fixture_open(&fx);
  expect_reject(&fx, &call, 1, UV_E2BIG, 0);
  assert_nothing_counted(&fx);
  fixture_close(&fx, 0, 0);

  fixture_open_with(&fx, (size_t)32 << 20, 0);
  run_batch(&fx, &call, 1);
  const toolcall_result_t *r = toolcall_batch_result(fx.batch, 0);
  assert_int_equal(r->status, TOOLCALL_OK);
  assert_int_equal(r->output_len, size);
  assert_memory_equal(r->output, args, size);
  free_batch(&fx);
  fixture_close(&fx, 1, 1);
  free(args);
}

/* Calls whose arguments are not one JSON object end TOOLCALL_RETRY with a
 * message, without running the tool and without holding a reservation. */
static void expect_retry_args(const char *args, size_t len,
                              const char *want_in_message) {
  fixture_t fx;
  fixture_open(&fx);
  toolcall_call_spec_t calls[] = {{"bad", "echo", args, len, 0},
                                  {"good", "upper", "{}", 0, 0}};
  run_batch(&fx, calls, 2);
  const toolcall_result_t *r = toolcall_batch_result(fx.batch, 0);
  assert_int_equal(r->status, TOOLCALL_RETRY);
  assert_non_null(r->message);
  assert_true(utf8_ok(r->message));
  if (strstr(r->message, want_in_message) == NULL)
    fail_msg("message '%s' lacks '%s'", r->message, want_in_message);
  assert_int_equal(r->duration_ns, 0);
  assert_int_equal(toolcall_batch_result(fx.batch, 1)->status, TOOLCALL_OK);
  toolcall_snapshot_t s;
  snapshot(&fx, &s);
  assert_int_equal(s.dispatched, 2);
  assert_int_equal(s.calls[TOOLCALL_RETRY], 1);
  assert_int_equal(s.calls[TOOLCALL_OK], 1);
  assert_int_equal(s.reserved_tool_calls, 0);
  free_batch(&fx);
  fixture_close(&fx, 1, 1); /* only "good" ran */
}

static void test_badinput_arguments_not_json(void **state) {
  (void)state;
  static const struct {
    const char *args;
    const char *why;
  } cases[] = {
      {" ", "empty"},
      {"{", "end"},
      {"{\"a\":}", "not valid JSON"},
      {"{\"a\":1,}", "not valid JSON"},
      {"{\"a\" 1}", "':'"},
      {"{} {}", "after the object"},
      {"{\"a\":tru}", "not valid JSON"},
      {"{\"a\":01}", "not valid JSON"},
      {"{\"a\":\"\\x\"}", "escape"},
      {"{\"a\":\"\t\"}", "control character"},
      {"{\"a\":\"unterminated}", "unterminated"},
      {"[1,2]", "must be a JSON object"},
      {"\"text\"", "must be a JSON object"},
      {"42", "must be a JSON object"},
      {"null", "must be a JSON object"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
    expect_retry_args(cases[i].args, 0, cases[i].why);
}

/* JSON nested 100,000 levels deep: refused as too deep (a retry), with no
 * recursion that could overflow the stack; balanced or not. */
static void test_badinput_arguments_nested_100k(void **state) {
  (void)state;
  const size_t depth = 100000;
  char *args = malloc(2 * depth + 16);
  assert_non_null(args);
  size_t n = 0;
  n += (size_t)sprintf(args, "{\"a\":");
  memset(args + n, '[', depth);
  n += depth;
  memset(args + n, ']', depth);
  n += depth;
  args[n++] = '}';
  args[n] = '\0';
  expect_retry_args(args, n, "nested too deep");
  expect_retry_args(args, 5 + depth, "nested too deep"); /* unbalanced */
  /* Nested objects, too. */
  n = 0;
  for (size_t i = 0; i < 50000 && n + 8 < 2 * depth; i++)
    n += (size_t)sprintf(args + n, "{\"a\":");
  args[n] = '\0';
  expect_retry_args(args, n, "nested too deep");
  free(args);
}

/* A batch of 100,000 calls runs whole: every result in call order,
 * everything counted once. */
static void test_badinput_batch_100k(void **state) {
  (void)state;
  enum { N = 100000 };
  fixture_t fx;
  fixture_open(&fx);
  toolcall_call_spec_t *calls = calloc(N, sizeof(*calls));
  char(*ids)[16] = malloc(N * sizeof(*ids));
  assert_non_null(calls);
  assert_non_null(ids);
  for (size_t i = 0; i < N; i++) {
    snprintf(ids[i], sizeof(ids[i]), "call_%zu", i);
    calls[i].id = ids[i];
    calls[i].name = tool_names[i % NTOOLS];
  }
  run_batch(&fx, calls, N);
  for (size_t i = 0; i < N; i++) {
    const toolcall_result_t *r = toolcall_batch_result(fx.batch, i);
    assert_int_equal(r->status, TOOLCALL_OK);
    assert_string_equal(r->id, ids[i]);
  }
  toolcall_snapshot_t s;
  snapshot(&fx, &s);
  assert_int_equal(s.dispatched, N);
  assert_int_equal(s.tool_calls, N);
  assert_int_equal(s.reserved_tool_calls, 0);
  free_batch(&fx);
  fixture_close(&fx, 1, N);
  free(calls);
  free(ids);
}

/* The same 100,000 calls (loop tools) under a concurrency cap of 8 and a
 * timeout for every call: they all pass through the cap's queue and the
 * timer heap, and all end ok, in call order. */
static void test_badinput_batch_100k_capped(void **state) {
  (void)state;
  enum { N = 100000 };
  fixture_t fx;
  fixture_open_opts(&fx, 0, 0, 8, 600000);
  toolcall_call_spec_t *calls = calloc(N, sizeof(*calls));
  char(*ids)[16] = malloc(N * sizeof(*ids));
  assert_non_null(calls);
  assert_non_null(ids);
  for (size_t i = 0; i < N; i++) {
    snprintf(ids[i], sizeof(ids[i]), "call_%zu", i);
    calls[i].id = ids[i];
    calls[i].name = "echo";
  }
  run_batch(&fx, calls, N);
  for (size_t i = 0; i < N; i++) {
    const toolcall_result_t *r = toolcall_batch_result(fx.batch, i);
    assert_int_equal(r->status, TOOLCALL_OK);
    assert_string_equal(r->id, ids[i]);
    assert_string_equal(r->output, "{}");
  }
  toolcall_snapshot_t s;
  snapshot(&fx, &s);
  assert_int_equal(s.dispatched, N);
  assert_int_equal(s.tool_calls, N);
  assert_int_equal(s.reserved_tool_calls, 0);
  free_batch(&fx);
  fixture_close(&fx, 1, N);
  free(calls);
  free(ids);
}

/* An id of 10,000 characters is refused as too long, naming the call. */
static void test_badinput_id_10k(void **state) {
  (void)state;
  fixture_t fx;
  fixture_open(&fx);
  char *id = malloc(10001);
  assert_non_null(id);
  memset(id, 'i', 10000);
  id[10000] = '\0';
  toolcall_call_spec_t calls[] = {{"ok", "echo", NULL, 0, 0},
                                  {id, "echo", NULL, 0, 0}};
  expect_reject(&fx, calls, 2, UV_ENAMETOOLONG, 1);
  assert_nothing_counted(&fx);
  free(id);
  fixture_close(&fx, 0, 0);
}

/* A tool name of 10,000 characters is an unknown tool; the message quotes
 * only its start, stays valid UTF-8 and still lists the tools. */
static void test_badinput_name_10k(void **state) {
  (void)state;
  char *name = malloc(10001);
  assert_non_null(name);
  memset(name, 'n', 10000);
  name[10000] = '\0';
  check_unknown_in_batch(name);
  /* Two-byte characters, offset by one: a cut must not split one. */
  name[0] = 'a';
  for (size_t i = 1; i + 1 < 10000; i += 2)
    memcpy(&name[i], "\xC3\xA9", 2);
  name[9999] = 'z';
  check_unknown_in_batch(name);

  fixture_t fx;
  fixture_open(&fx);
  toolcall_call_spec_t call = {"long", name, NULL, 0, 0};
  run_batch(&fx, &call, 1);
  const toolcall_result_t *r = toolcall_batch_result(fx.batch, 0);
  assert_lists_tools(r);
  assert_true(strlen(r->message) < 1000);
  assert_string_equal(r->tool, name); /* the name itself is kept whole */
  free_batch(&fx);
  fixture_close(&fx, 1, 0);
  free(name);
}

/* Ids and tool names are C strings: they end at their first NUL, so an
 * embedded NUL cuts them (two ids equal up to a NUL are the same id; a
 * name cut to a tool's name calls that tool). Arguments without a length
 * also end at the NUL, and what is left is checked as JSON; with a length
 * that takes the NUL in, they are refused (test_badinput_utf8_arguments). */
static void test_badinput_embedded_nul(void **state) {
  (void)state;
  fixture_t fx;
  fixture_open(&fx);
  static const char id1[] = "x\0first";
  static const char id2[] = "x\0second";
  toolcall_call_spec_t dup[] = {{id1, "echo", NULL, 0, 0},
                                {id2, "echo", NULL, 0, 0}};
  expect_reject(&fx, dup, 2, TOOLCALL_EDUPID, 1);
  static const char nul_id[] = "\0hidden";
  toolcall_call_spec_t empty[] = {{nul_id, "echo", NULL, 0, 0}};
  expect_reject(&fx, empty, 1, UV_EINVAL, 0); /* an empty id */
  assert_nothing_counted(&fx);

  static const char name[] = "upper\0junk";
  static const char args_cut_ok[] = "{}\0garbage";
  static const char args_cut_bad[] = "{\"a\":\"x\0y\"}";
  static const char bad_name[] = "\0echo";
  toolcall_call_spec_t calls[] = {{"a", name, NULL, 0, 0},
                                  {"b", "echo", args_cut_ok, 0, 0},
                                  {"c", "echo", args_cut_bad, 0, 0},
                                  {"d", bad_name, NULL, 0, 0}};
  run_batch(&fx, calls, 4);
  const toolcall_result_t *r = toolcall_batch_result(fx.batch, 0);
  assert_int_equal(r->status, TOOLCALL_OK);
  assert_string_equal(r->tool, "upper");
  assert_string_equal(r->output, "upper");
  r = toolcall_batch_result(fx.batch, 1);
  assert_int_equal(r->status, TOOLCALL_OK);
  assert_int_equal(r->output_len, 2);
  assert_string_equal(r->output, "{}");
  r = toolcall_batch_result(fx.batch, 2);
  assert_int_equal(r->status, TOOLCALL_RETRY); /* {"a":"x is not JSON */
  assert_true(utf8_ok(r->message));
  r = toolcall_batch_result(fx.batch, 3);
  assert_string_equal(r->tool, "");
  assert_lists_tools(r);
  toolcall_snapshot_t s;
  snapshot(&fx, &s);
  assert_int_equal(s.dispatched, 4);
  assert_int_equal(s.calls[TOOLCALL_OK], 2);
  assert_int_equal(s.calls[TOOLCALL_RETRY], 1);
  assert_int_equal(s.calls[TOOLCALL_UNKNOWN_TOOL], 1);
  free_batch(&fx);
  fixture_close(&fx, 1, 2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_badinput_null_arguments),
      cmocka_unit_test(test_badinput_empty_batch),
      cmocka_unit_test(test_badinput_null_id_or_name),
      cmocka_unit_test(test_badinput_empty_id),
      cmocka_unit_test(test_badinput_id_length),
      cmocka_unit_test(test_badinput_duplicate_ids_small),
      cmocka_unit_test(test_badinput_duplicate_ids_hashed),
      cmocka_unit_test(test_badinput_utf8_id),
      cmocka_unit_test(test_badinput_utf8_name),
      cmocka_unit_test(test_badinput_utf8_arguments),
      cmocka_unit_test(test_badinput_arguments_too_big),
      cmocka_unit_test(test_badinput_arguments_unbounded_limit),
      cmocka_unit_test(test_badinput_too_many_calls),
      cmocka_unit_test(test_badinput_after_close),
      cmocka_unit_test(test_badinput_manager_new),
      cmocka_unit_test(test_badinput_unknown_tool),
      cmocka_unit_test(test_badinput_empty_tool_name),
      cmocka_unit_test(test_badinput_long_tool_name),
      cmocka_unit_test(test_badinput_only_unknown_tools),
      cmocka_unit_test(test_badinput_arguments_16mib),
      cmocka_unit_test(test_badinput_arguments_not_json),
      cmocka_unit_test(test_badinput_arguments_nested_100k),
      cmocka_unit_test(test_badinput_batch_100k),
      cmocka_unit_test(test_badinput_batch_100k_capped),
      cmocka_unit_test(test_badinput_id_10k),
      cmocka_unit_test(test_badinput_name_10k),
      cmocka_unit_test(test_badinput_embedded_nul),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
