#!/bin/sh
# test_golden_fold: the golden model test (tests/test_golden.c) on the other side of LMTERM_FOLD, the decode
# step's norms folded into the GEMVs (backend.h: matmul_residual and norm_matmul; src/forward.c). The cpu backend
# folds only with LMTERM_FOLD=1: its folded ops are the same arithmetic in another order, so this checks the
# forward pass's folded path (which norm weight goes with which GEMV, the first and the last layer) against
# transformers' logits at the cpu's tolerances. The cuda backend folds unless LMTERM_FOLD=0 (test_golden_cuda.sh
# runs it folded): with a GPU, the unfolded step too, at test_golden_cuda.sh's tolerances.
. "${top_srcdir:-.}/tests/lib.sh"
bin="${top_builddir:-.}/tests/test_golden"
[ -x "$bin" ] || skip "tests/test_golden is not built"
LMTERM_FOLD=1 LMTERM_TEST_BACKEND=cpu "$bin" || fail "the golden models with the folded norms (cpu)"
LMTERM_FOLD=0 sh "${top_srcdir:-.}/tests/test_golden_cuda.sh"
rc=$?
case $rc in
0) pass "the golden models without the folded norms (cuda)" ;;
77) echo "SKIP: the cuda part (no GPU)" ;;
*) fail "the golden models without the folded norms (cuda)" ;;
esac
finish
