/* Wire formats: tool calls and usage out of a provider's response body,
 * results and tool definitions back in the provider's shape. The header
 * (toolcall_wire.h) states the mapping rules; this file follows them. */
#include "toolcall_wire.h"

#include "internal.h"

#include <jansson.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- formats ---- */

int toolcall_wire_format_from_name(const char *name,
                                   toolcall_wire_format_t *out) {
  static const struct {
    const char *name;
    toolcall_wire_format_t f;
  } names[] = {{"openai", TOOLCALL_WIRE_OPENAI_CHAT},
               {"chat", TOOLCALL_WIRE_OPENAI_CHAT},
               {"responses", TOOLCALL_WIRE_OPENAI_RESPONSES},
               {"anthropic", TOOLCALL_WIRE_ANTHROPIC},
               {"gemini", TOOLCALL_WIRE_GEMINI}};
  if (name == NULL || out == NULL)
    return UV_EINVAL;
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
    if (strcmp(name, names[i].name) == 0) {
      *out = names[i].f;
      return 0;
    }
  }
  return UV_EINVAL;
}

const char *toolcall_wire_format_name(toolcall_wire_format_t f) {
  switch (f) {
  case TOOLCALL_WIRE_OPENAI_CHAT:
    return "openai";
  case TOOLCALL_WIRE_OPENAI_RESPONSES:
    return "responses";
  case TOOLCALL_WIRE_ANTHROPIC:
    return "anthropic";
  case TOOLCALL_WIRE_GEMINI:
    return "gemini";
  }
  return "invalid";
}

static bool format_valid(toolcall_wire_format_t f) {
  return f >= TOOLCALL_WIRE_OPENAI_CHAT && f <= TOOLCALL_WIRE_GEMINI;
}

/* ---- JSON output ---- */

/* The fewest significant digits (at most 17) that read back as every real
 * in v. jansson prints reals with 17 digits by default, which turns a
 * model's 0.1 into 0.10000000000000001; printing with this many keeps
 * arguments as the model wrote them and still exact. Recursion is bounded
 * by jansson's parsing depth (2048). */
static int real_digits(const json_t *v) {
  int need = 0;
  if (json_is_real(v)) {
    double d = json_real_value(v);
    char buf[40];
    for (int p = 1; p <= 17; p++) {
      snprintf(buf, sizeof(buf), "%.*g", p, d);
      if (strtod(buf, NULL) == d)
        return p;
    }
    return 17;
  }
  if (json_is_object(v)) {
    const char *key;
    const json_t *item;
    json_object_foreach((json_t *)v, key, item) {
      int d = real_digits(item);
      if (d > need)
        need = d;
    }
  } else if (json_is_array(v)) {
    size_t i;
    const json_t *item;
    json_array_foreach(v, i, item) {
      int d = real_digits(item);
      if (d > need)
        need = d;
    }
  }
  return need;
}

/* Serialize v compactly into a buffer from the library allocator. */
static int dump_json(const json_t *v, char **out, size_t *len) {
  size_t flags = JSON_COMPACT | JSON_ENCODE_ANY;
  int digits = real_digits(v);
  if (digits > 0)
    flags |= JSON_REAL_PRECISION(digits);
  size_t need = json_dumpb(v, NULL, 0, flags);
  if (need == 0)
    return UV_ENOMEM; /* jansson's only failure here is memory */
  char *buf = toolcall__malloc(need + 1);
  if (buf == NULL)
    return UV_ENOMEM;
  if (json_dumpb(v, buf, need, flags) != need) {
    toolcall__free(buf);
    return UV_ENOMEM;
  }
  buf[need] = '\0';
  *out = buf;
  if (len != NULL)
    *len = need;
  return 0;
}

/* ---- the parsed response ---- */

struct toolcall_wire_response_s {
  toolcall_call_spec_t *calls;
  size_t ncalls;
  size_t cap;
  char *text; /* never NULL once parsed */
  size_t text_len;
  size_t text_cap;
  bool has_usage;
  toolcall_usage_t usage;
};

void toolcall_wire_response_free(toolcall_wire_response_t *r) {
  if (r == NULL)
    return;
  for (size_t i = 0; i < r->ncalls; i++) {
    toolcall__free((char *)r->calls[i].id);
    toolcall__free((char *)r->calls[i].name);
    toolcall__free((char *)r->calls[i].arguments);
  }
  toolcall__free(r->calls);
  toolcall__free(r->text);
  toolcall__free(r);
}

const toolcall_call_spec_t *
toolcall_wire_calls(const toolcall_wire_response_t *r, size_t *n) {
  if (n != NULL)
    *n = r != NULL ? r->ncalls : 0;
  return r != NULL && r->ncalls > 0 ? r->calls : NULL;
}

