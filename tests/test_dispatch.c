/* Dispatch: results in call order whatever the finishing order, the batch
 * callback exactly once, several batches in flight, worker and loop tools,
 * completion from foreign threads, counting, and two-phase close. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "toolcall.h"

/* ---- fixture: a loop, a registry of test tools, a manager ---- */

typedef struct {
  uv_loop_t loop;
  toolcall_registry_t *reg;
  toolcall_manager_t *m;
  int batch_cb_runs;
  int close_cb_runs;
  int last_status;
  toolcall_batch_t *last_batch; /* kept by on_batch_keep */
} fixture_t;

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

/* Arguments: {"ms":N} sleep, then echo the id. */
static int arg_int(toolcall_call_t *call, const char *key) {
  char pat[32];
  int v = 0;
  const char *args = toolcall_call_arguments(call, NULL);
  snprintf(pat, sizeof(pat), "\"%s\":", key);
  const char *p = strstr(args, pat);
  if (p != NULL)
    v = atoi(p + strlen(pat));
  return v;
}

static void tool_echo(toolcall_call_t *call, void *data) {
  (void)data;
  sleep_ms(arg_int(call, "ms"));
  char out[300];
  snprintf(out, sizeof(out), "echo:%s", toolcall_call_id(call));
  toolcall_call_complete(call, TOOLCALL_OK, out, 0);
}

static void tool_fail(toolcall_call_t *call, void *data) {
  (void)data;
  toolcall_call_complete(call, TOOLCALL_TOOL_ERROR, "disk on fire", 0);
}

static void tool_retry(toolcall_call_t *call, void *data) {
  (void)data;
  toolcall_call_complete(call, TOOLCALL_RETRY, "say 'city', not 'town'", 0);
}

static void tool_silent(toolcall_call_t *call, void *data) {
  (void)call;
  (void)data;
}

/* Completes twice and with a bad status: only the first completion counts. */
/* Worker tools run off the main thread, where cmocka must not assert:
 * they record what they saw and the test asserts it. */
static int twice_first_rc = -1;
static int twice_second_rc;
static int twice_bad_status_rc;
static void tool_twice(toolcall_call_t *call, void *data) {
  (void)data;
  twice_bad_status_rc = toolcall_call_complete(call, TOOLCALL_CANCELLED, "x", 0);
  twice_first_rc = toolcall_call_complete(call, TOOLCALL_OK, "first", 0);
  twice_second_rc = toolcall_call_complete(call, TOOLCALL_OK, "second", 0);
}

static void tool_usage(toolcall_call_t *call, void *data) {
  (void)data;
  toolcall_usage_t u = {0};
  u.input_tokens = 10;
  u.output_tokens = 5;
  toolcall_ledger_add_usage(toolcall_call_ledger(call), &u);
  toolcall_ledger_add_detail(toolcall_call_ledger(call), "sub_agent", 1);
  toolcall_call_complete(call, TOOLCALL_OK, NULL, 0);
}

/* Loop tool: hands the call to a new thread that sleeps ms then completes. */
static void foreign_complete(void *arg) {
  toolcall_call_t *call = arg;
  sleep_ms(arg_int(call, "ms"));
  char out[300];
  snprintf(out, sizeof(out), "loop:%s", toolcall_call_id(call));
  toolcall_call_complete(call, TOOLCALL_OK, out, 0);
}

#define MAX_FOREIGN 64
static uv_thread_t foreign[MAX_FOREIGN];
static int nforeign;

static void tool_loop_thread(toolcall_call_t *call, void *data) {
  (void)data;
  assert_true(nforeign < MAX_FOREIGN);
  assert_int_equal(
      uv_thread_create(&foreign[nforeign++], foreign_complete, call), 0);
}

static void join_foreign(void) {
  for (int i = 0; i < nforeign; i++)
    assert_int_equal(uv_thread_join(&foreign[i]), 0);
  nforeign = 0;
}

static void tool_loop_sync(toolcall_call_t *call, void *data) {
  (void)data;
  toolcall_call_complete(call, TOOLCALL_OK, "sync", 0);
}

