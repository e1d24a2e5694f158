/* Allocation failures: a counting allocator fails exactly the k-th
 * allocation the library makes; for k = 1, 2, 3, ... a full scenario runs
 * (register tools, a ledger with limits, a run, a manager with a
 * concurrency cap, a timeout and a tool with a cap of its own; a batch with
 * a limit under the partial policy, an unknown tool and a deferred call; the
 * resume of the deferred call; a batch of ten calls (ids checked by hash)
 * that is cancelled while some run and others wait for a slot; close;
 * free).
 * Every step either returns UV_ENOMEM, changing and counting nothing (the
 * test then repeats the step, which must now succeed: recovery), or
 * succeeds. After each scenario conservation holds, nothing is reserved,
 * the loop closes with 0 and no library allocation is outstanding (and
 * LeakSanitizer checks the rest in the ASan build). The loop over k stops
 * at the first scenario that never reached its k-th allocation, which must
 * be past every allocation the scenario makes when nothing fails. */
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

/* ---- the counting allocator (any thread) ---- */

static atomic_long n_allocs;  /* allocations attempted in this scenario */
static atomic_long fail_at;   /* fail this one; 0: none */
static atomic_int reached;    /* the k-th was attempted (and failed) */
static atomic_long live;      /* library allocations not yet freed */

static int should_fail(void) {
  long i = atomic_fetch_add(&n_allocs, 1) + 1;
  if (i == atomic_load(&fail_at)) {
    atomic_store(&reached, 1);
    return 1;
  }
  return 0;
}

static void *a_malloc(size_t size) {
  if (should_fail())
    return NULL;
  void *p = malloc(size);
  if (p != NULL)
    atomic_fetch_add(&live, 1);
  return p;
}

static void *a_calloc(size_t count, size_t size) {
  if (should_fail())
    return NULL;
  void *p = calloc(count, size);
  if (p != NULL)
    atomic_fetch_add(&live, 1);
  return p;
}

static void *a_realloc(void *ptr, size_t size) {
  if (should_fail())
    return NULL;
  void *p = realloc(ptr, size);
  if (p != NULL && ptr == NULL)
    atomic_fetch_add(&live, 1);
  return p;
}

static void a_free(void *ptr) {
  if (ptr != NULL)
    atomic_fetch_sub(&live, 1);
  free(ptr);
}

/* ---- the scenario's tools ---- */

static atomic_int tool_rc_bad; /* completions that returned neither 0,
                                  UV_ENOMEM nor (after cancel) UV_ECANCELED */
static toolcall_call_t *held[2];
static int nheld;
static int cancel_runs;

static void check_rc(int rc) {
  if (rc != 0 && rc != UV_ENOMEM && rc != UV_ECANCELED)
    atomic_fetch_add(&tool_rc_bad, 1);
}

/* Worker: ok with "w:<id>"; {"quiet":1}: ok with no output, which
 * allocates nothing (the workers of the cancelled batch may or may not run
 * before the cancel: their allocations would make the count vary). */
static void tool_w(toolcall_call_t *call, void *data) {
  (void)data;
  char out[64];
  snprintf(out, sizeof(out), "w:%s", toolcall_call_id(call));
  const char *args = toolcall_call_arguments(call, NULL);
  int quiet = strstr(args, "\"quiet\":1") != NULL;
  check_rc(toolcall_call_complete(call, TOOLCALL_OK, quiet ? NULL : out, 0));
}

/* Loop tool: {"hold":1} waits for its cancel fn; else completes at once. */
static void tool_l(toolcall_call_t *call, void *data) {
  (void)data;
  const char *args = toolcall_call_arguments(call, NULL);
  if (strstr(args, "\"hold\":1") != NULL && nheld < 2) {
    held[nheld++] = call;
    return;
  }
  check_rc(toolcall_call_complete(call, TOOLCALL_OK, "loop output", 0));
}

static void cancel_l(toolcall_call_t *call, void *data) {
  (void)data;
  cancel_runs++;
  for (int i = 0; i < nheld; i++)
    if (held[i] == call) {
      held[i] = NULL;
      int rc = toolcall_call_complete(call, TOOLCALL_OK, "late", 0);
      if (rc != UV_ECANCELED)
        atomic_fetch_add(&tool_rc_bad, 1);
    }
}

