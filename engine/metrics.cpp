#include "engine/metrics.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <sstream>

#include "base/display_name.h"
#include "base/error.h"
#include "engine/dist/communicator.h"

namespace stoke {

namespace {
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
}

double roc_auc(const std::vector<float>& scores, const std::vector<uint8_t>& positive) {
  STOKE_CHECK(scores.size() == positive.size());
  const size_t n = scores.size();
  std::vector<size_t> idx(n);
  std::iota(idx.begin(), idx.end(), size_t{0});
  std::sort(idx.begin(), idx.end(), [&](size_t a, size_t b) { return scores[a] < scores[b]; });
  // Sum of the (1-based, tie-averaged) ranks of the positives.
  double rank_sum = 0;
  int64_t pos = 0;
  for (size_t i = 0; i < n;) {
    size_t j = i;
    while (j < n && scores[idx[j]] == scores[idx[i]]) ++j;
    const double avg_rank = (static_cast<double>(i + 1) + static_cast<double>(j)) / 2.0;
    for (size_t k = i; k < j; ++k)
      if (positive[idx[k]]) {
        rank_sum += avg_rank;
        ++pos;
      }
    i = j;
  }
  const int64_t neg = static_cast<int64_t>(n) - pos;
  if (pos == 0 || neg == 0) return kNaN;
  const double u = rank_sum - static_cast<double>(pos) * static_cast<double>(pos + 1) / 2.0;
  return u / (static_cast<double>(pos) * static_cast<double>(neg));
}

void softmax_probabilities(const float* logits, int n, int classes, float* out) {
  for (int i = 0; i < n; ++i) {
    const float* z = logits + static_cast<int64_t>(i) * classes;
    float* p = out + static_cast<int64_t>(i) * classes;
    const float mx = *std::max_element(z, z + classes);
    double s = 0;
    for (int k = 0; k < classes; ++k) s += std::exp(static_cast<double>(z[k] - mx));
    for (int k = 0; k < classes; ++k) p[k] = static_cast<float>(std::exp(static_cast<double>(z[k] - mx)) / s);
  }
}

void MetricsAccumulator::add(int n, const float* logits, const int32_t* labels, double mean_loss) {
  loss_sum_ += mean_loss * n;
  const size_t at = probs_.size();
  probs_.resize(at + static_cast<size_t>(n) * static_cast<size_t>(classes_));
  softmax_probabilities(logits, n, classes_, probs_.data() + at);
  labels_.insert(labels_.end(), labels, labels + n);
}

void MetricsAccumulator::clear() {
  loss_sum_ = 0;
  unreadable_ = vanished_ = 0;
  probs_.clear();
  labels_.clear();
}

void MetricsAccumulator::gather(dist::Communicator& comm) {
  const int W = comm.world();
  if (W == 1) return;
  const size_t C = static_cast<size_t>(classes_);
  // [rows of each rank] [loss sum] [unreadable] [vanished]: doubles, exact for the counts.
  std::vector<double> head(static_cast<size_t>(W) + 3, 0.0);
  head[static_cast<size_t>(comm.rank())] = static_cast<double>(labels_.size());
  head[static_cast<size_t>(W)] = loss_sum_;
  head[static_cast<size_t>(W) + 1] = static_cast<double>(unreadable_);
  head[static_cast<size_t>(W) + 2] = static_cast<double>(vanished_);
  comm.allreduce_sum(head.data(), head.size());
  size_t offset = 0, total = 0;
  for (int r = 0; r < W; ++r) {
    const size_t rows = static_cast<size_t>(std::llround(head[static_cast<size_t>(r)]));
    if (r < comm.rank()) offset += rows;
    total += rows;
  }
  // Every rank's rows in one buffer of zeros, each rank writing its own part: the sum is then a gather (a value plus
  // zeros is the value, bit for bit). Labels travel as floats (exact below 2^24 classes).
  std::vector<float> rows((C + 1) * total, 0.f);
  std::copy(probs_.begin(), probs_.end(), rows.begin() + static_cast<std::ptrdiff_t>(offset * C));
  for (size_t i = 0; i < labels_.size(); ++i) rows[C * total + offset + i] = static_cast<float>(labels_[i]);
  comm.allreduce_sum(rows.data(), rows.size());
  probs_.assign(rows.begin(), rows.begin() + static_cast<std::ptrdiff_t>(C * total));
  labels_.resize(total);
  for (size_t i = 0; i < total; ++i) labels_[i] = static_cast<int32_t>(std::lround(rows[C * total + i]));
  loss_sum_ = head[static_cast<size_t>(W)];
  unreadable_ = static_cast<int64_t>(std::llround(head[static_cast<size_t>(W) + 1]));
  vanished_ = static_cast<int64_t>(std::llround(head[static_cast<size_t>(W) + 2]));
}

ClassificationReport MetricsAccumulator::report() const {
  ClassificationReport r;
  const int C = classes_;
  r.classes = C;
  r.count = static_cast<int64_t>(labels_.size());
  r.unreadable = unreadable_;
  r.vanished = vanished_;
  r.confusion.assign(static_cast<size_t>(C) * C, 0);
  int64_t correct = 0;
  for (size_t i = 0; i < labels_.size(); ++i) {
    const float* p = probs_.data() + i * static_cast<size_t>(C);
    const int pred = static_cast<int>(std::max_element(p, p + C) - p);  // first maximum, as the loss kernel
    const int truth = labels_[i];
    ++r.confusion[static_cast<size_t>(truth) * C + pred];
    correct += pred == truth;
  }
  r.loss = r.count ? loss_sum_ / static_cast<double>(r.count) : kNaN;
  r.accuracy = r.count ? static_cast<double>(correct) / static_cast<double>(r.count) : kNaN;
  r.class_accuracy.assign(static_cast<size_t>(C), kNaN);
  r.class_auc.assign(static_cast<size_t>(C), kNaN);
  double auc_sum = 0;
  int auc_n = 0;
  std::vector<float> scores(labels_.size());
  std::vector<uint8_t> pos(labels_.size());
  for (int c = 0; c < C; ++c) {
    int64_t row = 0;
    for (int k = 0; k < C; ++k) row += r.confusion[static_cast<size_t>(c) * C + k];
    if (row > 0)
      r.class_accuracy[static_cast<size_t>(c)] =
          static_cast<double>(r.confusion[static_cast<size_t>(c) * C + c]) / static_cast<double>(row);
    for (size_t i = 0; i < labels_.size(); ++i) {
      scores[i] = probs_[i * static_cast<size_t>(C) + static_cast<size_t>(c)];
      pos[i] = labels_[i] == c;
    }
    const double auc = roc_auc(scores, pos);
    r.class_auc[static_cast<size_t>(c)] = auc;
    if (!std::isnan(auc)) {
      auc_sum += auc;
      ++auc_n;
    }
  }
  r.macro_auc = auc_n ? auc_sum / auc_n : kNaN;
  return r;
}

std::string ClassificationReport::left_out_words() const {
  std::string s = unreadable > 0 ? str(unreadable, " unreadable") : std::string();
  if (vanished > 0) s += str(s.empty() ? "" : ", ", vanished, " vanished");
  return s;
}

nlohmann::json ClassificationReport::to_json() const {
  auto clean = [](const std::vector<double>& v) {
    nlohmann::json a = nlohmann::json::array();
    for (double x : v) a.push_back(std::isnan(x) ? nlohmann::json() : nlohmann::json(x));
    return a;
  };
  nlohmann::json j = {{"count", count},
                      {"unreadable", unreadable},
                      {"vanished", vanished},
                      {"loss", loss},
                      {"accuracy", accuracy},
                      {"class_accuracy", clean(class_accuracy)},
                      {"class_auc", clean(class_auc)},
                      {"confusion", confusion}};
  j["macro_auc"] = std::isnan(macro_auc) ? nlohmann::json() : nlohmann::json(macro_auc);
  return j;
}

std::string ClassificationReport::confusion_table(const std::vector<std::string>& class_names) const {
  const std::vector<std::string> names = display_names(class_names);  // one line per class, whatever the bytes
  std::ostringstream os;
  // Widths in characters, not bytes (the shown names are valid UTF-8); a cut splits no character and no escape.
  auto chars = [](const std::string& s) {
    return static_cast<size_t>(std::count_if(s.begin(), s.end(), [](char c) { return (c & 0xC0) != 0x80; }));
  };
  auto first_chars = [](const std::string& s, size_t n) {
    size_t i = 0;
    while (i < s.size()) {
      size_t len = 1, width = 1;  // one character, or one escape (\xNN, \n, \\ ...), of `width` characters
      if (s[i] == '\\') {
        len = width = s.compare(i, 2, "\\x") == 0 ? 4 : 2;
      } else {
        while (i + len < s.size() && (s[i + len] & 0xC0) == 0x80) ++len;
      }
      if (width > n) break;
      n -= width;
      i += len;
    }
    return s.substr(0, i);
  };
  size_t w = 6;
  for (const auto& n : names) w = std::max(w, chars(n) + 1);
  size_t cell = 7;
  for (int64_t v : confusion) cell = std::max(cell, std::to_string(v).size() + 2);
  auto pad = [&](const std::string& s, size_t width, bool right) {
    const size_t n = chars(s);
    if (n >= width) return s;
    return right ? std::string(width - n, ' ') + s : s + std::string(width - n, ' ');
  };
  os << pad("true\\pred", w, false);
  for (int c = 0; c < classes; ++c) {
    std::string n = c < static_cast<int>(names.size()) ? names[static_cast<size_t>(c)] : std::to_string(c);
    os << pad(first_chars(n, cell - 1), cell, true);
  }
  os << pad("acc", 9, true) << "\n";
  for (int t = 0; t < classes; ++t) {
    os << pad(t < static_cast<int>(names.size()) ? names[static_cast<size_t>(t)] : std::to_string(t), w, false);
    for (int p = 0; p < classes; ++p)
      os << pad(std::to_string(confusion[static_cast<size_t>(t) * classes + p]), cell, true);
    char acc[32];
    const double a = class_accuracy[static_cast<size_t>(t)];
    if (std::isnan(a))
      os << pad("-", 9, true);
    else {
      std::snprintf(acc, sizeof acc, "%.2f%%", 100 * a);
      os << pad(acc, 9, true);
    }
    os << "\n";
  }
  return os.str();
}

}  // namespace stoke
