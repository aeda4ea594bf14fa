// Must not compile: a coupled model cannot be coupled again.
#include <couplevae/couplevae.hpp>
using namespace couplevae;
using VAE = Model<Posterior<Gaussian>, Regularizer<KL>, Decoder<GRU>>;
int main() { Coupled<Coupled<VAE>> m(Config{}, 0); }
