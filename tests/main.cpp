// The unit-test program's main: doctest's, except that a run which selects test cases by name
// (-tc / --test-case, as ctest runs each case) and finds none fails. ctest names each case
// after doctest's list passed through a CMake list, so a name that CMake mangles (a ';'
// splits it in two, an unbalanced '[' swallows the names after it) would otherwise become a
// test that runs nothing and passes.
#define DOCTEST_CONFIG_IMPLEMENT
#include <doctest/doctest.h>

#include <cstdio>
#include <cstring>

namespace {

int cases_started = 0;

// A listener that counts the test cases that ran.
struct CaseCounter : doctest::IReporter {
  explicit CaseCounter(const doctest::ContextOptions&) {}
  void test_case_start(const doctest::TestCaseData&) override { ++cases_started; }
  void report_query(const doctest::QueryData&) override {}
  void test_run_start() override {}
  void test_run_end(const doctest::TestRunStats&) override {}
  void test_case_reenter(const doctest::TestCaseData&) override {}
  void test_case_end(const doctest::CurrentTestCaseStats&) override {}
  void test_case_exception(const doctest::TestCaseException&) override {}
  void subcase_start(const doctest::SubcaseSignature&) override {}
  void subcase_end() override {}
  void log_assert(const doctest::AssertData&) override {}
  void log_message(const doctest::MessageData&) override {}
  void test_case_skipped(const doctest::TestCaseData&) override {}
};
REGISTER_LISTENER("case_counter", 1, CaseCounter);

bool selects_by_name(int argc, char** argv) {
  for (int i = 1; i < argc; ++i)
    for (const char* flag : {"-tc=", "--test-case=", "-dt-tc=", "--dt-test-case="})
      if (!std::strncmp(argv[i], flag, std::strlen(flag))) return true;
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  doctest::Context ctx(argc, argv);
  const int rc = ctx.run();
  if (ctx.shouldExit()) return rc;  // --help, --list-test-cases, ...
  if (cases_started == 0 && selects_by_name(argc, argv)) {
    std::fprintf(stderr, "couplevae_tests: no test case matches the name given: nothing ran\n");
    return 1;
  }
  return rc;
}
