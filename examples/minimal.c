/* The README's minimal example, kept here so it keeps compiling. */
#include <stdio.h>
#include <toolcall.h>

static void add(toolcall_call_t *call, void *data) {   /* a worker tool */
  (void)data;
  int a = 0, b = 0;
  sscanf(toolcall_call_arguments(call, NULL), "{\"a\":%d,\"b\":%d}", &a, &b);
  char out[32];
  snprintf(out, sizeof out, "%d", a + b);
  toolcall_call_complete(call, TOOLCALL_OK, out, 0);    /* copies out */
}

static void on_batch(toolcall_batch_t *batch, int status) {
  if (status != 0)                    /* TOOLCALL_ELIMIT: see Limits */
    printf("batch refused: %s\n", toolcall_batch_error(batch));
  for (size_t i = 0; i < toolcall_batch_size(batch); i++) {
    const toolcall_result_t *r = toolcall_batch_result(batch, i);
    printf("%s %s: %s\n", r->id, toolcall_status_name(r->status),
           r->status == TOOLCALL_OK ? r->output : r->message);
  }
  toolcall_batch_free(batch);
}

int main(void) {
  uv_loop_t loop;
  toolcall_registry_t *reg;
  toolcall_manager_t *m;
  toolcall_tool_t tool;
  toolcall_manager_options_t opts;

  uv_loop_init(&loop);
  toolcall_registry_new(&reg);
  toolcall_tool_init(&tool);
  tool.name = "add";
  tool.fn = add;                      /* kind defaults to a worker tool */
  toolcall_registry_add(reg, &tool, NULL);

  toolcall_manager_options_init(&opts);
  opts.registry = reg;
  toolcall_manager_new(&m, &loop, &opts);

  toolcall_call_spec_t calls[] = {
      {.id = "call_1", .name = "add", .arguments = "{\"a\":1,\"b\":2}"},
      {.id = "call_2", .name = "add", .arguments = "{\"a\":40,\"b\":2}"},
      {.id = "call_3", .name = "mul", .arguments = "{}"},     /* unknown tool: status unknown_tool */
  };
  toolcall_batch_submit(m, calls, 3, NULL, on_batch, NULL, NULL, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);

  toolcall_snapshot_t s;
  toolcall_ledger_snapshot(toolcall_manager_ledger(m), &s);
  printf("tool_calls=%llu dispatched=%llu\n",
         (unsigned long long)s.tool_calls, (unsigned long long)s.dispatched);

  toolcall_manager_close(m, NULL);   /* two-phase: freed on the loop */
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);              /* returns 0: nothing left behind */
  toolcall_registry_free(reg);
  return 0;
}
