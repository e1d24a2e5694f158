/*
 * toolcall-bench — what toolcall costs, beside what libuv alone costs.
 *
 * Usage: toolcall-bench [--quick] [--json] [--only LIST] [--help]
 *        toolcall-bench --profile SCENARIO N REPS
 *
 *   --quick      short run: 10 ms samples, 3 of each (default: 50 ms, 9)
 *   --json       print one JSON object on stdout instead of the table
 *   --only LIST  comma-separated sections to run: dispatch, counting,
 *                admission, memory, features (default: all). "scaling"
 *                comes with dispatch. Sections not run are absent from the
 *                JSON.
 *   --profile SCENARIO N REPS
 *                for profilers (valgrind --tool=callgrind, perf): set up,
 *                run one batch of N calls once to warm up, then REPS more,
 *                and exit; no table, no checks beyond "every batch ended".
 *                SCENARIO: worker, loop (toolcall, as section 1),
 *                base-worker, base-loop (the bare-libuv baselines),
 *                features-worker, features-loop (as section 6). Per-call
 *                cost without the set-up: profile REPS=R and REPS=0 and
 *                divide the difference by R x N. Prints the time taken on
 *                stderr.
 *
 * Output: the table (or JSON) on stdout; progress on stderr when it is a
 * terminal, and the run's duration on stderr. Exit status 0, 1 if a
 * correctness check failed (figures are printed all the same), 2 for a bad
 * argument. Build: the toolcall-bench target (bench/CMakeLists.txt); it is
 * not a ctest test.
 *
 * Method. Every timing is uv_hrtime() (monotonic, ns). A *sample* repeats
 * one operation (a whole batch, say) until it has taken at least the target
 * time (50 ms; 10 ms with --quick); the repeat count is calibrated first,
 * after a warm-up run. Each figure is the MEDIAN of the samples (9; 3 with
 * --quick); for dispatch the JSON also gives the best (lowest) sample.
 * toolcall and its baseline are sampled alternately, so drift hits both
 * alike, and a dispatch ratio is the median of the per-pair ratios (each
 * toolcall sample over the baseline sample taken right after it), which a
 * noisy neighbour disturbs less than a ratio of two medians. Sections 4 and 5 differ; see there.
 *
 *  1. Dispatch. A batch of N calls of a no-op tool: toolcall_batch_submit()
 *     then uv_run(UV_RUN_DEFAULT) until the batch callback has run (it frees
 *     the batch). Worker tool: toolcall_call_complete(call, OK, NULL, 0) on
 *     the threadpool. Loop tool: the same, synchronously in its start
 *     function. The call specs (ids "c0".."c65535", NULL arguments) are
 *     built once, outside the timing.
 *     Baselines, same loop, same run:
 *       worker: N uv_work_t (preallocated) queued at once with a no-op work
 *               and after_work callback; uv_run until every after_work ran.
 *       loop:   for each of N preallocated items, call a no-op function
 *               (through a pointer) then push the item on a mutex-protected
 *               list and uv_async_send() under the mutex, exactly as toolcall
 *               does; the async callback drains the list. uv_run until all N
 *               are drained.
 *     ratio = median over the samples of (toolcall ns/call / baseline ns/call
 *     of the sample taken right after it).
 *  2. Scaling: ns/call at N=65536 divided by ns/call at N=256 (1.0 = linear).
 *  3. Counting: T threads (1, 2, 4, 8) start together (uv_barrier_t) and
 *     each adds A times: toolcall_ledger_add_usage() on one shared ledger,
 *     or a uv_mutex_t-guarded uint64_t increment, or atomic_fetch_add() on
 *     an _Atomic uint64_t. ns/add = each thread's wall time / A, averaged
 *     over the threads ("per thread"); also the whole run's wall time / all
 *     adds of all threads ("all", the inverse of throughput). With more
 *     threads than CPUs a thread's wall time includes the time it waited
 *     for a CPU; a contended mutex's figures swing from run to run (who
 *     gets the lock back is up to the scheduler).
 *  4. Admission: the cost of admitting a batch against a tool_calls limit.
 *     Only toolcall_batch_submit() is timed (uv_hrtime() before and after),
 *     for loop tools that complete synchronously inside it: submit returns
 *     before the loop runs, and the loop is then run, untimed, to retire
 *     the batch. Three configurations take turns, in a rotating order: limits
 *     unset (A), tool_calls limit INT64_MAX (B: always admits), limits unset
 *     again (A'). Each submit is timed alone; each configuration gets
 *     samples x target worth of submits, summarised by the MEDIAN submit
 *     (robust to the odd preempted one). Admission cost = median(B) -
 *     median(A and A' pooled), per batch and per call; noise = |median(A') -
 *     median(A)|, an A/A difference: a cost below it cannot be told from 0.
 *     This is the *extra* cost of having a limit. The reservation work the
 *     ledger does for every batch, limit or not (one lock, one pass over the
 *     calls), is inside both A and B; its share is in the profile.
 *  5. Memory: a counting allocator is installed with
 *     toolcall_replace_allocator() before anything else. It counts the
 *     bytes the library asks for (not malloc's own overhead) only while the
 *     memory section runs. One batch of 65536 loop tools that do not
 *     complete in their start function (they are completed later, from the
 *     main thread) is submitted. Reported, above the live bytes before the
 *     submit and after subtracting the string bytes passed in (for each
 *     call: id + tool name + arguments "{}" (NULL arguments) + 3 NULs):
 *     peak live bytes during the batch's life, and live bytes with all
 *     65536 calls in flight (after submit returned), each / 65536. Then
 *     the same for one batch of 65536 no-op worker calls, whose live bytes
 *     are read right after submit returned (only the loop frees a batch),
 *     and which carry a threadpool request each.
 *  6. Features: the dispatch of section 1 through a second manager on the
 *     same loop with the features on: its own ledger with a tool_calls
 *     limit of INT64_MAX / 2 (admission runs against a real limit and never
 *     refuses), max_concurrency 256 (calls beyond 256 wait for a slot),
 *     timeout_ms 60000 (every call enters the timer heap; none times out),
 *     and on_call_start / on_call_end hooks that each count (checked:
 *     starts == ends == calls submitted, all ended ok). Beside it, in the
 *     same samples (taken in turn: features, plain, baseline), the plain
 *     toolcall dispatch of section 1 (re-measured, so it may differ a
 *     little from section 1's figure) and the bare-libuv baseline.
 *     feat/plain = features ns/call / plain ns/call; feat/bare = features
 *     ns/call / baseline ns/call.
 *
 * JSON (one object; numbers are ns unless named otherwise; a figure that
 * could not be measured is null):
 *   schema                     "toolcall-bench/1"
 *   quick                      bool
 *   statistic                  "median"
 *   samples                    samples per figure
 *   sample_target_ns           minimum duration of one sample
 *   machine.cpu_model          /proc/cpuinfo "model name"
 *   machine.nproc              CPUs available to the process
 *   machine.libuv_version      uv_version_string()
 *   machine.toolcall_version   toolcall_version_string()
 *   machine.threadpool_size    libuv threadpool threads
 *   machine.uv_hrtime_ns       cost of one uv_hrtime() (toolcall reads the
 *                              clock twice per call)
 *   machine.compiler           "gcc 12.2.0" and the like
 *   machine.build_type         CMAKE_BUILD_TYPE
 *   machine.sanitizer          "none", "address" or "thread"
 *   dispatch.worker[], dispatch.loop[]: one object per batch size, with
 *     batch_size, toolcall_ns_per_call, toolcall_calls_per_s,
 *     toolcall_best_ns_per_call, toolcall_batches_per_sample,
 *     baseline_ns_per_call, baseline_calls_per_s, baseline_best_ns_per_call,
 *     baseline_batches_per_sample, ratio
 *   scaling.worker, scaling.loop: objects with
 *     toolcall (ns/call at 65536 / ns/call at 256), baseline (the same)
 *   counting[]: one object per thread count, with
 *     threads, ledger_ns_per_add, mutex_ns_per_add, atomic_ns_per_add,
 *     ledger_adds_per_thread, mutex_adds_per_thread, atomic_adds_per_thread,
 *     ledger_aggregate_ns_per_add, mutex_aggregate_ns_per_add,
 *     atomic_aggregate_ns_per_add (wall time of the whole run / all adds)
 *   admission[]: one object per batch size, with
 *     batch_size, submit_unlimited_ns_per_batch (A and A' pooled),
 *     submit_limited_ns_per_batch (B), admission_ns_per_batch,
 *     admission_ns_per_call, noise_ns_per_batch, submits_per_config
 *   memory: calls, string_bytes, peak_bytes, in_flight_bytes (both above
 *     the pre-batch baseline, strings included), peak_bytes_per_call,
 *     in_flight_bytes_per_call (strings excluded),
 *     worker_in_flight_bytes_per_call (the same for a batch of worker
 *     calls, strings excluded), allocations_in_submit (of the loop batch),
 *     leaked_bytes (live bytes left after both batches were freed; 0)
 *   features: max_concurrency, timeout_ms, tool_calls_limit (the settings
 *     of the features manager), calls (submitted to it), hook_starts,
 *     hook_ends (times each hook ran), and
 *     features.worker[], features.loop[]: one object per batch size, with
 *     batch_size, features_ns_per_call, features_calls_per_s,
 *     features_best_ns_per_call, features_batches_per_sample,
 *     toolcall_ns_per_call, toolcall_best_ns_per_call,
 *     toolcall_batches_per_sample, baseline_ns_per_call,
 *     baseline_best_ns_per_call, baseline_batches_per_sample,
 *     ratio_to_toolcall (features / toolcall),
 *     ratio_to_baseline (features / baseline)
 *   checks_ok                  bool: every call counted ok exactly once,
 *                              every counter holds what was added, each
 *                              hook ran once per call
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <toolcall.h>

#include <float.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef TOOLCALL_BENCH_BUILD_TYPE
#define TOOLCALL_BENCH_BUILD_TYPE "unknown"
#endif

#if defined(__SANITIZE_ADDRESS__)
#define BENCH_SANITIZER "address"
#elif defined(__SANITIZE_THREAD__)
#define BENCH_SANITIZER "thread"
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BENCH_SANITIZER "address"
#elif __has_feature(thread_sanitizer)
#define BENCH_SANITIZER "thread"
#endif
#endif
#ifndef BENCH_SANITIZER
#define BENCH_SANITIZER "none"
#endif

#if defined(__clang__)
#define BENCH_COMPILER "clang " __clang_version__
#elif defined(__GNUC__)
#define BENCH_COMPILER "gcc " __VERSION__
#else
#define BENCH_COMPILER "unknown"
#endif

#define MAX_BATCH ((size_t)65536)
#define NSIZES 5
#define NADM 3
#define NTHREADS 4
#define MAX_SAMPLES 9

static const size_t k_sizes[NSIZES] = {1, 16, 256, 4096, 65536};
static const size_t k_adm_sizes[NADM] = {1, 16, 256};
static const unsigned k_threads[NTHREADS] = {1, 2, 4, 8};

enum {
  SEC_DISPATCH = 1,
  SEC_COUNTING = 2,
  SEC_ADMISSION = 4,
  SEC_MEMORY = 8,
  SEC_FEATURES = 16
};

/* Section 6: the features manager's settings. */
#define FEAT_MAX_CONCURRENCY ((size_t)256)
#define FEAT_TIMEOUT_MS ((uint64_t)60000)
#define FEAT_TOOL_CALLS_LIMIT (INT64_MAX / 2)