int toolcall_wire_usage(const toolcall_wire_response_t *r,
                        toolcall_usage_t *usage) {
  if (r == NULL || usage == NULL)
    return UV_EINVAL;
  memset(usage, 0, sizeof(*usage));
  if (!r->has_usage)
    return UV_ENOENT;
  *usage = r->usage;
  return 0;
}

const char *toolcall_wire_text(const toolcall_wire_response_t *r) {
  return r != NULL ? r->text : NULL;
}

/* State of one parse: the response being filled, where errors go. */
typedef struct {
  toolcall_wire_response_t *r;
  toolcall_error_t *err;
  const char *fmt; /* the format's name, first word of every message */
} parse_t;

static int fail(parse_t *p, int code, const char *what, const char *path) {
  return toolcall__fail(p->err, code, SIZE_MAX, "%s: %s %s", p->fmt, path,
                        what);
}

static int nomem(parse_t *p) {
  return toolcall__fail(p->err, UV_ENOMEM, SIZE_MAX, "%s: out of memory",
                        p->fmt);
}

static int append_text(parse_t *p, const char *s, size_t len) {
  toolcall_wire_response_t *r = p->r;
  if (len == 0)
    return 0;
  /* Bounded by the body (TOOLCALL_WIRE_MAX_BODY): no overflow here. */
  if (r->text_len + len + 1 > r->text_cap) {
    size_t cap = r->text_cap * 2;
    if (cap < r->text_len + len + 1)
      cap = r->text_len + len + 1;
    char *grown = toolcall__realloc(r->text, cap);
    if (grown == NULL)
      return nomem(p);
    r->text = grown;
    r->text_cap = cap;
  }
  memcpy(r->text + r->text_len, s, len);
  r->text_len += len;
  r->text[r->text_len] = '\0';
  return 0;
}

/* A string member of obj, or NULL if it is absent or not a string. */
static const char *get_str(const json_t *obj, const char *key, size_t *len) {
  const json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
  if (!json_is_string(v))
    return NULL;
  if (len != NULL)
    *len = json_string_length(v);
  return json_string_value(v);
}

/* How a call's arguments are given. */
typedef enum {
  ARGS_TEXT,  /* JSON text inside a string (OpenAI); other values dumped */
  ARGS_VALUE  /* a JSON value (Anthropic input, Gemini args): dumped */
} args_kind_t;

/* Append one call. id or name may be NULL (missing or not a string). */
static int add_call(parse_t *p, const json_t *id, const json_t *name,
                    const json_t *args, args_kind_t kind) {
  toolcall_wire_response_t *r = p->r;
  if (r->ncalls == r->cap) {
    size_t cap = r->cap > 0 ? r->cap * 2 : 4;
    toolcall_call_spec_t *grown =
        toolcall__realloc(r->calls, cap * sizeof(*grown));
    if (grown == NULL)
      return nomem(p);
    r->calls = grown;
    r->cap = cap;
  }
  toolcall_call_spec_t *c = &r->calls[r->ncalls];
  memset(c, 0, sizeof(*c));
  /* Count the call at once: response_free releases what it holds so far. */
  r->ncalls++;

  const char *s = json_is_string(name) ? json_string_value(name) : "";
  if ((c->name = toolcall__strdup(s)) == NULL)
    return nomem(p);

  char *a = NULL;
  size_t alen = 0;
  if (args == NULL || json_is_null(args) ||
      (json_is_string(args) && json_string_length(args) == 0)) {
    a = NULL; /* "{}" */
  } else if (kind == ARGS_TEXT && json_is_string(args)) {
    alen = json_string_length(args);
    if ((a = toolcall__strndup(json_string_value(args), alen)) == NULL)
      return nomem(p);
  } else if (dump_json(args, &a, &alen) != 0) {
    return nomem(p);
  }
  c->arguments = a;
  c->arguments_len = alen;

  if (json_is_string(id) && json_string_length(id) > 0) {
    c->id = toolcall__strdup(json_string_value(id));
  } else {
    /* Stable: the same body gives the same id. The index keeps ids unique
     * within the response; the hash tells calls of different turns apart. */
    uint32_t h = toolcall__hash(c->name, strlen(c->name) + 1);
    if (a != NULL)
      h ^= toolcall__hash(a, alen) * 16777619u;
    char buf[sizeof(TOOLCALL_WIRE_GENERATED_ID_PREFIX) + 32];
    snprintf(buf, sizeof(buf), TOOLCALL_WIRE_GENERATED_ID_PREFIX "%zu_%08x",
             r->ncalls - 1, (unsigned)h);
    c->id = toolcall__strdup(buf);
  }
  if (c->id == NULL)
    return nomem(p);
  return 0;
}

