/* Scheduling: the concurrency caps, sequential barriers, timeouts and
 * cancellation. Everything here runs on the loop thread.
 *
 * The ready queue holds batches, not calls: each batch releases its calls
 * in call order from a cursor, so starting a call is O(1) and nothing ever
 * walks a whole batch per completed call. A batch leaves the queue when it
 * has nothing it may release now (all released, or a barrier), and comes
 * back when one of its calls returns, to its place in submit order: calls
 * held back by a barrier do not lose their turn to later batches. */
#include "internal.h"

#include <stdio.h>
#include <string.h>

#define HEAP_NONE UINT32_MAX

static const char msg_cancelled_waiting[] =
    "the call was cancelled before it started";
static const char msg_cancelled_running[] =
    "the call was cancelled while it ran; its result was discarded";
static const char msg_timed_out[] =
    "the tool did not finish in time; its result was discarded";

/* ---- the timer heap: calls by deadline ---- */

static void heap_set(toolcall_manager_t *m, size_t i, toolcall_call_t *c) {
  m->heap[i] = c;
  c->heap_index = (uint32_t)i;
}

static void heap_up(toolcall_manager_t *m, size_t i) {
  toolcall_call_t *c = m->heap[i];
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (m->heap[parent]->deadline <= c->deadline)
      break;
    heap_set(m, i, m->heap[parent]);
    i = parent;
  }
  heap_set(m, i, c);
}

static void heap_down(toolcall_manager_t *m, size_t i) {
  toolcall_call_t *c = m->heap[i];
  for (;;) {
    size_t child = 2 * i + 1;
    if (child >= m->heap_len)
      break;
    if (child + 1 < m->heap_len &&
        m->heap[child + 1]->deadline < m->heap[child]->deadline)
      child++;
    if (c->deadline <= m->heap[child]->deadline)
      break;
    heap_set(m, i, m->heap[child]);
    i = child;
  }
  heap_set(m, i, c);
}

static void heap_remove(toolcall_manager_t *m, toolcall_call_t *c) {
  size_t i = c->heap_index;
  c->heap_index = HEAP_NONE;
  toolcall_call_t *last = m->heap[--m->heap_len];
  if (last == c)
    return;
  heap_set(m, i, last);
  heap_up(m, i);
  heap_down(m, last->heap_index);
}

static void on_timer(uv_timer_t *timer);

/* Arm the timer for the earliest deadline. Removing calls does not re-arm:
 * the timer may fire early and find nothing due, which is cheaper than
 * re-arming on every completion. */
static void timer_arm(toolcall_manager_t *m) {
  if (m->heap_len == 0) {
    uv_timer_stop(&m->timer);
    return;
  }
  uint64_t now = uv_now(m->loop);
  uint64_t due = m->heap[0]->deadline;
  uv_timer_start(&m->timer, on_timer, due > now ? due - now : 0, 0);
}

int toolcall__sched_reserve(toolcall_manager_t *m, size_t k) {
  if (k == 0 || m->heap_cap - m->heap_reserved >= k)
    return 0;
  if (k > SIZE_MAX / 2 / sizeof(*m->heap) - m->heap_reserved)
    return UV_ENOMEM;
  size_t cap = m->heap_cap ? m->heap_cap : 64;
  while (cap < m->heap_reserved + k)
    cap *= 2;
  if (cap > UINT32_MAX)
    return UV_ENOMEM;
  toolcall_call_t **heap = toolcall__realloc(m->heap, cap * sizeof(*heap));
  if (heap == NULL)
    return UV_ENOMEM;
  m->heap = heap;
  m->heap_cap = cap;
  return 0;
}

/* ---- queues ---- */

/* Insert b in submit order. A new batch goes at the tail at once; a batch
 * coming back after a barrier walks back past the later batches still
 * waiting for a slot (once per barrier: see can_release). */
static void ready_push(toolcall_manager_t *m, toolcall_batch_t *b) {
  toolcall_batch_t *prev = m->ready_tail;
  while (prev != NULL && prev->submit_seq > b->submit_seq)
    prev = prev->ready_prev;
  toolcall_batch_t *next = prev != NULL ? prev->ready_next : m->ready_head;
  b->queued = true;
  b->ready_prev = prev;
  b->ready_next = next;
  if (prev != NULL)
    prev->ready_next = b;
  else
    m->ready_head = b;
  if (next != NULL)
    next->ready_prev = b;
  else
    m->ready_tail = b;
}

