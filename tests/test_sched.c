/* Scheduling and failure: the concurrency cap (per manager and per tool),
 * call order, sequential barriers, timeouts, cancellation, retries, close
 * with work in flight, and the event hooks.
 *
 * Queued and running calls are made deterministic by saturating the
 * threadpool with blocker jobs (fixture.h), as libuv's own
 * test-threadpool-cancel.c does. Ordering between a call's timeout and its
 * completion is made deterministic with loop tools completed from uv timers
 * on the same loop. No test asserts on wall-clock durations. */
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

#include "fixture.h"

#define POOL_THREADS 16

static int arg_int(toolcall_call_t *call, const char *key) {
  char pat[32];
  const char *args = toolcall_call_arguments(call, NULL);
  snprintf(pat, sizeof(pat), "\"%s\":", key);
  const char *p = args != NULL ? strstr(args, pat) : NULL;
  return p != NULL ? atoi(p + strlen(pat)) : 0;
}

/* ------------------------------------------------------------------------ */
/* The cap: peak in flight, measured by the tools                           */

typedef struct {
  fx_t *f;
  int cap;
  atomic_int running, peak, ran, gate_open, gate_timeouts, bad_rc;
  /* completer thread for loop tools */
  uv_mutex_t mu;
  uv_cond_t cv;
  toolcall_call_t **q;
  size_t qh, qt;
  int stop;
  uv_thread_t th;
} cap_t;

static void cap_enter(cap_t *c) {
  int now = atomic_fetch_add(&c->running, 1) + 1;
  fx_peak_max(&c->peak, now);
  atomic_fetch_add(&c->ran, 1);
  if (now >= c->cap)
    atomic_store(&c->gate_open, 1);
}

/* Hold the first wave until the cap is reached once (bounded), so that a
 * correct cap is always reached, whatever the machine's scheduling. */
static int cap_gate_ready(cap_t *c) {
  return atomic_load(&c->gate_open) || atomic_load(&c->running) >= c->cap;
}

static void cap_gate(cap_t *c) {
  uint64_t deadline = uv_hrtime() + 1000000000ull;
  while (!cap_gate_ready(c)) {
    if (uv_hrtime() > deadline) {
      atomic_fetch_add(&c->gate_timeouts, 1);
      atomic_store(&c->gate_open, 1);
      break;
    }
    fx_sleep_us(20);
  }
}

static void cap_leave_complete(cap_t *c, toolcall_call_t *call) {
  atomic_fetch_sub(&c->running, 1);
  if (toolcall_call_complete(call, TOOLCALL_OK, "x", 0) != 0)
    atomic_fetch_add(&c->bad_rc, 1);
}

static void tool_cap_worker(toolcall_call_t *call, void *data) {
  cap_t *c = data;
  cap_enter(c);
  cap_gate(c);
  fx_sleep_us(50 + (unsigned)(toolcall_call_index(call) * 37 % 150));
  cap_leave_complete(c, call);
}

typedef struct {
  uv_timer_t t;
  cap_t *c;
  toolcall_call_t *call;
  uint64_t deadline;
} cap_timer_t;

static void cap_timer_close(uv_handle_t *h) { free(h->data); }

static void cap_timer_cb(uv_timer_t *t) {
  cap_timer_t *ct = t->data;
  if (!cap_gate_ready(ct->c) && uv_hrtime() < ct->deadline)
    return; /* fire again */
  if (!cap_gate_ready(ct->c))
    atomic_fetch_add(&ct->c->gate_timeouts, 1);
  uv_timer_stop(t);
  cap_leave_complete(ct->c, ct->call);
  uv_close((uv_handle_t *)t, cap_timer_close);
}

static void cap_completer(void *arg) {
  cap_t *c = arg;
  for (;;) {
    uv_mutex_lock(&c->mu);
    while (c->qh == c->qt && !c->stop)
      uv_cond_wait(&c->cv, &c->mu);
    if (c->qh == c->qt && c->stop) {
      uv_mutex_unlock(&c->mu);
      return;
    }
    toolcall_call_t *call = c->q[c->qh++];
    uv_mutex_unlock(&c->mu);
    cap_gate(c);
    fx_sleep_us(50);
    cap_leave_complete(c, call);
  }
}

/* Loop tool: even calls complete from a uv timer, odd ones from another
 * thread. */
static void tool_cap_loop(toolcall_call_t *call, void *data) {
  cap_t *c = data;
  cap_enter(c);
  if (toolcall_call_index(call) % 2 == 0) {
    cap_timer_t *ct = calloc(1, sizeof(*ct));
    if (ct == NULL)
      abort();
    ct->c = c;
    ct->call = call;
    ct->deadline = uv_hrtime() + 1000000000ull;
    uv_timer_init(&c->f->loop, &ct->t);
    ct->t.data = ct;
    uv_timer_start(&ct->t, cap_timer_cb, 0, 1);
  } else {
    uv_mutex_lock(&c->mu);
    c->q[c->qt++] = call;
    uv_cond_signal(&c->cv);
    uv_mutex_unlock(&c->mu);
  }
}

static void cap_run(const char *kind_name, toolcall_tool_kind_t kind,
                    toolcall_tool_fn fn) {
  enum { N = 1000, CAP = 8 };
  fx_t f;
  cap_t c;
  fx_init(&f);
  memset(&c, 0, sizeof(c));
  c.f = &f;
  c.cap = CAP;
  c.q = calloc(N, sizeof(*c.q));
  assert_non_null(c.q);
  assert_int_equal(uv_mutex_init(&c.mu), 0);
  assert_int_equal(uv_cond_init(&c.cv), 0);
  assert_int_equal(uv_thread_create(&c.th, cap_completer, &c), 0);
  toolcall_tool_t def = fx_def(kind_name, kind, fn, &c);
  fx_add(&f, &def);
  toolcall_manager_options_t o = fx_options(&f);
  o.max_concurrency = CAP;
  fx_manager(&f, &o);

  toolcall_call_spec_t *calls = calloc(N, sizeof(*calls));
  char(*ids)[16] = calloc(N, sizeof(*ids));
  assert_non_null(calls);
  assert_non_null(ids);
  fx_calls(calls, ids, N, "c", kind_name, NULL);
  fx_batch_t rec = {0};
  toolcall_error_t err;
  assert_int_equal(fx_submit(&f, &rec, calls, N, NULL, &err), 0);
  FX_WAIT(&f, rec.runs > 0, 8000);
  assert_int_equal(rec.runs, 1);
  fx_assert_no_failure(&f);

  uv_mutex_lock(&c.mu);
  c.stop = 1;
  uv_cond_signal(&c.cv);
  uv_mutex_unlock(&c.mu);
  assert_int_equal(uv_thread_join(&c.th), 0);

  assert_int_equal(rec.status, 0);
  assert_int_equal(rec.counts[TOOLCALL_OK], N);
  assert_int_equal(atomic_load(&c.ran), N);
  assert_int_equal(atomic_load(&c.bad_rc), 0);
  assert_int_equal(atomic_load(&c.gate_timeouts), 0);
  assert_int_equal(atomic_load(&c.peak), CAP);
  assert_int_equal(f.starts, N);
  assert_int_equal(f.ends, N);
  fx_batch_done(&rec);
  toolcall_snapshot_t s = fx_snap(&f);
  assert_int_equal(s.dispatched, N);
  assert_int_equal(s.tool_calls, N);
  fx_assert_conserved(&f);
  fx_finish(&f);
  uv_cond_destroy(&c.cv);
  uv_mutex_destroy(&c.mu);
  free(c.q);
  free(calls);
  free(ids);
}

/* 1,000 worker calls, cap 8, a pool of 16 threads: the peak in flight is
 * exactly 8. */
static void test_sched_cap_workers(void **state) {
  (void)state;
  cap_run("w", TOOLCALL_TOOL_WORKER, tool_cap_worker);
}

/* The same with loop tools completed later from timers and from another
 * thread. */
static void test_sched_cap_loop(void **state) {
  (void)state;
  cap_run("l", TOOLCALL_TOOL_LOOP, tool_cap_loop);
}

/* A per-tool cap of 2 (no manager cap): that tool never runs more than 2
 * at once, and the calls of another tool behind it in the batch are not
 * held back by it. */
static atomic_int wide_ran, held_back, wide_wait_done;
enum { NARROW = 20, WIDE = 20 };

static void tool_narrow(toolcall_call_t *call, void *data) {
  cap_t *c = data;
  cap_enter(c);
  cap_gate(c);
  if (!atomic_load(&wide_wait_done)) {
    uint64_t deadline = uv_hrtime() + 2000000000ull;
    while (atomic_load(&wide_ran) < WIDE && uv_hrtime() < deadline)
      fx_sleep_us(50);
    if (atomic_load(&wide_ran) < WIDE)
      atomic_store(&held_back, 1);
    atomic_store(&wide_wait_done, 1);
  }
  fx_sleep_us(100);
  cap_leave_complete(c, call);
}

static void tool_wide(toolcall_call_t *call, void *data) {
  (void)data;
  atomic_fetch_add(&wide_ran, 1);
  toolcall_call_complete(call, TOOLCALL_OK, NULL, 0);
}

static void test_sched_tool_cap(void **state) {
  (void)state;
  fx_t f;
  cap_t c;
  fx_init(&f);
  memset(&c, 0, sizeof(c));
  c.f = &f;
  c.cap = 2;
  atomic_store(&wide_ran, 0);
  atomic_store(&held_back, 0);
  atomic_store(&wide_wait_done, 0);
  toolcall_tool_t def = fx_def("narrow", TOOLCALL_TOOL_WORKER, tool_narrow, &c);
  def.max_concurrency = 2;
  fx_add(&f, &def);
  def = fx_def("wide", TOOLCALL_TOOL_WORKER, tool_wide, NULL);
  fx_add(&f, &def);
  toolcall_manager_options_t o = fx_options(&f);
  fx_manager(&f, &o);

  toolcall_call_spec_t calls[NARROW + WIDE];
  char ids[NARROW + WIDE][16];
  fx_calls(calls, ids, NARROW + WIDE, "c", "narrow", NULL);
  for (int i = NARROW; i < NARROW + WIDE; i++)
    calls[i].name = "wide";
  fx_batch_t rec = {0};
  fx_run_batch(&f, &rec, calls, NARROW + WIDE, NULL);
  assert_int_equal(rec.status, 0);
  assert_int_equal(rec.counts[TOOLCALL_OK], NARROW + WIDE);
  assert_int_equal(atomic_load(&c.ran), NARROW);
  assert_int_equal(atomic_load(&c.peak), 2);
  assert_int_equal(atomic_load(&c.gate_timeouts), 0);
  assert_int_equal(atomic_load(&wide_ran), WIDE);
  assert_int_equal(atomic_load(&held_back), 0); /* wide was not held back */
  fx_batch_done(&rec);
  fx_finish(&f);
}

