/*
 * toolcall — run the tool calls an LLM asks for, in parallel, on a libuv
 * event loop, and count usage exactly.
 *
 * This header is the reference documentation. Each function states which
 * thread may call it and who owns each pointer:
 *
 *   copied    the library copies what it needs before returning;
 *   borrowed  the library keeps the pointer; it must stay valid as stated;
 *   owned     the library owns the memory until the stated point.
 *
 * "Loop thread" means the thread running the uv_loop_t the manager is bound
 * to. Everything is loop-thread-only unless it says "any thread".
 *
 * Functions return 0 or a negative error code: libuv's UV_E* where one fits,
 * TOOLCALL_E* otherwise. toolcall_strerror() and toolcall_err_name() name
 * both. A function that takes a callback and returns an error never calls it.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef TOOLCALL_H
#define TOOLCALL_H

#include <stddef.h>
#include <stdint.h>

#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#if defined(TOOLCALL_BUILDING_SHARED)
#define TOOLCALL_EXTERN __declspec(dllexport)
#elif defined(TOOLCALL_USING_SHARED)
#define TOOLCALL_EXTERN __declspec(dllimport)
#else
#define TOOLCALL_EXTERN
#endif
#elif defined(__GNUC__) && __GNUC__ >= 4
#define TOOLCALL_EXTERN __attribute__((visibility("default")))
#else
#define TOOLCALL_EXTERN
#endif

/* ------------------------------------------------------------------------ */
/* Version                                                                  */

#define TOOLCALL_VERSION_MAJOR 0
#define TOOLCALL_VERSION_MINOR 1
#define TOOLCALL_VERSION_PATCH 0

#define TOOLCALL_VERSION_HEX                                                   \
  ((TOOLCALL_VERSION_MAJOR << 16) | (TOOLCALL_VERSION_MINOR << 8) |            \
   (TOOLCALL_VERSION_PATCH))

/* The version of the library linked at run time, as TOOLCALL_VERSION_HEX and
 * as "MAJOR.MINOR.PATCH". Any thread. The string is static. */
TOOLCALL_EXTERN unsigned int toolcall_version(void);
TOOLCALL_EXTERN const char *toolcall_version_string(void);

/* ------------------------------------------------------------------------ */
/* Errors                                                                   */

/* The library's own codes. They never collide with libuv's (UV_E* are
 * negated errno values or lie between -3000 and -4095). The libuv codes the
 * library returns, and what they mean here:
 *
 *   UV_EINVAL        a NULL pointer, an empty or malformed name or id, or an
 *                    option out of range
 *   UV_ENOMEM        an allocation failed; nothing was changed
 *   UV_EEXIST        a tool with this name is already registered
 *   UV_ENAMETOOLONG  a tool name, call id or detail name is too long
 *   UV_E2BIG         arguments over the manager's max_argument_bytes, or a
 *                    batch over its max_batch_calls
 *   UV_EILSEQ        a call id, tool name or arguments text is not valid UTF-8
 *   UV_EOVERFLOW     adding usage would overflow a 64-bit counter; nothing
 *                    was added
 *   UV_ENOENT        no such detail counter
 *   UV_ENOSPC        a ledger's 64 detail counters are all in use
 */
#define TOOLCALL_ERRNO_MAP(XX)                                                 \
  XX(EDUPID, -30001, "duplicate call id in batch")                             \
  XX(EEMPTY, -30002, "empty batch")                                            \
  XX(ECLOSING, -30003, "manager is closing")                                   \
  XX(EFROZEN, -30004, "registry is in use by a manager and can no longer "    \
                      "change")                                                \
  XX(ESTATE, -30005, "not in a state that allows this")                      \
  XX(ELIMIT, -30006, "a usage limit would be exceeded")                        \
  XX(ETOKENS, -30007, "a token limit is exceeded")                            \
  XX(ERETRIES, -30008, "a tool exceeded its maximum consecutive retries")

typedef enum {
#define TOOLCALL_ERR_ENUM_(name, code, msg) TOOLCALL_##name = (code),
  TOOLCALL_ERRNO_MAP(TOOLCALL_ERR_ENUM_)
#undef TOOLCALL_ERR_ENUM_
  TOOLCALL_ERRNO_MAX_ = -30000
} toolcall_errno_t;

/* A short message for err: the library's codes, libuv's codes and 0. Any
 * thread. The string is static; unknown codes give "unknown error". */
TOOLCALL_EXTERN const char *toolcall_strerror(int err);

/* The symbolic name of err ("TOOLCALL_EDUPID", "UV_ENOMEM"). Any thread. The
 * string is static. */
TOOLCALL_EXTERN const char *toolcall_err_name(int err);