static void add_tool(toolcall_registry_t *reg, const char *name,
                     toolcall_tool_kind_t kind, toolcall_tool_fn fn) {
  toolcall_tool_t def;
  toolcall_tool_init(&def);
  def.name = name;
  def.kind = kind;
  def.fn = fn;
  assert_int_equal(toolcall_registry_add(reg, &def, NULL), 0);
}

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof(*f));
  assert_non_null(f);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  assert_int_equal(toolcall_registry_new(&f->reg), 0);
  add_tool(f->reg, "echo", TOOLCALL_TOOL_WORKER, tool_echo);
  add_tool(f->reg, "fail", TOOLCALL_TOOL_WORKER, tool_fail);
  add_tool(f->reg, "retry", TOOLCALL_TOOL_WORKER, tool_retry);
  add_tool(f->reg, "silent", TOOLCALL_TOOL_WORKER, tool_silent);
  add_tool(f->reg, "twice", TOOLCALL_TOOL_WORKER, tool_twice);
  add_tool(f->reg, "usage", TOOLCALL_TOOL_WORKER, tool_usage);
  add_tool(f->reg, "loop_thread", TOOLCALL_TOOL_LOOP, tool_loop_thread);
  add_tool(f->reg, "loop_sync", TOOLCALL_TOOL_LOOP, tool_loop_sync);
  toolcall_manager_options_t opts;
  toolcall_manager_options_init(&opts);
  opts.registry = f->reg;
  opts.data = f;
  assert_int_equal(toolcall_manager_new(&f->m, &f->loop, &opts), 0);
  *state = f;
  return 0;
}

static void on_close(toolcall_manager_t *m) {
  fixture_t *f = toolcall_manager_data(m);
  f->close_cb_runs++;
}

static int teardown(void **state) {
  fixture_t *f = *state;
  if (f->m != NULL) {
    assert_int_equal(toolcall_manager_close(f->m, on_close), 0);
    assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(f->close_cb_runs, 1);
  }
  join_foreign();
  assert_int_equal(uv_loop_close(&f->loop), 0);
  toolcall_registry_free(f->reg);
  free(f);
  return 0;
}

static void on_batch_keep(toolcall_batch_t *batch, int status) {
  fixture_t *f = toolcall_batch_data(batch);
  f->batch_cb_runs++;
  f->last_status = status;
  f->last_batch = batch;
}

static void assert_conserved(toolcall_manager_t *m) {
  toolcall_snapshot_t s;
  uint64_t sum = 0;
  assert_int_equal(toolcall_ledger_snapshot(toolcall_manager_ledger(m), &s), 0);
  for (int i = 0; i < TOOLCALL_STATUS_SLOTS_; i++)
    sum += s.calls[i];
  assert_int_equal(s.dispatched, sum);
  assert_int_equal(s.tool_calls, s.calls[TOOLCALL_OK]);
}

/* ---- tests ---- */

/* Calls that finish in reverse order come back in call order. */
static void test_dispatch_call_order(void **state) {
  fixture_t *f = *state;
  enum { N = 4 };
  toolcall_call_spec_t calls[N];
  memset(calls, 0, sizeof(calls));
  char ids[N][16], args[N][32];
  for (int i = 0; i < N; i++) {
    snprintf(ids[i], sizeof(ids[i]), "call_%d", i);
    snprintf(args[i], sizeof(args[i]), "{\"ms\":%d}", (N - i) * 15);
    calls[i].id = ids[i];
    calls[i].name = "echo";
    calls[i].arguments = args[i];
    calls[i].arguments_len = 0;
  }
  toolcall_batch_t *out = NULL;
  assert_int_equal(
      toolcall_batch_submit(f->m, calls, N, NULL, on_batch_keep, f, &out, NULL), 0);
  assert_non_null(out);
  assert_int_equal(f->batch_cb_runs, 0); /* never inside submit */
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(f->batch_cb_runs, 1);
  assert_int_equal(f->last_status, 0);
  assert_ptr_equal(f->last_batch, out);
  assert_int_equal(toolcall_batch_size(out), N);
  assert_ptr_equal(toolcall_batch_manager(out), f->m);
  for (int i = 0; i < N; i++) {
    const toolcall_result_t *r = toolcall_batch_result(out, (size_t)i);
    char want[32];
    snprintf(want, sizeof(want), "echo:call_%d", i);
    assert_string_equal(r->id, ids[i]);
    assert_string_equal(r->tool, "echo");
    assert_int_equal(r->status, TOOLCALL_OK);
    assert_string_equal(r->output, want);
    assert_int_equal(r->output_len, strlen(want));
    assert_null(r->message);
    assert_true(r->duration_ns >= (uint64_t)(N - i) * 15 * 1000000ull);
  }
  assert_null(toolcall_batch_result(out, N));
  toolcall_batch_free(out);

  toolcall_snapshot_t s;
  assert_int_equal(toolcall_ledger_snapshot(toolcall_manager_ledger(f->m), &s), 0);
  assert_int_equal(s.dispatched, N);
  assert_int_equal(s.tool_calls, N);
  assert_conserved(f->m);
}

