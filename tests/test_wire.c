/* Wire formats: tool calls, text and usage read from recorded response
 * bodies of the four providers; per-call defects that still reach dispatch;
 * bodies refused whole; results and tool definitions written back and read
 * again with jansson, field by field. */
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "toolcall.h"
#include "toolcall_wire.h"

#ifndef TOOLCALL_FIXTURES
#define TOOLCALL_FIXTURES "tests/fixtures"
#endif

#define N_FORMATS 4
static const toolcall_wire_format_t formats[N_FORMATS] = {
    TOOLCALL_WIRE_OPENAI_CHAT, TOOLCALL_WIRE_OPENAI_RESPONSES,
    TOOLCALL_WIRE_ANTHROPIC, TOOLCALL_WIRE_GEMINI};
/* Fixture file prefixes, in the order of formats[]. */
static const char *const prefixes[N_FORMATS] = {"openai_chat", "responses",
                                                "anthropic", "gemini"};

/* The arguments of the *_unicode fixtures, as every format must hand them
 * on: compact JSON, UTF-8 as is, escapes kept. */
static const char uni_args[] =
    "{\"city\":\"Zürich\",\"greeting\":\"こんにちは 👋\",\"quote\":\"say "
    "\\\"hi\\\"\\n\\tthen \\\\leave\",\"nested\":\"{\\\"k\\\":[1,2]}\"}";

/* ---- helpers ---- */

static char *read_file(const char *name, size_t *len) {
  char path[512];
  snprintf(path, sizeof(path), "%s/%s", TOOLCALL_FIXTURES, name);
  FILE *fp = fopen(path, "rb");
  if (fp == NULL)
    fail_msg("cannot open fixture %s", path);
  assert_int_equal(fseek(fp, 0, SEEK_END), 0);
  long size = ftell(fp);
  assert_true(size > 0);
  assert_int_equal(fseek(fp, 0, SEEK_SET), 0);
  char *buf = malloc((size_t)size + 1);
  assert_non_null(buf);
  assert_int_equal(fread(buf, 1, (size_t)size, fp), (size_t)size);
  fclose(fp);
  buf[size] = '\0';
  *len = (size_t)size;
  return buf;
}

static toolcall_wire_response_t *parse_file(toolcall_wire_format_t f,
                                            const char *name) {
  size_t len;
  char *body = read_file(name, &len);
  toolcall_wire_response_t *r = NULL;
  toolcall_error_t err = {0};
  int rc = toolcall_wire_parse(f, body, len, &r, &err);
  free(body);
  if (rc != 0)
    fail_msg("%s: %s (%s)", name, toolcall_err_name(rc), err.message);
  assert_non_null(r);
  return r;
}

static toolcall_wire_response_t *parse_fixture(int fi, const char *what) {
  char name[128];
  snprintf(name, sizeof(name), "%s_%s.json", prefixes[fi], what);
  return parse_file(formats[fi], name);
}

/* Parse a body that must fail; return its code, the message in err. */
static int parse_fails(toolcall_wire_format_t f, const char *body, size_t len,
                       toolcall_error_t *err) {
  toolcall_wire_response_t *r = (toolcall_wire_response_t *)&r; /* poison */
  memset(err, 0, sizeof(*err));
  int rc = toolcall_wire_parse(f, body, len, &r, err);
  assert_true(rc < 0);
  assert_null(r);
  assert_int_equal(err->code, rc);
  assert_int_equal(err->index, SIZE_MAX);
  return rc;
}

static int parse_str_fails(toolcall_wire_format_t f, const char *body,
                           toolcall_error_t *err) {
  return parse_fails(f, body, strlen(body), err);
}

static void assert_contains(const char *s, const char *part) {
  if (s == NULL || strstr(s, part) == NULL)
    fail_msg("'%s' does not contain '%s'", s != NULL ? s : "(null)", part);
}

static bool is_generated(const char *id) {
  return strncmp(id, TOOLCALL_WIRE_GENERATED_ID_PREFIX,
                 strlen(TOOLCALL_WIRE_GENERATED_ID_PREFIX)) == 0;
}

/* A generated id: prefix, the call's index, '_', 8 hex digits. */
static void assert_generated(const char *id, size_t index) {
  char want[64];
  snprintf(want, sizeof(want), TOOLCALL_WIRE_GENERATED_ID_PREFIX "%zu_", index);
  assert_true(strncmp(id, want, strlen(want)) == 0);
  const char *hex = id + strlen(want);
  assert_int_equal(strlen(hex), 8);
  assert_int_equal(strspn(hex, "0123456789abcdef"), 8);
}

static void assert_args(const toolcall_call_spec_t *c, const char *want) {
  if (want == NULL) {
    assert_null(c->arguments);
    return;
  }
  assert_non_null(c->arguments);
  assert_string_equal(c->arguments, want);
  assert_int_equal(c->arguments_len, strlen(want));
}

static void assert_usage(const toolcall_wire_response_t *r, uint64_t in,
                         uint64_t out, uint64_t cache_read,
                         uint64_t cache_write) {
  toolcall_usage_t u;
  memset(&u, 0xAB, sizeof(u));
  assert_int_equal(toolcall_wire_usage(r, &u), 0);
  assert_int_equal(u.requests, 1);
  assert_int_equal(u.input_tokens, in);
  assert_int_equal(u.output_tokens, out);
  assert_int_equal(u.cache_read_tokens, cache_read);
  assert_int_equal(u.cache_write_tokens, cache_write);
  for (size_t i = 0; i < sizeof(u.reserved_) / sizeof(u.reserved_[0]); i++)
    assert_int_equal(u.reserved_[i], 0);
}

/* ---- names ---- */

static void test_wire_format_names(void **state) {
  (void)state;
  static const struct {
    const char *name;
    toolcall_wire_format_t f;
  } ok[] = {{"openai", TOOLCALL_WIRE_OPENAI_CHAT},
            {"chat", TOOLCALL_WIRE_OPENAI_CHAT},
            {"responses", TOOLCALL_WIRE_OPENAI_RESPONSES},
            {"anthropic", TOOLCALL_WIRE_ANTHROPIC},
            {"gemini", TOOLCALL_WIRE_GEMINI}};
  for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
    toolcall_wire_format_t f = 0;
    assert_int_equal(toolcall_wire_format_from_name(ok[i].name, &f), 0);
    assert_int_equal(f, ok[i].f);
  }
  static const char *const bad[] = {"", "OpenAI", "claude", "google",
                                    "openai ", "response"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    toolcall_wire_format_t f = TOOLCALL_WIRE_GEMINI;
    assert_int_equal(toolcall_wire_format_from_name(bad[i], &f), UV_EINVAL);
    assert_int_equal(f, TOOLCALL_WIRE_GEMINI); /* untouched */
  }
  toolcall_wire_format_t f;
  assert_int_equal(toolcall_wire_format_from_name(NULL, &f), UV_EINVAL);
  assert_int_equal(toolcall_wire_format_from_name("gemini", NULL), UV_EINVAL);

  assert_string_equal(toolcall_wire_format_name(TOOLCALL_WIRE_OPENAI_CHAT),
                      "openai");
  assert_string_equal(
      toolcall_wire_format_name(TOOLCALL_WIRE_OPENAI_RESPONSES), "responses");
  assert_string_equal(toolcall_wire_format_name(TOOLCALL_WIRE_ANTHROPIC),
                      "anthropic");
  assert_string_equal(toolcall_wire_format_name(TOOLCALL_WIRE_GEMINI),
                      "gemini");
  assert_string_equal(toolcall_wire_format_name((toolcall_wire_format_t)0),
                      "invalid");
  assert_string_equal(toolcall_wire_format_name((toolcall_wire_format_t)5),
                      "invalid");
}

/* ---- parallel calls, per format ---- */

static const char weather_paris[] =
    "{\"location\":\"Paris, France\",\"unit\":\"celsius\"}";
static const char weather_tokyo[] =
    "{\"location\":\"Tokyo, Japan\",\"unit\":\"celsius\"}";
static const char time_tokyo[] = "{\"timezone\":\"Asia/Tokyo\"}";

static void assert_parallel(const toolcall_wire_response_t *r,
                            const char *const ids[3]) {
  size_t n = 99;
  const toolcall_call_spec_t *c = toolcall_wire_calls(r, &n);
  assert_int_equal(n, 3);
  assert_non_null(c);
  const char *names[3] = {"get_weather", "get_weather", "get_time"};
  const char *args[3] = {weather_paris, weather_tokyo, time_tokyo};
  for (int i = 0; i < 3; i++) {
    if (ids != NULL)
      assert_string_equal(c[i].id, ids[i]);
    else
      assert_generated(c[i].id, (size_t)i);
    assert_string_equal(c[i].name, names[i]);
    assert_args(&c[i], args[i]);
  }
}

static void test_wire_openai_chat_parallel(void **state) {
  (void)state;
  toolcall_wire_response_t *r =
      parse_file(TOOLCALL_WIRE_OPENAI_CHAT, "openai_chat_parallel.json");
  const char *ids[3] = {"call_abc123", "call_def456", "call_ghi789"};
  assert_parallel(r, ids);
  assert_string_equal(toolcall_wire_text(r), "");
  /* prompt_tokens (cached included), completion_tokens, cached_tokens */
  assert_usage(r, 1117, 89, 1024, 0);
  toolcall_wire_response_free(r);
}

static void test_wire_responses_parallel(void **state) {
  (void)state;
  toolcall_wire_response_t *r =
      parse_file(TOOLCALL_WIRE_OPENAI_RESPONSES, "responses_parallel.json");
  /* call_id, not the item id (fc_...) */
  const char *ids[3] = {"call_12345xyz", "call_67890abc", "call_99999def"};
  assert_parallel(r, ids);
  assert_string_equal(toolcall_wire_text(r), "");
  assert_usage(r, 2048, 312, 1536, 0);
  toolcall_wire_response_free(r);
}

static void test_wire_anthropic_parallel(void **state) {
  (void)state;
  toolcall_wire_response_t *r =
      parse_file(TOOLCALL_WIRE_ANTHROPIC, "anthropic_parallel.json");
  const char *ids[3] = {"toolu_01A09q90qw90lq917835lq9",
                        "toolu_01B7rXfQm2Zy3kLpV9sT4uWe",
                        "toolu_01C4dHjKl8MnPq2RsT6vWxYz"};
  assert_parallel(r, ids);
  assert_string_equal(
      toolcall_wire_text(r),
      "I'll check the weather in both cities and the time in Tokyo.");
  /* input = 472 + 1200 (cache write) + 3000 (cache read) */
  assert_usage(r, 4672, 165, 3000, 1200);
  toolcall_wire_response_free(r);
}

static void test_wire_gemini_parallel(void **state) {
  (void)state;
  toolcall_wire_response_t *r =
      parse_file(TOOLCALL_WIRE_GEMINI, "gemini_parallel.json");
  assert_parallel(r, NULL); /* Gemini sent no ids: generated */
  size_t n;
  const toolcall_call_spec_t *c = toolcall_wire_calls(r, &n);
  /* unique, even for two calls of one tool */
  assert_string_not_equal(c[0].id, c[1].id);
  assert_string_not_equal(c[1].id, c[2].id);
  /* stable: the same body gives the same ids */
  toolcall_wire_response_t *again =
      parse_file(TOOLCALL_WIRE_GEMINI, "gemini_parallel.json");
  const toolcall_call_spec_t *c2 = toolcall_wire_calls(again, &n);
  assert_int_equal(n, 3);
  for (int i = 0; i < 3; i++)
    assert_string_equal(c[i].id, c2[i].id);
  toolcall_wire_response_free(again);
  assert_string_equal(toolcall_wire_text(r), "");
  /* output = candidates 58 + thoughts 222 */
  assert_usage(r, 1450, 280, 1024, 0);
  toolcall_wire_response_free(r);
}

/* ---- special calls, every format ---- */

static void test_wire_empty_args(void **state) {
  (void)state;
  for (int fi = 0; fi < N_FORMATS; fi++) {
    toolcall_wire_response_t *r = parse_fixture(fi, "empty_args");
    size_t n;
    const toolcall_call_spec_t *c = toolcall_wire_calls(r, &n);
    assert_int_equal(n, 2);
    for (int i = 0; i < 2; i++)
      assert_string_equal(c[i].name, "list_files");
    /* the string "{}" verbatim (OpenAI), or an empty object dumped */
    assert_args(&c[0], "{}");
    /* "" (OpenAI) or no input/args at all: NULL, i.e. "{}" */
    assert_args(&c[1], NULL);
    toolcall_wire_response_free(r);
  }
}

static void test_wire_unicode_args(void **state) {
  (void)state;
  for (int fi = 0; fi < N_FORMATS; fi++) {
    toolcall_wire_response_t *r = parse_fixture(fi, "unicode");
    size_t n;
    const toolcall_call_spec_t *c = toolcall_wire_calls(r, &n);
    assert_int_equal(n, 1);
    assert_string_equal(c[0].name, "get_weather");
    assert_args(&c[0], uni_args);
    /* and it is the JSON the model meant */
    json_error_t jerr;
    json_t *j = json_loads(c[0].arguments, JSON_REJECT_DUPLICATES, &jerr);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "quote")),
                        "say \"hi\"\n\tthen \\leave");
    assert_string_equal(json_string_value(json_object_get(j, "greeting")),
                        "こんにちは 👋");
    assert_string_equal(json_string_value(json_object_get(j, "nested")),
                        "{\"k\":[1,2]}");
    json_decref(j);
    toolcall_wire_response_free(r);
  }
}

