// report.html from a run folder: well formed, self-contained, one chart per plot, the confusion matrix with
// the right numbers, escaping, and tolerance of missing files, missing fields and a torn last line.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>

#include "base/error.h"
#include "base/fs.h"
#include "report/html.h"
#include "report/report.h"
#include "tests/report/html_check.h"

namespace stoke {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

class TempRun {
 public:
  explicit TempRun(const std::string& tag) {
    path_ = fs::temp_directory_path() / ("stoke-report-" + tag + "-" + std::to_string(::getpid()));
    fs::remove_all(path_);
    fs::create_directories(path_);
  }
  ~TempRun() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string str() const { return path_.string(); }
  void write(const std::string& name, const std::string& text) const {
    std::ofstream f(path_ / name, std::ios::binary);
    f << text;
  }

 private:
  fs::path path_;
};

const std::vector<std::string> kClasses = {"cat", "<b>&\"x\"", "dog"};
const std::vector<int64_t> kConfusion = {50, 3, 1, 4, 40, 6, 0, 2, 44};

json val_report() {
  return {{"count", 150},
          {"loss", 0.31},
          {"accuracy", 134.0 / 150},
          {"class_accuracy", {50.0 / 54, 40.0 / 50, 44.0 / 46}},
          {"class_auc", {0.99, nullptr, 0.97}},
          {"confusion", kConfusion},
          {"macro_auc", 0.98}};
}

// A run like the trainer writes: 3 epochs of 120 steps, train lines every 10 steps.
std::string metrics_text(bool gpu_fields) {
  std::string out;
  double elapsed = 0;
  int step = 0;
  for (int epoch = 1; epoch <= 3; ++epoch) {
    for (int s = 0; s < 12; ++s) {
      step += 10;
      elapsed += 1.5;
      json t = {{"kind", "train"}, {"epoch", epoch}, {"step", step}, {"lr", 0.1}, {"loss", 2.0 / step},
                {"acc", 1.0 - 1.0 / step}, {"img_per_s", 1000 + step}, {"elapsed_s", elapsed}};
      if (gpu_fields) {
        t["gpu_busy"] = 0.9;
        t["input_stall"] = 0.05;
        t["decoders"] = 4 + s % 2;
      }
      out += t.dump() + "\n";
    }
    json e = {{"kind", "epoch"},
              {"epoch", epoch},
              {"step", step},
              {"train_loss", 1.0 / epoch},
              {"train_acc", 0.8 + 0.05 * epoch},
              {"img_per_s", 1100},
              {"seconds", 18},
              {"elapsed_s", elapsed},
              {"rss_mib", 200 + epoch},
              {"input_wait_s", 0.5},
              {"input_stall", 0.03},
              {"val_loss", 0.5 / epoch},
              {"val_acc", 0.85 + 0.01 * epoch},
              {"val_auc", 0.98},
              {"val_report", val_report()}};
    out += e.dump() + "\n";
  }
  return out;
}

json config_json() {
  return {{"model", "small-cnn"}, {"data", "data/pets/train"}, {"val", "data/pets/val"}, {"backend", "cpu"},
          {"threads", 2},         {"epochs", 3},                {"batch_size", 128},         {"optimizer", "sgd"},
          {"lr", 0.1},            {"schedule", "onecycle"},     {"classes", kClasses},       {"input", {28, 28, 1}},
          {"params", 29178},      {"train_images", 15360},      {"val_images", 150}};
}

void expect_well_formed(const std::string& html) {
  test::HtmlCheck c = test::check_html(html);
  EXPECT_TRUE(c.ok) << c.error;
  EXPECT_EQ(html.rfind("<!DOCTYPE html>", 0), 0u);
  EXPECT_EQ(test::external_reference(html), "");
  EXPECT_EQ(html.find("<script"), std::string::npos);
  EXPECT_EQ(html.find("<img"), std::string::npos);
  EXPECT_EQ(html.find("<link"), std::string::npos);
}

// The numbers in <td class="c" ...>N</td>, in document order.
std::vector<int64_t> confusion_cells(const std::string& html) {
  std::vector<int64_t> out;
  const std::regex cell(R"(<td class="c"[^>]*>(\d+)</td>)");
  for (auto it = std::sregex_iterator(html.begin(), html.end(), cell); it != std::sregex_iterator(); ++it)
    out.push_back(std::stoll((*it)[1]));
  return out;
}

TEST(Report, FullRunIsWellFormedWithAChartPerPlotAndTheConfusionMatrix) {
  TempRun run("full");
  run.write("config.json", config_json().dump(2));
  run.write("metrics.jsonl", metrics_text(true));
  json summary = {{"model", "small-cnn"}, {"backend", "cpu"}, {"epochs", 3}, {"steps", 360}, {"seconds_total", 57.5},
                  {"final_val_acc", 0.88}, {"final_train_acc", 0.95},
                  {"verdict", {{"status", "pass"}, {"text", "accuracy <above> target & fast"}}}};
  run.write("summary.json", summary.dump(2));
  write_report_html(run.str());
  const std::string html = test::file_bytes(run.str() + "/report.html");
  expect_well_formed(html);
  // loss, accuracy, throughput, GPU/stall, decoders, memory
  EXPECT_EQ(test::count_of(html, "<svg"), 6u);
  EXPECT_EQ(test::count_of(html, "</svg>"), 6u);
  EXPECT_EQ(html.find("not measured"), std::string::npos);
  EXPECT_NE(html.find("GPU busy"), std::string::npos);
  EXPECT_NE(html.find("Decoder threads"), std::string::npos);
  // Header.
  EXPECT_NE(html.find("small-cnn"), std::string::npos);
  EXPECT_NE(html.find("88.00%"), std::string::npos);  // summary's final accuracy
  EXPECT_NE(html.find("57.5 s"), std::string::npos);
  EXPECT_NE(html.find("data/pets/train"), std::string::npos);
  EXPECT_NE(html.find("3 / 3"), std::string::npos);
  EXPECT_NE(html.find(">128<"), std::string::npos);
  // Verdict box, escaped, marked good.
  EXPECT_NE(html.find("class=\"verdict good\""), std::string::npos);
  EXPECT_NE(html.find("accuracy &lt;above&gt; target &amp; fast"), std::string::npos);
  // Confusion matrix: 3 x 3 cells with the numbers in row order; per-class accuracy.
  EXPECT_EQ(confusion_cells(html), kConfusion);
  EXPECT_NE(html.find("92.59%"), std::string::npos);  // 50 / 54
  EXPECT_NE(html.find("80.00%"), std::string::npos);  // 40 / 50
  EXPECT_NE(html.find("95.65%"), std::string::npos);  // 44 / 46
  // The class named <b>&"x"> appears escaped only.
  EXPECT_NE(html.find("&lt;b&gt;&amp;&quot;x&quot;"), std::string::npos);
  EXPECT_EQ(html.find("<b>&\"x\""), std::string::npos);
  EXPECT_EQ(html.find("<b>&"), std::string::npos);
  // No temporary file left behind.
  int files = 0;
  for (const auto& e : fs::directory_iterator(run.str()))
    files += e.path().filename().string().find("report") != std::string::npos;
  EXPECT_EQ(files, 1);
  EXPECT_LT(html.size(), 200000u);
}

// A data-parallel run's all-reduce share joins the GPU busy / input stall chart; a single-process run (the full run
// above, and this one before the field is added) shows nothing of it.
TEST(Report, TheAllReduceShareIsDrawnOnlyWhenTheMetricsHaveIt) {
  TempRun run("comm");
  run.write("config.json", config_json().dump(2));
  std::string single = metrics_text(true), dist;
  const std::string without = render_report_html(run.str());
  EXPECT_EQ(without.find("all-reduce"), std::string::npos);
  run.write("metrics.jsonl", single);
  const std::string alone = render_report_html(run.str());
  EXPECT_EQ(alone.find("all-reduce"), std::string::npos);
  EXPECT_NE(alone.find("GPU busy and input stall"), std::string::npos);
  size_t lines = 0;
  for (size_t a = 0, b; (b = single.find('\n', a)) != std::string::npos; a = b + 1) {
    json j = json::parse(single.substr(a, b - a));
    if (j["kind"] == "train") {
      j["comm_share"] = 0.4;
      j["comm_s"] = 0.6;
      j["allreduce_bytes"] = 117800;
      ++lines;
    }
    dist += j.dump() + "\n";
  }
  ASSERT_GT(lines, 0u);
  run.write("metrics.jsonl", dist);
  const std::string html = render_report_html(run.str());
  expect_well_formed(html);
  EXPECT_NE(html.find("GPU busy, input stall and all-reduce"), std::string::npos);
  EXPECT_NE(html.find("all-reduce (communication share)"), std::string::npos);
  EXPECT_EQ(test::count_of(html, "<svg"), 6u);  // the same charts: the share is a line in one of them
  EXPECT_EQ(html.find("not measured"), std::string::npos);
}

TEST(Report, TornLastLineAndNoSummary) {
  TempRun run("torn");
  run.write("config.json", config_json().dump());
  std::string m = metrics_text(false);
  m += R"({"kind":"train","epoch":4,"step":370,"loss":0.1,"acc":0.9,"img_per_s":11)";  // torn by a crash
  run.write("metrics.jsonl", m);
  const std::string html = render_report_html(run.str());
  expect_well_formed(html);
  EXPECT_EQ(test::count_of(html, "<svg"), 5u);  // no decoder chart: no decoder counts recorded
  EXPECT_NE(html.find("1 of 40 lines of metrics.jsonl could not be read"), std::string::npos);
  EXPECT_NE(html.find("no summary.json"), std::string::npos);
  EXPECT_NE(html.find("not measured"), std::string::npos);   // GPU busy
  EXPECT_NE(html.find("GPU busy: not measured"), std::string::npos);  // input stall is there (epoch lines)
  EXPECT_EQ(confusion_cells(html), kConfusion);
  EXPECT_NE(html.find("88.00%"), std::string::npos);  // last epoch's val_acc, no summary needed
  EXPECT_NE(html.find("Decoder threads: not recorded"), std::string::npos);
}

TEST(Report, EmptyFolderAndMissingFields) {
  TempRun run("empty");
  std::string html = render_report_html(run.str());
  expect_well_formed(html);
  EXPECT_NE(html.find("metrics.jsonl is missing"), std::string::npos);
  EXPECT_NE(html.find("No evaluation recorded"), std::string::npos);
  EXPECT_EQ(confusion_cells(html).size(), 0u);

  // Lines with odd content: arrays, strings for numbers, nulls, no kind, a blank line, garbage.
  run.write(
      "metrics.jsonl",
      "[1,2,3]\n\n{\"kind\":\"train\",\"step\":\"ten\",\"loss\":null}\n{\"kind\":\"epoch\",\"epoch\":1}\n"
      "{\"step\":5}\n\x01\x02garbage\n{\"kind\":\"train\",\"step\":10,\"loss\":1e308,\"acc\":-5,\"elapsed_s\":-1}\n");
  run.write("config.json", "{\"classes\": 5, \"epochs\": \"three\", \"input\": [1]}");
  run.write("summary.json", "not json");
  html = render_report_html(run.str());
  expect_well_formed(html);
  EXPECT_NE(html.find("summary.json could not be read"), std::string::npos);
  EXPECT_EQ(test::count_of(html, "<svg"), 5u);
}

TEST(Report, ConfusionFromSummaryWhenNoEpochHasOne) {
  TempRun run("summary-report");
  run.write("metrics.jsonl", R"({"kind":"epoch","epoch":1,"step":10,"train_loss":0.5,"train_acc":0.8})" "\n");
  json summary = {{"final_val_report", val_report()}, {"verdict", "slow but correct"}};
  run.write("summary.json", summary.dump());
  const std::string html = render_report_html(run.str());
  expect_well_formed(html);
  EXPECT_EQ(confusion_cells(html), kConfusion);
  EXPECT_NE(html.find("slow but correct"), std::string::npos);
  EXPECT_NE(html.find("class=\"verdict\""), std::string::npos);
  // No class names in a config: the columns are numbered.
  EXPECT_NE(html.find("<th>2</th>"), std::string::npos);
}

TEST(Report, ManyClassesListConfusionsInsteadOfAMatrix) {
  TempRun run("many");
  const int k = 60;
  std::vector<int64_t> cm(static_cast<size_t>(k * k), 0);
  for (int i = 0; i < k; ++i)
    cm[static_cast<size_t>(i * k + i)] = 10, cm[static_cast<size_t>(i * k + (i + 1) % k)] = i % 3;
  json e = {{"kind", "epoch"}, {"epoch", 1}, {"step", 5}, {"val_report", {{"confusion", cm}, {"count", 900}}}};
  run.write("metrics.jsonl", e.dump() + "\n");
  const std::string html = render_report_html(run.str());
  expect_well_formed(html);
  EXPECT_EQ(confusion_cells(html).size(), 0u);
  EXPECT_NE(html.find("60 classes: too many for a matrix"), std::string::npos);
  EXPECT_LT(html.size(), 100000u);
}

TEST(Report, LongRunsStaySmall) {
  TempRun run("long");
  std::string m;
  for (int i = 1; i <= 20000; ++i) {
    json t = {{"kind", "train"}, {"epoch", 1 + i / 1000}, {"step", i * 50}, {"loss", 1.0 / i}, {"acc", 0.5},
              {"img_per_s", 3000 + i % 7}, {"elapsed_s", i * 2.0}};
    m += t.dump() + "\n";
  }
  run.write("metrics.jsonl", m);
  const std::string html = render_report_html(run.str());
  expect_well_formed(html);
  EXPECT_LT(html.size(), 400000u);
  EXPECT_NE(html.find("run time (h)"), std::string::npos);  // 40,000 s
}

TEST(Report, ResumedRunContinuesTheTimeAxis) {
  TempRun run("resume");
  // Second process restarts elapsed_s at 0: the time axis must keep going (40 s + 5 s = 45 s at the end).
  run.write("metrics.jsonl",
            R"({"kind":"train","step":50,"loss":1,"acc":0.5,"img_per_s":100,"elapsed_s":20})" "\n"
            R"({"kind":"train","step":100,"loss":1,"acc":0.5,"img_per_s":100,"elapsed_s":40})" "\n"
            R"({"kind":"train","step":150,"loss":1,"acc":0.5,"img_per_s":100,"elapsed_s":5})" "\n");
  const std::string html = render_report_html(run.str());
  expect_well_formed(html);
  EXPECT_NE(html.find("45.0 s"), std::string::npos);  // total time in the header
}

TEST(Report, NotAFolderIsAUserError) {
  EXPECT_THROW(render_report_html("/nonexistent/stoke-run"), UserError);
  EXPECT_THROW(write_report_html("/nonexistent/stoke-run"), UserError);
}

// `stoke report --run X` checks X first: a folder without the trainer's files is named as not a run folder.
TEST(Report, AFolderWithoutARunsFilesIsNotARunFolder) {
  TempRun run("not-a-run");
  run.write("notes.txt", "hello");
  try {
    check_run_folder(run.str());
    ADD_FAILURE() << "a folder without config.json or metrics.jsonl passed";
  } catch (const UserError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find(run.str() + " is not a run folder"), std::string::npos) << m;
    EXPECT_NE(m.find("config.json"), std::string::npos) << m;
    EXPECT_EQ(m.find('\n'), std::string::npos) << m;
  }
  EXPECT_THROW(check_run_folder("/nonexistent/stoke-run"), UserError);
  run.write("metrics.jsonl", "");  // a run that has written only its metrics so far is one
  EXPECT_NO_THROW(check_run_folder(run.str()));
  TempRun configured("configured");
  configured.write("config.json", "{}");
  EXPECT_NO_THROW(check_run_folder(configured.str()));
}

