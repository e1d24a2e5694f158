/*
 * parallel_demo — run the tool calls of one model response in parallel.
 *
 * A host program (an agent runtime) has just received a model response that
 * asks for several tool calls at once. This demo shows the whole life cycle
 * with toolcall:
 *
 *   1. register tools in a registry: two worker tools (blocking C functions
 *      run on the libuv threadpool) and one loop tool (started on the loop
 *      thread, completed later from a uv_timer_t callback);
 *   2. create a ledger and a manager bound to a loop;
 *   3. add the usage of the model response (requests, tokens) to the ledger;
 *   4. dispatch the calls as one batch; the batch callback gets the results
 *      in call order, whatever order they finished in;
 *   5. close the manager, run the loop dry, close the loop;
 *   6. read the exact usage back from the ledger and check that every
 *      dispatched call was counted exactly once.
 *
 * Usage: parallel_demo [FILE...]
 *   Hashes and counts the words of each FILE (default: /etc/os-release,
 *   /etc/passwd and the demo binary itself). Compare with sha256sum/wc -w.
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef _POSIX_C_SOURCE
#define _POSIX_C_SOURCE 200809L
#endif

#include <toolcall.h>

#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sha256.h"

/* ======================================================================== */
/* Tiny JSON helpers. A real host would use a JSON library; for flat        */
/* arguments like {"path":"/etc/hostname"} or {"ms":50} this is enough.     */

/* Find "key": in a flat object and return a pointer to its value, or NULL.
 * (Naive: it does not skip over string values that happen to contain the
 * quoted key followed by a colon. Good enough for a demo.) */
static const char *json_find_value(const char *json, const char *key) {
  size_t klen = strlen(key);
  for (const char *p = strchr(json, '"'); p != NULL; p = strchr(p + 1, '"')) {
    if (strncmp(p + 1, key, klen) != 0 || p[1 + klen] != '"')
      continue;
    const char *v = p + klen + 2;
    while (isspace((unsigned char)*v))
      v++;
    if (*v != ':')
      continue;
    v++;
    while (isspace((unsigned char)*v))
      v++;
    return v;
  }
  return NULL;
}

/* Copy the string field `key` into out (decoding the usual escapes; \u
 * escapes only for ASCII). 0 on success, -1 if missing, not a string, badly
 * escaped or too long for out. */
static int json_get_string(const char *json, const char *key, char *out,
                           size_t cap) {
  const char *p = json_find_value(json, key);
  if (p == NULL || *p != '"')
    return -1;
  size_t n = 0;
  for (p++; *p != '"'; p++) {
    char c = *p;
    if (c == '\0')
      return -1;
    if (c == '\\') {
      switch (*++p) {
      case '"': c = '"'; break;
      case '\\': c = '\\'; break;
      case '/': c = '/'; break;
      case 'b': c = '\b'; break;
      case 'f': c = '\f'; break;
      case 'n': c = '\n'; break;
      case 'r': c = '\r'; break;
      case 't': c = '\t'; break;
      case 'u': {
        unsigned v = 0;
        for (int i = 1; i <= 4; i++) {
          int d = (unsigned char)p[i];
          if (!isxdigit(d))
            return -1;
          v = v * 16 + (unsigned)(isdigit(d) ? d - '0' : (tolower(d) - 'a' + 10));
        }
        if (v == 0 || v > 0x7f)
          return -1;
        c = (char)v;
        p += 4;
        break;
      }
      default:
        return -1;
      }
    }
    if (n + 1 >= cap)
      return -1;
    out[n++] = c;
  }
  out[n] = '\0';
  return 0;
}

/* Read the non-negative integer field `key`. 0 on success, -1 otherwise. */
static int json_get_uint(const char *json, const char *key, uint64_t *out) {
  const char *p = json_find_value(json, key);
  if (p == NULL || !isdigit((unsigned char)*p))
    return -1;
  uint64_t v = 0;
  for (; isdigit((unsigned char)*p); p++) {
    if (v > (UINT64_MAX - 9) / 10)
      return -1;
    v = v * 10 + (uint64_t)(*p - '0');
  }
  *out = v;
  return 0;
}

/* Write s as a JSON string literal (with quotes) into out. Returns the
 * length written, or -1 if it does not fit. */
