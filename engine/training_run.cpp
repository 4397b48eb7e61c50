// The planning half of a training run: flags, device, data, model and batch size, the run folder (new or resumed),
// the backend, and the lines that say what will run. See engine/training_run.h.
#include "engine/training_run.h"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <limits>

#include "base/display_name.h"
#include "base/error.h"
#include "base/format.h"
#include "base/fs.h"
#include "base/json_util.h"
#include "base/parallel.h"
#include "base/permutation.h"
#include "base/trace.h"
#include "engine/checkpoint.h"
#include "engine/init_weights.h"
#include "engine/interrupt.h"
#include "engine/resume.h"
#include "io/codec/codec.h"
#include "io/source/image_folder.h"
#include "report/report.h"

namespace stoke {
namespace fs = std::filesystem;
using json = nlohmann::json;

Schedule schedule_for(const TrainConfig& cfg, int64_t steps_per_epoch, int epochs) {
  Schedule s;
  s.kind = cfg.schedule;
  s.lr = cfg.lr;
  s.total_steps = std::max<int64_t>(1, steps_per_epoch * epochs);
  s.warmup_steps = static_cast<int64_t>(std::llround(cfg.warmup_epochs * static_cast<double>(steps_per_epoch)));
  return s;
}

// An evaluation-style pipeline: dataset order, no augmentation, the last batch padded (use b.valid).
io::PipelineConfig eval_pipeline_config(Shape3 shape, int batch, int decoders, bool strict,
                                        const std::string& quarantine) {
  io::PipelineConfig pc;
  pc.h = shape.h;
  pc.w = shape.w;
  pc.c = shape.c;
  pc.batch = batch;
  pc.decoders = decoders;
  pc.shuffle = false;
  pc.augment = false;
  pc.drop_last = false;
  pc.replace_bad = false;
  pc.end_epoch = 1;
  pc.strict = strict;
  pc.quarantine_path = quarantine;
  return pc;
}

void refresh_report(const std::string& run_dir, Console& console) {
  try {
    write_report_html(run_dir);
  } catch (const std::exception& e) {
    console.warn(str("could not write the report: ", e.what()));
  }
}

namespace {

// What the start of the run says of --ema: the fixed decay, or timm's warm-up and the update from which it is DECAY.
std::string ema_line(float decay, bool warmup) {
  if (!warmup) return str("weight EMA: decay ", decay, " at every applied update (--ema)");
  int64_t full = static_cast<int64_t>(std::ceil(std::pow(1.0 - static_cast<double>(decay), -1.5)));
  while (full > 1 && ema_decay_at(full - 1, decay, true) == decay) --full;
  while (ema_decay_at(full, decay, true) != decay) ++full;
  return str("weight EMA: decay min(", decay,
             ", 1 - t^(-2/3)) at applied update t (--ema-warmup, timm's warm-up): ", ema_decay_at(10, decay, true),
             " at update 10, ", decay, " from update ", full, " on");
}

// --init and --normalize, right after the model is initialised: every rank reads the file itself (agree_across_ranks
// compares the weights). A data estimate is left to open_run_folder; everything else is resolved here, into cfg, so
// config.json records what ran.
void start_from_init(TrainConfig& cfg, RunPlan& plan, RunModel& model) {
  const int channels = plan.data.shape.c;
  if (!cfg.init.empty()) {
    const InitSource src = resolve_init_source(cfg.init);
    const InitResult r = import_weights(model.graph, safetensors::File::load(src.file),
                                        InitOptions{cfg.init_partial, cfg.seed}, model.params, model.buffers);
    model.notes.push_back(str("init: ", r.loaded, " tensors from ", display_name(src.file)));
    model.notes.insert(model.notes.end(), r.notes.begin(), r.notes.end());
    if (!r.not_loaded.empty())
      model.notes.push_back(str("init: --init-partial: ", r.not_loaded.size(), " of the model's tensors not loaded, ",
                                "initialised (seed ", cfg.seed, "):\n", listed(r.not_loaded)));
    if (!r.unused.empty())
      model.notes.push_back(
          str("init: --init-partial: ", r.unused.size(), " of the file's tensors not used:\n", listed(r.unused)));
    if (cfg.normalize.empty() && src.stoke_run && !src.mean.empty()) {
      cfg.normalize = normalization_spec(src.mean, src.stdev, channels);
      model.notes.push_back(str("normalize: ", cfg.normalize, " (mean,std), the run's the weights come from ",
                                "(--normalize data estimates them from this data)"));
    } else if (cfg.normalize.empty()) {
      cfg.normalize = "imagenet";
      model.notes.push_back(
          "normalize: imagenet's mean and std, the default with --init of weights trained elsewhere "
          "(--normalize data estimates them from this data)");
    }
  }
  if (cfg.normalize.empty()) cfg.normalize = "data";
  fixed_normalization(cfg.normalize, channels, plan.mean, plan.stdev);
}

// The rest of the header's data or val line: the seeded subset drawn, and what indexing a folder left out.
std::string data_line_tail(const io::Source* all, int64_t used, const char* limit_flag) {
  std::string s;
  if (used < all->size())
    s = str(", a seeded subset of the ", format_count(static_cast<double>(all->size())), " (", limit_flag, ")");
  if (const auto* folder = dynamic_cast<const io::FolderSource*>(all))
    s += str("; ", folder->left_out_summary(),
             folder->left_out().empty() ? "" : " (every path in left_out.txt in the run folder)");
  return s;
}

}  // namespace

void check_train_config(const TrainConfig& cfg) {
  if (cfg.epochs < 0) throw UserError("--epochs must be at least 1 (or 0 with --init: evaluate without training)");
  if (cfg.epochs == 0 && cfg.init.empty() && cfg.resume.empty())
    throw UserError("--epochs 0 evaluates imported weights without training: it needs --init FILE|RUN");
  if (cfg.batch_size < 0) throw UserError("--batch-size must be auto or at least 1");
  // Written so that NaN fails every check (each comparison with NaN is false); the library is called without the CLI.
  if (!(cfg.lr > 0.f) || !std::isfinite(cfg.lr)) throw UserError("--lr must be a positive number");
  if (!(cfg.label_smoothing >= 0.f && cfg.label_smoothing < 1.f))
    throw UserError("--label-smoothing must be in [0, 1)");
  if (!(cfg.optimizer.momentum >= 0.f && cfg.optimizer.momentum <= 1.f))
    throw UserError("--momentum must be in [0, 1]");
  if (!(cfg.optimizer.weight_decay >= 0.f) || !std::isfinite(cfg.optimizer.weight_decay))
    throw UserError("--weight-decay must be a finite number >= 0");
  if (!(cfg.clip_grad_norm >= 0.f) || !std::isfinite(cfg.clip_grad_norm))
    throw UserError("--clip-grad-norm must be a finite number >= 0 (0: off)");
  if (!(cfg.warmup_epochs >= 0.f) || !std::isfinite(cfg.warmup_epochs))
    throw UserError("--warmup-epochs must be a finite number >= 0");
  if (cfg.data.empty()) throw UserError("--data is required (an ImageFolder: DIR/<class>/*.jpg)");
  if (cfg.eval_every < 1) throw UserError("--eval-every must be at least 1");
  if (cfg.log_every < 1) throw UserError("--log-every must be at least 1");
  if (cfg.bn_recalibrate < -1) throw UserError("--bn-recalibrate must be auto or a number of batches (0: off)");
  if (cfg.decoders < 0) throw UserError("--decoders must be auto or a positive number");
  if (!(cfg.ema >= 0.f && cfg.ema < 1.f)) throw UserError("--ema must be a decay in (0, 1) (0: off)");
  if (cfg.ema_warmup && cfg.ema == 0.f) throw UserError("--ema-warmup needs --ema DECAY (the decay it warms up to)");
  if (cfg.init_partial && cfg.init.empty()) throw UserError("--init-partial needs --init FILE");
  if (!(cfg.lr_backbone_mult > 0.f) || !std::isfinite(cfg.lr_backbone_mult))
    throw UserError("--lr-backbone-mult must be a positive number (--freeze backbone freezes it)");
  std::vector<float> mean, stdev;
  fixed_normalization(cfg.normalize, 0, mean, stdev);  // the syntax, before the data is opened
  if (decodes_once(cfg.cache) && cfg.augment == Augment::crop_flip)
    throw UserError(str("--cache ", to_string(cfg.cache),
                        " keeps images at the model's input size, so random crops are not available: use --augment "
                        "flip or --cache none"));
}

TrainingRun::TrainingRun(const TrainConfig& cfg, const ModelFactory& build_model)
    : cfg_(cfg), console_(cfg.quiet), build_model_(build_model), resuming_(!cfg.resume.empty()) {}

// The backend goes first, on every path (an error thrown with steps in flight included): its destructor waits for
// what it still reads (the pinned input ring, the gather buffers, a held cache), members destroyed after it.
TrainingRun::~TrainingRun() { backend_.reset(); }

// ---- the job: one process, or rank r of a world launched by mpirun, torchrun or Slurm ----------------------------
void TrainingRun::join_world() {
  RunWorld& w = plan_.world;
  w.launch = dist::launch_from_environment();
  // A torchrun-style world has no host transport of its own: on the GPU NCCL joins it (over the TCP rendezvous),
  // on the CPU it is refused. Which one is known only once the device is chosen, so choose_device decides.
  if (w.launch.launcher != "torchrun" || w.launch.world == 1) comm_ = dist::make_communicator(w.launch);
  w.rank = w.launch.rank;
  w.size = w.launch.world;
  w.writer = w.rank == 0;
  w.user_quiet = cfg_.quiet;
  if (!w.writer) cfg_.quiet = true;  // rank 0 speaks for the job; every rank still prints its own errors
  console_.set_quiet(cfg_.quiet);    // the line a signal prints: train_epochs (engine/training_loop.cpp)
}

// ---- the device --------------------------------------------------------------------------------------------------
void TrainingRun::choose_device() {
  const RunWorld& w = plan_.world;
  plan_.device = stoke::choose_device(cfg_.device, static_cast<bool>(cuda_backend_factory()), w.launch.local_rank);
  const bool cuda = plan_.device.use_cuda;
  if (dist::choose_transport(w.launch, cuda, static_cast<bool>(nccl_communicator_factory())) == dist::Transport::nccl)
    join_nccl();
  else if (!comm_)
    comm_ = dist::make_communicator(w.launch);  // a torchrun-style world on the CPU: says why it cannot run
  ThreadPool::set_threads(cfg_.threads);
  // A single process says nothing here (its device line follows), unless it runs the NCCL path alone.
  if (!w.user_quiet && (w.size > 1 || w.nccl)) {
    console_.tell("world: %d process%s, rank %d, local rank %d, device %s, transport %s%s\n", w.size,
                  w.size == 1 ? "" : "es", w.rank, comm_->local_rank(),
                  cuda ? str("cuda:", comm_->local_rank()).c_str() : "cpu", comm_->transport().c_str(),
                  cfg_.sync_bn ? "; batch norm synchronised across processes (--sync-bn)" : "");
  }
}

// dist::choose_transport said NCCL (a CUDA run started by a launcher): the gradients travel over NCCL, on the device
// this process drives (its local rank). NCCL's unique id goes out over MPI when the job has it, else over the TCP
// rendezvous on MASTER_ADDR:MASTER_PORT.
void TrainingRun::join_nccl() {
  RunWorld& w = plan_.world;
  const DeviceCommFactory& make = nccl_communicator_factory();
  const double timeout =
      comm_ ? comm_->timeout_seconds() : dist::make_communicator(dist::LaunchInfo{})->timeout_seconds();
  bootstrap_ = std::move(comm_);
  comm_ = make(w.launch, bootstrap_ && bootstrap_->world() > 1 ? bootstrap_.get() : nullptr);
  comm_->set_timeout_seconds(timeout);
  if (w.size > 1) dist::set_error_prefix(str("rank ", w.rank, "/", w.size, ": "));
  w.nccl = true;
}

// ---- the data ----------------------------------------------------------------------------------------------------
void TrainingRun::open_data() { plan_.data = open_run_data(cfg_); }

// ---- the model, and the batch size: given, or (--batch-size auto) the largest multiple of 8 whose planned memory fits
void TrainingRun::build_model_and_batch() {
  const RunData& data = plan_.data;
  const int world = plan_.world.size;
  RunBatch& b = plan_.batch;
  model_.graph = build_model_(cfg_.model, data.shape, data.classes);
  model_.params.assign(static_cast<size_t>(model_.graph.num_params()), 0.f);
  model_.buffers.assign(static_cast<size_t>(model_.graph.num_buffers()), 0.f);
  model_.graph.initialize(model_.params.data(), model_.buffers.data(), cfg_.seed);
  if (!resuming_) start_from_init(cfg_, plan_, model_);  // a resumed run's weights and normalisation are its own

  b.target.cuda = plan_.device.use_cuda;
  b.target.element_bytes = plan_.device.use_cuda && cfg_.precision != PrecisionRequest::fp32 ? 2 : 4;
  b.target.optimizer = cfg_.optimizer;
  const int requested_batch = requested_batch_size();
  // A batch larger than the training set (after --limit-train) becomes the whole set, with a note, rather than an
  // error: a PyTorch DataLoader with its default drop_last=False gives exactly that, one batch of every image per
  // epoch, so it is what a user coming from there expects, and a first try on a small folder should not fail on
  // the default --batch-size 128. (drop_last=True, which stoke otherwise follows, would give no step at all.)
  // Data parallel: the largest multiple of the process count, so the batch still divides evenly.
  b.global = requested_batch;
  if (requested_batch > data.train_count)
    b.global =
        static_cast<int>(world > 1 && data.train_count >= world ? data.train_count / world * world : data.train_count);
  b.steps_per_epoch = data.train_count / b.global;
  // Evaluation only (--epochs 0 --init) steps through no epoch: no drop_last note. The batch is still the one
  // config.json records, which a later --resume --epochs N trains with.
  if (cfg_.epochs > 0 || resuming_)
    b.fit_note = batch_fit_note(requested_batch, cfg_.batch_size > 0, b.global, data.train_count);
  // Data parallel: --batch-size is the global batch; rank r takes its slice of each one (io/pipeline/sampler.h).
  if (b.global % world != 0)
    throw UserError(str("--batch-size ", b.global, " is the global batch: it must divide evenly over the ", world,
                        " processes (try ", std::max(1, b.global / world) * world, ")"));
  b.local = b.global / world;
  b.schedule = schedule_for(cfg_, b.steps_per_epoch, cfg_.epochs);
  check_memory();
  model_.opt_state = Optimizer(cfg_.optimizer, model_.graph.params(), model_.graph.num_params()).state();
  model_.opt_steps = 0;
}

// Memory is planned, not grabbed: refuse a job this machine cannot hold, before allocating it.
void TrainingRun::check_memory() const {
  const RunData& data = plan_.data;
  const Shape3 shape = data.shape;
  const bool cuda = plan_.device.use_cuda;
  const int64_t avail = io::available_memory_bytes();
  const int64_t step_bytes = planned_training_bytes(model_.graph, plan_.batch.local, plan_.batch.target);
  if (!cuda && avail > 0 && step_bytes > avail * 8 / 10)  // the CUDA backend's arena checks device memory itself
    throw UserError(str("the model needs about ", step_bytes >> 20, " MiB at ", shape.h, "x", shape.w, "x", shape.c,
                        " with batch ", plan_.batch.global, " but ", avail >> 20, " MiB are available",
                        fitting_batch_advice(), " (or lower --image-size)"));
  // --cache gpu decodes on the host first, exactly as decoded does (the device budget is checked when the set is
  // handed to the backend, training_loop.cpp).
  if (!decodes_once(cfg_.cache)) return;
  const int64_t images = data.train_count + data.val_count;
  int64_t need = io::DecodedCache::bytes_for(images, shape);
  // The CPU backend holds its own copy of the training set; the cache's is given back only after the copy.
  if (cfg_.cache == CacheMode::gpu && !cuda) need += io::DecodedCache::bytes_for(data.train_count, shape);
  const int64_t budget = cfg_.cache_budget_mb > 0 ? int64_t{cfg_.cache_budget_mb} << 20 : avail / 2;
  if (budget > 0 && need > budget)
    throw UserError(str("--cache ", to_string(cfg_.cache), " needs ", need >> 20, " MiB for ", images, " images at ",
                        shape.h, "x", shape.w, "x", shape.c, " but the budget is ", budget >> 20,
                        " MiB (--cache-budget-mb; default half the available memory): use --cache none"));
}

// --batch-size: as given, or auto: the largest batch the memory plan fits in this process's budget, capped. Data
// parallel: every rank first learns whether every rank asked for auto (a mix is refused on all of them, before any
// other collective could be mismatched) and how many ranks share its host (the CPU backend's budget is the host's
// memory, shared out); then each process's slice is chosen so, the smallest over the processes is taken (every
// rank holds an equal slice, and the rank with the least memory decides), and the global batch is W times it.
int TrainingRun::requested_batch_size() {
  const bool is_auto = cfg_.batch_size == 0;
  int per_host = 1;
  if (plan_.world.size > 1) {
    const std::vector<double> autos_at = comm_->each_rank(is_auto ? 1 : 0);
    for (double local_rank : comm_->each_rank(plan_.world.launch.local_rank))
      per_host = std::max(per_host, static_cast<int>(local_rank) + 1);
    std::string autos, numbers;
    for (int r = 0; r < plan_.world.size; ++r) {
      std::string& list = autos_at[static_cast<size_t>(r)] > 0 ? autos : numbers;
      list += str(list.empty() ? "" : " ", r);
    }
    if (!autos.empty() && !numbers.empty())
      throw UserError(str("--batch-size auto on rank(s) ", autos, " but a number on rank(s) ", numbers,
                          ": every rank must be given the same --batch-size"));
  }
  // cuDNN's legacy descriptors and the kernels' row counts are int: no tensor of the step may reach 2^31 elements.
  const int64_t int32_cap =
      plan_.device.use_cuda ? max_batch_within_int32(model_.graph) : int64_t{1} << 30;  // per process
  if (!is_auto) {
    if (cfg_.batch_size / plan_.world.size > int32_cap)
      throw UserError(str("--batch-size ", cfg_.batch_size, ": one activation of this model would pass 2^31 elements",
                          " per process, more than the CUDA backend's int sizes hold; ", int32_cap * plan_.world.size,
                          " at most"));
    return cfg_.batch_size;
  }
  std::string what;
  int64_t budget = memory_budget(what);
  if (!plan_.device.use_cuda &&
      per_host > 1) {  // each GPU rank has a device of its own; CPU ranks share the host's memory
    budget /= per_host;
    what += str(", shared by ", per_host, " processes on this host");
  }
  // Caps: the CPU backend gains nothing per image beyond a few hundred samples per GEMM; on any backend a global
  // batch that leaves fewer than 16 steps per epoch would make --epochs mean almost no updates.
  const int64_t hard = plan_.device.use_cuda ? 4096 : 256;
  const int64_t per_epoch = std::max<int64_t>(1, plan_.data.train_count / 16 / plan_.world.size);
  const int64_t cap = std::min({hard, per_epoch, int32_cap});
  const std::string cap_why =
      cap == int32_cap ? str("one activation within 2^31 elements (cuDNN's int sizes): ", int32_cap, " at most",
                             plan_.world.size > 1 ? " per process" : "")
      : cap == hard    ? str(plan_.device.use_cuda ? "4096 at most" : "256 at most on the CPU backend",
                          plan_.world.size > 1 ? " per process" : "")
                    : str("at least 16 steps per epoch over ", plan_.data.train_count, " images",
                          plan_.world.size > 1 ? str(" on ", plan_.world.size, " processes") : std::string());
  const BatchChoice bc = choose_batch_size(model_.graph, plan_.batch.target, budget, what, cap, cap_why);
  if (plan_.world.size == 1) {
    if (bc.batch == 0) throw UserError(str("--batch-size auto: ", bc.why));
    plan_.batch.auto_note = str("batch size auto: ", bc.why);
    return bc.batch;
  }
  // Every rank takes part, also one whose choice failed (0), so none waits for it.
  const std::vector<double> fits = comm_->each_rank(bc.batch);
  const int smallest = static_cast<int>(std::min_element(fits.begin(), fits.end()) - fits.begin());
  const int local = static_cast<int>(fits[static_cast<size_t>(smallest)]);
  if (bc.batch == 0) throw UserError(str("--batch-size auto: ", bc.why));
  if (local == 0)
    throw UserError(str("--batch-size auto: rank ", smallest, " fits no batch (its own error names why)"));
  const std::string why = comm_->broadcast_string(bc.why, smallest);  // the deciding rank's reasons, for rank 0
  plan_.batch.auto_note =
      str("batch size auto: ", local, " per process x ", plan_.world.size, " processes = ", local * plan_.world.size,
          " global (rank ", smallest, " decides, fitting the fewest: ", why, ")");
  return local * plan_.world.size;
}

// What the batch may use: free device memory less a margin (the CUDA context, cuDNN/cuBLAS handles and
// fragmentation), or on the CPU backend half the available memory (the decoders, caches and the OS need the rest).
int64_t TrainingRun::memory_budget(std::string& what) const {
  if (plan_.device.use_cuda) return device_memory_budget(plan_.device.probe.free_bytes, what);
  const int64_t avail = io::available_memory_bytes();
  what = str("half the available memory, ", avail >> 20, " MiB");
  return avail / 2;
}

// "--batch-size N fits" advice for an out-of-memory error.
std::string TrainingRun::fitting_batch_advice() const {
  std::string what;
  const int64_t budget = memory_budget(what);
  const BatchChoice bc = choose_batch_size(model_.graph, plan_.batch.target, budget, what, plan_.batch.global,
                                           "below the batch that failed");
  if (bc.batch == 0) return str("; ", bc.why);
  return str("; by plan --batch-size ", bc.batch, " fits (", format_count(static_cast<double>(bc.bytes) / 1048576.0),
             " MiB of ", budget >> 20, " MiB), or use --batch-size auto");
}

// Every rank must train the same model the same way on the same data from the same point: rank 0's settings, data
// fingerprint, normalisation and starting position go to every rank, and any difference stops every rank with a
// message naming it (the check is itself collective, so all ranks stop together).
void TrainingRun::agree_across_ranks() {
  if (plan_.world.size == 1) return;
  json mine = config_to_json(cfg_);
  mine.erase("data");  // paths may differ from node to node; the data's fingerprint may not
  mine.erase("val");
  mine.erase("init");  // likewise: the weights themselves are compared
  std::vector<float> state = model_.params;
  state.insert(state.end(), model_.buffers.begin(), model_.buffers.end());
  mine["weights"] = std::to_string(fnv1a64(state.data(), state.size() * sizeof(float)));
  if (!cfg_.init.empty())
    mine["init_file"] = display_name(cfg_.init);  // named in the message, not compared (paths may differ)
  mine["batch_size"] = plan_.batch.global;
  mine["dataset"] = plan_.data.fingerprint;
  mine["val_images"] = plan_.data.val_count;
  mine["normalize_mean"] = plan_.mean;
  mine["normalize_std"] = plan_.stdev;
  mine["start"] = {folder_.start_epoch, folder_.start_cursor, folder_.start_step};
  mine["run_folder"] = display_name(fs::absolute(folder_.dir).lexically_normal().string());
  const json root = json::parse(comm_->broadcast_string(mine.dump(), 0));
  std::string differs;
  for (const auto& [key, value] : root.items()) {
    if (key == "init_file" || (mine.contains(key) && mine[key] == value)) continue;
    differs += differs.empty() ? "" : "; ";
    if (key == "weights" && !cfg_.init.empty() && root.contains("init_file"))
      differs += str("--init: ", display_name(cfg_.init), " here holds other weights than rank 0's ",
                     root["init_file"].get<std::string>(), " (checksum ", mine[key].get<std::string>(), " vs ",
                     value.get<std::string>(), ")");
    else
      differs += str(key, ": rank 0 has ", value.dump(), ", rank ", plan_.world.rank, " has ",
                     mine.contains(key) ? mine[key].dump() : std::string("nothing"));
  }
  // Which ranks differ: one exchange tells everybody.
  const std::vector<double> flags = comm_->each_rank(differs.empty() ? 0 : 1);
  std::string who;
  for (int r = 0; r < plan_.world.size; ++r)
    if (flags[static_cast<size_t>(r)] != 0) who += str(who.empty() ? "" : ", ", r);
  if (!differs.empty()) throw UserError(str("this rank's settings differ from rank 0's: ", differs));
  if (!who.empty())
    throw UserError(str("the settings of rank", who.find(',') == std::string::npos ? " " : "s ", who,
                        " differ from rank 0's (each of them names what differs)"));
}

// ---- the backend, holding the model state from here on ----------------------------------------------------------
void TrainingRun::start_backend() {
  BackendOptions bopt;
  bopt.max_batch = plan_.batch.local;
  bopt.comm = comm_.get();
  bopt.device = plan_.device.use_cuda ? comm_->local_rank() : 0;
  bopt.optimizer = cfg_.optimizer;
  bopt.mean = plan_.mean;
  bopt.stdev = plan_.stdev;
  bopt.label_smoothing = cfg_.label_smoothing;
  bopt.clip_grad_norm = cfg_.clip_grad_norm;
  bopt.precision = cfg_.precision;
  bopt.deterministic = cfg_.deterministic;
  bopt.sync_bn = cfg_.sync_bn;
  bopt.graphs = cfg_.graphs;
  bopt.ema_decay = cfg_.ema;
  bopt.ema_warmup = cfg_.ema_warmup;
  if (cfg_.ema > 0.f && cfg_.epochs > 0) model_.notes.push_back(ema_line(cfg_.ema, cfg_.ema_warmup));
  FineTunePlan ft = fine_tune_plan(model_.graph, cfg_.freeze, cfg_.freeze_bn, cfg_.lr_backbone_mult);
  if (!ft.trivial() && cfg_.epochs > 0) model_.notes.push_back(fine_tune_line(model_.graph, ft, cfg_.lr_backbone_mult));
  if (!ft.trivial()) {
    bopt.lr_mult = std::move(ft.lr_mult);
    bopt.bn_eval = std::move(ft.bn_eval);
  }
  try {
    backend_ = make_backend(plan_.device.use_cuda, model_.graph, bopt);
  } catch (const OutOfMemory& e) {
    throw UserError(str("out of memory at batch ", plan_.batch.global, ": ", e.what(), fitting_batch_advice()));
  } catch (const std::bad_alloc&) {
    throw UserError(str("out of memory at batch ", plan_.batch.global, " (the CPU backend could not allocate ",
                        planned_training_bytes(model_.graph, plan_.batch.global, plan_.batch.target) >> 20, " MiB)",
                        fitting_batch_advice()));
  }
  backend_->set_state(model_.params, model_.buffers, model_.opt_state, model_.opt_steps);
  if (cfg_.ema > 0.f && !model_.ema_params.empty())  // a resumed --ema run
    backend_->set_ema(model_.ema_params, model_.ema_buffers);
}

// ---- everything the user could get wrong has been checked: now say what runs ------------------------------------
void TrainingRun::announce() {
  if (!cfg_.quiet) {
    if (plan_.device.use_cuda)
      console_.say("device: %s\n", backend_->describe().c_str());
    else if (cfg_.device == DeviceRequest::cpu)
      console_.say("device: --device cpu: %s\n", backend_->describe().c_str());
    else
      console_.say("device: no usable GPU (%s): %s\n", plan_.device.probe.reason.c_str(), backend_->describe().c_str());
    console_.say("data: %s images in %d classes (%dx%dx%d)%s\n",
                 format_count(static_cast<double>(plan_.data.train_count)).c_str(), plan_.data.classes,
                 plan_.data.shape.h, plan_.data.shape.w, plan_.data.shape.c,
                 data_line_tail(plan_.data.train_all.get(), plan_.data.train_count, "--limit-train").c_str());
    if (plan_.data.has_val)
      console_.say("val: %s images%s\n", format_count(static_cast<double>(plan_.data.val_count)).c_str(),
                   data_line_tail(plan_.data.val_all.get(), plan_.data.val_count, "--limit-val").c_str());
    else
      console_.say("val: none\n");
    const std::string model = model_.graph.description().empty() ? cfg_.model : model_.graph.description();
    const std::string params = format_count(static_cast<double>(model_.graph.num_params()));
    const double mmac = static_cast<double>(model_.graph.forward_macs()) / 1e6;
    if (cfg_.epochs == 0)
      console_.say("model: %s, %s parameters, %.2f MMAC/image; --epochs 0: evaluated as imported, no training step\n",
                   model.c_str(), params.c_str(), mmac);
    else
      console_.say("model: %s, %s parameters, %.2f MMAC/image; %s, lr %g, %s schedule, batch %d, %d epochs\n",
                   model.c_str(), params.c_str(), mmac, to_string(cfg_.optimizer.kind), static_cast<double>(cfg_.lr),
                   to_string(cfg_.schedule), plan_.batch.global, cfg_.epochs);
    if (!plan_.data.shape_note.empty()) console_.say("input: %s\n", plan_.data.shape_note.c_str());
    for (const std::string& note : model_.notes) console_.say("%s\n", note.c_str());
    if (!plan_.batch.auto_note.empty()) console_.say("%s\n", plan_.batch.auto_note.c_str());
    if (!plan_.batch.fit_note.empty()) console_.say("%s\n", plan_.batch.fit_note.c_str());
    if (!folder_.note.empty()) console_.say("%s\n", folder_.note.c_str());
    if (cfg_.sync_bn && plan_.world.size == 1)
      console_.say("--sync-bn: one process, so its batch-norm statistics are the whole batch's already\n");
    if (resuming_)
      console_.say("resuming: %s (epoch %lld, step %lld)\n", folder_.resumed_from.c_str(),
                   static_cast<long long>(folder_.start_epoch + 1), static_cast<long long>(folder_.start_step));
    if (!folder_.resume_note.empty()) console_.say("%s\n", folder_.resume_note.c_str());
    console_.say("run folder: %s\n", display_name(folder_.dir).c_str());
  }
  check_profile_window();
  write_run_info();
}

void TrainingRun::check_profile_window() const {
  if (cfg_.profile_first <= 0) return;
  const int64_t total = plan_.batch.steps_per_epoch * cfg_.epochs;
  if (cfg_.profile_last < cfg_.profile_first)
    throw UserError(
        str("--profile-steps ", cfg_.profile_first, ":", cfg_.profile_last, ": the last step comes before the first"));
  if (cfg_.profile_first > total)
    throw UserError(str("--profile-steps ", cfg_.profile_first, ":", cfg_.profile_last,
                        " starts after the run's last step (", total, " steps: ", plan_.batch.steps_per_epoch,
                        " per epoch x ", cfg_.epochs, " epochs)"));
  if (cfg_.profile_first <= folder_.start_step)
    throw UserError(str("--profile-steps ", cfg_.profile_first, ":", cfg_.profile_last, " starts at or before step ",
                        folder_.start_step, ", where this resumed run begins"));
  if (!cfg_.quiet) {
    console_.say(
        "profile window: steps %lld-%lld in the NVTX range 'profiled steps'%s%s\n",
        static_cast<long long>(cfg_.profile_first), static_cast<long long>(std::min(cfg_.profile_last, total)),
        backend_->name() == "cuda"
            ? " and between cudaProfilerStart/Stop (nsys --capture-range=cudaProfilerApi)"
            : " (nsys --capture-range=nvtx --nvtx-capture='profiled steps'); the CPU backend has no device profiler",
        trace_enabled() ? "" : "; warning: this build has no NVTX (the nvtx3 headers were not found)");
  }
}

// config.json: every setting, the classes, the normalisation; and metrics.jsonl opened for appending.
void TrainingRun::write_run_info() {
  folder_.config = config_to_json(cfg_);
  // auto, or a batch larger than the data: config.json holds the batch that ran, and a resumed run keeps it
  if (cfg_.batch_size != plan_.batch.global) folder_.config["batch_size"] = plan_.batch.global;
  if (!plan_.world.writer) return;  // rank 0 owns the run folder
  json run_info = folder_.config;
  run_info["backend"] = backend_->name();
  run_info["device"] = backend_->describe();
  if (!plan_.batch.auto_note.empty()) run_info["batch_size_auto"] = plan_.batch.auto_note;
  if (!plan_.batch.fit_note.empty()) run_info["batch_fit"] = plan_.batch.fit_note;
  if (!plan_.data.shape_note.empty()) run_info["input_size_chosen"] = plan_.data.shape_note;
  run_info["threads"] = ThreadPool::threads();
  run_info["world"] = plan_.world.size;
  run_info["transport"] = comm_->transport();
  run_info["input"] = {plan_.data.shape.h, plan_.data.shape.w, plan_.data.shape.c};
  run_info["classes"] = display_names(plan_.data.class_names);
  run_info["train_images"] = plan_.data.train_count;
  run_info["val_images"] = plan_.data.val_count;
  run_info["normalize_mean"] = plan_.mean;
  run_info["normalize_std"] = plan_.stdev;
  run_info["params"] = model_.graph.num_params();
  run_info["dataset"] = plan_.data.fingerprint;
  atomic_write_file((fs::path(folder_.dir) / "config.json").string(), run_info.dump(2) + "\n");
  write_left_out(folder_.dir, plan_.data.train_all.get(), plan_.data.val_all.get());
  folder_.metrics = std::make_unique<JsonlWriter>(
      folder_.metrics_path, cfg_.tensorboard ? (fs::path(folder_.dir) / "tensorboard").string() : std::string());
}

}  // namespace stoke