/* ---- helpers ---- */

typedef struct {
  uv_loop_t loop;
  uv_timer_t tick;
  int closed;
} lp_t;

static void tick_cb(uv_timer_t *t) { (void)t; }

#define RUN_UNTIL(lp, cond)                                                    \
  do {                                                                         \
    uint64_t dl_ = uv_hrtime() + 5000000000ull;                                \
    while (!(cond) && uv_hrtime() < dl_) {                                     \
      uv_timer_start(&(lp)->tick, tick_cb, 2, 2);                              \
      uv_run(&(lp)->loop, UV_RUN_ONCE);                                        \
      uv_timer_stop(&(lp)->tick);                                              \
    }                                                                          \
    assert_true(cond);                                                         \
  } while (0)

typedef struct {
  int runs;
  int status;
  toolcall_batch_t *batch;
} rec_t;

static void on_batch(toolcall_batch_t *b, int status) {
  rec_t *r = toolcall_batch_data(b);
  r->runs++;
  r->status = status;
  r->batch = b;
}

static void on_close(toolcall_manager_t *m) {
  lp_t *lp = toolcall_manager_data(m);
  lp->closed++;
}

static uint64_t dispatched(toolcall_ledger_t *l) {
  toolcall_snapshot_t s;
  assert_int_equal(toolcall_ledger_snapshot(l, &s), 0);
  return s.dispatched;
}

static int enomem_steps; /* over all k */

/* Do `call` (an expression giving an int rc); on UV_ENOMEM run `unchanged`
 * (assertions that nothing changed) and do it once more. It must then
 * succeed. */
#define STEP(call, unchanged)                                                  \
  do {                                                                         \
    int rc_ = (call);                                                          \
    if (rc_ == UV_ENOMEM) {                                                    \
      enomem_steps++;                                                          \
      unchanged;                                                               \
      rc_ = (call);                                                            \
    }                                                                          \
    if (rc_ != 0)                                                              \
      fail_msg("%s: %s (k=%ld)", #call, toolcall_err_name(rc_),               \
               atomic_load(&fail_at));                                         \
  } while (0)

/* A call whose tool completed: ok with exactly the tool's output, or (the
 * copy of the output failed) a tool error with a message and no output. */
static void assert_completed(long k, const toolcall_result_t *r,
                             const char *want) {
  if (r->status == TOOLCALL_OK) {
    assert_non_null(r->output);
    if (strcmp(r->output, want) != 0 || r->output_len != strlen(want))
      fail_msg("k=%ld call %s: ok with output '%s' (%zu bytes), want '%s'", k,
               r->id, r->output, r->output_len, want);
    assert_null(r->message);
  } else if (r->status == TOOLCALL_TOOL_ERROR) {
    assert_non_null(r->message);
    assert_string_equal(r->output, "");
  } else {
    fail_msg("k=%ld call %s: %s (%s)", k, r->id,
             toolcall_status_name(r->status), r->message ? r->message : "");
  }
}

static void assert_conserved(toolcall_ledger_t *l) {
  toolcall_snapshot_t s;
  uint64_t sum = 0;
  assert_int_equal(toolcall_ledger_snapshot(l, &s), 0);
  for (int i = 0; i < TOOLCALL_STATUS_SLOTS_; i++)
    sum += s.calls[i];
  assert_int_equal(s.dispatched, sum);
  assert_int_equal(s.tool_calls, s.calls[TOOLCALL_OK]);
  assert_int_equal(s.reserved_tool_calls, 0);
}

static void add_tool(toolcall_registry_t *reg, const toolcall_tool_t *def) {
  size_t before = toolcall_registry_count(reg);
  STEP(toolcall_registry_add(reg, def, NULL),
       assert_int_equal(toolcall_registry_count(reg), before));
  assert_int_equal(toolcall_registry_count(reg), before + 1);
}

/* One scenario with the k-th allocation failing; returns 1 if it was
 * reached. */
