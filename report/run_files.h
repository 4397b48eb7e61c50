// Reading a run folder: the files the trainer writes (metrics.jsonl, config.json, summary.json), into plain
// structs, tolerating whatever is missing or damaged. The run report draws its page from these.
#pragma once

#include <cstdint>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace stoke {

// One metrics.jsonl line.
struct RunLine {
  nlohmann::json j;  // the line's object, as written
  double t = std::numeric_limits<double>::quiet_NaN();  // run time, seconds (elapsed_s continued across resumes)
};

struct RunFiles {
  nlohmann::json config = nlohmann::json::object(), summary = nlohmann::json::object();  // {} when absent
  bool has_config = false, has_summary = false, has_metrics = false;
  std::vector<RunLine> train, epochs;  // the {"kind":"train"} and {"kind":"epoch"} lines, in file order
  int64_t lines = 0, skipped = 0;      // non-blank lines of metrics.jsonl, and those that could not be read
  std::vector<std::string> notes;      // what was damaged, one sentence each (plain text, not yet escaped)
};

// Reads RUNDIR's files. A missing file leaves its part empty; a damaged JSON file or metrics line is noted
// and skipped; elapsed_s restarting (a resumed run) is continued, so `t` covers the whole run.
RunFiles read_run_files(const std::string& run_dir);

// A field of a JSON object: a number (NaN when absent, not a number, or `j` is not an object), or text (a
// string as it is, a number or boolean as JSON writes it, "" otherwise).
double field_number(const nlohmann::json& j, const char* key);
std::string field_text(const nlohmann::json& j, const char* key);

}  // namespace stoke
