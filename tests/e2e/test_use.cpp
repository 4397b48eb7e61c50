// Using a trained run: load, evaluate, predict, export for PyTorch.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/error.h"
#include "base/fs.h"
#include "engine/checkpoint.h"
#include "engine/inference.h"
#include "engine/safetensors.h"
#include "engine/trainer.h"
#include "models/models.h"
#include "tests/test_util.h"

using namespace stoke;
using stoke::test::TempDir;
namespace st = stoke::safetensors;
namespace fs = std::filesystem;

namespace {
struct Fixture {
  TempDir tmp{"use"};
  TrainResult result;
  Fixture() {
    test::write_tiny_folder(tmp.path() / "train", {"a", "b", "c"}, 16);
    test::write_tiny_folder(tmp.path() / "val", {"a", "b", "c"}, 5);
    TrainConfig c;
    c.data = tmp.str() + "/train";
    c.val = tmp.str() + "/val";
    c.epochs = 2;
    c.batch_size = 8;
    c.quiet = true;
    c.out = tmp.str() + "/run";
    result = train(c, build_model);
  }
};
Fixture& fx() {
  static Fixture f;
  return f;
}
}  // namespace

TEST(Use, EvaluateReproducesTheTrainersValidation) {
  LoadedRun r = load_run(fx().result.run_dir, build_model, "latest");
  EXPECT_EQ(r.classes, (std::vector<std::string>{"a", "b", "c"}));
  ClassificationReport rep = evaluate_folder(r, fx().tmp.str() + "/val", 4, 2);
  EXPECT_EQ(rep.count, 15);
  EXPECT_DOUBLE_EQ(rep.accuracy, fx().result.epochs.back().val_acc);
  EXPECT_NEAR(rep.loss, fx().result.epochs.back().val_loss, 1e-6);
  EXPECT_THROW(evaluate_folder(r, fx().tmp.str() + "/train/a", 4, 1), UserError);  // no class folders
}

// The validation set with three unreadable files added: a copy of val/ plus garbage, a truncated JPEG and an
// empty file. Evaluation leaves them out (never replaces them), counts them, and its numbers are exactly those of
// the clean set.
std::string val_with_unreadable_files() {
  const fs::path bad = fx().tmp.path() / "val-with-bad";
  if (!fs::exists(bad)) {
    fs::copy(fx().tmp.path() / "val", bad, fs::copy_options::recursive);
    write_file((bad / "a" / "garbage.jpg").string(), "not an image at all", 19);
    const std::vector<uint8_t> good = read_file((bad / "b" / "0.jpg").string());
    write_file((bad / "b" / "truncated.jpg").string(), good.data(), good.size() / 3);
    write_file((bad / "c" / "empty.jpg").string(), "", 0);
  }
  return bad.string();
}

TEST(Use, EvaluationLeavesUnreadableImagesOutAndCountsThem) {
  LoadedRun r = load_run(fx().result.run_dir, build_model, "latest");
  const ClassificationReport clean = evaluate_folder(r, fx().tmp.str() + "/val", 4, 2);
  const ClassificationReport with_bad = evaluate_folder(r, val_with_unreadable_files(), 4, 2);
  EXPECT_EQ(clean.unreadable, 0);
  EXPECT_EQ(with_bad.count, 15) << "a stand-in was counted";
  EXPECT_EQ(with_bad.unreadable, 3);
  EXPECT_DOUBLE_EQ(with_bad.accuracy, clean.accuracy);
  EXPECT_NEAR(with_bad.loss, clean.loss, 1e-6);
  EXPECT_EQ(with_bad.confusion, clean.confusion);
  EXPECT_EQ(with_bad.to_json().at("unreadable"), 3);
}