static void ready_remove(toolcall_manager_t *m, toolcall_batch_t *b) {
  if (!b->queued)
    return;
  b->queued = false;
  if (b->ready_prev != NULL)
    b->ready_prev->ready_next = b->ready_next;
  else
    m->ready_head = b->ready_next;
  if (b->ready_next != NULL)
    b->ready_next->ready_prev = b->ready_prev;
  else
    m->ready_tail = b->ready_prev;
}

static void wait_push(toolcall_manager_t *m, toolcall_call_t *c) {
  uint32_t t = c->tool->index;
  c->sched = TOOLCALL__TOOL_WAIT;
  c->wait_next = NULL;
  c->wait_prev = m->tool_wait_tail[t];
  if (m->tool_wait_tail[t] != NULL)
    m->tool_wait_tail[t]->wait_next = c;
  else
    m->tool_wait_head[t] = c;
  m->tool_wait_tail[t] = c;
}

static void wait_remove(toolcall_manager_t *m, toolcall_call_t *c) {
  uint32_t t = c->tool->index;
  if (c->wait_prev != NULL)
    c->wait_prev->wait_next = c->wait_next;
  else
    m->tool_wait_head[t] = c->wait_next;
  if (c->wait_next != NULL)
    c->wait_next->wait_prev = c->wait_prev;
  else
    m->tool_wait_tail[t] = c->wait_prev;
}

/* ---- starting calls ---- */

static void worker_run(uv_work_t *req);
static void worker_done(uv_work_t *req, int status);

/* *now_ns is read once per burst of starts (0: not yet): a batch's calls
 * start within microseconds of each other, and uv_hrtime() is not free. */
static void start_call(toolcall_manager_t *m, toolcall_call_t *c,
                       uint64_t *now_ns) {
  toolcall_batch_t *b = c->batch;
  c->sched = TOOLCALL__STARTED;
  m->running++;
  if (m->tool_running != NULL)
    m->tool_running[c->tool->index]++;
  /* The running calls hold one reference on the batch between them. */
  if (b->running++ == 0)
    atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
  if (c->timeout_ms != 0) {
    c->deadline = uv_now(m->loop) + c->timeout_ms;
    m->heap[m->heap_len] = c;
    c->heap_index = (uint32_t)m->heap_len++;
    heap_up(m, c->heap_index);
    if (c->heap_index == 0)
      timer_arm(m);
  }
  if (*now_ns == 0)
    *now_ns = uv_hrtime();
  c->start_ns = *now_ns;
  if (m->on_call_start != NULL) {
    toolcall_event_t ev = {m, b, c->index, c->r.id, c->r.tool, TOOLCALL_OK,
                           NULL, 0};
    m->on_call_start(&ev);
    /* The hook cancelled the batch (or closed the manager): the call has
     * ended, and its tool never sees it. It gives its slot back through the
     * completion queue, as a tool's completion would. */
    if (atomic_load_explicit(&c->completed, memory_order_relaxed) ==
        TOOLCALL__BY_LIBRARY) {
      toolcall__manager_post_done(m, c);
      return;
    }
  }
  c->launched = true;
  if (c->tool->kind == TOOLCALL_TOOL_WORKER) {
    c->work->data = c;
    uv_queue_work(m->loop, c->work, worker_run, worker_done);
  } else {
    c->tool->fn(c, c->tool->data);
  }
}

/* Whether b may release a call now, in call order: not if all are
 * released, or a sequential call waits for the calls before it, or the
 * calls after a sequential call wait for it. Skips the calls that need no
 * release (ended early, cancelled). A batch out of the ready queue (held by
 * a barrier) goes back only when this holds, so its walk back to its place
 * in submit order happens once per barrier, not once per returned call. */
static bool can_release(toolcall_batch_t *b) {
  while (b->cursor < b->n && b->calls[b->cursor].sched != TOOLCALL__WAITING)
    b->cursor++;
  if (b->cursor >= b->n || b->seq_running)
    return false;
  if (b->calls[b->cursor].tool->flags & TOOLCALL_TOOL_SEQUENTIAL)
    return b->active == 0;
  return true;
}

/* The next call b may release now (see can_release), or NULL. A running
 * sequential call always counts in b->active, so seq_running implies
 * active > 0. */
static toolcall_call_t *release_next(toolcall_batch_t *b) {
  if (!can_release(b))
    return NULL;
  toolcall_call_t *c = &b->calls[b->cursor++];
  if (c->tool->flags & TOOLCALL_TOOL_SEQUENTIAL)
    b->seq_running = true;
  return c;
}

