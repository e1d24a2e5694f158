/*
 * agent_demo — a complete agent loop driven by a scripted model.
 *
 * A real agent sends the conversation to a model, reads the tool calls of
 * its response, runs them, appends the results, and sends again until the
 * model answers without calls. This demo does all of that except the
 * network: the "model" replays a script of raw provider response bodies.
 * Each step
 *
 *   1. admits one request against the ledger's request limit;
 *   2. "sends" the request: takes the next scripted body, as the bytes a
 *      host would receive, and parses it with toolcall_wire_parse();
 *   3. commits the response's usage (exact, as the provider reported it);
 *   4. dispatches the calls as one batch, in parallel, against real tools
 *      whose arguments the library checks against their JSON Schemas;
 *   5. writes the results in the provider's shape and appends them, after
 *      the assistant turn, to the conversation the next request would send.
 *
 * It stops at the first response without tool calls. At the end it prints
 * the exact usage and the calls by status, and checks that they add up.
 *
 * Usage: agent_demo [--format openai|responses|anthropic|gemini]
 *                   [--script FILE] [--quiet] [--full]
 *
 * A script is {"format": F, "prompt": TEXT, "steps": [BODY, ...],
 * "expect": {...}}: "prompt" (shown, and put first in the conversation) and
 * "expect" are optional. "expect" holds the totals the run must end with
 * (requests, input_tokens, output_tokens, cache_read_tokens,
 * cache_write_tokens, dispatched, tool_calls, tool_runs: how many calls
 * reached a tool, and calls: {status name: count}, absent statuses being 0);
 * any mismatch makes the exit status non-zero. The default scripts, one per
 * format, live in examples/scripts/.
 *
 * The tools work on the files of this source tree (paths relative to it):
 *   word_count  worker  words, lines and bytes of a file
 *   sha256      worker  SHA-256 of a file
 *   calculate   worker  + - * / and parentheses over decimal numbers
 *   wait_ms     loop    completes after N ms (a uv_timer_t), N <= 1000
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <toolcall.h>
#include <toolcall_wire.h>

#include <jansson.h>

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Set by examples/CMakeLists.txt; the fallbacks work from the source root. */
#ifndef AGENT_DEMO_SCRIPTS
#define AGENT_DEMO_SCRIPTS "examples/scripts"
#endif
#ifndef AGENT_DEMO_ROOT
#define AGENT_DEMO_ROOT "."
#endif

#define REQUEST_LIMIT 10
#define MAX_CONCURRENCY 4
#define CALL_TIMEOUT_MS 5000
#define WAIT_MS_MAX 1000

#include "sha256.h"

/* ======================================================================== */
/* Tools                                                                    */

typedef struct wait_req_s wait_req_t;

/* The tools' shared data (each tool's `data`). */
typedef struct {
  const char *root;          /* the source tree the file tools read */
  uv_loop_t *loop;           /* for wait_ms's timers */
  atomic_uint_fast64_t runs; /* tool functions entered, any thread */
  wait_req_t *waits;         /* wait_ms calls running; loop thread only */
} tools_t;

/* Tool outputs are JSON text; reals with 15 digits print 1.008, not
 * 1.00800000000000001. */
#define OUTPUT_FLAGS (JSON_COMPACT | JSON_REAL_PRECISION(15))

/* End the call ok with obj (stolen) as its output. */
static void complete_json(toolcall_call_t *call, json_t *obj) {
  char *text = obj != NULL ? json_dumps(obj, OUTPUT_FLAGS) : NULL;
  json_decref(obj);
  if (text == NULL) {
    (void)toolcall_call_complete(call, TOOLCALL_TOOL_ERROR, "out of memory", 0);
    return;
  }
  (void)toolcall_call_complete(call, TOOLCALL_OK, text, 0); /* copies text */
  free(text);
}

/* The call's arguments as a JSON object. The library has already checked
 * them against the tool's schema; this is the tool's own guard all the
 * same. On failure the call is ended (retry) and NULL returned. */
static json_t *load_arguments(toolcall_call_t *call) {
  size_t len;
  const char *text = toolcall_call_arguments(call, &len);
  json_t *args = json_loadb(text, len, 0, NULL);
  if (!json_is_object(args)) {
    json_decref(args);
    (void)toolcall_call_complete(call, TOOLCALL_RETRY,
                                 "the arguments must be a JSON object", 0);
    return NULL;
  }
  return args;
}

/* A path relative to the source tree that does not climb out of it. */
static bool path_inside(const char *p) {
  if (p[0] == '\0' || p[0] == '/')
    return false;
  for (const char *seg = p;;) {
    const char *slash = strchr(seg, '/');
    size_t len = slash != NULL ? (size_t)(slash - seg) : strlen(seg);
    if (len == 2 && seg[0] == '.' && seg[1] == '.')
      return false;
    if (slash == NULL)
      return true;
    seg = slash + 1;
  }
}

/* Open the file named by the "path" argument. On failure the call is
 * ended and NULL returned; on success *rel is the path as given (owned by
 * *args, which the caller frees). */
static FILE *open_path_argument(toolcall_call_t *call, const tools_t *tools,
                                json_t **args, const char **rel) {
  if ((*args = load_arguments(call)) == NULL)
    return NULL;
  const char *path = json_string_value(json_object_get(*args, "path"));
  if (path == NULL) {
    (void)toolcall_call_complete(call, TOOLCALL_RETRY,
                                 "\"path\" must be a string", 0);
    return NULL;
  }
  char msg[512];
  if (!path_inside(path)) {
    snprintf(msg, sizeof(msg),
             "%.300s: the path must be relative to the source tree and stay "
             "inside it",
             path);
    (void)toolcall_call_complete(call, TOOLCALL_TOOL_ERROR, msg, 0);
    return NULL;
  }
  char full[4096];
  if ((size_t)snprintf(full, sizeof(full), "%s/%s", tools->root, path) >=
      sizeof(full)) {
    (void)toolcall_call_complete(call, TOOLCALL_TOOL_ERROR, "path too long", 0);
    return NULL;
  }
  FILE *f = fopen(full, "rb");
  if (f == NULL) {
    /* uv_strerror() returns static strings: safe on a worker thread. */
    snprintf(msg, sizeof(msg), "cannot open %.300s: %s", path,
             uv_strerror(-errno));
    (void)toolcall_call_complete(call, TOOLCALL_TOOL_ERROR, msg, 0);
    return NULL;
  }
  *rel = path;
  return f;
}

