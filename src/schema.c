/* JSON Schema validation of tool arguments.
 *
 * A schema is parsed once and compiled into a tree of nodes; $refs become
 * pointers into that tree, patterns become regex_t. Validation only reads
 * the tree, so one compiled schema serves every thread. The parsed document
 * is kept alive for the names, enum and const values the nodes borrow. */
#include "schema.h"

#include "internal.h"

#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Schema applications one validation may nest (each $ref, allOf, items...
 * counts one), and schema objects one schema may nest. Deep enough for any
 * real argument, shallow enough to keep the stack small on worker threads. */
#define SCHEMA_MAX_DEPTH 256

_Static_assert(sizeof(json_int_t) == 8, "json_int_t is assumed 64-bit");

enum {
  T_NULL = 1 << 0,
  T_BOOLEAN = 1 << 1,
  T_OBJECT = 1 << 2,
  T_ARRAY = 1 << 3,
  T_NUMBER = 1 << 4,
  T_INTEGER = 1 << 5,
  T_STRING = 1 << 6
};

typedef struct node_s node_t;

typedef struct {
  const char *name; /* borrowed from the document */
  size_t len;
  node_t *schema;
} prop_t;

typedef struct {
  bool set;
  bool is_int;
  json_int_t i;
  double d;
} limit_t;

typedef enum { REF_NONE = 0, REF_ROOT, REF_DEFS, REF_DEFINITIONS } ref_kind_t;

struct node_s {
  node_t *next; /* every node of the schema, for freeing */
  size_t id;    /* index among the nodes, for the cycle check */
  bool never;   /* the schema `false` */
  unsigned types; /* T_* mask; 0: any type */

  prop_t *props; /* sorted by (len, bytes) for bsearch */
  size_t nprops;
  prop_t *required; /* names only */
  size_t nrequired;
  node_t *additional; /* NULL: any additional property is fine */

  const json_t *enum_values; /* borrowed; NULL: no enum */
  char *enum_text;
  const json_t *const_value; /* borrowed; NULL: no const */
  char *const_text;

  limit_t minimum, maximum, xminimum, xmaximum;
  size_t min_length, max_length; /* code points; max SIZE_MAX: none */
  regex_t *re;
  const char *pattern; /* borrowed, the text shown in messages */

  node_t *items;
  size_t min_items, max_items;

  node_t **all_of, **any_of, **one_of;
  size_t nall_of, nany_of, none_of;

  ref_kind_t ref_kind;
  char *ref_name; /* decoded definition name */
  size_t ref_len;
  const char *ref_text; /* borrowed, for messages */
  node_t *ref;
};

struct toolcall__schema_s {
  json_t *doc;
  node_t *root;
  node_t *nodes;
  size_t nnodes;
};

/* ---- messages ----------------------------------------------------------- */

/* A message under construction. Bytes past cap are dropped but counted, so
 * a path can be written back to front; sink_end cuts at a UTF-8 boundary. */
typedef struct {
  char *buf;
  size_t cap; /* 0: no message wanted */
  size_t len;
} sink_t;

/* Where the next bytes go; o == NULL only measures. */
typedef struct {
  sink_t *o;
  size_t pos;
} cursor_t;

/* The path to a value or schema keyword, innermost frame first, on the
 * stack of whoever walks there; formatted only when something fails. */
typedef struct path_s {
  const struct path_s *up; /* NULL: the frame just below "$" */
  const char *key;         /* NULL: an array index */
  size_t key_len;
  size_t index;
} path_t;

static void sink_put(sink_t *o, size_t pos, const char *s, size_t n) {
  if (pos >= o->cap)
    return;
  if (n > o->cap - pos)
    n = o->cap - pos;
  memcpy(o->buf + pos, s, n);
}

static void cursor_add(cursor_t *c, const char *s, size_t n) {
  if (c->o != NULL)
    sink_put(c->o, c->pos, s, n);
  c->pos += n;
}

static void sink_add(sink_t *o, const char *s, size_t n) {
  sink_put(o, o->len, s, n);
  o->len += n;
}

static void sink_str(sink_t *o, const char *s) { sink_add(o, s, strlen(s)); }

static void sink_end(sink_t *o) {
  if (o->cap == 0)
    return;
  size_t n = o->len < o->cap ? o->len
                             : toolcall__utf8_prefix(o->buf, o->len, o->cap - 1);
  o->buf[n] = '\0';
}

static size_t utf8_seq_len(unsigned char c) {
  if (c >= 0xC2 && c <= 0xDF)
    return 2;
  if (c >= 0xE0 && c <= 0xEF)
    return 3;
  if (c >= 0xF0 && c <= 0xF4)
    return 4;
  return 0;
}

/* Text from outside (names in values, jansson's and regerror's words) made
 * printable and valid UTF-8: control bytes as \u00XX, stray bytes as \xXX;
 * with a quote character, that quote and backslash are escaped too. */
static void cursor_escaped(cursor_t *c, const char *s, size_t n, char quote) {
  size_t i = 0;
  while (i < n) {
    unsigned char b = (unsigned char)s[i];
    char tmp[8];
    if (quote != 0 && (b == (unsigned char)quote || b == '\\')) {
      tmp[0] = '\\';
      tmp[1] = (char)b;
      cursor_add(c, tmp, 2);
      i++;
    } else if (b < 0x20 || b == 0x7F) {
      snprintf(tmp, sizeof(tmp), "\\u%04x", (unsigned)b);
      cursor_add(c, tmp, 6);
      i++;
    } else if (b < 0x80) {
      cursor_add(c, s + i, 1);
      i++;
    } else {
      size_t k = utf8_seq_len(b);
      if (k != 0 && k <= n - i && toolcall__utf8_valid(s + i, k)) {
        cursor_add(c, s + i, k);
        i += k;
      } else {
        snprintf(tmp, sizeof(tmp), "\\x%02X", (unsigned)b);
        cursor_add(c, tmp, 4);
        i++;
      }
    }
  }
}

static void sink_escaped(sink_t *o, const char *s, size_t n, char quote) {
  cursor_t c = {o, o->len};
  cursor_escaped(&c, s, n, quote);
  o->len = c.pos;
}

static bool plain_name(const char *s, size_t n) {
  if (n == 0)
    return false;
  for (size_t i = 0; i < n; i++) {
    char ch = s[i];
    if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
          (ch >= '0' && ch <= '9') || ch == '_'))
      return false;
  }
  return true;
}

static void cursor_segment(cursor_t *c, const path_t *p) {
  if (p->key == NULL) {
    char tmp[32];
    int k = snprintf(tmp, sizeof(tmp), "[%zu]", p->index);
    cursor_add(c, tmp, (size_t)k);
  } else if (plain_name(p->key, p->key_len)) {
    cursor_add(c, ".", 1);
    cursor_add(c, p->key, p->key_len);
  } else {
    cursor_add(c, "[\"", 2);
    cursor_escaped(c, p->key, p->key_len, '"');
    cursor_add(c, "\"]", 2);
  }
}

static size_t segment_len(const path_t *p) {
  cursor_t c = {NULL, 0};
  cursor_segment(&c, p);
  return c.pos;
}

/* "$", then the frames from the root down; written back to front since the
 * frames are linked from the innermost. */
