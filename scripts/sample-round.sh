#!/bin/sh
# sample-round.sh: the GPU round of device sampling (cuda/sample.cu) in one bundle.
#   scripts/sample-round.sh prepare DEST   (here, in a built CUDA tree) copies lmterm, test_backend_ops, the
#                                          libraries the GPU machine lacks and the demo model (xz) into DEST
#   sh run.sh                              (there, from DEST) runs:
#     1. test_backend_ops with LMTERM_TEST_ONLY=sample and LMTERM_SAMPLE_FAST=0 (the radix search only)
#     2. lmterm generate on the demo model, device sampling against LMTERM_HOST_SAMPLING=1, several settings:
#        the same ids expected (the same seed and the same logits)
#     3. the whole test_backend_ops (the sample op as it runs by default)
#     4. ncu: the sample and argmax kernels' own durations
#     5. bench --profile with the argmax over many blocks and over one
#     6. compute-sanitizer memcheck on a few sample cases
#   Everything under $OUT goes into one sample-round.tgz (with summary.txt and fails.txt beside it).
set -u
mode=${1:-run}
if [ "$mode" = prepare ]; then
	dest=${2:?usage: sample-round.sh prepare DEST}
	top=$(cd "$(dirname "$0")/.." && pwd)
	rm -rf "$dest" && mkdir -p "$dest/lib" "$dest/models/tiny"
	cp "$top/lmterm" "$top/tests/test_backend_ops" "$dest/"
	cp "$0" "$dest/run-impl.sh"
	cp -r "$top/configs" "$dest/"
	cp -P /usr/lib/x86_64-linux-gnu/libcjson.so.1* /usr/lib/x86_64-linux-gnu/libutf8proc.so.2* "$dest/lib/"
	m=${MODEL:-/work/shared/models/tiny-en-zh}
	for f in "$m"/*; do
		case "$f" in
		*.safetensors) xz -6 -T2 -c "$f" > "$dest/models/tiny/$(basename "$f").xz" ;;
		*) cp "$f" "$dest/models/tiny/" ;;
		esac
	done
	strip "$dest/lmterm" "$dest/test_backend_ops"
	xz -6 -T2 "$dest/lmterm" "$dest/test_backend_ops"
	printf '#!/bin/sh\nexec sh ./run-impl.sh run\n' > "$dest/run.sh"
	du -sh "$dest"
	exit 0
fi
top=$(pwd)
OUT=${OUT:-$top/out}
mkdir -p "$OUT"
export LD_LIBRARY_PATH="$top/lib:/usr/local/cuda/lib64"
unxz_() { xz -dc "$1" > "$2" 2>/dev/null || python3 -c "import lzma,sys; open(sys.argv[2],'wb').write(lzma.open(sys.argv[1]).read())" "$1" "$2"; }
for f in lmterm.xz test_backend_ops.xz models/tiny/*.xz; do
	[ -f "$f" ] || continue
	unxz_ "$f" "${f%.xz}" && rm -f "$f"
done
chmod +x lmterm test_backend_ops
nvidia-smi -L > "$OUT/gpu.txt" 2>&1
summary=""
add() { summary="$summary
$*"; }

seed=${SEED:-20261204}
T0=$(date +%s)
lim() { # a step's limit: its own, or what is left of 140 s
	l=$((140 - ($(date +%s) - T0)))
	[ $l -gt $1 ] && l=$1
	[ $l -lt 1 ] && l=1
	echo $l
}
t0=$(date +%s)
# 1. the sample op with the radix search only (the sorted finish is in the whole run, step 3)
LMTERM_SAMPLE_FAST=0 LMTERM_TEST_SEED=$seed LMTERM_TEST_ONLY=sample timeout $(lim 50) ./test_backend_ops > "$OUT/sample-ops-radix.log" 2>&1
rc=$?
add "1. test_backend_ops sample, LMTERM_SAMPLE_FAST=0: rc $rc, $(grep -c '^ok' "$OUT/sample-ops-radix.log") ok, $(grep -c '^FAIL' "$OUT/sample-ops-radix.log") FAIL, $(( $(date +%s) - t0 )) s"

# 2. generate: device sampling against the host sampler on the same logits
t0=$(date +%s)
prompt="Once upon a time, there was a little girl who"
i=0
for cfg in '"temperature": 0.8, "top_p": 0.9, "top_k": 40' \
	   '"temperature": 1.0, "top_p": 0.95, "top_k": 0, "min_p": 0.05, "repetition_penalty": 1.1' \
	   '"temperature": 1.0, "top_p": 1.0, "top_k": 0' \
	   '"temperature": 0.7, "top_p": 0.5, "top_k": 0, "repetition_penalty": 1.3' \
	   '"temperature": 1.5, "top_p": 1.0, "top_k": 200, "min_p": 0.02'; do
	i=$((i + 1))
	d=models/tiny-$i
	mkdir -p $d
	for f in models/tiny/*; do ln -sf "$top/$f" "$d/"; done
	rm -f $d/generation_config.json
	echo "{ \"do_sample\": true, $cfg, \"eos_token_id\": [2, 4] }" > $d/generation_config.json
	for s in 1; do
		timeout $(lim 20) ./lmterm generate $d -p "$prompt" -n 200 --seed $s --backend cuda --print-ids > "$OUT/gen-$i-$s-dev.txt" 2> "$OUT/gen-$i-$s-dev.err"
		r1=$?
		LMTERM_HOST_SAMPLING=1 timeout $(lim 20) ./lmterm generate $d -p "$prompt" -n 200 --seed $s --backend cuda --print-ids > "$OUT/gen-$i-$s-host.txt" 2> "$OUT/gen-$i-$s-host.err"
		r2=$?
		n=$(wc -w < "$OUT/gen-$i-$s-dev.txt")
		if [ $r1 = 0 ] && [ $r2 = 0 ] && cmp -s "$OUT/gen-$i-$s-dev.txt" "$OUT/gen-$i-$s-host.txt"; then
			add "2. generate {$cfg} seed $s: same $n ids"
		else
			add "2. generate {$cfg} seed $s: DIFFER (rc $r1/$r2; $n ids; first differing word: $(python3 -c "
import sys
a=open(sys.argv[1]).read().split(); b=open(sys.argv[2]).read().split()
print(next((i for i,(x,y) in enumerate(zip(a,b)) if x!=y), min(len(a),len(b))))" "$OUT/gen-$i-$s-dev.txt" "$OUT/gen-$i-$s-host.txt"))"
		fi
	done
	# timing of the whole generate, device vs host sampling (200 tokens of a tiny model: the sampler's share)
done
for v in dev host; do
	e=""
	[ $v = host ] && e="LMTERM_HOST_SAMPLING=1"
	s0=$(date +%s.%N)
	env $e timeout $(lim 30) ./lmterm generate models/tiny-3 -p "$prompt" -n 500 --seed 7 --backend cuda --print-ids > /dev/null 2>&1
	s1=$(date +%s.%N)
	add "2. generate 500 tokens, top_k 0 top_p 1 ($v sampling): $(python3 -c "print('%.2f s' % ($s1 - $s0))")"
done
# the engine (chat REPL, two turns): device sampling against the host sampler, the same replies
opts="--backend cuda --seed 3 --temperature 0.9 --top-k 50 --top-p 0.9 --min-p 0.02 --repetition-penalty 1.1 --max-new-tokens 80"
for v in dev host; do
	e=""
	[ $v = host ] && e="LMTERM_HOST_SAMPLING=1"
	printf 'Tell me a story about a cat.\n\nAnd then what happened?\n\nexit\n\n' |
		env $e timeout $(lim 20) ./lmterm chat models/tiny --no-tui $opts 2> "$OUT/chat-$v.err" |
		sed 's/([0-9]* tokens, [0-9.]* tokens\/s.*//' > "$OUT/chat-$v.txt"
