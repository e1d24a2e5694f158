/* The ledger: usage sums, overflow, detail counters, snapshots, argument
 * checks, and exact totals under concurrent adds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "toolcall.h"

/* ---- fixture: a loop and a manager sharing the test's ledger ----------- */

typedef struct {
  uv_loop_t loop;
  toolcall_registry_t *reg;
  toolcall_ledger_t *ledger;
  toolcall_manager_t *m;
  int close_cb_calls;
  int batch_cb_calls;
} fixture_t;

static void ok_tool(toolcall_call_t *call, void *data) {
  (void)data;
  /* a tool reporting the usage of a sub-agent */
  toolcall_usage_t u;
  memset(&u, 0, sizeof(u));
  u.requests = 1;
  u.input_tokens = 10;
  toolcall_ledger_add_usage(toolcall_call_ledger(call), &u);
  toolcall_ledger_add_detail(toolcall_call_ledger(call), "tool_runs", 1);
  toolcall_call_complete(call, TOOLCALL_OK, "done", 0);
}

static void on_manager_closed(toolcall_manager_t *m) {
  fixture_t *fx = toolcall_manager_data(m);
  assert_non_null(fx);
  fx->close_cb_calls++;
}

static void on_batch_done(toolcall_batch_t *batch, int status) {
  fixture_t *fx = toolcall_batch_data(batch);
  assert_int_equal(status, 0);
  fx->batch_cb_calls++;
  for (size_t i = 0; i < toolcall_batch_size(batch); i++)
    assert_int_equal(toolcall_batch_result(batch, i)->status, TOOLCALL_OK);
  toolcall_batch_free(batch);
}

static void fixture_open(fixture_t *fx) {
  memset(fx, 0, sizeof(*fx));
  assert_int_equal(uv_loop_init(&fx->loop), 0);
  assert_int_equal(toolcall_registry_new(&fx->reg), 0);
  toolcall_tool_t def;
  toolcall_tool_init(&def);
  def.name = "ok";
  def.fn = ok_tool;
  assert_int_equal(toolcall_registry_add(fx->reg, &def, NULL), 0);
  assert_int_equal(toolcall_ledger_new(&fx->ledger), 0);
  toolcall_manager_options_t opts;
  toolcall_manager_options_init(&opts);
  opts.registry = fx->reg;
  opts.ledger = fx->ledger;
  opts.data = fx;
  assert_int_equal(toolcall_manager_new(&fx->m, &fx->loop, &opts), 0);
  assert_ptr_equal(toolcall_manager_ledger(fx->m), fx->ledger);
}