/* ---- usage ---- */

/* A token count: an integer >= 0; absent or null is 0. */
static int get_count(parse_t *p, const json_t *obj, const char *key,
                     const char *path, uint64_t *out) {
  char where[128];
  const json_t *v = obj != NULL ? json_object_get(obj, key) : NULL;
  *out = 0;
  if (v == NULL || json_is_null(v))
    return 0;
  snprintf(where, sizeof(where), "%s.%s", path, key);
  if (!json_is_integer(v))
    return fail(p, UV_EINVAL, "must be an integer", where);
  json_int_t n = json_integer_value(v);
  if (n < 0)
    return toolcall__fail(p->err, UV_ERANGE, SIZE_MAX,
                          "%s: %s is negative (%lld)", p->fmt, where,
                          (long long)n);
  *out = (uint64_t)n;
  return 0;
}

/* An object member that may be absent or null (then *out is NULL). */
static int get_object(parse_t *p, const json_t *obj, const char *key,
                      const char *path, const json_t **out) {
  const json_t *v = obj != NULL ? json_object_get(obj, key) : NULL;
  *out = NULL;
  if (v == NULL || json_is_null(v))
    return 0;
  if (!json_is_object(v)) {
    char where[128];
    snprintf(where, sizeof(where), "%s%s%s", path, path[0] ? "." : "", key);
    return fail(p, UV_EINVAL, "must be an object", where);
  }
  *out = v;
  return 0;
}

static int add_checked(parse_t *p, uint64_t a, uint64_t b, uint64_t *sum,
                       const char *what) {
  if (a > UINT64_MAX - b)
    return toolcall__fail(p->err, UV_ERANGE, SIZE_MAX,
                          "%s: %s add up to more than 2^64-1", p->fmt, what);
  *sum = a + b;
  return 0;
}

static int usage_openai(parse_t *p, const json_t *root, bool chat) {
  const json_t *u, *details;
  toolcall_usage_t *out = &p->r->usage;
  int rc = get_object(p, root, "usage", "", &u);
  if (rc != 0 || u == NULL)
    return rc;
  const char *in_key = chat ? "prompt_tokens" : "input_tokens";
  const char *out_key = chat ? "completion_tokens" : "output_tokens";
  const char *det_key = chat ? "prompt_tokens_details" : "input_tokens_details";
  char det_path[64];
  snprintf(det_path, sizeof(det_path), "usage.%s", det_key);
  if ((rc = get_count(p, u, in_key, "usage", &out->input_tokens)) != 0 ||
      (rc = get_count(p, u, out_key, "usage", &out->output_tokens)) != 0 ||
      (rc = get_object(p, u, det_key, "usage", &details)) != 0 ||
      (rc = get_count(p, details, "cached_tokens", det_path,
                      &out->cache_read_tokens)) != 0)
    return rc;
  p->r->has_usage = true;
  return 0;
}

static int usage_anthropic(parse_t *p, const json_t *root) {
  const json_t *u;
  toolcall_usage_t *out = &p->r->usage;
  uint64_t in = 0;
  int rc = get_object(p, root, "usage", "", &u);
  if (rc != 0 || u == NULL)
    return rc;
  if ((rc = get_count(p, u, "input_tokens", "usage", &in)) != 0 ||
      (rc = get_count(p, u, "output_tokens", "usage", &out->output_tokens)) !=
          0 ||
      (rc = get_count(p, u, "cache_creation_input_tokens", "usage",
                      &out->cache_write_tokens)) != 0 ||
      (rc = get_count(p, u, "cache_read_input_tokens", "usage",
                      &out->cache_read_tokens)) != 0)
    return rc;
  /* Anthropic's input_tokens excludes the cache; the others include it. */
  if ((rc = add_checked(p, in, out->cache_write_tokens, &in,
                        "usage input tokens")) != 0 ||
      (rc = add_checked(p, in, out->cache_read_tokens, &out->input_tokens,
                        "usage input tokens")) != 0)
    return rc;
  p->r->has_usage = true;
  return 0;
}