/* ------------------------------------------------------------------------ */
/* Call order                                                               */

static atomic_int norder;
static int order[64];

static void record_order(toolcall_call_t *call) {
  const char *id = toolcall_call_id(call);
  int tag = (id[0] == 'b' ? 100 : 0) + atoi(id + 1);
  int k = atomic_fetch_add(&norder, 1);
  if (k < 64)
    order[k] = tag;
}

static void tool_order_worker(toolcall_call_t *call, void *data) {
  (void)data;
  record_order(call);
  fx_sleep_us(100);
  toolcall_call_complete(call, TOOLCALL_OK, NULL, 0);
}

static void tool_order_loop(toolcall_call_t *call, void *data) {
  (void)data;
  record_order(call);
  toolcall_call_complete(call, TOOLCALL_OK, NULL, 0);
}

/* With a cap of 1, calls start in call order, batches in submit order,
 * worker and loop tools alike. */
static void test_sched_call_order(void **state) {
  (void)state;
  enum { N = 10 };
  fx_t f;
  fx_init(&f);
  atomic_store(&norder, 0);
  toolcall_tool_t def = fx_def("ow", TOOLCALL_TOOL_WORKER, tool_order_worker, NULL);
  fx_add(&f, &def);
  def = fx_def("ol", TOOLCALL_TOOL_LOOP, tool_order_loop, NULL);
  fx_add(&f, &def);
  toolcall_manager_options_t o = fx_options(&f);
  o.max_concurrency = 1;
  fx_manager(&f, &o);
  toolcall_call_spec_t a[N], b[N];
  char ida[N][16], idb[N][16];
  fx_calls(a, ida, N, "a", "ow", NULL);
  fx_calls(b, idb, N, "b", "ow", NULL);
  for (int i = 0; i < N; i += 3) {
    a[i].name = "ol";
    b[(i + 1) % N].name = "ol";
  }
  fx_batch_t ra = {0}, rb = {0};
  assert_int_equal(fx_submit(&f, &ra, a, N, NULL, NULL), 0);
  assert_int_equal(fx_submit(&f, &rb, b, N, NULL, NULL), 0);
  FX_WAIT(&f, ra.runs && rb.runs, 5000);
  assert_int_equal(ra.runs, 1);
  assert_int_equal(rb.runs, 1);
  fx_assert_no_failure(&f);
  assert_int_equal(ra.counts[TOOLCALL_OK], N);
  assert_int_equal(rb.counts[TOOLCALL_OK], N);
  assert_int_equal(atomic_load(&norder), 2 * N);
  for (int i = 0; i < N; i++) {
    assert_int_equal(order[i], i);
    assert_int_equal(order[N + i], 100 + i);
  }
  /* The start events say the same. */
  int k = 0;
  for (size_t e = 0; e < f.nev; e++) {
    if (f.ev[e].kind != 0)
      continue;
    char want[16];
    snprintf(want, sizeof(want), "%c%d", k < N ? 'a' : 'b', k % N);
    assert_string_equal(f.ev[e].id, want);
    k++;
  }
  assert_int_equal(k, 2 * N);
  fx_batch_done(&ra);
  fx_batch_done(&rb);
  fx_finish(&f);
}

/* ------------------------------------------------------------------------ */
/* Sequential barriers                                                      */

static atomic_int seq_running_in, seq_running_out;

static void tool_par(toolcall_call_t *call, void *data) {
  fx_probe_t *p = data;
  size_t i = fx_probe_enter(p, call);
  fx_sleep_us((unsigned)arg_int(call, "us"));
  fx_probe_leave(p, i);
  toolcall_call_complete(call, TOOLCALL_OK, NULL, 0);
}

static void tool_seq(toolcall_call_t *call, void *data) {
  fx_probe_t *p = data;
  size_t i = fx_probe_enter(p, call);
  fx_peak_max(&seq_running_in, atomic_load(&p->running));
  fx_sleep_us((unsigned)arg_int(call, "us"));
  fx_peak_max(&seq_running_out, atomic_load(&p->running));
  fx_probe_leave(p, i);
  toolcall_call_complete(call, TOOLCALL_OK, NULL, 0);
}

/* [a, b, SEQ, c, d]: SEQ starts after a and b returned, runs alone, and c
 * and d start after it returned. Then [a, SEQ, SEQ, d]: two barriers in a
 * row, each alone. */
static void test_sched_sequential(void **state) {
  (void)state;
  fx_t f;
  fx_probe_t p, p2;
  fx_init(&f);
  fx_probe_init(&p, &f);
  fx_probe_init(&p2, &f);
  atomic_store(&seq_running_in, 0);
  atomic_store(&seq_running_out, 0);
  toolcall_tool_t def = fx_def("par", TOOLCALL_TOOL_WORKER, tool_par, &p);
  fx_add(&f, &def);
  def = fx_def("seq", TOOLCALL_TOOL_WORKER, tool_seq, &p);
  def.flags = TOOLCALL_TOOL_SEQUENTIAL;
  fx_add(&f, &def);
  def = fx_def("par2", TOOLCALL_TOOL_WORKER, tool_par, &p2);
  fx_add(&f, &def);
  def = fx_def("seq2", TOOLCALL_TOOL_WORKER, tool_seq, &p2);
  def.flags = TOOLCALL_TOOL_SEQUENTIAL;
  fx_add(&f, &def);
  toolcall_manager_options_t o = fx_options(&f);
  fx_manager(&f, &o);

  toolcall_call_spec_t calls[] = {
      {"a", "par", "{\"us\":3000}", 0, 0}, {"b", "par", "{\"us\":1000}", 0, 0},
      {"s", "seq", "{\"us\":2000}", 0, 0}, {"c", "par", "{\"us\":500}", 0, 0},
      {"d", "par", "{\"us\":500}", 0, 0}};
  fx_batch_t rec = {0};
  fx_run_batch(&f, &rec, calls, 5, NULL);
  assert_int_equal(rec.status, 0);
  assert_int_equal(rec.counts[TOOLCALL_OK], 5);
  assert_true(p.start_seq[2] > p.end_seq[0]);
  assert_true(p.start_seq[2] > p.end_seq[1]);
  assert_true(p.start_seq[3] > p.end_seq[2]);
  assert_true(p.start_seq[4] > p.end_seq[2]);
  assert_int_equal(atomic_load(&seq_running_in), 1);
  assert_int_equal(atomic_load(&seq_running_out), 1);
  fx_batch_done(&rec);

  atomic_store(&seq_running_in, 0);
  atomic_store(&seq_running_out, 0);
  toolcall_call_spec_t calls2[] = {
      {"a", "par2", "{\"us\":2000}", 0, 0}, {"s1", "seq2", "{\"us\":1000}", 0, 0},
      {"s2", "seq2", "{\"us\":1000}", 0, 0}, {"d", "par2", "{\"us\":10}", 0, 0}};
  fx_run_batch(&f, &rec, calls2, 4, NULL);
  assert_int_equal(rec.counts[TOOLCALL_OK], 4);
  assert_true(p2.start_seq[1] > p2.end_seq[0]);
  assert_true(p2.start_seq[2] > p2.end_seq[1]);
  assert_true(p2.start_seq[3] > p2.end_seq[2]);
  assert_int_equal(atomic_load(&seq_running_in), 1);
  assert_int_equal(atomic_load(&seq_running_out), 1);
  fx_batch_done(&rec);
  fx_finish(&f);
}

/* A sequential call that timed out is still a barrier until its worker
 * really returns: the call after it starts only then. */
static void test_sched_sequential_timeout(void **state) {
  (void)state;
  fx_t f;
  fx_probe_t sp, q;
  fx_init(&f);
  fx_probe_init(&sp, &f);
  fx_probe_init(&q, &f);
  toolcall_tool_t def = fx_def("seq", TOOLCALL_TOOL_WORKER, fx_tool_block, &sp);
  def.flags = TOOLCALL_TOOL_SEQUENTIAL;
  def.timeout_ms = 20;
  fx_add(&f, &def);
  def = fx_def("after", TOOLCALL_TOOL_WORKER, fx_tool_ok, &q);
  fx_add(&f, &def);
  toolcall_manager_options_t o = fx_options(&f);
  fx_manager(&f, &o);
  toolcall_call_spec_t calls[] = {{"s", "seq", NULL, 0, 0},
                                  {"a", "after", NULL, 0, 0}};
  fx_batch_t rec = {0};
  assert_int_equal(fx_submit(&f, &rec, calls, 2, NULL, NULL), 0);
  FX_WAIT(&f, f.ends == 1, 3000); /* s timed out */
  assert_int_equal(f.ends, 1);
  FX_WAIT(&f, 0, 30);
  assert_int_equal(atomic_load(&q.ran), 0); /* s still runs: a waits */
  assert_int_equal(rec.runs, 0);
  fx_open_gate(&f, 1);
  FX_WAIT(&f, rec.runs > 0, 3000);
  assert_int_equal(rec.runs, 1);
  assert_int_equal(rec.st[0], TOOLCALL_TIMED_OUT);
  assert_int_equal(rec.st[1], TOOLCALL_OK);
  assert_true(q.start_seq[1] > sp.end_seq[0]);
  assert_int_equal(atomic_load(&sp.rc[0]), UV_ECANCELED);
  fx_batch_done(&rec);
  fx_finish(&f);
}

/* A batch held back by its barrier keeps its place in submit order: with a
 * cap of 2, A = [x, S] and B = [z1, z2] submitted in that order, x and z1
 * run, S waits for x (barrier), z2 for a slot (cap). When x returns, S and
 * z2 both want the one free slot: S, of the earlier batch, gets it. */
