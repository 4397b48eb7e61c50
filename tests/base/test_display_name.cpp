// display_name / name_from_display: every byte string comes back from its shown form, the shown form is valid
// UTF-8 with no control character in it, and valid UTF-8 text stays as it is.
#include "base/display_name.h"

#include <gtest/gtest.h>

#include <string>

namespace stoke {
namespace {

bool has_control(const std::string& s) {
  for (size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7F) return true;
    if (c == 0xC2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) < 0xA0) return true;  // C1
  }
  return false;
}

TEST(DisplayName, EveryByteRoundTrips) {
  for (int b = 0; b < 256; ++b) {
    const std::string one(1, static_cast<char>(b));
    for (const std::string& name : {one, "a" + one + "b", one + one, "\\" + one, one + "\\x4"}) {
      const std::string shown = display_name(name);
      EXPECT_EQ(name_from_display(shown), name) << "byte " << b << " shown as " << shown;
      EXPECT_TRUE(is_valid_utf8(shown)) << "byte " << b;
      EXPECT_FALSE(has_control(shown)) << "byte " << b;
    }
  }
  // Every pair of bytes, so multi-byte sequences and their broken halves round-trip too.
  for (int a = 0; a < 256; ++a)
    for (int b = 0; b < 256; ++b) {
      const std::string name{static_cast<char>(a), static_cast<char>(b)};
      const std::string shown = display_name(name);
      ASSERT_EQ(name_from_display(shown), name) << a << " " << b;
      ASSERT_TRUE(is_valid_utf8(shown)) << a << " " << b;
    }
}

TEST(DisplayName, KnownValues) {
  EXPECT_EQ(display_name("caf\xE9"), "caf\\xE9");
  EXPECT_EQ(display_name("\xFF\xFE-1.png"), "\\xFF\\xFE-1.png");
  EXPECT_EQ(display_name("line\nbreak"), "line\\nbreak");
  EXPECT_EQ(display_name("a\tb\rc"), "a\\tb\\rc");
  EXPECT_EQ(display_name("a\\b"), "a\\\\b");
  EXPECT_EQ(display_name("caf\\xE9"), "caf\\\\xE9") << "the text \\xE9 differs from the byte 0xE9";
  EXPECT_EQ(display_name(std::string("a\0b", 3)), "a\\x00b");
  EXPECT_EQ(display_name("\x1b[31m\x7f"), "\\x1B[31m\\x7F");
  EXPECT_EQ(display_name("\xC2\x85"), "\\xC2\\x85") << "C1 control U+0085";
  // Overlong forms, surrogates, truncated sequences, code points past U+10FFFF are bytes, not text.
  EXPECT_EQ(display_name("\xc0\xaf"), "\\xC0\\xAF");
  EXPECT_EQ(display_name("\xed\xa0\x80"), "\\xED\\xA0\\x80");
  EXPECT_EQ(display_name("a\xe2\x82"), "a\\xE2\\x82");
  EXPECT_EQ(display_name("\xf4\x90\x80\x80"), "\\xF4\\x90\\x80\\x80");
}

TEST(DisplayName, ValidUtf8IsKept) {
  for (const char* s : {"plain", "\xc3\xa9t\xc3\xa9", "\xC2\xA0nbsp", "\xe2\x82\xac", "\xf0\x9f\x98\x80",
                        "\xf4\x8f\xbf\xbf", "a b/c-d_e.jpg", ""}) {
    EXPECT_EQ(display_name(s), s);
    EXPECT_EQ(name_from_display(s), s);
  }
}

TEST(DisplayName, InverseReadsHandWrittenText) {
  EXPECT_EQ(name_from_display("caf\\xe9"), "caf\xE9") << "lower-case hex";
  EXPECT_EQ(name_from_display("a\\qb"), "a\\qb") << "an unknown escape is kept";
  EXPECT_EQ(name_from_display("a\\"), "a\\");
  EXPECT_EQ(name_from_display("\\xZ1\\x4"), "\\xZ1\\x4");
}

}  // namespace
}  // namespace stoke