static int usage_gemini(parse_t *p, const json_t *root) {
  const json_t *u;
  toolcall_usage_t *out = &p->r->usage;
  uint64_t candidates = 0, thoughts = 0;
  int rc = get_object(p, root, "usageMetadata", "", &u);
  if (rc != 0 || u == NULL)
    return rc;
  if ((rc = get_count(p, u, "promptTokenCount", "usageMetadata",
                      &out->input_tokens)) != 0 ||
      (rc = get_count(p, u, "candidatesTokenCount", "usageMetadata",
                      &candidates)) != 0 ||
      (rc = get_count(p, u, "thoughtsTokenCount", "usageMetadata",
                      &thoughts)) != 0 ||
      (rc = get_count(p, u, "cachedContentTokenCount", "usageMetadata",
                      &out->cache_read_tokens)) != 0 ||
      (rc = add_checked(p, candidates, thoughts, &out->output_tokens,
                        "usageMetadata output tokens")) != 0)
    return rc;
  p->r->has_usage = true;
  return 0;
}

/* ---- the four shapes ---- */

/* An array member that may be absent or null (then *out is NULL). */
static int get_array(parse_t *p, const json_t *obj, const char *key,
                     const char *path, const json_t **out) {
  const json_t *v = json_object_get(obj, key);
  *out = NULL;
  if (v == NULL || json_is_null(v))
    return 0;
  if (!json_is_array(v)) {
    char where[128];
    snprintf(where, sizeof(where), "%s%s%s", path, path[0] ? "." : "", key);
    return fail(p, UV_EINVAL, "must be an array", where);
  }
  *out = v;
  return 0;
}

static int element_not_object(parse_t *p, const char *path, size_t i) {
  char where[128];
  snprintf(where, sizeof(where), "%s[%zu]", path, i);
  return fail(p, UV_EINVAL, "must be an object", where);
}

static int parse_openai_chat(parse_t *p, const json_t *root) {
  const json_t *choices = json_object_get(root, "choices");
  if (!json_is_array(choices) || json_array_size(choices) == 0)
    return fail(p, UV_EINVAL, "must be a non-empty array", "choices");
  const json_t *choice = json_array_get(choices, 0);
  if (!json_is_object(choice))
    return fail(p, UV_EINVAL, "must be an object", "choices[0]");
  const json_t *msg = json_object_get(choice, "message");
  if (!json_is_object(msg))
    return fail(p, UV_EINVAL, "must be an object", "choices[0].message");

  int rc;
  const json_t *content = json_object_get(msg, "content");
  if (json_is_string(content)) {
    if ((rc = append_text(p, json_string_value(content),
                          json_string_length(content))) != 0)
      return rc;
  } else if (json_is_array(content)) {
    size_t i;
    const json_t *part;
    json_array_foreach(content, i, part) {
      const char *type = get_str(part, "type", NULL);
      size_t len = 0;
      const char *text = get_str(part, "text", &len);
      if (type != NULL && strcmp(type, "text") == 0 && text != NULL &&
          (rc = append_text(p, text, len)) != 0)
        return rc;
    }
  } else if (content != NULL && !json_is_null(content)) {
    return fail(p, UV_EINVAL, "must be a string, an array or null",
                "choices[0].message.content");
  }

  const json_t *calls;
  if ((rc = get_array(p, msg, "tool_calls", "choices[0].message", &calls)) !=
      0)
    return rc;
  size_t i;
  const json_t *tc;
  json_array_foreach(calls, i, tc) {
    if (!json_is_object(tc))
      return element_not_object(p, "choices[0].message.tool_calls", i);
    const json_t *fn = json_object_get(tc, "function");
    if (!json_is_object(fn))
      fn = NULL;
    if ((rc = add_call(p, json_object_get(tc, "id"),
                       fn != NULL ? json_object_get(fn, "name") : NULL,
                       fn != NULL ? json_object_get(fn, "arguments") : NULL,
                       ARGS_TEXT)) != 0)
      return rc;
  }
  return usage_openai(p, root, true);
}

static int parse_openai_responses(parse_t *p, const json_t *root) {
  const json_t *output = json_object_get(root, "output");
  if (!json_is_array(output))
    return fail(p, UV_EINVAL, "must be an array", "output");
  int rc;
  size_t i;
  const json_t *item;
  json_array_foreach(output, i, item) {
    if (!json_is_object(item))
      return element_not_object(p, "output", i);
    const char *type = get_str(item, "type", NULL);
    if (type == NULL)
      continue;
    if (strcmp(type, "function_call") == 0) {
      if ((rc = add_call(p, json_object_get(item, "call_id"),
                         json_object_get(item, "name"),
                         json_object_get(item, "arguments"), ARGS_TEXT)) != 0)
        return rc;
    } else if (strcmp(type, "message") == 0) {
      char path[48];
      const json_t *content;
      snprintf(path, sizeof(path), "output[%zu]", i);
      if ((rc = get_array(p, item, "content", path, &content)) != 0)
        return rc;
      size_t j;
      const json_t *part;
      json_array_foreach(content, j, part) {
        const char *ptype = get_str(part, "type", NULL);
        size_t len = 0;
        const char *text = get_str(part, "text", &len);
        if (ptype != NULL && strcmp(ptype, "output_text") == 0 &&
            text != NULL && (rc = append_text(p, text, len)) != 0)
          return rc;
      }
    }
  }
  return usage_openai(p, root, false);
}

