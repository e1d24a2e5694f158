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

/* ---- registry (registry.c) ---- */
typedef struct {
  char *name;
  size_t name_len;
  char *description;
  char *schema;
  toolcall_tool_kind_t kind;
  toolcall_tool_fn fn;
  void *data;
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
  TOOLCALL__ADMIT_NONE = 0,     /* unknown tool: nothing to reserve */
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
} toolcall__admission_t;

/* In one critical section: count n calls as dispatched, and admit the
 * `wanted` calls of known tools against the limits under policy, setting
 * each call's admit state and tool_use. */
void toolcall__ledger_admit(toolcall_ledger_t *ledger, toolcall_call_t *calls,
                            size_t n, size_t wanted,
                            toolcall_limit_policy_t policy,
                            toolcall__admission_t *adm);
/* Count one finished call under its status, and turn its reservation into
 * a use (ok) or release it. */
void toolcall__ledger_finish(toolcall_ledger_t *ledger, toolcall_call_t *call);

/* ---- calls, batches, manager (batch.c, manager.c) ---- */
struct toolcall_call_s {
  toolcall_result_t r; /* the public record; first, see batch_result */
  toolcall_batch_t *batch;
  const toolcall__tool_t *tool; /* NULL: unknown tool */
  const char *args;
  size_t args_len;
  size_t index;
  uint64_t start_ns;
  atomic_int completed; /* set once by toolcall_call_complete */
  toolcall__admit_t admit;
  toolcall__tool_use_t *tool_use; /* its tool's limit entry, if any */
  int64_t reject_limit;           /* OVER_TOOL: the limit, read under lock */
  bool output_owned;
  bool message_owned;
  toolcall_call_t *next_done; /* manager's completion queue */
  uv_work_t work;             /* worker tools */
};

struct toolcall_batch_s {
  toolcall_manager_t *manager;
  toolcall_batch_cb cb;
  void *data;
  size_t n;
  size_t pending; /* calls not yet finished; loop thread only */
  int status;     /* for the callback: 0 or TOOLCALL_ELIMIT */
  toolcall_call_t *calls;
  /* Why the batch failed, or the message shared by the calls a limit
   * rejected. */
  char message[192];
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

  size_t batches_in_flight;
  bool closing;
  bool handles_closing;
  toolcall_close_cb close_cb;
};

/* Queue a finished call, or a chain of them linked by next_done, for the
 * loop thread. Any thread. */
void toolcall__manager_post_done(toolcall_manager_t *m, toolcall_call_t *call);
void toolcall__manager_post_done_chain(toolcall_manager_t *m,
                                       toolcall_call_t *head,
                                       toolcall_call_t *tail);
/* Account a finished call on the loop thread; runs the batch callback when
 * the batch's last call ends. */
void toolcall__call_finish(toolcall_call_t *call);
/* A batch's callback has run: let a closing manager proceed. */
void toolcall__manager_batch_done(toolcall_manager_t *m);

#endif /* TOOLCALL_INTERNAL_H */
