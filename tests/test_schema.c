/* Schema validation: each keyword passing and failing with its message,
 * paths, $ref, what compiling refuses, hostile values, truncated messages,
 * allocation failures and concurrent validation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/internal.h"
#include "../src/schema.h"

/* ---- helpers ------------------------------------------------------------ */

static toolcall__schema_t *compile_ok(const char *text) {
  toolcall__schema_t *s = NULL;
  char msg[256] = "unchanged";
  int rc = toolcall__schema_compile(text, strlen(text), &s, msg, sizeof(msg));
  if (rc != 0)
    fail_msg("compile %s: %s (%s)", text, toolcall_err_name(rc), msg);
  assert_non_null(s);
  return s;
}

/* Compiling must fail with UV_EINVAL and exactly this message (or, with a
 * trailing '*', a message starting with it). */
static void compile_refused(const char *text, const char *expected) {
  toolcall__schema_t *s = (toolcall__schema_t *)&s; /* must stay untouched */
  toolcall__schema_t *const before = s;
  char msg[256];
  memset(msg, 'x', sizeof(msg));
  int rc = toolcall__schema_compile(text, strlen(text), &s, msg, sizeof(msg));
  if (rc != UV_EINVAL)
    fail_msg("compile %s: got %d, expected UV_EINVAL", text, rc);
  assert_ptr_equal(s, before);
  assert_true(toolcall__utf8_valid(msg, strlen(msg)));
  size_t n = strlen(expected);
  if (n > 0 && expected[n - 1] == '*') {
    if (strncmp(msg, expected, n - 1) != 0)
      fail_msg("compile %s: message '%s', expected '%s'", text, msg, expected);
  } else if (strcmp(msg, expected) != 0) {
    fail_msg("compile %s: message '%s', expected '%s'", text, msg, expected);
  }
}

/* Validate the JSON text value: expected NULL means valid, otherwise
 * invalid with exactly that message. */
static void expect(const toolcall__schema_t *s, const char *value,
                   const char *expected) {
  json_error_t jerr;
  json_t *v = json_loads(value, JSON_DECODE_ANY, &jerr);
  if (v == NULL)
    fail_msg("test value %s: %s", value, jerr.text);
  char msg[256] = "unchanged";
  int rc = toolcall__schema_validate(s, v, msg, sizeof(msg));
  json_decref(v);
  if (expected == NULL) {
    if (rc != 0)
      fail_msg("%s: expected valid, got %d (%s)", value, rc, msg);
    assert_string_equal(msg, "");
    return;
  }
  if (rc != 1)
    fail_msg("%s: expected invalid '%s', got %d", value, expected, rc);
  if (strcmp(msg, expected) != 0)
    fail_msg("%s: message '%s', expected '%s'", value, msg, expected);
}

/* One schema, a list of (value, expected message or NULL). */
typedef struct {
  const char *value;
  const char *message;
} case_t;

static void run_cases(const char *schema, const case_t *cases, size_t n) {
  toolcall__schema_t *s = compile_ok(schema);
  for (size_t i = 0; i < n; i++)
    expect(s, cases[i].value, cases[i].message);
  toolcall__schema_free(s);
}

#define RUN(schema, ...)                                                       \
  do {                                                                         \
    static const case_t cases_[] = {__VA_ARGS__};                              \
    run_cases(schema, cases_, sizeof(cases_) / sizeof(cases_[0]));             \
  } while (0)

/* ---- keywords ----------------------------------------------------------- */

static void test_schema_type(void **state) {
  (void)state;
  RUN("{\"type\": \"string\"}",
      {"\"hi\"", NULL},
      {"1", "$: must be a string"},
      {"null", "$: must be a string"});
  RUN("{\"type\": \"object\"}",
      {"{}", NULL},
      {"[]", "$: must be an object"});
  RUN("{\"type\": \"array\"}",
      {"[1]", NULL},
      {"{}", "$: must be an array"});
  RUN("{\"type\": \"boolean\"}",
      {"false", NULL},
      {"0", "$: must be a boolean"});
  RUN("{\"type\": \"null\"}",
      {"null", NULL},
      {"false", "$: must be null"});
  RUN("{\"type\": \"number\"}",
      {"3.5", NULL},
      {"7", NULL},
      {"\"7\"", "$: must be a number"});
}

static void test_schema_type_integer(void **state) {
  (void)state;
  RUN("{\"type\": \"integer\"}",
      {"3", NULL},
      {"3.0", NULL},
      {"-0.0", NULL},
      {"1e300", NULL},
      {"3.5", "$: must be an integer"},
      {"-0.25", "$: must be an integer"},
      {"\"3\"", "$: must be an integer"});
}

static void test_schema_type_multiple(void **state) {
  (void)state;
  RUN("{\"type\": [\"string\", \"null\"]}",
      {"\"x\"", NULL},
      {"null", NULL},
      {"1", "$: must be a string or null"},
      {"{}", "$: must be a string or null"});
  RUN("{\"type\": [\"integer\", \"boolean\", \"array\"]}",
      {"true", NULL},
      {"[]", NULL},
      {"2", NULL},
      {"2.5", "$: must be an integer, a boolean or an array"});
}

static void test_schema_properties_nested_path(void **state) {
  (void)state;
  RUN("{\"type\": \"object\", \"properties\": {"
      "  \"name\": {\"type\": \"string\"},"
      "  \"address\": {\"type\": \"object\", \"properties\": {"
      "    \"city\": {\"type\": \"string\"}}}}}",
      {"{\"name\": \"a\", \"address\": {\"city\": \"Oslo\"}}", NULL},
      {"{\"other\": 1}", NULL}, /* undeclared and unrequired: fine */
      {"{\"name\": 1}", "$.name: must be a string"},
      {"{\"address\": {\"city\": 5}}", "$.address.city: must be a string"},
      {"{\"address\": []}", "$.address: must be an object"},
      {"[]", "$: must be an object"});
}

static void test_schema_path_quoting(void **state) {
  (void)state;
  RUN("{\"properties\": {"
      "  \"first name\": {\"type\": \"string\"},"
      "  \"a\\\"b\": {\"type\": \"string\"},"
      "  \"caf\\u00e9\": {\"type\": \"string\"},"
      "  \"\": {\"type\": \"string\"},"
      "  \"snake_case9\": {\"type\": \"string\"}}}",
      {"{\"first name\": 1}", "$[\"first name\"]: must be a string"},
      {"{\"a\\\"b\": 1}", "$[\"a\\\"b\"]: must be a string"},
      {"{\"caf\\u00e9\": 1}", "$[\"caf\xc3\xa9\"]: must be a string"},
      {"{\"\": 1}", "$[\"\"]: must be a string"},
      {"{\"snake_case9\": 1}", "$.snake_case9: must be a string"});
}