TEST(Report, HtmlEscape) {
  EXPECT_EQ(html_escape("<b>&\"x\"'"), "&lt;b&gt;&amp;&quot;x&quot;&#39;");
  EXPECT_EQ(html_escape("caf\xC3\xA9 \xE2\x9C\x93"), "caf\xC3\xA9 \xE2\x9C\x93");  // valid UTF-8 kept
  EXPECT_EQ(html_escape("a\xFF" "b"), "a\xEF\xBF\xBD" "b");                          // invalid byte
  EXPECT_EQ(html_escape("\xC0\xAF"), "\xEF\xBF\xBD\xEF\xBF\xBD");                   // overlong '/'
  EXPECT_EQ(html_escape("\xED\xA0\x80"), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");   // surrogate
  EXPECT_EQ(html_escape(std::string("a\0b\x1b", 4)), "a\xEF\xBF\xBD" "b\xEF\xBF\xBD");
  EXPECT_EQ(html_escape("tab\tnl\n"), "tab\tnl\n");
}

TEST(HtmlChecker, CatchesWhatItShould) {
  EXPECT_TRUE(test::check_html("<!DOCTYPE html><html><body><p a=\"1\">x &amp; y<br></p></body></html>").ok);
  EXPECT_FALSE(test::check_html("<p><b></p></b>").ok);
  EXPECT_FALSE(test::check_html("<p>").ok);
  EXPECT_FALSE(test::check_html("<p a=1></p>").ok);
  EXPECT_FALSE(test::check_html("<p>a & b</p>").ok);
  EXPECT_FALSE(test::check_html("<p>a < b</p>").ok);
  EXPECT_FALSE(test::check_html("<script src=\"x.js\"></script>").ok);
  EXPECT_TRUE(test::check_html("<svg><line x1=\"0\"/></svg>").ok);
  EXPECT_NE(test::external_reference("<img src=\"https://x/y.png\">"), "");
  EXPECT_EQ(test::external_reference("<svg xmlns=\"http://www.w3.org/2000/svg\"></svg>"), "");
}

}  // namespace
}  // namespace stoke
