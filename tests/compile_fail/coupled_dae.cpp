// Must not compile: the DAE has no stochastic path to couple.
#include <couplevae/couplevae.hpp>
using namespace couplevae;
using DAE = Model<Posterior<Deterministic>, Regularizer<Zero>, Decoder<GRU>>;
int main() { Coupled<DAE> m(Config{}, 0); }
