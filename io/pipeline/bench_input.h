// `stoke bench-input --data DIR|PACK`: how fast the input pipeline decodes this data, against the raw decoder.
//
// 1. Loads up to max_files samples (spread over the set, at most max_bytes in total) into memory.
// 2. The reference: one thread decoding those bytes from memory with libjpeg-turbo in a tjbench-style loop
//    (jpeg_read_header, jpeg_start_decompress, every scanline at full size, to gray or RGB as the pipeline
//    outputs), images/s.
// 3. The pipeline (InputPipeline over the same samples, read from the folder or pack as training would, decoded to
//    the data's own size unless h/w are given, no augmentation) at 1, 2, ... max_threads decoder threads, with a
//    consumer that takes and releases batches as fast as they come. Each row: images/s and
//    efficiency = pipeline / (threads x reference), the reference measured again after each row and the row
//    compared with the mean of the measurements around it. The design targets 0.90 (0.70 for 28x28 from a pack).
#pragma once

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "io/pipeline/decoder_augment.h"

namespace stoke::io {

struct BenchInputOptions {
  std::string data;            // ImageFolder or pack
  int h = 0, w = 0, c = 0;     // decode target (0: the data's own size, probed)
  int batch = 64;
  int max_threads = 0;         // 0: available cores
  std::vector<int> threads;    // explicit list (overrides 1..max_threads)
  double seconds = 2.0;        // per measurement
  int64_t max_files = 4000;
  int64_t max_bytes = int64_t{256} << 20;
  bool augment = false;        // random-resized-crop + flip in the pipeline (the reference stays a full decode)
  bool hflip = true;           // with augment: the decoders' flip (off when a recipe flips)
  // A recipe on the decoder threads (decoder_augment.h), made once the decode size is known (the engine's
  // decoder_augment_fn; empty: none).
  std::function<DecoderAugmentFn(int h, int w, int c)> decoder_augment;
  std::string cache = "auto";  // auto | files: a folder's files through io::FileCacheSource, as training reads them
                               // (each file from disk once, then from memory) | none: every read from disk
};

struct BenchInputRow {
  int threads = 0;
  double images_per_second = 0;
  double efficiency = 0;  // images_per_second / (threads * reference)
  // Load-independent view: images per CPU-second of the whole process (decoders, consumer, watchdog) against the
  // reference's images per CPU-second. On a machine whose cores are busy with other work the wall-clock
  // efficiency drops, this one does not: it shows the pipeline's own overhead.
  double cpu_efficiency = 0;
  // The reference this row is compared with: the mean of the measurements just before and just after it.
  double reference_images_per_second = 0, reference_images_per_cpu_second = 0;
};

struct BenchInputResult {
  std::string source;           // description of the data
  int h = 0, w = 0, c = 0;
  int64_t files = 0;
  double mean_file_bytes = 0;
  bool file_cache = false;      // the pipeline read a folder through the file cache
  double reference_images_per_second = 0;      // wall clock
  double reference_images_per_cpu_second = 0;  // thread CPU time
  std::vector<BenchInputRow> rows;
};

// Throws stoke::UserError for unusable data. progress (optional) gets a line per finished step.
BenchInputResult bench_input(const BenchInputOptions& options,
                             const std::function<void(const std::string&)>& progress = {});
std::string format_bench_input(const BenchInputResult& r);

// The reference loop alone: single-thread decodes/s of `files` (JPEG bytes in memory) to `channels`, for about
// `seconds` (wall clock); *cpu_rate (optional) gets the decodes per second of the thread's CPU time. Files that fail
// to decode are skipped (and not counted).
double raw_decode_rate(std::span<const std::vector<uint8_t>> files, int channels, double seconds,
                       double* cpu_rate = nullptr);

}  // namespace stoke::io