static void sink_path(sink_t *o, const path_t *p) {
  if (o->cap == 0)
    return;
  size_t total = 1;
  for (const path_t *q = p; q != NULL; q = q->up)
    total += segment_len(q);
  sink_put(o, o->len, "$", 1);
  size_t end = o->len + total;
  for (const path_t *q = p; q != NULL; q = q->up) {
    end -= segment_len(q);
    cursor_t c = {o, end};
    cursor_segment(&c, q);
  }
  o->len += total;
}

static void format_limit(char *buf, size_t size, const limit_t *l) {
  if (l->is_int) {
    snprintf(buf, size, "%" JSON_INTEGER_FORMAT, l->i);
    return;
  }
  snprintf(buf, size, "%.15g", l->d);
  if (strtod(buf, NULL) != l->d)
    snprintf(buf, size, "%.17g", l->d);
}

/* ---- compiling ---------------------------------------------------------- */

typedef struct {
  ref_kind_t kind;
  const char *name;
  size_t len;
  node_t *node;
} def_t;

typedef struct {
  toolcall__schema_t *s;
  const json_t *root;
  sink_t o;
  def_t *defs; /* the root's $defs and definitions */
  size_t ndefs, defs_cap;
} cctx_t;

static sink_t *cmsg(cctx_t *c, const path_t *p) {
  c->o.len = 0;
  sink_str(&c->o, "schema: ");
  sink_path(&c->o, p);
  sink_str(&c->o, ": ");
  return &c->o;
}

static int cdone(cctx_t *c) {
  sink_end(&c->o);
  return UV_EINVAL;
}

static int cfail(cctx_t *c, const path_t *p, const char *rule) {
  sink_str(cmsg(c, p), rule);
  return cdone(c);
}

/* rule_a 'name' rule_b */
static int cfail_named(cctx_t *c, const path_t *p, const char *rule_a,
                       const char *name, size_t len, const char *rule_b) {
  sink_t *o = cmsg(c, p);
  sink_str(o, rule_a);
  sink_str(o, "'");
  sink_escaped(o, name, len, '\'');
  sink_str(o, "'");
  sink_str(o, rule_b);
  return cdone(c);
}

static node_t *node_new(cctx_t *c) {
  node_t *n = toolcall__calloc(1, sizeof(*n));
  if (n == NULL)
    return NULL;
  n->max_length = SIZE_MAX;
  n->max_items = SIZE_MAX;
  n->id = c->s->nnodes++;
  n->next = c->s->nodes;
  c->s->nodes = n;
  return n;
}

static void node_free(node_t *n) {
  toolcall__free(n->props);
  toolcall__free(n->required);
  toolcall__free(n->enum_text);
  toolcall__free(n->const_text);
  if (n->re != NULL) {
    regfree(n->re);
    toolcall__free(n->re);
  }
  toolcall__free(n->all_of);
  toolcall__free(n->any_of);
  toolcall__free(n->one_of);
  toolcall__free(n->ref_name);
  toolcall__free(n);
}

void toolcall__schema_free(toolcall__schema_t *s) {
  if (s == NULL)
    return;
  node_t *n = s->nodes;
  while (n != NULL) {
    node_t *next = n->next;
    node_free(n);
    n = next;
  }
  json_decref(s->doc);
  toolcall__free(s);
}

typedef enum {
  KW_TYPE,
  KW_PROPERTIES,
  KW_REQUIRED,
  KW_ADDITIONAL,
  KW_ENUM,
  KW_CONST,
  KW_MINIMUM,
  KW_MAXIMUM,
  KW_XMINIMUM,
  KW_XMAXIMUM,
  KW_MIN_LENGTH,
  KW_MAX_LENGTH,
  KW_PATTERN,
  KW_ITEMS,
  KW_MIN_ITEMS,
  KW_MAX_ITEMS,
  KW_ALL_OF,
  KW_ANY_OF,
  KW_ONE_OF,
  KW_REF,
  KW_DEFS,
  KW_DEFINITIONS,
  KW_ANNOTATION,
  KW_UNKNOWN
} keyword_t;

static const struct {
  const char *name;
  keyword_t kw;
} keywords[] = {
    {"type", KW_TYPE},
    {"properties", KW_PROPERTIES},
    {"required", KW_REQUIRED},
    {"additionalProperties", KW_ADDITIONAL},
    {"enum", KW_ENUM},
    {"const", KW_CONST},
    {"minimum", KW_MINIMUM},
    {"maximum", KW_MAXIMUM},
    {"exclusiveMinimum", KW_XMINIMUM},
    {"exclusiveMaximum", KW_XMAXIMUM},
    {"minLength", KW_MIN_LENGTH},
    {"maxLength", KW_MAX_LENGTH},
    {"pattern", KW_PATTERN},
    {"items", KW_ITEMS},
    {"minItems", KW_MIN_ITEMS},
    {"maxItems", KW_MAX_ITEMS},
    {"allOf", KW_ALL_OF},
    {"anyOf", KW_ANY_OF},
    {"oneOf", KW_ONE_OF},
    {"$ref", KW_REF},
    {"$defs", KW_DEFS},
    {"definitions", KW_DEFINITIONS},
    /* annotations: they never change whether a value is valid */
    {"title", KW_ANNOTATION},
    {"description", KW_ANNOTATION},
    {"default", KW_ANNOTATION},
    {"examples", KW_ANNOTATION},
    {"$schema", KW_ANNOTATION},
    {"$id", KW_ANNOTATION},
    {"$comment", KW_ANNOTATION},
    {"format", KW_ANNOTATION},
    {"deprecated", KW_ANNOTATION},
    {"readOnly", KW_ANNOTATION},
    {"writeOnly", KW_ANNOTATION},
};

static keyword_t keyword_find(const char *key, size_t len) {
  for (size_t i = 0; i < sizeof(keywords) / sizeof(keywords[0]); i++)
    if (strlen(keywords[i].name) == len &&
        memcmp(keywords[i].name, key, len) == 0)
      return keywords[i].kw;
  return KW_UNKNOWN;
}

static const struct {
  const char *name;
  unsigned bit;
} type_names[] = {
    {"string", T_STRING},   {"number", T_NUMBER}, {"integer", T_INTEGER},
    {"boolean", T_BOOLEAN}, {"object", T_OBJECT}, {"array", T_ARRAY},
    {"null", T_NULL},
};

static int type_bit(cctx_t *c, const json_t *v, const path_t *p,
                    unsigned *bit) {
  if (!json_is_string(v))
    return cfail(c, p,
                 "must be a type name or a non-empty array of type names");
  const char *s = json_string_value(v);
  size_t len = json_string_length(v);
  for (size_t i = 0; i < sizeof(type_names) / sizeof(type_names[0]); i++)
    if (strlen(type_names[i].name) == len &&
        memcmp(type_names[i].name, s, len) == 0) {
      *bit = type_names[i].bit;
      return 0;
    }
  return cfail_named(c, p, "unknown type ", s, len, "");
}