static void test_schema_required(void **state) {
  (void)state;
  RUN("{\"type\": \"object\", \"required\": [\"name\", \"city\"]}",
      {"{\"name\": 1, \"city\": null}", NULL},
      {"{\"name\": 1}", "$.city: required property missing"},
      {"{}", "$.name: required property missing"},
      {"5", "$: must be an object"});
  /* required on something that is not an object does not apply */
  RUN("{\"required\": [\"x\"]}", {"5", NULL}, {"{}", "$.x: required property missing"});
}

static void test_schema_additional_properties(void **state) {
  (void)state;
  RUN("{\"properties\": {\"a\": {}}, \"additionalProperties\": false}",
      {"{\"a\": 1}", NULL},
      {"{}", NULL},
      {"{\"a\": 1, \"b\": 2}", "$.b: additional property not allowed"});
  RUN("{\"properties\": {\"a\": {}}, \"additionalProperties\": "
      "{\"type\": \"integer\"}}",
      {"{\"a\": \"s\", \"b\": 2, \"c\": 3}", NULL},
      {"{\"a\": 1, \"b\": \"x\"}", "$.b: must be an integer"});
  RUN("{\"additionalProperties\": true}", {"{\"z\": 1}", NULL});
  /* without properties every property is additional */
  RUN("{\"additionalProperties\": false}",
      {"{}", NULL},
      {"{\"z\": 1}", "$.z: additional property not allowed"});
}

static void test_schema_enum(void **state) {
  (void)state;
  RUN("{\"enum\": [\"red\", \"green\", 3]}",
      {"\"red\"", NULL},
      {"3", NULL},
      {"3.0", NULL}, /* the same number */
      {"\"blue\"", "$: must be one of [\"red\",\"green\",3]"},
      {"\"Red\"", "$: must be one of [\"red\",\"green\",3]"},
      {"null", "$: must be one of [\"red\",\"green\",3]"});
}

static void test_schema_enum_objects(void **state) {
  (void)state;
  RUN("{\"enum\": [{\"a\": 1}, {\"b\": [1, {\"c\": null}]}, [true]]}",
      {"{\"a\": 1}", NULL},
      {"{\"a\": 1.0}", NULL},
      {"{\"b\": [1, {\"c\": null}]}", NULL},
      {"[true]", NULL},
      {"{\"a\": 1, \"x\": 0}",
       "$: must be one of [{\"a\":1},{\"b\":[1,{\"c\":null}]},[true]]"},
      {"{\"b\": [{\"c\": null}, 1]}",
       "$: must be one of [{\"a\":1},{\"b\":[1,{\"c\":null}]},[true]]"},
      {"[false]",
       "$: must be one of [{\"a\":1},{\"b\":[1,{\"c\":null}]},[true]]"},
      {"{}", "$: must be one of [{\"a\":1},{\"b\":[1,{\"c\":null}]},[true]]"});
}

static void test_schema_const(void **state) {
  (void)state;
  RUN("{\"const\": \"x\"}",
      {"\"x\"", NULL},
      {"\"y\"", "$: must be equal to \"x\""},
      {"[\"x\"]", "$: must be equal to \"x\""});
  RUN("{\"properties\": {\"v\": {\"const\": {\"k\": [1, 2]}}}}",
      {"{\"v\": {\"k\": [1, 2.0]}}", NULL},
      {"{\"v\": {\"k\": [2, 1]}}", "$.v: must be equal to {\"k\":[1,2]}"});
  RUN("{\"const\": null}", {"null", NULL}, {"0", "$: must be equal to null"});
}

static void test_schema_minimum_maximum(void **state) {
  (void)state;
  RUN("{\"minimum\": 0, \"maximum\": 10}",
      {"0", NULL},
      {"10", NULL},
      {"10.0", NULL},
      {"5.5", NULL},
      {"\"not a number\"", NULL}, /* numeric keywords skip other types */
      {"-1", "$: must be at least 0"},
      {"-0.001", "$: must be at least 0"},
      {"11", "$: must be at most 10"},
      {"10.000001", "$: must be at most 10"});
  RUN("{\"minimum\": 1.5, \"maximum\": 2.25}",
      {"2", NULL},
      {"1", "$: must be at least 1.5"},
      {"3", "$: must be at most 2.25"});
  /* integers beyond 2^53 compare exactly, not through doubles */
  RUN("{\"maximum\": 9007199254740993}",
      {"9007199254740993", NULL},
      {"9007199254740994", "$: must be at most 9007199254740993"});
  RUN("{\"maximum\": 9007199254740992.0}",
      {"9007199254740992", NULL},
      {"9007199254740993", "$: must be at most 9007199254740992"});
}

static void test_schema_exclusive(void **state) {
  (void)state;
  RUN("{\"exclusiveMinimum\": 0, \"exclusiveMaximum\": 1.5}",
      {"0.5", NULL},
      {"1", NULL},
      {"1.4999", NULL},
      {"0", "$: must be greater than 0"},
      {"-3", "$: must be greater than 0"},
      {"1.5", "$: must be less than 1.5"},
      {"2", "$: must be less than 1.5"});
}

static void test_schema_length_unicode(void **state) {
  (void)state;
  /* "héllo" is 5 code points, 6 bytes; U+1F600 is one code point, 4 bytes */
  RUN("{\"minLength\": 2, \"maxLength\": 5}",
      {"\"h\\u00e9llo\"", NULL},
      {"\"\\ud83d\\ude00\\ud83d\\ude00\"", NULL},
      {"\"ab\"", NULL},
      {"7", NULL},
      {"\"h\\u00e9llo!\"", "$: must be at most 5 characters long"},
      {"\"\\ud83d\\ude00\"", "$: must be at least 2 characters long"},
      {"\"\"", "$: must be at least 2 characters long"});
  RUN("{\"minLength\": 6}",
      {"\"h\\u00e9llo\"", "$: must be at least 6 characters long"});
  RUN("{\"maxLength\": 1}",
      {"\"\\u00e9\"", NULL},
      {"\"ab\"", "$: must be at most 1 character long"});
}

