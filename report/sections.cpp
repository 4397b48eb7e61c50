#include "report/sections.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <sstream>

#include "base/error.h"
#include "base/format.h"
#include "report/html.h"

namespace stoke::sections {
using json = nlohmann::json;

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

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

}  // namespace

std::string fixed(double v, int decimals) {
  if (!std::isfinite(v)) return "&#8212;";  // em dash
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}
std::string percent(double fraction, int decimals) {
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

const char* css() { return kCss; }

std::string card(const std::string& key, const std::string& value_html, bool big) {
  return "<div class=\"card" + std::string(big ? " big" : "") + "\"><div class=\"k\">" + html_escape(key) +
         "</div><div class=\"v\">" + value_html + "</div></div>";
}

std::string figure(const std::string& svg, const std::string& caption_html) {
  return "<figure>" + svg + (caption_html.empty() ? "" : "<figcaption>" + caption_html + "</figcaption>") + "</figure>";
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
  return "<div class=\"verdict" + (tone.empty() ? std::string() : " " + tone) + "\"><b>Verdict</b>" + body.str() +
         "</div>";
}

// The confusion matrix section (rows = true class, columns = predicted).
std::string confusion_section(const json& report, const std::string& caption,
                              const std::vector<std::string>& names_in) {
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
  auto count = [](double v) {
    return std::isfinite(v) ? str(static_cast<int64_t>(std::llround(v))) : std::string("&#8212;");
  };

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
  o << "<p class=\"sub\">" << k
    << " classes: too many for a matrix; the most frequent confusions and every class's accuracy.</p>";
  o << "<div class=\"scroll\"><table class=\"ep\"><thead><tr><th>true</th><th>predicted</th><th>images</th><th>share "
       "of true class</th></tr></thead><tbody>";
  for (const Pair& pr : pairs)
    o << "<tr><td>" << html_escape(names[pr.t]) << "</td><td>" << html_escape(names[pr.p]) << "</td><td>" << count(pr.v)
      << "</td><td>" << percent(row_total[pr.t] > 0 ? pr.v / row_total[pr.t] : kNaN, 1) << "</td></tr>";
  o << "</tbody></table></div>";
  o << "<div class=\"scroll\"><table class=\"ep\"><thead><tr><th>class</th><th>images</th><th>accuracy</th>"
    << (has_auc ? "<th>ROC-AUC</th>" : "") << "</tr></thead><tbody>";
  for (size_t c = 0; c < k; ++c) {
    o << "<tr><td>" << html_escape(names[c]) << "</td><td>" << count(row_total[c]) << "</td><td>"
      << percent(class_acc(c)) << "</td>";
    if (has_auc) o << "<td>" << auc_text(class_value("class_auc", c)) << "</td>";
    o << "</tr>";
  }
  o << "</tbody></table></div>";
  return o.str();
}

}  // namespace stoke::sections
