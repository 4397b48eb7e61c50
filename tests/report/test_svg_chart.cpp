// svg_line_chart, nice_ticks and format_tick: valid SVG with finite coordinates whatever the data.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "report/svg_chart.h"
#include "tests/report/html_check.h"

namespace stoke {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

ChartSeries make(std::vector<double> x, std::vector<double> y, std::string name = "s") {
  ChartSeries s;
  s.name = std::move(name);
  s.x = std::move(x);
  s.y = std::move(y);
  return s;
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

// Well formed, one <svg> root, no nan/inf text, every coordinate finite and near the canvas.
void expect_valid_svg(const std::string& svg, const std::string& what) {
  SCOPED_TRACE(what);
  test::HtmlCheck c = test::check_html(svg);
  EXPECT_TRUE(c.ok) << c.error;
  ASSERT_FALSE(c.tags.empty());
  EXPECT_EQ(c.tags[0], "svg");
  EXPECT_EQ(svg.rfind("</svg>"), svg.size() - 6);
  EXPECT_EQ(test::count_of(svg, "<svg"), 1u);
  const std::string l = lower(svg);
  EXPECT_EQ(l.find("nan"), std::string::npos) << svg;
  EXPECT_EQ(l.find("inf"), std::string::npos) << svg;
  EXPECT_EQ(test::external_reference(svg), "");
  const std::vector<double> coords = test::svg_coordinates(svg);
  EXPECT_FALSE(coords.empty());
  for (double v : coords) {
    EXPECT_TRUE(std::isfinite(v));
    EXPECT_GE(v, -5000);
    EXPECT_LE(v, 5000);
  }
}

TEST(SvgChart, EdgeCasesGiveValidSvgWithFiniteCoordinates) {
  for (bool log_y : {false, true}) {
  SCOPED_TRACE(log_y ? "log y" : "linear y");
  ChartOptions o;
  o.title = "edge";
  o.x_label = "x";
  o.y_label = "y";
  o.log_y = log_y;
  expect_valid_svg(svg_line_chart({}, o), "no series");
  expect_valid_svg(svg_line_chart({make({}, {})}, o), "empty series");
  expect_valid_svg(svg_line_chart({make({1, 2, 3}, {kNaN, kNaN, kNaN})}, o), "all NaN");
  expect_valid_svg(svg_line_chart({make({kInf, -kInf}, {1, 2})}, o), "infinite x");
  expect_valid_svg(svg_line_chart({make({1, 2}, {kInf, -kInf})}, o), "infinite y");
  expect_valid_svg(svg_line_chart({make({5}, {0.5})}, o), "one point");
  expect_valid_svg(svg_line_chart({make({0}, {0})}, o), "one point at zero");
  expect_valid_svg(svg_line_chart({make({1, 2, 3, 4}, {7, 7, 7, 7})}, o), "constant");
  expect_valid_svg(svg_line_chart({make({1, 2, 3, 4}, {0, 0, 0, 0})}, o), "constant zero");
  expect_valid_svg(svg_line_chart({make({3, 3, 3}, {1, 2, 3})}, o), "constant x");
  expect_valid_svg(svg_line_chart({make({0, 1}, {-1e300, 1e300})}, o), "huge range");
  expect_valid_svg(svg_line_chart({make({0, 1}, {-1.7e308, 1.7e308})}, o), "largest doubles");
  expect_valid_svg(svg_line_chart({make({0, 1}, {1e-300, 3e-300})}, o), "tiny values");
  expect_valid_svg(svg_line_chart({make({0, 1}, {4.9e-324, 1e-323})}, o), "denormals");
  expect_valid_svg(svg_line_chart({make({0, 1, 2}, {1.0, 1.0 + 1e-15, 1.0 + 2e-15})}, o),
                   "range below double resolution");
  expect_valid_svg(svg_line_chart({make({1e15, 1e15 + 1}, {1, 2})}, o), "large x offset");
  expect_valid_svg(svg_line_chart({make({-5, -4}, {-3e9, -2e9})}, o), "negative values");
  expect_valid_svg(svg_line_chart({make({1, 2, 3}, {1, 2})}, o), "mismatched lengths");
  expect_valid_svg(svg_line_chart({make({1, 2, 3, 4, 5}, {1, kNaN, 3, 4, kNaN})}, o), "gaps");
  ChartOptions fixed = o;
  fixed.y_min = 0;
  fixed.y_max = 100;
  expect_valid_svg(svg_line_chart({make({1, 2, 3}, {-50, 50, 1e9})}, fixed), "points beyond a fixed range");
  ChartOptions tiny = o;
  tiny.width = 1;
  tiny.height = 1;
  expect_valid_svg(svg_line_chart({make({1, 2}, {1, 2})}, tiny), "too small a canvas");
  ChartOptions zero = o;
  zero.y_include_zero = true;
  expect_valid_svg(svg_line_chart({make({1, 2}, {1000, 1001})}, zero), "include zero");
  expect_valid_svg(svg_line_chart({make({1, 2, 3}, {-1, 0, 1e-5})}, o), "zero and negative values");
  }
}

TEST(SvgChart, LogAxis) {
  ChartOptions o;
  o.log_y = true;
  std::string svg = svg_line_chart({make({1, 2, 3, 4}, {10, 1, 0.1, 0.01})}, o);
  expect_valid_svg(svg, "decades");
  for (const char* label : {">0.01</text>", ">0.1</text>", ">1</text>", ">10</text>"})
    EXPECT_NE(svg.find(label), std::string::npos) << label;
  svg = svg_line_chart({make({1, 2}, {0.3, 0.9})}, o);  // less than a decade: linear labels
  expect_valid_svg(svg, "within a decade");
  EXPECT_NE(svg.find(">0.4</text>"), std::string::npos);
  // Non-positive values break the line.
  svg = svg_line_chart({make({1, 2, 3, 4, 5}, {1, 2, 0, 3, 4})}, o);
  EXPECT_EQ(test::count_of(svg, "<polyline"), 2u);
}

TEST(SvgChart, EmptyChartSaysSo) {
  ChartOptions o;
  o.empty_text = "not measured";
  const std::string svg = svg_line_chart({make({}, {})}, o);
  EXPECT_NE(svg.find("not measured"), std::string::npos);
  EXPECT_EQ(svg.find("<polyline"), std::string::npos);
}

TEST(SvgChart, SinglePointsGetMarkersAndLinesGetPolylines) {
  const std::string one = svg_line_chart({make({5}, {0.5})});
  EXPECT_EQ(test::count_of(one, "<circle"), 1u);
  EXPECT_EQ(test::count_of(one, "<polyline"), 0u);
  const std::string gaps = svg_line_chart({make({1, 2, 3, 4, 5, 6}, {1, 2, kNaN, 4, 5, 6})});
  EXPECT_EQ(test::count_of(gaps, "<polyline"), 2u);  // the NaN breaks the line
  ChartSeries m = make({1, 2, 3}, {1, 2, 3});
  m.markers = true;
  EXPECT_EQ(test::count_of(svg_line_chart({m}), "<circle"), 3u);
}

TEST(SvgChart, LegendTitleAndLabelsAreEscaped) {
  ChartOptions o;
  o.title = "a<b>&\"c\"";
  o.x_label = "x<1>";
  o.y_label = "y&y";
  o.note = "n<'>";
  ChartSeries s = make({1, 2}, {1, 2}, "<script>alert(1)</script>");
  s.color = "red\" onload=\"x";
  const std::string svg = svg_line_chart({s}, o);
  expect_valid_svg(svg, "escaping");
  EXPECT_NE(svg.find("a&lt;b&gt;&amp;&quot;c&quot;"), std::string::npos);
  EXPECT_NE(svg.find("&lt;script&gt;alert(1)&lt;/script&gt;"), std::string::npos);
  EXPECT_NE(svg.find("x&lt;1&gt;"), std::string::npos);
  EXPECT_NE(svg.find("y&amp;y"), std::string::npos);
  EXPECT_NE(svg.find("n&lt;&#39;&gt;"), std::string::npos);
  EXPECT_EQ(svg.find("onload=\""), std::string::npos);
}

TEST(SvgChart, LongSeriesAreDownsampledKeepingExtremes) {
  std::vector<double> x, y;
  for (int i = 0; i < 100000; ++i) {
    x.push_back(i);
    y.push_back(std::sin(i * 0.001));
  }
  y[54321] = 50;  // a spike must survive
  ChartOptions o;
  o.y_label = "y";
  const std::string svg = svg_line_chart({make(x, y)}, o);
  expect_valid_svg(svg, "long");
  EXPECT_LT(svg.size(), 60000u);
  // The y axis reaches the spike: -20..60 in steps of 20 at the default size.
  EXPECT_NE(svg.find(">60</text>"), std::string::npos);
  const size_t p = svg.find("points=\"");
  ASSERT_NE(p, std::string::npos);
  const size_t pts = test::count_of(svg.substr(p, svg.find('"', p + 8) - p), ",");
  EXPECT_LE(pts, 2100u);
  EXPECT_GE(pts, 1000u);
}

TEST(SvgChart, NiceTicks) {
  AxisTicks t = nice_ticks(0, 1);
  EXPECT_DOUBLE_EQ(t.lo, 0);
  EXPECT_DOUBLE_EQ(t.hi, 1);
  EXPECT_NEAR(t.step, 0.2, 1e-15);
  ASSERT_EQ(t.values.size(), 6u);
  EXPECT_NEAR(t.values[3], 0.6, 1e-12);

  t = nice_ticks(3, 97);
  EXPECT_DOUBLE_EQ(t.lo, 0);
  EXPECT_DOUBLE_EQ(t.hi, 100);
  EXPECT_DOUBLE_EQ(t.step, 20);

  t = nice_ticks(0.9712, 0.9944);  // accuracies close together
  EXPECT_LE(t.lo, 0.9712);
  EXPECT_GE(t.hi, 0.9944);
  EXPECT_NEAR(t.step, 0.01, 1e-12);
  EXPECT_EQ(t.values.size(), 4u);  // 0.97 .. 1.00

  for (auto [lo, hi] :
       std::vector<std::pair<double, double>>{{5, 5}, {0, 0}, {-2, -2}, {1e-9, 3e-9}, {-1e300, 1e300}, {7, 3}}) {
    SCOPED_TRACE(std::to_string(lo) + " " + std::to_string(hi));
    t = nice_ticks(lo, hi);
    EXPECT_LE(t.lo, std::min(lo, hi));
    EXPECT_GE(t.hi, std::max(lo, hi));
    EXPECT_GT(t.hi, t.lo);
    EXPECT_GE(t.values.size(), 2u);
    EXPECT_LE(t.values.size(), 12u);
    for (size_t i = 1; i < t.values.size(); ++i) EXPECT_GT(t.values[i], t.values[i - 1]);
    // 1, 2 or 5 times a power of ten
    const double m = t.step / std::pow(10.0, std::floor(std::log10(t.step) + 1e-12));
    EXPECT_TRUE(std::fabs(m - 1) < 1e-9 || std::fabs(m - 2) < 1e-9 || std::fabs(m - 5) < 1e-9 ||
                std::fabs(m - 10) < 1e-9)
        << m;
  }
  t = nice_ticks(-0.3, 0.3);
  for (double v : t.values) EXPECT_FALSE(std::signbit(v) && v == 0);  // no -0
}

TEST(SvgChart, TickLabels) {
  EXPECT_EQ(format_tick(0.25, 0.05), "0.25");
  EXPECT_EQ(format_tick(0.2, 0.2), "0.2");
  EXPECT_EQ(format_tick(1500, 500), "1500");
  EXPECT_EQ(format_tick(40, 20), "40");
  EXPECT_EQ(format_tick(0, 0.01), "0");
  EXPECT_EQ(format_tick(-0.5, 0.5), "-0.5");
  EXPECT_EQ(format_tick(2e-7, 1e-7), "2e-7");
  EXPECT_EQ(format_tick(1.5e9, 5e8), "1.5e9");
  EXPECT_EQ(format_tick(2e300, 1e300), "2e300");
  EXPECT_EQ(format_tick(kNaN, 1), "");
}

}  // namespace
}  // namespace stoke
