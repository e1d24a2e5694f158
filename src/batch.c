/* Batches: validate and copy the calls of one model response, start them
 * all, and gather their results in call order. */
#include "internal.h"

#include <stdio.h>
#include <string.h>

static const char empty_output[] = "";
static const char msg_no_result[] =
    "the tool returned without completing the call";
static const char msg_nomem[] = "out of memory while recording the result";
static const char msg_unknown_nomem[] = "unknown tool";
static const char msg_denied[] = "the host denied this tool call";

/* ---- validation ---- */

typedef struct {
  const char *id;
  size_t id_len;
  size_t name_len;
  size_t args_len;
  const char *args;
  const toolcall__tool_t *tool; /* NULL: unknown */
} spec_info_t;

/* Duplicate ids: a small table of call indexes (+1) keyed by id hash.
 * Batches of a few calls compare pairwise and allocate nothing. */
static int find_duplicate_id(const spec_info_t *info, size_t n, size_t *dup) {
  if (n <= 8) {
    for (size_t i = 1; i < n; i++)
      for (size_t j = 0; j < i; j++)
        if (info[i].id_len == info[j].id_len &&
            memcmp(info[i].id, info[j].id, info[i].id_len) == 0) {
          *dup = i;
          return TOOLCALL_EDUPID;
        }
    return 0;
  }
  size_t nslots = 16;
  while (nslots < 2 * n)
    nslots *= 2;
  size_t *slots = toolcall__calloc(nslots, sizeof(*slots));
  if (slots == NULL)
    return UV_ENOMEM;
  int rc = 0;
  size_t mask = nslots - 1;
  for (size_t i = 0; i < n && rc == 0; i++) {
    size_t s = toolcall__hash_key(info[i].id, info[i].id_len) & mask;
    for (; slots[s] != 0; s = (s + 1) & mask) {
      size_t j = slots[s] - 1;
      if (info[j].id_len == info[i].id_len &&
          memcmp(info[j].id, info[i].id, info[i].id_len) == 0) {
        *dup = i;
        rc = TOOLCALL_EDUPID;
        break;
      }
    }
    slots[s] = i + 1;
  }
  toolcall__free(slots);
  return rc;
}

#define SPEC(calls, stride, i)                                                 \
  ((const toolcall_call_spec_t *)((const char *)(calls) + (i) * (stride)))

/* The specs are `stride` bytes apart (submit: an array of specs; resume:
 * the specs inside an array of decisions). */
