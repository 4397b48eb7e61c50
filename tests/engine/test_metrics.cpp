// Classification metrics against hand-computed answers.
#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "engine/metrics.h"

using namespace stoke;

TEST(RocAuc, KnownAnswers) {
  EXPECT_DOUBLE_EQ(roc_auc({0.1f, 0.2f, 0.8f, 0.9f}, {0, 0, 1, 1}), 1.0);
  EXPECT_DOUBLE_EQ(roc_auc({0.9f, 0.8f, 0.2f, 0.1f}, {0, 0, 1, 1}), 0.0);
  EXPECT_DOUBLE_EQ(roc_auc({0.5f, 0.5f, 0.5f, 0.5f}, {0, 1, 0, 1}), 0.5);  // all tied
  // sklearn.metrics.roc_auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == 0.75
  EXPECT_DOUBLE_EQ(roc_auc({0.1f, 0.4f, 0.35f, 0.8f}, {0, 0, 1, 1}), 0.75);
  // With a tie between a positive and a negative: pairs (pos, neg) = 4, wins 3, one tie counted 1/2.
  EXPECT_DOUBLE_EQ(roc_auc({0.2f, 0.6f, 0.6f, 0.9f}, {0, 0, 1, 1}), (3 + 0.5) / 4);
  EXPECT_TRUE(std::isnan(roc_auc({0.1f, 0.2f}, {1, 1})));
}

TEST(Metrics, ConfusionAccuracyAndMacroAuc) {
  MetricsAccumulator acc(3);
  // Logits whose arg-max is the second column for sample 2 (true class 0): one error.
  const float logits[] = {5, 0, 0,   // true 0, pred 0
                          0, 4, 0,   // true 1, pred 1
                          1, 3, 0,   // true 0, pred 1
                          1.5f, 0, 2};  // true 2, pred 2
  const int32_t labels[] = {0, 1, 0, 2};
  acc.add(2, logits, labels, 0.5);
  acc.add(2, logits + 6, labels + 2, 1.5);
  ClassificationReport r = acc.report();
  EXPECT_EQ(r.count, 4);
  EXPECT_DOUBLE_EQ(r.loss, (0.5 * 2 + 1.5 * 2) / 4);
  EXPECT_DOUBLE_EQ(r.accuracy, 0.75);
  EXPECT_EQ(r.confusion, (std::vector<int64_t>{1, 1, 0, 0, 1, 0, 0, 0, 1}));
  EXPECT_DOUBLE_EQ(r.class_accuracy[0], 0.5);
  EXPECT_DOUBLE_EQ(r.class_accuracy[1], 1.0);
  EXPECT_DOUBLE_EQ(r.class_accuracy[2], 1.0);
  // Class-0 scores (softmax column 0): positives 0.987 (sample 0) and 0.114 (sample 2); negatives 0.018
  // (sample 1) and 0.348 (sample 3): 3 of 4 pairs ordered, AUC 0.75. Classes 1 and 2 score highest exactly
  // on their own samples: AUC 1.
  EXPECT_DOUBLE_EQ(r.class_auc[2], 1.0);
  EXPECT_DOUBLE_EQ(r.class_auc[1], 1.0);
  EXPECT_NEAR(r.class_auc[0], 0.75, 1e-12);
  EXPECT_NEAR(r.macro_auc, (1.0 + 1.0 + 0.75) / 3, 1e-12);
  const std::string table = r.confusion_table({"cat", "dog", "eel"});
  EXPECT_NE(table.find("dog"), std::string::npos);
  EXPECT_NE(table.find("50.00%"), std::string::npos);
}

// Class names are bytes: a newline, a Latin-1 byte or a long UTF-8 name keeps the table one line per class, every
// line as wide as the others, and the names shown escaped (base/display_name.h), never split inside an escape.
TEST(Metrics, ConfusionTableShowsAnyNameOnItsLine) {
  MetricsAccumulator acc(3);
  const float logits[] = {5, 0, 0, 0, 4, 0, 0, 0, 3};
  const int32_t labels[] = {0, 1, 2};
  acc.add(3, logits, labels, 0.5);
  const std::string table = acc.report().confusion_table({"line\nbreak", "caf\xE9", "\xc3\xa9t\xc3\xa9s-long-name"});
  std::vector<std::string> lines;
  for (size_t at = 0, nl; (nl = table.find('\n', at)) != std::string::npos; at = nl + 1)
    lines.push_back(table.substr(at, nl - at));
  ASSERT_EQ(lines.size(), 4u) << table;
  auto chars = [](const std::string& s) {
    size_t n = 0;
    for (char c : s) n += (c & 0xC0) != 0x80;
    return n;
  };
  for (const std::string& l : lines) EXPECT_EQ(chars(l), chars(lines[0])) << table;
  EXPECT_EQ(lines[1].rfind("line\\nbreak ", 0), 0u) << table;
  EXPECT_EQ(lines[2].rfind("caf\\xE9 ", 0), 0u) << table;
  EXPECT_EQ(lines[3].rfind("\xc3\xa9t\xc3\xa9s-long-name ", 0), 0u) << table;
  // Column heads are cut to the cell, between characters and escapes: "caf" rather than "caf\xE".
  EXPECT_NE(lines[0].find(" caf "), std::string::npos) << table;
  EXPECT_NE(lines[0].find(" \xc3\xa9t\xc3\xa9s-"), std::string::npos) << table;
}

// The probabilities evaluation ranks and `stoke predict` prints: each row's softmax, against hand-computed values,
// unchanged by a shift of the row (the maximum is subtracted) and finite for logits far beyond exp's range.
TEST(Metrics, SoftmaxProbabilitiesOfEachRow) {
  const float l2 = std::log(2.f), l3 = std::log(3.f);
  const std::vector<float> logits = {0.f, l2, l3, 1000.f, 1000.f + l2, 1000.f + l3, -5.f, -5.f, -5.f};
  std::vector<float> p(logits.size(), -1.f);
  softmax_probabilities(logits.data(), 3, 3, p.data());
  const float want[3] = {1.f / 6, 2.f / 6, 3.f / 6};
  for (int k = 0; k < 3; ++k) {
    EXPECT_NEAR(p[static_cast<size_t>(k)], want[k], 2e-7f);
    EXPECT_NEAR(p[static_cast<size_t>(3 + k)], want[k], 1e-4f);  // 1000 + ln 2 holds ln 2 to float's 6e-5 only
    EXPECT_FLOAT_EQ(p[static_cast<size_t>(6 + k)], 1.f / 3);
  }
}