/* Details of a failed call, filled by the functions that take one (it is
 * always optional: pass NULL to get only the return code). */
typedef struct {
  int code;           /* the code the function returned */
  size_t index;       /* the offending call in a batch, or SIZE_MAX */
  char message[256];  /* a readable sentence, NUL-terminated */
} toolcall_error_t;

/* ------------------------------------------------------------------------ */
/* Allocator                                                                */

typedef void *(*toolcall_malloc_func)(size_t size);
typedef void *(*toolcall_realloc_func)(void *ptr, size_t size);
typedef void *(*toolcall_calloc_func)(size_t count, size_t size);
typedef void (*toolcall_free_func)(void *ptr);

/* Replace the allocator used for every allocation the library makes (libuv
 * and jansson keep their own). All four are required. Call it before any
 * other toolcall function, from one thread, while no toolcall object exists;
 * memory allocated by one allocator is freed by the same one. This is the
 * library's only global mutable state. Returns UV_EINVAL for a NULL
 * function. */
TOOLCALL_EXTERN int toolcall_replace_allocator(toolcall_malloc_func malloc_func,
                                               toolcall_realloc_func realloc_func,
                                               toolcall_calloc_func calloc_func,
                                               toolcall_free_func free_func);

/* ------------------------------------------------------------------------ */
/* Opaque handles                                                           */

typedef struct toolcall_registry_s toolcall_registry_t;
typedef struct toolcall_ledger_s toolcall_ledger_t;
typedef struct toolcall_manager_s toolcall_manager_t;
typedef struct toolcall_batch_s toolcall_batch_t;
typedef struct toolcall_call_s toolcall_call_t;
typedef struct toolcall_run_s toolcall_run_t;

/* ------------------------------------------------------------------------ */
/* Status of a finished call                                                */

typedef enum {
  TOOLCALL_OK = 0,          /* the tool ran and returned a result */
  TOOLCALL_TOOL_ERROR = 1,  /* the tool ran and reported an error */
  TOOLCALL_RETRY = 2,       /* the model should try again (message says why) */
  TOOLCALL_UNKNOWN_TOOL = 3,/* no tool by that name; the message lists them */
  TOOLCALL_TIMED_OUT = 4,   /* the call's timer fired first */
  TOOLCALL_CANCELLED = 5,   /* the batch was cancelled or the manager closed */
  TOOLCALL_REJECTED = 6,    /* a usage limit refused the call */
  TOOLCALL_DEFERRED = 7,    /* the tool needs the host's approval */
  TOOLCALL_DENIED = 8,      /* the host refused the approval */
  TOOLCALL_STATUS_COUNT = 9,
  TOOLCALL_STATUS_SLOTS_ = 16 /* room in toolcall_snapshot_t for growth */
} toolcall_status_t;

/* "ok", "tool_error", "retry", "unknown_tool", "timed_out", "cancelled",
 * "rejected", "deferred", "denied"; "invalid" otherwise. Any thread; static string. */
TOOLCALL_EXTERN const char *toolcall_status_name(toolcall_status_t status);

/* ------------------------------------------------------------------------ */
/* Limits on input                                                          */

#define TOOLCALL_NAME_MAX 64        /* tool names, bytes */
#define TOOLCALL_ID_MAX 256         /* call ids, bytes */
#define TOOLCALL_DETAIL_NAME_MAX 63 /* detail counter names, bytes */

/* ------------------------------------------------------------------------ */
/* Registry                                                                 */

typedef enum {
  /* A blocking C function run on the libuv threadpool (uv_queue_work). It
   * must not touch the loop. It ends the call with toolcall_call_complete()
   * before it returns. */
  TOOLCALL_TOOL_WORKER = 0,
  /* Started on the loop thread; ends the call later, from any thread, with
   * toolcall_call_complete(). The completion reaches the loop through a
   * uv_async_t. */
  TOOLCALL_TOOL_LOOP = 1
} toolcall_tool_kind_t;

/* The body of a tool. `call` is valid until toolcall_call_complete() has
 * returned for it; `tool_data` is the definition's `data`. */
typedef void (*toolcall_tool_fn)(toolcall_call_t *call, void *tool_data);

/* A loop tool's call that has started was cancelled or timed out. Runs on
 * the loop thread. The call has already ended (cancelled or timed_out) and
 * the batch may have finished: the tool should stop its work, and must
 * still call toolcall_call_complete() once (now or later, from any thread;
 * the result is discarded). Until it does, the call keeps its concurrency
 * slot, its batch's memory stays allocated, and toolcall_manager_close()
 * waits. */
typedef void (*toolcall_tool_cancel_fn)(toolcall_call_t *call,
                                        void *tool_data);

