/* Error codes, status names and the version: the tables that name things. */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>

#define TOOLCALL_STRINGIFY_(x) #x
#define TOOLCALL_XSTRINGIFY_(x) TOOLCALL_STRINGIFY_(x)

unsigned int toolcall_version(void) { return TOOLCALL_VERSION_HEX; }

const char *toolcall_version_string(void) {
  return TOOLCALL_XSTRINGIFY_(TOOLCALL_VERSION_MAJOR) "." TOOLCALL_XSTRINGIFY_(
      TOOLCALL_VERSION_MINOR) "." TOOLCALL_XSTRINGIFY_(TOOLCALL_VERSION_PATCH);
}

const char *toolcall_strerror(int err) {
  switch (err) {
  case 0:
    return "success";
#define TOOLCALL_STRERROR_CASE_(name, code, msg)                               \
  case TOOLCALL_##name:                                                        \
    return msg;
    TOOLCALL_ERRNO_MAP(TOOLCALL_STRERROR_CASE_)
#undef TOOLCALL_STRERROR_CASE_
  default:
    break;
  }
  /* Only codes libuv knows go to uv_strerror(): for any other it allocates
   * a fresh string that nobody frees. */
  switch (err) {
#define TOOLCALL_UV_STRERROR_CASE_(name, msg)                                  \
  case UV_##name:                                                              \
    return msg;
    UV_ERRNO_MAP(TOOLCALL_UV_STRERROR_CASE_)
#undef TOOLCALL_UV_STRERROR_CASE_
  default:
    return "unknown error";
  }
}

const char *toolcall_err_name(int err) {
  switch (err) {
  case 0:
    return "OK";
#define TOOLCALL_ERR_NAME_CASE_(name, code, msg)                               \
  case TOOLCALL_##name:                                                        \
    return "TOOLCALL_" #name;
    TOOLCALL_ERRNO_MAP(TOOLCALL_ERR_NAME_CASE_)
#undef TOOLCALL_ERR_NAME_CASE_
#define TOOLCALL_UV_NAME_CASE_(name, msg)                                      \
  case UV_##name:                                                              \
    return "UV_" #name;
    UV_ERRNO_MAP(TOOLCALL_UV_NAME_CASE_)
#undef TOOLCALL_UV_NAME_CASE_
  default:
    return "UNKNOWN";
  }
}

const char *toolcall_status_name(toolcall_status_t status) {
  static const char *const names[TOOLCALL_STATUS_COUNT] = {
      "ok",        "tool_error", "retry",    "unknown_tool",
      "timed_out", "cancelled",  "rejected", "deferred",
      "denied"};
  if ((int)status < 0 || status >= TOOLCALL_STATUS_COUNT)
    return "invalid";
  return names[status];
}

int toolcall__fail(toolcall_error_t *err, int code, size_t index,
                   const char *fmt, ...) {
  if (err != NULL) {
    va_list ap;
    err->code = code;
    err->index = index;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
  }
  return code;
}