static struct {
  bool quick;
  bool json;
  unsigned sections;
  uint64_t target_ns;
  int samples;
} O;

/* ======================================================================== */
/* Failing loudly                                                           */

static bool checks_ok = true;

/* Progress on stderr, only when it is a terminal. */
static bool progress_on;

#if defined(__GNUC__)
__attribute__((format(printf, 1, 2)))
#endif
static void progress(const char *fmt, ...) {
  if (!progress_on)
    return;
  va_list ap;
  va_start(ap, fmt);
  fputs("\r\033[K  ", stderr);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
}

static void progress_clear(void) {
  if (progress_on)
    fputs("\r\033[K", stderr);
}

static void die(const char *what, int rc, const toolcall_error_t *err) {
  fprintf(stderr, "toolcall-bench: %s failed: %s (%s)%s%s\n", what,
          toolcall_strerror(rc), toolcall_err_name(rc),
          err != NULL ? ": " : "", err != NULL ? err->message : "");
  exit(1);
}

#define CHECK(expr)                                                            \
  do {                                                                         \
    int rc_ = (expr);                                                          \
    if (rc_ != 0)                                                              \
      die(#expr, rc_, NULL);                                                   \
  } while (0)

static void check(bool ok, const char *what) {
  if (!ok) {
    fprintf(stderr, "toolcall-bench: check failed: %s\n", what);
    checks_ok = false;
  }
}

/* ======================================================================== */
/* Counting allocator                                                       */

/* Every block carries a header: its size and whether it was counted, so
 * switching counting on and off never unbalances the books. Counting is on
 * only in the memory section, so the timed sections pay just the header. */
#define HDR ((size_t)_Alignof(max_align_t))
_Static_assert(_Alignof(max_align_t) >= 2 * sizeof(size_t),
               "allocation header too small");

static atomic_bool mem_counting;
static atomic_size_t mem_live;
static atomic_size_t mem_peak;
static atomic_size_t mem_allocs;

static void mem_add(size_t n) {
  size_t live =
      atomic_fetch_add_explicit(&mem_live, n, memory_order_relaxed) + n;
  size_t peak = atomic_load_explicit(&mem_peak, memory_order_relaxed);
  while (live > peak && !atomic_compare_exchange_weak_explicit(
                            &mem_peak, &peak, live, memory_order_relaxed,
                            memory_order_relaxed)) {
  }
  atomic_fetch_add_explicit(&mem_allocs, 1, memory_order_relaxed);
}

static void *hdr_init(char *raw, size_t size) {
  size_t *h = (size_t *)(void *)raw;
  bool counted = atomic_load_explicit(&mem_counting, memory_order_relaxed);
  h[0] = size;
  h[1] = counted;
  if (counted)
    mem_add(size);
  return raw + HDR;
}

static void hdr_release(char *raw) {
  const size_t *h = (const size_t *)(void *)raw;
  if (h[1])
    atomic_fetch_sub_explicit(&mem_live, h[0], memory_order_relaxed);
}

static void *bench_malloc(size_t size) {
  if (size > SIZE_MAX - HDR)
    return NULL;
  char *raw = malloc(HDR + size);
  return raw != NULL ? hdr_init(raw, size) : NULL;
}

static void *bench_calloc(size_t count, size_t size) {
  if (size != 0 && count > (SIZE_MAX - HDR) / size)
    return NULL;
  char *raw = calloc(1, HDR + count * size);
  return raw != NULL ? hdr_init(raw, count * size) : NULL;
}

static void bench_free(void *p) {
  if (p == NULL)
    return;
  char *raw = (char *)p - HDR;
  hdr_release(raw);
  free(raw);
}

static void *bench_realloc(void *p, size_t size) {
  if (p == NULL)
    return bench_malloc(size);
  if (size > SIZE_MAX - HDR)
    return NULL;
  char *raw = (char *)p - HDR;
  size_t old[2];
  memcpy(old, raw, sizeof(old));
  char *nraw = realloc(raw, HDR + size);
  if (nraw == NULL)
    return NULL;
  if (old[1])
    atomic_fetch_sub_explicit(&mem_live, old[0], memory_order_relaxed);
  return hdr_init(nraw, size);
}

/* ======================================================================== */
/* Statistics                                                               */

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median(const double *v, int n) {
  double s[MAX_SAMPLES * 2];
  memcpy(s, v, (size_t)n * sizeof(*s));
  qsort(s, (size_t)n, sizeof(*s), cmp_double);
  return n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
}

static double best(const double *v, int n) {
  double b = v[0];
  for (int i = 1; i < n; i++)
    if (v[i] < b)
      b = v[i];
  return b;
}

/* ======================================================================== */
/* The toolcall side: a loop, three no-op tools, one manager                */

static struct {
  uv_loop_t loop;
  toolcall_registry_t *reg;
  toolcall_manager_t *m;
  char *ids; /* "c0\0c1\0...", MAX_BATCH of them */
  toolcall_call_spec_t *spec_worker, *spec_loop, *spec_hold;
  uint64_t batches_done;
  uint64_t calls_submitted;
} B;

static atomic_int tool_errors;

static void tool_noop_worker(toolcall_call_t *call, void *data) {
  (void)data;
  if (toolcall_call_complete(call, TOOLCALL_OK, NULL, 0) != 0)
    atomic_fetch_add(&tool_errors, 1);
}

static void tool_noop_loop(toolcall_call_t *call, void *data) {
  (void)data;
  if (toolcall_call_complete(call, TOOLCALL_OK, NULL, 0) != 0)
    atomic_fetch_add(&tool_errors, 1);
}

/* Memory section: keep the call in flight; completed later. */
static toolcall_call_t **held;

static void tool_hold(toolcall_call_t *call, void *data) {
  (void)data;
  held[toolcall_call_index(call)] = call;
}

static void on_batch(toolcall_batch_t *batch, int status) {
  size_t n = toolcall_batch_size(batch);
  const toolcall_result_t *last = toolcall_batch_result(batch, n - 1);
  check(status == 0 && last != NULL && last->status == TOOLCALL_OK,
        "a batch ended ok");
  B.batches_done++;
  toolcall_batch_free(batch);
}

static void add_tool(const char *name, toolcall_tool_kind_t kind,
                     toolcall_tool_fn fn) {
  toolcall_tool_t def;
  toolcall_error_t err;
  toolcall_tool_init(&def);
  def.name = name;
  def.kind = kind;
  def.fn = fn;
  int rc = toolcall_registry_add(B.reg, &def, &err);
  if (rc != 0)
    die("toolcall_registry_add", rc, &err);
}

static toolcall_call_spec_t *make_specs(const char *tool) {
  toolcall_call_spec_t *s = calloc(MAX_BATCH, sizeof(*s));
  if (s == NULL)
    die("calloc", UV_ENOMEM, NULL);
  const char *id = B.ids;
  for (size_t i = 0; i < MAX_BATCH; i++) {
    s[i].id = id;
    s[i].name = tool;
    s[i].arguments = NULL; /* "{}" */
    id += strlen(id) + 1;
  }
  return s;
}

static void setup(void) {
  CHECK(uv_loop_init(&B.loop));
  CHECK(toolcall_registry_new(&B.reg));
  add_tool("noop_worker", TOOLCALL_TOOL_WORKER, tool_noop_worker);
  add_tool("noop_loop", TOOLCALL_TOOL_LOOP, tool_noop_loop);
  add_tool("hold_loop", TOOLCALL_TOOL_LOOP, tool_hold);
  toolcall_manager_options_t mo;
  toolcall_manager_options_init(&mo);
  mo.registry = B.reg;
  CHECK(toolcall_manager_new(&B.m, &B.loop, &mo));

  B.ids = malloc(MAX_BATCH * 8);
  if (B.ids == NULL)
    die("malloc", UV_ENOMEM, NULL);
  char *p = B.ids;
  for (size_t i = 0; i < MAX_BATCH; i++)
    p += sprintf(p, "c%zu", i) + 1;
  B.spec_worker = make_specs("noop_worker");
  B.spec_loop = make_specs("noop_loop");
  B.spec_hold = make_specs("hold_loop");
}

static void on_manager_closed(toolcall_manager_t *m) { (void)m; }

static void teardown(void) {
  CHECK(toolcall_manager_close(B.m, on_manager_closed));
  uv_run(&B.loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(&B.loop));
  toolcall_registry_free(B.reg);
  free(B.spec_worker);
  free(B.spec_loop);
  free(B.spec_hold);
  free(B.ids);
}

static void submit(const toolcall_call_spec_t *specs, size_t n) {
  toolcall_error_t err;
  int rc = toolcall_batch_submit(B.m, specs, n, NULL, on_batch, NULL, NULL,
                                 &err);
  if (rc != 0)
    die("toolcall_batch_submit", rc, &err);
  B.calls_submitted += n;
}

/* Run the loop until the batch in flight has finished. */
static void drain(uint64_t expect_done) {
  uv_run(&B.loop, UV_RUN_DEFAULT);
  if (B.batches_done != expect_done) {
    fprintf(stderr, "toolcall-bench: uv_run returned with a batch in flight\n");
    exit(1);
  }
}

static void run_tc_worker(size_t n) {
  uint64_t expect = B.batches_done + 1;
  submit(B.spec_worker, n);
  drain(expect);
}

static void run_tc_loop(size_t n) {
  uint64_t expect = B.batches_done + 1;
  submit(B.spec_loop, n);
  drain(expect);
}

/* ======================================================================== */
/* The features manager (section 6): same loop, same registry               */

static struct {
  toolcall_manager_t *m;
  toolcall_ledger_t *ledger; /* its own, with a tool_calls limit */
  uint64_t calls_submitted;
  uint64_t starts, ends, ends_not_ok; /* by the hooks; loop thread */
} F;

static void feat_on_start(const toolcall_event_t *ev) {
  (void)ev;
  F.starts++;
}

static void feat_on_end(const toolcall_event_t *ev) {
  F.ends++;
  if (ev->status != TOOLCALL_OK)
    F.ends_not_ok++;
}

static void feat_setup(void) {
  toolcall_limits_t lim;
  CHECK(toolcall_ledger_new(&F.ledger));
  toolcall_limits_init(&lim);
  lim.tool_calls = FEAT_TOOL_CALLS_LIMIT;
  CHECK(toolcall_ledger_set_limits(F.ledger, &lim));
  toolcall_manager_options_t mo;
  toolcall_manager_options_init(&mo);
  mo.registry = B.reg;
  mo.ledger = F.ledger;
  mo.max_concurrency = FEAT_MAX_CONCURRENCY;
  mo.timeout_ms = FEAT_TIMEOUT_MS;
  mo.on_call_start = feat_on_start;
  mo.on_call_end = feat_on_end;
  CHECK(toolcall_manager_new(&F.m, &B.loop, &mo));
}

/* Close the manager (on the loop), check its books, free its ledger. */
static void feat_teardown(void) {
  CHECK(toolcall_manager_close(F.m, on_manager_closed));
  uv_run(&B.loop, UV_RUN_DEFAULT);
  toolcall_snapshot_t snap;
  CHECK(toolcall_ledger_snapshot(F.ledger, &snap));
  check(snap.dispatched == F.calls_submitted &&
            snap.calls[TOOLCALL_OK] == F.calls_submitted &&
            snap.tool_calls == F.calls_submitted,
        "features: every call ended ok and was counted once");
  check(snap.reserved_tool_calls == 0, "features: no reservation left");
  check(F.starts == F.calls_submitted && F.ends == F.calls_submitted,
        "features: start hook runs == end hook runs == calls submitted");
  check(F.ends_not_ok == 0, "features: the end hook saw only ok calls");
  toolcall_ledger_free(F.ledger);
  F.ledger = NULL;
  F.m = NULL;
}

static void submit_features(const toolcall_call_spec_t *specs, size_t n) {
  toolcall_error_t err;
  int rc = toolcall_batch_submit(F.m, specs, n, NULL, on_batch, NULL, NULL,
                                 &err);
  if (rc != 0)
    die("toolcall_batch_submit (features)", rc, &err);
  F.calls_submitted += n;
}

static void run_ft_worker(size_t n) {
  uint64_t expect = B.batches_done + 1;
  submit_features(B.spec_worker, n);
  drain(expect);
}

static void run_ft_loop(size_t n) {
  uint64_t expect = B.batches_done + 1;
  submit_features(B.spec_loop, n);
  drain(expect);
}

/* ======================================================================== */
/* The bare-libuv baselines                                                 */

static uv_work_t *base_work;
static size_t base_work_left;

static void base_work_cb(uv_work_t *req) { (void)req; }

static void base_after_work_cb(uv_work_t *req, int status) {
  (void)req;
  (void)status;
  base_work_left--;
}

static void run_base_worker(size_t n) {
  base_work_left = n;
  for (size_t i = 0; i < n; i++)
    CHECK(uv_queue_work(&B.loop, &base_work[i], base_work_cb,
                        base_after_work_cb));
  uv_run(&B.loop, UV_RUN_DEFAULT);
  if (base_work_left != 0) {
    fprintf(stderr, "toolcall-bench: baseline work left over\n");
    exit(1);
  }
}

typedef struct base_item_s {
  struct base_item_s *next;
  size_t index;
} base_item_t;

static struct {
  uv_async_t async;
  uv_mutex_t mu;
  base_item_t *head, *tail;
  size_t left;
  base_item_t *items;
} Q;

static void base_noop_start(base_item_t *item) { (void)item; }
/* Called through a volatile pointer, as toolcall calls a tool's fn. */
static void (*volatile base_start)(base_item_t *) = base_noop_start;

static void base_async_cb(uv_async_t *h) {
  (void)h;
  uv_mutex_lock(&Q.mu);
  base_item_t *it = Q.head;
  Q.head = Q.tail = NULL;
  uv_mutex_unlock(&Q.mu);
  while (it != NULL) {
    base_item_t *next = it->next;
    Q.left--;
    it = next;
  }
  if (Q.left == 0)
    uv_unref((uv_handle_t *)&Q.async);
}

static void run_base_loop(size_t n) {
  Q.left = n;
  uv_ref((uv_handle_t *)&Q.async);
  for (size_t i = 0; i < n; i++) {
    base_item_t *it = &Q.items[i];
    base_start(it);
    it->next = NULL;
    uv_mutex_lock(&Q.mu);
    if (Q.tail != NULL)
      Q.tail->next = it;
    else
      Q.head = it;
    Q.tail = it;
    uv_async_send(&Q.async);
    uv_mutex_unlock(&Q.mu);
  }
  uv_run(&B.loop, UV_RUN_DEFAULT);
  if (Q.left != 0) {
    fprintf(stderr, "toolcall-bench: baseline items left over\n");
    exit(1);
  }
}

static void base_setup(void) {
  base_work = calloc(MAX_BATCH, sizeof(*base_work));
  Q.items = calloc(MAX_BATCH, sizeof(*Q.items));
  if (base_work == NULL || Q.items == NULL)
    die("calloc", UV_ENOMEM, NULL);
  for (size_t i = 0; i < MAX_BATCH; i++)
    Q.items[i].index = i;
  CHECK(uv_mutex_init(&Q.mu));
  CHECK(uv_async_init(&B.loop, &Q.async, base_async_cb));
  uv_unref((uv_handle_t *)&Q.async);
}

static void base_teardown(void) {
  uv_close((uv_handle_t *)&Q.async, NULL);
  uv_run(&B.loop, UV_RUN_DEFAULT);
  uv_mutex_destroy(&Q.mu);
  free(base_work);
  free(Q.items);
}

/* ======================================================================== */
/* Sampling                                                                 */

typedef void (*run_fn)(size_t n);

static uint64_t time_reps(run_fn f, size_t n, uint64_t reps) {
  uint64_t t0 = uv_hrtime();
  for (uint64_t r = 0; r < reps; r++)
    f(n);
  return uv_hrtime() - t0;
}

/* Repetitions for one sample to take >= the target: warm up, then double
 * until a run takes an eighth of it, then scale. */
static uint64_t calibrate(run_fn f, size_t n) {
  f(n);
  uint64_t reps = 1, t;
  while ((t = time_reps(f, n, reps)) < O.target_ns / 8)
    reps *= 2;
  if (t == 0)
    t = 1;
  uint64_t want = (uint64_t)((double)reps * (double)O.target_ns / (double)t);
  return want > reps ? want : reps;
}

/* ======================================================================== */
/* 1 + 2. Dispatch and scaling                                              */

typedef struct {
  size_t n;
  uint64_t reps_tc, reps_base;
  double tc_med, tc_best, base_med, base_best;
  double ratio; /* median over the samples of toolcall / its paired baseline */
} disp_row_t;

static disp_row_t disp[2][NSIZES]; /* [0] worker, [1] loop */

static void bench_dispatch(void) {
  run_fn tc[2] = {run_tc_worker, run_tc_loop};
  run_fn base[2] = {run_base_worker, run_base_loop};
  for (int k = 0; k < 2; k++) {
    for (int s = 0; s < NSIZES; s++) {
      disp_row_t *row = &disp[k][s];
      size_t n = k_sizes[s];
      double a[MAX_SAMPLES], b[MAX_SAMPLES], q[MAX_SAMPLES];
      progress("dispatch %s N=%zu...", k ? "loop" : "worker", n);
      row->n = n;
      row->reps_tc = calibrate(tc[k], n);
      row->reps_base = calibrate(base[k], n);
      for (int i = 0; i < O.samples; i++) {
        a[i] = (double)time_reps(tc[k], n, row->reps_tc) /
               ((double)row->reps_tc * (double)n);
        b[i] = (double)time_reps(base[k], n, row->reps_base) /
               ((double)row->reps_base * (double)n);
        q[i] = b[i] > 0 ? a[i] / b[i] : 0;
      }
      row->ratio = median(q, O.samples);
      row->tc_med = median(a, O.samples);
      row->tc_best = best(a, O.samples);
      row->base_med = median(b, O.samples);
      row->base_best = best(b, O.samples);
    }
  }
}

/* ======================================================================== */
/* 3. Counting                                                              */

enum { CNT_LEDGER, CNT_MUTEX, CNT_ATOMIC, CNT_KINDS };
static const char *const cnt_names[CNT_KINDS] = {"ledger", "mutex", "atomic"};

static struct {
  toolcall_ledger_t *ledger;
  uv_mutex_t mu;
  uint64_t mu_count;
  _Atomic uint64_t at_count;
  uv_barrier_t start;
  uint64_t expect[CNT_KINDS];
} C;

typedef struct {
  int kind;
  uint64_t adds;
  uint64_t t0, t1;
  uint64_t errors;
} cnt_arg_t;

static void cnt_thread(void *p) {
  cnt_arg_t *a = p;
  toolcall_usage_t u;
  memset(&u, 0, sizeof(u));
  u.requests = 1;
  u.input_tokens = 3;
  u.output_tokens = 2;
  uv_barrier_wait(&C.start);
  a->t0 = uv_hrtime();
  switch (a->kind) {
  case CNT_LEDGER:
    for (uint64_t i = 0; i < a->adds; i++)
      if (toolcall_ledger_add_usage(C.ledger, &u) != 0)
        a->errors++;
    break;
  case CNT_MUTEX:
    for (uint64_t i = 0; i < a->adds; i++) {
      uv_mutex_lock(&C.mu);
      C.mu_count++;
      uv_mutex_unlock(&C.mu);
    }
    break;
  default:
    for (uint64_t i = 0; i < a->adds; i++)
      atomic_fetch_add(&C.at_count, 1);
    break;
  }
  a->t1 = uv_hrtime();
}

/* One run: per-thread ns/add averaged over the threads; *aggregate gets
 * the whole run's wall time / all adds. */
static double cnt_run(int kind, unsigned threads, uint64_t adds,
                      double *aggregate) {
  uv_thread_t th[8];
  cnt_arg_t args[8];
  CHECK(uv_barrier_init(&C.start, threads));
  for (unsigned i = 0; i < threads; i++) {
    memset(&args[i], 0, sizeof(args[i]));
    args[i].kind = kind;
    args[i].adds = adds;
    CHECK(uv_thread_create(&th[i], cnt_thread, &args[i]));
  }
  for (unsigned i = 0; i < threads; i++)
    CHECK(uv_thread_join(&th[i]));
  uv_barrier_destroy(&C.start);
  C.expect[kind] += adds * threads;
  double sum = 0;
  uint64_t first = UINT64_MAX, last = 0;
  for (unsigned i = 0; i < threads; i++) {
    check(args[i].errors == 0, "toolcall_ledger_add_usage returned an error");
    sum += (double)(args[i].t1 - args[i].t0) / (double)adds;
    if (args[i].t0 < first)
      first = args[i].t0;
    if (args[i].t1 > last)
      last = args[i].t1;
  }
  if (aggregate != NULL)
    *aggregate = (double)(last - first) / ((double)adds * threads);
  return sum / threads;
}

typedef struct {
  unsigned threads;
  uint64_t adds[CNT_KINDS];
  double med[CNT_KINDS], aggregate[CNT_KINDS];
} cnt_row_t;

static cnt_row_t cnt[NTHREADS];

static void bench_counting(void) {
  CHECK(toolcall_ledger_new(&C.ledger));
  CHECK(uv_mutex_init(&C.mu));
  const uint64_t probe = O.quick ? 5000 : 20000;
  for (int t = 0; t < NTHREADS; t++) {
    cnt_row_t *row = &cnt[t];
    row->threads = k_threads[t];
    for (int k = 0; k < CNT_KINDS; k++) {
      double v[MAX_SAMPLES], g[MAX_SAMPLES];
      progress("counting %s x%u...", cnt_names[k], row->threads);
      /* Calibrate: a probe run gives the wall time per add of one thread
       * (threads run side by side, so the longest thread is the run). */
      uint64_t p0 = uv_hrtime();
      cnt_run(k, row->threads, probe, NULL);
      double per_add = (double)(uv_hrtime() - p0) / (double)probe;
      if (per_add <= 0)
        per_add = 1;
      uint64_t adds = (uint64_t)((double)O.target_ns / per_add);
      if (adds < probe)
        adds = probe;
      row->adds[k] = adds;
      for (int i = 0; i < O.samples; i++)
        v[i] = cnt_run(k, row->threads, adds, &g[i]);
      row->med[k] = median(v, O.samples);
      row->aggregate[k] = median(g, O.samples);
    }
  }
  toolcall_snapshot_t snap;
  CHECK(toolcall_ledger_snapshot(C.ledger, &snap));
  check(snap.usage.requests == C.expect[CNT_LEDGER] &&
            snap.usage.input_tokens == 3 * C.expect[CNT_LEDGER] &&
            snap.usage.output_tokens == 2 * C.expect[CNT_LEDGER],
        "ledger usage == adds made");
  check(C.mu_count == C.expect[CNT_MUTEX], "mutex counter == adds made");
  check(atomic_load(&C.at_count) == C.expect[CNT_ATOMIC],
        "atomic counter == adds made");
  toolcall_ledger_free(C.ledger);
  uv_mutex_destroy(&C.mu);
}

/* ======================================================================== */
/* 4. Admission                                                             */

typedef struct {
  size_t n;
  uint64_t reps; /* submits timed per configuration */
  double unlimited, limited, admission, noise;
} adm_row_t;

static adm_row_t adm[NADM];

/* One repetition: A (no limit), B (tool_calls = INT64_MAX), A' (no limit),
 * in an order that rotates with rep so each takes each position equally
 * often. Only toolcall_batch_submit() is timed; times[c][rep] gets it (or
 * nothing when times is NULL). */
static void adm_rep(size_t n, uint64_t rep, uint64_t *times[3]) {
  toolcall_limits_t lim[2];
  toolcall_ledger_t *l = toolcall_manager_ledger(B.m);
  toolcall_limits_init(&lim[0]);
  toolcall_limits_init(&lim[1]);
  lim[1].tool_calls = INT64_MAX;
  for (int i = 0; i < 3; i++) {
    int c = (int)((rep + (uint64_t)i) % 3);
    CHECK(toolcall_ledger_set_limits(l, &lim[c == 1]));
    uint64_t expect = B.batches_done + 1;
    uint64_t t0 = uv_hrtime();
    submit(B.spec_loop, n);
    uint64_t t1 = uv_hrtime();
    if (times != NULL)
      times[c][rep] = t1 - t0;
    drain(expect);
  }
}

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return (x > y) - (x < y);
}

