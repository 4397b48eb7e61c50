#include "report/report.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "base/error.h"
#include "base/format.h"
#include "base/fs.h"

namespace stoke {
namespace fs = std::filesystem;
using json = nlohmann::json;
using ld = long double;  // chart ranges: wide enough that hi - lo of any two doubles is finite

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// ---- escaping -------------------------------------------------------------------------------------------------

std::string html_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size() + s.size() / 8);
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  static const char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD
  for (size_t i = 0; i < n;) {
    const unsigned char c = p[i];
    if (c < 0x80) {
      switch (c) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&quot;"; break;
        case '\'': out += "&#39;"; break;
        case '\t':
        case '\n': out.push_back(static_cast<char>(c)); break;
        default:
          if (c < 0x20 || c == 0x7F) out += kReplacement;
          else out.push_back(static_cast<char>(c));
      }
      ++i;
      continue;
    }
    // A well-formed UTF-8 sequence (no overlongs, no surrogates, at most U+10FFFF) is copied as it is.
    size_t len = 0;
    uint32_t cp = 0, min = 0;
    if ((c & 0xE0) == 0xC0) len = 2, cp = c & 0x1Fu, min = 0x80;
    else if ((c & 0xF0) == 0xE0) len = 3, cp = c & 0x0Fu, min = 0x800;
    else if ((c & 0xF8) == 0xF0) len = 4, cp = c & 0x07u, min = 0x10000;
    bool ok = len > 0 && i + len <= n;
    for (size_t k = 1; ok && k < len; ++k) {
      if ((p[i + k] & 0xC0) != 0x80) ok = false;
      else cp = (cp << 6) | (p[i + k] & 0x3Fu);
    }
    ok = ok && cp >= min && cp <= 0x10FFFF && !(cp >= 0xD800 && cp <= 0xDFFF) && !(cp >= 0x80 && cp < 0xA0);
    if (ok) {
      out.append(s.data() + i, len);
      i += len;
    } else {
      out += kReplacement;
      ++i;
    }
  }
  return out;
}

// ---- ticks ----------------------------------------------------------------------------------------------------

namespace {

// A "nice" number near x > 0: 1, 2, 5 or 10 times a power of ten (rounded, or the next at or above x).
ld nice_number(ld x, bool round) {
  const ld e = std::floor(std::log10(x));
  const ld p = std::pow(10.0L, e);
  const ld f = x / p;
  ld nf;
  if (round) nf = f < 1.5L ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10;
  else nf = f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10;
  return nf * p;
}

struct TicksL {
  ld lo = 0, hi = 1, step = 0.2L;
  std::vector<ld> values;
};

TicksL nice_ticks_l(ld lo, ld hi, int target) {
  target = std::clamp(target, 2, 20);
  if (!std::isfinite(lo) || !std::isfinite(hi)) lo = 0, hi = 1;
  if (lo > hi) std::swap(lo, hi);
  const ld mag = std::max(std::fabs(lo), std::fabs(hi));
  // A range doubles cannot resolve (or none): centre a small range on the value.
  if (hi - lo <= mag * 1e-12L || hi - lo < 1e-300L) {
    const ld c = (lo + hi) / 2;
    const ld d = std::fabs(c) > 1e-300L ? std::fabs(c) * 0.1L : 1.0L;
    lo = c - d;
    hi = c + d;
  }
  TicksL t;
  const ld range = nice_number(hi - lo, false);
  t.step = nice_number(range / (target - 1), true);
  t.lo = std::floor(lo / t.step) * t.step;
  t.hi = std::ceil(hi / t.step) * t.step;
  const auto count = static_cast<int>(std::llround((t.hi - t.lo) / t.step));
  for (int i = 0; i <= count && i <= 100; ++i) {
    ld v = t.lo + t.step * i;
    if (std::fabs(v) < t.step * 1e-6L) v = 0;  // no "-0" or 1e-17 for zero
    t.values.push_back(v);
  }
  return t;
}

std::string format_tick_l(ld v, ld step) {
  if (v == 0) return "0";
  const ld mag = std::max(std::fabs(v), std::fabs(step));
  char buf[64];
  if (mag >= 1e7L || step < 1e-4L) {
    // Enough mantissa digits to tell neighbouring ticks apart.
    int digits = static_cast<int>(std::floor(std::log10(mag)) - std::floor(std::log10(step)));
    digits = std::clamp(digits, 0, 15);
    std::snprintf(buf, sizeof buf, "%.*Le", digits, v);
    // Trim zeros in the mantissa ("1.50e+06" -> "1.5e+06") and the exponent's padding ("e+06" -> "e6").
    std::string s = buf;
    const size_t e = s.find('e');
    std::string mant = s.substr(0, e), ex = s.substr(e + 1);
    if (mant.find('.') != std::string::npos) {
      while (!mant.empty() && mant.back() == '0') mant.pop_back();
      if (!mant.empty() && mant.back() == '.') mant.pop_back();
    }
    const bool neg = !ex.empty() && ex[0] == '-';
    size_t k = (ex[0] == '+' || ex[0] == '-') ? 1 : 0;
    while (k + 1 < ex.size() && ex[k] == '0') ++k;
    return mant + "e" + (neg ? "-" : "") + ex.substr(k);
  }
  const int decimals = std::clamp(static_cast<int>(-std::floor(std::log10(step) + 1e-9L)), 0, 10);
  std::snprintf(buf, sizeof buf, "%.*Lf", decimals, v);
  return buf;
}

}  // namespace

AxisTicks nice_ticks(double lo, double hi, int target) {
  TicksL t = nice_ticks_l(lo, hi, target);
  AxisTicks a;
  auto clampd = [](ld v) {
    return static_cast<double>(std::clamp<ld>(v, -std::numeric_limits<double>::max(), std::numeric_limits<double>::max()));
  };
  a.lo = clampd(t.lo);
  a.hi = clampd(t.hi);
  a.step = clampd(t.step);
  for (ld v : t.values) a.values.push_back(clampd(v));
  return a;
}

std::string format_tick(double value, double step) {
  if (!std::isfinite(value)) return "";
  if (!(step > 0) || !std::isfinite(step)) step = std::max(std::fabs(value), 1e-300);
  return format_tick_l(value, step);
}

// ---- SVG line chart -------------------------------------------------------------------------------------------

