// How `stoke <command> --help` shows defaults. CLI11 2.1 glues a default to the option's type and validator
// ("--epochs INT:NUMBER > 0=3", which reads as "0=3") and marks a negatable flag with the value its negation
// sets ("--nesterov,--no-nesterov{false}", which reads as "off by default" for a flag that is on). Here the
// option column keeps names and types only, and every captured default ends its description: "Passes over the
// training data (default: 3)"; a flag's default is "on" or "off".
#pragma once

#include <CLI/CLI.hpp>
#include <string>

namespace stoke {

class HelpFormatter : public CLI::Formatter {
 public:
  std::string make_option_name(const CLI::Option* opt, bool positional) const override {
    std::string name = CLI::Formatter::make_option_name(opt, positional);
    // Drop every "{value}" CLI11 appends to a flag's names.
    for (size_t open = name.find('{'); open != std::string::npos; open = name.find('{', open)) {
      const size_t close = name.find('}', open);
      if (close == std::string::npos) break;
      name.erase(open, close - open + 1);
    }
    return name;
  }

  std::string make_option_opts(const CLI::Option* opt) const override {
    std::string opts = CLI::Formatter::make_option_opts(opt);
    const std::string shown = "=" + opt->get_default_str();
    if (!opt->get_default_str().empty())
      if (const size_t at = opts.find(shown); at != std::string::npos) opts.erase(at, shown.size());
    return opts;
  }

  std::string make_option_desc(const CLI::Option* opt) const override {
    std::string desc = CLI::Formatter::make_option_desc(opt);
    std::string value = opt->get_default_str();
    if (value.empty()) return desc;
    if (opt->get_expected_max() == 0) {  // a flag: it takes no value
      if (value == "true") value = "on";
      else if (value == "false") value = "off";
    }
    return desc + " (default: " + value + ")";
  }
};

}  // namespace stoke
