/*
 * consumer — a minimal program built against an installed toolcall, the way
 * a host project would (pkg-config or find_package). It checks that the
 * header and the library agree, runs one batch with one worker tool on its
 * own loop, checks the result and the ledger, closes everything and prints
 * "ok". The call comes out of an OpenAI response body and the result goes
 * back as OpenAI messages, so the wire header and jansson (a private
 * dependency, pulled in by the static link) are checked too.
 *
 * SPDX-License-Identifier: MIT
 */
#include <toolcall.h>
#include <toolcall_wire.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REQUIRE(cond)                                                          \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "consumer: %s:%d: %s\n", __FILE__, __LINE__, #cond);    \
      exit(EXIT_FAILURE);                                                      \
    }                                                                          \
  } while (0)

static int batch_seen;
static int manager_closed;

/* A worker tool: answers with its arguments, upper-cased. */
static void shout_tool(toolcall_call_t *call, void *data) {
  size_t len = 0;
  const char *args = toolcall_call_arguments(call, &len);
  char out[64];
  REQUIRE(data == (void *)&batch_seen && len < sizeof(out));
  for (size_t i = 0; i < len; i++)
    out[i] = (args[i] >= 'a' && args[i] <= 'z') ? (char)(args[i] - 32) : args[i];
  out[len] = '\0';
  REQUIRE(toolcall_ledger_add_detail(toolcall_call_ledger(call), "shouts", 1) ==
          0);
  REQUIRE(toolcall_call_complete(call, TOOLCALL_OK, out, len) == 0);
}

static void on_closed(toolcall_manager_t *manager) {
  (void)manager;
  manager_closed = 1;
}

static void on_batch(toolcall_batch_t *batch, int status) {
  REQUIRE(status == 0);
  REQUIRE(toolcall_batch_size(batch) == 1);
  const toolcall_result_t *r = toolcall_batch_result(batch, 0);
  REQUIRE(r != NULL && r->status == TOOLCALL_OK);
  REQUIRE(strcmp(r->id, "call_1") == 0 && strcmp(r->tool, "shout") == 0);
  REQUIRE(strcmp(r->output, "{\"TEXT\":\"HI\"}") == 0 && r->output_len == 13);

  toolcall_manager_t *manager = toolcall_batch_manager(batch);
  toolcall_snapshot_t snap;
  REQUIRE(toolcall_ledger_snapshot(toolcall_manager_ledger(manager), &snap) ==
          0);
  REQUIRE(snap.dispatched == 1 && snap.tool_calls == 1 &&
          snap.calls[TOOLCALL_OK] == 1);
  uint64_t shouts = 0;
  REQUIRE(toolcall_ledger_detail(toolcall_manager_ledger(manager), "shouts",
                                 &shouts) == 0 &&
          shouts == 1);

  char *json = NULL;
  REQUIRE(toolcall_wire_write_results(TOOLCALL_WIRE_OPENAI_CHAT, batch, &json,
                                      NULL, NULL) == 0);
  REQUIRE(strcmp(json, "[{\"role\":\"tool\",\"tool_call_id\":\"call_1\","
                       "\"content\":\"{\\\"TEXT\\\":\\\"HI\\\"}\"}]") == 0);
  toolcall_wire_free(json);

  batch_seen = 1;
  toolcall_batch_free(batch);
  REQUIRE(toolcall_manager_close(manager, on_closed) == 0);
}

int main(void) {
  char header_version[32];
  snprintf(header_version, sizeof(header_version), "%d.%d.%d",
           TOOLCALL_VERSION_MAJOR, TOOLCALL_VERSION_MINOR,
           TOOLCALL_VERSION_PATCH);
  REQUIRE(strcmp(toolcall_version_string(), header_version) == 0);
  REQUIRE(toolcall_version() == TOOLCALL_VERSION_HEX);

  uv_loop_t loop;
  REQUIRE(uv_loop_init(&loop) == 0);

  toolcall_registry_t *registry = NULL;
  REQUIRE(toolcall_registry_new(&registry) == 0);
  toolcall_tool_t def;
  toolcall_tool_init(&def);
  def.name = "shout";
  def.fn = shout_tool;
  def.data = &batch_seen;
  REQUIRE(toolcall_registry_add(registry, &def, NULL) == 0);

  toolcall_manager_options_t opts;
  toolcall_manager_options_init(&opts);
  opts.registry = registry;
  toolcall_manager_t *manager = NULL;
  REQUIRE(toolcall_manager_new(&manager, &loop, &opts) == 0);

  static const char body[] =
      "{\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\","
      "\"content\":null,\"tool_calls\":[{\"id\":\"call_1\",\"type\":"
      "\"function\",\"function\":{\"name\":\"shout\",\"arguments\":"
      "\"{\\\"text\\\":\\\"hi\\\"}\"}}]},\"finish_reason\":\"tool_calls\"}],"
      "\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":5}}";
  toolcall_wire_response_t *resp = NULL;
  REQUIRE(toolcall_wire_parse(TOOLCALL_WIRE_OPENAI_CHAT, body,
                              sizeof(body) - 1, &resp, NULL) == 0);
  toolcall_usage_t usage;
  REQUIRE(toolcall_wire_usage(resp, &usage) == 0);
  REQUIRE(usage.requests == 1 && usage.input_tokens == 12 &&
          usage.output_tokens == 5);
  size_t ncalls = 0;
  const toolcall_call_spec_t *calls = toolcall_wire_calls(resp, &ncalls);
  REQUIRE(ncalls == 1 && strcmp(calls[0].name, "shout") == 0);
  REQUIRE(toolcall_batch_submit(manager, calls, 1, NULL, on_batch, NULL, NULL,
                                NULL) == 0);
  toolcall_wire_response_free(resp); /* submit copied the call */

  REQUIRE(uv_run(&loop, UV_RUN_DEFAULT) == 0);
  REQUIRE(batch_seen && manager_closed);
  toolcall_registry_free(registry);
  REQUIRE(uv_loop_close(&loop) == 0);
  printf("ok\n");
  return 0;
}
