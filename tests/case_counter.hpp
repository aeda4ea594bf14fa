// tests/case_counter.hpp: for the test programs' own main()s (tests/main.cpp, tests/cuda/main.cu).
// A run that selects test cases by name (-tc / --test-case, as ctest and scripts/gpu_check.sh
// run each case) and finds none fails. ctest names each case after doctest's list passed
// through a CMake list, so a name that CMake mangles (a ';' splits it in two, an unbalanced
// '[' swallows the names after it) would otherwise become a test that runs nothing and passes.
#pragma once
#include <doctest/doctest.h>

#include <cstdio>
#include <cstring>
#include <initializer_list>

namespace couplevae_tests {

inline int cases_started = 0;

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

// Whether an argument after argv[0] begins with one of the prefixes.
inline bool any_arg_starts_with(int argc, char** argv, std::initializer_list<const char*> prefixes) {
  for (int i = 1; i < argc; ++i)
    for (const char* prefix : prefixes)
      if (!std::strncmp(argv[i], prefix, std::strlen(prefix))) return true;
  return false;
}

// ctx.run()'s result rc, or 1 when the arguments select cases by name and none ran (`note`,
// when given, follows the error: why some cases were not candidates).
inline int checked_result(doctest::Context& ctx, int rc, int argc, char** argv, const char* note = nullptr) {
  if (ctx.shouldExit()) return rc;  // --help, --list-test-cases, ...
  const bool by_name = any_arg_starts_with(argc, argv, {"-tc=", "--test-case=", "-dt-tc=", "--dt-test-case="});
  if (by_name && cases_started == 0) {
    std::fprintf(stderr, "%s: no test case matches the name given: nothing ran%s%s\n", argv[0], note ? "; " : "",
                 note ? note : "");
    return 1;
  }
  return rc;
}

}  // namespace couplevae_tests