static void test_schema_pattern(void **state) {
  (void)state;
  RUN("{\"pattern\": \"^[a-z]+$\"}",
      {"\"abc\"", NULL},
      {"1", NULL},
      {"\"abC\"", "$: must match the pattern '^[a-z]+$'"},
      {"\"\"", "$: must match the pattern '^[a-z]+$'"});
  /* unanchored: a match anywhere will do */
  RUN("{\"pattern\": \"b+\"}",
      {"\"abbc\"", NULL},
      {"\"ac\"", "$: must match the pattern 'b+'"});
}

/* The ECMA-262 forms schemas use, translated to POSIX. */
static void test_schema_pattern_ecma(void **state) {
  (void)state;
  RUN("{\"pattern\": \"^\\\\d{4}-\\\\d{2}-\\\\d{2}$\"}",
      {"\"2024-01-31\"", NULL},
      {"\"2024-1-31\"", "$: must match the pattern '^\\d{4}-\\d{2}-\\d{2}$'"},
      {"\"dddd-dd-dd\"", "$: must match the pattern '^\\d{4}-\\d{2}-\\d{2}$'"});
  RUN("{\"pattern\": \"^[\\\\w.+-]+@[\\\\w-]+\\\\.[a-z]{2,}$\"}",
      {"\"a.b+c@d-e.org\"", NULL},
      {"\"a\\\\b@d.org\"", "$: must match the pattern '^[\\w.+-]+@[\\w-]+\\.[a-z]{2,}$'"},
      {"\"a@dxorg\"", "$: must match the pattern '^[\\w.+-]+@[\\w-]+\\.[a-z]{2,}$'"});
  RUN("{\"pattern\": \"^\\\\S+\\\\s\\\\W$\"}",
      {"\"ab\\t!\"", NULL},
      {"\"ab x\"", "$: must match the pattern '^\\S+\\s\\W$'"});
  RUN("{\"pattern\": \"^(?:ab)+[\\\\]^-]$\"}",
      {"\"abab]\"", NULL},
      {"\"ab^\"", NULL},
      {"\"ab-\"", NULL},
      {"\"ab\\\\\"", "$: must match the pattern '^(?:ab)+[\\]^-]$'"});
  RUN("{\"pattern\": \"^\\u00e9+{$\"}",
      {"\"\\u00e9\\u00e9{\"", NULL},
      {"\"\\u00e9\\u00a9{\"", "$: must match the pattern '^\xc3\xa9+{$'"});
  RUN("{\"pattern\": \"^[^\\\\d]$\"}", {"\"a\"", NULL},
      {"\"5\"", "$: must match the pattern '^[^\\d]$'"});
  RUN("{\"pattern\": \"^[[:upper:]]\\\\/\\\\.$\"}", {"\"A/.\"", NULL},
      {"\"a/.\"", "$: must match the pattern '^[[:upper:]]\\/\\.$'"});
}

/* A string with an embedded NUL must not pass a pattern on its prefix. */
static void test_schema_pattern_embedded_nul(void **state) {
  (void)state;
  toolcall__schema_t *s = compile_ok("{\"pattern\": \"^[a-z]+$\"}");
  json_t *v = json_stringn("abc\0;rm -rf", 11);
  assert_non_null(v);
  char msg[128];
  assert_int_equal(toolcall__schema_validate(s, v, msg, sizeof(msg)), 1);
  assert_string_equal(msg, "$: must match the pattern '^[a-z]+$'");
  json_decref(v);
  v = json_stringn("abc", 3);
  assert_int_equal(toolcall__schema_validate(s, v, msg, sizeof(msg)), 0);
  json_decref(v);
  toolcall__schema_free(s);
}

static void test_schema_items_index_path(void **state) {
  (void)state;
  RUN("{\"items\": {\"type\": \"integer\", \"maximum\": 10}}",
      {"[]", NULL},
      {"[1, 2, 10]", NULL},
      {"{}", NULL},
      {"[1, 2, 11]", "$[2]: must be at most 10"},
      {"[\"a\"]", "$[0]: must be an integer"});
  RUN("{\"properties\": {\"items\": {\"items\": {\"maximum\": 10}},"
      " \"m\": {\"items\": {\"items\": {\"required\": [\"id\"]}}}}}",
      {"{\"items\": [1, 2, 11]}", "$.items[2]: must be at most 10"},
      {"{\"m\": [[], [{\"id\": 1}, {}]]}", "$.m[1][1].id: required property missing"});
}

static void test_schema_min_max_items(void **state) {
  (void)state;
  RUN("{\"minItems\": 1, \"maxItems\": 3}",
      {"[1]", NULL},
      {"[1, 2, 3]", NULL},
      {"\"abcd\"", NULL},
      {"[]", "$: must have at least 1 item"},
      {"[1, 2, 3, 4]", "$: must have at most 3 items"});
  RUN("{\"minItems\": 2.0}", {"[1, 2]", NULL},
      {"[1]", "$: must have at least 2 items"});
}

static void test_schema_all_of(void **state) {
  (void)state;
  RUN("{\"allOf\": [{\"type\": \"integer\"}, {\"minimum\": 2}, {\"maximum\": 4}]}",
      {"3", NULL},
      {"\"3\"", "$: must be an integer"},
      {"1", "$: must be at least 2"},
      {"5", "$: must be at most 4"});
}

static void test_schema_any_of(void **state) {
  (void)state;
  RUN("{\"properties\": {\"x\": {\"anyOf\": [{\"type\": \"string\"},"
      " {\"type\": \"integer\", \"minimum\": 0}]}}}",
      {"{\"x\": \"s\"}", NULL},
      {"{\"x\": 4}", NULL},
      {"{\"x\": -1}", "$.x: must match at least one schema in anyOf"},
      {"{\"x\": null}", "$.x: must match at least one schema in anyOf"});
}

static void test_schema_one_of(void **state) {
  (void)state;
  RUN("{\"properties\": {\"x\": {\"oneOf\": [{\"type\": \"integer\"},"
      " {\"minimum\": 2}, {\"maximum\": 3}]}}}",
      {"{\"x\": 1.5}", NULL}, /* maximum only */
      {"{\"x\": \"s\"}", "$.x: must match exactly one schema in oneOf (matched 2)"},
      {"{\"x\": 2.5}", "$.x: must match exactly one schema in oneOf (matched 2)"},
      {"{\"x\": 3}", "$.x: must match exactly one schema in oneOf (matched 3)"});
  RUN("{\"oneOf\": [{\"type\": \"string\"}, {\"type\": \"null\"}]}",
      {"null", NULL},
      {"1", "$: must match exactly one schema in oneOf (matched 0)"});
}

