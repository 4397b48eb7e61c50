#include "report/svg_chart.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <sstream>
#include <utility>

#include "report/html.h"

namespace stoke {

using ld = long double;  // chart ranges: wide enough that hi - lo of any two doubles is finite

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

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
    return static_cast<double>(
        std::clamp<ld>(v, -std::numeric_limits<double>::max(), std::numeric_limits<double>::max()));
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

// A series as it is drawn: its runs of points (log10 of y on a log axis), colour and legend entry.
struct Prepared {
  std::vector<Segment> segs;
  std::string color, name;
  bool markers, dashed;
};

// The extent of every point drawn (empty when there is none).
struct Bounds {
  ld xmin = INFINITY, xmax = -INFINITY, ymin = INFINITY, ymax = -INFINITY;
  bool empty() const { return !(xmin <= xmax); }
};

// Data, colours, legend entries; widens `b` to cover every point.
std::vector<Prepared> prepare_series(const std::vector<ChartSeries>& series, const ChartOptions& opt, Bounds& b) {
  std::vector<Prepared> prep;
  size_t palette_i = 0;
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
        b.xmin = std::min<ld>(b.xmin, x);
        b.xmax = std::max<ld>(b.xmax, x);
        b.ymin = std::min<ld>(b.ymin, y);
        b.ymax = std::max<ld>(b.ymax, y);
      }
    prep.push_back(std::move(p));
  }
  return prep;
}

// Legend: one row of swatches and names, wrapped to the width W, starting below `top`; moves `top` below it.
std::string legend_svg(const std::vector<Prepared>& prep, double W, double& top) {
  std::ostringstream legend;
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
  return legend.str();
}

// The plot area, in pixels.
struct Frame {
  double W = 0, H = 0, left = 0, right = 0, bottom = 0, plot_top = 0;
};

// A dashed empty box with the "no data" text (and the note), for a chart with no finite point.
std::string empty_plot_svg(const Frame& f, const ChartOptions& opt) {
  std::ostringstream o;
  o << "<rect x=\"" << coord(f.left) << "\" y=\"" << coord(f.plot_top) << "\" width=\"" << coord(f.right - f.left)
    << "\" height=\"" << coord(f.bottom - f.plot_top)
    << "\" fill=\"#fafafa\" stroke=\"#cccccc\" stroke-dasharray=\"4 3\"/>";
  o << "<text x=\"" << coord((f.left + f.right) / 2) << "\" y=\"" << coord((f.plot_top + f.bottom) / 2 + 4)
    << "\" text-anchor=\"middle\" fill=\"#777777\" font-size=\"13\">" << html_escape(opt.empty_text) << "</text>";
  if (!opt.note.empty())
    o << "<text x=\"" << coord(f.right - 4) << "\" y=\"" << coord(f.plot_top + 14)
      << "\" text-anchor=\"end\" fill=\"#777777\">" << html_escape(opt.note) << "</text>";
  return o.str();
}

// The y axis: its ends and ticks, as positions in data space (log10 of it on a log axis) with labels.
struct YTick {
  ld pos;
  std::string label;
};
struct YAxis {
  ld lo = 0, hi = 1;
  std::vector<YTick> ticks;
};