static double median_u64(uint64_t *v, size_t n) {
  qsort(v, n, sizeof(*v), cmp_u64);
  return n % 2 ? (double)v[n / 2] : ((double)v[n / 2 - 1] + (double)v[n / 2]) / 2;
}

/* Submits are timed one by one and summarised by their median, which
 * shrugs off the odd preempted or interrupted submit; the budget is the
 * same as the other sections' (samples x target). */
static void bench_admission(void) {
  for (int s = 0; s < NADM; s++) {
    adm_row_t *row = &adm[s];
    size_t n = k_adm_sizes[s];
    progress("admission N=%zu...", n);
    row->n = n;
    /* Calibrate on whole repetitions (three submits and their loop runs). */
    adm_rep(n, 0, NULL);
    uint64_t reps = 3, t;
    for (;;) {
      uint64_t t0 = uv_hrtime();
      for (uint64_t r = 0; r < reps; r++)
        adm_rep(n, r, NULL);
      t = uv_hrtime() - t0;
      if (t >= O.target_ns / 8)
        break;
      reps *= 2;
    }
    double want = (double)reps * (double)O.target_ns * O.samples / (double)t;
    row->reps = want > (double)reps ? (uint64_t)want : reps;
    row->reps += (3 - row->reps % 3) % 3; /* whole rotations */
    uint64_t *times[3], *pooled;
    for (int c = 0; c < 3; c++)
      if ((times[c] = malloc(row->reps * sizeof(uint64_t))) == NULL)
        die("malloc", UV_ENOMEM, NULL);
    if ((pooled = malloc(2 * row->reps * sizeof(uint64_t))) == NULL)
      die("malloc", UV_ENOMEM, NULL);
    for (uint64_t r = 0; r < row->reps; r++)
      adm_rep(n, r, times);
    memcpy(pooled, times[0], row->reps * sizeof(uint64_t));
    memcpy(pooled + row->reps, times[2], row->reps * sizeof(uint64_t));
    row->unlimited = median_u64(pooled, 2 * row->reps);
    row->limited = median_u64(times[1], row->reps);
    row->admission = row->limited - row->unlimited;
    double a1 = median_u64(times[0], row->reps);
    double a2 = median_u64(times[2], row->reps);
    row->noise = a1 > a2 ? a1 - a2 : a2 - a1;
    for (int c = 0; c < 3; c++)
      free(times[c]);
    free(pooled);
  }
  toolcall_limits_t none;
  toolcall_limits_init(&none);
  CHECK(toolcall_ledger_set_limits(toolcall_manager_ledger(B.m), &none));
}

