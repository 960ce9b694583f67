// sample.cu: choosing the next token on the device, so that only the token (4 bytes) comes back.
//  - argmax_kernel: greedy, the index of the largest logit (first on ties, as torch.argmax; NaN never wins),
//    one block of 1024 threads (strided scan, warp and block reductions). argmax_multi_kernel: the same
//    over one block per 2048 logits, the last block to finish reducing the blocks' bests (the default).
//  - sample_kernel: src/sampler.c's sampling (repetition penalty, temperature, top-k, top-p, min-p, the
//    draw with the host's uniform); its design comment is below.
#define PDL_FAMILY "argmax" // LMTERM_PDL=argmax,... (cuda/pdl.cuh): the argmax kernels only
#include "config.h"
#include "kernels.h"
#include "ops_common.cuh"

#include <float.h>

static __device__ __forceinline__ bool better(float v, int i, float bv, int bi)
{
	return v > bv || (v == bv && i < bi);
}

// (value, index) pairs: keep the better, first index on ties, index n = none
static __device__ __forceinline__ void best_of(float &bv, int &bi, float ov, int oi, int n)
{
	if (oi != n && (bi == n || better(ov, oi, bv, bi))) {
		bv = ov;
		bi = oi;
	}
}
static __device__ __forceinline__ void warp_best(float &bv, int &bi, int n)
{
	for (int o = 16; o > 0; o >>= 1) {
		float ov = __shfl_xor_sync(0xffffffffu, bv, o);
		int oi = __shfl_xor_sync(0xffffffffu, bi, o);
		best_of(bv, bi, ov, oi, n);
	}
}

// The best pair of the block, left in every lane of warp 0 (the other warps keep their warp's best). Every
// thread of the block calls it; rv and ri are shared, a slot per warp, and may be written again after the
// block's next barrier.
static __device__ __forceinline__ void block_best(float &bv, int &bi, int n, float *rv, int *ri)
{
	const int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
	warp_best(bv, bi, n);
	if (lane == 0) {
		rv[wid] = bv;
		ri[wid] = bi;
	}
	__syncthreads();
	if (wid == 0) {
		bv = lane < nw ? rv[lane] : -FLT_MAX;
		bi = lane < nw ? ri[lane] : n; // index n: none, ignored by best_of
		warp_best(bv, bi, n);
	}
}

// The next position's step state, by the whole block once the id is written (k_step_adv): cos and sin of
// pos0 * inv_freq as set_step forms them (the float product, then double sin and cos rounded to float), the
// chain flag (the next step embeds this id) and the next slot of the host's ids. Every kernel of this step
// has completed (under PDL each kernel waits for the one before), so none reads the state while it changes.
static __device__ void step_advance(const k_step_adv a)
{
	__syncthreads(); // the slot was read for this step's id
	const int p = a.state[0] + 1;
	for (int i = threadIdx.x; i < a.nf; i += blockDim.x) {
		const double ang = (double)__fmul_rn((float)p, a.inv[i]);
		a.inv[a.nf + i] = (float)cos(ang);
		a.inv[2 * a.nf + i] = (float)sin(ang);
	}
	__syncthreads(); // every thread has read pos0
	if (threadIdx.x == 0) {
		a.state[0] = p;
		a.state[1] = 1;
		a.state[2] = (a.state[2] + 1) % a.slots;
	}
}

__global__ void __launch_bounds__(1024) argmax_kernel(int32_t *out, int32_t *out2, const int32_t *slot, k_step_adv adv,
						      const float *v, int n)
{
	pdl_wait_trigger();
	float bv = -FLT_MAX;
	int bi = n; // "none yet"; loses every comparison with a real index on ties
	for (int i = threadIdx.x; i < n; i += blockDim.x) {
		float x = v[i];
		if (x == x && (better(x, i, bv, bi) || bi == n)) {
			bv = x;
			bi = i;
		}
	}
	__shared__ float sv[32];
	__shared__ int si[32];
	block_best(bv, bi, n, sv, si);
	if (threadIdx.x == 0) {
		*out = bi == n ? 0 : bi;
		if (out2) out2[slot ? *slot : 0] = bi == n ? 0 : bi;
	}
	if (adv.state) step_advance(adv);
}

extern "C" int k_argmax(int32_t *out, int32_t *out2, const int32_t *slot, k_step_adv adv, const float *v, int n,
			cudaStream_t s)
{
	if (n <= 0) return lm_err("argmax: empty vector");
	klaunch(argmax_kernel, 1, 1024, 0, s, out, out2, slot, adv, v, n);
	LAUNCHED("argmax");
}