/* Tool flags. */
/* A barrier: the calls before it in its batch return first, it runs alone,
 * and the calls after it wait until it returns. */
#define TOOLCALL_TOOL_SEQUENTIAL 0x1u
/* Never run without the host's approval: its calls end TOOLCALL_DEFERRED;
 * the host decides with toolcall_batch_resume(). */
#define TOOLCALL_TOOL_REQUIRES_APPROVAL 0x2u

/* For timeout_ms (tool, call): no timeout, even if the manager has one. */
#define TOOLCALL_NO_TIMEOUT UINT64_MAX
/* For max_retries: no retry is allowed; the first one fails the batch. */
#define TOOLCALL_NO_RETRIES (-1)
/* The default of max_retries (as pydantic-ai's retries=1). */
#define TOOLCALL_DEFAULT_RETRIES 1

typedef struct {
  const char *name;        /* 1..TOOLCALL_NAME_MAX bytes of [A-Za-z0-9_.:-];
                              copied */
  const char *description; /* may be NULL; copied */
  const char *schema;      /* JSON Schema text for the arguments, may be NULL
                              (any JSON object); compiled and checked at
                              registration, copied */
  toolcall_tool_kind_t kind;
  toolcall_tool_fn fn;     /* required */
  void *data;              /* borrowed: passed to fn as is, never freed */
  unsigned flags;          /* TOOLCALL_TOOL_SEQUENTIAL | _REQUIRES_APPROVAL */
  /* A call's timeout, from its start: 0 means the manager's default;
   * TOOLCALL_NO_TIMEOUT none. A call may override it. */
  uint64_t timeout_ms;
  /* Consecutive retries allowed (see toolcall_run_t): 0 means
   * TOOLCALL_DEFAULT_RETRIES; TOOLCALL_NO_RETRIES none; else 1..INT_MAX. */
  int max_retries;
  /* Calls of this tool running at once on one manager; 0: no cap of its
   * own (the manager's cap still applies). Calls waiting for this cap start
   * first come, first served, in the order they were released. */
  unsigned max_concurrency;
  /* Loop tools only, may be NULL: see toolcall_tool_cancel_fn. */
  toolcall_tool_cancel_fn cancel;
  void *reserved_[4];      /* zero; room for options without an ABI break */
} toolcall_tool_t;

/* Fill def with defaults: a worker tool, no flags, the manager's timeout,
 * the default retries, everything else NULL. Any thread. */
TOOLCALL_EXTERN void toolcall_tool_init(toolcall_tool_t *def);

/* A set of tools. Build it once, then hand it to one or more managers: the
 * first manager created with it freezes it, after which it never changes and
 * may be read by managers on any number of threads. It must outlive every
 * manager using it (free it after their close callbacks). Not thread-safe
 * while it is being built. */
TOOLCALL_EXTERN int toolcall_registry_new(toolcall_registry_t **out);

/* Free a registry and its copies of the definitions. NULL is a no-op. */
TOOLCALL_EXTERN void toolcall_registry_free(toolcall_registry_t *reg);

/* Register a tool; def and its strings are copied. Errors: UV_EINVAL (NULL,
 * empty name, a character outside [A-Za-z0-9_.:-], no fn, bad kind, unknown
 * flags, max_retries below -1, cancel on a worker tool, a schema that is not
 * JSON or that the library cannot compile: err->message says where),
 * UV_ENAMETOOLONG, UV_EEXIST (name taken), TOOLCALL_EFROZEN (a manager uses
 * the registry), UV_ENOMEM. On error nothing is registered. err may be NULL.
 */
TOOLCALL_EXTERN int toolcall_registry_add(toolcall_registry_t *reg,
                                          const toolcall_tool_t *def,
                                          toolcall_error_t *err);

/* The number of tools, and the name of the i-th in registration order (NULL
 * past the end; owned by the registry). Any thread once frozen. */
TOOLCALL_EXTERN size_t toolcall_registry_count(const toolcall_registry_t *reg);
TOOLCALL_EXTERN const char *toolcall_registry_name(const toolcall_registry_t *reg,
                                                   size_t i);

/* ------------------------------------------------------------------------ */
/* Ledger                                                                   */

/* Usage that the host (per model response) or a tool adds. */
typedef struct {
  uint64_t requests;
  uint64_t input_tokens;
  uint64_t output_tokens;
  uint64_t cache_read_tokens;
  uint64_t cache_write_tokens;
  uint64_t reserved_[3]; /* zero */
} toolcall_usage_t;

