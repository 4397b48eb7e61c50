// Input-pipeline microbenchmarks: the cost of handing a batch through the BatchRing (1 and several producers,
// no decoding), the JPEG decode paths on a 28x28 gray and a 500x375 RGB image, and reading a small sample from
// a file versus a pack. The end-to-end pipeline against raw libjpeg-turbo is `stoke bench-input`
// (io/pipeline/bench_input.h).
#include <benchmark/benchmark.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "base/fs.h"
#include "io/codec/jpeg.h"
#include "io/codec/resize.h"
#include "io/pipeline/augment.h"
#include "io/pipeline/batch_ring.h"
#include "io/pipeline/bench_input.h"
#include "io/source/pack.h"

using namespace stoke::io;

namespace {

std::vector<uint8_t> smooth(int h, int w, int c) {
  std::vector<uint8_t> px(static_cast<size_t>(h) * w * c);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int k = 0; k < c; ++k) {
        const double v = 40.0 + 150.0 * (x + y + 20.0 * k) / (w + h + 40.0) + 30.0 * std::sin(x / (7.0 + 3 * k)) +
                         25.0 * std::cos(y / (9.0 + 2 * k) + x / 37.0);
        px[(static_cast<size_t>(y) * w + x) * c + k] = static_cast<uint8_t>(std::clamp(v, 0.0, 255.0));
      }
  return px;
}

const std::vector<uint8_t>& small_jpeg() {  // MNIST-like: 28x28 gray, quality 90
  static const std::vector<uint8_t> j = [] {
    const auto px = smooth(28, 28, 1);
    return encode_jpeg(px.data(), 28, 28, 1, 90);
  }();
  return j;
}

const std::vector<uint8_t>& photo_jpeg() {  // a 500x375 photo-sized RGB image, quality 90 (4:4:4)
  static const std::vector<uint8_t> j = [] {
    const auto px = smooth(375, 500, 3);
    return encode_jpeg(px.data(), 375, 500, 3, 90);
  }();
  return j;
}

// ns per batch through the ring: producers claim + publish, the benchmark thread acquires + releases.
void BM_RingHandoff(benchmark::State& st) {
  const int producers = static_cast<int>(st.range(0));
  BatchRing ring(8, 1, 64, false);
  ring.reset(static_cast<int64_t>(st.max_iterations));
  std::vector<std::thread> ps;
  for (int p = 0; p < producers; ++p)
    ps.emplace_back([&] {
      for (;;) {
        const int64_t t = ring.claim();
        if (t < 0) return;
        ring.slot_of(t).labels[0] = static_cast<int32_t>(t);
        ring.publish(t);
      }
    });
  for (auto _ : st) {
    BatchSlot s;
    const int64_t t = ring.acquire(&s);
    benchmark::DoNotOptimize(s.labels[0]);
    ring.release(t);
  }
  ring.close();
  for (auto& t : ps) t.join();
  st.SetItemsProcessed(st.iterations());  // batches/s; the time per iteration is the hand-off cost
}
BENCHMARK(BM_RingHandoff)->Arg(1)->Arg(2)->Arg(4)->UseRealTime();

// The ring's own bookkeeping per batch with nobody waiting (a full ring in steady state): claim, publish,
// acquire, release on one thread.
void BM_RingCycleUncontended(benchmark::State& st) {
  BatchRing ring(8, 1, 64, false);
  for (auto _ : st) {
    const int64_t t = ring.claim();
    ring.publish(t);
    BatchSlot s;
    benchmark::DoNotOptimize(ring.acquire(&s));
    ring.release(t);
  }
  st.SetItemsProcessed(st.iterations());
}
BENCHMARK(BM_RingCycleUncontended);

// The pipeline's decode (decode_sample: eval = plain resize, train = random-resized-crop + flip).
void decode_bench(benchmark::State& st, const std::vector<uint8_t>& jpg, int h, int w, int c, bool augment) {
  TransformConfig t;
  t.h = h;
  t.w = w;
  t.c = c;
  t.augment = augment;
  std::vector<uint8_t> dst(static_cast<size_t>(h) * w * c);
  std::string err;
  uint64_t id = 0;
  for (auto _ : st) {
    if (!decode_sample(t, jpg, 0, id++, dst.data(), &err)) st.SkipWithError(err.c_str());
    benchmark::DoNotOptimize(dst.data());
  }
  st.SetItemsProcessed(st.iterations());
}

