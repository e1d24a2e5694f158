/* The replaceable allocator: every allocation the library makes goes
 * through these, so hosts can account memory and tests can inject
 * failures. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
  toolcall_malloc_func malloc_fn;
  toolcall_realloc_func realloc_fn;
  toolcall_calloc_func calloc_fn;
  toolcall_free_func free_fn;
} toolcall__allocator_t;

/* The library's only global mutable state (see toolcall_replace_allocator). */
static toolcall__allocator_t allocator = {malloc, realloc, calloc, free};

int toolcall_replace_allocator(toolcall_malloc_func malloc_func,
                               toolcall_realloc_func realloc_func,
                               toolcall_calloc_func calloc_func,
                               toolcall_free_func free_func) {
  if (malloc_func == NULL || realloc_func == NULL || calloc_func == NULL ||
      free_func == NULL)
    return UV_EINVAL;
  allocator.malloc_fn = malloc_func;
  allocator.realloc_fn = realloc_func;
  allocator.calloc_fn = calloc_func;
  allocator.free_fn = free_func;
  return 0;
}

void *toolcall__malloc(size_t size) {
  return allocator.malloc_fn(size > 0 ? size : 1);
}

void *toolcall__calloc(size_t count, size_t size) {
  if (count == 0 || size == 0)
    count = size = 1;
  return allocator.calloc_fn(count, size);
}

void *toolcall__realloc(void *ptr, size_t size) {
  return allocator.realloc_fn(ptr, size > 0 ? size : 1);
}

void toolcall__free(void *ptr) {
  if (ptr != NULL)
    allocator.free_fn(ptr);
}

char *toolcall__strndup(const char *s, size_t n) {
  char *copy = toolcall__malloc(n + 1);
  if (copy == NULL)
    return NULL;
  memcpy(copy, s, n);
  copy[n] = '\0';
  return copy;
}

char *toolcall__strdup(const char *s) {
  return toolcall__strndup(s, strlen(s));
}
