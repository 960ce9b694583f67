#!/bin/sh
# test_golden_cuda: the golden model test (tests/test_golden.c) on the cuda backend, with fp16/bf16
# tolerances: logits within a relative error of 3e-2 of transformers' float32 logits; the argmax equal at
# >= 99% of all prompt positions and at all but one per case, near ties apart (see test_golden.c); the first
# 4 greedy tokens equal (a 16-bit model may part from the float32 greedy continuation later, at a near tie).
# Skips without a GPU.
. "${top_srcdir:-.}/tests/lib.sh"
bin="${top_builddir:-.}/tests/test_golden"
[ -x "$bin" ] || skip "tests/test_golden is not built"
LMTERM_TEST_BACKEND=cuda LMTERM_TEST_RTOL=${LMTERM_TEST_RTOL:-3e-2} \
LMTERM_TEST_ARGMAX_MISMATCH=${LMTERM_TEST_ARGMAX_MISMATCH:-1} LMTERM_TEST_ARGMAX_AGREE=${LMTERM_TEST_ARGMAX_AGREE:-0.99} \
LMTERM_TEST_GREEDY_MIN=${LMTERM_TEST_GREEDY_MIN:-4} \
	"$bin"
