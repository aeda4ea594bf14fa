// couplevae/data/toy_corpus.hpp: a small synthetic corpus for trying the models offline.
//
// write_toy_corpus(DIR, seed) writes DIR/train.txt, DIR/valid.txt and DIR/test.txt (creating
// DIR) in the format read_corpus() expects. Sentences come from a tiny probabilistic grammar
// with two latent factors a VAE can discover:
//
//   topic (6: kitchen, sport, weather, music, tech, animals) chooses the subjects, verbs,
//         objects, adjectives and places of the whole sentence;
//   mood  (2: positive, negative) chooses the adverbs and the emotive adjectives.
//
//   sentence := [time] clause [conj clause] "."
//   clause   := det [adj] subject [adverb] verb det [adj] object [prep det place]
//
// giving 6 to about 21 tokens a sentence over a vocabulary of about 230 words. The output is
// a pure function of (seed, line counts): every draw comes from couplevae::Rng (one derived
// stream per split), never from <random> distributions, whose results differ between
// standard libraries.
#pragma once
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include "../core/error.hpp"
#include "../core/rng.hpp"

namespace couplevae {

namespace detail {

struct ToyTopic {
  std::vector<std::string_view> subjects, verbs, objects, adjectives, places;
};

inline const std::vector<ToyTopic>& toy_topics() {
  static const std::vector<ToyTopic> topics = {
      {{"chef", "cook", "baker", "waiter", "farmer", "grandmother", "kid", "customer"},
       {"cooks", "bakes", "tastes", "serves", "orders", "slices", "grills", "peels"},
       {"soup", "bread", "pasta", "cake", "salad", "pie", "rice", "cheese"},
       {"spicy", "fresh", "sweet", "salty", "crispy", "warm"},
       {"kitchen", "restaurant", "bakery", "market"}},
      {{"player", "coach", "team", "goalkeeper", "runner", "referee", "captain", "fan"},
       {"kicks", "throws", "catches", "wins", "loses", "scores", "passes", "chases"},
       {"ball", "match", "game", "trophy", "goal", "race", "medal", "point"},
       {"fast", "strong", "tired", "quick", "tall", "brave"},
       {"stadium", "field", "gym", "arena"}},
      {{"storm", "wind", "river", "sun", "cloud", "snow", "rain", "flood"},
       {"covers", "floods", "freezes", "warms", "shakes", "soaks", "hides", "cools"},
       {"valley", "hill", "forest", "village", "road", "meadow", "bridge", "coast"},
       {"cold", "dark", "heavy", "bright", "wet", "icy"},
       {"north", "mountains", "desert", "island"}},
      {{"singer", "drummer", "band", "pianist", "composer", "guitarist", "choir", "violinist"},
       {"plays", "sings", "writes", "records", "performs", "hums", "practices", "tunes"},
       {"song", "melody", "album", "piano", "guitar", "chorus", "symphony", "tune"},
       {"loud", "soft", "catchy", "slow", "beautiful", "jazzy"},
       {"studio", "concert", "theater", "club"}},
      {{"engineer", "programmer", "robot", "computer", "scientist", "startup", "hacker", "student"},
       {"builds", "codes", "tests", "debugs", "designs", "launches", "updates", "installs"},
       {"app", "server", "website", "chip", "network", "database", "program", "laptop"},
       {"digital", "smart", "broken", "secure", "new", "modern"},
       {"lab", "office", "datacenter", "campus"}},
      {{"dog", "cat", "horse", "bird", "fox", "rabbit", "owl", "wolf"},
       {"bites", "hunts", "finds", "eats", "watches", "follows", "smells", "digs"},
       {"mouse", "bone", "stick", "worm", "nest", "carrot", "fish", "trail"},
       {"furry", "wild", "hungry", "little", "sleepy", "curious"},
       {"barn", "garden", "woods", "yard"}},
  };
  return topics;
}

struct ToyMood {
  std::vector<std::string_view> adverbs, adjectives;
};

inline const std::vector<ToyMood>& toy_moods() {
  static const std::vector<ToyMood> moods = {
      {{"happily", "gladly", "proudly", "eagerly", "calmly"}, {"wonderful", "lovely", "great", "perfect"}},
      {{"sadly", "angrily", "nervously", "reluctantly", "barely"}, {"awful", "terrible", "ugly", "boring"}},
  };
  return moods;
}

inline const std::vector<std::string_view> toy_determiners = {"the", "a", "this", "that", "every", "our"};
inline const std::vector<std::string_view> toy_prepositions = {"in", "near", "behind", "at", "outside"};
inline const std::vector<std::string_view> toy_conjunctions = {"and", "but", "while", "because", "so"};
inline const std::vector<std::string_view> toy_times = {"today", "yesterday", "tonight", "sometimes", "again"};

class ToyGrammar {
 public:
  explicit ToyGrammar(Rng rng) : rng_(rng) {}

