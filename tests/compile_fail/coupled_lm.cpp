// Must not compile: the GRU-LM has no latent path.
#include <couplevae/couplevae.hpp>
using namespace couplevae;
int main() { Coupled<LanguageModel<Decoder<GRU>>> m(Config{}, 0); }
