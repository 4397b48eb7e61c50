#include "report/run_files.h"

#include <cmath>
#include <exception>
#include <filesystem>
#include <fstream>

#include "base/error.h"
#include "base/fs.h"
#include "base/json_util.h"

namespace stoke {
namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

namespace {

// A JSON object file; missing: {}, damaged: {} and a note.
json read_object(const fs::path& p, bool& present, std::vector<std::string>& notes) {
  present = false;
  std::error_code ec;
  if (!fs::is_regular_file(p, ec)) return json::object();
  try {
    std::vector<uint8_t> bytes = read_file(p.string());
    json j = json::parse(bytes.begin(), bytes.end());
    if (!j.is_object()) {
      notes.push_back(str(p.filename().string(), " is not a JSON object; ignored"));
      return json::object();
    }
    present = true;
    return j;
  } catch (const json::exception& e) {
    notes.push_back(str(p.filename().string(), " could not be read (", json_problem(e), "); ignored"));
    return json::object();
  } catch (const std::exception& e) {
    notes.push_back(str(p.filename().string(), " could not be read (", e.what(), "); ignored"));
    return json::object();
  }
}

}  // namespace

double field_number(const json& j, const char* key) {
  if (!j.is_object()) return kNaN;
  auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return kNaN;
  return it->get<double>();
}

std::string field_text(const json& j, const char* key) {
  if (!j.is_object()) return "";
  auto it = j.find(key);
  if (it == j.end()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_number() || it->is_boolean()) return it->dump();
  return "";
}

RunFiles read_run_files(const std::string& run_dir) {
  RunFiles r;
  const fs::path dir(run_dir);
  r.config = read_object(dir / "config.json", r.has_config, r.notes);
  r.summary = read_object(dir / "summary.json", r.has_summary, r.notes);
  std::ifstream in(dir / "metrics.jsonl", std::ios::binary);
  if (!in) return r;
  r.has_metrics = true;
  std::string s;
  double offset = 0, last = 0;
  while (std::getline(in, s)) {
    if (s.find_first_not_of(" \t\r") == std::string::npos) continue;
    ++r.lines;
    json j;
    try {
      j = json::parse(s);
    } catch (const json::exception&) {
      ++r.skipped;
      continue;
    }
    if (!j.is_object()) {
      ++r.skipped;
      continue;
    }
    RunLine l;
    const double e = field_number(j, "elapsed_s");
    if (std::isfinite(e)) {
      if (e + 1e-9 < last) offset += last;  // a resumed process restarts its clock
      last = e;
      l.t = offset + e;
    }
    const std::string kind = field_text(j, "kind");
    l.j = std::move(j);
    if (kind == "train") r.train.push_back(std::move(l));
    else if (kind == "epoch") r.epochs.push_back(std::move(l));
  }
  if (r.skipped > 0)
    r.notes.push_back(str(r.skipped, " of ", r.lines,
                          " lines of metrics.jsonl could not be read (a line torn by a crash, or "
                          "one being written) and ",
                          r.skipped == 1 ? "was" : "were", " skipped"));
  return r;
}

}  // namespace stoke