/* A tree: each node has a value and children that are trees. */
static void test_schema_ref_recursive(void **state) {
  (void)state;
  RUN("{\"$ref\": \"#/$defs/node\", \"$defs\": {\"node\": {"
      "  \"type\": \"object\", \"required\": [\"value\"],"
      "  \"additionalProperties\": false, \"properties\": {"
      "    \"value\": {\"type\": \"integer\"},"
      "    \"children\": {\"type\": \"array\", "
      "                   \"items\": {\"$ref\": \"#/$defs/node\"}}}}}}",
      {"{\"value\": 1}", NULL},
      {"{\"value\": 1, \"children\": [{\"value\": 2, \"children\": []},"
       " {\"value\": 3, \"children\": [{\"value\": 4}]}]}", NULL},
      {"{\"value\": 1, \"children\": [{\"value\": 2},"
       " {\"value\": 3, \"children\": [{\"value\": \"4\"}]}]}",
       "$.children[1].children[0].value: must be an integer"},
      {"{\"value\": 1, \"children\": [{\"value\": 2, \"x\": 0}]}",
       "$.children[0].x: additional property not allowed"},
      {"{\"children\": []}", "$.value: required property missing"});
  /* "#" and draft-7 "definitions" */
  RUN("{\"type\": [\"array\", \"integer\"], \"items\": {\"$ref\": \"#\"}}",
      {"[1, [2, [3]]]", NULL},
      {"[1, [2, [\"3\"]]]", "$[1][1][0]: must be an integer or an array"});
  RUN("{\"properties\": {\"a\": {\"$ref\": \"#/definitions/pos\"},"
      " \"b\": {\"$ref\": \"#/$defs/a~1b%20c\"}},"
      " \"definitions\": {\"pos\": {\"exclusiveMinimum\": 0}},"
      " \"$defs\": {\"a/b c\": {\"type\": \"string\"}}}",
      {"{\"a\": 1, \"b\": \"s\"}", NULL},
      {"{\"a\": 0}", "$.a: must be greater than 0"},
      {"{\"b\": 0}", "$.b: must be a string"});
}

static void test_schema_ref_cycle_refused(void **state) {
  (void)state;
  compile_refused("{\"$ref\": \"#/$defs/a\", \"$defs\": {"
                  "\"a\": {\"$ref\": \"#/$defs/b\"},"
                  "\"b\": {\"$ref\": \"#/$defs/a\"}}}",
                  "schema: $ref '#/$defs/*");
  compile_refused("{\"$defs\": {\"a\": {\"$ref\": \"#/$defs/a\"}}}",
                  "schema: $ref '#/$defs/a' leads back to itself without "
                  "descending into the value (infinite recursion)");
  compile_refused("{\"allOf\": [{\"type\": \"object\"}, {\"$ref\": \"#\"}]}",
                  "schema: $ref '#' leads back to itself without descending "
                  "into the value (infinite recursion)");
  compile_refused("{\"$defs\": {\"a\": {\"anyOf\": [{\"type\": \"string\"},"
                  " {\"oneOf\": [{\"$ref\": \"#/$defs/a\"}]}]}}}",
                  "schema: $ref '#/$defs/a' leads back*");
}

/* A long chain of $refs compiles without deep recursion in the checks. */
static void test_schema_ref_long_chain(void **state) {
  (void)state;
  enum { N = 3000 };
  size_t cap = (size_t)N * 48 + 128;
  char *text = malloc(cap);
  assert_non_null(text);
  size_t len = (size_t)snprintf(text, cap, "{\"$ref\": \"#/$defs/d0\", \"$defs\": {");
  for (int i = 0; i < N - 1; i++)
    len += (size_t)snprintf(text + len, cap - len,
                            "\"d%d\": {\"$ref\": \"#/$defs/d%d\"},", i, i + 1);
  len += (size_t)snprintf(text + len, cap - len,
                          "\"d%d\": {\"type\": \"string\"}}}", N - 1);
  toolcall__schema_t *s = compile_ok(text);
  /* each hop is a schema application: the depth guard ends it */
  json_t *v = json_string("x");
  char msg[128];
  assert_int_equal(toolcall__schema_validate(s, v, msg, sizeof(msg)), 1);
  assert_string_equal(msg, "$: nested too deeply (more than 256 schema levels)");
  json_decref(v);
  toolcall__schema_free(s);
  /* and the same chain closed into a loop is refused */
  char *end = strstr(text, "{\"type\": \"string\"}");
  assert_non_null(end);
  memcpy(end, "{\"$ref\": \"#/$defs/d0\"}}}", 25);
  compile_refused(text, "schema: $ref '#/$defs/d*");
  free(text);
}

static void test_schema_boolean_schemas(void **state) {
  (void)state;
  RUN("true", {"1", NULL}, {"{\"a\": [null]}", NULL});
  RUN("false", {"1", "$: no value is allowed here"},
      {"{}", "$: no value is allowed here"});
  RUN("{\"properties\": {\"x\": false, \"y\": true}, \"items\": false}",
      {"{\"y\": 1}", NULL},
      {"[]", NULL},
      {"{\"x\": 1}", "$.x: no value is allowed here"},
      {"[0]", "$[0]: no value is allowed here"});
  RUN("{\"anyOf\": [false, true]}", {"1", NULL});
  RUN("{\"allOf\": [true, false]}", {"1", "$: no value is allowed here"});
}

static void test_schema_annotations_ignored(void **state) {
  (void)state;
  RUN("{\"$schema\": \"https://json-schema.org/draft/2020-12/schema\","
      " \"$id\": \"urn:x\", \"$comment\": \"c\", \"title\": \"t\","
      " \"description\": \"d\", \"default\": 5, \"examples\": [1],"
      " \"format\": \"email\", \"deprecated\": true, \"readOnly\": false,"
      " \"writeOnly\": false, \"type\": \"integer\"}",
      {"5", NULL},
      {"\"not-an-email\"", "$: must be an integer"});
}

/* ---- compile-time refusals --------------------------------------------- */

static void test_schema_refuse_invalid_json(void **state) {
  (void)state;
  compile_refused("{\"type\": ", "schema: invalid JSON at line 1*");
  compile_refused("", "schema: invalid JSON at line*");
  compile_refused("{\"type\": \"string\", \"type\": \"null\"}",
                  "schema: invalid JSON at line 1*"); /* duplicate key */
  /* not NUL-terminated: only len bytes count */
  toolcall__schema_t *s = NULL;
  char msg[128];
  const char text[] = "{\"type\": \"string\"}garbage";
  assert_int_equal(toolcall__schema_compile(text, 18, &s, msg, sizeof(msg)), 0);
  assert_non_null(s);
  toolcall__schema_free(s);
  assert_int_equal(toolcall__schema_compile(text, sizeof(text) - 1, &s, msg,
                                            sizeof(msg)),
                   UV_EINVAL);
  assert_non_null(strstr(msg, "invalid JSON"));
}