// ---------------------------------------------------------------------------------------------------------
// Sampling on the device, with src/sampler.c's semantics: repetition penalty over the history ids (once per
// id), temperature, top-k, top-p, min-p, then a draw with the host's uniform u. The host sampler sorts the
// candidates (s = logit / T, ties by lower id) and walks that order; here nothing is sorted. The order is
// a 64-bit key (the float s made order-preserving as an unsigned, then the id ascending), and every cut the
// host makes at a position of that order (the k-th candidate, the first prefix whose mass reaches top_p,
// the first prefix whose mass passes u * mass) is found by a radix search: a pass over the vocabulary
// histograms one 8-bit digit of the key (counts, and masses exp(s - top) in double) among the candidates
// that match the digits found so far; the bins, scanned in the order's direction, say which digit holds the
// cut, and the search descends. A bin of one candidate ends the search early; a tie of equal s is resolved
// by the id (the j-th smallest id of the tie, the same radix search over the id's digits).
//
// A search starts below the key digits all its candidates share (they lie between the cut before and the
// top), so a top-p search after top-k 40 often needs one or two passes. When top-k (or else top-p) leaves
// at most 2048 candidates, they are gathered instead and block 0 sorts them and finishes with the host's
// own loops, in its order and arithmetic (the usual settings take this way: a few passes for top-k, the
// first of them also finding the max).
//
// One cooperative kernel of one block per multiprocessor does it all, the blocks meeting at a grid barrier
// after each pass; every block then reads the same global histogram and takes the same decision, so no
// block waits for a decision made elsewhere. Each thread keeps its logits (up to 4) in registers across the
// passes (in L2 where the grid is smaller: 0.6 MB for 152k). In a
// pass, the lanes of a warp that fall in one bin add up before one shared-memory atomic (the first digits
// put nearly every candidate in one or two bins). Sums differ from the host's only in their order (double
// precision), so the token differs from the host sampler's only where u * mass or top_p lands within
// rounding of a boundary.
#include <cooperative_groups.h>
namespace cg = cooperative_groups;

enum { SMP_THREADS = 512, SMP_MAX_BLOCKS = 1024 };
enum { PH_TOPK, PH_TOPP, PH_DRAW, PH_SMALL };
// at most this many candidates left after top-k or top-p: block 0 sorts them and finishes as the host does
enum { SMP_FAST = 2048 };
enum { SMP_CACHE = 4 }; // logits per thread kept in registers

struct smp_bin {
	unsigned cnt;
	int anyid;
	double mass;
};

struct smp_ws {
	smp_bin h[3][256];
	float pmax[SMP_MAX_BLOCKS];
	int pidx[SMP_MAX_BLOCKS];
	unsigned n_small;
	unsigned ticket; // argmax_multi_kernel's blocks done (0 between calls)
	unsigned h0;     // the histogram the next call's first pass adds into
	unsigned long long small[SMP_FAST];
};

extern "C" size_t k_sample_ws_bytes(void) { return sizeof(smp_ws); }

static __device__ __forceinline__ uint32_t fkey(float s)
{
	uint32_t b = __float_as_uint(s == 0.0f ? 0.0f : s); // -0 == +0 for the host's comparisons: one key
	return (b & 0x80000000u) ? ~b : b | 0x80000000u;
}
static __device__ __forceinline__ float keyf(uint32_t k)
{
	return __uint_as_float((k & 0x80000000u) ? k & 0x7fffffffu : ~k);
}

// the decisions every block takes identically (kept in shared memory)
struct smp_state {
	float mx, floor_l, top;
	int amax;
	uint32_t bk_key, bp_key; // bounds: candidates before or at (key, id) in the order are kept
	int bk_id, bp_id;
	int phase;
	bool id_level, take_last, done;
	int shift;        // digit position (key or id)
	uint32_t prefix;  // key digits found above shift
	uint32_t K;       // the tie's key at the id level
	uint32_t iprefix; // id digits found above shift
	double r;         // what is left of the target (count or mass)
	int result;
	int n_bk;         // candidates within the top-k bound when known, else -1
	unsigned cnt_acc; // candidates before the current key prefix (top-p search)
	int n_bp;         // candidates within the top-p bound when known, else -1
	double S;         // top-p: the total mass of the top-k set (the host's softmax denominator)
	bool small_p;     // the sorted finish gathers the top-p set (S given) instead of the top-k set
};

static __device__ __forceinline__ bool in_bound(uint32_t key, int id, uint32_t bkey, int bid)
{
	return key > bkey || (key == bkey && id <= bid);
}

template <bool COOP> static __device__ __forceinline__ void grid_barrier()
{
	if (COOP) cg::this_grid().sync();
	else __syncthreads();
}