static bool tool_full(const toolcall_manager_t *m, const toolcall_call_t *c) {
  unsigned cap = c->tool->max_concurrency;
  return cap != 0 && m->tool_running[c->tool->index] >= cap;
}

void toolcall__sched_pump(toolcall_manager_t *m) {
  uint64_t now_ns = 0;
  while (m->ready_head != NULL &&
         (m->max_concurrency == 0 || m->running < m->max_concurrency)) {
    toolcall_batch_t *b = m->ready_head;
    toolcall_call_t *c = release_next(b);
    if (c == NULL) {
      ready_remove(m, b);
      continue;
    }
    b->active++;
    if (m->tool_running != NULL && tool_full(m, c))
      wait_push(m, c);
    else
      start_call(m, c, &now_ns);
  }
}

void toolcall__sched_submit(toolcall_batch_t *b) {
  toolcall_manager_t *m = b->manager;
  b->live_prev = NULL;
  b->live_next = m->live_head;
  if (m->live_head != NULL)
    m->live_head->live_prev = b;
  m->live_head = b;
  m->batches_in_flight++;
  b->submit_seq = ++m->submit_count;
  toolcall__manager_update_ref(m);
  ready_push(m, b);
  toolcall__sched_pump(m);
}

/* ---- ending calls ---- */

static void live_remove(toolcall_manager_t *m, toolcall_batch_t *b) {
  if (b->live_prev != NULL)
    b->live_prev->live_next = b->live_next;
  else
    m->live_head = b->live_next;
  if (b->live_next != NULL)
    b->live_next->live_prev = b->live_prev;
}

/* Consecutive retries per tool, across the batches of a run. */
static void check_retries(toolcall_batch_t *b) {
  const toolcall__tool_t *failed = NULL;
  unsigned count = 0;
  toolcall_run_t *run = b->run;
  if (run == NULL) {
    for (size_t i = 0; i < b->n && failed == NULL; i++) {
      const toolcall_call_t *c = &b->calls[i];
      if (c->r.status == TOOLCALL_RETRY && c->tool != NULL &&
          c->tool->max_retries == 0) {
        failed = c->tool;
        count = 1;
      }
    }
  } else {
    for (size_t i = 0; i < b->n; i++) {
      const toolcall_call_t *c = &b->calls[i];
      if (c->tool == NULL)
        continue;
      if (c->r.status == TOOLCALL_RETRY)
        run->seen[c->tool->index] |= 2;
      else if (c->r.status == TOOLCALL_OK)
        run->seen[c->tool->index] |= 1;
    }
    for (size_t i = 0; i < b->n; i++) {
      const toolcall_call_t *c = &b->calls[i];
      if (c->tool == NULL)
        continue;
      uint32_t t = c->tool->index;
      uint8_t seen = run->seen[t];
      run->seen[t] = 0;
      if (seen & 2) {
        if (run->retries[t] < UINT32_MAX)
          run->retries[t]++;
        if (run->retries[t] > c->tool->max_retries && failed == NULL) {
          failed = c->tool;
          count = run->retries[t];
        }
      } else if (seen & 1) {
        run->retries[t] = 0;
      }
    }
  }
  if (failed != NULL) {
    b->status = TOOLCALL_ERETRIES;
    snprintf(b->message, sizeof(b->message),
             "tool '%s' asked for a retry %u time(s) in a row; its maximum "
             "is %u",
             failed->name, count, failed->max_retries);
  }
}

static void run_callback(toolcall_manager_t *m, toolcall_batch_t *b) {
  m->batches_in_flight--;
  toolcall__manager_update_ref(m);
  b->cb(b, b->status); /* may free b */
  toolcall__manager_maybe_close(m);
}

static void batch_finish(toolcall_batch_t *b, bool direct) {
  toolcall_manager_t *m = b->manager;
  b->finished = true;
  ready_remove(m, b);
  live_remove(m, b);
  if (b->status == 0)
    check_retries(b);
  if (direct) {
    run_callback(m, b);
    return;
  }
  b->due_next = NULL;
  if (m->due_tail != NULL)
    m->due_tail->due_next = b;
  else
    m->due_head = b;
  m->due_tail = b;
  uv_async_send(&m->async);
}

void toolcall__run_due(toolcall_manager_t *m) {
  while (m->due_head != NULL) {
    toolcall_batch_t *b = m->due_head;
    m->due_head = b->due_next;
    if (m->due_head == NULL)
      m->due_tail = NULL;
    run_callback(m, b);
  }
}