/* Each status a tool can end with, plus unknown tools, in one batch. */
static void test_dispatch_statuses(void **state) {
  fixture_t *f = *state;
  toolcall_call_spec_t calls[] = {
      {"a", "echo", NULL, 0, 0},   {"b", "fail", "{}", 0, 0},
      {"c", "retry", "{}", 0, 0},  {"d", "silent", "{}", 0, 0},
      {"e", "missing", "{}", 0, 0}, {"f", "loop_sync", "{}", 0, 0},
      {"g", "usage", "{}", 0, 0},
  };
  size_t n = sizeof(calls) / sizeof(calls[0]);
  assert_int_equal(
      toolcall_batch_submit(f->m, calls, n, NULL, on_batch_keep, f, NULL, NULL), 0);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(f->batch_cb_runs, 1);
  toolcall_batch_t *b = f->last_batch;
  const toolcall_result_t *r = toolcall_batch_result(b, 0);
  assert_int_equal(r->status, TOOLCALL_OK);
  assert_string_equal(r->output, "echo:a");
  r = toolcall_batch_result(b, 1);
  assert_int_equal(r->status, TOOLCALL_TOOL_ERROR);
  assert_string_equal(r->message, "disk on fire");
  assert_string_equal(r->output, "");
  r = toolcall_batch_result(b, 2);
  assert_int_equal(r->status, TOOLCALL_RETRY);
  assert_string_equal(r->message, "say 'city', not 'town'");
  r = toolcall_batch_result(b, 3);
  assert_int_equal(r->status, TOOLCALL_TOOL_ERROR);
  assert_non_null(strstr(r->message, "without completing"));
  r = toolcall_batch_result(b, 4);
  assert_int_equal(r->status, TOOLCALL_UNKNOWN_TOOL);
  assert_non_null(strstr(r->message, "unknown tool 'missing'"));
  assert_non_null(strstr(r->message, "echo"));
  assert_non_null(strstr(r->message, "loop_sync"));
  assert_int_equal(r->duration_ns, 0);
  r = toolcall_batch_result(b, 5);
  assert_int_equal(r->status, TOOLCALL_OK);
  assert_string_equal(r->output, "sync");
  r = toolcall_batch_result(b, 6);
  assert_int_equal(r->status, TOOLCALL_OK);
  assert_string_equal(r->output, "");
  assert_int_equal(r->output_len, 0);
  toolcall_batch_free(b);

  toolcall_snapshot_t s;
  uint64_t sub = 0;
  toolcall_ledger_t *l = toolcall_manager_ledger(f->m);
  assert_int_equal(toolcall_ledger_snapshot(l, &s), 0);
  assert_int_equal(s.dispatched, n);
  assert_int_equal(s.tool_calls, 3);
  assert_int_equal(s.calls[TOOLCALL_TOOL_ERROR], 2);
  assert_int_equal(s.calls[TOOLCALL_RETRY], 1);
  assert_int_equal(s.calls[TOOLCALL_UNKNOWN_TOOL], 1);
  assert_int_equal(s.usage.input_tokens, 10);
  assert_int_equal(s.usage.output_tokens, 5);
  assert_int_equal(toolcall_ledger_detail(l, "sub_agent", &sub), 0);
  assert_int_equal(sub, 1);
  assert_conserved(f->m);
}

