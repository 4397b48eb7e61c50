// stoke: one binary, subcommands. User errors are one line on stderr and exit code 2; runtime failures
// exit 1; help exits 0.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "apps/augment_flags.h"
#include "apps/cli.h"
#include "apps/cli_checks.h"
#include "apps/dataset_command.h"
#include "apps/help_formatter.h"
#include "apps/plan.h"
#include "apps/train_flags.h"
#include "base/display_name.h"
#include "base/error.h"
#include "base/file_kind.h"
#include "base/format.h"
#include "base/parallel.h"
#include "base/progress.h"
#include "engine/backend.h"
#include "engine/device.h"
#include "engine/diagnose.h"
#include "engine/dist/communicator.h"
#include "engine/inference.h"
#include "engine/resume.h"
#include "engine/run_folder.h"
#include "engine/trainer.h"
#include "io/pipeline/bench_input.h"
#include "io/source/pack.h"
#include "models/models.h"
#include "report/report.h"
#include "report/tensorboard.h"
#if defined(STOKE_WITH_NCCL)
#include "engine/cuda/nccl_communicator.h"
#endif

namespace {

using namespace stoke;

struct UseArgs {
  std::string run;
  std::string which = "best";
  std::vector<std::string> images;
  std::string data;
  std::string out;
  std::string format = "safetensors";
  int batch_size = 128;
  int top = 1;
  bool tensorboard = false;
  bool json = false;
  DeviceRequest device = DeviceRequest::automatic;
  bool no_ema = false;           // --no-ema: a run's trained weights instead of its weight EMA
  std::optional<bool> tta_flip;  // --tta for eval and predict; unset: as the run validated
};

// Whether eval and predict flip, and the words saying so ("" when neither the run nor the user asked for it).
struct TtaChoice {
  bool flip = false;
  std::string note;
};
TtaChoice tta_choice(const UseArgs& u, const LoadedRun& r) {
  if (!u.tta_flip) return {r.tta_flip, r.tta_flip ? "test-time augmentation: flip (as the run; --tta none: off)" : ""};
  if (*u.tta_flip) return {true, "test-time augmentation: flip"};
  return {false, r.tta_flip ? "test-time augmentation: none (--tta none; the run validated with flip)" : ""};
}

void add_no_ema(CLI::App* app, bool& no_ema) {
  app->add_flag("--no-ema", no_ema, "A run trained with --ema: its trained weights instead of their EMA (the default)");
}

void add_use(CLI::App& app, UseArgs& u) {
  auto* ev = app.add_subcommand(
      "eval", "Evaluate a trained run's model on an ImageFolder: accuracy, ROC-AUC, confusion matrix");
  ev->add_option("--run", u.run, "Run folder (or one of its checkpoint folders)")->required();
  ev->add_option("--data", u.data, "ImageFolder with the run's classes")->required();
  ev->add_option("--checkpoint", u.which, "best | latest")
      ->capture_default_str()
      ->check(CLI::IsMember({"best", "latest"}));
  ev->add_option("--batch-size", u.batch_size, "Images per batch")->capture_default_str()->check(kPositive);
  add_choice(ev, "--device", u.device, parse_device, kDevices, "auto | cpu | cuda (as for train)");
  add_no_ema(ev, u.no_ema);
  add_tta(ev, "evaluation", true, [&u](bool flip) { u.tta_flip = flip; });
  auto* pr = app.add_subcommand("predict", "Print the predicted class and probability of each image");
  pr->add_option("--run", u.run, "Run folder (or one of its checkpoint folders)")->required();
  pr->add_option("images", u.images, "Image files (JPEG, PNG, WebP)")->required();
  pr->add_option("--checkpoint", u.which, "best | latest")
      ->capture_default_str()
      ->check(CLI::IsMember({"best", "latest"}));
  pr->add_option("--top", u.top, "Show the K most likely classes")->capture_default_str()->check(kPositive);
  add_choice(pr, "--device", u.device, parse_device, kDevices, "auto | cpu | cuda (as for train)");
  add_no_ema(pr, u.no_ema);
  add_tta(pr, "prediction", true, [&u](bool flip) { u.tta_flip = flip; });
  pr->add_flag("--json", u.json,
               "One JSON object per image and line: path, class, probability and every class's "
               "probability at full precision (or path and error)");
  auto* rp =
      app.add_subcommand("report", "(Re)write RUNDIR/report.html: curves, throughput, input stall, confusion matrix");
  rp->add_option("--run", u.run, "Run folder")->required();
  rp->add_flag("--tensorboard", u.tensorboard,
               "Also convert metrics.jsonl into TensorBoard event files (RUNDIR/tensorboard)");
  auto* ex = app.add_subcommand("export", "Write a trained run's weights for PyTorch (load_state_dict)");
  ex->add_option("--run", u.run, "Run folder (or one of its checkpoint folders)")->required();
  ex->add_option("--format", u.format, "safetensors")->capture_default_str()->check(CLI::IsMember({"safetensors"}));
  ex->add_option("-o,--out", u.out, "Output file")->required();
  ex->add_option("--checkpoint", u.which, "best | latest | initial (the weights the run started from)")
      ->capture_default_str()
      ->check(CLI::IsMember({"best", "latest", "initial"}));
  add_no_ema(ex, u.no_ema);
}

struct InputArgs {
  std::string dir, out, data;
  bool drop_bad = false;
  int image_size = 0;
  int max_threads = 0;
  double seconds = 2.0;
  bool augment = false;
  std::string recipe;
  std::string cache = "auto";
};

void add_input(CLI::App& app, InputArgs& a) {
  auto* pk = app.add_subcommand("pack",
                                "Pack an ImageFolder into one file (index + JPEG bytes, checksummed): no per-file "
                                "open/read/close during training; --data accepts it");
  pk->add_option("dir", a.dir, "ImageFolder to pack")->required();
  pk->add_option("-o,--out", a.out, "Pack file to write")->required();
  pk->add_flag("--drop-bad", a.drop_bad,
               "Leave unreadable or invalid images out (default: keep them so sample i matches the folder)");
  auto* bi = app.add_subcommand("bench-input",
                                "Measure the input pipeline against raw libjpeg-turbo decoding of the same files");
  bi->add_option("--data", a.data, "ImageFolder or pack")->required();
  bi->add_option("--image-size", a.image_size, "Decode to SxS (0 = the data's own size)")
      ->capture_default_str()
      ->check(CLI::Range(0, 4096));
  bi->add_option("--max-threads", a.max_threads, "Measure 1..N decoder threads (0 = all cores)")
      ->capture_default_str()
      ->check(CLI::Range(0, 256));
  bi->add_option("--seconds", a.seconds, "Seconds per measurement")->capture_default_str()->check(kPositive);
  bi->add_flag("--augment", a.augment, "Random-resized-crop + flip in the pipeline");
  bi->add_option("--recipe", a.recipe,
                 "An --augment preset applied on the decoder threads, as train --augment-on decoders does (imagenet "
                 "includes the random resized crop)")
      ->check(CLI::IsMember({"monai", "imagenet", "cifar"}));
  bi->add_option("--cache", a.cache,
                 "auto | files: read a folder through the file cache as training does | none: every read from disk")
      ->capture_default_str()
      ->check(CLI::IsMember({"auto", "files", "none"}));
}

int run_pack(const InputArgs& a) {
  check_output_path(a.out, "-o");
  Progress progress;
  io::PackOptions o;
  o.drop_bad = a.drop_bad;
  const auto t0 = std::chrono::steady_clock::now();
  o.progress = [&](int64_t done, int64_t total) {
    char line[128];
    std::snprintf(line, sizeof line, "packing  %s/%s images", format_count(static_cast<double>(done)).c_str(),
                  format_count(static_cast<double>(total)).c_str());
    progress.update(line, done == total);
  };
  io::PackReport r = io::pack_image_folder(a.dir, a.out, o);
  progress.finish();
  const double el = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (const std::string& b : r.bad) std::fprintf(stderr, "warning: %s\n", b.c_str());
  std::printf("wrote %s: %s images, %.1f MB in %.1f s%s\n", display_name(a.out).c_str(),
              format_count(static_cast<double>(r.samples)).c_str(), static_cast<double>(r.bytes) / 1e6, el,
              r.bad.empty() ? ""
                            : str(" (", r.bad.size(), " bad file(s)",
                                  r.dropped ? ", left out" : ", kept: training will skip them", ")")
                                  .c_str());
  return 0;
}

int run_bench_input(const InputArgs& a) {
  io::BenchInputOptions o;
  o.data = a.data;
  o.h = o.w = a.image_size;
  o.max_threads = a.max_threads;
  o.seconds = a.seconds;
  o.augment = a.augment;
  o.cache = a.cache;
  if (!a.recipe.empty()) {
    AugmentFlags f;
    f.augment = a.recipe;
    const AugmentSettings s = resolve_augment(f);
    o.augment = o.augment || s.decoder == Augment::crop_flip;
    o.hflip = false;  // the recipe flips
    o.decoder_augment = [s](int h, int w, int c) { return decoder_augment_fn(s.recipe, Shape3{h, w, c}, 1); };
  }
  io::BenchInputResult r =
      io::bench_input(o, [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); });
  std::printf("%s", io::format_bench_input(r).c_str());
  return 0;
}

