// The files of a run folder that are not checkpoints: metrics.jsonl (and TensorBoard), left_out.txt; the folder's
// default name and its lock (engine/run_folder.h).
#include "engine/run_folder.h"

#include <sys/statvfs.h>
#include <unistd.h>

#include <ctime>
#include <filesystem>

#include "base/display_name.h"
#include "base/error.h"
#include "base/format.h"
#include "base/fs.h"
#include "base/json_util.h"
#include "io/source/image_folder.h"

namespace stoke {
namespace fs = std::filesystem;
using json = nlohmann::json;

JsonlWriter::JsonlWriter(const std::string& path, const std::string& tensorboard_dir) : f_(path, std::ios::app) {
  if (!f_) throw Error(str("cannot write ", display_name(path)));
  if (!tensorboard_dir.empty()) tb_.emplace(tensorboard_dir);
}

void JsonlWriter::write(const json& j) {
  f_ << j.dump() << '\n';
  f_.flush();
  if (tb_) tensorboard_log_metrics(*tb_, j);
}

void JsonlWriter::flush() {
  if (tb_) tb_->flush();
}

std::unique_ptr<FileLock> lock_run_folder(const std::string& dir, const std::string& who) {
  std::string holder;
  auto lock = FileLock::try_lock((std::filesystem::path(dir) / ".lock").string(),
                                 str("pid ", static_cast<long>(::getpid()), ", ", who), &holder);
  if (!lock)
    throw UserError(str(display_name(dir), " is in use by another stoke process (", holder,
                        "): a run writes its folder alone; wait for it to end, or choose another --out"));
  return lock;
}

int64_t free_bytes(const std::string& dir, int64_t* block) {
  struct statvfs s {};
  if (::statvfs(dir.c_str(), &s) != 0) return -1;
  if (block) *block = static_cast<int64_t>(s.f_frsize);
  return static_cast<int64_t>(s.f_bavail) * static_cast<int64_t>(s.f_frsize);
}

std::string check_space(const std::string& dir, int64_t free, const SpaceNeed& need) {
  const auto kib = [](int64_t b) { return format_bytes(static_cast<size_t>(std::max<int64_t>(b, 0))); };
  if (free < need.checkpoint + need.others)
    throw UserError(str("not enough free space in ", display_name(dir), " for even one checkpoint: ", kib(free),
                        " free, one checkpoint takes ", kib(need.checkpoint), " and the run's other files about ",
                        kib(need.others), "; free some space or choose another --out"));
  if (free >= need.at_once * need.checkpoint + need.others) return "";
  const int64_t room = (free - need.others) / need.checkpoint;
  return str(display_name(dir), " has ", kib(free), " free, room for ", room,
             room == 1 ? " checkpoint" : " checkpoints", " of ", kib(need.checkpoint), " but the run holds ",
             need.at_once,
             " at once (a new one is written beside the old before the old is removed, --keep-checkpoints ", need.keep,
             "): expect \"No space left on device\" at a later checkpoint");
}

std::string default_run_dir(const std::string& model) {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y%m%d-%H%M%S", &tm);
  return "runs/" + model + "-" + buf;
}

void truncate_metrics(const std::string& path, int64_t step) {
  std::ifstream in(path);
  if (!in) return;
  std::string line, kept;
  while (std::getline(in, line)) {
    try {
      json j = json::parse(line);
      if (json_int(j, "step", 0, std::numeric_limits<int64_t>::max(), 0) > step) continue;
    } catch (const std::exception&) {
      continue;  // a line torn by the crash
    }
    kept += line + "\n";
  }
  atomic_write_file(path, kept);
}

// Nothing is skipped without a word: each path with its reason.
void write_left_out(const std::string& dir, const io::Source* train, const io::Source* val) {
  std::string text;
  for (const auto* src : {train, val})
    if (const auto* folder = dynamic_cast<const io::FolderSource*>(src))
      for (const io::LeftOut& l : folder->left_out())
        text += str(io::left_out_reason_name(l.reason), "\t", display_name(l.path),
                    l.detail.empty() ? std::string() : "\t" + l.detail, "\n");
  if (!text.empty()) atomic_write_file((fs::path(dir) / "left_out.txt").string(), text);
}

}  // namespace stoke