/* A consistent copy of every counter, taken under the ledger's mutex. */
typedef struct {
  toolcall_usage_t usage;
  /* Calls whose tool ran and returned ok (pydantic-ai's `tool_calls`); the
   * same number as calls[TOOLCALL_OK]. */
  uint64_t tool_calls;
  /* Calls accepted by toolcall_batch_submit(). At a quiescent point (no
   * batch in flight) this equals the sum of calls[] over all statuses. */
  uint64_t dispatched;
  /* Finished calls by status, indexed by toolcall_status_t. */
  uint64_t calls[TOOLCALL_STATUS_SLOTS_];
  /* Admitted but not yet finished: tool calls admitted against the
   * tool_calls limit, and requests admitted by
   * toolcall_ledger_admit_request() but not yet committed or released.
   * tool_calls + reserved_tool_calls <= the tool_calls limit at every
   * instant (unless the limit was lowered below usage). */
  uint64_t reserved_tool_calls;
  uint64_t reserved_requests;
  uint64_t reserved_[6];
} toolcall_snapshot_t;

/* A named counter ("reasoning_tokens", "web_searches", ...). */
typedef struct {
  char name[TOOLCALL_DETAIL_NAME_MAX + 1];
  uint64_t value;
} toolcall_detail_t;

/* A set of counters behind one mutex. Create one to share it between
 * managers (each on its own loop and thread: one budget for an agent and its
 * sub-agents); otherwise each manager makes its own. The ledger is borrowed
 * by every manager given it and must be freed only after all their close
 * callbacks have run. Any thread. */
TOOLCALL_EXTERN int toolcall_ledger_new(toolcall_ledger_t **out);

/* Free a ledger. NULL is a no-op. No manager may still use it. */
TOOLCALL_EXTERN void toolcall_ledger_free(toolcall_ledger_t *ledger);

/* Add usage, all fields at once. Any thread (a worker tool reporting the
 * tokens of a sub-agent, say). UV_EOVERFLOW if any counter would pass
 * UINT64_MAX: then nothing is added. */
TOOLCALL_EXTERN int toolcall_ledger_add_usage(toolcall_ledger_t *ledger,
                                              const toolcall_usage_t *usage);

/* Add delta to the named detail counter, creating it at 0 first. name is
 * copied; 1..TOOLCALL_DETAIL_NAME_MAX bytes. Any thread. Errors: UV_EINVAL,
 * UV_ENAMETOOLONG, UV_EOVERFLOW, UV_ENOSPC (64 counters exist already). */
TOOLCALL_EXTERN int toolcall_ledger_add_detail(toolcall_ledger_t *ledger,
                                               const char *name,
                                               uint64_t delta);

/* Read one detail counter. UV_ENOENT if it was never added to. Any thread. */
TOOLCALL_EXTERN int toolcall_ledger_detail(const toolcall_ledger_t *ledger,
                                           const char *name, uint64_t *value);

/* Copy up to cap detail counters into out (in creation order) and set
 * *count to how many exist; a consistent copy. out may be NULL when cap is
 * 0. Any thread. */
TOOLCALL_EXTERN int toolcall_ledger_details(const toolcall_ledger_t *ledger,
                                            toolcall_detail_t *out, size_t cap,
                                            size_t *count);

/* Take a consistent snapshot of every counter. Any thread. */
TOOLCALL_EXTERN int toolcall_ledger_snapshot(const toolcall_ledger_t *ledger,
                                             toolcall_snapshot_t *out);


/* ------------------------------------------------------------------------ */
/* Limits                                                                   */

/* A limit that is not set. */
#define TOOLCALL_UNLIMITED ((int64_t)-1)

/* Usage limits, as pydantic-ai's UsageLimits. Each is TOOLCALL_UNLIMITED or
 * 0..INT64_MAX. */
typedef struct {
  int64_t requests;      /* model requests (request_limit) */
  int64_t tool_calls;    /* tool calls that ran ok (tool_calls_limit) */
  int64_t input_tokens;  /* input_tokens_limit */
  int64_t output_tokens; /* output_tokens_limit */
  int64_t total_tokens;  /* input + output (total_tokens_limit) */
  int64_t reserved_[7];  /* zero */
} toolcall_limits_t;

/* Fill limits with TOOLCALL_UNLIMITED everywhere. Any thread. */
TOOLCALL_EXTERN void toolcall_limits_init(toolcall_limits_t *limits);

/* Set every limit at once; copied. Any thread. Takes effect for the next
 * admission; admissions already made stand (set limits before dispatching
 * to hold every call to them). A limit may be set below what
 * is already used: then nothing more is admitted against it (and the
 * snapshot shows usage above the limit). UV_EINVAL for a limit below -1. */
TOOLCALL_EXTERN int toolcall_ledger_set_limits(toolcall_ledger_t *ledger,
                                               const toolcall_limits_t *limits);

/* Read the limits. Any thread. */
TOOLCALL_EXTERN int toolcall_ledger_get_limits(const toolcall_ledger_t *ledger,
                                               toolcall_limits_t *limits);

