# bench/args.sh: the argument checks bench/compare.sh and bench/compare_gpu.sh share (sourced).
die() { echo "$(basename "$0"): error: $*" >&2; exit 2; }
need_value() { [[ $# -ge 2 && -n "$2" ]] || die "$1 needs a value"; }
posint() { [[ "$2" =~ ^[0-9]+$ ]] && (( $2 >= $3 )) || die "$1 must be an integer >= $3 (got '$2')"; }
