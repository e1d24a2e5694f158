/* A JSON syntax check for call arguments: does the text hold exactly one
 * JSON object? It allocates nothing and does not recurse, so it runs on
 * every call at submit for tools without a schema (those with one are
 * parsed by jansson instead). UTF-8 was checked before. */
#include "internal.h"

#include <stdio.h>
#include <string.h>

/* Deeper than this is refused; jansson, which parses for schemas, stops at
 * 2048 too. */
#define JSON_MAX_DEPTH 2048

typedef struct {
  const unsigned char *p;
  const unsigned char *end;
  const unsigned char *start;
} scan_t;

static void skip_ws(scan_t *s) {
  while (s->p < s->end &&
         (*s->p == ' ' || *s->p == '\t' || *s->p == '\n' || *s->p == '\r'))
    s->p++;
}

static bool is_hex(unsigned char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
         (c >= 'A' && c <= 'F');
}

/* At a '"': skip the string. Control characters must be escaped. */
static const char *scan_string(scan_t *s) {
  s->p++;
  while (s->p < s->end) {
    unsigned char c = *s->p++;
    if (c == '"')
      return NULL;
    if (c < 0x20)
      return "control character in a string";
    if (c == '\\') {
      if (s->p >= s->end)
        break;
      c = *s->p++;
      if (c == 'u') {
        if (s->end - s->p < 4 || !is_hex(s->p[0]) || !is_hex(s->p[1]) ||
            !is_hex(s->p[2]) || !is_hex(s->p[3]))
          return "bad \\u escape";
        s->p += 4;
      } else if (strchr("\"\\/bfnrt", c) == NULL || c == '\0') {
        return "bad escape in a string";
      }
    }
  }
  return "unterminated string";
}

static const char *scan_number(scan_t *s) {
  if (s->p < s->end && *s->p == '-')
    s->p++;
  if (s->p >= s->end || *s->p < '0' || *s->p > '9')
    return "bad number";
  if (*s->p == '0')
    s->p++;
  else
    while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
      s->p++;
  if (s->p < s->end && *s->p == '.') {
    s->p++;
    if (s->p >= s->end || *s->p < '0' || *s->p > '9')
      return "bad number";
    while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
      s->p++;
  }
  if (s->p < s->end && (*s->p == 'e' || *s->p == 'E')) {
    s->p++;
    if (s->p < s->end && (*s->p == '+' || *s->p == '-'))
      s->p++;
    if (s->p >= s->end || *s->p < '0' || *s->p > '9')
      return "bad number";
    while (s->p < s->end && *s->p >= '0' && *s->p <= '9')
      s->p++;
  }
  return NULL;
}

static const char *scan_word(scan_t *s, const char *word) {
  size_t n = strlen(word);
  if ((size_t)(s->end - s->p) < n || memcmp(s->p, word, n) != 0)
    return "unexpected character";
  s->p += n;
  return NULL;
}

/* A scalar or the opening of a container. *open is set to '{' or '[' when
 * a container opens. */
static const char *scan_value_start(scan_t *s, unsigned char *open) {
  *open = 0;
  if (s->p >= s->end)
    return "unexpected end";
  switch (*s->p) {
  case '{':
  case '[':
    *open = *s->p++;
    return NULL;
  case '"':
    return scan_string(s);
  case 't':
    return scan_word(s, "true");
  case 'f':
    return scan_word(s, "false");
  case 'n':
    return scan_word(s, "null");
  default:
    return scan_number(s);
  }
}

bool toolcall__json_object_scan(const char *text, size_t len, char *msg,
                                size_t msglen) {
  /* One bit per open container: 1 for an object, 0 for an array. */
  uint64_t kinds[JSON_MAX_DEPTH / 64];
  size_t depth = 0;
  scan_t s = {(const unsigned char *)text, (const unsigned char *)text + len,
              (const unsigned char *)text};
  const char *why = NULL;
  unsigned char open;

  skip_ws(&s);
  if (s.p >= s.end) {
    why = "empty text";
    goto fail;
  }
  if (*s.p != '{') {
    snprintf(msg, msglen, "the arguments must be a JSON object");
    return false;
  }
  if ((why = scan_value_start(&s, &open)) != NULL)
    goto fail;
  for (;;) {
    /* Just opened a container (open != 0), or finished a value inside the
     * container at depth. */
    if (open != 0) {
      if (depth == JSON_MAX_DEPTH) {
        why = "nested too deep";
        goto fail;
      }
      uint64_t bit = (uint64_t)1 << (depth % 64);
      if (open == '{')
        kinds[depth / 64] |= bit;
      else
        kinds[depth / 64] &= ~bit;
      depth++;
      skip_ws(&s);
      if (s.p < s.end && *s.p == (open == '{' ? '}' : ']')) {
        s.p++;
        depth--;
        open = 0;
        if (depth == 0)
          break;
        goto after_value;
      }
    } else {
    after_value:
      skip_ws(&s);
      bool obj = (kinds[(depth - 1) / 64] >> ((depth - 1) % 64)) & 1;
      if (s.p >= s.end) {
        why = "unexpected end";
        goto fail;
      }
      if (*s.p == (obj ? '}' : ']')) {
        s.p++;
        if (--depth == 0)
          break;
        goto after_value;
      }
      if (*s.p != ',') {
        why = obj ? "expected ',' or '}'" : "expected ',' or ']'";
        goto fail;
      }
      s.p++;
      skip_ws(&s);
    }
    /* A member (objects) or an element (arrays) comes next. */
    bool obj = (kinds[(depth - 1) / 64] >> ((depth - 1) % 64)) & 1;
    if (obj) {
      if (s.p >= s.end || *s.p != '"') {
        why = s.p >= s.end ? "unexpected end" : "expected a string key";
        goto fail;
      }
      if ((why = scan_string(&s)) != NULL)
        goto fail;
      skip_ws(&s);
      if (s.p >= s.end || *s.p != ':') {
        why = s.p >= s.end ? "unexpected end" : "expected ':'";
        goto fail;
      }
      s.p++;
      skip_ws(&s);
    }
    if ((why = scan_value_start(&s, &open)) != NULL)
      goto fail;
  }
  skip_ws(&s);
  if (s.p != s.end) {
    why = "text after the object";
    goto fail;
  }
  return true;

fail:
  snprintf(msg, msglen, "the arguments are not valid JSON: %s at byte %zu",
           why, (size_t)(s.p - s.start));
  return false;
}

/* ---- arguments against a tool's schema ---- */

#include "schema.h"

bool toolcall__schema_check(const toolcall__schema_t *schema, const char *text,
                            size_t len, char *msg, size_t msglen) {
  json_error_t e;
  json_t *v = json_loadb(text, len, JSON_REJECT_DUPLICATES, &e);
  if (v == NULL) {
    snprintf(msg, msglen, "the arguments are not valid JSON: %s at byte %d",
             e.text, e.position);
    return false;
  }
  int rc = 1;
  if (!json_is_object(v))
    snprintf(msg, msglen, "the arguments must be a JSON object");
  else if ((rc = toolcall__schema_validate(schema, v, msg, msglen)) < 0)
    snprintf(msg, msglen, "the arguments could not be checked: out of memory");
  json_decref(v);
  return rc == 0;
}