YAxis log_y_axis(ld ymin, ld ymax, int ytarget, const ChartOptions& opt) {
  YAxis a;
  if (std::isfinite(opt.y_min) && opt.y_min > 0) ymin = std::log10(ld(opt.y_min));
  if (std::isfinite(opt.y_max) && opt.y_max > 0) ymax = std::log10(ld(opt.y_max));
  if (ymin > ymax) std::swap(ymin, ymax);
  if (ymax - ymin >= 1) {
    // Decades (1, 10, 100 ...), with 2 and 5 between them when there are few.
    const ld klo = std::floor(ymin + 1e-9L), khi = std::ceil(ymax - 1e-9L);
    const ld every = std::max<ld>(1, std::ceil((khi - klo) / ytarget));
    a.lo = klo;
    a.hi = klo;
    for (ld k = klo; k < khi + every - 1e-9L; k += every) {
      const ld v = std::pow(10.0L, k);
      a.ticks.push_back({k, format_tick_l(v, v)});
      a.hi = k;
      if (khi - klo <= 2 && k < khi - 1e-9L)
        for (int m : {2, 5}) a.ticks.push_back({k + std::log10(ld(m)), format_tick_l(m * v, v)});
    }
  } else {
    // Less than a decade: linear nice values, placed on the log axis.
    const TicksL lin = nice_ticks_l(std::pow(10.0L, ymin), std::pow(10.0L, ymax), ytarget);
    a.lo = lin.lo > 0 ? std::min<ld>(ymin, std::log10(lin.lo)) : ymin;
    a.hi = std::max<ld>(ymax, std::log10(lin.hi));
    for (ld v : lin.values)
      if (v > 0 && std::log10(v) >= a.lo - 1e-9L) a.ticks.push_back({std::log10(v), format_tick_l(v, lin.step)});
    if (!(a.hi > a.lo)) a.hi = a.lo + 1;
  }
  return a;
}

YAxis linear_y_axis(ld ymin, ld ymax, int ytarget, const ChartOptions& opt) {
  YAxis a;
  if (std::isfinite(opt.y_min)) ymin = opt.y_min;
  if (std::isfinite(opt.y_max)) ymax = opt.y_max;
  if (opt.y_include_zero) {
    if (!std::isfinite(opt.y_min)) ymin = std::min<ld>(ymin, 0);
    if (!std::isfinite(opt.y_max)) ymax = std::max<ld>(ymax, 0);
  }
  if (ymin > ymax) std::swap(ymin, ymax);
  TicksL yt = nice_ticks_l(ymin, ymax, ytarget);
  a.lo = yt.lo;
  a.hi = yt.hi;
  // A fixed end stays where it was asked to be.
  if (std::isfinite(opt.y_min) || std::isfinite(opt.y_max)) {
    const ld lo = std::isfinite(opt.y_min) ? ld(opt.y_min) : yt.lo,
             hi = std::isfinite(opt.y_max) ? ld(opt.y_max) : yt.hi;
    if (hi > lo) a.lo = lo, a.hi = hi;
  }
  for (ld v : yt.values)
    if (v >= a.lo - yt.step * 1e-9L && v <= a.hi + yt.step * 1e-9L) a.ticks.push_back({v, format_tick_l(v, yt.step)});
  return a;
}

// Data space to pixels.
struct Plot {
  Frame f;
  TicksL xt;
  YAxis y;
  double px(ld x) const { return f.left + static_cast<double>((x - xt.lo) / (xt.hi - xt.lo) * (f.right - f.left)); }
  double py(ld y_) const {
    const ld t = std::clamp<ld>((y_ - y.lo) / (y.hi - y.lo), -0.02L, 1.02L);
    return f.bottom - static_cast<double>(t * (f.bottom - f.plot_top));
  }
};

// Grid lines, tick marks and labels, and the two axis lines.
std::string grid_svg(const Plot& p) {
  const Frame& f = p.f;
  std::ostringstream o;
  for (const YTick& t : p.y.ticks) {
    const double y = p.py(t.pos);
    o << "<line x1=\"" << coord(f.left) << "\" y1=\"" << coord(y) << "\" x2=\"" << coord(f.right) << "\" y2=\""
      << coord(y) << "\" stroke=\"#e5e5e5\" stroke-width=\"1\"/>";
    o << "<text x=\"" << coord(f.left - 6) << "\" y=\"" << coord(y + 4) << "\" text-anchor=\"end\" fill=\"#444444\">"
      << html_escape(t.label) << "</text>";
  }
  for (ld v : p.xt.values) {
    const double x = p.px(v);
    o << "<line x1=\"" << coord(x) << "\" y1=\"" << coord(f.plot_top) << "\" x2=\"" << coord(x) << "\" y2=\""
      << coord(f.bottom) << "\" stroke=\"#f0f0f0\" stroke-width=\"1\"/>";
    o << "<line x1=\"" << coord(x) << "\" y1=\"" << coord(f.bottom) << "\" x2=\"" << coord(x) << "\" y2=\""
      << coord(f.bottom + 4) << "\" stroke=\"#333333\" stroke-width=\"1\"/>";
    o << "<text x=\"" << coord(x) << "\" y=\"" << coord(f.bottom + 16) << "\" text-anchor=\"middle\" fill=\"#444444\">"
      << html_escape(format_tick_l(v, p.xt.step)) << "</text>";
  }
  o << "<path d=\"M" << coord(f.left) << ' ' << coord(f.plot_top) << " V" << coord(f.bottom) << " H" << coord(f.right)
    << "\" fill=\"none\" stroke=\"#333333\" stroke-width=\"1\"/>";
  return o.str();
}