/* ======================================================================== */
/* 5. Memory                                                                */

static struct {
  bool done;
  size_t calls;
  size_t string_bytes;
  size_t peak, in_flight, allocs, leaked;
  /* the same batch of worker calls */
  size_t worker_string_bytes, worker_in_flight, worker_leaked;
} mem;

/* The string bytes the library copies for n specs: id + tool name +
 * arguments "{}" (NULL arguments) + 3 NULs each. */
static size_t spec_string_bytes(const toolcall_call_spec_t *specs, size_t n) {
  size_t bytes = 0;
  for (size_t i = 0; i < n; i++)
    bytes += strlen(specs[i].id) + strlen(specs[i].name) + 2 + 3;
  return bytes;
}

static void bench_memory(void) {
  const size_t n = MAX_BATCH;
  held = calloc(n, sizeof(*held));
  if (held == NULL)
    die("calloc", UV_ENOMEM, NULL);
  size_t strings = spec_string_bytes(B.spec_hold, n);

  atomic_store(&mem_live, 0);
  atomic_store(&mem_peak, 0);
  atomic_store(&mem_allocs, 0);
  atomic_store(&mem_counting, true);
  uint64_t expect = B.batches_done + 1;
  submit(B.spec_hold, n);
  size_t in_flight = atomic_load(&mem_live);
  size_t allocs = atomic_load(&mem_allocs);
  for (size_t i = 0; i < n; i++) {
    check(held[i] != NULL, "every held call started");
    if (held[i] != NULL &&
        toolcall_call_complete(held[i], TOOLCALL_OK, NULL, 0) != 0)
      atomic_fetch_add(&tool_errors, 1);
  }
  drain(expect);
  atomic_store(&mem_counting, false);
  /* Live and peak count only blocks allocated while counting was on, so
   * they are already "above the baseline". */
  mem.done = true;
  mem.calls = n;
  mem.string_bytes = strings;
  mem.peak = atomic_load(&mem_peak);
  mem.in_flight = in_flight;
  mem.allocs = allocs;
  mem.leaked = atomic_load(&mem_live);
  check(mem.leaked == 0, "the batch's memory is all freed");
  free(held);
  held = NULL;

  /* Worker calls carry a threadpool request each. Measured right after
   * submit: only the loop frees a batch, so everything the submit allocated
   * is still live then, whatever the workers have done meanwhile. */
  mem.worker_string_bytes = spec_string_bytes(B.spec_worker, n);
  atomic_store(&mem_live, 0);
  atomic_store(&mem_counting, true);
  expect = B.batches_done + 1;
  submit(B.spec_worker, n);
  mem.worker_in_flight = atomic_load(&mem_live);
  drain(expect);
  atomic_store(&mem_counting, false);
  mem.worker_leaked = atomic_load(&mem_live);
  check(mem.worker_leaked == 0, "the worker batch's memory is all freed");
}