// The 256 bins of a pass, read once by warp 0 (8 per lane, in the scan order: from 255 down at the key level,
// larger s first; from 0 up at the id level, smaller id first). first: the target is r_mul * total + r_add
// (the phase's first pass). Returns the first bin whose cumulative count or mass reaches the target
// (passes it, when strict), with *before = what the bins scanned before it hold; -1 when none does. Also
// the total count, and the last non-empty bin in the scan order.
struct scan_out {
	int bin, last_nonempty;
	double before, r, total;
	unsigned total_cnt, before_cnt; // candidates in all bins, in the bins before the crossing one
};
static __device__ scan_out scan_bins(const smp_bin *H, bool descending, bool mass, bool strict, bool first,
				     double r_mul, double r_add, double r)
{
	const int lane = threadIdx.x & 31;
	double v[8];
	unsigned c[8];
	double sum = 0;
	unsigned csum = 0;
#pragma unroll
	for (int j = 0; j < 8; j++) {
		int pos = lane * 8 + j;
		int b = descending ? 255 - pos : pos;
		c[j] = __ldcg(&H[b].cnt);
		v[j] = mass ? __ldcg(&H[b].mass) : (double)c[j];
	}
#pragma unroll
	for (int j = 0; j < 8; j++) {
		sum += v[j];
		csum += c[j];
	}
	double incl = sum;
	unsigned cincl = csum;
	for (int o = 1; o < 32; o <<= 1) {
		double t = __shfl_up_sync(0xffffffffu, incl, o);
		unsigned ct = __shfl_up_sync(0xffffffffu, cincl, o);
		if (lane >= o) {
			incl += t;
			cincl += ct;
		}
	}
	scan_out o;
	o.total = __shfl_sync(0xffffffffu, incl, 31);
	o.total_cnt = __shfl_sync(0xffffffffu, cincl, 31);
	if (first) r = r_mul * o.total + r_add;
	o.r = r;
	double acc = incl - sum;
	unsigned cacc = cincl - csum, hit_before_cnt = 0;
	int hit = -1, lastj = -1;
	double hit_before = 0;
#pragma unroll
	for (int j = 0; j < 8; j++) {
		if (c[j]) lastj = j;
		if (hit < 0 && c[j] && (strict ? acc + v[j] > r : acc + v[j] >= r)) {
			hit = j;
			hit_before = acc;
			hit_before_cnt = cacc;
		}
		acc += v[j];
		cacc += c[j];
	}
	unsigned any = __ballot_sync(0xffffffffu, hit >= 0);
	unsigned ne = __ballot_sync(0xffffffffu, lastj >= 0);
	int lastlane = ne ? 31 - __clz(ne) : 0;
	int lj = __shfl_sync(0xffffffffu, lastj, lastlane);
	int lpos = lastlane * 8 + lj;
	o.last_nonempty = ne ? (descending ? 255 - lpos : lpos) : -1;
	if (!any) {
		o.bin = -1;
		o.before = o.total;
		o.before_cnt = o.total_cnt;
		return o;
	}
	int src = __ffs(any) - 1;
	int hj = __shfl_sync(0xffffffffu, hit, src);
	o.before = __shfl_sync(0xffffffffu, hit_before, src);
	o.before_cnt = __shfl_sync(0xffffffffu, hit_before_cnt, src);
	int pos = src * 8 + hj;
	o.bin = descending ? 255 - pos : pos;
	return o;
}

// A phase's search starts below the key digits that all its candidates share: they lie between lo and hi.
static __device__ void search_start(smp_state *st, uint32_t lo, uint32_t hi)
{
	int same = __clz(lo ^ hi); // 32 when lo == hi
	int digits = min(same / 8, 3);
	st->shift = 24 - 8 * digits;
	st->prefix = digits ? hi & ~((1u << (st->shift + 8)) - 1u) : 0;
	st->id_level = false;
	st->r = -1; // the first pass sets the target from its total
	st->cnt_acc = 0;
}

