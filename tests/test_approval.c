/* Approval: tools that require the host's approval end TOOLCALL_DEFERRED
 * without running; toolcall_batch_resume() runs the approved ones (with
 * replaced arguments if given, through the same checks and admission) and
 * ends the denied ones TOOLCALL_DENIED with the host's message. Counting:
 * a resumed call counts in `dispatched` twice, once as deferred and once
 * with its final status, so conservation holds. */
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

typedef struct {
  fx_t f;
  fx_probe_t ok;      /* "ok": a plain worker tool */
  fx_probe_t guarded; /* "guarded": worker, requires approval */
  fx_probe_t gloop;   /* "guarded_loop": loop tool, requires approval */
} ax_t;

static void ax_open(ax_t *a, toolcall_limit_policy_t policy) {
  memset(a, 0, sizeof(*a));
  fx_init(&a->f);
  fx_probe_init(&a->ok, &a->f);
  fx_probe_init(&a->guarded, &a->f);
  fx_probe_init(&a->gloop, &a->f);
  toolcall_tool_t def = fx_def("ok", TOOLCALL_TOOL_WORKER, fx_tool_ok, &a->ok);
  fx_add(&a->f, &def);
  def = fx_def("guarded", TOOLCALL_TOOL_WORKER, fx_tool_ok, &a->guarded);
  def.flags = TOOLCALL_TOOL_REQUIRES_APPROVAL;
  def.schema = "{\"type\":\"object\",\"properties\":{\"x\":{\"type\":"
               "\"integer\"}}}";
  fx_add(&a->f, &def);
  def = fx_def("guarded_loop", TOOLCALL_TOOL_LOOP, fx_tool_sync, &a->gloop);
  def.flags = TOOLCALL_TOOL_REQUIRES_APPROVAL;
  fx_add(&a->f, &def);
  toolcall_manager_options_t o = fx_options(&a->f);
  o.limit_policy = policy;
  fx_manager(&a->f, &o);
}

static void set_tool_calls_limit(fx_t *f, int64_t n) {
  toolcall_limits_t lim;
  toolcall_limits_init(&lim);
  lim.tool_calls = n;
  assert_int_equal(toolcall_ledger_set_limits(f->ledger, &lim), 0);
}

static toolcall_decision_t decide(const char *id, const char *tool,
                                  const char *args, int approved,
                                  const char *message) {
  toolcall_decision_t d;
  memset(&d, 0, sizeof(d));
  d.call.id = id;
  d.call.name = tool;
  d.call.arguments = args;
  d.approved = approved;
  d.message = message;
  return d;
}

static void run_resume(fx_t *f, fx_batch_t *rec, const toolcall_decision_t *d,
                       size_t n, const toolcall_batch_options_t *opts) {
  toolcall_error_t err;
  int rc = fx_resume(f, rec, d, n, opts, &err);
  if (rc != 0)
    fail_msg("resume: %s: %s", toolcall_err_name(rc), err.message);
  assert_int_equal(rec->runs, 0); /* never inside resume */
  FX_WAIT(f, rec->runs > 0, 5000);
  assert_int_equal(rec->runs, 1);
  fx_assert_no_failure(f);
}

/* The deferred calls of a batch: they do not run, the others do; counted
 * under deferred, no reservation held. */
static const toolcall_call_spec_t first_batch[] = {
    {"a", "ok", NULL, 0, 0},
    {"g1", "guarded", "{\"x\":1}", 0, 0},
    {"l1", "guarded_loop", NULL, 0, 0},
    {"b", "ok", NULL, 0, 0},
    {"g2", "guarded", "{\"x\":2}", 0, 0}};

