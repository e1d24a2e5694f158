/* Stress: interleaved calls on several loops and threads, one shared ledger,
 * exact counts after every iteration.
 *
 * Each iteration runs THREADS threads, each with its own loop and manager,
 * all sharing one registry and one ledger. Each thread submits batches of
 * 10, 100 and 1000 calls at once, mixing worker tools (run on the libuv
 * threadpool) and loop tools (completed from foreign "completer" threads or
 * synchronously on the loop), plus calls to unknown tools. Every tool sleeps
 * or yields for a random sub-millisecond time and adds usage one token at a
 * time from the thread it runs on. After each iteration the ledger must hold
 * exactly what the threads expect, and dispatched must equal the sum over
 * all statuses.
 *
 * Built with -DTOOLCALL_BREAK_LOCK=ON (no ledger mutex) this test must
 * fail: that is how it proves it can see lost updates.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "toolcall.h"

#define THREADS 4
#define COMPLETERS 2
#define MAX_K 24
#define QUEUE_CAP 8192

static const size_t batch_sizes[] = {10, 100, 1000};
#define NBATCHES (sizeof(batch_sizes) / sizeof(batch_sizes[0]))

/* ---- randomness: one xorshift state per thread ---- */

static _Thread_local uint64_t rng_state;

static uint64_t rng_next(void) {
  if (rng_state == 0)
    rng_state = uv_hrtime() ^ (uint64_t)(uintptr_t)&rng_state;
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return rng_state;
}

/* Sleep for a random sub-millisecond time, or just yield. */
static void jitter(void) {
  uint64_t r = rng_next();
  if ((r & 7) == 0) {
    struct timespec ts = {0, (long)((r >> 8) % 300000)};
    nanosleep(&ts, NULL);
  } else if ((r & 1) == 0) {
    sched_yield();
  }
}

/* ---- tools ---- */

typedef enum {
  KIND_WORKER,       /* runs on the threadpool */
  KIND_LOOP_FOREIGN, /* started on the loop, completed by a completer */
  KIND_LOOP_SYNC,    /* completes inside its start function */
  KIND_UNKNOWN       /* not registered */
} kind_t;

typedef struct {
  const char *name;
  kind_t kind;
  toolcall_status_t status; /* what the call ends with */
  int complete;             /* 0: a worker that returns without completing */
} tool_spec_t;

static const tool_spec_t tools[] = {
    {"w_ok", KIND_WORKER, TOOLCALL_OK, 1},
    {"w_err", KIND_WORKER, TOOLCALL_TOOL_ERROR, 1},
    {"w_retry", KIND_WORKER, TOOLCALL_RETRY, 1},
    {"w_silent", KIND_WORKER, TOOLCALL_TOOL_ERROR, 0},
    {"l_ok", KIND_LOOP_FOREIGN, TOOLCALL_OK, 1},
    {"l_err", KIND_LOOP_FOREIGN, TOOLCALL_TOOL_ERROR, 1},
    {"l_sync", KIND_LOOP_SYNC, TOOLCALL_OK, 1},
    {"nope", KIND_UNKNOWN, TOOLCALL_UNKNOWN_TOOL, 0},
};
#define NTOOLS (sizeof(tools) / sizeof(tools[0]))

/* Arguments are {"k":N}: the tool adds usage N times. */
static int args_k(toolcall_call_t *call) {
  int k = 0;
  const char *args = toolcall_call_arguments(call, NULL);
  if (sscanf(args, "{\"k\":%d}", &k) != 1)
    return -1;
  return k;
}

/* The work every tool does, on whatever thread runs it: add usage one token
 * at a time, yielding in between, then end the call. */
static void do_tool(toolcall_call_t *call, const tool_spec_t *spec) {
  toolcall_ledger_t *ledger = toolcall_call_ledger(call);
  int k = args_k(call);
  for (int i = 0; i < k; i++) {
    toolcall_usage_t u = {0};
    u.input_tokens = 1;
    u.output_tokens = 2;
    toolcall_ledger_add_usage(ledger, &u);
    if ((i & 3) == 0)
      jitter();
  }
  toolcall_ledger_add_detail(ledger, "stress_adds", (uint64_t)k);
  if (spec->complete)
    toolcall_call_complete(call, spec->status, toolcall_call_id(call), 0);
}