static int scenario(long k) {
  lp_t lp;
  memset(&lp, 0, sizeof(lp));
  atomic_store(&n_allocs, 0);
  atomic_store(&reached, 0);
  atomic_store(&fail_at, k);
  nheld = 0;
  cancel_runs = 0;
  held[0] = held[1] = NULL;
  assert_int_equal(uv_loop_init(&lp.loop), 0);
  assert_int_equal(uv_timer_init(&lp.loop, &lp.tick), 0);

  toolcall_registry_t *reg = NULL;
  STEP(toolcall_registry_new(&reg), assert_null(reg));
  toolcall_tool_t def;
  toolcall_tool_init(&def);
  def.name = "w";
  def.description = "a worker tool";
  def.fn = tool_w;
  add_tool(reg, &def);
  toolcall_tool_init(&def);
  def.name = "l";
  def.kind = TOOLCALL_TOOL_LOOP;
  def.fn = tool_l;
  def.cancel = cancel_l;
  add_tool(reg, &def);
  toolcall_tool_init(&def);
  def.name = "s";
  def.fn = tool_w;
  def.schema = "{\"type\":\"object\",\"properties\":{\"n\":{\"type\":"
               "\"integer\"}},\"required\":[\"n\"]}";
  def.max_concurrency = 1; /* a cap of its own: per-tool wait lists */
  add_tool(reg, &def);
  toolcall_tool_init(&def);
  def.name = "g";
  def.fn = tool_w;
  def.flags = TOOLCALL_TOOL_REQUIRES_APPROVAL;
  add_tool(reg, &def);

  toolcall_ledger_t *ledger = NULL;
  STEP(toolcall_ledger_new(&ledger), assert_null(ledger));
  toolcall_limits_t lim;
  toolcall_limits_init(&lim);
  lim.tool_calls = 3;
  STEP(toolcall_ledger_set_limits(ledger, &lim), (void)0);
  uint64_t used = 0, resv = 0;
  STEP(toolcall_ledger_set_tool_limit(ledger, "w", 100),
       assert_int_equal(toolcall_ledger_tool_uses(ledger, "w", &used, &resv),
                        UV_ENOENT));
  toolcall_run_t *run = NULL;
  STEP(toolcall_run_new(reg, &run), assert_null(run));

  toolcall_manager_options_t o;
  toolcall_manager_options_init(&o);
  o.registry = reg;
  o.ledger = ledger;
  o.data = &lp;
  o.limit_policy = TOOLCALL_POLICY_PARTIAL;
  o.timeout_ms = 5000;
  o.max_concurrency = 5;
  toolcall_manager_t *m = NULL;
  STEP(toolcall_manager_new(&m, &lp.loop, &o), {
    assert_null(m);
    uv_run(&lp.loop, UV_RUN_NOWAIT);
    assert_false(uv_loop_alive(&lp.loop));
  });

  /* Batch 1: three calls fit the limit, the fourth known call is refused
   * (partial), one is deferred, one names no tool. */
  toolcall_call_spec_t b1[] = {{"w1", "w", NULL, 0, 0},
                               {"l1", "l", "{}", 0, 0},
                               {"s1", "s", "{\"n\":1}", 0, 0},
                               {"g1", "g", "{\"x\":1}", 0, 0},
                               {"w2", "w", NULL, 0, 0},
                               {"u1", "nope", NULL, 0, 0}};
  toolcall_batch_options_t bo;
  toolcall_batch_options_init(&bo);
  bo.run = run;
  rec_t r1 = {0};
  uint64_t d0 = dispatched(ledger);
  STEP(toolcall_batch_submit(m, b1, 6, &bo, on_batch, &r1, NULL, NULL), {
    assert_int_equal(dispatched(ledger), d0);
    uv_run(&lp.loop, UV_RUN_NOWAIT);
    assert_int_equal(r1.runs, 0);
  });
  RUN_UNTIL(&lp, r1.runs == 1);
  assert_int_equal(r1.status, 0);
  /* ok, or a tool error when the copy of the output failed */
  assert_completed(k, toolcall_batch_result(r1.batch, 0), "w:w1");
  assert_completed(k, toolcall_batch_result(r1.batch, 1), "loop output");
  assert_completed(k, toolcall_batch_result(r1.batch, 2), "w:s1");
  assert_int_equal(toolcall_batch_result(r1.batch, 3)->status,
                   TOOLCALL_DEFERRED);
  assert_int_equal(toolcall_batch_result(r1.batch, 4)->status,
                   TOOLCALL_REJECTED);
  assert_int_equal(toolcall_batch_result(r1.batch, 5)->status,
                   TOOLCALL_UNKNOWN_TOOL);
  for (int i = 3; i < 6; i++)
    assert_non_null(toolcall_batch_result(r1.batch, (size_t)i)->message);
  assert_int_equal(dispatched(ledger), d0 + 6);
  assert_conserved(ledger);

  /* Resume the deferred call (approved) and deny another. */
  lim.tool_calls = TOOLCALL_UNLIMITED;
  STEP(toolcall_ledger_set_limits(ledger, &lim), (void)0);
  toolcall_decision_t dec[2];
  memset(dec, 0, sizeof(dec));
  dec[0].call.id = "g1";
  dec[0].call.name = "g";
  dec[0].call.arguments = "{\"x\":2}";
  dec[0].approved = 1;
  dec[1].call.id = "g2";
  dec[1].call.name = "g";
  dec[1].message = "no";
  rec_t r2 = {0};
  d0 = dispatched(ledger);
  STEP(toolcall_batch_resume(m, dec, 2, &bo, on_batch, &r2, NULL, NULL), {
    assert_int_equal(dispatched(ledger), d0);
    uv_run(&lp.loop, UV_RUN_NOWAIT);
    assert_int_equal(r2.runs, 0);
  });
  RUN_UNTIL(&lp, r2.runs == 1);
  assert_completed(k, toolcall_batch_result(r2.batch, 0), "w:g1");
  assert_int_equal(toolcall_batch_result(r2.batch, 1)->status, TOOLCALL_DENIED);
  assert_non_null(toolcall_batch_result(r2.batch, 1)->message);
  assert_int_equal(dispatched(ledger), d0 + 2);
  assert_conserved(ledger);

  /* Batch 3, ten calls (more than eight: duplicate ids are looked for in
   * a hash table): two loop calls that wait for their cancel fn, workers,
   * and two calls of the tool capped at 1. Under the manager's cap of 5,
   * h1, w3, h2, s3 and w4 start, s4 waits for its tool's slot, w5..w8 for
   * the manager's; then the batch is cancelled. */
  static const char q[] = "{\"quiet\":1}";
  toolcall_call_spec_t b3[] = {
      {"h1", "l", "{\"hold\":1}", 0, 0},
      {"w3", "w", q, 0, 0},
      {"h2", "l", "{\"hold\":1}", 0, 0},
      {"s3", "s", "{\"n\":3,\"quiet\":1}", 0, 0},
      {"s4", "s", "{\"n\":4,\"quiet\":1}", 0, 0},
      {"w4", "w", q, 0, 0},
      {"w5", "w", q, 0, 0},
      {"w6", "w", q, 0, 0},
      {"w7", "w", q, 0, 0},
      {"w8", "w", q, 0, 0}};
  enum { N3 = sizeof(b3) / sizeof(b3[0]) };
  rec_t r3 = {0};
  toolcall_batch_t *out3 = NULL;
  d0 = dispatched(ledger);
  STEP(toolcall_batch_submit(m, b3, N3, NULL, on_batch, &r3, &out3, NULL), {
    assert_int_equal(dispatched(ledger), d0);
    assert_null(out3);
  });
  assert_non_null(out3);
  assert_int_equal(nheld, 2);
  assert_int_equal(toolcall_batch_cancel(out3), 0);
  assert_int_equal(r3.runs, 0);
  RUN_UNTIL(&lp, r3.runs == 1);
  assert_int_equal(r3.status, UV_ECANCELED);
  assert_int_equal(cancel_runs, 2);
  assert_int_equal(toolcall_batch_result(r3.batch, 0)->status,
                   TOOLCALL_CANCELLED);
  assert_int_equal(toolcall_batch_result(r3.batch, 2)->status,
                   TOOLCALL_CANCELLED);
  /* The calls that waited for a slot never ran. */
  for (size_t i = 4; i < N3; i++) {
    const toolcall_result_t *r = toolcall_batch_result(r3.batch, i);
    if (i == 5) /* w4 started: cancelled, or done before the cancel */
      continue;
    assert_int_equal(r->status, TOOLCALL_CANCELLED);
    assert_int_equal(r->duration_ns, 0);
  }
  assert_int_equal(dispatched(ledger), d0 + N3);

  /* Close, and free everything. */
  assert_int_equal(toolcall_manager_close(m, on_close), 0);
  assert_int_equal(lp.closed, 0);
  RUN_UNTIL(&lp, lp.closed == 1);
  assert_conserved(ledger);
  toolcall_batch_free(r1.batch);
  toolcall_batch_free(r2.batch);
  toolcall_batch_free(r3.batch);
  toolcall_run_free(run);
  toolcall_ledger_free(ledger);
  toolcall_registry_free(reg);
  uv_close((uv_handle_t *)&lp.tick, NULL);
  uv_run(&lp.loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&lp.loop), 0);
  assert_int_equal(atomic_load(&tool_rc_bad), 0);
  if (atomic_load(&live) != 0)
    fail_msg("k=%ld: %ld library allocation(s) outstanding", k,
             atomic_load(&live));
  return atomic_load(&reached);
}

