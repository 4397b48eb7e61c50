// The stoke binary as users meet it: help everywhere, user errors as one line with exit code 2.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "base/fs.h"
#include "tests/test_util.h"

using namespace stoke::test;

namespace {
int lines(const std::string& s) {
  return static_cast<int>(std::count(s.begin(), s.end(), '\n')) + (!s.empty() && s.back() != '\n' ? 1 : 0);
}
void expect_user_error(const std::string& args, const std::string& needle) {
  RunResult r = run_stoke(args);
  EXPECT_EQ(r.exit_code, 2) << args << "\n" << r.output;
  EXPECT_NE(r.output.find(needle), std::string::npos) << args << "\n" << r.output;
  EXPECT_EQ(lines(r.output), 1) << args << "\n" << r.output;
}
}  // namespace

TEST(Cli, HelpOnEverySubcommand) {
  for (const char* sub : {"", "train", "dataset", "dataset mnist", "devices"}) {
    RunResult r = run_stoke(std::string(sub) + " --help");
    EXPECT_EQ(r.exit_code, 0) << sub;
    EXPECT_NE(r.output.find("Usage"), std::string::npos) << sub << "\n" << r.output;
  }
  RunResult t = run_stoke("train --help");
  for (const char* flag :
       {"--data", "--val", "--model", "--epochs", "--batch-size", "--lr", "--optimizer", "--seed", "--device", "--out"})
    EXPECT_NE(t.output.find(flag), std::string::npos) << flag;
}

TEST(Cli, UserErrorsAreOneLineAndExitTwo) {
  TempDir tmp("cli");
  write_tiny_folder(tmp.path() / "ok", {"a", "b"}, 3);
  const std::string ok = (tmp.path() / "ok").string();
  expect_user_error("", "subcommand");
  expect_user_error("train", "--data");
  expect_user_error("train --data " + tmp.str() + "/missing", "no such folder");
  expect_user_error("train --data " + ok + " --epochs abc", "--epochs");
  expect_user_error("train --data " + ok + " --epochs 0",
                    "--epochs 0 evaluates imported weights without training: it needs --init");
  expect_user_error("train --data " + ok + " --epochs -1", "--epochs");
  expect_user_error("train --data " + ok + " --lr -1", "--lr");
  expect_user_error("train --data " + ok + " --optimizer adam", "--optimizer");
  expect_user_error("train --data " + ok + " --model resnet-1000 --out " + tmp.str() + "/r1", "unknown model");
  expect_user_error("train --data " + ok + " --bogus-flag", "bogus");
  fs::create_directories(tmp.path() / "empty" / "a");
  write_tiny_folder(tmp.path() / "empty", {"b"}, 2);
  expect_user_error("train --data " + tmp.str() + "/empty --out " + tmp.str() + "/r2", "'a'");
  write_tiny_folder(tmp.path() / "other", {"x", "y", "z"}, 2);
  expect_user_error("train --data " + ok + " --val " + tmp.str() + "/other --out " + tmp.str() + "/r3", "differ");
  expect_user_error("train --data " + ok + " --batch-size 0", "--batch-size");
  expect_user_error("train --data " + ok + " --batch-size big", "--batch-size");
  expect_user_error("dataset synthetic --kind mednist-like --classes 5 --out " + tmp.str() + "/s1", "--classes");
  expect_user_error("dataset synthetic --kind imagenet --out " + tmp.str() + "/s2", "--kind");
  expect_user_error("dataset synthetic --kind imagenet-like --count 5 --classes 10 --out " + tmp.str() + "/s3",
                    "at least");
}

TEST(Cli, DevicesSaysWhichBackend) {
  RunResult r = run_stoke("devices");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_TRUE(r.output.find("GPU:") == 0 || r.output.find("no usable GPU") == 0) << r.output;
}