static int parse_anthropic(parse_t *p, const json_t *root) {
  const json_t *content = json_object_get(root, "content");
  if (!json_is_array(content))
    return fail(p, UV_EINVAL, "must be an array", "content");
  int rc;
  size_t i;
  const json_t *block;
  json_array_foreach(content, i, block) {
    if (!json_is_object(block))
      return element_not_object(p, "content", i);
    const char *type = get_str(block, "type", NULL);
    if (type == NULL)
      continue;
    if (strcmp(type, "tool_use") == 0) {
      if ((rc = add_call(p, json_object_get(block, "id"),
                         json_object_get(block, "name"),
                         json_object_get(block, "input"), ARGS_VALUE)) != 0)
        return rc;
    } else if (strcmp(type, "text") == 0) {
      size_t len = 0;
      const char *text = get_str(block, "text", &len);
      if (text != NULL && (rc = append_text(p, text, len)) != 0)
        return rc;
    }
  }
  return usage_anthropic(p, root);
}

static int parse_gemini(parse_t *p, const json_t *root) {
  int rc;
  const json_t *candidates, *content = NULL, *parts = NULL;
  if ((rc = get_array(p, root, "candidates", "", &candidates)) != 0)
    return rc;
  /* No candidates: the prompt was blocked (see promptFeedback). No content:
   * the candidate stopped before writing any (SAFETY, MAX_TOKENS, ...). */
  if (candidates != NULL && json_array_size(candidates) > 0) {
    const json_t *cand = json_array_get(candidates, 0);
    if (!json_is_object(cand))
      return fail(p, UV_EINVAL, "must be an object", "candidates[0]");
    if ((rc = get_object(p, cand, "content", "candidates[0]", &content)) !=
        0)
      return rc;
    if (content != NULL && (rc = get_array(p, content, "parts",
                                           "candidates[0].content", &parts)) !=
                               0)
      return rc;
  }
  size_t i;
  const json_t *part;
  json_array_foreach(parts, i, part) {
    if (!json_is_object(part))
      return element_not_object(p, "candidates[0].content.parts", i);
    const json_t *fc = json_object_get(part, "functionCall");
    if (fc != NULL) {
      if (!json_is_object(fc))
        fc = NULL; /* a call all the same: name "", unknown tool */
      if ((rc = add_call(p, fc != NULL ? json_object_get(fc, "id") : NULL,
                         fc != NULL ? json_object_get(fc, "name") : NULL,
                         fc != NULL ? json_object_get(fc, "args") : NULL,
                         ARGS_VALUE)) != 0)
        return rc;
      continue;
    }
    size_t len = 0;
    const char *text = get_str(part, "text", &len);
    if (text != NULL && !json_is_true(json_object_get(part, "thought")) &&
        (rc = append_text(p, text, len)) != 0)
      return rc;
  }
  return usage_gemini(p, root);
}

/* Our code for a jansson load error. jerr must have been zeroed before the
 * load: jansson sets no text (nor code) when an allocation failed under it;
 * other allocation failures read as syntax errors, which it cannot tell. */
static int jansson_error(const json_error_t *jerr) {
  if (jerr->text[0] == '\0')
    return UV_ENOMEM;
  switch (json_error_code(jerr)) {
  case json_error_out_of_memory:
    return UV_ENOMEM;
  case json_error_numeric_overflow:
    return UV_ERANGE;
  default:
    return UV_EINVAL;
  }
}

