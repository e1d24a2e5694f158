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
 *
 * test_stress_faults (below) races timeouts, cancels, caps, barriers,
 * limits and close the same way.
 */
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
  void (*handle)(toolcall_call_t *call); /* what a completer does */
} completers;

/* Take queued calls and hand each to completers.handle, until stopped. */
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
    completers.handle(call);
  }
}

static void completers_start(void (*handle)(toolcall_call_t *)) {
  memset(&completers, 0, sizeof(completers));
  completers.handle = handle;
  assert_int_equal(uv_mutex_init(&completers.mu), 0);
  assert_int_equal(uv_cond_init(&completers.cond), 0);
  for (int i = 0; i < COMPLETERS; i++)
    assert_int_equal(
        uv_thread_create(&completers.threads[i], completer_main, NULL), 0);
}

static void completers_stop(void) {
  uv_mutex_lock(&completers.mu);
  completers.stop = 1;
  uv_cond_broadcast(&completers.cond);
  uv_mutex_unlock(&completers.mu);
  for (int i = 0; i < COMPLETERS; i++)
    assert_int_equal(uv_thread_join(&completers.threads[i]), 0);
  uv_cond_destroy(&completers.cond);
  uv_mutex_destroy(&completers.mu);
}

/* The stress tools' completer: find the call's tool and do its work. */
static void stress_complete(toolcall_call_t *call) {
  const tool_spec_t *spec = NULL;
  for (size_t i = 0; i < NTOOLS; i++)
    if (strcmp(tools[i].name, toolcall_call_tool(call)) == 0)
      spec = &tools[i];
  do_tool(call, spec);
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

  toolcall_ledger_free(ledger);
  toolcall_registry_free(reg);
}


/* ---- faults: timeouts, cancels, caps, barriers and limits, raced ---- */

/* Each iteration: FT_THREADS threads, each with its own loop and manager
 * (max_concurrency FT_CAP, a 2 ms default timeout), share one registry and
 * one ledger with a tool_calls limit. Each thread puts FT_BATCHES batches
 * of random calls in flight at once, under a random policy: workers that
 * sleep past their timeout or return early when cancelled, loop tools
 * completed late by foreign threads (their own cap FT_LOOP_CAP), a
 * sequential worker without a timeout, unknown names. Timers cancel some
 * batches at random moments, and in some iterations close the manager
 * while batches are in flight. An observer thread checks tool_calls +
 * reserved <= limit in every snapshot it takes. The tools check the caps
 * and the barrier as they run. After the iteration: every callback ran
 * once, every status is one its call could have, the ledger's per-status
 * counts equal the sum of the results, nothing is left reserved, and
 * conservation holds. */

#define FT_THREADS 4
#define FT_BATCHES 12
#define FT_MAX_CALLS 24
#define FT_CAP 4 /* below what 4 threadpool threads + 3 loop calls reach */
#define FT_LOOP_CAP 3
#define FT_LIMIT 300 /* per iteration: well below what the calls want */

typedef struct ft_thread_s ft_thread_t;

typedef struct {
  ft_thread_t *t;
  int index;
  toolcall_batch_t *batch;
  int cb_runs;
  int status;
  uv_timer_t cancel_timer;
  size_t n;
  const char *names[FT_MAX_CALLS];
  char ids[FT_MAX_CALLS][32];
  atomic_int running; /* its calls whose tools hold them now */
  atomic_int seq_in;  /* a sequential call of it is running */
} ft_batch_t;

struct ft_thread_s {
  toolcall_registry_t *registry;
  toolcall_ledger_t *ledger;
  int thread, iteration, close_early;
  uv_loop_t loop;
  uv_timer_t close_timer;
  toolcall_manager_t *m;
  ft_batch_t batches[FT_BATCHES];
  atomic_int in_flight;     /* tools holding a call of this manager */
  atomic_int peak;          /* the most in_flight ever was */
  atomic_int loop_in_flight;
  atomic_int violations;
  char first_violation[160];
  uint64_t calls[TOOLCALL_STATUS_SLOTS_]; /* the results the callbacks saw */
  uint64_t submitted;
  int failures;
  char first_failure[256];
  int close_cb_runs, loop_close_rc, setup_rc;
};

