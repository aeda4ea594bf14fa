// The unit-test program's main: doctest's, except that a -tc filter matching no case fails
// (tests/case_counter.hpp says why).
#define DOCTEST_CONFIG_IMPLEMENT
#include "case_counter.hpp"

int main(int argc, char** argv) {
  doctest::Context ctx(argc, argv);
  const int rc = ctx.run();
  return couplevae_tests::checked_result(ctx, rc, argc, argv);
}
