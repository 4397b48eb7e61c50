#include "engine/inference.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "base/display_name.h"
#include "base/error.h"
#include "base/fs.h"
#include "base/json_util.h"
#include "base/parallel.h"
#include "engine/backend.h"
#include "engine/checkpoint.h"
#include "engine/device.h"
#include "engine/metrics.h"
#include "engine/optimizer.h"
#include "engine/safetensors.h"
#include "engine/tta.h"
#include "io/codec/codec.h"
#include "io/pipeline/input_pipeline.h"
#include "io/source/image_folder.h"
#include "io/source/source.h"

namespace stoke {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

json read_json(const fs::path& p) {
  try {
    std::vector<uint8_t> b = read_file(p.string());
    return json::parse(b.begin(), b.end());
  } catch (const json::exception& e) {
    throw Error(str(display_name(p.string()), " is damaged: ", json_problem(e)));
  }
}

// The run's model on the backend --device chooses, holding its weights, for evaluation-mode batches of up to
// `batch` samples (normalisation done by the backend from the run's mean and std).
std::unique_ptr<TrainingBackend> eval_backend(const LoadedRun& run, int batch, DeviceRequest device) {
  const DeviceChoice d = choose_device(device, static_cast<bool>(cuda_backend_factory()));
  BackendOptions o;
  o.max_batch = batch;
  o.mean = run.mean;
  o.stdev = run.stdev;
  o.precision =
      PrecisionRequest::fp32;  // evaluation numbers comparable with the CPU backend's; the step is not the cost here
  o.evaluation_only = true;    // no optimizer state, no gradients: nothing here trains
  std::unique_ptr<TrainingBackend> b = make_backend(d.use_cuda, run.graph, o);
  b->set_state(run.params, run.buffers, {}, 0);
  return b;
}

}  // namespace

LoadedRun load_run(const std::string& path, const ModelFactory& build_model, const std::string& which, bool ema) {
  fs::path p(path);
  if (!fs::exists(p)) throw UserError(str("no such run or checkpoint folder: ", display_name(path)));
  std::string ck, note;
  fs::path run_dir;
  CheckpointBytes verified;  // the files find_checkpoint checked against the manifest: loaded without reading again
  bool found = false;
  if (fs::exists(p / "state.json")) {  // a checkpoint folder: its run is two levels up
    ck = p.string();
    run_dir = p.parent_path().parent_path();
  } else {
    run_dir = p;
    // Only the files read here are verified: eval, predict and export never read the optimizer's state.
    ck = find_checkpoint(path, which, &note, CheckpointUse::weights, &verified);
    if (ck.empty() && note.empty()) ck = find_checkpoint(path, "latest", &note, CheckpointUse::weights, &verified);
    found = !ck.empty();
    if (ck.empty())
      throw UserError(note.empty() ? str(display_name(path), " holds no checkpoint (expected ", display_name(path),
                                         "/checkpoints/latest)")
                                   : str(display_name(path), ": ", note));
    // Said where eval, predict and export say which weights they use: the user asked for others.
    if (!note.empty()) std::fprintf(stderr, "warning: %s\n", note.c_str());
  }
  if (!fs::exists(run_dir / "config.json"))
    throw UserError(str("no config.json in run folder ", display_name(run_dir.string())));
  const json cfg = read_json(run_dir / "config.json");
  LoadedRun r;
  r.run_dir = run_dir.string();
  r.checkpoint_note = note;
  r.checkpoint = ck;
  try {
    r.model = cfg.at("model").get<std::string>();
    auto in = cfg.at("input").get<std::vector<int>>();
    if (in.size() != 3) throw Error("input must be [h, w, c]");
    r.input = {in[0], in[1], in[2]};
    for (const std::string& c : cfg.at("classes").get<std::vector<std::string>>())
      r.classes.push_back(name_from_display(c));  // config.json shows the names: the folders hold the bytes
    r.mean = cfg.at("normalize_mean").get<std::vector<float>>();
    r.stdev = cfg.at("normalize_std").get<std::vector<float>>();
    r.tta_flip = cfg.value("tta", std::string("none")) == "flip";  // runs from before --tta record none
  } catch (const json::exception& e) {
    throw Error(str(display_name((run_dir / "config.json").string()), " lacks a field: ", json_problem(e)));
  }
  r.graph = build_model(r.model, r.input, static_cast<int>(r.classes.size()));
  CheckpointData d = load_checkpoint_weights(ck, r.graph, ema && which != "initial", found ? &verified : nullptr);
  const json& state = d.state;
  r.ema = !d.ema_params.empty();
  r.params = std::move(r.ema ? d.ema_params : d.params);
  r.buffers = std::move(r.ema ? d.ema_buffers : d.buffers);
  r.step = state.value("step", int64_t{0});
  if (which == "initial") {  // what the run started from: the trainer's Graph::initialize with the run's seed
    // A run started from --init began with that file's weights, which no seed reproduces.
    if (const std::string init = cfg.value("init", std::string()); !init.empty())
      throw UserError(str(r.run_dir, " started from --init ", init,
                          ": its initial weights are that file's (--checkpoint initial rebuilds a seeded start only)"));
    r.graph.initialize(r.params.data(), r.buffers.data(), cfg.value("seed", uint64_t{0}));
    r.step = 0;
    r.checkpoint = "the initial weights";
  }
  return r;
}