void toolcall__call_settle(toolcall_call_t *c, bool direct) {
  toolcall_batch_t *b = c->batch;
  toolcall_manager_t *m = b->manager;
  c->settled = true;
  if (c->timeout_ms != 0) {
    if (c->heap_index != HEAP_NONE)
      heap_remove(m, c);
    m->heap_reserved--;
  }
  toolcall__ledger_finish(m->ledger, c);
  if (m->on_call_end != NULL) {
    toolcall_event_t ev = {m, b, c->index, c->r.id, c->r.tool,
                           c->r.status, c->r.message, c->r.duration_ns};
    m->on_call_end(&ev);
  }
  if (--b->pending == 0)
    batch_finish(b, direct);
}

void toolcall__call_returned(toolcall_call_t *c) {
  toolcall_batch_t *b = c->batch;
  toolcall_manager_t *m = b->manager;
  c->sched = TOOLCALL__RETURNED;
  m->running--;
  b->active--;
  if (c->tool->flags & TOOLCALL_TOOL_SEQUENTIAL)
    b->seq_running = false;
  if (!b->queued && !b->finished && !b->cancelled && can_release(b))
    ready_push(m, b);
  if (m->tool_running != NULL) {
    uint32_t t = c->tool->index;
    m->tool_running[t]--;
    toolcall_call_t *next = m->tool_wait_head[t];
    if (next != NULL && !tool_full(m, next) &&
        (m->max_concurrency == 0 || m->running < m->max_concurrency)) {
      uint64_t now_ns = 0;
      wait_remove(m, next);
      start_call(m, next, &now_ns);
    }
  }
  toolcall__sched_pump(m);
  if (--b->running == 0)
    toolcall__batch_unref(b); /* may free b and c */
  toolcall__manager_update_ref(m);
  toolcall__manager_maybe_close(m);
}

void toolcall__call_dequeued(toolcall_call_t *c) {
  if (c->sched == TOOLCALL__ENDED_EARLY) {
    toolcall__call_settle(c, true);
    return;
  }
  /* A loop tool's completion. If the library ended the call first (timeout,
   * cancel) it was settled then, and this only returns the slot. */
  if (!c->settled)
    toolcall__call_settle(c, true);
  toolcall__call_returned(c);
}

bool toolcall__call_end_by_library(toolcall_call_t *c, toolcall_status_t st,
                                   const char *msg) {
  int expected = TOOLCALL__OPEN;
  if (!atomic_compare_exchange_strong(&c->completed, &expected,
                                      TOOLCALL__BY_LIBRARY))
    return false; /* the tool's result is in, on its way to the loop */
  c->r.status = st;
  c->r.message = msg;
  c->message_owned = false;
  c->r.duration_ns = uv_hrtime() - c->start_ns;
  if (!c->launched) {
    /* Ended by the start hook, before the tool had the call: start_call
     * hands the slot back. */
    c->r.duration_ns = 0;
    if (st == TOOLCALL_CANCELLED)
      c->r.message = msg_cancelled_waiting;
  } else if (c->tool->kind == TOOLCALL_TOOL_WORKER) {
    /* Still in the threadpool's queue: take it back. It never ran; its
     * slot comes back when worker_done sees UV_ECANCELED. */
    if (uv_cancel((uv_req_t *)c->work) == 0)
      c->r.duration_ns = 0;
  } else if (c->tool->cancel != NULL) {
    c->tool->cancel(c, c->tool->data);
  }
  return true;
}

static void on_timer(uv_timer_t *timer) {
  toolcall_manager_t *m = timer->data;
  uint64_t now = uv_now(m->loop);
  while (m->heap_len > 0 && m->heap[0]->deadline <= now) {
    toolcall_call_t *c = m->heap[0];
    heap_remove(m, c);
    if (toolcall__call_end_by_library(c, TOOLCALL_TIMED_OUT, msg_timed_out))
      toolcall__call_settle(c, true);
  }
  timer_arm(m);
}