/* Limit the uses of one tool (calls of it that ran ok), for every manager
 * using this ledger. Uses are counted from the moment a tool's limit is
 * first set; set it again to change it, TOOLCALL_UNLIMITED to lift it (its
 * count is kept). Set limits before dispatching: calls already running when
 * a limit is set were admitted without it, so they count as uses when they
 * end ok but hold no reservation against it. name is copied. Up to 64 tools
 * per ledger. Any thread. Errors: UV_EINVAL, UV_ENAMETOOLONG, UV_ENOSPC. */
TOOLCALL_EXTERN int toolcall_ledger_set_tool_limit(toolcall_ledger_t *ledger,
                                                   const char *tool,
                                                   int64_t max_uses);

/* Read a tool's uses (ran ok) and reserved uses (admitted, running). Only
 * tools with a limit are tracked: UV_ENOENT otherwise. Any thread. */
TOOLCALL_EXTERN int toolcall_ledger_tool_uses(const toolcall_ledger_t *ledger,
                                              const char *tool, uint64_t *used,
                                              uint64_t *reserved);

/* Admit one model request before sending it: in one critical section, check
 * requests + reserved requests + 1 <= the request limit and that no token
 * limit is already exceeded, and reserve the request. Then call
 * toolcall_ledger_commit_request() with the response's usage, or
 * toolcall_ledger_release_request() if no response came. Any thread.
 * Errors: TOOLCALL_ELIMIT (the request limit), TOOLCALL_ETOKENS (a token
 * limit already exceeded); err says which and the numbers. */
TOOLCALL_EXTERN int toolcall_ledger_admit_request(toolcall_ledger_t *ledger,
                                                  toolcall_error_t *err);

/* Turn an admitted request into a count and add the response's tokens (its
 * `requests` field is ignored: the request counts as one). Any thread.
 * Returns 0, or TOOLCALL_ETOKENS if a token limit is now exceeded (the usage
 * is added all the same: it was spent; the next admission is refused), or
 * TOOLCALL_ESTATE if no request was admitted, or UV_EOVERFLOW. */
TOOLCALL_EXTERN int toolcall_ledger_commit_request(toolcall_ledger_t *ledger,
                                                   const toolcall_usage_t *usage,
                                                   toolcall_error_t *err);

/* Release an admitted request that was never answered. Any thread.
 * TOOLCALL_ESTATE if no request was admitted. */
TOOLCALL_EXTERN int toolcall_ledger_release_request(toolcall_ledger_t *ledger);

/* What happens to a batch that does not fit the tool-call limits. */
typedef enum {
  TOOLCALL_POLICY_DEFAULT = 0,      /* in batch options: the manager's */
  TOOLCALL_POLICY_REJECT_BATCH = 1, /* no call runs; the batch fails with
                                       TOOLCALL_ELIMIT (pydantic-ai) */
  TOOLCALL_POLICY_PARTIAL = 2       /* the calls that fit run, in call order;
                                       the rest end TOOLCALL_REJECTED */
} toolcall_limit_policy_t;

/* ------------------------------------------------------------------------ */
/* Manager                                                                  */

/* What an event hook is told. Everything is borrowed for the hook's
 * duration. */
typedef struct {
  toolcall_manager_t *manager;
  toolcall_batch_t *batch;
  size_t index;               /* the call's index in its batch */
  const char *id;             /* the call id */
  const char *tool;           /* the tool name as the model gave it */
  toolcall_status_t status;   /* end: the call's status; start: TOOLCALL_OK */
  const char *message;        /* end: the result's message (NULL for ok) */
  uint64_t duration_ns;       /* end: as in toolcall_result_t; start: 0 */
} toolcall_event_t;

/* An event hook: runs on the loop thread; it must not free the batch. It
 * may cancel it (toolcall_batch_cancel) or close the manager: a call whose
 * start hook does so ends cancelled before its tool sees it, and the end
 * hooks of the batch's calls run inside that cancel. */
typedef void (*toolcall_event_cb)(const toolcall_event_t *event);