std::vector<Prediction> predict(const LoadedRun& run, const std::vector<std::string>& images, int batch,
                                DeviceRequest device, bool tta_flip) {
  const Shape3 s = run.input;
  const int classes = static_cast<int>(run.classes.size());
  std::vector<Prediction> out(images.size());
  const std::unique_ptr<TrainingBackend> backend = eval_backend(run, batch, device);
  std::vector<uint8_t> px(static_cast<size_t>(batch * s.size()));
  const std::vector<int32_t> no_labels(static_cast<size_t>(batch), 0);  // eval_batch's loss is not used here
  std::vector<float> tta_logits;
  for (size_t b0 = 0; b0 < images.size(); b0 += static_cast<size_t>(batch)) {
    std::vector<size_t> ok;  // indices that decoded, in order
    for (size_t i = b0; i < std::min(images.size(), b0 + static_cast<size_t>(batch)); ++i) {
      out[i].path = images[i];
      try {
        std::vector<uint8_t> bytes = read_file(images[i]);
        std::string err;
        if (!io::decode_to(bytes.data(), bytes.size(), s.h, s.w, s.c,
                           px.data() + ok.size() * static_cast<size_t>(s.size()), &err)) {
          out[i].error = err;
          continue;
        }
      } catch (const Error& e) {
        out[i].error = e.what();
        continue;
      }
      ok.push_back(i);
    }
    if (ok.empty()) continue;
    const int n = static_cast<int>(ok.size());
    float unused_loss = 0;
    const float* logits =
        eval_logits(*backend, n, classes, px.data(), no_labels.data(), tta_flip, &unused_loss, tta_logits);
    for (int j = 0; j < n; ++j) {
      Prediction& p = out[ok[static_cast<size_t>(j)]];
      p.probs.resize(static_cast<size_t>(classes));
      softmax_probabilities(logits + static_cast<int64_t>(j) * classes, 1, classes, p.probs.data());
      p.top_class = static_cast<int>(std::max_element(p.probs.begin(), p.probs.end()) - p.probs.begin());
      p.ok = true;
    }
  }
  return out;
}

ClassificationReport evaluate_folder(const LoadedRun& run, const std::string& folder, int batch, int decoders,
                                     DeviceRequest device, bool tta_flip) {
  std::shared_ptr<const io::Source> src = io::open_source(folder);
  if (src->classes() != run.classes)
    throw UserError(str("the classes of ", display_name(folder), " differ from the model's: ",
                        io::class_difference(run.classes, src->classes(), display_name(folder))));
  io::PipelineConfig pc;
  pc.h = run.input.h;
  pc.w = run.input.w;
  pc.c = run.input.c;
  pc.batch = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(batch, src->size())));
  pc.decoders = decoders;
  pc.shuffle = false;
  pc.augment = false;
  pc.drop_last = false;
  pc.replace_bad = false;
  pc.end_epoch = 1;
  io::InputPipeline in(src, pc);
  in.start(0);
  const std::unique_ptr<TrainingBackend> backend = eval_backend(run, pc.batch, device);
  MetricsAccumulator acc(static_cast<int>(run.classes.size()));
  std::vector<uint8_t> px_buffer;
  std::vector<int32_t> label_buffer;
  std::vector<float> tta_logits;
  while (io::Batch b = in.acquire()) {
    // Neither the padding nor an unreadable image is counted: the accuracy covers exactly the readable images.
    const io::ReadableSamples r =
        io::readable_samples(b.valid, b.pixels, b.labels, run.input.size(), px_buffer, label_buffer);
    acc.add_unreadable(r.unreadable);
    acc.add_vanished(r.vanished);
    if (r.n > 0) {
      float loss = 0;
      const float* logits = eval_logits(*backend, r.n, static_cast<int>(run.classes.size()), r.pixels, r.labels,
                                        tta_flip, &loss, tta_logits);
      acc.add(r.n, logits, r.labels, loss);
    }
    in.release(b.tag);
  }
  return acc.report();
}