static void test_alloc_every_k(void **state) {
  (void)state;
  /* The allocations the scenario makes when none fails: every one of them
   * must be failed in turn. */
  assert_false(scenario(0));
  long baseline = atomic_load(&n_allocs);
  long k;
  int last = 1;
  for (k = 1; k < 10000; k++) {
    last = scenario(k);
    if (!last)
      break;
  }
  assert_false(last); /* ended: the k-th allocation was never reached */
  assert_true(k < 10000);
  /* Every allocation of the failure-free scenario was failed once (a
   * failure adds the allocations of the repeated step, so k can go past). */
  if (k - 1 < baseline)
    fail_msg("only %ld of the scenario's %ld allocations were failed", k - 1,
             baseline);
  assert_true(baseline > 40);
  assert_true(enomem_steps > 0);
  print_message("alloc: the scenario makes %ld allocations; %ld allocation "
                "points failed in turn, %d steps returned UV_ENOMEM\n",
                baseline, k - 1, enomem_steps);
}

/* The same scenario without failures, twice: it needs the same allocations
 * each time (nothing global accumulates), and the allocator is really used. */
static void test_alloc_no_failure(void **state) {
  (void)state;
  assert_false(scenario(0));
  long first = atomic_load(&n_allocs);
  assert_true(first > 20);
  assert_false(scenario(0));
  assert_true(atomic_load(&n_allocs) > 20);
}