static int check_specs(const toolcall_manager_t *m,
                       const toolcall_call_spec_t *calls, size_t stride,
                       spec_info_t *info, size_t n, size_t *strings,
                       size_t *workers, toolcall_error_t *err) {
  size_t total = 0, nworkers = 0;
  /* Parallel calls are often to one tool: look a name up once per run of
   * equal names. */
  const toolcall__tool_t *last_tool = NULL;
  const char *last_name = NULL;
  size_t last_len = 0;
  for (size_t i = 0; i < n; i++) {
    const toolcall_call_spec_t *c = SPEC(calls, stride, i);
    spec_info_t *in = &info[i];
    in->id = c->id;
    if (c->id == NULL || c->name == NULL)
      return toolcall__fail(err, UV_EINVAL, i, "call %zu: %s is NULL", i,
                            c->id == NULL ? "id" : "name");
    in->id_len = strnlen(c->id, TOOLCALL_ID_MAX + 1);
    if (in->id_len == 0)
      return toolcall__fail(err, UV_EINVAL, i, "call %zu: id is empty", i);
    if (in->id_len > TOOLCALL_ID_MAX)
      return toolcall__fail(err, UV_ENAMETOOLONG, i,
                            "call %zu: id is longer than %d bytes", i,
                            TOOLCALL_ID_MAX);
    if (!toolcall__utf8_valid(c->id, in->id_len))
      return toolcall__fail(err, UV_EILSEQ, i,
                            "call %zu: id is not valid UTF-8", i);
    in->name_len = strlen(c->name);
    if (last_name == NULL || in->name_len != last_len ||
        memcmp(last_name, c->name, last_len) != 0) {
      last_tool = toolcall__registry_find(m->registry, c->name, in->name_len);
      last_name = c->name;
      last_len = in->name_len;
    }
    in->tool = last_tool;
    /* A registered name is ASCII; only a name the registry does not know
     * needs the check. */
    if (last_tool == NULL && !toolcall__utf8_valid(c->name, in->name_len))
      return toolcall__fail(err, UV_EILSEQ, i,
                            "call %zu: tool name is not valid UTF-8", i);
    if (c->arguments == NULL) {
      in->args = "{}";
      in->args_len = 2;
    } else {
      in->args = c->arguments;
      in->args_len = c->arguments_len != 0
                         ? c->arguments_len
                         : strnlen(c->arguments, m->max_argument_bytes == SIZE_MAX
                                                     ? SIZE_MAX
                                                     : m->max_argument_bytes + 1);
    }
    if (in->args_len > m->max_argument_bytes)
      return toolcall__fail(err, UV_E2BIG, i,
                            "call %zu: arguments are longer than %zu bytes", i,
                            m->max_argument_bytes);
    if (c->arguments != NULL && !toolcall__utf8_valid(in->args, in->args_len))
      return toolcall__fail(err, UV_EILSEQ, i,
                            "call %zu: arguments are not valid UTF-8 (or hold "
                            "a NUL byte)",
                            i);
    /* Guard every addition: names are unbounded, and so are arguments
     * when max_argument_bytes is SIZE_MAX. */
    size_t need = in->id_len + 3; /* three NULs; ids are bounded */
    if (in->name_len > SIZE_MAX - need ||
        in->args_len > SIZE_MAX - need - in->name_len ||
        total > SIZE_MAX - need - in->name_len - in->args_len)
      return toolcall__fail(err, UV_E2BIG, i, "call %zu: batch too large", i);
    total += need + in->name_len + in->args_len;
    nworkers += last_tool != NULL && last_tool->kind == TOOLCALL_TOOL_WORKER;
  }
  size_t dup = 0;
  int rc = find_duplicate_id(info, n, &dup);
  if (rc == TOOLCALL_EDUPID)
    return toolcall__fail(err, rc, dup, "call %zu: id '%.*s' is used twice",
                          dup, (int)toolcall__utf8_prefix(info[dup].id,
                                                          info[dup].id_len, 64),
                          info[dup].id);
  if (rc != 0)
    return toolcall__fail(err, rc, SIZE_MAX, "out of memory");
  *strings = total;
  *workers = nworkers;
  return 0;
}

/* ---- results ---- */

static void set_message(toolcall_call_t *call, char *owned,
                        const char *fallback) {
  call->r.message = owned != NULL ? owned : fallback;
  call->message_owned = owned != NULL;
}

static void set_unknown(toolcall_call_t *call) {
  const toolcall_registry_t *reg = call->batch->manager->registry;
  size_t name_len = strlen(call->r.tool);
  size_t shown = toolcall__utf8_prefix(call->r.tool, name_len, 80);
  const char *names = reg->names != NULL ? reg->names : "";
  size_t size = shown + strlen(names) + 64;
  char *msg = toolcall__malloc(size);
  if (msg != NULL)
    snprintf(msg, size, "unknown tool '%.*s%s'; available tools: %s",
             (int)shown, call->r.tool, shown < name_len ? "..." : "",
             reg->count > 0 ? names : "(none)");
  call->r.status = TOOLCALL_UNKNOWN_TOOL;
  set_message(call, msg, msg_unknown_nomem);
}

static void set_deferred(toolcall_call_t *call) {
  char *msg = toolcall__malloc(TOOLCALL_NAME_MAX + 96);
  if (msg != NULL)
    snprintf(msg, TOOLCALL_NAME_MAX + 96,
             "the tool '%s' needs the host's approval; the call has not run "
             "yet",
             call->tool->name);
  call->r.status = TOOLCALL_DEFERRED;
  set_message(call, msg, "the tool needs the host's approval");
}

