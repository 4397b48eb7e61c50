// The Console: quiet silences lines, progress and warnings but never alerts; the live progress line is ended
// before anything else is written, so no line lands in the middle of it.
#include <gtest/gtest.h>

#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "base/console.h"

namespace {

std::string contents(std::FILE* f) {
  std::fflush(f);
  std::rewind(f);
  std::string s;
  for (int c; (c = std::fgetc(f)) != EOF;) s += static_cast<char>(c);
  return s;
}

TEST(Console, QuietSilencesAllButAlerts) {
  std::FILE* out = std::tmpfile();
  std::FILE* err = std::tmpfile();
  {
    stoke::Console c(true, out, err);
    c.say("a line %d\n", 1);
    c.warn("a warning");
    c.progress("step 1/2", true);
    c.alert("the watchdog");
    c.tell("every rank says %s\n", "this");
    c.set_quiet(false);
    c.say("now %s\n", "heard");
    c.warn("heard too");
  }
  EXPECT_EQ(contents(out), "every rank says this\nnow heard\n");
  EXPECT_EQ(contents(err), "the watchdog\nwarning: heard too\n");
  std::fclose(out);
  std::fclose(err);
}

// Warnings from several threads while the progress line is live: each arrives whole, on its own line.
TEST(Console, LinesFromManyThreadsArriveWhole) {
  std::FILE* out = std::tmpfile();
  std::FILE* err = std::tmpfile();
  {
    stoke::Console c(false, out, err);
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t)
      threads.emplace_back([&c, t] {
        for (int i = 0; i < 50; ++i) {
          c.warn("thread " + std::to_string(t) + " message " + std::to_string(i));
          c.progress("progress", true);
        }
      });
    for (auto& th : threads) th.join();
  }
  const std::string e = contents(err);
  int warnings = 0;
  size_t at = 0;
  for (size_t nl; (nl = e.find('\n', at)) != std::string::npos; at = nl + 1) {
    const std::string line = e.substr(at, nl - at);
    if (line.rfind("warning: ", 0) == 0) {
      ++warnings;
      EXPECT_NE(line.find(" message "), std::string::npos) << line;
    }
  }
  EXPECT_EQ(warnings, 200);
  std::fclose(out);
  std::fclose(err);
}

}  // namespace