static void run_first_batch(ax_t *a, fx_batch_t *rec) {
  fx_run_batch(&a->f, rec, first_batch, 5, NULL);
  assert_int_equal(rec->status, 0);
  assert_int_equal(rec->st[0], TOOLCALL_OK);
  assert_int_equal(rec->st[1], TOOLCALL_DEFERRED);
  assert_int_equal(rec->st[2], TOOLCALL_DEFERRED);
  assert_int_equal(rec->st[3], TOOLCALL_OK);
  assert_int_equal(rec->st[4], TOOLCALL_DEFERRED);
  for (int i = 1; i < 5; i += (i == 2 ? 2 : 1)) {
    assert_true(rec->has_msg[i]);
    assert_true(strlen(rec->msg[i]) > 0);
    assert_int_equal(rec->dur[i], 0);
    assert_string_equal(rec->out[i], "");
  }
  assert_int_equal(atomic_load(&a->guarded.ran), 0);
  assert_int_equal(atomic_load(&a->gloop.ran), 0);
  assert_int_equal(atomic_load(&a->ok.ran), 2);
}

static void test_approval_deferred(void **state) {
  (void)state;
  ax_t a;
  ax_open(&a, TOOLCALL_POLICY_REJECT_BATCH);
  /* A limit that fits the two ok calls only: the deferred ones reserve
   * nothing, so the batch is admitted under reject-batch. */
  set_tool_calls_limit(&a.f, 2);
  fx_batch_t rec = {0};
  run_first_batch(&a, &rec);
  fx_batch_done(&rec);
  toolcall_snapshot_t s = fx_snap(&a.f);
  assert_int_equal(s.dispatched, 5);
  assert_int_equal(s.calls[TOOLCALL_DEFERRED], 3);
  assert_int_equal(s.calls[TOOLCALL_OK], 2);
  assert_int_equal(s.tool_calls, 2);
  assert_int_equal(s.reserved_tool_calls, 0);
  fx_assert_conserved(&a.f);
  assert_int_equal(a.f.starts, 2);
  fx_finish(&a.f);
}

/* Approved calls run, even though their tool requires approval, with the
 * replaced arguments when given; denied calls end TOOLCALL_DENIED with the
 * host's message, or a default one. */
static void test_approval_resume(void **state) {
  (void)state;
  ax_t a;
  ax_open(&a, TOOLCALL_POLICY_REJECT_BATCH);
  fx_batch_t rec = {0};
  run_first_batch(&a, &rec);
  fx_batch_done(&rec);

  toolcall_decision_t d[] = {
      decide("g1", "guarded", "{\"x\":42}", 1, NULL), /* replaced args */
      decide("l1", "guarded_loop", NULL, 1, NULL),
      decide("g2", "guarded", "{\"x\":2}", 0, "the user said no"),
  };
  run_resume(&a.f, &rec, d, 3, NULL);
  assert_int_equal(rec.status, 0);
  assert_int_equal(rec.st[0], TOOLCALL_OK);
  assert_string_equal(rec.out[0], "ok:g1");
  assert_string_equal(a.guarded.seen_args[0], "{\"x\":42}");
  assert_int_equal(rec.st[1], TOOLCALL_OK);
  assert_string_equal(rec.out[1], "sync");
  assert_int_equal(rec.st[2], TOOLCALL_DENIED);
  assert_string_equal(rec.msg[2], "the user said no");
  assert_string_equal(rec.out[2], "");
  assert_int_equal(rec.dur[2], 0);
  assert_int_equal(atomic_load(&a.guarded.ran), 1);
  assert_int_equal(atomic_load(&a.gloop.ran), 1);
  const toolcall_result_t *r = toolcall_batch_result(rec.batch, 2);
  assert_string_equal(r->id, "g2");
  assert_string_equal(r->tool, "guarded");
  fx_batch_done(&rec);

  /* Denied with no message: a default, readable one. */
  toolcall_decision_t d2 = decide("g3", "guarded", NULL, 0, NULL);
  run_resume(&a.f, &rec, &d2, 1, NULL);
  assert_int_equal(rec.status, 0);
  assert_int_equal(rec.st[0], TOOLCALL_DENIED);
  assert_true(rec.has_msg[0]);
  assert_true(strlen(rec.msg[0]) > 0);
  fx_batch_done(&rec);

  /* Approved with the original arguments: the tool sees them. */
  toolcall_decision_t d3 = decide("g4", "guarded", "{\"x\":7}", 1, NULL);
  run_resume(&a.f, &rec, &d3, 1, NULL);
  assert_int_equal(rec.st[0], TOOLCALL_OK);
  assert_string_equal(a.guarded.seen_args[0], "{\"x\":7}");
  fx_batch_done(&rec);
  assert_int_equal(atomic_load(&a.guarded.ran), 2);

  toolcall_snapshot_t s = fx_snap(&a.f);
  /* 5 first + 3 + 1 + 1 resumed: every resumed call counted again. */
  assert_int_equal(s.dispatched, 10);
  assert_int_equal(s.calls[TOOLCALL_DEFERRED], 3);
  assert_int_equal(s.calls[TOOLCALL_DENIED], 2);
  assert_int_equal(s.calls[TOOLCALL_OK], 5);
  assert_int_equal(s.tool_calls, 5);
  fx_assert_conserved(&a.f);
  fx_finish(&a.f);
}

