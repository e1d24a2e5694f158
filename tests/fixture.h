/* Shared helpers for the scheduling, approval and allocation tests.
 *
 * A fixture owns a loop (with a watchdog tick so a stepped loop never blocks
 * for long), a registry, a ledger (owned by the test, so it can be read after
 * the manager is gone) and a manager whose event hooks record every event.
 * Every batch callback checks the events of its batch against its results.
 *
 * Worker tools run off the main thread, where cmocka must not assert: tools
 * record what they saw (atomics) and the tests assert afterwards. Callbacks
 * on the loop thread record failures in f->failure instead of asserting, so
 * a failing check never longjmps out of uv_run().
 *
 * Saturating the threadpool follows libuv's test/test-threadpool-cancel.c:
 * blocker jobs fill the pool's threads and wait on a semaphore, so work
 * submitted after them stays queued for as long as the test wants.
 *
 * Header-only: include after cmocka.h and toolcall.h. */
#ifndef TOOLCALL_TEST_FIXTURE_H
#define TOOLCALL_TEST_FIXTURE_H

#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "toolcall.h"

#define FX_MAX_CALLS 64 /* per-call detail kept by probes and batch records */

/* ---- time ---- */

static inline void fx_sleep_us(unsigned us) {
  struct timespec ts = {(time_t)(us / 1000000u), (long)(us % 1000000u) * 1000L};
  nanosleep(&ts, NULL);
}

/* A global order of things that happen on any thread. */
static atomic_uint_fast64_t fx_clock;
static inline uint64_t fx_tick_seq(void) {
  return (uint64_t)atomic_fetch_add(&fx_clock, 1) + 1;
}

/* ---- the fixture ---- */

typedef struct {
  int kind; /* 0: start, 1: end */
  uint64_t seq;
  toolcall_batch_t *batch;
  size_t index;
  toolcall_status_t status;
  uint64_t duration_ns;
  char *id;
  char *tool;    /* a copy */
  char *message; /* a copy; NULL if the event's was NULL */
  int consumed;
} fx_event_t;

typedef struct fx_s fx_t;

/* What a batch callback saw. Pass one as the batch's data (fx_submit). */
typedef struct {
  fx_t *f;
  int runs;
  int status;
  uint64_t seq;             /* when the callback ran (fx_tick_seq) */
  int free_in_cb;           /* free the batch inside its callback */
  toolcall_batch_t *batch;  /* set by submit; NULL once freed */
  size_t n;
  toolcall_status_t st[FX_MAX_CALLS];
  uint64_t dur[FX_MAX_CALLS];
  char out[FX_MAX_CALLS][64];
  int has_msg[FX_MAX_CALLS];
  char msg[FX_MAX_CALLS][160];
  size_t counts[TOOLCALL_STATUS_SLOTS_];
  int has_error;
  char error[256];
} fx_batch_t;

/* Blocker jobs that fill the threadpool. */
typedef struct {
  uv_work_t *reqs;
  int n;
  uv_sem_t started;
  uv_sem_t release;
  int sems;
  atomic_int finished;
  int released;
} fx_pool_t;

struct fx_s {
  uv_loop_t loop;
  uv_timer_t tick;
  toolcall_registry_t *reg;
  toolcall_ledger_t *ledger;
  toolcall_manager_t *m;
  int closed; /* close_cb ran */
  int close_runs;
  uint64_t close_seq;
  int in_api; /* inside a toolcall call made by the test */
  int cb_inside_api;
  /* Blocking tools wait on gate (fx_open_gate posts many). */
  uv_sem_t gate;
  fx_event_t *ev;
  size_t nev, capev;
  size_t starts, ends;
  char failure[512];
  fx_pool_t pool;
  void *user;
};

/* The fixture of the running test, for the emergency release. */
static fx_t *fx_current;

static inline void fx_fail(fx_t *f, const char *fmt, ...) {
  if (f->failure[0] != '\0')
    return; /* keep the first */
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(f->failure, sizeof(f->failure), fmt, ap);
  va_end(ap);
}

static inline void fx_assert_no_failure(fx_t *f) {
  if (f->failure[0] != '\0')
    fail_msg("%s", f->failure);
}

static inline char *fx_strdup(const char *s) {
  if (s == NULL)
    return NULL;
  size_t n = strlen(s);
  char *c = malloc(n + 1);
  assert_non_null(c);
  memcpy(c, s, n + 1);
  return c;
}