static int json_quote(char *out, size_t cap, const char *s) {
  size_t n = 0;
#define PUT(ch)                                                                \
  do {                                                                         \
    if (n + 1 >= cap)                                                          \
      return -1;                                                               \
    out[n++] = (ch);                                                           \
  } while (0)
  PUT('"');
  for (; *s != '\0'; s++) {
    unsigned char c = (unsigned char)*s;
    if (c == '"' || c == '\\') {
      PUT('\\');
      PUT((char)c);
    } else if (c < 0x20) {
      if (n + 7 >= cap)
        return -1;
      n += (size_t)snprintf(out + n, cap - n, "\\u%04x", c);
    } else {
      PUT((char)c);
    }
  }
  PUT('"');
#undef PUT
  out[n] = '\0';
  return (int)n;
}

/* ======================================================================== */
/* Tools                                                                    */

#define PATH_ARG_MAX 4096

/* Parse {"path": "..."}; on failure end the call with a retry (the model
 * should fix its arguments) and return -1. */
static int path_argument(toolcall_call_t *call, char path[PATH_ARG_MAX]) {
  const char *args = toolcall_call_arguments(call, NULL);
  if (json_get_string(args, "path", path, PATH_ARG_MAX) == 0 && path[0] != '\0')
    return 0;
  (void)toolcall_call_complete(
      call, TOOLCALL_RETRY,
      "arguments must be an object with a non-empty string field \"path\"", 0);
  return -1;
}

/* End the call with a tool error that says why the file could not be read.
 * errno is per thread, and uv_strerror()/uv_err_name() return static
 * strings, so this is safe on a worker thread (strerror() is not). */
static void fail_with_errno(toolcall_call_t *call, const char *what,
                            const char *path, int errnum) {
  char msg[PATH_ARG_MAX + 128];
  snprintf(msg, sizeof(msg), "cannot %s %s: %s (%s)", what, path,
           uv_strerror(-errnum), uv_err_name(-errnum));
  (void)toolcall_call_complete(call, TOOLCALL_TOOL_ERROR, msg, 0);
}

/* sha256_file — worker tool: runs on a threadpool thread, may block. */
static void sha256_file_tool(toolcall_call_t *call, void *tool_data) {
  (void)tool_data;
  char path[PATH_ARG_MAX];
  if (path_argument(call, path) != 0)
    return;
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    fail_with_errno(call, "open", path, errno);
    return;
  }
  sha256_ctx_t ctx;
  sha256_init(&ctx);
  unsigned char buf[64 * 1024];
  size_t got;
  while ((got = fread(buf, 1, sizeof(buf), f)) > 0)
    sha256_update(&ctx, buf, got);
  int read_errno = ferror(f) ? (errno != 0 ? errno : EIO) : 0;
  fclose(f);
  if (read_errno != 0) {
    fail_with_errno(call, "read", path, read_errno);
    return;
  }
  char hex[65];
  sha256_final_hex(&ctx, hex);

  /* Report the work done. The ledger is safe to use from any thread; use
   * the call's pointers before completing it: after toolcall_call_complete
   * returns, `call` is invalid. */
  (void)toolcall_ledger_add_detail(toolcall_call_ledger(call), "bytes_hashed",
                                   ctx.bytes);

  char quoted[2 * PATH_ARG_MAX + 8];
  char out[sizeof(quoted) + 128];
  if (json_quote(quoted, sizeof(quoted), path) < 0)
    snprintf(quoted, sizeof(quoted), "null");
  snprintf(out, sizeof(out), "{\"path\":%s,\"sha256\":\"%s\",\"bytes\":%" PRIu64 "}",
           quoted, hex, ctx.bytes);
  (void)toolcall_call_complete(call, TOOLCALL_OK, out, 0);
}

/* word_count — worker tool: words (as `wc -w` counts them: runs of
 * non-space bytes), lines and bytes of a file. */