static void worker_tool(toolcall_call_t *call, void *data) {
  jitter();
  do_tool(call, data);
}

/* ---- completers: foreign threads that end loop-tool calls ---- */

static struct {
  uv_mutex_t mu;
  uv_cond_t cond;
  toolcall_call_t *q[QUEUE_CAP];
  size_t head, tail; /* tail - head = queued */
  int stop;
  uv_thread_t threads[COMPLETERS];
} completers;

static void completer_main(void *arg) {
  (void)arg;
  for (;;) {
    uv_mutex_lock(&completers.mu);
    while (completers.head == completers.tail && !completers.stop)
      uv_cond_wait(&completers.cond, &completers.mu);
    if (completers.head == completers.tail) {
      uv_mutex_unlock(&completers.mu);
      return;
    }
    toolcall_call_t *call = completers.q[completers.head++ % QUEUE_CAP];
    uv_mutex_unlock(&completers.mu);
    const tool_spec_t *spec = NULL;
    for (size_t i = 0; i < NTOOLS; i++)
      if (strcmp(tools[i].name, toolcall_call_tool(call)) == 0)
        spec = &tools[i];
    do_tool(call, spec);
  }
}

static int completers_push(toolcall_call_t *call) {
  uv_mutex_lock(&completers.mu);
  int ok = completers.tail - completers.head < QUEUE_CAP;
  if (ok) {
    completers.q[completers.tail++ % QUEUE_CAP] = call;
    uv_cond_signal(&completers.cond);
  }
  uv_mutex_unlock(&completers.mu);
  return ok;
}

static void loop_tool(toolcall_call_t *call, void *data) {
  const tool_spec_t *spec = data;
  if (spec->kind == KIND_LOOP_SYNC) {
    do_tool(call, spec);
    return;
  }
  if (!completers_push(call)) /* queue full: cannot happen with QUEUE_CAP */
    toolcall_call_complete(call, TOOLCALL_TOOL_ERROR, "queue full", 0);
}

/* ---- per-thread runs ---- */

typedef struct {
  uint64_t dispatched;
  uint64_t calls[TOOLCALL_STATUS_SLOTS_];
  uint64_t requests, input, output, adds;
} expect_t;

typedef struct {
  toolcall_ledger_t *ledger;
  toolcall_registry_t *registry;
  int thread;
  int iteration;
  expect_t expect;
  /* Checked by the main thread: cmocka asserts belong there. */
  int failures;
  char first_failure[256];
  int batch_cb_runs;
  int close_cb_runs;
  int submit_rc;
  int loop_close_rc;
  /* per batch: the tool of each call */
  const tool_spec_t **plan[NBATCHES];
  char (*ids[NBATCHES])[32];
} thread_ctx_t;

static void note_failure(thread_ctx_t *t, const char *fmt, ...) {
  if (t->failures++ == 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->first_failure, sizeof(t->first_failure), fmt, ap);
    va_end(ap);
  }
}

static void on_batch(toolcall_batch_t *batch, int status) {
  thread_ctx_t *t = toolcall_batch_data(batch);
  size_t n = toolcall_batch_size(batch);
  size_t which = NBATCHES;
  for (size_t b = 0; b < NBATCHES; b++)
    if (batch_sizes[b] == n)
      which = b;
  t->batch_cb_runs++;
  if (status != 0 || which == NBATCHES) {
    note_failure(t, "batch status %d size %zu", status, n);
    toolcall_batch_free(batch);
    return;
  }
  for (size_t i = 0; i < n; i++) {
    const toolcall_result_t *r = toolcall_batch_result(batch, i);
    const tool_spec_t *spec = t->plan[which][i];
    if (strcmp(r->id, t->ids[which][i]) != 0 ||
        strcmp(r->tool, spec->name) != 0) {
      note_failure(t, "result %zu out of order: id %s tool %s", i, r->id, r->tool);
      continue;
    }
    if (r->status != spec->status)
      note_failure(t, "call %s (%s): status %s, expected %s", r->id, spec->name,
           toolcall_status_name(r->status), toolcall_status_name(spec->status));
    if (r->status == TOOLCALL_OK && strcmp(r->output, r->id) != 0)
      note_failure(t, "call %s: output '%s'", r->id, r->output);
    if (r->status != TOOLCALL_OK && r->message == NULL)
      note_failure(t, "call %s: no message", r->id);
  }
  toolcall_batch_free(batch);
}