// Few candidates left within the top-k bound: they are gathered (all blocks), then block 0 sorts them by
// (s desc, id asc) and runs src/sampler.c's own loops on them, in its order and its double arithmetic.
template <bool COOP>
static __device__ void small_finish(const k_sample_params &p, const float *L, int V, smp_ws *ws, smp_state *st)
{
	__shared__ unsigned long long sk[SMP_FAST]; // key << 32 | ~id: descending = the host's order
	__shared__ double pr[SMP_FAST];
	__shared__ double sum_s;
	const int tid = threadIdx.x;
	const int gtid = blockIdx.x * blockDim.x + tid, gstride = gridDim.x * blockDim.x;
	const float floor_l = st->floor_l, inv_t = p.inv_t;
	const uint32_t bk_key = st->bk_key, bp_key = st->bp_key;
	const int bk_id = st->bk_id, bp_id = st->bp_id;
	const bool small_p = st->small_p;
	for (int i = gtid; i < V; i += gstride) {
		float x = __ldcg(&L[i]);
		if (!(x >= floor_l)) continue;
		uint32_t key = fkey(__fmul_rn(x, inv_t));
		if (!in_bound(key, i, bk_key, bk_id)) continue;
		if (small_p && !in_bound(key, i, bp_key, bp_id)) continue;
		unsigned at = atomicAdd(&ws->n_small, 1u);
		if (at < SMP_FAST) __stcg(&ws->small[at], (unsigned long long)key << 32 | (uint32_t)~(uint32_t)i);
	}
	grid_barrier<COOP>();
	if (blockIdx.x) return;
	int n = (int)min(__ldcg(&ws->n_small), (unsigned)SMP_FAST);
	int np = 1;
	while (np < n) np <<= 1;
	for (int i = tid; i < np; i += blockDim.x) sk[i] = i < n ? __ldcg(&ws->small[i]) : 0ull;
	__syncthreads();
	// bitonic sort, descending
	for (int k = 2; k <= np; k <<= 1)
		for (int j = k >> 1; j > 0; j >>= 1) {
			for (int i = tid; i < np; i += blockDim.x) {
				int l = i ^ j;
				if (l > i) {
					unsigned long long a = sk[i], b = sk[l];
					bool desc = (i & k) == 0;
					if (desc ? a < b : a > b) {
						sk[i] = b;
						sk[l] = a;
					}
				}
			}
			__syncthreads();
		}
	const double top = n ? (double)keyf((uint32_t)(sk[0] >> 32)) : 0;
	for (int i = tid; i < n; i += blockDim.x) pr[i] = exp((double)keyf((uint32_t)(sk[i] >> 32)) - top);
	__syncthreads();
	if (tid == 0) {
		double sum = 0;
		for (int i = 0; i < n; i++) sum += pr[i];
		sum_s = small_p ? st->S : sum; // gathered the top-p set: the top-k set's mass, from the search
	}
	__syncthreads();
	for (int i = tid; i < n; i += blockDim.x) pr[i] /= sum_s;
	__syncthreads();
	if (tid == 0) {
		if (n == 0) {
			st->result = st->amax;
		} else {
			if (p.top_p > 0 && p.top_p < 1) {
				double acc = 0;
				int keep = n;
				for (int i = 0; i < n; i++) {
					acc += pr[i];
					if (acc >= p.top_p) {
						keep = i + 1;
						break;
					}
				}
				n = keep;
			}
			if (p.min_p > 0) {
				int keep = 1;
				while (keep < n && pr[keep] >= p.min_p * pr[0]) keep++;
				n = keep;
			}
			double mass = 0;
			for (int i = 0; i < n; i++) mass += pr[i];
			double u = p.u * mass, acc = 0;
			uint32_t pick = (uint32_t)sk[n - 1];
			for (int i = 0; i < n; i++) {
				acc += pr[i];
				if (u < acc) {
					pick = (uint32_t)sk[i];
					break;
				}
			}
			st->result = (int)~pick;
		}
		st->done = true;
	}
	__syncthreads();
}