static void test_wire_text_and_calls(void **state) {
  (void)state;
  for (int fi = 0; fi < N_FORMATS; fi++) {
    toolcall_wire_response_t *r = parse_fixture(fi, "text_and_calls");
    size_t n;
    const toolcall_call_spec_t *c = toolcall_wire_calls(r, &n);
    assert_int_equal(n, 1);
    assert_string_equal(c[0].name, "get_weather");
    assert_args(&c[0], "{\"location\":\"Paris, France\"}");
    /* reasoning, thinking and thought parts are not text */
    assert_string_equal(toolcall_wire_text(r),
                        "Let me check the weather in Paris for you.");
    static const char *const ids[N_FORMATS] = {
        "call_Wx12Ab34Cd", "call_text1", "toolu_01TextAndCall000000000001",
        "fc-8e4c2a1b-3d5f-4e6a-9b7c"};
    assert_string_equal(c[0].id, ids[fi]); /* Gemini's own id is kept */
    toolcall_wire_response_free(r);
  }
}

static void test_wire_no_calls(void **state) {
  (void)state;
  for (int fi = 0; fi < N_FORMATS; fi++) {
    toolcall_wire_response_t *r = parse_fixture(fi, "no_calls");
    size_t n = 99;
    assert_null(toolcall_wire_calls(r, &n));
    assert_int_equal(n, 0);
    assert_string_equal(toolcall_wire_text(r),
                        "The capital of France is Paris.");
    toolcall_usage_t u;
    assert_int_equal(toolcall_wire_usage(r, &u), 0);
    assert_int_equal(u.requests, 1);
    assert_true(u.input_tokens > 0);
    toolcall_wire_response_free(r);
  }
  /* A Gemini prompt blocked before any candidate: no calls, usage kept. */
  toolcall_wire_response_t *r =
      parse_file(TOOLCALL_WIRE_GEMINI, "gemini_blocked.json");
  size_t n = 99;
  assert_null(toolcall_wire_calls(r, &n));
  assert_int_equal(n, 0);
  assert_string_equal(toolcall_wire_text(r), "");
  assert_usage(r, 12, 0, 0, 0);
  toolcall_wire_response_free(r);
}

/* ---- malformed calls: listed all the same ---- */

static void test_wire_malformed_calls(void **state) {
  (void)state;
  for (int fi = 0; fi < N_FORMATS; fi++) {
    toolcall_wire_format_t f = formats[fi];
    toolcall_wire_response_t *r = parse_fixture(fi, "malformed");
    size_t n;
    const toolcall_call_spec_t *c = toolcall_wire_calls(r, &n);
    assert_int_equal(n, 4);
    bool openai = f == TOOLCALL_WIRE_OPENAI_CHAT ||
                  f == TOOLCALL_WIRE_OPENAI_RESPONSES;

    /* 0: arguments that are not a JSON object */
    assert_string_equal(c[0].name, "get_weather");
    if (openai) {
      assert_string_equal(c[0].id, "call_bad_json01");
      assert_args(&c[0], "{\"location\": \"Paris"); /* verbatim */
    } else {
      /* input/args holding a string: a JSON string, not an object */
      assert_args(&c[0], "\"{\\\"location\\\": \\\"Paris\\\"}\"");
      if (f == TOOLCALL_WIRE_ANTHROPIC)
        assert_string_equal(c[0].id, "toolu_01BadInput0000000000000001");
      else
        assert_generated(c[0].id, 0);
    }

    /* 1: no name */
    assert_string_equal(c[1].name, "");
    assert_args(&c[1], "{}");

    /* 2: id and name of the wrong type; arguments an object */
    assert_string_equal(c[2].name, "");
    assert_generated(c[2].id, 2);
    assert_args(&c[2], "{\"location\":\"Oslo\"}");

    /* 3: no id (Gemini: functionCall is not even an object) */
    assert_generated(c[3].id, 3);
    if (f == TOOLCALL_WIRE_GEMINI) {
      assert_string_equal(c[3].name, "");
      assert_args(&c[3], NULL);
    } else {
      assert_string_equal(c[3].name, "get_time");
      assert_args(&c[3], "{\"timezone\":\"UTC\"}");
    }
    for (size_t i = 0; i < n; i++)
      for (size_t j = i + 1; j < n; j++)
        assert_string_not_equal(c[i].id, c[j].id);
    toolcall_wire_response_free(r);
  }

  /* An empty id is no id: submit would refuse it. */
  static const char empty_id[] =
      "{\"output\":[{\"type\":\"function_call\",\"call_id\":\"\",\"name\":"
      "\"get_time\",\"arguments\":\"{}\"}]}";
  toolcall_wire_response_t *r = NULL;
  assert_int_equal(toolcall_wire_parse(TOOLCALL_WIRE_OPENAI_RESPONSES,
                                       empty_id, strlen(empty_id), &r, NULL),
                   0);
  size_t n;
  assert_generated(toolcall_wire_calls(r, &n)[0].id, 0);
  toolcall_wire_response_free(r);
}

/* ---- bodies refused whole ---- */

/* Every strict prefix of a response is refused: a truncated body. */
static void test_wire_truncated(void **state) {
  (void)state;
  for (int fi = 0; fi < N_FORMATS; fi++) {
    char name[128];
    size_t len;
    snprintf(name, sizeof(name), "%s_parallel.json", prefixes[fi]);
    char *body = read_file(name, &len);
    while (len > 0 && (body[len - 1] == '\n' || body[len - 1] == ' '))
      len--;
    for (size_t cut = 1; cut < len; cut++) {
      toolcall_wire_response_t *r = NULL;
      toolcall_error_t err;
      int rc = toolcall_wire_parse(formats[fi], body, cut, &r, &err);
      if (rc != UV_EINVAL)
        fail_msg("%s cut at %zu: %d", name, cut, rc);
      assert_null(r);
      /* a clear error for the body: the format, and where the JSON broke */
      char want[64];
      snprintf(want, sizeof(want), "%s: invalid JSON at line ",
               toolcall_wire_format_name(formats[fi]));
      if (strncmp(err.message, want, strlen(want)) != 0)
        fail_msg("%s cut at %zu: '%s'", name, cut, err.message);
    }
    free(body);
  }
  /* A body cut off in the middle of a call, one per format. */
  for (int fi = 0; fi < N_FORMATS; fi++) {
    char name[128];
    size_t len;
    snprintf(name, sizeof(name), "%s_truncated.json", prefixes[fi]);
    char *body = read_file(name, &len);
    toolcall_error_t err;
    assert_int_equal(parse_fails(formats[fi], body, len, &err), UV_EINVAL);
    char want[64];
    snprintf(want, sizeof(want), "%s: invalid JSON at line ",
             toolcall_wire_format_name(formats[fi]));
    assert_contains(err.message, want);
    free(body);
  }
}