typedef struct {
  toolcall_registry_t *registry; /* required; borrowed, frozen by the call */
  toolcall_ledger_t *ledger;     /* borrowed; NULL: the manager owns one */
  size_t max_argument_bytes;     /* per call; default 8 MiB */
  size_t max_batch_calls;        /* default 1,048,576 */
  toolcall_limit_policy_t limit_policy; /* default REJECT_BATCH */
  void *data;                    /* yours; see toolcall_manager_data() */
  /* Calls running at once, over all batches; 0 (default): no cap. Calls
   * beyond it wait in call order (batches in submit order, a batch held
   * back by a sequential tool keeping its place) and start as slots free. A call holds its slot from its start until its tool really
   * returns, even after it ended timed out or cancelled. */
  size_t max_concurrency;
  /* A call's timeout from its start, unless its tool or the call sets one;
   * 0 (default): none. Time spent waiting for a slot does not count. */
  uint64_t timeout_ms;
  /* Optional: when a call starts (its tool is started or queued for the
   * threadpool), and when it ends (every call, with its status, including
   * calls that never ran). */
  toolcall_event_cb on_call_start;
  toolcall_event_cb on_call_end;
  void *reserved_[6];            /* zero */
} toolcall_manager_options_t;

/* Fill opts with defaults. Any thread. */
TOOLCALL_EXTERN void toolcall_manager_options_init(
    toolcall_manager_options_t *opts);

/* Create a manager bound to loop (borrowed: it must outlive the manager).
 * Loop thread. Freezes opts->registry. Errors: UV_EINVAL, UV_ENOMEM, or a
 * libuv error from uv_async_init(). */
TOOLCALL_EXTERN int toolcall_manager_new(toolcall_manager_t **out,
                                         uv_loop_t *loop,
                                         const toolcall_manager_options_t *opts);

typedef void (*toolcall_close_cb)(toolcall_manager_t *manager);

/* Begin closing: new submissions fail with TOOLCALL_ECLOSING; every batch
 * in flight is cancelled (as toolcall_batch_cancel(); their callbacks run
 * later, on the loop); the manager waits until every worker tool has
 * returned and every started loop tool has completed its call; then it
 * closes its handles, close_cb (may be NULL) runs on the loop thread, and
 * the manager is freed when close_cb returns. After that uv_loop_close()
 * returns 0 (if nothing else is open). Never calls close_cb before
 * returning. Loop thread. TOOLCALL_ECLOSING if already closing. */
TOOLCALL_EXTERN int toolcall_manager_close(toolcall_manager_t *manager,
                                           toolcall_close_cb close_cb);

/* The manager's loop, ledger (its own or the shared one), registry, and the
 * options' data. Loop thread (the ledger pointer may be used from any). */
TOOLCALL_EXTERN uv_loop_t *toolcall_manager_loop(const toolcall_manager_t *m);
TOOLCALL_EXTERN toolcall_ledger_t *toolcall_manager_ledger(
    const toolcall_manager_t *m);
TOOLCALL_EXTERN toolcall_registry_t *toolcall_manager_registry(
    const toolcall_manager_t *m);
TOOLCALL_EXTERN void *toolcall_manager_data(const toolcall_manager_t *m);

/* ------------------------------------------------------------------------ */
/* Batches                                                                  */

/* One tool call of a model response. Everything is copied by submit. */
typedef struct {
  const char *id;        /* 1..TOOLCALL_ID_MAX bytes of UTF-8; unique in the
                            batch */
  const char *name;      /* the tool; an unregistered (or empty) name ends the
                            call with TOOLCALL_UNKNOWN_TOOL */
  const char *arguments; /* a JSON object as text; NULL means "{}". Text
                            that is not a JSON object, or breaks the tool's
                            schema, ends the call TOOLCALL_RETRY without
                            running it */
  size_t arguments_len;  /* 0: strlen(arguments) */
  uint64_t timeout_ms;   /* 0: the tool's (else the manager's) timeout;
                            TOOLCALL_NO_TIMEOUT: none */
} toolcall_call_spec_t;

/* The outcome of one call: a record owned by the batch. */
typedef struct {
  const char *id;          /* the call id */
  const char *tool;        /* the tool name as the model gave it */
  toolcall_status_t status;
  const char *output;      /* the tool's text; "" if none. Never NULL */
  size_t output_len;
  /* For every status but ok: a sentence the model can read (what went
   * wrong, or for an unknown tool the tools that exist). NULL for ok. */
  const char *message;
  uint64_t duration_ns;    /* from the call's start to its end (the tool's
                              completion, the timeout or the cancellation);
                              0 if it never started */
} toolcall_result_t;

/* Runs once per batch on the loop thread, when every call has ended; never
 * inside a toolcall function. status is 0, or:
 *   TOOLCALL_ELIMIT    the reject-batch policy refused the whole batch (no
 *                      call ran, every call that would have run ended
 *                      TOOLCALL_REJECTED);
 *   TOOLCALL_ERETRIES  a tool ended with a retry more times in a row than
 *                      its max_retries (the results are all there; the run
 *                      should stop, as pydantic-ai's UnexpectedModelBehavior);
 *   UV_ECANCELED       toolcall_batch_cancel() or toolcall_manager_close()
 *                      cancelled it.
 * toolcall_batch_error() says why in a sentence. The batch is yours from
 * here on: read its results, then toolcall_batch_free() it, in the callback
 * or later. */