static ft_thread_t ft_threads[FT_THREADS];

static void ft_violation(ft_thread_t *t, const char *what) {
  if (atomic_fetch_add(&t->violations, 1) == 0)
    snprintf(t->first_violation, sizeof(t->first_violation), "%s", what);
}

static void ft_fail(ft_thread_t *t, const char *fmt, ...) {
  if (t->failures++ == 0) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(t->first_failure, sizeof(t->first_failure), fmt, ap);
    va_end(ap);
  }
}

/* {"t":T,"b":B,"ms":M,"e":E}: thread, batch, how long to work, and
 * whether to end with a tool error. */
typedef struct {
  ft_thread_t *t;
  ft_batch_t *b;
  int ms, err;
} ft_args_t;

static int ft_parse(toolcall_call_t *call, ft_args_t *a) {
  int t = -1, b = -1;
  if (sscanf(toolcall_call_arguments(call, NULL),
             "{\"t\":%d,\"b\":%d,\"ms\":%d,\"e\":%d}", &t, &b, &a->ms,
             &a->err) != 4 ||
      t < 0 || t >= FT_THREADS || b < 0 || b >= FT_BATCHES)
    return -1;
  a->t = &ft_threads[t];
  a->b = &a->t->batches[b];
  return 0;
}

/* A tool takes the call: check the caps and the barrier. */
static void ft_enter(const ft_args_t *a, int loop, int seq) {
  int now = atomic_fetch_add(&a->t->in_flight, 1) + 1;
  if (now > FT_CAP)
    ft_violation(a->t, "more calls running than max_concurrency");
  for (int p = atomic_load(&a->t->peak);
       now > p && !atomic_compare_exchange_weak(&a->t->peak, &p, now);) {
  }
  if (loop && atomic_fetch_add(&a->t->loop_in_flight, 1) + 1 > FT_LOOP_CAP)
    ft_violation(a->t, "more loop calls running than their tool's cap");
  if (atomic_load(&a->b->seq_in) != 0)
    ft_violation(a->t, "a call started while a sequential call ran");
  int before = atomic_fetch_add(&a->b->running, 1);
  if (seq) {
    if (before != 0)
      ft_violation(a->t, "a sequential call started beside others");
    atomic_store(&a->b->seq_in, 1);
  }
}

static void ft_leave(const ft_args_t *a, int loop, int seq) {
  if (seq)
    atomic_store(&a->b->seq_in, 0);
  atomic_fetch_sub(&a->b->running, 1);
  if (loop)
    atomic_fetch_sub(&a->t->loop_in_flight, 1);
  atomic_fetch_sub(&a->t->in_flight, 1);
}

/* Sleep ms milliseconds in slices, returning early once cancelled. */
static void ft_work(toolcall_call_t *call, int ms) {
  for (int i = 0; i < ms * 4 && !toolcall_call_cancelled(call); i++) {
    struct timespec ts = {0, 250000};
    nanosleep(&ts, NULL);
  }
}

static void ft_end(toolcall_call_t *call, const ft_args_t *a) {
  int rc = toolcall_call_complete(call, a->err ? TOOLCALL_TOOL_ERROR
                                               : TOOLCALL_OK,
                                  toolcall_call_id(call), 0);
  if (rc != 0 && rc != UV_ECANCELED)
    ft_violation(a->t, "toolcall_call_complete failed");
}

static void ft_worker(toolcall_call_t *call, void *data) {
  int seq = data != NULL;
  ft_args_t a;
  if (ft_parse(call, &a) != 0) {
    toolcall_call_complete(call, TOOLCALL_TOOL_ERROR, "bad args", 0);
    return;
  }
  ft_enter(&a, 0, seq);
  ft_work(call, a.ms);
  ft_leave(&a, 0, seq);
  ft_end(call, &a);
}