void export_safetensors(const LoadedRun& run, const std::string& out_path) {
  namespace st = safetensors;
  const Graph& g = run.graph;
  std::vector<std::vector<float>> storage;  // converted copies
  std::vector<st::Tensor> tensors;
  std::vector<int64_t> tracked;  // one num_batches_tracked per BN
  tracked.reserve(g.nodes().size());
  storage.reserve(g.params().size());
  auto param = [&](int idx) -> const ParamInfo& { return g.params()[static_cast<size_t>(idx)]; };
  auto buffer = [&](int idx) -> const ParamInfo& { return g.buffers()[static_cast<size_t>(idx)]; };
  auto add_plain = [&](const ParamInfo& p, const float* base) {
    tensors.push_back({p.name, st::DType::F32, std::vector<int64_t>(p.shape.begin(), p.shape.end()), base + p.offset});
  };
  for (const Node& n : g.nodes()) {
    if (n.op == Op::conv) {
      const ParamInfo& w = param(n.weight);  // K R S C -> K C R S
      const int K = w.shape[0], R = w.shape[1], S = w.shape[2], C = w.shape[3];
      std::vector<float> t(static_cast<size_t>(w.size));
      const float* src = run.params.data() + w.offset;
      for (int k = 0; k < K; ++k)
        for (int r = 0; r < R; ++r)
          for (int s = 0; s < S; ++s)
            for (int c = 0; c < C; ++c)
              t[static_cast<size_t>(((k * C + c) * R + r) * S + s)] = src[((k * R + r) * S + s) * C + c];
      storage.push_back(std::move(t));
      tensors.push_back({w.name, st::DType::F32, {K, C, R, S}, storage.back().data()});
      if (n.bias >= 0) add_plain(param(n.bias), run.params.data());
    } else if (n.op == Op::linear) {
      const ParamInfo& w = param(n.weight);
      const Shape3 in = g.node(n.inputs[0]).out;
      if (in.h * in.w > 1) {  // columns (h, w, c) -> (c, h, w)
        std::vector<float> t(static_cast<size_t>(w.size));
        const float* src = run.params.data() + w.offset;
        for (int o = 0; o < n.out_features; ++o)
          for (int h = 0; h < in.h; ++h)
            for (int x = 0; x < in.w; ++x)
              for (int c = 0; c < in.c; ++c)
                t[static_cast<size_t>(static_cast<int64_t>(o) * n.in_features + (c * in.h + h) * in.w + x)] =
                    src[static_cast<int64_t>(o) * n.in_features + (h * in.w + x) * in.c + c];
        storage.push_back(std::move(t));
        tensors.push_back({w.name, st::DType::F32, {n.out_features, n.in_features}, storage.back().data()});
      } else {
        add_plain(w, run.params.data());
      }
      if (n.bias >= 0) add_plain(param(n.bias), run.params.data());
    } else if (n.op == Op::batchnorm) {
      add_plain(param(n.weight), run.params.data());
      add_plain(param(n.bias), run.params.data());
      add_plain(buffer(n.running_mean), run.buffers.data());
      add_plain(buffer(n.running_var), run.buffers.data());
      tracked.push_back(run.step);
      tensors.push_back({n.name + ".num_batches_tracked", st::DType::I64, {}, &tracked.back()});
    }
  }
  const json classes = display_names(run.classes);
  st::save(out_path, tensors,
           {{"format", "pt"},
            {"stoke_model", run.model},
            {"input_hwc", str(run.input.h, "x", run.input.w, "x", run.input.c)},
            {"classes", classes.dump()},
            {"normalize_mean", json(run.mean).dump()},
            {"normalize_std", json(run.stdev).dump()},
            {"layout", "PyTorch: conv weights OIHW, NCHW flattening"}});
}

}  // namespace stoke
