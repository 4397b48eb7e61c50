// Durable writes, the safetensors format, and checkpoints: round trips, validation, damage and full disks.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <thread>

#include "base/error.h"
#include "base/fs.h"
#include "engine/checkpoint.h"
#include "engine/graph.h"
#include "engine/safetensors.h"
#include "models/models.h"
#include "tests/test_util.h"

using namespace stoke;
namespace st = stoke::safetensors;
namespace fs = std::filesystem;
using stoke::test::TempDir;

namespace {
void spit(const fs::path& p, const std::string& s) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f << s;
}
}  // namespace

TEST(AtomicWrite, ReplacesContentAndLeavesNoTemporary) {
  TempDir tmp("atomic");
  const std::string p = (tmp.path() / "f.txt").string();
  atomic_write_file(p, "first");
  atomic_write_file(p, "second");
  EXPECT_EQ(test::file_bytes(p), "second");
  EXPECT_FALSE(fs::exists(p + ".tmp"));
}

// A link planted (or left) at the temporary's name is replaced, not written through: its target keeps its bytes.
TEST(AtomicWrite, ALinkAtTheTemporaryNameIsNotWrittenThrough) {
  TempDir tmp("atomic-link");
  const fs::path victim = tmp.path() / "victim.txt";
  spit(victim, "keep me");
  const std::string p = (tmp.path() / "f.txt").string();
  fs::create_symlink(victim, p + ".tmp");
  atomic_write_file(p, "new");
  EXPECT_EQ(test::file_bytes(p), "new");
  EXPECT_EQ(test::file_bytes(victim), "keep me");
  EXPECT_FALSE(fs::exists(fs::symlink_status(p + ".tmp")));
}

TEST(AtomicWrite, AFullDiskLeavesThePreviousFileIntact) {
  TempDir tmp("atomic-full");
  const std::string p = (tmp.path() / "f.bin").string();
  atomic_write_file(p, std::string(1000, 'a'));
  inject_write_failure_after(100);
  try {
    atomic_write_file(p, std::string(1000, 'b'));
    ADD_FAILURE() << "the write should have failed";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("No space left on device"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(p), std::string::npos) << e.what();
  }
  inject_write_failure_after(-1);
  EXPECT_EQ(test::file_bytes(p), std::string(1000, 'a'));
  EXPECT_FALSE(fs::exists(p + ".tmp"));
}

// A run folder's lock: a second holder is refused at once and told who holds it; released, it can be taken again.
TEST(FileLock, TryLockIsRefusedWhileHeldAndNamesTheHolder) {
  TempDir tmp("try-lock");
  const std::string p = (tmp.path() / ".lock").string();
  std::string holder;
  std::unique_ptr<FileLock> first = FileLock::try_lock(p, "pid 111, stoke train", &holder);
  ASSERT_NE(first, nullptr);
  EXPECT_EQ(FileLock::try_lock(p, "pid 222, stoke train", &holder), nullptr) << "two holders at once";
  EXPECT_EQ(holder, "pid 111, stoke train");
  first.reset();
  std::unique_ptr<FileLock> second = FileLock::try_lock(p, "pid 222, stoke train", &holder);
  ASSERT_NE(second, nullptr) << "released with its holder";
  EXPECT_EQ(test::file_bytes(p), "pid 222, stoke train\n");
}

// The default run folder holds the time to the second: two runs started together must still get two folders.
TEST(UniqueDirectory, SameNameAtOnceGivesDistinctFolders) {
  TempDir tmp("unique-dir");
  const std::string stem = (tmp.path() / "runs" / "small-cnn-20240101-120000").string();
  EXPECT_EQ(create_unique_directory(stem), stem) << "the parent folder is created as needed";
  EXPECT_EQ(create_unique_directory(stem), stem + "-2");
  EXPECT_TRUE(fs::is_directory(stem + "-2"));
  // Eight threads claiming the same name at the same moment: eight different folders, none handed out twice.
  std::vector<std::string> got(8);
  std::vector<std::thread> threads;
  for (size_t i = 0; i < got.size(); ++i) threads.emplace_back([&, i] { got[i] = create_unique_directory(stem); });
  for (std::thread& t : threads) t.join();
  const std::set<std::string> distinct(got.begin(), got.end());
  EXPECT_EQ(distinct.size(), got.size());
  for (const std::string& g : got) {
    EXPECT_TRUE(fs::is_directory(g)) << g;
    EXPECT_NE(g, stem);
    EXPECT_NE(g, stem + "-2");
  }
  spit(tmp.path() / "file", "x");  // a file where the parent folder should be: a user error naming it
  EXPECT_THROW(create_unique_directory((tmp.path() / "file" / "run").string()), UserError);
}

