// Continuing a run as people do it: the same command again with --resume RUNDIR appended, a finished run asked
// to go on, data that gained or lost a few files, a run killed before its first checkpoint.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "engine/train_config.h"
#include "io/source/source.h"

namespace stoke {

// The flags that may differ from one session of a run to the next: where and how fast it runs, what is logged,
// and how long it trains (--epochs). Every other flag defines the run.
bool is_session_flag(const std::string& flag);

// The run's saved settings with the flags given on this command line applied: a session flag takes the new
// value; a defining flag equal to the run's own value (the same command again) is accepted; a real change is a
// UserError naming the flag, the run's value and the new one. `given` lists the long names of the flags set on
// the command line (e.g. "--lr"); `cli` holds their values. --batch-size auto matches the batch auto chose.
// A folder whose run stopped before its first checkpoint has nothing to continue: the result starts it again
// from its config.json (overwrite set, resume cleared), and `note` says so.
TrainConfig resume_config(const std::string& run_dir, const TrainConfig& cli, const std::vector<std::string>& given,
                          std::string* note = nullptr);

// Where a run's latest checkpoint stands.
struct RunPosition {
  int64_t epoch = 0, cursor = 0, step = 0;  // epochs completed, batches into the next, global steps
  int planned_epochs = 0;                   // the --epochs the checkpoint was written under
};
// Throws UserError when the folder holds no checkpoint.
RunPosition run_position(const std::string& run_dir);

// When cfg resumes a run that has already trained cfg.epochs epochs: says so (unless quiet), changes nothing,
// and returns what the run did (from its last checkpoint). A smaller --epochs than the run has trained is a
// UserError. Otherwise nullopt: there is work to do.
std::optional<TrainResult> finished_run(const TrainConfig& cfg);

// The training files of a run, one name per line, relative to their common folder (as the data fingerprint
// sees them), kept in RUNDIR/train_files.txt so a resume can name what changed.
std::vector<std::string> relative_sample_names(const io::Source& src);
void write_train_files(const std::string& run_dir, const io::Source& src);

// What changed between the run's saved list and the data now: names gone and names new (sorted), and how many
// of each there are (the lists stop at `max_names`). Empty lists and no_list when the run kept no list (older
// runs).
struct DataChange {
  bool no_list = false;
  int64_t gone = 0, added = 0;
  std::vector<std::string> gone_names, added_names;
  std::string describe() const;  // "3 missing files (a/1.jpg, ...), 2 new files (...)"
};
DataChange compare_train_files(const std::string& run_dir, const io::Source& src, size_t max_names = 5);

}  // namespace stoke
