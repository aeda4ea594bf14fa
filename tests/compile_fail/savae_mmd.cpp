// Must not compile: SA-VAE optimises the per-sentence ELBO, which the WAE's batch-level MMD
// is not; the message names the regularisers to use.
#include <couplevae/couplevae.hpp>

using namespace couplevae;

int main() {
  SemiAmortized<models::WAE> m(Config::preset("ptb"), 0);
  (void)m;
}