/* Admission refused the call: say why, in words the model can read. */
static void set_rejected(toolcall_call_t *call) {
  toolcall_batch_t *b = call->batch;
  call->r.status = TOOLCALL_REJECTED;
  if (call->admit != TOOLCALL__ADMIT_OVER_TOOL) {
    set_message(call, NULL, b->message);
    return;
  }
  const toolcall__tool_use_t *u = call->tool_use;
  char *msg = toolcall__malloc(TOOLCALL_NAME_MAX + 128);
  if (msg != NULL)
    snprintf(msg, TOOLCALL_NAME_MAX + 128,
             "tool call rejected: the tool '%s' has used all %lld of its "
             "allowed uses; do not call it again",
             u->name, (long long)call->reject_limit);
  set_message(call, msg, "tool call rejected: the tool's use limit is reached");
  call->tool_use = NULL; /* holds no reservation */
}

static void format_admission(toolcall_batch_t *b,
                             const toolcall__admission_t *adm) {
  if (adm->failed && adm->tool_use != NULL)
    snprintf(b->message, sizeof(b->message),
             "the next %llu call(s) of tool '%s' would exceed its limit of "
             "%lld uses (uses would be %llu)",
             (unsigned long long)adm->wanted, adm->tool_use->name,
             (long long)adm->limit, (unsigned long long)adm->projected);
  else if (adm->failed)
    snprintf(b->message, sizeof(b->message),
             "the next %llu tool call(s) would exceed the tool_calls limit of "
             "%lld (tool_calls would be %llu)",
             (unsigned long long)adm->wanted, (long long)adm->limit,
             (unsigned long long)adm->projected);
  else if (adm->rejected > 0)
    snprintf(b->message, sizeof(b->message),
             "tool call rejected: the tool_calls limit of %lld is reached; "
             "no more tool calls can run",
             (long long)adm->limit);
}

/* ---- running ---- */

void toolcall__worker_check(toolcall_call_t *call) {
  /* Claim the call as toolcall_call_complete() does, so a completion that
   * (against the rules) races in from another thread cannot also write. */
  int expected = TOOLCALL__OPEN;
  if (atomic_compare_exchange_strong(&call->completed, &expected,
                                     TOOLCALL__BY_TOOL)) {
    call->r.status = TOOLCALL_TOOL_ERROR;
    set_message(call, NULL, msg_no_result);
    call->r.duration_ns = uv_hrtime() - call->start_ns;
  }
}

int toolcall_call_complete(toolcall_call_t *call, toolcall_status_t status,
                           const char *text, size_t len) {
  if (call == NULL)
    return UV_EINVAL;
  if (status != TOOLCALL_OK && status != TOOLCALL_TOOL_ERROR &&
      status != TOOLCALL_RETRY)
    return UV_EINVAL;
  int expected = TOOLCALL__OPEN;
  if (!atomic_compare_exchange_strong(&call->completed, &expected,
                                      TOOLCALL__BY_TOOL)) {
    if (expected != TOOLCALL__BY_LIBRARY)
      return TOOLCALL_ESTATE;
    /* Timed out or cancelled: discard the result, but a loop tool still
     * hands the call back so its slot and memory are released. */
    if (call->tool->kind == TOOLCALL_TOOL_LOOP)
      toolcall__manager_post_done(call->batch->manager, call);
    return UV_ECANCELED;
  }
  int rc = 0;
  char *copy = NULL;
  if (text != NULL) {
    if (len == 0)
      len = strlen(text);
    if ((copy = toolcall__strndup(text, len)) == NULL) {
      rc = UV_ENOMEM;
      status = TOOLCALL_TOOL_ERROR;
    }
  }
  call->r.status = status;
  if (status == TOOLCALL_OK) {
    call->r.output = copy != NULL ? copy : empty_output;
    call->r.output_len = copy != NULL ? len : 0;
    call->output_owned = copy != NULL;
  } else {
    set_message(call, copy, rc != 0 ? msg_nomem : toolcall_status_name(status));
  }
  call->r.duration_ns = uv_hrtime() - call->start_ns;
  if (call->tool->kind == TOOLCALL_TOOL_LOOP)
    toolcall__manager_post_done(call->batch->manager, call);
  return rc;
}