namespace {

const char* const kPalette[] = {"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"};

// A coordinate: one decimal, always finite.
std::string coord(ld v) {
  if (!std::isfinite(v)) v = 0;
  v = std::clamp<ld>(v, -1e6L, 1e6L);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", static_cast<double>(v));
  std::string s = buf;
  if (s == "-0.0") s = "0.0";
  return s;
}

using Segment = std::vector<std::pair<double, double>>;

// The series as runs of finite points, reduced to at most about max_points (min and max y of each bucket of
// consecutive points, in order, so spikes survive).
std::vector<Segment> segments_of(const ChartSeries& s, size_t max_points) {
  std::vector<Segment> segs;
  const size_t n = std::min(s.x.size(), s.y.size());
  Segment cur;
  size_t total = 0;
  for (size_t i = 0; i < n; ++i) {
    if (std::isfinite(s.x[i]) && std::isfinite(s.y[i])) {
      cur.emplace_back(s.x[i], s.y[i]);
      ++total;
    } else if (!cur.empty()) {
      segs.push_back(std::move(cur));
      cur.clear();
    }
  }
  if (!cur.empty()) segs.push_back(std::move(cur));
  max_points = std::max<size_t>(max_points, 4);
  if (total <= max_points) return segs;
  const size_t bucket = (total + max_points / 2 - 1) / (max_points / 2);
  for (Segment& seg : segs) {
    if (seg.size() <= 2) continue;
    Segment out;
    size_t last = 0;  // index in seg of the last point kept
    for (size_t b = 0; b < seg.size(); b += bucket) {
      const size_t e = std::min(seg.size(), b + bucket);
      size_t lo = b, hi = b;
      for (size_t k = b; k < e; ++k) {
        if (seg[k].second < seg[lo].second) lo = k;
        if (seg[k].second > seg[hi].second) hi = k;
      }
      out.push_back(seg[std::min(lo, hi)]);
      if (lo != hi) out.push_back(seg[std::max(lo, hi)]);
      last = std::max(lo, hi);
    }
    // Keep the true last point, so the line ends where the data ends.
    if (last + 1 < seg.size()) out.push_back(seg[seg.size() - 1]);
    seg = std::move(out);
  }
  return segs;
}

// Rough width of a label in the 11 px sans-serif font.
double text_width(const std::string& s, double px = 11) {
  size_t chars = 0;
  for (unsigned char c : s)
    if ((c & 0xC0) != 0x80) ++chars;
  return static_cast<double>(chars) * px * 0.6;
}

}  // namespace

