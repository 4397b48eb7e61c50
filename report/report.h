// The run report: RUNDIR/report.html, one self-contained page (inline CSS and inline SVG; no scripts, fonts,
// images or links to anything outside the file) that shows what a run did, drawn from the files the trainer
// writes. docs/REPORT.md describes the page.
//
// What it reads (every file and every field is optional; what is missing is shown as such):
//   metrics.jsonl  {"kind":"train"} lines: step, epoch, loss, acc, img_per_s, elapsed_s, and when present
//                  gpu_busy (fraction 0..1), input_stall (fraction 0..1), decoders (count);
//                  {"kind":"epoch"} lines: epoch, step, train_loss, train_acc, val_loss, val_acc, val_auc,
//                  val_report {confusion, class_accuracy, class_auc, count}, img_per_s, seconds, elapsed_s,
//                  rss_mib, input_stall, and when present gpu_busy, decoders.
//                  Unreadable lines (a line torn by a crash) are skipped and counted. elapsed_s restarting
//                  (a resumed run) is continued, so time axes cover the whole run.
//   config.json    model, data, val, backend, device, threads, input, classes, epochs, batch_size, optimizer,
//                  lr, schedule, params, train_images, val_images, decoders.
//   summary.json   model, backend, device, epochs, steps, seconds_total, final_val_acc, final_train_acc,
//                  final_val_report (used when no epoch line holds a report), corrupt_images, skipped_steps,
//                  and "verdict" (a string, or an object whose fields are listed; "status"/"ok"/"pass" colour
//                  the box).
// A gpu_busy or input_stall value above 1.5 is taken as a percentage already.
#pragma once

#include <limits>
#include <string>
#include <string_view>
#include <vector>

namespace stoke {

// ---- SVG line charts ------------------------------------------------------------------------------------------

struct ChartSeries {
  std::string name;            // legend text (escaped when drawn)
  std::vector<double> x, y;    // equal lengths (the shorter one decides); a non-finite x or y breaks the line
  std::string color;           // CSS colour, e.g. "#1f77b4"; "" = the next colour of a built-in palette
  bool markers = false;        // a dot at every point (isolated points always get one)
  bool dashed = false;
};

struct ChartOptions {
  std::string title;                  // drawn above the plot and as the SVG <title>
  std::string x_label, y_label;       // axis titles
  int width = 640, height = 300;      // pixels (the SVG scales with its container through its viewBox)
  double y_min = std::numeric_limits<double>::quiet_NaN();  // fixed ends of the y axis (NaN = from the data;
  double y_max = std::numeric_limits<double>::quiet_NaN();  // points beyond a fixed end are clamped to it)
  bool y_include_zero = false;        // stretch the y axis to include 0 (rates, memory; not with log_y)
  bool log_y = false;                 // logarithmic y axis (values <= 0 are left out, breaking the line)
  std::string empty_text = "no data"; // shown when no series has a finite point
  std::string note;                   // one line at the plot's top right (e.g. "GPU busy: not measured")
  size_t max_points = 2000;           // per series; longer ones are reduced to the min and max of each bucket
};

// One <svg> element (with xmlns, usable inline in HTML or saved as an .svg file): axes, grid, "nice" tick
// values (1, 2 or 5 times a power of ten) with labels, axis titles, legend. Every coordinate written is
// finite, whatever the input (NaN, infinities, empty series, one point, constant values, ranges from 1e-300
// to 1e300); all text is escaped.
std::string svg_line_chart(const std::vector<ChartSeries>& series, const ChartOptions& options = {});

// Tick values covering [lo, hi]: first <= lo, last >= hi, equal steps of 1, 2 or 5 times a power of ten, about
// `target` of them. lo == hi (or a range too small for doubles) gets a symmetric range around the value.
struct AxisTicks {
  double lo = 0, hi = 1, step = 0.2;
  std::vector<double> values;
};
AxisTicks nice_ticks(double lo, double hi, int target = 5);
// A tick's label, with as many decimals as the step needs ("0.25", "1500", "2e-07").
std::string format_tick(double value, double step);

// ---- HTML ---------------------------------------------------------------------------------------------------

// Text for HTML element content or a quoted attribute: & < > " ' become entities; invalid UTF-8 and control
// characters (other than tab and newline) become U+FFFD.
std::string html_escape(std::string_view text);

// The report page for a run folder, as a string. Throws stoke::UserError when run_dir is not a folder;
// missing or damaged files inside it only leave their parts of the page empty (and say so).
std::string render_report_html(const std::string& run_dir);

// Writes RUNDIR/report.html atomically (base/fs.h). Throws stoke::UserError when run_dir is not a
// folder, stoke::Error when the file cannot be written. Safe to call while the run is training (it reads a
// snapshot; a line being written is skipped), at every epoch's end or once at the end of the run.
void write_report_html(const std::string& run_dir);

}  // namespace stoke