done
if [ -s "$OUT/chat-dev.txt" ] && cmp -s "$OUT/chat-dev.txt" "$OUT/chat-host.txt"; then
	add "2. chat REPL, 2 turns, sampling ($opts): same replies ($(wc -c < "$OUT/chat-dev.txt") bytes)"
else
	add "2. chat REPL: DIFFER or failed ($(wc -c < "$OUT/chat-dev.txt") / $(wc -c < "$OUT/chat-host.txt") bytes; $(head -c 200 "$OUT/chat-dev.err"))"
fi
add "2. took $(( $(date +%s) - t0 )) s"

t0=$(date +%s)
LMTERM_TEST_SEED=$seed timeout $(lim 75) ./test_backend_ops > "$OUT/all-ops.log" 2>&1
rc=$?
add "3. test_backend_ops (all): rc $rc, $(grep -c '^ok' "$OUT/all-ops.log") ok, $(grep -c 'FAIL' "$OUT/all-ops.log") FAIL, $(( $(date +%s) - t0 )) s"

# 4. the kernels' own durations (ncu): the sample and argmax kernels of a few cases
t0=$(date +%s)
if command -v ncu > /dev/null && [ $(lim 100) -gt 20 ]; then
	LMTERM_TEST_SEED=$seed LMTERM_TEST_ONLY=sample-quick timeout $(lim 35) ncu --metrics gpu__time_duration.sum \
		-k regex:"sample_kernel|argmax" --launch-count 400 ./test_backend_ops > "$OUT/ncu.log" 2>&1
	add "4. ncu: rc $?, $(( $(date +%s) - t0 )) s"
	python3 - "$OUT/ncu.log" > "$OUT/ncu-summary.txt" 2>&1 <<'PY'
