// json_problem: what is wrong with a JSON file, in one line of valid UTF-8 without the library's tag, whatever
// bytes the file holds.
#include <gtest/gtest.h>

#include <string>

#include "base/display_name.h"
#include "base/json_util.h"

namespace stoke {
namespace {

using json = nlohmann::json;

template <class F>
std::string problem_of(F f) {
  try {
    f();
  } catch (const json::exception& e) {
    return json_problem(e);
  }
  ADD_FAILURE() << "no exception";
  return "";
}

TEST(JsonProblem, SaysWhatIsWrongWithoutTheLibrarysTagOrTheFilesBytes) {
  const std::string torn = "{\"classes\": [\"caf\xE9\"";  // a Latin-1 byte in a string, then the end
  const std::string p = problem_of([&] { const json j = json::parse(torn); });
  EXPECT_EQ(p, "not valid JSON (at byte 19)");  // where the Latin-1 byte ends a string that is not UTF-8
  const std::string q = problem_of([&] { const json j = json::parse("{\"a\": caf\xE9}"); });
  EXPECT_EQ(q.rfind("not valid JSON (at byte ", 0), 0u) << q;
  EXPECT_TRUE(is_valid_utf8(q));
  const std::string t = problem_of([] { (void)json(1).get<std::string>(); });
  EXPECT_EQ(t, "type must be string, but is number");
  const std::string o = problem_of([] { (void)json::object().at("model"); });
  EXPECT_EQ(o, "key 'model' not found");
}

}  // namespace
}  // namespace stoke