int toolcall_wire_parse(toolcall_wire_format_t f, const char *body, size_t len,
                        toolcall_wire_response_t **out, toolcall_error_t *err) {
  if (out != NULL)
    *out = NULL;
  if (out == NULL || body == NULL)
    return toolcall__fail(err, UV_EINVAL, SIZE_MAX, "wire: %s is NULL",
                          out == NULL ? "out" : "body");
  if (!format_valid(f))
    return toolcall__fail(err, UV_EINVAL, SIZE_MAX, "wire: unknown format %d",
                          (int)f);
  parse_t p = {NULL, err, toolcall_wire_format_name(f)};
  if (len == 0)
    return toolcall__fail(err, UV_EINVAL, SIZE_MAX, "%s: the body is empty",
                          p.fmt);
  if (len > TOOLCALL_WIRE_MAX_BODY)
    return toolcall__fail(err, UV_E2BIG, SIZE_MAX,
                          "%s: the body is %zu bytes, more than the %zu "
                          "allowed",
                          p.fmt, len, TOOLCALL_WIRE_MAX_BODY);

  json_error_t jerr;
  memset(&jerr, 0, sizeof(jerr)); /* jansson leaves it unset on some OOMs */
  json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
  if (root == NULL) {
    int code = jansson_error(&jerr);
    if (code == UV_ENOMEM)
      return nomem(&p);
    return toolcall__fail(err, code, SIZE_MAX,
                          "%s: invalid JSON at line %d, column %d: %s", p.fmt,
                          jerr.line, jerr.column, jerr.text);
  }
  int rc;
  if (!json_is_object(root)) {
    rc = toolcall__fail(err, UV_EINVAL, SIZE_MAX,
                        "%s: the body is not a JSON object", p.fmt);
    goto out;
  }
  if ((p.r = toolcall__calloc(1, sizeof(*p.r))) == NULL ||
      (p.r->text = toolcall__malloc(1)) == NULL) {
    rc = nomem(&p);
    goto out;
  }
  p.r->text[0] = '\0';
  p.r->text_cap = 1;
  switch (f) {
  case TOOLCALL_WIRE_OPENAI_CHAT:
    rc = parse_openai_chat(&p, root);
    break;
  case TOOLCALL_WIRE_OPENAI_RESPONSES:
    rc = parse_openai_responses(&p, root);
    break;
  case TOOLCALL_WIRE_ANTHROPIC:
    rc = parse_anthropic(&p, root);
    break;
  default:
    rc = parse_gemini(&p, root);
    break;
  }
  if (rc == 0) {
    p.r->usage.requests = 1;
    *out = p.r;
    p.r = NULL;
  }
out:
  toolcall_wire_response_free(p.r);
  json_decref(root);
  return rc;
}

/* ---- writing results ---- */

/* Length of the well-formed UTF-8 sequence at s (NUL included: JSON
 * escapes it), 0 if none starts there. */
static size_t utf8_seq(const unsigned char *s, size_t avail) {
  unsigned char c = s[0];
  size_t need;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c < 0x80)
    return 1;
  if (c >= 0xC2 && c <= 0xDF)
    need = 1;
  else if (c >= 0xE0 && c <= 0xEF) {
    need = 2;
    if (c == 0xE0)
      lo = 0xA0; /* overlong */
    else if (c == 0xED)
      hi = 0x9F; /* surrogates */
  } else if (c >= 0xF0 && c <= 0xF4) {
    need = 3;
    if (c == 0xF0)
      lo = 0x90; /* overlong */
    else if (c == 0xF4)
      hi = 0x8F; /* beyond U+10FFFF */
  } else
    return 0;
  if (avail < need + 1 || s[1] < lo || s[1] > hi)
    return 0;
  for (size_t i = 2; i <= need; i++)
    if (s[i] < 0x80 || s[i] > 0xBF)
      return 0;
  return need + 1;
}

/* A JSON string of s[0..len); bytes that are not UTF-8 become U+FFFD. */
static json_t *json_text(const char *s, size_t len) {
  const unsigned char *u = (const unsigned char *)s;
  size_t bad = 0;
  for (size_t i = 0; i < len;) {
    size_t n = utf8_seq(u + i, len - i);
    bad += n == 0;
    i += n > 0 ? n : 1;
  }
  if (bad == 0)
    return json_stringn(s, len);
  if (bad > (SIZE_MAX - len) / 2)
    return NULL;
  char *fixed = toolcall__malloc(len + 2 * bad);
  if (fixed == NULL)
    return NULL;
  size_t o = 0;
  for (size_t i = 0; i < len;) {
    size_t n = utf8_seq(u + i, len - i);
    if (n == 0) {
      memcpy(fixed + o, "\xEF\xBF\xBD", 3);
      o += 3;
      i++;
    } else {
      memcpy(fixed + o, s + i, n);
      o += n;
      i += n;
    }
  }
  json_t *j = json_stringn(fixed, o);
  toolcall__free(fixed);
  return j;
}

