// TensorBoard event files for scalars, written without TensorFlow or protobuf.
//
// A TensorBoard event file is a TFRecord stream: each record is
//
//   uint64 length | uint32 masked_crc32c(length bytes) | data[length] | uint32 masked_crc32c(data)
//
// (all little-endian; CRC32C = CRC-32 with the Castagnoli polynomial 0x82F63B78, reflected, init and final
// xor 0xFFFFFFFF; mask(crc) = ((crc >> 15) | (crc << 17)) + 0xa282ead8). Every record's data is one
// serialized tensorflow.Event (tensorflow/core/util/event.proto):
//
//   Event   { double wall_time = 1; int64 step = 2; oneof what { string file_version = 3; Summary summary = 5; } }
//   Summary { repeated Value value = 1; }                       (tensorflow/core/framework/summary.proto)
//   Value   { string tag = 1; oneof value { float simple_value = 2; } }
//
// The first record of a file carries file_version "brain.Event:2"; each later record one scalar.
// Open the files with:  tensorboard --logdir RUNDIR/tensorboard   (docs/REPORT.md)
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>

namespace stoke {

// Seconds since the Unix epoch (with sub-second precision): an Event's wall_time.
double unix_time_now();

// CRC-32C (Castagnoli), software table. `crc` continues a previous value (crc32c(a+b) ==
// crc32c(b, crc32c(a))); crc32c("123456789") == 0xE3069283, crc32c("") == 0.
uint32_t crc32c(const void* data, size_t size, uint32_t crc = 0);
// TFRecord's CRC mask and its inverse.
uint32_t mask_crc32c(uint32_t crc);
uint32_t unmask_crc32c(uint32_t masked);

// One TFRecord frame around `data` (length, masked CRC of the length, data, masked CRC of the data).
std::string tfrecord_frame(const std::string& data);
// Serialized Event messages: the file-version header, and one scalar summary (value stored as float32).
std::string tensorboard_version_event(double wall_time);
std::string tensorboard_scalar_event(const std::string& tag, double value, int64_t step, double wall_time);

// Writes scalars to LOGDIR/events.out.tfevents.<unix seconds>.<hostname>.stoke (a suffix .N is added before
// .stoke if that name exists already, so two writers never share a file). The constructor creates LOGDIR
// (and parents), creates the file and writes the file_version record; records are buffered in memory and
// reach the file at flush(), when 64 KiB have accumulated, and in the destructor. Each record is written
// whole, so a crash can only lose (or tear) the tail, which TensorBoard ignores.
//
// A resumed run should open a new writer in the same LOGDIR: TensorBoard merges the files of a folder.
// Steps logged again after a resume appear twice (TensorBoard shows both; the later one is drawn last).
//
// Thread-safe (one mutex). The constructor and flush() throw stoke::Error naming the file and the system's
// reason (e.g. "No space left on device"); the destructor never throws.
class TensorBoardWriter {
 public:
  explicit TensorBoardWriter(const std::string& logdir);
  ~TensorBoardWriter();
  TensorBoardWriter(const TensorBoardWriter&) = delete;
  TensorBoardWriter& operator=(const TensorBoardWriter&) = delete;

  // One scalar under `tag` (TensorBoard groups tags by their prefix before '/': "train/loss").
  void scalar(const std::string& tag, double value, int64_t step, double wall_time = unix_time_now());
  void flush();
  const std::string& path() const { return path_; }

 private:
  void write_locked(const std::string& bytes);  // to the file, throws on failure
  std::mutex mu_;
  std::string path_;
  std::FILE* file_ = nullptr;
  std::string pending_;
};

// Logs one metrics.jsonl object (as the trainer writes them) as scalars; fields absent or not numbers are
// left out. The tags:
//   {"kind":"train"}: train/loss, train/acc, train/lr, perf/img_per_s, and when present perf/gpu_busy,
//                     perf/input_stall, perf/decoders, perf/comm_share                    (at "step")
//   {"kind":"epoch"}: epoch/train_loss, epoch/train_acc, val/loss, val/acc, val/auc, epoch/img_per_s,
//                     epoch/seconds, perf/rss_mib, perf/input_wait_s, perf/input_stall, and when present
//                     perf/gpu_busy, perf/decoders, perf/comm_share                       (at "step")
// Other kinds are ignored, and so are lines without a numeric "step" that fits an int64.
void tensorboard_log_metrics(TensorBoardWriter& w, const nlohmann::json& line, double wall_time = unix_time_now());

// Writes a new event file in `logdir` from RUNDIR/metrics.jsonl after the fact (for runs trained without a
// live writer). Wall times are reconstructed from the lines' elapsed_s, ending at the file's modification
// time. A torn last line is skipped. Returns the event file's path. Throws stoke::Error when metrics.jsonl
// cannot be read.
std::string export_tensorboard(const std::string& run_dir, const std::string& logdir);

}  // namespace stoke