/* Approved calls go through admission: under reject-batch, an approved call
 * over the tool_calls limit fails the resumed batch with TOOLCALL_ELIMIT
 * and does not run; denied calls are not admitted (a spent limit does not
 * refuse them). Under partial, the approved calls that fit run. */
static void test_approval_admission(void **state) {
  (void)state;
  ax_t a;
  ax_open(&a, TOOLCALL_POLICY_REJECT_BATCH);
  set_tool_calls_limit(&a.f, 2);
  fx_batch_t rec = {0};
  run_first_batch(&a, &rec); /* uses both */
  fx_batch_done(&rec);

  toolcall_decision_t d[] = {decide("g1", "guarded", "{\"x\":1}", 1, NULL),
                             decide("g2", "guarded", "{\"x\":2}", 0, "no")};
  run_resume(&a.f, &rec, d, 2, NULL);
  assert_int_equal(rec.status, TOOLCALL_ELIMIT);
  assert_true(rec.has_error);
  assert_non_null(strstr(rec.error, "tool_calls"));
  assert_int_equal(rec.st[0], TOOLCALL_REJECTED);
  assert_int_equal(rec.st[1], TOOLCALL_DENIED);
  assert_string_equal(rec.msg[1], "no");
  assert_int_equal(atomic_load(&a.guarded.ran), 0);
  fx_batch_done(&rec);

  /* Only denials: nothing to admit, so the spent limit refuses nothing. */
  run_resume(&a.f, &rec, &d[1], 1, NULL);
  assert_int_equal(rec.status, 0);
  assert_int_equal(rec.st[0], TOOLCALL_DENIED);
  fx_batch_done(&rec);

  /* Partial: room for one more; the first approved call runs, the second
   * is rejected. */
  set_tool_calls_limit(&a.f, 3);
  toolcall_batch_options_t bo;
  toolcall_batch_options_init(&bo);
  bo.limit_policy = TOOLCALL_POLICY_PARTIAL;
  toolcall_decision_t d2[] = {decide("g1", "guarded", "{\"x\":1}", 1, NULL),
                              decide("l1", "guarded_loop", NULL, 1, NULL)};
  run_resume(&a.f, &rec, d2, 2, &bo);
  assert_int_equal(rec.status, 0);
  assert_int_equal(rec.st[0], TOOLCALL_OK);
  assert_int_equal(rec.st[1], TOOLCALL_REJECTED);
  assert_int_equal(atomic_load(&a.guarded.ran), 1);
  assert_int_equal(atomic_load(&a.gloop.ran), 0);
  fx_batch_done(&rec);

  toolcall_snapshot_t s = fx_snap(&a.f);
  assert_int_equal(s.dispatched, 5 + 2 + 1 + 2);
  assert_int_equal(s.tool_calls, 3);
  assert_int_equal(s.calls[TOOLCALL_REJECTED], 2);
  assert_int_equal(s.calls[TOOLCALL_DENIED], 2);
  assert_int_equal(s.calls[TOOLCALL_DEFERRED], 3);
  assert_int_equal(s.reserved_tool_calls, 0);
  fx_assert_conserved(&a.f);
  fx_finish(&a.f);
}