int toolcall_call_cancelled(const toolcall_call_t *call) {
  return call != NULL &&
         atomic_load(&((toolcall_call_t *)call)->completed) ==
             TOOLCALL__BY_LIBRARY;
}

void toolcall_batch_options_init(toolcall_batch_options_t *opts) {
  if (opts != NULL) {
    memset(opts, 0, sizeof(*opts));
    opts->limit_policy = TOOLCALL_POLICY_DEFAULT;
  }
}

/* ---- checks that end a call before it runs ---- */

static void set_early(toolcall_call_t *call, toolcall_status_t status,
                      const char *text, const char *fallback) {
  call->r.status = status;
  set_message(call, text != NULL ? toolcall__strdup(text) : NULL, fallback);
}

/* The arguments must be a JSON object, and fit the tool's schema. */
static bool arguments_ok(toolcall_call_t *c) {
  char msg[256];
  if (c->tool->compiled != NULL) {
    if (toolcall__schema_check(c->tool->compiled, c->args, c->args_len, msg,
                               sizeof(msg)))
      return true;
  } else if (toolcall__json_object_check(c->args, c->args_len, msg,
                                         sizeof(msg))) {
    return true;
  }
  set_early(c, TOOLCALL_RETRY, msg, "the arguments are not valid");
  return false;
}

static uint64_t resolve_timeout(const toolcall_manager_t *m,
                                const toolcall__tool_t *t, uint64_t call) {
  uint64_t ms = call != 0 ? call : t->timeout_ms != 0 ? t->timeout_ms
                                                      : m->timeout_ms;
  return ms == TOOLCALL_NO_TIMEOUT ? 0 : ms;
}

/* Submit and resume: specs are `stride` bytes apart; decisions is NULL for
 * submit. */