static void test_dispatch_complete_twice(void **state) {
  fixture_t *f = *state;
  toolcall_call_spec_t call = {"t", "twice", NULL, 0, 0};
  assert_int_equal(
      toolcall_batch_submit(f->m, &call, 1, NULL, on_batch_keep, f, NULL, NULL), 0);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(f->batch_cb_runs, 1);
  assert_int_equal(twice_first_rc, 0);
  assert_int_equal(twice_bad_status_rc, UV_EINVAL);
  assert_int_equal(twice_second_rc, TOOLCALL_ESTATE);
  const toolcall_result_t *r = toolcall_batch_result(f->last_batch, 0);
  assert_int_equal(r->status, TOOLCALL_OK);
  assert_string_equal(r->output, "first");
  toolcall_batch_free(f->last_batch);
  assert_conserved(f->m);
}

/* Loop tools completed from foreign threads, in reverse order, keep the
 * loop alive until they are done. */
static void test_dispatch_loop_foreign(void **state) {
  fixture_t *f = *state;
  enum { N = 8 };
  toolcall_call_spec_t calls[N];
  memset(calls, 0, sizeof(calls));
  char ids[N][16], args[N][32];
  for (int i = 0; i < N; i++) {
    snprintf(ids[i], sizeof(ids[i]), "L%d", i);
    snprintf(args[i], sizeof(args[i]), "{\"ms\":%d}", (N - i) * 5);
    calls[i].id = ids[i];
    calls[i].name = "loop_thread";
    calls[i].arguments = args[i];
    calls[i].arguments_len = 0;
  }
  assert_int_equal(
      toolcall_batch_submit(f->m, calls, N, NULL, on_batch_keep, f, NULL, NULL), 0);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(f->batch_cb_runs, 1);
  for (int i = 0; i < N; i++) {
    const toolcall_result_t *r = toolcall_batch_result(f->last_batch, (size_t)i);
    char want[32];
    snprintf(want, sizeof(want), "loop:L%d", i);
    assert_int_equal(r->status, TOOLCALL_OK);
    assert_string_equal(r->output, want);
  }
  toolcall_batch_free(f->last_batch);
  assert_conserved(f->m);
}

/* Several batches in flight at once on one manager: each callback once,
 * each with its own results. */
typedef struct {
  int runs;
  size_t n;
  int ok;
} multi_t;

static void on_batch_multi(toolcall_batch_t *batch, int status) {
  multi_t *mt = toolcall_batch_data(batch);
  mt->runs++;
  mt->ok = status == 0 && toolcall_batch_size(batch) == mt->n;
  for (size_t i = 0; i < toolcall_batch_size(batch); i++)
    if (toolcall_batch_result(batch, i)->status != TOOLCALL_OK)
      mt->ok = 0;
  toolcall_batch_free(batch);
}

static void test_dispatch_many_batches(void **state) {
  fixture_t *f = *state;
  enum { B = 10 };
  multi_t mt[B];
  size_t total = 0;
  for (int b = 0; b < B; b++) {
    size_t n = (size_t)b * 7 + 1;
    toolcall_call_spec_t *calls = calloc(n, sizeof(*calls));
    char(*ids)[32] = calloc(n, sizeof(*ids));
    for (size_t i = 0; i < n; i++) {
      snprintf(ids[i], sizeof(ids[i]), "%d.%zu", b, i);
      calls[i].id = ids[i];
      calls[i].name = (i % 2) ? "echo" : "loop_sync";
    }
    mt[b].runs = 0;
    mt[b].n = n;
    mt[b].ok = 0;
    assert_int_equal(
        toolcall_batch_submit(f->m, calls, n, NULL, on_batch_multi, &mt[b], NULL, NULL),
        0);
    total += n;
    free(calls);
    free(ids);
  }
  uv_run(&f->loop, UV_RUN_DEFAULT);
  for (int b = 0; b < B; b++) {
    assert_int_equal(mt[b].runs, 1);
    assert_true(mt[b].ok);
  }
  toolcall_snapshot_t s;
  assert_int_equal(toolcall_ledger_snapshot(toolcall_manager_ledger(f->m), &s), 0);
  assert_int_equal(s.dispatched, total);
  assert_int_equal(s.tool_calls, total);
  assert_conserved(f->m);
}