static int compile_type(cctx_t *c, node_t *n, const json_t *v,
                        const path_t *p) {
  unsigned bit = 0;
  int rc;
  if (!json_is_array(v)) {
    if ((rc = type_bit(c, v, p, &bit)) != 0)
      return rc;
    n->types = bit;
    return 0;
  }
  if (json_array_size(v) == 0)
    return cfail(c, p,
                 "must be a type name or a non-empty array of type names");
  unsigned types = 0;
  for (size_t i = 0; i < json_array_size(v); i++) {
    path_t ip = {p, NULL, 0, i};
    if ((rc = type_bit(c, json_array_get(v, i), &ip, &bit)) != 0)
      return rc;
    types |= bit;
  }
  n->types = types;
  return 0;
}

static int compile_limit(cctx_t *c, limit_t *l, const json_t *v,
                         const path_t *p, bool exclusive) {
  if (json_is_integer(v)) {
    l->is_int = true;
    l->i = json_integer_value(v);
    l->d = (double)l->i;
  } else if (json_is_real(v)) {
    l->d = json_real_value(v);
  } else if (exclusive && json_is_boolean(v)) {
    return cfail(c, p,
                 "must be a number (the draft-4 boolean form is not "
                 "supported; give the limit itself)");
  } else {
    return cfail(c, p, "must be a number");
  }
  l->set = true;
  return 0;
}

static int compile_count(cctx_t *c, size_t *out, const json_t *v,
                         const path_t *p) {
  if (json_is_integer(v) && json_integer_value(v) >= 0) {
    *out = (size_t)json_integer_value(v);
    return 0;
  }
  if (json_is_real(v)) {
    double d = json_real_value(v);
    if (d >= 0 && d < 9007199254740992.0 && (double)(json_int_t)d == d) {
      *out = (size_t)d;
      return 0;
    }
    if (d >= 9007199254740992.0) {
      *out = SIZE_MAX;
      return 0;
    }
  }
  return cfail(c, p, "must be a non-negative integer");
}

/* The value as compact JSON, in our own memory, for messages. */
static int dump_text(const json_t *v, char **out) {
  size_t flags = JSON_COMPACT | JSON_ENCODE_ANY;
  size_t size = json_dumpb(v, NULL, 0, flags);
  if (size == 0)
    return UV_ENOMEM;
  char *text = toolcall__malloc(size + 1);
  if (text == NULL)
    return UV_ENOMEM;
  if (json_dumpb(v, text, size, flags) != size) {
    toolcall__free(text);
    return UV_ENOMEM;
  }
  text[size] = '\0';
  *out = text;
  return 0;
}

/* ---- patterns ---- */

/* JSON Schema patterns are ECMA-262 regular expressions; regcomp speaks
 * POSIX ERE. The common ECMA subset is translated (\d \w \s and their
 * negations, escaped punctuation, \t \n..., (?:...), a `{` that is not a
 * quantifier); what POSIX would silently read differently (\b, back
 * references, lookaround, non-ASCII inside [...]) is refused instead. */

typedef struct {
  char *p;
  size_t len, cap;
  bool nomem;
} gbuf_t;

static void gb_add(gbuf_t *b, const char *s, size_t n) {
  if (b->nomem)
    return;
  if (b->len + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + n + 1)
      cap *= 2;
    char *p = toolcall__realloc(b->p, cap);
    if (p == NULL) {
      b->nomem = true;
      return;
    }
    b->p = p;
    b->cap = cap;
  }
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

static void gb_str(gbuf_t *b, const char *s) { gb_add(b, s, strlen(s)); }

static const char *const posix_classes[] = {
    "alnum", "alpha", "blank", "cntrl", "digit", "graph",
    "lower", "print", "punct", "space", "upper", "xdigit"};
#define CLASS_SPACE (1u << 9)

static const char *const ere_special = ".[]()*+?{}|^$\\";

static bool is_ascii_punct(unsigned char e) {
  return e > 0x20 && e < 0x7F &&
         !((e >= 'a' && e <= 'z') || (e >= 'A' && e <= 'Z') ||
           (e >= '0' && e <= '9'));
}

/* \t \n \v \f \r (and \b inside [...]): the byte, or 0. */
static char control_escape(unsigned char e, bool in_class) {
  switch (e) {
  case 't': return '\t';
  case 'n': return '\n';
  case 'v': return '\v';
  case 'f': return '\f';
  case 'r': return '\r';
  case 'b': return in_class ? '\b' : 0;
  default: return 0;
  }
}

static void set_range(bool *set, unsigned lo, unsigned hi) {
  for (unsigned ch = lo; ch <= hi; ch++)
    set[ch] = true;
}

/* One item of a [...] class at s[*i]: 1 and *lit for a single character,
 * 0 when it added a class (\d, [:alpha:], ...) to set/classes, -1 with
 * *why. */
static int class_atom(const char *s, size_t n, size_t *i, unsigned char *lit,
                      bool *set, unsigned *classes, const char **why) {
  unsigned char ch = (unsigned char)s[*i];
  if (ch >= 0x80) {
    *why = "non-ASCII characters inside [...] are not supported";
    return -1;
  }
  if (ch == '[' && *i + 1 < n && s[*i + 1] == ':') {
    for (size_t k = 0; k < sizeof(posix_classes) / sizeof(posix_classes[0]);
         k++) {
      size_t len = strlen(posix_classes[k]);
      if (*i + 2 + len + 2 <= n &&
          memcmp(s + *i + 2, posix_classes[k], len) == 0 &&
          memcmp(s + *i + 2 + len, ":]", 2) == 0) {
        *classes |= 1u << k;
        *i += 2 + len + 2;
        return 0;
      }
    }
  }
  if (ch != '\\') {
    *lit = ch;
    (*i)++;
    return 1;
  }
  if (*i + 1 >= n) {
    *why = "pattern ends with a backslash";
    return -1;
  }
  unsigned char e = (unsigned char)s[*i + 1];
  *i += 2;
  char ctl = control_escape(e, true);
  if (ctl != 0) {
    *lit = (unsigned char)ctl;
    return 1;
  }
  switch (e) {
  case 'd':
    set_range(set, '0', '9');
    return 0;
  case 'w':
    set_range(set, '0', '9');
    set_range(set, 'A', 'Z');
    set_range(set, 'a', 'z');
    set['_'] = true;
    return 0;
  case 's':
    *classes |= CLASS_SPACE;
    return 0;
  default:
    break;
  }
  if (is_ascii_punct(e)) {
    *lit = e;
    return 1;
  }
  *why = "unsupported escape inside [...]";
  return -1;
}

/* A [...] class starting at s[*i] == '[' into POSIX form: POSIX has no
 * escapes inside brackets, so ']' goes first, '^' never first, '-' last. */