/* Loop tool: a completer thread works and completes it. */
static void ft_loop_tool(toolcall_call_t *call, void *data) {
  (void)data;
  ft_args_t a;
  if (ft_parse(call, &a) != 0) {
    toolcall_call_complete(call, TOOLCALL_TOOL_ERROR, "bad args", 0);
    return;
  }
  ft_enter(&a, 1, 0);
  if (!completers_push(call)) {
    ft_leave(&a, 1, 0);
    toolcall_call_complete(call, TOOLCALL_TOOL_ERROR, "queue full", 0);
  }
}

static void ft_loop_cancel(toolcall_call_t *call, void *data) {
  (void)call;
  (void)data; /* the completer sees toolcall_call_cancelled() and hurries */
}

/* The faults' completer: work, then complete (late, often cancelled). */
static void ft_complete(toolcall_call_t *call) {
  ft_args_t a;
  if (ft_parse(call, &a) != 0)
    abort(); /* checked when it was queued */
  ft_work(call, a.ms);
  ft_leave(&a, 1, 0);
  ft_end(call, &a);
}

static const char *const ft_names[] = {"f_work", "f_work", "f_loop",
                                       "f_seq", "f_nope"};

/* The statuses a call of this tool may end with. */
static int ft_status_ok(const char *tool, toolcall_status_t st) {
  if (strcmp(tool, "f_nope") == 0)
    return st == TOOLCALL_UNKNOWN_TOOL;
  if (st == TOOLCALL_OK || st == TOOLCALL_TOOL_ERROR ||
      st == TOOLCALL_CANCELLED || st == TOOLCALL_REJECTED)
    return 1;
  /* f_seq has no timeout, whatever the manager's default. */
  return st == TOOLCALL_TIMED_OUT && strcmp(tool, "f_seq") != 0;
}

static void ft_on_batch(toolcall_batch_t *batch, int status) {
  ft_batch_t *r = toolcall_batch_data(batch);
  ft_thread_t *t = r->t;
  r->cb_runs++;
  r->status = status;
  if (status != 0 && status != TOOLCALL_ELIMIT && status != UV_ECANCELED)
    ft_fail(t, "batch %d: status %s", r->index, toolcall_err_name(status));
  if (toolcall_batch_size(batch) != r->n)
    ft_fail(t, "batch %d: %zu results for %zu calls", r->index,
            toolcall_batch_size(batch), r->n);
  for (size_t i = 0; i < r->n && i < toolcall_batch_size(batch); i++) {
    const toolcall_result_t *res = toolcall_batch_result(batch, i);
    if (strcmp(res->id, r->ids[i]) != 0 || strcmp(res->tool, r->names[i]) != 0)
      ft_fail(t, "batch %d: result %zu out of order", r->index, i);
    else if (!ft_status_ok(res->tool, res->status))
      ft_fail(t, "batch %d: call %s (%s) ended %s (batch status %s)", r->index,
              res->id, res->tool, toolcall_status_name(res->status),
              toolcall_err_name(status));
    else if (res->status == TOOLCALL_OK && strcmp(res->output, res->id) != 0)
      ft_fail(t, "batch %d: call %s output '%s'", r->index, res->id,
              res->output);
    if ((unsigned)res->status < TOOLCALL_STATUS_SLOTS_)
      t->calls[res->status]++;
  }
  r->batch = NULL;
  toolcall_batch_free(batch);
}

static void ft_on_cancel_timer(uv_timer_t *timer) {
  ft_batch_t *r = timer->data;
  if (r->batch == NULL)
    return; /* its callback ran */
  int rc = toolcall_batch_cancel(r->batch);
  if (rc != 0 && rc != TOOLCALL_ESTATE)
    ft_fail(r->t, "cancel: %s", toolcall_err_name(rc));
}

static void ft_on_close(toolcall_manager_t *m) {
  ft_thread_t *t = toolcall_manager_data(m);
  t->close_cb_runs++;
}

