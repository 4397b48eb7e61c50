#include "io/pipeline/sampler.h"

#include <utility>

#include "base/error.h"
#include "base/permutation.h"

namespace stoke::io {

Sampler::Sampler(const SamplerConfig& cfg) : cfg_(cfg) {
  if (cfg.samples <= 0) throw UserError("the sampler has no samples to draw from");
  if (cfg.batch < 1) throw UserError(str("batch size must be at least 1 (got ", cfg.batch, ")"));
  if (cfg.world < 1 || cfg.rank < 0 || cfg.rank >= cfg.world)
    throw UserError(str("rank ", cfg.rank, " is outside a world of ", cfg.world));
  const int64_t per_round = int64_t{cfg.batch} * cfg.world;
  batches_ = cfg.drop_last ? cfg.samples / per_round : (cfg.samples + per_round - 1) / per_round;
  if (batches_ == 0)
    throw UserError(str(cfg.samples, " samples make no full batch of ", cfg.batch,
                        cfg.world > 1 ? str(" on each of ", cfg.world, " ranks") : std::string(),
                        " (drop_last); use a smaller batch size"));
}

void Sampler::permutation(int64_t epoch, std::span<int64_t> out) const {
  const int64_t n = cfg_.samples;
  STOKE_CHECK(static_cast<int64_t>(out.size()) == n, "permutation buffer of ", out.size(), " for ", n, " samples");
  if (!cfg_.shuffle) {
    for (int64_t i = 0; i < n; ++i) out[static_cast<size_t>(i)] = i;
    return;
  }
  epoch_permutation(cfg_.seed, epoch, out);
}

std::vector<int64_t> Sampler::permutation(int64_t epoch) const {
  std::vector<int64_t> p(static_cast<size_t>(cfg_.samples));
  permutation(epoch, p);
  return p;
}

int Sampler::batch_ids(std::span<const int64_t> perm, int64_t index, std::span<int64_t> out) const {
  const int64_t n = cfg_.samples;
  STOKE_CHECK(static_cast<int64_t>(perm.size()) == n && static_cast<int>(out.size()) >= cfg_.batch);
  STOKE_CHECK(index >= 0 && index < batches_, "batch ", index, " of ", batches_);
  const int64_t first = (index * cfg_.world + cfg_.rank) * cfg_.batch;  // position in the (padded) order
  int valid = 0;
  for (int k = 0; k < cfg_.batch; ++k) {
    const int64_t p = first + k;
    if (p < n) {
      out[static_cast<size_t>(k)] = perm[static_cast<size_t>(p)];
      ++valid;
    } else {
      out[static_cast<size_t>(k)] = perm[static_cast<size_t>((p - n) % n)];
    }
  }
  return valid;
}

std::vector<int64_t> Sampler::epoch_order(int64_t epoch, int64_t cursor) const {
  const std::vector<int64_t> perm = permutation(epoch);
  std::vector<int64_t> out;
  std::vector<int64_t> ids(static_cast<size_t>(cfg_.batch));
  for (int64_t b = cursor; b < batches_; ++b) {
    batch_ids(perm, b, ids);
    out.insert(out.end(), ids.begin(), ids.end());
  }
  return out;
}

}  // namespace stoke::io
