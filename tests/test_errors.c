/* Naming things: error codes, status names, the version, and the allocator
 * hook's argument checks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "toolcall.h"

/* ---- fixture: a loop, a one-tool registry and a manager ---------------- */

typedef struct {
  uv_loop_t loop;
  toolcall_registry_t *reg;
  toolcall_manager_t *m;
  int close_cb_calls;
} fixture_t;

static void noop_tool(toolcall_call_t *call, void *data) {
  (void)data;
  toolcall_call_complete(call, TOOLCALL_OK, NULL, 0);
}

static void on_manager_closed(toolcall_manager_t *m) {
  fixture_t *fx = toolcall_manager_data(m);
  assert_non_null(fx);
  assert_ptr_equal(m, fx->m);
  fx->close_cb_calls++;
}

static void fixture_open(fixture_t *fx) {
  memset(fx, 0, sizeof(*fx));
  assert_int_equal(uv_loop_init(&fx->loop), 0);
  assert_int_equal(toolcall_registry_new(&fx->reg), 0);
  toolcall_tool_t def;
  toolcall_tool_init(&def);
  def.name = "noop";
  def.fn = noop_tool;
  assert_int_equal(toolcall_registry_add(fx->reg, &def, NULL), 0);
  toolcall_manager_options_t opts;
  toolcall_manager_options_init(&opts);
  opts.registry = fx->reg;
  opts.data = fx;
  assert_int_equal(toolcall_manager_new(&fx->m, &fx->loop, &opts), 0);
}

static void fixture_close(fixture_t *fx) {
  assert_int_equal(toolcall_manager_close(fx->m, on_manager_closed), 0);
  assert_int_equal(uv_run(&fx->loop, UV_RUN_DEFAULT), 0);
  assert_int_equal(fx->close_cb_calls, 1);
  assert_int_equal(uv_loop_close(&fx->loop), 0);
  toolcall_registry_free(fx->reg);
  fx->reg = NULL;
  fx->m = NULL;
}

/* ---- tests ------------------------------------------------------------- */

/* One below the lowest of the library's codes: the next one to be added,
 * so not a code yet. */
static int next_library_code(void) {
  int lowest = TOOLCALL_ERRNO_MAX_;
#define LOWEST_(name, code, msg)                                               \
  if ((code) < lowest)                                                         \
    lowest = (code);
  TOOLCALL_ERRNO_MAP(LOWEST_)
#undef LOWEST_
  return lowest - 1;
}

