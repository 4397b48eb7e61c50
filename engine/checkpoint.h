// Checkpoints: RUNDIR/checkpoints/<name>/ holding
//   model.safetensors      parameters and buffers (BN running statistics), stoke's layout (KRSC convs),
//                          the parameter names of the Graph
//   optimizer.safetensors  the optimizer's moment buffers (sgd: "momentum"; adamw: "exp_avg", "exp_avg_sq")
//   ema.safetensors        --ema only: the averaged parameters and buffers, model.safetensors' names and layout
//   state.json             epoch, cursor, step, optimizer steps, loss scale, the run's configuration, the
//                          data set's fingerprint, running epoch sums, history, and the size and FNV-1a
//                          checksum of both safetensors files
//   manifest.txt           the size and FNV-1a checksum of the three files above, then its own checksum
// A checkpoint folder is written under a temporary name, every file fsynced, then renamed into place and the
// parent folder fsynced; `checkpoints/latest` and `checkpoints/best` are one-line files naming a folder,
// replaced atomically. So a crash or kill -9 at any moment leaves every named checkpoint complete.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/fs.h"
#include "engine/graph.h"

namespace stoke {

struct CheckpointData {
  // Tensors (host, fp32, the Graph's layout).
  std::vector<float> params, buffers;
  std::vector<float> optimizer_state;          // Optimizer::state()
  std::vector<float> ema_params, ema_buffers;  // --ema (empty: none; written and read as ema.safetensors)
  // Everything else, free-form but validated by the trainer.
  nlohmann::json state;
};

// Writes a checkpoint folder named `name` (e.g. "step-00001404") and points `checkpoints/latest` at it
// (and `checkpoints/best` too when `best`). Keeps the newest `keep_last` step folders plus the best one.
// Returns the folder's path. Throws stoke::Error (naming the file and the reason, e.g. disk full); the
// previously named checkpoints stay intact.
std::string save_checkpoint(const std::string& run_dir, const std::string& name, const Graph& graph,
                            const std::string& optimizer_kind, const CheckpointData& data, bool best, int keep_last);

// The bytes one checkpoint folder of this model takes, before any is written: both safetensors files exactly (the
// graph's tensors, the optimizer state's size: SGD momentum one float per parameter, AdamW two), state.json from
// the run's configuration with `epochs` lines of history (its size at the run's end), and the manifest. Block
// rounding of the file system is the caller's.
int64_t checkpoint_bytes(const Graph& graph, const std::string& optimizer_kind, size_t optimizer_state_size,
                         const nlohmann::json& config, int channels, int epochs);

// The folder `checkpoints/latest` (or `best`) names. When that pointer is empty or names a missing folder, or the
// folder fails its manifest, the newest step folder that verifies instead, with *note saying what was wrong and which
// one is used (a run never starts again while an intact checkpoint exists). "" when there is no intact checkpoint
// (*note then says why, if any checkpoint was named).
// use: which files "verifies" covers, the ones the caller goes on to read (CheckpointUse).
enum class CheckpointUse {
  resume,  // every file the manifest lists (--resume reads them all)
  weights  // state.json, model.safetensors and ema.safetensors: eval, predict and export never read the optimizer's
};
// The bytes of a checkpoint folder's files as its manifest check read and hashed them, by file name: handed on to
// load_checkpoint_weights, so each file is read from disk once (a ResNet-50's model.safetensors is ~100 MB).
using CheckpointBytes = std::map<std::string, FileBytes>;
// verified (optional): receives the checked bytes of the folder returned (those of a damaged one are dropped).
std::string find_checkpoint(const std::string& run_dir, const std::string& which = "latest",
                            std::string* note = nullptr, CheckpointUse use = CheckpointUse::resume,
                            CheckpointBytes* verified = nullptr);

// Loads and validates a checkpoint folder against `graph`: every file present, sizes and checksums as
// recorded, every parameter and buffer present with its shape and dtype, nothing extra. Throws
// stoke::UserError with a clear message when the checkpoint belongs to another model, or stoke::Error when
// it is damaged.
CheckpointData load_checkpoint(const std::string& dir, const Graph& graph, const std::string& optimizer_kind);

// The weights of a checkpoint folder for eval, predict and export: params and buffers, and with `ema` the EMA's when
// the checkpoint has them. optimizer.safetensors is neither read nor hashed (half the bytes of an SGD checkpoint,
// two thirds of an AdamW one). Every file is read once and checked against the manifest before it is used: `verified`
// holds the bytes find_checkpoint(..., CheckpointUse::weights, &verified) checked (taken from it, not read again);
// null: the check is done here on the bytes then loaded, and a damaged file is an Error naming it. A checkpoint of an
// older stoke without a manifest is checked against state.json's records.
CheckpointData load_checkpoint_weights(const std::string& dir, const Graph& graph, bool ema,
                                       CheckpointBytes* verified = nullptr);

}  // namespace stoke
