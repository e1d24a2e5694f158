/*
 * toolcall wire formats: read the tool calls and the usage out of a raw model
 * response body, and write the results and the tool definitions back, in the
 * four common shapes:
 *
 *   TOOLCALL_WIRE_OPENAI_CHAT       OpenAI Chat Completions (and the many
 *                                   servers that speak it)
 *   TOOLCALL_WIRE_OPENAI_RESPONSES  OpenAI Responses
 *   TOOLCALL_WIRE_ANTHROPIC         Anthropic Messages
 *   TOOLCALL_WIRE_GEMINI            Google Gemini generateContent
 *
 * Only complete (non-streaming) response bodies are read. JSON goes through
 * jansson; no jansson type appears here. Memory the library hands out comes
 * from the library allocator (toolcall_replace_allocator).
 *
 * A typical turn:
 *
 *   toolcall_wire_response_t *r;
 *   toolcall_wire_parse(TOOLCALL_WIRE_ANTHROPIC, body, len, &r, &err);
 *   toolcall_wire_usage(r, &usage);                 // then count it:
 *   toolcall_ledger_commit_request(ledger, &usage, &err);
 *   size_t n;
 *   const toolcall_call_spec_t *calls = toolcall_wire_calls(r, &n);
 *   if (n > 0)
 *     toolcall_batch_submit(m, calls, n, NULL, on_batch, NULL, NULL, &err);
 *   toolcall_wire_response_free(r);                 // submit copied the calls
 *   ...
 *   // in on_batch:
 *   toolcall_wire_write_results(TOOLCALL_WIRE_ANTHROPIC, batch, &json, &jlen,
 *                               NULL);
 *   // append json to the conversation, then toolcall_wire_free(json)
 *
 * Parsing counts nothing: usage reaches the ledger only when the host passes
 * toolcall_wire_usage()'s result to toolcall_ledger_commit_request() or
 * toolcall_ledger_add_usage().
 *
 * SPDX-License-Identifier: MIT
 */
#ifndef TOOLCALL_WIRE_H
#define TOOLCALL_WIRE_H

#include "toolcall.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The largest body toolcall_wire_parse() reads: 32 MiB. Larger bodies fail
 * with UV_E2BIG before any byte is looked at. */
#define TOOLCALL_WIRE_MAX_BODY ((size_t)32 * 1024 * 1024)

/* Ids the parser makes up for calls that came without one start with this
 * (see toolcall_wire_parse). No provider issues ids of this form. */
#define TOOLCALL_WIRE_GENERATED_ID_PREFIX "toolcall_gen_"

typedef enum {
  TOOLCALL_WIRE_OPENAI_CHAT = 1,
  TOOLCALL_WIRE_OPENAI_RESPONSES = 2,
  TOOLCALL_WIRE_ANTHROPIC = 3,
  TOOLCALL_WIRE_GEMINI = 4
} toolcall_wire_format_t;

/* The format named name: "openai" (also "chat"), "responses", "anthropic",
 * "gemini"; exact, lower case. Any thread. UV_EINVAL for NULL or any other
 * name (*out is then left alone). */
TOOLCALL_EXTERN int toolcall_wire_format_from_name(const char *name,
                                                   toolcall_wire_format_t *out);

/* "openai", "responses", "anthropic", "gemini"; "invalid" for any other
 * value. Any thread; static string. */
TOOLCALL_EXTERN const char *toolcall_wire_format_name(toolcall_wire_format_t f);

/* ------------------------------------------------------------------------ */
/* Reading a response                                                       */

/* A parsed response: its tool calls, its usage and its text. Immutable once
 * parsed, so any number of threads may read it at once. */
typedef struct toolcall_wire_response_s toolcall_wire_response_t;