/* Closing with a batch in flight cancels it: its callback runs with
 * UV_ECANCELED, then (once the tools have returned) the close callback; the
 * loop then closes cleanly. */
static void test_dispatch_close_in_flight(void **state) {
  fixture_t *f = *state;
  toolcall_call_spec_t calls[] = {{"x", "echo", "{\"ms\":20}", 0, 0},
                                  {"y", "loop_thread", "{\"ms\":20}", 0, 0}};
  assert_int_equal(
      toolcall_batch_submit(f->m, calls, 2, NULL, on_batch_keep, f, NULL, NULL), 0);
  assert_int_equal(toolcall_manager_close(f->m, on_close), 0);
  assert_int_equal(toolcall_manager_close(f->m, on_close), TOOLCALL_ECLOSING);
  toolcall_error_t err;
  assert_int_equal(
      toolcall_batch_submit(f->m, calls, 2, NULL, on_batch_keep, f, NULL, &err),
      TOOLCALL_ECLOSING);
  assert_int_equal(err.code, TOOLCALL_ECLOSING);
  assert_int_equal(f->close_cb_runs, 0);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(f->batch_cb_runs, 1);
  assert_int_equal(f->close_cb_runs, 1);
  assert_int_equal(f->last_status, UV_ECANCELED);
  assert_int_equal(toolcall_batch_result(f->last_batch, 0)->status,
                   TOOLCALL_CANCELLED);
  assert_int_equal(toolcall_batch_result(f->last_batch, 1)->status,
                   TOOLCALL_CANCELLED);
  toolcall_batch_free(f->last_batch);
  f->m = NULL; /* freed after its close callback */
}

/* Two managers on two loops in two threads share one ledger; the ledger
 * outlives both. */
typedef struct {
  toolcall_registry_t *reg;
  toolcall_ledger_t *ledger;
  int batch_runs, close_runs, loop_rc, submit_rc;
} shared_t;

static void on_batch_shared(toolcall_batch_t *batch, int status) {
  shared_t *sh = toolcall_batch_data(batch);
  if (status == 0)
    sh->batch_runs++;
  toolcall_batch_free(batch);
}

static void on_close_shared(toolcall_manager_t *m) {
  shared_t *sh = toolcall_manager_data(m);
  sh->close_runs++;
}