// The trainer's validation does the same, streaming and from the decoded cache: its accuracy is that of the
// clean set under the same weights, and the epoch line in metrics.jsonl says how many were left out.
TEST(Use, ValidationDuringTrainingLeavesUnreadableImagesOut) {
  for (const std::string cache : {"files", "decoded"}) {
    SCOPED_TRACE(cache);
    TrainConfig c;
    c.data = fx().tmp.str() + "/train";
    c.val = val_with_unreadable_files();
    c.epochs = 1;
    c.batch_size = 8;
    c.quiet = true;
    c.cache = parse_cache(cache);
    c.out = fx().tmp.str() + "/run-bad-val-" + cache;
    const TrainResult t = train(c, build_model);
    LoadedRun r = load_run(t.run_dir, build_model, "latest");
    const ClassificationReport clean = evaluate_folder(r, fx().tmp.str() + "/val", 4, 2);
    EXPECT_DOUBLE_EQ(t.epochs.back().val_acc, clean.accuracy);
    EXPECT_NEAR(t.epochs.back().val_loss, clean.loss, 1e-6);
    const std::vector<uint8_t> bytes = read_file(t.run_dir + "/metrics.jsonl");
    std::istringstream lines(std::string(bytes.begin(), bytes.end()));
    nlohmann::json last;
    for (std::string line; std::getline(lines, line);) {
      nlohmann::json j = nlohmann::json::parse(line);
      if (j.value("kind", "") == "epoch") last = j;
    }
    EXPECT_EQ(last.value("val_unreadable", 0), 3) << last.dump();
    EXPECT_EQ(last.at("val_report").at("count"), 15);
  }
}

// Files deleted after the data was indexed are not the data's fault: the run counts them apart from the corrupt
// ones (summary.json, the closing lines, the report), streaming and from the decoded cache.
TEST(Use, FilesDeletedAfterIndexingAreCountedAsVanishedNotCorrupt) {
  TempDir tmp("vanished");
  test::write_tiny_folder(tmp.path() / "src" / "train", {"a", "b"}, 15);
  test::write_tiny_folder(tmp.path() / "src" / "val", {"a", "b"}, 3);
  write_file((tmp.path() / "src" / "train" / "a" / "garbage.jpg").string(), "not an image at all", 19);
  write_file((tmp.path() / "src" / "train" / "b" / "empty.jpg").string(), "", 0);  // 32 files: 4 full batches
  for (const std::string cache : {"none", "decoded"}) {
    SCOPED_TRACE(cache);
    const fs::path data = tmp.path() / ("data-" + cache);
    fs::copy(tmp.path() / "src", data, fs::copy_options::recursive);
    TrainConfig c;
    c.data = (data / "train").string();
    c.val = (data / "val").string();
    c.epochs = 2;
    c.batch_size = 8;
    c.normalize = "imagenet";
    c.cache = parse_cache(cache);
    c.out = tmp.str() + "/run-" + cache;
    c.before_input = [&] {
      for (const char* f : {"train/a/3.jpg", "train/a/7.jpg", "train/b/0.jpg", "val/b/1.jpg"}) fs::remove(data / f);
    };
    testing::internal::CaptureStdout();
    const TrainResult t = train(c, build_model);
    const std::string said = testing::internal::GetCapturedStdout();
    EXPECT_EQ(t.vanished_images, 4);
    EXPECT_EQ(t.corrupt_images, 2);
    const nlohmann::json sum = nlohmann::json::parse(test::file_bytes(t.run_dir + "/summary.json"));
    EXPECT_EQ(sum.at("vanished_images"), 4) << sum.dump();
    EXPECT_EQ(sum.at("corrupt_images"), 2) << sum.dump();
    EXPECT_NE(said.find("4 images vanished during the run"), std::string::npos) << said;
    // The deleted validation image is left out of each evaluation as vanished, not as unreadable.
    std::istringstream lines(test::file_bytes(t.run_dir + "/metrics.jsonl"));
    int epochs = 0;
    for (std::string line; std::getline(lines, line);) {
      const nlohmann::json j = nlohmann::json::parse(line);
      if (j.value("kind", "") != "epoch") continue;
      ++epochs;
      EXPECT_EQ(j.value("val_vanished", 0), 1) << line;
      EXPECT_FALSE(j.contains("val_unreadable")) << line;
      EXPECT_EQ(j.at("val_report").at("vanished"), 1) << line;
      EXPECT_EQ(j.at("val_report").at("count"), 5) << line;
    }
    EXPECT_EQ(epochs, 2);
    EXPECT_EQ(test::count_of(said, "(1 vanished val image left out)"), 2u) << said;
    EXPECT_EQ(said.find("unreadable"), std::string::npos) << said;
    EXPECT_NE(said.find("2 corrupt images were skipped"), std::string::npos) << said;
    const std::string report = test::file_bytes(t.run_dir + "/report.html");
    EXPECT_NE(report.find("vanished during the run"), std::string::npos);
  }
}
TEST(Use, PredictGivesProbabilitiesAndNamesBadFiles) {
  LoadedRun r = load_run(fx().result.run_dir, build_model);
  std::vector<std::string> files = {fx().tmp.str() + "/val/a/0.jpg", fx().tmp.str() + "/missing.jpg",
                                    fx().tmp.str() + "/val/c/1.jpg"};
  std::vector<Prediction> p = predict(r, files, 2);
  ASSERT_EQ(p.size(), 3u);
  EXPECT_TRUE(p[0].ok);
  EXPECT_FALSE(p[1].ok);
  EXPECT_NE(p[1].error.find("missing.jpg"), std::string::npos) << p[1].error;
  EXPECT_TRUE(p[2].ok);
  float sum = 0;
  for (float v : p[0].probs) sum += v;
  EXPECT_NEAR(sum, 1.f, 1e-5);
  EXPECT_EQ(p[0].top_class,
            static_cast<int>(std::max_element(p[0].probs.begin(), p[0].probs.end()) - p[0].probs.begin()));
}