int run_report(const UseArgs& u, bool tensorboard) {
  check_run_folder(u.run);
  const auto lock = lock_run_folder(u.run, "stoke report");  // a live run rewrites report.html itself
  write_report_html(u.run);
  std::printf("wrote %s/report.html\n", display_name(u.run).c_str());
  if (tensorboard) std::printf("wrote %s\n", display_name(export_tensorboard(u.run, u.run + "/tensorboard")).c_str());
  return 0;
}

struct DiagArgs {
  TrainConfig cfg;
  std::string decoders = "auto";
  double seconds = 3.0;
};

void add_diagnose(CLI::App& app, DiagArgs& d) {
  auto* dg = app.add_subcommand(
      "diagnose", "Measure decode capacity, compute and the full pipeline; name the stage that limits training");
  dg->add_option("--data", d.cfg.data, "Training images: DIR/<class>/*.jpg or a pack")->required();
  dg->add_option("--model", d.cfg.model, "Model")->capture_default_str();
  dg->add_option("--batch-size", d.cfg.batch_size, "Images per step")->capture_default_str()->check(kPositive);
  dg->add_option("--image-size", d.cfg.image_size, "Resize inputs to SxS (0 = the data's own size)")
      ->capture_default_str()
      ->check(CLI::Range(0, 4096));
  add_choice(dg, "--device", d.cfg.device, parse_device, kDevices, "auto | cpu | cuda");
  add_choice(dg, "--precision", d.cfg.precision, parse_precision_flag, kPrecisions, "CUDA: auto | bf16 | fp16 | fp32");
  dg->add_option("--decoders", d.decoders, "auto | N")->capture_default_str()->check(decoders_check());
  add_choice(dg, "--augment", d.cfg.augment, parse_augment, kAugments, "none | flip | crop-flip");
  dg->add_option("--threads", d.cfg.threads, "CPU backend threads (0 = all cores)")
      ->capture_default_str()
      ->check(kNonNegative);
  dg->add_option("--seconds", d.seconds, "Seconds per measurement")->capture_default_str()->check(kPositive);
}