static void test_sched_sequential_keeps_order(void **state) {
  (void)state;
  fx_t f;
  fx_probe_t ha, hb, s;
  fx_init(&f);
  fx_probe_init(&ha, &f);
  fx_probe_init(&hb, &f);
  fx_probe_init(&s, &f);
  toolcall_tool_t def = fx_def("hold_a", TOOLCALL_TOOL_LOOP, fx_tool_hold, &ha);
  def.cancel = fx_cancel_hold;
  fx_add(&f, &def);
  def = fx_def("hold_b", TOOLCALL_TOOL_LOOP, fx_tool_hold, &hb);
  def.cancel = fx_cancel_hold;
  fx_add(&f, &def);
  def = fx_def("seq", TOOLCALL_TOOL_LOOP, fx_tool_hold, &s);
  def.cancel = fx_cancel_hold;
  def.flags = TOOLCALL_TOOL_SEQUENTIAL;
  fx_add(&f, &def);
  toolcall_manager_options_t o = fx_options(&f);
  o.max_concurrency = 2;
  fx_manager(&f, &o);

  toolcall_call_spec_t a[] = {{"x", "hold_a", NULL, 0, 0},
                              {"S", "seq", NULL, 0, 0}};
  toolcall_call_spec_t b[] = {{"z1", "hold_b", NULL, 0, 0},
                              {"z2", "hold_b", NULL, 0, 0}};
  fx_batch_t ra = {0}, rb = {0};
  assert_int_equal(fx_submit(&f, &ra, a, 2, NULL, NULL), 0);
  assert_int_equal(fx_submit(&f, &rb, b, 2, NULL, NULL), 0);
  /* x and z1 hold the two slots. */
  FX_WAIT(&f, atomic_load(&ha.ran) == 1 && atomic_load(&hb.ran) == 1, 3000);
  FX_WAIT(&f, 0, 10);
  assert_int_equal(atomic_load(&ha.ran), 1);
  assert_int_equal(atomic_load(&hb.ran), 1);
  assert_int_equal(atomic_load(&s.ran), 0);

  /* x returns: S starts, z2 keeps waiting. */
  fx_complete_held(&ha, 0, TOOLCALL_OK, "x");
  FX_WAIT(&f, atomic_load(&s.ran) + atomic_load(&hb.ran) > 2, 3000);
  FX_WAIT(&f, 0, 10);
  assert_int_equal(atomic_load(&s.ran), 1);
  assert_int_equal(atomic_load(&hb.ran), 1); /* z2 has not started */
  fx_complete_held(&s, 1, TOOLCALL_OK, "S");
  FX_WAIT(&f, ra.runs > 0, 3000);
  assert_int_equal(ra.runs, 1);
  assert_int_equal(ra.st[0], TOOLCALL_OK);
  assert_int_equal(ra.st[1], TOOLCALL_OK);
  /* Now z2 runs; let B end. */
  FX_WAIT(&f, atomic_load(&hb.ran) == 2, 3000);
  assert_int_equal(atomic_load(&hb.ran), 2);
  fx_complete_held(&hb, 0, TOOLCALL_OK, "z1");
  fx_complete_held(&hb, 1, TOOLCALL_OK, "z2");
  FX_WAIT(&f, rb.runs > 0, 3000);
  assert_int_equal(rb.runs, 1);
  assert_int_equal(rb.counts[TOOLCALL_OK], 2);
  fx_batch_done(&ra);
  fx_batch_done(&rb);
  fx_finish(&f);
}

/* ------------------------------------------------------------------------ */
/* Timeouts                                                                 */

/* A worker call still queued in a saturated pool when its timer fires ends
 * timed out at once (the batch callback runs while the blockers still
 * block), and its function never runs. */
static void test_sched_timeout_queued(void **state) {
  (void)state;
  fx_t f;
  fx_probe_t p;
  fx_init(&f);
  fx_probe_init(&p, &f);
  toolcall_tool_t def = fx_def("w", TOOLCALL_TOOL_WORKER, fx_tool_ok, &p);
  fx_add(&f, &def);
  toolcall_manager_options_t o = fx_options(&f);
  fx_manager(&f, &o);
  fx_saturate(&f, 0);

  toolcall_call_spec_t call = {"q", "w", NULL, 0, 20};
  fx_batch_t rec = {0};
  assert_int_equal(fx_submit(&f, &rec, &call, 1, NULL, NULL), 0);
  FX_WAIT(&f, rec.runs > 0, 3000);
  assert_int_equal(rec.runs, 1); /* while every pool thread still blocks */
  fx_assert_no_failure(&f);
  assert_int_equal(rec.status, 0);
  assert_int_equal(rec.st[0], TOOLCALL_TIMED_OUT);
  assert_true(rec.has_msg[0]);
  /* Taken back from the pool's queue before it ran: duration 0, as for
   * the queued calls of a cancelled batch. (Its start event has fired:
   * "queued for the threadpool" counts as a start for the hook.) */
  assert_int_equal(rec.dur[0], 0);
  assert_string_equal(rec.out[0], "");
  assert_int_equal(atomic_load(&p.ran), 0);
  toolcall_snapshot_t s = fx_snap(&f);
  assert_int_equal(s.calls[TOOLCALL_TIMED_OUT], 1);
  assert_int_equal(s.reserved_tool_calls, 0);

  fx_release_pool(&f);
  FX_WAIT(&f, 0, 20);
  assert_int_equal(atomic_load(&p.ran), 0); /* taken back, never ran */
  fx_batch_done(&rec);
  fx_finish(&f);
  assert_int_equal(atomic_load(&p.ran), 0);
}

/* A running worker times out: the call ends timed out, the worker sees the
 * cancelled flag, its late completion returns UV_ECANCELED and is
 * discarded, and it keeps its slot (cap 1) until it really returns. */
static void timeout_running(int free_in_cb) {
  fx_t f;
  fx_probe_t p, q;
  fx_init(&f);
  fx_probe_init(&p, &f);
  fx_probe_init(&q, &f);
  toolcall_tool_t def = fx_def("hold", TOOLCALL_TOOL_WORKER, fx_tool_block, &p);
  fx_add(&f, &def);
  def = fx_def("next", TOOLCALL_TOOL_WORKER, fx_tool_ok, &q);
  fx_add(&f, &def);
  toolcall_manager_options_t o = fx_options(&f);
  o.max_concurrency = 1;
  fx_manager(&f, &o);

  toolcall_call_spec_t a = {"h", "hold", NULL, 0, 20};
  toolcall_call_spec_t b = {"n", "next", NULL, 0, 0};
  fx_batch_t ra = {0}, rb = {0};
  ra.free_in_cb = free_in_cb;
  assert_int_equal(fx_submit(&f, &ra, &a, 1, NULL, NULL), 0);
  assert_int_equal(fx_submit(&f, &rb, &b, 1, NULL, NULL), 0);
  FX_WAIT(&f, atomic_load(&p.ran) == 1, 3000);
  assert_int_equal(atomic_load(&p.ran), 1);
  FX_WAIT(&f, ra.runs > 0, 3000);
  assert_int_equal(ra.runs, 1);
  fx_assert_no_failure(&f);
  assert_int_equal(ra.status, 0);
  assert_int_equal(ra.st[0], TOOLCALL_TIMED_OUT);
  assert_true(ra.has_msg[0]);
  assert_string_equal(ra.out[0], "");
  char msg[160];
  snprintf(msg, sizeof(msg), "%s", ra.msg[0]);
  toolcall_snapshot_t s = fx_snap(&f);
  assert_int_equal(s.calls[TOOLCALL_TIMED_OUT], 1);

  /* The timed-out worker still holds the only slot. */
  FX_WAIT(&f, 0, 30);
  assert_int_equal(atomic_load(&q.ran), 0);
  assert_int_equal(rb.runs, 0);

  fx_open_gate(&f, 1);
  FX_WAIT(&f, rb.runs > 0, 3000);
  assert_int_equal(rb.runs, 1);
  assert_int_equal(rb.st[0], TOOLCALL_OK);
  assert_int_equal(atomic_load(&q.ran), 1);
  assert_true(q.start_seq[0] > p.end_seq[0]);
  assert_int_equal(atomic_load(&p.cancelled_at_start[0]), 0);
  assert_int_equal(atomic_load(&p.cancelled_at_end[0]), 1);
  assert_int_equal(atomic_load(&p.rc[0]), UV_ECANCELED);
  if (!free_in_cb) {
    const toolcall_result_t *r = toolcall_batch_result(ra.batch, 0);
    assert_int_equal(r->status, TOOLCALL_TIMED_OUT);
    assert_string_equal(r->output, "");
    assert_int_equal(r->output_len, 0);
    assert_string_equal(r->message, msg);
    fx_batch_done(&ra);
  }
  fx_batch_done(&rb);
  s = fx_snap(&f);
  assert_int_equal(s.calls[TOOLCALL_TIMED_OUT], 1);
  assert_int_equal(s.calls[TOOLCALL_OK], 1);
  assert_int_equal(s.tool_calls, 1);
  fx_finish(&f);
}

static void test_sched_timeout_running(void **state) {
  (void)state;
  timeout_running(0);
}

/* The same with the timed-out batch freed inside its callback while its
 * worker still runs (ASan: no use after free when the worker returns). */
static void test_sched_timeout_running_freed(void **state) {
  (void)state;
  timeout_running(1);
}

/* Loop tools that never complete until told: the cancel fn runs on
 * timeout; completing from it, later from a timer, or later from another
 * thread, after the batch was freed in its callback, is safe and returns
 * UV_ECANCELED. */
static fx_probe_t *late_probe;
static void late_timer_cb(uv_timer_t *t) {
  fx_complete_held(late_probe, 0, TOOLCALL_OK, "late");
  uv_close((uv_handle_t *)t, NULL);
}

static void late_thread(void *arg) {
  fx_probe_t *p = arg;
  toolcall_call_t *call = p->held[0];
  fx_sleep_us(2000);
  atomic_store(&p->cancelled_at_end[0], toolcall_call_cancelled(call));
  atomic_store(&p->rc[0], toolcall_call_complete(call, TOOLCALL_OK, "late", 0));
}