static void test_schema_refuse_unknown_keyword(void **state) {
  (void)state;
  compile_refused("{\"if\": {}, \"then\": {}}",
                  "schema: $: unsupported keyword 'if'");
  compile_refused("{\"properties\": {\"age\": {\"type\": \"integer\","
                  " \"multipleOf\": 2}}}",
                  "schema: $.properties.age: unsupported keyword 'multipleOf'");
  compile_refused("{\"items\": {\"it's\\n\": 1}}",
                  "schema: $.items: unsupported keyword 'it\\'s\\u000a'");
  /* names under properties and $defs are names, not keywords */
  RUN("{\"properties\": {\"if\": {}, \"pattern\": {\"type\": \"string\"}},"
      " \"$defs\": {\"not\": {}}}",
      {"{\"if\": 1, \"pattern\": \"p\"}", NULL},
      {"{\"pattern\": 1}", "$.pattern: must be a string"});
  compile_refused("[]", "schema: $: must be a schema (an object or a boolean)");
  compile_refused("{\"items\": 3}",
                  "schema: $.items: must be a schema (an object or a boolean)");
}

static void test_schema_refuse_bad_values(void **state) {
  (void)state;
  compile_refused("{\"properties\": {\"age\": {\"minimum\": \"x\"}}}",
                  "schema: $.properties.age.minimum: must be a number");
  compile_refused("{\"required\": 3}",
                  "schema: $.required: must be an array of property names");
  compile_refused("{\"required\": [\"a\", 3]}",
                  "schema: $.required[1]: must be a string");
  compile_refused("{\"type\": \"text\"}", "schema: $.type: unknown type 'text'");
  compile_refused("{\"type\": []}",
                  "schema: $.type: must be a type name or a non-empty array "
                  "of type names");
  compile_refused("{\"type\": [\"string\", 1]}",
                  "schema: $.type[1]: must be a type name or a non-empty "
                  "array of type names");
  compile_refused("{\"properties\": []}",
                  "schema: $.properties: must be an object of schemas");
  compile_refused("{\"enum\": \"a\"}", "schema: $.enum: must be an array");
  compile_refused("{\"exclusiveMinimum\": true}",
                  "schema: $.exclusiveMinimum: must be a number (the draft-4 "
                  "boolean form is not supported; give the limit itself)");
  compile_refused("{\"maxLength\": -1}",
                  "schema: $.maxLength: must be a non-negative integer");
  compile_refused("{\"minItems\": 1.5}",
                  "schema: $.minItems: must be a non-negative integer");
  compile_refused("{\"anyOf\": []}",
                  "schema: $.anyOf: must be a non-empty array of schemas");
  compile_refused("{\"oneOf\": [{}, 7]}",
                  "schema: $.oneOf[1]: must be a schema (an object or a "
                  "boolean)");
  compile_refused("{\"items\": [{}, {}]}",
                  "schema: $.items: must be a schema (the array form of items "
                  "is not supported)");
  compile_refused("{\"$defs\": {\"a b\": {\"minimum\": null}}}",
                  "schema: $[\"$defs\"][\"a b\"].minimum: must be a number");
  compile_refused("{\"additionalProperties\": 0}",
                  "schema: $.additionalProperties: must be a schema (an "
                  "object or a boolean)");
}

static void test_schema_refuse_bad_pattern(void **state) {
  (void)state;
  compile_refused("{\"pattern\": \"(\"}",
                  "schema: $.pattern: invalid regular expression: *");
  compile_refused("{\"properties\": {\"p\": {\"pattern\": \"a[\"}}}",
                  "schema: $.properties.p.pattern: unterminated character "
                  "class");
  compile_refused("{\"pattern\": \"\\\\bword\"}",
                  "schema: $.pattern: unsupported escape*");
  compile_refused("{\"pattern\": \"(a)\\\\1\"}",
                  "schema: $.pattern: unsupported escape*");
  compile_refused("{\"pattern\": \"a(?=b)\"}",
                  "schema: $.pattern: lookaround, named groups and inline "
                  "flags '(?' are not supported");
  compile_refused("{\"pattern\": \"[\\u00e9]\"}",
                  "schema: $.pattern: non-ASCII characters inside [...] are "
                  "not supported");
  compile_refused("{\"pattern\": \"[z-a]\"}",
                  "schema: $.pattern: invalid range in character class");
  compile_refused("{\"pattern\": \"[]\"}",
                  "schema: $.pattern: empty character class");
  compile_refused("{\"pattern\": 5}", "schema: $.pattern: must be a string");
}

static void test_schema_refuse_bad_ref(void **state) {
  (void)state;
  compile_refused("{\"$ref\": \"#/$defs/missing\", \"$defs\": {\"x\": {}}}",
                  "schema: $[\"$ref\"]: no definition '#/$defs/missing' in "
                  "the schema");
  compile_refused("{\"properties\": {\"a\": {\"$ref\": \"#/$defs/x\"}}}",
                  "schema: $.properties.a[\"$ref\"]: no definition "
                  "'#/$defs/x' in the schema");
  compile_refused("{\"$ref\": \"https://example.com/s.json\"}",
                  "schema: $[\"$ref\"]: only local references '#', "
                  "'#/$defs/NAME' and '#/definitions/NAME' are supported");
  compile_refused("{\"$ref\": \"#/properties/a\", \"properties\": {\"a\": {}}}",
                  "schema: $[\"$ref\"]: only local references*");
  compile_refused("{\"$ref\": \"#/$defs/a/properties/b\", \"$defs\": {\"a\": "
                  "{\"properties\": {\"b\": {}}}}}",
                  "schema: $[\"$ref\"]: only local references*");
  compile_refused("{\"$ref\": 1}", "schema: $[\"$ref\"]: must be a string");
  /* only the root's definitions can be referenced, even when a nested
   * $defs has the same name */
  RUN("{\"properties\": {\"a\": {\"$defs\": {\"x\": {\"type\": \"integer\"}}},"
      " \"b\": {\"$ref\": \"#/$defs/x\"}},"
      " \"$defs\": {\"x\": {\"type\": \"string\"}}}",
      {"{\"b\": \"s\"}", NULL},
      {"{\"b\": 1}", "$.b: must be a string"});
  compile_refused("{\"properties\": {\"a\": {\"$defs\": {\"x\": {}},"
                  " \"$ref\": \"#/$defs/x\"}}}",
                  "schema: $.properties.a[\"$ref\"]: no definition*");
}