  std::vector<std::string_view> sentence() {
    const auto& topic = toy_topics()[size_t(rng_.below(toy_topics().size()))];
    const auto& mood = toy_moods()[size_t(rng_.below(toy_moods().size()))];
    std::vector<std::string_view> out;
    if (chance(0.2)) out.push_back(pick(toy_times));
    clause(topic, mood, out);
    if (out.size() <= 8 && chance(0.35)) {
      out.push_back(pick(toy_conjunctions));
      clause(topic, mood, out);
    }
    out.push_back(".");
    return out;
  }

 private:
  bool chance(double p) {
    double u;
    rng_.uniform(&u, 1);
    return u < p;
  }
  std::string_view pick(const std::vector<std::string_view>& words) {
    return words[size_t(rng_.below(words.size()))];
  }
  void noun_phrase(const std::vector<std::string_view>& nouns, double p_adjective,
                   const ToyTopic& topic, const ToyMood& mood, std::vector<std::string_view>& out) {
    out.push_back(pick(toy_determiners));
    if (chance(p_adjective)) out.push_back(chance(0.7) ? pick(topic.adjectives) : pick(mood.adjectives));
    out.push_back(pick(nouns));
  }
  void clause(const ToyTopic& topic, const ToyMood& mood, std::vector<std::string_view>& out) {
    noun_phrase(topic.subjects, 0.35, topic, mood, out);
    if (chance(0.3)) out.push_back(pick(mood.adverbs));
    out.push_back(pick(topic.verbs));
    noun_phrase(topic.objects, 0.45, topic, mood, out);
    if (chance(0.45)) {
      out.push_back(pick(toy_prepositions));
      out.push_back(pick(toy_determiners));
      out.push_back(pick(topic.places));
    }
  }

  Rng rng_;
};

inline void write_toy_split(const std::filesystem::path& path, Rng rng, int lines) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) {
    const int e = errno;
    throw Error(path.string() + ": cannot write: " + (e ? std::strerror(e) : "unknown error"));
  }
  ToyGrammar grammar(rng);
  std::string line;
  for (int i = 0; i < lines; ++i) {
    line.clear();
    for (auto w : grammar.sentence()) {
      if (!line.empty()) line += ' ';
      line += w;
    }
    line += '\n';
    out.write(line.data(), std::streamsize(line.size()));
  }
  out.close();
  if (!out) throw Error(path.string() + ": cannot write: error while writing");
}

}  // namespace detail

// Writes DIR/train.txt, DIR/valid.txt, DIR/test.txt with the given numbers of sentences.
inline void write_toy_corpus(const std::string& dir, uint64_t seed, int train_lines = 3000,
                             int valid_lines = 300, int test_lines = 300) {
  namespace fs = std::filesystem;
  require(train_lines >= 1 && valid_lines >= 1 && test_lines >= 1,
          "write_toy_corpus: every split needs at least one line (got " + std::to_string(train_lines) +
              "/" + std::to_string(valid_lines) + "/" + std::to_string(test_lines) + ")");
  const fs::path root(dir);
  std::error_code ec;
  fs::create_directories(root, ec);
  if (ec || !fs::is_directory(root, ec))
    throw Error(dir + ": cannot create folder: " + (ec ? ec.message() : "not a directory"));
  const Rng base(seed);
  detail::write_toy_split(root / "train.txt", base.derive(1), train_lines);
  detail::write_toy_split(root / "valid.txt", base.derive(2), valid_lines);
  detail::write_toy_split(root / "test.txt", base.derive(3), test_lines);
}

}  // namespace couplevae
