/* The registry: tool definitions, looked up by name from any thread once a
 * manager has frozen it. */
#include "internal.h"

#include <limits.h>
#include <string.h>

#include "schema.h"

int toolcall_registry_new(toolcall_registry_t **out) {
  if (out == NULL)
    return UV_EINVAL;
  toolcall_registry_t *reg = toolcall__calloc(1, sizeof(*reg));
  if (reg == NULL)
    return UV_ENOMEM;
  atomic_init(&reg->frozen, false);
  *out = reg;
  return 0;
}

static void tool_free(toolcall__tool_t *t) {
  toolcall__schema_free(t->compiled);
  toolcall__free(t->name);
  toolcall__free(t->description);
  toolcall__free(t->schema);
}

void toolcall_registry_free(toolcall_registry_t *reg) {
  if (reg == NULL)
    return;
  for (size_t i = 0; i < reg->count; i++)
    tool_free(&reg->tools[i]);
  toolcall__free(reg->tools);
  toolcall__free(reg->slots);
  toolcall__free(reg->names);
  toolcall__free(reg);
}

void toolcall_tool_init(toolcall_tool_t *def) {
  if (def != NULL) {
    memset(def, 0, sizeof(*def));
    def->kind = TOOLCALL_TOOL_WORKER;
    def->max_retries = TOOLCALL_DEFAULT_RETRIES;
  }
}

static bool name_char_ok(unsigned char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.' ||
         c == ':';
}

const toolcall__tool_t *toolcall__registry_find(const toolcall_registry_t *reg,
                                                const char *name, size_t len) {
  if (reg->nslots == 0 || len == 0 || len > TOOLCALL_NAME_MAX)
    return NULL;
  size_t mask = reg->nslots - 1;
  for (size_t i = toolcall__hash_key(name, len) & mask;; i = (i + 1) & mask) {
    uint32_t slot = reg->slots[i];
    if (slot == 0)
      return NULL;
    const toolcall__tool_t *t = &reg->tools[slot - 1];
    if (t->name_len == len && memcmp(t->name, name, len) == 0)
      return t;
  }
}

static void slots_insert(uint32_t *slots, size_t nslots,
                         const toolcall__tool_t *t, uint32_t index) {
  size_t mask = nslots - 1;
  size_t i = toolcall__hash_key(t->name, t->name_len) & mask;
  while (slots[i] != 0)
    i = (i + 1) & mask;
  slots[i] = index + 1;
}

/* Make room for one more tool: the array, the hash slots (kept under half
 * full) and the names list. Each step either succeeds or leaves the
 * registry as it was. */
static int reserve_one(toolcall_registry_t *reg, size_t name_len) {
  if (reg->count == reg->cap) {
    size_t cap = reg->cap ? reg->cap * 2 : 8;
    toolcall__tool_t *tools =
        toolcall__realloc(reg->tools, cap * sizeof(*tools));
    if (tools == NULL)
      return UV_ENOMEM;
    reg->tools = tools;
    reg->cap = cap;
  }
  if (2 * (reg->count + 1) > reg->nslots) {
    size_t nslots = reg->nslots ? reg->nslots * 2 : 16;
    uint32_t *slots = toolcall__calloc(nslots, sizeof(*slots));
    if (slots == NULL)
      return UV_ENOMEM;
    for (size_t i = 0; i < reg->count; i++)
      slots_insert(slots, nslots, &reg->tools[i], (uint32_t)i);
    toolcall__free(reg->slots);
    reg->slots = slots;
    reg->nslots = nslots;
  }
  size_t old = reg->names ? strlen(reg->names) : 0;
  char *names = toolcall__realloc(reg->names, old + 2 + name_len + 1);
  if (names == NULL)
    return UV_ENOMEM;
  if (old == 0)
    names[0] = '\0';
  reg->names = names;
  return 0;
}

