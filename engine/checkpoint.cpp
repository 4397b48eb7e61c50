#include "engine/checkpoint.h"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "base/display_name.h"
#include "base/error.h"
#include "base/fs.h"
#include "base/json_util.h"
#include "engine/safetensors.h"

namespace stoke {
namespace fs = std::filesystem;
using json = nlohmann::json;
namespace st = safetensors;

namespace {

std::vector<st::Tensor> model_tensors(const Graph& g, const float* params, const float* buffers) {
  std::vector<st::Tensor> t;
  for (const ParamInfo& p : g.params())
    t.push_back({p.name, st::DType::F32, std::vector<int64_t>(p.shape.begin(), p.shape.end()),
                 params ? params + p.offset : nullptr});
  for (const ParamInfo& b : g.buffers())
    t.push_back({b.name, st::DType::F32, std::vector<int64_t>(b.shape.begin(), b.shape.end()),
                 buffers ? buffers + b.offset : nullptr});
  return t;
}

// Names of the optimizer's moment buffers, in the order they sit in Optimizer::state().
std::vector<std::string> moment_names(const std::string& kind, size_t state_size, int64_t num_params) {
  if (state_size == 0) return {};
  if (kind == "adamw") return {"exp_avg", "exp_avg_sq"};
  STOKE_CHECK(static_cast<int64_t>(state_size) == num_params);
  return {"momentum"};
}

std::vector<st::Tensor> optimizer_tensors(const Graph& g, const std::string& kind, const float* state,
                                          size_t state_size) {
  std::vector<st::Tensor> t;
  const auto names = moment_names(kind, state_size, g.num_params());
  for (size_t m = 0; m < names.size(); ++m)
    for (const ParamInfo& p : g.params())
      t.push_back({names[m] + "." + p.name, st::DType::F32, std::vector<int64_t>(p.shape.begin(), p.shape.end()),
                   state ? state + static_cast<int64_t>(m) * g.num_params() + p.offset : nullptr});
  return t;
}

const std::map<std::string, std::string>& checkpoint_metadata() {
  static const std::map<std::string, std::string> meta = {{"format", "stoke-checkpoint"},
                                                          {"layout", "NHWC activations, KRSC conv weights"}};
  return meta;
}

// One "<bytes> <fnv1a64> <file>" line of manifest.txt (manifest_text).
std::string manifest_line(size_t bytes, uint64_t sum, const std::string& file) {
  return str(bytes, " ", hex64(sum), " ", file, "\n");
}

void read_tensor(const st::File& f, const std::string& name, const std::vector<int>& shape, float* dst, int64_t size) {
  const st::File::Entry* e = f.find(name);
  if (!e) throw UserError(str(f.source(), " has no tensor '", name, "': it was written for another model"));
  if (e->dtype != st::DType::F32)
    throw Error(str(f.source(), ": tensor '", name, "' is ", st::dtype_name(e->dtype), ", expected F32"));
  std::vector<int64_t> want(shape.begin(), shape.end());
  if (e->shape != want) {
    auto dims = [](const std::vector<int64_t>& v) {
      std::ostringstream os;
      for (size_t i = 0; i < v.size(); ++i) os << (i ? "x" : "") << v[i];
      return os.str();
    };
    const std::string have = dims(e->shape), need = dims(want);
    throw UserError(str(f.source(), ": tensor '", name, "' has shape ", have, " but this model needs ", need,
                        ": the checkpoint belongs to another model or data set"));
  }
  std::memcpy(dst, f.data(*e), static_cast<size_t>(size) * sizeof(float));
}

std::string read_pointer(const fs::path& p) {
  std::ifstream f(p);
  std::string name;
  if (!(f >> name)) return "";
  return name;
}

// manifest.txt: one line "<bytes> <fnv1a64> <file>" for each of the checkpoint's files, then "manifest <fnv1a64>"
// of the lines before it, so a changed digit anywhere, the manifest itself included, is found.
std::string manifest_text(const fs::path& dir, const std::vector<std::string>& files) {
  std::string body;
  for (const std::string& f : files) {
    const std::vector<uint8_t> b = read_file((dir / f).string());
    body += manifest_line(b.size(), fnv1a64(b.data(), b.size()), f);
  }
  return body + "manifest " + hex64(fnv1a64(body.data(), body.size())) + "\n";
}

// "" when the checkpoint's files are as its manifest records, else what is wrong (one phrase). A checkpoint of an
// older stoke has no manifest: its state.json's records of the two tensor files are checked by load_checkpoint.
// only: check only these files' lines (load_checkpoint checks the tensor files against state.json as it reads them,
// so reading them here too would read every byte twice; eval, predict and export read no optimizer state). Empty:
// every line. keep (optional): receives the bytes checked, when all of them are as recorded.
std::string verify_manifest(const fs::path& dir, const std::vector<std::string>& only = {},
                            CheckpointBytes* keep = nullptr) {
  if (keep) keep->clear();
  if (!fs::exists(dir / "manifest.txt")) return fs::exists(dir / "state.json") ? "" : "state.json is missing";
  std::string text;
  try {
    const std::vector<uint8_t> b = read_file((dir / "manifest.txt").string());
    text.assign(b.begin(), b.end());
  } catch (const Error& e) {
    return e.what();
  }
  const size_t last = text.rfind("manifest ");
  if (last == std::string::npos || text.substr(last) != "manifest " + hex64(fnv1a64(text.data(), last)) + "\n")
    return "manifest.txt is damaged";
  std::istringstream lines(text.substr(0, last));
  uint64_t bytes = 0;
  std::string sum, file;
  CheckpointBytes checked;
  while (lines >> bytes >> sum >> file) {
    if (!only.empty() && std::find(only.begin(), only.end(), file) == only.end()) continue;
    FileBytes b;
    try {
      b = read_file_bytes((dir / file).string());
    } catch (const Error&) {
      return file + " is missing";
    }
    if (b.size() != bytes || hex64(fnv1a64(b.data(), b.size())) != sum)
      return file + " differs from the manifest's record";
    if (keep) checked[file] = std::move(b);
  }
  if (keep) *keep = std::move(checked);
  return "";
}

// A file of checkpoint folder d: the bytes already read and checked, taken from `have`, else read now.
FileBytes checkpoint_file(const fs::path& d, const std::string& file, CheckpointBytes* have) {
  if (have)
    if (auto it = have->find(file); it != have->end()) {
      FileBytes b = std::move(it->second);
      have->erase(it);
      return b;
    }
  return read_file_bytes((d / file).string());
}

// What eval, predict and export read of a checkpoint, and so verify (CheckpointUse::weights).
const std::vector<std::string> kWeightFiles = {"state.json", "model.safetensors", "ema.safetensors"};

json read_state(const fs::path& d, CheckpointBytes* have = nullptr) {
  json state;
  try {
    const FileBytes text = checkpoint_file(d, "state.json", have);
    state = json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {
    throw Error(str(display_name((d / "state.json").string()), " is damaged: ", json_problem(e)));
  }
  if (!state.contains("files") || !state["files"].is_object())
    throw Error(str((d / "state.json").string(), " lists no files"));
  return state;
}

// A tensor file of the checkpoint, parsed; `check`: its size and checksum against state.json's record first.
st::File load_checked(const fs::path& d, const json& state, const std::string& file, bool check,
                      CheckpointBytes* have = nullptr) {
  FileBytes bytes = checkpoint_file(d, file, have);
  const json& rec = state["files"].contains(file) ? state["files"][file] : json();
  const bool recorded = rec.is_object() && rec.contains("bytes") && rec["bytes"].is_number_unsigned() &&
                        rec.contains("fnv1a64") && rec["fnv1a64"].is_string();
  if (check && (!recorded || rec["bytes"].get<uint64_t>() != bytes.size() ||
                rec["fnv1a64"].get<std::string>() != hex64(fnv1a64(bytes.data(), bytes.size()))))
    throw Error(str((d / file).string(), " is damaged: its size or checksum differs from state.json's record"));
  return st::File::parse(std::move(bytes), (d / file).string());
}

// model.safetensors (or ema.safetensors: `model` false) into params and buffers: every tensor of the graph with its
// shape, nothing extra.
void read_model(const st::File& f, const Graph& graph, std::vector<float>& params, std::vector<float>& buffers,
                bool model) {
  params.resize(static_cast<size_t>(graph.num_params()));
  buffers.resize(static_cast<size_t>(graph.num_buffers()));
  for (const ParamInfo& p : graph.params()) read_tensor(f, p.name, p.shape, params.data() + p.offset, p.size);
  for (const ParamInfo& b : graph.buffers()) read_tensor(f, b.name, b.shape, buffers.data() + b.offset, b.size);
  const size_t expected = graph.params().size() + graph.buffers().size();
  if (f.entries().size() == expected) return;
  if (model)
    throw UserError(str(f.source(), " holds ", f.entries().size(), " tensors, this model has ", expected,
                        ": the checkpoint belongs to another model"));
  throw Error(str(f.source(), " holds ", f.entries().size(), " tensors, the model has ", expected));
}

void prune(const fs::path& ckdir, int keep_last) {
  std::vector<std::string> steps;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(ckdir, ec)) {
    const std::string n = e.path().filename().string();
    if (e.is_directory() && n.rfind("step-", 0) == 0) steps.push_back(n);
    if (e.is_directory() && n.rfind(".tmp-", 0) == 0) fs::remove_all(e.path(), ec);  // a crash's leftovers
  }
  std::sort(steps.begin(), steps.end());  // zero-padded step numbers sort in time order
  const std::string best = read_pointer(ckdir / "best"), latest = read_pointer(ckdir / "latest");
  const size_t keep = static_cast<size_t>(std::max(keep_last, 1));
  for (size_t i = 0; i + keep < steps.size(); ++i)
    if (steps[i] != best && steps[i] != latest) fs::remove_all(ckdir / steps[i], ec);
}

}  // namespace

std::string save_checkpoint(const std::string& run_dir, const std::string& name, const Graph& graph,
                            const std::string& optimizer_kind, const CheckpointData& data, bool best, int keep_last) {
  const fs::path ckdir = fs::path(run_dir) / "checkpoints";
  std::error_code ec;
  fs::create_directories(ckdir, ec);
  if (ec) throw Error(str("cannot create ", ckdir.string(), ": ", ec.message()));
  const fs::path tmp = ckdir / (".tmp-" + name), dst = ckdir / name;
  fs::remove_all(tmp, ec);
  fs::create_directories(tmp, ec);
  if (ec) throw Error(str("cannot create ", tmp.string(), ": ", ec.message()));
  try {
    const auto& meta = checkpoint_metadata();
    std::vector<uint8_t> model = st::serialize(model_tensors(graph, data.params.data(), data.buffers.data()), meta);
    std::vector<uint8_t> opt = st::serialize(
        optimizer_tensors(graph, optimizer_kind, data.optimizer_state.data(), data.optimizer_state.size()), meta);
    atomic_write_file((tmp / "model.safetensors").string(), model.data(), model.size());
    atomic_write_file((tmp / "optimizer.safetensors").string(), opt.data(), opt.size());
    json state = data.state;
    auto record = [](const std::vector<uint8_t>& b) {
      return json{{"bytes", b.size()}, {"fnv1a64", hex64(fnv1a64(b.data(), b.size()))}};
    };
    state["files"] = {{"model.safetensors", record(model)}, {"optimizer.safetensors", record(opt)}};
    std::vector<std::string> files = {"model.safetensors", "optimizer.safetensors"};
    if (!data.ema_params.empty()) {
      std::vector<uint8_t> ema =
          st::serialize(model_tensors(graph, data.ema_params.data(), data.ema_buffers.data()), meta);
      atomic_write_file((tmp / "ema.safetensors").string(), ema.data(), ema.size());
      state["files"]["ema.safetensors"] = record(ema);
      files.push_back("ema.safetensors");
    }
    state["optimizer_kind"] = optimizer_kind;
    atomic_write_file((tmp / "state.json").string(), state.dump(2) + "\n");
    files.push_back("state.json");
    atomic_write_file((tmp / "manifest.txt").string(), manifest_text(tmp, files));
    fs::remove_all(dst, ec);  // a folder of the same name from an earlier, abandoned attempt
    durable_rename(tmp.string(), dst.string());
    atomic_write_file((ckdir / "latest").string(), name + "\n");
    if (best) atomic_write_file((ckdir / "best").string(), name + "\n");
  } catch (...) {
    fs::remove_all(tmp, ec);
    throw;
  }
  prune(ckdir, keep_last);
  return dst.string();
}

int64_t checkpoint_bytes(const Graph& graph, const std::string& optimizer_kind, size_t optimizer_state_size,
                         const json& config, int channels, int epochs) {
  const auto& meta = checkpoint_metadata();
  const size_t model = st::serialized_size(model_tensors(graph, nullptr, nullptr), meta);
  const size_t opt = st::serialized_size(optimizer_tensors(graph, optimizer_kind, nullptr, optimizer_state_size), meta);
  // state.json as the run's last checkpoint writes it (TrainingRun::write_checkpoint): numbers at their widest, a
  // history line per epoch (one measured 480 bytes in state.json's layout; 640 leaves room for the optional keys).
  constexpr int64_t kHistoryLineBytes = 640;
  const double wide = 0.12345678901234567;
  const std::vector<double> per_channel(static_cast<size_t>(std::max(channels, 1)), wide);
  const json file = {{"bytes", int64_t{1} << 40}, {"fnv1a64", hex64(0)}};
  const json state = {{"epoch", 1 << 20},
                      {"cursor", 1 << 20},
                      {"step", int64_t{1} << 40},
                      {"optimizer_steps", int64_t{1} << 40},
                      {"config", config},
                      {"dataset", "123456-0123456789abcdef"},
                      {"normalize_mean", per_channel},
                      {"normalize_std", per_channel},
                      {"epoch_sums", {{"correct", 1 << 30}, {"loss_sum", wide}, {"seconds", wide}, {"seen", 1 << 30}}},
                      {"elapsed_s", wide},
                      {"history", json::array()},
                      {"best_score", wide},
                      {"loss_scale", wide},
                      {"files", {{"model.safetensors", file}, {"optimizer.safetensors", file}}},
                      {"optimizer_kind", optimizer_kind}};
  const size_t state_json = state.dump(2).size() + 1 + static_cast<size_t>(kHistoryLineBytes * std::max(epochs, 0));
  const std::string manifest = manifest_line(model, 0, "model.safetensors") +
                               manifest_line(opt, 0, "optimizer.safetensors") +
                               manifest_line(state_json, 0, "state.json") + "manifest " + hex64(0) + "\n";
  return static_cast<int64_t>(model + opt + state_json + manifest.size());
}

std::string find_checkpoint(const std::string& run_dir, const std::string& which, std::string* note, CheckpointUse use,
                            CheckpointBytes* verified) {
  const fs::path ckdir = fs::path(run_dir) / "checkpoints";
  const std::vector<std::string> files = use == CheckpointUse::weights ? kWeightFiles : std::vector<std::string>{};
  const std::string name = read_pointer(ckdir / which);
  std::string why;
  if (name.empty() && !fs::exists(ckdir / which) && which != "latest") return "";  // no best chosen yet
  if (name.empty())
    why = fs::exists(ckdir / which) ? str("checkpoints/", which, " is empty") : "";
  else if (!fs::is_directory(ckdir / name))
    why = str("checkpoints/", which, " names ", name, ", which is missing");
  else if (const std::string bad = verify_manifest(ckdir / name, files, verified); !bad.empty())
    why = str("checkpoints/", name, " is damaged (", bad, ")");
  else
    return (ckdir / name).string();
  // Any intact checkpoint beats starting again: the newest step folder that verifies.
  std::vector<std::string> steps;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(ckdir, ec))
    if (e.is_directory() && e.path().filename().string().rfind("step-", 0) == 0)
      steps.push_back(e.path().filename().string());
  std::sort(steps.rbegin(), steps.rend());
  for (const std::string& s : steps) {
    if (s == name) continue;
    if (const std::string bad = verify_manifest(ckdir / s, files, verified); !bad.empty()) {
      why += str("; ", s, " is damaged (", bad, ")");
      continue;
    }
    if (note)
      *note = str(why.empty() ? str("checkpoints/", which, " is missing") : why, ": using ", s,
                  ", the newest intact checkpoint");
    return (ckdir / s).string();
  }
  if (note && !why.empty()) *note = str(why, ", and no other checkpoint is intact");
  return "";
}