/* ======================================================================== */
/* 6. Dispatch with the features on                                         */

typedef struct {
  size_t n;
  uint64_t reps_ft, reps_tc, reps_base;
  double ft_med, ft_best, tc_med, tc_best, base_med, base_best;
} feat_row_t;

static feat_row_t feat[2][NSIZES]; /* [0] worker, [1] loop */

/* As section 1, with a third contender: the three are sampled in turn. */
static void bench_features(void) {
  run_fn ft[2] = {run_ft_worker, run_ft_loop};
  run_fn tc[2] = {run_tc_worker, run_tc_loop};
  run_fn base[2] = {run_base_worker, run_base_loop};
  for (int k = 0; k < 2; k++) {
    for (int s = 0; s < NSIZES; s++) {
      feat_row_t *row = &feat[k][s];
      size_t n = k_sizes[s];
      double a[MAX_SAMPLES], b[MAX_SAMPLES], c[MAX_SAMPLES];
      progress("features %s N=%zu...", k ? "loop" : "worker", n);
      row->n = n;
      row->reps_ft = calibrate(ft[k], n);
      row->reps_tc = calibrate(tc[k], n);
      row->reps_base = calibrate(base[k], n);
      for (int i = 0; i < O.samples; i++) {
        a[i] = (double)time_reps(ft[k], n, row->reps_ft) /
               ((double)row->reps_ft * (double)n);
        b[i] = (double)time_reps(tc[k], n, row->reps_tc) /
               ((double)row->reps_tc * (double)n);
        c[i] = (double)time_reps(base[k], n, row->reps_base) /
               ((double)row->reps_base * (double)n);
      }
      row->ft_med = median(a, O.samples);
      row->ft_best = best(a, O.samples);
      row->tc_med = median(b, O.samples);
      row->tc_best = best(b, O.samples);
      row->base_med = median(c, O.samples);
      row->base_best = best(c, O.samples);
    }
  }
}