/* Finish reading f; false (and the call ended) on a read error. */
static bool close_read(toolcall_call_t *call, FILE *f, const char *path) {
  int read_errno = ferror(f) ? (errno != 0 ? errno : EIO) : 0;
  fclose(f);
  if (read_errno == 0)
    return true;
  char msg[512];
  snprintf(msg, sizeof(msg), "cannot read %.300s: %s", path,
           uv_strerror(-read_errno));
  (void)toolcall_call_complete(call, TOOLCALL_TOOL_ERROR, msg, 0);
  return false;
}

/* word_count — worker: words (runs of non-space bytes, as `wc -w`), lines,
 * bytes. */
static void word_count_tool(toolcall_call_t *call, void *data) {
  tools_t *tools = data;
  atomic_fetch_add(&tools->runs, 1);
  json_t *args;
  const char *path;
  FILE *f = open_path_argument(call, tools, &args, &path);
  if (f == NULL) {
    json_decref(args);
    return;
  }
  uint64_t words = 0, lines = 0, bytes = 0;
  bool in_word = false;
  unsigned char buf[16 * 1024];
  size_t got;
  while ((got = fread(buf, 1, sizeof(buf), f)) > 0) {
    bytes += got;
    for (size_t i = 0; i < got; i++) {
      bool space = isspace(buf[i]) != 0;
      words += !space && !in_word;
      in_word = !space;
      lines += buf[i] == '\n';
    }
  }
  if (close_read(call, f, path))
    complete_json(call, json_pack("{s:s, s:I, s:I, s:I}", "path", path,
                                  "words", (json_int_t)words, "lines",
                                  (json_int_t)lines, "bytes",
                                  (json_int_t)bytes));
  json_decref(args); /* path pointed into it */
}

/* sha256 — worker: the SHA-256 digest of a file. */
static void sha256_tool(toolcall_call_t *call, void *data) {
  tools_t *tools = data;
  atomic_fetch_add(&tools->runs, 1);
  json_t *args;
  const char *path;
  FILE *f = open_path_argument(call, tools, &args, &path);
  if (f == NULL) {
    json_decref(args);
    return;
  }
  sha256_ctx_t ctx;
  sha256_init(&ctx);
  unsigned char buf[16 * 1024];
  size_t got;
  while ((got = fread(buf, 1, sizeof(buf), f)) > 0)
    sha256_update(&ctx, buf, got);
  if (close_read(call, f, path)) {
    char hex[65];
    sha256_final_hex(&ctx, hex);
    complete_json(call, json_pack("{s:s, s:s, s:I}", "path", path, "sha256",
                                  hex, "bytes", (json_int_t)ctx.bytes));
  }
  json_decref(args);
}

/* calculate — worker: a recursive-descent evaluator.
 *
 *   sum    := term (('+' | '-') term)*
 *   term   := factor (('*' | '/') factor)*
 *   factor := ('+' | '-') factor | number | '(' sum ')'
 */
typedef struct {
  const char *s;
  size_t i;
  int depth;
  char err[128];
} calc_t;

#define CALC_MAX_DEPTH 64

static bool calc_fail(calc_t *c, const char *why) {
  unsigned char ch = (unsigned char)c->s[c->i];
  if (ch == '\0')
    snprintf(c->err, sizeof(c->err), "%s at the end", why);
  else if (ch >= 0x20 && ch < 0x7f)
    snprintf(c->err, sizeof(c->err), "%s: unexpected '%c' at character %zu",
             why, ch, c->i + 1);
  else
    snprintf(c->err, sizeof(c->err), "%s: unexpected byte 0x%02x at "
             "character %zu", why, ch, c->i + 1);
  return false;
}

static void calc_space(calc_t *c) {
  while (c->s[c->i] == ' ' || c->s[c->i] == '\t' || c->s[c->i] == '\n')
    c->i++;
}

static bool calc_sum(calc_t *c, double *out);

static bool calc_number(calc_t *c, double *out) {
  size_t start = c->i, digits = 0;
  for (; isdigit((unsigned char)c->s[c->i]); c->i++)
    digits++;
  if (c->s[c->i] == '.')
    for (c->i++; isdigit((unsigned char)c->s[c->i]); c->i++)
      digits++;
  if (digits == 0) {
    c->i = start;
    return calc_fail(c, "expected a number");
  }
  if (c->s[c->i] == 'e' || c->s[c->i] == 'E') {
    size_t e = c->i + 1;
    if (c->s[e] == '+' || c->s[e] == '-')
      e++;
    if (isdigit((unsigned char)c->s[e])) {
      while (isdigit((unsigned char)c->s[e]))
        e++;
      c->i = e;
    }
  }
  char num[64];
  size_t len = c->i - start;
  if (len >= sizeof(num)) {
    c->i = start;
    return calc_fail(c, "number too long");
  }
  memcpy(num, c->s + start, len);
  num[len] = '\0';
  *out = strtod(num, NULL); /* the C locale: never setlocale()'d */
  return true;
}

static bool calc_factor(calc_t *c, double *out) {
  calc_space(c);
  if (++c->depth > CALC_MAX_DEPTH)
    return calc_fail(c, "nested too deeply");
  bool ok;
  char ch = c->s[c->i];
  if (ch == '+' || ch == '-') {
    c->i++;
    ok = calc_factor(c, out);
    if (ok && ch == '-')
      *out = -*out;
  } else if (ch == '(') {
    c->i++;
    ok = calc_sum(c, out);
    if (ok) {
      calc_space(c);
      if (c->s[c->i] == ')')
        c->i++;
      else
        ok = calc_fail(c, "expected ')'");
    }
  } else {
    ok = calc_number(c, out);
  }
  c->depth--;
  return ok;
}

static bool calc_term(calc_t *c, double *out) {
  if (!calc_factor(c, out))
    return false;
  for (;;) {
    calc_space(c);
    char op = c->s[c->i];
    if (op != '*' && op != '/')
      return true;
    size_t at = c->i++;
    double rhs;
    if (!calc_factor(c, &rhs))
      return false;
    if (op == '/' && rhs == 0) {
      snprintf(c->err, sizeof(c->err), "division by zero at character %zu",
               at + 1);
      return false;
    }
    *out = op == '*' ? *out * rhs : *out / rhs;
  }
}