static void test_sched_timeout_loop(void **state) {
  (void)state;
  fx_t f;
  fx_probe_t pc, pt, pth;
  fx_init(&f);
  fx_probe_init(&pc, &f);
  fx_probe_init(&pt, &f);
  fx_probe_init(&pth, &f);
  pc.complete_in_cancel = 1;
  toolcall_tool_t def = fx_def("in_cancel", TOOLCALL_TOOL_LOOP, fx_tool_hold, &pc);
  def.cancel = fx_cancel_hold;
  def.timeout_ms = 20;
  fx_add(&f, &def);
  def = fx_def("by_timer", TOOLCALL_TOOL_LOOP, fx_tool_hold, &pt);
  def.cancel = fx_cancel_hold;
  def.timeout_ms = 20;
  fx_add(&f, &def);
  def = fx_def("by_thread", TOOLCALL_TOOL_LOOP, fx_tool_hold, &pth);
  def.cancel = fx_cancel_hold;
  def.timeout_ms = 20;
  fx_add(&f, &def);
  toolcall_manager_options_t o = fx_options(&f);
  fx_manager(&f, &o);

  /* Completed from the cancel fn. */
  toolcall_call_spec_t c1 = {"x", "in_cancel", NULL, 0, 0};
  fx_batch_t rec = {0};
  rec.free_in_cb = 1;
  fx_run_batch(&f, &rec, &c1, 1, NULL);
  assert_int_equal(rec.st[0], TOOLCALL_TIMED_OUT);
  assert_true(rec.has_msg[0]);
  assert_int_equal(atomic_load(&pc.cancel_runs), 1);
  assert_int_equal(atomic_load(&pc.rc[0]), UV_ECANCELED);
  assert_int_equal(atomic_load(&pc.cancelled_at_end[0]), 1);

  /* Completed later from a timer, after the batch was freed. */
  toolcall_call_spec_t c2 = {"y", "by_timer", NULL, 0, 0};
  rec.free_in_cb = 1;
  fx_run_batch(&f, &rec, &c2, 1, NULL);
  assert_int_equal(rec.st[0], TOOLCALL_TIMED_OUT);
  assert_int_equal(atomic_load(&pt.cancel_runs), 1);
  assert_non_null(pt.held[0]);
  assert_int_equal(atomic_load(&pt.rc[0]), 1); /* not completed yet */
  uv_timer_t late;
  late_probe = &pt;
  uv_timer_init(&f.loop, &late);
  uv_timer_start(&late, late_timer_cb, 5, 0);
  FX_WAIT(&f, atomic_load(&pt.rc[0]) != 1, 3000);
  assert_int_equal(atomic_load(&pt.rc[0]), UV_ECANCELED);
  assert_int_equal(atomic_load(&pt.cancelled_at_end[0]), 1);

  /* Completed later from another thread, after the batch was freed. */
  toolcall_call_spec_t c3 = {"z", "by_thread", NULL, 0, 0};
  rec.free_in_cb = 1;
  fx_run_batch(&f, &rec, &c3, 1, NULL);
  assert_int_equal(rec.st[0], TOOLCALL_TIMED_OUT);
  assert_int_equal(atomic_load(&pth.cancel_runs), 1);
  uv_thread_t th;
  assert_int_equal(uv_thread_create(&th, late_thread, &pth), 0);
  assert_int_equal(uv_thread_join(&th), 0);
  assert_int_equal(atomic_load(&pth.rc[0]), UV_ECANCELED);
  assert_int_equal(atomic_load(&pth.cancelled_at_end[0]), 1);
  FX_WAIT(&f, 0, 10);

  toolcall_snapshot_t s = fx_snap(&f);
  assert_int_equal(s.calls[TOOLCALL_TIMED_OUT], 3);
  assert_int_equal(s.calls[TOOLCALL_OK], 0);
  fx_finish(&f);
}

/* A loop tool that completes {"ms":N} after its start, from a uv timer;
 * after a timeout its completion is late (and discarded). */
typedef struct {
  uv_timer_t t;
  toolcall_call_t *call;
  fx_probe_t *p;
} after_t;

static void after_close(uv_handle_t *h) { free(h->data); }

static void after_cb(uv_timer_t *t) {
  after_t *a = t->data;
  size_t i = toolcall_call_index(a->call) % FX_MAX_CALLS;
  atomic_store(&a->p->cancelled_at_end[i], toolcall_call_cancelled(a->call));
  atomic_store(&a->p->rc[i],
               toolcall_call_complete(a->call, TOOLCALL_OK, "done", 0));
  atomic_fetch_add(&a->p->done, 1);
  uv_close((uv_handle_t *)t, after_close);
}

static void tool_after(toolcall_call_t *call, void *data) {
  fx_probe_t *p = data;
  fx_probe_enter(p, call);
  after_t *a = calloc(1, sizeof(*a));
  if (a == NULL)
    abort();
  a->call = call;
  a->p = p;
  a->t.data = a;
  uv_timer_init(&p->f->loop, &a->t);
  uv_timer_start(&a->t, after_cb, (uint64_t)arg_int(call, "ms"), 0);
}

static void cancel_count(toolcall_call_t *call, void *data) {
  fx_probe_t *p = data;
  (void)call;
  atomic_fetch_add(&p->cancel_runs, 1);
}

/* The call's timeout overrides the tool's, the tool's the manager's;
 * TOOLCALL_NO_TIMEOUT disables a default. (Timeout and completion are both
 * uv timers on the one loop, so their order is deterministic.) */
static void test_sched_timeout_precedence(void **state) {
  (void)state;
  fx_t f;
  fx_probe_t p;
  fx_init(&f);
  fx_probe_init(&p, &f);
  toolcall_tool_t def = fx_def("t_default", TOOLCALL_TOOL_LOOP, tool_after, &p);
  def.cancel = cancel_count;
  fx_add(&f, &def);
  def.name = "t_long";
  def.timeout_ms = 2000;
  fx_add(&f, &def);
  def.name = "t_none";
  def.timeout_ms = TOOLCALL_NO_TIMEOUT;
  fx_add(&f, &def);
  def.name = "t_short";
  def.timeout_ms = 20;
  fx_add(&f, &def);
  toolcall_manager_options_t o = fx_options(&f);
  o.timeout_ms = 20;
  fx_manager(&f, &o);

  toolcall_call_spec_t calls[] = {
      {"0", "t_default", "{\"ms\":150}", 0, 0},             /* manager's */
      {"1", "t_long", "{\"ms\":60}", 0, 0},                 /* tool's */
      {"2", "t_long", "{\"ms\":150}", 0, 20},               /* call's */
      {"3", "t_default", "{\"ms\":60}", 0, TOOLCALL_NO_TIMEOUT},
      {"4", "t_none", "{\"ms\":60}", 0, 0},
      {"5", "t_short", "{\"ms\":60}", 0, 2000},
      {"6", "t_short", "{\"ms\":150}", 0, 0},
  };
  static const toolcall_status_t want[] = {
      TOOLCALL_TIMED_OUT, TOOLCALL_OK, TOOLCALL_TIMED_OUT, TOOLCALL_OK,
      TOOLCALL_OK,        TOOLCALL_OK, TOOLCALL_TIMED_OUT};
  fx_batch_t rec = {0};
  fx_run_batch(&f, &rec, calls, 7, NULL);
  for (int i = 0; i < 7; i++) {
    if (rec.st[i] != want[i])
      fail_msg("call %d: %s, want %s (%s)", i, toolcall_status_name(rec.st[i]),
               toolcall_status_name(want[i]), rec.msg[i]);
  }
  assert_string_equal(rec.out[1], "done");
  assert_string_equal(rec.out[0], "");
  assert_int_equal(atomic_load(&p.cancel_runs), 3);
  fx_batch_done(&rec);
  /* The late completions are discarded. */
  FX_WAIT(&f, atomic_load(&p.done) == 7, 3000);
  for (int i = 0; i < 7; i++)
    assert_int_equal(atomic_load(&p.rc[i]),
                     want[i] == TOOLCALL_OK ? 0 : UV_ECANCELED);
  toolcall_snapshot_t s = fx_snap(&f);
  assert_int_equal(s.calls[TOOLCALL_TIMED_OUT], 3);
  assert_int_equal(s.calls[TOOLCALL_OK], 4);
  fx_finish(&f);
}

/* Deadlines that differ: one timer serves them all, firing for each in
 * deadline order (it re-arms for the next one), whatever the start order.
 * The calls never complete on their own; each ends only by its timeout. */
static void test_sched_timeout_staggered(void **state) {
  (void)state;
  enum { N = 5 };
  fx_t f;
  fx_probe_t h;
  fx_init(&f);
  fx_probe_init(&h, &f);
  h.complete_in_cancel = 1;
  toolcall_tool_t def = fx_def("hold", TOOLCALL_TOOL_LOOP, fx_tool_hold, &h);
  def.cancel = fx_cancel_hold;
  fx_add(&f, &def);
  toolcall_manager_options_t o = fx_options(&f);
  fx_manager(&f, &o);
  static const uint64_t ms[N] = {60, 10, 40, 25, 80};
  toolcall_call_spec_t calls[N];
  char ids[N][16];
  fx_calls(calls, ids, N, "t", "hold", NULL);
  for (int i = 0; i < N; i++)
    calls[i].timeout_ms = ms[i];
  fx_batch_t rec = {0};
  fx_run_batch(&f, &rec, calls, N, NULL);
  assert_int_equal(rec.status, 0);
  for (int i = 0; i < N; i++) {
    assert_int_equal(rec.st[i], TOOLCALL_TIMED_OUT);
    assert_int_equal(atomic_load(&h.rc[i]), UV_ECANCELED);
  }
  assert_int_equal(atomic_load(&h.cancel_runs), N);
  /* The end events came in deadline order: 1, 3, 2, 0, 4. */
  static const int order_want[N] = {1, 3, 2, 0, 4};
  int k = 0;
  for (size_t e = 0; e < f.nev; e++) {
    if (f.ev[e].kind != 1)
      continue;
    assert_true(k < N);
    assert_int_equal((int)f.ev[e].index, order_want[k]);
    k++;
  }
  assert_int_equal(k, N);
  fx_batch_done(&rec);
  toolcall_snapshot_t s = fx_snap(&f);
  assert_int_equal(s.calls[TOOLCALL_TIMED_OUT], N);
  fx_finish(&f);
}

/* Time spent waiting for a slot does not count against the timeout. */
static void test_sched_timeout_not_while_waiting(void **state) {
  (void)state;
  fx_t f;
  fx_probe_t p;
  fx_init(&f);
  fx_probe_init(&p, &f);
  toolcall_tool_t def = fx_def("after", TOOLCALL_TOOL_LOOP, tool_after, &p);
  def.cancel = cancel_count;
  fx_add(&f, &def);
  toolcall_manager_options_t o = fx_options(&f);
  o.max_concurrency = 1;
  fx_manager(&f, &o);
  toolcall_call_spec_t calls[] = {{"slow", "after", "{\"ms\":60}", 0, 0},
                                  {"quick", "after", "{\"ms\":0}", 0, 20}};
  fx_batch_t rec = {0};
  fx_run_batch(&f, &rec, calls, 2, NULL);
  assert_int_equal(rec.st[0], TOOLCALL_OK);
  assert_int_equal(rec.st[1], TOOLCALL_OK);
  assert_int_equal(atomic_load(&p.cancel_runs), 0);
  assert_true(p.start_seq[1] > p.start_seq[0]);
  fx_batch_done(&rec);
  fx_finish(&f);
}

/* ------------------------------------------------------------------------ */
/* Cancel                                                                   */

/* Two calls running (blocked), three queued in a saturated pool: cancel
 * ends all five at once, the queued ones never run and have duration 0,
 * the running ones see the flag and their results are discarded. */
