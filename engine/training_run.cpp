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

#include "base/error.h"
#include "base/format.h"
#include "base/fs.h"
#include "base/json_util.h"
#include "base/parallel.h"
#include "base/permutation.h"
#include "base/trace.h"
#include "engine/checkpoint.h"
#include "engine/interrupt.h"
#include "engine/resume.h"
#include "report/report.h"
#include "io/codec/codec.h"
#include "io/source/display_name.h"
#include "io/source/image_folder.h"

namespace stoke {
namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// The one line that says how the batch meets the training set: a batch larger than the set, and the images each
// epoch leaves out when the batch does not divide it. Empty when the batch divides the set.
std::string batch_fit_note(int64_t requested, bool given, int64_t batch, int64_t images) {
  std::string note;
  if (requested > batch)
    note = str(given ? str("--batch-size ", requested) : str("the batch of ", requested), " is more than the ", images,
               " training images, so the batch is ", batch, " (as a PyTorch DataLoader gives one short batch)");
  const int64_t steps = images / batch, left_out = images - steps * batch;
  if (left_out > 0)
    note += str(note.empty() ? "" : "; ", images, " training images make ", steps, " step", steps == 1 ? "" : "s", " of ",
                batch, " per epoch, the other ", left_out, " are left out (drop_last: every step is a full batch), a "
                "different ", left_out, " each epoch as the order is reshuffled");
  return note.empty() ? note : "batch: " + note;
}

// A seeded random subset of a source (in index order, so classes stay grouped as in the folder).
std::shared_ptr<const io::Source> subset(std::shared_ptr<const io::Source> all, int64_t limit, uint64_t seed) {
  if (limit <= 0 || limit >= all->size()) return all;
  std::vector<int64_t> p = epoch_permutation(all->size(), seed, -1);
  p.resize(static_cast<size_t>(limit));
  std::sort(p.begin(), p.end());
  return std::make_shared<io::SubsetSource>(std::move(all), std::move(p));
}

// A fingerprint of the data a run trains on: class names, and every sample's name (its path relative to the
// data root, or its pack entry) and label. A resumed run refuses data that differs.
std::string dataset_fingerprint(const io::Source& src) {
  uint64_t h = fnv1a64(nullptr, 0);
  for (const std::string& c : src.classes()) h = fnv1a64(c.data(), c.size() + 1, h);
  const std::vector<std::string> names = relative_sample_names(src);  // a moved data set still matches
  for (int64_t i = 0; i < src.size(); ++i) {
    const std::string& rel = names[static_cast<size_t>(i)];
    h = fnv1a64(rel.data(), rel.size() + 1, h);
    const int32_t label = src.label(i);
    h = fnv1a64(&label, sizeof label, h);
  }
  return str(src.size(), "-", hex64(h));
}

}  // namespace

Schedule schedule_for(const TrainConfig& cfg, int64_t steps_per_epoch, int epochs) {
  Schedule s;
  s.kind = cfg.schedule;
  s.lr = cfg.lr;
  s.total_steps = std::max<int64_t>(1, steps_per_epoch * epochs);
  s.warmup_steps = static_cast<int64_t>(std::llround(cfg.warmup_epochs * static_cast<double>(steps_per_epoch)));
  return s;
}