static void test_schema_refuse_deep_schema(void **state) {
  (void)state;
  enum { N = 600 };
  char *text = malloc(N * 12 + 16);
  assert_non_null(text);
  size_t len = 0;
  for (int i = 0; i < N; i++)
    len += (size_t)sprintf(text + len, "{\"items\": ");
  len += (size_t)sprintf(text + len, "true");
  for (int i = 0; i < N; i++)
    text[len++] = '}';
  text[len] = '\0';
  toolcall__schema_t *s = NULL;
  char msg[8192];
  assert_int_equal(toolcall__schema_compile(text, len, &s, msg, sizeof(msg)),
                   UV_EINVAL);
  assert_null(s);
  assert_non_null(strstr(msg, ": schema nested too deeply"));
  assert_true(strncmp(msg, "schema: $.items.items.", 22) == 0);
  free(text);
}

/* ---- hostile values ----------------------------------------------------- */

/* 2000 nested arrays against a schema that recurses through items: the
 * depth guard answers "invalid" without using much stack; 100 pass. */
static void test_schema_deep_value(void **state) {
  (void)state;
  toolcall__schema_t *s = compile_ok(
      "{\"$defs\": {\"t\": {\"type\": \"array\", \"items\": "
      "{\"$ref\": \"#/$defs/t\"}}}, \"$ref\": \"#/$defs/t\"}");
  char msg[2048];
  for (int depth = 100; depth <= 2000; depth += 1900) {
    json_t *root = json_array(), *cur = root;
    for (int i = 1; i < depth; i++) {
      json_t *next = json_array();
      assert_int_equal(json_array_append_new(cur, next), 0);
      cur = next;
    }
    int rc = toolcall__schema_validate(s, root, msg, sizeof(msg));
    if (depth == 100) {
      assert_int_equal(rc, 0);
    } else {
      assert_int_equal(rc, 1);
      assert_non_null(strstr(msg, ": nested too deeply (more than 256 schema levels)"));
      assert_true(strncmp(msg, "$[0][0][0]", 10) == 0);
    }
    json_decref(root);
  }
  /* the guard also ends a validation under anyOf/oneOf, not just a branch */
  toolcall__schema_free(s);
  s = compile_ok("{\"$defs\": {\"t\": {\"anyOf\": [{\"type\": \"integer\"},"
                 " {\"type\": \"array\", \"items\": {\"$ref\": \"#/$defs/t\"}}]}},"
                 " \"oneOf\": [{\"$ref\": \"#/$defs/t\"}, {\"type\": \"object\"}]}");
  json_t *root = json_array(), *cur = root;
  for (int i = 1; i < 2000; i++) {
    json_t *next = json_array();
    assert_int_equal(json_array_append_new(cur, next), 0);
    cur = next;
  }
  assert_int_equal(toolcall__schema_validate(s, root, msg, sizeof(msg)), 1);
  assert_non_null(strstr(msg, "nested too deeply"));
  json_decref(root);
  expect(s, "[1, [2, [3]]]", NULL);
  toolcall__schema_free(s);
}

/* Names and messages from values are escaped into valid UTF-8. */
static void test_schema_hostile_names(void **state) {
  (void)state;
  toolcall__schema_t *s = compile_ok("{\"additionalProperties\": false}");
  json_t *v = json_object();
  assert_int_equal(json_object_setn_nocheck(v, "a\xff\x01\0b", 5, json_null()), 0);
  char msg[128];
  assert_int_equal(toolcall__schema_validate(s, v, msg, sizeof(msg)), 1);
  assert_string_equal(msg, "$[\"a\\xFF\\u0001\\u0000b\"]: additional property not allowed");
  json_decref(v);
  toolcall__schema_free(s);
}

/* Any msglen: NUL-terminated, within bounds, cut at a UTF-8 boundary. */
static void test_schema_message_truncation(void **state) {
  (void)state;
  toolcall__schema_t *s = compile_ok(
      "{\"properties\": {\"\\u00e9\\u00e9\\u00e9 \\u20ac\": {\"required\": "
      "[\"\\u00e9t\\u00e9\"]}}}");
  json_t *v = json_loads("{\"\\u00e9\\u00e9\\u00e9 \\u20ac\": {}}", 0, NULL);
  assert_non_null(v);
  char big[256];
  assert_int_equal(toolcall__schema_validate(s, v, big, sizeof(big)), 1);
  assert_string_equal(big, "$[\"\xc3\xa9\xc3\xa9\xc3\xa9 \xe2\x82\xac\"]"
                           "[\"\xc3\xa9t\xc3\xa9\"]: required property missing");
  size_t full_len = strlen(big);
  for (size_t cap = 1; cap <= full_len + 2; cap++) {
    char buf[300];
    memset(buf, 'Z', sizeof(buf));
    assert_int_equal(toolcall__schema_validate(s, v, buf, cap), 1);
    size_t n = strlen(buf);
    assert_true(n < cap);
    assert_true(n + 4 > cap || n == full_len); /* cut at most one sequence */
    assert_int_equal(memcmp(buf, big, n), 0);
    assert_true(toolcall__utf8_valid(buf, n));
    assert_int_equal(buf[cap], 'Z'); /* nothing written past msglen */
  }
  /* no buffer at all */
  assert_int_equal(toolcall__schema_validate(s, v, NULL, 0), 1);
  json_decref(v);
  toolcall__schema_free(s);

  /* compile messages too: 22 bytes, then a 2-byte character that does not
   * fit in 23 */
  char small[24];
  toolcall__schema_t *out = NULL;
  const char *text = "{\"properties\": {\"\\u00e9\": {\"minimum\": \"x\"}}}";
  assert_int_equal(toolcall__schema_compile(text, strlen(text), &out, small,
                                            sizeof(small)),
                   UV_EINVAL);
  assert_null(out);
  assert_string_equal(small, "schema: $.properties[\"");
  char whole[64];
  assert_int_equal(toolcall__schema_compile(text, strlen(text), &out, whole,
                                            sizeof(whole)),
                   UV_EINVAL);
  assert_string_equal(whole,
                      "schema: $.properties[\"\xc3\xa9\"].minimum: must be a number");
}