static void test_sched_cancel_running_and_queued(void **state) {
  (void)state;
  fx_t f;
  fx_probe_t p;
  fx_init(&f);
  fx_probe_init(&p, &f);
  toolcall_tool_t def = fx_def("blk", TOOLCALL_TOOL_WORKER, fx_tool_block, &p);
  fx_add(&f, &def);
  toolcall_manager_options_t o = fx_options(&f);
  fx_manager(&f, &o);
  assert_int_equal(toolcall_batch_cancel(NULL), UV_EINVAL);
  fx_saturate(&f, 2);

  toolcall_call_spec_t calls[5];
  char ids[5][16];
  fx_calls(calls, ids, 5, "c", "blk", NULL);
  fx_batch_t rec = {0};
  assert_int_equal(fx_submit(&f, &rec, calls, 5, NULL, NULL), 0);
  FX_WAIT(&f, atomic_load(&p.ran) == 2, 3000);
  assert_int_equal(atomic_load(&p.ran), 2);
  assert_int_equal(atomic_load(&p.ran_idx[0]), 1);
  assert_int_equal(atomic_load(&p.ran_idx[1]), 1);
  toolcall_snapshot_t s = fx_snap(&f);
  assert_int_equal(s.reserved_tool_calls, 5);

  assert_int_equal(fx_cancel(&f, rec.batch), 0);
  assert_int_equal(rec.runs, 0); /* never inside cancel */
  assert_int_equal(fx_cancel(&f, rec.batch), TOOLCALL_ESTATE);
  FX_WAIT(&f, rec.runs > 0, 3000);
  assert_int_equal(rec.runs, 1); /* while the running ones still block */
  fx_assert_no_failure(&f);
  assert_int_equal(rec.status, UV_ECANCELED);
  assert_true(rec.has_error);
  for (int i = 0; i < 5; i++) {
    assert_int_equal(rec.st[i], TOOLCALL_CANCELLED);
    assert_true(rec.has_msg[i]);
  }
  assert_true(rec.dur[0] > 0);
  assert_true(rec.dur[1] > 0);
  assert_int_equal(rec.dur[2], 0);
  assert_int_equal(rec.dur[3], 0);
  assert_int_equal(rec.dur[4], 0);
  assert_int_equal(fx_cancel(&f, rec.batch), TOOLCALL_ESTATE);
  s = fx_snap(&f);
  assert_int_equal(s.dispatched, 5);
  assert_int_equal(s.calls[TOOLCALL_CANCELLED], 5);
  assert_int_equal(s.reserved_tool_calls, 0);
  fx_assert_conserved(&f);

  fx_open_gate(&f, 2);
  fx_release_pool(&f);
  FX_WAIT(&f, atomic_load(&p.done) == 2, 3000);
  FX_WAIT(&f, 0, 20);
  assert_int_equal(atomic_load(&p.ran), 2); /* the queued ones never ran */
  for (int i = 0; i < 2; i++) {
    assert_int_equal(atomic_load(&p.cancelled_at_start[i]), 0);
    assert_int_equal(atomic_load(&p.cancelled_at_end[i]), 1);
    assert_int_equal(atomic_load(&p.rc[i]), UV_ECANCELED);
  }
  const toolcall_result_t *r = toolcall_batch_result(rec.batch, 0);
  assert_int_equal(r->status, TOOLCALL_CANCELLED);
  assert_string_equal(r->output, ""); /* "late" was discarded */
  fx_batch_done(&rec);
  s = fx_snap(&f);
  assert_int_equal(s.calls[TOOLCALL_CANCELLED], 5);
  assert_int_equal(s.tool_calls, 0);
  fx_finish(&f);
}

/* Calls waiting for a cap slot end cancelled too, never run; the cancelled
 * running worker keeps its slot until it returns: a call of another batch,
 * already waiting for the slot when the cancel comes, and one submitted
 * after it, both wait until the worker really returned. */
static void test_sched_cancel_waiting_for_cap(void **state) {
  (void)state;
  fx_t f;
  fx_probe_t p, q;
  fx_init(&f);
  fx_probe_init(&p, &f);
  fx_probe_init(&q, &f);
  toolcall_tool_t def = fx_def("blk", TOOLCALL_TOOL_WORKER, fx_tool_block, &p);
  fx_add(&f, &def);
  def = fx_def("ok", TOOLCALL_TOOL_WORKER, fx_tool_ok, &q);
  fx_add(&f, &def);
  toolcall_manager_options_t o = fx_options(&f);
  o.max_concurrency = 1;
  fx_manager(&f, &o);

  toolcall_call_spec_t calls[] = {
      {"b", "blk", NULL, 0, 0}, {"o1", "ok", NULL, 0, 0}, {"o2", "ok", NULL, 0, 0}};
  fx_batch_t rec = {0};
  assert_int_equal(fx_submit(&f, &rec, calls, 3, NULL, NULL), 0);
  FX_WAIT(&f, atomic_load(&p.ran) == 1, 3000);
  assert_int_equal(atomic_load(&p.ran), 1);
  /* Another batch's call waits for the slot. */
  toolcall_call_spec_t other = {"w", "ok", NULL, 0, 0};
  fx_batch_t rw = {0};
  assert_int_equal(fx_submit(&f, &rw, &other, 1, NULL, NULL), 0);
  assert_int_equal(fx_cancel(&f, rec.batch), 0);
  assert_int_equal(rec.runs, 0);
  FX_WAIT(&f, rec.runs > 0, 3000);
  assert_int_equal(rec.runs, 1);
  assert_int_equal(rec.status, UV_ECANCELED);
  for (int i = 0; i < 3; i++)
    assert_int_equal(rec.st[i], TOOLCALL_CANCELLED);
  assert_int_equal(rec.dur[1], 0);
  assert_int_equal(rec.dur[2], 0);
  fx_batch_done(&rec);

  /* A new call waits for the slot the cancelled worker still holds. */
  toolcall_call_spec_t next = {"n", "ok", NULL, 0, 0};
  assert_int_equal(fx_submit(&f, &rec, &next, 1, NULL, NULL), 0);
  FX_WAIT(&f, 0, 30);
  assert_int_equal(atomic_load(&q.ran), 0);
  assert_int_equal(rec.runs, 0);
  assert_int_equal(rw.runs, 0);
  fx_open_gate(&f, 1);
  FX_WAIT(&f, rec.runs > 0 && rw.runs > 0, 3000);
  assert_int_equal(rec.runs, 1);
  assert_int_equal(rw.runs, 1);
  assert_int_equal(rec.st[0], TOOLCALL_OK);
  assert_int_equal(rw.st[0], TOOLCALL_OK);
  assert_int_equal(atomic_load(&q.ran), 2); /* w and n; o1, o2 never ran */
  assert_true(q.start_seq[0] > p.end_seq[0]);
  assert_true(rw.seq < rec.seq); /* w waited first, so it ran first */
  assert_int_equal(atomic_load(&p.rc[0]), UV_ECANCELED);
  fx_batch_done(&rec);
  fx_batch_done(&rw);
  toolcall_snapshot_t s = fx_snap(&f);
  assert_int_equal(s.calls[TOOLCALL_CANCELLED], 3);
  assert_int_equal(s.calls[TOOLCALL_OK], 2);
  fx_finish(&f);
}

/* A call waiting for its tool's own slot (cap 1) ends cancelled, never
 * starts (no start event, its function never runs), and leaves the tool's
 * wait list: when the cancelled running call returns, the slot goes to the
 * call of the next batch. */
static void test_sched_cancel_waiting_for_tool_cap(void **state) {
  (void)state;
  fx_t f;
  fx_probe_t p;
  fx_init(&f);
  fx_probe_init(&p, &f);
  toolcall_tool_t def = fx_def("one", TOOLCALL_TOOL_WORKER, fx_tool_block, &p);
  def.max_concurrency = 1;
  fx_add(&f, &def);
  toolcall_manager_options_t o = fx_options(&f);
  fx_manager(&f, &o);
  toolcall_call_spec_t calls[] = {{"o1", "one", NULL, 0, 0},
                                  {"o2", "one", NULL, 0, 0}};
  fx_batch_t rec = {0};
  rec.free_in_cb = 1;
  assert_int_equal(fx_submit(&f, &rec, calls, 2, NULL, NULL), 0);
  FX_WAIT(&f, atomic_load(&p.ran) == 1, 3000);
  FX_WAIT(&f, 0, 10);
  assert_int_equal(atomic_load(&p.ran), 1);
  assert_int_equal(f.starts, 1);
  assert_int_equal(fx_cancel(&f, rec.batch), 0);
  FX_WAIT(&f, rec.runs > 0, 3000);
  assert_int_equal(rec.runs, 1);
  assert_int_equal(rec.status, UV_ECANCELED);
  assert_int_equal(rec.st[0], TOOLCALL_CANCELLED);
  assert_int_equal(rec.st[1], TOOLCALL_CANCELLED);
  assert_int_equal(rec.dur[1], 0);

  /* The next batch's call waits for o1's slot, then gets it. */
  toolcall_call_spec_t next = {"o3", "one", NULL, 0, 0};
  fx_batch_t rn = {0};
  assert_int_equal(fx_submit(&f, &rn, &next, 1, NULL, NULL), 0);
  FX_WAIT(&f, 0, 20);
  assert_int_equal(atomic_load(&p.ran), 1);
  fx_open_gate(&f, 1); /* o1 returns */
  FX_WAIT(&f, atomic_load(&p.ran) == 2, 3000);
  assert_int_equal(atomic_load(&p.ran), 2);
  fx_open_gate(&f, 1); /* o3 returns */
  FX_WAIT(&f, rn.runs > 0, 3000);
  assert_int_equal(rn.runs, 1);
  assert_int_equal(rn.st[0], TOOLCALL_OK);
  assert_string_equal(rn.out[0], "late");
  assert_int_equal(f.starts, 2); /* o1 and o3: o2 never started */
  fx_batch_done(&rn);
  toolcall_snapshot_t s = fx_snap(&f);
  assert_int_equal(s.calls[TOOLCALL_CANCELLED], 2);
  assert_int_equal(s.calls[TOOLCALL_OK], 1);
  fx_finish(&f);
}

/* Loop tools get their cancel fn called (started calls only); a call that
 * had already ended keeps its result. */
