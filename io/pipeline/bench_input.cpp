#include "io/pipeline/bench_input.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <ctime>

// jpeglib.h needs size_t and FILE declared first.
#include <jpeglib.h>

#include "base/error.h"
#include "io/codec/codec.h"
#include "io/pipeline/decoder_pool.h"
#include "io/pipeline/input_pipeline.h"
#include "io/source/file_cache.h"
#include "io/source/source.h"

namespace stoke::io {

namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

double cpu_seconds(clockid_t which) {
  timespec ts{};
  ::clock_gettime(which, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

// tjbench's loop on the libjpeg API (the TurboJPEG library is not part of Debian's libjpeg62-turbo-dev):
// one decompressor, reused; each image decoded whole, at full size, scanline by scanline.
struct RawErr {
  jpeg_error_mgr pub;
  jmp_buf jump;
};

[[noreturn]] void raw_error_exit(j_common_ptr cinfo) { longjmp(reinterpret_cast<RawErr*>(cinfo->err)->jump, 1); }
void raw_silent(j_common_ptr, int) {}

struct RawDecoder {
  jpeg_decompress_struct cinfo;
  RawErr err;
  RawDecoder() {
    std::memset(&cinfo, 0, sizeof cinfo);
    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = raw_error_exit;
    err.pub.emit_message = raw_silent;
    jpeg_create_decompress(&cinfo);
  }
  ~RawDecoder() { jpeg_destroy_decompress(&cinfo); }
  RawDecoder(const RawDecoder&) = delete;
  RawDecoder& operator=(const RawDecoder&) = delete;

  // No C++ objects in this frame (setjmp). buf must hold the largest decoded image.
  bool decode(const uint8_t* data, size_t size, int channels, uint8_t* buf, size_t buf_size) {
    if (setjmp(err.jump)) {
      jpeg_abort_decompress(&cinfo);
      return false;
    }
    jpeg_mem_src(&cinfo, data, static_cast<unsigned long>(size));
    jpeg_read_header(&cinfo, TRUE);
    if (cinfo.jpeg_color_space == JCS_CMYK || cinfo.jpeg_color_space == JCS_YCCK) {
      jpeg_abort_decompress(&cinfo);
      return false;  // the pipeline converts these by hand; not what a reference measures
    }
    cinfo.out_color_space = channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_start_decompress(&cinfo);
    const size_t stride = static_cast<size_t>(cinfo.output_width) * cinfo.output_components;
    if (stride * cinfo.output_height > buf_size) {
      jpeg_abort_decompress(&cinfo);
      return false;
    }
    JSAMPROW rows[16];
    while (cinfo.output_scanline < cinfo.output_height) {
      const JDIMENSION n = std::min<JDIMENSION>(16, cinfo.output_height - cinfo.output_scanline);
      for (JDIMENSION i = 0; i < n; ++i) rows[i] = buf + (cinfo.output_scanline + i) * stride;
      jpeg_read_scanlines(&cinfo, rows, n);
    }
    jpeg_finish_decompress(&cinfo);
    return true;
  }
};

}  // namespace

double raw_decode_rate(std::span<const std::vector<uint8_t>> files, int channels, double seconds, double* cpu_rate) {
  if (files.empty()) return 0;
  // Big enough for any image we accept (io/codec/image.cpp caps at 100 megapixels), allocated lazily by size.
  size_t biggest = 0;
  for (const auto& f : files) {
    ImageInfo info;
    if (image_info(f.data(), f.size(), info, nullptr))
      biggest = std::max(biggest, static_cast<size_t>(info.h) * info.w * static_cast<size_t>(std::max(channels, 3)));
  }
  if (biggest == 0) return 0;
  std::vector<uint8_t> buf(biggest);
  RawDecoder dec;
  // Warm-up pass, then whole passes until the time is up.
  for (const auto& f : files) dec.decode(f.data(), f.size(), channels, buf.data(), buf.size());
  int64_t done = 0;
  const auto t0 = Clock::now();
  const double c0 = cpu_seconds(CLOCK_THREAD_CPUTIME_ID);
  double elapsed = 0;
  do {
    for (const auto& f : files) done += dec.decode(f.data(), f.size(), channels, buf.data(), buf.size()) ? 1 : 0;
    elapsed = since(t0);
  } while (elapsed < seconds);
  if (cpu_rate) *cpu_rate = static_cast<double>(done) / std::max(1e-9, cpu_seconds(CLOCK_THREAD_CPUTIME_ID) - c0);
  return static_cast<double>(done) / elapsed;
}

BenchInputResult bench_input(const BenchInputOptions& o, const std::function<void(const std::string&)>& progress) {
  auto say = [&](const std::string& m) {
    if (progress) progress(m);
  };
  const std::shared_ptr<const Source> all = open_source(o.data);
  BenchInputResult r;
  const DataShape shape = probe_source_shape(*all);
  r.h = o.h > 0 ? o.h : shape.h;
  r.w = o.w > 0 ? o.w : shape.w;
  r.c = o.c > 0 ? o.c : shape.c;

  // The samples: spread over the set, within the file and byte budgets, loaded into memory.
  const int64_t n = all->size();
  const int64_t want = std::max<int64_t>(1, std::min(n, o.max_files));
  std::vector<int64_t> picked;
  std::vector<std::vector<uint8_t>> files;
  std::vector<uint8_t> scratch;
  int64_t bytes = 0;
  for (int64_t k = 0; k < want && bytes < o.max_bytes; ++k) {
    const int64_t i = k * n / want;
    std::span<const uint8_t> b;
    std::string err;
    ImageInfo info;
    if (all->read(i, scratch, b, &err) != ReadStatus::ok || !image_info(b.data(), b.size(), info, &err)) continue;
    picked.push_back(i);
    files.emplace_back(b.begin(), b.end());
    bytes += static_cast<int64_t>(b.size());
  }
  if (files.empty()) throw UserError(str("no decodable JPEG in ", all->description()));
  r.files = static_cast<int64_t>(files.size());
  r.mean_file_bytes = static_cast<double>(bytes) / static_cast<double>(files.size());
  if (o.cache != "auto" && o.cache != "files" && o.cache != "none")
    throw UserError(str("--cache must be auto, files or none (got '", o.cache, "')"));
  std::shared_ptr<const Source> source = std::make_shared<SubsetSource>(all, picked);
  r.file_cache = o.cache != "none" && dynamic_cast<const FolderSource*>(all.get()) != nullptr;
  if (r.file_cache) source = std::make_shared<FileCacheSource>(source, default_file_cache_budget());
  r.source = all->description();
  say(str("loaded ", r.files, " files (", std::lround(r.mean_file_bytes), " bytes each on average) from ", r.source));

  r.reference_images_per_second = raw_decode_rate(files, r.c, o.seconds, &r.reference_images_per_cpu_second);
  say(str("reference: raw libjpeg-turbo, 1 thread, from memory: ", std::lround(r.reference_images_per_second),
          " img/s (", std::lround(r.reference_images_per_cpu_second), " per CPU-second)"));

  std::vector<int> threads = o.threads;
  if (threads.empty()) {
    const int tmax = o.max_threads > 0 ? o.max_threads : available_cores();
    for (int t = 1; t <= tmax; ++t) threads.push_back(t);
  }
  const int batch = static_cast<int>(std::max<int64_t>(1, std::min<int64_t>(o.batch, r.files)));
  // Each row is compared with the reference measured just before and just after it: on a machine shared with
  // other work the reference's own rate drifts by 20% within a minute, more than the overheads looked for.
  double ref_before = r.reference_images_per_second, ref_cpu_before = r.reference_images_per_cpu_second;
  for (int t : threads) {
    PipelineConfig pc;
    pc.h = r.h;
    pc.w = r.w;
    pc.c = r.c;
    pc.batch = batch;
    pc.decoders = t;
    pc.seed = 1;
    pc.augment = o.augment;
    pc.aug.hflip = o.hflip;
    if (o.decoder_augment) pc.decoder_augment = o.decoder_augment(r.h, r.w, r.c);
    pc.pinned = false;
    pc.on_warning = [&](const std::string& m) { say(str("warning: ", m)); };
    InputPipeline pipe(source, pc);
    pipe.start(0, 0);
    // Warm-up: a quarter of the time (threads started, caches and the ring filled), then the measurement.
    struct Window {
      int64_t images = 0;
      double wall = 0, cpu = 0;
    };
    auto run_for = [&](double secs) {
      Window w;
      const auto t0 = Clock::now();
      const double c0 = cpu_seconds(CLOCK_PROCESS_CPUTIME_ID);
      do {
        Batch b = pipe.acquire();
        if (!b) break;
        w.images += b.size;
        pipe.release(b.tag);
        w.wall = since(t0);
      } while (w.wall < secs);
      w.cpu = cpu_seconds(CLOCK_PROCESS_CPUTIME_ID) - c0;
      return w;
    };
    run_for(o.seconds / 4);
    const Window win = run_for(o.seconds);
    pipe.stop();
    double ref_cpu_after = 0;
    const double ref_after = raw_decode_rate(files, r.c, o.seconds / 2, &ref_cpu_after);
    BenchInputRow row;
    row.threads = t;
    row.reference_images_per_second = (ref_before + ref_after) / 2;
    row.reference_images_per_cpu_second = (ref_cpu_before + ref_cpu_after) / 2;
    ref_before = ref_after;
    ref_cpu_before = ref_cpu_after;
    row.images_per_second = static_cast<double>(win.images) / std::max(1e-9, win.wall);
    row.efficiency =
        row.reference_images_per_second > 0 ? row.images_per_second / (t * row.reference_images_per_second) : 0;
    row.cpu_efficiency = row.reference_images_per_cpu_second > 0 && win.cpu > 0
                             ? static_cast<double>(win.images) / win.cpu / row.reference_images_per_cpu_second
                             : 0;
    r.rows.push_back(row);
    say(str("pipeline, ", t, " decoder thread", t > 1 ? "s" : "", ": ", std::lround(row.images_per_second), " img/s"));
  }
  return r;
}

std::string format_bench_input(const BenchInputResult& r) {
  std::string out =
      str("data: ", r.source, "\ndecode to ", r.h, "x", r.w, "x", r.c, "; ", r.files, " files in memory, ",
          std::lround(r.mean_file_bytes), " bytes on average\n",
          r.file_cache ? "pipeline reads: the folder through the file cache, as training does (each file from "
                         "disk once, then from memory; --cache none: every read from disk)\n"
                       : "");
  char line[200];
  std::snprintf(line, sizeof line,
                "reference (raw libjpeg-turbo, 1 thread, from memory): %.0f img/s (%.0f per CPU-second)\n",
                r.reference_images_per_second, r.reference_images_per_cpu_second);
  out += line;
  out += "threads   pipeline img/s   threads x reference   efficiency   cpu efficiency   reference per CPU-s\n";
  for (const BenchInputRow& row : r.rows) {
    std::snprintf(line, sizeof line, "%7d   %14.0f   %19.0f   %10.2f   %14.2f   %19.0f\n", row.threads,
                  row.images_per_second, row.threads * row.reference_images_per_second, row.efficiency,
                  row.cpu_efficiency, row.reference_images_per_cpu_second);
    out += line;
  }
  out +=
      "(efficiency = pipeline / (threads x reference); cpu efficiency = images per CPU-second of the whole\n"
      " process, decoders and consumer, / the reference's: the pipeline's own overhead, whatever else the\n"
      " machine is running; each row against the reference measured just before and just after it)\n";
  return out;
}

}  // namespace stoke::io