static bool calc_sum(calc_t *c, double *out) {
  if (!calc_term(c, out))
    return false;
  for (;;) {
    calc_space(c);
    char op = c->s[c->i];
    if (op != '+' && op != '-')
      return true;
    c->i++;
    double rhs;
    if (!calc_term(c, &rhs))
      return false;
    *out = op == '+' ? *out + rhs : *out - rhs;
  }
}

static void calculate_tool(toolcall_call_t *call, void *data) {
  tools_t *tools = data;
  atomic_fetch_add(&tools->runs, 1);
  json_t *args = load_arguments(call);
  if (args == NULL)
    return;
  const char *expr = json_string_value(json_object_get(args, "expression"));
  if (expr == NULL) {
    (void)toolcall_call_complete(call, TOOLCALL_RETRY,
                                 "\"expression\" must be a string", 0);
    json_decref(args);
    return;
  }
  calc_t c = {.s = expr};
  double v = 0;
  bool ok = calc_sum(&c, &v);
  if (ok) {
    calc_space(&c);
    if (c.s[c.i] != '\0')
      ok = calc_fail(&c, "expected an operator");
  }
  if (ok && !isfinite(v)) {
    snprintf(c.err, sizeof(c.err), "the result is not a finite number");
    ok = false;
  }
  if (!ok) {
    char msg[512];
    snprintf(msg, sizeof(msg),
             "cannot evaluate \"%.200s\": %s (supported: decimal numbers, "
             "+ - * / and parentheses)",
             expr, c.err);
    (void)toolcall_call_complete(call, TOOLCALL_TOOL_ERROR, msg, 0);
    json_decref(args);
    return;
  }
  /* Whole results print as integers (750, not 750.0). */
  json_t *result = fabs(v) < 9007199254740992.0 && v == floor(v)
                       ? json_integer((json_int_t)v)
                       : json_real(v);
  complete_json(call, json_pack("{s:s, s:o}", "expression", expr, "result",
                                result));
  json_decref(args);
}

/* wait_ms — loop tool: started on the loop thread, it must not block; a
 * timer completes the call. Its cancel function stops the timer if the
 * call times out or its batch is cancelled. */
struct wait_req_s {
  uv_timer_t timer;
  toolcall_call_t *call;
  tools_t *tools;
  int64_t ms;
  wait_req_t *prev, *next;
};

static void on_wait_closed(uv_handle_t *handle) { free(handle->data); }

static void wait_finish(wait_req_t *w, toolcall_status_t status,
                        const char *text) {
  if (w->prev != NULL)
    w->prev->next = w->next;
  else
    w->tools->waits = w->next;
  if (w->next != NULL)
    w->next->prev = w->prev;
  toolcall_call_t *call = w->call;
  w->call = NULL;
  /* UV_ECANCELED after a cancel: the call has ended already; fine. */
  (void)toolcall_call_complete(call, status, text, 0);
  uv_close((uv_handle_t *)&w->timer, on_wait_closed);
}

static void on_wait_timer(uv_timer_t *timer) {
  wait_req_t *w = timer->data;
  char out[48];
  snprintf(out, sizeof(out), "{\"waited_ms\":%" PRId64 "}", w->ms);
  wait_finish(w, TOOLCALL_OK, out);
}

static void wait_ms_cancel(toolcall_call_t *call, void *data) {
  tools_t *tools = data;
  for (wait_req_t *w = tools->waits; w != NULL; w = w->next)
    if (w->call == call) {
      uv_timer_stop(&w->timer);
      wait_finish(w, TOOLCALL_TOOL_ERROR, "cancelled");
      return;
    }
}

static void wait_ms_tool(toolcall_call_t *call, void *data) {
  tools_t *tools = data;
  atomic_fetch_add(&tools->runs, 1);
  json_t *args = load_arguments(call);
  if (args == NULL)
    return;
  json_t *ms = json_object_get(args, "ms");
  bool is_integer = json_is_integer(ms);
  json_int_t n = json_integer_value(ms);
  json_decref(args); /* ms is gone with it */
  if (!is_integer || n < 0 || n > WAIT_MS_MAX) {
    char msg[96];
    snprintf(msg, sizeof(msg), "\"ms\" must be an integer from 0 to %d",
             WAIT_MS_MAX);
    (void)toolcall_call_complete(call, TOOLCALL_RETRY, msg, 0);
    return;
  }
  wait_req_t *w = calloc(1, sizeof(*w));
  if (w == NULL || uv_timer_init(tools->loop, &w->timer) != 0) {
    free(w);
    (void)toolcall_call_complete(call, TOOLCALL_TOOL_ERROR,
                                 "cannot start a timer", 0);
    return;
  }
  w->call = call;
  w->tools = tools;
  w->ms = (int64_t)n;
  w->timer.data = w;
  w->next = tools->waits;
  if (w->next != NULL)
    w->next->prev = w;
  tools->waits = w;
  /* The loop's cached "now" may be stale (a long callback ran before):
   * refresh it so the wait is not cut short. */
  uv_update_time(tools->loop);
  uv_timer_start(&w->timer, on_wait_timer, (uint64_t)n, 0);
}

static const char *const path_schema =
    "{\"type\":\"object\","
    "\"properties\":{\"path\":{\"type\":\"string\",\"minLength\":1,"
    "\"maxLength\":255,\"pattern\":\"^[A-Za-z0-9_][A-Za-z0-9_./-]*$\","
    "\"description\":\"a file of the source tree, e.g. README.md\"}},"
    "\"required\":[\"path\"],\"additionalProperties\":false}";

static int register_tools(toolcall_registry_t *reg, tools_t *tools) {
  static const struct {
    const char *name, *description, *schema;
    toolcall_tool_kind_t kind;
    toolcall_tool_fn fn;
    toolcall_tool_cancel_fn cancel;
  } defs[] = {
      {"word_count", "Count the words, lines and bytes of a file.", NULL,
       TOOLCALL_TOOL_WORKER, word_count_tool, NULL},
      {"sha256", "Compute the SHA-256 digest of a file.", NULL,
       TOOLCALL_TOOL_WORKER, sha256_tool, NULL},
      {"calculate",
       "Evaluate an arithmetic expression: decimal numbers, + - * / and "
       "parentheses.",
       "{\"type\":\"object\",\"properties\":{\"expression\":{\"type\":"
       "\"string\",\"minLength\":1,\"maxLength\":200}},"
       "\"required\":[\"expression\"],\"additionalProperties\":false}",
       TOOLCALL_TOOL_WORKER, calculate_tool, NULL},
      {"wait_ms", "Pause for a number of milliseconds (at most 1000).",
       "{\"type\":\"object\",\"properties\":{\"ms\":{\"type\":\"integer\","
       "\"minimum\":0,\"maximum\":1000}},\"required\":[\"ms\"],"
       "\"additionalProperties\":false}",
       TOOLCALL_TOOL_LOOP, wait_ms_tool, wait_ms_cancel},
  };
  for (size_t i = 0; i < sizeof(defs) / sizeof(defs[0]); i++) {
    toolcall_tool_t def;
    toolcall_tool_init(&def);
    def.name = defs[i].name;
    def.description = defs[i].description;
    def.schema = defs[i].schema != NULL ? defs[i].schema : path_schema;
    def.kind = defs[i].kind;
    def.fn = defs[i].fn;
    def.cancel = defs[i].cancel;
    def.data = tools;
    toolcall_error_t err;
    int rc = toolcall_registry_add(reg, &def, &err);
    if (rc != 0) {
      fprintf(stderr, "agent_demo: cannot register %s: %s\n", def.name,
              err.message);
      return rc;
    }
  }
  return 0;
}