template <bool COOP>
__global__ void __launch_bounds__(SMP_THREADS) sample_kernel(int32_t *out, float *L, int V, k_sample_params p,
							   const int32_t *hist, int n_hist, uint32_t *seen,
							   uint32_t stamp, smp_ws *ws)
{
	__shared__ smp_bin sh[256];
	__shared__ smp_state st;
	__shared__ float rv[SMP_THREADS / 32];
	__shared__ int ri[SMP_THREADS / 32];
	__shared__ double wbuf[SMP_THREADS];
	const int tid = threadIdx.x, lane = tid & 31, wid = tid >> 5;
	const int gtid = blockIdx.x * blockDim.x + tid, gstride = gridDim.x * blockDim.x;
	// The three histograms rotate: pass t adds into h[(h0 + t) % 3], which every earlier call or pass left
	// empty; after the barrier block 0 empties the one two passes ahead. A call ends with only its last
	// pass's histogram not empty, and tells the next call to start after it (ws->h0): so no call needs a
	// barrier of its own before its first pass.
	const unsigned h0 = __ldcg(&ws->h0);
	if (blockIdx.x == 0 && tid == 0) ws->n_small = 0; // read after at least one barrier
	if (tid == 0) {
		st.phase = p.top_k > 0 ? PH_TOPK : (p.top_p > 0 && p.top_p < 1) ? PH_TOPP : PH_DRAW;
		st.done = false;
		st.take_last = false;
		st.n_bk = -1;
		st.n_bp = -1;
		st.small_p = false;
		st.bk_key = st.bp_key = 0;
		st.bk_id = st.bp_id = INT_MAX;
		st.shift = 24; // top-k's first pass, with the max: every non-NaN logit (see below), all 32 key bits
		st.prefix = 0;
		st.id_level = false;
		st.r = -1;
		st.floor_l = -INFINITY;
	}
	// the repetition penalty, once per id (the stamp marks the ids done)
	if (p.rep != 1.0f && p.rep > 0 && n_hist > 0) {
		for (int i = gtid; i < n_hist; i += gstride) {
			int id = hist[i];
			if (id < 0 || id >= V || atomicExch(&seen[id], stamp) == stamp) continue;
			float l = __ldcg(&L[id]);
			__stcg(&L[id], l > 0 ? __fdiv_rn(l, p.rep) : __fmul_rn(l, p.rep));
		}
		grid_barrier<COOP>();
	}
	__syncthreads();
	const int id_top_shift = V > (1 << 24) ? 24 : V > (1 << 16) ? 16 : V > 256 ? 8 : 0;

	// a thread's logits stay in registers across the passes where the grid covers the vocabulary in
	// SMP_CACHE strides (a pass then reads no memory but the histograms)
	float xs[SMP_CACHE];
	const bool cached = V <= SMP_CACHE * gstride;
	int t = 0;
	for (;; t++) {
		if (st.done) break;
		if (st.phase == PH_SMALL) {
			small_finish<COOP>(p, L, V, ws, &st);
			if (blockIdx.x) return;
			break;
		}
		smp_bin *H = ws->h[(h0 + t) % 3];
		const bool first_pass = t == 0;
		// the first pass also finds the largest logit (first index on ties; NaN never wins) per block
		if (first_pass) {
			float bv = -INFINITY;
			int bi = V;
			auto consider = [&](int i, float x) {
				if (x == x && (bi == V || x > bv)) {
					bv = x;
					bi = i;
				}
			};
			if (cached) {
#pragma unroll
				for (int k = 0; k < SMP_CACHE; k++) {
					const int i = gtid + k * gstride;
					xs[k] = i < V ? __ldcg(&L[i]) : NAN;
					consider(i, xs[k]);
				}
			} else {
				for (int i = gtid; i < V; i += gstride) consider(i, __ldcg(&L[i]));
			}
			block_best(bv, bi, V, rv, ri);
			if (tid == 0) {
				__stcg(&ws->pmax[blockIdx.x], bv);
				__stcg(&ws->pidx[blockIdx.x], bi);
			}
		}
		// one pass: histogram of the current digit among the candidates of the current search. Top-k
		// counts every non-NaN logit, not only those within 40 T of the max (unknown in the first pass):
		// its k-th is the same where more than k are within, and lies below them all where fewer are,
		// which keeps them all, as the host does.
		const bool do_hist = !first_pass || (st.phase == PH_TOPK && !p.greedy);
		for (int i = tid; i < 256; i += blockDim.x) {
			sh[i].cnt = 0;
			sh[i].mass = 0;
		}
		__syncthreads();
		const int phase = st.phase, shift = st.shift;
		const bool id_level = st.id_level, mass = phase != PH_TOPK && !id_level;
		const bool need_w = mass || (phase == PH_DRAW && p.min_p > 0);
		const float floor_l = phase == PH_TOPK ? -INFINITY : st.floor_l, inv_t = p.inv_t;
		const double top = st.top;
		const uint32_t prefix = st.prefix, K = st.K, iprefix = st.iprefix;
		const uint32_t bk_key = st.bk_key, bp_key = st.bp_key;
		const int bk_id = st.bk_id, bp_id = st.bp_id;
		const double min_w = p.min_p >= 1.0f ? 1.0 : (double)p.min_p;
		auto element = [&](const int i, const float x) {
			int bin = -1;
			double w = 0;
			if (x >= floor_l) { // NaN fails
				float s = __fmul_rn(x, inv_t);
				uint32_t key = fkey(s);
				bool in = true;
				if (phase >= PH_TOPP && !in_bound(key, i, bk_key, bk_id)) in = false;
				if (phase == PH_DRAW && !in_bound(key, i, bp_key, bp_id)) in = false;
				if (in && !id_level) {
					if (shift < 24 && (key >> (shift + 8)) != (prefix >> (shift + 8))) in = false;
					bin = (key >> shift) & 255;
				} else if (in) {
					if (key != K ||
					    (shift < id_top_shift && ((uint32_t)i >> (shift + 8)) != (iprefix >> (shift + 8))))
						in = false;
					bin = (i >> shift) & 255;
				}
				if (in && need_w) {
					w = exp((double)s - top);
					if (phase == PH_DRAW && p.min_p > 0 && !(w >= min_w)) in = false;
				}
				if (!in) bin = -1;
			}
			if (!__any_sync(0xffffffffu, bin >= 0)) return;
			const unsigned peers = __match_any_sync(0xffffffffu, bin);
			if (mass) wbuf[tid] = w;
			__syncwarp();
			if (bin >= 0 && lane == __ffs(peers) - 1) {
				atomicAdd(&sh[bin].cnt, (unsigned)__popc(peers));
				if (mass) {
					double sum = 0;
					for (unsigned m = peers; m; m &= m - 1) sum += wbuf[(tid & ~31) + __ffs(m) - 1];
					atomicAdd(&sh[bin].mass, sum);
				}
				sh[bin].anyid = i;
			}
			__syncwarp();
		};
		// whole warps step together (the lanes of a warp that fall in one bin add up before one atomic)
		const int wbase = blockIdx.x * blockDim.x + wid * 32;
		if (do_hist && cached) {
#pragma unroll
			for (int k = 0; k < SMP_CACHE; k++)
				if (wbase + k * gstride < V) element(wbase + k * gstride + lane, wbase + k * gstride + lane < V ? xs[k] : NAN);
		} else if (do_hist) {
			for (int base = wbase; base < V; base += gstride) element(base + lane, base + lane < V ? __ldcg(&L[base + lane]) : NAN);
		}
		__syncthreads();
		for (int i = tid; do_hist && i < 256; i += blockDim.x)
			if (sh[i].cnt) {
				atomicAdd(&H[i].cnt, sh[i].cnt);
				if (mass) atomicAdd(&H[i].mass, sh[i].mass);
				__stcg(&H[i].anyid, sh[i].anyid);
			}
		grid_barrier<COOP>();
		if (blockIdx.x == 0) { // the histogram two passes ahead, read by everyone before this barrier
			smp_bin *Z = ws->h[(h0 + t + 2) % 3];
			for (int i = tid; i < 256; i += blockDim.x) {
				Z[i].cnt = 0;
				Z[i].mass = 0;
			}
		}
		if (first_pass && wid == 0) { // every block: the best of the blocks' bests, a lane per few blocks
			float bv = -INFINITY;
			int bi = V;
			for (int b = lane; b < (int)gridDim.x; b += 32) best_of(bv, bi, __ldcg(&ws->pmax[b]), __ldcg(&ws->pidx[b]), V);
			warp_best(bv, bi, V);
			if (lane == 0) {
				st.mx = bv;
				st.amax = bi == V ? 0 : bi;
				st.result = st.amax;
				st.floor_l = __fsub_rn(bv, __fmul_rn(40.0f, p.temperature));
				st.top = __fmul_rn(bv, p.inv_t);
				if (bi == V || p.greedy) st.done = true;
				else if (st.phase != PH_TOPK) search_start(&st, fkey(__fmul_rn(st.floor_l, p.inv_t)), fkey(st.top));
			}
			__syncwarp();
		}
		if (!do_hist) { // a first pass for the max only
			__syncthreads();
			continue;
		}
		// the decision, by warp 0 of every block
		if (wid == 0) {
			const bool first = !id_level && st.r == -1;
			double r_mul = 0, r_add = 0;
			if (phase == PH_TOPK) r_add = (double)p.top_k;
			else if (phase == PH_TOPP) r_mul = (double)p.top_p;
			else if (!(p.min_p >= 1.0f)) r_mul = p.u; // min_p >= 1: the first candidate (target 0)
			const bool take_last = st.take_last;
			scan_out so = scan_bins(H, !id_level, mass, phase == PH_DRAW && !id_level, first, r_mul, r_add,
						take_last ? INFINITY : st.r);
			double r = so.r;
			if (first && phase == PH_TOPK && (double)so.total_cnt <= r) r = -1; // k >= candidates: no cut
			if (first && so.total_cnt == 0) r = -2;                            // none (cannot happen)
			int b = r >= 0 ? so.bin : -1;
			double before = so.before;
			bool tl = take_last;
			if (r >= 0 && b < 0 && phase == PH_DRAW) { // u * mass at or past the end (rounding): the last one
				tl = true;
				b = so.last_nonempty;
				before = 0;
			}
			if (lane == 0) {
				st.take_last = tl;
				// outcome: 0 continue, 1 the cut is a bound (key, id), 2 the token, 3 no cut (phase skipped)
				int outcome = 0;
				uint32_t okey = 0;
				int oid = INT_MAX;
				if (r == -2) {
					st.done = true;
					st.result = 0;
				} else if (r < 0 || b < 0) {
					outcome = 3;
				} else {
					const smp_bin *B = &H[b];
					unsigned cnt = __ldcg(&B->cnt);
					double rem = r - before;
					if (first && phase == PH_TOPP) st.S = so.total;
					const unsigned cnt_before = st.cnt_acc + (id_level ? 0u : so.before_cnt);
					if (!id_level) {
						uint32_t key_lo = prefix | ((uint32_t)b << shift);
						bool whole = cnt == 1 || (phase == PH_TOPK && before + (double)cnt == r);
						if (whole) {
							outcome = phase == PH_DRAW ? 2 : 1;
							okey = key_lo;
							oid = phase == PH_DRAW ? __ldcg(&B->anyid) : INT_MAX;
							if (phase == PH_TOPP) st.n_bp = (int)(cnt_before + cnt);
						} else if (shift > 0) {
							st.prefix = key_lo;
							st.shift = shift - 8;
							st.r = rem;
							st.cnt_acc = cnt_before;
						} else { // a tie of cnt candidates of key key_lo: the j-th id of it
							double w = exp((double)keyf(key_lo) - top);
							double j;
							if (tl) j = cnt;
							else if (phase == PH_TOPK) j = rem;
							else if (phase == PH_TOPP) j = ceil(rem / w);
							else j = floor(rem / w) + 1;
							if (!(j >= 1)) j = 1;
							if (j > cnt) j = cnt;
							st.cnt_acc = cnt_before;
							if (phase == PH_TOPP) st.n_bp = (int)(cnt_before + (unsigned)j);
							if (j == cnt && phase != PH_DRAW) {
								outcome = 1;
								okey = key_lo;
							} else {
								st.K = key_lo;
								st.id_level = true;
								st.shift = id_top_shift;
								st.iprefix = 0;
								st.r = j;
							}
						}
					} else {
						uint32_t id_lo = st.iprefix | ((uint32_t)b << shift);
						if (cnt == 1 || shift == 0) {
							outcome = phase == PH_DRAW ? 2 : 1;
							okey = K;
							oid = cnt == 1 ? __ldcg(&B->anyid) : (int)id_lo;
						} else {
							st.iprefix = id_lo;
							st.shift = shift - 8;
							st.r = rem;
						}
					}
				}
				if (outcome == 2) {
					st.done = true;
					st.result = oid;
				} else if (outcome == 1 || outcome == 3) {
					if (outcome == 1) {
						if (phase == PH_TOPK) {
							st.bk_key = okey;
							st.bk_id = oid;
						} else {
							st.bp_key = okey;
							st.bp_id = oid;
						}
					}
					st.phase = phase == PH_TOPK && p.top_p > 0 && p.top_p < 1 ? PH_TOPP : PH_DRAW;
					if (phase == PH_DRAW) { // no candidate at all to draw from (cannot happen): the best
						st.done = true;
						st.result = st.amax;
					}
					// the next search starts below the digits its candidates share: keys in [lo, top]
					uint32_t lo = max(fkey(__fmul_rn(st.floor_l, p.inv_t)), st.bk_key);
					if (st.phase == PH_DRAW) lo = max(lo, st.bp_key);
					search_start(&st, lo, fkey(st.top));
				}
				// how many candidates are within the top-k bound, where this pass tells
				if (phase == PH_TOPK && outcome == 1) st.n_bk = p.top_k;
				if (phase == PH_TOPK && outcome == 3 && first) st.n_bk = (int)so.total_cnt;
				if (first && (phase == PH_TOPP || (phase == PH_DRAW && !(p.top_p > 0 && p.top_p < 1) && !(p.min_p > 0))))
					st.n_bk = (int)so.total_cnt;
				if (!st.done && st.n_bk >= 1 && st.n_bk <= SMP_FAST && p.sort_few) st.phase = PH_SMALL;
				// top-p left few: they are gathered and finished as the host does, with the top-k set's
				// total mass as the denominator (the host recomputes the cut over them)
				if (!st.done && phase == PH_TOPP && outcome == 1 && st.n_bp >= 1 && st.n_bp <= SMP_FAST &&
				    p.sort_few) {
					st.phase = PH_SMALL;
					st.small_p = true;
				}
			}
		}
		__syncthreads();
	}
	if (blockIdx.x == 0 && tid == 0) {
		*out = st.result;
		ws->h0 = (h0 + t) % 3; // t passes ran: the histograms after the last are empty
	}
}