/* Approved calls get the same argument checks: replaced arguments that are
 * not a JSON object, or break the tool's schema, end TOOLCALL_RETRY without
 * running; replaced arguments that fit run with those arguments. */
static void test_approval_bad_arguments(void **state) {
  (void)state;
  ax_t a;
  ax_open(&a, TOOLCALL_POLICY_REJECT_BATCH);
  toolcall_decision_t d[] = {decide("g1", "guarded", "{not json", 1, NULL),
                             decide("g2", "guarded", "[1]", 1, NULL),
                             decide("g3", "nope", NULL, 1, NULL),
                             decide("g4", "guarded", "{\"x\":\"two\"}", 1, NULL),
                             decide("g5", "guarded", "{\"x\":5}", 1, NULL)};
  fx_batch_t rec = {0};
  run_resume(&a.f, &rec, d, 5, NULL);
  assert_int_equal(rec.st[0], TOOLCALL_RETRY);
  assert_int_equal(rec.st[1], TOOLCALL_RETRY);
  assert_int_equal(rec.st[2], TOOLCALL_UNKNOWN_TOOL);
  assert_int_equal(rec.st[3], TOOLCALL_RETRY); /* x must be an integer */
  assert_non_null(strstr(rec.msg[3], "x"));
  assert_int_equal(rec.st[4], TOOLCALL_OK);
  assert_string_equal(rec.out[4], "ok:g5");
  assert_true(rec.has_msg[0]);
  assert_int_equal(atomic_load(&a.guarded.ran), 1); /* g5 only */
  assert_string_equal(a.guarded.seen_args[4], "{\"x\":5}");
  fx_batch_done(&rec);
  toolcall_snapshot_t s = fx_snap(&a.f);
  assert_int_equal(s.calls[TOOLCALL_RETRY], 3);
  assert_int_equal(s.calls[TOOLCALL_OK], 1);
  assert_int_equal(s.reserved_tool_calls, 0);
  fx_assert_conserved(&a.f);
  fx_finish(&a.f);
}

static void never_cb(toolcall_batch_t *b, int status) {
  (void)b;
  (void)status;
  fail_msg("callback of a refused resume");
}

/* Errors of resume are submit's: NULL, n == 0, duplicate ids, bad ids,
 * closing. Nothing is counted and the callback never runs. */
static void test_approval_resume_errors(void **state) {
  (void)state;
  ax_t a;
  ax_open(&a, TOOLCALL_POLICY_REJECT_BATCH);
  fx_t *f = &a.f;
  toolcall_error_t err;
  toolcall_decision_t d[] = {decide("g1", "guarded", NULL, 1, NULL),
                             decide("g1", "guarded", NULL, 0, NULL)};
  toolcall_call_spec_t c[] = {d[0].call, d[1].call};
  toolcall_batch_t *out = NULL;
#define BOTH(expect, mgr, dd, cc, n, cb)                                       \
  do {                                                                         \
    int rs_ = toolcall_batch_resume((mgr), (dd), (n), NULL, (cb), NULL, &out,  \
                                    &err);                                     \
    int rsub_ = toolcall_batch_submit((mgr), (cc), (n), NULL, (cb), NULL,      \
                                      &out, NULL);                             \
    assert_int_equal(rs_, (expect));                                           \
    assert_int_equal(rsub_, (expect));                                         \
    assert_int_equal(err.code, (expect));                                      \
  } while (0)
  BOTH(UV_EINVAL, NULL, d, c, 1, never_cb);
  BOTH(UV_EINVAL, f->m, NULL, NULL, 1, never_cb);
  BOTH(UV_EINVAL, f->m, d, c, 1, NULL);
  BOTH(TOOLCALL_EEMPTY, f->m, d, c, 0, never_cb);
  BOTH(TOOLCALL_EDUPID, f->m, d, c, 2, never_cb);
  assert_int_equal(err.index, 1);
  toolcall_decision_t bad = decide("", "guarded", NULL, 1, NULL);
  toolcall_call_spec_t badc = bad.call;
  BOTH(UV_EINVAL, f->m, &bad, &badc, 1, never_cb);
  bad.call.id = NULL;
  badc.id = NULL;
  BOTH(UV_EINVAL, f->m, &bad, &badc, 1, never_cb);
  bad = decide("x", "guarded", "{\"a\":\"\xff\"}", 1, NULL);
  badc = bad.call;
  BOTH(UV_EILSEQ, f->m, &bad, &badc, 1, never_cb);
  assert_null(out);
  toolcall_snapshot_t s = fx_snap(f);
  assert_int_equal(s.dispatched, 0);

  assert_int_equal(fx_close_manager(f), 0);
  BOTH(TOOLCALL_ECLOSING, f->m, d, c, 1, never_cb);
#undef BOTH
  FX_WAIT(f, f->close_runs > 0, 3000);
  s = fx_snap(f);
  assert_int_equal(s.dispatched, 0);
  fx_finish(f);
}