static void word_count_tool(toolcall_call_t *call, void *tool_data) {
  (void)tool_data;
  char path[PATH_ARG_MAX];
  if (path_argument(call, path) != 0)
    return;
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    fail_with_errno(call, "open", path, errno);
    return;
  }
  uint64_t words = 0, lines = 0, bytes = 0;
  bool in_word = false;
  unsigned char buf[64 * 1024];
  size_t got;
  while ((got = fread(buf, 1, sizeof(buf), f)) > 0) {
    bytes += got;
    for (size_t i = 0; i < got; i++) {
      /* the C locale's isspace(): space, \t \n \v \f \r */
      bool space = isspace(buf[i]) != 0;
      if (!space && !in_word)
        words++;
      in_word = !space;
      lines += buf[i] == '\n';
    }
  }
  int read_errno = ferror(f) ? (errno != 0 ? errno : EIO) : 0;
  fclose(f);
  if (read_errno != 0) {
    fail_with_errno(call, "read", path, read_errno);
    return;
  }
  (void)toolcall_ledger_add_detail(toolcall_call_ledger(call), "words_counted",
                                   words);
  char quoted[2 * PATH_ARG_MAX + 8];
  char out[sizeof(quoted) + 128];
  if (json_quote(quoted, sizeof(quoted), path) < 0)
    snprintf(quoted, sizeof(quoted), "null");
  snprintf(out, sizeof(out),
           "{\"path\":%s,\"words\":%" PRIu64 ",\"lines\":%" PRIu64
           ",\"bytes\":%" PRIu64 "}",
           quoted, words, lines, bytes);
  (void)toolcall_call_complete(call, TOOLCALL_OK, out, 0);
}

/* wait_ms — loop tool: started on the loop thread, it must not block. It
 * arms a timer and returns; the timer callback completes the call. The
 * tool's data is the loop to put the timer on. */
#define WAIT_MS_MAX 10000

typedef struct {
  uv_timer_t timer;
  toolcall_call_t *call;
  uint64_t ms;
} wait_req_t;

static void on_wait_closed(uv_handle_t *handle) { free(handle->data); }

static void on_wait_timer(uv_timer_t *timer) {
  wait_req_t *w = timer->data;
  char out[64];
  snprintf(out, sizeof(out), "{\"waited_ms\":%" PRIu64 "}", w->ms);
  (void)toolcall_call_complete(w->call, TOOLCALL_OK, out, 0);
  w->call = NULL; /* invalid from here on */
  uv_close((uv_handle_t *)timer, on_wait_closed);
}

static void wait_ms_tool(toolcall_call_t *call, void *tool_data) {
  uv_loop_t *loop = tool_data;
  uint64_t ms;
  if (json_get_uint(toolcall_call_arguments(call, NULL), "ms", &ms) != 0 ||
      ms > WAIT_MS_MAX) {
    char msg[128];
    snprintf(msg, sizeof(msg),
             "arguments must be an object with an integer field \"ms\" "
             "between 0 and %d",
             WAIT_MS_MAX);
    (void)toolcall_call_complete(call, TOOLCALL_RETRY, msg, 0);
    return;
  }
  wait_req_t *w = malloc(sizeof(*w));
  if (w == NULL) {
    (void)toolcall_call_complete(call, TOOLCALL_TOOL_ERROR, "out of memory", 0);
    return;
  }
  w->call = call;
  w->ms = ms;
  uv_timer_init(loop, &w->timer); /* cannot fail on unix */
  w->timer.data = w;
  /* Timers count from the loop's cached "now", which is stale when a batch
   * is submitted before uv_run() or after a long callback: refresh it so
   * the wait is not cut short. */
  uv_update_time(loop);
  uv_timer_start(&w->timer, on_wait_timer, ms, 0);
}

/* ======================================================================== */
/* The host                                                                 */

#define CHECK(expr)                                                            \
  do {                                                                         \
    int check_rc_ = (expr);                                                    \
    if (check_rc_ != 0) {                                                      \
      fprintf(stderr, "%s:%d: %s failed: %s (%s)\n", __FILE__, __LINE__,      \
              #expr, toolcall_strerror(check_rc_),                             \
              toolcall_err_name(check_rc_));                                   \
      exit(EXIT_FAILURE);                                                      \
    }                                                                          \
  } while (0)

