/* JSON Schema validation of tool arguments: a schema is compiled once into
 * an immutable tree, then checked against parsed values from any thread. */
#ifndef TOOLCALL_SCHEMA_H
#define TOOLCALL_SCHEMA_H

#include <jansson.h>
#include <stddef.h>

typedef struct toolcall__schema_s toolcall__schema_t;

/* Compile a JSON Schema given as text (len bytes, not necessarily
 * NUL-terminated). Returns 0 and sets *out; UV_EINVAL when the text is not
 * valid JSON or not a schema this validator can enforce (unknown keyword,
 * keyword value of the wrong type, bad pattern, $ref to nothing, $ref cycle
 * that never reaches a value), with a message such as
 * "schema: $.properties.age.minimum: must be a number" in msg; UV_ENOMEM.
 * On error *out is untouched and nothing is kept. msg (msglen bytes, may be
 * NULL/0) always ends up NUL-terminated, valid UTF-8. Any thread; text is
 * copied (the schema keeps nothing of it). */
int toolcall__schema_compile(const char *text, size_t len,
                             toolcall__schema_t **out, char *msg,
                             size_t msglen);

/* NULL is fine. No validation may be running on s. */
void toolcall__schema_free(toolcall__schema_t *s);

/* Validate a parsed value (borrowed, only read). Returns 0 if valid, 1 if
 * invalid with "<json path>: <rule broken>" in msg (e.g.
 * "$.city: required property missing", "$.items[2]: must be at most 10"),
 * UV_EINVAL if s or value is NULL, or UV_ENOMEM. Values that need more than
 * 256 nested schema applications are invalid ("nested too deeply").
 * Any thread, any number at once: a compiled schema is immutable. */
int toolcall__schema_validate(const toolcall__schema_t *s, const json_t *value,
                              char *msg, size_t msglen);

#endif /* TOOLCALL_SCHEMA_H */
