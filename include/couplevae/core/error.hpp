// couplevae/core/error.hpp: the one exception type of the library.
//
// Every failure caused by input (a corpus, a checkpoint, a configuration, a command line)
// throws couplevae::Error with a message that names the place ("file:line: problem" or
// "checkpoint FILE: tensor NAME: problem"). Command-line front ends print what() on one
// line and exit with code 2. Messages quote what the user gave (a model name, a path, a
// word), so Error escapes control bytes: a newline becomes "\n", any other byte below 0x20
// (and 0x7f) "\xHH"; the message is always a single printable line.
#pragma once
#include <stdexcept>
#include <string>

namespace couplevae {

namespace detail {
inline std::string one_line(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '\n') {
      out += "\\n";
    } else if (c < 0x20 || c == 0x7f) {
      const char* hex = "0123456789abcdef";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += ch;
    }
  }
  return out;
}
}  // namespace detail

struct Error : std::runtime_error {
  explicit Error(const std::string& message) : std::runtime_error(detail::one_line(message)) {}
  explicit Error(const char* message) : Error(std::string(message)) {}
};

// require(cond, message): throws Error(message) when cond is false.
inline void require(bool cond, const std::string& message) {
  if (!cond) throw Error(message);
}

}  // namespace couplevae