typedef struct {
  uint64_t submitted_ns;
  uint64_t batch_ns;     /* submit to batch callback */
  uint64_t sum_call_ns;  /* sum of the calls' durations */
  size_t n_calls;
  size_t unknown_index;  /* calls whose outcome the demo knows in advance */
  size_t missing_index;
  bool batch_done;
  bool manager_closed;
  int failures;
} demo_t;

static void on_manager_closed(toolcall_manager_t *manager) {
  demo_t *demo = toolcall_manager_data(manager);
  demo->manager_closed = true;
}

static void print_text(const char *s) {
  /* outputs and messages are text for the model; keep the table one line
   * per call */
  for (; *s != '\0'; s++)
    putchar(*s == '\n' ? ' ' : *s);
}

static void on_batch_done(toolcall_batch_t *batch, int status) {
  demo_t *demo = toolcall_batch_data(batch);
  demo->batch_ns = uv_hrtime() - demo->submitted_ns;
  demo->batch_done = true;
  if (status != 0) {
    fprintf(stderr, "batch failed: %s\n", toolcall_strerror(status));
    demo->failures++;
  }

  printf("%-3s %-8s %-12s %-13s %9s  %s\n", "#", "id", "tool", "status", "ms",
         "output / message");
  for (size_t i = 0; i < toolcall_batch_size(batch); i++) {
    const toolcall_result_t *r = toolcall_batch_result(batch, i);
    printf("%-3zu %-8s %-12s %-13s %9.3f  ", i, r->id, r->tool,
           toolcall_status_name(r->status), (double)r->duration_ns / 1e6);
    print_text(r->status == TOOLCALL_OK ? r->output : r->message);
    putchar('\n');
    demo->sum_call_ns += r->duration_ns;
  }

  /* The demo knows how two of its calls must end. */
  const toolcall_result_t *unknown =
      toolcall_batch_result(batch, demo->unknown_index);
  const toolcall_result_t *missing =
      toolcall_batch_result(batch, demo->missing_index);
  if (unknown->status != TOOLCALL_UNKNOWN_TOOL || unknown->message == NULL) {
    fprintf(stderr, "call %zu: expected unknown_tool\n", demo->unknown_index);
    demo->failures++;
  }
  if (missing->status != TOOLCALL_TOOL_ERROR || missing->message == NULL) {
    fprintf(stderr, "call %zu: expected tool_error\n", demo->missing_index);
    demo->failures++;
  }

  /* The results are ours: free the batch, then close the manager (nothing
   * else is in flight, so its close callback comes right after). */
  toolcall_manager_t *manager = toolcall_batch_manager(batch);
  toolcall_batch_free(batch);
  CHECK(toolcall_manager_close(manager, on_manager_closed));
}

static void add_tool(toolcall_registry_t *reg, const char *name,
                     toolcall_tool_kind_t kind, toolcall_tool_fn fn,
                     void *data, const char *description, const char *schema) {
  toolcall_tool_t def;
  toolcall_tool_init(&def);
  def.name = name;
  def.kind = kind;
  def.fn = fn;
  def.data = data;
  def.description = description;
  def.schema = schema;
  toolcall_error_t err;
  if (toolcall_registry_add(reg, &def, &err) != 0) {
    fprintf(stderr, "cannot register %s: %s\n", name, err.message);
    exit(EXIT_FAILURE);
  }
}

/* The batch is built from strings we own; submit copies them. */
typedef struct {
  toolcall_call_spec_t *specs;
  char **owned; /* ids and arguments to free */
  size_t n, cap, nowned;
} call_list_t;

static char *xstrdup(const char *s) {
  size_t len = strlen(s) + 1;
  char *copy = malloc(len);
  if (copy == NULL) {
    fprintf(stderr, "out of memory\n");
    exit(EXIT_FAILURE);
  }
  return memcpy(copy, s, len);
}

static size_t add_call(call_list_t *list, const char *tool, const char *args) {
  if (list->n == list->cap) {
    list->cap = list->cap ? 2 * list->cap : 16;
    list->specs = realloc(list->specs, list->cap * sizeof(*list->specs));
    list->owned = realloc(list->owned, 2 * list->cap * sizeof(*list->owned));
    if (list->specs == NULL || list->owned == NULL) {
      fprintf(stderr, "out of memory\n");
      exit(EXIT_FAILURE);
    }
  }
  char id[32];
  snprintf(id, sizeof(id), "call_%02zu", list->n + 1); /* model-chosen ids */
  toolcall_call_spec_t *spec = &list->specs[list->n];
  memset(spec, 0, sizeof(*spec));
  spec->id = list->owned[list->nowned++] = xstrdup(id);
  spec->name = tool;
  spec->arguments = list->owned[list->nowned++] = xstrdup(args);
  return list->n++;
}

