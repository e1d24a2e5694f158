/* Limits: admission of batches and requests, both policies, per-tool uses,
 * and the promise that no interleaving overshoots a limit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "toolcall.h"

/* How many times each tool body actually ran (any thread). */
static atomic_int ran_ok, ran_retry;

static void tool_ok(toolcall_call_t *call, void *data) {
  (void)data;
  atomic_fetch_add(&ran_ok, 1);
  toolcall_call_complete(call, TOOLCALL_OK, "done", 0);
}

static void tool_retry(toolcall_call_t *call, void *data) {
  (void)data;
  atomic_fetch_add(&ran_retry, 1);
  toolcall_call_complete(call, TOOLCALL_RETRY, "try again", 0);
}

typedef struct {
  uv_loop_t loop;
  toolcall_registry_t *reg;
  toolcall_ledger_t *ledger;
  toolcall_manager_t *m;
  int batch_runs;
  int last_status;
  toolcall_batch_t *last;
} fx_t;

static void add_tool(toolcall_registry_t *reg, const char *name,
                     toolcall_tool_kind_t kind, toolcall_tool_fn fn) {
  toolcall_tool_t def;
  toolcall_tool_init(&def);
  def.name = name;
  def.kind = kind;
  def.fn = fn;
  assert_int_equal(toolcall_registry_add(reg, &def, NULL), 0);
}

static void fx_open(fx_t *f, toolcall_limit_policy_t policy) {
  memset(f, 0, sizeof(*f));
  atomic_store(&ran_ok, 0);
  atomic_store(&ran_retry, 0);
  assert_int_equal(uv_loop_init(&f->loop), 0);
  assert_int_equal(toolcall_registry_new(&f->reg), 0);
  add_tool(f->reg, "ok", TOOLCALL_TOOL_WORKER, tool_ok);
  add_tool(f->reg, "ok_loop", TOOLCALL_TOOL_LOOP, tool_ok);
  add_tool(f->reg, "retry", TOOLCALL_TOOL_WORKER, tool_retry);
  assert_int_equal(toolcall_ledger_new(&f->ledger), 0);
  toolcall_manager_options_t o;
  toolcall_manager_options_init(&o);
  o.registry = f->reg;
  o.ledger = f->ledger;
  o.limit_policy = policy;
  o.data = f;
  assert_int_equal(toolcall_manager_new(&f->m, &f->loop, &o), 0);
}

static void assert_conserved(toolcall_ledger_t *l) {
  toolcall_snapshot_t s;
  uint64_t sum = 0;
  assert_int_equal(toolcall_ledger_snapshot(l, &s), 0);
  for (int i = 0; i < TOOLCALL_STATUS_SLOTS_; i++)
    sum += s.calls[i];
  assert_int_equal(s.dispatched, sum);
  assert_int_equal(s.reserved_tool_calls, 0);
}

static int close_runs;
static void on_close(toolcall_manager_t *m) {
  (void)m;
  close_runs++;
}