static void ft_close_manager(ft_thread_t *t) {
  if (t->m == NULL)
    return;
  int rc = toolcall_manager_close(t->m, ft_on_close);
  if (rc != 0)
    ft_fail(t, "close: %s", toolcall_err_name(rc));
  t->m = NULL;
}

static void ft_on_close_timer(uv_timer_t *timer) {
  ft_close_manager(timer->data);
}

static void ft_thread_main(void *arg) {
  ft_thread_t *t = arg;
  rng_state = 0;
  uv_loop_init(&t->loop);
  toolcall_manager_options_t o;
  toolcall_manager_options_init(&o);
  o.registry = t->registry;
  o.ledger = t->ledger;
  o.data = t;
  o.max_concurrency = FT_CAP;
  o.timeout_ms = 2;
  if ((t->setup_rc = toolcall_manager_new(&t->m, &t->loop, &o)) != 0) {
    uv_loop_close(&t->loop);
    return;
  }
  for (int b = 0; b < FT_BATCHES; b++) {
    ft_batch_t *r = &t->batches[b];
    r->t = t;
    r->index = b;
    r->n = 1 + rng_next() % FT_MAX_CALLS;
    toolcall_call_spec_t specs[FT_MAX_CALLS];
    char args[FT_MAX_CALLS][64];
    memset(specs, 0, sizeof(specs));
    for (size_t i = 0; i < r->n; i++) {
      r->names[i] = ft_names[rng_next() % (sizeof(ft_names) / sizeof(ft_names[0]))];
      snprintf(r->ids[i], sizeof(r->ids[i]), "i%d-t%d-b%d-c%zu", t->iteration,
               t->thread, b, i);
      /* 0..4 ms: past the 2 ms timeout about half the time. */
      snprintf(args[i], sizeof(args[i]), "{\"t\":%d,\"b\":%d,\"ms\":%d,\"e\":%d}",
               t->thread, b, (int)(rng_next() % 5), (int)(rng_next() % 5 == 0));
      specs[i].id = r->ids[i];
      specs[i].name = r->names[i];
      specs[i].arguments = args[i];
    }
    toolcall_batch_options_t bo;
    toolcall_batch_options_init(&bo);
    bo.limit_policy = rng_next() % 2 ? TOOLCALL_POLICY_PARTIAL
                                     : TOOLCALL_POLICY_REJECT_BATCH;
    uv_timer_init(&t->loop, &r->cancel_timer);
    r->cancel_timer.data = r;
    int rc = toolcall_batch_submit(t->m, specs, r->n, &bo, ft_on_batch, r,
                                   &r->batch, NULL);
    if (rc != 0) {
      ft_fail(t, "submit: %s", toolcall_err_name(rc));
      r->batch = NULL;
      r->cb_runs = 1; /* nothing to wait for */
      continue;
    }
    t->submitted += r->n;
    if (rng_next() % 3 == 0)
      uv_timer_start(&r->cancel_timer, ft_on_cancel_timer, rng_next() % 8, 0);
  }
  uv_timer_init(&t->loop, &t->close_timer);
  t->close_timer.data = t;
  if (t->close_early)
    uv_timer_start(&t->close_timer, ft_on_close_timer, 1 + rng_next() % 10, 0);
  uv_run(&t->loop, UV_RUN_DEFAULT);
  ft_close_manager(t);
  for (int b = 0; b < FT_BATCHES; b++)
    uv_close((uv_handle_t *)&t->batches[b].cancel_timer, NULL);
  uv_close((uv_handle_t *)&t->close_timer, NULL);
  uv_run(&t->loop, UV_RUN_DEFAULT);
  t->loop_close_rc = uv_loop_close(&t->loop);
}

static struct {
  toolcall_ledger_t *ledger;
  atomic_int stop;
  uint64_t snapshots, violations, worst;
  uv_thread_t thread;
  int running;
} ft_observer;

