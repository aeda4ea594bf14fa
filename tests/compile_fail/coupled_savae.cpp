// Must not compile: the paper does not couple SA-VAE (its posterior is refined by SVI, not
// amortized); Coupled<SemiAmortized<M>> names the fix.
#include <couplevae/couplevae.hpp>

using namespace couplevae;

int main() {
  Coupled<SemiAmortized<models::VAE>> m(Config::preset("ptb"), 0);
  (void)m;
}