static inline void fx_record_event(const toolcall_event_t *e, int kind) {
  fx_t *f = toolcall_manager_data(e->manager);
  if (f == NULL)
    return;
  if (f->nev == f->capev) {
    f->capev = f->capev ? f->capev * 2 : 256;
    f->ev = realloc(f->ev, f->capev * sizeof(*f->ev));
    if (f->ev == NULL)
      abort();
  }
  fx_event_t *x = &f->ev[f->nev++];
  memset(x, 0, sizeof(*x));
  x->kind = kind;
  x->seq = fx_tick_seq();
  x->batch = e->batch;
  x->index = e->index;
  x->status = e->status;
  x->duration_ns = e->duration_ns;
  x->id = fx_strdup(e->id);
  x->tool = fx_strdup(e->tool);
  x->message = fx_strdup(e->message);
  if (f->m != NULL && e->manager != f->m)
    fx_fail(f, "event of call %zu names another manager", e->index);
  if (kind == 0) {
    f->starts++;
    if (e->status != TOOLCALL_OK || e->duration_ns != 0)
      fx_fail(f, "start event of call %zu: status %d, duration %llu", e->index,
              (int)e->status, (unsigned long long)e->duration_ns);
  } else {
    f->ends++;
  }
}

static inline void fx_on_start(const toolcall_event_t *e) { fx_record_event(e, 0); }
static inline void fx_on_end(const toolcall_event_t *e) { fx_record_event(e, 1); }

/* Every call of b has exactly one end event that matches its result, at
 * most one start event, and the start comes first. Calls that ran (ok, tool
 * error) started; calls that never could (unknown, rejected, deferred,
 * denied) did not; a call without a start has duration 0. */
static inline void fx_check_events(fx_t *f, toolcall_batch_t *b) {
  size_t n = toolcall_batch_size(b);
  uint64_t *start = calloc(n ? n : 1, sizeof(*start));
  uint64_t *end = calloc(n ? n : 1, sizeof(*end));
  int *nstart = calloc(n ? n : 1, sizeof(*nstart));
  int *nend = calloc(n ? n : 1, sizeof(*nend));
  if (!start || !end || !nstart || !nend)
    abort();
  for (size_t k = 0; k < f->nev; k++) {
    fx_event_t *x = &f->ev[k];
    if (x->consumed || x->batch != b)
      continue;
    x->consumed = 1;
    if (x->index >= n) {
      fx_fail(f, "event for call %zu of a batch of %zu", x->index, n);
      continue;
    }
    const toolcall_result_t *r = toolcall_batch_result(b, x->index);
    if (x->id == NULL || strcmp(x->id, r->id) != 0)
      fx_fail(f, "event id '%s' for call %zu '%s'", x->id ? x->id : "(null)",
              x->index, r->id);
    if (x->tool == NULL || strcmp(x->tool, r->tool) != 0)
      fx_fail(f, "%s event of call %zu: tool '%s', the call's is '%s'",
              x->kind ? "end" : "start", x->index,
              x->tool ? x->tool : "(null)", r->tool);
    if (x->kind == 0) {
      nstart[x->index]++;
      start[x->index] = x->seq;
      continue;
    }
    nend[x->index]++;
    end[x->index] = x->seq;
    if (x->status != r->status)
      fx_fail(f, "call %zu: end event status %s, result %s", x->index,
              toolcall_status_name(x->status), toolcall_status_name(r->status));
    if (x->duration_ns != r->duration_ns)
      fx_fail(f, "call %zu: end event duration %llu, result %llu", x->index,
              (unsigned long long)x->duration_ns,
              (unsigned long long)r->duration_ns);
    if ((x->message == NULL) != (r->message == NULL) ||
        (x->message != NULL && strcmp(x->message, r->message) != 0))
      fx_fail(f, "call %zu: end event message '%s', result '%s'", x->index,
              x->message ? x->message : "(null)",
              r->message ? r->message : "(null)");
  }
  for (size_t i = 0; i < n; i++) {
    const toolcall_result_t *r = toolcall_batch_result(b, i);
    if (nend[i] != 1)
      fx_fail(f, "call %zu (%s, %s): %d end events", i, r->id,
              toolcall_status_name(r->status), nend[i]);
    if (nstart[i] > 1)
      fx_fail(f, "call %zu: %d start events", i, nstart[i]);
    if (nstart[i] == 1 && nend[i] == 1 && start[i] > end[i])
      fx_fail(f, "call %zu: start event after its end event", i);
    if ((r->status == TOOLCALL_OK || r->status == TOOLCALL_TOOL_ERROR) &&
        nstart[i] != 1)
      fx_fail(f, "call %zu ended %s without a start event", i,
              toolcall_status_name(r->status));
    if ((r->status == TOOLCALL_UNKNOWN_TOOL ||
         r->status == TOOLCALL_REJECTED || r->status == TOOLCALL_DEFERRED ||
         r->status == TOOLCALL_DENIED) &&
        nstart[i] != 0)
      fx_fail(f, "call %zu ended %s but has a start event", i,
              toolcall_status_name(r->status));
    if (nstart[i] == 0 && r->duration_ns != 0)
      fx_fail(f, "call %zu never started but has duration %llu", i,
              (unsigned long long)r->duration_ns);
    if (r->status != TOOLCALL_OK && r->message == NULL)
      fx_fail(f, "call %zu ended %s with a NULL message", i,
              toolcall_status_name(r->status));
    if (r->output == NULL)
      fx_fail(f, "call %zu: NULL output", i);
  }
  free(start);
  free(end);
  free(nstart);
  free(nend);
}