static void test_errors_library_codes(void **state) {
  (void)state;
  fixture_t fx;
  fixture_open(&fx);
  int seen = 0;
  int codes[64];
#define CHECK_CODE_(name, code, msg)                                           \
  do {                                                                         \
    assert_int_equal(TOOLCALL_##name, (code));                                 \
    assert_string_equal(toolcall_strerror(TOOLCALL_##name), (msg));            \
    assert_string_equal(toolcall_err_name(TOOLCALL_##name),                    \
                        "TOOLCALL_" #name);                                    \
    /* clear of libuv's codes (-1..-4095) */                                   \
    assert_true(TOOLCALL_##name < TOOLCALL_ERRNO_MAX_);                        \
    assert_true(seen < 64);                                                    \
    codes[seen++] = TOOLCALL_##name;                                           \
  } while (0);
  TOOLCALL_ERRNO_MAP(CHECK_CODE_)
#undef CHECK_CODE_
  assert_true(seen >= 5);
  for (int i = 0; i < seen; i++)
    for (int j = 0; j < i; j++)
      assert_int_not_equal(codes[i], codes[j]);
  fixture_close(&fx);
}

static void test_errors_uv_codes(void **state) {
  (void)state;
  fixture_t fx;
  fixture_open(&fx);
  assert_string_equal(toolcall_err_name(UV_ENOMEM), "UV_ENOMEM");
  assert_string_equal(toolcall_err_name(UV_EINVAL), "UV_EINVAL");
  assert_string_equal(toolcall_err_name(UV_EEXIST), "UV_EEXIST");
  assert_string_equal(toolcall_err_name(UV_ENAMETOOLONG), "UV_ENAMETOOLONG");
  assert_string_equal(toolcall_err_name(UV_E2BIG), "UV_E2BIG");
  assert_string_equal(toolcall_err_name(UV_EILSEQ), "UV_EILSEQ");
  assert_string_equal(toolcall_err_name(UV_EOVERFLOW), "UV_EOVERFLOW");
  assert_string_equal(toolcall_err_name(UV_ENOENT), "UV_ENOENT");
  assert_string_equal(toolcall_err_name(UV_ENOSPC), "UV_ENOSPC");
  assert_string_equal(toolcall_strerror(UV_ENOMEM), "not enough memory");
  /* Every libuv code, named and described as libuv does. */
  int n = 0;
#define CHECK_UV_(name, msg)                                                   \
  do {                                                                         \
    assert_string_equal(toolcall_err_name(UV_##name), "UV_" #name);            \
    assert_string_equal(toolcall_strerror(UV_##name), (msg));                  \
    n++;                                                                       \
  } while (0);
  UV_ERRNO_MAP(CHECK_UV_)
#undef CHECK_UV_
  assert_true(n > 50);
  fixture_close(&fx);
}

static void test_errors_zero(void **state) {
  (void)state;
  fixture_t fx;
  fixture_open(&fx);
  const char *msg = toolcall_strerror(0);
  const char *name = toolcall_err_name(0);
  assert_non_null(msg);
  assert_non_null(name);
  assert_true(strlen(msg) > 0);
  assert_true(strlen(name) > 0);
  assert_string_not_equal(msg, "unknown error");
  assert_string_not_equal(msg, toolcall_strerror(UV_EINVAL));
  assert_string_not_equal(name, toolcall_err_name(next_library_code()));
  fixture_close(&fx);
}

static void test_errors_unknown_code(void **state) {
  (void)state;
  fixture_t fx;
  fixture_open(&fx);
  /* Next to the library's range, inside libuv's range, and positive: none of
   * them is a code. The header promises "unknown error" for each, as a
   * static string (nothing to free, same answer every time). */
  const int unknown[] = {next_library_code(),
                         TOOLCALL_ERRNO_MAX_,
                         -29999,
                         -3999,
                         -12345,
                         12345,
                         INT32_MIN};
  const char *unknown_name = toolcall_err_name(next_library_code());
  assert_non_null(unknown_name);
  assert_true(strlen(unknown_name) > 0);
  for (size_t i = 0; i < sizeof(unknown) / sizeof(unknown[0]); i++) {
    const char *msg = toolcall_strerror(unknown[i]);
    assert_non_null(msg);
    assert_string_equal(msg, "unknown error");
    const char *name = toolcall_err_name(unknown[i]);
    assert_non_null(name);
    assert_string_equal(name, unknown_name);
    assert_string_not_equal(name, "TOOLCALL_EDUPID");
    assert_string_not_equal(name, "UV_EINVAL");
  }
  fixture_close(&fx);
}

static void test_errors_status_names(void **state) {
  (void)state;
  fixture_t fx;
  fixture_open(&fx);
  static const char *const expected[TOOLCALL_STATUS_COUNT] = {
      "ok",        "tool_error", "retry",    "unknown_tool",
      "timed_out", "cancelled",  "rejected", "deferred", "denied"};
  assert_string_equal(toolcall_status_name(TOOLCALL_OK), "ok");
  assert_string_equal(toolcall_status_name(TOOLCALL_TOOL_ERROR), "tool_error");
  assert_string_equal(toolcall_status_name(TOOLCALL_RETRY), "retry");
  assert_string_equal(toolcall_status_name(TOOLCALL_UNKNOWN_TOOL),
                      "unknown_tool");
  assert_string_equal(toolcall_status_name(TOOLCALL_TIMED_OUT), "timed_out");
  assert_string_equal(toolcall_status_name(TOOLCALL_CANCELLED), "cancelled");
  assert_string_equal(toolcall_status_name(TOOLCALL_REJECTED), "rejected");
  assert_string_equal(toolcall_status_name(TOOLCALL_DEFERRED), "deferred");
  for (int s = 0; s < TOOLCALL_STATUS_COUNT; s++)
    assert_string_equal(toolcall_status_name((toolcall_status_t)s),
                        expected[s]);
  assert_string_equal(toolcall_status_name(TOOLCALL_STATUS_COUNT), "invalid");
  assert_string_equal(toolcall_status_name(TOOLCALL_STATUS_SLOTS_), "invalid");
  assert_string_equal(toolcall_status_name((toolcall_status_t)-1), "invalid");
  assert_string_equal(toolcall_status_name((toolcall_status_t)1000), "invalid");
  fixture_close(&fx);
}

static void test_errors_version(void **state) {
  (void)state;
  fixture_t fx;
  fixture_open(&fx);
  char buf[64];
  snprintf(buf, sizeof(buf), "%d.%d.%d", TOOLCALL_VERSION_MAJOR,
           TOOLCALL_VERSION_MINOR, TOOLCALL_VERSION_PATCH);
  assert_non_null(toolcall_version_string());
  assert_string_equal(toolcall_version_string(), buf);
  assert_int_equal(toolcall_version(), TOOLCALL_VERSION_HEX);
  assert_int_equal(toolcall_version() >> 16, TOOLCALL_VERSION_MAJOR);
  assert_int_equal((toolcall_version() >> 8) & 0xff, TOOLCALL_VERSION_MINOR);
  assert_int_equal(toolcall_version() & 0xff, TOOLCALL_VERSION_PATCH);
  fixture_close(&fx);
}

/* A counting allocator. Atomic: worker tools allocate on pool threads. */
static atomic_long counted_allocs;
static atomic_long counted_live;

static void *counting_malloc(size_t size) {
  void *p = malloc(size);
  if (p != NULL) {
    atomic_fetch_add(&counted_allocs, 1);
    atomic_fetch_add(&counted_live, 1);
  }
  return p;
}

static void *counting_realloc(void *ptr, size_t size) {
  void *p = realloc(ptr, size);
  if (p != NULL && ptr == NULL) {
    atomic_fetch_add(&counted_allocs, 1);
    atomic_fetch_add(&counted_live, 1);
  }
  return p;
}

static void *counting_calloc(size_t count, size_t size) {
  void *p = calloc(count, size);
  if (p != NULL) {
    atomic_fetch_add(&counted_allocs, 1);
    atomic_fetch_add(&counted_live, 1);
  }
  return p;
}

static void counting_free(void *ptr) {
  if (ptr != NULL)
    atomic_fetch_sub(&counted_live, 1);
  free(ptr);
}

static void test_errors_replace_allocator(void **state) {
  (void)state;
  atomic_store(&counted_allocs, 0);
  atomic_store(&counted_live, 0);

  /* Each function is required; a refused call installs nothing. */
  assert_int_equal(toolcall_replace_allocator(NULL, counting_realloc,
                                              counting_calloc, counting_free),
                   UV_EINVAL);
  assert_int_equal(toolcall_replace_allocator(counting_malloc, NULL,
                                              counting_calloc, counting_free),
                   UV_EINVAL);
  assert_int_equal(toolcall_replace_allocator(counting_malloc, counting_realloc,
                                              NULL, counting_free),
                   UV_EINVAL);
  assert_int_equal(toolcall_replace_allocator(counting_malloc, counting_realloc,
                                              counting_calloc, NULL),
                   UV_EINVAL);
  assert_int_equal(toolcall_replace_allocator(NULL, NULL, NULL, NULL),
                   UV_EINVAL);
  toolcall_registry_t *reg = NULL;
  assert_int_equal(toolcall_registry_new(&reg), 0);
  toolcall_registry_free(reg);
  assert_int_equal(atomic_load(&counted_allocs), 0);

  /* A real replacement sees every allocation of a manager's life, and each
   * is freed by the time its close callback has run. */
  assert_int_equal(toolcall_replace_allocator(counting_malloc, counting_realloc,
                                              counting_calloc, counting_free),
                   0);
  fixture_t fx;
  fixture_open(&fx);
  assert_true(atomic_load(&counted_allocs) >= 3); /* registry, tool, manager */
  fixture_close(&fx);
  assert_int_equal(atomic_load(&counted_live), 0);

  /* Restore the C library's allocator; the counter no longer moves. */
  assert_int_equal(toolcall_replace_allocator(malloc, realloc, calloc, free),
                   0);
  long before = atomic_load(&counted_allocs);
  fixture_open(&fx);
  fixture_close(&fx);
  assert_int_equal(atomic_load(&counted_allocs), before);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_errors_library_codes),
      cmocka_unit_test(test_errors_uv_codes),
      cmocka_unit_test(test_errors_zero),
      cmocka_unit_test(test_errors_unknown_code),
      cmocka_unit_test(test_errors_status_names),
      cmocka_unit_test(test_errors_version),
      cmocka_unit_test(test_errors_replace_allocator),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