static void fx_close(fx_t *f) {
  assert_conserved(f->ledger);
  close_runs = 0;
  if (f->m != NULL) {
    assert_int_equal(toolcall_manager_close(f->m, on_close), 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(close_runs, 1);
  }
  assert_int_equal(uv_loop_close(&f->loop), 0);
  toolcall_ledger_free(f->ledger);
  toolcall_registry_free(f->reg);
}

static void set_tool_calls_limit(toolcall_ledger_t *l, int64_t n) {
  toolcall_limits_t lim;
  toolcall_limits_init(&lim);
  lim.tool_calls = n;
  assert_int_equal(toolcall_ledger_set_limits(l, &lim), 0);
}

static void on_batch(toolcall_batch_t *b, int status) {
  fx_t *f = toolcall_batch_data(b);
  f->batch_runs++;
  f->last_status = status;
  if (f->last != NULL)
    toolcall_batch_free(f->last);
  f->last = b;
}

/* Submit n calls of `tool` with ids p0..p(n-1), run the loop, return the
 * batch callback's status (the batch stays in f->last). */
static int run_batch(fx_t *f, const char *tool, size_t n,
                     const toolcall_batch_options_t *opts) {
  toolcall_call_spec_t *calls = calloc(n, sizeof(*calls));
  char(*ids)[24] = calloc(n, sizeof(*ids));
  for (size_t i = 0; i < n; i++) {
    snprintf(ids[i], sizeof(ids[i]), "p%zu", i);
    calls[i].id = ids[i];
    calls[i].name = tool;
  }
  int runs = f->batch_runs;
  assert_int_equal(
      toolcall_batch_submit(f->m, calls, n, opts, on_batch, f, NULL, NULL), 0);
  free(calls);
  free(ids);
  uv_run(&f->loop, UV_RUN_DEFAULT);
  assert_int_equal(f->batch_runs, runs + 1);
  return f->last_status;
}

static void fx_done(fx_t *f) {
  toolcall_batch_free(f->last);
  f->last = NULL;
}

static uint64_t tool_calls(toolcall_ledger_t *l) {
  toolcall_snapshot_t s;
  assert_int_equal(toolcall_ledger_snapshot(l, &s), 0);
  return s.tool_calls;
}

/* ---- pydantic-ai's cases ---- */

static void test_limits_zero_rejects_one(void **state) {
  (void)state;
  fx_t f;
  fx_open(&f, TOOLCALL_POLICY_REJECT_BATCH);
  set_tool_calls_limit(f.ledger, 0);
  assert_int_equal(run_batch(&f, "ok", 1, NULL), TOOLCALL_ELIMIT);
  const toolcall_result_t *r = toolcall_batch_result(f.last, 0);
  assert_int_equal(r->status, TOOLCALL_REJECTED);
  assert_non_null(strstr(toolcall_batch_error(f.last), "tool_calls limit of 0"));
  assert_string_equal(r->message, toolcall_batch_error(f.last));
  assert_int_equal(atomic_load(&ran_ok), 0);
  toolcall_snapshot_t s;
  assert_int_equal(toolcall_ledger_snapshot(f.ledger, &s), 0);
  assert_int_equal(s.tool_calls, 0);
  assert_int_equal(s.calls[TOOLCALL_REJECTED], 1);
  assert_int_equal(s.dispatched, 1);
  fx_done(&f);
  fx_close(&f);
}

static void test_limits_one_allows_one(void **state) {
  (void)state;
  fx_t f;
  fx_open(&f, TOOLCALL_POLICY_REJECT_BATCH);
  set_tool_calls_limit(f.ledger, 1);
  assert_int_equal(run_batch(&f, "ok", 1, NULL), 0);
  assert_null(toolcall_batch_error(f.last));
  assert_int_equal(toolcall_batch_result(f.last, 0)->status, TOOLCALL_OK);
  assert_int_equal(atomic_load(&ran_ok), 1);
  assert_int_equal(tool_calls(f.ledger), 1);
  fx_done(&f);
  fx_close(&f);
}

/* Limit 6: a batch of 5 runs, the next batch of 3 is refused whole. */
static void test_limits_batch_of_three_after_five(void **state) {
  (void)state;
  fx_t f;
  fx_open(&f, TOOLCALL_POLICY_REJECT_BATCH);
  set_tool_calls_limit(f.ledger, 6);
  assert_int_equal(run_batch(&f, "ok", 5, NULL), 0);
  assert_int_equal(run_batch(&f, "ok_loop", 3, NULL), TOOLCALL_ELIMIT);
  assert_string_equal(toolcall_batch_error(f.last),
                      "the next 3 tool call(s) would exceed the tool_calls "
                      "limit of 6 (tool_calls would be 8)");
  for (size_t i = 0; i < 3; i++)
    assert_int_equal(toolcall_batch_result(f.last, i)->status,
                     TOOLCALL_REJECTED);
  assert_int_equal(atomic_load(&ran_ok), 5);
  assert_int_equal(tool_calls(f.ledger), 5);
  fx_done(&f);
  fx_close(&f);
}

/* Failed calls are not counted; their reservation is released. */
static void test_limits_retry_releases(void **state) {
  (void)state;
  fx_t f;
  fx_open(&f, TOOLCALL_POLICY_REJECT_BATCH);
  set_tool_calls_limit(f.ledger, 1);
  assert_int_equal(run_batch(&f, "retry", 1, NULL), 0);
  assert_int_equal(toolcall_batch_result(f.last, 0)->status, TOOLCALL_RETRY);
  assert_int_equal(tool_calls(f.ledger), 0);
  assert_int_equal(run_batch(&f, "ok", 1, NULL), 0);
  assert_int_equal(toolcall_batch_result(f.last, 0)->status, TOOLCALL_OK);
  assert_int_equal(tool_calls(f.ledger), 1);
  assert_int_equal(atomic_load(&ran_retry), 1);
  assert_int_equal(atomic_load(&ran_ok), 1);
  /* and now it is spent */
  assert_int_equal(run_batch(&f, "ok", 1, NULL), TOOLCALL_ELIMIT);
  fx_done(&f);
  fx_close(&f);
}

/* ---- partial policy ---- */

static void test_limits_partial_in_call_order(void **state) {
  (void)state;
  fx_t f;
  fx_open(&f, TOOLCALL_POLICY_PARTIAL);
  set_tool_calls_limit(f.ledger, 6);
  /* a batch larger than the limit: the first 6 run */
  assert_int_equal(run_batch(&f, "ok", 10, NULL), 0);
  for (size_t i = 0; i < 10; i++) {
    const toolcall_result_t *r = toolcall_batch_result(f.last, i);
    assert_int_equal(r->status, i < 6 ? TOOLCALL_OK : TOOLCALL_REJECTED);
    if (i >= 6)
      assert_non_null(strstr(r->message, "tool_calls limit of 6"));
  }
  assert_null(toolcall_batch_error(f.last));
  assert_int_equal(atomic_load(&ran_ok), 6);
  toolcall_snapshot_t s;
  assert_int_equal(toolcall_ledger_snapshot(f.ledger, &s), 0);
  assert_int_equal(s.tool_calls, 6);
  assert_int_equal(s.calls[TOOLCALL_REJECTED], 4);
  /* per batch, the reject policy overrides the manager's */
  toolcall_batch_options_t bo;
  toolcall_batch_options_init(&bo);
  bo.limit_policy = TOOLCALL_POLICY_REJECT_BATCH;
  assert_int_equal(run_batch(&f, "ok", 2, &bo), TOOLCALL_ELIMIT);
  bo.limit_policy = (toolcall_limit_policy_t)42;
  toolcall_call_spec_t c = {"x", "ok", NULL, 0, 0};
  assert_int_equal(
      toolcall_batch_submit(f.m, &c, 1, &bo, on_batch, &f, NULL, NULL),
      UV_EINVAL);
  fx_done(&f);
  fx_close(&f);
}

/* Unknown tools neither need nor take a reservation. */
static void test_limits_unknown_not_reserved(void **state) {
  (void)state;
  fx_t f;
  fx_open(&f, TOOLCALL_POLICY_REJECT_BATCH);
  set_tool_calls_limit(f.ledger, 1);
  toolcall_call_spec_t calls[] = {
      {"a", "nope", NULL, 0, 0}, {"b", "ok", NULL, 0, 0}, {"c", "nope2", NULL, 0, 0}};
  assert_int_equal(
      toolcall_batch_submit(f.m, calls, 3, NULL, on_batch, &f, NULL, NULL), 0);
  uv_run(&f.loop, UV_RUN_DEFAULT);
  assert_int_equal(f.last_status, 0);
  assert_int_equal(toolcall_batch_result(f.last, 0)->status,
                   TOOLCALL_UNKNOWN_TOOL);
  assert_int_equal(toolcall_batch_result(f.last, 1)->status, TOOLCALL_OK);
  fx_done(&f);
  fx_close(&f);
}

/* ---- per-tool uses ---- */

static void test_limits_per_tool(void **state) {
  (void)state;
  fx_t f;
  uint64_t used, reserved;
  fx_open(&f, TOOLCALL_POLICY_PARTIAL);
  assert_int_equal(toolcall_ledger_tool_uses(f.ledger, "ok", &used, &reserved),
                   UV_ENOENT);
  assert_int_equal(toolcall_ledger_set_tool_limit(f.ledger, "ok", 2), 0);
  toolcall_call_spec_t calls[] = {{"a", "ok", NULL, 0, 0},
                                  {"b", "ok_loop", NULL, 0, 0},
                                  {"c", "ok", NULL, 0, 0},
                                  {"d", "ok", NULL, 0, 0}};
  assert_int_equal(
      toolcall_batch_submit(f.m, calls, 4, NULL, on_batch, &f, NULL, NULL), 0);
  uv_run(&f.loop, UV_RUN_DEFAULT);
  assert_int_equal(toolcall_batch_result(f.last, 0)->status, TOOLCALL_OK);
  assert_int_equal(toolcall_batch_result(f.last, 1)->status, TOOLCALL_OK);
  assert_int_equal(toolcall_batch_result(f.last, 2)->status, TOOLCALL_OK);
  const toolcall_result_t *r = toolcall_batch_result(f.last, 3);
  assert_int_equal(r->status, TOOLCALL_REJECTED);
  assert_non_null(strstr(r->message, "'ok' has used all 2"));
  assert_int_equal(toolcall_ledger_tool_uses(f.ledger, "ok", &used, &reserved),
                   0);
  assert_int_equal(used, 2);
  assert_int_equal(reserved, 0);

  /* reject-batch names the tool */
  toolcall_batch_options_t bo;
  toolcall_batch_options_init(&bo);
  bo.limit_policy = TOOLCALL_POLICY_REJECT_BATCH;
  assert_int_equal(toolcall_ledger_set_tool_limit(f.ledger, "ok", 3), 0);
  assert_int_equal(run_batch(&f, "ok", 2, &bo), TOOLCALL_ELIMIT);
  assert_string_equal(toolcall_batch_error(f.last),
                      "the next 2 call(s) of tool 'ok' would exceed its limit "
                      "of 3 uses (uses would be 4)");
  assert_int_equal(run_batch(&f, "ok", 1, &bo), 0);
  assert_int_equal(toolcall_ledger_tool_uses(f.ledger, "ok", &used, &reserved),
                   0);
  assert_int_equal(used, 3);
  /* lift it */
  assert_int_equal(
      toolcall_ledger_set_tool_limit(f.ledger, "ok", TOOLCALL_UNLIMITED), 0);
  assert_int_equal(run_batch(&f, "ok", 5, &bo), 0);
  assert_int_equal(atomic_load(&ran_ok), 9);

  /* bad input */
  assert_int_equal(toolcall_ledger_set_tool_limit(f.ledger, "", 1), UV_EINVAL);
  assert_int_equal(toolcall_ledger_set_tool_limit(f.ledger, NULL, 1), UV_EINVAL);
  assert_int_equal(toolcall_ledger_set_tool_limit(f.ledger, "ok", -2),
                   UV_EINVAL);
  char longname[80];
  memset(longname, 'a', sizeof(longname) - 1);
  longname[sizeof(longname) - 1] = '\0';
  assert_int_equal(toolcall_ledger_set_tool_limit(f.ledger, longname, 1),
                   UV_ENAMETOOLONG);
  for (int i = 0; i < 63; i++) {
    char name[16];
    snprintf(name, sizeof(name), "t%d", i);
    assert_int_equal(toolcall_ledger_set_tool_limit(f.ledger, name, 1), 0);
  }
  assert_int_equal(toolcall_ledger_set_tool_limit(f.ledger, "one_too_many", 1),
                   UV_ENOSPC);
  fx_done(&f);
  fx_close(&f);
}

/* A loop tool whose calls wait here until the test completes them. */
static toolcall_call_t *held[8];
static int nheld;
static void tool_hold(toolcall_call_t *call, void *data) {
  (void)data;
  held[nheld++] = call;
}

/* A limit set while calls of the tool run: they count as uses when they end
 * ok, and the next admission sees them. */
static void test_limits_per_tool_set_while_running(void **state) {
  (void)state;
  fx_t f;
  uint64_t used, reserved;
  fx_open(&f, TOOLCALL_POLICY_REJECT_BATCH);
  toolcall_registry_free(f.reg); /* unused: this test needs "hold" */
  f.reg = NULL;
  assert_int_equal(toolcall_manager_close(f.m, NULL), 0);
  uv_run(&f.loop, UV_RUN_DEFAULT);
  assert_int_equal(toolcall_registry_new(&f.reg), 0);
  add_tool(f.reg, "hold", TOOLCALL_TOOL_LOOP, tool_hold);
  toolcall_manager_options_t o;
  toolcall_manager_options_init(&o);
  o.registry = f.reg;
  o.ledger = f.ledger;
  assert_int_equal(toolcall_manager_new(&f.m, &f.loop, &o), 0);

  nheld = 0;
  toolcall_call_spec_t calls[] = {
      {"a", "hold", NULL, 0, 0}, {"b", "hold", NULL, 0, 0}, {"c", "hold", NULL, 0, 0}};
  assert_int_equal(
      toolcall_batch_submit(f.m, calls, 3, NULL, on_batch, &f, NULL, NULL), 0);
  assert_int_equal(nheld, 3);
  assert_int_equal(toolcall_ledger_set_tool_limit(f.ledger, "hold", 1), 0);
  for (int i = 0; i < 3; i++)
    assert_int_equal(toolcall_call_complete(held[i], TOOLCALL_OK, NULL, 0), 0);
  uv_run(&f.loop, UV_RUN_DEFAULT);
  assert_int_equal(f.batch_runs, 1);
  assert_int_equal(
      toolcall_ledger_tool_uses(f.ledger, "hold", &used, &reserved), 0);
  assert_int_equal(used, 3);
  assert_int_equal(reserved, 0);
  nheld = 0;
  assert_int_equal(run_batch(&f, "hold", 1, NULL), TOOLCALL_ELIMIT);
  assert_int_equal(nheld, 0);
  fx_done(&f);
  fx_close(&f);
}

/* A usage above a lowered limit does not fail a batch with nothing to
 * admit: its unknown-tool calls just end unknown. */
static void test_limits_nothing_wanted(void **state) {
  (void)state;
  fx_t f;
  fx_open(&f, TOOLCALL_POLICY_REJECT_BATCH);
  assert_int_equal(run_batch(&f, "ok", 2, NULL), 0);
  set_tool_calls_limit(f.ledger, 1);
  assert_int_equal(run_batch(&f, "not_a_tool", 1, NULL), 0);
  assert_null(toolcall_batch_error(f.last));
  assert_int_equal(toolcall_batch_result(f.last, 0)->status,
                   TOOLCALL_UNKNOWN_TOOL);
  fx_done(&f);
  fx_close(&f);
}

/* ---- requests and tokens ---- */

static void test_limits_requests(void **state) {
  (void)state;
  toolcall_ledger_t *l;
  toolcall_limits_t lim;
  toolcall_error_t err;
  toolcall_usage_t u = {0};
  toolcall_snapshot_t s;
  assert_int_equal(toolcall_ledger_new(&l), 0);
  toolcall_limits_init(&lim);
  lim.requests = 2;
  lim.input_tokens = 100;
  assert_int_equal(toolcall_ledger_set_limits(l, &lim), 0);

  assert_int_equal(toolcall_ledger_commit_request(l, &u, &err), TOOLCALL_ESTATE);
  assert_int_equal(toolcall_ledger_release_request(l), TOOLCALL_ESTATE);

  assert_int_equal(toolcall_ledger_admit_request(l, NULL), 0);
  assert_int_equal(toolcall_ledger_admit_request(l, NULL), 0);
  /* two in flight: a third would exceed */
  assert_int_equal(toolcall_ledger_admit_request(l, &err), TOOLCALL_ELIMIT);
  assert_int_equal(err.code, TOOLCALL_ELIMIT);
  assert_string_equal(err.message, "the next request would exceed the requests "
                                   "limit of 2 (requests would be 3)");
  assert_int_equal(toolcall_ledger_snapshot(l, &s), 0);
  assert_int_equal(s.reserved_requests, 2);
  assert_int_equal(s.usage.requests, 0);
  /* one fails: released, the slot is free again */
  assert_int_equal(toolcall_ledger_release_request(l), 0);
  u.input_tokens = 60;
  u.output_tokens = 7;
  u.requests = 99; /* ignored: one request */
  assert_int_equal(toolcall_ledger_commit_request(l, &u, &err), 0);
  assert_int_equal(toolcall_ledger_admit_request(l, NULL), 0);
  /* this response pushes input tokens over their limit */
  assert_int_equal(toolcall_ledger_commit_request(l, &u, &err), TOOLCALL_ETOKENS);
  assert_string_equal(err.message,
                      "the input_tokens limit of 100 is exceeded "
                      "(input_tokens=120)");
  assert_int_equal(toolcall_ledger_snapshot(l, &s), 0);
  assert_int_equal(s.usage.requests, 2);
  assert_int_equal(s.usage.input_tokens, 120); /* spent all the same */
  assert_int_equal(s.reserved_requests, 0);
  /* raise the request limit: the token limit still refuses */
  lim.requests = 10;
  assert_int_equal(toolcall_ledger_set_limits(l, &lim), 0);
  assert_int_equal(toolcall_ledger_admit_request(l, &err), TOOLCALL_ETOKENS);
  /* total tokens */
  lim.input_tokens = TOOLCALL_UNLIMITED;
  lim.total_tokens = 130;
  assert_int_equal(toolcall_ledger_set_limits(l, &lim), 0);
  assert_int_equal(toolcall_ledger_admit_request(l, &err), TOOLCALL_ETOKENS);
  assert_non_null(strstr(err.message, "total_tokens limit of 130"));
  lim.total_tokens = 134;
  assert_int_equal(toolcall_ledger_set_limits(l, &lim), 0);
  assert_int_equal(toolcall_ledger_admit_request(l, &err), 0); /* == is ok */
  assert_int_equal(toolcall_ledger_release_request(l), 0);
  toolcall_ledger_free(l);
}

/* ---- bad input ---- */

static void test_limits_bad_input(void **state) {
  (void)state;
  fx_t f;
  toolcall_limits_t lim, got;
  fx_open(&f, TOOLCALL_POLICY_REJECT_BATCH);
  toolcall_limits_init(&lim);
  assert_int_equal(toolcall_ledger_set_limits(NULL, &lim), UV_EINVAL);
  assert_int_equal(toolcall_ledger_set_limits(f.ledger, NULL), UV_EINVAL);
  lim.tool_calls = -5;
  assert_int_equal(toolcall_ledger_set_limits(f.ledger, &lim), UV_EINVAL);
  lim.tool_calls = INT64_MIN;
  assert_int_equal(toolcall_ledger_set_limits(f.ledger, &lim), UV_EINVAL);
  assert_int_equal(toolcall_ledger_get_limits(f.ledger, &got), 0);
  assert_int_equal(got.tool_calls, TOOLCALL_UNLIMITED); /* unchanged */
  /* INT64_MAX is as good as unlimited */
  lim.tool_calls = INT64_MAX;
  assert_int_equal(toolcall_ledger_set_limits(f.ledger, &lim), 0);
  assert_int_equal(run_batch(&f, "ok", 3, NULL), 0);
  /* lowered below what is used: nothing more is admitted */
  set_tool_calls_limit(f.ledger, 1);
  assert_int_equal(run_batch(&f, "ok", 1, NULL), TOOLCALL_ELIMIT);
  assert_non_null(strstr(toolcall_batch_error(f.last), "tool_calls would be 4"));
  assert_int_equal(tool_calls(f.ledger), 3);
  toolcall_manager_options_t o;
  toolcall_manager_options_init(&o);
  o.registry = f.reg;
  o.limit_policy = (toolcall_limit_policy_t)7;
  toolcall_manager_t *m2 = NULL;
  assert_int_equal(toolcall_manager_new(&m2, &f.loop, &o), UV_EINVAL);
  assert_null(m2);
  fx_done(&f);
  /* admission on a closing manager */
  assert_int_equal(toolcall_manager_close(f.m, NULL), 0);
  toolcall_call_spec_t c = {"x", "ok", NULL, 0, 0};
  toolcall_error_t err;
  assert_int_equal(
      toolcall_batch_submit(f.m, &c, 1, NULL, on_batch, &f, NULL, &err),
      TOOLCALL_ECLOSING);
  uv_run(&f.loop, UV_RUN_DEFAULT);
  f.m = NULL;
  fx_close(&f);
}

/* ---- concurrency: 4 loops, one ledger, one limit ---- */

#define CTHREADS 4
#define CBATCHES 40

static void tool_slow(toolcall_call_t *call, void *data) {
  (void)data;
  uint64_t r = uv_hrtime();
  if (r % 4 == 0) {
    struct timespec ts = {0, (long)(r % 200000)};
    nanosleep(&ts, NULL);
  } else {
    sched_yield();
  }
  /* every fifth call fails, so reservations are released too */
  toolcall_call_complete(call, (r % 5 == 0) ? TOOLCALL_TOOL_ERROR : TOOLCALL_OK,
                         NULL, 0);
}

typedef struct {
  toolcall_registry_t *reg;
  toolcall_ledger_t *ledger;
  toolcall_limit_policy_t policy;
  int seed;
  uint64_t dispatched;
  uint64_t ok_seen, rejected_seen;
  int batch_runs, batches, close_runs, loop_rc, rc;
} cctx_t;

static void c_on_batch(toolcall_batch_t *b, int status) {
  cctx_t *c = toolcall_batch_data(b);
  c->batch_runs++;
  (void)status;
  for (size_t i = 0; i < toolcall_batch_size(b); i++) {
    toolcall_status_t st = toolcall_batch_result(b, i)->status;
    c->ok_seen += st == TOOLCALL_OK;
    c->rejected_seen += st == TOOLCALL_REJECTED;
  }
  toolcall_batch_free(b);
}

static void c_on_close(toolcall_manager_t *m) {
  cctx_t *c = toolcall_manager_data(m);
  c->close_runs++;
}

static void c_thread(void *arg) {
  cctx_t *c = arg;
  uv_loop_t loop;
  toolcall_manager_t *m;
  toolcall_manager_options_t o;
  unsigned seed = (unsigned)c->seed;
  uv_loop_init(&loop);
  toolcall_manager_options_init(&o);
  o.registry = c->reg;
  o.ledger = c->ledger;
  o.limit_policy = c->policy;
  o.data = c;
  c->rc = toolcall_manager_new(&m, &loop, &o);
  if (c->rc != 0) {
    c->loop_rc = uv_loop_close(&loop);
    return;
  }
  /* Batches go out while earlier ones still run: submit a few, run the
   * loop once without blocking, repeat. */
  for (int b = 0; b < CBATCHES && c->rc == 0; b++) {
    seed = seed * 1103515245u + 12345u;
    size_t n = 1 + (seed >> 8) % 24;
    toolcall_call_spec_t calls[24];
    memset(calls, 0, sizeof(calls));
    char ids[24][16];
    for (size_t i = 0; i < n; i++) {
      snprintf(ids[i], sizeof(ids[i]), "b%d-%zu", b, i);
      calls[i].id = ids[i];
      calls[i].name = (i % 3 == 2) ? "slow_loop" : "slow";
      calls[i].arguments = NULL;
      calls[i].arguments_len = 0;
    }
    c->rc = toolcall_batch_submit(m, calls, n, NULL, c_on_batch, c, NULL, NULL);
    c->dispatched += n;
    c->batches++;
    uv_run(&loop, UV_RUN_NOWAIT);
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  toolcall_manager_close(m, c_on_close);
  uv_run(&loop, UV_RUN_DEFAULT);
  c->loop_rc = uv_loop_close(&loop);
}

/* A loop tool that finishes on the threadpool would need its own plumbing;
 * completing from the loop thread at once is enough to mix the kinds. */
static void tool_slow_loop(toolcall_call_t *call, void *data) {
  tool_slow(call, data);
}

/* An observer that checks used + reserved <= limit at every snapshot. */
typedef struct {
  toolcall_ledger_t *ledger;
  uint64_t limit;
  atomic_int stop;
  uint64_t snapshots, violations;
} observer_t;

static void observe(void *arg) {
  observer_t *o = arg;
  while (!atomic_load(&o->stop)) {
    toolcall_snapshot_t s;
    toolcall_ledger_snapshot(o->ledger, &s);
    o->snapshots++;
    if (s.tool_calls + s.reserved_tool_calls > o->limit)
      o->violations++;
    sched_yield();
  }
}

/* After the race, top up with single calls that always succeed until the
 * ledger refuses one: a reservation that leaked would stop this short, an
 * overshoot would already show. Returns how many ran. */
static uint64_t top_up(toolcall_registry_t *reg, toolcall_ledger_t *ledger,
                       toolcall_limit_policy_t policy, int64_t limit) {
  fx_t f;
  memset(&f, 0, sizeof(f));
  assert_int_equal(uv_loop_init(&f.loop), 0);
  toolcall_manager_options_t o;
  toolcall_manager_options_init(&o);
  o.registry = reg;
  o.ledger = ledger;
  o.limit_policy = policy;
  assert_int_equal(toolcall_manager_new(&f.m, &f.loop, &o), 0);
  uint64_t ran = 0;
  for (int64_t i = 0; i <= limit; i++) {
    int status = run_batch(&f, "sure", 1, NULL);
    toolcall_status_t st = toolcall_batch_result(f.last, 0)->status;
    if (status != 0 || st != TOOLCALL_OK)
      break;
    ran++;
  }
  fx_done(&f);
  assert_int_equal(toolcall_manager_close(f.m, NULL), 0);
  uv_run(&f.loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&f.loop), 0);
  return ran;
}

static void run_concurrent(toolcall_limit_policy_t policy, int rounds) {
  toolcall_registry_t *reg;
  assert_int_equal(toolcall_registry_new(&reg), 0);
  add_tool(reg, "slow", TOOLCALL_TOOL_WORKER, tool_slow);
  add_tool(reg, "slow_loop", TOOLCALL_TOOL_LOOP, tool_slow_loop);
  add_tool(reg, "sure", TOOLCALL_TOOL_WORKER, tool_ok);
  for (int round = 0; round < rounds; round++) {
    toolcall_ledger_t *ledger;
    assert_int_equal(toolcall_ledger_new(&ledger), 0);
    /* demand is ~4 * 40 * 12.5 = 2000 calls, 80% ok: the limit binds */
    const int64_t limit = 300 + round * 17;
    set_tool_calls_limit(ledger, limit);
    observer_t obs = {ledger, (uint64_t)limit, 0, 0, 0};
    uv_thread_t ot;
    assert_int_equal(uv_thread_create(&ot, observe, &obs), 0);
    cctx_t c[CTHREADS];
    uv_thread_t th[CTHREADS];
    for (int i = 0; i < CTHREADS; i++) {
      memset(&c[i], 0, sizeof(c[i]));
      c[i].reg = reg;
      c[i].ledger = ledger;
      c[i].policy = policy;
      c[i].seed = round * 131 + i * 7 + 1;
      assert_int_equal(uv_thread_create(&th[i], c_thread, &c[i]), 0);
    }
    uint64_t dispatched = 0, ok = 0, rejected = 0;
    for (int i = 0; i < CTHREADS; i++) {
      assert_int_equal(uv_thread_join(&th[i]), 0);
      assert_int_equal(c[i].rc, 0);
      assert_int_equal(c[i].batch_runs, c[i].batches);
      assert_int_equal(c[i].close_runs, 1);
      assert_int_equal(c[i].loop_rc, 0);
      dispatched += c[i].dispatched;
      ok += c[i].ok_seen;
      rejected += c[i].rejected_seen;
    }
    atomic_store(&obs.stop, 1);
    assert_int_equal(uv_thread_join(&ot), 0);

    toolcall_snapshot_t s;
    assert_int_equal(toolcall_ledger_snapshot(ledger, &s), 0);
    uint64_t raced = s.tool_calls;
    uint64_t rejected_before = s.calls[TOOLCALL_REJECTED];
    /* Failed calls released their reservations after the last admission,
     * so the race may end a little under the limit; never over. */
    uint64_t topped = raced <= (uint64_t)limit
                          ? top_up(reg, ledger, policy, limit)
                          : 0;
    assert_int_equal(toolcall_ledger_snapshot(ledger, &s), 0);
    if (raced > (uint64_t)limit || s.tool_calls != (uint64_t)limit ||
        ok != raced || s.tool_calls != raced + topped ||
        s.dispatched != dispatched + topped + 1 || obs.violations != 0)
      fail_msg("round %d policy %d: tool_calls %llu (results say %llu), "
               "raced %llu, limit %lld, dispatched %llu/%llu, %llu of %llu "
               "snapshots over",
               round, (int)policy, (unsigned long long)s.tool_calls,
               (unsigned long long)ok, (unsigned long long)raced,
               (long long)limit,
               (unsigned long long)s.dispatched,
               (unsigned long long)(dispatched + topped + 1),
               (unsigned long long)obs.violations,
               (unsigned long long)obs.snapshots);
    assert_int_equal(rejected_before, rejected);
    assert_int_equal(s.calls[TOOLCALL_REJECTED], rejected + 1);
    assert_true(rejected > 0);
    assert_conserved(ledger);
    toolcall_ledger_free(ledger);
  }
  toolcall_registry_free(reg);
}

static void test_limits_concurrent_reject_batch(void **state) {
  (void)state;
  run_concurrent(TOOLCALL_POLICY_REJECT_BATCH, 20);
}

static void test_limits_concurrent_partial(void **state) {
  (void)state;
  run_concurrent(TOOLCALL_POLICY_PARTIAL, 20);
}

/* Requests raced: admit / commit from many threads against one request
 * limit and one token limit, with tools adding tokens from other threads at
 * the same time. */
typedef struct {
  toolcall_ledger_t *ledger;
  uint64_t admitted, refused_limit, refused_tokens, commits_over, tokens;
} rctx_t;

static void r_thread(void *arg) {
  rctx_t *r = arg;
  for (int i = 0; i < 2000; i++) {
    int rc = toolcall_ledger_admit_request(r->ledger, NULL);
    if (rc == TOOLCALL_ELIMIT) {
      r->refused_limit++;
      continue;
    }
    if (rc == TOOLCALL_ETOKENS) {
      r->refused_tokens++;
      continue;
    }
    r->admitted++;
    if (i % 7 == 0) {
      toolcall_ledger_release_request(r->ledger);
      r->admitted--;
      continue;
    }
    toolcall_usage_t u = {0};
    u.input_tokens = 3;
    u.output_tokens = 1;
    if (toolcall_ledger_commit_request(r->ledger, &u, NULL) == TOOLCALL_ETOKENS)
      r->commits_over++;
    r->tokens += 3;
    /* a "tool" adding sub-agent tokens from this thread */
    toolcall_ledger_add_usage(r->ledger, &u);
    r->tokens += 3;
  }
}

static void test_limits_concurrent_requests(void **state) {
  (void)state;
  for (int round = 0; round < 20; round++) {
    toolcall_ledger_t *l;
    toolcall_limits_t lim;
    assert_int_equal(toolcall_ledger_new(&l), 0);
    toolcall_limits_init(&lim);
    lim.requests = 3000 + round;
    assert_int_equal(toolcall_ledger_set_limits(l, &lim), 0);
    rctx_t r[CTHREADS];
    uv_thread_t th[CTHREADS];
    for (int i = 0; i < CTHREADS; i++) {
      memset(&r[i], 0, sizeof(r[i]));
      r[i].ledger = l;
      assert_int_equal(uv_thread_create(&th[i], r_thread, &r[i]), 0);
    }
    uint64_t admitted = 0, tokens = 0;
    for (int i = 0; i < CTHREADS; i++) {
      assert_int_equal(uv_thread_join(&th[i]), 0);
      admitted += r[i].admitted;
      tokens += r[i].tokens;
    }
    toolcall_snapshot_t s;
    assert_int_equal(toolcall_ledger_snapshot(l, &s), 0);
    /* demand (4 * 2000 less releases) exceeds the limit: it is met exactly */
    if (s.usage.requests != (uint64_t)lim.requests ||
        s.usage.requests != admitted || s.usage.input_tokens != tokens ||
        s.reserved_requests != 0)
      fail_msg("round %d: requests %llu (admitted %llu, limit %lld), input "
               "tokens %llu/%llu, reserved %llu",
               round, (unsigned long long)s.usage.requests,
               (unsigned long long)admitted, (long long)lim.requests,
               (unsigned long long)s.usage.input_tokens,
               (unsigned long long)tokens,
               (unsigned long long)s.reserved_requests);
    toolcall_ledger_free(l);
  }

  /* Token limit: once exceeded, nothing more is admitted, and every
   * admitted request was admitted before the limit was seen exceeded. */
  for (int round = 0; round < 20; round++) {
    toolcall_ledger_t *l;
    toolcall_limits_t lim;
    assert_int_equal(toolcall_ledger_new(&l), 0);
    toolcall_limits_init(&lim);
    lim.input_tokens = 9000;
    assert_int_equal(toolcall_ledger_set_limits(l, &lim), 0);
    rctx_t r[CTHREADS];
    uv_thread_t th[CTHREADS];
    for (int i = 0; i < CTHREADS; i++) {
      memset(&r[i], 0, sizeof(r[i]));
      r[i].ledger = l;
      assert_int_equal(uv_thread_create(&th[i], r_thread, &r[i]), 0);
    }
    uint64_t tokens = 0, admitted = 0, refused = 0;
    for (int i = 0; i < CTHREADS; i++) {
      assert_int_equal(uv_thread_join(&th[i]), 0);
      tokens += r[i].tokens;
      admitted += r[i].admitted;
      refused += r[i].refused_tokens;
    }
    toolcall_snapshot_t s;
    assert_int_equal(toolcall_ledger_snapshot(l, &s), 0);
    assert_int_equal(s.usage.input_tokens, tokens);
    assert_int_equal(s.usage.requests, admitted);
    assert_true(refused > 0);
    /* Each admitted request adds 6 input tokens; admission stops once input
     * passes 9000, so at most one in-flight request per thread lands past
     * it: 9000 + 6 * CTHREADS at most. */
    assert_true(s.usage.input_tokens <= 9000 + 6 * CTHREADS);
    assert_int_equal(toolcall_ledger_admit_request(l, NULL), TOOLCALL_ETOKENS);
    toolcall_ledger_free(l);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_limits_zero_rejects_one),
      cmocka_unit_test(test_limits_one_allows_one),
      cmocka_unit_test(test_limits_batch_of_three_after_five),
      cmocka_unit_test(test_limits_retry_releases),
      cmocka_unit_test(test_limits_partial_in_call_order),
      cmocka_unit_test(test_limits_unknown_not_reserved),
      cmocka_unit_test(test_limits_per_tool),
      cmocka_unit_test(test_limits_per_tool_set_while_running),
      cmocka_unit_test(test_limits_nothing_wanted),
      cmocka_unit_test(test_limits_requests),
      cmocka_unit_test(test_limits_bad_input),
      cmocka_unit_test(test_limits_concurrent_reject_batch),
      cmocka_unit_test(test_limits_concurrent_partial),
      cmocka_unit_test(test_limits_concurrent_requests),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