static inline void fx_on_batch(toolcall_batch_t *b, int status) {
  fx_batch_t *rec = toolcall_batch_data(b);
  fx_t *f = rec->f;
  rec->runs++;
  if (rec->runs > 1)
    fx_fail(f, "a batch callback ran %d times", rec->runs);
  rec->status = status;
  rec->seq = fx_tick_seq();
  if (f->in_api)
    f->cb_inside_api++;
  rec->n = toolcall_batch_size(b);
  memset(rec->counts, 0, sizeof(rec->counts));
  for (size_t i = 0; i < rec->n; i++) {
    const toolcall_result_t *r = toolcall_batch_result(b, i);
    if ((unsigned)r->status < TOOLCALL_STATUS_SLOTS_)
      rec->counts[r->status]++;
    if (i < FX_MAX_CALLS) {
      rec->st[i] = r->status;
      rec->dur[i] = r->duration_ns;
      snprintf(rec->out[i], sizeof(rec->out[i]), "%s",
               r->output ? r->output : "(null)");
      rec->has_msg[i] = r->message != NULL;
      snprintf(rec->msg[i], sizeof(rec->msg[i]), "%s",
               r->message ? r->message : "");
    }
  }
  const char *e = toolcall_batch_error(b);
  rec->has_error = e != NULL;
  snprintf(rec->error, sizeof(rec->error), "%s", e ? e : "");
  if ((status == 0) == (e != NULL))
    fx_fail(f, "batch status %d but toolcall_batch_error %s", status,
            e ? e : "NULL");
  fx_check_events(f, b);
  if (rec->free_in_cb) {
    toolcall_batch_free(b);
    rec->batch = NULL;
  } else {
    rec->batch = b;
  }
}

static inline void fx_tick_cb(uv_timer_t *t) { (void)t; }

static inline void fx_init(fx_t *f) {
  memset(f, 0, sizeof(*f));
  fx_current = f;
  assert_int_equal(uv_loop_init(&f->loop), 0);
  assert_int_equal(uv_timer_init(&f->loop, &f->tick), 0);
  assert_int_equal(uv_sem_init(&f->gate, 0), 0);
  assert_int_equal(toolcall_registry_new(&f->reg), 0);
  assert_int_equal(toolcall_ledger_new(&f->ledger), 0);
}

/* A tool definition with defaults; tweak it, then fx_add(). */
static inline toolcall_tool_t fx_def(const char *name,
                                     toolcall_tool_kind_t kind,
                                     toolcall_tool_fn fn, void *data) {
  toolcall_tool_t def;
  toolcall_tool_init(&def);
  def.name = name;
  def.kind = kind;
  def.fn = fn;
  def.data = data;
  return def;
}

static inline void fx_add(fx_t *f, const toolcall_tool_t *def) {
  toolcall_error_t err;
  int rc = toolcall_registry_add(f->reg, def, &err);
  if (rc != 0)
    fail_msg("registry_add(%s): %s: %s", def->name, toolcall_err_name(rc),
             err.message);
}