typedef void (*toolcall_batch_cb)(toolcall_batch_t *batch, int status);

/* The state one agent run keeps across its batches: each tool's count of
 * consecutive retries. A batch adds one to a tool's count if any of its
 * calls of that tool ended TOOLCALL_RETRY, and resets it to 0 if its calls
 * of the tool ended ok and none asked for a retry; going past the tool's
 * max_retries fails the batch with TOOLCALL_ERETRIES. Without a run, each
 * batch counts on its own (so only TOOLCALL_NO_RETRIES can fail it). Loop
 * thread; one batch at a time should use a run (an agent's steps are
 * sequential). */
TOOLCALL_EXTERN int toolcall_run_new(const toolcall_registry_t *reg,
                                     toolcall_run_t **out);
/* Free a run. NULL is a no-op. No batch using it may be in flight. */
TOOLCALL_EXTERN void toolcall_run_free(toolcall_run_t *run);
/* A tool's consecutive retries so far. UV_ENOENT for an unknown tool. */
TOOLCALL_EXTERN int toolcall_run_retries(const toolcall_run_t *run,
                                         const char *tool, unsigned *count);

typedef struct {
  toolcall_limit_policy_t limit_policy; /* DEFAULT: the manager's */
  /* The run this batch belongs to (borrowed until the callback), for the
   * retry cap; NULL: the batch counts on its own. It must have been made
   * from the manager's registry. */
  toolcall_run_t *run;
  void *reserved_[7];                   /* zero */
} toolcall_batch_options_t;

/* Fill opts with defaults (the manager's policy). Any thread. */
TOOLCALL_EXTERN void toolcall_batch_options_init(toolcall_batch_options_t *opts);

/* Dispatch n calls at once; they run concurrently. Loop thread.
 *
 * Admission comes first, in one critical section of the ledger: the calls
 * that would run (those of known tools) are checked against the tool_calls
 * limit and the per-tool limits (used + reserved + wanted <= limit) and
 * reserved; the policy (opts, else the manager's) decides what happens to a
 * batch that does not fit. Each reservation becomes a count when its call
 * ends ok and is released otherwise.
 *
 * calls and everything they point to are copied; opts (NULL for defaults)
 * too. data is yours (toolcall_batch_data).
 * out, if not NULL, receives the batch handle (owned by the library until
 * cb has run). Returns 0 and calls cb exactly once later, or returns an
 * error, counts nothing and never calls cb. Errors: UV_EINVAL (manager,
 * calls or cb NULL; a call's id or name NULL; an empty id: an empty *name*
 * is not an error but ends that call as TOOLCALL_UNKNOWN_TOOL),
 * TOOLCALL_EEMPTY (n == 0), UV_ENAMETOOLONG (an id), TOOLCALL_EDUPID,
 * UV_EILSEQ (an id, a tool name or arguments not UTF-8, or arguments with
 * a NUL byte: every string the library hands back is valid UTF-8), UV_E2BIG,
 * TOOLCALL_ECLOSING, UV_ENOMEM, UV_EINVAL (an unknown policy in opts). err may be NULL; its
 * index names the offending call. */
TOOLCALL_EXTERN int toolcall_batch_submit(toolcall_manager_t *manager,
                                          const toolcall_call_spec_t *calls,
                                          size_t n,
                                          const toolcall_batch_options_t *opts,
                                          toolcall_batch_cb cb, void *data,
                                          toolcall_batch_t **out,
                                          toolcall_error_t *err);

/* Cancel a batch whose callback has not run yet. Calls that have not
 * started end TOOLCALL_CANCELLED at once (worker jobs still queued in the
 * threadpool are taken back with uv_cancel()). Calls that are running end
 * TOOLCALL_CANCELLED too: a worker tool sees toolcall_call_cancelled()
 * become true and its result is discarded; a loop tool's cancel function
 * is called. Each call's reservation is released. The callback runs once,
 * later on the loop, with UV_ECANCELED (calls that had already ended keep
 * their results), or with TOOLCALL_ELIMIT if the reject-batch policy had
 * already refused the batch. Loop thread. Errors: UV_EINVAL (NULL), TOOLCALL_ESTATE
 * (already finished: the callback ran, or is due to run, or the batch was
 * cancelled already). */
TOOLCALL_EXTERN int toolcall_batch_cancel(toolcall_batch_t *batch);

/* The host's decision on one deferred call. */
typedef struct {
  /* The call as the model made it (id, tool name, arguments); to approve
   * it with other arguments, pass those. timeout_ms as in submit. */
  toolcall_call_spec_t call;
  int approved;        /* nonzero: run it; zero: deny it */
  const char *message; /* denied: the message for the model; NULL for a
                          default. Copied */
} toolcall_decision_t;