/* What the model reads for one result. */
static json_t *result_text(const toolcall_result_t *res) {
  if (res->status == TOOLCALL_OK)
    return json_text(res->output != NULL ? res->output : "", res->output_len);
  const char *status = toolcall_status_name(res->status);
  const char *msg = res->message != NULL ? res->message : status;
  size_t msg_len = strlen(msg);
  size_t size = strlen(status) + msg_len + 16;
  char *buf = toolcall__malloc(size);
  if (buf == NULL)
    return NULL;
  int n = res->status == TOOLCALL_TOOL_ERROR
              ? snprintf(buf, size, "error: ")
              : snprintf(buf, size, "error (%s): ", status);
  memcpy(buf + n, msg, msg_len);
  json_t *j = json_text(buf, (size_t)n + msg_len);
  toolcall__free(buf);
  return j;
}

/* Build {key: value, ...} from pairs; values are stolen, NULL ones make the
 * whole object fail (and are not leaked). */
static json_t *object_of(size_t npairs, const char *const keys[],
                         json_t *const values[]) {
  json_t *o = json_object();
  bool ok = o != NULL;
  for (size_t i = 0; i < npairs; i++) {
    if (ok && values[i] != NULL)
      ok = json_object_set_new(o, keys[i], values[i]) == 0;
    else
      json_decref(values[i]);
    ok = ok && values[i] != NULL;
  }
  if (!ok) {
    json_decref(o);
    return NULL;
  }
  return o;
}

static json_t *result_entry(toolcall_wire_format_t f,
                            const toolcall_result_t *res) {
  bool failed = res->status != TOOLCALL_OK;
  switch (f) {
  case TOOLCALL_WIRE_OPENAI_CHAT: {
    static const char *const k[] = {"role", "tool_call_id", "content"};
    json_t *v[] = {json_string("tool"), json_string(res->id),
                   result_text(res)};
    return object_of(3, k, v);
  }
  case TOOLCALL_WIRE_OPENAI_RESPONSES: {
    static const char *const k[] = {"type", "call_id", "output"};
    json_t *v[] = {json_string("function_call_output"), json_string(res->id),
                   result_text(res)};
    return object_of(3, k, v);
  }
  case TOOLCALL_WIRE_ANTHROPIC: {
    static const char *const k[] = {"type", "tool_use_id", "content",
                                    "is_error"};
    json_t *v[] = {json_string("tool_result"), json_string(res->id),
                   result_text(res), json_true()};
    return object_of(failed ? 4 : 3, k, v);
  }
  default: {
    static const char *const rk[] = {"output", "error"};
    json_t *text = result_text(res);
    json_t *response = object_of(1, &rk[failed ? 1 : 0], &text);
    /* Gemini matches an id only if it sent one. */
    bool generated =
        strncmp(res->id, TOOLCALL_WIRE_GENERATED_ID_PREFIX,
                sizeof(TOOLCALL_WIRE_GENERATED_ID_PREFIX) - 1) == 0;
    static const char *const fk[] = {"name", "response", "id"};
    json_t *fv[] = {json_string(res->tool), response,
                    generated ? NULL : json_string(res->id)};
    json_t *fr = object_of(generated ? 2 : 3, fk, fv);
    static const char *const pk[] = {"functionResponse"};
    return object_of(1, pk, &fr);
  }
  }
}

int toolcall_wire_write_results(toolcall_wire_format_t f,
                                const toolcall_batch_t *b, char **out,
                                size_t *len, toolcall_error_t *err) {
  if (out != NULL)
    *out = NULL;
  if (b == NULL || out == NULL)
    return toolcall__fail(err, UV_EINVAL, SIZE_MAX, "wire: %s is NULL",
                          b == NULL ? "batch" : "out");
  if (!format_valid(f))
    return toolcall__fail(err, UV_EINVAL, SIZE_MAX, "wire: unknown format %d",
                          (int)f);
  json_t *list = json_array();
  if (list == NULL)
    return toolcall__fail(err, UV_ENOMEM, SIZE_MAX, "out of memory");
  size_t n = toolcall_batch_size(b);
  for (size_t i = 0; i < n; i++) {
    json_t *entry = result_entry(f, toolcall_batch_result(b, i));
    if (json_array_append_new(list, entry) != 0) {
      json_decref(list);
      return toolcall__fail(err, UV_ENOMEM, i,
                            "out of memory writing result %zu", i);
    }
  }
  json_t *root = list;
  if (f == TOOLCALL_WIRE_ANTHROPIC || f == TOOLCALL_WIRE_GEMINI) {
    static const char *const k[2][2] = {{"role", "content"},
                                        {"role", "parts"}};
    json_t *v[] = {json_string("user"), list};
    root = object_of(2, k[f == TOOLCALL_WIRE_GEMINI], v);
    if (root == NULL)
      return toolcall__fail(err, UV_ENOMEM, SIZE_MAX, "out of memory");
  }
  int rc = dump_json(root, out, len);
  json_decref(root);
  if (rc != 0)
    return toolcall__fail(err, rc, SIZE_MAX, "out of memory");
  return 0;
}

