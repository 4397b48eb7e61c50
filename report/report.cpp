#include "report/report.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <ctime>
#include <filesystem>
#include <limits>
#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

#include "base/display_name.h"
#include "base/error.h"
#include "base/format.h"
#include "base/fs.h"
#include "report/html.h"
#include "report/run_files.h"
#include "report/sections.h"
#include "report/svg_chart.h"

namespace stoke {
namespace fs = std::filesystem;
using json = nlohmann::json;
using namespace sections;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// ---- what every section reads ---------------------------------------------------------------------------------

struct Page {
  Page(const std::string& dir, const RunFiles& files) : run_dir(dir), r(files), cfg(files.config), sum(files.summary) {}

  const std::string& run_dir;
  const RunFiles& r;
  const json& cfg;
  const json& sum;
  std::vector<std::string> names;  // class names (config.json)
  double total_time = kNaN;        // the latest run time of any line, seconds
  double tscale = 1;               // seconds per unit of the time axes
  std::string time_label;          // the time axes' title
  std::string run_name, model;

  // A setting from summary.json, else config.json.
  std::string pick(const char* key) const {
    std::string s = field_text(sum, key);
    return s.empty() ? field_text(cfg, key) : s;
  }
  double pick_num(const char* key) const {
    const double v = field_number(sum, key);
    return std::isfinite(v) ? v : field_number(cfg, key);
  }
};

Page make_page(const std::string& run_dir, const RunFiles& r) {
  Page p(run_dir, r);
  if (p.cfg.contains("classes") && p.cfg["classes"].is_array())
    for (const json& c : p.cfg["classes"]) p.names.push_back(c.is_string() ? c.get<std::string>() : c.dump());

  // Time axis unit for the whole run.
  for (const auto* v : {&r.train, &r.epochs})
    for (const RunLine& l : *v)
      if (std::isfinite(l.t)) p.total_time = std::isfinite(p.total_time) ? std::max(p.total_time, l.t) : l.t;
  std::string tunit = "s";
  if (std::isfinite(p.total_time) && p.total_time > 3 * 3600) p.tscale = 3600, tunit = "h";
  else if (std::isfinite(p.total_time) && p.total_time > 600) p.tscale = 60, tunit = "min";
  p.time_label = "run time (" + tunit + ")";

  std::error_code ec;
  fs::path abs = fs::absolute(run_dir, ec).lexically_normal();
  if (abs.filename().empty()) abs = abs.parent_path();  // "runs/x/"
  p.run_name = display_name(abs.filename().string());   // the page shows every name escaped, never replaced
  p.model = p.pick("model");
  return p;
}

// ---- chart data -----------------------------------------------------------------------------------------------

// Series of one field over the lines (x chosen by the caller); points without the field are left out.
struct XY {
  std::vector<double> x, y;
  bool any() const { return !x.empty(); }
};
template <typename XFn>
XY series_of(const std::vector<RunLine>& lines, const char* field, double scale, XFn xf) {
  XY s;
  for (const RunLine& l : lines) {
    const double v = field_number(l.j, field), x = xf(l);
    if (std::isfinite(v) && std::isfinite(x)) {
      s.x.push_back(x);
      s.y.push_back(v * scale);
    }
  }
  return s;
}

// A fraction series in percent (values above 1.5 are taken as percentages already).
XY percent_series(const std::vector<RunLine>& lines, const char* field, double time_scale) {
  XY s = series_of(lines, field, 1.0, [&](const RunLine& l) { return l.t / time_scale; });
  const double mx = s.y.empty() ? 0 : *std::max_element(s.y.begin(), s.y.end());
  if (mx <= 1.5)
    for (double& v : s.y) v *= 100;
  return s;
}

bool any_field(const std::vector<RunLine>& lines, const char* field) {
  return std::any_of(lines.begin(), lines.end(),
                     [&](const RunLine& l) { return std::isfinite(field_number(l.j, field)); });
}

ChartSeries make_series(std::string name, XY xy, const char* color, bool markers = false, bool dashed = false) {
  ChartSeries s;
  s.name = std::move(name);
  s.x = std::move(xy.x);
  s.y = std::move(xy.y);
  s.color = color;
  s.markers = markers;
  s.dashed = dashed;
  return s;
}

double at_step(const RunLine& l) { return field_number(l.j, "step"); }

// ---- header ---------------------------------------------------------------------------------------------------

std::string page_head(const Page& p) {
  std::ostringstream o;
  o << "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
    << "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
    << "<title>stoke report: " << html_escape(p.run_name) << (p.model.empty() ? "" : " (" + html_escape(p.model) + ")")
    << "</title>\n<style>" << css() << "</style>\n</head>\n<body>\n<main>\n";
  return o.str();
}

std::string page_title(const Page& p) {
  std::ostringstream o;
  o << "<h1>" << html_escape(p.model.empty() ? std::string("stoke run") : p.model) << " &#8212; "
    << html_escape(p.run_name) << "</h1>\n";
  std::string status;
  if (p.r.has_summary) status = "finished";
  else if (p.r.has_metrics) status = "no summary.json: still running, interrupted or stopped by an error";
  else status = "no metrics.jsonl: nothing recorded yet";
  o << "<p class=\"sub\">" << html_escape(display_name(p.run_dir)) << " &#183; " << html_escape(status) << "</p>\n";
  return o.str();
}

// Final accuracy (validation when there is one, else training, marked), time, epochs, steps, batch.
std::string progress_cards(const Page& p) {
  const RunFiles& r = p.r;
  std::ostringstream o;
  double acc = field_number(p.sum, "final_val_acc");
  std::string acc_kind = "validation";
  for (auto it = r.epochs.rbegin(); !std::isfinite(acc) && it != r.epochs.rend(); ++it)
    acc = field_number(it->j, "val_acc");
  if (!std::isfinite(acc)) {
    acc = field_number(p.sum, "final_train_acc");
    if (!std::isfinite(acc) && !r.epochs.empty()) acc = field_number(r.epochs.back().j, "train_acc");
    acc_kind = "training";
  }
  o << card(std::isfinite(acc) ? "final " + acc_kind + " accuracy" : "final accuracy", percent(acc), true);
  double secs = field_number(p.sum, "seconds_total");
  if (!std::isfinite(secs)) secs = p.total_time;
  o << card("total time", duration(secs), true);
  double epochs_done = kNaN;
  for (const RunLine& l : r.epochs) {
    const double e = field_number(l.j, "epoch");
    if (std::isfinite(e)) epochs_done = std::isfinite(epochs_done) ? std::max(epochs_done, e) : e;
  }
  const double epochs_planned = p.pick_num("epochs");
  std::string ep = std::isfinite(epochs_done) ? fixed(epochs_done, 0) : std::string("0");
  if (std::isfinite(epochs_planned)) ep += " / " + fixed(epochs_planned, 0);
  o << card("epochs", ep);
  double steps = field_number(p.sum, "steps");
  if (!std::isfinite(steps))
    for (const auto* v : {&r.train, &r.epochs})
      for (const RunLine& l : *v) {
        const double st = field_number(l.j, "step");
        if (std::isfinite(st)) steps = std::isfinite(steps) ? std::max(steps, st) : st;
      }
  o << card("steps", std::isfinite(steps) ? html_escape(format_count(steps)) : "&#8212;");
  o << card("batch",
            std::isfinite(field_number(p.cfg, "batch_size")) ? fixed(field_number(p.cfg, "batch_size"), 0) : "&#8212;");
  return o.str();
}

// Backend, model, parameters, data, input, optimizer, image counts, and the problems counted.
std::string setting_cards(const Page& p) {
  const json& cfg = p.cfg;
  std::ostringstream o;
  std::string backend = p.pick("backend");
  const std::string device = p.pick("device");
  if (!device.empty() && device != backend && device != "auto")
    backend = backend.empty() ? device : backend + " · " + device;
  const double threads = field_number(cfg, "threads");
  if (std::isfinite(threads) && (backend == "cpu" || backend.empty()))
    backend += str(backend.empty() ? "" : ", ", threads, " threads");
  o << card("backend / device", backend.empty() ? "&#8212;" : html_escape(backend));
  o << card("model", p.model.empty() ? "&#8212;" : html_escape(p.model));
  const double params = p.pick_num("params");
  if (std::isfinite(params)) o << card("parameters", html_escape(format_count(params)));
  std::string data = field_text(cfg, "data");
  const std::string val = field_text(cfg, "val");
  o << card("data", data.empty() ? "&#8212;" : html_escape(data) + (val.empty() ? "" : "<br>val: " + html_escape(val)));
  if (cfg.contains("input") && cfg["input"].is_array() && cfg["input"].size() == 3) {
    const json& in = cfg["input"];
    o << card("input", html_escape(str(in[0].dump(), "×", in[1].dump(), "×", in[2].dump())) +
                           (p.names.empty() ? "" : str(", ", p.names.size(), " classes")));
  }
  const std::string optim = field_text(cfg, "optimizer");
  if (!optim.empty()) {
    std::string s = optim;
    const double lr = field_number(cfg, "lr");
    if (std::isfinite(lr)) s += str(", lr ", lr < 0.01 ? fixed(lr, 5) : fixed(lr, 3));
    if (!field_text(cfg, "schedule").empty()) s += ", " + field_text(cfg, "schedule");
    o << card("optimizer", html_escape(s));
  }
  const double tri = p.pick_num("train_images"), vai = p.pick_num("val_images");
  if (std::isfinite(tri))
    o << card("images", html_escape(format_count(tri)) + " train" +
                            (std::isfinite(vai) && vai > 0 ? " · " + html_escape(format_count(vai)) + " val" : ""));
  for (const auto& [k, label] :
       {std::pair{"corrupt_images", "corrupt images"}, std::pair{"vanished_images", "vanished during the run"},
        std::pair{"skipped_steps", "skipped steps"}}) {
    const double v = field_number(p.sum, k);
    if (std::isfinite(v) && v > 0) o << card(label, fixed(v, 0));
  }
  return o.str();
}

std::string summary_cards(const Page& p) {
  return "<div class=\"cards\">" + progress_cards(p) + setting_cards(p) + "</div>\n";
}

// summary.json's verdict, then what is missing or damaged among the run's files.
std::string verdict_and_notes(const Page& p) {
  const RunFiles& r = p.r;
  std::ostringstream o;
  if (p.sum.contains("verdict")) o << verdict_section(p.sum["verdict"]) << "\n";
  if (!r.notes.empty() || !r.has_config || !r.has_metrics) {
    o << "<div class=\"notes\">";
    if (!r.has_metrics) o << "<div>metrics.jsonl is missing: no curves.</div>";
    if (!r.has_config) o << "<div>config.json is missing or unreadable: settings and class names unknown.</div>";
    for (const std::string& n : r.notes) o << "<div>" << html_escape(n) << "</div>";
    o << "</div>\n";
  }
  return o.str();
}

// ---- training plots -------------------------------------------------------------------------------------------

std::string loss_figure(const Page& p) {
  ChartOptions c;
  c.title = "Loss";
  c.x_label = "step";
  c.y_label = "loss";
  std::vector<ChartSeries> s;
  XY tr = series_of(p.r.train, "loss", 1.0, at_step);
  if (tr.any()) s.push_back(make_series("train (per logged window)", std::move(tr), "#1f77b4"));
  else
    s.push_back(make_series("train (per epoch)", series_of(p.r.epochs, "train_loss", 1.0, at_step), "#1f77b4", true));
  s.push_back(make_series("validation (per epoch)", series_of(p.r.epochs, "val_loss", 1.0, at_step), "#d62728", true));
  // A loss that falls by more than 10x reads better on a log axis.
  double lo = INFINITY, hi = 0;
  for (const ChartSeries& x : s)
    for (double v : x.y)
      if (v > 0 && std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
  if (hi > 10 * lo) {
    c.log_y = true;
    c.y_label = "loss (log scale)";
  }
  return figure(svg_line_chart(s, c),
                "Training loss averaged over each logged window of steps; validation loss at each evaluated epoch's "
                "last step.") +
         "\n";
}

std::string accuracy_figure(const Page& p) {
  ChartOptions c;
  c.title = "Accuracy";
  c.x_label = "step";
  c.y_label = "accuracy (%)";
  std::vector<ChartSeries> s;
  XY tr = series_of(p.r.train, "acc", 100.0, at_step);
  if (tr.any()) s.push_back(make_series("train (per logged window)", std::move(tr), "#1f77b4"));
  else
    s.push_back(make_series("train (per epoch)", series_of(p.r.epochs, "train_acc", 100.0, at_step), "#1f77b4", true));
  s.push_back(make_series("validation (per epoch)", series_of(p.r.epochs, "val_acc", 100.0, at_step), "#d62728", true));
  return figure(svg_line_chart(s, c),
                "Training accuracy of each logged window (with augmentation, if any); validation accuracy per "
                "evaluated epoch.") +
         "\n";
}

std::string throughput_figure(const Page& p) {
  auto at_time = [&](const RunLine& l) { return l.t / p.tscale; };
  ChartOptions c;
  c.title = "Throughput";
  c.x_label = p.time_label;
  c.y_label = "images / s";
  c.y_include_zero = true;
  std::vector<ChartSeries> s;
  XY tr = series_of(p.r.train, "img_per_s", 1.0, at_time);
  if (tr.any()) s.push_back(make_series("training (epoch so far)", std::move(tr), "#2ca02c"));
  s.push_back(make_series("epoch average", series_of(p.r.epochs, "img_per_s", 1.0, at_time), "#9467bd", true, true));
  return figure(svg_line_chart(s, c),
                "Training images per second: the running rate within each epoch, and each epoch's average.") +
         "\n";
}

std::string busy_and_stall_figure(const Page& p) {
  const RunFiles& r = p.r;
  ChartOptions c;
  c.x_label = p.time_label;
  c.y_label = "% of time";
  c.y_min = 0;
  std::vector<ChartSeries> s;
  const bool gpu_train = any_field(r.train, "gpu_busy"), stall_train = any_field(r.train, "input_stall");
  XY gpu = percent_series(gpu_train ? r.train : r.epochs, "gpu_busy", p.tscale);
  XY stall = percent_series(stall_train ? r.train : r.epochs, "input_stall", p.tscale);
  // Data parallel only: a single-process run has no all-reduce, and its chart stays as it was (no "not measured").
  const bool comm_train = any_field(r.train, "comm_share");
  XY comm = percent_series(comm_train ? r.train : r.epochs, "comm_share", p.tscale);
  c.title = comm.any() ? "GPU busy, input stall and all-reduce" : "GPU busy and input stall";
  double mx = 100;
  for (const XY* xy : {&gpu, &stall, &comm})
    for (double v : xy->y) mx = std::max(mx, v);
  c.y_max = mx;
  std::vector<std::string> missing;
  if (!gpu.any()) missing.push_back("GPU busy");
  if (!stall.any()) missing.push_back("input stall");
  const bool comm_any = comm.any();
  if (gpu.any()) s.push_back(make_series("GPU busy", std::move(gpu), "#ff7f0e", !gpu_train));
  if (stall.any())
    s.push_back(make_series("input stall (waiting for batches)", std::move(stall), "#d62728", !stall_train));
  if (comm_any) s.push_back(make_series("all-reduce (communication share)", std::move(comm), "#1f77b4", !comm_train));
  if (missing.size() == 2 && !comm_any) c.empty_text = "not measured";
  else if (!missing.empty()) c.note = missing[0] + (missing.size() == 2 ? " and " + missing[1] : "") + ": not measured";
  return figure(svg_line_chart(s, c), comm_any ? "Share of training time the GPU was busy, the share spent waiting for "
                                                 "input batches, and the share spent in the gradient all-reduce."
                                               : "Share of training time the GPU was busy, and the share spent waiting "
                                                 "for input batches.") + "\n";
}

// Only when some line records the decoder count.
std::string decoder_figure(const Page& p) {
  const bool dec_train = any_field(p.r.train, "decoders");
  if (!dec_train && !any_field(p.r.epochs, "decoders")) return "";
  auto at_time = [&](const RunLine& l) { return l.t / p.tscale; };
  ChartOptions c;
  c.title = "Decoder threads";
  c.x_label = p.time_label;
  c.y_label = "threads";
  c.y_include_zero = true;
  std::vector<ChartSeries> s;
  s.push_back(make_series("JPEG decoders", series_of(dec_train ? p.r.train : p.r.epochs, "decoders", 1.0, at_time),
                          "#8c564b", !dec_train));
  return figure(svg_line_chart(s, c), "JPEG decoder threads feeding the training batches.") + "\n";
}

std::string memory_figure(const Page& p) {
  ChartOptions c;
  c.title = "Resident memory";
  c.x_label = "epoch";
  c.y_label = "MiB";
  c.y_include_zero = true;
  c.empty_text = "not recorded";
  std::vector<ChartSeries> s;
  s.push_back(
      make_series("resident set size",
                  series_of(p.r.epochs, "rss_mib", 1.0, [](const RunLine& l) { return field_number(l.j, "epoch"); }),
                  "#17becf", true));
  return figure(svg_line_chart(s, c),
                "The process's resident memory at the end of each epoch: growth across epochs is a leak.") +
         "\n";
}

std::string training_plots(const Page& p) {
  std::string o = "<h2>Training</h2>\n<div class=\"plots\">\n";
  o += loss_figure(p);
  o += accuracy_figure(p);
  o += throughput_figure(p);
  o += busy_and_stall_figure(p);
  o += decoder_figure(p);
  o += memory_figure(p);
  o += "</div>\n";
  if (!any_field(p.r.train, "decoders") && !any_field(p.r.epochs, "decoders")) {
    const double d = p.pick_num("decoders");
    o += "<p class=\"sub\">Decoder threads: " +
         (std::isfinite(d) && d > 0 ? fixed(d, 0) + " (from the settings)" : std::string("not recorded")) + ".</p>\n";
  }
  return o;
}

// ---- evaluation -----------------------------------------------------------------------------------------------

// The last evaluation's confusion matrix: the latest epoch line with a val_report, else summary.json's.
std::string confusion_matrix(const Page& p) {
  json report;
  std::string caption;
  for (auto it = p.r.epochs.rbegin(); it != p.r.epochs.rend(); ++it)
    if (it->j.contains("val_report") && it->j["val_report"].is_object()) {
      report = it->j["val_report"];
      caption = str("Validation set, epoch ", field_text(it->j, "epoch"));
      break;
    }
  if (report.is_null() && p.sum.contains("final_val_report") && p.sum["final_val_report"].is_object()) {
    report = p.sum["final_val_report"];
    caption = "Validation set, last evaluation (summary.json)";
  }
  std::ostringstream o;
  o << "<h2>Confusion matrix</h2>\n";
  const std::string table = report.is_object() ? confusion_section(report, "", p.names) : "";
  if (table.empty()) {
    o << "<p class=\"sub\">No evaluation recorded (no validation data, or no epoch evaluated yet).</p>\n";
    return o.str();
  }
  const double n = field_number(report, "count");
  caption += std::isfinite(n) ? str(", ", format_count(n), " images") : "";
  const double acc = field_number(report, "accuracy"), auc = field_number(report, "macro_auc"),
               loss = field_number(report, "loss");
  if (std::isfinite(acc)) caption += ", accuracy " + percent(acc);
  if (std::isfinite(auc)) caption += ", macro ROC-AUC " + auc_text(auc);
  if (std::isfinite(loss)) caption += ", loss " + fixed(loss, 4);
  o << "<p class=\"sub\">" << html_escape(caption)
    << ". Rows: true class; columns: predicted class; shading: share of the "
    << "true class's images (green on the diagonal, red off it).</p>\n"
    << table << "\n";
  return o.str();
}

// One row per epoch line.
std::string epoch_table(const Page& p) {
  if (p.r.epochs.empty()) return "";
  std::ostringstream o;
  o << "<h2>Epochs</h2>\n<div class=\"scroll\"><table class=\"ep\"><thead><tr><th>epoch</th><th>step</th><th>train "
       "loss</th>"
       "<th>train acc</th><th>val loss</th><th>val acc</th><th>val AUC</th><th>img/s</th><th>seconds</th><th>RSS "
       "MiB</th>"
       "<th>input stall</th></tr></thead><tbody>";
  for (const RunLine& l : p.r.epochs) {
    const json& j = l.j;
    const double stall = field_number(j, "input_stall");
    o << "<tr><td>" << fixed(field_number(j, "epoch"), 0) << "</td><td>" << fixed(field_number(j, "step"), 0)
      << "</td><td>" << fixed(field_number(j, "train_loss"), 4) << "</td><td>" << percent(field_number(j, "train_acc"))
      << "</td><td>" << fixed(field_number(j, "val_loss"), 4) << "</td><td>" << percent(field_number(j, "val_acc"))
      << "</td><td>" << auc_text(field_number(j, "val_auc")) << "</td><td>" << fixed(field_number(j, "img_per_s"), 0)
      << "</td><td>" << fixed(field_number(j, "seconds"), 1) << "</td><td>" << fixed(field_number(j, "rss_mib"), 0)
      << "</td><td>" << (std::isfinite(stall) ? percent(stall > 1.5 ? stall / 100 : stall, 1) : "&#8212;")
      << "</td></tr>";
  }
  o << "</tbody></table></div>\n";
  return o.str();
}

// When and from what the page was written, and how to open the TensorBoard files beside it.
std::string page_footer(const Page& p) {
  const RunFiles& r = p.r;
  std::ostringstream o;
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
  o << "<footer>Written by stoke at " << buf << " from "
    << (r.has_metrics ? str("metrics.jsonl (", r.lines, " lines)") : "no metrics")
    << (r.has_config ? ", config.json" : "") << (r.has_summary ? ", summary.json" : "") << ".";
  std::error_code ec;
  const fs::path tb = fs::path(p.run_dir) / "tensorboard";
  if (fs::is_directory(tb, ec)) o << " TensorBoard: tensorboard --logdir " << html_escape(display_name(tb.string()));
  o << "</footer>\n";
  return o.str();
}

}  // namespace

// ---- the page -------------------------------------------------------------------------------------------------

std::string render_report_html(const std::string& run_dir) {
  std::error_code ec;
  if (!fs::is_directory(run_dir, ec)) throw UserError(str(display_name(run_dir), ": no such run folder"));
  const RunFiles r = read_run_files(run_dir);
  const Page p = make_page(run_dir, r);
  std::string html = page_head(p);
  html += page_title(p);
  html += summary_cards(p);
  html += verdict_and_notes(p);
  html += training_plots(p);
  html += confusion_matrix(p);
  html += epoch_table(p);
  html += page_footer(p);
  html += "</main>\n</body>\n</html>\n";
  return html;
}

void check_run_folder(const std::string& run_dir) {
  std::error_code ec;
  const fs::path dir(run_dir);
  const char* holds = "a run folder is what stoke train writes: config.json, metrics.jsonl, checkpoints/, summary.json";
  if (!fs::is_directory(dir, ec)) throw UserError(str(display_name(run_dir), ": no such run folder (", holds, ")"));
  if (!fs::exists(dir / "config.json", ec) && !fs::exists(dir / "metrics.jsonl", ec))
    throw UserError(str(display_name(run_dir), " is not a run folder: it holds neither config.json nor metrics.jsonl (",
                        holds, ")"));
}

void write_report_html(const std::string& run_dir) {
  const std::string html = render_report_html(run_dir);
  atomic_write_file((fs::path(run_dir) / "report.html").string(), html);
}

}  // namespace stoke