/* Resume deferred calls with the host's decisions, as a new batch (the
 * deferred batch may be long gone). Approved calls run, even though their
 * tool requires approval, after the same checks and admission as
 * toolcall_batch_submit() (arguments, schema, limits). Denied calls end
 * TOOLCALL_DENIED with the host's message, are not admitted, and count
 * under denied (a decision naming a tool that does not exist ends
 * TOOLCALL_UNKNOWN_TOOL, approved or not). Each resumed call counts in `dispatched` again: once as
 * deferred, once with its final status. Loop thread. Arguments, callback,
 * ownership and errors as toolcall_batch_submit(). */
TOOLCALL_EXTERN int toolcall_batch_resume(toolcall_manager_t *manager,
                                          const toolcall_decision_t *decisions,
                                          size_t n,
                                          const toolcall_batch_options_t *opts,
                                          toolcall_batch_cb cb, void *data,
                                          toolcall_batch_t **out,
                                          toolcall_error_t *err);

/* Free a finished batch and its results. Loop thread or any thread once its
 * callback has run. NULL is a no-op. If a call of the batch timed out or
 * was cancelled while its tool still runs, the memory is released when the
 * tool returns. */
TOOLCALL_EXTERN void toolcall_batch_free(toolcall_batch_t *batch);

/* Read a finished batch: the number of calls, the i-th result in call order
 * (NULL past the end; owned by the batch), the data given to submit, and its
 * manager. Any thread that owns the batch. */
TOOLCALL_EXTERN size_t toolcall_batch_size(const toolcall_batch_t *batch);
TOOLCALL_EXTERN const toolcall_result_t *toolcall_batch_result(
    const toolcall_batch_t *batch, size_t i);
TOOLCALL_EXTERN void *toolcall_batch_data(const toolcall_batch_t *batch);
TOOLCALL_EXTERN toolcall_manager_t *toolcall_batch_manager(
    const toolcall_batch_t *batch);

/* Why the batch failed (its callback's status was not 0), as a sentence
 * such as "the next 3 tool call(s) would exceed the tool_calls limit of 6
 * (tool_calls would be 8)"; NULL if it did not. Owned by the batch. */
TOOLCALL_EXTERN const char *toolcall_batch_error(const toolcall_batch_t *batch);

/* ------------------------------------------------------------------------ */
/* Inside a tool                                                            */

/* True once the call has ended without the tool: it timed out, or its
 * batch was cancelled. A worker tool may poll it to stop early; its result
 * will be discarded anyway. Any thread, while the tool holds the call. */
TOOLCALL_EXTERN int toolcall_call_cancelled(const toolcall_call_t *call);

/* Read the call a tool is running. Any thread, until the call is completed.
 * Strings are owned by the batch. arguments is NUL-terminated; its length
 * excludes the NUL. */
TOOLCALL_EXTERN const char *toolcall_call_id(const toolcall_call_t *call);
TOOLCALL_EXTERN const char *toolcall_call_tool(const toolcall_call_t *call);
TOOLCALL_EXTERN const char *toolcall_call_arguments(const toolcall_call_t *call,
                                                    size_t *len);
TOOLCALL_EXTERN size_t toolcall_call_index(const toolcall_call_t *call);
TOOLCALL_EXTERN toolcall_batch_t *toolcall_call_batch(const toolcall_call_t *call);
TOOLCALL_EXTERN toolcall_ledger_t *toolcall_call_ledger(const toolcall_call_t *call);

/* End a call: status is TOOLCALL_OK, TOOLCALL_TOOL_ERROR or TOOLCALL_RETRY;
 * text (len bytes, len 0 means strlen; NULL for none) is copied: the output
 * for ok, the message for the model otherwise. Exactly once per call. A
 * worker tool calls it before its function returns (if it does not, the call
 * ends as a tool error); a loop tool calls it from any thread, at any time
 * after its start. After it returns the call pointer is invalid.
 * Errors: UV_EINVAL (bad status; the call is not completed), UV_ENOMEM (the
 * call then ends as a tool error all the same), UV_ECANCELED (the call had
 * already ended timed out or cancelled: text is discarded, and the call is
 * released all the same), TOOLCALL_ESTATE (already completed: a second
 * completion is detected only while the call is still alive, i.e. inside a
 * worker tool's function; anywhere else it is a use-after-free). */
TOOLCALL_EXTERN int toolcall_call_complete(toolcall_call_t *call,
                                           toolcall_status_t status,
                                           const char *text, size_t len);

#ifdef __cplusplus
}
#endif

#endif /* TOOLCALL_H */