std::string svg_line_chart(const std::vector<ChartSeries>& series, const ChartOptions& opt) {
  const double W = std::clamp(opt.width, 160, 4000), H = std::clamp(opt.height, 120, 4000);
  std::ostringstream o;
  o << "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 " << W << ' ' << H << "\" width=\"" << W
    << "\" height=\"" << H << "\" role=\"img\" aria-label=\"" << html_escape(opt.title)
    << "\" font-family=\"sans-serif\" font-size=\"11\">";
  o << "<title>" << html_escape(opt.title) << "</title>";
  o << "<rect x=\"0\" y=\"0\" width=\"" << W << "\" height=\"" << H << "\" fill=\"#ffffff\"/>";
  double top = 8;
  if (!opt.title.empty()) {
    o << "<text x=\"10\" y=\"19\" font-size=\"13\" font-weight=\"bold\" fill=\"#222222\">" << html_escape(opt.title)
      << "</text>";
    top = 28;
  }

  // Data, colours, legend entries.
  struct Prepared {
    std::vector<Segment> segs;
    std::string color, name;
    bool markers, dashed;
  };
  std::vector<Prepared> prep;
  size_t palette_i = 0;
  ld xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
  for (const ChartSeries& s : series) {
    Prepared p;
    if (opt.log_y) {  // the log axis is drawn in log10 space; values <= 0 have no place on it
      ChartSeries t = s;
      for (double& y : t.y) y = y > 0 ? std::log10(y) : kNaN;
      p.segs = segments_of(t, opt.max_points);
    } else {
      p.segs = segments_of(s, opt.max_points);
    }
    p.color = s.color.empty() ? kPalette[palette_i++ % (sizeof kPalette / sizeof kPalette[0])] : s.color;
    p.name = s.name;
    p.markers = s.markers;
    p.dashed = s.dashed;
    for (const Segment& seg : p.segs)
      for (const auto& [x, y] : seg) {
        xmin = std::min<ld>(xmin, x);
        xmax = std::max<ld>(xmax, x);
        ymin = std::min<ld>(ymin, y);
        ymax = std::max<ld>(ymax, y);
      }
    prep.push_back(std::move(p));
  }
  const bool empty = !(xmin <= xmax);

  // Legend: one row of swatches and names, wrapped to the width.
  std::ostringstream legend;
  {
    double lx = 64, ly = top + 4;
    bool any = false;
    for (const Prepared& p : prep) {
      if (p.name.empty() || p.segs.empty()) continue;  // a series with nothing to draw gets no entry
      const double w = 28 + text_width(p.name) + 16;
      if (any && lx + w > W - 8) {
        lx = 64;
        ly += 16;
      }
      legend << "<line x1=\"" << coord(lx) << "\" y1=\"" << coord(ly) << "\" x2=\"" << coord(lx + 22) << "\" y2=\""
             << coord(ly) << "\" stroke=\"" << html_escape(p.color) << "\" stroke-width=\"2.5\""
             << (p.dashed ? " stroke-dasharray=\"5 3\"" : "") << "/>";
      legend << "<text x=\"" << coord(lx + 28) << "\" y=\"" << coord(ly + 4) << "\" fill=\"#333333\">"
             << html_escape(p.name) << "</text>";
      lx += w;
      any = true;
    }
    if (any) top = ly + 14;
  }
  o << legend.str();

  const double left = 64, right = W - 16, bottom = H - (opt.x_label.empty() ? 24 : 40);
  const double plot_top = std::min(top + 4, bottom - 40);
  if (empty) {
    o << "<rect x=\"" << coord(left) << "\" y=\"" << coord(plot_top) << "\" width=\"" << coord(right - left)
      << "\" height=\"" << coord(bottom - plot_top) << "\" fill=\"#fafafa\" stroke=\"#cccccc\" stroke-dasharray=\"4 3\"/>";
    o << "<text x=\"" << coord((left + right) / 2) << "\" y=\"" << coord((plot_top + bottom) / 2 + 4)
      << "\" text-anchor=\"middle\" fill=\"#777777\" font-size=\"13\">" << html_escape(opt.empty_text) << "</text>";
    if (!opt.note.empty())
      o << "<text x=\"" << coord(right - 4) << "\" y=\"" << coord(plot_top + 14) << "\" text-anchor=\"end\" fill=\"#777777\">"
        << html_escape(opt.note) << "</text>";
    o << "</svg>";
    return o.str();
  }

  // Axis ranges. The y axis: positions (data space, log10 of it on a log axis) and labels.
  struct YTick {
    ld pos;
    std::string label;
  };
  std::vector<YTick> yticks;
  ld ylo, yhi;
  const int ytarget = std::max(2, static_cast<int>((bottom - plot_top) / 36));
  const TicksL xt = nice_ticks_l(xmin, xmax, std::max(2, static_cast<int>((right - left) / 110)));
  if (opt.log_y) {
    if (std::isfinite(opt.y_min) && opt.y_min > 0) ymin = std::log10(ld(opt.y_min));
    if (std::isfinite(opt.y_max) && opt.y_max > 0) ymax = std::log10(ld(opt.y_max));
    if (ymin > ymax) std::swap(ymin, ymax);
    if (ymax - ymin >= 1) {
      // Decades (1, 10, 100 ...), with 2 and 5 between them when there are few.
      const ld klo = std::floor(ymin + 1e-9L), khi = std::ceil(ymax - 1e-9L);
      const ld every = std::max<ld>(1, std::ceil((khi - klo) / ytarget));
      ylo = klo;
      yhi = klo;
      for (ld k = klo; k < khi + every - 1e-9L; k += every) {
        const ld v = std::pow(10.0L, k);
        yticks.push_back({k, format_tick_l(v, v)});
        yhi = k;
        if (khi - klo <= 2 && k < khi - 1e-9L)
          for (int m : {2, 5}) yticks.push_back({k + std::log10(ld(m)), format_tick_l(m * v, v)});
      }
    } else {
      // Less than a decade: linear nice values, placed on the log axis.
      const TicksL lin = nice_ticks_l(std::pow(10.0L, ymin), std::pow(10.0L, ymax), ytarget);
      ylo = lin.lo > 0 ? std::min<ld>(ymin, std::log10(lin.lo)) : ymin;
      yhi = std::max<ld>(ymax, std::log10(lin.hi));
      for (ld v : lin.values)
        if (v > 0 && std::log10(v) >= ylo - 1e-9L) yticks.push_back({std::log10(v), format_tick_l(v, lin.step)});
      if (!(yhi > ylo)) yhi = ylo + 1;
    }
  } else {
    if (std::isfinite(opt.y_min)) ymin = opt.y_min;
    if (std::isfinite(opt.y_max)) ymax = opt.y_max;
    if (opt.y_include_zero) {
      if (!std::isfinite(opt.y_min)) ymin = std::min<ld>(ymin, 0);
      if (!std::isfinite(opt.y_max)) ymax = std::max<ld>(ymax, 0);
    }
    if (ymin > ymax) std::swap(ymin, ymax);
    TicksL yt = nice_ticks_l(ymin, ymax, ytarget);
    ylo = yt.lo;
    yhi = yt.hi;
    // A fixed end stays where it was asked to be.
    if (std::isfinite(opt.y_min) || std::isfinite(opt.y_max)) {
      const ld lo = std::isfinite(opt.y_min) ? ld(opt.y_min) : yt.lo, hi = std::isfinite(opt.y_max) ? ld(opt.y_max) : yt.hi;
      if (hi > lo) ylo = lo, yhi = hi;
    }
    for (ld v : yt.values)
      if (v >= ylo - yt.step * 1e-9L && v <= yhi + yt.step * 1e-9L) yticks.push_back({v, format_tick_l(v, yt.step)});
  }
  auto px = [&](ld x) { return left + static_cast<double>((x - xt.lo) / (xt.hi - xt.lo) * (right - left)); };
  auto py = [&](ld y) {
    const ld t = std::clamp<ld>((y - ylo) / (yhi - ylo), -0.02L, 1.02L);
    return bottom - static_cast<double>(t * (bottom - plot_top));
  };

  // Grid and ticks.
  for (const YTick& t : yticks) {
    const double y = py(t.pos);
    o << "<line x1=\"" << coord(left) << "\" y1=\"" << coord(y) << "\" x2=\"" << coord(right) << "\" y2=\"" << coord(y)
      << "\" stroke=\"#e5e5e5\" stroke-width=\"1\"/>";
    o << "<text x=\"" << coord(left - 6) << "\" y=\"" << coord(y + 4) << "\" text-anchor=\"end\" fill=\"#444444\">"
      << html_escape(t.label) << "</text>";
  }
  for (ld v : xt.values) {
    const double x = px(v);
    o << "<line x1=\"" << coord(x) << "\" y1=\"" << coord(plot_top) << "\" x2=\"" << coord(x) << "\" y2=\""
      << coord(bottom) << "\" stroke=\"#f0f0f0\" stroke-width=\"1\"/>";
    o << "<line x1=\"" << coord(x) << "\" y1=\"" << coord(bottom) << "\" x2=\"" << coord(x) << "\" y2=\""
      << coord(bottom + 4) << "\" stroke=\"#333333\" stroke-width=\"1\"/>";
    o << "<text x=\"" << coord(x) << "\" y=\"" << coord(bottom + 16) << "\" text-anchor=\"middle\" fill=\"#444444\">"
      << html_escape(format_tick_l(v, xt.step)) << "</text>";
  }
  o << "<path d=\"M" << coord(left) << ' ' << coord(plot_top) << " V" << coord(bottom) << " H" << coord(right)
    << "\" fill=\"none\" stroke=\"#333333\" stroke-width=\"1\"/>";

  // Series.
  for (const Prepared& p : prep) {
    const std::string color = html_escape(p.color);
    for (const Segment& seg : p.segs) {
      if (seg.size() >= 2) {
        o << "<polyline fill=\"none\" stroke=\"" << color << "\" stroke-width=\"1.6\" stroke-linejoin=\"round\""
          << (p.dashed ? " stroke-dasharray=\"5 3\"" : "") << " points=\"";
        for (size_t i = 0; i < seg.size(); ++i) o << (i ? " " : "") << coord(px(seg[i].first)) << ',' << coord(py(seg[i].second));
        o << "\"/>";
      }
      if (p.markers || seg.size() == 1)
        for (const auto& [x, y] : seg)
          o << "<circle cx=\"" << coord(px(x)) << "\" cy=\"" << coord(py(y)) << "\" r=\"2.8\" fill=\"" << color << "\"/>";
    }
  }

  // Axis titles and the note.
  if (!opt.x_label.empty())
    o << "<text x=\"" << coord((left + right) / 2) << "\" y=\"" << coord(H - 8) << "\" text-anchor=\"middle\" fill=\"#222222\">"
      << html_escape(opt.x_label) << "</text>";
  if (!opt.y_label.empty())
    o << "<text transform=\"rotate(-90)\" x=\"" << coord(-(plot_top + bottom) / 2) << "\" y=\"14\" text-anchor=\"middle\" fill=\"#222222\">"
      << html_escape(opt.y_label) << "</text>";
  if (!opt.note.empty())
    o << "<text x=\"" << coord(right - 4) << "\" y=\"" << coord(plot_top + 12) << "\" text-anchor=\"end\" fill=\"#777777\">"
      << html_escape(opt.note) << "</text>";
  o << "</svg>";
  return o.str();
}