static void on_close(toolcall_manager_t *m) {
  thread_ctx_t *t = toolcall_manager_data(m);
  t->close_cb_runs++;
}

static void thread_main(void *arg) {
  thread_ctx_t *t = arg;
  uv_loop_t loop;
  toolcall_manager_t *m = NULL;
  toolcall_manager_options_t opts;

  rng_state = 0;
  uv_loop_init(&loop);
  toolcall_manager_options_init(&opts);
  opts.registry = t->registry;
  opts.ledger = t->ledger;
  opts.data = t;
  t->submit_rc = toolcall_manager_new(&m, &loop, &opts);
  if (t->submit_rc != 0) {
    uv_loop_close(&loop);
    return;
  }

  /* All three batches go in flight on this manager at once. */
  for (size_t b = 0; b < NBATCHES && t->submit_rc == 0; b++) {
    size_t n = batch_sizes[b];
    toolcall_call_spec_t *specs = calloc(n, sizeof(*specs));
    char(*args)[32] = calloc(n, sizeof(*args));
    t->plan[b] = calloc(n, sizeof(*t->plan[b]));
    t->ids[b] = calloc(n, sizeof(*t->ids[b]));
    for (size_t i = 0; i < n; i++) {
      const tool_spec_t *spec = &tools[rng_next() % NTOOLS];
      int k = 1 + (int)(rng_next() % MAX_K);
      t->plan[b][i] = spec;
      snprintf(t->ids[b][i], sizeof(t->ids[b][i]), "i%d-t%d-b%zu-c%zu",
               t->iteration, t->thread, b, i);
      snprintf(args[i], sizeof(args[i]), "{\"k\":%d}", k);
      specs[i].id = t->ids[b][i];
      specs[i].name = spec->name;
      specs[i].arguments = args[i];
      t->expect.dispatched++;
      t->expect.calls[spec->status]++;
      if (spec->kind != KIND_UNKNOWN) {
        t->expect.input += (uint64_t)k;
        t->expect.output += 2 * (uint64_t)k;
        t->expect.adds += (uint64_t)k;
      }
    }
    /* The host records one model response per batch, from the loop. */
    toolcall_usage_t req = {0};
    req.requests = 1;
    toolcall_ledger_add_usage(t->ledger, &req);
    t->expect.requests++;
    t->submit_rc = toolcall_batch_submit(m, specs, n, NULL, on_batch, t, NULL, NULL);
    free(specs);
    free(args);
  }

  uv_run(&loop, UV_RUN_DEFAULT);
  toolcall_manager_close(m, on_close);
  uv_run(&loop, UV_RUN_DEFAULT);
  t->loop_close_rc = uv_loop_close(&loop);
  for (size_t b = 0; b < NBATCHES; b++) {
    free(t->plan[b]);
    free(t->ids[b]);
  }
}

/* ---- the test ---- */

static void register_tools(toolcall_registry_t *reg) {
  for (size_t i = 0; i < NTOOLS; i++) {
    toolcall_tool_t def;
    if (tools[i].kind == KIND_UNKNOWN)
      continue;
    toolcall_tool_init(&def);
    def.name = tools[i].name;
    def.kind = tools[i].kind == KIND_WORKER ? TOOLCALL_TOOL_WORKER
                                            : TOOLCALL_TOOL_LOOP;
    def.fn = tools[i].kind == KIND_WORKER ? worker_tool : loop_tool;
    def.data = (void *)&tools[i];
    assert_int_equal(toolcall_registry_add(reg, &def, NULL), 0);
  }
}

static int iterations(void) {
  const char *env = getenv("TOOLCALL_STRESS_ITERATIONS");
  int n = env != NULL ? atoi(env) : 0;
  return n > 0 ? n : 20;
}

