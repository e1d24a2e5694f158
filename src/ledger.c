/* The ledger: every counter behind one mutex, held only for the arithmetic.
 *
 * TOOLCALL_BREAK_LOCK (a test-only build option) compiles the lock away so
 * the stress suite can prove that it notices lost updates. */
#include "internal.h"

#include <string.h>

#define TOOLCALL_DETAILS_MAX 64

struct toolcall_ledger_s {
  uv_mutex_t mu;
  toolcall_usage_t usage;
  uint64_t dispatched;
  uint64_t calls[TOOLCALL_STATUS_SLOTS_];
  size_t ndetails;
  toolcall_detail_t details[TOOLCALL_DETAILS_MAX];
};

#ifdef TOOLCALL_BREAK_LOCK
#define LEDGER_LOCK(l) ((void)(l))
#define LEDGER_UNLOCK(l) ((void)(l))
#else
#define LEDGER_LOCK(l) uv_mutex_lock(&((toolcall_ledger_t *)(l))->mu)
#define LEDGER_UNLOCK(l) uv_mutex_unlock(&((toolcall_ledger_t *)(l))->mu)
#endif

int toolcall_ledger_new(toolcall_ledger_t **out) {
  if (out == NULL)
    return UV_EINVAL;
  toolcall_ledger_t *l = toolcall__calloc(1, sizeof(*l));
  if (l == NULL)
    return UV_ENOMEM;
  int rc = uv_mutex_init(&l->mu);
  if (rc != 0) {
    toolcall__free(l);
    return rc;
  }
  *out = l;
  return 0;
}

void toolcall_ledger_free(toolcall_ledger_t *l) {
  if (l == NULL)
    return;
  uv_mutex_destroy(&l->mu);
  toolcall__free(l);
}

static bool add_overflows(uint64_t a, uint64_t b) { return a > UINT64_MAX - b; }

int toolcall_ledger_add_usage(toolcall_ledger_t *l, const toolcall_usage_t *u) {
  if (l == NULL || u == NULL)
    return UV_EINVAL;
  int rc = 0;
  LEDGER_LOCK(l);
  if (add_overflows(l->usage.requests, u->requests) ||
      add_overflows(l->usage.input_tokens, u->input_tokens) ||
      add_overflows(l->usage.output_tokens, u->output_tokens) ||
      add_overflows(l->usage.cache_read_tokens, u->cache_read_tokens) ||
      add_overflows(l->usage.cache_write_tokens, u->cache_write_tokens)) {
    rc = UV_EOVERFLOW;
  } else {
    l->usage.requests += u->requests;
    l->usage.input_tokens += u->input_tokens;
    l->usage.output_tokens += u->output_tokens;
    l->usage.cache_read_tokens += u->cache_read_tokens;
    l->usage.cache_write_tokens += u->cache_write_tokens;
  }
  LEDGER_UNLOCK(l);
  return rc;
}

static int detail_name_check(const char *name, size_t *len) {
  if (name == NULL || name[0] == '\0')
    return UV_EINVAL;
  *len = strnlen(name, TOOLCALL_DETAIL_NAME_MAX + 1);
  return *len > TOOLCALL_DETAIL_NAME_MAX ? UV_ENAMETOOLONG : 0;
}

/* Caller holds the lock. */
static toolcall_detail_t *detail_find(const toolcall_ledger_t *l,
                                      const char *name) {
  for (size_t i = 0; i < l->ndetails; i++)
    if (strcmp(l->details[i].name, name) == 0)
      return (toolcall_detail_t *)&l->details[i];
  return NULL;
}

int toolcall_ledger_add_detail(toolcall_ledger_t *l, const char *name,
                               uint64_t delta) {
  size_t len;
  if (l == NULL)
    return UV_EINVAL;
  int rc = detail_name_check(name, &len);
  if (rc != 0)
    return rc;
  LEDGER_LOCK(l);
  toolcall_detail_t *d = detail_find(l, name);
  if (d == NULL) {
    if (l->ndetails == TOOLCALL_DETAILS_MAX) {
      rc = UV_ENOSPC;
    } else {
      d = &l->details[l->ndetails++];
      memcpy(d->name, name, len + 1);
      d->value = 0;
    }
  }
  if (d != NULL) {
    if (add_overflows(d->value, delta))
      rc = UV_EOVERFLOW;
    else
      d->value += delta;
  }
  LEDGER_UNLOCK(l);
  return rc;
}

int toolcall_ledger_detail(const toolcall_ledger_t *l, const char *name,
                           uint64_t *value) {
  size_t len;
  if (l == NULL || value == NULL)
    return UV_EINVAL;
  int rc = detail_name_check(name, &len);
  if (rc != 0)
    return rc;
  LEDGER_LOCK(l);
  const toolcall_detail_t *d = detail_find(l, name);
  if (d != NULL)
    *value = d->value;
  LEDGER_UNLOCK(l);
  return d != NULL ? 0 : UV_ENOENT;
}

int toolcall_ledger_details(const toolcall_ledger_t *l, toolcall_detail_t *out,
                            size_t cap, size_t *count) {
  if (l == NULL || count == NULL || (out == NULL && cap > 0))
    return UV_EINVAL;
  LEDGER_LOCK(l);
  size_t n = l->ndetails;
  if (cap > 0)
    memcpy(out, l->details, (n < cap ? n : cap) * sizeof(*out));
  LEDGER_UNLOCK(l);
  *count = n;
  return 0;
}

int toolcall_ledger_snapshot(const toolcall_ledger_t *l,
                             toolcall_snapshot_t *out) {
  if (l == NULL || out == NULL)
    return UV_EINVAL;
  memset(out, 0, sizeof(*out));
  LEDGER_LOCK(l);
  out->usage = l->usage;
  out->dispatched = l->dispatched;
  memcpy(out->calls, l->calls, sizeof(out->calls));
  LEDGER_UNLOCK(l);
  out->tool_calls = out->calls[TOOLCALL_OK];
  return 0;
}

void toolcall__ledger_dispatch(toolcall_ledger_t *l, uint64_t n) {
  LEDGER_LOCK(l);
  l->dispatched += n;
  LEDGER_UNLOCK(l);
}

void toolcall__ledger_finish(toolcall_ledger_t *l, toolcall_status_t status) {
  LEDGER_LOCK(l);
  l->calls[status]++;
  LEDGER_UNLOCK(l);
}