// ---- the run's files ------------------------------------------------------------------------------------------

namespace {

struct Line {
  json j;
  double t = kNaN;  // run time, seconds (elapsed_s continued across resumes)
};

struct RunFiles {
  json config = json::object(), summary = json::object();
  bool has_config = false, has_summary = false, has_metrics = false;
  std::vector<Line> train, epochs;
  int64_t lines = 0, skipped = 0;
  std::vector<std::string> notes;
};

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
  } catch (const std::exception& e) {
    notes.push_back(str(p.filename().string(), " could not be read (", e.what(), "); ignored"));
    return json::object();
  }
}

double num(const json& j, const char* key) {
  if (!j.is_object()) return kNaN;
  auto it = j.find(key);
  if (it == j.end() || !it->is_number()) return kNaN;
  return it->get<double>();
}

std::string text(const json& j, const char* key) {
  if (!j.is_object()) return "";
  auto it = j.find(key);
  if (it == j.end()) return "";
  if (it->is_string()) return it->get<std::string>();
  if (it->is_number() || it->is_boolean()) return it->dump();
  return "";
}

RunFiles read_run(const std::string& run_dir) {
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
    Line l;
    const double e = num(j, "elapsed_s");
    if (std::isfinite(e)) {
      if (e + 1e-9 < last) offset += last;  // a resumed process restarts its clock
      last = e;
      l.t = offset + e;
    }
    const std::string kind = text(j, "kind");
    l.j = std::move(j);
    if (kind == "train") r.train.push_back(std::move(l));
    else if (kind == "epoch") r.epochs.push_back(std::move(l));
  }
  if (r.skipped > 0)
    r.notes.push_back(str(r.skipped, " of ", r.lines, " lines of metrics.jsonl could not be read (a line torn by a crash, or "
                          "one being written) and ", r.skipped == 1 ? "was" : "were", " skipped"));
  return r;
}

// ---- formatting -----------------------------------------------------------------------------------------------

std::string fixed(double v, int decimals) {
  if (!std::isfinite(v)) return "&#8212;";  // em dash
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}
std::string percent(double fraction, int decimals = 2) {
  if (!std::isfinite(fraction)) return "&#8212;";
  return fixed(100 * fraction, decimals) + "%";
}
// An AUC: 4 decimals, 5 when 4 would round a value below 1 up to "1.0000".
std::string auc_text(double v) { return fixed(v, std::isfinite(v) && v >= 0.99995 && v < 1 ? 5 : 4); }
std::string duration(double s) {
  if (!std::isfinite(s) || s < 0) return "&#8212;";
  if (s < 60) return fixed(s, 1) + " s";
  return html_escape(format_duration(s));
}

// Series of one field over the lines (x chosen by the caller); points without the field are left out.
struct XY {
  std::vector<double> x, y;
  bool any() const { return !x.empty(); }
};
template <typename XFn>
XY series_of(const std::vector<Line>& lines, const char* field, double scale, XFn xf) {
  XY s;
  for (const Line& l : lines) {
    const double v = num(l.j, field), x = xf(l);
    if (std::isfinite(v) && std::isfinite(x)) {
      s.x.push_back(x);
      s.y.push_back(v * scale);
    }
  }
  return s;
}

// A fraction series in percent (values above 1.5 are taken as percentages already).
XY percent_series(const std::vector<Line>& lines, const char* field, double time_scale) {
  XY s = series_of(lines, field, 1.0, [&](const Line& l) { return l.t / time_scale; });
  const double mx = s.y.empty() ? 0 : *std::max_element(s.y.begin(), s.y.end());
  if (mx <= 1.5)
    for (double& v : s.y) v *= 100;
  return s;
}

