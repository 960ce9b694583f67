#!/bin/sh
# test_bench: lmterm bench on the cpu backend with a tiny config and random weights (any machine), then
# its usage errors. Checks the report's fields, not speeds.
. "${top_srcdir:-.}/tests/lib.sh"
cfg="$TESTDATA/fixtures/llama3-rand/config.json"
[ -f "$cfg" ] || skip "no $cfg"
errf=$(mktemp) || exit 1
trap 'rm -f "$errf"' EXIT
out=$("$LMTERM" bench "$cfg" --dummy --backend cpu --prompt-len 12 -n 5 --quant-policy 8 --json 2>&1); rc=$?
if [ $rc -ne 0 ]; then fail "bench --json: rc $rc: $out"; else
	for key in '"prefill_tok_s": ' '"ttft_s": ' '"decode_tok_s": ' '"quant_policy": 8' '"prompt_len": 12' \
		'"weights": ' '"kv": ' '"step_kv_bytes": '; do
		case "$out" in *"$key"*) ;; *) fail "bench --json lacks $key: $out" ;; esac
	done
	case "$out" in *'"weights": 0,'*) fail "bench: no weight bytes counted: $out" ;; *) pass "bench --json" ;; esac
fi
# --json --profile: standard output is the JSON object alone, the table on stderr (it followed the JSON on stdout)
out=$("$LMTERM" bench "$cfg" --dummy --backend cpu --prompt-len 8 -n 4 --json --profile 2>"$errf")
case "$out" in
"{"*"}") if [ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ] && grep -q "each op alone" "$errf"; then
		pass "bench --json --profile: the JSON alone on stdout"
	else fail "bench --json --profile: stdout '$out', stderr $(cat "$errf")"; fi ;;
*) fail "bench --json --profile: stdout is not the JSON alone: $out" ;;
esac
out=$("$LMTERM" bench "$cfg" --dummy --backend cpu --prompt-len 8 -n 4 2>&1) || fail "bench text: $out"
case "$out" in *"tokens/s"*"memory"*) pass "bench text report" ;; *) fail "bench text report: $out" ;; esac
# sampled decode steps: the settings in the report, the backend's sample op used (the cpu backend has one)
out=$("$LMTERM" bench "$cfg" --dummy --backend cpu --prompt-len 8 -n 6 --temperature 0.8 --top-k 40 --top-p 0.9 \
	--min-p 0.02 --repetition-penalty 1.1 --json 2>&1) || fail "bench sampling: $out"
case "$out" in
*'"sampling": {"temperature": 0.8, "top_k": 40, "top_p": 0.9, "min_p": 0.02, "repetition_penalty": 1.1, "backend_op": true}'*'"decode_tok_s": '*)
	pass "bench --temperature --json" ;;
*) fail "bench --temperature --json: $out" ;;
esac
out=$(LMTERM_HOST_SAMPLING=1 "$LMTERM" bench "$cfg" --dummy --backend cpu --prompt-len 8 -n 4 --temperature 1 2>&1) ||
	fail "bench host sampling: $out"
case "$out" in *"sampling   temperature 1,"*"the host sampler"*) pass "bench host sampling" ;; *) fail "bench host sampling: $out" ;; esac
case "$("$LMTERM" bench "$cfg" --dummy --backend cpu --prompt-len 8 -n 4 --json 2>&1)" in
*'"sampling": null'*) pass "bench greedy by default" ;; *) fail "bench: greedy is not the default" ;; esac
# a path with a quote and a backslash is escaped in the JSON (it was printed raw: invalid JSON)
qdir=${TMPDIR:-/tmp}/lmterm-bench-q\"\\.$$
mkdir -p "$qdir" && cp "$cfg" "$qdir/config.json"
out=$("$LMTERM" bench "$qdir/config.json" --dummy --backend cpu --prompt-len 8 -n 4 --json 2>&1)
case "$out" in *'"model": "'*'lmterm-bench-q\"\\.'*) pass "bench --json escapes the model path" ;;
*) fail "bench --json model path: $out" ;; esac
rm -rf "$qdir"
# LMTERM_BENCH_SKIP (a developers' measurement): the decode steps run without the ops named, said on stderr
out=$(LMTERM_BENCH_SKIP=norm,w13,attn "$LMTERM" bench "$cfg" --dummy --backend cpu --prompt-len 8 -n 4 --profile 2>&1)
case "$out" in *"LMTERM_BENCH_SKIP=norm,w13,attn: the decode steps leave those ops out"*"tokens/s"*"matmul w2"*)
	pass "LMTERM_BENCH_SKIP" ;; *) fail "LMTERM_BENCH_SKIP: $out" ;; esac
expect_fail "LMTERM_BENCH_SKIP with an unknown op" "unknown op 'nope'" env LMTERM_BENCH_SKIP=norm,nope "$LMTERM" bench "$cfg" --dummy
expect_fail "bad --top-p" "--top-p" "$LMTERM" bench "$cfg" --dummy --top-p 0
expect_fail "bad --temperature" "--temperature" "$LMTERM" bench "$cfg" --dummy --temperature -1
expect_fail "bad --top-k" "--top-k" "$LMTERM" bench "$cfg" --dummy --top-k x
expect_fail "config without --dummy" "add --dummy" "$LMTERM" bench "$cfg"
expect_fail "missing model" "nothing-here" "$LMTERM" bench "$TESTDATA/nothing-here"
expect_fail "bad --prompt-len" "--prompt-len" "$LMTERM" bench "$cfg" --dummy --prompt-len x
expect_fail "bad --quant-policy" "--quant-policy" "$LMTERM" bench "$cfg" --dummy --quant-policy 3
expect_fail "bad --dtype" "--dtype" "$LMTERM" bench "$cfg" --dummy --dtype fp8
expect_fail "unknown option" "--bogus" "$LMTERM" bench "$cfg" --dummy --bogus
# a backend name that is none is a usage error, as in chat (it was exit 1, found when the model was loaded)
expect_usage "bad --backend" "unknown backend 'gpu'" "$LMTERM" bench "$cfg" --dummy --backend gpu
finish