static void test_alloc_replace_errors(void **state) {
  (void)state;
  atomic_store(&fail_at, 0);
  assert_int_equal(toolcall_replace_allocator(NULL, a_realloc, a_calloc, a_free),
                   UV_EINVAL);
  assert_int_equal(toolcall_replace_allocator(a_malloc, NULL, a_calloc, a_free),
                   UV_EINVAL);
  assert_int_equal(toolcall_replace_allocator(a_malloc, a_realloc, NULL, a_free),
                   UV_EINVAL);
  assert_int_equal(toolcall_replace_allocator(a_malloc, a_realloc, a_calloc, NULL),
                   UV_EINVAL);
  /* Still ours: a registry counts as a live allocation. */
  toolcall_registry_t *reg;
  long before = atomic_load(&live);
  assert_int_equal(toolcall_registry_new(&reg), 0);
  assert_true(atomic_load(&live) > before);
  toolcall_registry_free(reg);
  assert_int_equal(atomic_load(&live), before);
}

int main(void) {
  /* Before anything else: every library allocation goes through it. */
  if (toolcall_replace_allocator(a_malloc, a_realloc, a_calloc, a_free) != 0)
    return 1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_alloc_no_failure),
      cmocka_unit_test(test_alloc_every_k),
      cmocka_unit_test(test_alloc_replace_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