void toolcall__sched_cancel(toolcall_batch_t *b) {
  toolcall_manager_t *m = b->manager;
  b->cancelled = true;
  if (b->status == 0) {
    b->status = UV_ECANCELED;
    snprintf(b->message, sizeof(b->message), "the batch was cancelled");
  }
  ready_remove(m, b);
  /* b may finish (and be queued for its callback) during the walk, but is
   * not freed before the callback runs. */
  for (size_t i = 0; i < b->n; i++) {
    toolcall_call_t *c = &b->calls[i];
    if (c->settled)
      continue;
    switch (c->sched) {
    case TOOLCALL__TOOL_WAIT:
      wait_remove(m, c);
      b->active--;
      /* fall through */
    case TOOLCALL__WAITING:
      c->sched = TOOLCALL__SKIPPED;
      atomic_store_explicit(&c->completed, TOOLCALL__BY_LIBRARY,
                            memory_order_relaxed);
      c->r.status = TOOLCALL_CANCELLED;
      c->r.message = msg_cancelled_waiting;
      toolcall__call_settle(c, false);
      break;
    case TOOLCALL__STARTED:
      if (toolcall__call_end_by_library(c, TOOLCALL_CANCELLED,
                                        msg_cancelled_running))
        toolcall__call_settle(c, false);
      break;
    default: /* ended early, or returned: its result is on its way */
      break;
    }
  }
  if (b->seq_running && b->active == 0)
    b->seq_running = false;
}

/* ---- workers ---- */

static void worker_run(uv_work_t *req) {
  toolcall_call_t *c = req->data;
  if (atomic_load(&c->completed) != TOOLCALL__OPEN)
    return; /* timed out or cancelled before it ran */
  c->tool->fn(c, c->tool->data);
  toolcall__worker_check(c);
}

static void worker_done(uv_work_t *req, int status) {
  toolcall_call_t *c = req->data;
  (void)status; /* UV_ECANCELED: the library ended it, and it never ran */
  if (!c->settled)
    toolcall__call_settle(c, true);
  toolcall__call_returned(c);
}

/* ---- setup ---- */

int toolcall__sched_init(toolcall_manager_t *m) {
  const toolcall_registry_t *reg = m->registry;
  bool capped = false;
  for (size_t i = 0; i < reg->count; i++)
    capped |= reg->tools[i].max_concurrency != 0;
  if (capped) {
    m->tool_running = toolcall__calloc(reg->count, sizeof(*m->tool_running));
    m->tool_wait_head =
        toolcall__calloc(reg->count, sizeof(*m->tool_wait_head));
    m->tool_wait_tail =
        toolcall__calloc(reg->count, sizeof(*m->tool_wait_tail));
    if (m->tool_running == NULL || m->tool_wait_head == NULL ||
        m->tool_wait_tail == NULL) {
      toolcall__sched_close(m);
      return UV_ENOMEM;
    }
  }
  int rc = uv_timer_init(m->loop, &m->timer);
  if (rc != 0) {
    toolcall__sched_close(m);
    return rc;
  }
  m->timer.data = m;
  uv_unref((uv_handle_t *)&m->timer);
  return 0;
}

/* Free what sched_init and sched_reserve allocated (not the timer). */
void toolcall__sched_close(toolcall_manager_t *m) {
  toolcall__free(m->tool_running);
  toolcall__free(m->tool_wait_head);
  toolcall__free(m->tool_wait_tail);
  toolcall__free(m->heap);
  m->tool_running = NULL;
  m->tool_wait_head = m->tool_wait_tail = NULL;
  m->heap = NULL;
}

/* ---- runs ---- */

int toolcall_run_new(const toolcall_registry_t *reg, toolcall_run_t **out) {
  if (reg == NULL || out == NULL)
    return UV_EINVAL;
  toolcall_run_t *run = toolcall__calloc(1, sizeof(*run));
  if (run == NULL)
    return UV_ENOMEM;
  run->registry = reg;
  run->count = reg->count;
  /* One allocation for both arrays; at least one byte, so that an empty
   * registry still gets a pointer. */
  size_t size = reg->count * (sizeof(unsigned) + 1) + 1;
  run->retries = toolcall__calloc(1, size);
  if (run->retries == NULL) {
    toolcall__free(run);
    return UV_ENOMEM;
  }
  run->seen = (uint8_t *)(run->retries + reg->count);
  *out = run;
  return 0;
}

void toolcall_run_free(toolcall_run_t *run) {
  if (run == NULL)
    return;
  toolcall__free(run->retries);
  toolcall__free(run);
}

int toolcall_run_retries(const toolcall_run_t *run, const char *tool,
                         unsigned *count) {
  if (run == NULL || tool == NULL || count == NULL)
    return UV_EINVAL;
  const toolcall__tool_t *t =
      toolcall__registry_find(run->registry, tool, strlen(tool));
  if (t == NULL || t->index >= run->count)
    return UV_ENOENT;
  *count = run->retries[t->index];
  return 0;
}