/* ---- writing tools ---- */

static json_t *tool_entry(toolcall_wire_format_t f, const toolcall__tool_t *t,
                          json_t *schema) {
  /* The registry does not check descriptions: sanitize them. */
  json_t *desc = t->description != NULL
                     ? json_text(t->description, strlen(t->description))
                     : NULL;
  switch (f) {
  case TOOLCALL_WIRE_OPENAI_CHAT: {
    static const char *const k[] = {"name", "parameters", "description"};
    json_t *v[] = {json_string(t->name), schema, desc};
    json_t *fn = object_of(desc != NULL ? 3 : 2, k, v);
    static const char *const ok[] = {"type", "function"};
    json_t *ov[] = {json_string("function"), fn};
    return object_of(2, ok, ov);
  }
  case TOOLCALL_WIRE_OPENAI_RESPONSES: {
    static const char *const k[] = {"type", "name", "parameters",
                                    "description"};
    json_t *v[] = {json_string("function"), json_string(t->name), schema,
                   desc};
    return object_of(desc != NULL ? 4 : 3, k, v);
  }
  case TOOLCALL_WIRE_ANTHROPIC: {
    static const char *const k[] = {"name", "input_schema", "description"};
    json_t *v[] = {json_string(t->name), schema, desc};
    return object_of(desc != NULL ? 3 : 2, k, v);
  }
  default: {
    /* Gemini requires a description. */
    static const char *const k[] = {"name", "description",
                                    "parametersJsonSchema"};
    json_t *v[] = {json_string(t->name), desc != NULL ? desc : json_string(""),
                   schema};
    return object_of(3, k, v);
  }
  }
}

int toolcall_wire_write_tools(toolcall_wire_format_t f,
                              const toolcall_registry_t *reg, char **out,
                              size_t *len, toolcall_error_t *err) {
  if (out != NULL)
    *out = NULL;
  if (reg == NULL || out == NULL)
    return toolcall__fail(err, UV_EINVAL, SIZE_MAX, "wire: %s is NULL",
                          reg == NULL ? "registry" : "out");
  if (!format_valid(f))
    return toolcall__fail(err, UV_EINVAL, SIZE_MAX, "wire: unknown format %d",
                          (int)f);
  json_t *list = json_array();
  if (list == NULL)
    return toolcall__fail(err, UV_ENOMEM, SIZE_MAX, "out of memory");
  for (size_t i = 0; i < reg->count; i++) {
    const toolcall__tool_t *t = &reg->tools[i];
    json_t *schema;
    if (t->schema == NULL) {
      schema = json_pack("{s:s, s:{}}", "type", "object", "properties");
    } else {
      json_error_t jerr;
      memset(&jerr, 0, sizeof(jerr));
      schema = json_loads(t->schema, JSON_REJECT_DUPLICATES, &jerr);
      if (schema == NULL || !json_is_object(schema)) {
        json_decref(schema);
        json_decref(list);
        if (schema == NULL && jansson_error(&jerr) == UV_ENOMEM)
          return toolcall__fail(err, UV_ENOMEM, i, "out of memory");
        return toolcall__fail(err, UV_EINVAL, i,
                              "tool '%s': the schema is not a JSON object%s%s",
                              t->name, schema == NULL ? ": " : "",
                              schema == NULL ? jerr.text : "");
      }
    }
    /* tool_entry steals schema, also when it fails. */
    if (schema == NULL ||
        json_array_append_new(list, tool_entry(f, t, schema)) != 0) {
      json_decref(list);
      return toolcall__fail(err, UV_ENOMEM, i, "out of memory");
    }
  }
  json_t *root = list;
  if (f == TOOLCALL_WIRE_GEMINI && reg->count > 0) {
    static const char *const k[] = {"functionDeclarations"};
    json_t *decls = object_of(1, k, &list);
    root = decls != NULL ? json_array() : NULL;
    /* json_array_append_new frees decls if it fails. */
    if (root == NULL || json_array_append_new(root, decls) != 0) {
      json_decref(root);
      if (root == NULL)
        json_decref(decls);
      return toolcall__fail(err, UV_ENOMEM, SIZE_MAX, "out of memory");
    }
  }
  int rc = dump_json(root, out, len);
  json_decref(root);
  if (rc != 0)
    return toolcall__fail(err, rc, SIZE_MAX, "out of memory");
  return 0;
}

void toolcall_wire_free(void *p) { toolcall__free(p); }
