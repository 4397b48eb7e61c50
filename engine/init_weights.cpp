// --init: a Graph's parameters and buffers from a safetensors file (engine/init_weights.h).
#include "engine/init_weights.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <map>
#include <nlohmann/json.hpp>
#include <regex>
#include <set>

#include "base/display_name.h"
#include "base/error.h"
#include "base/format.h"
#include "base/fs.h"
#include "base/json_util.h"
#include "engine/checkpoint.h"

namespace stoke {
namespace fs = std::filesystem;
namespace st = safetensors;
using json = nlohmann::json;

namespace {

using Dims = std::vector<int64_t>;

// How the file's order of a tensor maps to stoke's.
enum class Order { same, conv_kcrs, linear_chw };

struct Expected {
  std::string name;
  bool buffer = false;
  int index = -1;  // into Graph::params() or Graph::buffers()
  int node = -1;
  Dims dims;  // in the file's layout
  Order order = Order::same;
  Shape3 in;  // linear_chw: the spatial map the layer flattens
};

std::string dims_text(const Dims& d) {
  std::string s = "[";
  for (size_t i = 0; i < d.size(); ++i) s += str(i ? ", " : "", d[i]);
  return s + "]";
}

// Every tensor the graph holds, in graph order, with its shape as the file should hold it.
std::vector<Expected> expected_tensors(const Graph& g, bool torch) {
  std::vector<Expected> out;
  auto plain = [&](const std::vector<ParamInfo>& table, int idx, int node, bool buffer) {
    const ParamInfo& p = table[static_cast<size_t>(idx)];
    out.push_back({p.name, buffer, idx, node, Dims(p.shape.begin(), p.shape.end()), Order::same, {}});
  };
  for (int i = 0; i <= g.output(); ++i) {
    const Node& n = g.node(i);
    if (n.op == Op::conv) {
      const ParamInfo& w = g.params()[static_cast<size_t>(n.weight)];  // stored K R S C
      const Dims krsc(w.shape.begin(), w.shape.end());
      out.push_back({w.name,
                     false,
                     n.weight,
                     i,
                     torch ? Dims{krsc[0], krsc[3], krsc[1], krsc[2]} : krsc,
                     torch ? Order::conv_kcrs : Order::same,
                     {}});
      if (n.bias >= 0) plain(g.params(), n.bias, i, false);
    } else if (n.op == Op::linear) {
      const Shape3 in = g.node(n.inputs[0]).out;
      plain(g.params(), n.weight, i, false);
      if (torch && in.h * in.w > 1) {
        out.back().order = Order::linear_chw;
        out.back().in = in;
      }
      if (n.bias >= 0) plain(g.params(), n.bias, i, false);
    } else if (n.op == Op::batchnorm) {
      plain(g.params(), n.weight, i, false);
      plain(g.params(), n.bias, i, false);
      plain(g.buffers(), n.running_mean, i, true);
      plain(g.buffers(), n.running_var, i, true);
    }
  }
  return out;
}

float half_to_float(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const int exp = (h >> 10) & 0x1f;
  const uint32_t mant = h & 0x3ffu;
  float f;
  if (exp == 0) {
    f = std::ldexp(static_cast<float>(mant), -24);  // zero or subnormal
  } else if (exp == 31) {
    f = mant ? std::numeric_limits<float>::quiet_NaN() : std::numeric_limits<float>::infinity();
  } else {
    const uint32_t bits = (static_cast<uint32_t>(exp - 15 + 127) << 23) | (mant << 13);
    std::memcpy(&f, &bits, 4);
  }
  return sign ? -f : f;
}

// The tensor's values as floats, in the file's order (safetensors is little-endian, as every host stoke runs on).
std::vector<float> values(const st::File& file, const st::File::Entry& e) {
  const size_t n = (e.end - e.begin) / st::dtype_size(e.dtype);
  const uint8_t* p = file.data(e);
  std::vector<float> v(n);
  for (size_t i = 0; i < n; ++i) {
    uint16_t h = 0;
    if (e.dtype != st::DType::F32) std::memcpy(&h, p + 2 * i, 2);
    if (e.dtype == st::DType::F32) {
      std::memcpy(&v[i], p + 4 * i, 4);
    } else if (e.dtype == st::DType::BF16) {
      const uint32_t bits = static_cast<uint32_t>(h) << 16;
      std::memcpy(&v[i], &bits, 4);
    } else {
      v[i] = half_to_float(h);
    }
  }
  return v;
}

bool is_float(st::DType d) { return d == st::DType::F32 || d == st::DType::F16 || d == st::DType::BF16; }

// The stoke name a file's key stands for (the aliases listed in the header), or the key itself.
std::string canonical(const std::string& key) {
  static const std::regex module("^module\\.");
  static const std::regex dense_layer("^(features\\.denseblock\\d+\\.denselayer\\d+)\\.(norm|conv)\\.?([12])\\.");
  static const std::regex classifier("^classifier\\.");
  std::string k = std::regex_replace(key, module, "");
  k = std::regex_replace(k, dense_layer, "$1.layers.$2$3.");
  return std::regex_replace(k, classifier, "class_layers.out.");
}

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// Writes v (the file's order) into dst (stoke's: conv KRSC, linear columns (h, w, c)).
void place(const Expected& e, const std::vector<float>& v, float* dst) {
  if (e.order == Order::same) {
    std::copy(v.begin(), v.end(), dst);
  } else if (e.order == Order::conv_kcrs) {
    const int64_t K = e.dims[0], C = e.dims[1], R = e.dims[2], S = e.dims[3];
    for (int64_t k = 0; k < K; ++k)
      for (int64_t c = 0; c < C; ++c)
        for (int64_t r = 0; r < R; ++r)
          for (int64_t s = 0; s < S; ++s)
            dst[((k * R + r) * S + s) * C + c] = v[static_cast<size_t>(((k * C + c) * R + r) * S + s)];
  } else {
    const int64_t out = e.dims[0], in = e.dims[1];
    const Shape3 m = e.in;
    for (int64_t o = 0; o < out; ++o)
      for (int c = 0; c < m.c; ++c)
        for (int h = 0; h < m.h; ++h)
          for (int x = 0; x < m.w; ++x)
            dst[o * in + (h * m.w + x) * m.c + c] = v[static_cast<size_t>(o * in + (c * m.h + h) * m.w + x)];
  }
}

// The first convolution of 1-channel data from weights for C: each filter summed over its input channels, as timm's
// adapt_input_conv does, so a grey image gives the response the colour filters give to that grey in every channel.
void place_summed(const Dims& found, bool torch, const std::vector<float>& v, float* dst) {
  const int64_t K = found[0];
  const int64_t C = torch ? found[1] : found[3], R = torch ? found[2] : found[1], S = torch ? found[3] : found[2];
  for (int64_t k = 0; k < K; ++k)
    for (int64_t r = 0; r < R; ++r)
      for (int64_t s = 0; s < S; ++s) {
        double sum = 0;
        for (int64_t c = 0; c < C; ++c)
          sum += v[static_cast<size_t>(torch ? ((k * C + c) * R + r) * S + s : ((k * R + r) * S + s) * C + c)];
        dst[(k * R + r) * S + s] = static_cast<float>(sum);
      }
}

// The found shape of the first convolution's weight differs from the expected one in its input channels only.
bool differs_in_channels(const Dims& want, const Dims& found, bool torch) {
  if (want.size() != 4 || found.size() != 4) return false;
  const size_t ch = torch ? 1 : 3;
  for (size_t i = 0; i < 4; ++i)
    if (i != ch && want[i] != found[i]) return false;
  return want[ch] != found[ch];
}

int stem_node(const Graph& g) {
  for (int i = 0; i <= g.output(); ++i)
    if (g.node(i).op == Op::conv && g.node(i).inputs[0] == g.input()) return i;
  return -1;
}

struct Matching {
  const Graph& g;
  const st::File& file;
  bool torch;
  std::map<std::string, std::string> key_of;  // stoke name -> the file's key
  std::set<std::string> used;                 // the file's keys taken
  std::vector<std::string> problems;
};

// The classifier of another class count: its weight is [M, in_features] in the file, M != out_features.
bool fresh_classifier(const Matching& m, int head, int64_t* file_classes) {
  if (head < 0) return false;
  const Node& n = m.g.node(head);
  const auto it = m.key_of.find(m.g.params()[static_cast<size_t>(n.weight)].name);
  if (it == m.key_of.end()) return false;
  const Dims& d = m.file.entries().at(it->second).shape;
  if (d.size() != 2 || d[1] != n.in_features || d[0] == n.out_features) return false;
  *file_classes = d[0];
  return true;
}

// One expected tensor: loaded (as is, or summed for the stem), left initialised (a fresh classifier), or a problem.
bool load_one(Matching& m, const Expected& e, bool fresh_head, int head, int stem, float* dst) {
  const auto it = m.key_of.find(e.name);
  if (it == m.key_of.end()) {
    m.problems.push_back(str(e.name, ": missing (expected ", dims_text(e.dims), ")"));
    return false;
  }
  m.used.insert(it->second);
  const st::File::Entry& f = m.file.entries().at(it->second);
  const std::string as = it->second != e.name ? str(" (as ", it->second, ")") : "";
  if (e.node == head && fresh_head) return false;
  if (!is_float(f.dtype)) {
    m.problems.push_back(str(e.name, as, ": dtype ", st::dtype_name(f.dtype), ", expected F32, F16 or BF16"));
    return false;
  }
  if (f.shape == e.dims) {
    place(e, values(m.file, f), dst);
    return true;
  }
  const bool stem_weight = e.node == stem && e.index == m.g.node(stem).weight && !e.buffer;
  if (stem_weight && differs_in_channels(e.dims, f.shape, m.torch)) {
    const size_t ch = m.torch ? 1 : 3;
    if (e.dims[ch] == 1) {
      place_summed(f.shape, m.torch, values(m.file, f), dst);
      return true;
    }
    if (f.shape[ch] == 1)
      throw UserError(str(m.file.source(), ": the first convolution ", e.name,
                          " takes 1-channel images, but the data "
                          "here has ",
                          e.dims[ch],
                          " channels: colour filters cannot be made from grey ones; start "
                          "from weights trained on colour images, or train on grey images"));
  }
  m.problems.push_back(str(e.name, as, ": expected ", dims_text(e.dims), ", found ", dims_text(f.shape)));
  return false;
}

}  // namespace

int classifier_node(const Graph& g) {
  for (int i = g.output(); i >= 0; --i)
    if (g.node(i).op == Op::linear) return i;
  return -1;
}

bool FineTunePlan::trivial() const {
  for (float m : lr_mult)
    if (m != 1.f) return false;
  for (char b : bn_eval)
    if (b) return false;
  return true;
}

FineTunePlan fine_tune_plan(const Graph& g, Freeze freeze, bool freeze_bn, float backbone_lr_mult) {
  FineTunePlan p;
  const int head = classifier_node(g);
  std::vector<char> in_head(g.params().size(), 0);
  if (head >= 0)
    for (int idx : {g.node(head).weight, g.node(head).bias})
      if (idx >= 0) in_head[static_cast<size_t>(idx)] = 1;
  const float backbone = freeze == Freeze::backbone ? 0.f : backbone_lr_mult;
  for (size_t i = 0; i < in_head.size(); ++i) p.lr_mult.push_back(in_head[i] ? 1.f : backbone);
  // A frozen backbone keeps its statistics too: its batch norms run as they will at inference.
  for (const Node& nd : g.nodes())
    p.bn_eval.push_back(nd.op == Op::batchnorm && (freeze_bn || freeze == Freeze::backbone) ? 1 : 0);
  return p;
}

std::string fine_tune_line(const Graph& g, const FineTunePlan& plan, float backbone_lr_mult) {
  if (plan.trivial()) return "";
  int64_t trained = 0, frozen = 0;
  for (size_t i = 0; i < plan.lr_mult.size(); ++i) (plan.lr_mult[i] != 0.f ? trained : frozen) += g.params()[i].size;
  const int64_t eval_bn = std::count(plan.bn_eval.begin(), plan.bn_eval.end(), 1);
  const int64_t all_bn =
      std::count_if(g.nodes().begin(), g.nodes().end(), [](const Node& n) { return n.op == Op::batchnorm; });
  const int head = classifier_node(g);
  std::vector<std::string> parts;
  if (frozen > 0)
    parts.push_back(str("backbone frozen (", head >= 0 ? str("only ", g.node(head).name, " trains: ") : std::string(),
                        format_count(static_cast<double>(trained)), " of ",
                        format_count(static_cast<double>(trained + frozen)), " parameters)"));
  if (eval_bn > 0)
    parts.push_back(str("BN statistics frozen (", eval_bn, " of ", all_bn, " batch norms in eval mode",
                        frozen > 0 ? "" : "; gamma and beta train", ")"));
  if (frozen == 0 && backbone_lr_mult != 1.f) parts.push_back(str("backbone lr x", backbone_lr_mult));
  std::string line = "fine-tuning:";
  for (size_t i = 0; i < parts.size(); ++i) line += str(i ? ", " : " ", parts[i]);
  return line;
}

std::string listed(const std::vector<std::string>& lines, size_t max) {
  std::string s;
  for (size_t i = 0; i < lines.size() && i < max; ++i) s += str(i ? "\n" : "", "  ", lines[i]);
  if (lines.size() > max) s += str("\n  ... and ", lines.size() - max, " more");
  return s;
}

InitResult import_weights(const Graph& g, const st::File& file, const InitOptions& o, std::vector<float>& params,
                          std::vector<float>& buffers) {
  params.assign(static_cast<size_t>(g.num_params()), 0.f);
  buffers.assign(static_cast<size_t>(g.num_buffers()), 0.f);
  g.initialize(params.data(), buffers.data(), o.seed);
  const auto fmt = file.metadata().find("format");
  Matching m{g, file, fmt == file.metadata().end() || fmt->second != "stoke-checkpoint", {}, {}, {}};
  for (const auto& [key, e] : file.entries()) {
    if (ends_with(key, ".num_batches_tracked")) continue;  // PyTorch's count of BN updates: stoke keeps none
    // An alias only where the key (behind a DataParallel "module.") is not the model's own name (the small CNN's
    // head is "classifier").
    const std::string bare = key.rfind("module.", 0) == 0 ? key.substr(7) : key;
    const bool own = g.find_param(bare) >= 0 || g.find_buffer(bare) >= 0;
    const auto [it, fresh] = m.key_of.emplace(own ? bare : canonical(key), key);
    if (!fresh) m.problems.push_back(str(key, ": names ", it->first, ", as ", it->second, " does"));
  }
  const int head = classifier_node(g), stem = stem_node(g);
  int64_t file_classes = 0;
  const bool fresh_head = fresh_classifier(m, head, &file_classes);
  InitResult r;
  if (fresh_head)
    r.notes.push_back(str("classifier ", g.node(head).name, ": ", file_classes, " classes in ", file.source(), ", ",
                          g.node(head).out_features, " here: initialised afresh (seed ", o.seed, ")"));
  for (const Expected& e : expected_tensors(g, m.torch)) {
    const ParamInfo& p = (e.buffer ? g.buffers() : g.params())[static_cast<size_t>(e.index)];
    float* dst = (e.buffer ? buffers.data() : params.data()) + p.offset;
    const bool summed = e.node == stem && e.index == g.node(stem).weight && !e.buffer;
    if (!load_one(m, e, fresh_head, head, stem, dst)) continue;
    ++r.loaded;
    const Dims& found = file.entries().at(m.key_of.at(e.name)).shape;
    if (summed && found != e.dims)
      r.notes.push_back(str("first convolution ", e.name, ": ", dims_text(found), " in ", file.source(),
                            " summed over its input channels for 1-channel data (timm's adapt_input_conv)"));
  }
  for (const auto& [key, e] : file.entries())
    if (!ends_with(key, ".num_batches_tracked") && !m.used.count(key))
      r.unused.push_back(str(key, ": not in the model (found ", dims_text(e.shape), ")"));
  if (!o.partial && (!m.problems.empty() || !r.unused.empty())) {
    std::vector<std::string> all = m.problems;
    all.insert(all.end(), r.unused.begin(), r.unused.end());
    throw UserError(str(file.source(), " does not fit ", g.name(), " (", all.size(), " tensor",
                        all.size() == 1 ? "" : "s", "):\n", listed(all),
                        "\n--init-partial loads the tensors that fit and initialises the rest"));
  }
  r.not_loaded = std::move(m.problems);
  return r;
}

InitSource resolve_init_source(const std::string& path) {
  InitSource s;
  std::error_code ec;
  if (fs::is_regular_file(path, ec)) {
    s.file = path;
    return s;
  }
  if (!fs::is_directory(path, ec)) throw UserError(str("--init ", display_name(path), ": no such file or folder"));
  std::string ck = path;
  fs::path run_dir = path;
  if (fs::exists(fs::path(path) / "state.json")) {
    run_dir = fs::path(path).parent_path().parent_path();  // RUNDIR/checkpoints/<name>
  } else {
    ck = find_checkpoint(path, "latest", nullptr, CheckpointUse::weights);  // only model.safetensors is read
    if (ck.empty())
      throw UserError(str("--init ", display_name(path),
                          ": a folder that is neither a stoke run (checkpoints/latest) nor a checkpoint "
                          "(state.json)"));
  }
  s.file = (fs::path(ck) / "model.safetensors").string();
  s.stoke_run = true;
  const fs::path config = run_dir / "config.json";
  if (fs::exists(config)) {
    try {
      const std::vector<uint8_t> text = read_file(config.string());
      const json j = json::parse(text.begin(), text.end());
      s.mean = j.at("normalize_mean").get<std::vector<float>>();
      s.stdev = j.at("normalize_std").get<std::vector<float>>();
    } catch (const json::exception& e) {
      throw UserError(str("--init ", display_name(path), ": ", display_name(config.string()),
                          " holds no normalisation: ", json_problem(e)));
    }
  }
  return s;
}

}  // namespace stoke