int run_diagnose(DiagArgs& d) {
  d.cfg.decoders = parse_decoders(d.decoders);
  DiagnoseResult r = diagnose(d.cfg, build_model, d.seconds);
  if (r.rank == 0) std::printf("%s", r.table().c_str());  // under mpirun rank 0 speaks for the job
  return 0;
}

int run_eval(const UseArgs& u) {
  LoadedRun r = load_run(u.run, build_model, u.which, !u.no_ema);
  const TtaChoice tta = tta_choice(u, r);
  std::printf("model: %s from %s%s%s%s\n", r.model.c_str(), display_name(r.checkpoint).c_str(),
              r.ema ? " (weight EMA)" : "", tta.note.empty() ? "" : ", ", tta.note.c_str());
  ClassificationReport rep = evaluate_folder(r, u.data, u.batch_size, 1, u.device, tta.flip);
  if (rep.count == 0)
    throw UserError(
        str("none of the ", rep.unreadable + rep.vanished, " images in ", display_name(u.data), " could be read"));
  const std::string left_out = rep.left_out_words().empty() ? ""
                                                            : str(" (", rep.left_out_words(),
                                                                  ", left out: the numbers cover the readable ones)");
  std::printf("%s images evaluated%s%s: accuracy %.2f%%, loss %.4f, macro ROC-AUC %.4f\n\n%s",
              format_count(static_cast<double>(rep.count)).c_str(), tta.flip ? " with --tta flip" : "",
              left_out.c_str(), 100 * rep.accuracy, rep.loss, rep.macro_auc, rep.confusion_table(r.classes).c_str());
  return 0;
}