static void test_sched_cancel_loop(void **state) {
  (void)state;
  fx_t f;
  fx_probe_t h, s;
  fx_init(&f);
  fx_probe_init(&h, &f);
  fx_probe_init(&s, &f);
  h.complete_in_cancel = 1;
  toolcall_tool_t def = fx_def("hold", TOOLCALL_TOOL_LOOP, fx_tool_hold, &h);
  def.cancel = fx_cancel_hold;
  fx_add(&f, &def);
  def = fx_def("sync", TOOLCALL_TOOL_LOOP, fx_tool_sync, &s);
  fx_add(&f, &def);
  toolcall_manager_options_t o = fx_options(&f);
  fx_manager(&f, &o);

  toolcall_call_spec_t calls[] = {
      {"h0", "hold", NULL, 0, 0}, {"h1", "hold", NULL, 0, 0}, {"s2", "sync", NULL, 0, 0}};
  fx_batch_t rec = {0};
  assert_int_equal(fx_submit(&f, &rec, calls, 3, NULL, NULL), 0);
  FX_WAIT(&f, f.ends == 1, 3000); /* s2 has ended */
  assert_int_equal(f.ends, 1);
  assert_int_equal(atomic_load(&h.ran), 2);
  assert_int_equal(fx_cancel(&f, rec.batch), 0);
  assert_int_equal(rec.runs, 0);
  FX_WAIT(&f, rec.runs > 0, 3000);
  assert_int_equal(rec.runs, 1);
  assert_int_equal(rec.status, UV_ECANCELED);
  assert_int_equal(atomic_load(&h.cancel_runs), 2);
  assert_int_equal(atomic_load(&h.rc[0]), UV_ECANCELED);
  assert_int_equal(atomic_load(&h.rc[1]), UV_ECANCELED);
  assert_int_equal(rec.st[0], TOOLCALL_CANCELLED);
  assert_int_equal(rec.st[1], TOOLCALL_CANCELLED);
  assert_int_equal(rec.st[2], TOOLCALL_OK);
  assert_string_equal(rec.out[2], "sync");
  fx_batch_done(&rec);
  toolcall_snapshot_t sn = fx_snap(&f);
  assert_int_equal(sn.calls[TOOLCALL_CANCELLED], 2);
  assert_int_equal(sn.tool_calls, 1);
  fx_finish(&f);
}

/* With a cap of 1, only the started loop call gets the cancel fn; the one
 * waiting for the slot just ends cancelled. */
static void test_sched_cancel_loop_waiting(void **state) {
  (void)state;
  fx_t f;
  fx_probe_t h;
  fx_init(&f);
  fx_probe_init(&h, &f);
  h.complete_in_cancel = 1;
  toolcall_tool_t def = fx_def("hold", TOOLCALL_TOOL_LOOP, fx_tool_hold, &h);
  def.cancel = fx_cancel_hold;
  fx_add(&f, &def);
  toolcall_manager_options_t o = fx_options(&f);
  o.max_concurrency = 1;
  fx_manager(&f, &o);
  toolcall_call_spec_t calls[] = {{"h0", "hold", NULL, 0, 0},
                                  {"h1", "hold", NULL, 0, 0}};
  fx_batch_t rec = {0};
  assert_int_equal(fx_submit(&f, &rec, calls, 2, NULL, NULL), 0);
  FX_WAIT(&f, atomic_load(&h.ran) == 1, 3000);
  FX_WAIT(&f, 0, 10);
  assert_int_equal(atomic_load(&h.ran), 1);
  assert_int_equal(fx_cancel(&f, rec.batch), 0);
  FX_WAIT(&f, rec.runs > 0, 3000);
  assert_int_equal(rec.runs, 1);
  assert_int_equal(atomic_load(&h.cancel_runs), 1);
  assert_int_equal(atomic_load(&h.ran), 1);
  assert_int_equal(rec.st[0], TOOLCALL_CANCELLED);
  assert_int_equal(rec.st[1], TOOLCALL_CANCELLED);
  assert_int_equal(rec.dur[1], 0);
  fx_batch_done(&rec);
  FX_WAIT(&f, 0, 10);
  assert_int_equal(atomic_load(&h.ran), 1);
  fx_finish(&f);
}

/* ------------------------------------------------------------------------ */
/* Retries                                                                  */

static atomic_int flaky_ran;

/* {"retry":1}: ask for a retry; else ok. */
static void tool_flaky(toolcall_call_t *call, void *data) {
  (void)data;
  atomic_fetch_add(&flaky_ran, 1);
  if (arg_int(call, "retry"))
    toolcall_call_complete(call, TOOLCALL_RETRY, "try again", 0);
  else
    toolcall_call_complete(call, TOOLCALL_OK, "fine", 0);
}

static void retries_open(fx_t *f) {
  fx_init(f);
  atomic_store(&flaky_ran, 0);
  toolcall_tool_t def = fx_def("flaky", TOOLCALL_TOOL_WORKER, tool_flaky, NULL);
  fx_add(f, &def);
  def.name = "other";
  fx_add(f, &def);
  def.name = "strict";
  def.max_retries = TOOLCALL_NO_RETRIES;
  fx_add(f, &def);
  def.name = "patient";
  def.max_retries = 3;
  fx_add(f, &def);
  toolcall_manager_options_t o = fx_options(f);
  fx_manager(f, &o);
}

#define R "{\"retry\":1}"
#define K "{\"retry\":0}"

/* Submit the given calls (tool, args pairs) with run, return the status. */
static int retry_batch(fx_t *f, toolcall_run_t *run, size_t n,
                       const char *const *spec) {
  toolcall_call_spec_t calls[8];
  char ids[8][16];
  assert_true(n <= 8);
  for (size_t i = 0; i < n; i++) {
    snprintf(ids[i], sizeof(ids[i]), "r%zu", i);
    memset(&calls[i], 0, sizeof(calls[i]));
    calls[i].id = ids[i];
    calls[i].name = spec[2 * i];
    calls[i].arguments = spec[2 * i + 1];
  }
  toolcall_batch_options_t bo;
  toolcall_batch_options_init(&bo);
  bo.run = run;
  fx_batch_t rec = {0};
  fx_run_batch(f, &rec, calls, n, &bo);
  /* The results are all there whatever the status. */
  for (size_t i = 0; i < n; i++) {
    int retry = strcmp(spec[2 * i + 1], R) == 0;
    assert_int_equal(rec.st[i], retry ? TOOLCALL_RETRY : TOOLCALL_OK);
    /* The tool's message for the model, or its output. */
    if (retry)
      assert_string_equal(rec.msg[i], "try again");
    else
      assert_string_equal(rec.out[i], "fine");
  }
  if (rec.status == TOOLCALL_ERETRIES) {
    assert_true(rec.has_error);
    if (strstr(rec.error, spec[0]) == NULL)
      fail_msg("batch error does not name the tool '%s': %s", spec[0],
               rec.error);
  }
  fx_batch_done(&rec);
  return rec.status;
}

static unsigned retries_of(toolcall_run_t *run, const char *tool) {
  unsigned n = 12345;
  assert_int_equal(toolcall_run_retries(run, tool, &n), 0);
  return n;
}

/* Default max_retries (1) across the batches of a run: one retry is
 * allowed, the second in a row fails the batch with TOOLCALL_ERETRIES; an
 * ok in between resets; a batch without the tool leaves its count. */
static void test_sched_retries_run(void **state) {
  (void)state;
  fx_t f;
  retries_open(&f);
  toolcall_run_t *run = NULL;
  assert_int_equal(toolcall_run_new(f.reg, &run), 0);
  assert_non_null(run);
  unsigned cnt;
  assert_int_equal(toolcall_run_retries(run, "nope", &cnt), UV_ENOENT);
  assert_int_equal(retries_of(run, "flaky"), 0);

  const char *r1[] = {"flaky", R};
  const char *k1[] = {"flaky", K};
  const char *o1[] = {"other", K};
  assert_int_equal(retry_batch(&f, run, 1, r1), 0);
  assert_int_equal(retries_of(run, "flaky"), 1);
  assert_int_equal(retry_batch(&f, run, 1, k1), 0);
  assert_int_equal(retries_of(run, "flaky"), 0);
  assert_int_equal(retry_batch(&f, run, 1, r1), 0);
  assert_int_equal(retries_of(run, "flaky"), 1);
  assert_int_equal(retry_batch(&f, run, 1, o1), 0);
  assert_int_equal(retries_of(run, "flaky"), 1);
  assert_int_equal(retry_batch(&f, run, 1, r1), TOOLCALL_ERETRIES);
  toolcall_run_free(run);

  /* An ok next to a retry of the same tool does not reset it. */
  assert_int_equal(toolcall_run_new(f.reg, &run), 0);
  const char *mix[] = {"flaky", K, "flaky", R};
  assert_int_equal(retry_batch(&f, run, 2, mix), 0);
  assert_int_equal(retries_of(run, "flaky"), 1);
  assert_int_equal(retry_batch(&f, run, 2, mix), TOOLCALL_ERETRIES);
  toolcall_run_free(run);
  toolcall_run_free(NULL);

  toolcall_snapshot_t s = fx_snap(&f);
  assert_int_equal(s.calls[TOOLCALL_RETRY], 5);
  assert_int_equal(s.calls[TOOLCALL_OK], 4);
  fx_finish(&f);
}

/* max_retries = 3 allows three in a row; the fourth fails the batch. */
static void test_sched_retries_patient(void **state) {
  (void)state;
  fx_t f;
  retries_open(&f);
  toolcall_run_t *run;
  assert_int_equal(toolcall_run_new(f.reg, &run), 0);
  const char *r1[] = {"patient", R};
  for (unsigned i = 1; i <= 3; i++) {
    assert_int_equal(retry_batch(&f, run, 1, r1), 0);
    assert_int_equal(retries_of(run, "patient"), i);
  }
  assert_int_equal(retry_batch(&f, run, 1, r1), TOOLCALL_ERETRIES);
  toolcall_run_free(run);
  fx_finish(&f);
}

/* Without a run each batch counts on its own: TOOLCALL_NO_RETRIES fails the
 * first batch with a retry, the default allows one per batch (two retries
 * of one tool in one batch count once). */
static void test_sched_retries_no_run(void **state) {
  (void)state;
  fx_t f;
  retries_open(&f);
  const char *s1[] = {"strict", R};
  const char *sk[] = {"strict", K};
  const char *r2[] = {"flaky", R, "flaky", R};
  assert_int_equal(retry_batch(&f, NULL, 1, s1), TOOLCALL_ERETRIES);
  assert_int_equal(retry_batch(&f, NULL, 1, sk), 0);
  assert_int_equal(retry_batch(&f, NULL, 2, r2), 0);
  assert_int_equal(retry_batch(&f, NULL, 2, r2), 0);
  toolcall_run_t *run;
  assert_int_equal(toolcall_run_new(f.reg, &run), 0);
  assert_int_equal(retry_batch(&f, run, 1, s1), TOOLCALL_ERETRIES);
  toolcall_run_free(run);
  fx_finish(&f);
}

/* Arguments that are not a JSON object end TOOLCALL_RETRY without running
 * the tool, with a message, counted under retry, no reservation left; in a
 * run they count as a retry of the tool. */