static int batch_start(toolcall_manager_t *m, const toolcall_call_spec_t *calls,
                       size_t stride, const toolcall_decision_t *decisions,
                       size_t n, const toolcall_batch_options_t *opts,
                       toolcall_batch_cb cb, void *data, toolcall_batch_t **out,
                       toolcall_error_t *err) {
  if (m == NULL || cb == NULL || (calls == NULL && n > 0))
    return toolcall__fail(err, UV_EINVAL, SIZE_MAX,
                          "manager, calls or callback is NULL");
  toolcall_limit_policy_t policy = m->limit_policy;
  toolcall_run_t *run = NULL;
  if (opts != NULL) {
    if (opts->limit_policy != TOOLCALL_POLICY_DEFAULT) {
      if (opts->limit_policy != TOOLCALL_POLICY_REJECT_BATCH &&
          opts->limit_policy != TOOLCALL_POLICY_PARTIAL)
        return toolcall__fail(err, UV_EINVAL, SIZE_MAX,
                              "unknown limit policy %d",
                              (int)opts->limit_policy);
      policy = opts->limit_policy;
    }
    run = opts->run;
    if (run != NULL && run->registry != m->registry)
      return toolcall__fail(err, UV_EINVAL, SIZE_MAX,
                            "the run was made for another registry");
  }
  if (m->closing)
    return toolcall__fail(err, TOOLCALL_ECLOSING, SIZE_MAX,
                          "the manager is closing");
  if (n == 0)
    return toolcall__fail(err, TOOLCALL_EEMPTY, SIZE_MAX, "the batch is empty");
  if (n > m->max_batch_calls)
    return toolcall__fail(err, UV_E2BIG, SIZE_MAX,
                          "the batch has %zu calls; the limit is %zu", n,
                          m->max_batch_calls);

  spec_info_t *info = toolcall__malloc(n * sizeof(*info));
  if (info == NULL)
    return toolcall__fail(err, UV_ENOMEM, SIZE_MAX, "out of memory");
  size_t strings = 0, workers = 0;
  int rc = check_specs(m, calls, stride, info, n, &strings, &workers, err);
  if (rc != 0) {
    toolcall__free(info);
    return rc;
  }

  /* One allocation: the batch, its calls, the threadpool requests of its
   * worker calls (only those: a loop call does without one), then every
   * string. */
  size_t head_size = (sizeof(toolcall_batch_t) + 15) & ~(size_t)15;
  size_t calls_size = n * sizeof(toolcall_call_t);
  size_t works_size = workers * sizeof(uv_work_t);
  toolcall_batch_t *b = NULL;
  if (calls_size / sizeof(toolcall_call_t) == n &&
      works_size <= SIZE_MAX - strings &&
      head_size + calls_size <= SIZE_MAX - strings - works_size)
    b = toolcall__malloc(head_size + calls_size + works_size + strings);
  if (b == NULL) {
    toolcall__free(info);
    return toolcall__fail(err, UV_ENOMEM, SIZE_MAX, "out of memory");
  }
  memset(b, 0, sizeof(*b));
  b->manager = m;
  b->cb = cb;
  b->data = data;
  b->run = run;
  b->n = n;
  b->pending = n;
  atomic_init(&b->refs, 1);
  b->calls = (toolcall_call_t *)((char *)b + head_size);
  uv_work_t *works = (uv_work_t *)((char *)b->calls + calls_size);
  char *p = (char *)works + works_size;
  size_t wanted = 0, timed = 0;
  for (size_t i = 0; i < n; i++) {
    toolcall_call_t *c = &b->calls[i];
    const toolcall_call_spec_t *spec = SPEC(calls, stride, i);
    const spec_info_t *in = &info[i];
    memset(c, 0, sizeof(*c));
    c->batch = b;
    c->index = i;
    c->heap_index = UINT32_MAX;
    c->r.id = memcpy(p, spec->id, in->id_len);
    p += in->id_len;
    *p++ = '\0';
    c->r.tool = memcpy(p, spec->name, in->name_len);
    p += in->name_len;
    *p++ = '\0';
    c->args = memcpy(p, in->args, in->args_len);
    c->args_len = in->args_len;
    p += in->args_len;
    *p++ = '\0';
    c->r.output = empty_output;
    atomic_init(&c->completed, TOOLCALL__OPEN);
    c->tool = in->tool;
    if (c->tool == NULL)
      continue; /* unknown: its message is written below */
    if (c->tool->kind == TOOLCALL_TOOL_WORKER)
      c->work = works++;
    if (decisions != NULL && !decisions[i].approved)
      set_early(c, TOOLCALL_DENIED, decisions[i].message, msg_denied);
    else if (decisions == NULL &&
             (c->tool->flags & TOOLCALL_TOOL_REQUIRES_APPROVAL))
      set_deferred(c);
    else if (arguments_ok(c)) {
      c->admit = TOOLCALL__ADMIT_WANTED;
      c->sched = TOOLCALL__WAITING;
      c->timeout_ms = resolve_timeout(m, c->tool, spec->timeout_ms);
      wanted++;
      timed += c->timeout_ms != 0;
    }
  }
  toolcall__free(info);
  if ((rc = toolcall__sched_reserve(m, timed)) != 0) {
    b->refs = 1;
    toolcall_batch_free(b);
    return toolcall__fail(err, rc, SIZE_MAX, "out of memory");
  }

  toolcall__admission_t adm;
  toolcall__ledger_admit(m->ledger, b->calls, n, wanted, policy, &adm);
  format_admission(b, &adm);
  if (adm.failed)
    b->status = TOOLCALL_ELIMIT;
  if (out != NULL)
    *out = b;

  /* Calls that never run (unknown tools, calls refused by a limit or a
   * check, deferred, denied) end through the completion queue in one
   * chain, so neither the batch callback nor a hook runs inside submit.
   * Then the admitted calls are queued and the caps let them start; a loop
   * tool may complete inside its start function, which also goes through
   * the queue. */
  toolcall_call_t *head = NULL, *tail = NULL;
  size_t fit = adm.fit;
  for (size_t i = 0; i < n; i++) {
    toolcall_call_t *c = &b->calls[i];
    if (c->admit == TOOLCALL__ADMIT_WANTED && !adm.marked)
      c->admit = toolcall__admit_mark(&adm, &fit);
    if (c->admit == TOOLCALL__ADMIT_RESERVED) {
      m->heap_reserved += c->timeout_ms != 0;
      continue;
    }
    if (c->tool == NULL)
      set_unknown(c);
    else if (c->sched == TOOLCALL__WAITING)
      set_rejected(c);
    c->sched = TOOLCALL__ENDED_EARLY;
    c->timeout_ms = 0;
    atomic_store_explicit(&c->completed, TOOLCALL__BY_TOOL,
                          memory_order_relaxed);
    if (tail != NULL)
      tail->next_done = c;
    else
      head = c;
    tail = c;
  }
  if (head != NULL)
    toolcall__manager_post_done_chain(m, head, tail);
  toolcall__sched_submit(b);
  return 0;
}