/* A deferred call's end event is its only event; a resumed approved call
 * gets a start and an end in the new batch (checked by the fixture). Cancel
 * works on a resumed batch as on any other. */
static void test_approval_events_and_cancel(void **state) {
  (void)state;
  ax_t a;
  memset(&a, 0, sizeof(a));
  fx_init(&a.f);
  fx_probe_init(&a.guarded, &a.f);
  a.guarded.complete_in_cancel = 1;
  toolcall_tool_t def =
      fx_def("held", TOOLCALL_TOOL_LOOP, fx_tool_hold, &a.guarded);
  def.flags = TOOLCALL_TOOL_REQUIRES_APPROVAL;
  def.cancel = fx_cancel_hold;
  fx_add(&a.f, &def);
  toolcall_manager_options_t o = fx_options(&a.f);
  fx_manager(&a.f, &o);

  toolcall_call_spec_t call = {"h", "held", NULL, 0, 0};
  fx_batch_t rec = {0};
  fx_run_batch(&a.f, &rec, &call, 1, NULL);
  assert_int_equal(rec.st[0], TOOLCALL_DEFERRED);
  assert_int_equal(a.f.starts, 0);
  assert_int_equal(a.f.ends, 1);
  fx_batch_done(&rec);

  toolcall_decision_t d = decide("h", "held", NULL, 1, NULL);
  assert_int_equal(fx_resume(&a.f, &rec, &d, 1, NULL, NULL), 0);
  FX_WAIT(&a.f, atomic_load(&a.guarded.ran) == 1, 3000);
  assert_int_equal(atomic_load(&a.guarded.ran), 1);
  assert_int_equal(fx_cancel(&a.f, rec.batch), 0);
  FX_WAIT(&a.f, rec.runs > 0, 3000);
  assert_int_equal(rec.runs, 1);
  assert_int_equal(rec.status, UV_ECANCELED);
  assert_int_equal(rec.st[0], TOOLCALL_CANCELLED);
  assert_int_equal(atomic_load(&a.guarded.cancel_runs), 1);
  assert_int_equal(atomic_load(&a.guarded.rc[0]), UV_ECANCELED);
  fx_batch_done(&rec);
  assert_int_equal(a.f.starts, 1);
  assert_int_equal(a.f.ends, 2);
  toolcall_snapshot_t s = fx_snap(&a.f);
  assert_int_equal(s.dispatched, 2);
  assert_int_equal(s.calls[TOOLCALL_DEFERRED], 1);
  assert_int_equal(s.calls[TOOLCALL_CANCELLED], 1);
  fx_finish(&a.f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_approval_deferred, fx_teardown),
      cmocka_unit_test_teardown(test_approval_resume, fx_teardown),
      cmocka_unit_test_teardown(test_approval_admission, fx_teardown),
      cmocka_unit_test_teardown(test_approval_bad_arguments, fx_teardown),
      cmocka_unit_test_teardown(test_approval_resume_errors, fx_teardown),
      cmocka_unit_test_teardown(test_approval_events_and_cancel, fx_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