/* ======================================================================== */
/* Machine                                                                  */

static char cpu_model[256] = "unknown";

static void read_cpu_model(void) {
  FILE *f = fopen("/proc/cpuinfo", "r");
  char line[512];
  if (f == NULL)
    return;
  while (fgets(line, sizeof(line), f) != NULL) {
    if (strncmp(line, "model name", 10) != 0)
      continue;
    const char *v = strchr(line, ':');
    if (v == NULL)
      continue;
    v++;
    while (*v == ' ' || *v == '\t')
      v++;
    snprintf(cpu_model, sizeof(cpu_model), "%s", v);
    cpu_model[strcspn(cpu_model, "\r\n")] = '\0';
    break;
  }
  fclose(f);
}

static unsigned nproc(void) {
#if UV_VERSION_HEX >= 0x012C00
  return uv_available_parallelism();
#else
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (unsigned)n : 1;
#endif
}

/* The cost of one uv_hrtime() (toolcall takes two per call: the start and
 * the end of the tool), median of the samples. */
static double hrtime_ns;

static void measure_hrtime(void) {
  double v[MAX_SAMPLES];
  const uint64_t reps = O.quick ? 200000 : 1000000;
  for (int i = 0; i < O.samples; i++) {
    uint64_t sink = 0, t0 = uv_hrtime();
    for (uint64_t r = 0; r < reps; r++)
      sink += uv_hrtime();
    v[i] = (double)(uv_hrtime() - t0) / (double)reps;
    if (sink == 0)
      v[i] = 0; /* never: keeps the loop */
  }
  hrtime_ns = median(v, O.samples);
}

/* libuv's own rule: UV_THREADPOOL_SIZE, clamped to 1..1024, default 4. */
static unsigned threadpool_size(void) {
  const char *v = getenv("UV_THREADPOOL_SIZE");
  if (v == NULL)
    return 4;
  long n = strtol(v, NULL, 10);
  if (n < 1)
    n = 1;
  if (n > 1024)
    n = 1024;
  return (unsigned)n;
}

/* ======================================================================== */
/* Output: table                                                            */

static double per_s(double ns) { return ns > 0 ? 1e9 / ns : 0; }

static double ratio(double a, double b) { return b > 0 ? a / b : 0; }

static void print_table(void) {
  printf("toolcall-bench (toolcall %s)%s\n", toolcall_version_string(),
         O.quick ? " --quick" : "");
  printf("machine : %s, nproc %u\n", cpu_model, nproc());
  printf("libuv   : %s, threadpool %u threads, uv_hrtime() %.1f ns\n",
         uv_version_string(), threadpool_size(), hrtime_ns);
  printf("build   : %s, %s, sanitizer %s\n", TOOLCALL_BENCH_BUILD_TYPE,
         BENCH_COMPILER, BENCH_SANITIZER);
  printf("method  : median of %d samples, each >= %.0f ms\n", O.samples,
         (double)O.target_ns / 1e6);

  if (O.sections & SEC_DISPATCH) {
    static const char *const kinds[2] = {"worker", "loop"};
    printf("\n1. Dispatch, no-op tools (submit + uv_run until the batch "
           "callback; baseline: bare libuv)\n");
    printf("%-6s %6s | %10s %12s | %10s %12s | %7s\n", "kind", "batch",
           "tc ns/call", "tc calls/s", "uv ns/call", "uv calls/s", "tc/uv");
    for (int k = 0; k < 2; k++)
      for (int s = 0; s < NSIZES; s++) {
        const disp_row_t *r = &disp[k][s];
        printf("%-6s %6zu | %10.1f %12.0f | %10.1f %12.0f | %7.2f\n",
               kinds[k], r->n, r->tc_med, per_s(r->tc_med), r->base_med,
               per_s(r->base_med), r->ratio);
      }
    printf("   worker baseline: N no-op uv_queue_work at once; loop baseline: "
           "no-op fn + mutex queue +\n   uv_async_send per item, drained in "
           "the async callback.\n");
    printf("\n2. Scaling, ns/call at 65536 / ns/call at 256 (1.00 = "
           "linear)\n");
    printf("%-6s | %8s | %8s\n", "kind", "toolcall", "baseline");
    for (int k = 0; k < 2; k++)
      printf("%-6s | %8.2f | %8.2f\n", kinds[k],
             ratio(disp[k][4].tc_med, disp[k][2].tc_med),
             ratio(disp[k][4].base_med, disp[k][2].base_med));
  }

  if (O.sections & SEC_COUNTING) {
    printf("\n3. Counting, ns per add: per thread = each thread's wall time / "
           "its adds (mean over\n   threads); all = the run's wall time / "
           "all adds of all threads\n");
    printf("%7s | %8s %8s %8s | %8s %8s %8s | %12s\n", "threads",
           "ledger", "mutex", "atomic", "ledger", "mutex", "atomic",
           "ledger/mutex");
    printf("%7s | %26s | %26s | %12s\n", "", "per thread", "all",
           "per thread");
    for (int t = 0; t < NTHREADS; t++) {
      const cnt_row_t *r = &cnt[t];
      printf("%7u | %8.1f %8.1f %8.1f | %8.1f %8.1f %8.1f | %12.2f\n",
             r->threads, r->med[CNT_LEDGER], r->med[CNT_MUTEX],
             r->med[CNT_ATOMIC], r->aggregate[CNT_LEDGER],
             r->aggregate[CNT_MUTEX], r->aggregate[CNT_ATOMIC],
             ratio(r->med[CNT_LEDGER], r->med[CNT_MUTEX]));
    }
    printf("   ledger = toolcall_ledger_add_usage; mutex = uv_mutex_t + "
           "uint64_t; atomic = atomic_fetch_add.\n");
    if (nproc() < k_threads[NTHREADS - 1])
      printf("   note: %u CPUs; with more threads than CPUs a thread's wall "
             "time includes waiting for a CPU.\n",
             nproc());
  }

  if (O.sections & SEC_ADMISSION) {
    printf("\n4. Admission against a tool_calls limit (INT64_MAX, always "
           "admits); toolcall_batch_submit\n   alone, loop tools completing "
           "inside it; cost = limited - unlimited\n");
    printf("%6s | %12s | %12s | %12s | %10s | %12s\n", "batch",
           "submit ns", "+limit ns", "admit ns/b", "ns/call", "A/A noise ns");
    for (int s = 0; s < NADM; s++) {
      const adm_row_t *r = &adm[s];
      printf("%6zu | %12.1f | %12.1f | %12.1f | %10.2f | %12.1f\n", r->n,
             r->unlimited, r->limited, r->admission,
             r->admission / (double)r->n, r->noise);
    }
  }

  if (O.sections & SEC_MEMORY) {
    printf("\n5. Memory, one batch of %zu loop calls in flight (counting "
           "allocator; strings excluded)\n",
           mem.calls);
    printf("   peak live      %10zu B  -> %7.1f B/call\n", mem.peak,
           (double)(mem.peak - mem.string_bytes) / (double)mem.calls);
    printf("   in flight      %10zu B  -> %7.1f B/call\n", mem.in_flight,
           (double)(mem.in_flight - mem.string_bytes) / (double)mem.calls);
    size_t wstrings = mem.worker_string_bytes;
    printf("   worker calls   %10zu B  -> %7.1f B/call  (the same batch of "
           "worker calls, in flight)\n",
           mem.worker_in_flight,
           (double)(mem.worker_in_flight - wstrings) / (double)mem.calls);
    printf("   strings        %10zu B  (ids + tool names + \"{}\" + NULs, "
           "subtracted)\n",
           mem.string_bytes);
    printf("   allocations in submit: %zu; leaked after free: %zu B\n",
           mem.allocs, mem.leaked);
  }

  if (O.sections & SEC_FEATURES) {
    static const char *const kinds[2] = {"worker", "loop"};
    printf("\n6. Dispatch with the features on: own ledger with a tool_calls "
           "limit (INT64_MAX/2),\n   max_concurrency %zu, timeout %" PRIu64
           " ms (every call in the timer heap), start + end hooks;\n   "
           "plain = section 1's toolcall, bare = its baseline, sampled in "
           "turn with features\n",
           FEAT_MAX_CONCURRENCY, FEAT_TIMEOUT_MS);
    printf("%-6s %6s | %10s %12s | %10s | %10s | %10s %9s\n", "kind",
           "batch", "ft ns/call", "ft calls/s", "tc ns/call", "uv ns/call",
           "feat/plain", "feat/bare");
    for (int k = 0; k < 2; k++)
      for (int s = 0; s < NSIZES; s++) {
        const feat_row_t *r = &feat[k][s];
        printf("%-6s %6zu | %10.1f %12.0f | %10.1f | %10.1f | %10.2f "
               "%9.2f\n",
               kinds[k], r->n, r->ft_med, per_s(r->ft_med), r->tc_med,
               r->base_med, ratio(r->ft_med, r->tc_med),
               ratio(r->ft_med, r->base_med));
      }
    printf("   hooks: %" PRIu64 " starts, %" PRIu64 " ends, %" PRIu64
           " calls\n",
           F.starts, F.ends, F.calls_submitted);
  }
  printf("\nchecks: %s\n", checks_ok ? "ok" : "FAILED");
}

