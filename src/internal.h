/* Internal declarations shared by the library's source files. */
#ifndef TOOLCALL_INTERNAL_H
#define TOOLCALL_INTERNAL_H

#include "toolcall.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- allocator (alloc.c) ---- */
void *toolcall__malloc(size_t size);
void *toolcall__calloc(size_t count, size_t size);
void *toolcall__realloc(void *ptr, size_t size);
void toolcall__free(void *ptr);
char *toolcall__strdup(const char *s);
char *toolcall__strndup(const char *s, size_t n);

/* ---- errors (error.c) ---- */
/* Fill err (if not NULL) and return code, so callers can `return
 * toolcall__fail(err, code, index, "fmt", ...)`. */
int toolcall__fail(toolcall_error_t *err, int code, size_t index,
                   const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;

/* ---- text (text.c) ---- */
/* True if s[0..len) is well-formed UTF-8 with no NUL byte. */
bool toolcall__utf8_valid(const char *s, size_t len);
/* The longest prefix of s[0..len) no longer than max bytes that does not
 * split a UTF-8 sequence. */
size_t toolcall__utf8_prefix(const char *s, size_t len, size_t max);
uint32_t toolcall__hash(const char *s, size_t len);
uint32_t toolcall__hash_key(const char *s, size_t len);

/* ---- JSON syntax (json.c) ---- */
/* True if text[0..len) is exactly one JSON object; otherwise false, with a
 * sentence for the model in msg. Allocates nothing. "{}", the arguments of
 * most argument-less calls, is answered without a call. */
bool toolcall__json_object_scan(const char *text, size_t len, char *msg,
                                size_t msglen);
static inline bool toolcall__json_object_check(const char *text, size_t len,
                                               char *msg, size_t msglen) {
  return (len == 2 && text[0] == '{' && text[1] == '}') ||
         toolcall__json_object_scan(text, len, msg, msglen);
}

/* ---- schemas (schema.c) ---- */
typedef struct toolcall__schema_s toolcall__schema_t;
/* True if text[0..len) is a JSON object that the schema accepts;
 * otherwise false, with "$.path: rule broken" in msg (json.c). */
bool toolcall__schema_check(const toolcall__schema_t *schema, const char *text,
                            size_t len, char *msg, size_t msglen);

/* ---- registry (registry.c) ---- */
typedef struct {
  char *name;
  size_t name_len;
  char *description;
  char *schema;
  toolcall__schema_t *compiled; /* NULL: any JSON object */
  toolcall_tool_kind_t kind;
  toolcall_tool_fn fn;
  void *data;
  unsigned flags;
  uint64_t timeout_ms;   /* 0: the manager's */
  unsigned max_retries;  /* resolved: consecutive retries allowed */
  unsigned max_concurrency;
  toolcall_tool_cancel_fn cancel;
  uint32_t index;        /* in registration order */
} toolcall__tool_t;

struct toolcall_registry_s {
  toolcall__tool_t *tools; /* registration order */
  size_t count;
  size_t cap;
  uint32_t *slots; /* open addressing: tool index + 1, 0 = empty */
  size_t nslots;   /* power of two, > 2 * count */
  char *names;     /* "a, b, c", for unknown-tool messages */
  atomic_bool frozen;
};

void toolcall__registry_freeze(toolcall_registry_t *reg);
const toolcall__tool_t *toolcall__registry_find(const toolcall_registry_t *reg,
                                                const char *name, size_t len);

/* ---- ledger (ledger.c) ---- */
typedef struct {
  char name[TOOLCALL_NAME_MAX + 1];
  size_t name_len;
  int64_t limit;
  uint64_t used;     /* calls of the tool that ran ok */
  uint64_t reserved; /* admitted, not yet finished */
  uint64_t want;     /* scratch for one admission, under the lock */
} toolcall__tool_use_t;

/* How admission left a call. */
typedef enum {
  TOOLCALL__ADMIT_NONE = 0,     /* ended at submit: nothing to reserve */
  TOOLCALL__ADMIT_WANTED,       /* to be admitted (before admission) */
  TOOLCALL__ADMIT_RESERVED,     /* holds a reservation until it finishes */
  TOOLCALL__ADMIT_OVER_LIMIT,   /* partial: the tool_calls limit is spent */
  TOOLCALL__ADMIT_OVER_TOOL,    /* partial: its tool's uses are spent */
  TOOLCALL__ADMIT_BATCH_FAILED  /* reject-batch: the batch did not fit */
} toolcall__admit_t;

/* The outcome of one admission: numbers for the messages, which are
 * written after the lock is released. */
typedef struct {
  bool failed;                   /* reject-batch refused the batch */
  size_t rejected;               /* calls refused */
  int64_t limit;                 /* the limit that refused them */
  uint64_t wanted, projected;    /* reject-batch: the numbers */
  const toolcall__tool_use_t *tool_use; /* a per-tool limit refused */
  /* Without per-tool limits the decision is arithmetic alone, and the
   * calls are marked after the lock is released (toolcall__admit_mark):
   * the first `fit` wanted calls, in call order, hold a reservation; the
   * others are refused (OVER_LIMIT, or BATCH_FAILED if `failed`). With
   * per-tool limits the calls are marked under the lock and `marked` is
   * set. */
  bool marked;
  size_t fit;
} toolcall__admission_t;

/* The admit state of a wanted call, after the admission: see above. *fit
 * counts down the reservations still to hand out. */
static inline toolcall__admit_t toolcall__admit_mark(
    const toolcall__admission_t *adm, size_t *fit) {
  if (*fit > 0) {
    (*fit)--;
    return TOOLCALL__ADMIT_RESERVED;
  }
  return adm->failed ? TOOLCALL__ADMIT_BATCH_FAILED
                     : TOOLCALL__ADMIT_OVER_LIMIT;
}

/* In one critical section: count n calls as dispatched, and admit the
 * `wanted` calls marked TOOLCALL__ADMIT_WANTED against the limits under
 * policy. With per-tool limits it sets each call's admit state and
 * tool_use (adm->marked); otherwise the caller marks them with
 * toolcall__admit_mark(), outside the lock. */
void toolcall__ledger_admit(toolcall_ledger_t *ledger, toolcall_call_t *calls,
                            size_t n, size_t wanted,
                            toolcall_limit_policy_t policy,
                            toolcall__admission_t *adm);
/* Count one finished call under its status, and turn its reservation into
 * a use (ok) or release it. */
void toolcall__ledger_finish(toolcall_ledger_t *ledger, toolcall_call_t *call);

/* ---- calls, batches, manager (batch.c, manager.c, sched.c) ---- */

/* Who ended a call: the `completed` word, written once by compare-and-swap.
 * The tool (toolcall_call_complete) and the library (timeout, cancel) race
 * for it; the loser writes nothing. */
enum {
  TOOLCALL__OPEN = 0,
  TOOLCALL__BY_TOOL = 1,    /* the tool's result stands */
  TOOLCALL__BY_LIBRARY = 2  /* timed out or cancelled; the tool's is discarded */
};

/* Where a call is, as the loop thread sees it. */
typedef enum {
  TOOLCALL__ENDED_EARLY = 0, /* ended at submit: never runs */
  TOOLCALL__WAITING,         /* admitted, not yet released by its batch */
  TOOLCALL__TOOL_WAIT,       /* released, waiting for its tool's slot */
  TOOLCALL__STARTED,         /* holds a slot until its tool returns */
  TOOLCALL__RETURNED,        /* its tool returned (or never started) */
  TOOLCALL__SKIPPED          /* cancelled before it started */
} toolcall__sched_t;

struct toolcall_call_s {
  toolcall_result_t r; /* the public record; first, see batch_result */
  toolcall_batch_t *batch;
  const toolcall__tool_t *tool; /* NULL: unknown tool */
  const char *args;
  size_t args_len;
  size_t index;
  uint64_t start_ns;
  atomic_int completed; /* TOOLCALL__OPEN, _BY_TOOL or _BY_LIBRARY */
  toolcall__admit_t admit;
  uint8_t sched;        /* toolcall__sched_t; loop thread */
  bool settled;         /* its result is final and counted; loop thread */
  bool launched;        /* queued to the threadpool, or its tool's fn entered;
                           loop thread */
  bool output_owned;
  bool message_owned;
  toolcall__tool_use_t *tool_use; /* its tool's limit entry, if any */
  int64_t reject_limit;           /* OVER_TOOL: the limit, read under lock */
  uint64_t timeout_ms;            /* resolved; 0: none */
  uint64_t deadline;              /* uv_now() ms, while in the timer heap */
  uint32_t heap_index;            /* in the timer heap; UINT32_MAX: not */
  toolcall_call_t *next_done; /* manager's completion queue */
  toolcall_call_t *wait_prev, *wait_next; /* its tool's wait list */
  uv_work_t *work; /* worker tools: in the batch's allocation, after the
                      calls */
};

struct toolcall_batch_s {
  toolcall_manager_t *manager;
  toolcall_batch_cb cb;
  void *data;
  toolcall_run_t *run;
  size_t n;
  size_t pending; /* calls not yet settled; loop thread only */
  int status;     /* for the callback: 0 or a TOOLCALL_E* / UV_ECANCELED */
  /* The memory lives while the host holds the batch (until
   * toolcall_batch_free: one reference) or a tool still runs one of its
   * calls (one reference for all of them). */
  atomic_size_t refs;
  toolcall_call_t *calls;
  /* Scheduling, loop thread: the next call to release, the released calls
   * whose tools have not returned, whether a sequential call runs. */
  size_t cursor;
  size_t active;
  size_t running;     /* started calls whose tools have not returned */
  bool seq_running;
  bool queued;        /* in the manager's ready queue */
  bool finished;      /* every call settled; the callback is due or ran */
  bool cancelled;
  uint64_t submit_seq; /* its place in submit order (the ready queue's) */
  toolcall_batch_t *ready_prev, *ready_next; /* ready queue */
  toolcall_batch_t *live_prev, *live_next;   /* batches in flight */
  toolcall_batch_t *due_next; /* finished; the callback runs from on_async */
  /* Why the batch failed, or the message shared by the calls a limit
   * rejected. */
  char message[192];
};

struct toolcall_run_s {
  const toolcall_registry_t *registry;
  size_t count;
  unsigned *retries; /* consecutive retries per tool */
  uint8_t *seen;     /* scratch for one batch */
};

struct toolcall_manager_s {
  uv_loop_t *loop;
  toolcall_registry_t *registry;
  toolcall_ledger_t *ledger;
  bool own_ledger;
  size_t max_argument_bytes;
  size_t max_batch_calls;
  toolcall_limit_policy_t limit_policy;
  void *data;

  /* Calls ended on other threads (and unknown-tool calls) wait here for
   * the loop. Producers push and uv_async_send() under done_mu, so once the
   * loop has drained a call no thread can touch the async handle for it. */
  uv_async_t async;
  uv_mutex_t done_mu;
  toolcall_call_t *done_head;
  toolcall_call_t *done_tail;

  size_t batches_in_flight; /* submitted, callback not yet run */
  bool closing;
  int handles_open;         /* 0 once both handles are closed */
  bool handles_closing;
  toolcall_close_cb close_cb;

  /* Scheduling (sched.c), loop thread. */
  size_t max_concurrency;   /* 0: none */
  uint64_t timeout_ms;      /* default; 0: none */
  toolcall_event_cb on_call_start, on_call_end;
  size_t running;           /* started calls whose tools have not returned:
                               the slots held */
  toolcall_batch_t *ready_head, *ready_tail; /* batches with calls to start,
                                                in submit order */
  uint64_t submit_count;                     /* batches submitted so far */
  toolcall_batch_t *live_head;               /* batches in flight */
  toolcall_batch_t *due_head, *due_tail;     /* callbacks to run */
  /* Per registered tool, only if some tool has a cap of its own. */
  unsigned *tool_running;
  toolcall_call_t **tool_wait_head, **tool_wait_tail;
  /* Timeouts: one timer for the manager, a binary heap of calls by
   * deadline. heap_reserved counts the slots submitted batches may need,
   * so starting a call never allocates. */
  uv_timer_t timer;
  toolcall_call_t **heap;
  size_t heap_len, heap_cap, heap_reserved;
};

/* Queue a finished call, or a chain of them linked by next_done, for the
 * loop thread. Any thread. */
void toolcall__manager_post_done(toolcall_manager_t *m, toolcall_call_t *call);
void toolcall__manager_post_done_chain(toolcall_manager_t *m,
                                       toolcall_call_t *head,
                                       toolcall_call_t *tail);
/* Settle a call on the loop thread: count it in the ledger, tell the end
 * hook, and when it is the batch's last, finish the batch (its callback
 * runs now if `direct`, else from the async handle). */
void toolcall__call_settle(toolcall_call_t *call, bool direct);
/* A started call's tool has returned: free its slot, let its batch and the
 * queue move on, and drop its hold on the batch's memory. */
void toolcall__call_returned(toolcall_call_t *call);
/* Handle a call taken from the completion queue. */
void toolcall__call_dequeued(toolcall_call_t *call);
/* Run the callbacks of finished batches. */
void toolcall__run_due(toolcall_manager_t *m);
/* Let a closing manager close its handles once nothing is left. */
void toolcall__manager_maybe_close(toolcall_manager_t *m);
/* Keep the loop alive while anything is in flight. */
void toolcall__manager_update_ref(toolcall_manager_t *m);
/* After a worker tool's function returned: end the call as a tool error
 * if the tool did not. Worker thread. */
void toolcall__worker_check(toolcall_call_t *call);
/* Drop one hold on a batch's memory. */
void toolcall__batch_unref(toolcall_batch_t *b);

/* sched.c */
int toolcall__sched_init(toolcall_manager_t *m);
void toolcall__sched_close(toolcall_manager_t *m);
/* Reserve timer-heap room for k more calls (at submit; may allocate). */
int toolcall__sched_reserve(toolcall_manager_t *m, size_t k);
/* Queue a batch's admitted calls and start what the caps allow. */
void toolcall__sched_submit(toolcall_batch_t *b);
/* Start what the caps allow. */
void toolcall__sched_pump(toolcall_manager_t *m);
/* A call has settled: take it off the timer heap. */
void toolcall__sched_settled(toolcall_call_t *c);
/* End every call of b that has not ended, as cancelled. */
void toolcall__sched_cancel(toolcall_batch_t *b);
/* End a started call as timed out or cancelled, if the tool has not ended
 * it first; the caller settles it. True if the library ended it. */
bool toolcall__call_end_by_library(toolcall_call_t *c, toolcall_status_t st,
                                   const char *msg);

#endif /* TOOLCALL_INTERNAL_H */
