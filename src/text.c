/* Byte-level text helpers: UTF-8 checks and hashing. */
#include "internal.h"

#include <string.h>

/* Well-formed UTF-8 per RFC 3629: no overlong forms, no surrogates, nothing
 * above U+10FFFF. NUL is refused too: every string the library hands on is
 * NUL-terminated, and an embedded NUL would silently cut it short. */
bool toolcall__utf8_valid(const char *s, size_t len) {
  const unsigned char *p = (const unsigned char *)s;
  const unsigned char *end = p + len;
  while (p < end) {
    /* Ids, names and most arguments are ASCII: take 8 bytes at a time while
     * none has its high bit set and none is NUL. */
    while ((size_t)(end - p) >= 8) {
      uint64_t w;
      memcpy(&w, p, 8);
      const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
      if (((w | ((w - ones) & ~w)) & highs) != 0)
        break;
      p += 8;
    }
    if (p == end)
      break;
    unsigned char c = *p;
    if (c >= 0x01 && c < 0x80) {
      p++;
      continue;
    }
    size_t need;
    unsigned char lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
      need = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
      need = 2;
      if (c == 0xE0)
        lo = 0xA0;
      else if (c == 0xED)
        hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
      need = 3;
      if (c == 0xF0)
        lo = 0x90;
      else if (c == 0xF4)
        hi = 0x8F;
    } else {
      return false; /* NUL, continuation byte, C0/C1, F5..FF */
    }
    if ((size_t)(end - p) <= need)
      return false;
    if (p[1] < lo || p[1] > hi)
      return false;
    for (size_t i = 2; i <= need; i++)
      if (p[i] < 0x80 || p[i] > 0xBF)
        return false;
    p += need + 1;
  }
  return true;
}

size_t toolcall__utf8_prefix(const char *s, size_t len, size_t max) {
  if (len <= max)
    return len;
  size_t n = max;
  while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80)
    n--;
  return n;
}

/* FNV-1a: small, and good enough for tool names and call ids. */
uint32_t toolcall__hash(const char *s, size_t len) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < len; i++) {
    h ^= (unsigned char)s[i];
    h *= 16777619u;
  }
  return h;
}

/* For the in-memory tables (duplicate ids, tool lookup): 8 bytes a step,
 * so that an id costs a few multiplies rather than one per byte. Not for
 * anything written out: it depends on the byte order. */
uint32_t toolcall__hash_key(const char *s, size_t len) {
  const uint64_t k = 0xff51afd7ed558ccdu;
  uint64_t h = 0x9E3779B97F4A7C15u ^ len;
  while (len >= 8) {
    uint64_t w;
    memcpy(&w, s, 8);
    h = (h ^ w) * k;
    h ^= h >> 32;
    s += 8;
    len -= 8;
  }
  uint64_t w = 0;
  for (size_t i = 0; i < len; i++)
    w |= (uint64_t)(unsigned char)s[i] << (8 * i);
  h = (h ^ w) * k;
  h ^= h >> 29;
  h *= k;
  h ^= h >> 32;
  return (uint32_t)h;
}