static int translate_class(const char *s, size_t n, size_t *i, gbuf_t *out,
                           const char **why) {
  bool set[128] = {false};
  unsigned classes = 0;
  bool neg = false;
  (*i)++;
  if (*i < n && s[*i] == '^') {
    neg = true;
    (*i)++;
  }
  if (*i < n && s[*i] == ']') {
    *why = "empty character class";
    return -1;
  }
  for (;;) {
    if (*i >= n) {
      *why = "unterminated character class";
      return -1;
    }
    if (s[*i] == ']') {
      (*i)++;
      break;
    }
    unsigned char lo, hi;
    int k = class_atom(s, n, i, &lo, set, &classes, why);
    if (k < 0)
      return -1;
    if (k == 0)
      continue;
    if (*i + 1 < n && s[*i] == '-' && s[*i + 1] != ']') {
      (*i)++;
      k = class_atom(s, n, i, &hi, set, &classes, why);
      if (k < 0)
        return -1;
      if (k == 0 || hi < lo) {
        *why = "invalid range in character class";
        return -1;
      }
      set_range(set, lo, hi);
    } else {
      set[lo] = true;
    }
  }

  if (!neg && classes == 0 && set['^']) {
    bool only = true;
    for (unsigned ch = 0; ch < 128; ch++)
      if (set[ch] && ch != '^' && ch != '-')
        only = false;
    if (only) {
      gb_str(out, set['-'] ? "[-^]" : "\\^");
      return 0;
    }
  }
  gb_str(out, neg ? "[^" : "[");
  if (set[']'])
    gb_str(out, "]");
  for (unsigned ch = 1; ch < 128;) {
    if (!set[ch] || ch == ']' || ch == '^' || ch == '-' || ch == '[') {
      ch++;
      continue;
    }
    unsigned end = ch;
    while (end + 1 < 128 && set[end + 1] && end + 1 != ']' &&
           end + 1 != '^' && end + 1 != '-' && end + 1 != '[')
      end++;
    char a = (char)ch, b = (char)end;
    gb_add(out, &a, 1);
    if (end >= ch + 2)
      gb_str(out, "-");
    if (end > ch)
      gb_add(out, &b, 1);
    ch = end + 1;
  }
  for (size_t k = 0; k < sizeof(posix_classes) / sizeof(posix_classes[0]); k++)
    if (classes & (1u << k)) {
      gb_str(out, "[:");
      gb_str(out, posix_classes[k]);
      gb_str(out, ":]");
    }
  if (set['['])
    gb_str(out, "[");
  if (set['^'])
    gb_str(out, "^");
  if (set['-'])
    gb_str(out, "-");
  gb_str(out, "]");
  return 0;
}

/* {n}, {n,} or {n,m} at s[i]. */
static bool is_quantifier(const char *s, size_t n, size_t i) {
  size_t k = i + 1, digits = 0;
  while (k < n && s[k] >= '0' && s[k] <= '9')
    k++, digits++;
  if (digits == 0)
    return false;
  if (k < n && s[k] == ',') {
    k++;
    while (k < n && s[k] >= '0' && s[k] <= '9')
      k++;
  }
  return k < n && s[k] == '}';
}

static int translate_pattern(const char *s, size_t n, gbuf_t *out,
                             const char **why) {
  size_t i = 0;
  while (i < n) {
    unsigned char ch = (unsigned char)s[i];
    if (ch == '[') {
      if (translate_class(s, n, &i, out, why) != 0)
        return -1;
      continue;
    }
    if (ch == '(' && i + 1 < n && s[i + 1] == '?') {
      if (i + 2 < n && s[i + 2] == ':') {
        gb_str(out, "(");
        i += 3;
        continue;
      }
      *why = "lookaround, named groups and inline flags '(?' are not "
             "supported";
      return -1;
    }
    if (ch == '{' && !is_quantifier(s, n, i)) {
      gb_str(out, "\\{");
      i++;
      continue;
    }
    if (ch >= 0x80) {
      /* one character, so that a quantifier after it applies to all of it */
      size_t k = utf8_seq_len(ch);
      if (k == 0 || k > n - i)
        k = 1;
      gb_str(out, "(");
      gb_add(out, s + i, k);
      gb_str(out, ")");
      i += k;
      continue;
    }
    if (ch != '\\') {
      gb_add(out, s + i, 1);
      i++;
      continue;
    }
    if (i + 1 >= n) {
      *why = "pattern ends with a backslash";
      return -1;
    }
    unsigned char e = (unsigned char)s[i + 1];
    i += 2;
    char ctl = control_escape(e, false);
    const char *cls = NULL;
    switch (e) {
    case 'd': cls = "[0-9]"; break;
    case 'D': cls = "[^0-9]"; break;
    case 'w': cls = "[A-Za-z0-9_]"; break;
    case 'W': cls = "[^A-Za-z0-9_]"; break;
    case 's': cls = "[[:space:]]"; break;
    case 'S': cls = "[^[:space:]]"; break;
    default: break;
    }
    if (cls != NULL) {
      gb_str(out, cls);
    } else if (ctl != 0) {
      gb_add(out, &ctl, 1);
    } else if (is_ascii_punct(e)) {
      char lit[2] = {'\\', (char)e};
      /* GNU regcomp gives \< \> \` \' meanings: only escape what ERE needs */
      if (strchr(ere_special, e) != NULL)
        gb_add(out, lit, 2);
      else
        gb_add(out, lit + 1, 1);
    } else {
      *why = "unsupported escape (\\b, back references, \\u, \\x, \\p... "
             "are not supported)";
      return -1;
    }
  }
  return 0;
}

static int compile_pattern(cctx_t *c, node_t *n, const json_t *v,
                           const path_t *p) {
  if (!json_is_string(v))
    return cfail(c, p, "must be a string");
  const char *why = NULL;
  gbuf_t ere = {0};
  if (translate_pattern(json_string_value(v), json_string_length(v), &ere,
                        &why) != 0) {
    toolcall__free(ere.p);
    return cfail(c, p, why);
  }
  if (!ere.nomem && ere.p == NULL)
    gb_str(&ere, ""); /* the empty pattern */
  if (ere.nomem) {
    toolcall__free(ere.p);
    return UV_ENOMEM;
  }
  regex_t *re = toolcall__malloc(sizeof(*re));
  if (re == NULL) {
    toolcall__free(ere.p);
    return UV_ENOMEM;
  }
  int rc = regcomp(re, ere.p, REG_EXTENDED | REG_NOSUB);
  toolcall__free(ere.p);
  if (rc != 0) {
    char text[128];
    regerror(rc, re, text, sizeof(text));
    toolcall__free(re);
    if (rc == REG_ESPACE)
      return UV_ENOMEM;
    sink_t *o = cmsg(c, p);
    sink_str(o, "invalid regular expression: ");
    sink_escaped(o, text, strlen(text), 0);
    return cdone(c);
  }
  n->re = re;
  n->pattern = json_string_value(v);
  return 0;
}

/* ---- $ref ---- */

static int hex_digit(char ch) {
  if (ch >= '0' && ch <= '9')
    return ch - '0';
  if (ch >= 'a' && ch <= 'f')
    return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F')
    return ch - 'A' + 10;
  return -1;
}

/* "#", "#/$defs/NAME" or "#/definitions/NAME", NAME a JSON pointer token
 * in a URI fragment (~0 ~1 and %XX decoded). The definition must exist in
 * the root document; the node is found once everything is compiled. */