void BM_DecodeSmall28(benchmark::State& st) { decode_bench(st, small_jpeg(), 28, 28, 1, false); }
BENCHMARK(BM_DecodeSmall28)->Unit(benchmark::kMicrosecond);
void BM_Decode500x375_Full(benchmark::State& st) { decode_bench(st, photo_jpeg(), 375, 500, 3, false); }
BENCHMARK(BM_Decode500x375_Full)->Unit(benchmark::kMicrosecond);
void BM_Decode500x375_Eval224(benchmark::State& st) { decode_bench(st, photo_jpeg(), 224, 224, 3, false); }
BENCHMARK(BM_Decode500x375_Eval224)->Unit(benchmark::kMicrosecond);
void BM_Decode500x375_TrainCrop224(benchmark::State& st) { decode_bench(st, photo_jpeg(), 224, 224, 3, true); }
BENCHMARK(BM_Decode500x375_TrainCrop224)->Unit(benchmark::kMicrosecond);
void BM_Decode500x375_TrainCrop64(benchmark::State& st) { decode_bench(st, photo_jpeg(), 64, 64, 3, true); }
BENCHMARK(BM_Decode500x375_TrainCrop64)->Unit(benchmark::kMicrosecond);

// The decoders' geometry on a 234x234x3 region (500x375 at DCT scale 5/8, centre crop) to 224x224: the plain resize
// against the affine pass with a monai-like warp (rotation 10 degrees, zoom 1.05), and the colour pass alone.
void BM_ResizeRegion234To224(benchmark::State& st) {
  const auto src = smooth(234, 234, 3);
  std::vector<uint8_t> dst(224 * 224 * 3);
  for (auto _ : st) {
    resize_bilinear(src.data(), 234, 234, 3, dst.data(), 224, 224);
    benchmark::DoNotOptimize(dst.data());
  }
}
BENCHMARK(BM_ResizeRegion234To224)->Unit(benchmark::kMicrosecond);
void BM_ResizeAffineRegion234To224(benchmark::State& st) {
  const auto src = smooth(234, 234, 3);
  std::vector<uint8_t> dst(224 * 224 * 3);
  const double a = 10.0 * 3.14159265358979 / 180, z = 1.05, c = std::cos(a) / z, s = std::sin(a) / z;
  const double m[6] = {c, -s, 112 - c * 112 + s * 112, s, c, 112 - s * 112 - c * 112};
  const uint8_t fill[3] = {0, 0, 0};
  for (auto _ : st) {
    resize_affine(src.data(), 234, 234, 3, 234 * 3, dst.data(), 224, 224, m, fill);
    benchmark::DoNotOptimize(dst.data());
  }
}
BENCHMARK(BM_ResizeAffineRegion234To224)->Unit(benchmark::kMicrosecond);
void colour_bench(benchmark::State& st, bool mix) {
  auto px = smooth(224, 224, 3);
  DecoderAugment a;
  a.colour = true;
  a.matrix[0][0] = 1.2f;
  a.matrix[1][1] = 0.9f;
  a.matrix[2][2] = 1.1f;
  if (mix) a.matrix[0][1] = a.matrix[1][2] = a.matrix[2][0] = 0.1f;
  a.offset[0] = a.offset[1] = a.offset[2] = -10.f;
  for (auto _ : st) {
    apply_decoder_colour(a, px.data(), 224, 224, 3);
    benchmark::DoNotOptimize(px.data());
  }
}
void BM_ColourTable224(benchmark::State& st) { colour_bench(st, false); }
BENCHMARK(BM_ColourTable224)->Unit(benchmark::kMicrosecond);
void BM_ColourMatrix224(benchmark::State& st) { colour_bench(st, true); }
BENCHMARK(BM_ColourMatrix224)->Unit(benchmark::kMicrosecond);