int run_predict(const UseArgs& u) {
  LoadedRun r = load_run(u.run, build_model, u.which, !u.no_ema);
  const TtaChoice tta = tta_choice(u, r);
  // On stderr: stdout holds one line (or JSON object) per image and nothing else.
  if (!tta.note.empty()) std::fprintf(stderr, "%s\n", tta.note.c_str());
  int bad = 0;
  for (const Prediction& p : predict(r, u.images, 64, u.device, tta.flip)) {
    if (u.json) {
      nlohmann::json j = {{"path", display_name(p.path)}};  // name_from_display gives the file's bytes again
      if (!p.ok) {
        j["error"] = p.error;
        ++bad;
      } else {
        j["class"] = display_name(r.classes[static_cast<size_t>(p.top_class)]);
        j["probability"] = p.probs[static_cast<size_t>(p.top_class)];
        nlohmann::json all = nlohmann::json::object();
        for (size_t c = 0; c < p.probs.size(); ++c) all[display_name(r.classes[c])] = p.probs[c];
        j["probabilities"] = all;
      }
      std::printf("%s\n", j.dump().c_str());
      continue;
    }
    if (!p.ok) {
      std::fprintf(stderr, "%s: error: %s\n", display_name(p.path).c_str(), p.error.c_str());
      ++bad;
      continue;
    }
    std::vector<int> order(p.probs.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int>(i);
    std::stable_sort(order.begin(), order.end(),
                     [&](int a, int b) { return p.probs[static_cast<size_t>(a)] > p.probs[static_cast<size_t>(b)]; });
    std::printf("%s:", display_name(p.path).c_str());
    for (int k = 0; k < std::min<int>(u.top, static_cast<int>(order.size())); ++k)
      std::printf(" %s %.2f%%", display_name(r.classes[static_cast<size_t>(order[static_cast<size_t>(k)])]).c_str(),
                  100.0 * p.probs[static_cast<size_t>(order[static_cast<size_t>(k)])]);
    std::printf("\n");
  }
  return bad ? 2 : 0;
}

int run_export(const UseArgs& u) {
  check_output_path(u.out, "-o");  // before the run is loaded: a refusal costs nothing and touches nothing
  LoadedRun r = load_run(u.run, build_model, u.which, !u.no_ema);
  check_output_path(u.out, "-o");
  export_safetensors(r, u.out);
  std::printf(
      "wrote %s (%s, from %s%s): load in PyTorch with model.load_state_dict(safetensors.torch.load_file(...))\n",
      display_name(u.out).c_str(), r.model.c_str(), display_name(r.checkpoint).c_str(), r.ema ? ", weight EMA" : "");
  return 0;
}

}  // namespace