extern "C" int k_sample(int32_t *out, float *logits, int n, const k_sample_params *p, const int32_t *hist,
			int n_hist, uint32_t *seen, uint32_t stamp, void *ws, int blocks, cudaStream_t s)
{
	if (n <= 0) return lm_err("sample: empty vector");
	if (blocks <= 1) {
		sample_kernel<false><<<1, SMP_THREADS, 0, s>>>(out, logits, n, *p, hist, n_hist, seen, stamp, (smp_ws *)ws);
		LAUNCHED("sample");
	}
	if (blocks > SMP_MAX_BLOCKS) blocks = SMP_MAX_BLOCKS;
	k_sample_params pv = *p;
	smp_ws *w = (smp_ws *)ws;
	void *args[] = { &out, &logits, &n, &pv, &hist, &n_hist, &seen, &stamp, &w };
	cudaError_t e = cudaLaunchCooperativeKernel((const void *)sample_kernel<true>, dim3(blocks), dim3(SMP_THREADS),
						    args, 0, s);
	if (e != cudaSuccess) return lm_err("sample: %s", cudaGetErrorString(e));
	LAUNCHED("sample");
}

// blocks a cooperative launch of the sampler can have on this device (all resident at once)
extern "C" int k_sample_max_blocks(void)
{
	int dev, sms, per = 0;
	if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess)
		return 1;
	int coop = 0;
	cudaDeviceGetAttribute(&coop, cudaDevAttrCooperativeLaunch, dev);
	if (!coop) return 1;
	if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per, sample_kernel<true>, SMP_THREADS, 0) != cudaSuccess || per < 1)
		return 1;
	return MIN(sms, SMP_MAX_BLOCKS);
}