/* Parse the body of one model response in format f. body (len bytes, need
 * not be NUL-terminated) is borrowed for the call only: everything is
 * copied. On success *out owns the response (free it with
 * toolcall_wire_response_free()); on error *out is NULL and nothing is
 * allocated. Any thread. err may be NULL; err->index is SIZE_MAX.
 *
 * Where each format keeps things:
 *
 *   OpenAI chat  calls: choices[0].message.tool_calls[] {id, function:
 *                {name, arguments}}; text: choices[0].message.content (a
 *                string, null, or an array of {"type":"text","text"} parts).
 *                usage: prompt_tokens -> input_tokens (which therefore
 *                includes cached tokens), completion_tokens (reasoning
 *                included) -> output_tokens, prompt_tokens_details.
 *                cached_tokens -> cache_read_tokens.
 *   Responses    calls: output[] items of type "function_call" {call_id,
 *                name, arguments}; text: the "output_text" parts of
 *                output[] items of type "message". usage: input_tokens ->
 *                input_tokens (cached included), output_tokens,
 *                input_tokens_details.cached_tokens -> cache_read_tokens.
 *   Anthropic    calls: content[] blocks of type "tool_use" {id, name,
 *                input}; text: blocks of type "text". usage:
 *                cache_creation_input_tokens -> cache_write_tokens,
 *                cache_read_input_tokens -> cache_read_tokens, and
 *                input_tokens = input_tokens + both cache counts, because
 *                Anthropic's input_tokens leaves out the cached tokens that
 *                the other three formats count in: input_tokens then means
 *                every input token whatever the provider (as in pydantic-ai),
 *                and one input_tokens limit fits all.
 *   Gemini       calls: candidates[0].content.parts[] with "functionCall"
 *                {name, args, id}; text: parts with "text" that are not
 *                thoughts ("thought": true). usage (usageMetadata):
 *                promptTokenCount (cached included) -> input_tokens,
 *                candidatesTokenCount + thoughtsTokenCount -> output_tokens,
 *                cachedContentTokenCount -> cache_read_tokens. A response
 *                without candidates (a blocked prompt) has no calls.
 *
 * Other blocks and items (reasoning, thinking, server-side tools, refusals,
 * further choices or candidates) are skipped.
 *
 * A defect inside one call never fails the parse; the call is still listed,
 * so that dispatch gives it a status the model can read:
 *
 *   - a missing, empty or non-string id: an id is generated,
 *     TOOLCALL_WIRE_GENERATED_ID_PREFIX "<i>_<8 hex digits>", i being the
 *     call's position among the response's calls and the digits a hash of
 *     its name and arguments, so the same body always gives the same ids
 *     (Gemini often sends no ids at all);
 *   - a missing or non-string name: the name is "" (dispatch ends the call
 *     TOOLCALL_UNKNOWN_TOOL, listing the tools that exist);
 *   - OpenAI formats, whose arguments are JSON text inside a string: a
 *     string is passed on verbatim, JSON or not (the manager judges it);
 *     any other value (an object from a lax server, a number) is passed on
 *     as its compact JSON text;
 *   - Anthropic input / Gemini args, which are JSON values: the value's
 *     compact JSON text, whatever its type (so a string there arrives as a
 *     JSON string, not an object, and the manager judges it);
 *   - arguments missing, null or "" (all formats): NULL, i.e. "{}".
 *
 * Ids longer than TOOLCALL_ID_MAX and ids used twice are kept as the model
 * sent them: they must reach the results unchanged to match, and
 * toolcall_batch_submit() refuses such a batch (UV_ENAMETOOLONG,
 * TOOLCALL_EDUPID) with err->index naming the call.
 *
 * Errors fail the whole parse:
 *   UV_EINVAL  body or out NULL, an empty body, an unknown format; a body
 *              that is not JSON, is truncated, has trailing garbage,
 *              duplicate object keys, invalid UTF-8, a \u0000 escape, or
 *              nesting deeper than 2048; a top level that is not an object;
 *              a container on the path to the calls or the text of the wrong
 *              type (e.g. "anthropic: content must be an array",
 *              "openai: choices[0].message.tool_calls[1] must be an
 *              object": every element of the list holding the calls must be
 *              an object); a usage object or token count of the wrong type
 *              (a token count must be an integer, or null / absent for 0).
 *   UV_ERANGE  a number too large for jansson (an integer beyond 64 bits
 *              anywhere in the body, e.g. in a tool's arguments, or a real
 *              beyond double), a negative token count, or token counts whose
 *              sum (Anthropic input, Gemini output) passes UINT64_MAX.
 *   UV_E2BIG   len > TOOLCALL_WIRE_MAX_BODY.
 *   UV_ENOMEM  out of memory.
 * err->message says what and where ("openai: invalid JSON at line 1, column
 * 9: ..."). */
TOOLCALL_EXTERN int toolcall_wire_parse(toolcall_wire_format_t f,
                                        const char *body, size_t len,
                                        toolcall_wire_response_t **out,
                                        toolcall_error_t *err);

/* Free a parsed response and everything it owns. NULL is a no-op. Any
 * thread, once no other thread reads it. */
TOOLCALL_EXTERN void toolcall_wire_response_free(toolcall_wire_response_t *r);

/* The response's tool calls, in the response's order, as specs ready for
 * toolcall_batch_submit() (which copies them). The array and its strings
 * are owned by r and valid until toolcall_wire_response_free(r). *n (n is
 * required) receives the count, which may be 0; the result is then NULL.
 * A spec's arguments is NULL when the call had none (missing, null or "":
 * "{}" for the manager), else NUL-terminated with arguments_len set (an
 * explicit {} is the text "{}"); every other field is 0 (defaults). Any
 * thread. */
TOOLCALL_EXTERN const toolcall_call_spec_t *toolcall_wire_calls(
    const toolcall_wire_response_t *r, size_t *n);