static void test_sched_retries_bad_json(void **state) {
  (void)state;
  fx_t f;
  retries_open(&f);
  toolcall_limits_t lim;
  toolcall_limits_init(&lim);
  lim.tool_calls = 100;
  assert_int_equal(toolcall_ledger_set_limits(f.ledger, &lim), 0);
  toolcall_call_spec_t calls[] = {
      {"a", "flaky", "{not json", 0, 0}, {"b", "flaky", "[1,2]", 0, 0},
      {"c", "flaky", "", 0, 0},          {"d", "flaky", "null", 0, 0},
      {"e", "flaky", "{} x", 0, 0},      {"f", "flaky", "{\"retry\":0}", 0, 0}};
  fx_batch_t rec = {0};
  fx_run_batch(&f, &rec, calls, 6, NULL);
  assert_int_equal(rec.status, 0);
  for (int i = 0; i < 5; i++) {
    if (rec.st[i] != TOOLCALL_RETRY)
      fail_msg("call %d ('%s'): %s, want retry", i, calls[i].arguments,
               toolcall_status_name(rec.st[i]));
    assert_true(rec.has_msg[i]);
    assert_true(strlen(rec.msg[i]) > 0);
    assert_int_equal(rec.dur[i], 0);
  }
  assert_int_equal(rec.st[5], TOOLCALL_OK);
  assert_int_equal(atomic_load(&flaky_ran), 1); /* only the valid one */
  fx_batch_done(&rec);
  toolcall_snapshot_t s = fx_snap(&f);
  assert_int_equal(s.calls[TOOLCALL_RETRY], 5);
  assert_int_equal(s.reserved_tool_calls, 0);
  assert_int_equal(s.tool_calls, 1);
  fx_assert_conserved(&f);

  toolcall_run_t *run;
  assert_int_equal(toolcall_run_new(f.reg, &run), 0);
  toolcall_batch_options_t bo;
  toolcall_batch_options_init(&bo);
  bo.run = run;
  fx_run_batch(&f, &rec, calls, 1, &bo);
  assert_int_equal(rec.st[0], TOOLCALL_RETRY);
  assert_int_equal(rec.status, 0);
  assert_int_equal(retries_of(run, "flaky"), 1);
  fx_batch_done(&rec);
  fx_run_batch(&f, &rec, calls, 1, &bo);
  assert_int_equal(rec.status, TOOLCALL_ERETRIES);
  fx_batch_done(&rec);
  toolcall_run_free(run);
  assert_int_equal(atomic_load(&flaky_ran), 1);
  fx_finish(&f);
}

/* ------------------------------------------------------------------------ */
/* Close with work in flight                                                */

/* A running worker, a worker queued in the pool, a started loop tool and a
 * call waiting for the cap: close cancels the batch (its callback runs
 * before close_cb), close_cb waits until the worker really returned, and
 * the loop then closes with 0. */
static void test_sched_close_in_flight(void **state) {
  (void)state;
  fx_t f;
  fx_probe_t p, h, q;
  fx_init(&f);
  fx_probe_init(&p, &f);
  fx_probe_init(&h, &f);
  fx_probe_init(&q, &f);
  h.complete_in_cancel = 1;
  toolcall_tool_t def = fx_def("blk", TOOLCALL_TOOL_WORKER, fx_tool_block, &p);
  fx_add(&f, &def);
  def = fx_def("hold", TOOLCALL_TOOL_LOOP, fx_tool_hold, &h);
  def.cancel = fx_cancel_hold;
  fx_add(&f, &def);
  def = fx_def("ok", TOOLCALL_TOOL_WORKER, fx_tool_ok, &q);
  fx_add(&f, &def);
  toolcall_manager_options_t o = fx_options(&f);
  o.max_concurrency = 3;
  fx_manager(&f, &o);
  fx_saturate(&f, 1);

  toolcall_call_spec_t calls[] = {{"run", "blk", NULL, 0, 0},
                                  {"queued", "blk", NULL, 0, 0},
                                  {"loop", "hold", NULL, 0, 0},
                                  {"waiting", "ok", NULL, 0, 0}};
  fx_batch_t rec = {0};
  assert_int_equal(fx_submit(&f, &rec, calls, 4, NULL, NULL), 0);
  FX_WAIT(&f, atomic_load(&p.ran) == 1 && atomic_load(&h.ran) == 1, 3000);
  assert_int_equal(atomic_load(&p.ran), 1);
  assert_int_equal(atomic_load(&h.ran), 1);

  assert_int_equal(fx_close_manager(&f), 0);
  assert_int_equal(rec.runs, 0);
  assert_int_equal(f.close_runs, 0);
  assert_int_equal(fx_close_manager(&f), TOOLCALL_ECLOSING);
  toolcall_error_t err;
  fx_batch_t rec2 = {0};
  assert_int_equal(fx_submit(&f, &rec2, calls, 1, NULL, &err), TOOLCALL_ECLOSING);
  FX_WAIT(&f, rec.runs > 0, 3000);
  assert_int_equal(rec.runs, 1);
  fx_assert_no_failure(&f);
  assert_int_equal(rec.status, UV_ECANCELED);
  for (int i = 0; i < 4; i++)
    assert_int_equal(rec.st[i], TOOLCALL_CANCELLED);
  assert_int_equal(atomic_load(&h.cancel_runs), 1);
  assert_int_equal(atomic_load(&h.rc[2]), UV_ECANCELED);

  /* The running worker has not returned: close_cb must wait. */
  FX_WAIT(&f, 0, 30);
  assert_int_equal(f.close_runs, 0);

  fx_open_gate(&f, 1);
  fx_release_pool(&f);
  FX_WAIT(&f, f.close_runs > 0, 3000);
  assert_int_equal(f.close_runs, 1);
  assert_true(rec.seq < f.close_seq);
  assert_true(p.end_seq[0] < f.close_seq);
  assert_int_equal(atomic_load(&p.ran), 1); /* "queued" never ran */
  assert_int_equal(atomic_load(&q.ran), 0);
  assert_int_equal(atomic_load(&p.rc[0]), UV_ECANCELED);
  assert_int_equal(atomic_load(&p.cancelled_at_end[0]), 1);
  toolcall_snapshot_t s = fx_snap(&f);
  assert_int_equal(s.dispatched, 4);
  assert_int_equal(s.calls[TOOLCALL_CANCELLED], 4);
  fx_batch_done(&rec); /* after the manager is gone: the batch is ours */
  fx_finish(&f);      /* uv_loop_close() == 0 */
}

/* Close while a started loop tool has not completed: the cancel fn runs,
 * and close_cb waits until the tool completes. */
static void test_sched_close_loop_pending(void **state) {
  (void)state;
  fx_t f;
  fx_probe_t h;
  fx_init(&f);
  fx_probe_init(&h, &f);
  toolcall_tool_t def = fx_def("hold", TOOLCALL_TOOL_LOOP, fx_tool_hold, &h);
  def.cancel = fx_cancel_hold;
  fx_add(&f, &def);
  toolcall_manager_options_t o = fx_options(&f);
  fx_manager(&f, &o);
  toolcall_call_spec_t call = {"l", "hold", NULL, 0, 0};
  fx_batch_t rec = {0};
  rec.free_in_cb = 1;
  assert_int_equal(fx_submit(&f, &rec, &call, 1, NULL, NULL), 0);
  FX_WAIT(&f, atomic_load(&h.ran) == 1, 3000);
  assert_int_equal(fx_close_manager(&f), 0);
  FX_WAIT(&f, rec.runs > 0, 3000);
  assert_int_equal(rec.runs, 1);
  assert_int_equal(rec.status, UV_ECANCELED);
  assert_int_equal(rec.st[0], TOOLCALL_CANCELLED);
  assert_int_equal(atomic_load(&h.cancel_runs), 1);
  FX_WAIT(&f, 0, 30);
  assert_int_equal(f.close_runs, 0);
  fx_complete_held(&h, 0, TOOLCALL_OK, "late");
  assert_int_equal(atomic_load(&h.rc[0]), UV_ECANCELED);
  FX_WAIT(&f, f.close_runs > 0, 3000);
  assert_int_equal(f.close_runs, 1);
  fx_finish(&f);
}

/* ------------------------------------------------------------------------ */
/* Event hooks                                                              */

static void tool_fail(toolcall_call_t *call, void *data) {
  (void)data;
  toolcall_call_complete(call, TOOLCALL_TOOL_ERROR, "broken", 0);
}

static void tool_retry(toolcall_call_t *call, void *data) {
  (void)data;
  toolcall_call_complete(call, TOOLCALL_RETRY, "again", 0);
}

/* Every call gets exactly one end event with its final status, including
 * calls that never ran; started calls get one start event before it. */
static void test_sched_hooks(void **state) {
  (void)state;
  fx_t f;
  fx_probe_t p, s, g;
  fx_init(&f);
  fx_probe_init(&p, &f);
  fx_probe_init(&s, &f);
  fx_probe_init(&g, &f);
  toolcall_tool_t def = fx_def("ok", TOOLCALL_TOOL_WORKER, fx_tool_ok, &p);
  fx_add(&f, &def);
  def.name = "limited";
  fx_add(&f, &def);
  def = fx_def("sync", TOOLCALL_TOOL_LOOP, fx_tool_sync, &s);
  fx_add(&f, &def);
  def = fx_def("fail", TOOLCALL_TOOL_WORKER, tool_fail, NULL);
  fx_add(&f, &def);
  def = fx_def("retry", TOOLCALL_TOOL_WORKER, tool_retry, NULL);
  fx_add(&f, &def);
  def = fx_def("guarded", TOOLCALL_TOOL_WORKER, fx_tool_ok, &g);
  def.flags = TOOLCALL_TOOL_REQUIRES_APPROVAL;
  fx_add(&f, &def);
  assert_int_equal(toolcall_ledger_set_tool_limit(f.ledger, "limited", 0), 0);
  toolcall_manager_options_t o = fx_options(&f);
  o.limit_policy = TOOLCALL_POLICY_PARTIAL;
  fx_manager(&f, &o);

  toolcall_call_spec_t calls[] = {
      {"a", "ok", NULL, 0, 0},      {"b", "sync", NULL, 0, 0},
      {"c", "nope", NULL, 0, 0},    {"d", "limited", NULL, 0, 0},
      {"e", "ok", "{bad", 0, 0},    {"f", "guarded", NULL, 0, 0},
      {"g", "fail", NULL, 0, 0},    {"h", "retry", NULL, 0, 0}};
  static const toolcall_status_t want[] = {
      TOOLCALL_OK,       TOOLCALL_OK,       TOOLCALL_UNKNOWN_TOOL,
      TOOLCALL_REJECTED, TOOLCALL_RETRY,    TOOLCALL_DEFERRED,
      TOOLCALL_TOOL_ERROR, TOOLCALL_RETRY};
  fx_batch_t rec = {0};
  fx_run_batch(&f, &rec, calls, 8, NULL);
  for (int i = 0; i < 8; i++)
    if (rec.st[i] != want[i])
      fail_msg("call %d: %s, want %s", i, toolcall_status_name(rec.st[i]),
               toolcall_status_name(want[i]));
  assert_int_equal(f.ends, 8);
  assert_int_equal(f.starts, 4); /* a, b, g, h */
  assert_string_equal(rec.msg[6], "broken");
  assert_string_equal(rec.msg[7], "again");
  for (size_t e = 0; e < f.nev; e++) {
    fx_event_t *x = &f.ev[e];
    if (x->kind == 0)
      assert_true(strchr("abgh", x->id[0]) != NULL);
    /* Each event names the call's tool (the fixture compares every event
     * with its result as well). */
    assert_non_null(x->tool);
    assert_string_equal(x->tool, calls[x->index].name);
    /* The calls that ran have a duration; the others 0. */
    if (x->kind == 1 && strchr("agh", x->id[0]) != NULL)
      assert_true(x->duration_ns > 0);
    if (x->kind == 1 && strchr("cdef", x->id[0]) != NULL)
      assert_int_equal(x->duration_ns, 0);
  }
  assert_int_equal(atomic_load(&g.ran), 0);
  fx_batch_done(&rec);

  fx_finish(&f);
}