static void shared_thread(void *arg) {
  shared_t *sh = arg;
  uv_loop_t loop;
  toolcall_manager_t *m;
  toolcall_manager_options_t opts;
  uv_loop_init(&loop);
  toolcall_manager_options_init(&opts);
  opts.registry = sh->reg;
  opts.ledger = sh->ledger;
  opts.data = sh;
  sh->submit_rc = toolcall_manager_new(&m, &loop, &opts);
  if (sh->submit_rc == 0) {
    toolcall_call_spec_t calls[] = {{"1", "echo", NULL, 0, 0},
                                    {"2", "usage", NULL, 0, 0},
                                    {"3", "nope", NULL, 0, 0}};
    sh->submit_rc =
        toolcall_batch_submit(m, calls, 3, NULL, on_batch_shared, sh, NULL, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    toolcall_manager_close(m, on_close_shared);
    uv_run(&loop, UV_RUN_DEFAULT);
  }
  sh->loop_rc = uv_loop_close(&loop);
}

static void test_dispatch_shared_ledger(void **state) {
  fixture_t *f = *state;
  toolcall_ledger_t *ledger;
  assert_int_equal(toolcall_ledger_new(&ledger), 0);
  shared_t sh[2];
  uv_thread_t th[2];
  for (int i = 0; i < 2; i++) {
    memset(&sh[i], 0, sizeof(sh[i]));
    sh[i].reg = f->reg;
    sh[i].ledger = ledger;
    assert_int_equal(uv_thread_create(&th[i], shared_thread, &sh[i]), 0);
  }
  for (int i = 0; i < 2; i++) {
    assert_int_equal(uv_thread_join(&th[i]), 0);
    assert_int_equal(sh[i].submit_rc, 0);
    assert_int_equal(sh[i].batch_runs, 1);
    assert_int_equal(sh[i].close_runs, 1);
    assert_int_equal(sh[i].loop_rc, 0);
  }
  toolcall_snapshot_t s;
  assert_int_equal(toolcall_ledger_snapshot(ledger, &s), 0);
  assert_int_equal(s.dispatched, 6);
  assert_int_equal(s.tool_calls, 4);
  assert_int_equal(s.calls[TOOLCALL_UNKNOWN_TOOL], 2);
  assert_int_equal(s.usage.input_tokens, 20);
  toolcall_ledger_free(ledger);
  /* The fixture's own manager never saw any of it. */
  assert_int_equal(
      toolcall_ledger_snapshot(toolcall_manager_ledger(f->m), &s), 0);
  assert_int_equal(s.dispatched, 0);
}

/* A manager closed with nothing in flight closes on the next loop turn; an
 * idle manager does not keep the loop alive. */
static void test_dispatch_idle_close(void **state) {
  fixture_t *f = *state;
  assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0); /* returns at once */
  assert_int_equal(toolcall_manager_close(f->m, NULL), 0);
  assert_int_equal(uv_run(&f->loop, UV_RUN_DEFAULT), 0);
  f->m = NULL;
}

/* A larger batch mixing every kind, checked call by call. */
static void test_dispatch_large_mixed(void **state) {
  fixture_t *f = *state;
  enum { N = 5000 };
  toolcall_call_spec_t *calls = calloc(N, sizeof(*calls));
  char(*ids)[16] = calloc(N, sizeof(*ids));
  static const char *const names[] = {"echo", "loop_sync", "fail", "zzz"};
  for (int i = 0; i < N; i++) {
    snprintf(ids[i], sizeof(ids[i]), "c%d", i);
    calls[i].id = ids[i];
    calls[i].name = names[i % 4];
  }
  assert_int_equal(
      toolcall_batch_submit(f->m, calls, N, NULL, on_batch_keep, f, NULL, NULL), 0);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(f->batch_cb_runs, 1);
  static const toolcall_status_t want[] = {TOOLCALL_OK, TOOLCALL_OK,
                                           TOOLCALL_TOOL_ERROR,
                                           TOOLCALL_UNKNOWN_TOOL};
  for (int i = 0; i < N; i++) {
    const toolcall_result_t *r = toolcall_batch_result(f->last_batch, (size_t)i);
    assert_string_equal(r->id, ids[i]);
    assert_int_equal(r->status, want[i % 4]);
  }
  toolcall_batch_free(f->last_batch);
  free(calls);
  free(ids);
  toolcall_snapshot_t s;
  assert_int_equal(toolcall_ledger_snapshot(toolcall_manager_ledger(f->m), &s), 0);
  assert_int_equal(s.dispatched, N);
  assert_int_equal(s.tool_calls, N / 2);
  assert_int_equal(s.calls[TOOLCALL_TOOL_ERROR], N / 4);
  assert_int_equal(s.calls[TOOLCALL_UNKNOWN_TOOL], N / 4);
  assert_conserved(f->m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_dispatch_call_order, setup, teardown),
      cmocka_unit_test_setup_teardown(test_dispatch_statuses, setup, teardown),
      cmocka_unit_test_setup_teardown(test_dispatch_complete_twice, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_dispatch_loop_foreign, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_dispatch_many_batches, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_dispatch_close_in_flight, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_dispatch_shared_ledger, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_dispatch_idle_close, setup, teardown),
      cmocka_unit_test_setup_teardown(test_dispatch_large_mixed, setup,
                                      teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
