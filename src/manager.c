/* The manager: binds a registry and a ledger to one loop, carries
 * completions from other threads to it, and closes in two phases: cancel
 * and wait for every tool, then close the handles. */
#include "internal.h"

#include <string.h>

#define DEFAULT_MAX_ARGUMENT_BYTES ((size_t)8 << 20)
#define DEFAULT_MAX_BATCH_CALLS ((size_t)1 << 20)

void toolcall_manager_options_init(toolcall_manager_options_t *opts) {
  if (opts == NULL)
    return;
  memset(opts, 0, sizeof(*opts));
  opts->max_argument_bytes = DEFAULT_MAX_ARGUMENT_BYTES;
  opts->max_batch_calls = DEFAULT_MAX_BATCH_CALLS;
  opts->limit_policy = TOOLCALL_POLICY_REJECT_BATCH;
}

static void on_async(uv_async_t *handle) {
  toolcall_manager_t *m = handle->data;
  uv_mutex_lock(&m->done_mu);
  toolcall_call_t *call = m->done_head;
  m->done_head = m->done_tail = NULL;
  uv_mutex_unlock(&m->done_mu);
  while (call != NULL) {
    /* may run a batch callback that frees the batch holding call */
    toolcall_call_t *next = call->next_done;
    toolcall__call_dequeued(call);
    call = next;
  }
  toolcall__run_due(m);
}

static void manager_free(toolcall_manager_t *m) {
  toolcall__sched_close(m);
  uv_mutex_destroy(&m->done_mu);
  if (m->own_ledger)
    toolcall_ledger_free(m->ledger);
  toolcall__free(m);
}

static void on_closed_init_failure(uv_handle_t *handle) {
  manager_free(handle->data);
}

int toolcall_manager_new(toolcall_manager_t **out, uv_loop_t *loop,
                         const toolcall_manager_options_t *opts) {
  if (out == NULL || loop == NULL || opts == NULL || opts->registry == NULL)
    return UV_EINVAL;
  if (opts->max_argument_bytes == 0 || opts->max_batch_calls == 0)
    return UV_EINVAL;
  if (opts->limit_policy != TOOLCALL_POLICY_DEFAULT &&
      opts->limit_policy != TOOLCALL_POLICY_REJECT_BATCH &&
      opts->limit_policy != TOOLCALL_POLICY_PARTIAL)
    return UV_EINVAL;
  toolcall_manager_t *m = toolcall__calloc(1, sizeof(*m));
  if (m == NULL)
    return UV_ENOMEM;
  int rc;
  m->loop = loop;
  m->registry = opts->registry;
  m->max_argument_bytes = opts->max_argument_bytes;
  m->max_batch_calls = opts->max_batch_calls;
  m->limit_policy = opts->limit_policy == TOOLCALL_POLICY_PARTIAL
                        ? TOOLCALL_POLICY_PARTIAL
                        : TOOLCALL_POLICY_REJECT_BATCH;
  m->data = opts->data;
  m->max_concurrency = opts->max_concurrency;
  m->timeout_ms = opts->timeout_ms == TOOLCALL_NO_TIMEOUT ? 0 : opts->timeout_ms;
  m->on_call_start = opts->on_call_start;
  m->on_call_end = opts->on_call_end;
  if (opts->ledger != NULL) {
    m->ledger = opts->ledger;
  } else {
    if ((rc = toolcall_ledger_new(&m->ledger)) != 0)
      goto fail_ledger;
    m->own_ledger = true;
  }
  if ((rc = uv_mutex_init(&m->done_mu)) != 0)
    goto fail_mutex;
  if ((rc = toolcall__sched_init(m)) != 0)
    goto fail_sched;
  if ((rc = uv_async_init(loop, &m->async, on_async)) != 0)
    goto fail_async;
  m->async.data = m;
  /* The async handle must not keep the loop alive on its own: only work in
   * flight should. */
  uv_unref((uv_handle_t *)&m->async);
  m->handles_open = 2;
  toolcall__registry_freeze(m->registry);
  *out = m;
  return 0;

fail_async:
  /* The timer is open: close it, and free the rest when it has closed. */
  m->handles_open = 1;
  m->handles_closing = true;
  uv_close((uv_handle_t *)&m->timer, on_closed_init_failure);
  return rc;
fail_sched:
  uv_mutex_destroy(&m->done_mu);
fail_mutex:
  if (m->own_ledger)
    toolcall_ledger_free(m->ledger);
fail_ledger:
  toolcall__free(m);
  return rc;
}

void toolcall__manager_post_done(toolcall_manager_t *m, toolcall_call_t *call) {
  call->next_done = NULL;
  toolcall__manager_post_done_chain(m, call, call);
}

void toolcall__manager_post_done_chain(toolcall_manager_t *m,
                                       toolcall_call_t *head,
                                       toolcall_call_t *tail) {
  tail->next_done = NULL;
  uv_mutex_lock(&m->done_mu);
  if (m->done_tail != NULL)
    m->done_tail->next_done = head;
  else
    m->done_head = head;
  m->done_tail = tail;
  /* Sent under the lock: see the comment on done_mu. */
  uv_async_send(&m->async);
  uv_mutex_unlock(&m->done_mu);
}

static void on_handle_closed(uv_handle_t *handle) {
  toolcall_manager_t *m = handle->data;
  if (--m->handles_open > 0)
    return;
  if (m->close_cb != NULL)
    m->close_cb(m);
  manager_free(m);
}

void toolcall__manager_update_ref(toolcall_manager_t *m) {
  if (m->batches_in_flight > 0 || m->running > 0)
    uv_ref((uv_handle_t *)&m->async);
  else
    uv_unref((uv_handle_t *)&m->async);
}

void toolcall__manager_maybe_close(toolcall_manager_t *m) {
  if (!m->closing || m->handles_closing || m->batches_in_flight > 0 ||
      m->running > 0)
    return;
  m->handles_closing = true;
  uv_close((uv_handle_t *)&m->timer, on_handle_closed);
  uv_close((uv_handle_t *)&m->async, on_handle_closed);
}

int toolcall_manager_close(toolcall_manager_t *m, toolcall_close_cb close_cb) {
  if (m == NULL)
    return UV_EINVAL;
  if (m->closing)
    return TOOLCALL_ECLOSING;
  m->closing = true;
  m->close_cb = close_cb;
  /* Cancelling may finish a batch, which leaves the list. */
  for (toolcall_batch_t *b = m->live_head, *next; b != NULL; b = next) {
    next = b->live_next;
    if (!b->cancelled)
      toolcall__sched_cancel(b);
  }
  toolcall__manager_maybe_close(m);
  return 0;
}

uv_loop_t *toolcall_manager_loop(const toolcall_manager_t *m) {
  return m != NULL ? m->loop : NULL;
}

toolcall_ledger_t *toolcall_manager_ledger(const toolcall_manager_t *m) {
  return m != NULL ? m->ledger : NULL;
}

toolcall_registry_t *toolcall_manager_registry(const toolcall_manager_t *m) {
  return m != NULL ? m->registry : NULL;
}

void *toolcall_manager_data(const toolcall_manager_t *m) {
  return m != NULL ? m->data : NULL;
}
