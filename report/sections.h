// Pieces of the report page that stand on their own: the number formats of its cells, the stylesheet, the
// summary cards and figures, the verdict box and the confusion matrix. Each returns HTML (text already
// escaped); report.cpp puts them in order.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

namespace stoke::sections {

// Numbers as page text; a non-finite value is an em dash.
std::string fixed(double v, int decimals);
std::string percent(double fraction, int decimals = 2);  // 0.5 -> "50.00%"
std::string auc_text(double v);  // 4 decimals, 5 when 4 would round a value below 1 up to "1.0000"
std::string duration(double seconds);  // "12.3 s" below a minute, then base/format.h's format_duration

// The page's stylesheet (inline in <style>).
const char* css();

// A summary card: a key (escaped here) over a value (HTML); big for the headline numbers.
std::string card(const std::string& key, const std::string& value_html, bool big = false);
// A chart with its caption (HTML).
std::string figure(const std::string& svg, const std::string& caption_html);

// summary.json's "verdict": a string, an object (its fields in a table, headline fields first; "status", "ok",
// "pass" or "passed" colour the box) or an array. "" for null.
std::string verdict_section(const nlohmann::json& verdict);

// A val_report's confusion matrix (rows = true class, columns = predicted) with each class's images, accuracy
// and ROC-AUC; above 40 classes, the most frequent confusions and a per-class table instead. "" when the
// report holds no confusion matrix.
std::string confusion_section(const nlohmann::json& report, const std::string& caption,
                              const std::vector<std::string>& names);

}  // namespace stoke::sections