// eval, predict and export read a checkpoint's weights, never its optimizer state: they verify what they read (a
// damaged model file is refused, naming it) and not the optimizer's file, which --resume still verifies.
TEST(Use, LoadingWeightsVerifiesTheFilesItReadsAndOnlyThose) {
  auto copy_with_damaged = [](const std::string& name, const char* file) {
    const fs::path run = fx().tmp.path() / name;
    fs::remove_all(run);
    fs::copy(fx().result.run_dir, run, fs::copy_options::recursive);
    for (const auto& e : fs::directory_iterator(run / "checkpoints")) {  // every checkpoint: no fall-back
      if (!e.is_directory()) continue;
      std::vector<uint8_t> b = read_file((e.path() / file).string());
      b[b.size() - 1] ^= 1;
      write_file((e.path() / file).string(), b.data(), b.size());
    }
    return run.string();
  };
  const LoadedRun good = load_run(fx().result.run_dir, build_model, "latest");
  const std::string opt = copy_with_damaged("optimizer-damaged", "optimizer.safetensors");
  const LoadedRun r = load_run(opt, build_model, "latest");
  EXPECT_EQ(r.params, good.params);
  EXPECT_EQ(r.buffers, good.buffers);
  EXPECT_EQ(r.checkpoint_note, "");
  const std::string image = fx().tmp.str() + "/val/a/0.jpg";
  const test::RunResult pr = test::run_stoke("predict --run " + opt + " " + image);
  EXPECT_EQ(pr.exit_code, 0) << pr.output;
  EXPECT_EQ(pr.output.find("damaged"), std::string::npos) << pr.output;
  EXPECT_EQ(test::run_stoke("export --run " + opt + " -o " + fx().tmp.str() + "/from-damaged.safetensors").exit_code,
            0);
  EXPECT_EQ(find_checkpoint(opt), "") << "--resume reads the optimizer's state: it must verify it";

  const std::string model = copy_with_damaged("model-damaged", "model.safetensors");
  for (const std::string& path : {model, model + "/checkpoints/" + fs::path(good.checkpoint).filename().string()}) {
    try {
      load_run(path, build_model, "latest");
      ADD_FAILURE() << path << ": a damaged model.safetensors was loaded";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("model.safetensors"), std::string::npos) << e.what();
    }
  }
  const test::RunResult bad = test::run_stoke("predict --run " + model + " " + image);
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  EXPECT_NE(bad.output.find("model.safetensors differs from the manifest's record"), std::string::npos) << bad.output;
}