namespace stoke {

int run_cli(int argc, const char* const* argv, bool dry_run) {
#if STOKE_WITH_CUDA
  set_cuda_backend_factory(&make_cuda_backend);
#endif
#if defined(STOKE_WITH_NCCL)
  // No stream: its host-side collectives get one of their own (the step's run on the backend's comm stream).
  set_nccl_communicator_factory([](const dist::LaunchInfo& launch, dist::Communicator* bootstrap) {
    return make_nccl_communicator(launch, bootstrap, nullptr);
  });
#endif
  CLI::App app{"stoke: train CNN classifiers from folders of JPEGs, with the GPU never waiting", "stoke"};
  app.require_subcommand(1);
  app.formatter(std::make_shared<HelpFormatter>());  // before the subcommands, which take the formatter they find
  app.set_version_flag("--version", "stoke 0.1.0");
  TrainConfig cfg;
  std::string optimizer = "sgd", schedule = "onecycle";
  DatasetArgs dataset;
  std::string decoders = "auto";
  AugmentFlags augment;
  add_train(app, cfg, augment, optimizer, schedule, decoders);
  add_dataset(app, dataset);
  UseArgs use;
  add_use(app, use);
  InputArgs input;
  add_input(app, input);
  DiagArgs diag;
  add_diagnose(app, diag);
  PlanArgs plan;
  add_plan(app, plan);
  auto* devices = app.add_subcommand("devices", "Say which backend stoke would use here, and why");

  try {
    app.parse(argc, const_cast<char**>(argv));
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help, --version
    std::string cmd = "stoke";
    for (const auto* sub : app.get_subcommands()) cmd += " " + sub->get_name();
    std::fprintf(stderr, "%s: error: %s (see %s --help)\n", cmd.c_str(), e.what(), cmd.c_str());
    return 2;
  }

  if (dry_run) return 0;
  try {
    if (app.got_subcommand("train")) {
      CLI::App* t = app.get_subcommand("train");
      cfg.optimizer.kind = parse_optimizer(optimizer);
      cfg.schedule = parse_schedule(schedule);
      cfg.decoders = parse_decoders(decoders);
      const AugmentSettings aug = resolve_augment(augment);
      cfg.augment = aug.decoder;
      cfg.augment_preset = aug.preset;
      cfg.augment_recipe = aug.recipe;
      if (!cfg.resume.empty()) {
        // The run's own settings: the same command again with --resume appended is accepted, session flags
        // (--epochs, --device, ...) take their new value, and a real change is refused naming both values.
        std::vector<std::string> given;
        for (const CLI::Option* o : t->get_options())
          if (o->count() > 0) given.push_back(o->get_name());
        std::string note;
        cfg = resume_config(cfg.resume, cfg, given, &note);
        if (!note.empty() && !cfg.quiet) std::printf("%s\n", note.c_str());
      } else if (cfg.data.empty()) {
        throw UserError("--data is required (an ImageFolder: DIR/<class>/*.jpg), or --resume RUNDIR");
      }
      TrainResult r = train(cfg, build_model);
      (void)r;
      return 0;
    }
    if (app.got_subcommand("dataset")) {
      if (app.get_subcommand("dataset")->got_subcommand("synthetic")) return run_dataset_synthetic(dataset);
      return run_dataset_mnist(dataset);
    }
    if (app.got_subcommand("eval")) return run_eval(use);
    if (app.got_subcommand("predict")) return run_predict(use);
    if (app.got_subcommand("export")) return run_export(use);
    if (app.got_subcommand("report")) return run_report(use, use.tensorboard);
    if (app.got_subcommand("pack")) return run_pack(input);
    if (app.got_subcommand("diagnose")) return run_diagnose(diag);
    if (app.got_subcommand("bench-input")) return run_bench_input(input);
    if (app.got_subcommand("plan")) return run_plan(plan);
    if (devices->parsed()) {
      DeviceProbe p = probe_cuda();
      if (p.usable)
        std::printf("GPU: %s (%d device%s)\n", p.description.c_str(), p.count, p.count == 1 ? "" : "s");
      else
        std::printf("no usable GPU: %s\nCPU backend: %d threads\n", p.reason.c_str(), ThreadPool::threads());
      return 0;
    }
  } catch (const UserError& e) {
    // In a data-parallel job every rank speaks for itself: "stoke: rank 1/2: error: ...".
    std::fprintf(stderr, "stoke: %serror: %s\n", dist::error_prefix().c_str(), e.what());
    dist::exit_without_peers(2);
    return 2;
  } catch (const std::filesystem::filesystem_error& e) {  // the library's text names the bytes raw: say it plainly
    std::fprintf(stderr, "stoke: %sfailed: %s: %s\n", dist::error_prefix().c_str(),
                 display_name(e.path1().string()).c_str(), e.code().message().c_str());
    dist::exit_without_peers(1);
    return 1;
  } catch (const nlohmann::json::exception&) {  // cannot happen while every name is escaped; never the library's text
    std::fprintf(stderr, "stoke: %sfailed: internal error: a value could not be written as JSON\n",
                 dist::error_prefix().c_str());
    dist::exit_without_peers(1);
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "stoke: %sfailed: %s\n", dist::error_prefix().c_str(), e.what());
    dist::exit_without_peers(1);
    return 1;
  }
  return 0;
}

}  // namespace stoke