/* ======================================================================== */
/* Printing                                                                 */

typedef struct {
  toolcall_wire_format_t format;
  bool quiet;
  bool full;
  bool tty;
  const char *script_path;

  uv_loop_t loop;
  tools_t tools;
  toolcall_registry_t *registry;
  toolcall_ledger_t *ledger;
  toolcall_manager_t *manager;
  toolcall_run_t *run;
  json_t *conversation; /* what the next request would send */

  toolcall_batch_t *batch; /* the finished batch, set by on_batch */
  int batch_status;
  uint64_t batch_ns;

  uint64_t calls_made;                       /* calls the model asked for */
  uint64_t started;                          /* on_call_start events */
  uint64_t results[TOOLCALL_STATUS_SLOTS_];  /* statuses of the results read */
  toolcall_usage_t reported;                 /* usage the responses reported */
  bool closed;
  int failures;
} demo_t;

static void heading(const demo_t *d, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

static void heading(const demo_t *d, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs(d->tty ? "\n\033[1m" : "\n", stdout);
  vprintf(fmt, ap);
  fputs(d->tty ? "\033[0m\n" : "\n", stdout);
  va_end(ap);
}

/* Print s, at most max bytes of it (cut on a UTF-8 boundary) unless max is
 * 0, with control characters shown as spaces. */
static void print_clipped(const char *s, size_t max) {
  size_t len = strlen(s), cut = len;
  if (max > 0 && len > max) {
    cut = max;
    while (cut > 0 && ((unsigned char)s[cut] & 0xc0) == 0x80)
      cut--;
  }
  for (size_t i = 0; i < cut; i++)
    putchar((unsigned char)s[i] < 0x20 ? ' ' : s[i]);
  if (cut < len)
    printf("… (+%zu bytes)", len - cut);
}

/* Print text wrapped at about 78 columns, each line after the first
 * indented by `indent` spaces (the first continues the current line). */
static void print_wrapped(const char *text, int indent) {
  int col = indent;
  const char *p = text;
  while (*p != '\0') {
    if (*p == '\n') {
      printf("\n%*s", indent, "");
      col = indent;
      p++;
      continue;
    }
    size_t word = strcspn(p, " \n");
    if (col > indent && col + (int)word > 78) {
      printf("\n%*s", indent, "");
      col = indent;
    }
    fwrite(p, 1, word, stdout);
    col += (int)word;
    p += word;
    if (*p == ' ') {
      if (col > indent && col < 78)
        putchar(' ');
      col++;
      p++;
    }
  }
  putchar('\n');
}

/* ======================================================================== */
/* Hooks and the batch callback                                             */

static void on_call_start(const toolcall_event_t *ev) {
  demo_t *d = toolcall_manager_data(ev->manager);
  d->started++;
}

/* One line per finished call, in the order they finish. */
static void on_call_end(const toolcall_event_t *ev) {
  demo_t *d = toolcall_manager_data(ev->manager);
  if (d->quiet)
    return;
  printf("    %s %-28s %-14s %-12s", ev->status == TOOLCALL_OK ? "✓" : "✗",
         ev->id, ev->tool[0] != '\0' ? ev->tool : "\"\"",
         toolcall_status_name(ev->status));
  if (ev->duration_ns > 0)
    printf(" %8.2f ms", (double)ev->duration_ns / 1e6);
  else
    fputs("   not run", stdout); /* ended before reaching a tool */
  if (ev->message != NULL) {
    fputs("  ", stdout);
    print_clipped(ev->message, d->full ? 0 : 110);
  }
  putchar('\n');
}

static void on_batch(toolcall_batch_t *batch, int status) {
  demo_t *d = toolcall_batch_data(batch);
  d->batch = batch; /* read and freed by the step, after uv_run returns */
  d->batch_status = status;
}

static void on_manager_closed(toolcall_manager_t *manager) {
  demo_t *d = toolcall_manager_data(manager);
  d->closed = true;
}

/* ======================================================================== */
/* The provider's shapes, for what the library leaves to the host: the     */
/* conversation and a few fields worth showing.                            */

static json_t *first_of(json_t *obj, const char *key) {
  return json_array_get(json_object_get(obj, key), 0);
}

static const char *model_name(const json_t *body) {
  const char *m = json_string_value(json_object_get(body, "model"));
  return m != NULL ? m
                   : json_string_value(json_object_get(body, "modelVersion"));
}

static const char *stop_reason(toolcall_wire_format_t f, json_t *body) {
  switch (f) {
  case TOOLCALL_WIRE_OPENAI_CHAT:
    return json_string_value(
        json_object_get(first_of(body, "choices"), "finish_reason"));
  case TOOLCALL_WIRE_OPENAI_RESPONSES:
    return json_string_value(json_object_get(body, "status"));
  case TOOLCALL_WIRE_ANTHROPIC:
    return json_string_value(json_object_get(body, "stop_reason"));
  case TOOLCALL_WIRE_GEMINI:
    return json_string_value(
        json_object_get(first_of(body, "candidates"), "finishReason"));
  }
  return NULL;
}

static json_t *user_message(toolcall_wire_format_t f, const char *text) {
  if (f == TOOLCALL_WIRE_GEMINI)
    return json_pack("{s:s, s:[{s:s}]}", "role", "user", "parts", "text",
                     text);
  return json_pack("{s:s, s:s}", "role", "user", "content", text);
}

/* Append the assistant turn of body to conv, as the next request carries
 * it. 0, or -1 if out of memory. */
static int append_assistant_turn(toolcall_wire_format_t f, json_t *conv,
                                 json_t *body) {
  json_t *turn = NULL;
  switch (f) {
  case TOOLCALL_WIRE_OPENAI_CHAT: {
    json_t *msg = json_object_get(first_of(body, "choices"), "message");
    json_t *content = json_object_get(msg, "content");
    json_t *calls = json_object_get(msg, "tool_calls");
    turn = json_pack("{s:s, s:O?}", "role", "assistant", "content", content);
    if (turn != NULL && calls != NULL &&
        json_object_set(turn, "tool_calls", calls) != 0) {
      json_decref(turn);
      return -1;
    }
    break;
  }
  case TOOLCALL_WIRE_OPENAI_RESPONSES: { /* every output item goes back */
    json_t *output = json_object_get(body, "output");
    return json_is_array(output) ? json_array_extend(conv, output) : 0;
  }
  case TOOLCALL_WIRE_ANTHROPIC:
    turn = json_pack("{s:s, s:O}", "role", "assistant", "content",
                     json_object_get(body, "content"));
    break;
  case TOOLCALL_WIRE_GEMINI: /* parts, thought signatures included */
    turn = json_incref(
        json_object_get(first_of(body, "candidates"), "content"));
    break;
  }
  if (turn == NULL) /* a shape the parser tolerated but we cannot echo */
    return 0;
  return json_array_append_new(conv, turn);
}

/* ======================================================================== */
/* One step of the loop                                                     */

#define CHECK_OR_FAIL(d, rc, what, msg)                                        \
  do {                                                                         \
    if ((rc) != 0) {                                                           \
      fprintf(stderr, "agent_demo: %s: %s (%s)\n", (what),                    \
              (msg) != NULL ? (const char *)(msg) : toolcall_strerror(rc),    \
              toolcall_err_name(rc));                                          \
      (d)->failures++;                                                         \
      return STEP_STOP;                                                        \
    }                                                                          \
  } while (0)

typedef enum { STEP_AGAIN, STEP_STOP } step_next_t;

/* The results of the finished batch: tally, print, append. */
static step_next_t read_batch(demo_t *d, size_t n) {
  toolcall_batch_t *b = d->batch;
  uint64_t tool_ns = 0;
  for (size_t i = 0; i < toolcall_batch_size(b); i++) {
    const toolcall_result_t *r = toolcall_batch_result(b, i);
    d->results[r->status]++;
    tool_ns += r->duration_ns;
  }
  if (!d->quiet)
    printf("    %zu call%s in %.2f ms wall time, %.2f ms of tool time\n", n,
           n == 1 ? "" : "s", (double)d->batch_ns / 1e6,
           (double)tool_ns / 1e6);
  if (d->batch_status != 0)
    printf("  the batch failed: %s\n", toolcall_batch_error(b));

  char *out = NULL;
  size_t len = 0;
  toolcall_error_t err;
  int rc = toolcall_wire_write_results(d->format, b, &out, &len, &err);
  toolcall_batch_free(b);
  d->batch = NULL;
  CHECK_OR_FAIL(d, rc, "toolcall_wire_write_results", err.message);

  json_error_t jerr;
  json_t *results = json_loadb(out, len, JSON_REJECT_DUPLICATES, &jerr);
  toolcall_wire_free(out);
  if (results == NULL) {
    fprintf(stderr, "agent_demo: the results are not JSON: %s\n", jerr.text);
    d->failures++;
    return STEP_STOP;
  }
  /* Chat and Responses: one entry per call; Anthropic and Gemini: one
   * message holding them. */
  json_t *entries = json_is_array(results) ? results
                    : json_object_get(results, d->format == TOOLCALL_WIRE_GEMINI
                                                   ? "parts"
                                                   : "content");
  if (!d->quiet) {
    static const char *const what[] = {"", "tool messages",
                                       "function_call_output items",
                                       "one user message of tool_result blocks",
                                       "one user content of functionResponse "
                                       "parts"};
    printf("  results → %s, %zu bytes of JSON:\n", what[d->format], len);
    for (size_t i = 0; i < json_array_size(entries); i++) {
      char *entry = json_dumps(json_array_get(entries, i), JSON_COMPACT);
      if (entry != NULL) {
        fputs("    ", stdout);
        print_clipped(entry, d->full ? 0 : 220);
        putchar('\n');
      }
      free(entry);
    }
  }
  rc = json_is_array(results) ? json_array_extend(d->conversation, results)
                              : json_array_append(d->conversation, results);
  json_decref(results);
  if (rc != 0) {
    fprintf(stderr, "agent_demo: out of memory\n");
    d->failures++;
    return STEP_STOP;
  }
  /* Stop the run when the library says so (ERETRIES, ELIMIT), as an agent
   * framework would. */
  return d->batch_status == 0 ? STEP_AGAIN : STEP_STOP;
}

static step_next_t run_step(demo_t *d, size_t k, json_t *body_json) {
  toolcall_error_t err;
  int rc = toolcall_ledger_admit_request(d->ledger, &err);
  if (rc == TOOLCALL_ELIMIT || rc == TOOLCALL_ETOKENS) {
    printf("\nstep %zu — not sent: %s\n", k, err.message);
    return STEP_STOP; /* the limit doing its job */
  }
  CHECK_OR_FAIL(d, rc, "toolcall_ledger_admit_request", err.message);

  /* "Send" the request: the reply is the next scripted body, as bytes. */
  char *body = json_dumps(body_json, JSON_COMPACT);
  if (body == NULL) {
    (void)toolcall_ledger_release_request(d->ledger);
    fprintf(stderr, "agent_demo: step %zu: out of memory\n", k);
    d->failures++;
    return STEP_STOP;
  }
  toolcall_wire_response_t *resp;
  rc = toolcall_wire_parse(d->format, body, strlen(body), &resp, &err);
  size_t body_len = strlen(body);
  free(body);
  if (rc != 0) {
    (void)toolcall_ledger_release_request(d->ledger);
    fprintf(stderr, "agent_demo: step %zu: %s\n", k, err.message);
    d->failures++;
    return STEP_STOP;
  }

  toolcall_usage_t usage;
  bool has_usage = toolcall_wire_usage(resp, &usage) == 0;
  if (has_usage) {
    rc = toolcall_ledger_commit_request(d->ledger, &usage, &err);
    d->reported.requests++;
    d->reported.input_tokens += usage.input_tokens;
    d->reported.output_tokens += usage.output_tokens;
    d->reported.cache_read_tokens += usage.cache_read_tokens;
    d->reported.cache_write_tokens += usage.cache_write_tokens;
    if (rc == TOOLCALL_ETOKENS)
      printf("  (%s: the next request will be refused)\n", err.message);
    else if (rc != 0) {
      toolcall_wire_response_free(resp);
      CHECK_OR_FAIL(d, rc, "toolcall_ledger_commit_request", err.message);
    }
  } else {
    /* No usage: nothing to count; the request slot goes back. */
    (void)toolcall_ledger_release_request(d->ledger);
  }

  size_t n;
  const toolcall_call_spec_t *calls = toolcall_wire_calls(resp, &n);
  const char *text = toolcall_wire_text(resp);
  if (!d->quiet) {
    if (n > 0)
      heading(d, "step %zu — model asked for %zu tool call%s", k, n,
              n == 1 ? "" : "s");
    else
      heading(d, "step %zu — model answered without tool calls", k);
    const char *model = model_name(body_json);
    const char *stop = stop_reason(d->format, body_json);
    printf("  %s · %s · %zu-byte body\n", model != NULL ? model : "model?",
           stop != NULL ? stop : "no stop reason", body_len);
    if (has_usage)
      printf("  usage: %" PRIu64 " input tokens (%" PRIu64 " cache read, %"
             PRIu64 " cache write), %" PRIu64 " output\n",
             usage.input_tokens, usage.cache_read_tokens,
             usage.cache_write_tokens, usage.output_tokens);
    else
      printf("  usage: none reported (the request is released, not "
             "counted)\n");
    if (text[0] != '\0') {
      fputs("  model: ", stdout);
      print_wrapped(text, 9);
    }
    for (size_t i = 0; i < n; i++) {
      printf("    → %-28s %-14s ", calls[i].id,
             calls[i].name[0] != '\0' ? calls[i].name : "\"\"");
      print_clipped(calls[i].arguments != NULL ? calls[i].arguments : "{}",
                    d->full ? 0 : 70);
      putchar('\n');
    }
  }
  if (append_assistant_turn(d->format, d->conversation, body_json) != 0) {
    toolcall_wire_response_free(resp);
    fprintf(stderr, "agent_demo: out of memory\n");
    d->failures++;
    return STEP_STOP;
  }
  if (n == 0) {
    toolcall_wire_response_free(resp);
    return STEP_STOP; /* the model is done */
  }

  toolcall_batch_options_t bopts;
  toolcall_batch_options_init(&bopts);
  bopts.run = d->run; /* consecutive retries count across steps */
  uint64_t t0 = uv_hrtime();
  rc = toolcall_batch_submit(d->manager, calls, n, &bopts, on_batch, d, NULL,
                             &err);
  toolcall_wire_response_free(resp); /* submit copied the calls */
  CHECK_OR_FAIL(d, rc, "toolcall_batch_submit", err.message);
  d->calls_made += n;

  /* The manager keeps the loop alive while calls are in flight. */
  (void)uv_run(&d->loop, UV_RUN_DEFAULT);
  d->batch_ns = uv_hrtime() - t0;
  if (d->batch == NULL) {
    fprintf(stderr, "agent_demo: the loop stopped before the batch ended\n");
    d->failures++;
    return STEP_STOP;
  }
  step_next_t next = read_batch(d, n);
  if (!d->quiet) {
    char *conv = json_dumps(d->conversation, JSON_COMPACT);
    printf("  conversation: %zu entries, %zu bytes\n",
           json_array_size(d->conversation), conv != NULL ? strlen(conv) : 0);
    free(conv);
  }
  return next;
}

/* ======================================================================== */
/* The end: usage, statuses, checks                                         */

static void check(demo_t *d, bool ok, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;

static void check(demo_t *d, bool ok, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  printf("  %s ", ok ? "✓" : "✗ MISMATCH:");
  vprintf(fmt, ap);
  putchar('\n');
  va_end(ap);
  if (!ok)
    d->failures++;
}

static void check_expect_u64(demo_t *d, json_t *expect, const char *key,
                             uint64_t actual) {
  json_t *v = json_object_get(expect, key);
  if (v == NULL)
    return;
  bool ok = json_is_integer(v) && json_integer_value(v) >= 0 &&
            (uint64_t)json_integer_value(v) == actual;
  check(d, ok, "%-18s %" PRIu64 " (script expects %" JSON_INTEGER_FORMAT ")",
        key, actual, json_integer_value(v));
}

static void check_expectations(demo_t *d, json_t *expect,
                               const toolcall_snapshot_t *s, uint64_t runs) {
  static const char *const known[] = {
      "requests",   "input_tokens", "output_tokens", "cache_read_tokens",
      "cache_write_tokens", "dispatched", "tool_calls", "tool_runs", "calls"};
  const char *key;
  json_t *value;
  json_object_foreach(expect, key, value) {
    bool found = false;
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
      found |= strcmp(key, known[i]) == 0;
    if (!found)
      check(d, false, "unknown key \"%s\" in the script's expect", key);
  }
  check_expect_u64(d, expect, "requests", s->usage.requests);
  check_expect_u64(d, expect, "input_tokens", s->usage.input_tokens);
  check_expect_u64(d, expect, "output_tokens", s->usage.output_tokens);
  check_expect_u64(d, expect, "cache_read_tokens", s->usage.cache_read_tokens);
  check_expect_u64(d, expect, "cache_write_tokens",
                   s->usage.cache_write_tokens);
  check_expect_u64(d, expect, "dispatched", s->dispatched);
  check_expect_u64(d, expect, "tool_calls", s->tool_calls);
  check_expect_u64(d, expect, "tool_runs", runs);
  json_t *calls = json_object_get(expect, "calls");
  if (calls == NULL)
    return;
  json_object_foreach(calls, key, value) {
    bool found = false;
    for (int st = 0; st < TOOLCALL_STATUS_COUNT; st++)
      found |= strcmp(key, toolcall_status_name((toolcall_status_t)st)) == 0;
    if (!found)
      check(d, false, "unknown status \"%s\" in the script's expect.calls",
            key);
  }
  for (int st = 0; st < TOOLCALL_STATUS_COUNT; st++) {
    const char *name = toolcall_status_name((toolcall_status_t)st);
    json_t *v = json_object_get(calls, name);
    json_int_t want = v != NULL ? json_integer_value(v) : 0;
    char label[48];
    snprintf(label, sizeof(label), "calls[%s]", name);
    if (v != NULL || s->calls[st] != 0)
      check(d,
            (v == NULL || json_is_integer(v)) && want >= 0 &&
                (uint64_t)want == s->calls[st],
            "%-18s %" PRIu64 " (script expects %" JSON_INTEGER_FORMAT ")",
            label, s->calls[st], want);
  }
}

static void report(demo_t *d, json_t *expect) {
  toolcall_snapshot_t s;
  int rc = toolcall_ledger_snapshot(d->ledger, &s);
  if (rc != 0) {
    fprintf(stderr, "agent_demo: toolcall_ledger_snapshot: %s\n",
            toolcall_strerror(rc));
    d->failures++;
    return;
  }
  uint64_t runs = atomic_load(&d->tools.runs);

  heading(d, "usage — exact, from the ledger");
  printf("  requests            %8" PRIu64 "   (limit %d)\n", s.usage.requests,
         REQUEST_LIMIT);
  printf("  input_tokens        %8" PRIu64 "\n", s.usage.input_tokens);
  printf("  output_tokens       %8" PRIu64 "\n", s.usage.output_tokens);
  printf("  cache_read_tokens   %8" PRIu64 "\n", s.usage.cache_read_tokens);
  printf("  cache_write_tokens  %8" PRIu64 "\n", s.usage.cache_write_tokens);
  printf("  dispatched          %8" PRIu64 "   tool calls the model made\n",
         s.dispatched);
  printf("  tool_calls          %8" PRIu64 "   ran and returned ok\n",
         s.tool_calls);
  printf("  calls by status\n");
  uint64_t sum = 0;
  for (int st = 0; st < TOOLCALL_STATUS_SLOTS_; st++) {
    sum += s.calls[st];
    if (st < TOOLCALL_STATUS_COUNT)
      printf("    %-17s %8" PRIu64 "\n",
             toolcall_status_name((toolcall_status_t)st), s.calls[st]);
  }

  heading(d, "checks");
  check(d, s.dispatched == sum,
        "conservation: dispatched %" PRIu64 " == sum of calls[] %" PRIu64,
        s.dispatched, sum);
  check(d, s.dispatched == d->calls_made,
        "dispatched %" PRIu64 " == calls in the responses %" PRIu64,
        s.dispatched, d->calls_made);
  check(d, s.tool_calls == s.calls[TOOLCALL_OK],
        "tool_calls %" PRIu64 " == calls[ok] %" PRIu64, s.tool_calls,
        s.calls[TOOLCALL_OK]);
  bool same = true;
  for (int st = 0; st < TOOLCALL_STATUS_SLOTS_; st++)
    same &= s.calls[st] == d->results[st];
  check(d, same, "calls[] == the statuses of the results the batches gave");
  check(d, runs == d->started,
        "tools entered %" PRIu64 " times == calls started %" PRIu64
        " (retries and unknown tools never reach a tool)",
        runs, d->started);
  check(d,
        s.usage.requests == d->reported.requests &&
            s.usage.input_tokens == d->reported.input_tokens &&
            s.usage.output_tokens == d->reported.output_tokens &&
            s.usage.cache_read_tokens == d->reported.cache_read_tokens &&
            s.usage.cache_write_tokens == d->reported.cache_write_tokens,
        "ledger usage == the sum of the responses' usage");
  check(d, s.reserved_requests == 0 && s.reserved_tool_calls == 0,
        "nothing left reserved (requests %" PRIu64 ", tool calls %" PRIu64 ")",
        s.reserved_requests, s.reserved_tool_calls);
  if (expect != NULL)
    check_expectations(d, expect, &s, runs);
}

/* ======================================================================== */
/* main                                                                     */

static void usage_exit(const char *prog, int status) {
  fprintf(status == 0 ? stdout : stderr,
          "usage: %s [--format openai|responses|anthropic|gemini] "
          "[--script FILE] [--quiet] [--full]\n"
          "  --format  the provider's response shape (default: the script's, "
          "else openai)\n"
          "  --script  a script of responses (default: %s/FORMAT.json)\n"
          "  --quiet   print only the final usage and checks\n"
          "  --full    do not shorten long JSON and messages\n",
          prog, AGENT_DEMO_SCRIPTS);
  exit(status);
}

/* Load the script and settle the format. NULL (after a message) on error. */
static json_t *load_script(demo_t *d, const char *format_name,
                           const char *path, char *buf, size_t cap) {
  if (format_name != NULL &&
      toolcall_wire_format_from_name(format_name, &d->format) != 0) {
    fprintf(stderr,
            "agent_demo: unknown format '%s' (want openai, responses, "
            "anthropic or gemini; see --help)\n",
            format_name);
    return NULL;
  }
  if (path == NULL) {
    snprintf(buf, cap, "%s/%s.json", AGENT_DEMO_SCRIPTS,
             toolcall_wire_format_name(d->format));
    path = buf;
  }
  d->script_path = path;
  json_error_t jerr;
  json_t *script = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
  if (script == NULL) {
    if (jerr.line > 0) /* a syntax error; else the file could not be read */
      fprintf(stderr, "agent_demo: %s:%d: %s\n", path, jerr.line, jerr.text);
    else
      fprintf(stderr, "agent_demo: %s\n", jerr.text);
    return NULL;
  }
  const char *sf = json_string_value(json_object_get(script, "format"));
  toolcall_wire_format_t script_format;
  if (sf != NULL) {
    if (toolcall_wire_format_from_name(sf, &script_format) != 0) {
      fprintf(stderr, "agent_demo: %s: unknown format '%s'\n", path, sf);
      return json_decref(script), NULL;
    }
    if (format_name == NULL)
      d->format = script_format;
    else if (script_format != d->format) {
      fprintf(stderr, "agent_demo: %s is a script for %s, not for %s\n",
              path, sf, format_name);
      return json_decref(script), NULL;
    }
  }
  json_t *steps = json_object_get(script, "steps");
  if (!json_is_array(steps) || json_array_size(steps) == 0) {
    fprintf(stderr, "agent_demo: %s: \"steps\" must be a non-empty array\n",
            path);
    return json_decref(script), NULL;
  }
  json_t *expect = json_object_get(script, "expect");
  if (expect != NULL && !json_is_object(expect)) {
    fprintf(stderr, "agent_demo: %s: \"expect\" must be an object\n", path);
    return json_decref(script), NULL;
  }
  return script;
}

/* Registry, ledger with its limit, run, manager. */
static int setup(demo_t *d) {
  int rc;
  if ((rc = uv_loop_init(&d->loop)) != 0)
    return rc;
  d->tools.root = AGENT_DEMO_ROOT;
  d->tools.loop = &d->loop;
  atomic_init(&d->tools.runs, 0);
  if ((rc = toolcall_registry_new(&d->registry)) != 0 ||
      (rc = register_tools(d->registry, &d->tools)) != 0 ||
      (rc = toolcall_ledger_new(&d->ledger)) != 0)
    return rc;
  toolcall_limits_t limits;
  toolcall_limits_init(&limits);
  limits.requests = REQUEST_LIMIT;
  if ((rc = toolcall_ledger_set_limits(d->ledger, &limits)) != 0 ||
      (rc = toolcall_run_new(d->registry, &d->run)) != 0)
    return rc;
  toolcall_manager_options_t opts;
  toolcall_manager_options_init(&opts);
  opts.registry = d->registry;
  opts.ledger = d->ledger;
  opts.data = d;
  opts.max_concurrency = MAX_CONCURRENCY;
  opts.timeout_ms = CALL_TIMEOUT_MS;
  opts.on_call_start = on_call_start;
  opts.on_call_end = on_call_end;
  return toolcall_manager_new(&d->manager, &d->loop, &opts);
}

static void print_header(demo_t *d, json_t *script) {
  char *tools = NULL;
  size_t tools_len = 0;
  toolcall_error_t err;
  int rc = toolcall_wire_write_tools(d->format, d->registry, &tools,
                                     &tools_len, &err);
  if (rc != 0) {
    fprintf(stderr, "agent_demo: toolcall_wire_write_tools: %s\n",
            err.message);
    d->failures++;
  }
  if (!d->quiet) {
    printf("agent_demo · toolcall %s · libuv %s · jansson %s\n",
           toolcall_version_string(), uv_version_string(), JANSSON_VERSION);
    printf("format %s · script %s\n", toolcall_wire_format_name(d->format),
           d->script_path);
    printf("tools:");
    for (size_t i = 0; i < toolcall_registry_count(d->registry); i++)
      printf(" %s", toolcall_registry_name(d->registry, i));
    printf(" (%zu bytes of %s tool definitions)\n", tools_len,
           toolcall_wire_format_name(d->format));
    if (d->full && tools != NULL)
      printf("  %s\n", tools);
    printf("limits: %d requests · %d calls at once · %d ms per call\n",
           REQUEST_LIMIT, MAX_CONCURRENCY, CALL_TIMEOUT_MS);
    const char *prompt = json_string_value(json_object_get(script, "prompt"));
    if (prompt != NULL) {
      fputs("\nuser: ", stdout);
      print_wrapped(prompt, 6);
    }
  }
  toolcall_wire_free(tools);
}

int main(int argc, char **argv) {
  const char *format_name = NULL, *script_path = NULL;
  demo_t d;
  memset(&d, 0, sizeof(d));
  d.format = TOOLCALL_WIRE_OPENAI_CHAT;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--format") == 0 && i + 1 < argc)
      format_name = argv[++i];
    else if (strcmp(argv[i], "--script") == 0 && i + 1 < argc)
      script_path = argv[++i];
    else if (strcmp(argv[i], "--quiet") == 0)
      d.quiet = true;
    else if (strcmp(argv[i], "--full") == 0)
      d.full = true;
    else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0)
      usage_exit(argv[0], EXIT_SUCCESS);
    else {
      if (strcmp(argv[i], "--format") == 0 || strcmp(argv[i], "--script") == 0)
        fprintf(stderr, "agent_demo: %s needs a value\n", argv[i]);
      else
        fprintf(stderr, "agent_demo: unknown argument '%s'\n", argv[i]);
      usage_exit(argv[0], 2);
    }
  }
  d.tty = isatty(STDOUT_FILENO) != 0;
  /* Seed jansson's hash before worker threads build objects (see jansson's
   * doc/threadsafety.rst). */
  json_object_seed(0);

  char default_path[4096];
  json_t *script = load_script(&d, format_name, script_path, default_path,
                               sizeof(default_path));
  if (script == NULL)
    return 2;

  int rc = setup(&d);
  if (rc != 0) {
    fprintf(stderr, "agent_demo: setup: %s (%s)\n", toolcall_strerror(rc),
            toolcall_err_name(rc));
    return EXIT_FAILURE; /* the process ends: nothing worth unwinding */
  }
  print_header(&d, script);

  d.conversation = json_array();
  const char *prompt = json_string_value(json_object_get(script, "prompt"));
  if (d.conversation == NULL ||
      (prompt != NULL &&
       json_array_append_new(d.conversation, user_message(d.format, prompt)) !=
           0)) {
    fprintf(stderr, "agent_demo: out of memory\n");
    return EXIT_FAILURE;
  }

  json_t *steps = json_object_get(script, "steps");
  size_t k = 0;
  step_next_t next = STEP_AGAIN;
  while (next == STEP_AGAIN && k < json_array_size(steps)) {
    json_t *body = json_array_get(steps, k);
    k++;
    next = run_step(&d, k, body);
  }
  if (next == STEP_AGAIN && !d.quiet)
    printf("\nthe script ran out of steps while the model still had calls\n");

  /* Two-phase close: the manager is freed in its close callback, on the
   * loop; only then may the registry and the ledger go. */
  rc = toolcall_manager_close(d.manager, on_manager_closed);
  if (rc == 0)
    rc = uv_run(&d.loop, UV_RUN_DEFAULT);
  if (rc != 0 || !d.closed) {
    fprintf(stderr, "agent_demo: the manager did not close\n");
    d.failures++;
  }

  report(&d, json_object_get(script, "expect"));
  rc = uv_loop_close(&d.loop);
  check(&d, rc == 0, "uv_loop_close() == %d: nothing left on the loop", rc);

  if (!d.quiet || d.failures > 0)
    printf("\n%s: %zu step%s, %s\n", d.failures == 0 ? "ok" : "FAILED", k,
           k == 1 ? "" : "s",
           d.failures == 0 ? "every count adds up"
                           : "see the errors above");

  toolcall_run_free(d.run);
  toolcall_registry_free(d.registry);
  toolcall_ledger_free(d.ledger);
  json_decref(d.conversation);
  json_decref(script);
  return d.failures == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