/* ======================================================================== */
/* Output: JSON                                                             */

static void json_str(const char *s) {
  putchar('"');
  for (; *s != '\0'; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\')
      printf("\\%c", c);
    else if (c < 0x20)
      printf("\\u%04x", c);
    else
      putchar(c);
  }
  putchar('"');
}

static void json_num(double v) {
  if (v != v || v > DBL_MAX || v < -DBL_MAX)
    fputs("null", stdout);
  else
    printf("%.3f", v);
}

static void json_key_num(const char *key, double v, bool comma) {
  printf("\"%s\": ", key);
  json_num(v);
  if (comma)
    fputs(", ", stdout);
}

static void print_json(void) {
  printf("{\"schema\": \"toolcall-bench/1\", \"quick\": %s, "
         "\"statistic\": \"median\", \"samples\": %d, "
         "\"sample_target_ns\": %" PRIu64 ",\n",
         O.quick ? "true" : "false", O.samples, O.target_ns);
  printf(" \"machine\": {\"cpu_model\": ");
  json_str(cpu_model);
  printf(", \"nproc\": %u, \"libuv_version\": ", nproc());
  json_str(uv_version_string());
  printf(", \"toolcall_version\": ");
  json_str(toolcall_version_string());
  printf(", \"threadpool_size\": %u, ", threadpool_size());
  json_key_num("uv_hrtime_ns", hrtime_ns, false);
  printf(", \"compiler\": ");
  json_str(BENCH_COMPILER);
  printf(", \"build_type\": ");
  json_str(TOOLCALL_BENCH_BUILD_TYPE);
  printf(", \"sanitizer\": ");
  json_str(BENCH_SANITIZER);
  printf("},\n");

  if (O.sections & SEC_DISPATCH) {
    static const char *const kinds[2] = {"worker", "loop"};
    printf(" \"dispatch\": {");
    for (int k = 0; k < 2; k++) {
      printf("%s\n  \"%s\": [", k ? "," : "", kinds[k]);
      for (int s = 0; s < NSIZES; s++) {
        const disp_row_t *r = &disp[k][s];
        printf("%s\n   {\"batch_size\": %zu, ", s ? "," : "", r->n);
        json_key_num("toolcall_ns_per_call", r->tc_med, true);
        json_key_num("toolcall_calls_per_s", per_s(r->tc_med), true);
        json_key_num("toolcall_best_ns_per_call", r->tc_best, true);
        printf("\"toolcall_batches_per_sample\": %" PRIu64 ", ", r->reps_tc);
        json_key_num("baseline_ns_per_call", r->base_med, true);
        json_key_num("baseline_calls_per_s", per_s(r->base_med), true);
        json_key_num("baseline_best_ns_per_call", r->base_best, true);
        printf("\"baseline_batches_per_sample\": %" PRIu64 ", ",
               r->reps_base);
        json_key_num("ratio", r->ratio, false);
        printf("}");
      }
      printf("]");
    }
    printf("},\n \"scaling\": {");
    for (int k = 0; k < 2; k++) {
      printf("%s\"%s\": {", k ? ", " : "", kinds[k]);
      json_key_num("toolcall", ratio(disp[k][4].tc_med, disp[k][2].tc_med),
                   true);
      json_key_num("baseline",
                   ratio(disp[k][4].base_med, disp[k][2].base_med), false);
      printf("}");
    }
    printf("},\n");
  }

  if (O.sections & SEC_COUNTING) {
    printf(" \"counting\": [");
    for (int t = 0; t < NTHREADS; t++) {
      const cnt_row_t *r = &cnt[t];
      printf("%s\n  {\"threads\": %u, ", t ? "," : "", r->threads);
      for (int k = 0; k < CNT_KINDS; k++) {
        char key[64];
        snprintf(key, sizeof(key), "%s_ns_per_add", cnt_names[k]);
        json_key_num(key, r->med[k], true);
      }
      for (int k = 0; k < CNT_KINDS; k++)
        printf("\"%s_adds_per_thread\": %" PRIu64 ", ", cnt_names[k],
               r->adds[k]);
      for (int k = 0; k < CNT_KINDS; k++) {
        char key[64];
        snprintf(key, sizeof(key), "%s_aggregate_ns_per_add", cnt_names[k]);
        json_key_num(key, r->aggregate[k], k + 1 < CNT_KINDS);
      }
      printf("}");
    }
    printf("],\n");
  }

  if (O.sections & SEC_ADMISSION) {
    printf(" \"admission\": [");
    for (int s = 0; s < NADM; s++) {
      const adm_row_t *r = &adm[s];
      printf("%s\n  {\"batch_size\": %zu, ", s ? "," : "", r->n);
      json_key_num("submit_unlimited_ns_per_batch", r->unlimited, true);
      json_key_num("submit_limited_ns_per_batch", r->limited, true);
      json_key_num("admission_ns_per_batch", r->admission, true);
      json_key_num("admission_ns_per_call", r->admission / (double)r->n,
                   true);
      json_key_num("noise_ns_per_batch", r->noise, true);
      printf("\"submits_per_config\": %" PRIu64 "}", r->reps);
    }
    printf("],\n");
  }

  if (O.sections & SEC_MEMORY) {
    printf(" \"memory\": {\"calls\": %zu, \"string_bytes\": %zu, "
           "\"peak_bytes\": %zu, \"in_flight_bytes\": %zu, ",
           mem.calls, mem.string_bytes, mem.peak, mem.in_flight);
    json_key_num("peak_bytes_per_call",
                 (double)(mem.peak - mem.string_bytes) / (double)mem.calls,
                 true);
    json_key_num("in_flight_bytes_per_call",
                 (double)(mem.in_flight - mem.string_bytes) /
                     (double)mem.calls,
                 true);
    size_t wstrings = mem.worker_string_bytes;
    json_key_num("worker_in_flight_bytes_per_call",
                 (double)(mem.worker_in_flight - wstrings) / (double)mem.calls,
                 true);
    printf("\"allocations_in_submit\": %zu, \"leaked_bytes\": %zu},\n",
           mem.allocs, mem.leaked + mem.worker_leaked);
  }

  if (O.sections & SEC_FEATURES) {
    static const char *const kinds[2] = {"worker", "loop"};
    printf(" \"features\": {\"max_concurrency\": %zu, \"timeout_ms\": %" PRIu64
           ", \"tool_calls_limit\": %" PRId64 ", \"calls\": %" PRIu64
           ", \"hook_starts\": %" PRIu64 ", \"hook_ends\": %" PRIu64,
           FEAT_MAX_CONCURRENCY, FEAT_TIMEOUT_MS, (int64_t)FEAT_TOOL_CALLS_LIMIT,
           F.calls_submitted, F.starts, F.ends);
    for (int k = 0; k < 2; k++) {
      printf(",\n  \"%s\": [", kinds[k]);
      for (int s = 0; s < NSIZES; s++) {
        const feat_row_t *r = &feat[k][s];
        printf("%s\n   {\"batch_size\": %zu, ", s ? "," : "", r->n);
        json_key_num("features_ns_per_call", r->ft_med, true);
        json_key_num("features_calls_per_s", per_s(r->ft_med), true);
        json_key_num("features_best_ns_per_call", r->ft_best, true);
        printf("\"features_batches_per_sample\": %" PRIu64 ", ", r->reps_ft);
        json_key_num("toolcall_ns_per_call", r->tc_med, true);
        json_key_num("toolcall_best_ns_per_call", r->tc_best, true);
        printf("\"toolcall_batches_per_sample\": %" PRIu64 ", ", r->reps_tc);
        json_key_num("baseline_ns_per_call", r->base_med, true);
        json_key_num("baseline_best_ns_per_call", r->base_best, true);
        printf("\"baseline_batches_per_sample\": %" PRIu64 ", ",
               r->reps_base);
        json_key_num("ratio_to_toolcall", ratio(r->ft_med, r->tc_med), true);
        json_key_num("ratio_to_baseline", ratio(r->ft_med, r->base_med),
                     false);
        printf("}");
      }
      printf("]");
    }
    printf("},\n");
  }
  printf(" \"checks_ok\": %s}\n", checks_ok ? "true" : "false");
}