TEST(Cli, TrainsATinyFolderAndWritesTheRunFolder) {
  TempDir tmp("cli-train");
  write_tiny_folder(tmp.path() / "train", {"a", "b"}, 24);
  write_tiny_folder(tmp.path() / "val", {"a", "b"}, 6);
  const std::string run = tmp.str() + "/run";
  RunResult r = run_stoke("train --data " + tmp.str() + "/train --val " + tmp.str() +
                          "/val --epochs 2 --batch-size 8 --device cpu --out " + run);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("summary:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("validation accuracy"), std::string::npos) << r.output;
  for (const char* f : {"config.json", "metrics.jsonl", "summary.json", "report.html"})
    EXPECT_TRUE(fs::exists(fs::path(run) / f)) << f;
  EXPECT_NE(r.output.find("verdict: "), std::string::npos) << r.output;
  {
    std::vector<uint8_t> html = stoke::read_file(run + "/report.html");
    const std::string h(html.begin(), html.end());
    EXPECT_NE(h.find("<svg"), std::string::npos);
    EXPECT_NE(h.find("</html>"), std::string::npos);
  }
  RunResult rep = run_stoke("report --run " + run + " --tensorboard");
  EXPECT_EQ(rep.exit_code, 0) << rep.output;
  EXPECT_TRUE(fs::exists(fs::path(run) / "tensorboard")) << rep.output;
  // A second run into the same folder must not silently overwrite it.
  RunResult again = run_stoke("train --data " + tmp.str() + "/train --epochs 1 --out " + run);
  EXPECT_EQ(again.exit_code, 2) << again.output;
  EXPECT_NE(again.output.find("--overwrite"), std::string::npos) << again.output;
}

TEST(Cli, BatchSizeAutoSaysWhatItChoseAndResumeKeepsIt) {
  TempDir tmp("cli-auto-batch");
  write_tiny_folder(tmp.path() / "train", {"a", "b"}, 200);
  const std::string run = tmp.str() + "/run";
  RunResult r =
      run_stoke("train --data " + tmp.str() + "/train --epochs 1 --batch-size auto --device cpu --out " + run);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // 400 images: at least 16 steps an epoch caps it at 25 -> 24.
  EXPECT_NE(r.output.find("batch size auto: 24 (capped: at least 16 steps per epoch over 400 images"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("batch 24,"), std::string::npos) << r.output;
  const std::vector<uint8_t> cfg = stoke::read_file(run + "/config.json");
  EXPECT_NE(std::string(cfg.begin(), cfg.end()).find("\"batch_size\": 24"), std::string::npos)
      << "the resolved batch is saved";
  RunResult again = run_stoke("train --resume " + run + " --epochs 2 --quiet");
  EXPECT_EQ(again.exit_code, 0) << again.output;
}

TEST(Cli, AFoldersFilesAreReadFromDiskOnce) {
  TempDir tmp("cli-file-cache");
  write_tiny_folder(tmp.path() / "train", {"a", "b"}, 24);
  auto summary = [&](const std::string& run) { return nlohmann::json::parse(file_bytes(run + "/summary.json")); };
  const std::string base =
      "train --data " + tmp.str() + "/train --epochs 3 --batch-size 8 --device cpu --out " + tmp.str();
  RunResult r = run_stoke(base + "/cached");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("file cache: each file is read from disk once"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("file cache: 48 files"), std::string::npos) << r.output;
  const nlohmann::json fc = summary(tmp.str() + "/cached")["file_cache"];
  EXPECT_EQ(fc["files_kept"], 48);
  EXPECT_EQ(fc["reads_from_disk"], 48) << "each file once (the normalisation estimate reads them first)";
  EXPECT_GE(fc["reads_from_memory"].get<int64_t>(), 3 * 48) << "every epoch from memory";
  EXPECT_EQ(fc["full"], false);

  RunResult off = run_stoke(base + "/uncached --cache none");
  ASSERT_EQ(off.exit_code, 0) << off.output;
  EXPECT_EQ(off.output.find("file cache"), std::string::npos) << off.output;
  EXPECT_FALSE(summary(tmp.str() + "/uncached").contains("file_cache"));
  // Same data, same seed: the cache changes where bytes come from, not what training sees.
  EXPECT_EQ(summary(tmp.str() + "/cached")["history"].back()["train_loss"],
            summary(tmp.str() + "/uncached")["history"].back()["train_loss"]);
}

TEST(Cli, PackThenTrainFromThePackGivesTheSameRun) {
  TempDir tmp("cli-pack");
  write_tiny_folder(tmp.path() / "train", {"a", "b"}, 20);
  RunResult p = run_stoke("pack " + tmp.str() + "/train -o " + tmp.str() + "/train.pack");
  ASSERT_EQ(p.exit_code, 0) << p.output;
  EXPECT_NE(p.output.find("40 images"), std::string::npos) << p.output;
  for (const char* data : {"/train", "/train.pack"}) {
    RunResult r = run_stoke("train --data " + tmp.str() + data + " --epochs 1 --batch-size 8 --quiet --out " +
                            tmp.str() + "/run" + (data[6] == '.' ? "p" : "f"));
    ASSERT_EQ(r.exit_code, 0) << r.output;
  }
  // Same samples, same order, same bytes: the same losses.
  auto loss_of = [&](const std::string& run) {
    const std::string t = file_bytes(run + "/summary.json");
    size_t k = t.find("\"final_train_loss\"");
    return t.substr(k, t.find(',', k) - k);
  };
  EXPECT_EQ(loss_of(tmp.str() + "/runf"), loss_of(tmp.str() + "/runp"));
  RunResult bad = run_stoke("pack " + tmp.str() + "/nothing -o " + tmp.str() + "/x.pack");
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  RunResult notpack = run_stoke("train --data " + tmp.str() + "/train/a/0.jpg --epochs 1");
  EXPECT_EQ(notpack.exit_code, 2) << notpack.output;
}

TEST(Cli, BenchInputPrintsEfficiencyAgainstRawDecode) {
  TempDir tmp("cli-bench");
  write_tiny_folder(tmp.path() / "d", {"a", "b"}, 30);
  RunResult r = run_stoke("bench-input --data " + tmp.str() + "/d --seconds 0.2 --max-threads 2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("reference (raw libjpeg-turbo"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("efficiency"), std::string::npos) << r.output;
}

TEST(Cli, DiagnoseMeasuresEveryStageAndGivesAVerdict) {
  TempDir tmp("cli-diag");
  write_tiny_folder(tmp.path() / "d", {"a", "b"}, 30);
  RunResult r = run_stoke("diagnose --data " + tmp.str() + "/d --batch-size 8 --seconds 0.3 --device cpu");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* s : {"(a) decode capacity", "(c) compute", "(d) full pipeline", "verdict: ", "recommendation: "})
    EXPECT_NE(r.output.find(s), std::string::npos) << s << "\n" << r.output;
  EXPECT_TRUE(r.output.find("input-bound") != std::string::npos || r.output.find("compute-bound") != std::string::npos);
  RunResult bad = run_stoke("diagnose --data " + tmp.str() + "/none");
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
}

// Every option whose default means something shows it, in words a user can read: "(default: 3)", not CLI11's
// "INT:NUMBER > 0=3", and a flag that is on by default does not say {false}.
TEST(Cli, HelpShowsTheTrueDefaults) {
  const RunResult t = run_stoke("train --help");
  ASSERT_EQ(t.exit_code, 0) << t.output;
  for (const char* want :
       {"Passes over the training data (0 with --init: evaluate the imported weights, no step) (default: 3)",
        "fits (default: 128)", "learning rate (default: 0.1)", "or N (default: auto)", "(default: sgd)",
        "(default: onecycle)", "(default: 0.9)", "plain momentum (default: on)", "(default: 0.0005)",
        "--trace records (default: 1:50)", "(default runs/<model>-<time>"})
    EXPECT_NE(t.output.find(want), std::string::npos) << want << "\n" << t.output;
  EXPECT_NE(t.output.find("--decoders,--workers,--num-workers"), std::string::npos) << t.output;
  EXPECT_EQ(t.output.find("{false}"), std::string::npos) << t.output;
  EXPECT_EQ(t.output.find("=3"), std::string::npos) << t.output;
  // Each option that takes a value says its default, unless it has none to say (a path, a window, the run to resume).
  const std::set<std::string> without = {"--data", "--val", "--resume", "--init", "--profile-steps", "--trace"};
  std::istringstream in(t.output);
  std::string line, entry, name;
  bool takes_value = false;  // "  --epochs INT..." takes one; "  --quiet      No progress output" does not
  int checked = 0;
  auto check = [&] {
    if (name.empty() || without.count(name) || !takes_value) return;
    EXPECT_NE(entry.find("default"), std::string::npos) << entry;
    ++checked;
  };
  while (std::getline(in, line)) {
    if (line.rfind("  --", 0) == 0) {
      check();
      entry = line;
      const size_t names_end = line.find(' ', 2);
      name = line.substr(2, std::min(names_end, line.find(',', 2)) - 2);
      takes_value = names_end != std::string::npos && names_end + 1 < line.size() && line[names_end + 1] != ' ';
    } else if (line.rfind("      ", 0) == 0) {
      entry += line;
    }
  }
  check();
  EXPECT_GE(checked, 30) << "the help was not parsed as expected\n" << t.output;
  for (const auto& [sub, want] :
       std::vector<std::pair<std::string, std::string>>{{"eval", "Images per batch (default: 128)"},
                                                        {"predict", "(default: 1)"},
                                                        {"export", "(default: best)"},
                                                        {"diagnose", "Seconds per measurement (default: 3)"},
                                                        {"bench-input", "Seconds per measurement (default: 2)"},
                                                        {"dataset mnist", "JPEG quality (default: 95)"},
                                                        {"dataset synthetic", "one tree (default: on)"}}) {
    const RunResult r = run_stoke(sub + " --help");
    EXPECT_EQ(r.exit_code, 0) << sub;
    EXPECT_NE(r.output.find(want), std::string::npos) << sub << ": " << want << "\n" << r.output;
  }
}

// The header says each data set once, on one line with every fact: its images, classes and shape, the subset drawn,
// what indexing left out.
TEST(Cli, EachDataSetIsSaidOnceOnOneLine) {
  TempDir tmp("cli-data-line");
  write_tiny_folder(tmp.path() / "train", {"a", "b"}, 10);  // 20 images
  write_tiny_folder(tmp.path() / "val", {"a", "b"}, 3);
  stoke::write_file(tmp.str() + "/train/a/notes.txt", "x", 1);
  const RunResult r =
      run_stoke("train --data " + tmp.str() + "/train --val " + tmp.str() +
                "/val --limit-train 12 --epochs 1 --batch-size 4 --device cpu --out " + tmp.str() + "/run");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(count_of(r.output, "\ndata: "), 1u) << r.output;
  EXPECT_EQ(count_of(r.output, "\nval: "), 1u) << r.output;
  EXPECT_EQ(count_of(r.output, "indexed"), 0u) << r.output;
  EXPECT_NE(r.output.find("\ndata: 12 images in 2 classes (12x12x1), a seeded subset of the 20 (--limit-train); left "
                          "out 1: 1 other extension (.txt 1) (every path in left_out.txt in the run folder)\n"),
            std::string::npos)
      << r.output;
  EXPECT_NE(r.output.find("\nval: 6 images; nothing left out\n"), std::string::npos) << r.output;
}

// stoke drops the last partial batch of an epoch (drop_last), and says so once, with the count; a batch larger than
// the data becomes the whole data set, as a PyTorch DataLoader's one short batch would.
TEST(Cli, BatchAndDataSizeAreSaidOnceAtTheStart) {
  TempDir tmp("cli-batch-fit");
  write_tiny_folder(tmp.path() / "train", {"a", "b"}, 10);  // 20 images
  const std::string base = "train --data " + tmp.str() + "/train --epochs 2 --device cpu --out " + tmp.str();
  const RunResult r = run_stoke(base + "/r8 --batch-size 8");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(count_of(r.output, "batch: "), 1u) << r.output;
  EXPECT_NE(r.output.find("batch: 20 training images make 2 steps of 8 per epoch, the other 4 are left out (drop_last: "
                          "every step is a full batch), a different 4 each epoch as the order is reshuffled\n"),
            std::string::npos)
      << r.output;

  // Evaluation only: no epoch is stepped through, so no training note, on the console or in config.json.
  write_tiny_folder(tmp.path() / "val", {"a", "b"}, 3);
  const RunResult eval_only =
      run_stoke("train --data " + tmp.str() + "/train --epochs 0 --device cpu --batch-size 8 --val " + tmp.str() +
                "/val --init " + tmp.str() + "/r8 --out " + tmp.str() + "/e8");
  ASSERT_EQ(eval_only.exit_code, 0) << eval_only.output;
  EXPECT_EQ(eval_only.output.find("batch: "), std::string::npos) << eval_only.output;
  const std::vector<uint8_t> e8 = stoke::read_file(tmp.str() + "/e8/config.json");
  EXPECT_FALSE(nlohmann::json::parse(std::string(e8.begin(), e8.end())).contains("batch_fit"));

  const RunResult big = run_stoke(base + "/r64 --batch-size 64");
  ASSERT_EQ(big.exit_code, 0) << big.output;
  EXPECT_EQ(count_of(big.output, "batch: "), 1u) << big.output;
  EXPECT_NE(big.output.find("batch: --batch-size 64 is more than the 20 training images, so the batch is 20"),
            std::string::npos)
      << big.output;
  EXPECT_EQ(big.output.find("left out (drop_last"), std::string::npos) << big.output;
  const std::vector<uint8_t> cfg = stoke::read_file(tmp.str() + "/r64/config.json");
  EXPECT_EQ(nlohmann::json::parse(std::string(cfg.begin(), cfg.end()))["batch_size"], 20) << "the batch that ran";

  const RunResult even = run_stoke(base + "/r10 --batch-size 10");
  ASSERT_EQ(even.exit_code, 0) << even.output;
  EXPECT_EQ(even.output.find("batch: "), std::string::npos) << "nothing to say when the batch divides the data\n"
                                                            << even.output;
}

TEST(Cli, ValWithOtherClassesNamesThem) {
  TempDir tmp("cli-val-classes");
  write_tiny_folder(tmp.path() / "train", {"a", "b"}, 3);
  write_tiny_folder(tmp.path() / "val", {"a", "c", "d"}, 2);
  expect_user_error("train --data " + tmp.str() + "/train --val " + tmp.str() + "/val --out " + tmp.str() + "/r",
                    "missing from --val: b; extra in --val: c, d");
}

// The default run folder holds the time to the second; two runs started together still get a folder each.
TEST(Cli, TwoRunsStartedTogetherGetTheirOwnDefaultFolders) {
  TempDir tmp("cli-two-runs");
  write_tiny_folder(tmp.path() / "train", {"a", "b"}, 8);
  const std::string one = binary_dir() + "/bin/stoke train --data " + tmp.str() +
                          "/train --epochs 1 --batch-size 8 --quiet "
                          "--device cpu --threads 1 --decoders 1";
  const std::string cmd = "cd " + tmp.str() + " && { " + one + " & " + one + " & wait; } 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0);
  std::vector<std::string> folders;
  for (const auto& e : fs::directory_iterator(tmp.path() / "runs")) {
    folders.push_back(e.path().filename().string());
    EXPECT_TRUE(fs::exists(e.path() / "summary.json")) << e.path();
  }
  ASSERT_EQ(folders.size(), 2u);
  std::sort(folders.begin(), folders.end());
  if (folders[0].size() != folders[1].size()) {  // the same second: NAME and NAME-2
    EXPECT_EQ(folders[1], folders[0] + "-2");
  }
}

TEST(Cli, ReportOnAFolderThatIsNotARunIsAUserError) {
  TempDir tmp("cli-report-not-run");
  write_tiny_folder(tmp.path() / "images", {"a"}, 1);
  expect_user_error("report --run " + tmp.str() + "/images", tmp.str() +
                                                                 "/images is not a run folder: it holds neither "
                                                                 "config.json nor metrics.jsonl");
  EXPECT_FALSE(fs::exists(tmp.path() / "images" / "report.html"));
  expect_user_error("report --run " + tmp.str() + "/nowhere", tmp.str() + "/nowhere: no such run folder");
}