static int compile_ref(cctx_t *c, node_t *n, const json_t *v,
                       const path_t *p) {
  static const char unsupported[] =
      "only local references '#', '#/$defs/NAME' and '#/definitions/NAME' "
      "are supported";
  if (!json_is_string(v))
    return cfail(c, p, "must be a string");
  const char *s = json_string_value(v);
  size_t len = json_string_length(v);
  n->ref_text = s;
  if (len == 1 && s[0] == '#') {
    n->ref_kind = REF_ROOT;
    return 0;
  }
  const char *key;
  size_t prefix;
  if (len > 8 && memcmp(s, "#/$defs/", 8) == 0) {
    n->ref_kind = REF_DEFS;
    key = "$defs";
    prefix = 8;
  } else if (len > 14 && memcmp(s, "#/definitions/", 14) == 0) {
    n->ref_kind = REF_DEFINITIONS;
    key = "definitions";
    prefix = 14;
  } else {
    return cfail(c, p, unsupported);
  }
  char *name = toolcall__malloc(len - prefix + 1);
  if (name == NULL)
    return UV_ENOMEM;
  size_t k = 0;
  for (size_t i = prefix; i < len; i++) {
    char ch = s[i];
    if (ch == '%' && i + 2 < len && hex_digit(s[i + 1]) >= 0 &&
        hex_digit(s[i + 2]) >= 0) {
      ch = (char)(hex_digit(s[i + 1]) * 16 + hex_digit(s[i + 2]));
      i += 2;
    }
    if (ch == '/') { /* a deeper pointer, into a definition */
      toolcall__free(name);
      return cfail(c, p, unsupported);
    }
    name[k++] = ch;
  }
  /* ~ escapes apply after percent-decoding */
  size_t m = 0;
  for (size_t i = 0; i < k; i++) {
    if (name[i] == '~' && i + 1 < k && (name[i + 1] == '0' || name[i + 1] == '1')) {
      name[m++] = name[i + 1] == '0' ? '~' : '/';
      i++;
    } else {
      name[m++] = name[i];
    }
  }
  name[m] = '\0';
  n->ref_name = name;
  n->ref_len = m;
  const json_t *defs = json_object_get(c->root, key);
  if (!json_is_object(defs) || json_object_getn(defs, name, m) == NULL)
    return cfail_named(c, p, "no definition ", s, len, " in the schema");
  return 0;
}

static int compile_node(cctx_t *c, const json_t *js, const path_t *p,
                        int depth, node_t **out);

static int compile_list(cctx_t *c, const json_t *v, const path_t *p,
                        int depth, node_t ***out, size_t *count) {
  if (!json_is_array(v) || json_array_size(v) == 0)
    return cfail(c, p, "must be a non-empty array of schemas");
  size_t n = json_array_size(v);
  node_t **list = toolcall__calloc(n, sizeof(*list));
  if (list == NULL)
    return UV_ENOMEM;
  *out = list;
  for (size_t i = 0; i < n; i++) {
    path_t ip = {p, NULL, 0, i};
    int rc = compile_node(c, json_array_get(v, i), &ip, depth + 1, &list[i]);
    if (rc != 0)
      return rc;
    *count = i + 1;
  }
  return 0;
}

static int prop_cmp(const void *a, const void *b) {
  const prop_t *x = a, *y = b;
  if (x->len != y->len)
    return x->len < y->len ? -1 : 1;
  return memcmp(x->name, y->name, x->len);
}

static int compile_properties(cctx_t *c, node_t *n, const json_t *v,
                              const path_t *p, int depth) {
  if (!json_is_object(v))
    return cfail(c, p, "must be an object of schemas");
  size_t count = json_object_size(v);
  n->props = toolcall__calloc(count, sizeof(*n->props));
  if (n->props == NULL)
    return UV_ENOMEM;
  for (void *it = json_object_iter((json_t *)v); it != NULL;
       it = json_object_iter_next((json_t *)v, it)) {
    prop_t *pr = &n->props[n->nprops];
    pr->name = json_object_iter_key(it);
    pr->len = json_object_iter_key_len(it);
    path_t kp = {p, pr->name, pr->len, 0};
    int rc = compile_node(c, json_object_iter_value(it), &kp, depth + 1,
                          &pr->schema);
    if (rc != 0)
      return rc;
    n->nprops++;
  }
  qsort(n->props, n->nprops, sizeof(*n->props), prop_cmp);
  return 0;
}

static int compile_required(cctx_t *c, node_t *n, const json_t *v,
                            const path_t *p) {
  if (!json_is_array(v))
    return cfail(c, p, "must be an array of property names");
  size_t count = json_array_size(v);
  n->required = toolcall__calloc(count, sizeof(*n->required));
  if (n->required == NULL)
    return UV_ENOMEM;
  for (size_t i = 0; i < count; i++) {
    const json_t *name = json_array_get(v, i);
    if (!json_is_string(name)) {
      path_t ip = {p, NULL, 0, i};
      return cfail(c, &ip, "must be a string");
    }
    n->required[i].name = json_string_value(name);
    n->required[i].len = json_string_length(name);
  }
  n->nrequired = count;
  return 0;
}

static int compile_defs(cctx_t *c, const json_t *v, const path_t *p,
                        int depth, ref_kind_t kind) {
  if (!json_is_object(v))
    return cfail(c, p, "must be an object of schemas");
  for (void *it = json_object_iter((json_t *)v); it != NULL;
       it = json_object_iter_next((json_t *)v, it)) {
    const char *name = json_object_iter_key(it);
    size_t len = json_object_iter_key_len(it);
    path_t kp = {p, name, len, 0};
    node_t *def;
    int rc = compile_node(c, json_object_iter_value(it), &kp, depth + 1, &def);
    if (rc != 0)
      return rc;
    if (depth != 0)
      continue; /* only the root's definitions can be referenced */
    if (c->ndefs == c->defs_cap) {
      size_t cap = c->defs_cap ? c->defs_cap * 2 : 8;
      def_t *defs = toolcall__realloc(c->defs, cap * sizeof(*defs));
      if (defs == NULL)
        return UV_ENOMEM;
      c->defs = defs;
      c->defs_cap = cap;
    }
    c->defs[c->ndefs++] = (def_t){kind, name, len, def};
  }
  return 0;
}

static int compile_keyword(cctx_t *c, node_t *n, keyword_t kw,
                           const json_t *v, const path_t *kp, int depth) {
  int rc;
  switch (kw) {
  case KW_TYPE:
    return compile_type(c, n, v, kp);
  case KW_PROPERTIES:
    return compile_properties(c, n, v, kp, depth);
  case KW_REQUIRED:
    return compile_required(c, n, v, kp);
  case KW_ADDITIONAL:
    if (json_is_true(v))
      return 0;
    return compile_node(c, v, kp, depth + 1, &n->additional);
  case KW_ENUM:
    if (!json_is_array(v))
      return cfail(c, kp, "must be an array");
    if ((rc = dump_text(v, &n->enum_text)) != 0)
      return rc;
    n->enum_values = v;
    return 0;
  case KW_CONST:
    if ((rc = dump_text(v, &n->const_text)) != 0)
      return rc;
    n->const_value = v;
    return 0;
  case KW_MINIMUM:
    return compile_limit(c, &n->minimum, v, kp, false);
  case KW_MAXIMUM:
    return compile_limit(c, &n->maximum, v, kp, false);
  case KW_XMINIMUM:
    return compile_limit(c, &n->xminimum, v, kp, true);
  case KW_XMAXIMUM:
    return compile_limit(c, &n->xmaximum, v, kp, true);
  case KW_MIN_LENGTH:
    return compile_count(c, &n->min_length, v, kp);
  case KW_MAX_LENGTH:
    return compile_count(c, &n->max_length, v, kp);
  case KW_PATTERN:
    return compile_pattern(c, n, v, kp);
  case KW_ITEMS:
    if (json_is_array(v))
      return cfail(c, kp,
                   "must be a schema (the array form of items is not "
                   "supported)");
    return compile_node(c, v, kp, depth + 1, &n->items);
  case KW_MIN_ITEMS:
    return compile_count(c, &n->min_items, v, kp);
  case KW_MAX_ITEMS:
    return compile_count(c, &n->max_items, v, kp);
  case KW_ALL_OF:
    return compile_list(c, v, kp, depth, &n->all_of, &n->nall_of);
  case KW_ANY_OF:
    return compile_list(c, v, kp, depth, &n->any_of, &n->nany_of);
  case KW_ONE_OF:
    return compile_list(c, v, kp, depth, &n->one_of, &n->none_of);
  case KW_REF:
    return compile_ref(c, n, v, kp);
  case KW_DEFS:
    return compile_defs(c, v, kp, depth, REF_DEFS);
  case KW_DEFINITIONS:
    return compile_defs(c, v, kp, depth, REF_DEFINITIONS);
  case KW_ANNOTATION:
  case KW_UNKNOWN:
    break;
  }
  return 0;
}