static void ft_observer_main(void *arg) {
  (void)arg;
  while (!atomic_load(&ft_observer.stop)) {
    toolcall_snapshot_t s;
    toolcall_limits_t lim;
    toolcall_ledger_snapshot(ft_observer.ledger, &s);
    toolcall_ledger_get_limits(ft_observer.ledger, &lim);
    ft_observer.snapshots++;
    if (lim.tool_calls >= 0 &&
        s.tool_calls + s.reserved_tool_calls > (uint64_t)lim.tool_calls) {
      ft_observer.violations++;
      if (s.tool_calls + s.reserved_tool_calls > ft_observer.worst)
        ft_observer.worst = s.tool_calls + s.reserved_tool_calls;
    }
    sched_yield();
  }
}

static void ft_observer_stop(void) {
  if (!ft_observer.running)
    return;
  atomic_store(&ft_observer.stop, 1);
  assert_int_equal(uv_thread_join(&ft_observer.thread), 0);
  ft_observer.running = 0;
}

/* The completer threads (and the observer) outlive a failed test's
 * assertion: teardown stops them, so the next test starts clean. */
static int stress_setup(void **state) {
  (void)state;
  completers_start(stress_complete);
  return 0;
}

static int faults_setup(void **state) {
  (void)state;
  completers_start(ft_complete);
  return 0;
}

static int threads_teardown(void **state) {
  (void)state;
  ft_observer_stop();
  completers_stop();
  return 0;
}