static void test_stress_shared_ledger(void **state) {
  (void)state;
  toolcall_registry_t *reg = NULL;
  toolcall_ledger_t *ledger = NULL;
  expect_t total;
  memset(&total, 0, sizeof(total));

  assert_int_equal(toolcall_registry_new(&reg), 0);
  register_tools(reg);
  assert_int_equal(toolcall_ledger_new(&ledger), 0);

  memset(&completers, 0, sizeof(completers));
  assert_int_equal(uv_mutex_init(&completers.mu), 0);
  assert_int_equal(uv_cond_init(&completers.cond), 0);
  for (int i = 0; i < COMPLETERS; i++)
    assert_int_equal(
        uv_thread_create(&completers.threads[i], completer_main, NULL), 0);

  int n_iter = iterations();
  for (int it = 0; it < n_iter; it++) {
    thread_ctx_t ctx[THREADS];
    uv_thread_t th[THREADS];
    memset(ctx, 0, sizeof(ctx));
    for (int i = 0; i < THREADS; i++) {
      ctx[i].ledger = ledger;
      ctx[i].registry = reg;
      ctx[i].thread = i;
      ctx[i].iteration = it;
      assert_int_equal(uv_thread_create(&th[i], thread_main, &ctx[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
      assert_int_equal(uv_thread_join(&th[i]), 0);

    for (int i = 0; i < THREADS; i++) {
      if (ctx[i].failures != 0)
        fail_msg("iteration %d thread %d: %d failures, first: %s", it, i,
                 ctx[i].failures, ctx[i].first_failure);
      assert_int_equal(ctx[i].submit_rc, 0);
      assert_int_equal(ctx[i].batch_cb_runs, (int)NBATCHES);
      assert_int_equal(ctx[i].close_cb_runs, 1);
      assert_int_equal(ctx[i].loop_close_rc, 0);
      total.dispatched += ctx[i].expect.dispatched;
      total.requests += ctx[i].expect.requests;
      total.input += ctx[i].expect.input;
      total.output += ctx[i].expect.output;
      total.adds += ctx[i].expect.adds;
      for (int s = 0; s < TOOLCALL_STATUS_SLOTS_; s++)
        total.calls[s] += ctx[i].expect.calls[s];
    }

    /* Quiescent: every count must be exact. */
    toolcall_snapshot_t snap;
    uint64_t adds = 0, sum = 0;
    assert_int_equal(toolcall_ledger_snapshot(ledger, &snap), 0);
    assert_int_equal(toolcall_ledger_detail(ledger, "stress_adds", &adds), 0);
    if (snap.dispatched != total.dispatched ||
        snap.usage.requests != total.requests ||
        snap.usage.input_tokens != total.input ||
        snap.usage.output_tokens != total.output || adds != total.adds)
      fail_msg("iteration %d: counts drifted: dispatched %llu/%llu requests "
               "%llu/%llu input %llu/%llu output %llu/%llu adds %llu/%llu",
               it, (unsigned long long)snap.dispatched,
               (unsigned long long)total.dispatched,
               (unsigned long long)snap.usage.requests,
               (unsigned long long)total.requests,
               (unsigned long long)snap.usage.input_tokens,
               (unsigned long long)total.input,
               (unsigned long long)snap.usage.output_tokens,
               (unsigned long long)total.output, (unsigned long long)adds,
               (unsigned long long)total.adds);
    for (int s = 0; s < TOOLCALL_STATUS_SLOTS_; s++) {
      if (snap.calls[s] != total.calls[s])
        fail_msg("iteration %d: status %s counted %llu, expected %llu", it,
                 toolcall_status_name((toolcall_status_t)s),
                 (unsigned long long)snap.calls[s],
                 (unsigned long long)total.calls[s]);
      sum += snap.calls[s];
    }
    assert_int_equal(snap.tool_calls, total.calls[TOOLCALL_OK]);
    /* Conservation. */
    assert_int_equal(snap.dispatched, sum);
  }
  printf("[stress] %d iterations, %llu calls, %llu tokens added one by one\n",
         n_iter, (unsigned long long)total.dispatched,
         (unsigned long long)(total.input + total.output));

  uv_mutex_lock(&completers.mu);
  completers.stop = 1;
  uv_cond_broadcast(&completers.cond);
  uv_mutex_unlock(&completers.mu);
  for (int i = 0; i < COMPLETERS; i++)
    assert_int_equal(uv_thread_join(&completers.threads[i]), 0);
  uv_cond_destroy(&completers.cond);
  uv_mutex_destroy(&completers.mu);
  toolcall_ledger_free(ledger);
  toolcall_registry_free(reg);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_stress_shared_ledger),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