/* Manager options with the fixture's registry, ledger, hooks and data. */
static inline toolcall_manager_options_t fx_options(fx_t *f) {
  toolcall_manager_options_t o;
  toolcall_manager_options_init(&o);
  o.registry = f->reg;
  o.ledger = f->ledger;
  o.data = f;
  o.on_call_start = fx_on_start;
  o.on_call_end = fx_on_end;
  return o;
}

static inline void fx_manager(fx_t *f, const toolcall_manager_options_t *o) {
  assert_int_equal(toolcall_manager_new(&f->m, &f->loop, o), 0);
}

/* Run the loop one turn, at most until deadline; 0 once it has passed. */
static inline int fx_step(fx_t *f, uint64_t deadline) {
  if (uv_hrtime() >= deadline)
    return 0;
  uv_timer_start(&f->tick, fx_tick_cb, 2, 2);
  uv_run(&f->loop, UV_RUN_ONCE);
  uv_timer_stop(&f->tick);
  return 1;
}

/* Run the loop until cond holds or ms have passed. FX_WAIT(f, 0, ms) just
 * runs the loop for ms. */
#define FX_WAIT(f, cond, ms)                                                   \
  do {                                                                         \
    uint64_t fx_deadline_ = uv_hrtime() + (uint64_t)(ms)*1000000u;             \
    while (!(cond) && fx_step((f), fx_deadline_)) {                            \
    }                                                                          \
  } while (0)

/* A fresh record for the batch about to be submitted (keeps free_in_cb). */
static inline void fx_batch_reset(fx_t *f, fx_batch_t *rec) {
  int free_in_cb = rec->free_in_cb;
  memset(rec, 0, sizeof(*rec));
  rec->f = f;
  rec->free_in_cb = free_in_cb;
}

static inline int fx_submit(fx_t *f, fx_batch_t *rec,
                            const toolcall_call_spec_t *calls, size_t n,
                            const toolcall_batch_options_t *opts,
                            toolcall_error_t *err) {
  fx_batch_reset(f, rec);
  f->in_api++;
  int rc = toolcall_batch_submit(f->m, calls, n, opts, fx_on_batch, rec,
                                 &rec->batch, err);
  f->in_api--;
  return rc;
}

static inline int fx_resume(fx_t *f, fx_batch_t *rec,
                            const toolcall_decision_t *d, size_t n,
                            const toolcall_batch_options_t *opts,
                            toolcall_error_t *err) {
  fx_batch_reset(f, rec);
  f->in_api++;
  int rc = toolcall_batch_resume(f->m, d, n, opts, fx_on_batch, rec,
                                 &rec->batch, err);
  f->in_api--;
  return rc;
}

static inline int fx_cancel(fx_t *f, toolcall_batch_t *b) {
  f->in_api++;
  int rc = toolcall_batch_cancel(b);
  f->in_api--;
  return rc;
}

/* Submit and run the loop until the callback ran (at most 5 s). */
static inline void fx_run_batch(fx_t *f, fx_batch_t *rec,
                                const toolcall_call_spec_t *calls, size_t n,
                                const toolcall_batch_options_t *opts) {
  toolcall_error_t err;
  int rc = fx_submit(f, rec, calls, n, opts, &err);
  if (rc != 0)
    fail_msg("submit: %s: %s", toolcall_err_name(rc), err.message);
  assert_int_equal(rec->runs, 0);
  FX_WAIT(f, rec->runs > 0, 5000);
  assert_int_equal(rec->runs, 1);
  fx_assert_no_failure(f);
}

static inline void fx_batch_done(fx_batch_t *rec) {
  toolcall_batch_free(rec->batch);
  rec->batch = NULL;
}

static inline toolcall_snapshot_t fx_snap(fx_t *f) {
  toolcall_snapshot_t s;
  assert_int_equal(toolcall_ledger_snapshot(f->ledger, &s), 0);
  return s;
}

/* Conservation at a quiescent point: dispatched == sum of calls[], nothing
 * reserved, tool_calls == calls[ok]. */
