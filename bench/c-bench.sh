#!/bin/sh
# Compile bench/c/bench.c against Debian's talloc and tevent and run it.
#
#   bench/c-bench.sh                     every workload, default sizes
#   bench/c-bench.sh WORKLOAD [SIZE]     one workload (SIZE replaces its N)
#   bench/c-bench.sh --list | --help     workload names / usage
#
# Any directory will do. The program is compiled into
# ${TMPDIR:-/tmp}/talloc-rs-c-bench-<uid>/, never into the repository.
# With C_BENCH_BUILD_ONLY=1 the script only compiles and prints the path of
# the program (bench/compare.sh uses this).
set -eu

src_dir=$(cd "$(dirname "$0")/c" && pwd)
out_dir="${TMPDIR:-/tmp}/talloc-rs-c-bench-$(id -u)"

have_libs() {
	command -v pkg-config >/dev/null 2>&1 && pkg-config --exists talloc tevent
}

# The Debian packages are fetched only when pkg-config cannot see the libraries.
if ! have_libs; then
	as_root=""
	if [ "$(id -u)" -ne 0 ]; then
		command -v sudo >/dev/null 2>&1 || {
			echo "c-bench.sh: talloc/tevent not found and not root (no sudo) to install them" >&2
			exit 1
		}
		as_root=sudo
	fi
	echo "c-bench.sh: apt-get install libtalloc-dev libtevent-dev pkg-config" >&2
	$as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null
	$as_root env DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq libtalloc-dev libtevent-dev pkg-config >/dev/null
	have_libs || {
		echo "c-bench.sh: pkg-config still does not find talloc and tevent" >&2
		exit 1
	}
fi

mkdir -p "$out_dir"
bin="$out_dir/bench"
# Link into a private name first and rename it into place, so that two runs
# at the same time never execute a half-written file. The libraries follow
# the source file because Debian's linker uses --as-needed.
part="$bin.part.$$"
trap 'rm -f "$part"' EXIT
# shellcheck disable=SC2046  # the pkg-config flags must be split into words
${CC:-cc} -O2 -Wall -Wextra \
	-DBENCH_TEVENT_VERSION="\"$(pkg-config --modversion tevent)\"" \
	-o "$part" "$src_dir/bench.c" $(pkg-config --cflags --libs talloc tevent) -lpthread
mv -f "$part" "$bin"

if [ "${C_BENCH_BUILD_ONLY:-0}" = 1 ]; then
	echo "$bin"
	exit 0
fi
exec "$bin" "$@"
