#!/bin/sh
# The measurement build (NVCCFLAGS=-DLMTERM_TRACE, cuda/pdl.cuh) compiles: every kernel family whose kernels
# carry TRACE_SCOPE or TRACE_MARK, and fill.cu, which holds the trace's host side. Nothing else builds these
# files with the flag, so a change to a kernel could break the tracer unseen. Where configure found no nvcc
# the test is skipped.
. "${top_srcdir:-.}/tests/lib.sh"
[ -n "${NVCC:-}" ] || skip "no CUDA toolkit (configure found no nvcc)"
T=$(mktemp -d) || exit 1
trap 'rm -rf "$T"' EXIT
# the build's flags without its PTX target (compute_*): one code generation is enough to see that it compiles,
# and the two largest files take half the time
flags=
for a in $NVCC_FLAGS; do
	case "$a" in *code=compute_*) ;; *) flags="$flags $a" ;; esac
done
pids=
for f in fill rmsnorm sample gemv awq_gemm attention; do
	# shellcheck disable=SC2086 # a list of flags
	$NVCC $flags -DLMTERM_TRACE -c -o "$T/$f.o" "$top_srcdir/cuda/$f.cu" > "$T/$f.log" 2>&1 &
	pids="$pids $!:$f"
done
for p in $pids; do
	if wait "${p%%:*}"; then
		pass "cuda/${p#*:}.cu compiles with -DLMTERM_TRACE"
	else
		fail "cuda/${p#*:}.cu with -DLMTERM_TRACE: $(head -c 600 "$T/${p#*:}.log")"
	fi
done
# the tracer's host side is there, and only in the measurement build
nm "$T/fill.o" 2>/dev/null | grep -q "k_trace_dump" || fail "fill.o has no k_trace_dump"
finish