int toolcall_batch_submit(toolcall_manager_t *m,
                          const toolcall_call_spec_t *calls, size_t n,
                          const toolcall_batch_options_t *opts,
                          toolcall_batch_cb cb, void *data,
                          toolcall_batch_t **out, toolcall_error_t *err) {
  return batch_start(m, calls, sizeof(*calls), NULL, n, opts, cb, data, out,
                     err);
}

int toolcall_batch_resume(toolcall_manager_t *m,
                          const toolcall_decision_t *decisions, size_t n,
                          const toolcall_batch_options_t *opts,
                          toolcall_batch_cb cb, void *data,
                          toolcall_batch_t **out, toolcall_error_t *err) {
  return batch_start(m, decisions != NULL ? &decisions->call : NULL,
                     sizeof(*decisions), decisions, n, opts, cb, data, out,
                     err);
}

int toolcall_batch_cancel(toolcall_batch_t *b) {
  if (b == NULL)
    return UV_EINVAL;
  if (b->finished || b->cancelled)
    return TOOLCALL_ESTATE;
  toolcall__sched_cancel(b);
  return 0;
}

static void batch_release(toolcall_batch_t *b) {
  for (size_t i = 0; i < b->n; i++) {
    toolcall_call_t *c = &b->calls[i];
    if (c->output_owned)
      toolcall__free((char *)c->r.output);
    if (c->message_owned)
      toolcall__free((char *)c->r.message);
  }
  toolcall__free(b);
}

void toolcall__batch_unref(toolcall_batch_t *b) {
  if (atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1)
    batch_release(b);
}

void toolcall_batch_free(toolcall_batch_t *b) {
  if (b != NULL)
    toolcall__batch_unref(b);
}

size_t toolcall_batch_size(const toolcall_batch_t *b) {
  return b != NULL ? b->n : 0;
}

const toolcall_result_t *toolcall_batch_result(const toolcall_batch_t *b,
                                               size_t i) {
  if (b == NULL || i >= b->n)
    return NULL;
  return &b->calls[i].r;
}

void *toolcall_batch_data(const toolcall_batch_t *b) {
  return b != NULL ? b->data : NULL;
}

toolcall_manager_t *toolcall_batch_manager(const toolcall_batch_t *b) {
  return b != NULL ? b->manager : NULL;
}

const char *toolcall_batch_error(const toolcall_batch_t *b) {
  return b != NULL && b->status != 0 ? b->message : NULL;
}

const char *toolcall_call_id(const toolcall_call_t *call) {
  return call != NULL ? call->r.id : NULL;
}

const char *toolcall_call_tool(const toolcall_call_t *call) {
  return call != NULL ? call->r.tool : NULL;
}

const char *toolcall_call_arguments(const toolcall_call_t *call, size_t *len) {
  if (call == NULL)
    return NULL;
  if (len != NULL)
    *len = call->args_len;
  return call->args;
}

size_t toolcall_call_index(const toolcall_call_t *call) {
  return call != NULL ? call->index : SIZE_MAX;
}

toolcall_batch_t *toolcall_call_batch(const toolcall_call_t *call) {
  return call != NULL ? call->batch : NULL;
}

toolcall_ledger_t *toolcall_call_ledger(const toolcall_call_t *call) {
  return call != NULL ? call->batch->manager->ledger : NULL;
}