CheckpointData load_checkpoint(const std::string& dir, const Graph& graph, const std::string& optimizer_kind) {
  const fs::path d(dir);
  if (!fs::is_directory(d)) throw UserError(str("no checkpoint folder ", display_name(dir)));
  if (const std::string bad = verify_manifest(d, {"state.json"}); !bad.empty())
    throw Error(str(dir, " is damaged: ", bad));
  json state = read_state(d);
  st::File model = load_checked(d, state, "model.safetensors", true);
  st::File opt = load_checked(d, state, "optimizer.safetensors", true);
  const std::string kind = state.contains("optimizer_kind") && state["optimizer_kind"].is_string()
                               ? state["optimizer_kind"].get<std::string>()
                               : std::string("?");
  if (kind != optimizer_kind)
    throw UserError(str(dir, " was written with optimizer ", kind, ", this run uses ", optimizer_kind));

  CheckpointData out;
  read_model(model, graph, out.params, out.buffers, true);
  const size_t moments = opt.entries().size() / std::max<size_t>(1, graph.params().size());
  if (opt.entries().size() != moments * graph.params().size())
    throw Error(str(opt.source(), " holds an unexpected number of tensors"));
  out.optimizer_state.resize(moments * static_cast<size_t>(graph.num_params()));
  const auto names = moment_names(optimizer_kind, out.optimizer_state.size(), graph.num_params());
  if (names.size() != moments) throw UserError(str(opt.source(), " does not hold ", optimizer_kind, "'s state"));
  for (size_t m = 0; m < names.size(); ++m)
    for (const ParamInfo& p : graph.params())
      read_tensor(opt, names[m] + "." + p.name, p.shape,
                  out.optimizer_state.data() + static_cast<int64_t>(m) * graph.num_params() + p.offset, p.size);
  if (state["files"].contains("ema.safetensors"))  // --ema: the same tensors as the model's
    read_model(load_checked(d, state, "ema.safetensors", true), graph, out.ema_params, out.ema_buffers, false);
  out.state = std::move(state);
  return out;
}

CheckpointData load_checkpoint_weights(const std::string& dir, const Graph& graph, bool ema,
                                       CheckpointBytes* verified) {
  const fs::path d(dir);
  if (!fs::is_directory(d)) throw UserError(str("no checkpoint folder ", display_name(dir)));
  CheckpointBytes checked;
  if (!verified) {
    if (const std::string bad = verify_manifest(d, kWeightFiles, &checked); !bad.empty())
      throw Error(str(display_name(dir), " is damaged: ", bad));
    verified = &checked;
  }
  // The manifest covered every file read here (just now, or in find_checkpoint: these are the bytes it hashed); an
  // older checkpoint has none.
  const bool by_state = !fs::exists(d / "manifest.txt");
  json state = read_state(d, verified);
  CheckpointData out;
  read_model(load_checked(d, state, "model.safetensors", by_state, verified), graph, out.params, out.buffers, true);
  if (ema && state["files"].contains("ema.safetensors"))
    read_model(load_checked(d, state, "ema.safetensors", by_state, verified), graph, out.ema_params, out.ema_buffers,
               false);
  out.state = std::move(state);
  return out;
}

}  // namespace stoke