TEST(Safetensors, SerializesExactlyAsTheSpecificationSays) {
  const float v[2] = {1.f, 2.f};
  std::vector<uint8_t> b = st::serialize({{"a", st::DType::F32, {2}, v}}, {});
  const std::string json = R"({"a":{"data_offsets":[0,8],"dtype":"F32","shape":[2]}})";
  size_t padded = (json.size() + 7) / 8 * 8;
  ASSERT_EQ(b.size(), 8 + padded + 8);
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n |= static_cast<uint64_t>(b[static_cast<size_t>(i)]) << (8 * i);  // little-endian length
  EXPECT_EQ(n, padded);
  EXPECT_EQ(std::string(b.begin() + 8, b.begin() + 8 + static_cast<long>(json.size())), json);
  for (size_t i = 8 + json.size(); i < 8 + padded; ++i) EXPECT_EQ(b[i], ' ');
  float back[2];
  std::memcpy(back, b.data() + 8 + padded, 8);
  EXPECT_EQ(back[0], 1.f);
  EXPECT_EQ(back[1], 2.f);
}

TEST(Safetensors, RoundTripWithMetadataAndDtypes) {
  const std::vector<float> w = {1, -2, 3.5f, 4, 5, 6};
  const std::vector<int64_t> idx = {7, -8};
  const std::vector<uint16_t> half = {0x3c00, 0xc000, 0x7bff};
  std::vector<uint8_t> b = st::serialize({{"layer.weight", st::DType::F32, {2, 3}, w.data()},
                                          {"ids", st::DType::I64, {2}, idx.data()},
                                          {"h", st::DType::F16, {3}, half.data()},
                                          {"empty", st::DType::F32, {0, 4}, nullptr}},
                                         {{"format", "pt"}});
  st::File f = st::File::parse(b, "mem");
  ASSERT_EQ(f.entries().size(), 4u);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  const auto* e = f.find("layer.weight");
  ASSERT_NE(e, nullptr);
  EXPECT_EQ(e->shape, (std::vector<int64_t>{2, 3}));
  EXPECT_EQ(std::memcmp(f.data(*e), w.data(), 24), 0);
  EXPECT_EQ(std::memcmp(f.data(*f.find("ids")), idx.data(), 16), 0);
  EXPECT_EQ(f.find("h")->dtype, st::DType::F16);
  EXPECT_EQ(f.find("empty")->end - f.find("empty")->begin, 0u);
  EXPECT_EQ(f.find("missing"), nullptr);
}

