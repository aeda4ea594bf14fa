// The cuda test program: `--host` runs the cases of test_host.cu (no GPU needed), `--device`
// those of test_device.cu, which need a CUDA device: without one it prints
// "skipped: no CUDA device" and exits 77 (ctest's SKIP_RETURN_CODE). Neither runs both suites,
// or, without a device, the host cases alone and says the device cases were skipped. Other
// arguments go to doctest; a -tc filter that matches no case fails (tests/case_counter.hpp).
#define DOCTEST_CONFIG_IMPLEMENT
#include "../case_counter.hpp"

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <couplevae/cuda.cuh>

int main(int argc, char** argv) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // a killed run still shows how far it got
  std::vector<char*> args(argv, argv + argc);
  std::string suite;
  for (size_t i = 1; i < args.size(); ++i)
    if (!std::strcmp(args[i], "--host") || !std::strcmp(args[i], "--device")) {
      suite = args[i] + 2;
      args.erase(args.begin() + long(i));
      --i;
    }
  // Listing the cases (-ltc, --list-test-cases, ...) or asking for help needs no device.
  const bool query = couplevae_tests::any_arg_starts_with(
      int(args.size()), args.data(), {"-l", "--list", "-dt-l", "--dt-list", "-h", "--help", "-?", "-v", "--version"});
  const bool no_device = !query && couplevae::cuda_rt::device_count() == 0;
  if (suite == "device" && no_device) {
    std::printf("skipped: no CUDA device\n");
    return 77;
  }
  const bool device_skipped = suite.empty() && no_device;
  doctest::Context ctx(int(args.size()), args.data());
  if (!suite.empty()) ctx.setOption("test-suite", suite.c_str());
  if (device_skipped) ctx.setOption("test-suite-exclude", "device");
  const int rc = ctx.run();
  if (device_skipped)
    std::printf("device cases skipped: no CUDA device (the host cases ran)\n");
  return couplevae_tests::checked_result(ctx, rc, int(args.size()), args.data(),  // a -tc matching nothing fails
                                         device_skipped ? "the device cases were not searched: no CUDA device" : nullptr);
}