bool any_field(const std::vector<Line>& lines, const char* field) {
  return std::any_of(lines.begin(), lines.end(), [&](const Line& l) { return std::isfinite(num(l.j, field)); });
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

const char kCss[] = R"(
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;margin:0;background:#f4f5f7;color:#222}
main{max-width:1360px;margin:0 auto;padding:18px 22px 40px}
h1{font-size:22px;margin:4px 0 2px}
h2{font-size:17px;margin:26px 0 10px;border-bottom:1px solid #ddd;padding-bottom:4px}
.sub{color:#666;margin:0 0 14px;font-size:13px}
.cards{display:flex;flex-wrap:wrap;gap:10px}
.card{background:#fff;border:1px solid #e1e3e6;border-radius:6px;padding:8px 12px;min-width:120px}
.card .k{font-size:11px;color:#777;text-transform:uppercase;letter-spacing:.04em}
.card .v{font-size:16px;font-weight:600;margin-top:2px;word-break:break-all}
.card.big .v{font-size:22px}
.verdict{background:#fff;border:1px solid #ccc;border-left:6px solid #888;border-radius:6px;padding:10px 14px;margin:16px 0}
.verdict.good{border-left-color:#2ea043}
.verdict.bad{border-left-color:#d73a49}
.verdict table td{padding:2px 12px 2px 0;vertical-align:top}
.plots{display:grid;grid-template-columns:repeat(auto-fit,minmax(560px,1fr));gap:14px}
figure{margin:0;background:#fff;border:1px solid #e1e3e6;border-radius:6px;padding:6px}
figure svg{width:100%;height:auto;display:block}
figcaption{font-size:12px;color:#666;padding:4px 6px 2px}
table.cm,table.ep{border-collapse:collapse;background:#fff;font-size:12px}
table.cm th,table.cm td,table.ep th,table.ep td{border:1px solid #e1e3e6;padding:3px 7px;text-align:right;font-variant-numeric:tabular-nums}
table.cm th{background:#f7f7f8;font-weight:600;white-space:nowrap}
table.cm td.acc{background:#f7f7f8;font-weight:600}
table.ep th{background:#f7f7f8}
.scroll{overflow-x:auto}
.notes{color:#8a6d3b;background:#fcf8e3;border:1px solid #faebcc;border-radius:6px;padding:8px 14px;font-size:13px}
footer{margin-top:30px;color:#888;font-size:12px}
)";

// The confusion matrix section (rows = true class, columns = predicted).
std::string confusion_section(const json& report, const std::string& caption, const std::vector<std::string>& names_in) {
  std::ostringstream o;
  const json& cm = report.contains("confusion") ? report["confusion"] : json();
  if (!cm.is_array() || cm.empty()) return "";
  const auto k = static_cast<size_t>(std::llround(std::sqrt(static_cast<double>(cm.size()))));
  if (k * k != cm.size()) return "<p class=\"sub\">The confusion matrix has " + std::to_string(cm.size()) +
                                 " entries (not a square number): not shown.</p>";
  std::vector<double> cells(cm.size(), 0.0);
  for (size_t i = 0; i < cm.size(); ++i) cells[i] = cm[i].is_number() ? cm[i].get<double>() : 0.0;
  std::vector<std::string> names(k);
  for (size_t c = 0; c < k; ++c) names[c] = c < names_in.size() ? names_in[c] : std::to_string(c);
  std::vector<double> row_total(k, 0), col_total(k, 0);
  for (size_t t = 0; t < k; ++t)
    for (size_t p = 0; p < k; ++p) row_total[t] += cells[t * k + p], col_total[p] += cells[t * k + p];
  auto class_value = [&](const char* key, size_t c) {
    const json& a = report.contains(key) ? report[key] : json();
    if (a.is_array() && c < a.size() && a[c].is_number()) return a[c].get<double>();
    return kNaN;
  };
  auto class_acc = [&](size_t c) {
    double v = class_value("class_accuracy", c);
    if (!std::isfinite(v) && row_total[c] > 0) v = cells[c * k + c] / row_total[c];
    return v;
  };
  const bool has_auc = report.contains("class_auc") && report["class_auc"].is_array();
  auto count = [](double v) { return std::isfinite(v) ? str(static_cast<int64_t>(std::llround(v))) : std::string("&#8212;"); };

  if (!caption.empty()) o << "<p class=\"sub\">" << caption << "</p>";
  constexpr size_t kMaxMatrix = 40;
  if (k <= kMaxMatrix) {
    o << "<div class=\"scroll\"><table class=\"cm\"><thead><tr><th>true &#8595; / predicted &#8594;</th>";
    for (size_t p = 0; p < k; ++p) o << "<th>" << html_escape(names[p]) << "</th>";
    o << "<th>images</th><th>accuracy</th>" << (has_auc ? "<th>ROC-AUC</th>" : "") << "</tr></thead><tbody>";
    for (size_t t = 0; t < k; ++t) {
      o << "<tr><th>" << html_escape(names[t]) << "</th>";
      for (size_t p = 0; p < k; ++p) {
        const double v = cells[t * k + p];
        const double frac = row_total[t] > 0 ? v / row_total[t] : 0.0;
        o << "<td class=\"c\"";
        if (v > 0) {
          // Shade by the share of the true class's images: green on the diagonal, red off it.
          const double alpha = 0.08 + 0.87 * std::sqrt(std::clamp(frac, 0.0, 1.0));
          o << " style=\"background:rgba(" << (t == p ? "46,160,67," : "215,58,73,") << fixed(alpha, 2) << ")"
            << (alpha > 0.6 ? ";color:#fff" : "") << "\" title=\"" << html_escape(names[t]) << " &#8594; "
            << html_escape(names[p]) << ": " << percent(frac, 1) << "\"";
        } else {
          o << " style=\"color:#bbb\"";
        }
        o << ">" << count(v) << "</td>";
      }
      o << "<td>" << count(row_total[t]) << "</td><td class=\"acc\">" << percent(class_acc(t)) << "</td>";
      if (has_auc) o << "<td>" << auc_text(class_value("class_auc", t)) << "</td>";
      o << "</tr>";
    }
    o << "<tr><th>predicted</th>";
    for (size_t p = 0; p < k; ++p) o << "<td>" << count(col_total[p]) << "</td>";
    o << "<td></td><td></td>" << (has_auc ? "<td></td>" : "") << "</tr>";
    o << "</tbody></table></div>";
    return o.str();
  }
  // Too many classes for a matrix: the most frequent confusions and every class's accuracy.
  struct Pair {
    double v;
    size_t t, p;
  };
  std::vector<Pair> pairs;
  for (size_t t = 0; t < k; ++t)
    for (size_t p = 0; p < k; ++p)
      if (t != p && cells[t * k + p] > 0) pairs.push_back({cells[t * k + p], t, p});
  std::sort(pairs.begin(), pairs.end(), [](const Pair& a, const Pair& b) { return a.v > b.v; });
  if (pairs.size() > 30) pairs.resize(30);
  o << "<p class=\"sub\">" << k << " classes: too many for a matrix; the most frequent confusions and every class's accuracy.</p>";
  o << "<div class=\"scroll\"><table class=\"ep\"><thead><tr><th>true</th><th>predicted</th><th>images</th><th>share of true class</th></tr></thead><tbody>";
  for (const Pair& pr : pairs)
    o << "<tr><td>" << html_escape(names[pr.t]) << "</td><td>" << html_escape(names[pr.p]) << "</td><td>" << count(pr.v)
      << "</td><td>" << percent(row_total[pr.t] > 0 ? pr.v / row_total[pr.t] : kNaN, 1) << "</td></tr>";
  o << "</tbody></table></div>";
  o << "<div class=\"scroll\"><table class=\"ep\"><thead><tr><th>class</th><th>images</th><th>accuracy</th>"
    << (has_auc ? "<th>ROC-AUC</th>" : "") << "</tr></thead><tbody>";
  for (size_t c = 0; c < k; ++c) {
    o << "<tr><td>" << html_escape(names[c]) << "</td><td>" << count(row_total[c]) << "</td><td>" << percent(class_acc(c)) << "</td>";
    if (has_auc) o << "<td>" << auc_text(class_value("class_auc", c)) << "</td>";
    o << "</tr>";
  }
  o << "</tbody></table></div>";
  return o.str();
}

std::string verdict_section(const json& v) {
  if (v.is_null()) return "";
  std::string tone;
  auto judge = [&](const json& x) {
    if (x.is_boolean()) tone = x.get<bool>() ? "good" : "bad";
    else if (x.is_string()) {
      std::string s = x.get<std::string>();
      std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
      if (s == "pass" || s == "passed" || s == "ok" || s == "good" || s == "success") tone = "good";
      else if (s == "fail" || s == "failed" || s == "bad" || s == "error") tone = "bad";
    }
  };
  std::ostringstream body;
  if (v.is_object()) {
    for (const char* key : {"status", "ok", "pass", "passed"})
      if (v.contains(key)) judge(v[key]);
    // The headline fields first, the rest in name order.
    std::vector<std::string> keys;
    for (const char* k : {"status", "ok", "pass", "passed", "verdict", "text", "message", "summary"})
      if (v.contains(k)) keys.push_back(k);
    for (const auto& item : v.items())
      if (std::find(keys.begin(), keys.end(), item.key()) == keys.end()) keys.push_back(item.key());
    body << "<table>";
    for (const std::string& key : keys) {
      const json& val = v[key];
      body << "<tr><td><b>" << html_escape(key) << "</b></td><td>"
           << html_escape(val.is_string() ? val.get<std::string>() : val.dump()) << "</td></tr>";
    }
    body << "</table>";
  } else if (v.is_array()) {
    body << "<ul>";
    for (const json& x : v) body << "<li>" << html_escape(x.is_string() ? x.get<std::string>() : x.dump()) << "</li>";
    body << "</ul>";
  } else {
    judge(v);
    const std::string s = v.is_string() ? v.get<std::string>() : v.dump();
    body << "<div>" << html_escape(s) << "</div>";
  }
  return "<div class=\"verdict" + (tone.empty() ? std::string() : " " + tone) + "\"><b>Verdict</b>" + body.str() + "</div>";
}

std::string card(const std::string& key, const std::string& value_html, bool big = false) {
  return "<div class=\"card" + std::string(big ? " big" : "") + "\"><div class=\"k\">" + html_escape(key) +
         "</div><div class=\"v\">" + value_html + "</div></div>";
}

std::string figure(const std::string& svg, const std::string& caption_html) {
  return "<figure>" + svg + (caption_html.empty() ? "" : "<figcaption>" + caption_html + "</figcaption>") + "</figure>";
}

}  // namespace

// ---- the page -------------------------------------------------------------------------------------------------

std::string render_report_html(const std::string& run_dir) {
  std::error_code ec;
  if (!fs::is_directory(run_dir, ec)) throw UserError(str(run_dir, ": no such run folder"));
  RunFiles r = read_run(run_dir);
  const json& cfg = r.config;
  const json& sum = r.summary;
  auto pick = [&](const char* key) {
    std::string s = text(sum, key);
    return s.empty() ? text(cfg, key) : s;
  };
  auto pick_num = [&](const char* key) {
    const double v = num(sum, key);
    return std::isfinite(v) ? v : num(cfg, key);
  };

  // Class names.
  std::vector<std::string> names;
  if (cfg.contains("classes") && cfg["classes"].is_array())
    for (const json& c : cfg["classes"]) names.push_back(c.is_string() ? c.get<std::string>() : c.dump());

  // Time axis unit for the whole run.
  double total_time = kNaN;
  for (const auto* v : {&r.train, &r.epochs})
    for (const Line& l : *v)
      if (std::isfinite(l.t)) total_time = std::isfinite(total_time) ? std::max(total_time, l.t) : l.t;
  double tscale = 1;
  std::string tunit = "s";
  if (std::isfinite(total_time) && total_time > 3 * 3600) tscale = 3600, tunit = "h";
  else if (std::isfinite(total_time) && total_time > 600) tscale = 60, tunit = "min";
  const std::string time_label = "run time (" + tunit + ")";

  fs::path abs = fs::absolute(run_dir, ec).lexically_normal();
  if (abs.filename().empty()) abs = abs.parent_path();  // "runs/x/"
  const std::string run_name = abs.filename().string();
  const std::string model = pick("model");

  std::ostringstream o;
  o << "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
    << "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
    << "<title>stoke report: " << html_escape(run_name) << (model.empty() ? "" : " (" + html_escape(model) + ")")
    << "</title>\n<style>" << kCss << "</style>\n</head>\n<body>\n<main>\n";

  // ---- header ----
  o << "<h1>" << html_escape(model.empty() ? std::string("stoke run") : model) << " &#8212; " << html_escape(run_name) << "</h1>\n";
  {
    std::string status;
    if (r.has_summary) status = "finished";
    else if (r.has_metrics) status = "no summary.json: still running, interrupted or stopped by an error";
    else status = "no metrics.jsonl: nothing recorded yet";
    o << "<p class=\"sub\">" << html_escape(run_dir) << " &#183; " << html_escape(status) << "</p>\n";
  }
  o << "<div class=\"cards\">";
  {
    // Final accuracy: validation when there is one, else training (marked).
    double acc = num(sum, "final_val_acc");
    std::string acc_kind = "validation";
    for (auto it = r.epochs.rbegin(); !std::isfinite(acc) && it != r.epochs.rend(); ++it) acc = num(it->j, "val_acc");
    if (!std::isfinite(acc)) {
      acc = num(sum, "final_train_acc");
      if (!std::isfinite(acc) && !r.epochs.empty()) acc = num(r.epochs.back().j, "train_acc");
      acc_kind = "training";
    }
    o << card(std::isfinite(acc) ? "final " + acc_kind + " accuracy" : "final accuracy", percent(acc), true);
    double secs = num(sum, "seconds_total");
    if (!std::isfinite(secs)) secs = total_time;
    o << card("total time", duration(secs), true);
    double epochs_done = kNaN;
    for (const Line& l : r.epochs) {
      const double e = num(l.j, "epoch");
      if (std::isfinite(e)) epochs_done = std::isfinite(epochs_done) ? std::max(epochs_done, e) : e;
    }
    const double epochs_planned = pick_num("epochs");
    std::string ep = std::isfinite(epochs_done) ? fixed(epochs_done, 0) : std::string("0");
    if (std::isfinite(epochs_planned)) ep += " / " + fixed(epochs_planned, 0);
    o << card("epochs", ep);
    double steps = num(sum, "steps");
    if (!std::isfinite(steps))
      for (const auto* v : {&r.train, &r.epochs})
        for (const Line& l : *v) {
          const double st = num(l.j, "step");
          if (std::isfinite(st)) steps = std::isfinite(steps) ? std::max(steps, st) : st;
        }
    o << card("steps", std::isfinite(steps) ? html_escape(format_count(steps)) : "&#8212;");
    o << card("batch", std::isfinite(num(cfg, "batch_size")) ? fixed(num(cfg, "batch_size"), 0) : "&#8212;");
    std::string backend = pick("backend");
    const std::string device = pick("device");
    if (!device.empty() && device != backend && device != "auto") backend = backend.empty() ? device : backend + " · " + device;
    const double threads = num(cfg, "threads");
    if (std::isfinite(threads) && (backend == "cpu" || backend.empty())) backend += str(backend.empty() ? "" : ", ", threads, " threads");
    o << card("backend / device", backend.empty() ? "&#8212;" : html_escape(backend));
    o << card("model", model.empty() ? "&#8212;" : html_escape(model));
    const double params = pick_num("params");
    if (std::isfinite(params)) o << card("parameters", html_escape(format_count(params)));
    std::string data = text(cfg, "data");
    const std::string val = text(cfg, "val");
    o << card("data", data.empty() ? "&#8212;" : html_escape(data) + (val.empty() ? "" : "<br>val: " + html_escape(val)));
    if (cfg.contains("input") && cfg["input"].is_array() && cfg["input"].size() == 3) {
      const json& in = cfg["input"];
      o << card("input", html_escape(str(in[0].dump(), "×", in[1].dump(), "×", in[2].dump())) +
                             (names.empty() ? "" : str(", ", names.size(), " classes")));
    }
    const std::string optim = text(cfg, "optimizer");
    if (!optim.empty()) {
      std::string s = optim;
      if (std::isfinite(num(cfg, "lr"))) s += str(", lr ", num(cfg, "lr") < 0.01 ? fixed(num(cfg, "lr"), 5) : fixed(num(cfg, "lr"), 3));
      if (!text(cfg, "schedule").empty()) s += ", " + text(cfg, "schedule");
      o << card("optimizer", html_escape(s));
    }
    const double tri = pick_num("train_images"), vai = pick_num("val_images");
    if (std::isfinite(tri))
      o << card("images", html_escape(format_count(tri)) + " train" + (std::isfinite(vai) && vai > 0 ? " · " + html_escape(format_count(vai)) + " val" : ""));
    for (const char* k : {"corrupt_images", "skipped_steps"}) {
      const double v = num(sum, k);
      if (std::isfinite(v) && v > 0) o << card(k == std::string("corrupt_images") ? "corrupt images" : "skipped steps", fixed(v, 0));
    }
  }
  o << "</div>\n";
  if (sum.contains("verdict")) o << verdict_section(sum["verdict"]) << "\n";
  if (!r.notes.empty() || !r.has_config || !r.has_metrics) {
    o << "<div class=\"notes\">";
    if (!r.has_metrics) o << "<div>metrics.jsonl is missing: no curves.</div>";
    if (!r.has_config) o << "<div>config.json is missing or unreadable: settings and class names unknown.</div>";
    for (const std::string& n : r.notes) o << "<div>" << html_escape(n) << "</div>";
    o << "</div>\n";
  }

  // ---- plots ----
  auto at_step = [](const Line& l) { return num(l.j, "step"); };
  auto at_time = [&](const Line& l) { return l.t / tscale; };
  o << "<h2>Training</h2>\n<div class=\"plots\">\n";
  {
    ChartOptions c;
    c.title = "Loss";
    c.x_label = "step";
    c.y_label = "loss";
    std::vector<ChartSeries> s;
    XY tr = series_of(r.train, "loss", 1.0, at_step);
    if (tr.any()) s.push_back(make_series("train (per logged window)", std::move(tr), "#1f77b4"));
    else s.push_back(make_series("train (per epoch)", series_of(r.epochs, "train_loss", 1.0, at_step), "#1f77b4", true));
    s.push_back(make_series("validation (per epoch)", series_of(r.epochs, "val_loss", 1.0, at_step), "#d62728", true));
    // A loss that falls by more than 10x reads better on a log axis.
    double lo = INFINITY, hi = 0;
    for (const ChartSeries& x : s)
      for (double v : x.y)
        if (v > 0 && std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
    if (hi > 10 * lo) {
      c.log_y = true;
      c.y_label = "loss (log scale)";
    }
    o << figure(svg_line_chart(s, c), "Training loss averaged over each logged window of steps; validation loss at each evaluated epoch's last step.") << "\n";
  }
  {
    ChartOptions c;
    c.title = "Accuracy";
    c.x_label = "step";
    c.y_label = "accuracy (%)";
    std::vector<ChartSeries> s;
    XY tr = series_of(r.train, "acc", 100.0, at_step);
    if (tr.any()) s.push_back(make_series("train (per logged window)", std::move(tr), "#1f77b4"));
    else s.push_back(make_series("train (per epoch)", series_of(r.epochs, "train_acc", 100.0, at_step), "#1f77b4", true));
    s.push_back(make_series("validation (per epoch)", series_of(r.epochs, "val_acc", 100.0, at_step), "#d62728", true));
    o << figure(svg_line_chart(s, c), "Training accuracy of each logged window (with augmentation, if any); validation accuracy per evaluated epoch.") << "\n";
  }
  {
    ChartOptions c;
    c.title = "Throughput";
    c.x_label = time_label;
    c.y_label = "images / s";
    c.y_include_zero = true;
    std::vector<ChartSeries> s;
    XY tr = series_of(r.train, "img_per_s", 1.0, at_time);
    if (tr.any()) s.push_back(make_series("training (epoch so far)", std::move(tr), "#2ca02c"));
    s.push_back(make_series("epoch average", series_of(r.epochs, "img_per_s", 1.0, at_time), "#9467bd", true, true));
    o << figure(svg_line_chart(s, c), "Training images per second: the running rate within each epoch, and each epoch's average.") << "\n";
  }
  {
    ChartOptions c;
    c.title = "GPU busy and input stall";
    c.x_label = time_label;
    c.y_label = "% of time";
    c.y_min = 0;
    std::vector<ChartSeries> s;
    const bool gpu_train = any_field(r.train, "gpu_busy"), stall_train = any_field(r.train, "input_stall");
    XY gpu = percent_series(gpu_train ? r.train : r.epochs, "gpu_busy", tscale);
    XY stall = percent_series(stall_train ? r.train : r.epochs, "input_stall", tscale);
    double mx = 100;
    for (double v : gpu.y) mx = std::max(mx, v);
    for (double v : stall.y) mx = std::max(mx, v);
    c.y_max = mx;
    std::vector<std::string> missing;
    if (!gpu.any()) missing.push_back("GPU busy");
    if (!stall.any()) missing.push_back("input stall");
    if (gpu.any()) s.push_back(make_series("GPU busy", std::move(gpu), "#ff7f0e", !gpu_train));
    if (stall.any()) s.push_back(make_series("input stall (waiting for batches)", std::move(stall), "#d62728", !stall_train));
    if (missing.size() == 2) c.empty_text = "not measured";
    else if (missing.size() == 1) c.note = missing[0] + ": not measured";
    o << figure(svg_line_chart(s, c), "Share of training time the GPU was busy, and the share spent waiting for input batches.") << "\n";
  }
  {
    const bool dec_train = any_field(r.train, "decoders");
    if (dec_train || any_field(r.epochs, "decoders")) {
      ChartOptions c;
      c.title = "Decoder threads";
      c.x_label = time_label;
      c.y_label = "threads";
      c.y_include_zero = true;
      std::vector<ChartSeries> s;
      s.push_back(make_series("JPEG decoders", series_of(dec_train ? r.train : r.epochs, "decoders", 1.0, at_time), "#8c564b", !dec_train));
      o << figure(svg_line_chart(s, c), "JPEG decoder threads feeding the training batches.") << "\n";
    }
  }
  {
    ChartOptions c;
    c.title = "Resident memory";
    c.x_label = "epoch";
    c.y_label = "MiB";
    c.y_include_zero = true;
    c.empty_text = "not recorded";
    std::vector<ChartSeries> s;
    s.push_back(make_series("resident set size", series_of(r.epochs, "rss_mib", 1.0, [](const Line& l) { return num(l.j, "epoch"); }),
                            "#17becf", true));
    o << figure(svg_line_chart(s, c), "The process's resident memory at the end of each epoch: growth across epochs is a leak.") << "\n";
  }
  o << "</div>\n";
  if (!any_field(r.train, "decoders") && !any_field(r.epochs, "decoders")) {
    const double d = pick_num("decoders");
    o << "<p class=\"sub\">Decoder threads: " << (std::isfinite(d) && d > 0 ? fixed(d, 0) + " (from the settings)" : std::string("not recorded")) << ".</p>\n";
  }

  // ---- confusion matrix ----
  {
    json report;
    std::string caption;
    for (auto it = r.epochs.rbegin(); it != r.epochs.rend(); ++it)
      if (it->j.contains("val_report") && it->j["val_report"].is_object()) {
        report = it->j["val_report"];
        caption = str("Validation set, epoch ", text(it->j, "epoch"));
        break;
      }
    if (report.is_null() && sum.contains("final_val_report") && sum["final_val_report"].is_object()) {
      report = sum["final_val_report"];
      caption = "Validation set, last evaluation (summary.json)";
    }
    o << "<h2>Confusion matrix</h2>\n";
    const std::string table = report.is_object() ? confusion_section(report, "", names) : "";
    if (table.empty()) {
      o << "<p class=\"sub\">No evaluation recorded (no validation data, or no epoch evaluated yet).</p>\n";
    } else {
      const double n = num(report, "count");
      caption += std::isfinite(n) ? str(", ", format_count(n), " images") : "";
      const double acc = num(report, "accuracy"), auc = num(report, "macro_auc"), loss = num(report, "loss");
      if (std::isfinite(acc)) caption += ", accuracy " + percent(acc);
      if (std::isfinite(auc)) caption += ", macro ROC-AUC " + auc_text(auc);
      if (std::isfinite(loss)) caption += ", loss " + fixed(loss, 4);
      o << "<p class=\"sub\">" << html_escape(caption) << ". Rows: true class; columns: predicted class; shading: share of the "
        << "true class's images (green on the diagonal, red off it).</p>\n" << table << "\n";
    }
  }

  // ---- per-epoch table ----
  if (!r.epochs.empty()) {
    o << "<h2>Epochs</h2>\n<div class=\"scroll\"><table class=\"ep\"><thead><tr><th>epoch</th><th>step</th><th>train loss</th>"
         "<th>train acc</th><th>val loss</th><th>val acc</th><th>val AUC</th><th>img/s</th><th>seconds</th><th>RSS MiB</th>"
         "<th>input stall</th></tr></thead><tbody>";
    for (const Line& l : r.epochs) {
      const json& j = l.j;
      const double stall = num(j, "input_stall");
      o << "<tr><td>" << fixed(num(j, "epoch"), 0) << "</td><td>" << fixed(num(j, "step"), 0) << "</td><td>"
        << fixed(num(j, "train_loss"), 4) << "</td><td>" << percent(num(j, "train_acc")) << "</td><td>" << fixed(num(j, "val_loss"), 4)
        << "</td><td>" << percent(num(j, "val_acc")) << "</td><td>" << auc_text(num(j, "val_auc")) << "</td><td>"
        << fixed(num(j, "img_per_s"), 0) << "</td><td>" << fixed(num(j, "seconds"), 1) << "</td><td>" << fixed(num(j, "rss_mib"), 0)
        << "</td><td>" << (std::isfinite(stall) ? percent(stall > 1.5 ? stall / 100 : stall, 1) : "&#8212;") << "</td></tr>";
    }
    o << "</tbody></table></div>\n";
  }

  // ---- footer ----
  {
    std::time_t t = std::time(nullptr);
    std::tm tm{};
    gmtime_r(&t, &tm);
    char buf[64];
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S UTC", &tm);
    o << "<footer>Written by stoke at " << buf << " from " << (r.has_metrics ? str("metrics.jsonl (", r.lines, " lines)") : "no metrics")
      << (r.has_config ? ", config.json" : "") << (r.has_summary ? ", summary.json" : "") << ".";
    const fs::path tb = fs::path(run_dir) / "tensorboard";
    if (fs::is_directory(tb, ec)) o << " TensorBoard: tensorboard --logdir " << html_escape(tb.string());
    o << "</footer>\n";
  }
  o << "</main>\n</body>\n</html>\n";
  return o.str();
}

void write_report_html(const std::string& run_dir) {
  const std::string html = render_report_html(run_dir);
  atomic_write_file((fs::path(run_dir) / "report.html").string(), html);
}

}  // namespace stoke