static inline void fx_assert_conserved_ledger(toolcall_ledger_t *l) {
  toolcall_snapshot_t s;
  uint64_t sum = 0;
  assert_int_equal(toolcall_ledger_snapshot(l, &s), 0);
  for (int i = 0; i < TOOLCALL_STATUS_SLOTS_; i++)
    sum += s.calls[i];
  assert_int_equal(s.dispatched, sum);
  assert_int_equal(s.tool_calls, s.calls[TOOLCALL_OK]);
  assert_int_equal(s.reserved_tool_calls, 0);
}

static inline void fx_assert_conserved(fx_t *f) {
  fx_assert_conserved_ledger(f->ledger);
}

/* ---- the threadpool ---- */

static inline int fx_pool_size(void) {
  const char *s = getenv("UV_THREADPOOL_SIZE");
  int n = s != NULL ? atoi(s) : 4;
  if (n < 1)
    n = 1;
  if (n > 1024)
    n = 1024;
  return n;
}

static inline void fx_blocker_work(uv_work_t *req) {
  fx_pool_t *p = req->data;
  uv_sem_post(&p->started);
  uv_sem_wait(&p->release);
}

static inline void fx_blocker_done(uv_work_t *req, int status) {
  fx_pool_t *p = req->data;
  (void)status;
  atomic_fetch_add(&p->finished, 1);
}

/* Fill all but leave_free of the threadpool's threads with blockers, and
 * wait until every blocker runs: then the next leave_free jobs run and the
 * rest stay queued, in order. */
static inline void fx_saturate(fx_t *f, int leave_free) {
  fx_pool_t *p = &f->pool;
  assert_null(p->reqs);
  p->n = fx_pool_size() - leave_free;
  assert_true(p->n >= 0);
  p->reqs = calloc((size_t)(p->n ? p->n : 1), sizeof(*p->reqs));
  assert_non_null(p->reqs);
  if (!p->sems) {
    assert_int_equal(uv_sem_init(&p->started, 0), 0);
    assert_int_equal(uv_sem_init(&p->release, 0), 0);
    p->sems = 1;
  }
  atomic_store(&p->finished, 0);
  p->released = 0;
  for (int i = 0; i < p->n; i++) {
    p->reqs[i].data = p;
    assert_int_equal(
        uv_queue_work(&f->loop, &p->reqs[i], fx_blocker_work, fx_blocker_done),
        0);
  }
  uint64_t deadline = uv_hrtime() + 5000000000ull;
  for (int got = 0; got < p->n;) {
    if (uv_sem_trywait(&p->started) == 0) {
      got++;
      continue;
    }
    if (uv_hrtime() > deadline)
      fail_msg("only %d of %d blockers started: the pool is busy", got, p->n);
    fx_sleep_us(100);
  }
}

/* Let the blockers return and wait until their after-work callbacks ran. */
static inline void fx_release_pool(fx_t *f) {
  fx_pool_t *p = &f->pool;
  if (p->reqs == NULL)
    return;
  if (!p->released) {
    for (int i = 0; i < p->n; i++)
      uv_sem_post(&p->release);
    p->released = 1;
  }
  FX_WAIT(f, atomic_load(&p->finished) == p->n, 5000);
  assert_int_equal(atomic_load(&p->finished), p->n);
  free(p->reqs);
  p->reqs = NULL;
}

static inline void fx_open_gate(fx_t *f, int n) {
  for (int i = 0; i < n; i++)
    uv_sem_post(&f->gate);
}

/* ---- closing ---- */

static inline void fx_on_close(toolcall_manager_t *m) {
  fx_t *f = toolcall_manager_data(m);
  f->close_runs++;
  f->close_seq = fx_tick_seq();
  f->closed = 1;
  if (f->in_api)
    f->cb_inside_api++;
}

static inline int fx_close_manager(fx_t *f) {
  f->in_api++;
  int rc = toolcall_manager_close(f->m, fx_on_close);
  f->in_api--;
  return rc;
}

/* Run until the loop has nothing left (at most 5 s); the loop must then
 * close with 0. */
static inline void fx_drain_and_close_loop(fx_t *f) {
  uv_close((uv_handle_t *)&f->tick, NULL);
  uint64_t deadline = uv_hrtime() + 5000000000ull;
  while (uv_loop_alive(&f->loop) && uv_hrtime() < deadline) {
    uv_run(&f->loop, UV_RUN_NOWAIT);
    if (uv_loop_alive(&f->loop))
      fx_sleep_us(200);
  }
  int rc = uv_loop_close(&f->loop);
  if (rc != 0) {
    uv_print_all_handles(&f->loop, stderr);
    fail_msg("uv_loop_close: %s", uv_err_name(rc));
  }
}

