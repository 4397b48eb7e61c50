// The running sums of a training run (engine/step_meter.h).
#include "engine/step_meter.h"

#include <cmath>

#include "base/json_util.h"

namespace stoke {

double seconds_since(TrainClock::time_point t0) {
  return std::chrono::duration<double>(TrainClock::now() - t0).count();
}

void StepSums::add(const StepResult& r, int n, bool counted) {
  device_s += r.device_seconds;
  comm.add(r);
  if (!counted) return;
  loss += static_cast<double>(r.loss) * n;
  correct += r.correct;
  seen += n;
}

void StepMeter::start_run(int64_t first_step) {
  step = loop_first_step = first_step;
  loop_start = TrainClock::now();
}

void StepMeter::start_epoch(int64_t cursor, const nlohmann::json* resumed, double input_wait) {
  epoch_start = TrainClock::now();
  wait_at_start = input_wait;
  epoch = window = StepSums{};
  epoch_seconds_before = 0;
  if (resumed) {
    epoch.loss = json_number(*resumed, "loss_sum", -1e300, 1e300, 0.0);
    epoch.correct = json_int(*resumed, "correct", 0, int64_t{1} << 50, 0);
    epoch.seen = json_int(*resumed, "seen", 0, int64_t{1} << 50, 0);
    epoch_seconds_before = json_number(*resumed, "seconds", 0, 1e12, 0.0);
  }
  seen_at_start = epoch.seen;
  window_wait0 = wait_at_start;
  window_t0 = TrainClock::now();
  epoch_step = cursor;
}

void StepMeter::add(const StepResult& r, int n) {
  const bool counted = std::isfinite(r.loss);  // the backend skipped a non-finite step's update
  window.add(r, n, counted);
  epoch.add(r, n, counted);
  ++step;
  ++epoch_step;
}

void StepMeter::close_epoch(double train_seconds, double input_wait) {
  total_wait += input_wait;
  total_train_s += train_seconds;
  total_device_s += epoch.device_s;
  total_comm.seconds += epoch.comm.seconds;
  if (epoch.comm.bytes_per_step > 0) total_comm.bytes_per_step = epoch.comm.bytes_per_step;
  epoch = StepSums{};
}

nlohmann::json StepMeter::epoch_sums() const {
  return {{"loss_sum", epoch.loss},
          {"correct", epoch.correct},
          {"seen", epoch.seen},
          {"seconds", epoch_seconds_before + seconds_since(epoch_start)}};
}

}  // namespace stoke
