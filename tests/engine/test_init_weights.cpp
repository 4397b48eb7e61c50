// --init's import (engine/init_weights.h): export's round trip bit for bit, PyTorch's and stoke's layouts, half
// precision, the aliases, the adapted classifier and stem, and the strict and partial answers to a file that differs.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <functional>

#include "base/error.h"
#include "engine/checkpoint.h"
#include "engine/inference.h"
#include "engine/init_weights.h"
#include "engine/run_plan.h"
#include "engine/safetensors.h"
#include "models/models.h"
#include "tests/test_util.h"

using namespace stoke;
namespace st = stoke::safetensors;
namespace fs = std::filesystem;
using stoke::test::TempDir;

namespace {

// A model with its seed's weights and running statistics that are neither 0 nor 1, as a trained one has.
LoadedRun trained(const Graph& g, uint64_t seed) {
  LoadedRun r;
  r.graph = g;
  r.model = g.name();
  r.input = g.input_shape();
  for (int k = 0; k < g.node(g.output()).out.c; ++k) r.classes.push_back(str("c", k));
  r.mean.assign(static_cast<size_t>(r.input.c), 0.5f);
  r.stdev.assign(static_cast<size_t>(r.input.c), 0.25f);
  r.params.resize(static_cast<size_t>(g.num_params()));
  r.buffers.resize(static_cast<size_t>(g.num_buffers()));
  g.initialize(r.params.data(), r.buffers.data(), seed);
  for (size_t i = 0; i < r.buffers.size(); ++i) r.buffers[i] = 0.5f + 0.01f * static_cast<float>(i % 13);
  return r;
}

std::string exported(const LoadedRun& r, const TempDir& tmp, const std::string& name = "w.safetensors") {
  const std::string path = (tmp.path() / name).string();
  export_safetensors(r, path);
  return path;
}

InitResult import_into(const Graph& g, const std::string& path, std::vector<float>& params, std::vector<float>& buffers,
                       InitOptions o = {}) {
  return import_weights(g, st::File::load(path), o, params, buffers);
}

bool bit_equal(const std::vector<float>& a, const std::vector<float>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Rewrites a file's tensors through `edit` (which may rename, drop, add or re-type them) into another file.
std::string rewritten(const std::string& path, const TempDir& tmp,
                      const std::function<void(std::vector<st::Tensor>&)>& edit) {
  const st::File f = st::File::load(path);
  std::vector<st::Tensor> ts;
  for (const auto& [name, e] : f.entries()) ts.push_back({name, e.dtype, e.shape, f.data(e)});
  edit(ts);
  const std::string out = (tmp.path() / "edited.safetensors").string();
  st::save(out, ts, {{"format", "pt"}});
  return out;
}

const float* param(const Graph& g, const std::vector<float>& p, const std::string& name) {
  return p.data() + g.params()[static_cast<size_t>(g.find_param(name))].offset;
}

}  // namespace

// PyTorch's layout back to stoke's: convs OIHW -> KRSC, the small CNN's head columns (c, h, w) -> (h, w, c), BN
// weights, biases and running statistics; the graph's own seed is overwritten everywhere.
TEST(InitWeights, ExportThenImportIsBitEqual) {
  TempDir tmp("init-roundtrip");
  for (const Graph& g : {small_cnn({28, 28, 1}, 10), resnet(18, {32, 32, 3}, 6)}) {
    const LoadedRun r = trained(g, 7);
    std::vector<float> params, buffers;
    const InitResult res = import_into(g, exported(r, tmp), params, buffers, InitOptions{false, 99});
    EXPECT_TRUE(bit_equal(params, r.params)) << g.name();
    EXPECT_TRUE(bit_equal(buffers, r.buffers)) << g.name();
    EXPECT_EQ(res.loaded, static_cast<int>(g.params().size() + g.buffers().size()));
    EXPECT_TRUE(res.notes.empty() && res.unused.empty() && res.not_loaded.empty());
  }
}

// A stoke checkpoint (its own KRSC layout, format "stoke-checkpoint") named by its run folder.
TEST(InitWeights, AStokeRunFolderGivesItsNewestCheckpoint) {
  TempDir tmp("init-run");
  const Graph g = small_cnn({28, 28, 1}, 10);
  const LoadedRun r = trained(g, 3);
  CheckpointData d;
  d.params = r.params;
  d.buffers = r.buffers;
  d.optimizer_state.assign(static_cast<size_t>(g.num_params()), 0.f);
  d.state = {{"step", 1}};
  save_checkpoint(tmp.path().string(), "step-00000001", g, "sgd", d, false, 3);
  atomic_write_file((tmp.path() / "config.json").string(), R"({"normalize_mean": [0.25], "normalize_std": [0.5]})");
  const InitSource src = resolve_init_source(tmp.path().string());
  EXPECT_TRUE(src.stoke_run);
  EXPECT_EQ(src.mean, std::vector<float>{0.25f});
  EXPECT_EQ(src.stdev, std::vector<float>{0.5f});
  std::vector<float> params, buffers;
  import_into(g, src.file, params, buffers);
  EXPECT_TRUE(bit_equal(params, r.params));
  EXPECT_TRUE(bit_equal(buffers, r.buffers));
  EXPECT_THROW(resolve_init_source((tmp.path() / "nothing").string()), UserError);
}

// F16 and BF16 tensors: values both formats hold exactly come back exactly.
TEST(InitWeights, HalfAndBfloat16TensorsAreWidened) {
  TempDir tmp("init-half");
  const Graph g = small_cnn({28, 28, 1}, 10);
  LoadedRun r = trained(g, 1);
  for (size_t i = 0; i < r.params.size(); ++i) r.params[i] = static_cast<float>(static_cast<int>(i % 41) - 20) / 64.f;
  for (size_t i = 0; i < r.buffers.size(); ++i) r.buffers[i] = 0.5f + static_cast<float>(i % 13) / 64.f;
  const std::string path = exported(r, tmp);
  for (st::DType dt : {st::DType::F16, st::DType::BF16}) {
    std::vector<std::vector<uint16_t>> store;
    store.reserve(64);
    const std::string half = rewritten(path, tmp, [&](std::vector<st::Tensor>& ts) {
      for (st::Tensor& t : ts) {
        if (t.dtype != st::DType::F32) continue;
        int64_t n = 1;
        for (int64_t d : t.shape) n *= d;
        std::vector<uint16_t> h(static_cast<size_t>(n));
        for (int64_t i = 0; i < n; ++i) {
          uint32_t b;
          std::memcpy(&b, static_cast<const float*>(t.data) + i, 4);
          const uint32_t exp = (b >> 23) & 0xff;  // every value here is 0 or a normal number in both formats
          h[static_cast<size_t>(i)] =
              dt == st::DType::BF16 ? static_cast<uint16_t>(b >> 16)
              : exp == 0            ? static_cast<uint16_t>((b >> 16) & 0x8000)
                         : static_cast<uint16_t>(((b >> 16) & 0x8000) | ((exp - 112) << 10) | ((b >> 13) & 0x3ff));
        }
        store.push_back(std::move(h));
        t.dtype = dt;
        t.data = store.back().data();
      }
    });
    std::vector<float> params, buffers;
    import_into(g, half, params, buffers);
    EXPECT_TRUE(bit_equal(params, r.params)) << st::dtype_name(dt);
    EXPECT_TRUE(bit_equal(buffers, r.buffers)) << st::dtype_name(dt);
  }
}

// Strict: a wrong shape, a missing and an extra tensor are each one line naming the tensor and both shapes.
TEST(InitWeights, StrictRefusesAFileThatDiffersNamingEachTensor) {
  TempDir tmp("init-strict");
  const Graph g = small_cnn({28, 28, 1}, 10);
  const std::string path = exported(trained(g, 2), tmp);
  const std::vector<float> twenty(20 * 16, 0.f);
  const std::string bad = rewritten(path, tmp, [&](std::vector<st::Tensor>& ts) {
    std::erase_if(
        ts, [](const st::Tensor& t) { return t.name == "features.1.bn.bias" || t.name == "features.1.conv.weight"; });
    ts.push_back({"features.1.conv.weight", st::DType::F32, {20, 1, 3, 3}, twenty.data()});
    ts.push_back({"head.extra", st::DType::F32, {4}, twenty.data()});
  });
  std::vector<float> params, buffers;
  try {
    import_into(g, bad, params, buffers);
    FAIL() << "a file that differs was accepted";
  } catch (const UserError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("(3 tensors)"), std::string::npos) << m;
    EXPECT_NE(m.find("features.1.conv.weight: expected [16, 1, 3, 3], found [20, 1, 3, 3]"), std::string::npos) << m;
    EXPECT_NE(m.find("features.1.bn.bias: missing (expected [16])"), std::string::npos) << m;
    EXPECT_NE(m.find("head.extra: not in the model (found [4])"), std::string::npos) << m;
  }
  // More than eight: eight lines, then how many more.
  const std::string empty = rewritten(path, tmp, [](std::vector<st::Tensor>& ts) { ts.clear(); });
  try {
    import_into(g, empty, params, buffers);
    FAIL() << "an empty file was accepted";
  } catch (const UserError& e) {
    const size_t n = g.params().size() + g.buffers().size();
    EXPECT_NE(std::string(e.what()).find(str("... and ", n - 8, " more")), std::string::npos) << e.what();
  }
}