static void test_stress_faults(void **state) {
  (void)state;
  toolcall_registry_t *reg = NULL;
  toolcall_ledger_t *ledger = NULL;
  assert_int_equal(toolcall_registry_new(&reg), 0);
  toolcall_tool_t def;
  toolcall_tool_init(&def);
  def.name = "f_work";
  def.fn = ft_worker;
  assert_int_equal(toolcall_registry_add(reg, &def, NULL), 0);
  toolcall_tool_init(&def);
  def.name = "f_seq";
  def.fn = ft_worker;
  def.data = (void *)"seq";
  def.flags = TOOLCALL_TOOL_SEQUENTIAL;
  def.timeout_ms = TOOLCALL_NO_TIMEOUT;
  assert_int_equal(toolcall_registry_add(reg, &def, NULL), 0);
  toolcall_tool_init(&def);
  def.name = "f_loop";
  def.kind = TOOLCALL_TOOL_LOOP;
  def.fn = ft_loop_tool;
  def.cancel = ft_loop_cancel;
  def.max_concurrency = FT_LOOP_CAP;
  assert_int_equal(toolcall_registry_add(reg, &def, NULL), 0);
  assert_int_equal(toolcall_ledger_new(&ledger), 0);

  memset(&ft_observer, 0, sizeof(ft_observer));
  ft_observer.ledger = ledger;
  assert_int_equal(uv_thread_create(&ft_observer.thread, ft_observer_main, NULL), 0);
  ft_observer.running = 1;

  uint64_t expect[TOOLCALL_STATUS_SLOTS_] = {0}, submitted = 0;
  int peak = 0;
  int n_iter = iterations() / 2 > 0 ? iterations() / 2 : 1;
  uint64_t limit = 0;
  for (int it = 0; it < n_iter; it++) {
    /* A fresh budget for each iteration, on top of what was used. */
    toolcall_snapshot_t before;
    assert_int_equal(toolcall_ledger_snapshot(ledger, &before), 0);
    toolcall_limits_t lim;
    toolcall_limits_init(&lim);
    limit = before.tool_calls + FT_LIMIT;
    lim.tool_calls = (int64_t)limit;
    assert_int_equal(toolcall_ledger_set_limits(ledger, &lim), 0);

    uv_thread_t th[FT_THREADS];
    memset(ft_threads, 0, sizeof(ft_threads));
    for (int i = 0; i < FT_THREADS; i++) {
      ft_thread_t *t = &ft_threads[i];
      t->registry = reg;
      t->ledger = ledger;
      t->thread = i;
      t->iteration = it;
      t->close_early = (it + i) % 3 == 0;
      assert_int_equal(uv_thread_create(&th[i], ft_thread_main, t), 0);
    }
    for (int i = 0; i < FT_THREADS; i++)
      assert_int_equal(uv_thread_join(&th[i]), 0);

    for (int i = 0; i < FT_THREADS; i++) {
      ft_thread_t *t = &ft_threads[i];
      assert_int_equal(t->setup_rc, 0);
      if (t->failures != 0)
        fail_msg("iteration %d thread %d: %d failures, first: %s", it, i,
                 t->failures, t->first_failure);
      if (atomic_load(&t->violations) != 0)
        fail_msg("iteration %d thread %d: %d violations, first: %s", it, i,
                 atomic_load(&t->violations), t->first_violation);
      for (int b = 0; b < FT_BATCHES; b++)
        assert_int_equal(t->batches[b].cb_runs, 1);
      assert_int_equal(t->close_cb_runs, 1);
      assert_int_equal(t->loop_close_rc, 0);
      assert_int_equal(atomic_load(&t->in_flight), 0);
      if (atomic_load(&t->peak) > peak)
        peak = atomic_load(&t->peak);
      submitted += t->submitted;
      for (int s = 0; s < TOOLCALL_STATUS_SLOTS_; s++)
        expect[s] += t->calls[s];
    }

    toolcall_snapshot_t snap;
    assert_int_equal(toolcall_ledger_snapshot(ledger, &snap), 0);
    uint64_t sum = 0;
    for (int s = 0; s < TOOLCALL_STATUS_SLOTS_; s++) {
      if (snap.calls[s] != expect[s])
        fail_msg("iteration %d: %s counted %llu, the results say %llu", it,
                 toolcall_status_name((toolcall_status_t)s),
                 (unsigned long long)snap.calls[s],
                 (unsigned long long)expect[s]);
      sum += snap.calls[s];
    }
    assert_int_equal(snap.dispatched, submitted);
    assert_int_equal(snap.dispatched, sum); /* conservation */
    assert_int_equal(snap.reserved_tool_calls, 0);
    assert_true(snap.tool_calls <= limit);
    assert_int_equal(snap.tool_calls, snap.calls[TOOLCALL_OK]);
  }
  ft_observer_stop();
  if (ft_observer.violations != 0)
    fail_msg("the observer saw tool_calls + reserved = %llu over the limit in "
             "%llu of %llu snapshots",
             (unsigned long long)ft_observer.worst,
             (unsigned long long)ft_observer.violations,
             (unsigned long long)ft_observer.snapshots);
  /* The run must have exercised what it claims to. */
  assert_true(expect[TOOLCALL_OK] > 0);
  assert_true(expect[TOOLCALL_TIMED_OUT] > 0);
  assert_true(expect[TOOLCALL_CANCELLED] > 0);
  assert_true(expect[TOOLCALL_UNKNOWN_TOOL] > 0);
  assert_true(expect[TOOLCALL_REJECTED] > 0);
  assert_int_equal(peak, FT_CAP); /* the cap was reached, never passed */
  printf("[stress] faults: %d iterations, %llu calls: ok %llu, tool_error "
         "%llu, timed_out %llu, cancelled %llu, rejected %llu, unknown %llu; "
         "%llu snapshots checked\n",
         n_iter, (unsigned long long)submitted,
         (unsigned long long)expect[TOOLCALL_OK],
         (unsigned long long)expect[TOOLCALL_TOOL_ERROR],
         (unsigned long long)expect[TOOLCALL_TIMED_OUT],
         (unsigned long long)expect[TOOLCALL_CANCELLED],
         (unsigned long long)expect[TOOLCALL_REJECTED],
         (unsigned long long)expect[TOOLCALL_UNKNOWN_TOOL],
         (unsigned long long)ft_observer.snapshots);

  toolcall_ledger_free(ledger);
  toolcall_registry_free(reg);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_stress_shared_ledger, stress_setup,
                                      threads_teardown),
      cmocka_unit_test_setup_teardown(test_stress_faults, faults_setup,
                                      threads_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
