// Classification metrics over a whole evaluation pass: loss, accuracy, per-class accuracy, the confusion
// matrix, and macro one-vs-rest ROC-AUC (as MONAI's ROCAUCMetric(average="macro") computes it: the AUC of
// each class's softmax score against "is this class", averaged over classes; a class absent from the labels,
// or present in every label, has no AUC and is left out of the average).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace stoke {

namespace dist {
class Communicator;
}

struct ClassificationReport {
  int classes = 0;
  int64_t count = 0;       // images evaluated: the readable ones, every metric below covers exactly these
  int64_t unreadable = 0;  // images of the evaluation set that could not be read (not counted, never replaced)
  int64_t vanished = 0;    // images deleted or renamed since indexing: left out like those, and counted apart
  double loss = 0, accuracy = 0, macro_auc = 0;  // macro_auc NaN when no class has an AUC
  std::vector<double> class_accuracy;            // NaN for a class with no samples
  std::vector<double> class_auc;                 // NaN where undefined
  std::vector<int64_t> confusion;                // [true * classes + predicted]

  nlohmann::json to_json() const;
  // "2 unreadable, 1 vanished": what was left out, for a console line ("" when nothing was).
  std::string left_out_words() const;
  // The confusion matrix as aligned text, rows = true class, columns = predicted.
  std::string confusion_table(const std::vector<std::string>& names) const;
};

class MetricsAccumulator {
 public:
  explicit MetricsAccumulator(int classes) : classes_(classes) {}
  // logits[n, classes] of one batch, its labels, and the batch's mean loss.
  void add(int n, const float* logits, const int32_t* labels, double mean_loss);
  void add_unreadable(int n) { unreadable_ += n; }
  void add_vanished(int n) { vanished_ += n; }
  ClassificationReport report() const;
  void clear();
  // Data parallel: each rank has evaluated its slice of the set; afterwards every rank holds every rank's rows (rank
  // 0's first), the summed loss and unreadable and vanished counts, so report() covers the whole set on each of them.
  // Every rank calls it (two all-reduces). The metrics do not depend on the rows' order (the AUC averages tied ranks).
  void gather(dist::Communicator& comm);

 private:
  int classes_;
  double loss_sum_ = 0;
  int64_t unreadable_ = 0, vanished_ = 0;
  std::vector<float> probs_;  // softmax rows, kept for the AUC
  std::vector<int32_t> labels_;
};

// The softmax of each of n rows of logits (n x classes) into out (n x classes): the maximum subtracted in float, the
// exponentials summed in double. The probabilities evaluation ranks for its ROC-AUC and `stoke predict` prints.
void softmax_probabilities(const float* logits, int n, int classes, float* out);

// Area under the ROC curve of scores against binary targets (Mann-Whitney U with average ranks for ties).
// NaN when all targets are equal.
double roc_auc(const std::vector<float>& scores, const std::vector<uint8_t>& positive);

}  // namespace stoke