/* Fill usage with the response's usage, mapped as toolcall_wire_parse()
 * describes, requests = 1 and every other field 0. Any thread. Returns 0,
 * UV_ENOENT if the body had no usage (usage is then all zero: requests too),
 * UV_EINVAL for a NULL argument. */
TOOLCALL_EXTERN int toolcall_wire_usage(const toolcall_wire_response_t *r,
                                        toolcall_usage_t *usage);

/* The text the model wrote besides the calls, its pieces concatenated as
 * they are (no separator added); "" if none. NUL-terminated UTF-8, owned by
 * r. NULL only for r NULL. Any thread. */
TOOLCALL_EXTERN const char *toolcall_wire_text(
    const toolcall_wire_response_t *r);

/* ------------------------------------------------------------------------ */
/* Writing results and tools                                                */

/* The results of a finished batch, in format f, ready to append to the
 * conversation (one entry per call, in call order):
 *
 *   OpenAI chat  an array of messages
 *                [{"role":"tool","tool_call_id":ID,"content":TEXT}, ...]
 *   Responses    an array of input items
 *                [{"type":"function_call_output","call_id":ID,
 *                  "output":TEXT}, ...]
 *   Anthropic    ONE user message {"role":"user","content":[{"type":
 *                "tool_result","tool_use_id":ID,"content":TEXT}, ...]}, with
 *                "is_error":true on the results whose status is not ok
 *   Gemini       ONE content {"role":"user","parts":[{"functionResponse":
 *                {"name":TOOL,"id":ID,"response":{"output":TEXT}}}, ...]},
 *                "response":{"error":TEXT} when the status is not ok, and no
 *                "id" when the parser generated it (it starts with
 *                TOOLCALL_WIRE_GENERATED_ID_PREFIX: Gemini gave none)
 *
 * TEXT is the tool's output for ok; for every other status a sentence for
 * the model: "error: MESSAGE" for TOOLCALL_TOOL_ERROR, "error (STATUS):
 * MESSAGE" for the others, STATUS being toolcall_status_name() (e.g.
 * "error (unknown_tool): unknown tool 'x'; available tools: a, b"). It is
 * always a JSON string (an output holding JSON stays text); each byte that
 * is not part of a well-formed UTF-8 sequence becomes U+FFFD, and NUL bytes
 * are escaped (\u0000).
 *
 * b is borrowed for the call: a finished batch (its callback has run), any
 * thread that owns it. *out receives compact, NUL-terminated JSON allocated
 * with the library allocator: free it with toolcall_wire_free(). len may be
 * NULL; it receives strlen(*out). On error *out is NULL. err may be NULL.
 * Errors: UV_EINVAL (NULL argument, unknown format), UV_ENOMEM (err->index
 * names the call being written, or is SIZE_MAX). */
TOOLCALL_EXTERN int toolcall_wire_write_results(toolcall_wire_format_t f,
                                                const toolcall_batch_t *b,
                                                char **out, size_t *len,
                                                toolcall_error_t *err);

/* The `tools` array of a request in format f, from every tool of reg in
 * registration order (an empty registry gives "[]"):
 *
 *   OpenAI chat  [{"type":"function","function":{"name","description",
 *                  "parameters"}}, ...]
 *   Responses    [{"type":"function","name","description","parameters"},
 *                 ...]
 *   Anthropic    [{"name","description","input_schema"}, ...]
 *   Gemini       [{"functionDeclarations":[{"name","description",
 *                  "parametersJsonSchema"}, ...]}]
 *
 * The schema is the tool's schema as registered; a NULL schema becomes
 * {"type":"object","properties":{}}. Gemini gets it as parametersJsonSchema,
 * which takes JSON Schema as is, and not as "parameters", an OpenAPI subset
 * that refuses common JSON Schema keywords (additionalProperties, $ref,
 * ...). A NULL description is left out, except for Gemini, which requires
 * one: "". Names are written as registered; the providers accept fewer
 * characters than the registry ('.' and ':' are refused by OpenAI and
 * Anthropic).
 *
 * reg is borrowed for the call; any thread once it is frozen (before, not
 * while another thread adds to it). *out and len as for
 * toolcall_wire_write_results(). Errors: UV_EINVAL (NULL argument, unknown
 * format, a schema that is not a JSON object: err->index is the tool's
 * index and the message names it), UV_ENOMEM. */
TOOLCALL_EXTERN int toolcall_wire_write_tools(toolcall_wire_format_t f,
                                              const toolcall_registry_t *reg,
                                              char **out, size_t *len,
                                              toolcall_error_t *err);

/* Free a buffer written by toolcall_wire_write_results() or
 * toolcall_wire_write_tools(). NULL is a no-op. Any thread. */
TOOLCALL_EXTERN void toolcall_wire_free(void *p);

#ifdef __cplusplus
}
#endif

#endif /* TOOLCALL_WIRE_H */