// The tjbench-style raw decode (the reference of `stoke bench-input`), per image.
void raw_bench(benchmark::State& st, const std::vector<uint8_t>& jpg, int c) {
  const std::vector<std::vector<uint8_t>> files(1, jpg);
  double rate = 0;
  for (auto _ : st) rate = raw_decode_rate(files, c, 0.2);
  st.counters["img/s"] = rate;
  st.counters["us/img"] = 1e6 / rate;
}
void BM_RawDecodeSmall28(benchmark::State& st) { raw_bench(st, small_jpeg(), 1); }
BENCHMARK(BM_RawDecodeSmall28)->Iterations(3)->Unit(benchmark::kMillisecond);
void BM_RawDecode500x375(benchmark::State& st) { raw_bench(st, photo_jpeg(), 3); }
BENCHMARK(BM_RawDecode500x375)->Iterations(3)->Unit(benchmark::kMillisecond);

// Reading a small sample: open/fstat/read/close of a file versus a view into a mapped pack.
struct SmallFiles {
  std::filesystem::path dir = std::filesystem::temp_directory_path() / ("stoke-bench-io-" + std::to_string(::getpid()));
  std::shared_ptr<PackReader> pack;
  std::vector<std::string> paths;
  SmallFiles() {
    std::filesystem::create_directories(dir / "data" / "a");
    for (int i = 0; i < 256; ++i) {
      const std::string p = (dir / "data" / "a" / (std::to_string(i) + ".jpg")).string();
      stoke::write_file(p, small_jpeg().data(), small_jpeg().size());
      paths.push_back(p);
    }
    pack_image_folder((dir / "data").string(), (dir / "data.pack").string());
    pack = PackReader::open((dir / "data.pack").string());
  }
  ~SmallFiles() {
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }
};

SmallFiles& small_files() {
  static SmallFiles f;
  return f;
}

void BM_ReadSmallFile(benchmark::State& st) {
  SmallFiles& f = small_files();
  std::vector<uint8_t> scratch;
  size_t i = 0, n = 0;
  for (auto _ : st) {
    read_file_into(f.paths[i++ % f.paths.size()], scratch, n, nullptr);
    benchmark::DoNotOptimize(scratch.data());
  }
  st.SetItemsProcessed(st.iterations());
}
BENCHMARK(BM_ReadSmallFile)->Unit(benchmark::kMicrosecond);

void BM_ReadSmallFromPack(benchmark::State& st) {
  SmallFiles& f = small_files();
  std::vector<uint8_t> scratch;
  int64_t i = 0;
  for (auto _ : st) {
    std::span<const uint8_t> b;
    f.pack->read(i++ % f.pack->size(), scratch, b, nullptr);
    benchmark::DoNotOptimize(b.data());
  }
  st.SetItemsProcessed(st.iterations());
}
BENCHMARK(BM_ReadSmallFromPack)->Unit(benchmark::kMicrosecond);

}  // namespace

// `bench_io --data DIR|PACK [--threads 1,2,4] [--seconds S] [--size HxW]` runs the end-to-end input benchmark
// (what `stoke bench-input` prints); otherwise the Google Benchmark microbenchmarks above.
int main(int argc, char** argv) {
  BenchInputOptions o;
  bool input = false;
  std::vector<char*> rest{argv[0]};
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto value = [&]() -> std::string { return i + 1 < argc ? argv[++i] : ""; };
    if (a == "--data") {
      o.data = value();
      input = true;
    } else if (a == "--threads") {
      const std::string v = value();
      for (size_t p = 0; p < v.size();) {
        const size_t q = v.find(',', p);
        o.threads.push_back(std::stoi(v.substr(p, q - p)));
        p = q == std::string::npos ? v.size() : q + 1;
      }
    } else if (a == "--seconds") {
      o.seconds = std::stod(value());
    } else if (a == "--size") {
      const std::string v = value();
      o.h = std::stoi(v.substr(0, v.find('x')));
      o.w = std::stoi(v.substr(v.find('x') + 1));
    } else if (a == "--augment") {
      o.augment = true;
    } else {
      rest.push_back(argv[i]);
    }
  }
  if (input) {
    try {
      const BenchInputResult r = bench_input(o, [](const std::string& m) { std::fprintf(stderr, "%s\n", m.c_str()); });
      std::printf("%s", format_bench_input(r).c_str());
      return 0;
    } catch (const std::exception& e) {
      std::fprintf(stderr, "error: %s\n", e.what());
      return 2;
    }
  }
  int n = static_cast<int>(rest.size());
  benchmark::Initialize(&n, rest.data());
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
