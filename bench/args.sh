# bench/args.sh: the command line bench/compare.sh, bench/compare_gpu.sh and
# bench/time_to_quality.sh share (sourced after the defaults are set; a script's own options
# are taken out first). parse_args handles --data, --steps, --warmup, --eval-sentences,
# --eval-samples, --rounds, --threads (only where THREADS has a default),
# --models (only where MODELS has a default: a space- or comma-separated list, each name one
# of ALLOWED_MODELS) and --help (the script's header lines 2..HELP_LINES); check_data makes DATA absolute.
# The models bench/torch_ref.py has, so the ones --models may name.
ALLOWED_MODELS="vae couple-vae cnn-vae couple-cnn-vae"
die() { echo "$(basename "$0"): error: $*" >&2; exit 2; }
need_value() { [[ $# -ge 2 && -n "$2" ]] || die "$1 needs a value"; }
posint() { [[ "$2" =~ ^[0-9]+$ ]] && (( $2 >= $3 )) || die "$1 must be an integer >= $3 (got '$2')"; }

parse_args() {
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --data) need_value "$@"; DATA="$2"; shift 2 ;;
      --steps) need_value "$@"; posint "$1" "$2" 1; STEPS="$2"; shift 2 ;;
      --warmup) need_value "$@"; posint "$1" "$2" 0; WARMUP="$2"; shift 2 ;;
      --eval-sentences) need_value "$@"; posint "$1" "$2" 1; EVAL_SENTENCES="$2"; shift 2 ;;
      --eval-samples) need_value "$@"; posint "$1" "$2" 1; EVAL_SAMPLES="$2"; shift 2 ;;
      --rounds) need_value "$@"; posint "$1" "$2" 1; ROUNDS="$2"; shift 2 ;;
      --threads)
        [[ -v THREADS ]] || die "unknown argument '$1' (see --help)"
        need_value "$@"; posint "$1" "$2" 1; THREADS="$2"; shift 2 ;;
      --models)
        [[ -v MODELS ]] || die "unknown argument '$1' (see --help)"
        need_value "$@"; MODELS="${2//,/ }"; shift 2
        local m
        for m in $MODELS; do
          [[ " $ALLOWED_MODELS " == *" $m "* ]] || die "--models: unknown model '$m' (one of: $ALLOWED_MODELS)"
        done
        [[ -n "${MODELS// /}" ]] || die "--models needs at least one model" ;;
      -h|--help) sed -n "2,${HELP_LINES}p" "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
      *) die "unknown argument '$1' (see --help)" ;;
    esac
  done
}

# built VAR DIR TARGET NAME [CMAKE_OPTION...]: the program the scripts run. $VAR when set
# (it must be executable), else ROOT/DIR/bin/NAME, configured (Release, the options) and
# TARGET built in ROOT/DIR when it is missing.
built() {
  local var=$1 dir=$2 target=$3 name=$4
  shift 4
  if [[ -n "${!var:-}" ]]; then
    [[ -x "${!var}" ]] || die "\$$var=${!var} is not an executable"
    return
  fi
  printf -v "$var" '%s' "$ROOT/$dir/bin/$name"
  [[ -x "${!var}" ]] && return
  echo "# ${!var} missing: configuring and building it in $ROOT/$dir" >&2
  cmake -S "$ROOT" -B "$ROOT/$dir" -DCMAKE_BUILD_TYPE=Release "$@" >&2
  cmake --build "$ROOT/$dir" --target "$target" -j"$(nproc)" >&2
  [[ -x "${!var}" ]] || die "build finished but ${!var} is missing"
}

check_data() {
  local f
  for f in train.txt valid.txt test.txt; do
    [[ -f "$DATA/$f" ]] || die "dataset not found: $DATA/$f is missing (pass --data DIR, a folder with train.txt valid.txt test.txt; the default is ../shared/data/ptb next to the repository)"
  done
  DATA="$(cd "$DATA" && pwd)"
}