// load_run (eval, predict, export) reads each file of the checkpoint once: the manifest check and the load share them.
TEST(Use, LoadingARunReadsEachCheckpointFileOnce) {
  const fs::path run = fx().result.run_dir;
  const LoadedRun first = load_run(run.string(), build_model, "latest");
  const fs::path ck = first.checkpoint;
  uint64_t files = fs::file_size(run / "config.json");
  for (const char* f : {"manifest.txt", "state.json", "model.safetensors", "ema.safetensors"})
    if (fs::exists(ck / f)) files += fs::file_size(ck / f);
  const uint64_t before = read_file_total_bytes();
  const LoadedRun again = load_run(run.string(), build_model, "latest");
  EXPECT_EQ(read_file_total_bytes() - before, files) << "a file of " << ck << " read twice";
  EXPECT_EQ(again.params, first.params);
}

TEST(Use, ExportWritesPyTorchLayout) {
  LoadedRun r = load_run(fx().result.run_dir, build_model, "latest");
  const std::string out = fx().tmp.str() + "/model.safetensors";
  export_safetensors(r, out);
  st::File f = st::File::load(out);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.metadata().at("stoke_model"), "small-cnn");
  // Convolution: stored KRSC, exported OIHW.
  const ParamInfo* w = nullptr;
  for (const ParamInfo& p : r.graph.params())
    if (p.name == "features.2.conv.weight") w = &p;
  ASSERT_NE(w, nullptr);
  const int K = w->shape[0], R = w->shape[1], S = w->shape[2], C = w->shape[3];
  const auto* e = f.find("features.2.conv.weight");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->shape, (std::vector<int64_t>{K, C, R, S}));
  const auto* oihw = reinterpret_cast<const float*>(f.data(*e));
  for (int k : {0, K - 1})
    for (int c : {0, C - 1})
      for (int rr : {0, R - 1})
        for (int s : {0, S - 1})
          EXPECT_EQ(oihw[((k * C + c) * R + rr) * S + s],
                    r.params[static_cast<size_t>(w->offset + ((k * R + rr) * S + s) * C + c)]);
  // The classifier follows a 3x3 map: its columns go from stoke's (h, w, c) order to PyTorch's (c, h, w).
  const Node& fc = r.graph.nodes().back();
  const Shape3 in = r.graph.node(fc.inputs[0]).out;
  ASSERT_GT(in.h * in.w, 1);
  const auto* le = f.find("classifier.weight");
  ASSERT_NE(le, nullptr);
  const auto* lw = reinterpret_cast<const float*>(f.data(*le));
  const float* ours = r.params.data() + r.graph.params()[static_cast<size_t>(fc.weight)].offset;
  const int o = fc.out_features - 1, h = in.h - 1, x = 0, c = in.c - 1;
  EXPECT_EQ(lw[static_cast<int64_t>(o) * fc.in_features + (c * in.h + h) * in.w + x],
            ours[static_cast<int64_t>(o) * fc.in_features + (h * in.w + x) * in.c + c]);
  // Batch norms carry num_batches_tracked like a PyTorch state_dict.
  const auto* t = f.find("features.1.bn.num_batches_tracked");
  ASSERT_NE(t, nullptr);
  EXPECT_EQ(t->dtype, st::DType::I64);
  EXPECT_TRUE(t->shape.empty());
  int64_t steps;
  std::memcpy(&steps, f.data(*t), 8);
  EXPECT_EQ(steps, fx().result.steps);
}