// An evaluation-style pipeline: dataset order, no augmentation, the last batch padded (use b.valid).
io::PipelineConfig eval_pipeline_config(Shape3 shape, int batch, int decoders, bool strict, const std::string& quarantine) {
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


double seconds_since(TrainClock::time_point t0) { return std::chrono::duration<double>(TrainClock::now() - t0).count(); }

JsonlWriter::JsonlWriter(const std::string& path, const std::string& tensorboard_dir) : f_(path, std::ios::app) {
  if (!f_) throw Error(str("cannot write ", path));
  if (!tensorboard_dir.empty()) tb_.emplace(tensorboard_dir);
}

void JsonlWriter::write(const json& j) {
  f_ << j.dump() << '\n';
  f_.flush();
  if (tb_) tensorboard_log_metrics(*tb_, j);
}

void JsonlWriter::flush() {
  if (tb_) tb_->flush();
}

void refresh_report(const std::string& run_dir, Console& console) {
  try {
    write_report_html(run_dir);
  } catch (const std::exception& e) {
    console.warn(str("could not write the report: ", e.what()));
  }
}

void check_train_config(const TrainConfig& cfg) {
  if (cfg.epochs < 1) throw UserError("--epochs must be at least 1");
  if (cfg.batch_size < 0) throw UserError("--batch-size must be auto or at least 1");
  if (!(cfg.lr > 0.f) || !std::isfinite(cfg.lr)) throw UserError("--lr must be a positive number");
  if (cfg.label_smoothing < 0.f || cfg.label_smoothing >= 1.f) throw UserError("--label-smoothing must be in [0, 1)");
  if (cfg.data.empty()) throw UserError("--data is required (an ImageFolder: DIR/<class>/*.jpg)");
  if (cfg.eval_every < 1) throw UserError("--eval-every must be at least 1");
  if (cfg.log_every < 1) throw UserError("--log-every must be at least 1");
  if (cfg.bn_recalibrate < -1) throw UserError("--bn-recalibrate must be auto or a number of batches (0: off)");
  if (cfg.decoders < 0) throw UserError("--decoders must be auto or a positive number");
  if (decodes_once(cfg.cache) && cfg.augment == Augment::crop_flip)
    throw UserError(str("--cache ", to_string(cfg.cache), " keeps images at the model's input size, so random crops are not available: use --augment flip or --cache none"));
}

TrainingRun::TrainingRun(const TrainConfig& cfg, const ModelFactory& build_model)
    : cfg_(cfg), console_(cfg.quiet), build_model_(build_model), resuming_(!cfg.resume.empty()),
      best_score_(-std::numeric_limits<double>::infinity()) {}

// The backend goes first, on every path (an error thrown with steps in flight included): its destructor waits for
// what it still reads (the pinned input ring, the gather buffers, a held cache), members destroyed after it.
TrainingRun::~TrainingRun() { backend_.reset(); }

// ---- the job: one process, or rank r of a world launched by mpirun, torchrun or Slurm ----------------------------
void TrainingRun::join_world() {
  launch_ = dist::launch_from_environment();
  // A torchrun-style world has no host transport of its own: on the GPU NCCL joins it (over the TCP rendezvous),
  // on the CPU it is refused. Which one is known only once the device is chosen, so choose_device decides.
  if (launch_.launcher != "torchrun" || launch_.world == 1) comm_ = dist::make_communicator(launch_);
  rank_ = launch_.rank;
  world_ = launch_.world;
  writer_ = rank_ == 0;
  user_quiet_ = cfg_.quiet;
  if (!writer_) cfg_.quiet = true;  // rank 0 speaks for the job; every rank still prints its own errors
  console_.set_quiet(cfg_.quiet);
  if (world_ > 1) {
    static std::string stop;
    stop = str("\nstoke: ", dist::error_prefix(), "stopped by a signal: every rank stops at the same step and rank 0 "
               "writes a checkpoint (a second signal quits now; if a rank was lost, the launcher's message names it)\n");
    set_interrupt_message(stop.c_str());
  }
}

// ---- the device --------------------------------------------------------------------------------------------------
void TrainingRun::choose_device() {
  const DeviceChoice d =
      stoke::choose_device(cfg_.device, static_cast<bool>(cuda_backend_factory()), launch_.local_rank);
  dev_ = d.probe;
  use_cuda_ = d.use_cuda;
  if (dist::choose_transport(launch_, use_cuda_, static_cast<bool>(nccl_communicator_factory())) == dist::Transport::nccl)
    join_nccl();
  else if (!comm_)
    comm_ = dist::make_communicator(launch_);  // a torchrun-style world on the CPU: says why it cannot run
  ThreadPool::set_threads(cfg_.threads);
  // A single process says nothing here (its device line follows), unless it runs the NCCL path alone.
  if (!user_quiet_ && (world_ > 1 || nccl_)) {
    console_.tell("world: %d process%s, rank %d, local rank %d, device %s, transport %s%s\n", world_,
                  world_ == 1 ? "" : "es", rank_, comm_->local_rank(),
                  use_cuda_ ? str("cuda:", comm_->local_rank()).c_str() : "cpu", comm_->transport().c_str(),
                  cfg_.sync_bn ? "; batch norm synchronised across processes (--sync-bn)" : "");
  }
}

// dist::choose_transport said NCCL (a CUDA run started by a launcher): the gradients travel over NCCL, on the device
// this process drives (its local rank). NCCL's unique id goes out over MPI when the job has it, else over the TCP
// rendezvous on MASTER_ADDR:MASTER_PORT.
void TrainingRun::join_nccl() {
  const DeviceCommFactory& make = nccl_communicator_factory();
  const double timeout = comm_ ? comm_->timeout_seconds() : dist::make_communicator(dist::LaunchInfo{})->timeout_seconds();
  bootstrap_ = std::move(comm_);
  comm_ = make(launch_, bootstrap_ && bootstrap_->world() > 1 ? bootstrap_.get() : nullptr);
  comm_->set_timeout_seconds(timeout);
  if (world_ > 1) dist::set_error_prefix(str("rank ", rank_, "/", world_, ": "));
  nccl_ = true;
}

// ---- the data ----------------------------------------------------------------------------------------------------
void TrainingRun::open_data() {
  io::set_apply_exif_orientation(cfg_.exif_orientation);  // before any header is read: it decides the image sizes
  // A folder (ImageFolder) or a pack file (stoke pack) for either.
  train_all_ = io::open_source(cfg_.data);
  has_val_ = !cfg_.val.empty();
  if (has_val_) {
    val_all_ = io::open_source(cfg_.val);
    if (val_all_->classes() != train_all_->classes())
      throw UserError(str("the classes of --val ", cfg_.val, " differ from those of --data ", cfg_.data, ": ",
                          io::class_difference(train_all_->classes(), val_all_->classes(), "--val"),
                          " (a label is a class folder's place among the sorted names, so both need the same folders)"));
  }
  train_src_ = subset(train_all_, cfg_.limit_train, cfg_.seed);
  val_src_ = has_val_ ? subset(val_all_, cfg_.limit_val, cfg_.seed + 1) : nullptr;
  class_names_ = train_all_->classes();
  io::DataShape ds = io::probe_source_shape(*train_all_);
  shape_ = Shape3{ds.h, ds.w, ds.c};
  if (cfg_.image_size > 0) shape_.h = shape_.w = cfg_.image_size;
  else shape_note_ = ds.why;
  classes_ = static_cast<int>(class_names_.size());
  train_count_ = train_src_->size();
  val_count_ = has_val_ ? val_src_->size() : 0;
  fingerprint_ = dataset_fingerprint(*train_src_);
  // --cache auto|files: a folder's files are read from disk once, then their (encoded) bytes come from memory, so
  // small JPEGs cost no open/read/close per epoch (io/source/file_cache.h). One budget for both sets, shared by size.
  if ((cfg_.cache == CacheMode::automatic || cfg_.cache == CacheMode::files) && dynamic_cast<const io::FolderSource*>(train_all_.get())) {
    const int64_t budget = cfg_.cache_budget_mb > 0 ? int64_t{cfg_.cache_budget_mb} << 20 : io::default_file_cache_budget();
    const int64_t n_train = train_src_->size(), n_val = has_val_ ? val_src_->size() : 0;
    const int64_t train_budget = n_val == 0 ? budget : budget / (n_train + n_val) * n_train;
    train_files_ = std::make_shared<io::FileCacheSource>(train_src_, train_budget);
    train_src_ = train_files_;
    if (has_val_ && dynamic_cast<const io::FolderSource*>(val_all_.get())) {
      val_files_ = std::make_shared<io::FileCacheSource>(val_src_, budget - train_budget);
      val_src_ = val_files_;
    }
  }
}

// ---- the model, and the batch size: given, or (--batch-size auto) the largest multiple of 8 whose planned memory fits
void TrainingRun::build_model_and_batch() {
  graph_ = build_model_(cfg_.model, shape_, classes_);
  params_.assign(static_cast<size_t>(graph_.num_params()), 0.f);
  buffers_.assign(static_cast<size_t>(graph_.num_buffers()), 0.f);
  graph_.initialize(params_.data(), buffers_.data(), cfg_.seed);

  mem_target_.cuda = use_cuda_;
  mem_target_.element_bytes = use_cuda_ && cfg_.precision != PrecisionRequest::fp32 ? 2 : 4;
  mem_target_.optimizer = cfg_.optimizer;
  const int requested_batch = requested_batch_size();
  // A batch larger than the training set (after --limit-train) becomes the whole set, with a note, rather than an
  // error: a PyTorch DataLoader with its default drop_last=False gives exactly that, one batch of every image per
  // epoch, so it is what a user coming from there expects, and a first try on a small folder should not fail on
  // the default --batch-size 128. (drop_last=True, which stoke otherwise follows, would give no step at all.)
  // Data parallel: the largest multiple of the process count, so the batch still divides evenly.
  batch_ = requested_batch;
  if (requested_batch > train_count_)
    batch_ = static_cast<int>(world_ > 1 && train_count_ >= world_ ? train_count_ / world_ * world_ : train_count_);
  steps_per_epoch_ = train_count_ / batch_;
  batch_fit_note_ = batch_fit_note(requested_batch, cfg_.batch_size > 0, batch_, train_count_);
  // Data parallel: --batch-size is the global batch; rank r takes its slice of each one (io/pipeline/sampler.h).
  if (batch_ % world_ != 0)
    throw UserError(str("--batch-size ", batch_, " is the global batch: it must divide evenly over the ", world_,
                        " processes (try ", std::max(1, batch_ / world_) * world_, ")"));
  local_batch_ = batch_ / world_;
  // Memory is planned, not grabbed: refuse a job this machine cannot hold, before allocating it.
  {
    const int64_t avail = io::available_memory_bytes();
    const int64_t step_bytes = planned_training_bytes(graph_, local_batch_, mem_target_);
    if (!use_cuda_ && avail > 0 && step_bytes > avail * 8 / 10)  // the CUDA backend's arena checks device memory itself
      throw UserError(str("the model needs about ", step_bytes >> 20, " MiB at ", shape_.h, "x", shape_.w, "x", shape_.c, " with batch ",
                          batch_, " but ", avail >> 20, " MiB are available", fitting_batch_advice(),
                          " (or lower --image-size)"));
    // --cache gpu decodes on the host first, exactly as decoded does (the device budget is checked when the set is
    // handed to the backend, training_loop.cpp).
    if (decodes_once(cfg_.cache)) {
      int64_t need = io::DecodedCache::bytes_for(train_count_ + val_count_, shape_);
      // The CPU backend holds its own copy of the training set; the cache's is given back only after the copy.
      if (cfg_.cache == CacheMode::gpu && !use_cuda_) need += io::DecodedCache::bytes_for(train_count_, shape_);
      const int64_t budget = cfg_.cache_budget_mb > 0 ? int64_t{cfg_.cache_budget_mb} << 20 : avail / 2;
      if (budget > 0 && need > budget)
        throw UserError(str("--cache ", to_string(cfg_.cache), " needs ", need >> 20, " MiB for ", train_count_ + val_count_, " images at ", shape_.h,
                            "x", shape_.w, "x", shape_.c, " but the budget is ", budget >> 20,
                            " MiB (--cache-budget-mb; default half the available memory): use --cache none"));
    }
  }
  opt_state_ = Optimizer(cfg_.optimizer, graph_.params(), graph_.num_params()).state();
  opt_steps_ = 0;

}

// --batch-size: as given, or auto: the largest batch the memory plan fits in this process's budget, capped. Data
// parallel: every rank first learns whether every rank asked for auto (a mix is refused on all of them, before any
// other collective could be mismatched) and how many ranks share its host (the CPU backend's budget is the host's
// memory, shared out); then each process's slice is chosen so, the smallest over the processes is taken (every
// rank holds an equal slice, and the rank with the least memory decides), and the global batch is W times it.
int TrainingRun::requested_batch_size() {
  const bool is_auto = cfg_.batch_size == 0;
  int per_host = 1;
  if (world_ > 1) {
    const std::vector<double> autos_at = comm_->each_rank(is_auto ? 1 : 0);
    for (double local_rank : comm_->each_rank(launch_.local_rank))
      per_host = std::max(per_host, static_cast<int>(local_rank) + 1);
    std::string autos, numbers;
    for (int r = 0; r < world_; ++r) {
      std::string& list = autos_at[static_cast<size_t>(r)] > 0 ? autos : numbers;
      list += str(list.empty() ? "" : " ", r);
    }
    if (!autos.empty() && !numbers.empty())
      throw UserError(str("--batch-size auto on rank(s) ", autos, " but a number on rank(s) ", numbers,
                          ": every rank must be given the same --batch-size"));
  }
  // cuDNN's legacy descriptors and the kernels' row counts are int: no tensor of the step may reach 2^31 elements.
  const int64_t int32_cap = use_cuda_ ? max_batch_within_int32(graph_) : int64_t{1} << 30;  // per process
  if (!is_auto) {
    if (cfg_.batch_size / world_ > int32_cap)
      throw UserError(str("--batch-size ", cfg_.batch_size, ": one activation of this model would pass 2^31 elements",
                          " per process, more than the CUDA backend's int sizes hold; ", int32_cap * world_,
                          " at most"));
    return cfg_.batch_size;
  }
  std::string what;
  int64_t budget = memory_budget(what);
  if (!use_cuda_ && per_host > 1) {  // each GPU rank has a device of its own; CPU ranks share the host's memory
    budget /= per_host;
    what += str(", shared by ", per_host, " processes on this host");
  }
  // Caps: the CPU backend gains nothing per image beyond a few hundred samples per GEMM; on any backend a global
  // batch that leaves fewer than 16 steps per epoch would make --epochs mean almost no updates.
  const int64_t hard = use_cuda_ ? 4096 : 256;
  const int64_t per_epoch = std::max<int64_t>(1, train_count_ / 16 / world_);
  const int64_t cap = std::min({hard, per_epoch, int32_cap});
  const std::string cap_why =
      cap == int32_cap ? str("one activation within 2^31 elements (cuDNN's int sizes): ", int32_cap, " at most",
                             world_ > 1 ? " per process" : "")
      : cap == hard
          ? str(use_cuda_ ? "4096 at most" : "256 at most on the CPU backend", world_ > 1 ? " per process" : "")
          : str("at least 16 steps per epoch over ", train_count_, " images",
                world_ > 1 ? str(" on ", world_, " processes") : std::string());
  const BatchChoice bc = choose_batch_size(graph_, mem_target_, budget, what, cap, cap_why);
  if (world_ == 1) {
    if (bc.batch == 0) throw UserError(str("--batch-size auto: ", bc.why));
    batch_note_ = str("batch size auto: ", bc.why);
    return bc.batch;
  }
  // Every rank takes part, also one whose choice failed (0), so none waits for it.
  const std::vector<double> fits = comm_->each_rank(bc.batch);
  const int smallest = static_cast<int>(std::min_element(fits.begin(), fits.end()) - fits.begin());
  const int local = static_cast<int>(fits[static_cast<size_t>(smallest)]);
  if (bc.batch == 0) throw UserError(str("--batch-size auto: ", bc.why));
  if (local == 0) throw UserError(str("--batch-size auto: rank ", smallest, " fits no batch (its own error names why)"));
  const std::string why = comm_->broadcast_string(bc.why, smallest);  // the deciding rank's reasons, for rank 0
  batch_note_ = str("batch size auto: ", local, " per process x ", world_, " processes = ", local * world_,
                    " global (rank ", smallest, " decides, fitting the fewest: ", why, ")");
  return local * world_;
}

// What the batch may use: free device memory less a margin (the CUDA context, cuDNN/cuBLAS handles and
// fragmentation), or on the CPU backend half the available memory (the decoders, caches and the OS need the rest).
int64_t TrainingRun::memory_budget(std::string& what) const {
  if (use_cuda_) return device_memory_budget(dev_.free_bytes, what);
  const int64_t avail = io::available_memory_bytes();
  what = str("half the available memory, ", avail >> 20, " MiB");
  return avail / 2;
}

// "--batch-size N fits" advice for an out-of-memory error.
std::string TrainingRun::fitting_batch_advice() const {
  std::string what;
  const int64_t budget = memory_budget(what);
  const BatchChoice bc = choose_batch_size(graph_, mem_target_, budget, what, batch_, "below the batch that failed");
  if (bc.batch == 0) return str("; ", bc.why);
  return str("; by plan --batch-size ", bc.batch, " fits (", format_count(static_cast<double>(bc.bytes) / 1048576.0),
             " MiB of ", budget >> 20, " MiB), or use --batch-size auto");
}

// Every rank must train the same model the same way on the same data from the same point: rank 0's settings, data
// fingerprint, normalisation and starting position go to every rank, and any difference stops every rank with a
// message naming it (the check is itself collective, so all ranks stop together).
void TrainingRun::agree_across_ranks() {
  if (world_ == 1) return;
  json mine = config_to_json(cfg_);
  mine.erase("data");  // paths may differ from node to node; the data's fingerprint may not
  mine.erase("val");
  mine["batch_size"] = batch_;
  mine["dataset"] = fingerprint_;
  mine["val_images"] = val_count_;
  mine["normalize_mean"] = mean_;
  mine["normalize_std"] = stdev_;
  mine["start"] = {start_epoch_, start_cursor_, step_};
  mine["run_folder"] = fs::absolute(run_dir_).lexically_normal().string();
  const json root = json::parse(comm_->broadcast_string(mine.dump(), 0));
  std::string differs;
  for (const auto& [key, value] : root.items())
    if (!mine.contains(key) || mine[key] != value)
      differs += str(differs.empty() ? "" : "; ", key, ": rank 0 has ", value.dump(), ", rank ", rank_, " has ",
                     mine.contains(key) ? mine[key].dump() : std::string("nothing"));
  // Which ranks differ: one exchange tells everybody.
  const std::vector<double> flags = comm_->each_rank(differs.empty() ? 0 : 1);
  std::string who;
  for (int r = 0; r < world_; ++r)
    if (flags[static_cast<size_t>(r)] != 0) who += str(who.empty() ? "" : ", ", r);
  if (!differs.empty())
    throw UserError(str("this rank's settings differ from rank 0's: ", differs));
  if (!who.empty())
    throw UserError(str("the settings of rank", who.find(',') == std::string::npos ? " " : "s ", who,
                        " differ from rank 0's (each of them names what differs)"));
}

// ---- the backend, holding the model state from here on ----------------------------------------------------------
void TrainingRun::start_backend() {
  BackendOptions bopt;
  bopt.max_batch = local_batch_;
  bopt.comm = comm_.get();
  bopt.device = use_cuda_ ? comm_->local_rank() : 0;
  bopt.optimizer = cfg_.optimizer;
  bopt.mean = mean_;
  bopt.stdev = stdev_;
  bopt.label_smoothing = cfg_.label_smoothing;
  bopt.clip_grad_norm = cfg_.clip_grad_norm;
  bopt.precision = cfg_.precision;
  bopt.deterministic = cfg_.deterministic;
  bopt.sync_bn = cfg_.sync_bn;
  bopt.graphs = cfg_.graphs;
  try {
    backend_ = make_backend(use_cuda_, graph_, bopt);
  } catch (const OutOfMemory& e) {
    throw UserError(str("out of memory at batch ", batch_, ": ", e.what(), fitting_batch_advice()));
  } catch (const std::bad_alloc&) {
    throw UserError(str("out of memory at batch ", batch_, " (the CPU backend could not allocate ",
                        planned_training_bytes(graph_, batch_, mem_target_) >> 20, " MiB)", fitting_batch_advice()));
  }
  backend_->set_state(params_, buffers_, opt_state_, opt_steps_);
}

// ---- everything the user could get wrong has been checked: now say what runs ------------------------------------
void TrainingRun::announce() {
  if (!cfg_.quiet) {
    if (use_cuda_)
      console_.say("device: %s\n", backend_->describe().c_str());
    else if (cfg_.device == DeviceRequest::cpu)
      console_.say("device: --device cpu: %s\n", backend_->describe().c_str());
    else
      console_.say("device: no usable GPU (%s): %s\n", dev_.reason.c_str(), backend_->describe().c_str());
    console_.say("data: %s images in %d classes (%dx%dx%d)%s, val: %s\n", format_count(static_cast<double>(train_count_)).c_str(),
                classes_, shape_.h, shape_.w, shape_.c, cfg_.limit_train > 0 ? " (subset)" : "",
                has_val_ ? (format_count(static_cast<double>(val_count_)) + " images").c_str() : "none");
    console_.say("model: %s, %s parameters, %.2f MMAC/image; %s, lr %g, %s schedule, batch %d, %d epochs\n",
                graph_.description().empty() ? cfg_.model.c_str() : graph_.description().c_str(),
                format_count(static_cast<double>(graph_.num_params())).c_str(),
                static_cast<double>(graph_.forward_macs()) / 1e6, to_string(cfg_.optimizer.kind), static_cast<double>(cfg_.lr),
                to_string(cfg_.schedule), batch_, cfg_.epochs);
    for (const auto& [what, src] : {std::pair{"data", train_all_.get()}, std::pair{"val", val_all_.get()}})
      if (const auto* folder = dynamic_cast<const io::FolderSource*>(src))
        console_.say("%s: %s%s\n", what, folder->index_summary().c_str(),
                    folder->left_out().empty() ? "" : " (every path in left_out.txt in the run folder)");
    if (!shape_note_.empty()) console_.say("input: %s\n", shape_note_.c_str());
    if (!batch_note_.empty()) console_.say("%s\n", batch_note_.c_str());
    if (!batch_fit_note_.empty()) console_.say("%s\n", batch_fit_note_.c_str());
    if (!folder_note_.empty()) console_.say("%s\n", folder_note_.c_str());
    if (cfg_.sync_bn && world_ == 1)
      console_.say("--sync-bn: one process, so its batch-norm statistics are the whole batch's already\n");
    if (resuming_)
      console_.say("resuming: %s (epoch %lld, step %lld)\n", resumed_from_.c_str(), static_cast<long long>(start_epoch_ + 1),
                  static_cast<long long>(step_));
    if (!resume_note_.empty()) console_.say("%s\n", resume_note_.c_str());
    console_.say("run folder: %s\n", run_dir_.c_str());
  }
  check_profile_window();
  write_run_info();
}

void TrainingRun::check_profile_window() const {
  if (cfg_.profile_first <= 0) return;
  const int64_t total = steps_per_epoch_ * cfg_.epochs;
  if (cfg_.profile_last < cfg_.profile_first)
    throw UserError(str("--profile-steps ", cfg_.profile_first, ":", cfg_.profile_last, ": the last step comes before the first"));
  if (cfg_.profile_first > total)
    throw UserError(str("--profile-steps ", cfg_.profile_first, ":", cfg_.profile_last, " starts after the run's last step (",
                        total, " steps: ", steps_per_epoch_, " per epoch x ", cfg_.epochs, " epochs)"));
  if (cfg_.profile_first <= step_)
    throw UserError(str("--profile-steps ", cfg_.profile_first, ":", cfg_.profile_last, " starts at or before step ", step_,
                        ", where this resumed run begins"));
  if (!cfg_.quiet) {
    console_.say("profile window: steps %lld-%lld in the NVTX range 'profiled steps'%s%s\n",
                static_cast<long long>(cfg_.profile_first), static_cast<long long>(std::min(cfg_.profile_last, total)),
                backend_->name() == "cuda" ? " and between cudaProfilerStart/Stop (nsys --capture-range=cudaProfilerApi)"
                                           : " (nsys --capture-range=nvtx --nvtx-capture='profiled steps'); the CPU backend has no device profiler",
                trace_enabled() ? "" : "; warning: this build has no NVTX (the nvtx3 headers were not found)");
  }
}

// config.json: every setting, the classes, the normalisation; and metrics.jsonl opened for appending.
void TrainingRun::write_run_info() {
  config_ = config_to_json(cfg_);
  // auto, or a batch larger than the data: config.json holds the batch that ran, and a resumed run keeps it
  if (cfg_.batch_size != batch_) config_["batch_size"] = batch_;
  if (!writer_) return;  // rank 0 owns the run folder
  json run_info = config_;
  run_info["backend"] = backend_->name();
  run_info["device"] = backend_->describe();
  if (!batch_note_.empty()) run_info["batch_size_auto"] = batch_note_;
  if (!batch_fit_note_.empty()) run_info["batch_fit"] = batch_fit_note_;
  if (!shape_note_.empty()) run_info["input_size_chosen"] = shape_note_;
  run_info["threads"] = ThreadPool::threads();
  run_info["world"] = world_;
  run_info["transport"] = comm_->transport();
  run_info["input"] = {shape_.h, shape_.w, shape_.c};
  run_info["classes"] = class_names_;
  run_info["train_images"] = train_count_;
  run_info["val_images"] = val_count_;
  run_info["normalize_mean"] = mean_;
  run_info["normalize_std"] = stdev_;
  run_info["params"] = graph_.num_params();
  run_info["dataset"] = fingerprint_;
  atomic_write_file((fs::path(run_dir_) / "config.json").string(), run_info.dump(2) + "\n");
  write_left_out();
  metrics_ = std::make_unique<JsonlWriter>(metrics_path_, cfg_.tensorboard ? (fs::path(run_dir_) / "tensorboard").string()
                                                                           : std::string());
}

// left_out.txt: every file of the data folders that indexing did not take, with its reason (nothing is skipped
// without a word).
void TrainingRun::write_left_out() const {
  std::string text;
  for (const auto* src : {train_all_.get(), val_all_.get()})
    if (const auto* folder = dynamic_cast<const io::FolderSource*>(src))
      for (const io::LeftOut& l : folder->left_out())
        text += str(io::left_out_reason_name(l.reason), "\t", io::display_name(l.path),
                    l.detail.empty() ? std::string() : "\t" + l.detail, "\n");
  if (!text.empty()) atomic_write_file((fs::path(run_dir_) / "left_out.txt").string(), text);
}

}  // namespace stoke