static void test_schema_null_arguments(void **state) {
  (void)state;
  char msg[64];
  toolcall__schema_t *s = compile_ok("{}");
  assert_int_equal(toolcall__schema_validate(NULL, json_null(), msg, sizeof(msg)),
                   UV_EINVAL);
  assert_int_equal(toolcall__schema_validate(s, NULL, msg, sizeof(msg)), UV_EINVAL);
  assert_int_equal(toolcall__schema_compile(NULL, 0, &s, msg, sizeof(msg)), UV_EINVAL);
  assert_int_equal(toolcall__schema_compile("{}", 2, NULL, msg, sizeof(msg)), UV_EINVAL);
  expect(s, "{\"anything\": [1]}", NULL);
  toolcall__schema_free(s);
  toolcall__schema_free(NULL);
}

/* ---- allocation failures ------------------------------------------------ */

static atomic_long alloc_budget; /* allocations left; < 0: unlimited */
static atomic_long alloc_live;

static bool alloc_take(void) {
  long left = atomic_load(&alloc_budget);
  if (left < 0)
    return true;
  if (left == 0)
    return false;
  atomic_fetch_sub(&alloc_budget, 1);
  return true;
}

static void *fail_malloc(size_t size) {
  if (!alloc_take())
    return NULL;
  void *p = malloc(size);
  if (p != NULL)
    atomic_fetch_add(&alloc_live, 1);
  return p;
}

static void *fail_calloc(size_t count, size_t size) {
  if (!alloc_take())
    return NULL;
  void *p = calloc(count, size);
  if (p != NULL)
    atomic_fetch_add(&alloc_live, 1);
  return p;
}

static void *fail_realloc(void *ptr, size_t size) {
  if (!alloc_take())
    return NULL;
  void *p = realloc(ptr, size);
  if (p != NULL && ptr == NULL)
    atomic_fetch_add(&alloc_live, 1);
  return p;
}

static void fail_free(void *ptr) {
  if (ptr != NULL)
    atomic_fetch_sub(&alloc_live, 1);
  free(ptr);
}

/* Fail the 1st, 2nd, ... allocation of a compile that uses every kind of
 * node: each run fails cleanly with ENOMEM and frees all it took, until
 * one has enough and the schema works. */
static void test_schema_alloc_failures(void **state) {
  (void)state;
  static const char text[] =
      "{\"$defs\": {\"n\": {\"type\": \"object\", \"properties\": {"
      "  \"v\": {\"enum\": [1, 2]}, \"k\": {\"const\": \"x\"},"
      "  \"s\": {\"pattern\": \"^\\\\w+[\\\\d.]$\", \"maxLength\": 9},"
      "  \"c\": {\"items\": {\"$ref\": \"#/$defs/n\"}}},"
      "  \"required\": [\"v\"], \"additionalProperties\": false}},"
      " \"anyOf\": [{\"$ref\": \"#/$defs/n\"}], \"oneOf\": [true],"
      " \"allOf\": [{\"$ref\": \"#\"}]}";
  /* the last allOf makes a cycle: a failure found after everything was
   * allocated must free everything too */
  static const char ok_text[] =
      "{\"$defs\": {\"n\": {\"type\": \"object\", \"properties\": {"
      "  \"v\": {\"enum\": [1, 2]}, \"k\": {\"const\": \"x\"},"
      "  \"s\": {\"pattern\": \"^\\\\w+[\\\\d.]$\", \"maxLength\": 9},"
      "  \"c\": {\"items\": {\"$ref\": \"#/$defs/n\"}}},"
      "  \"required\": [\"v\"], \"additionalProperties\": false}},"
      " \"anyOf\": [{\"$ref\": \"#/$defs/n\"}], \"oneOf\": [true]}";
  assert_int_equal(toolcall_replace_allocator(fail_malloc, fail_realloc,
                                              fail_calloc, fail_free),
                   0);
  for (int which = 0; which < 2; which++) {
    const char *t = which == 0 ? text : ok_text;
    int last = -1;
    long failures = 0;
    for (long budget = 0; budget < 1000; budget++) {
      toolcall__schema_t *s = NULL;
      char msg[160];
      atomic_store(&alloc_live, 0);
      atomic_store(&alloc_budget, budget);
      last = toolcall__schema_compile(t, strlen(t), &s, msg, sizeof(msg));
      atomic_store(&alloc_budget, -1);
      if (last == UV_ENOMEM) {
        assert_null(s);
        assert_int_equal(atomic_load(&alloc_live), 0);
        assert_string_equal(msg, "schema: out of memory");
        failures++;
        continue;
      }
      if (which == 0) {
        assert_int_equal(last, UV_EINVAL);
        assert_non_null(strstr(msg, "leads back to itself"));
        assert_int_equal(atomic_load(&alloc_live), 0);
      } else {
        assert_int_equal(last, 0);
        assert_true(atomic_load(&alloc_live) > 0);
        expect(s, "{\"v\": 1, \"c\": [{\"v\": 2, \"s\": \"ab5\"}]}", NULL);
        expect(s, "{\"v\": 1, \"c\": [{\"v\": 3}]}", "$: must match at least one schema in anyOf");
        toolcall__schema_free(s);
        assert_int_equal(atomic_load(&alloc_live), 0);
      }
      break;
    }
    assert_int_not_equal(last, UV_ENOMEM);
    assert_true(failures > 10); /* the schema really allocates */
  }
  assert_int_equal(toolcall_replace_allocator(malloc, realloc, calloc, free), 0);
}

/* ---- registration ------------------------------------------------------ */

static void nop_tool(toolcall_call_t *call, void *data) {
  (void)data;
  toolcall_call_complete(call, TOOLCALL_OK, NULL, 0);
}

/* A schema the validator cannot compile is refused when the tool is
 * registered, with a message naming the tool, the place and the reason;
 * the registry is left as it was. */