// Each series' lines, and its dots (every point with markers, isolated points always).
std::string series_svg(const std::vector<Prepared>& prep, const Plot& pl) {
  std::ostringstream o;
  for (const Prepared& p : prep) {
    const std::string color = html_escape(p.color);
    for (const Segment& seg : p.segs) {
      if (seg.size() >= 2) {
        o << "<polyline fill=\"none\" stroke=\"" << color << "\" stroke-width=\"1.6\" stroke-linejoin=\"round\""
          << (p.dashed ? " stroke-dasharray=\"5 3\"" : "") << " points=\"";
        for (size_t i = 0; i < seg.size(); ++i)
          o << (i ? " " : "") << coord(pl.px(seg[i].first)) << ',' << coord(pl.py(seg[i].second));
        o << "\"/>";
      }
      if (p.markers || seg.size() == 1)
        for (const auto& [x, y] : seg)
          o << "<circle cx=\"" << coord(pl.px(x)) << "\" cy=\"" << coord(pl.py(y)) << "\" r=\"2.8\" fill=\"" << color
            << "\"/>";
    }
  }
  return o.str();
}

// Axis titles and the note.
std::string labels_svg(const Frame& f, const ChartOptions& opt) {
  std::ostringstream o;
  if (!opt.x_label.empty())
    o << "<text x=\"" << coord((f.left + f.right) / 2) << "\" y=\"" << coord(f.H - 8)
      << "\" text-anchor=\"middle\" fill=\"#222222\">" << html_escape(opt.x_label) << "</text>";
  if (!opt.y_label.empty())
    o << "<text transform=\"rotate(-90)\" x=\"" << coord(-(f.plot_top + f.bottom) / 2)
      << "\" y=\"14\" text-anchor=\"middle\" fill=\"#222222\">" << html_escape(opt.y_label) << "</text>";
  if (!opt.note.empty())
    o << "<text x=\"" << coord(f.right - 4) << "\" y=\"" << coord(f.plot_top + 12)
      << "\" text-anchor=\"end\" fill=\"#777777\">" << html_escape(opt.note) << "</text>";
  return o.str();
}

}  // namespace

std::string svg_line_chart(const std::vector<ChartSeries>& series, const ChartOptions& opt) {
  Frame f;
  f.W = std::clamp(opt.width, 160, 4000);
  f.H = std::clamp(opt.height, 120, 4000);
  const double W = f.W, H = f.H;
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

  Bounds b;
  const std::vector<Prepared> prep = prepare_series(series, opt, b);
  o << legend_svg(prep, W, top);

  f.left = 64;
  f.right = W - 16;
  f.bottom = H - (opt.x_label.empty() ? 24 : 40);
  f.plot_top = std::min(top + 4, f.bottom - 40);
  if (b.empty()) {
    o << empty_plot_svg(f, opt) << "</svg>";
    return o.str();
  }

  const int ytarget = std::max(2, static_cast<int>((f.bottom - f.plot_top) / 36));
  Plot p;
  p.f = f;
  p.xt = nice_ticks_l(b.xmin, b.xmax, std::max(2, static_cast<int>((f.right - f.left) / 110)));
  p.y = opt.log_y ? log_y_axis(b.ymin, b.ymax, ytarget, opt) : linear_y_axis(b.ymin, b.ymax, ytarget, opt);
  o << grid_svg(p) << series_svg(prep, p) << labels_svg(f, opt) << "</svg>";
  return o.str();
}

}  // namespace stoke