TEST(Safetensors, RejectsEveryKindOfDamage) {
  const float v[4] = {1, 2, 3, 4};
  const std::vector<uint8_t> good =
      st::serialize({{"a", st::DType::F32, {2}, v}, {"b", st::DType::F32, {2}, v + 2}}, {});
  auto header_with = [](const std::string& json, size_t data_bytes) {
    std::vector<uint8_t> b;
    b.reserve(8 + json.size() + data_bytes);
    for (int i = 0; i < 8; ++i) b.push_back(static_cast<uint8_t>(json.size() >> (8 * i)));
    for (char c : json) b.push_back(static_cast<uint8_t>(c));
    b.resize(b.size() + data_bytes, 0);
    return b;
  };
  auto expect_bad = [](std::vector<uint8_t> b, const std::string& needle) {
    try {
      st::File::parse(std::move(b), "damaged.safetensors");
      ADD_FAILURE() << "accepted; expected: " << needle;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("damaged.safetensors"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_bad({1, 2, 3}, "shorter");
  expect_bad(std::vector<uint8_t>(good.begin(), good.begin() + 20), "exceeds the file");
  expect_bad(std::vector<uint8_t>(good.begin(), good.end() - 4), "bytes");  // truncated data
  expect_bad(header_with("{not json", 0), "not JSON");
  expect_bad(header_with(R"({"a":{"dtype":"F99","shape":[1],"data_offsets":[0,4]}})", 4), "dtype");
  expect_bad(header_with(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", 4), "need 8");
  expect_bad(header_with(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,8]}})", 4), "outside");
  expect_bad(header_with(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", 8), "hole");
  expect_bad(
      header_with(
          R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
          8),
      "overlap");
  expect_bad(header_with(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", 4), "dimension");
  expect_bad(header_with(R"({"a":{"dtype":"F32","shape":[1]}})", 4), "lacks");
  expect_bad(header_with(R"({"__metadata__":{"k":1}})", 0), "metadata");
}

namespace {
CheckpointData sample_data(const Graph& g, float base) {
  CheckpointData d;
  d.params.resize(static_cast<size_t>(g.num_params()));
  d.buffers.resize(static_cast<size_t>(g.num_buffers()));
  for (size_t i = 0; i < d.params.size(); ++i) d.params[i] = base + static_cast<float>(i) * 1e-3f;
  for (size_t i = 0; i < d.buffers.size(); ++i) d.buffers[i] = -base - static_cast<float>(i);
  d.optimizer_state.assign(d.params.size(), base * 2);
  d.state = {{"epoch", 1}, {"cursor", 7}, {"step", 42}};
  return d;
}
}  // namespace

TEST(Checkpoint, RoundTripAndPointers) {
  TempDir tmp("ckpt");
  Graph g = small_cnn({28, 28, 1}, 10);
  CheckpointData d = sample_data(g, 0.5f);
  const std::string dir = save_checkpoint(tmp.str(), "step-00000042", g, "sgd", d, true, 3);
  EXPECT_EQ(find_checkpoint(tmp.str()), dir);
  EXPECT_EQ(find_checkpoint(tmp.str(), "best"), dir);
  CheckpointData back = load_checkpoint(dir, g, "sgd");
  EXPECT_EQ(back.params, d.params);
  EXPECT_EQ(back.buffers, d.buffers);
  EXPECT_EQ(back.optimizer_state, d.optimizer_state);
  EXPECT_EQ(back.state["cursor"], 7);
  // The weights file is plain safetensors with the graph's names.
  st::File f = st::File::load(dir + "/model.safetensors");
  EXPECT_NE(f.find("features.1.conv.weight"), nullptr);
  EXPECT_NE(f.find("features.1.bn.running_var"), nullptr);
}

TEST(Checkpoint, KeepsTheNewestAndTheBest) {
  TempDir tmp("ckpt-prune");
  Graph g = small_cnn({28, 28, 1}, 10);
  for (int s = 1; s <= 6; ++s) {
    char name[32];
    std::snprintf(name, sizeof name, "step-%08d", s);
    save_checkpoint(tmp.str(), name, g, "sgd", sample_data(g, static_cast<float>(s)), s == 2, 2);
  }
  std::vector<std::string> left;
  for (const auto& e : fs::directory_iterator(tmp.path() / "checkpoints"))
    if (e.is_directory()) left.push_back(e.path().filename().string());
  std::sort(left.begin(), left.end());
  EXPECT_EQ(left, (std::vector<std::string>{"step-00000002", "step-00000005", "step-00000006"}));
  EXPECT_EQ(fs::path(find_checkpoint(tmp.str(), "best")).filename(), "step-00000002");
}

TEST(Checkpoint, RefusesAnotherModelWithAClearMessage) {
  TempDir tmp("ckpt-other");
  Graph g = small_cnn({28, 28, 1}, 10);
  const std::string dir = save_checkpoint(tmp.str(), "step-1", g, "sgd", sample_data(g, 1), false, 3);
  Graph wider = small_cnn({28, 28, 1}, 10, 32);
  try {
    load_checkpoint(dir, wider, "sgd");
    ADD_FAILURE() << "loaded a checkpoint of another model";
  } catch (const UserError& e) {
    EXPECT_NE(std::string(e.what()).find("another model"), std::string::npos) << e.what();
  }
  Graph other_classes = small_cnn({28, 28, 1}, 7);
  EXPECT_THROW(load_checkpoint(dir, other_classes, "sgd"), UserError);
  EXPECT_THROW(load_checkpoint(dir, g, "adamw"), UserError);
}

TEST(Checkpoint, DetectsDamage) {
  TempDir tmp("ckpt-damage");
  Graph g = small_cnn({28, 28, 1}, 10);
  const std::string dir = save_checkpoint(tmp.str(), "step-1", g, "sgd", sample_data(g, 1), false, 3);
  std::string bytes = test::file_bytes(dir + "/model.safetensors");
  bytes[bytes.size() / 2] ^= 0x40;  // one flipped bit in the weights
  spit(dir + "/model.safetensors", bytes);
  try {
    load_checkpoint(dir, g, "sgd");
    ADD_FAILURE() << "loaded a damaged checkpoint";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("damaged"), std::string::npos) << e.what();
  }
  fs::remove(dir + "/optimizer.safetensors");
  EXPECT_THROW(load_checkpoint(dir, g, "sgd"), Error);
  spit(dir + "/state.json", "{\"files\": ");
  EXPECT_THROW(load_checkpoint(dir, g, "sgd"), Error);
}

// One changed digit in state.json (the step 374 -> 375) is found: the manifest covers every file and itself.
TEST(Checkpoint, TheManifestFindsAChangedDigitInStateJson) {
  TempDir tmp("ckpt-manifest");
  Graph g = small_cnn({28, 28, 1}, 10);
  CheckpointData d = sample_data(g, 1);
  d.state = {{"step", 374}};
  const std::string dir = save_checkpoint(tmp.str(), "step-00000374", g, "sgd", d, false, 3);
  EXPECT_EQ(load_checkpoint(dir, g, "sgd").state["step"], 374);
  std::string text = test::file_bytes(dir + "/state.json");
  text.replace(text.find("374"), 3, "375");
  spit(dir + "/state.json", text);
  try {
    load_checkpoint(dir, g, "sgd");
    ADD_FAILURE() << "loaded a checkpoint whose state.json was changed";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("state.json differs from the manifest"), std::string::npos) << e.what();
  }
  // And the manifest itself, made to agree with the change.
  std::string manifest = test::file_bytes(dir + "/manifest.txt");
  spit(dir + "/manifest.txt", manifest.replace(0, 1, manifest.substr(0, 1) == "1" ? "2" : "1"));
  EXPECT_THROW(load_checkpoint(dir, g, "sgd"), Error);
}

// A damaged `latest` (empty, or naming a missing folder) or a damaged newest checkpoint: the newest intact one is
// used and the note says why — a run never starts again while an intact checkpoint exists.
TEST(Checkpoint, ADamagedLatestFallsBackToTheNewestIntactCheckpoint) {
  TempDir tmp("ckpt-fallback");
  Graph g = small_cnn({28, 28, 1}, 10);
  for (int s = 1; s <= 3; ++s)
    save_checkpoint(tmp.str(), "step-0000000" + std::to_string(s), g, "sgd", sample_data(g, static_cast<float>(s)),
                    false, 5);
  const fs::path ck = tmp.path() / "checkpoints";
  std::string note;
  EXPECT_EQ(fs::path(find_checkpoint(tmp.str(), "latest", &note)).filename(), "step-00000003");
  EXPECT_EQ(note, "");
  spit(ck / "latest", "");
  EXPECT_EQ(fs::path(find_checkpoint(tmp.str(), "latest", &note)).filename(), "step-00000003");
  EXPECT_NE(note.find("checkpoints/latest is empty: using step-00000003"), std::string::npos) << note;
  spit(ck / "latest", "step-00000009\n");
  EXPECT_EQ(fs::path(find_checkpoint(tmp.str(), "latest", &note)).filename(), "step-00000003");
  EXPECT_NE(note.find("names step-00000009, which is missing"), std::string::npos) << note;
  spit(ck / "latest", "step-00000003\n");
  std::string bytes = test::file_bytes(ck / "step-00000003" / "optimizer.safetensors");
  bytes[bytes.size() - 3] ^= 0x01;
  spit(ck / "step-00000003" / "optimizer.safetensors", bytes);
  const std::string found = find_checkpoint(tmp.str(), "latest", &note);
  EXPECT_EQ(fs::path(found).filename(), "step-00000002");
  EXPECT_NE(note.find("step-00000003 is damaged (optimizer.safetensors differs"), std::string::npos) << note;
  EXPECT_EQ(load_checkpoint(found, g, "sgd").params, sample_data(g, 2).params);
  fs::remove_all(ck / "step-00000002");
  fs::remove_all(ck / "step-00000001");
  EXPECT_EQ(find_checkpoint(tmp.str(), "latest", &note), "");
  EXPECT_NE(note.find("no other checkpoint is intact"), std::string::npos) << note;
  EXPECT_EQ(find_checkpoint(tmp.str(), "best", &note), "") << "no best chosen: nothing to fall back for";
}

TEST(Checkpoint, AFullDiskKeepsThePreviousCheckpointLoadable) {
  TempDir tmp("ckpt-full");
  Graph g = small_cnn({28, 28, 1}, 10);
  CheckpointData first = sample_data(g, 1);
  const std::string dir1 = save_checkpoint(tmp.str(), "step-00000001", g, "sgd", first, false, 3);
  for (int64_t budget : {int64_t{0}, int64_t{1000}, int64_t{100000}}) {
    inject_write_failure_after(budget);
    EXPECT_THROW(save_checkpoint(tmp.str(), "step-00000002", g, "sgd", sample_data(g, 2), false, 3), Error);
    inject_write_failure_after(-1);
    EXPECT_EQ(find_checkpoint(tmp.str()), dir1) << "budget " << budget;
    EXPECT_EQ(load_checkpoint(dir1, g, "sgd").params, first.params);
    EXPECT_FALSE(fs::exists(tmp.path() / "checkpoints" / "step-00000002"));
  }
}

// eval, predict and export read each checkpoint file once: the manifest check hands the loader the bytes it hashed
// (found then loaded, as load_run does, or loaded alone), and a changed bit is still refused, naming the file.
TEST(Checkpoint, TheWeightsAreReadOnceAndCheckedBeforeUse) {
  TempDir tmp("ckpt-once");
  Graph g = small_cnn({28, 28, 1}, 10);
  const CheckpointData d = sample_data(g, 1);
  const fs::path dir = save_checkpoint(tmp.str(), "step-00000001", g, "sgd", d, false, 3);
  const uint64_t files = fs::file_size(dir / "model.safetensors") + fs::file_size(dir / "state.json") +
                         fs::file_size(dir / "manifest.txt");
  uint64_t before = read_file_total_bytes();
  CheckpointBytes verified;
  const std::string found = find_checkpoint(tmp.str(), "latest", nullptr, CheckpointUse::weights, &verified);
  ASSERT_EQ(found, dir.string());
  EXPECT_EQ(load_checkpoint_weights(found, g, true, &verified).params, d.params);
  EXPECT_EQ(read_file_total_bytes() - before, files) << "a checkpoint file read twice";
  before = read_file_total_bytes();
  EXPECT_EQ(load_checkpoint_weights(dir.string(), g, true).buffers, d.buffers);
  EXPECT_EQ(read_file_total_bytes() - before, files) << "a checkpoint file read twice";
  std::string bytes = test::file_bytes(dir / "model.safetensors");
  bytes[bytes.size() - 5] ^= 0x01;
  spit(dir / "model.safetensors", bytes);
  try {
    load_checkpoint_weights(dir.string(), g, true);
    ADD_FAILURE() << "loaded a damaged checkpoint";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("step-00000001 is damaged: model.safetensors differs"), std::string::npos)
        << e.what();
  }
  EXPECT_EQ(find_checkpoint(tmp.str(), "latest", nullptr, CheckpointUse::weights, &verified), "");
}