// eval and predict run on the backend --device picks, as training does: where a GPU answers, the CUDA backend's
// evaluation gives the CPU backend's accuracy (fp32); where none does, --device cuda is a clear user error.
TEST(Use, EvalRunsOnTheChosenDevice) {
  const std::string run = fx().result.run_dir;
  const std::string base = "eval --run " + run + " --data " + fx().tmp.str() + "/val --device ";
  test::RunResult cpu = test::run_stoke(base + "cpu");
  ASSERT_EQ(cpu.exit_code, 0) << cpu.output;
  test::RunResult gpu = test::run_stoke(base + "cuda");
  if (gpu.exit_code == 0) {
    auto accuracy_line = [](const std::string& out) { return out.substr(out.find("accuracy"), 40); };
    EXPECT_EQ(accuracy_line(gpu.output), accuracy_line(cpu.output)) << gpu.output;
  } else {
    EXPECT_EQ(gpu.exit_code, 2) << gpu.output;
    EXPECT_NE(gpu.output.find("--device cuda"), std::string::npos) << gpu.output;
  }
  test::RunResult bad = test::run_stoke(base + "tpu");
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
}

TEST(Use, CliCommands) {
  const std::string run = fx().result.run_dir;
  test::RunResult ev = test::run_stoke("eval --run " + run + " --data " + fx().tmp.str() + "/val");
  EXPECT_EQ(ev.exit_code, 0) << ev.output;
  EXPECT_NE(ev.output.find("accuracy"), std::string::npos) << ev.output;
  test::RunResult pr = test::run_stoke("predict --run " + run + " " + fx().tmp.str() + "/val/b/2.jpg --top 3");
  EXPECT_EQ(pr.exit_code, 0) << pr.output;
  EXPECT_NE(pr.output.find("%"), std::string::npos) << pr.output;
  test::RunResult bad = test::run_stoke("predict --run " + run + " " + fx().tmp.str() + "/nope.jpg");
  EXPECT_EQ(bad.exit_code, 2) << bad.output;
  // --json: one object per image, full-precision probabilities that sum to 1, errors as objects too.
  test::RunResult js = test::run_stoke("predict --json --run " + run + " " + fx().tmp.str() + "/val/b/2.jpg " +
                                       fx().tmp.str() + "/nope.jpg");
  EXPECT_EQ(js.exit_code, 2) << js.output;
  std::istringstream lines(js.output);
  std::string line;
  int objects = 0;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] != '{') continue;
    const nlohmann::json j = nlohmann::json::parse(line);
    ++objects;
    if (j.contains("error")) {
      EXPECT_NE(j["path"].get<std::string>().find("nope.jpg"), std::string::npos);
      continue;
    }
    double sum = 0, best = 0;
    for (const auto& [name, pv] : j["probabilities"].items()) {
      sum += pv.get<double>();
      best = std::max(best, pv.get<double>());
    }
    EXPECT_NEAR(sum, 1.0, 1e-5);
    EXPECT_DOUBLE_EQ(j["probability"].get<double>(), best);
    EXPECT_EQ(j["probabilities"][j["class"].get<std::string>()].get<double>(), best);
  }
  EXPECT_EQ(objects, 2) << js.output;
  test::RunResult ex = test::run_stoke("export --run " + run + " -o " + fx().tmp.str() + "/m.safetensors");
  EXPECT_EQ(ex.exit_code, 0) << ex.output;
  test::RunResult none = test::run_stoke("eval --run " + fx().tmp.str() + "/nowhere --data " + fx().tmp.str() + "/val");
  EXPECT_EQ(none.exit_code, 2) << none.output;
  // A folder whose classes differ from the model's is named by class: "c" missing, "x" extra.
  test::write_tiny_folder(fx().tmp.path() / "other", {"a", "b", "x"}, 2);
  test::RunResult other = test::run_stoke("eval --run " + run + " --data " + fx().tmp.str() + "/other");
  EXPECT_EQ(other.exit_code, 2) << other.output;
  EXPECT_NE(other.output.find("/other: c; extra in "), std::string::npos) << other.output;
  EXPECT_NE(other.output.find("/other: x"), std::string::npos) << other.output;
}
