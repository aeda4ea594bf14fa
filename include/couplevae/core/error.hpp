// couplevae/core/error.hpp: the one exception type of the library.
//
// Every failure caused by input (a corpus, a checkpoint, a configuration, a command line)
// throws couplevae::Error with a message that names the place ("file:line: problem" or
// "checkpoint FILE: tensor NAME: problem"). Command-line front ends print what() on one
// line and exit with code 2.
#pragma once
#include <stdexcept>
#include <string>

namespace couplevae {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// require(cond, message): throws Error(message) when cond is false.
inline void require(bool cond, const std::string& message) {
  if (!cond) throw Error(message);
}

}  // namespace couplevae
