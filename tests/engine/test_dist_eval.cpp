// Validation shared out over the ranks of a data-parallel job: each rank evaluates its slice, and the gathered
// report is the report of one process that evaluated the whole set (count, loss, confusion matrix, AUC), on every
// rank. Three ranks, one of them with nothing to evaluate (the padded tail of a small set), through a world of
// threads; the same over MPI processes end to end in tests/dist (case parity).
#include <gtest/gtest.h>

#include <vector>

#include "engine/metrics.h"
#include "tests/engine/thread_world.h"

namespace stoke {
namespace {

constexpr int kClasses = 3;
const float kLogits[] = {5, 0, 0, 0, 4, 0, 1, 3, 0, 1.5f, 0, 2, 0.2f, 0.1f, 0.3f};
const int32_t kLabels[] = {0, 1, 0, 2, 1};

TEST(DistEval, GatheredSlicesReportTheWholeSetOnEveryRank) {
  MetricsAccumulator whole(kClasses);
  whole.add(3, kLogits, kLabels, 0.75);
  whole.add(2, kLogits + 3 * kClasses, kLabels + 3, 1.25);
  whole.add_unreadable(1);
  const ClassificationReport expect = whole.report();

  test::ThreadWorld world(3);
  ClassificationReport got[3];
  world.run([&](int r) {
    MetricsAccumulator acc(kClasses);
    if (r == 0) {  // samples 0-2, and two that vanished
      acc.add(3, kLogits, kLabels, 0.75);
      acc.add_vanished(2);
    }
    if (r == 1) {  // samples 3-4, and the unreadable one
      acc.add(2, kLogits + 3 * kClasses, kLabels + 3, 1.25);
      acc.add_unreadable(1);
    }
    acc.gather(world.rank(r));  // rank 2: an empty slice
    got[r] = acc.report();
  });
  for (int r = 0; r < 3; ++r) {
    SCOPED_TRACE(r);
    EXPECT_EQ(got[r].count, 5);
    EXPECT_EQ(got[r].unreadable, 1);
    EXPECT_EQ(got[r].vanished, 2) << "counted apart from the unreadable one";
    EXPECT_EQ(got[r].confusion, expect.confusion);
    EXPECT_DOUBLE_EQ(got[r].loss, expect.loss);
    EXPECT_DOUBLE_EQ(got[r].accuracy, expect.accuracy);
    EXPECT_EQ(got[r].class_auc, expect.class_auc);
    EXPECT_DOUBLE_EQ(got[r].macro_auc, expect.macro_auc);
  }
}

}  // namespace
}  // namespace stoke