static void fixture_close(fixture_t *fx, int batches) {
  assert_int_equal(toolcall_manager_close(fx->m, on_manager_closed), 0);
  assert_int_equal(uv_run(&fx->loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(fx->close_cb_calls, 1);
  assert_int_equal(fx->batch_cb_calls, batches);
  assert_int_equal(uv_loop_close(&fx->loop), 0);
  toolcall_ledger_free(fx->ledger);
  toolcall_registry_free(fx->reg);
  memset(fx, 0, sizeof(*fx));
}

/* The five usage fields by index, so each can be the one that overflows. */
#define NFIELDS 5
static uint64_t *usage_field(toolcall_usage_t *u, int f) {
  switch (f) {
  case 0:
    return &u->requests;
  case 1:
    return &u->input_tokens;
  case 2:
    return &u->output_tokens;
  case 3:
    return &u->cache_read_tokens;
  default:
    return &u->cache_write_tokens;
  }
}

static toolcall_usage_t usage_of(uint64_t a, uint64_t b, uint64_t c, uint64_t d,
                                 uint64_t e) {
  toolcall_usage_t u;
  memset(&u, 0, sizeof(u));
  u.requests = a;
  u.input_tokens = b;
  u.output_tokens = c;
  u.cache_read_tokens = d;
  u.cache_write_tokens = e;
  return u;
}

static void assert_usage(const toolcall_ledger_t *l, uint64_t a, uint64_t b,
                         uint64_t c, uint64_t d, uint64_t e) {
  toolcall_snapshot_t s;
  assert_int_equal(toolcall_ledger_snapshot(l, &s), 0);
  assert_int_equal(s.usage.requests, a);
  assert_int_equal(s.usage.input_tokens, b);
  assert_int_equal(s.usage.output_tokens, c);
  assert_int_equal(s.usage.cache_read_tokens, d);
  assert_int_equal(s.usage.cache_write_tokens, e);
}

/* ---- tests ------------------------------------------------------------- */

static void test_ledger_add_usage(void **state) {
  (void)state;
  fixture_t fx;
  fixture_open(&fx);
  toolcall_usage_t u = usage_of(1, 200, 30, 4000, 5);
  assert_int_equal(toolcall_ledger_add_usage(fx.ledger, &u), 0);
  assert_usage(fx.ledger, 1, 200, 30, 4000, 5);
  u = usage_of(2, 3, 5, 7, 11);
  assert_int_equal(toolcall_ledger_add_usage(fx.ledger, &u), 0);
  assert_int_equal(toolcall_ledger_add_usage(fx.ledger, &u), 0);
  assert_usage(fx.ledger, 5, 206, 40, 4014, 27);
  u = usage_of(0, 0, 0, 0, 0);
  assert_int_equal(toolcall_ledger_add_usage(fx.ledger, &u), 0);
  assert_usage(fx.ledger, 5, 206, 40, 4014, 27);
  /* usage only: no calls counted */
  toolcall_snapshot_t s;
  assert_int_equal(toolcall_ledger_snapshot(fx.ledger, &s), 0);
  assert_int_equal(s.dispatched, 0);
  assert_int_equal(s.tool_calls, 0);
  for (int i = 0; i < TOOLCALL_STATUS_SLOTS_; i++)
    assert_int_equal(s.calls[i], 0);
  fixture_close(&fx, 0);
}

static void test_ledger_add_usage_overflow(void **state) {
  (void)state;
  fixture_t fx;
  fixture_open(&fx);
  /* Each field in turn is the one to overflow; whichever it is, none of
   * the others may move. */
  for (int f = 0; f < NFIELDS; f++) {
    toolcall_ledger_t *l = NULL;
    assert_int_equal(toolcall_ledger_new(&l), 0);
    toolcall_usage_t base = usage_of(10, 10, 10, 10, 10);
    *usage_field(&base, f) = UINT64_MAX - 1;
    assert_int_equal(toolcall_ledger_add_usage(l, &base), 0);

    toolcall_usage_t delta = usage_of(1, 1, 1, 1, 1);
    *usage_field(&delta, f) = 2;
    assert_int_equal(toolcall_ledger_add_usage(l, &delta), UV_EOVERFLOW);
    *usage_field(&delta, f) = UINT64_MAX;
    assert_int_equal(toolcall_ledger_add_usage(l, &delta), UV_EOVERFLOW);
    toolcall_snapshot_t s;
    assert_int_equal(toolcall_ledger_snapshot(l, &s), 0);
    for (int g = 0; g < NFIELDS; g++)
      assert_int_equal(*usage_field(&s.usage, g), g == f ? UINT64_MAX - 1 : 10);

    /* exactly reaching the maximum is fine */
    *usage_field(&delta, f) = 1;
    assert_int_equal(toolcall_ledger_add_usage(l, &delta), 0);
    assert_int_equal(toolcall_ledger_snapshot(l, &s), 0);
    for (int g = 0; g < NFIELDS; g++)
      assert_int_equal(*usage_field(&s.usage, g), g == f ? UINT64_MAX : 11);
    /* and now even +1 on that field alone overflows */
    toolcall_usage_t one = usage_of(0, 0, 0, 0, 0);
    *usage_field(&one, f) = 1;
    assert_int_equal(toolcall_ledger_add_usage(l, &one), UV_EOVERFLOW);
    toolcall_ledger_free(l);
  }
  /* several fields overflowing at once */
  toolcall_usage_t max = usage_of(UINT64_MAX, UINT64_MAX, 0, 0, 0);
  assert_int_equal(toolcall_ledger_add_usage(fx.ledger, &max), 0);
  toolcall_usage_t more = usage_of(1, 1, 1, 1, 1);
  assert_int_equal(toolcall_ledger_add_usage(fx.ledger, &more), UV_EOVERFLOW);
  assert_usage(fx.ledger, UINT64_MAX, UINT64_MAX, 0, 0, 0);
  fixture_close(&fx, 0);
}

static void test_ledger_detail_add_get(void **state) {
  (void)state;
  fixture_t fx;
  fixture_open(&fx);
  uint64_t v = 12345;
  assert_int_equal(toolcall_ledger_detail(fx.ledger, "reasoning_tokens", &v),
                   UV_ENOENT);
  assert_int_equal(v, 12345); /* untouched */
  assert_int_equal(
      toolcall_ledger_add_detail(fx.ledger, "reasoning_tokens", 100), 0);
  assert_int_equal(toolcall_ledger_add_detail(fx.ledger, "web_searches", 1), 0);
  assert_int_equal(
      toolcall_ledger_add_detail(fx.ledger, "reasoning_tokens", 23), 0);
  /* a delta of 0 still creates the counter */
  assert_int_equal(toolcall_ledger_add_detail(fx.ledger, "zero", 0), 0);
  assert_int_equal(toolcall_ledger_detail(fx.ledger, "reasoning_tokens", &v),
                   0);
  assert_int_equal(v, 123);
  assert_int_equal(toolcall_ledger_detail(fx.ledger, "web_searches", &v), 0);
  assert_int_equal(v, 1);
  assert_int_equal(toolcall_ledger_detail(fx.ledger, "zero", &v), 0);
  assert_int_equal(v, 0);
  /* names are compared whole */
  assert_int_equal(toolcall_ledger_detail(fx.ledger, "reasoning", &v),
                   UV_ENOENT);
  assert_int_equal(toolcall_ledger_detail(fx.ledger, "web_searches_", &v),
                   UV_ENOENT);
  assert_int_equal(toolcall_ledger_detail(fx.ledger, "Zero", &v), UV_ENOENT);

  toolcall_detail_t out[8];
  memset(out, 0xAB, sizeof(out));
  size_t count = 0;
  assert_int_equal(toolcall_ledger_details(fx.ledger, out, 8, &count), 0);
  assert_int_equal(count, 3);
  assert_string_equal(out[0].name, "reasoning_tokens");
  assert_int_equal(out[0].value, 123);
  assert_string_equal(out[1].name, "web_searches");
  assert_int_equal(out[1].value, 1);
  assert_string_equal(out[2].name, "zero");
  assert_int_equal(out[2].value, 0);
  /* nothing written past count */
  unsigned char pattern[sizeof(toolcall_detail_t)];
  memset(pattern, 0xAB, sizeof(pattern));
  assert_memory_equal(&out[3], pattern, sizeof(pattern));

  /* cap below count: the first cap, and the full count */
  memset(out, 0xAB, sizeof(out));
  assert_int_equal(toolcall_ledger_details(fx.ledger, out, 2, &count), 0);
  assert_int_equal(count, 3);
  assert_string_equal(out[0].name, "reasoning_tokens");
  assert_string_equal(out[1].name, "web_searches");
  assert_memory_equal(&out[2], pattern, sizeof(pattern));

  /* detail counters are not usage */
  assert_usage(fx.ledger, 0, 0, 0, 0, 0);
  fixture_close(&fx, 0);
}

static void test_ledger_detail_count_only(void **state) {
  (void)state;
  fixture_t fx;
  fixture_open(&fx);
  size_t count = 99;
  assert_int_equal(toolcall_ledger_details(fx.ledger, NULL, 0, &count), 0);
  assert_int_equal(count, 0);
  char name[16];
  for (int i = 0; i < 17; i++) {
    snprintf(name, sizeof(name), "d%d", i);
    assert_int_equal(toolcall_ledger_add_detail(fx.ledger, name, (uint64_t)i),
                     0);
    assert_int_equal(toolcall_ledger_details(fx.ledger, NULL, 0, &count), 0);
    assert_int_equal(count, (size_t)i + 1);
  }
  /* adding to an existing counter does not create one */
  assert_int_equal(toolcall_ledger_add_detail(fx.ledger, "d3", 1), 0);
  assert_int_equal(toolcall_ledger_details(fx.ledger, NULL, 0, &count), 0);
  assert_int_equal(count, 17);
  fixture_close(&fx, 0);
}

static void test_ledger_detail_names(void **state) {
  (void)state;
  fixture_t fx;
  fixture_open(&fx);
  char name[TOOLCALL_DETAIL_NAME_MAX + 2];
  memset(name, 'd', TOOLCALL_DETAIL_NAME_MAX + 1);
  name[TOOLCALL_DETAIL_NAME_MAX + 1] = '\0';
  assert_int_equal(strlen(name), 64);
  uint64_t v = 0;
  assert_int_equal(toolcall_ledger_add_detail(fx.ledger, name, 1),
                   UV_ENAMETOOLONG);
  assert_int_equal(toolcall_ledger_detail(fx.ledger, name, &v),
                   UV_ENAMETOOLONG);
  assert_int_equal(toolcall_ledger_add_detail(fx.ledger, "", 1), UV_EINVAL);
  assert_int_equal(toolcall_ledger_add_detail(fx.ledger, NULL, 1), UV_EINVAL);
  assert_int_equal(toolcall_ledger_detail(fx.ledger, "", &v), UV_EINVAL);
  assert_int_equal(toolcall_ledger_detail(fx.ledger, NULL, &v), UV_EINVAL);
  size_t count = 99;
  assert_int_equal(toolcall_ledger_details(fx.ledger, NULL, 0, &count), 0);
  assert_int_equal(count, 0);

  /* 63 bytes: the limit itself */
  name[TOOLCALL_DETAIL_NAME_MAX] = '\0';
  assert_int_equal(toolcall_ledger_add_detail(fx.ledger, name, 42), 0);
  assert_int_equal(toolcall_ledger_detail(fx.ledger, name, &v), 0);
  assert_int_equal(v, 42);
  toolcall_detail_t out[1];
  assert_int_equal(toolcall_ledger_details(fx.ledger, out, 1, &count), 0);
  assert_int_equal(count, 1);
  assert_string_equal(out[0].name, name);
  assert_int_equal(out[0].value, 42);
  fixture_close(&fx, 0);
}

static void test_ledger_detail_capacity(void **state) {
  (void)state;
  fixture_t fx;
  fixture_open(&fx);
  char name[32];
  for (int i = 0; i < 64; i++) {
    snprintf(name, sizeof(name), "counter_%02d", i);
    assert_int_equal(toolcall_ledger_add_detail(fx.ledger, name, (uint64_t)i),
                     0);
  }
  assert_int_equal(toolcall_ledger_add_detail(fx.ledger, "counter_64", 1),
                   UV_ENOSPC);
  assert_int_equal(toolcall_ledger_add_detail(fx.ledger, "another", 0),
                   UV_ENOSPC);
  uint64_t v = 0;
  assert_int_equal(toolcall_ledger_detail(fx.ledger, "counter_64", &v),
                   UV_ENOENT);
  /* existing counters still take adds when the table is full */
  assert_int_equal(toolcall_ledger_add_detail(fx.ledger, "counter_63", 1000),
                   0);
  assert_int_equal(toolcall_ledger_detail(fx.ledger, "counter_63", &v), 0);
  assert_int_equal(v, 1063);

  toolcall_detail_t out[70];
  size_t count = 0;
  assert_int_equal(toolcall_ledger_details(fx.ledger, out, 70, &count), 0);
  assert_int_equal(count, 64);
  for (int i = 0; i < 64; i++) {
    snprintf(name, sizeof(name), "counter_%02d", i);
    assert_string_equal(out[i].name, name);
    assert_int_equal(out[i].value, i == 63 ? 1063 : (uint64_t)i);
  }
  fixture_close(&fx, 0);
}

static void test_ledger_detail_overflow(void **state) {
  (void)state;
  fixture_t fx;
  fixture_open(&fx);
  assert_int_equal(toolcall_ledger_add_detail(fx.ledger, "big", UINT64_MAX - 1),
                   0);
  assert_int_equal(toolcall_ledger_add_detail(fx.ledger, "big", 2),
                   UV_EOVERFLOW);
  uint64_t v = 0;
  assert_int_equal(toolcall_ledger_detail(fx.ledger, "big", &v), 0);
  assert_int_equal(v, UINT64_MAX - 1);
  assert_int_equal(toolcall_ledger_add_detail(fx.ledger, "big", 1), 0);
  assert_int_equal(toolcall_ledger_detail(fx.ledger, "big", &v), 0);
  assert_int_equal(v, UINT64_MAX);
  assert_int_equal(toolcall_ledger_add_detail(fx.ledger, "big", 0), 0);
  fixture_close(&fx, 0);
}

static void test_ledger_snapshot_fresh(void **state) {
  (void)state;
  fixture_t fx;
  fixture_open(&fx);
  toolcall_snapshot_t s, zero;
  memset(&s, 0xAA, sizeof(s));
  memset(&zero, 0, sizeof(zero));
  assert_int_equal(toolcall_ledger_snapshot(fx.ledger, &s), 0);
  assert_memory_equal(&s, &zero, sizeof(s));
  /* a standalone ledger too */
  toolcall_ledger_t *l = NULL;
  assert_int_equal(toolcall_ledger_new(&l), 0);
  assert_non_null(l);
  memset(&s, 0xAA, sizeof(s));
  assert_int_equal(toolcall_ledger_snapshot(l, &s), 0);
  assert_memory_equal(&s, &zero, sizeof(s));
  size_t count = 99;
  assert_int_equal(toolcall_ledger_details(l, NULL, 0, &count), 0);
  assert_int_equal(count, 0);
  toolcall_ledger_free(l);
  fixture_close(&fx, 0);
}

static void test_ledger_null_args(void **state) {
  (void)state;
  fixture_t fx;
  fixture_open(&fx);
  toolcall_usage_t u = usage_of(1, 1, 1, 1, 1);
  toolcall_snapshot_t s;
  toolcall_detail_t d[2];
  uint64_t v = 0;
  size_t count = 0;
  assert_int_equal(toolcall_ledger_new(NULL), UV_EINVAL);
  assert_int_equal(toolcall_ledger_add_usage(NULL, &u), UV_EINVAL);
  assert_int_equal(toolcall_ledger_add_usage(fx.ledger, NULL), UV_EINVAL);
  assert_int_equal(toolcall_ledger_add_detail(NULL, "x", 1), UV_EINVAL);
  assert_int_equal(toolcall_ledger_add_detail(fx.ledger, NULL, 1), UV_EINVAL);
  assert_int_equal(toolcall_ledger_detail(NULL, "x", &v), UV_EINVAL);
  assert_int_equal(toolcall_ledger_detail(fx.ledger, NULL, &v), UV_EINVAL);
  assert_int_equal(toolcall_ledger_detail(fx.ledger, "x", NULL), UV_EINVAL);
  assert_int_equal(toolcall_ledger_details(NULL, d, 2, &count), UV_EINVAL);
  assert_int_equal(toolcall_ledger_details(fx.ledger, NULL, 2, &count),
                   UV_EINVAL);
  assert_int_equal(toolcall_ledger_details(fx.ledger, d, 2, NULL), UV_EINVAL);
  assert_int_equal(toolcall_ledger_snapshot(NULL, &s), UV_EINVAL);
  assert_int_equal(toolcall_ledger_snapshot(fx.ledger, NULL), UV_EINVAL);
  toolcall_ledger_free(NULL);
  /* none of that counted anything */
  assert_usage(fx.ledger, 0, 0, 0, 0, 0);
  assert_int_equal(toolcall_ledger_details(fx.ledger, NULL, 0, &count), 0);
  assert_int_equal(count, 0);
  fixture_close(&fx, 0);
}

static void test_ledger_shared_with_manager(void **state) {
  (void)state;
  fixture_t fx;
  fixture_open(&fx);
  toolcall_call_spec_t calls[] = {
      {"a", "ok", NULL, 0, 0}, {"b", "ok", NULL, 0, 0}, {"c", "ok", NULL, 0, 0}};
  toolcall_error_t err;
  assert_int_equal(toolcall_batch_submit(fx.m, calls, 3, NULL, on_batch_done,
                                         &fx, NULL, &err),
                   0);
  assert_int_equal(uv_run(&fx.loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(fx.batch_cb_calls, 1);
  toolcall_snapshot_t s;
  assert_int_equal(toolcall_ledger_snapshot(fx.ledger, &s), 0);
  assert_int_equal(s.dispatched, 3);
  assert_int_equal(s.calls[TOOLCALL_OK], 3);
  assert_int_equal(s.tool_calls, 3);
  assert_int_equal(s.usage.requests, 3);
  assert_int_equal(s.usage.input_tokens, 30);
  uint64_t v = 0;
  assert_int_equal(toolcall_ledger_detail(fx.ledger, "tool_runs", &v), 0);
  assert_int_equal(v, 3);
  fixture_close(&fx, 1);
}

/* ---- concurrency -------------------------------------------------------- */

#define ADD_THREADS 4
#define ADDS_PER_THREAD 100000

typedef struct {
  toolcall_ledger_t *ledger;
  uv_barrier_t *start;
  int failures; /* read after join */
} adder_t;

static void adder_main(void *arg) {
  adder_t *a = arg;
  toolcall_usage_t u = usage_of(1, 2, 3, 5, 7);
  uv_barrier_wait(a->start);
  for (int i = 0; i < ADDS_PER_THREAD; i++)
    if (toolcall_ledger_add_usage(a->ledger, &u) != 0)
      a->failures++;
}

static void test_ledger_concurrent_add_usage(void **state) {
  (void)state;
  fixture_t fx;
  fixture_open(&fx);
  uv_barrier_t start;
  assert_int_equal(uv_barrier_init(&start, ADD_THREADS), 0);
  uv_thread_t threads[ADD_THREADS];
  adder_t adders[ADD_THREADS];
  for (int i = 0; i < ADD_THREADS; i++) {
    adders[i] = (adder_t){fx.ledger, &start, 0};
    assert_int_equal(uv_thread_create(&threads[i], adder_main, &adders[i]), 0);
  }
  for (int i = 0; i < ADD_THREADS; i++) {
    assert_int_equal(uv_thread_join(&threads[i]), 0);
    assert_int_equal(adders[i].failures, 0);
  }
  uv_barrier_destroy(&start);
  const uint64_t n = (uint64_t)ADD_THREADS * ADDS_PER_THREAD;
  /* Any lost update (no mutex) leaves a total short. */
  assert_usage(fx.ledger, n, 2 * n, 3 * n, 5 * n, 7 * n);
  fixture_close(&fx, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_ledger_add_usage),
      cmocka_unit_test(test_ledger_add_usage_overflow),
      cmocka_unit_test(test_ledger_detail_add_get),
      cmocka_unit_test(test_ledger_detail_count_only),
      cmocka_unit_test(test_ledger_detail_names),
      cmocka_unit_test(test_ledger_detail_capacity),
      cmocka_unit_test(test_ledger_detail_overflow),
      cmocka_unit_test(test_ledger_snapshot_fresh),
      cmocka_unit_test(test_ledger_null_args),
      cmocka_unit_test(test_ledger_shared_with_manager),
      cmocka_unit_test(test_ledger_concurrent_add_usage),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