static int compile_node(cctx_t *c, const json_t *js, const path_t *p,
                        int depth, node_t **out) {
  if (!json_is_object(js) && !json_is_boolean(js))
    return cfail(c, p, "must be a schema (an object or a boolean)");
  if (depth >= SCHEMA_MAX_DEPTH)
    return cfail(c, p, "schema nested too deeply");
  node_t *n = node_new(c);
  if (n == NULL)
    return UV_ENOMEM;
  *out = n;
  if (json_is_boolean(js)) {
    n->never = json_is_false(js);
    return 0;
  }
  /* Unknown keywords first: a clear refusal beats a message about some
   * other keyword of a schema we would refuse anyway. */
  for (void *it = json_object_iter((json_t *)js); it != NULL;
       it = json_object_iter_next((json_t *)js, it)) {
    const char *key = json_object_iter_key(it);
    size_t len = json_object_iter_key_len(it);
    if (keyword_find(key, len) == KW_UNKNOWN)
      return cfail_named(c, p, "unsupported keyword ", key, len, "");
  }
  for (void *it = json_object_iter((json_t *)js); it != NULL;
       it = json_object_iter_next((json_t *)js, it)) {
    const char *key = json_object_iter_key(it);
    size_t len = json_object_iter_key_len(it);
    path_t kp = {p, key, len, 0};
    int rc = compile_keyword(c, n, keyword_find(key, len),
                             json_object_iter_value(it), &kp, depth);
    if (rc != 0)
      return rc;
  }
  return 0;
}

static int resolve_refs(cctx_t *c) {
  for (node_t *n = c->s->nodes; n != NULL; n = n->next) {
    if (n->ref_kind == REF_NONE)
      continue;
    if (n->ref_kind == REF_ROOT) {
      n->ref = c->s->root;
      continue;
    }
    for (size_t i = 0; i < c->ndefs; i++) {
      const def_t *d = &c->defs[i];
      if (d->kind == n->ref_kind && d->len == n->ref_len &&
          memcmp(d->name, n->ref_name, d->len) == 0) {
        n->ref = d->node;
        break;
      }
    }
    if (n->ref == NULL) { /* compile_ref checked the document: cannot be */
      c->o.len = 0;
      sink_str(&c->o, "schema: unresolved $ref ");
      sink_escaped(&c->o, n->ref_text, strlen(n->ref_text), 0);
      return cdone(c);
    }
  }
  return 0;
}

/* The schemas a node applies to the same value: following only these
 * never consumes any of the value, so a cycle among them (a $ref to itself,
 * allOf: [{$ref: '#'}], ...) would recurse forever. */
static node_t *same_value_edge(const node_t *n, size_t k) {
  if (n->ref != NULL) {
    if (k == 0)
      return n->ref;
    k--;
  }
  if (k < n->nall_of)
    return n->all_of[k];
  k -= n->nall_of;
  if (k < n->nany_of)
    return n->any_of[k];
  k -= n->nany_of;
  if (k < n->none_of)
    return n->one_of[k];
  return NULL;
}

/* Iterative depth-first search (a chain of thousands of $defs must not
 * exhaust the stack). */
static int check_cycles(cctx_t *c) {
  size_t count = c->s->nnodes;
  unsigned char *color = toolcall__calloc(count, 1); /* 0 new, 1 open, 2 done */
  struct frame {
    const node_t *n;
    size_t k;
  } *stack = toolcall__calloc(count, sizeof(*stack));
  int rc = 0;
  if (color == NULL || stack == NULL) {
    rc = UV_ENOMEM;
    goto done;
  }
  for (const node_t *start = c->s->nodes; start != NULL && rc == 0;
       start = start->next) {
    if (color[start->id] != 0)
      continue;
    size_t top = 0;
    stack[top++] = (struct frame){start, 0};
    color[start->id] = 1;
    while (top > 0) {
      struct frame *f = &stack[top - 1];
      const node_t *next = same_value_edge(f->n, f->k++);
      if (next == NULL) {
        color[f->n->id] = 2;
        top--;
      } else if (color[next->id] == 0) {
        color[next->id] = 1;
        stack[top++] = (struct frame){next, 0};
      } else if (color[next->id] == 1) {
        /* a cycle: name a $ref on it */
        const node_t *named = NULL;
        for (size_t i = top; i-- > 0 && named == NULL;)
          if (stack[i].n->ref != NULL)
            named = stack[i].n;
        c->o.len = 0;
        sink_str(&c->o, "schema: $ref ");
        if (named != NULL) {
          sink_str(&c->o, "'");
          sink_escaped(&c->o, named->ref_text, strlen(named->ref_text), '\'');
          sink_str(&c->o, "' ");
        }
        sink_str(&c->o, "leads back to itself without descending into the "
                        "value (infinite recursion)");
        rc = cdone(c);
        break;
      }
    }
  }
done:
  toolcall__free(color);
  toolcall__free(stack);
  return rc;
}

int toolcall__schema_compile(const char *text, size_t len,
                             toolcall__schema_t **out, char *msg,
                             size_t msglen) {
  cctx_t c = {0};
  c.o.buf = msg;
  c.o.cap = msg != NULL ? msglen : 0;
  if (c.o.cap > 0)
    msg[0] = '\0';
  if (text == NULL || out == NULL) {
    sink_str(&c.o, "schema: no schema text or no output");
    return cdone(&c);
  }
  json_error_t jerr;
  /* DECODE_ANY: `true` and `false` are schemas too */
  json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY,
                           &jerr);
  if (doc == NULL) {
    char where[96];
    snprintf(where, sizeof(where), "schema: invalid JSON at line %d, column %d: ",
             jerr.line, jerr.column);
    sink_str(&c.o, where);
    sink_escaped(&c.o, jerr.text, strnlen(jerr.text, sizeof(jerr.text)), 0);
    return cdone(&c);
  }
  int rc = UV_ENOMEM;
  c.s = toolcall__calloc(1, sizeof(*c.s));
  if (c.s == NULL) {
    json_decref(doc);
    goto nomem;
  }
  c.s->doc = doc;
  c.root = doc;
  rc = compile_node(&c, doc, NULL, 0, &c.s->root);
  if (rc == 0)
    rc = resolve_refs(&c);
  if (rc == 0)
    rc = check_cycles(&c);
  toolcall__free(c.defs);
  if (rc == 0) {
    *out = c.s;
    return 0;
  }
  toolcall__schema_free(c.s);
  if (rc != UV_ENOMEM)
    return rc;