/* End a test: close the manager (if the test did not), release the pool,
 * check conservation and the callbacks, close the loop, free everything. */
static inline void fx_finish(fx_t *f) {
  if (f->m != NULL && !f->closed && f->close_runs == 0) {
    int rc = fx_close_manager(f);
    if (rc != 0 && rc != TOOLCALL_ECLOSING)
      fail_msg("manager_close: %s", toolcall_err_name(rc));
  }
  fx_open_gate(f, 64);
  fx_release_pool(f);
  if (f->m != NULL)
    FX_WAIT(f, f->close_runs > 0, 5000);
  if (f->m != NULL)
    assert_int_equal(f->close_runs, 1);
  assert_int_equal(f->cb_inside_api, 0);
  fx_assert_no_failure(f);
  fx_drain_and_close_loop(f);
  for (size_t i = 0; i < f->nev; i++)
    if (!f->ev[i].consumed)
      fail_msg("%s event for call %zu ('%s', %s) after its batch callback, "
               "or for a batch whose callback never ran",
               f->ev[i].kind ? "end" : "start", f->ev[i].index,
               f->ev[i].id ? f->ev[i].id : "(null)",
               toolcall_status_name(f->ev[i].status));
  fx_assert_conserved(f);
  toolcall_ledger_free(f->ledger);
  toolcall_registry_free(f->reg);
  for (size_t i = 0; i < f->nev; i++) {
    free(f->ev[i].id);
    free(f->ev[i].tool);
    free(f->ev[i].message);
  }
  free(f->ev);
  uv_sem_destroy(&f->gate);
  if (f->pool.sems) {
    uv_sem_destroy(&f->pool.started);
    uv_sem_destroy(&f->pool.release);
  }
  fx_current = NULL;
}

/* cmocka teardown: a test that failed half-way may leave tools and
 * blockers waiting; let them go so the next test gets a free pool. The
 * fixture is leaked on purpose (its loop is not run again). */
static inline int fx_teardown(void **state) {
  (void)state;
  fx_t *f = fx_current;
  if (f != NULL) {
    fx_open_gate(f, 1024);
    if (f->pool.sems)
      for (int i = 0; i < f->pool.n; i++)
        uv_sem_post(&f->pool.release);
    fx_sleep_us(20000);
    fx_current = NULL;
  }
  return 0;
}

/* ---- probes: tools that record what they saw ---- */

typedef struct {
  fx_t *f;
  atomic_int ran;      /* bodies started */
  atomic_int done;     /* bodies returned */
  atomic_int running;  /* in flight now (as the tool sees it) */
  atomic_int peak;
  atomic_int ran_idx[FX_MAX_CALLS];
  atomic_int cancelled_at_start[FX_MAX_CALLS];
  atomic_int cancelled_at_end[FX_MAX_CALLS];
  atomic_int rc[FX_MAX_CALLS]; /* toolcall_call_complete's return */
  atomic_int cancel_runs;      /* loop tools' cancel fn */
  int complete_in_cancel;      /* the cancel fn completes the call */
  toolcall_call_t *held[FX_MAX_CALLS]; /* loop tools not yet completed */
  char seen_args[FX_MAX_CALLS][128];
  uint64_t start_seq[FX_MAX_CALLS];
  uint64_t end_seq[FX_MAX_CALLS];
} fx_probe_t;

static inline void fx_probe_init(fx_probe_t *p, fx_t *f) {
  memset(p, 0, sizeof(*p));
  p->f = f;
  for (int i = 0; i < FX_MAX_CALLS; i++)
    atomic_store(&p->rc[i], 1); /* 1: never completed */
}

static inline void fx_peak_max(atomic_int *peak, int v) {
  int cur = atomic_load(peak);
  while (v > cur && !atomic_compare_exchange_weak(peak, &cur, v)) {
  }
}