/* {"path":"<file>"} with the path escaped. */
static const char *path_args(char *buf, size_t cap, const char *path) {
  char quoted[2 * PATH_ARG_MAX + 8];
  if (json_quote(quoted, sizeof(quoted), path) < 0) {
    fprintf(stderr, "path too long: %s\n", path);
    exit(EXIT_FAILURE);
  }
  snprintf(buf, cap, "{\"path\":%s}", quoted);
  return buf;
}

int main(int argc, char **argv) {
  const char *default_files[] = {"/etc/os-release", "/etc/passwd", argv[0]};
  const char *const *files = argc > 1 ? (const char *const *)argv + 1
                                      : default_files;
  size_t nfiles = argc > 1 ? (size_t)argc - 1
                           : sizeof(default_files) / sizeof(default_files[0]);

  printf("toolcall %s (header %d.%d.%d), libuv %s\n\n",
         toolcall_version_string(), TOOLCALL_VERSION_MAJOR,
         TOOLCALL_VERSION_MINOR, TOOLCALL_VERSION_PATCH, uv_version_string());

  /* Our own loop, so we can show that nothing is left on it at the end. */
  uv_loop_t loop;
  CHECK(uv_loop_init(&loop));

  /* 1. The tools. The registry copies the definitions; `data` is borrowed:
   * the loop outlives the registry. */
  toolcall_registry_t *registry;
  CHECK(toolcall_registry_new(&registry));
  add_tool(registry, "sha256_file", TOOLCALL_TOOL_WORKER, sha256_file_tool,
           NULL, "Compute the SHA-256 digest of a file.",
           "{\"type\":\"object\",\"properties\":{\"path\":{\"type\":\"string\"}},"
           "\"required\":[\"path\"]}");
  add_tool(registry, "word_count", TOOLCALL_TOOL_WORKER, word_count_tool, NULL,
           "Count the words, lines and bytes of a file.",
           "{\"type\":\"object\",\"properties\":{\"path\":{\"type\":\"string\"}},"
           "\"required\":[\"path\"]}");
  add_tool(registry, "wait_ms", TOOLCALL_TOOL_LOOP, wait_ms_tool, &loop,
           "Wait for a number of milliseconds.",
           "{\"type\":\"object\",\"properties\":{\"ms\":{\"type\":\"integer\","
           "\"minimum\":0,\"maximum\":10000}},\"required\":[\"ms\"]}");

  /* 2. A ledger we own (so we can read it after the manager is gone; it
   * could also be shared by several managers), and the manager. */
  toolcall_ledger_t *ledger;
  CHECK(toolcall_ledger_new(&ledger));
  demo_t demo;
  memset(&demo, 0, sizeof(demo));
  toolcall_manager_options_t opts;
  toolcall_manager_options_init(&opts);
  opts.registry = registry; /* frozen from now on */
  opts.ledger = ledger;
  opts.data = &demo;
  toolcall_manager_t *manager;
  CHECK(toolcall_manager_new(&manager, &loop, &opts));

  /* 3. The model response that asked for these calls cost one request and
   * some tokens: the host adds them as it reads the response. */
  toolcall_usage_t usage;
  memset(&usage, 0, sizeof(usage));
  usage.requests = 1;
  usage.input_tokens = 1843;
  usage.output_tokens = 212;
  usage.cache_read_tokens = 1536;
  CHECK(toolcall_ledger_add_usage(ledger, &usage));

  /* 4. The tool calls of that response, as one batch. */
  call_list_t calls;
  memset(&calls, 0, sizeof(calls));
  char args[2 * PATH_ARG_MAX + 32];
  for (size_t i = 0; i < nfiles; i++)
    add_call(&calls, "sha256_file", path_args(args, sizeof(args), files[i]));
  add_call(&calls, "wait_ms", "{\"ms\": 50}");
  for (size_t i = 0; i < nfiles && i < 2; i++)
    add_call(&calls, "word_count", path_args(args, sizeof(args), files[i]));
  add_call(&calls, "wait_ms", "{\"ms\": 20}");
  demo.unknown_index =
      add_call(&calls, "fetch_url", "{\"url\":\"https://example.com/\"}");
  demo.missing_index = add_call(
      &calls, "sha256_file", "{\"path\":\"/nonexistent/toolcall-demo.txt\"}");
  demo.n_calls = calls.n;

  toolcall_error_t err;
  demo.submitted_ns = uv_hrtime();
  int rc = toolcall_batch_submit(manager, calls.specs, calls.n, NULL, on_batch_done,
                                 &demo, NULL, &err);
  /* submit copied everything: our strings can go now */
  for (size_t i = 0; i < calls.nowned; i++)
    free(calls.owned[i]);
  free(calls.owned);
  free(calls.specs);
  if (rc != 0) {
    fprintf(stderr, "submit failed: %s\n", err.message);
    return EXIT_FAILURE;
  }

  /* 5. Run until the batch is done and the manager has closed (the batch
   * callback closes it). */
  CHECK(uv_run(&loop, UV_RUN_DEFAULT));
  if (!demo.batch_done || !demo.manager_closed) {
    fprintf(stderr, "the loop stopped before the batch or the close ended\n");
    return EXIT_FAILURE;
  }
  toolcall_registry_free(registry); /* after every manager using it closed */
  rc = uv_loop_close(&loop);
  if (rc != 0) { /* a handle left open on the loop */
    fprintf(stderr, "uv_loop_close: %s\n", uv_strerror(rc));
    return EXIT_FAILURE;
  }

  printf("\n%zu calls: %.3f ms wall time for %.3f ms of tool time\n",
         demo.n_calls, (double)demo.batch_ns / 1e6,
         (double)demo.sum_call_ns / 1e6);

  /* 6. The exact usage. */
  toolcall_snapshot_t snap;
  CHECK(toolcall_ledger_snapshot(ledger, &snap));
  printf("\nusage\n");
  printf("  requests            %" PRIu64 "\n", snap.usage.requests);
  printf("  input_tokens        %" PRIu64 "\n", snap.usage.input_tokens);
  printf("  output_tokens       %" PRIu64 "\n", snap.usage.output_tokens);
  printf("  cache_read_tokens   %" PRIu64 "\n", snap.usage.cache_read_tokens);
  printf("  cache_write_tokens  %" PRIu64 "\n", snap.usage.cache_write_tokens);
  printf("  tool_calls          %" PRIu64 "\n", snap.tool_calls);
  printf("  dispatched          %" PRIu64 "\n", snap.dispatched);
  uint64_t sum = 0;
  for (int s = 0; s < TOOLCALL_STATUS_COUNT; s++) {
    printf("    %-17s %" PRIu64 "\n", toolcall_status_name((toolcall_status_t)s),
           snap.calls[s]);
    sum += snap.calls[s];
  }
  for (int s = TOOLCALL_STATUS_COUNT; s < TOOLCALL_STATUS_SLOTS_; s++)
    sum += snap.calls[s]; /* always 0; counted so nothing can hide there */

  toolcall_detail_t details[16];
  size_t ndetails = 0;
  CHECK(toolcall_ledger_details(ledger, details, 16, &ndetails));
  printf("details\n");
  for (size_t i = 0; i < ndetails && i < 16; i++)
    printf("  %-19s %" PRIu64 "\n", details[i].name, details[i].value);
  toolcall_ledger_free(ledger);

  /* Conservation: every dispatched call ended under exactly one status. */
  bool conserved = snap.dispatched == sum && snap.dispatched == demo.n_calls &&
                   snap.tool_calls == snap.calls[TOOLCALL_OK];
  printf("\nconservation: dispatched %" PRIu64 " == sum of calls[] %" PRIu64
         ": %s\n",
         snap.dispatched, sum, conserved ? "holds" : "BROKEN");
  if (!conserved || demo.failures > 0)
    return EXIT_FAILURE;
  return EXIT_SUCCESS;
}