static void test_wire_wrong_shapes(void **state) {
  (void)state;
  static const struct {
    toolcall_wire_format_t f;
    const char *body;
    const char *message;
  } cases[] = {
      {TOOLCALL_WIRE_OPENAI_CHAT, "[]", "openai: the body is not a JSON object"},
      {TOOLCALL_WIRE_GEMINI, "[\"text\"]", "gemini: the body is not a JSON object"},
      {TOOLCALL_WIRE_OPENAI_CHAT, "{}", "openai: choices must be a non-empty array"},
      {TOOLCALL_WIRE_OPENAI_CHAT, "{\"choices\":[]}",
       "openai: choices must be a non-empty array"},
      {TOOLCALL_WIRE_OPENAI_CHAT, "{\"choices\":[1]}",
       "openai: choices[0] must be an object"},
      {TOOLCALL_WIRE_OPENAI_CHAT, "{\"choices\":[{\"message\":null}]}",
       "openai: choices[0].message must be an object"},
      {TOOLCALL_WIRE_OPENAI_CHAT,
       "{\"choices\":[{\"message\":{\"content\":5}}]}",
       "openai: choices[0].message.content must be a string, an array or null"},
      {TOOLCALL_WIRE_OPENAI_CHAT,
       "{\"choices\":[{\"message\":{\"tool_calls\":{}}}]}",
       "openai: choices[0].message.tool_calls must be an array"},
      {TOOLCALL_WIRE_OPENAI_CHAT,
       "{\"choices\":[{\"message\":{\"tool_calls\":[{\"id\":\"a\"},\"b\"]}}]}",
       "openai: choices[0].message.tool_calls[1] must be an object"},
      {TOOLCALL_WIRE_OPENAI_CHAT,
       "{\"choices\":[{\"message\":{}}],\"usage\":[]}",
       "openai: usage must be an object"},
      {TOOLCALL_WIRE_OPENAI_CHAT,
       "{\"choices\":[{\"message\":{}}],\"usage\":{\"prompt_tokens_details\":3}}",
       "openai: usage.prompt_tokens_details must be an object"},
      {TOOLCALL_WIRE_OPENAI_RESPONSES, "{\"output\":{}}",
       "responses: output must be an array"},
      {TOOLCALL_WIRE_OPENAI_RESPONSES, "{\"output\":[null]}",
       "responses: output[0] must be an object"},
      {TOOLCALL_WIRE_OPENAI_RESPONSES,
       "{\"output\":[{\"type\":\"message\",\"content\":\"hi\"}]}",
       "responses: output[0].content must be an array"},
      {TOOLCALL_WIRE_ANTHROPIC, "{\"type\":\"message\"}",
       "anthropic: content must be an array"},
      {TOOLCALL_WIRE_ANTHROPIC, "{\"content\":[{\"type\":\"text\",\"text\":\"a\"},7]}",
       "anthropic: content[1] must be an object"},
      {TOOLCALL_WIRE_GEMINI, "{\"candidates\":{}}",
       "gemini: candidates must be an array"},
      {TOOLCALL_WIRE_GEMINI, "{\"candidates\":[[]]}",
       "gemini: candidates[0] must be an object"},
      {TOOLCALL_WIRE_GEMINI, "{\"candidates\":[{\"content\":[]}]}",
       "gemini: candidates[0].content must be an object"},
      {TOOLCALL_WIRE_GEMINI,
       "{\"candidates\":[{\"content\":{\"parts\":{\"text\":\"a\"}}}]}",
       "gemini: candidates[0].content.parts must be an array"},
      {TOOLCALL_WIRE_GEMINI,
       "{\"candidates\":[{\"content\":{\"parts\":[\"a\"]}}]}",
       "gemini: candidates[0].content.parts[0] must be an object"},
      {TOOLCALL_WIRE_GEMINI, "{\"usageMetadata\":\"x\"}",
       "gemini: usageMetadata must be an object"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    toolcall_error_t err;
    assert_int_equal(parse_str_fails(cases[i].f, cases[i].body, &err),
                     UV_EINVAL);
    if (strcmp(err.message, cases[i].message) != 0)
      fail_msg("case %zu: '%s', want '%s'", i, err.message, cases[i].message);
  }
}

static void test_wire_api_misuse(void **state) {
  (void)state;
  toolcall_wire_response_t *r = NULL;
  toolcall_error_t err;
  assert_int_equal(toolcall_wire_parse(TOOLCALL_WIRE_GEMINI, NULL, 2, &r, &err),
                   UV_EINVAL);
  assert_int_equal(toolcall_wire_parse(TOOLCALL_WIRE_GEMINI, "{}", 2, NULL, &err),
                   UV_EINVAL);
  assert_int_equal(
      toolcall_wire_parse((toolcall_wire_format_t)9, "{}", 2, &r, &err),
      UV_EINVAL);
  assert_contains(err.message, "unknown format 9");
  assert_int_equal(parse_fails(TOOLCALL_WIRE_ANTHROPIC, "", 0, &err),
                   UV_EINVAL);
  assert_string_equal(err.message, "anthropic: the body is empty");
  /* err is optional */
  assert_int_equal(toolcall_wire_parse(TOOLCALL_WIRE_ANTHROPIC, "{", 1, &r, NULL),
                   UV_EINVAL);
  assert_null(r);

  size_t n = 7;
  assert_null(toolcall_wire_calls(NULL, &n));
  assert_int_equal(n, 0);
  assert_null(toolcall_wire_text(NULL));
  toolcall_usage_t u;
  assert_int_equal(toolcall_wire_usage(NULL, &u), UV_EINVAL);
  toolcall_wire_response_free(NULL);
  toolcall_wire_free(NULL);

  char *out = (char *)&out;
  assert_int_equal(toolcall_wire_write_results(TOOLCALL_WIRE_OPENAI_CHAT, NULL,
                                               &out, NULL, &err),
                   UV_EINVAL);
  assert_null(out);
  out = (char *)&out;
  assert_int_equal(toolcall_wire_write_tools(TOOLCALL_WIRE_OPENAI_CHAT, NULL,
                                             &out, NULL, &err),
                   UV_EINVAL);
  assert_null(out);
  toolcall_registry_t *reg;
  assert_int_equal(toolcall_registry_new(&reg), 0);
  assert_int_equal(toolcall_wire_write_tools((toolcall_wire_format_t)0, reg,
                                             &out, NULL, &err),
                   UV_EINVAL);
  assert_int_equal(toolcall_wire_write_tools(TOOLCALL_WIRE_GEMINI, reg, NULL,
                                             NULL, &err),
                   UV_EINVAL);
  toolcall_registry_free(reg);
}

/* A body without usage: UV_ENOENT, and nothing in usage. */
static void test_wire_no_usage(void **state) {
  (void)state;
  static const char *const bodies[N_FORMATS] = {
      "{\"choices\":[{\"message\":{\"content\":\"hi\"}}]}",
      "{\"output\":[],\"usage\":null}", "{\"content\":[]}",
      "{\"candidates\":[]}"};
  for (int fi = 0; fi < N_FORMATS; fi++) {
    toolcall_wire_response_t *r = NULL;
    assert_int_equal(toolcall_wire_parse(formats[fi], bodies[fi],
                                         strlen(bodies[fi]), &r, NULL),
                     0);
    toolcall_usage_t u;
    memset(&u, 0xAB, sizeof(u));
    assert_int_equal(toolcall_wire_usage(r, &u), UV_ENOENT);
    assert_int_equal(u.requests, 0);
    assert_int_equal(u.input_tokens, 0);
    assert_int_equal(u.output_tokens, 0);
    toolcall_wire_response_free(r);
  }
}

/* ---- bad input ---- */

static void test_wire_body_too_big(void **state) {
  (void)state;
  toolcall_ledger_t *ledger;
  toolcall_snapshot_t before, after;
  assert_int_equal(toolcall_ledger_new(&ledger), 0);
  assert_int_equal(toolcall_ledger_snapshot(ledger, &before), 0);

  /* 64 MiB of valid JSON: refused for its size alone. */
  size_t len = (size_t)64 * 1024 * 1024;
  char *body = malloc(len);
  assert_non_null(body);
  static const char head[] =
      "{\"content\":[],\"usage\":{\"input_tokens\":5,\"output_tokens\":5},"
      "\"pad\":\"";
  memcpy(body, head, sizeof(head) - 1);
  memset(body + sizeof(head) - 1, 'x', len - (sizeof(head) - 1) - 2);
  memcpy(body + len - 2, "\"}", 2);
  toolcall_error_t err;
  assert_int_equal(parse_fails(TOOLCALL_WIRE_ANTHROPIC, body, len, &err),
                   UV_E2BIG);
  assert_contains(err.message, "anthropic: the body is 67108864 bytes");
  /* one byte over the limit */
  memcpy(body + TOOLCALL_WIRE_MAX_BODY + 1 - 2, "\"}", 2);
  assert_int_equal(parse_fails(TOOLCALL_WIRE_ANTHROPIC, body,
                               TOOLCALL_WIRE_MAX_BODY + 1, &err),
                   UV_E2BIG);
  /* 1 MiB: parsed, and its usage is there but not counted */
  size_t small = (size_t)1024 * 1024;
  memcpy(body + small - 2, "\"}", 2);
  toolcall_wire_response_t *r = NULL;
  assert_int_equal(
      toolcall_wire_parse(TOOLCALL_WIRE_ANTHROPIC, body, small, &r, &err), 0);
  assert_usage(r, 5, 5, 0, 0);
  toolcall_wire_response_free(r);
  free(body);

  assert_int_equal(toolcall_ledger_snapshot(ledger, &after), 0);
  assert_memory_equal(&before, &after, sizeof(before));
  assert_int_equal(after.usage.requests, 0);
  assert_int_equal(after.usage.input_tokens, 0);
  toolcall_ledger_free(ledger);
}

static void test_wire_deep_nesting(void **state) {
  (void)state;
  enum { DEPTH = 100000 };
  static const char head[] =
      "{\"content\":[{\"type\":\"tool_use\",\"id\":\"toolu_01\",\"name\":"
      "\"f\",\"input\":{\"a\":";
  size_t len = sizeof(head) - 1 + 2 * DEPTH + 3;
  char *body = malloc(len + 1);
  assert_non_null(body);
  char *p = body;
  memcpy(p, head, sizeof(head) - 1);
  p += sizeof(head) - 1;
  memset(p, '[', DEPTH);
  p += DEPTH;
  memset(p, ']', DEPTH);
  p += DEPTH;
  memcpy(p, "}}]}", 4);
  len = (size_t)(p + 4 - body);
  toolcall_error_t err;
  assert_int_equal(parse_fails(TOOLCALL_WIRE_ANTHROPIC, body, len, &err),
                   UV_EINVAL);
  assert_contains(err.message, "anthropic: invalid JSON");
  assert_contains(err.message, "depth");
  free(body);

  /* 2000 deep (under jansson's 2048) is fine, and handed on intact. */
  enum { OK_DEPTH = 2000 };
  char *args = malloc(2 * OK_DEPTH + 16);
  char *body2 = malloc(2 * OK_DEPTH + 256);
  assert_non_null(args);
  assert_non_null(body2);
  p = args;
  memcpy(p, "{\"a\":", 5);
  p += 5;
  memset(p, '[', OK_DEPTH);
  p += OK_DEPTH;
  memset(p, ']', OK_DEPTH);
  p += OK_DEPTH;
  memcpy(p, "}", 2);
  int blen = snprintf(body2, 2 * OK_DEPTH + 256,
                      "{\"candidates\":[{\"content\":{\"parts\":[{"
                      "\"functionCall\":{\"name\":\"f\",\"args\":%s}}]}}]}",
                      args);
  toolcall_wire_response_t *r = NULL;
  assert_int_equal(
      toolcall_wire_parse(TOOLCALL_WIRE_GEMINI, body2, (size_t)blen, &r, &err),
      0);
  size_t n;
  const toolcall_call_spec_t *c = toolcall_wire_calls(r, &n);
  assert_int_equal(n, 1);
  assert_string_equal(c[0].arguments, args);
  toolcall_wire_response_free(r);
  free(args);
  free(body2);
}

static void test_wire_invalid_utf8(void **state) {
  (void)state;
  static const char *const bodies[] = {
      /* a stray continuation byte in a tool name */
      "{\"content\":[{\"type\":\"tool_use\",\"id\":\"t1\",\"name\":\"ab\x80\","
      "\"input\":{}}]}",
      /* an overlong '/' in the arguments */
      "{\"content\":[{\"type\":\"tool_use\",\"id\":\"t1\",\"name\":\"a\","
      "\"input\":{\"p\":\"\xC0\xAF\"}}]}",
      /* a UTF-16 surrogate encoded in UTF-8 */
      "{\"content\":[{\"type\":\"text\",\"text\":\"\xED\xA0\x80\"}]}",
      /* a lone surrogate escape */
      "{\"content\":[{\"type\":\"text\",\"text\":\"\\ud800\"}]}",
      /* a truncated sequence at the end of a string */
      "{\"content\":[{\"type\":\"text\",\"text\":\"\xE2\x82\"}]}",
      /* a NUL escape: strings handed on may hold no NUL */
      "{\"content\":[{\"type\":\"tool_use\",\"id\":\"t\\u0000\",\"name\":\"a\","
      "\"input\":{}}]}",
  };
  for (size_t i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
    toolcall_error_t err;
    assert_int_equal(parse_str_fails(TOOLCALL_WIRE_ANTHROPIC, bodies[i], &err),
                     UV_EINVAL);
    assert_contains(err.message, "anthropic: invalid JSON at line 1");
  }
  /* A raw NUL byte inside the body. */
  static const char nul[] = "{\"content\":[]\0}";
  toolcall_error_t err;
  assert_int_equal(
      parse_fails(TOOLCALL_WIRE_ANTHROPIC, nul, sizeof(nul) - 1, &err),
      UV_EINVAL);
}

static void test_wire_numbers(void **state) {
  (void)state;
  static const struct {
    toolcall_wire_format_t f;
    const char *body;
    int code;
    const char *message; /* a part of it */
  } cases[] = {
      /* beyond 64 bits: jansson refuses, wherever it is */
      {TOOLCALL_WIRE_OPENAI_CHAT,
       "{\"choices\":[{\"message\":{}}],\"usage\":{\"prompt_tokens\":"
       "18446744073709551616}}",
       UV_ERANGE, "too big integer"},
      {TOOLCALL_WIRE_ANTHROPIC,
       "{\"content\":[{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"f\","
       "\"input\":{\"n\":99999999999999999999}}]}",
       UV_ERANGE, "too big integer"},
      {TOOLCALL_WIRE_GEMINI, "{\"usageMetadata\":{\"promptTokenCount\":1e999}}",
       UV_ERANGE, "real number overflow"},
      /* negative counts */
      {TOOLCALL_WIRE_OPENAI_CHAT,
       "{\"choices\":[{\"message\":{}}],\"usage\":{\"completion_tokens\":-1}}",
       UV_ERANGE, "openai: usage.completion_tokens is negative (-1)"},
      {TOOLCALL_WIRE_OPENAI_RESPONSES,
       "{\"output\":[],\"usage\":{\"input_tokens_details\":{\"cached_tokens\":"
       "-9223372036854775808}}}",
       UV_ERANGE,
       "responses: usage.input_tokens_details.cached_tokens is negative"},
      {TOOLCALL_WIRE_ANTHROPIC,
       "{\"content\":[],\"usage\":{\"cache_read_input_tokens\":-5}}",
       UV_ERANGE, "anthropic: usage.cache_read_input_tokens is negative (-5)"},
      {TOOLCALL_WIRE_GEMINI,
       "{\"usageMetadata\":{\"thoughtsTokenCount\":-2}}", UV_ERANGE,
       "gemini: usageMetadata.thoughtsTokenCount is negative (-2)"},
      /* counts that are not integers */
      {TOOLCALL_WIRE_ANTHROPIC,
       "{\"content\":[],\"usage\":{\"input_tokens\":1.5}}", UV_EINVAL,
       "anthropic: usage.input_tokens must be an integer"},
      {TOOLCALL_WIRE_ANTHROPIC,
       "{\"content\":[],\"usage\":{\"output_tokens\":100.0}}", UV_EINVAL,
       "anthropic: usage.output_tokens must be an integer"},
      {TOOLCALL_WIRE_OPENAI_RESPONSES,
       "{\"output\":[],\"usage\":{\"output_tokens\":\"12\"}}", UV_EINVAL,
       "responses: usage.output_tokens must be an integer"},
      {TOOLCALL_WIRE_GEMINI,
       "{\"usageMetadata\":{\"candidatesTokenCount\":true}}", UV_EINVAL,
       "gemini: usageMetadata.candidatesTokenCount must be an integer"},
      /* Anthropic's input sum passes 2^64-1 */
      {TOOLCALL_WIRE_ANTHROPIC,
       "{\"content\":[],\"usage\":{\"input_tokens\":9223372036854775807,"
       "\"cache_creation_input_tokens\":9223372036854775807,"
       "\"cache_read_input_tokens\":9223372036854775807}}",
       UV_ERANGE, "anthropic: usage input tokens add up to more than 2^64-1"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    toolcall_error_t err;
    int rc = parse_str_fails(cases[i].f, cases[i].body, &err);
    if (rc != cases[i].code)
      fail_msg("case %zu: %s (%s)", i, toolcall_err_name(rc), err.message);
    assert_contains(err.message, cases[i].message);
  }

  /* The largest counts that fit are read exactly; null counts are 0. */
  static const char big[] =
      "{\"usageMetadata\":{\"promptTokenCount\":9223372036854775807,"
      "\"candidatesTokenCount\":9223372036854775807,\"thoughtsTokenCount\":"
      "9223372036854775807,\"cachedContentTokenCount\":null}}";
  toolcall_wire_response_t *r = NULL;
  assert_int_equal(
      toolcall_wire_parse(TOOLCALL_WIRE_GEMINI, big, strlen(big), &r, NULL), 0);
  assert_usage(r, INT64_MAX, (uint64_t)INT64_MAX * 2, 0, 0);
  toolcall_wire_response_free(r);
}

static void test_wire_duplicate_keys(void **state) {
  (void)state;
  static const struct {
    toolcall_wire_format_t f;
    const char *body;
  } cases[] = {
      {TOOLCALL_WIRE_ANTHROPIC, "{\"content\":[],\"content\":[]}"},
      /* inside a tool's input: which value would the tool see? */
      {TOOLCALL_WIRE_ANTHROPIC,
       "{\"content\":[{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"rm\","
       "\"input\":{\"path\":\"/tmp/x\",\"path\":\"/\"}}]}"},
      {TOOLCALL_WIRE_OPENAI_CHAT,
       "{\"choices\":[{\"message\":{\"tool_calls\":[{\"id\":\"a\",\"id\":"
       "\"b\",\"function\":{\"name\":\"f\",\"arguments\":\"{}\"}}]}}]}"},
      {TOOLCALL_WIRE_GEMINI,
       "{\"usageMetadata\":{\"promptTokenCount\":1,\"promptTokenCount\":2}}"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    toolcall_error_t err;
    assert_int_equal(parse_str_fails(cases[i].f, cases[i].body, &err),
                     UV_EINVAL);
    assert_contains(err.message, "duplicate object key");
  }
  /* Duplicate keys inside an OpenAI arguments *string* are the tool's
   * business: the text is handed on verbatim. */
  static const char ok[] =
      "{\"choices\":[{\"message\":{\"tool_calls\":[{\"id\":\"a\",\"function\":"
      "{\"name\":\"f\",\"arguments\":\"{\\\"x\\\":1,\\\"x\\\":2}\"}}]}}]}";
  toolcall_wire_response_t *r = NULL;
  assert_int_equal(toolcall_wire_parse(TOOLCALL_WIRE_OPENAI_CHAT, ok,
                                       strlen(ok), &r, NULL),
                   0);
  size_t n;
  assert_args(&toolcall_wire_calls(r, &n)[0], "{\"x\":1,\"x\":2}");
  toolcall_wire_response_free(r);
}

/* Reals in Anthropic input and Gemini args come out as the model wrote them
 * (the fewest digits that read back exactly), not jansson's 17 digits. */
static void test_wire_real_numbers(void **state) {
  (void)state;
  static const char body[] =
      "{\"content\":[{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"f\","
      "\"input\":{\"t\":0.1,\"big\":1e300,\"pi\":3.14159265358979,\"i\":"
      "-42,\"z\":-0.0,\"list\":[2.5,null,true,\"s\"]}}]}";
  toolcall_wire_response_t *r = NULL;
  assert_int_equal(toolcall_wire_parse(TOOLCALL_WIRE_ANTHROPIC, body,
                                       strlen(body), &r, NULL),
                   0);
  size_t n;
  assert_args(&toolcall_wire_calls(r, &n)[0],
              "{\"t\":0.1,\"big\":1e300,\"pi\":3.14159265358979,\"i\":-42,"
              "\"z\":-0.0,\"list\":[2.5,null,true,\"s\"]}");
  toolcall_wire_response_free(r);

  /* 0.1 + 0.2 needs 17 digits: it still reads back exactly. */
  static const char body17[] =
      "{\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{\"name\":"
      "\"f\",\"args\":{\"x\":0.30000000000000004}}}]}}]}";
  assert_int_equal(toolcall_wire_parse(TOOLCALL_WIRE_GEMINI, body17,
                                       strlen(body17), &r, NULL),
                   0);
  json_t *j = json_loads(toolcall_wire_calls(r, &n)[0].arguments, 0, NULL);
  assert_non_null(j);
  assert_true(json_real_value(json_object_get(j, "x")) == 0.1 + 0.2);
  json_decref(j);
  toolcall_wire_response_free(r);
}

/* ---- round trips: parse, dispatch, write, read back ---- */

typedef struct {
  uv_loop_t loop;
  toolcall_registry_t *reg;
  toolcall_manager_t *m;
  toolcall_batch_t *batch; /* the last finished batch */
  int batch_cb_runs;
  int close_cb_runs;
} rt_t;

/* Worker tool: "sunny in <location>"; retry if the arguments are not a JSON
 * object (the manager may already have said so), error without location. */
static void tool_weather(toolcall_call_t *call, void *data) {
  (void)data;
  size_t len;
  const char *args = toolcall_call_arguments(call, &len);
  json_t *j = json_loadb(args, len, 0, NULL);
  if (!json_is_object(j)) {
    json_decref(j);
    toolcall_call_complete(call, TOOLCALL_RETRY,
                           "arguments must be a JSON object", 0);
    return;
  }
  const char *loc = json_string_value(json_object_get(j, "location"));
  char out[256];
  if (loc == NULL) {
    toolcall_call_complete(call, TOOLCALL_TOOL_ERROR, "location is required",
                           0);
  } else {
    snprintf(out, sizeof(out), "sunny in %s", loc);
    toolcall_call_complete(call, TOOLCALL_OK, out, 0);
  }
  json_decref(j);
}

/* Loop tool: fails at once. */
static void tool_time(toolcall_call_t *call, void *data) {
  (void)data;
  toolcall_call_complete(call, TOOLCALL_TOOL_ERROR, "time service unavailable",
                         0);
}

/* Loop tool: text that is not UTF-8, and a NUL byte. */
static void tool_raw(toolcall_call_t *call, void *data) {
  (void)data;
  if (strstr(toolcall_call_arguments(call, NULL), "nul") != NULL)
    toolcall_call_complete(call, TOOLCALL_OK, "x\0y", 3);
  else
    toolcall_call_complete(call, TOOLCALL_OK, "a\xff" "b\xE2\x82", 5);
}

static void add_tool(toolcall_registry_t *reg, const char *name,
                     const char *description, const char *schema,
                     toolcall_tool_kind_t kind, toolcall_tool_fn fn) {
  toolcall_tool_t def;
  toolcall_tool_init(&def);
  def.name = name;
  def.description = description;
  def.schema = schema;
  def.kind = kind;
  def.fn = fn;
  toolcall_error_t err;
  if (toolcall_registry_add(reg, &def, &err) != 0)
    fail_msg("add %s: %s", name, err.message);
}

static int rt_setup(void **state) {
  rt_t *t = calloc(1, sizeof(*t));
  assert_non_null(t);
  assert_int_equal(uv_loop_init(&t->loop), 0);
  assert_int_equal(toolcall_registry_new(&t->reg), 0);
  add_tool(t->reg, "get_weather", "Current weather for a location.", NULL,
           TOOLCALL_TOOL_WORKER, tool_weather);
  add_tool(t->reg, "get_time", "Current time in a timezone.", NULL,
           TOOLCALL_TOOL_LOOP, tool_time);
  add_tool(t->reg, "raw", NULL, NULL, TOOLCALL_TOOL_LOOP, tool_raw);
  toolcall_manager_options_t opts;
  toolcall_manager_options_init(&opts);
  opts.registry = t->reg;
  opts.data = t;
  assert_int_equal(toolcall_manager_new(&t->m, &t->loop, &opts), 0);
  *state = t;
  return 0;
}

static void rt_on_close(toolcall_manager_t *m) {
  rt_t *t = toolcall_manager_data(m);
  t->close_cb_runs++;
}

static int rt_teardown(void **state) {
  rt_t *t = *state;
  assert_int_equal(toolcall_manager_close(t->m, rt_on_close), 0);
  assert_int_equal(uv_run(&t->loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(t->close_cb_runs, 1);
  assert_int_equal(uv_loop_close(&t->loop), 0);
  toolcall_registry_free(t->reg);
  free(t);
  return 0;
}

static void rt_on_batch(toolcall_batch_t *b, int status) {
  rt_t *t = toolcall_batch_data(b);
  assert_int_equal(status, 0);
  t->batch_cb_runs++;
  t->batch = b;
}

/* Submit a response's calls and run the loop until they are done. */
static toolcall_batch_t *rt_run(rt_t *t, const toolcall_wire_response_t *r) {
  size_t n;
  const toolcall_call_spec_t *c = toolcall_wire_calls(r, &n);
  assert_true(n > 0);
  toolcall_error_t err;
  int runs = t->batch_cb_runs;
  int rc = toolcall_batch_submit(t->m, c, n, NULL, rt_on_batch, t, NULL, &err);
  if (rc != 0)
    fail_msg("submit: %s", err.message);
  assert_int_equal(uv_run(&t->loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(t->batch_cb_runs, runs + 1);
  assert_int_equal(toolcall_batch_size(t->batch), n);
  return t->batch;
}

/* What the model must read for result i. */
static void expected_text(const toolcall_result_t *res, char *buf,
                          size_t size) {
  if (res->status == TOOLCALL_OK)
    snprintf(buf, size, "%.*s", (int)res->output_len, res->output);
  else if (res->status == TOOLCALL_TOOL_ERROR)
    snprintf(buf, size, "error: %s", res->message);
  else
    snprintf(buf, size, "error (%s): %s", toolcall_status_name(res->status),
             res->message);
}

static const char *str_at(const json_t *obj, const char *key) {
  const char *s = json_string_value(json_object_get(obj, key));
  if (s == NULL)
    fail_msg("no string member '%s'", key);
  return s;
}

/* Write b's results in f, read them back and check every field. Returns
 * the parsed JSON (the caller frees it). */
static json_t *check_results(toolcall_wire_format_t f,
                             const toolcall_batch_t *b) {
  char *out = NULL;
  size_t len = 0;
  toolcall_error_t err;
  assert_int_equal(toolcall_wire_write_results(f, b, &out, &len, &err), 0);
  assert_non_null(out);
  assert_int_equal(len, strlen(out));
  json_error_t jerr;
  json_t *root = json_loadb(out, len, JSON_REJECT_DUPLICATES, &jerr);
  if (root == NULL)
    fail_msg("written results are not JSON: %s: %s", jerr.text, out);
  toolcall_wire_free(out);

  const json_t *list = root;
  if (f == TOOLCALL_WIRE_ANTHROPIC || f == TOOLCALL_WIRE_GEMINI) {
    assert_true(json_is_object(root));
    assert_int_equal(json_object_size(root), 2);
    assert_string_equal(str_at(root, "role"), "user");
    list = json_object_get(
        root, f == TOOLCALL_WIRE_ANTHROPIC ? "content" : "parts");
  }
  assert_true(json_is_array(list));
  size_t n = toolcall_batch_size(b);
  assert_int_equal(json_array_size(list), n);
  for (size_t i = 0; i < n; i++) {
    const toolcall_result_t *res = toolcall_batch_result(b, i);
    const json_t *e = json_array_get(list, i);
    char want[1024];
    expected_text(res, want, sizeof(want));
    bool failed = res->status != TOOLCALL_OK;
    switch (f) {
    case TOOLCALL_WIRE_OPENAI_CHAT:
      assert_int_equal(json_object_size(e), 3);
      assert_string_equal(str_at(e, "role"), "tool");
      assert_string_equal(str_at(e, "tool_call_id"), res->id);
      assert_string_equal(str_at(e, "content"), want);
      break;
    case TOOLCALL_WIRE_OPENAI_RESPONSES:
      assert_int_equal(json_object_size(e), 3);
      assert_string_equal(str_at(e, "type"), "function_call_output");
      assert_string_equal(str_at(e, "call_id"), res->id);
      assert_string_equal(str_at(e, "output"), want);
      break;
    case TOOLCALL_WIRE_ANTHROPIC:
      assert_int_equal(json_object_size(e), failed ? 4 : 3);
      assert_string_equal(str_at(e, "type"), "tool_result");
      assert_string_equal(str_at(e, "tool_use_id"), res->id);
      assert_string_equal(str_at(e, "content"), want);
      if (failed)
        assert_true(json_is_true(json_object_get(e, "is_error")));
      else
        assert_null(json_object_get(e, "is_error"));
      break;
    default: {
      assert_int_equal(json_object_size(e), 1);
      const json_t *fr = json_object_get(e, "functionResponse");
      assert_true(json_is_object(fr));
      assert_string_equal(str_at(fr, "name"), res->tool);
      if (is_generated(res->id)) {
        assert_null(json_object_get(fr, "id"));
        assert_int_equal(json_object_size(fr), 2);
      } else {
        assert_string_equal(str_at(fr, "id"), res->id);
        assert_int_equal(json_object_size(fr), 3);
      }
      const json_t *resp = json_object_get(fr, "response");
      assert_int_equal(json_object_size(resp), 1);
      assert_string_equal(str_at(resp, failed ? "error" : "output"), want);
      break;
    }
    }
  }
  return root;
}

static void assert_status(const toolcall_batch_t *b, size_t i,
                          toolcall_status_t st, const char *text_start) {
  const toolcall_result_t *res = toolcall_batch_result(b, i);
  if (res->status != st)
    fail_msg("call %zu: %s, want %s (%s)", i, toolcall_status_name(res->status),
             toolcall_status_name(st),
             res->message != NULL ? res->message : "");
  if (text_start != NULL) {
    char text[1024];
    expected_text(res, text, sizeof(text));
    if (strncmp(text, text_start, strlen(text_start)) != 0)
      fail_msg("call %zu: '%s' does not start with '%s'", i, text, text_start);
  }
}

static void roundtrip(rt_t *t, int fi) {
  toolcall_wire_format_t f = formats[fi];

  /* Parallel calls: two ok (worker threads), one tool error (loop). */
  toolcall_wire_response_t *r = parse_fixture(fi, "parallel");
  toolcall_batch_t *b = rt_run(t, r);
  size_t n;
  const toolcall_call_spec_t *c = toolcall_wire_calls(r, &n);
  for (size_t i = 0; i < n; i++)
    assert_string_equal(toolcall_batch_result(b, i)->id, c[i].id);
  assert_status(b, 0, TOOLCALL_OK, "sunny in Paris, France");
  assert_status(b, 1, TOOLCALL_OK, "sunny in Tokyo, Japan");
  assert_status(b, 2, TOOLCALL_TOOL_ERROR, "error: time service unavailable");
  json_decref(check_results(f, b));
  toolcall_batch_free(b);
  toolcall_wire_response_free(r);

  /* Malformed calls: each ends with a status the model can read. */
  r = parse_fixture(fi, "malformed");
  b = rt_run(t, r);
  c = toolcall_wire_calls(r, &n);
  for (size_t i = 0; i < n; i++)
    assert_string_equal(toolcall_batch_result(b, i)->id, c[i].id);
  assert_status(b, 0, TOOLCALL_RETRY, "error (retry): ");
  assert_status(b, 1, TOOLCALL_UNKNOWN_TOOL, "error (unknown_tool): ");
  assert_contains(toolcall_batch_result(b, 1)->message, "get_weather");
  assert_status(b, 2, TOOLCALL_UNKNOWN_TOOL, "error (unknown_tool): ");
  if (f == TOOLCALL_WIRE_GEMINI)
    assert_status(b, 3, TOOLCALL_UNKNOWN_TOOL, "error (unknown_tool): ");
  else
    assert_status(b, 3, TOOLCALL_TOOL_ERROR, "error: time service");
  json_decref(check_results(f, b));
  toolcall_batch_free(b);
  toolcall_wire_response_free(r);

  /* Gemini's own ids go back; a mix of given and generated ids. */
  if (f == TOOLCALL_WIRE_GEMINI) {
    r = parse_fixture(fi, "text_and_calls");
    b = rt_run(t, r);
    assert_status(b, 0, TOOLCALL_OK, "sunny in Paris, France");
    json_t *root = check_results(f, b);
    const json_t *fr = json_object_get(
        json_array_get(json_object_get(root, "parts"), 0), "functionResponse");
    assert_string_equal(str_at(fr, "id"), "fc-8e4c2a1b-3d5f-4e6a-9b7c");
    json_decref(root);
    toolcall_batch_free(b);
    toolcall_wire_response_free(r);
  }
}

static void test_wire_roundtrip_openai_chat(void **state) {
  roundtrip(*state, 0);
}
static void test_wire_roundtrip_responses(void **state) {
  roundtrip(*state, 1);
}
static void test_wire_roundtrip_anthropic(void **state) {
  roundtrip(*state, 2);
}
static void test_wire_roundtrip_gemini(void **state) { roundtrip(*state, 3); }

/* The whole turn as a host runs it: admit, parse, count the usage, run the
 * calls. Only the host's commit counts tokens: one request per response,
 * its tokens as the format maps them. */
static void test_wire_roundtrip_usage(void **state) {
  rt_t *t = *state;
  toolcall_ledger_t *ledger = toolcall_manager_ledger(t->m);
  toolcall_snapshot_t s;
  /* per format: input, output, cache read, cache write of *_parallel */
  static const uint64_t want[N_FORMATS][4] = {{1117, 89, 1024, 0},
                                              {2048, 312, 1536, 0},
                                              {4672, 165, 3000, 1200},
                                              {1450, 280, 1024, 0}};
  uint64_t sum[4] = {0, 0, 0, 0};
  for (int fi = 0; fi < N_FORMATS; fi++) {
    assert_int_equal(toolcall_ledger_admit_request(ledger, NULL), 0);
    toolcall_wire_response_t *r = parse_fixture(fi, "parallel");
    assert_int_equal(toolcall_ledger_snapshot(ledger, &s), 0);
    assert_int_equal(s.usage.requests, (uint64_t)fi); /* parsing counts 0 */
    assert_int_equal(s.usage.input_tokens, sum[0]);
    toolcall_usage_t u;
    assert_int_equal(toolcall_wire_usage(r, &u), 0);
    assert_int_equal(toolcall_ledger_commit_request(ledger, &u, NULL), 0);
    toolcall_batch_t *b = rt_run(t, r);
    toolcall_batch_free(b);
    toolcall_wire_response_free(r);
    for (int k = 0; k < 4; k++)
      sum[k] += want[fi][k];
    assert_int_equal(toolcall_ledger_snapshot(ledger, &s), 0);
    assert_int_equal(s.usage.requests, (uint64_t)fi + 1);
    assert_int_equal(s.usage.input_tokens, sum[0]);
    assert_int_equal(s.usage.output_tokens, sum[1]);
    assert_int_equal(s.usage.cache_read_tokens, sum[2]);
    assert_int_equal(s.usage.cache_write_tokens, sum[3]);
    assert_int_equal(s.reserved_requests, 0);
    assert_int_equal(s.dispatched, 3 * ((uint64_t)fi + 1));
    assert_int_equal(s.tool_calls, 2 * ((uint64_t)fi + 1));
  }
}

/* Output that is not UTF-8 is repaired; a NUL byte is escaped. */
static void test_wire_results_raw_output(void **state) {
  rt_t *t = *state;
  static const char body[] =
      "{\"choices\":[{\"message\":{\"tool_calls\":["
      "{\"id\":\"call_1\",\"function\":{\"name\":\"raw\",\"arguments\":\"{}\"}},"
      "{\"id\":\"call_2\",\"function\":{\"name\":\"raw\",\"arguments\":"
      "\"{\\\"nul\\\":1}\"}}]}}]}";
  toolcall_wire_response_t *r = NULL;
  assert_int_equal(toolcall_wire_parse(TOOLCALL_WIRE_OPENAI_CHAT, body,
                                       strlen(body), &r, NULL),
                   0);
  toolcall_batch_t *b = rt_run(t, r);
  for (int fi = 0; fi < N_FORMATS; fi++) {
    char *out;
    size_t len;
    assert_int_equal(
        toolcall_wire_write_results(formats[fi], b, &out, &len, NULL), 0);
    json_t *root = json_loadb(out, len, JSON_ALLOW_NUL, NULL);
    assert_non_null(root);
    toolcall_wire_free(out);
    const json_t *list = root;
    if (json_is_object(root))
      list = json_object_get(root, formats[fi] == TOOLCALL_WIRE_GEMINI
                                       ? "parts"
                                       : "content");
    const json_t *texts[2];
    for (size_t i = 0; i < 2; i++) {
      const json_t *e = json_array_get(list, i);
      switch (formats[fi]) {
      case TOOLCALL_WIRE_OPENAI_CHAT:
        texts[i] = json_object_get(e, "content");
        break;
      case TOOLCALL_WIRE_OPENAI_RESPONSES:
        texts[i] = json_object_get(e, "output");
        break;
      case TOOLCALL_WIRE_ANTHROPIC:
        texts[i] = json_object_get(e, "content");
        break;
      default:
        texts[i] = json_object_get(
            json_object_get(json_object_get(e, "functionResponse"),
                            "response"),
            "output");
        break;
      }
    }
    /* a, U+FFFD, b, then one U+FFFD per byte of the cut-off sequence */
    assert_string_equal(json_string_value(texts[0]),
                        "a\xEF\xBF\xBD"
                        "b\xEF\xBF\xBD\xEF\xBF\xBD");
    assert_int_equal(json_string_length(texts[1]), 3);
    assert_memory_equal(json_string_value(texts[1]), "x\0y", 3);
    json_decref(root);
  }
  toolcall_batch_free(b);
  toolcall_wire_response_free(r);
}

/* ---- every status, written for the model ---- */

/* A response body in format f holding n calls {id (NULL: none), name,
 * arguments as JSON text}, built with jansson in the provider's shape. */
typedef struct {
  const char *id;
  const char *name;
  const char *args;
} mk_call_t;

static char *make_body(toolcall_wire_format_t f, const mk_call_t *calls,
                       size_t n) {
  json_t *list = json_array();
  assert_non_null(list);
  for (size_t i = 0; i < n; i++) {
    json_t *args = json_loads(calls[i].args, 0, NULL);
    assert_non_null(args);
    json_t *e;
    switch (f) {
    case TOOLCALL_WIRE_OPENAI_CHAT:
      e = json_pack("{s:s?, s:s, s:{s:s, s:s}}", "id", calls[i].id, "type",
                    "function", "function", "name", calls[i].name,
                    "arguments", calls[i].args);
      json_decref(args);
      break;
    case TOOLCALL_WIRE_OPENAI_RESPONSES:
      e = json_pack("{s:s, s:s?, s:s, s:s, s:s}", "type", "function_call",
                    "call_id", calls[i].id, "name", calls[i].name, "arguments",
                    calls[i].args, "status", "completed");
      json_decref(args);
      break;
    case TOOLCALL_WIRE_ANTHROPIC:
      e = json_pack("{s:s, s:s?, s:s, s:o}", "type", "tool_use", "id",
                    calls[i].id, "name", calls[i].name, "input", args);
      break;
    default:
      e = json_pack("{s:{s:s, s:o, s:s?}}", "functionCall", "name",
                    calls[i].name, "args", args, "id", calls[i].id);
      break;
    }
    assert_non_null(e);
    assert_int_equal(json_array_append_new(list, e), 0);
  }
  json_t *root;
  switch (f) {
  case TOOLCALL_WIRE_OPENAI_CHAT:
    root = json_pack("{s:[{s:i, s:{s:s, s:n, s:o}, s:s}], s:{s:i, s:i}}",
                     "choices", "index", 0, "message", "role", "assistant",
                     "content", "tool_calls", list, "finish_reason",
                     "tool_calls", "usage", "prompt_tokens", 10,
                     "completion_tokens", 5);
    break;
  case TOOLCALL_WIRE_OPENAI_RESPONSES:
    root = json_pack("{s:s, s:o, s:{s:i, s:i}}", "object", "response",
                     "output", list, "usage", "input_tokens", 10,
                     "output_tokens", 5);
    break;
  case TOOLCALL_WIRE_ANTHROPIC:
    root = json_pack("{s:s, s:s, s:o, s:s, s:{s:i, s:i}}", "type", "message",
                     "role", "assistant", "content", list, "stop_reason",
                     "tool_use", "usage", "input_tokens", 10, "output_tokens",
                     5);
    break;
  default:
    root = json_pack("{s:[{s:{s:o, s:s}, s:s}], s:{s:i, s:i}}", "candidates",
                     "content", "parts", list, "role", "model",
                     "finishReason", "STOP", "usageMetadata",
                     "promptTokenCount", 10, "candidatesTokenCount", 5);
    break;
  }
  assert_non_null(root);
  char *text = json_dumps(root, JSON_COMPACT);
  assert_non_null(text);
  json_decref(root);
  return text;
}

static toolcall_wire_response_t *parse_made(toolcall_wire_format_t f,
                                            const mk_call_t *calls, size_t n) {
  char *body = make_body(f, calls, n);
  toolcall_wire_response_t *r = NULL;
  toolcall_error_t err;
  if (toolcall_wire_parse(f, body, strlen(body), &r, &err) != 0)
    fail_msg("%s: %s", body, err.message);
  free(body);
  size_t got;
  toolcall_wire_calls(r, &got);
  assert_int_equal(got, n);
  return r;
}

typedef struct {
  uv_loop_t loop;
  toolcall_registry_t *reg;
  toolcall_manager_t *m;
  toolcall_batch_t *batch;
  int batch_status;
  int batch_cb_runs;
  int close_cb_runs;
  atomic_int runs;        /* tool bodies entered */
  atomic_int cancel_runs; /* cancel functions called */
} st_t;

static void st_counting_tool(toolcall_call_t *call, void *data) {
  st_t *t = data;
  atomic_fetch_add(&t->runs, 1);
  toolcall_call_complete(call, TOOLCALL_OK, "done", 0);
}

/* Loop tool that never completes by itself: a timeout or a cancel ends it. */
static void st_hang(toolcall_call_t *call, void *data) {
  st_t *t = data;
  atomic_fetch_add(&t->runs, 1);
  (void)call;
}

static void st_hang_cancel(toolcall_call_t *call, void *data) {
  st_t *t = data;
  atomic_fetch_add(&t->cancel_runs, 1);
  /* the call already ended: this result is discarded */
  assert_int_equal(toolcall_call_complete(call, TOOLCALL_OK, "late", 0),
                   UV_ECANCELED);
}

static void st_on_batch(toolcall_batch_t *b, int status) {
  st_t *t = toolcall_batch_data(b);
  t->batch_cb_runs++;
  t->batch_status = status;
  t->batch = b;
}

static void st_on_close(toolcall_manager_t *m) {
  st_t *t = toolcall_manager_data(m);
  t->close_cb_runs++;
}

static void st_add(st_t *t, const char *name, const char *schema,
                   toolcall_tool_kind_t kind, toolcall_tool_fn fn,
                   unsigned flags) {
  toolcall_tool_t def;
  toolcall_tool_init(&def);
  def.name = name;
  def.description = "test tool";
  def.schema = schema;
  def.kind = kind;
  def.fn = fn;
  def.data = t;
  def.flags = flags;
  if (kind == TOOLCALL_TOOL_LOOP && fn == st_hang)
    def.cancel = st_hang_cancel;
  toolcall_error_t err;
  if (toolcall_registry_add(t->reg, &def, &err) != 0)
    fail_msg("add %s: %s", name, err.message);
}

static void st_open(st_t *t) {
  memset(t, 0, sizeof(*t));
  atomic_init(&t->runs, 0);
  atomic_init(&t->cancel_runs, 0);
  assert_int_equal(uv_loop_init(&t->loop), 0);
  assert_int_equal(toolcall_registry_new(&t->reg), 0);
}

static void st_start(st_t *t) {
  toolcall_manager_options_t opts;
  toolcall_manager_options_init(&opts);
  opts.registry = t->reg;
  opts.data = t;
  assert_int_equal(toolcall_manager_new(&t->m, &t->loop, &opts), 0);
}

static void st_close(st_t *t) {
  assert_int_equal(toolcall_manager_close(t->m, st_on_close), 0);
  assert_int_equal(uv_run(&t->loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(t->close_cb_runs, 1);
  assert_int_equal(uv_loop_close(&t->loop), 0);
  toolcall_registry_free(t->reg);
}

/* Run the batch of r to its end; returns it (the caller frees it). */
static toolcall_batch_t *st_run(st_t *t, const toolcall_wire_response_t *r,
                                const toolcall_batch_options_t *opts,
                                bool cancel, int want_status) {
  size_t n;
  const toolcall_call_spec_t *c = toolcall_wire_calls(r, &n);
  toolcall_error_t err;
  toolcall_batch_t *b = NULL;
  int runs = t->batch_cb_runs;
  if (toolcall_batch_submit(t->m, c, n, opts, st_on_batch, t, &b, &err) != 0)
    fail_msg("submit: %s", err.message);
  if (cancel)
    assert_int_equal(toolcall_batch_cancel(b), 0);
  assert_int_equal(uv_run(&t->loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(t->batch_cb_runs, runs + 1);
  assert_ptr_equal(t->batch, b);
  assert_int_equal(t->batch_status, want_status);
  assert_int_equal(toolcall_batch_size(b), n);
  return b;
}

/* Every status a call can end with reaches the model as readable text, in
 * every format: ok, tool_error, retry, unknown_tool, timed_out, rejected and
 * deferred in one batch; cancelled in a cancelled batch; denied in a
 * resumed one. */
static void test_wire_results_every_status(void **state) {
  (void)state;
  st_t t;
  st_open(&t);
  st_add(&t, "get_weather", NULL, TOOLCALL_TOOL_WORKER, st_counting_tool, 0);
  st_add(&t, "get_time", NULL, TOOLCALL_TOOL_LOOP, tool_time, 0);
  st_add(&t, "hang", NULL, TOOLCALL_TOOL_LOOP, st_hang, 0);
  st_add(&t, "delete_file", NULL, TOOLCALL_TOOL_WORKER, st_counting_tool,
         TOOLCALL_TOOL_REQUIRES_APPROVAL);
  st_add(&t, "limited", NULL, TOOLCALL_TOOL_WORKER, st_counting_tool, 0);
  st_start(&t);
  assert_int_equal(
      toolcall_ledger_set_tool_limit(toolcall_manager_ledger(t.m), "limited",
                                     0),
      0);
  toolcall_batch_options_t partial;
  toolcall_batch_options_init(&partial);
  partial.limit_policy = TOOLCALL_POLICY_PARTIAL;

  static const mk_call_t mixed[] = {
      {"call_ok", "get_weather", "{\"location\":\"Paris\"}"},
      {"call_err", "get_time", "{}"},
      {"call_retry", "get_weather", "[1,2]"},
      {"call_unknown", "get_wether", "{}"},
      {"call_slow", "hang", "{}"},
      {"call_defer", "delete_file", "{\"path\":\"/tmp/x\"}"},
      {"call_limit", "limited", "{}"},
  };
  static const struct {
    toolcall_status_t st;
    const char *text;
  } want[] = {
      {TOOLCALL_OK, "done"},
      {TOOLCALL_TOOL_ERROR, "error: time service unavailable"},
      {TOOLCALL_RETRY, "error (retry): "},
      {TOOLCALL_UNKNOWN_TOOL, "error (unknown_tool): "},
      {TOOLCALL_TIMED_OUT, "error (timed_out): "},
      {TOOLCALL_DEFERRED, "error (deferred): "},
      {TOOLCALL_REJECTED, "error (rejected): "},
  };
  size_t nmixed = sizeof(mixed) / sizeof(mixed[0]);
  for (int fi = 0; fi < N_FORMATS; fi++) {
    toolcall_wire_format_t f = formats[fi];
    /* Gemini: the calls come without ids, as Gemini sends them */
    mk_call_t calls[sizeof(mixed) / sizeof(mixed[0])];
    memcpy(calls, mixed, sizeof(calls));
    if (f == TOOLCALL_WIRE_GEMINI)
      for (size_t i = 0; i < nmixed; i++)
        calls[i].id = NULL;
    toolcall_wire_response_t *r = parse_made(f, calls, nmixed);
    size_t n;
    const toolcall_call_spec_t *c = toolcall_wire_calls(r, &n);
    /* the timeout is the call's: the host sets it on the spec it got */
    toolcall_call_spec_t specs[sizeof(mixed) / sizeof(mixed[0])];
    memcpy(specs, c, sizeof(specs));
    specs[4].timeout_ms = 1;
    toolcall_batch_t *b = NULL;
    toolcall_error_t err;
    int runs = t.batch_cb_runs;
    if (toolcall_batch_submit(t.m, specs, n, &partial, st_on_batch, &t, &b,
                              &err) != 0)
      fail_msg("submit: %s", err.message);
    assert_int_equal(uv_run(&t.loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(t.batch_cb_runs, runs + 1);
    assert_int_equal(t.batch_status, 0);
    for (size_t i = 0; i < n; i++) {
      assert_string_equal(toolcall_batch_result(b, i)->id, c[i].id);
      assert_status(b, i, want[i].st, want[i].text);
    }
    json_t *root = check_results(f, b);
    /* the deferred call's text says it waits for approval; the unknown
     * tool's lists the tools; no text is empty */
    for (size_t i = 0; i < n; i++)
      assert_true(toolcall_batch_result(b, i)->status == TOOLCALL_OK ||
                  strlen(toolcall_batch_result(b, i)->message) > 0);
    assert_contains(toolcall_batch_result(b, 3)->message, "get_weather");
    json_decref(root);

    /* denied: the host refuses the deferred call */
    toolcall_decision_t d;
    memset(&d, 0, sizeof(d));
    d.call = c[5];
    d.approved = 0;
    d.message = "the user refused to delete /tmp/x";
    runs = t.batch_cb_runs;
    toolcall_batch_t *b2 = NULL;
    if (toolcall_batch_resume(t.m, &d, 1, NULL, st_on_batch, &t, &b2, &err) !=
        0)
      fail_msg("resume: %s", err.message);
    assert_int_equal(uv_run(&t.loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(t.batch_cb_runs, runs + 1);
    assert_int_equal(t.batch_status, 0);
    assert_string_equal(toolcall_batch_result(b2, 0)->id, c[5].id);
    assert_status(b2, 0, TOOLCALL_DENIED,
                  "error (denied): the user refused to delete /tmp/x");
    json_decref(check_results(f, b2));
    toolcall_batch_free(b2);
    toolcall_batch_free(b);
    toolcall_wire_response_free(r);

    /* cancelled: the host cancels the batch */
    static const mk_call_t slow[] = {{"call_c1", "hang", "{}"},
                                     {"call_c2", "hang", "{}"}};
    memcpy(calls, slow, sizeof(slow));
    if (f == TOOLCALL_WIRE_GEMINI)
      calls[0].id = calls[1].id = NULL;
    r = parse_made(f, calls, 2);
    b = st_run(&t, r, NULL, true, UV_ECANCELED);
    assert_status(b, 0, TOOLCALL_CANCELLED, "error (cancelled): ");
    assert_status(b, 1, TOOLCALL_CANCELLED, "error (cancelled): ");
    json_decref(check_results(f, b));
    toolcall_batch_free(b);
    toolcall_wire_response_free(r);
  }
  /* per format: get_weather ok (1), the hanging call (1), maybe the
   * cancelled ones if they had started; delete_file and limited never ran */
  assert_true(atomic_load(&t.runs) >= 2 * N_FORMATS);
  assert_true(atomic_load(&t.runs) <= 4 * N_FORMATS);
  assert_int_equal(atomic_load(&t.cancel_runs), atomic_load(&t.runs) -
                                                    N_FORMATS);
  toolcall_snapshot_t s;
  assert_int_equal(toolcall_ledger_snapshot(toolcall_manager_ledger(t.m), &s),
                   0);
  for (int st = 0; st < TOOLCALL_STATUS_COUNT; st++) {
    uint64_t w = st == TOOLCALL_CANCELLED ? 2 : 1;
    if (s.calls[st] != w * N_FORMATS)
      fail_msg("calls[%s] = %llu, want %llu", toolcall_status_name(st),
               (unsigned long long)s.calls[st],
               (unsigned long long)(w * N_FORMATS));
  }
  st_close(&t);
}

/* Arguments that break the tool's schema end as retry with the path and the
 * rule, and the tool never runs, in every format; the written result
 * carries the same sentence. */
static void test_wire_schema_retry(void **state) {
  (void)state;
  static const char schema[] =
      "{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\","
      "\"minLength\":2},\"nights\":{\"type\":\"integer\",\"minimum\":1}},"
      "\"required\":[\"city\"],\"additionalProperties\":false}";
  static const mk_call_t bad[] = {
      {"call_b1", "book_hotel", "{}"},
      {"call_b2", "book_hotel", "{\"city\":\"Oslo\",\"nights\":0}"},
      {"call_b3", "book_hotel", "{\"city\":\"Oslo\",\"pet\":\"cat\"}"},
      {"call_b4", "book_hotel", "{\"city\":\"Z\"}"},
      {"call_b5", "book_hotel", "{\"city\":[\"Oslo\"]}"},
  };
  static const char *const why[] = {
      "$.city: required property missing",
      "$.nights: must be at least 1",
      "$.pet: additional property not allowed",
      "$.city: must be at least 2 characters long",
      "$.city: must be a string",
  };
  size_t nbad = sizeof(bad) / sizeof(bad[0]);
  st_t t;
  st_open(&t);
  st_add(&t, "book_hotel", schema, TOOLCALL_TOOL_WORKER, st_counting_tool, 0);
  st_start(&t);
  for (int fi = 0; fi < N_FORMATS; fi++) {
    toolcall_wire_format_t f = formats[fi];
    toolcall_wire_response_t *r = parse_made(f, bad, nbad);
    toolcall_batch_t *b = st_run(&t, r, NULL, false, 0);
    assert_int_equal(atomic_load(&t.runs), 0); /* the tool never ran */
    json_t *root = check_results(f, b);
    const json_t *list = json_is_array(root)
                             ? root
                             : json_object_get(root, f == TOOLCALL_WIRE_GEMINI
                                                         ? "parts"
                                                         : "content");
    for (size_t i = 0; i < nbad; i++) {
      const toolcall_result_t *res = toolcall_batch_result(b, i);
      assert_int_equal(res->status, TOOLCALL_RETRY);
      assert_string_equal(res->message, why[i]);
      char text[256];
      snprintf(text, sizeof(text), "error (retry): %s", why[i]);
      const json_t *e = json_array_get(list, i);
      const json_t *s;
      switch (f) {
      case TOOLCALL_WIRE_OPENAI_CHAT:
        s = json_object_get(e, "content");
        break;
      case TOOLCALL_WIRE_OPENAI_RESPONSES:
        s = json_object_get(e, "output");
        break;
      case TOOLCALL_WIRE_ANTHROPIC:
        s = json_object_get(e, "content");
        assert_true(json_is_true(json_object_get(e, "is_error")));
        break;
      default:
        s = json_object_get(
            json_object_get(json_object_get(e, "functionResponse"),
                            "response"),
            "error");
        break;
      }
      assert_string_equal(json_string_value(s), text);
    }
    json_decref(root);
    toolcall_batch_free(b);
    toolcall_wire_response_free(r);
  }
  /* the same tool runs for arguments that fit */
  static const mk_call_t good[] = {
      {"call_g1", "book_hotel", "{\"city\":\"Zürich\",\"nights\":2}"}};
  toolcall_wire_response_t *r = parse_made(TOOLCALL_WIRE_ANTHROPIC, good, 1);
  toolcall_batch_t *b = st_run(&t, r, NULL, false, 0);
  assert_status(b, 0, TOOLCALL_OK, "done");
  assert_int_equal(atomic_load(&t.runs), 1);
  toolcall_batch_free(b);
  toolcall_wire_response_free(r);
  toolcall_snapshot_t s;
  assert_int_equal(toolcall_ledger_snapshot(toolcall_manager_ledger(t.m), &s),
                   0);
  assert_int_equal(s.calls[TOOLCALL_RETRY], nbad * N_FORMATS);
  assert_int_equal(s.tool_calls, 1);
  st_close(&t);
}

static int gem_close_runs;

static void gem_on_batch(toolcall_batch_t *b, int status) {
  int *runs = toolcall_batch_data(b);
  assert_int_equal(status, 0);
  (*runs)++;
}

static void gem_on_close(toolcall_manager_t *m) {
  (void)m;
  gem_close_runs++;
}

/* Gemini ids: the same body gives the same ids, whatever its spacing;
 * identical calls in one response still get distinct ids; an id Gemini
 * sent is kept. */
static void test_wire_gemini_ids(void **state) {
  (void)state;
  static const char a[] =
      "{\"candidates\":[{\"content\":{\"parts\":["
      "{\"functionCall\":{\"name\":\"get_time\",\"args\":{\"tz\":\"UTC\"}}},"
      "{\"functionCall\":{\"name\":\"get_time\",\"args\":{\"tz\":\"UTC\"}}},"
      "{\"functionCall\":{\"name\":\"get_time\",\"args\":{\"tz\":\"UTC\"},"
      "\"id\":\"fc-given\"}},"
      "{\"functionCall\":{\"name\":\"get_time\"}},"
      "{\"functionCall\":{\"name\":\"get_date\"}}]}}]}";
  static const char b[] =
      "{ \"candidates\" : [ { \"content\" : { \"parts\" : [\n"
      "  { \"functionCall\" : { \"name\" : \"get_time\", \"args\" : { \"tz\" : "
      "\"UTC\" } } },\n"
      "  { \"functionCall\" : { \"name\" : \"get_time\", \"args\" : {\"tz\":"
      "\"UTC\"} } },\n"
      "  { \"functionCall\" : { \"id\" : \"fc-given\", \"name\" : \"get_time\","
      " \"args\" : {\"tz\":\"UTC\"} } },\n"
      "  { \"functionCall\" : { \"name\" : \"get_time\" } },\n"
      "  { \"functionCall\" : { \"name\" : \"get_date\", \"args\" : null } }\n"
      "] } } ] }\n";
  toolcall_wire_response_t *ra = NULL, *ra2 = NULL, *rb = NULL;
  assert_int_equal(
      toolcall_wire_parse(TOOLCALL_WIRE_GEMINI, a, strlen(a), &ra, NULL), 0);
  assert_int_equal(
      toolcall_wire_parse(TOOLCALL_WIRE_GEMINI, a, strlen(a), &ra2, NULL), 0);
  assert_int_equal(
      toolcall_wire_parse(TOOLCALL_WIRE_GEMINI, b, strlen(b), &rb, NULL), 0);
  size_t na, na2, nb;
  const toolcall_call_spec_t *ca = toolcall_wire_calls(ra, &na);
  const toolcall_call_spec_t *ca2 = toolcall_wire_calls(ra2, &na2);
  const toolcall_call_spec_t *cb = toolcall_wire_calls(rb, &nb);
  assert_int_equal(na, 5);
  assert_int_equal(na2, 5);
  assert_int_equal(nb, 5);
  for (size_t i = 0; i < na; i++) {
    assert_string_equal(ca[i].id, ca2[i].id);
    assert_string_equal(ca[i].id, cb[i].id);
    if (i == 2)
      assert_string_equal(ca[i].id, "fc-given");
    else
      assert_generated(ca[i].id, i);
    for (size_t j = 0; j < i; j++)
      assert_string_not_equal(ca[i].id, ca[j].id);
  }
  /* the hash part tells calls apart, not only the index: the two calls
   * without arguments differ by name alone */
  assert_string_not_equal(strchr(ca[3].id + strlen(TOOLCALL_WIRE_GENERATED_ID_PREFIX), '_'),
                          strchr(ca[4].id + strlen(TOOLCALL_WIRE_GENERATED_ID_PREFIX), '_'));
  /* the same call at the same place gives the same hash */
  assert_string_equal(strchr(ca[0].id + strlen(TOOLCALL_WIRE_GENERATED_ID_PREFIX), '_'),
                      strchr(ca[1].id + strlen(TOOLCALL_WIRE_GENERATED_ID_PREFIX), '_'));
  /* the arguments are in the hash too: the same tool at the same place with
   * other arguments (a later turn) gets another id */
  static const char other[] =
      "{\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{"
      "\"name\":\"get_time\",\"args\":{\"tz\":\"CET\"}}}]}}]}";
  toolcall_wire_response_t *ro = NULL;
  assert_int_equal(toolcall_wire_parse(TOOLCALL_WIRE_GEMINI, other,
                                       strlen(other), &ro, NULL),
                   0);
  size_t no;
  const toolcall_call_spec_t *co = toolcall_wire_calls(ro, &no);
  assert_int_equal(no, 1);
  assert_generated(co[0].id, 0);
  assert_string_not_equal(co[0].id, ca[0].id);
  toolcall_wire_response_free(ro);
  /* the ids are accepted by submit as they are: unique, short enough */
  uv_loop_t loop;
  assert_int_equal(uv_loop_init(&loop), 0);
  toolcall_registry_t *reg;
  assert_int_equal(toolcall_registry_new(&reg), 0);
  add_tool(reg, "get_time", NULL, NULL, TOOLCALL_TOOL_LOOP, tool_time);
  toolcall_manager_options_t opts;
  toolcall_manager_options_init(&opts);
  opts.registry = reg;
  toolcall_manager_t *m;
  assert_int_equal(toolcall_manager_new(&m, &loop, &opts), 0);
  static int cb_runs;
  cb_runs = 0;
  gem_close_runs = 0;
  toolcall_error_t err;
  toolcall_batch_t *batch = NULL;
  assert_int_equal(toolcall_batch_submit(m, ca, na, NULL, gem_on_batch,
                                         &cb_runs, &batch, &err),
                   0);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(cb_runs, 1);
  /* written back: the generated ids are left out, Gemini's own kept */
  char *out;
  assert_int_equal(toolcall_wire_write_results(TOOLCALL_WIRE_GEMINI, batch,
                                               &out, NULL, NULL),
                   0);
  json_t *root = json_loads(out, 0, NULL);
  assert_non_null(root);
  toolcall_wire_free(out);
  const json_t *parts = json_object_get(root, "parts");
  assert_int_equal(json_array_size(parts), 5);
  for (size_t i = 0; i < 5; i++) {
    const json_t *fr =
        json_object_get(json_array_get(parts, i), "functionResponse");
    const json_t *id = json_object_get(fr, "id");
    if (i == 2)
      assert_string_equal(json_string_value(id), "fc-given");
    else
      assert_null(id);
    assert_string_equal(json_string_value(json_object_get(fr, "name")),
                        i == 4 ? "get_date" : "get_time");
  }
  json_decref(root);
  toolcall_batch_free(batch);
  assert_int_equal(toolcall_manager_close(m, gem_on_close), 0);
  assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(gem_close_runs, 1);
  assert_int_equal(uv_loop_close(&loop), 0);
  toolcall_registry_free(reg);
  toolcall_wire_response_free(ra);
  toolcall_wire_response_free(ra2);
  toolcall_wire_response_free(rb);
}

/* The host's turn for a bad body: admit the request, parse, and commit the
 * usage only if the parse worked (else release). For every kind of bad
 * input the parse fails with a clear error and the ledger ends exactly as
 * it began; a good body, in the same turn, does count (so the check can
 * fail). */
static int host_turn(toolcall_ledger_t *ledger, toolcall_wire_format_t f,
                     const char *body, size_t len, toolcall_error_t *err) {
  assert_int_equal(toolcall_ledger_admit_request(ledger, NULL), 0);
  toolcall_wire_response_t *r = (toolcall_wire_response_t *)&r;
  int rc = toolcall_wire_parse(f, body, len, &r, err);
  if (rc != 0) {
    assert_null(r);
    assert_int_equal(toolcall_ledger_release_request(ledger), 0);
    return rc;
  }
  toolcall_usage_t u;
  if (toolcall_wire_usage(r, &u) == 0)
    assert_int_equal(toolcall_ledger_commit_request(ledger, &u, NULL), 0);
  else
    assert_int_equal(toolcall_ledger_release_request(ledger), 0);
  toolcall_wire_response_free(r);
  return 0;
}

static void test_wire_bad_input_counts_nothing(void **state) {
  (void)state;
  toolcall_ledger_t *ledger;
  assert_int_equal(toolcall_ledger_new(&ledger), 0);
  toolcall_snapshot_t before, after;
  assert_int_equal(toolcall_ledger_snapshot(ledger, &before), 0);

  /* every body carries usage, so that a parse that let it through would
   * show in the ledger */
  static const char usage[] =
      "\"usage\":{\"input_tokens\":7,\"output_tokens\":3}";
  char *big = malloc((size_t)64 * 1024 * 1024);
  assert_non_null(big);
  /* 64 MiB */
  size_t big_len = (size_t)64 * 1024 * 1024;
  int k = snprintf(big, 128, "{\"content\":[],%s,\"pad\":\"", usage);
  memset(big + k, 'x', big_len - (size_t)k - 2);
  memcpy(big + big_len - 2, "\"}", 2);
  toolcall_error_t err;
  assert_int_equal(host_turn(ledger, TOOLCALL_WIRE_ANTHROPIC, big, big_len,
                             &err),
                   UV_E2BIG);
  assert_contains(err.message, "anthropic: the body is 67108864 bytes");
  /* nesting 100,000 deep, in the arguments */
  enum { DEPTH = 100000 };
  k = snprintf(big, 256,
               "{%s,\"content\":[{\"type\":\"tool_use\",\"id\":\"t\","
               "\"name\":\"f\",\"input\":{\"a\":",
               usage);
  memset(big + k, '[', DEPTH);
  memset(big + k + DEPTH, ']', DEPTH);
  memcpy(big + k + 2 * DEPTH, "}}]}", 4);
  assert_int_equal(host_turn(ledger, TOOLCALL_WIRE_ANTHROPIC, big,
                             (size_t)k + 2 * DEPTH + 4, &err),
                   UV_EINVAL);
  assert_contains(err.message, "maximum parsing depth");
  /* and 100,000 deep in objects, for Gemini */
  k = snprintf(big, 256,
               "{\"usageMetadata\":{\"promptTokenCount\":7},\"candidates\":[{"
               "\"content\":{\"parts\":[{\"functionCall\":{\"name\":\"f\","
               "\"args\":");
  size_t pos = (size_t)k;
  for (int i = 0; i < DEPTH; i++) {
    memcpy(big + pos, "{\"a\":", 5);
    pos += 5;
  }
  memcpy(big + pos, "1", 1);
  pos++;
  memset(big + pos, '}', DEPTH);
  pos += DEPTH;
  memcpy(big + pos, "}}]}}]}", 7);
  pos += 7;
  assert_int_equal(host_turn(ledger, TOOLCALL_WIRE_GEMINI, big, pos, &err),
                   UV_EINVAL);
  assert_contains(err.message, "gemini: invalid JSON");
  free(big);

  static const struct {
    toolcall_wire_format_t f;
    const char *body;
    int code;
    const char *message;
  } cases[] = {
      /* invalid UTF-8 */
      {TOOLCALL_WIRE_OPENAI_CHAT,
       "{\"choices\":[{\"message\":{\"tool_calls\":[{\"id\":\"c\",\"function\":"
       "{\"name\":\"f\",\"arguments\":\"{\\\"p\\\":\\\"\xC0\xAF\\\"}\"}}]}}],"
       "\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":3}}",
       UV_EINVAL, "openai: invalid JSON"},
      {TOOLCALL_WIRE_OPENAI_RESPONSES,
       "{\"output\":[{\"type\":\"function_call\",\"call_id\":\"c\",\"name\":"
       "\"f\xff\",\"arguments\":\"{}\"}],\"usage\":{\"input_tokens\":7}}",
       UV_EINVAL, "responses: invalid JSON"},
      {TOOLCALL_WIRE_GEMINI,
       "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"\xED\xA0\x80\"}]"
       "}}],\"usageMetadata\":{\"promptTokenCount\":7}}",
       UV_EINVAL, "gemini: invalid JSON"},
      /* numbers out of range */
      {TOOLCALL_WIRE_OPENAI_CHAT,
       "{\"choices\":[{\"message\":{}}],\"usage\":{\"prompt_tokens\":7,"
       "\"completion_tokens\":18446744073709551616}}",
       UV_ERANGE, "too big integer"},
      {TOOLCALL_WIRE_GEMINI,
       "{\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{\"name\":"
       "\"f\",\"args\":{\"x\":1e400}}}]}}],\"usageMetadata\":{"
       "\"promptTokenCount\":7}}",
       UV_ERANGE, "real number overflow"},
      {TOOLCALL_WIRE_ANTHROPIC,
       "{\"content\":[],\"usage\":{\"input_tokens\":7,\"output_tokens\":-3}}",
       UV_ERANGE, "anthropic: usage.output_tokens is negative (-3)"},
      {TOOLCALL_WIRE_ANTHROPIC,
       "{\"content\":[],\"usage\":{\"input_tokens\":18446744073709551615,"
       "\"output_tokens\":3}}",
       UV_ERANGE, "too big integer"},
      /* duplicate keys */
      {TOOLCALL_WIRE_OPENAI_RESPONSES,
       "{\"output\":[],\"usage\":{\"input_tokens\":7,\"input_tokens\":70}}",
       UV_EINVAL, "duplicate object key"},
      {TOOLCALL_WIRE_ANTHROPIC,
       "{\"content\":[{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"rm\","
       "\"input\":{\"path\":\"/tmp/x\",\"path\":\"/\"}}],\"usage\":{"
       "\"input_tokens\":7}}",
       UV_EINVAL, "duplicate object key"},
  };
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    memset(&err, 0, sizeof(err));
    int rc = host_turn(ledger, cases[i].f, cases[i].body,
                       strlen(cases[i].body), &err);
    if (rc != cases[i].code)
      fail_msg("case %zu: %s (%s)", i, toolcall_err_name(rc), err.message);
    assert_contains(err.message, cases[i].message);
    assert_int_equal(err.code, rc);
  }
  assert_int_equal(toolcall_ledger_snapshot(ledger, &after), 0);
  assert_memory_equal(&before, &after, sizeof(before));

  /* the same turn with a good body counts */
  static const char good[] =
      "{\"content\":[],\"usage\":{\"input_tokens\":7,\"output_tokens\":3}}";
  assert_int_equal(
      host_turn(ledger, TOOLCALL_WIRE_ANTHROPIC, good, strlen(good), &err), 0);
  assert_int_equal(toolcall_ledger_snapshot(ledger, &after), 0);
  assert_int_equal(after.usage.requests, 1);
  assert_int_equal(after.usage.input_tokens, 7);
  assert_int_equal(after.usage.output_tokens, 3);
  toolcall_ledger_free(ledger);
}

/* ---- tool definitions ---- */

static const char weather_schema[] =
    "{\"type\":\"object\",\"properties\":{\"location\":{\"type\":\"string\"},"
    "\"unit\":{\"type\":\"string\",\"enum\":[\"celsius\",\"fahrenheit\"]},"
    "\"days\":{\"type\":\"number\",\"minimum\":0.1}},\"required\":["
    "\"location\"],\"additionalProperties\":false}";

static void nop_tool(toolcall_call_t *call, void *data) {
  (void)data;
  toolcall_call_complete(call, TOOLCALL_OK, NULL, 0);
}

static void test_wire_write_tools(void **state) {
  (void)state;
  toolcall_registry_t *reg;
  assert_int_equal(toolcall_registry_new(&reg), 0);
  add_tool(reg, "get_weather", "Current weather for a location.",
           weather_schema, TOOLCALL_TOOL_WORKER, nop_tool);
  add_tool(reg, "get_time", "Current time — in any “timezone”.", NULL,
           TOOLCALL_TOOL_LOOP, nop_tool);
  add_tool(reg, "ping", NULL, "{}", TOOLCALL_TOOL_WORKER, nop_tool);

  json_t *want_schema[3];
  want_schema[0] = json_loads(weather_schema, 0, NULL);
  want_schema[1] = json_loads("{\"type\":\"object\",\"properties\":{}}", 0, NULL);
  want_schema[2] = json_object();
  const char *names[3] = {"get_weather", "get_time", "ping"};
  const char *descs[3] = {"Current weather for a location.",
                          "Current time — in any “timezone”.", NULL};

  for (int fi = 0; fi < N_FORMATS; fi++) {
    toolcall_wire_format_t f = formats[fi];
    char *out;
    size_t len;
    toolcall_error_t err;
    assert_int_equal(toolcall_wire_write_tools(f, reg, &out, &len, &err), 0);
    assert_int_equal(len, strlen(out));
    /* the schema's reals as written */
    assert_contains(out, "\"minimum\":0.1}");
    json_t *root = json_loadb(out, len, JSON_REJECT_DUPLICATES, NULL);
    assert_non_null(root);
    toolcall_wire_free(out);
    assert_true(json_is_array(root));
    const json_t *list = root;
    if (f == TOOLCALL_WIRE_GEMINI) {
      assert_int_equal(json_array_size(root), 1);
      const json_t *tool = json_array_get(root, 0);
      assert_int_equal(json_object_size(tool), 1);
      list = json_object_get(tool, "functionDeclarations");
    }
    assert_int_equal(json_array_size(list), 3);
    for (size_t i = 0; i < 3; i++) {
      const json_t *e = json_array_get(list, i);
      const json_t *def = e;
      const char *schema_key = "parameters";
      size_t fields = 2 + (descs[i] != NULL);
      switch (f) {
      case TOOLCALL_WIRE_OPENAI_CHAT:
        assert_int_equal(json_object_size(e), 2);
        assert_string_equal(str_at(e, "type"), "function");
        def = json_object_get(e, "function");
        break;
      case TOOLCALL_WIRE_OPENAI_RESPONSES:
        assert_string_equal(str_at(e, "type"), "function");
        fields++;
        break;
      case TOOLCALL_WIRE_ANTHROPIC:
        schema_key = "input_schema";
        break;
      default:
        schema_key = "parametersJsonSchema";
        fields = 3; /* a description always */
        break;
      }
      assert_int_equal(json_object_size(def), fields);
      assert_string_equal(str_at(def, "name"), names[i]);
      if (descs[i] != NULL)
        assert_string_equal(str_at(def, "description"), descs[i]);
      else if (f == TOOLCALL_WIRE_GEMINI)
        assert_string_equal(str_at(def, "description"), "");
      else
        assert_null(json_object_get(def, "description"));
      assert_true(json_equal(json_object_get(def, schema_key), want_schema[i]));
    }
    json_decref(root);
  }
  for (int i = 0; i < 3; i++)
    json_decref(want_schema[i]);
  toolcall_registry_free(reg);

  /* No tools: an empty array in every format. */
  assert_int_equal(toolcall_registry_new(&reg), 0);
  for (int fi = 0; fi < N_FORMATS; fi++) {
    char *out;
    size_t len;
    assert_int_equal(toolcall_wire_write_tools(formats[fi], reg, &out, &len,
                                               NULL),
                     0);
    assert_string_equal(out, "[]");
    assert_int_equal(len, 2);
    toolcall_wire_free(out);
  }
  toolcall_registry_free(reg);
}

/* A schema that is not a JSON object: the registry refuses it at
 * registration or, if it stored it, write_tools refuses to write it. */
static void test_wire_write_tools_bad_schema(void **state) {
  (void)state;
  static const char *const schemas[] = {"{\"type\":", "[1,2]",
                                        "{\"a\":1,\"a\":2}"};
  for (size_t i = 0; i < sizeof(schemas) / sizeof(schemas[0]); i++) {
    toolcall_registry_t *reg;
    assert_int_equal(toolcall_registry_new(&reg), 0);
    add_tool(reg, "fine", NULL, NULL, TOOLCALL_TOOL_WORKER, nop_tool);
    toolcall_tool_t def;
    toolcall_tool_init(&def);
    def.name = "broken";
    def.schema = schemas[i];
    def.fn = nop_tool;
    int rc = toolcall_registry_add(reg, &def, NULL);
    if (rc == 0) {
      char *out = (char *)&out;
      toolcall_error_t err;
      assert_int_equal(toolcall_wire_write_tools(TOOLCALL_WIRE_ANTHROPIC, reg,
                                                 &out, NULL, &err),
                       UV_EINVAL);
      assert_null(out);
      assert_int_equal(err.index, 1);
      assert_contains(err.message, "tool 'broken': the schema is not a JSON "
                                   "object");
    } else {
      assert_int_equal(rc, UV_EINVAL);
    }
    toolcall_registry_free(reg);
  }
}

/* ---- out of memory ---- */

/* Allocators for the library and for jansson that fail the fail_at-th
 * allocation of one side (the library's or jansson's) and count the blocks
 * alive, so every error path is shown to free what it took. */
typedef enum { OOM_LIB = 0, OOM_JANSSON = 1 } oom_side_t;
static oom_side_t oom_side;
static long oom_fail_at; /* 0: never fail */
static long oom_count;
static long oom_live;

static bool oom_should_fail(oom_side_t side) {
  return oom_fail_at > 0 && side == oom_side && ++oom_count == oom_fail_at;
}
static void *oom_malloc(size_t size) {
  if (oom_should_fail(OOM_LIB))
    return NULL;
  void *p = malloc(size);
  oom_live += p != NULL;
  return p;
}
static void *oom_calloc(size_t count, size_t size) {
  if (oom_should_fail(OOM_LIB))
    return NULL;
  void *p = calloc(count, size);
  oom_live += p != NULL;
  return p;
}
static void *oom_realloc(void *ptr, size_t size) {
  if (oom_should_fail(OOM_LIB))
    return NULL;
  void *p = realloc(ptr, size);
  oom_live += ptr == NULL && p != NULL;
  return p;
}
static void oom_free(void *ptr) {
  oom_live -= ptr != NULL;
  free(ptr);
}
static void *oom_json_malloc(size_t size) {
  if (oom_should_fail(OOM_JANSSON))
    return NULL;
  void *p = malloc(size);
  oom_live += p != NULL;
  return p;
}

/* Run op with the k-th allocation of side failing, k = 1, 2, ... until it
 * succeeds; every failure must leave nothing allocated and return
 * UV_ENOMEM, or (jansson failing while it parses) UV_EINVAL: jansson
 * reports some allocation failures as syntax errors. Returns how many
 * failures were injected. */
typedef int (*oom_op_fn)(void *ctx, char **out);

static int oom_sweep(oom_side_t side, bool parses, oom_op_fn op, void *ctx) {
  int failures = 0;
  for (long k = 1;; k++) {
    if (k > 100000)
      fail_msg("still failing after %ld allocations", k - 1);
    long live = oom_live;
    char *out = NULL;
    oom_side = side;
    oom_count = 0;
    oom_fail_at = k;
    int rc = op(ctx, &out);
    oom_fail_at = 0;
    if (rc == 0) {
      assert_non_null(out);
      toolcall_wire_free(out);
      assert_int_equal(oom_live, live);
      if (oom_count < k)
        return failures; /* nothing failed: done */
      /* jansson gets over some failures by itself (a hash table that could
       * not grow); the library must not */
      if (side == OOM_LIB)
        fail_msg("allocation %ld of the library failed, yet the call "
                 "succeeded", k);
      continue;
    }
    if (rc != UV_ENOMEM &&
        !(rc == UV_EINVAL && side == OOM_JANSSON && parses))
      fail_msg("allocation %ld of %s failed: %s, want UV_ENOMEM", k,
               side == OOM_LIB ? "the library" : "jansson",
               toolcall_err_name(rc));
    assert_null(out);
    if (oom_live != live)
      fail_msg("allocation %ld of %s failed: %ld block(s) leaked", k,
               side == OOM_LIB ? "the library" : "jansson", oom_live - live);
    failures++;
  }
}

typedef struct {
  toolcall_wire_format_t f;
  const char *body;
  size_t len;
  const toolcall_batch_t *batch;
  const toolcall_registry_t *reg;
} oom_ctx_t;

static int oom_parse(void *ctx, char **out) {
  oom_ctx_t *c = ctx;
  toolcall_wire_response_t *r = NULL;
  int rc = toolcall_wire_parse(c->f, c->body, c->len, &r, NULL);
  if (rc != 0) {
    assert_null(r);
    return rc;
  }
  /* hand back something the library allocated: the last id */
  size_t n;
  const toolcall_call_spec_t *calls = toolcall_wire_calls(r, &n);
  assert_true(n > 0);
  size_t len = strlen(calls[n - 1].id);
  oom_fail_at = 0;
  *out = oom_malloc(len + 1);
  assert_non_null(*out);
  memcpy(*out, calls[n - 1].id, len + 1);
  toolcall_wire_response_free(r);
  return 0;
}

static int oom_results(void *ctx, char **out) {
  oom_ctx_t *c = ctx;
  return toolcall_wire_write_results(c->f, c->batch, out, NULL, NULL);
}

static int oom_tools(void *ctx, char **out) {
  oom_ctx_t *c = ctx;
  return toolcall_wire_write_tools(c->f, c->reg, out, NULL, NULL);
}

static void test_wire_out_of_memory(void **state) {
  (void)state;
  /* No toolcall object exists here: the allocator may be replaced. */
  assert_int_equal(
      toolcall_replace_allocator(oom_malloc, oom_realloc, oom_calloc, oom_free),
      0);
  json_set_alloc_funcs(oom_json_malloc, oom_free);
  oom_live = 0;

  rt_t *t = NULL;
  assert_int_equal(rt_setup((void **)&t), 0);
  toolcall_registry_t *reg;
  assert_int_equal(toolcall_registry_new(&reg), 0);
  add_tool(reg, "get_weather", "Current weather.", weather_schema,
           TOOLCALL_TOOL_WORKER, nop_tool);
  add_tool(reg, "ping", NULL, NULL, TOOLCALL_TOOL_LOOP, nop_tool);
  for (int fi = 0; fi < N_FORMATS; fi++) {
    static const char *const whats[] = {"parallel", "malformed",
                                        "text_and_calls"};
    for (size_t w = 0; w < sizeof(whats) / sizeof(whats[0]); w++) {
      char name[128];
      snprintf(name, sizeof(name), "%s_%s.json", prefixes[fi], whats[w]);
      oom_ctx_t c = {formats[fi], NULL, 0, NULL, NULL};
      char *body = read_file(name, &c.len);
      c.body = body;
      assert_true(oom_sweep(OOM_LIB, true, oom_parse, &c) >= 3);
      assert_true(oom_sweep(OOM_JANSSON, true, oom_parse, &c) > 10);
      free(body);
    }
    /* results of a batch with ok, error and unknown-tool calls */
    toolcall_wire_response_t *r = parse_fixture(fi, "malformed");
    toolcall_batch_t *b = rt_run(t, r);
    oom_ctx_t c = {formats[fi], NULL, 0, b, reg};
    assert_true(oom_sweep(OOM_LIB, false, oom_results, &c) >= 1);
    assert_true(oom_sweep(OOM_JANSSON, false, oom_results, &c) > 10);
    assert_true(oom_sweep(OOM_LIB, false, oom_tools, &c) >= 1);
    /* the schema is parsed: jansson's parse failures may read as EINVAL */
    assert_true(oom_sweep(OOM_JANSSON, true, oom_tools, &c) > 10);
    toolcall_batch_free(b);
    toolcall_wire_response_free(r);
  }
  toolcall_registry_free(reg);
  assert_int_equal(rt_teardown((void **)&t), 0);
  assert_int_equal(oom_live, 0);
  json_set_alloc_funcs(malloc, free);
  assert_int_equal(toolcall_replace_allocator(malloc, realloc, calloc, free),
                   0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_wire_format_names),
      cmocka_unit_test(test_wire_openai_chat_parallel),
      cmocka_unit_test(test_wire_responses_parallel),
      cmocka_unit_test(test_wire_anthropic_parallel),
      cmocka_unit_test(test_wire_gemini_parallel),
      cmocka_unit_test(test_wire_empty_args),
      cmocka_unit_test(test_wire_unicode_args),
      cmocka_unit_test(test_wire_text_and_calls),
      cmocka_unit_test(test_wire_no_calls),
      cmocka_unit_test(test_wire_malformed_calls),
      cmocka_unit_test(test_wire_truncated),
      cmocka_unit_test(test_wire_wrong_shapes),
      cmocka_unit_test(test_wire_api_misuse),
      cmocka_unit_test(test_wire_no_usage),
      cmocka_unit_test(test_wire_body_too_big),
      cmocka_unit_test(test_wire_deep_nesting),
      cmocka_unit_test(test_wire_invalid_utf8),
      cmocka_unit_test(test_wire_numbers),
      cmocka_unit_test(test_wire_duplicate_keys),
      cmocka_unit_test(test_wire_real_numbers),
      cmocka_unit_test_setup_teardown(test_wire_roundtrip_openai_chat,
                                      rt_setup, rt_teardown),
      cmocka_unit_test_setup_teardown(test_wire_roundtrip_responses, rt_setup,
                                      rt_teardown),
      cmocka_unit_test_setup_teardown(test_wire_roundtrip_anthropic, rt_setup,
                                      rt_teardown),
      cmocka_unit_test_setup_teardown(test_wire_roundtrip_gemini, rt_setup,
                                      rt_teardown),
      cmocka_unit_test_setup_teardown(test_wire_roundtrip_usage, rt_setup,
                                      rt_teardown),
      cmocka_unit_test_setup_teardown(test_wire_results_raw_output, rt_setup,
                                      rt_teardown),
      cmocka_unit_test(test_wire_results_every_status),
      cmocka_unit_test(test_wire_schema_retry),
      cmocka_unit_test(test_wire_gemini_ids),
      cmocka_unit_test(test_wire_bad_input_counts_nothing),
      cmocka_unit_test(test_wire_write_tools),
      cmocka_unit_test(test_wire_write_tools_bad_schema),
      cmocka_unit_test(test_wire_out_of_memory),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
