/* The registry: what toolcall_registry_add accepts and refuses, order,
 * freezing, lookups among many tools, and allocation failures. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "toolcall.h"

/* ---- fixture ------------------------------------------------------------ */

typedef struct {
  uv_loop_t loop;
  toolcall_registry_t *reg;
  toolcall_manager_t *m;
  int close_cb_calls;
  int batch_cb_calls;
  toolcall_batch_t *batch; /* the last finished batch, freed by the test */
} fixture_t;

/* Each tool's data: what it answers, and where it ran. */
typedef struct {
  char answer[32];
  uv_thread_t thread;
  atomic_int runs;
} tool_state_t;

static void answer_tool(toolcall_call_t *call, void *data) {
  tool_state_t *st = data;
  st->thread = uv_thread_self();
  atomic_fetch_add(&st->runs, 1);
  toolcall_call_complete(call, TOOLCALL_OK, st->answer, 0);
}

static void dummy_tool(toolcall_call_t *call, void *data) {
  (void)data;
  toolcall_call_complete(call, TOOLCALL_OK, "dummy", 0);
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

static void fixture_init(fixture_t *fx) {
  memset(fx, 0, sizeof(*fx));
  assert_int_equal(uv_loop_init(&fx->loop), 0);
  assert_int_equal(toolcall_registry_new(&fx->reg), 0);
  assert_int_equal(toolcall_registry_count(fx->reg), 0);
}

static void fixture_start(fixture_t *fx) {
  toolcall_manager_options_t opts;
  toolcall_manager_options_init(&opts);
  opts.registry = fx->reg;
  opts.data = fx;
  assert_int_equal(toolcall_manager_new(&fx->m, &fx->loop, &opts), 0);
}

/* Submit calls, run the loop until the batch is done; fx->batch holds it. */
static void fixture_run(fixture_t *fx, const toolcall_call_spec_t *calls,
                        size_t n) {
  toolcall_error_t err;
  int before = fx->batch_cb_calls;
  assert_null(fx->batch);
  int rc = toolcall_batch_submit(fx->m, calls, n, NULL, on_batch_done, fx, NULL,
                                 &err);
  if (rc != 0)
    fail_msg("submit: %s: %s", toolcall_err_name(rc), err.message);
  assert_int_equal(fx->batch_cb_calls, before); /* never inside submit */
  assert_int_equal(uv_run(&fx->loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(fx->batch_cb_calls, before + 1);
  assert_non_null(fx->batch);
  assert_int_equal(toolcall_batch_size(fx->batch), n);
}

static void fixture_free_batch(fixture_t *fx) {
  toolcall_batch_free(fx->batch);
  fx->batch = NULL;
}

static void fixture_close(fixture_t *fx, int batches) {
  if (fx->m != NULL) {
    assert_int_equal(toolcall_manager_close(fx->m, on_manager_closed), 0);
  }
  assert_int_equal(uv_run(&fx->loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(fx->close_cb_calls, fx->m != NULL ? 1 : 0);
  assert_int_equal(fx->batch_cb_calls, batches);
  assert_null(fx->batch);
  assert_int_equal(uv_loop_close(&fx->loop), 0);
  toolcall_registry_free(fx->reg);
  fx->reg = NULL;
  fx->m = NULL;
}

static toolcall_tool_t tool_def(const char *name, toolcall_tool_kind_t kind,
                                toolcall_tool_fn fn, void *data) {
  toolcall_tool_t def;
  toolcall_tool_init(&def);
  def.name = name;
  def.kind = kind;
  def.fn = fn;
  def.data = data;
  return def;
}

/* add must fail with code, fill err, and register nothing. */
static void expect_add_fails(toolcall_registry_t *reg,
                             const toolcall_tool_t *def, int code) {
  size_t count = toolcall_registry_count(reg);
  toolcall_error_t err;
  memset(&err, 0, sizeof(err));
  err.index = 7;
  assert_int_equal(toolcall_registry_add(reg, def, &err), code);
  assert_int_equal(err.code, code);
  assert_int_equal(err.index, SIZE_MAX);
  assert_true(strlen(err.message) > 0);
  assert_true(strlen(err.message) < sizeof(err.message));
  /* err is optional */
  assert_int_equal(toolcall_registry_add(reg, def, NULL), code);
  assert_int_equal(toolcall_registry_count(reg), count);
  assert_null(toolcall_registry_name(reg, count));
}

/* ---- tests ------------------------------------------------------------- */

static void test_registry_worker_and_loop_tools(void **state) {
  (void)state;
  fixture_t fx;
  fixture_init(&fx);
  tool_state_t w, l;
  memset(&w, 0, sizeof(w));
  memset(&l, 0, sizeof(l));
  strcpy(w.answer, "from worker");
  strcpy(l.answer, "from loop");
  toolcall_tool_t def =
      tool_def("worker.tool", TOOLCALL_TOOL_WORKER, answer_tool, &w);
  def.description = "runs on the threadpool";
  def.schema = "{\"type\":\"object\"}";
  toolcall_error_t err;
  assert_int_equal(toolcall_registry_add(fx.reg, &def, &err), 0);
  def = tool_def("loop:tool", TOOLCALL_TOOL_LOOP, answer_tool, &l);
  assert_int_equal(toolcall_registry_add(fx.reg, &def, NULL), 0);
  assert_int_equal(toolcall_registry_count(fx.reg), 2);
  assert_string_equal(toolcall_registry_name(fx.reg, 0), "worker.tool");
  assert_string_equal(toolcall_registry_name(fx.reg, 1), "loop:tool");

  fixture_start(&fx);
  toolcall_call_spec_t calls[] = {{"c1", "worker.tool", NULL, 0, 0},
                                  {"c2", "loop:tool", "{\"x\":1}", 0, 0}};
  fixture_run(&fx, calls, 2);
  const toolcall_result_t *r0 = toolcall_batch_result(fx.batch, 0);
  const toolcall_result_t *r1 = toolcall_batch_result(fx.batch, 1);
  assert_int_equal(r0->status, TOOLCALL_OK);
  assert_string_equal(r0->output, "from worker");
  assert_int_equal(r0->output_len, strlen("from worker"));
  assert_null(r0->message);
  assert_int_equal(r1->status, TOOLCALL_OK);
  assert_string_equal(r1->output, "from loop");
  assert_int_equal(atomic_load(&w.runs), 1);
  assert_int_equal(atomic_load(&l.runs), 1);
  /* the kind decides the thread */
  uv_thread_t self = uv_thread_self();
  assert_true(uv_thread_equal(&l.thread, &self));
  assert_false(uv_thread_equal(&w.thread, &self));
  fixture_free_batch(&fx);
  fixture_close(&fx, 1);
}

static void test_registry_duplicate_name(void **state) {
  (void)state;
  fixture_t fx;
  fixture_init(&fx);
  toolcall_tool_t def =
      tool_def("search", TOOLCALL_TOOL_WORKER, dummy_tool, NULL);
  assert_int_equal(toolcall_registry_add(fx.reg, &def, NULL), 0);
  expect_add_fails(fx.reg, &def, UV_EEXIST);
  /* same name, other kind and function: still taken */
  toolcall_tool_t other =
      tool_def("search", TOOLCALL_TOOL_LOOP, answer_tool, &fx);
  expect_add_fails(fx.reg, &other, UV_EEXIST);
  /* a prefix or an extension of the name is another name */
  def.name = "searc";
  assert_int_equal(toolcall_registry_add(fx.reg, &def, NULL), 0);
  def.name = "search2";
  assert_int_equal(toolcall_registry_add(fx.reg, &def, NULL), 0);
  def.name = "searc";
  expect_add_fails(fx.reg, &def, UV_EEXIST);
  assert_int_equal(toolcall_registry_count(fx.reg), 3);
  fixture_start(&fx);
  fixture_close(&fx, 0);
}

static void test_registry_empty_or_null_name(void **state) {
  (void)state;
  fixture_t fx;
  fixture_init(&fx);
  toolcall_tool_t def = tool_def(NULL, TOOLCALL_TOOL_WORKER, dummy_tool, NULL);
  expect_add_fails(fx.reg, &def, UV_EINVAL);
  def.name = "";
  expect_add_fails(fx.reg, &def, UV_EINVAL);
  /* NULL registry or definition */
  def.name = "fine";
  toolcall_error_t err;
  memset(&err, 0, sizeof(err));
  assert_int_equal(toolcall_registry_add(NULL, &def, &err), UV_EINVAL);
  assert_int_equal(err.code, UV_EINVAL);
  assert_true(strlen(err.message) > 0);
  assert_int_equal(toolcall_registry_add(fx.reg, NULL, NULL), UV_EINVAL);
  assert_int_equal(toolcall_registry_new(NULL), UV_EINVAL);
  assert_int_equal(toolcall_registry_count(fx.reg), 0);
  assert_int_equal(toolcall_registry_count(NULL), 0);
  assert_null(toolcall_registry_name(NULL, 0));
  toolcall_registry_free(NULL);
  fixture_start(&fx);
  fixture_close(&fx, 0);
}

static void test_registry_name_length(void **state) {
  (void)state;
  fixture_t fx;
  fixture_init(&fx);
  char name[TOOLCALL_NAME_MAX + 2];
  memset(name, 'n', TOOLCALL_NAME_MAX + 1);
  name[TOOLCALL_NAME_MAX + 1] = '\0';
  assert_int_equal(strlen(name), 65);
  toolcall_tool_t def = tool_def(name, TOOLCALL_TOOL_WORKER, dummy_tool, NULL);
  expect_add_fails(fx.reg, &def, UV_ENAMETOOLONG);
  char *huge = malloc(4097);
  assert_non_null(huge);
  memset(huge, 'h', 4096);
  huge[4096] = '\0';
  def.name = huge;
  expect_add_fails(fx.reg, &def, UV_ENAMETOOLONG);
  free(huge);

  name[TOOLCALL_NAME_MAX] = '\0'; /* 64 bytes: the limit itself is fine */
  def.name = name;
  assert_int_equal(toolcall_registry_add(fx.reg, &def, NULL), 0);
  assert_int_equal(toolcall_registry_count(fx.reg), 1);
  assert_string_equal(toolcall_registry_name(fx.reg, 0), name);
  def.name = "n";
  assert_int_equal(toolcall_registry_add(fx.reg, &def, NULL), 0);

  /* and it can be called by that name */
  fixture_start(&fx);
  toolcall_call_spec_t call = {"id", name, NULL, 0, 0};
  fixture_run(&fx, &call, 1);
  assert_int_equal(toolcall_batch_result(fx.batch, 0)->status, TOOLCALL_OK);
  assert_string_equal(toolcall_batch_result(fx.batch, 0)->output, "dummy");
  fixture_free_batch(&fx);
  fixture_close(&fx, 1);
}

static void test_registry_bad_characters(void **state) {
  (void)state;
  fixture_t fx;
  fixture_init(&fx);
  static const char *const bad[] = {
      "two words", "a/b",       "/",           "caf\xC3\xA9", "\xE2\x9C\x93",
      "tab\there", "new\nline", "quote\"d",    "comma,x",     "semi;x",
      "paren(",    "star*",     "back\\slash", "\x7F",        "at@x",
      " lead",     "trail ",    "\xFF"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    toolcall_tool_t def =
        tool_def(bad[i], TOOLCALL_TOOL_WORKER, dummy_tool, NULL);
    expect_add_fails(fx.reg, &def, UV_EINVAL);
  }
  /* every allowed character class */
  static const char *const good[] = {
      "abcxyz", "ABCXYZ", "0189", "_", "-", ".", ":", "ns:tool.v2-beta_1"};
  for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
    toolcall_tool_t def =
        tool_def(good[i], TOOLCALL_TOOL_WORKER, dummy_tool, NULL);
    assert_int_equal(toolcall_registry_add(fx.reg, &def, NULL), 0);
  }
  assert_int_equal(toolcall_registry_count(fx.reg),
                   sizeof(good) / sizeof(good[0]));
  fixture_start(&fx);
  fixture_close(&fx, 0);
}

static void test_registry_null_fn(void **state) {
  (void)state;
  fixture_t fx;
  fixture_init(&fx);
  toolcall_tool_t def = tool_def("nofn", TOOLCALL_TOOL_WORKER, NULL, NULL);
  expect_add_fails(fx.reg, &def, UV_EINVAL);
  def.kind = TOOLCALL_TOOL_LOOP;
  expect_add_fails(fx.reg, &def, UV_EINVAL);
  /* the name is still free */
  def.fn = dummy_tool;
  assert_int_equal(toolcall_registry_add(fx.reg, &def, NULL), 0);
  fixture_start(&fx);
  fixture_close(&fx, 0);
}

static void test_registry_bad_kind(void **state) {
  (void)state;
  fixture_t fx;
  fixture_init(&fx);
  toolcall_tool_t def =
      tool_def("kind", (toolcall_tool_kind_t)2, dummy_tool, NULL);
  expect_add_fails(fx.reg, &def, UV_EINVAL);
  def.kind = (toolcall_tool_kind_t)-1;
  expect_add_fails(fx.reg, &def, UV_EINVAL);
  def.kind = (toolcall_tool_kind_t)1000;
  expect_add_fails(fx.reg, &def, UV_EINVAL);
  def.kind = TOOLCALL_TOOL_LOOP;
  assert_int_equal(toolcall_registry_add(fx.reg, &def, NULL), 0);
  fixture_start(&fx);
  fixture_close(&fx, 0);
}

static void test_registry_order_and_copies(void **state) {
  (void)state;
  fixture_t fx;
  fixture_init(&fx);
  char name[16];
  char desc[16];
  for (int i = 0; i < 20; i++) {
    snprintf(name, sizeof(name), "t%02d", 19 - i);
    snprintf(desc, sizeof(desc), "d%02d", i);
    toolcall_tool_t def =
        tool_def(name, TOOLCALL_TOOL_WORKER, dummy_tool, NULL);
    def.description = desc;
    assert_int_equal(toolcall_registry_add(fx.reg, &def, NULL), 0);
    assert_int_equal(toolcall_registry_count(fx.reg), (size_t)i + 1);
  }
  /* the caller's buffers are reused: the registry kept copies */
  strcpy(name, "XXXX");
  for (int i = 0; i < 20; i++) {
    char want[16];
    snprintf(want, sizeof(want), "t%02d", 19 - i);
    assert_string_equal(toolcall_registry_name(fx.reg, (size_t)i), want);
  }
  assert_null(toolcall_registry_name(fx.reg, 20));
  assert_null(toolcall_registry_name(fx.reg, SIZE_MAX));
  fixture_start(&fx);
  /* readable the same way once frozen */
  assert_int_equal(toolcall_registry_count(fx.reg), 20);
  assert_string_equal(toolcall_registry_name(fx.reg, 0), "t19");
  assert_ptr_equal(toolcall_manager_registry(fx.m), fx.reg);
  fixture_close(&fx, 0);
}

static void test_registry_frozen(void **state) {
  (void)state;
  fixture_t fx;
  fixture_init(&fx);
  toolcall_tool_t def =
      tool_def("first", TOOLCALL_TOOL_WORKER, dummy_tool, NULL);
  assert_int_equal(toolcall_registry_add(fx.reg, &def, NULL), 0);

  /* A refused manager does not freeze the registry. */
  toolcall_manager_options_t opts;
  toolcall_manager_options_init(&opts);
  opts.registry = fx.reg;
  toolcall_manager_t *m = NULL;
  assert_int_equal(toolcall_manager_new(&m, NULL, &opts), UV_EINVAL);
  def.name = "second";
  assert_int_equal(toolcall_registry_add(fx.reg, &def, NULL), 0);

  fixture_start(&fx);
  def.name = "third";
  expect_add_fails(fx.reg, &def, TOOLCALL_EFROZEN);
  def.name = "first"; /* frozen wins over a duplicate */
  expect_add_fails(fx.reg, &def, TOOLCALL_EFROZEN);
  def.name = "bad name"; /* and over a bad name */
  expect_add_fails(fx.reg, &def, TOOLCALL_EFROZEN);
  assert_int_equal(toolcall_registry_count(fx.reg), 2);

  /* A frozen registry serves a second manager too. */
  fixture_t fx2;
  memset(&fx2, 0, sizeof(fx2));
  assert_int_equal(uv_loop_init(&fx2.loop), 0);
  opts.data = &fx2;
  assert_int_equal(toolcall_manager_new(&fx2.m, &fx2.loop, &opts), 0);
  toolcall_call_spec_t call = {"a", "second", NULL, 0, 0};
  toolcall_error_t err;
  assert_int_equal(toolcall_batch_submit(fx2.m, &call, 1, NULL, on_batch_done,
                                         &fx2, NULL, &err),
                   0);
  assert_int_equal(uv_run(&fx2.loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(fx2.batch_cb_calls, 1);
  assert_int_equal(toolcall_batch_result(fx2.batch, 0)->status, TOOLCALL_OK);
  toolcall_batch_free(fx2.batch);
  assert_int_equal(toolcall_manager_close(fx2.m, on_manager_closed), 0);
  assert_int_equal(uv_run(&fx2.loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(fx2.close_cb_calls, 1);
  assert_int_equal(uv_loop_close(&fx2.loop), 0);

  expect_add_fails(fx.reg, &def, TOOLCALL_EFROZEN);
  fixture_close(&fx, 0);
}

#define MANY_TOOLS 1000

static void test_registry_many_tools(void **state) {
  (void)state;
  fixture_t fx;
  fixture_init(&fx);
  tool_state_t *st = calloc(MANY_TOOLS, sizeof(*st));
  assert_non_null(st);
  for (int i = 0; i < MANY_TOOLS; i++) {
    char name[32];
    snprintf(name, sizeof(name), "tool_%04d", i);
    snprintf(st[i].answer, sizeof(st[i].answer), "answer %d", i);
    toolcall_tool_t def =
        tool_def(name, i % 2 ? TOOLCALL_TOOL_LOOP : TOOLCALL_TOOL_WORKER,
                 answer_tool, &st[i]);
    assert_int_equal(toolcall_registry_add(fx.reg, &def, NULL), 0);
  }
  assert_int_equal(toolcall_registry_count(fx.reg), MANY_TOOLS);
  for (int i = 0; i < MANY_TOOLS; i += 111) {
    char name[32];
    snprintf(name, sizeof(name), "tool_%04d", i);
    assert_string_equal(toolcall_registry_name(fx.reg, (size_t)i), name);
    /* each name is taken */
    toolcall_tool_t def =
        tool_def(name, TOOLCALL_TOOL_WORKER, dummy_tool, NULL);
    assert_int_equal(toolcall_registry_add(fx.reg, &def, NULL), UV_EEXIST);
  }

  fixture_start(&fx);
  static const int pick[] = {0,   1,   2,   7,   8,   9,   15,  16, 17,
                             499, 500, 511, 512, 513, 997, 998, 999};
  enum { NPICK = sizeof(pick) / sizeof(pick[0]) };
  toolcall_call_spec_t calls[NPICK + 2];
  char names[NPICK][32];
  char ids[NPICK + 2][16];
  for (int i = 0; i < NPICK; i++) {
    snprintf(names[i], sizeof(names[i]), "tool_%04d", pick[i]);
    snprintf(ids[i], sizeof(ids[i]), "call-%d", i);
    calls[i] = (toolcall_call_spec_t){ids[i], names[i], NULL, 0, 0};
  }
  snprintf(ids[NPICK], sizeof(ids[NPICK]), "call-x");
  calls[NPICK] = (toolcall_call_spec_t){ids[NPICK], "tool_1000", NULL, 0, 0};
  snprintf(ids[NPICK + 1], sizeof(ids[NPICK + 1]), "call-y");
  calls[NPICK + 1] = (toolcall_call_spec_t){ids[NPICK + 1], "tool_", NULL, 0, 0};
  fixture_run(&fx, calls, NPICK + 2);
  for (int i = 0; i < NPICK; i++) {
    const toolcall_result_t *r = toolcall_batch_result(fx.batch, (size_t)i);
    char want[32];
    snprintf(want, sizeof(want), "answer %d", pick[i]);
    assert_int_equal(r->status, TOOLCALL_OK);
    assert_string_equal(r->output, want);
    assert_string_equal(r->tool, names[i]);
  }
  for (int i = 0; i < MANY_TOOLS; i++) {
    int want = 0;
    for (int j = 0; j < NPICK; j++)
      want += pick[j] == i;
    assert_int_equal(atomic_load(&st[i].runs), want);
  }
  for (size_t i = NPICK; i < NPICK + 2; i++) {
    const toolcall_result_t *r = toolcall_batch_result(fx.batch, i);
    assert_int_equal(r->status, TOOLCALL_UNKNOWN_TOOL);
    assert_non_null(r->message);
    assert_non_null(strstr(r->message, "tool_0000"));
    assert_non_null(strstr(r->message, "tool_0999"));
  }
  fixture_free_batch(&fx);
  fixture_close(&fx, 1);
  free(st);
}

/* ---- allocation failures ------------------------------------------------ */

/* Fails the fail_at-th allocation from when it was armed (1-based; 0 never
 * fails), and counts live blocks. Atomic: pool threads allocate too. */
static atomic_long alloc_seq;
static atomic_long alloc_fail_at;
static atomic_long alloc_live;
static atomic_long alloc_failed;

static int alloc_should_fail(void) {
  long n = atomic_fetch_add(&alloc_seq, 1) + 1;
  long at = atomic_load(&alloc_fail_at);
  if (at != 0 && n == at) {
    atomic_fetch_add(&alloc_failed, 1);
    return 1;
  }
  return 0;
}

static void *failing_malloc(size_t size) {
  if (alloc_should_fail())
    return NULL;
  void *p = malloc(size);
  if (p != NULL)
    atomic_fetch_add(&alloc_live, 1);
  return p;
}

static void *failing_realloc(void *ptr, size_t size) {
  if (alloc_should_fail())
    return NULL;
  void *p = realloc(ptr, size);
  if (p != NULL && ptr == NULL)
    atomic_fetch_add(&alloc_live, 1);
  return p;
}

static void *failing_calloc(size_t count, size_t size) {
  if (alloc_should_fail())
    return NULL;
  void *p = calloc(count, size);
  if (p != NULL)
    atomic_fetch_add(&alloc_live, 1);
  return p;
}

static void failing_free(void *ptr) {
  if (ptr != NULL)
    atomic_fetch_sub(&alloc_live, 1);
  free(ptr);
}

static void alloc_arm(long fail_at) {
  atomic_store(&alloc_seq, 0);
  atomic_store(&alloc_failed, 0);
  atomic_store(&alloc_fail_at, fail_at);
}

/* Add def, failing the 1st, 2nd, ... allocation until it succeeds. Each
 * failure must be UV_ENOMEM, register nothing and keep no memory. Returns how
 * many failures it went through. */
static int add_until_success(toolcall_registry_t *reg,
                             const toolcall_tool_t *def) {
  size_t count = toolcall_registry_count(reg);
  for (long k = 1; k < 100; k++) {
    long live = atomic_load(&alloc_live);
    toolcall_error_t err;
    memset(&err, 0, sizeof(err));
    alloc_arm(k);
    int rc = toolcall_registry_add(reg, def, &err);
    long failed = atomic_load(&alloc_failed);
    alloc_arm(0);
    if (rc == 0) {
      /* succeeded without reaching the k-th allocation */
      assert_int_equal(failed, 0);
      assert_int_equal(toolcall_registry_count(reg), count + 1);
      assert_string_equal(toolcall_registry_name(reg, count), def->name);
      return (int)k - 1;
    }
    assert_int_equal(failed, 1);
    assert_int_equal(rc, UV_ENOMEM);
    assert_int_equal(err.code, UV_ENOMEM);
    assert_true(strlen(err.message) > 0);
    assert_int_equal(toolcall_registry_count(reg), count);
    assert_null(toolcall_registry_name(reg, count));
    /* Growing arrays may have been kept; no copy of the tool may. */
    assert_true(atomic_load(&alloc_live) <= live + 2);
    /* Not registered: the same definition is not a duplicate. */
  }
  fail_msg("registry_add never succeeded");
  return -1;
}

static void test_registry_add_nomem(void **state) {
  (void)state;
  atomic_store(&alloc_live, 0);
  alloc_arm(0);
  assert_int_equal(toolcall_replace_allocator(failing_malloc, failing_realloc,
                                              failing_calloc, failing_free),
                   0);
  fixture_t fx;
  memset(&fx, 0, sizeof(fx));
  assert_int_equal(uv_loop_init(&fx.loop), 0);

  /* registry_new itself */
  alloc_arm(1);
  assert_int_equal(toolcall_registry_new(&fx.reg), UV_ENOMEM);
  alloc_arm(0);
  assert_int_equal(atomic_load(&alloc_live), 0);
  assert_int_equal(toolcall_registry_new(&fx.reg), 0);

  tool_state_t st[10];
  memset(st, 0, sizeof(st));
  char names[10][8];
  /* The first tool allocates everything for the first time; the 9th grows
   * the tool array and rehashes the slots. */
  for (int i = 0; i < 10; i++) {
    snprintf(names[i], sizeof(names[i]), "t%d", i);
    snprintf(st[i].answer, sizeof(st[i].answer), "a%d", i);
    toolcall_tool_t def =
        tool_def(names[i], i % 2 ? TOOLCALL_TOOL_LOOP : TOOLCALL_TOOL_WORKER,
                 answer_tool, &st[i]);
    def.description = "a description";
    def.schema = "{\"type\":\"object\"}";
    int failures = add_until_success(fx.reg, &def);
    /* name, description, schema, and at least the names list */
    assert_true(failures >= 4);
  }

  /* Everything registered is intact: each tool answers by its own name,
   * and the unknown-tool message lists exactly these names. */
  fixture_start(&fx);
  toolcall_call_spec_t calls[11];
  char ids[11][8];
  for (int i = 0; i < 10; i++) {
    snprintf(ids[i], sizeof(ids[i]), "c%d", i);
    calls[i] = (toolcall_call_spec_t){ids[i], names[i], NULL, 0, 0};
  }
  calls[10] = (toolcall_call_spec_t){"c10", "t10", NULL, 0, 0};
  fixture_run(&fx, calls, 11);
  for (int i = 0; i < 10; i++) {
    const toolcall_result_t *r = toolcall_batch_result(fx.batch, (size_t)i);
    assert_int_equal(r->status, TOOLCALL_OK);
    assert_string_equal(r->output, st[i].answer);
    assert_int_equal(atomic_load(&st[i].runs), 1);
  }
  const toolcall_result_t *r = toolcall_batch_result(fx.batch, 10);
  assert_int_equal(r->status, TOOLCALL_UNKNOWN_TOOL);
  assert_non_null(r->message);
  assert_non_null(strstr(r->message, "t0, t1, t2, t3, t4, t5, t6, t7, t8, t9"));
  fixture_free_batch(&fx);
  fixture_close(&fx, 1);

  assert_int_equal(atomic_load(&alloc_live), 0);
  assert_int_equal(toolcall_replace_allocator(malloc, realloc, calloc, free),
                   0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_registry_worker_and_loop_tools),
      cmocka_unit_test(test_registry_duplicate_name),
      cmocka_unit_test(test_registry_empty_or_null_name),
      cmocka_unit_test(test_registry_name_length),
      cmocka_unit_test(test_registry_bad_characters),
      cmocka_unit_test(test_registry_null_fn),
      cmocka_unit_test(test_registry_bad_kind),
      cmocka_unit_test(test_registry_order_and_copies),
      cmocka_unit_test(test_registry_frozen),
      cmocka_unit_test(test_registry_many_tools),
      cmocka_unit_test(test_registry_add_nomem),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
