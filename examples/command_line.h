// The example programs' command line: absl::ParseCommandLine, plus
//
// * --help (also -help, -h, --helpfull, --helpshort, --help=...) prints the
//   program's usage message (absl::SetProgramUsageMessage) and its own flags
//   to stdout and exits 0 (Abseil 20220623 exits 1 on --help);
// * a non-bool flag with no value at the end of the line, and positional
//   arguments beyond `max_positional`, are refused with one line on stderr
//   and exit 1, like an unknown flag.
//
//   int main(int argc, char** argv) {
//     absl::SetProgramUsageMessage("does X.\n\nUsage: prog [--port=N]");
//     coring::examples::parse_command_line(argc, argv);
//
// Header-only: each example links absl::flags_parse, absl::flags_reflection
// and absl::flags_usage.
#pragma once

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "absl/flags/commandlineflag.h"
#include "absl/flags/parse.h"
#include "absl/flags/reflection.h"
#include "absl/flags/usage.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace coring::examples {

inline absl::string_view program_name(const char* argv0) {
  absl::string_view name = argv0 != nullptr ? argv0 : "";
  if (size_t slash = name.rfind('/'); slash != absl::string_view::npos)
    name.remove_prefix(slash + 1);
  return name;
}

// Appends `text` to `out` as lines of at most `width` columns: the first
// indented by `indent` spaces, the next ones by two more (a word longer than a
// line gets a line of its own).
inline void append_wrapped(std::string& out, absl::string_view text, size_t indent, size_t width) {
  size_t column = 0;
  size_t line_indent = indent;
  for (absl::string_view word : absl::StrSplit(text, ' ', absl::SkipEmpty())) {
    if (column > line_indent && column + 1 + word.size() > width) {
      out += '\n';
      column = 0;
      line_indent = indent + 2;
    }
    if (column == 0) {
      out.append(line_indent, ' ');
      column = line_indent;
    } else {
      out += ' ';
      ++column;
    }
    out.append(word.data(), word.size());
    column += word.size();
  }
  out += '\n';
}

// The usage message and the flags defined under examples/ (not Abseil's own).
inline std::string help_text(const char* argv0) {
  std::string out = absl::StrCat(program_name(argv0), ": ", absl::ProgramUsageMessage(), "\n\n");
  std::vector<const absl::CommandLineFlag*> flags;
  for (const auto& [name, flag] : absl::GetAllFlags()) {
    if (flag->Filename().find("examples/") != std::string::npos) flags.push_back(flag);
  }
  std::sort(flags.begin(), flags.end(),
            [](const auto* a, const auto* b) { return a->Name() < b->Name(); });
  out += "Flags:\n";
  for (const absl::CommandLineFlag* flag : flags) {
    std::string default_value = flag->DefaultValue();
    if (flag->IsOfType<std::string>()) default_value = absl::StrCat("\"", default_value, "\"");
    append_wrapped(
        out,
        absl::StrCat("--", flag->Name(), " (", flag->Help(), "); default: ", default_value, ";"), 4,
        80);
  }
  return out;
}

[[noreturn]] inline void usage_exit(const char* argv0, const std::string& reason) {
  std::fprintf(stderr, "%s: %s (see %s --help)\n", std::string(program_name(argv0)).c_str(),
               reason.c_str(), std::string(program_name(argv0)).c_str());
  std::exit(1);
}

// Returns the positional arguments (argv[0] first), as absl::ParseCommandLine.
inline std::vector<char*> parse_command_line(int argc, char** argv,
                                             size_t max_positional = SIZE_MAX) {
  int flags_end = argc;  // arguments after "--" are positional
  for (int i = 1; i < argc; ++i) {
    absl::string_view arg = argv[i];
    if (arg == "--") {
      flags_end = i;
      break;
    }
    if (arg == "-h" || arg == "--help" || arg == "-help" || arg == "--helpfull" ||
        arg == "-helpfull" || arg == "--helpshort" || arg == "-helpshort" ||
        absl::StartsWith(arg, "--help=") || absl::StartsWith(arg, "-help=")) {
      std::string text = help_text(argv[0]);
      std::fwrite(text.data(), 1, text.size(), stdout);
      std::exit(std::fflush(stdout) == 0 ? 0 : 1);
    }
  }
  // Abseil reports a value-less last flag in two lines; one is enough.
  if (flags_end > 1) {
    absl::string_view last = argv[flags_end - 1];
    if (absl::StartsWith(last, "-") && last != "--" && last.find('=') == absl::string_view::npos) {
      absl::string_view name = last.substr(absl::StartsWith(last, "--") ? 2 : 1);
      const absl::CommandLineFlag* flag = absl::FindCommandLineFlag(name);
      if (flag != nullptr && !flag->IsOfType<bool>()) {
        usage_exit(argv[0], absl::StrCat("--", name, " needs a value"));
      }
    }
  }
  std::vector<char*> args = absl::ParseCommandLine(argc, argv);
  if (args.size() - 1 > max_positional) {  // args[0] is the program
    usage_exit(argv[0], absl::StrCat("unexpected argument '", args[max_positional + 1], "'"));
  }
  return args;
}

}  // namespace coring::examples