int toolcall_registry_add(toolcall_registry_t *reg, const toolcall_tool_t *def,
                          toolcall_error_t *err) {
  if (reg == NULL || def == NULL)
    return toolcall__fail(err, UV_EINVAL, SIZE_MAX, "registry or definition is NULL");
  if (atomic_load(&reg->frozen))
    return toolcall__fail(err, TOOLCALL_EFROZEN, SIZE_MAX,
                          "the registry is in use by a manager; register every "
                          "tool before creating managers");
  if (def->name == NULL || def->name[0] == '\0')
    return toolcall__fail(err, UV_EINVAL, SIZE_MAX, "tool name is empty");
  size_t len = strnlen(def->name, TOOLCALL_NAME_MAX + 1);
  if (len > TOOLCALL_NAME_MAX)
    return toolcall__fail(err, UV_ENAMETOOLONG, SIZE_MAX,
                          "tool name is longer than %d bytes",
                          TOOLCALL_NAME_MAX);
  for (size_t i = 0; i < len; i++)
    if (!name_char_ok((unsigned char)def->name[i]))
      return toolcall__fail(err, UV_EINVAL, SIZE_MAX,
                            "tool name has byte 0x%02x at offset %zu, outside "
                            "[A-Za-z0-9_.:-]",
                            (unsigned)(unsigned char)def->name[i], i);
  if (def->fn == NULL)
    return toolcall__fail(err, UV_EINVAL, SIZE_MAX, "tool '%s' has no function",
                          def->name);
  if (def->kind != TOOLCALL_TOOL_WORKER && def->kind != TOOLCALL_TOOL_LOOP)
    return toolcall__fail(err, UV_EINVAL, SIZE_MAX, "tool '%s' has an unknown kind %d",
                          def->name, (int)def->kind);
  if (def->flags & ~(TOOLCALL_TOOL_SEQUENTIAL | TOOLCALL_TOOL_REQUIRES_APPROVAL))
    return toolcall__fail(err, UV_EINVAL, SIZE_MAX,
                          "tool '%s' has unknown flags 0x%x", def->name,
                          def->flags);
  if (def->max_retries < TOOLCALL_NO_RETRIES)
    return toolcall__fail(err, UV_EINVAL, SIZE_MAX,
                          "tool '%s': max_retries %d is below -1", def->name,
                          def->max_retries);
  if (def->cancel != NULL && def->kind != TOOLCALL_TOOL_LOOP)
    return toolcall__fail(err, UV_EINVAL, SIZE_MAX,
                          "tool '%s': a cancel function is for loop tools; "
                          "worker tools read toolcall_call_cancelled()",
                          def->name);
  if (reg->count >= UINT32_MAX - 1)
    return toolcall__fail(err, UV_ENOMEM, SIZE_MAX, "too many tools");
  if (toolcall__registry_find(reg, def->name, len) != NULL)
    return toolcall__fail(err, UV_EEXIST, SIZE_MAX,
                          "a tool named '%s' is already registered", def->name);

  toolcall__tool_t t = {0};
  t.name_len = len;
  t.kind = def->kind;
  t.fn = def->fn;
  t.data = def->data;
  t.flags = def->flags;
  t.timeout_ms = def->timeout_ms;
  t.max_retries = def->max_retries == 0 ? TOOLCALL_DEFAULT_RETRIES
                  : def->max_retries < 0 ? 0
                                         : (unsigned)def->max_retries;
  t.max_concurrency = def->max_concurrency;
  t.cancel = def->cancel;
  t.index = (uint32_t)reg->count;
  t.name = toolcall__strndup(def->name, len);
  if (t.name == NULL)
    goto nomem;
  if (def->description != NULL &&
      (t.description = toolcall__strdup(def->description)) == NULL)
    goto nomem;
  if (def->schema != NULL) {
    if ((t.schema = toolcall__strdup(def->schema)) == NULL)
      goto nomem;
    char msg[200];
    int rc = toolcall__schema_compile(t.schema, strlen(t.schema), &t.compiled,
                                      msg, sizeof(msg));
    if (rc != 0) {
      tool_free(&t);
      if (rc == UV_ENOMEM)
        return toolcall__fail(err, UV_ENOMEM, SIZE_MAX, "out of memory");
      return toolcall__fail(err, rc, SIZE_MAX, "tool '%.*s': %s", (int)len,
                            def->name, msg);
    }
  }
  if (reserve_one(reg, len) != 0)
    goto nomem;

  if (reg->count > 0)
    strcat(reg->names, ", ");
  strcat(reg->names, t.name);
  reg->tools[reg->count] = t;
  slots_insert(reg->slots, reg->nslots, &reg->tools[reg->count],
               (uint32_t)reg->count);
  reg->count++;
  return 0;

nomem:
  tool_free(&t);
  return toolcall__fail(err, UV_ENOMEM, SIZE_MAX, "out of memory");
}

size_t toolcall_registry_count(const toolcall_registry_t *reg) {
  return reg != NULL ? reg->count : 0;
}

const char *toolcall_registry_name(const toolcall_registry_t *reg, size_t i) {
  if (reg == NULL || i >= reg->count)
    return NULL;
  return reg->tools[i].name;
}

void toolcall__registry_freeze(toolcall_registry_t *reg) {
  atomic_store(&reg->frozen, true);
}
