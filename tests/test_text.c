/* The byte-level text helpers against simple reference versions: the UTF-8
 * check (whose ASCII fast path reads 8 bytes at a time) must agree with a
 * byte-at-a-time decoder on every string, whatever the offset of the first
 * byte that is not plain ASCII. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "toolcall.h"

/* Internal, linked from the static library. */
bool toolcall__utf8_valid(const char *s, size_t len);

/* RFC 3629, decoded to a code point and checked, one sequence at a time;
 * NUL refused as the library does. */
static bool ref_utf8_valid(const unsigned char *p, size_t len) {
  size_t i = 0;
  while (i < len) {
    unsigned c = p[i];
    size_t need;
    uint32_t cp, min;
    if (c == 0)
      return false;
    if (c < 0x80) {
      i++;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      need = 1, cp = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      need = 2, cp = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      need = 3, cp = c & 0x07, min = 0x10000;
    } else {
      return false;
    }
    if (len - i <= need)
      return false;
    for (size_t k = 1; k <= need; k++) {
      if ((p[i + k] & 0xC0) != 0x80)
        return false;
      cp = (cp << 6) | (p[i + k] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += need + 1;
  }
  return true;
}

static uint64_t rng_state = 0x9E3779B97F4A7C15u;
static uint32_t rng(void) {
  rng_state ^= rng_state << 13;
  rng_state ^= rng_state >> 7;
  rng_state ^= rng_state << 17;
  return (uint32_t)(rng_state >> 32);
}

/* Bytes that matter to a UTF-8 decoder: lead bytes at the edges of their
 * ranges, continuation bytes, NUL, and bytes never allowed. */
static const unsigned char k_special[] = {
    0x00, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2,
    0xDF, 0xE0, 0xE1, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF4, 0xF5, 0xFF};

static void test_text_utf8_matches_reference(void **state) {
  (void)state;
  unsigned char buf[64];
  size_t valid = 0, invalid = 0;
  for (int iter = 0; iter < 200000; iter++) {
    size_t len = rng() % sizeof(buf);
    for (size_t i = 0; i < len; i++)
      buf[i] = (unsigned char)('a' + rng() % 26);
    /* 0 to 3 special bytes, anywhere: most strings end up invalid, the
     * rest test the paths that accept multibyte sequences. */
    unsigned specials = rng() % 4;
    for (unsigned k = 0; k < specials && len > 0; k++)
      buf[rng() % len] = k_special[rng() % sizeof(k_special)];
    bool want = ref_utf8_valid(buf, len);
    assert_int_equal(toolcall__utf8_valid((const char *)buf, len), want);
    want ? valid++ : invalid++;
  }
  /* Both outcomes must have been exercised often. */
  assert_true(valid > 10000);
  assert_true(invalid > 10000);
}

/* Every well-formed sequence class at every offset of a 40-byte ASCII run
 * (so before, across and after each 8-byte word), then the same with the
 * sequence cut short or the run holding a NUL there. */
static void test_text_utf8_every_offset(void **state) {
  (void)state;
  static const char *const seqs[] = {"\xC2\xA9", "\xE2\x82\xAC",
                                     "\xF0\x9F\x98\x80", "\xED\x9F\xBF",
                                     "\xF4\x8F\xBF\xBF"};
  char buf[48];
  for (size_t s = 0; s < sizeof(seqs) / sizeof(seqs[0]); s++) {
    size_t sl = strlen(seqs[s]);
    for (size_t off = 0; off + sl <= 40; off++) {
      memset(buf, 'x', 40);
      memcpy(buf + off, seqs[s], sl);
      assert_true(toolcall__utf8_valid(buf, 40));
      /* cut at the end of the buffer: always invalid */
      assert_false(toolcall__utf8_valid(buf, off + sl - 1));
      buf[off] = '\0';
      assert_false(toolcall__utf8_valid(buf, 40));
    }
  }
  /* A surrogate and an overlong form, at every offset. */
  for (size_t off = 0; off + 3 <= 40; off++) {
    memset(buf, 'x', 40);
    memcpy(buf + off, "\xED\xA0\x80", 3);
    assert_false(toolcall__utf8_valid(buf, 40));
    memcpy(buf + off, "\xE0\x80\xAF", 3);
    assert_false(toolcall__utf8_valid(buf, 40));
  }
  assert_true(toolcall__utf8_valid("", 0));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_text_utf8_matches_reference),
      cmocka_unit_test(test_text_utf8_every_offset),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