// Partial: what fits is loaded, the rest keeps the seed's values and is listed both ways.
TEST(InitWeights, PartialLoadsWhatFitsAndListsTheRest) {
  TempDir tmp("init-partial");
  const Graph g = small_cnn({28, 28, 1}, 10);
  const LoadedRun r = trained(g, 2);
  const std::vector<float> four(4, 1.f);
  const std::string bad = rewritten(exported(r, tmp), tmp, [&](std::vector<st::Tensor>& ts) {
    std::erase_if(ts, [](const st::Tensor& t) { return t.name == "features.2.conv.weight"; });
    ts.push_back({"head.extra", st::DType::F32, {4}, four.data()});
  });
  std::vector<float> params, buffers, fresh(static_cast<size_t>(g.num_params())),
      fresh_b(static_cast<size_t>(g.num_buffers()));
  const InitResult res = import_into(g, bad, params, buffers, InitOptions{true, 11});
  ASSERT_EQ(res.not_loaded.size(), 1u);
  EXPECT_EQ(res.not_loaded[0], "features.2.conv.weight: missing (expected [32, 16, 3, 3])");
  ASSERT_EQ(res.unused.size(), 1u);
  EXPECT_EQ(res.unused[0], "head.extra: not in the model (found [4])");
  g.initialize(fresh.data(), fresh_b.data(), 11);
  const ParamInfo& w2 = g.params()[static_cast<size_t>(g.find_param("features.2.conv.weight"))];
  for (const ParamInfo& p : g.params()) {
    const std::vector<float>& want = &p == &w2 ? fresh : r.params;
    EXPECT_EQ(0, std::memcmp(params.data() + p.offset, want.data() + p.offset, static_cast<size_t>(p.size) * 4))
        << p.name;
  }
  EXPECT_TRUE(bit_equal(buffers, r.buffers));
}

