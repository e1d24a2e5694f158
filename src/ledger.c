/* The ledger: every counter behind one mutex, held only for the arithmetic.
 *
 * TOOLCALL_BREAK_LOCK (a test-only build option) compiles the lock away so
 * the stress suite can prove that it notices lost updates. */
#include "internal.h"

#include <string.h>

#include <stdio.h>

#define TOOLCALL_DETAILS_MAX 64
#define TOOLCALL_TOOL_LIMITS_MAX 64

struct toolcall_ledger_s {
  uv_mutex_t mu;
  toolcall_usage_t usage;
  uint64_t dispatched;
  uint64_t calls[TOOLCALL_STATUS_SLOTS_];
  uint64_t reserved_tool_calls;
  uint64_t reserved_requests;
  toolcall_limits_t limits;
  size_t ndetails;
  toolcall_detail_t details[TOOLCALL_DETAILS_MAX];
  /* Entries are only ever appended, and a name never changes once written,
   * so a pointer to one stays valid for the ledger's life. */
  size_t ntool_uses;
  toolcall__tool_use_t tool_uses[TOOLCALL_TOOL_LIMITS_MAX];
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
  toolcall_limits_init(&l->limits);
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

/* Add every field of u, or none if any would overflow. Caller holds the
 * lock. */
static int usage_add_locked(toolcall_ledger_t *l, const toolcall_usage_t *u) {
  if (add_overflows(l->usage.requests, u->requests) ||
      add_overflows(l->usage.input_tokens, u->input_tokens) ||
      add_overflows(l->usage.output_tokens, u->output_tokens) ||
      add_overflows(l->usage.cache_read_tokens, u->cache_read_tokens) ||
      add_overflows(l->usage.cache_write_tokens, u->cache_write_tokens))
    return UV_EOVERFLOW;
  l->usage.requests += u->requests;
  l->usage.input_tokens += u->input_tokens;
  l->usage.output_tokens += u->output_tokens;
  l->usage.cache_read_tokens += u->cache_read_tokens;
  l->usage.cache_write_tokens += u->cache_write_tokens;
  return 0;
}

int toolcall_ledger_add_usage(toolcall_ledger_t *l, const toolcall_usage_t *u) {
  if (l == NULL || u == NULL)
    return UV_EINVAL;
  LEDGER_LOCK(l);
  int rc = usage_add_locked(l, u);
  LEDGER_UNLOCK(l);
  return rc;
}

/* A detail counter's or a tool's name: 1..max bytes. */
static int name_check(const char *name, size_t max, size_t *len) {
  if (name == NULL || name[0] == '\0')
    return UV_EINVAL;
  *len = strnlen(name, max + 1);
  return *len > max ? UV_ENAMETOOLONG : 0;
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
  int rc = name_check(name, TOOLCALL_DETAIL_NAME_MAX, &len);
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
  int rc = name_check(name, TOOLCALL_DETAIL_NAME_MAX, &len);
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
  out->reserved_tool_calls = l->reserved_tool_calls;
  out->reserved_requests = l->reserved_requests;
  LEDGER_UNLOCK(l);
  out->tool_calls = out->calls[TOOLCALL_OK];
  return 0;
}

/* ---- limits ---- */

void toolcall_limits_init(toolcall_limits_t *limits) {
  if (limits == NULL)
    return;
  memset(limits, 0, sizeof(*limits));
  limits->requests = TOOLCALL_UNLIMITED;
  limits->tool_calls = TOOLCALL_UNLIMITED;
  limits->input_tokens = TOOLCALL_UNLIMITED;
  limits->output_tokens = TOOLCALL_UNLIMITED;
  limits->total_tokens = TOOLCALL_UNLIMITED;
}

int toolcall_ledger_set_limits(toolcall_ledger_t *l,
                               const toolcall_limits_t *limits) {
  if (l == NULL || limits == NULL)
    return UV_EINVAL;
  if (limits->requests < -1 || limits->tool_calls < -1 ||
      limits->input_tokens < -1 || limits->output_tokens < -1 ||
      limits->total_tokens < -1)
    return UV_EINVAL;
  LEDGER_LOCK(l);
  l->limits = *limits;
  LEDGER_UNLOCK(l);
  return 0;
}

int toolcall_ledger_get_limits(const toolcall_ledger_t *l,
                               toolcall_limits_t *limits) {
  if (l == NULL || limits == NULL)
    return UV_EINVAL;
  LEDGER_LOCK(l);
  *limits = l->limits;
  LEDGER_UNLOCK(l);
  return 0;
}

/* Caller holds the lock. */
static toolcall__tool_use_t *tool_use_find(const toolcall_ledger_t *l,
                                           const char *name, size_t len) {
  for (size_t i = 0; i < l->ntool_uses; i++) {
    const toolcall__tool_use_t *u = &l->tool_uses[i];
    if (u->name_len == len && memcmp(u->name, name, len) == 0)
      return (toolcall__tool_use_t *)u;
  }
  return NULL;
}

int toolcall_ledger_set_tool_limit(toolcall_ledger_t *l, const char *tool,
                                   int64_t max_uses) {
  size_t len;
  if (l == NULL || max_uses < -1)
    return UV_EINVAL;
  int rc = name_check(tool, TOOLCALL_NAME_MAX, &len);
  if (rc != 0)
    return rc;
  LEDGER_LOCK(l);
  toolcall__tool_use_t *u = tool_use_find(l, tool, len);
  if (u == NULL && l->ntool_uses < TOOLCALL_TOOL_LIMITS_MAX) {
    u = &l->tool_uses[l->ntool_uses++];
    memcpy(u->name, tool, len + 1);
    u->name_len = len;
  }
  if (u != NULL)
    u->limit = max_uses;
  else
    rc = UV_ENOSPC;
  LEDGER_UNLOCK(l);
  return rc;
}

int toolcall_ledger_tool_uses(const toolcall_ledger_t *l, const char *tool,
                              uint64_t *used, uint64_t *reserved) {
  size_t len;
  if (l == NULL || used == NULL || reserved == NULL)
    return UV_EINVAL;
  int rc = name_check(tool, TOOLCALL_NAME_MAX, &len);
  if (rc != 0)
    return rc;
  LEDGER_LOCK(l);
  const toolcall__tool_use_t *u = tool_use_find(l, tool, len);
  if (u != NULL) {
    *used = u->used;
    *reserved = u->reserved;
  }
  LEDGER_UNLOCK(l);
  return u != NULL ? 0 : UV_ENOENT;
}

/* used + more > limit, for a limit that may be unset. */
static bool over(int64_t limit, uint64_t used, uint64_t more) {
  return limit != TOOLCALL_UNLIMITED &&
         (used > (uint64_t)limit || more > (uint64_t)limit - used);
}

/* Which token limit is exceeded, if any, and the numbers for its message.
 * Caller holds the lock. */
typedef struct {
  const char *name;
  int64_t limit;
  uint64_t value;
} exceeded_t;

static bool tokens_exceeded(const toolcall_ledger_t *l, exceeded_t *ex) {
  const toolcall_usage_t *u = &l->usage;
  uint64_t total = u->input_tokens + u->output_tokens;
  if (total < u->input_tokens)
    total = UINT64_MAX;
  const exceeded_t checks[] = {
      {"input_tokens", l->limits.input_tokens, u->input_tokens},
      {"output_tokens", l->limits.output_tokens, u->output_tokens},
      {"total_tokens", l->limits.total_tokens, total},
  };
  for (size_t i = 0; i < sizeof(checks) / sizeof(checks[0]); i++)
    if (over(checks[i].limit, checks[i].value, 0)) {
      *ex = checks[i];
      return true;
    }
  return false;
}

static int tokens_error(toolcall_error_t *err, const exceeded_t *ex) {
  return toolcall__fail(err, TOOLCALL_ETOKENS, SIZE_MAX,
                        "the %s limit of %lld is exceeded (%s=%llu)", ex->name,
                        (long long)ex->limit, ex->name,
                        (unsigned long long)ex->value);
}

int toolcall_ledger_admit_request(toolcall_ledger_t *l, toolcall_error_t *err) {
  if (l == NULL)
    return toolcall__fail(err, UV_EINVAL, SIZE_MAX, "ledger is NULL");
  exceeded_t ex;
  int64_t limit;
  uint64_t projected = 0;
  int rc = 0;
  LEDGER_LOCK(l);
  limit = l->limits.requests;
  if (tokens_exceeded(l, &ex)) {
    rc = TOOLCALL_ETOKENS;
  } else if (over(limit, l->usage.requests + l->reserved_requests, 1)) {
    rc = TOOLCALL_ELIMIT;
    projected = l->usage.requests + l->reserved_requests + 1;
  } else {
    l->reserved_requests++;
  }
  LEDGER_UNLOCK(l);
  if (rc == TOOLCALL_ETOKENS)
    return tokens_error(err, &ex);
  if (rc == TOOLCALL_ELIMIT)
    return toolcall__fail(err, rc, SIZE_MAX,
                          "the next request would exceed the requests limit "
                          "of %lld (requests would be %llu)",
                          (long long)limit, (unsigned long long)projected);
  return 0;
}

int toolcall_ledger_commit_request(toolcall_ledger_t *l,
                                   const toolcall_usage_t *usage,
                                   toolcall_error_t *err) {
  if (l == NULL || usage == NULL)
    return toolcall__fail(err, UV_EINVAL, SIZE_MAX, "ledger or usage is NULL");
  toolcall_usage_t u = *usage;
  u.requests = 1;
  exceeded_t ex;
  int rc = 0;
  LEDGER_LOCK(l);
  if (l->reserved_requests == 0) {
    rc = TOOLCALL_ESTATE;
  } else if ((rc = usage_add_locked(l, &u)) == 0) {
    l->reserved_requests--;
    if (tokens_exceeded(l, &ex))
      rc = TOOLCALL_ETOKENS;
  }
  LEDGER_UNLOCK(l);
  if (rc == TOOLCALL_ETOKENS)
    return tokens_error(err, &ex);
  if (rc == TOOLCALL_ESTATE)
    return toolcall__fail(err, rc, SIZE_MAX, "no request was admitted");
  if (rc != 0)
    return toolcall__fail(err, rc, SIZE_MAX, "a usage counter would overflow");
  return 0;
}

int toolcall_ledger_release_request(toolcall_ledger_t *l) {
  if (l == NULL)
    return UV_EINVAL;
  int rc = 0;
  LEDGER_LOCK(l);
  if (l->reserved_requests == 0)
    rc = TOOLCALL_ESTATE;
  else
    l->reserved_requests--;
  LEDGER_UNLOCK(l);
  return rc;
}

/* ---- batch admission and call accounting (batch.c) ---- */

/* Caller holds the lock. The tool-use entry for a call's tool, if that tool
 * has a limit; calls of one tool usually sit together, so remember the
 * last answer. */
static toolcall__tool_use_t *call_tool_use(const toolcall_ledger_t *l,
                                           const toolcall_call_t *c,
                                           const toolcall__tool_t **last_tool,
                                           toolcall__tool_use_t **last_use) {
  if (c->tool != *last_tool) {
    *last_tool = c->tool;
    *last_use = tool_use_find(l, c->tool->name, c->tool->name_len);
  }
  return *last_use;
}

void toolcall__ledger_admit(toolcall_ledger_t *l, toolcall_call_t *calls,
                            size_t n, size_t wanted,
                            toolcall_limit_policy_t policy,
                            toolcall__admission_t *adm) {
  const toolcall__tool_t *last_tool = NULL;
  toolcall__tool_use_t *last_use = NULL;
  memset(adm, 0, sizeof(*adm));
  LEDGER_LOCK(l);
  l->dispatched += n;
  int64_t limit = l->limits.tool_calls;
  uint64_t used = l->calls[TOOLCALL_OK] + l->reserved_tool_calls;
  bool per_tool = l->ntool_uses > 0;

  if (policy == TOOLCALL_POLICY_PARTIAL && !per_tool) {
    /* Arithmetic only: the first `fit` wanted calls run, in call order; the
     * caller marks them after the unlock. */
    size_t fit = wanted;
    if (limit != TOOLCALL_UNLIMITED) {
      uint64_t room = used >= (uint64_t)limit ? 0 : (uint64_t)limit - used;
      if (room < fit)
        fit = (size_t)room;
    }
    adm->fit = fit;
    adm->rejected = wanted - fit;
    if (adm->rejected > 0)
      adm->limit = limit;
    l->reserved_tool_calls += fit;
    LEDGER_UNLOCK(l);
    return;
  }

  if (policy == TOOLCALL_POLICY_PARTIAL) {
    /* In call order: each call of a known tool runs if it fits both the
     * tool_calls limit and its tool's limit. */
    adm->marked = true;
    for (size_t i = 0; i < n; i++) {
      toolcall_call_t *c = &calls[i];
      if (c->admit != TOOLCALL__ADMIT_WANTED)
        continue;
      toolcall__tool_use_t *u = call_tool_use(l, c, &last_tool, &last_use);
      if (over(limit, used, 1)) {
        c->admit = TOOLCALL__ADMIT_OVER_LIMIT;
        adm->limit = limit;
        adm->rejected++;
      } else if (u != NULL && over(u->limit, u->used + u->reserved, 1)) {
        c->admit = TOOLCALL__ADMIT_OVER_TOOL;
        c->tool_use = u;
        c->reject_limit = u->limit;
        adm->rejected++;
      } else {
        c->admit = TOOLCALL__ADMIT_RESERVED;
        c->tool_use = u;
        used++;
        l->reserved_tool_calls++;
        if (u != NULL)
          u->reserved++;
      }
    }
    LEDGER_UNLOCK(l);
    return;
  }

  /* Reject-batch: all or nothing. First the global limit, then each tool
   * limit: count the batch's calls per limited tool in `want`. */
  if (wanted > 0 && over(limit, used, wanted)) {
    adm->failed = true;
    adm->limit = limit;
    adm->wanted = wanted;
    adm->projected = used + wanted;
  } else if (per_tool) {
    for (size_t i = 0; i < n; i++) {
      toolcall_call_t *c = &calls[i];
      if (c->admit != TOOLCALL__ADMIT_WANTED)
        continue;
      toolcall__tool_use_t *u = call_tool_use(l, c, &last_tool, &last_use);
      c->tool_use = u;
      if (u != NULL)
        u->want++;
    }
    for (size_t i = 0; i < l->ntool_uses; i++) {
      toolcall__tool_use_t *u = &l->tool_uses[i];
      if (u->want > 0 && !adm->failed &&
          over(u->limit, u->used + u->reserved, u->want)) {
        adm->failed = true;
        adm->tool_use = u;
        adm->limit = u->limit;
        adm->wanted = u->want;
        adm->projected = u->used + u->reserved + u->want;
      }
    }
    for (size_t i = 0; i < l->ntool_uses; i++) {
      toolcall__tool_use_t *u = &l->tool_uses[i];
      if (!adm->failed)
        u->reserved += u->want;
      u->want = 0;
    }
  }
  /* With per-tool limits the calls carry their tool_use: mark them here.
   * Otherwise the caller marks them after the unlock. */
  if (per_tool) {
    adm->marked = true;
    for (size_t i = 0; i < n; i++) {
      toolcall_call_t *c = &calls[i];
      if (c->admit != TOOLCALL__ADMIT_WANTED)
        continue;
      if (adm->failed) {
        c->admit = TOOLCALL__ADMIT_BATCH_FAILED;
        c->tool_use = NULL;
      } else {
        c->admit = TOOLCALL__ADMIT_RESERVED;
      }
    }
  } else if (!adm->failed) {
    adm->fit = wanted;
  }
  if (adm->failed)
    adm->rejected = wanted;
  else
    l->reserved_tool_calls += wanted;
  LEDGER_UNLOCK(l);
}

void toolcall__ledger_finish(toolcall_ledger_t *l, toolcall_call_t *c) {
  toolcall__tool_use_t *u = c->tool_use;
  LEDGER_LOCK(l);
  if (c->admit == TOOLCALL__ADMIT_RESERVED) {
    l->reserved_tool_calls--;
    if (u != NULL) {
      u->reserved--;
      if (c->r.status == TOOLCALL_OK)
        u->used++;
    } else if (l->ntool_uses > 0 && c->r.status == TOOLCALL_OK) {
      /* Admitted before its tool had a limit: it still counts as a use. */
      u = tool_use_find(l, c->tool->name, c->tool->name_len);
      if (u != NULL)
        u->used++;
    }
  }
  l->calls[c->r.status]++;
  LEDGER_UNLOCK(l);
}