// Greedy over many blocks: each block the best of its slice, the last block to finish (a ticket) the best of
// those; it resets the ticket for the next call. One pass over the logits instead of one block's strided
// walk.
enum { AMX_THREADS = 256, AMX_PER_THREAD = 8 };

__global__ void __launch_bounds__(AMX_THREADS) argmax_multi_kernel(int32_t *out, int32_t *out2, const int32_t *slot,
										    k_step_adv adv, const float *v, int n,
										    smp_ws *ws)
{
	TRACE_SCOPE;
	pdl_wait_trigger();
	__shared__ float rv[AMX_THREADS / 32];
	__shared__ int ri[AMX_THREADS / 32];
	__shared__ bool last;
	const int tid = threadIdx.x;
	float bv = -FLT_MAX;
	int bi = n;
	const int base = blockIdx.x * AMX_THREADS * AMX_PER_THREAD + tid;
#pragma unroll
	for (int j = 0; j < AMX_PER_THREAD; j++) {
		int i = base + j * AMX_THREADS;
		float x = i < n ? v[i] : NAN;
		if (x == x && (bi == n || x > bv)) {
			bv = x;
			bi = i;
		}
	}
	block_best(bv, bi, n, rv, ri);
	if (tid == 0) {
		ws->pmax[blockIdx.x] = bv;
		ws->pidx[blockIdx.x] = bi;
		__threadfence();
		last = atomicAdd(&ws->ticket, 1u) == gridDim.x - 1;
	}
	__syncthreads();
	if (!last) return;
	__threadfence();
	bv = -FLT_MAX;
	bi = n;
	for (int b = tid; b < (int)gridDim.x; b += AMX_THREADS) {
		best_of(bv, bi, __ldcg(&ws->pmax[b]), __ldcg(&ws->pidx[b]), n);
	}
	block_best(bv, bi, n, rv, ri); // rv, ri: free again since the barrier after the ticket
	if (tid == 0) {
		*out = bi == n ? 0 : bi;
		if (out2) out2[slot ? *slot : 0] = bi == n ? 0 : bi;
		ws->ticket = 0;
	}
	if (adv.state) step_advance(adv);
}

extern "C" int k_argmax_multi(int32_t *out, int32_t *out2, const int32_t *slot, k_step_adv adv, const float *v, int n,
			      void *ws, cudaStream_t s)
{
	if (n <= 0) return lm_err("argmax: empty vector");
	const int per_block = AMX_THREADS * AMX_PER_THREAD;
	const int blocks = (n + per_block - 1) / per_block;
	if (blocks > SMP_MAX_BLOCKS) return k_argmax(out, out2, slot, adv, v, n, s);
	klaunch(argmax_multi_kernel, blocks, AMX_THREADS, 0, s, out, out2, slot, adv, v, n, (smp_ws *)ws);
	LAUNCHED("argmax");
}