nomem:
  c.o.len = 0;
  sink_str(&c.o, "schema: out of memory");
  sink_end(&c.o);
  return UV_ENOMEM;
}

/* ---- validating --------------------------------------------------------- */

enum { VALID = 0, INVALID = 1, TOO_DEEP = 2 };

typedef struct {
  sink_t o;
} vctx_t;

/* Start "<path>: " when reporting; NULL when the caller only wants to
 * know (inside anyOf/oneOf). */
static sink_t *vmsg(vctx_t *v, const path_t *p, bool report) {
  if (!report || v->o.cap == 0)
    return NULL;
  v->o.len = 0;
  sink_path(&v->o, p);
  sink_str(&v->o, ": ");
  return &v->o;
}

static int invalid(vctx_t *v, const path_t *p, bool report, const char *rule,
                   const char *detail) {
  sink_t *o = vmsg(v, p, report);
  if (o != NULL) {
    sink_str(o, rule);
    if (detail != NULL)
      sink_str(o, detail);
    sink_end(o);
  }
  return INVALID;
}

static bool integral(double d) {
  if (d >= 9007199254740992.0 || d <= -9007199254740992.0)
    return true; /* every double this large is a whole number */
  return (double)(json_int_t)d == d;
}

/* i compared with d, exactly: -1, 0 or 1. */
static int cmp_int_double(json_int_t i, double d) {
  if (d >= 9223372036854775808.0)
    return -1;
  if (d < -9223372036854775808.0)
    return 1;
  json_int_t t = (json_int_t)d; /* toward zero, exact in this range */
  if (i != t)
    return i < t ? -1 : 1;
  double frac = d - (double)t;
  return frac > 0 ? -1 : frac < 0 ? 1 : 0;
}

static int cmp_number(const json_t *a, bool b_int, json_int_t bi, double bd) {
  if (json_is_integer(a)) {
    json_int_t ai = json_integer_value(a);
    if (b_int)
      return ai < bi ? -1 : ai > bi;
    return cmp_int_double(ai, bd);
  }
  double ad = json_real_value(a);
  if (b_int)
    return -cmp_int_double(bi, ad);
  return ad < bd ? -1 : ad > bd;
}

/* JSON Schema equality: 1 and 1.0 are the same number, unlike json_equal. */
static bool values_equal(const json_t *a, const json_t *b) {
  if (json_is_number(a) && json_is_number(b)) {
    if (json_is_integer(b))
      return cmp_number(a, true, json_integer_value(b), 0) == 0;
    return cmp_number(a, false, 0, json_real_value(b)) == 0;
  }
  if (json_typeof(a) != json_typeof(b))
    return false;
  switch (json_typeof(a)) {
  case JSON_STRING:
    return json_string_length(a) == json_string_length(b) &&
           memcmp(json_string_value(a), json_string_value(b),
                  json_string_length(a)) == 0;
  case JSON_ARRAY:
    if (json_array_size(a) != json_array_size(b))
      return false;
    for (size_t i = 0; i < json_array_size(a); i++)
      if (!values_equal(json_array_get(a, i), json_array_get(b, i)))
        return false;
    return true;
  case JSON_OBJECT:
    if (json_object_size(a) != json_object_size(b))
      return false;
    for (void *it = json_object_iter((json_t *)a); it != NULL;
         it = json_object_iter_next((json_t *)a, it)) {
      const json_t *bv = json_object_getn(b, json_object_iter_key(it),
                                          json_object_iter_key_len(it));
      if (bv == NULL || !values_equal(json_object_iter_value(it), bv))
        return false;
    }
    return true;
  default:
    return json_equal(a, b);
  }
}

static unsigned value_types(const json_t *v) {
  switch (json_typeof(v)) {
  case JSON_OBJECT: return T_OBJECT;
  case JSON_ARRAY: return T_ARRAY;
  case JSON_STRING: return T_STRING;
  case JSON_INTEGER: return T_INTEGER | T_NUMBER;
  case JSON_REAL:
    return integral(json_real_value(v)) ? T_INTEGER | T_NUMBER : T_NUMBER;
  case JSON_TRUE:
  case JSON_FALSE: return T_BOOLEAN;
  case JSON_NULL: return T_NULL;
  }
  return 0;
}

static int invalid_type(vctx_t *v, const path_t *p, bool report,
                        unsigned types) {
  static const char *const article[] = {"a string", "a number", "an integer",
                                        "a boolean", "an object", "an array",
                                        "null"};
  sink_t *o = vmsg(v, p, report);
  if (o == NULL)
    return INVALID;
  if (types & T_NUMBER)
    types &= ~(unsigned)T_INTEGER;
  size_t total = 0, done = 0;
  for (size_t i = 0; i < 7; i++)
    total += (types & type_names[i].bit) != 0;
  sink_str(o, "must be ");
  for (size_t i = 0; i < 7; i++) {
    if (!(types & type_names[i].bit))
      continue;
    if (done > 0)
      sink_str(o, done + 1 == total ? " or " : ", ");
    sink_str(o, article[i]);
    done++;
  }
  sink_end(o);
  return INVALID;
}

static int limit_rule(vctx_t *v, const path_t *p, bool report,
                      const char *rule, const limit_t *l) {
  char num[40];
  if (!report)
    return INVALID;
  format_limit(num, sizeof(num), l);
  return invalid(v, p, report, rule, num);
}

static int count_rule(vctx_t *v, const path_t *p, bool report,
                      const char *a, size_t count, const char *b) {
  sink_t *o = vmsg(v, p, report);
  if (o != NULL) {
    char num[32];
    snprintf(num, sizeof(num), "%zu", count);
    sink_str(o, a);
    sink_str(o, num);
    sink_str(o, b);
    sink_end(o);
  }
  return INVALID;
}

static int check(vctx_t *v, const node_t *n, const json_t *val,
                 const path_t *p, int depth, bool report);

static int check_number(vctx_t *v, const node_t *n, const json_t *val,
                        const path_t *p, bool report) {
  const limit_t *l = &n->minimum;
  if (l->set && cmp_number(val, l->is_int, l->i, l->d) < 0)
    return limit_rule(v, p, report, "must be at least ", l);
  l = &n->maximum;
  if (l->set && cmp_number(val, l->is_int, l->i, l->d) > 0)
    return limit_rule(v, p, report, "must be at most ", l);
  l = &n->xminimum;
  if (l->set && cmp_number(val, l->is_int, l->i, l->d) <= 0)
    return limit_rule(v, p, report, "must be greater than ", l);
  l = &n->xmaximum;
  if (l->set && cmp_number(val, l->is_int, l->i, l->d) >= 0)
    return limit_rule(v, p, report, "must be less than ", l);
  return VALID;
}