import re, sys, collections
d = collections.defaultdict(list)
name = None
for line in open(sys.argv[1], errors="replace"):
    m = re.match(r"\s+(\S*(sample_kernel|argmax\w*)\S*)", line)
    if m:
        name = m.group(2) + ("<coop>" if "true" in line or "ILb1E" in line else "<1blk>" if "false" in line or "ILb0E" in line else "")
    m = re.search(r"gpu__time_duration.sum\s+(\S+)\s+([\d.,]+)", line)
    if m and name:
        v = float(m.group(2).replace(",", ""))
        unit = m.group(1)
        d[name].append(v * (1000 if unit.startswith("ms") else 0.001 if unit.startswith("ns") else 1))
for k, v in sorted(d.items()):
    v.sort()
    print("%-22s n %4d  median %8.1f us  min %8.1f  max %8.1f" % (k, len(v), v[len(v)//2], v[0], v[-1]))
PY
	add "$(cat "$OUT/ncu-summary.txt")"
fi

# 5. bench --profile, the argmax over many blocks against one block
for b in default 1; do
	[ $(lim 100) -gt 25 ] || break
	t0=$(date +%s)
	if [ $b = 1 ]; then e="LMTERM_SAMPLE_BLOCKS=1"; else e=""; fi
	env $e timeout $(lim 40) ./lmterm bench configs/internlm2_5-7b-chat.json --dummy --dtype float16 --backend cuda --profile > "$OUT/bench-$b.log" 2>&1
	add "5. bench --profile (argmax blocks $b): rc $?, $(grep -i 'decode' "$OUT/bench-$b.log" | head -2 | tr '\n' ' '); $(grep 'lm_head' "$OUT/bench-$b.log"), $(( $(date +%s) - t0 )) s"
done

# 6. memcheck on a few sample cases
t0=$(date +%s)
if command -v compute-sanitizer > /dev/null && [ $(lim 100) -gt 15 ]; then
	LMTERM_TEST_SEED=$seed LMTERM_TEST_ONLY=sample-quick timeout $(lim 25) compute-sanitizer --tool memcheck ./test_backend_ops > "$OUT/memcheck.log" 2>&1
	add "6. memcheck (sample-quick): rc $?, $(grep -c '^ok' "$OUT/memcheck.log") ok, $(tail -1 "$OUT/memcheck.log"), $(( $(date +%s) - t0 )) s"
fi

grep -h 'FAIL' "$OUT/sample-ops-radix.log" "$OUT/all-ops.log" | head -20 > "$OUT/fails.txt"
echo "$summary" > "$OUT/summary.txt"
tgz=$(mktemp /tmp/sample-round.XXXXXX)
tar czf "$tgz" -C "$OUT" . && mv "$tgz" "$OUT/sample-round.tgz" &&
	(cd "$OUT" && find . -type f ! -name sample-round.tgz ! -name summary.txt ! -name fails.txt -delete)
cat "$OUT/gpu.txt" 2>/dev/null
echo "---- first failures ----"
cat "$OUT/fails.txt"
echo "---- summary ----"
echo "$summary"
