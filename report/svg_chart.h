// SVG line charts for report.html: "nice" axis ticks and one self-contained <svg> element per chart.
#pragma once

#include <cstddef>
#include <limits>
#include <string>
#include <vector>

namespace stoke {

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

}  // namespace stoke