static inline size_t fx_probe_enter(fx_probe_t *p, toolcall_call_t *call) {
  size_t i = toolcall_call_index(call) % FX_MAX_CALLS;
  atomic_fetch_add(&p->ran, 1);
  atomic_store(&p->ran_idx[i], 1);
  atomic_store(&p->cancelled_at_start[i], toolcall_call_cancelled(call));
  size_t len = 0;
  const char *a = toolcall_call_arguments(call, &len);
  snprintf(p->seen_args[i], sizeof(p->seen_args[i]), "%.*s", (int)len,
           a ? a : "");
  p->start_seq[i] = fx_tick_seq();
  fx_peak_max(&p->peak, atomic_fetch_add(&p->running, 1) + 1);
  return i;
}

static inline void fx_probe_leave(fx_probe_t *p, size_t i) {
  p->end_seq[i] = fx_tick_seq();
  atomic_fetch_sub(&p->running, 1);
}

/* Worker: completes ok with "ok:<id>". */
static inline void fx_tool_ok(toolcall_call_t *call, void *data) {
  fx_probe_t *p = data;
  size_t i = fx_probe_enter(p, call);
  char out[300];
  snprintf(out, sizeof(out), "ok:%s", toolcall_call_id(call));
  fx_probe_leave(p, i);
  atomic_store(&p->rc[i], toolcall_call_complete(call, TOOLCALL_OK, out, 0));
  atomic_fetch_add(&p->done, 1);
}

/* Worker: waits on the fixture's gate, then completes ok with "late". */
static inline void fx_tool_block(toolcall_call_t *call, void *data) {
  fx_probe_t *p = data;
  size_t i = fx_probe_enter(p, call);
  uv_sem_wait(&p->f->gate);
  atomic_store(&p->cancelled_at_end[i], toolcall_call_cancelled(call));
  fx_probe_leave(p, i);
  atomic_store(&p->rc[i], toolcall_call_complete(call, TOOLCALL_OK, "late", 0));
  atomic_fetch_add(&p->done, 1);
}

/* Loop tool: holds the call until the test (or its cancel fn) completes
 * it. */
static inline void fx_tool_hold(toolcall_call_t *call, void *data) {
  fx_probe_t *p = data;
  size_t i = fx_probe_enter(p, call);
  p->held[i] = call;
}

static inline void fx_complete_held(fx_probe_t *p, size_t i,
                                    toolcall_status_t st, const char *text) {
  toolcall_call_t *call = p->held[i];
  assert_non_null(call);
  p->held[i] = NULL;
  atomic_store(&p->cancelled_at_end[i], toolcall_call_cancelled(call));
  fx_probe_leave(p, i);
  atomic_store(&p->rc[i], toolcall_call_complete(call, st, text, 0));
  atomic_fetch_add(&p->done, 1);
}

static inline void fx_cancel_hold(toolcall_call_t *call, void *data) {
  fx_probe_t *p = data;
  size_t i = toolcall_call_index(call) % FX_MAX_CALLS;
  atomic_fetch_add(&p->cancel_runs, 1);
  if (p->held[i] != call)
    fx_fail(p->f, "cancel fn for call %zu that the tool does not hold", i);
  if (p->complete_in_cancel && p->held[i] == call)
    fx_complete_held(p, i, TOOLCALL_OK, "late");
}

/* Loop tool: completes ok at once, inside its start function. */
static inline void fx_tool_sync(toolcall_call_t *call, void *data) {
  fx_probe_t *p = data;
  size_t i = fx_probe_enter(p, call);
  fx_probe_leave(p, i);
  atomic_store(&p->rc[i], toolcall_call_complete(call, TOOLCALL_OK, "sync", 0));
  atomic_fetch_add(&p->done, 1);
}

/* Calls c0..c(n-1) of one tool, arguments shared. ids must hold n. */
static inline void fx_calls(toolcall_call_spec_t *calls, char (*ids)[16],
                            size_t n, const char *prefix, const char *tool,
                            const char *args) {
  for (size_t i = 0; i < n; i++) {
    int w = snprintf(ids[i], sizeof(ids[i]), "%s%zu", prefix, i);
    assert_true(w > 0 && (size_t)w < sizeof(ids[i])); /* ids are unique */
    memset(&calls[i], 0, sizeof(calls[i]));
    calls[i].id = ids[i];
    calls[i].name = tool;
    calls[i].arguments = args;
  }
}

#endif /* TOOLCALL_TEST_FIXTURE_H */