// Another class count: the classifier is initialised as Graph::initialize would with the run's seed, and said.
TEST(InitWeights, AnotherClassCountGivesAFreshClassifier) {
  TempDir tmp("init-head");
  const LoadedRun r = trained(resnet(18, {32, 32, 3}, 10), 4);
  const Graph g = resnet(18, {32, 32, 3}, 6);
  std::vector<float> params, buffers, fresh(static_cast<size_t>(g.num_params())),
      fresh_b(static_cast<size_t>(g.num_buffers()));
  const InitResult res = import_into(g, exported(r, tmp), params, buffers, InitOptions{false, 5});
  g.initialize(fresh.data(), fresh_b.data(), 5);
  ASSERT_EQ(res.notes.size(), 1u);
  EXPECT_NE(res.notes[0].find("classifier fc: 10 classes in "), std::string::npos) << res.notes[0];
  EXPECT_NE(res.notes[0].find(", 6 here: initialised afresh (seed 5)"), std::string::npos) << res.notes[0];
  for (const ParamInfo& p : g.params()) {
    const bool head = p.name.rfind("fc.", 0) == 0;
    const float* want = head ? fresh.data() + p.offset : param(r.graph, r.params, p.name);
    EXPECT_EQ(0, std::memcmp(params.data() + p.offset, want, static_cast<size_t>(p.size) * 4)) << p.name;
  }
  EXPECT_TRUE(bit_equal(buffers, r.buffers));
}

// Colour weights for grey data: the first convolution's filters summed over their 3 input channels.
TEST(InitWeights, ColourStemOnGreyDataIsSummedOverChannels) {
  TempDir tmp("init-stem");
  const LoadedRun r = trained(small_cnn({28, 28, 3}, 10), 6);
  const Graph g = small_cnn({28, 28, 1}, 10);
  std::vector<float> params, buffers;
  const InitResult res = import_into(g, exported(r, tmp), params, buffers);
  ASSERT_EQ(res.notes.size(), 1u);
  EXPECT_NE(res.notes[0].find("first convolution features.1.conv.weight: [16, 3, 3, 3] in "), std::string::npos)
      << res.notes[0];
  const float* src = param(r.graph, r.params, "features.1.conv.weight");  // K R S 3
  const float* dst = param(g, params, "features.1.conv.weight");          // K R S 1
  double worst = 0;
  for (int i = 0; i < 16 * 3 * 3; ++i) {
    const float want = src[3 * i] + src[3 * i + 1] + src[3 * i + 2];
    EXPECT_NEAR(dst[i], want, 1e-6f) << i;
    worst = std::max(worst, static_cast<double>(std::fabs(dst[i] - src[3 * i])));
  }
  EXPECT_GT(worst, 1e-3);  // a sum, not the first channel copied
  EXPECT_EQ(0, std::memcmp(param(g, params, "features.2.conv.weight"),
                           param(r.graph, r.params, "features.2.conv.weight"), 32 * 16 * 9 * 4));
}