static void test_schema_registration_refused(void **state) {
  (void)state;
  static const struct {
    const char *schema;
    const char *message;
  } cases[] = {
      {"{\"type\": \"text\"}",
       "tool 'lookup': schema: $.type: unknown type 'text'"},
      {"{\"properties\": {\"q\": {\"pattern\": \"(\"}}}",
       "tool 'lookup': schema: $.properties.q.pattern: invalid regular "
       "expression: "},
      {"{\"properties\": {\"q\": {\"$ref\": \"#/$defs/nope\"}}}",
       "tool 'lookup': schema: $.properties.q[\"$ref\"]: no definition "
       "'#/$defs/nope' in the schema"},
      {"{\"if\": {\"type\": \"object\"}}",
       "tool 'lookup': schema: $: unsupported keyword 'if'"},
      {"{\"minLength\": -1}",
       "tool 'lookup': schema: $.minLength: must be a non-negative integer"},
      {"{\"type\": \"object\",", "tool 'lookup': schema: invalid JSON at line 1"},
      {"{\"$defs\": {\"a\": {\"$ref\": \"#/$defs/a\"}}}",
       "tool 'lookup': schema: $ref '#/$defs/a' leads back to itself"},
  };
  toolcall_registry_t *reg;
  assert_int_equal(toolcall_registry_new(&reg), 0);
  toolcall_tool_t def;
  toolcall_tool_init(&def);
  def.name = "first";
  def.fn = nop_tool;
  def.schema = "{\"type\": \"object\", \"required\": [\"q\"]}";
  assert_int_equal(toolcall_registry_add(reg, &def, NULL), 0);
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    toolcall_tool_t bad;
    toolcall_tool_init(&bad);
    bad.name = "lookup";
    bad.fn = nop_tool;
    bad.schema = cases[i].schema;
    toolcall_error_t err;
    memset(&err, 0, sizeof(err));
    int rc = toolcall_registry_add(reg, &bad, &err);
    if (rc != UV_EINVAL)
      fail_msg("%s: registered (%d)", cases[i].schema, rc);
    assert_int_equal(err.code, UV_EINVAL);
    if (strncmp(err.message, cases[i].message, strlen(cases[i].message)) != 0)
      fail_msg("%s: message '%s', want '%s...'", cases[i].schema, err.message,
               cases[i].message);
    assert_int_equal(toolcall_registry_count(reg), 1);
  }
  /* the name stays free: the same tool with a schema that compiles */
  def.name = "lookup";
  def.schema = "{\"type\": \"object\", \"properties\": {\"q\": {\"type\": "
               "[\"string\", \"null\"], \"pattern\": \"^[a-z]+$\"}}}";
  assert_int_equal(toolcall_registry_add(reg, &def, NULL), 0);
  assert_int_equal(toolcall_registry_count(reg), 2);
  assert_string_equal(toolcall_registry_name(reg, 1), "lookup");
  toolcall_registry_free(reg);
}

/* ---- threads ------------------------------------------------------------ */

typedef struct {
  const toolcall__schema_t *s;
  json_t *good, *bad;
  int wrong;
  int runs;
} worker_t;

static void validate_worker(void *arg) {
  worker_t *w = arg;
  char msg[128];
  for (int i = 0; i < 2000; i++) {
    if (toolcall__schema_validate(w->s, w->good, msg, sizeof(msg)) != 0)
      w->wrong++;
    if (toolcall__schema_validate(w->s, w->bad, msg, sizeof(msg)) != 1 ||
        strcmp(msg, "$.tags[1]: must match the pattern '^[a-z]+$'") != 0)
      w->wrong++;
    w->runs++;
  }
}

static void test_schema_concurrent(void **state) {
  (void)state;
  toolcall__schema_t *s = compile_ok(
      "{\"properties\": {\"tags\": {\"items\": {\"pattern\": \"^[a-z]+$\","
      " \"enum\": [\"aa\", \"bb\", \"cc\", \"Dd\"]}}, \"n\": {\"maximum\": 5}},"
      " \"required\": [\"tags\"]}");
  enum { N = 4 };
  worker_t w[N];
  uv_thread_t th[N];
  for (int i = 0; i < N; i++) {
    w[i] = (worker_t){s, json_loads("{\"tags\": [\"aa\", \"cc\"], \"n\": 5}", 0, NULL),
                      json_loads("{\"tags\": [\"bb\", \"Dd\"]}", 0, NULL), 0, 0};
    assert_non_null(w[i].good);
    assert_non_null(w[i].bad);
  }
  for (int i = 0; i < N; i++)
    assert_int_equal(uv_thread_create(&th[i], validate_worker, &w[i]), 0);
  for (int i = 0; i < N; i++) {
    assert_int_equal(uv_thread_join(&th[i]), 0);
    assert_int_equal(w[i].runs, 2000);
    assert_int_equal(w[i].wrong, 0);
    json_decref(w[i].good);
    json_decref(w[i].bad);
  }
  toolcall__schema_free(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_schema_type),
      cmocka_unit_test(test_schema_type_integer),
      cmocka_unit_test(test_schema_type_multiple),
      cmocka_unit_test(test_schema_properties_nested_path),
      cmocka_unit_test(test_schema_path_quoting),
      cmocka_unit_test(test_schema_required),
      cmocka_unit_test(test_schema_additional_properties),
      cmocka_unit_test(test_schema_enum),
      cmocka_unit_test(test_schema_enum_objects),
      cmocka_unit_test(test_schema_const),
      cmocka_unit_test(test_schema_minimum_maximum),
      cmocka_unit_test(test_schema_exclusive),
      cmocka_unit_test(test_schema_length_unicode),
      cmocka_unit_test(test_schema_pattern),
      cmocka_unit_test(test_schema_pattern_ecma),
      cmocka_unit_test(test_schema_pattern_embedded_nul),
      cmocka_unit_test(test_schema_items_index_path),
      cmocka_unit_test(test_schema_min_max_items),
      cmocka_unit_test(test_schema_all_of),
      cmocka_unit_test(test_schema_any_of),
      cmocka_unit_test(test_schema_one_of),
      cmocka_unit_test(test_schema_ref_recursive),
      cmocka_unit_test(test_schema_ref_cycle_refused),
      cmocka_unit_test(test_schema_ref_long_chain),
      cmocka_unit_test(test_schema_boolean_schemas),
      cmocka_unit_test(test_schema_annotations_ignored),
      cmocka_unit_test(test_schema_refuse_invalid_json),
      cmocka_unit_test(test_schema_refuse_unknown_keyword),
      cmocka_unit_test(test_schema_refuse_bad_values),
      cmocka_unit_test(test_schema_refuse_bad_pattern),
      cmocka_unit_test(test_schema_refuse_bad_ref),
      cmocka_unit_test(test_schema_refuse_deep_schema),
      cmocka_unit_test(test_schema_deep_value),
      cmocka_unit_test(test_schema_hostile_names),
      cmocka_unit_test(test_schema_message_truncation),
      cmocka_unit_test(test_schema_null_arguments),
      cmocka_unit_test(test_schema_alloc_failures),
      cmocka_unit_test(test_schema_registration_refused),
      cmocka_unit_test(test_schema_concurrent),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