/* ======================================================================== */
/* main                                                                     */

static void usage(FILE *f) {
  fprintf(f,
          "usage: toolcall-bench [--quick] [--json] [--only LIST]\n"
          "       toolcall-bench --profile SCENARIO N REPS\n"
          "  LIST: comma-separated of dispatch, counting, admission, "
          "memory, features\n"
          "  --profile: for profilers (callgrind, perf); runs one batch of N "
          "calls once to\n"
          "    warm up, then REPS more, and exits without a table. "
          "SCENARIO: worker, loop,\n"
          "    base-worker, base-loop, features-worker, features-loop. "
          "Cost per call without\n"
          "    the set-up: (cost at REPS=R - cost at REPS=0) / (R x N).\n");
}

static unsigned parse_sections(const char *list) {
  unsigned s = 0;
  char buf[256];
  snprintf(buf, sizeof(buf), "%s", list);
  for (char *tok = strtok(buf, ","); tok != NULL; tok = strtok(NULL, ",")) {
    if (strcmp(tok, "dispatch") == 0 || strcmp(tok, "scaling") == 0)
      s |= SEC_DISPATCH;
    else if (strcmp(tok, "counting") == 0)
      s |= SEC_COUNTING;
    else if (strcmp(tok, "admission") == 0)
      s |= SEC_ADMISSION;
    else if (strcmp(tok, "memory") == 0)
      s |= SEC_MEMORY;
    else if (strcmp(tok, "features") == 0)
      s |= SEC_FEATURES;
    else {
      fprintf(stderr, "toolcall-bench: unknown section '%s'\n", tok);
      usage(stderr);
      exit(2);
    }
  }
  return s;
}

/* --profile: one scenario, nothing else. */
static const struct {
  const char *name;
  run_fn fn;
  bool features;
} k_profiles[] = {
    {"worker", run_tc_worker, false},
    {"loop", run_tc_loop, false},
    {"base-worker", run_base_worker, false},
    {"base-loop", run_base_loop, false},
    {"features-worker", run_ft_worker, true},
    {"features-loop", run_ft_loop, true},
};

static int profile_main(const char *scenario, const char *n_arg,
                        const char *reps_arg) {
  char *end;
  size_t p = 0, np = sizeof(k_profiles) / sizeof(k_profiles[0]);
  while (p < np && strcmp(k_profiles[p].name, scenario) != 0)
    p++;
  unsigned long long n = strtoull(n_arg, &end, 10);
  bool n_ok = *n_arg != '\0' && *end == '\0' && n >= 1 && n <= MAX_BATCH;
  unsigned long long reps = strtoull(reps_arg, &end, 10);
  bool reps_ok = *reps_arg != '\0' && *end == '\0';
  if (p == np || !n_ok || !reps_ok) {
    fprintf(stderr, "toolcall-bench: --profile SCENARIO N REPS: bad %s\n",
            p == np ? "SCENARIO" : !n_ok ? "N (1..65536)" : "REPS");
    usage(stderr);
    return 2;
  }
  setup();
  base_setup();
  if (k_profiles[p].features)
    feat_setup();
  k_profiles[p].fn((size_t)n); /* warm-up */
  uint64_t t = time_reps(k_profiles[p].fn, (size_t)n, reps);
  if (k_profiles[p].features)
    feat_teardown();
  base_teardown();
  teardown();
  fprintf(stderr, "toolcall-bench: --profile %s N=%llu REPS=%llu: %.1f ns/call\n",
          scenario, n, reps,
          reps > 0 ? (double)t / ((double)reps * (double)n) : 0.0);
  return checks_ok ? 0 : 1;
}

int main(int argc, char **argv) {
  /* First, before any other toolcall function and any toolcall object. */
  CHECK(toolcall_replace_allocator(bench_malloc, bench_realloc, bench_calloc,
                                   bench_free));
  O.sections =
      SEC_DISPATCH | SEC_COUNTING | SEC_ADMISSION | SEC_MEMORY | SEC_FEATURES;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--quick") == 0) {
      O.quick = true;
    } else if (strcmp(argv[i], "--json") == 0) {
      O.json = true;
    } else if (strcmp(argv[i], "--only") == 0 && i + 1 < argc) {
      O.sections = parse_sections(argv[++i]);
    } else if (strcmp(argv[i], "--profile") == 0 && i + 3 < argc &&
               argc == 5 && i == 1) {
      return profile_main(argv[2], argv[3], argv[4]);
    } else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
      usage(stdout);
      return 0;
    } else {
      usage(stderr);
      return 2;
    }
  }
  O.target_ns = O.quick ? 10000000u : 50000000u;
  O.samples = O.quick ? 3 : MAX_SAMPLES;
  read_cpu_model();
  progress_on = isatty(STDERR_FILENO) != 0;

  uint64_t t_start = uv_hrtime();
  measure_hrtime();
  setup();
  base_setup();
  if (O.sections & SEC_DISPATCH)
    bench_dispatch();
  if (O.sections & SEC_COUNTING)
    bench_counting();
  if (O.sections & SEC_ADMISSION)
    bench_admission();
  if (O.sections & SEC_MEMORY)
    bench_memory();
  if (O.sections & SEC_FEATURES) {
    feat_setup();
    bench_features();
    feat_teardown();
  }

  /* Every call the manager ran ended ok, was counted once, and nothing is
   * left reserved. */
  toolcall_snapshot_t snap;
  CHECK(toolcall_ledger_snapshot(toolcall_manager_ledger(B.m), &snap));
  check(snap.dispatched == B.calls_submitted, "dispatched == calls submitted");
  check(snap.calls[TOOLCALL_OK] == B.calls_submitted &&
            snap.tool_calls == B.calls_submitted,
        "every call ended ok and was counted once");
  check(snap.reserved_tool_calls == 0, "no reservation left");
  check(atomic_load(&tool_errors) == 0,
        "toolcall_call_complete never failed");
  base_teardown();
  teardown();

  progress_clear();
  if (O.json)
    print_json();
  else
    print_table();
  fprintf(stderr, "toolcall-bench: run took %.1f s\n",
          (double)(uv_hrtime() - t_start) / 1e9);
  return checks_ok ? 0 : 1;
}
