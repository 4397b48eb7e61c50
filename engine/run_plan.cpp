// The parts of a run's plan that need nothing but the flags: the data (engine/run_plan.h).
#include "engine/run_plan.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

#include "base/display_name.h"
#include "base/error.h"
#include "base/fs.h"
#include "base/permutation.h"
#include "engine/resume.h"
#include "io/codec/codec.h"

namespace stoke {

namespace {

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

// --cache auto|files: a folder's files are read from disk once, then their (encoded) bytes come from memory, so
// small JPEGs cost no open/read/close per epoch (io/source/file_cache.h). One budget for both sets, shared by size.
void cache_files(const TrainConfig& cfg, RunData& d) {
  if ((cfg.cache != CacheMode::automatic && cfg.cache != CacheMode::files) ||
      !dynamic_cast<const io::FolderSource*>(d.train_all.get()))
    return;
  const int64_t budget = cfg.cache_budget_mb > 0 ? int64_t{cfg.cache_budget_mb} << 20 : io::default_file_cache_budget();
  const int64_t n_train = d.train_src->size(), n_val = d.has_val ? d.val_src->size() : 0;
  const int64_t train_budget = n_val == 0 ? budget : budget / (n_train + n_val) * n_train;
  d.train_files = std::make_shared<io::FileCacheSource>(d.train_src, train_budget);
  d.train_src = d.train_files;
  if (d.has_val && dynamic_cast<const io::FolderSource*>(d.val_all.get())) {
    d.val_files = std::make_shared<io::FileCacheSource>(d.val_src, budget - train_budget);
    d.val_src = d.val_files;
  }
}

}  // namespace

RunData open_run_data(const TrainConfig& cfg) {
  io::set_apply_exif_orientation(cfg.exif_orientation);  // before any header is read: it decides the image sizes
  RunData d;
  // A folder (ImageFolder) or a pack file (stoke pack) for either.
  d.train_all = io::open_source(cfg.data);
  d.has_val = !cfg.val.empty();
  if (d.has_val) {
    d.val_all = io::open_source(cfg.val);
    if (d.val_all->classes() != d.train_all->classes())
      throw UserError(
          str("the classes of --val ", display_name(cfg.val), " differ from those of --data ", display_name(cfg.data),
              ": ", io::class_difference(d.train_all->classes(), d.val_all->classes(), "--val"),
              " (a label is a class folder's place among the sorted names, so both need the same folders)"));
  }
  d.train_src = subset(d.train_all, cfg.limit_train, cfg.seed);
  d.val_src = d.has_val ? subset(d.val_all, cfg.limit_val, cfg.seed + 1) : nullptr;
  d.class_names = d.train_all->classes();
  io::DataShape ds = io::probe_source_shape(*d.train_all);
  d.shape = Shape3{ds.h, ds.w, ds.c};
  if (cfg.image_size > 0)
    d.shape.h = d.shape.w = cfg.image_size;
  else
    d.shape_note = ds.why;
  d.classes = static_cast<int>(d.class_names.size());
  d.train_count = d.train_src->size();
  d.val_count = d.has_val ? d.val_src->size() : 0;
  d.fingerprint = dataset_fingerprint(*d.train_src);
  cache_files(cfg, d);
  return d;
}

// A batch larger than the training set, and the images each epoch leaves out when the batch does not divide it.
std::string batch_fit_note(int64_t requested, bool given, int64_t batch, int64_t images) {
  std::string note;
  if (requested > batch)
    note = str(given ? str("--batch-size ", requested) : str("the batch of ", requested), " is more than the ", images,
               " training images, so the batch is ", batch, " (as a PyTorch DataLoader gives one short batch)");
  const int64_t steps = images / batch, left_out = images - steps * batch;
  if (left_out > 0)
    note += str(note.empty() ? "" : "; ", images, " training images make ", steps, " step", steps == 1 ? "" : "s",
                " of ", batch, " per epoch, the other ", left_out,
                " are left out (drop_last: every step is a full batch), a "
                "different ",
                left_out, " each epoch as the order is reshuffled");
  return note.empty() ? note : "batch: " + note;
}

namespace {

// "0.5" or "0.485:0.456:0.406": one number, or one per channel.
std::vector<float> numbers(const std::string& list, const std::string& spec) {
  std::vector<float> v;
  size_t start = 0;
  while (true) {
    const size_t end = list.find(':', start);
    const std::string one = list.substr(start, end == std::string::npos ? std::string::npos : end - start);
    size_t used = 0;
    double x = 0;
    try {
      x = std::stod(one, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (one.empty() || used != one.size() || !std::isfinite(x))
      throw UserError(str("--normalize ", spec, ": '", one,
                          "' is not a number (data, imagenet, none, or MEAN,STD such as "
                          "0.5,0.25 or 0.485:0.456:0.406,0.229:0.224:0.225)"));
    v.push_back(static_cast<float>(x));
    if (end == std::string::npos) return v;
    start = end + 1;
  }
}

// One value per channel: a single one repeated, the mean of several for 1-channel data, or exactly `channels`.
std::vector<float> per_channel(std::vector<float> v, int channels, const std::string& spec) {
  if (channels <= 0 || static_cast<int>(v.size()) == channels) return v;
  if (v.size() == 1) return std::vector<float>(static_cast<size_t>(channels), v[0]);
  if (channels == 1) {
    double sum = 0;
    for (float x : v) sum += x;
    return {static_cast<float>(sum / static_cast<double>(v.size()))};
  }
  throw UserError(str("--normalize ", spec, ": ", v.size(), " values for ", channels, "-channel data (give one, or ",
                      channels, ")"));
}

}  // namespace

bool fixed_normalization(const std::string& spec, int channels, std::vector<float>& mean, std::vector<float>& stdev) {
  if (spec.empty() || spec == "data") return false;
  std::vector<float> m, s;
  if (spec == "imagenet") {
    m = {0.485f, 0.456f, 0.406f};
    s = {0.229f, 0.224f, 0.225f};
  } else if (spec == "none") {
    m = {0.f};
    s = {1.f};
  } else {
    const size_t comma = spec.find(',');
    if (comma == std::string::npos || spec.find(',', comma + 1) != std::string::npos)
      throw UserError(str("--normalize ", spec,
                          ": expected data, imagenet, none, or MEAN,STD (per channel "
                          "M1:M2:M3,S1:S2:S3)"));
    m = numbers(spec.substr(0, comma), spec);
    s = numbers(spec.substr(comma + 1), spec);
    if (m.size() != s.size())
      throw UserError(str("--normalize ", spec, ": ", m.size(), " means but ", s.size(), " standard deviations"));
    for (float x : s)
      if (!(x > 0.f)) throw UserError(str("--normalize ", spec, ": a standard deviation must be positive"));
  }
  mean = per_channel(m, channels, spec);
  stdev = per_channel(s, channels, spec);
  return true;
}

std::string normalization_spec(const std::vector<float>& mean, const std::vector<float>& stdev, int channels) {
  auto list = [&](const std::vector<float>& v) {
    std::string out;
    for (float x : per_channel(v, channels, "of the --init run")) {
      char b[32];
      std::snprintf(b, sizeof b, "%.9g", static_cast<double>(x));
      out += str(out.empty() ? "" : ":", b);
    }
    return out;
  };
  return list(mean) + "," + list(stdev);
}

}  // namespace stoke