static int check_string(vctx_t *v, const node_t *n, const json_t *val,
                        const path_t *p, bool report) {
  const char *s = json_string_value(val);
  size_t len = json_string_length(val);
  if (n->min_length > 0 || n->max_length != SIZE_MAX) {
    size_t chars = 0; /* code points: bytes that do not continue one */
    for (size_t i = 0; i < len; i++)
      chars += ((unsigned char)s[i] & 0xC0) != 0x80;
    if (chars < n->min_length)
      return count_rule(v, p, report, "must be at least ", n->min_length,
                        n->min_length == 1 ? " character long"
                                           : " characters long");
    if (chars > n->max_length)
      return count_rule(v, p, report, "must be at most ", n->max_length,
                        n->max_length == 1 ? " character long"
                                           : " characters long");
  }
  if (n->re != NULL) {
    /* REG_STARTEND: the whole string, embedded NULs included. Without it a
     * NUL would end the string early, so such a string fails closed. */
#ifdef REG_STARTEND
    regmatch_t m[1];
    m[0].rm_so = 0;
    m[0].rm_eo = (regoff_t)len;
    bool match = (size_t)m[0].rm_eo == len &&
                 regexec(n->re, s, 1, m, REG_STARTEND) == 0;
#else
    bool match = strlen(s) == len && regexec(n->re, s, 0, NULL, 0) == 0;
#endif
    if (!match) {
      sink_t *o = vmsg(v, p, report);
      if (o != NULL) {
        sink_str(o, "must match the pattern '");
        sink_escaped(o, n->pattern, strlen(n->pattern), 0); /* as written */
        sink_str(o, "'");
        sink_end(o);
      }
      return INVALID;
    }
  }
  return VALID;
}

static int check_array(vctx_t *v, const node_t *n, const json_t *val,
                       const path_t *p, int depth, bool report) {
  size_t size = json_array_size(val);
  if (size < n->min_items)
    return count_rule(v, p, report, "must have at least ", n->min_items,
                      n->min_items == 1 ? " item" : " items");
  if (size > n->max_items)
    return count_rule(v, p, report, "must have at most ", n->max_items,
                      n->max_items == 1 ? " item" : " items");
  if (n->items != NULL)
    for (size_t i = 0; i < size; i++) {
      path_t ip = {p, NULL, 0, i};
      int rc = check(v, n->items, json_array_get(val, i), &ip, depth, report);
      if (rc != VALID)
        return rc;
    }
  return VALID;
}

static bool declared(const node_t *n, const char *key, size_t len) {
  if (n->nprops == 0)
    return false;
  prop_t probe = {key, len, NULL};
  return bsearch(&probe, n->props, n->nprops, sizeof(*n->props), prop_cmp) !=
         NULL;
}

static int check_object(vctx_t *v, const node_t *n, const json_t *val,
                        const path_t *p, int depth, bool report) {
  for (size_t i = 0; i < n->nrequired; i++) {
    const prop_t *r = &n->required[i];
    if (json_object_getn(val, r->name, r->len) == NULL) {
      path_t kp = {p, r->name, r->len, 0};
      return invalid(v, &kp, report, "required property missing", NULL);
    }
  }
  for (size_t i = 0; i < n->nprops; i++) {
    const prop_t *pr = &n->props[i];
    const json_t *child = json_object_getn(val, pr->name, pr->len);
    if (child == NULL)
      continue;
    path_t kp = {p, pr->name, pr->len, 0};
    int rc = check(v, pr->schema, child, &kp, depth, report);
    if (rc != VALID)
      return rc;
  }
  if (n->additional == NULL)
    return VALID;
  for (void *it = json_object_iter((json_t *)val); it != NULL;
       it = json_object_iter_next((json_t *)val, it)) {
    const char *key = json_object_iter_key(it);
    size_t len = json_object_iter_key_len(it);
    if (declared(n, key, len))
      continue;
    path_t kp = {p, key, len, 0};
    if (n->additional->never)
      return invalid(v, &kp, report, "additional property not allowed", NULL);
    int rc = check(v, n->additional, json_object_iter_value(it), &kp, depth,
                   report);
    if (rc != VALID)
      return rc;
  }
  return VALID;
}

static int check(vctx_t *v, const node_t *n, const json_t *val,
                 const path_t *p, int depth, bool report) {
  int rc;
  if (++depth > SCHEMA_MAX_DEPTH) {
    /* reported even inside anyOf/oneOf: it ends the whole validation */
    if (v->o.cap > 0) {
      char rule[64];
      snprintf(rule, sizeof(rule),
               "nested too deeply (more than %d schema levels)",
               SCHEMA_MAX_DEPTH);
      invalid(v, p, true, rule, NULL);
    }
    return TOO_DEEP;
  }
  if (n->never)
    return invalid(v, p, report, "no value is allowed here", NULL);
  if (n->types != 0 && (value_types(val) & n->types) == 0)
    return invalid_type(v, p, report, n->types);
  if (n->const_value != NULL && !values_equal(val, n->const_value))
    return invalid(v, p, report, "must be equal to ", n->const_text);
  if (n->enum_values != NULL) {
    size_t i, size = json_array_size(n->enum_values);
    for (i = 0; i < size; i++)
      if (values_equal(val, json_array_get(n->enum_values, i)))
        break;
    if (i == size)
      return invalid(v, p, report, "must be one of ", n->enum_text);
  }
  switch (json_typeof(val)) {
  case JSON_INTEGER:
  case JSON_REAL:
    rc = check_number(v, n, val, p, report);
    break;
  case JSON_STRING:
    rc = check_string(v, n, val, p, report);
    break;
  case JSON_ARRAY:
    rc = check_array(v, n, val, p, depth, report);
    break;
  case JSON_OBJECT:
    rc = check_object(v, n, val, p, depth, report);
    break;
  default:
    rc = VALID;
    break;
  }
  if (rc != VALID)
    return rc;
  for (size_t i = 0; i < n->nall_of; i++)
    if ((rc = check(v, n->all_of[i], val, p, depth, report)) != VALID)
      return rc;
  if (n->nany_of > 0) {
    bool any = false;
    for (size_t i = 0; i < n->nany_of && !any; i++) {
      rc = check(v, n->any_of[i], val, p, depth, false);
      if (rc != VALID && rc != INVALID)
        return rc;
      any = rc == VALID;
    }
    if (!any)
      return invalid(v, p, report, "must match at least one schema in anyOf",
                     NULL);
  }
  if (n->none_of > 0) {
    size_t matched = 0;
    for (size_t i = 0; i < n->none_of; i++) {
      rc = check(v, n->one_of[i], val, p, depth, false);
      if (rc != VALID && rc != INVALID)
        return rc;
      matched += rc == VALID;
    }
    if (matched != 1)
      return count_rule(v, p, report,
                        "must match exactly one schema in oneOf (matched ",
                        matched, ")");
  }
  if (n->ref != NULL)
    return check(v, n->ref, val, p, depth, report);
  return VALID;
}

int toolcall__schema_validate(const toolcall__schema_t *s, const json_t *value,
                              char *msg, size_t msglen) {
  vctx_t v = {{msg, msg != NULL ? msglen : 0, 0}};
  if (v.o.cap > 0)
    msg[0] = '\0';
  if (s == NULL || value == NULL) {
    sink_str(&v.o, "no schema or no value");
    sink_end(&v.o);
    return UV_EINVAL;
  }
  int rc = check(&v, s->root, value, NULL, 0, true);
  return rc == VALID ? 0 : rc < 0 ? rc : 1;
}
