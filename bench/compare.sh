#!/usr/bin/env bash
# Put the Rust workloads next to Samba's C talloc/tevent, workload by workload.
#
#   bench/compare.sh [PACKAGE ...] [-- WORKLOAD ...]
#
# Run it from the workspace root. Without PACKAGE, every workspace package
# that has an examples/*workloads*.rs file is taken. Each package's
# workloads example is built in release mode; then, for each workload it
# lists (or only those named after --), the C program (bench/c-bench.sh)
# and the example run one after the other, each in its own process with
# just that workload, ROUNDS times (default 1); a workload the C program
# does not list (the async tasks) is skipped with a note on stderr. One
# row per round:
#
#   workload  C_ns/op  ours_ns/op  ratio  min_rat  C_rss_kb  our_rss_kb
#
# ns/op are the medians of the 5 repetitions; ratio = ours/C of the
# medians, min_rat = the same for the minimums (below 1: ours is faster);
# the RSS columns are each process's peak in kB from /usr/bin/time -f %M,
# or 0 when GNU time is not installed.
set -euo pipefail
export LC_ALL=C

bench_dir=$(cd "$(dirname "$0")" && pwd)
rounds=${ROUNDS:-1}
[[ $rounds =~ ^[0-9]+$ ]] || { echo "compare.sh: ROUNDS must be a number" >&2; exit 2; }

packages=()
wanted=()
while (($# > 0)); do
	if [[ $1 == -- ]]; then
		shift
		wanted=("$@")
		break
	fi
	packages+=("$1")
	shift
done

[[ -f Cargo.toml ]] && grep -q '^\[workspace\]' Cargo.toml ||
	{ echo "compare.sh: start it from the workspace root" >&2; exit 2; }

# The [package] name in a Cargo.toml.
package_name() {
	awk '/^\[/ { in_pkg = ($0 == "[package]") }
	     in_pkg && /^name *=/ { sub(/^name *= *"/, ""); sub(/".*/, ""); print; exit }' "$1"
}

# The directory of a workspace package, found by its name.
package_dir() {
	local manifest
	for manifest in */Cargo.toml; do
		if [[ $(package_name "$manifest") == "$1" ]]; then
			dirname "$manifest"
			return 0
		fi
	done
	return 1
}

# The example that prints the workloads: examples/workloads.rs if there is
# one, else the first examples/*workloads*.rs.
workloads_example() {
	local f
	if [[ -f $1/examples/workloads.rs ]]; then
		echo workloads
		return 0
	fi
	for f in "$1"/examples/*workloads*.rs; do
		[[ -f $f ]] || continue
		basename "$f" .rs
		return 0
	done
	return 1
}

if ((${#packages[@]} == 0)); then
	for manifest in */Cargo.toml; do
		d=$(dirname "$manifest")
		workloads_example "$d" >/dev/null || continue
		packages+=("$(package_name "$manifest")")
	done
fi
((${#packages[@]} > 0)) || { echo "compare.sh: no package has a workloads example" >&2; exit 2; }

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

c_bin=$(C_BENCH_BUILD_ONLY=1 "$bench_dir/c-bench.sh") ||
	{ echo "compare.sh: the C program did not build" >&2; exit 1; }

# measure CMD...: runs CMD with stdout to $scratch/out; its peak RSS (kB)
# goes to $scratch/rss. On failure its stderr is shown and 1 returned.
if [[ -x /usr/bin/time ]]; then
	measure() {
		/usr/bin/time -f %M -o "$scratch/rss" "$@" >"$scratch/out" 2>"$scratch/err" ||
			{ cat "$scratch/err" >&2; return 1; }
	}
else
	measure() {
		echo 0 >"$scratch/rss"
		"$@" >"$scratch/out" 2>"$scratch/err" || { cat "$scratch/err" >&2; return 1; }
	}
fi

# column NAME N: field N of NAME's data line in the last output.
column() {
	awk -F '\t' -v name="$1" -v n="$2" '!/^#/ && $1 == name { print $n; exit }' "$scratch/out"
}

is_wanted() {
	local w
	((${#wanted[@]} == 0)) && return 0
	for w in "${wanted[@]}"; do
		[[ $w == "$1" ]] && return 0
	done
	return 1
}

# The workloads the C program has: an example's others (the async tasks,
# which C tevent lacks) are skipped with a note, not run against nothing.
c_names=$("$c_bin" --list 2>/dev/null) || c_names=""
in_c() {
	grep -qx -- "$1" <<<"$c_names"
}

printf '%-32s %12s %12s %8s %8s %10s %10s\n' \
	workload C_ns/op ours_ns/op ratio min_rat C_rss_kb our_rss_kb
for pkg in "${packages[@]}"; do
	dir=$(package_dir "$pkg") || { echo "compare.sh: no workspace package '$pkg'" >&2; exit 2; }
	example=$(workloads_example "$dir") ||
		{ echo "compare.sh: $pkg has no examples/*workloads*.rs" >&2; exit 2; }
	cargo build --quiet --release -p "$pkg" --example "$example"
	rust_bin=${CARGO_TARGET_DIR:-target}/release/examples/$example

	names=$("$rust_bin" --list 2>/dev/null) || names=""
	if [[ -z $names ]]; then  # an example without --list: take its data lines
		names=$("$rust_bin" | awk -F '\t' '!/^#/ && NF >= 4 { print $1 }')
	fi

	for name in $names; do
		is_wanted "$name" || continue
		if ! in_c "$name"; then
			echo "# $name: no C counterpart, skipped" >&2
			continue
		fi
		for ((round = 0; round < rounds; round++)); do
			measure "$c_bin" "$name" ||
				{ echo "compare.sh: $name: the C program failed or lacks it" >&2; continue 2; }
			c_med=$(column "$name" 3)
			c_min=$(column "$name" 4)
			c_rss=$(cat "$scratch/rss")
			measure "$rust_bin" "$name" ||
				{ echo "compare.sh: $name: ours failed" >&2; continue 2; }
			r_med=$(column "$name" 3)
			r_min=$(column "$name" 4)
			r_rss=$(cat "$scratch/rss")
			if [[ -z $c_med || -z $r_med ]]; then
				echo "compare.sh: $name: no data line from one side" >&2
				continue 2
			fi
			awk -v n="$name" -v cm="$c_med" -v cn="$c_min" -v rm="$r_med" -v rn="$r_min" \
				-v cr="$c_rss" -v rr="$r_rss" 'BEGIN {
				printf "%-32s %12.2f %12.2f %8.3f %8.3f %10d %10d\n",
					n, cm, rm, (cm > 0 ? rm / cm : 0), (cn > 0 ? rn / cn : 0), cr, rr
			}'
		done
	done
done