TEST(InitWeights, GreyStemForColourDataIsRefused) {
  TempDir tmp("init-stem-refused");
  const std::string path = exported(trained(small_cnn({28, 28, 1}, 10), 6), tmp);
  std::vector<float> params, buffers;
  for (bool partial : {false, true}) {
    try {
      import_into(small_cnn({28, 28, 3}, 10), path, params, buffers, InitOptions{partial, 0});
      FAIL() << "1-channel weights were accepted for 3-channel data";
    } catch (const UserError& e) {
      EXPECT_NE(
          std::string(e.what()).find("features.1.conv.weight takes 1-channel images, but the data here has 3 channels"),
          std::string::npos)
          << e.what();
    }
  }
}

// torchvision's and timm's DenseNet names (and torchvision's 2017 norm.1 style, and DataParallel's module.) for
// MONAI's; PyTorch's num_batches_tracked is read past.
TEST(InitWeights, TorchvisionDenseNetNamesAreAccepted) {
  TempDir tmp("init-densenet");
  const Graph g = densenet121({32, 32, 1}, 3);
  const LoadedRun r = trained(g, 8);
  int renamed = 0;
  const std::string tv = rewritten(exported(r, tmp), tmp, [&](std::vector<st::Tensor>& ts) {
    for (st::Tensor& t : ts) {
      std::string& n = t.name;
      if (const size_t at = n.find(".layers."); at != std::string::npos) n.erase(at, 7);
      if (n.rfind("class_layers.out.", 0) == 0) n = "classifier." + n.substr(17);
      if (n.rfind("features.denseblock1.denselayer2.norm1.", 0) == 0) n.replace(33, 5, "norm.1");
      if (n.rfind("features.norm5.", 0) == 0) n = "module." + n;
      renamed += n.find("layers") == std::string::npos && n.find("class_layers") == std::string::npos;
    }
  });
  ASSERT_GT(renamed, 0);
  EXPECT_NE(st::File::load(tv).find("features.denseblock1.denselayer2.norm.1.running_var"), nullptr);
  EXPECT_NE(st::File::load(tv).find("classifier.weight"), nullptr);
  std::vector<float> params, buffers;
  import_into(g, tv, params, buffers);
  EXPECT_TRUE(bit_equal(params, r.params));
  EXPECT_TRUE(bit_equal(buffers, r.buffers));
}

// --normalize: the named choices, one pair or one value per channel, 1-channel averages, and the spelling a stoke
// run's values are recorded in reading back exactly.
TEST(InitWeights, NormalizeValues) {
  std::vector<float> m, s;
  EXPECT_FALSE(fixed_normalization("data", 3, m, s));
  ASSERT_TRUE(fixed_normalization("imagenet", 3, m, s));
  EXPECT_EQ(m, (std::vector<float>{0.485f, 0.456f, 0.406f}));
  EXPECT_EQ(s, (std::vector<float>{0.229f, 0.224f, 0.225f}));
  ASSERT_TRUE(fixed_normalization("imagenet", 1, m, s));
  EXPECT_NEAR(m[0], 0.449f, 1e-7f);
  EXPECT_NEAR(s[0], 0.226f, 1e-7f);
  ASSERT_TRUE(fixed_normalization("none", 3, m, s));
  EXPECT_EQ(m, std::vector<float>(3, 0.f));
  EXPECT_EQ(s, std::vector<float>(3, 1.f));
  ASSERT_TRUE(fixed_normalization("0.5,0.25", 3, m, s));
  EXPECT_EQ(m, std::vector<float>(3, 0.5f));
  ASSERT_TRUE(fixed_normalization("0.1:0.2:0.3,1:2:4", 3, m, s));
  EXPECT_EQ(m, (std::vector<float>{0.1f, 0.2f, 0.3f}));
  EXPECT_EQ(s, (std::vector<float>{1.f, 2.f, 4.f}));
  for (const char* bad : {"0.5", "a,b", "0.1:0.2,1:2", "0.5,0", "0.5,0.25,1", "0.1:0.2,1"})
    EXPECT_THROW(fixed_normalization(bad, 3, m, s), UserError) << bad;
  const std::vector<float> mean = {0.123456789f, 0.5f, 1.f / 3.f}, stdev = {0.2f, 0.3f, 0.7f};
  ASSERT_TRUE(fixed_normalization(normalization_spec(mean, stdev, 3), 3, m, s));
  EXPECT_EQ(m, mean);
  EXPECT_EQ(s, stdev);
}