/* A start hook that cancels its own batch, at the first call's start:
 * that call ends cancelled before its tool sees it (no worker queued, no
 * loop tool started, no cancel function called), the others never start,
 * the callback runs once. Repeated, so that a batch's memory is reused
 * from a batch whose worker calls the threadpool gave back: a request that
 * was never queued must not be taken for one that was (valgrind and ASan
 * see the difference). */
typedef struct {
  int starts;
  int cancel_rc;
} hook_cancel_t;

static void on_start_cancel(const toolcall_event_t *e) {
  fx_t *f = toolcall_manager_data(e->manager);
  hook_cancel_t *h = f->user;
  fx_on_start(e);
  if (h->starts++ == 0)
    h->cancel_rc = toolcall_batch_cancel(e->batch);
}

static void test_sched_hook_cancels_batch(void **state) {
  (void)state;
  fx_t f;
  fx_probe_t w, l;
  hook_cancel_t h;
  fx_init(&f);
  fx_probe_init(&w, &f);
  fx_probe_init(&l, &f);
  f.user = &h;
  toolcall_tool_t def = fx_def("w", TOOLCALL_TOOL_WORKER, fx_tool_ok, &w);
  fx_add(&f, &def);
  def = fx_def("l", TOOLCALL_TOOL_LOOP, fx_tool_hold, &l);
  def.cancel = fx_cancel_hold;
  fx_add(&f, &def);
  toolcall_manager_options_t o = fx_options(&f);
  o.on_call_start = on_start_cancel;
  o.timeout_ms = 10000; /* every started call enters the timer heap */
  fx_manager(&f, &o);

  const int rounds = 20;
  for (int r = 0; r < rounds; r++) {
    /* Odd rounds: worker calls run and the threadpool takes some back, so
     * the next round's batch may reuse memory holding used requests. */
    if (r % 2 == 1) {
      toolcall_call_spec_t warm[] = {{"x0", "w", NULL, 0, 0},
                                     {"x1", "w", NULL, 0, 0},
                                     {"x2", "w", NULL, 0, 0},
                                     {"x3", "w", NULL, 0, 0}};
      fx_batch_t rec = {0};
      h.starts = 1; /* no cancel for this one */
      fx_saturate(&f, 0);
      assert_int_equal(fx_submit(&f, &rec, warm, 4, NULL, NULL), 0);
      assert_int_equal(fx_cancel(&f, rec.batch), 0); /* uv_cancel: queued */
      FX_WAIT(&f, rec.runs > 0, 5000);
      fx_release_pool(&f);
      assert_int_equal(rec.counts[TOOLCALL_CANCELLED], 4);
      fx_batch_done(&rec);
    }
    const char *first = r % 4 < 2 ? "w" : "l";
    const char *second = r % 4 < 2 ? "l" : "w";
    toolcall_call_spec_t calls[] = {{"a", first, NULL, 0, 0},
                                    {"b", second, NULL, 0, 0},
                                    {"c", "w", NULL, 0, 0},
                                    {"d", "l", NULL, 0, 0}};
    h.starts = 0;
    h.cancel_rc = 1;
    fx_batch_t rec = {0};
    assert_int_equal(fx_submit(&f, &rec, calls, 4, NULL, NULL), 0);
    assert_int_equal(h.cancel_rc, 0);
    assert_int_equal(h.starts, 1); /* the cancel stopped the rest */
    FX_WAIT(&f, rec.runs > 0, 5000);
    assert_int_equal(rec.runs, 1);
    assert_int_equal(rec.status, UV_ECANCELED);
    assert_int_equal(rec.counts[TOOLCALL_CANCELLED], 4);
    for (int i = 0; i < 4; i++)
      assert_int_equal(rec.dur[i], 0);
    assert_string_equal(rec.msg[0], "the call was cancelled before it started");
    fx_batch_done(&rec);
  }
  /* No tool ever had a call (the warm-up workers were taken back while
   * queued), and no cancel function ran. */
  assert_int_equal(atomic_load(&w.ran), 0);
  assert_int_equal(atomic_load(&l.ran), 0);
  assert_int_equal(atomic_load(&l.cancel_runs), 0);
  fx_assert_conserved(&f);
  toolcall_snapshot_t snap = fx_snap(&f);
  assert_int_equal(snap.calls[TOOLCALL_CANCELLED], (uint64_t)rounds * 4 + (uint64_t)(rounds / 2) * 4);
  assert_int_equal(snap.dispatched, snap.calls[TOOLCALL_CANCELLED]);
  fx_finish(&f);
}

/* Hooks on cancelled, timed-out and waiting calls. */
static void test_sched_hooks_cancel_timeout(void **state) {
  (void)state;
  fx_t f;
  fx_probe_t h, t;
  fx_init(&f);
  fx_probe_init(&h, &f);
  fx_probe_init(&t, &f);
  toolcall_tool_t def = fx_def("hold", TOOLCALL_TOOL_LOOP, fx_tool_hold, &h);
  def.cancel = fx_cancel_hold;
  h.complete_in_cancel = 1;
  fx_add(&f, &def);
  def = fx_def("after", TOOLCALL_TOOL_LOOP, tool_after, &t);
  def.cancel = cancel_count;
  fx_add(&f, &def);
  toolcall_manager_options_t o = fx_options(&f);
  o.max_concurrency = 2;
  fx_manager(&f, &o);
  toolcall_call_spec_t calls[] = {{"t", "after", "{\"ms\":100}", 0, 10},
                                  {"h", "hold", NULL, 0, 0},
                                  {"w", "hold", NULL, 0, 0}};
  fx_batch_t rec = {0};
  assert_int_equal(fx_submit(&f, &rec, calls, 3, NULL, NULL), 0);
  /* t times out (it keeps its slot until its timer completes it, so w
   * keeps waiting); then cancel. */
  FX_WAIT(&f, f.ends == 1, 3000);
  assert_int_equal(f.ends, 1);
  assert_int_equal(fx_cancel(&f, rec.batch), 0);
  FX_WAIT(&f, rec.runs > 0, 3000);
  assert_int_equal(rec.runs, 1);
  fx_assert_no_failure(&f);
  assert_int_equal(rec.st[0], TOOLCALL_TIMED_OUT);
  assert_int_equal(rec.st[1], TOOLCALL_CANCELLED);
  assert_int_equal(rec.st[2], TOOLCALL_CANCELLED);
  assert_int_equal(f.ends, 3);
  /* w never started: the timed-out loop call kept its slot. */
  assert_int_equal(atomic_load(&h.ran), 1);
  assert_int_equal(atomic_load(&h.cancel_runs), 1);
  assert_int_equal(f.starts, 2);
  assert_int_equal(rec.dur[2], 0);
  fx_batch_done(&rec);
  FX_WAIT(&f, atomic_load(&t.done) == 1, 3000);
  assert_int_equal(atomic_load(&t.rc[0]), UV_ECANCELED);
  fx_finish(&f);
  assert_int_equal(f.ends, 3);
}

int main(void) {
  /* Before the first uv_queue_work of the process: the pool is sized once. */
  setenv("UV_THREADPOOL_SIZE", "16", 1);
  assert_int_equal(fx_pool_size(), POOL_THREADS);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_sched_cap_workers, fx_teardown),
      cmocka_unit_test_teardown(test_sched_cap_loop, fx_teardown),
      cmocka_unit_test_teardown(test_sched_tool_cap, fx_teardown),
      cmocka_unit_test_teardown(test_sched_call_order, fx_teardown),
      cmocka_unit_test_teardown(test_sched_sequential, fx_teardown),
      cmocka_unit_test_teardown(test_sched_sequential_keeps_order,
                                fx_teardown),
      cmocka_unit_test_teardown(test_sched_sequential_timeout, fx_teardown),
      cmocka_unit_test_teardown(test_sched_timeout_queued, fx_teardown),
      cmocka_unit_test_teardown(test_sched_timeout_running, fx_teardown),
      cmocka_unit_test_teardown(test_sched_timeout_running_freed, fx_teardown),
      cmocka_unit_test_teardown(test_sched_timeout_loop, fx_teardown),
      cmocka_unit_test_teardown(test_sched_timeout_precedence, fx_teardown),
      cmocka_unit_test_teardown(test_sched_timeout_staggered, fx_teardown),
      cmocka_unit_test_teardown(test_sched_timeout_not_while_waiting,
                                fx_teardown),
      cmocka_unit_test_teardown(test_sched_cancel_running_and_queued,
                                fx_teardown),
      cmocka_unit_test_teardown(test_sched_cancel_waiting_for_cap, fx_teardown),
      cmocka_unit_test_teardown(test_sched_cancel_waiting_for_tool_cap,
                                fx_teardown),
      cmocka_unit_test_teardown(test_sched_cancel_loop, fx_teardown),
      cmocka_unit_test_teardown(test_sched_cancel_loop_waiting, fx_teardown),
      cmocka_unit_test_teardown(test_sched_retries_run, fx_teardown),
      cmocka_unit_test_teardown(test_sched_retries_patient, fx_teardown),
      cmocka_unit_test_teardown(test_sched_retries_no_run, fx_teardown),
      cmocka_unit_test_teardown(test_sched_retries_bad_json, fx_teardown),
      cmocka_unit_test_teardown(test_sched_close_in_flight, fx_teardown),
      cmocka_unit_test_teardown(test_sched_close_loop_pending, fx_teardown),
      cmocka_unit_test_teardown(test_sched_hooks, fx_teardown),
      cmocka_unit_test_teardown(test_sched_hooks_cancel_timeout, fx_teardown),
      cmocka_unit_test_teardown(test_sched_hook_cancels_batch, fx_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
