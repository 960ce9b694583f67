// attention.cu: paged causal attention over the KV cache, for prefill and decode, fp16/bf16/int8/int4 caches.
//
// Both kernels work on one kv head per CTA and flatten its GQA group into the rows of the matrix product:
// row r = token (r / group), q head (kvh * group + r % group). So every K/V block is read once per group,
// and a decode step with group 4..8 fills a tensor-core tile of 16 rows instead of wasting 15 of them.
//
//   prefill: CTA = 4 warps x 16 rows = 64 rows, K/V tiles of 64 tokens through a 2-stage cp.async pipeline
//            (all warps share a tile), S = Q K^T and O += P V with mma.sync m16n8k16, online softmax in
//            registers (flash-attention 2), causal mask per row, one pass over the cache.
//   decode:  flash-decoding. CTA = (split, kv head, 16-row tile); the CTA's share of the context is cut
//            into 16-token sub-tiles that its 4 warps take in turn, each warp with its own 3-stage cp.async
//            ring and its own softmax state; the warps merge in shared memory, and the last split of a
//            (kv head, row tile) to finish combines the splits (a self-resetting ticket counter; a
//            separate combine kernel only when the ticket pool is too small). The split length is computed
//            on the device from pos0, so a graph captured once is right for every context up to max_ctx.
//
// Quantized caches (policies 8/4) travel to shared memory as they are stored (a quarter or an eighth of the
// bytes), then each thread dequantizes 16-byte chunks in registers (byte_perm into fp16 magic numbers,
// one HFMA2 with the token's scale and zero per pair) into an fp16 tile that ldmatrix feeds to the tensor
// cores. Policy 0 tiles go straight from the cache to their padded tile. With a quantized cache the matrix
// type is fp16 even for bf16 models (scale and zero are fp16, so are the dequantized values).
//
// Rows of a 16-token group always sit in one cache block (block_len % 16 == 0): one block-table lookup per
// group. Rows past the context are zero-filled (cp.async src-size 0, or zeros from the dequantizer), so a
// masked probability of 0 never meets a NaN from stale memory.
#define PDL_FAMILY "attn" // LMTERM_PDL=attn,... (cuda/pdl.cuh)
#include "config.h"
#include <stdlib.h>
#include <string.h>
#include <type_traits>
#include "attention.h"
#include "kv_layout.cuh"
#include "attn_common.cuh"
#include "rope_row.cuh"

#include <cooperative_groups.h>
namespace cg = cooperative_groups;

#define NEG_INF (-__int_as_float(0x7f800000))

// decode: at most MAX_SPLITS splits of at least MIN_SPLIT_KEYS keys of max_ctx each
enum { MAX_SPLITS = 128, MIN_SPLIT_KEYS = 64, MAX_TICKETS = 1024 };
// decode: at most MAX_CLUSTER splits are one thread-block cluster (the portable cluster size; decode_splits)
enum { MAX_CLUSTER = 8 };
// the fused combine's counters, one per (kv head, row block) of a decode launch; 0 between launches (each
// launch's last block resets its own). Launches on one stream run in order, so one pool serves them all.
static __device__ unsigned g_tickets[MAX_TICKETS];

template <typename T, int HD, int POLICY> struct tcfg {
	using MT = typename std::conditional<POLICY == 0, T, half>::type; // tensor-core operand type
	static constexpr int P = POLICY;
	static constexpr int GROW = HD * (POLICY == 0 ? 16 : POLICY) / 8;  // bytes of one cache row
	static constexpr int CPR = GROW / 16;                             // 16-byte chunks per row
	static constexpr int LD = HD + 8;                                 // tile row stride, elements (pad: no
	                                                                  // ldmatrix bank conflicts)
	static constexpr int RAW_ROW = POLICY == 0 ? LD * 2 : GROW;       // raw smem row stride, bytes
	// raw stage of R tokens: K rows, V rows, then (quantized) K and V (scale, zero) pairs
	static constexpr int stage_bytes(int R) { return 2 * R * RAW_ROW + (POLICY ? 8 * R : 0); }
	static constexpr int conv_bytes(int R) { return POLICY ? 2 * R * LD * 2 : 0; }
};

// Issue the cp.async copies of tokens [tok0, tok0 + R) of kv head kvh (K and V, plus scale/zero) into a raw
// stage; tokens >= ctx_end are zero-filled. NTHR threads cooperate (tid in [0, NTHR)).
template <class C, int R, int NTHR>
static __device__ __forceinline__ void load_raw(uint8_t *stage, const uint8_t *__restrict__ pool,
						const struct kv_geom &g, int layer, int kvh,
						const int32_t *__restrict__ blocks, int tok0, int ctx_end, int tid)
{
	constexpr int GCH = 2 * 16 * C::CPR; // data chunks of a 16-token group, K and V
#pragma unroll
	for (int gi = 0; gi < R / 16; gi++) {
		const int p0 = tok0 + gi * 16;
		const uint8_t *slab = pool;
		int off0 = 0;
		if (p0 < ctx_end) {
			off0 = p0 % g.block_len;
			slab = pool + kv_slab_offset(&g, layer, blocks[p0 / g.block_len], kvh, 0);
		}
#pragma unroll
		for (int i = 0; i < (GCH + NTHR - 1) / NTHR; i++) {
			const int c = tid + i * NTHR;
			if (GCH % NTHR == 0 || c < GCH) {
				const int kv = c / (16 * C::CPR), r = (c / C::CPR) % 16, col = c % C::CPR;
				const bool ok = p0 + r < ctx_end;
				const uint8_t *src = slab + kv * g.slab_bytes + (size_t)(off0 + r) * C::GROW + col * 16;
				cp_async16(stage + (kv * R + gi * 16 + r) * C::RAW_ROW + col * 16, ok ? src : pool,
					   ok ? 16 : 0);
			}
		}
		if (C::P != 0) {
			// 16 tokens x 4 bytes = 4 chunks per K and V; rows past ctx_end within a live group are
			// read (they are inside the block) and zeroed by the dequantizer
			if (tid < 8) {
				const int kv = tid >> 2, r = (tid & 3) * 4;
				const bool ok = p0 < ctx_end;
				const uint8_t *src = slab + kv * g.slab_bytes + g.data_bytes + (size_t)(off0 + r) * 4;
				cp_async16(stage + 2 * R * C::RAW_ROW + (kv * R + gi * 16 + r) * 4, ok ? src : pool,
					   ok ? 16 : 0);
			}
		}
	}
}

// Dequantize a raw stage of R tokens into the fp16 tile [K: R][LD], [V: R][LD]; rows >= ctx_end become 0.
// int8: byte_perm puts each byte under 0x64 (fp16 1024 + q), minus 1024 is exact, then q * scale + zero.
// int4: the byte's two nibbles go to the two halves as 1024 + lo and 1024 + 16 hi; one exact HFMA2 with
// (1, 1/16) and (-1024, -64) gives (lo, hi).
template <class C, int R, int NTHR>
static __device__ __forceinline__ void dequant(half *__restrict__ tile, const uint8_t *__restrict__ stage, int tok0,
					       int ctx_end, int tid)
{
	constexpr int NCH = 2 * R * C::CPR;
	constexpr int OUT = C::P == 8 ? 16 : 32; // halves per raw chunk
	const half2 *par = (const half2 *)(stage + 2 * R * C::RAW_ROW);
#pragma unroll
	for (int i = 0; i < (NCH + NTHR - 1) / NTHR; i++) {
		const int c = tid + i * NTHR;
		if (NCH % NTHR != 0 && c >= NCH) break;
		const int kv = c / (R * C::CPR), r = (c / C::CPR) % R, col = c % C::CPR;
		uint4 *dst = (uint4 *)(tile + (kv * R + r) * C::LD + col * OUT);
		if (tok0 + r >= ctx_end) {
#pragma unroll
			for (int k = 0; k < OUT / 8; k++) dst[k] = make_uint4(0, 0, 0, 0);
			continue;
		}
		const uint4 raw = *(const uint4 *)(stage + (kv * R + r) * C::RAW_ROW + col * 16);
		const half2 sz = par[kv * R + r];
		const half2 s2 = __low2half2(sz), z2 = __high2half2(sz);
		const uint32_t w[4] = {raw.x, raw.y, raw.z, raw.w};
		uint32_t o[OUT / 2];
		if constexpr (C::P == 8) {
			const half2 k1024 = __float2half2_rn(1024.f);
#pragma unroll
			for (int k = 0; k < 4; k++) {
				uint32_t lo = __byte_perm(w[k], 0x64646464u, 0x4140);
				uint32_t hi = __byte_perm(w[k], 0x64646464u, 0x4342);
				half2 a = __hfma2(__hsub2(*(half2 *)&lo, k1024), s2, z2);
				half2 b = __hfma2(__hsub2(*(half2 *)&hi, k1024), s2, z2);
				o[2 * k] = *(uint32_t *)&a;
				o[2 * k + 1] = *(uint32_t *)&b;
			}
		} else {
			const half2 mul = __halves2half2(__float2half(1.f), __float2half(0.0625f));
			const half2 add = __halves2half2(__float2half(-1024.f), __float2half(-64.f));
#pragma unroll
			for (int k = 0; k < 4; k++) {
#pragma unroll
				for (int b = 0; b < 4; b++) {
					const uint32_t sel = 0x4040u | (uint32_t)b | (uint32_t)b << 8;
					uint32_t u = (__byte_perm(w[k], 0, sel) & 0x00f0000fu) | 0x64006400u;
					half2 q = __hfma2(*(half2 *)&u, mul, add);
					half2 x = __hfma2(q, s2, z2);
					o[4 * k + b] = *(uint32_t *)&x;
				}
			}
		}
#pragma unroll
		for (int k = 0; k < OUT / 8; k++) dst[k] = make_uint4(o[4 * k], o[4 * k + 1], o[4 * k + 2], o[4 * k + 3]);
	}
}

// Q fragments (mma A operand, 16 rows x HD) of rows rowA (= g) and rowB (= g + 8); rows >= rows are zero.
template <typename T, typename MT, int HD>
static __device__ __forceinline__ void load_q_rows(uint32_t qf[HD / 16][4], const T *qa, const T *qb, int lane)
{
	const int c2 = (lane & 3) * 2;
#pragma unroll
	for (int kk = 0; kk < HD / 16; kk++) {
#pragma unroll
		for (int e = 0; e < 4; e++) {
			const T *q = (e & 1) ? qb : qa;
			uint32_t v = 0;
			if (q) {
				v = *(const uint32_t *)(q + kk * 16 + (e >> 1) * 8 + c2);
				if constexpr (!std::is_same<T, MT>::value) { // bf16 q for an fp16 (quantized) cache
					float2 f = __bfloat1622float2(*(__nv_bfloat162 *)&v);
					half2 h = __float22half2_rn(f);
					v = *(uint32_t *)&h;
				}
			}
			qf[kk][e] = v;
		}
	}
}

// the A fragments of rows rowA and rowB (zero past rows) of a CTA's Q, from qkv
template <typename T, typename MT, int HD>
static __device__ __forceinline__ void load_q(uint32_t qf[HD / 16][4], const T *__restrict__ qkv, int rowA, int rowB,
					      int rows, int group, int kvh, int H, int lane)
{
	const T *qa = rowA < rows ? qkv + ((size_t)(rowA / group) * H + kvh * group + rowA % group) * HD : nullptr;
	const T *qb = rowB < rows ? qkv + ((size_t)(rowB / group) * H + kvh * group + rowB % group) * HD : nullptr;
	load_q_rows<T, MT, HD>(qf, qa, qb, lane);
}

// RoPE of Q in its A fragments (one position for every row: a decode step of one token; cos and sin from
// the step's table, rope_rotate_tab's). A lane holds
// columns d and d + HD/2 of its rows in qf[kk][e] and qf[kk + HD/32][e], so the rotation needs no exchange.
// qf holds T pairs as stored; they leave rotated, rounded to T (the same bits as rope_rotate gives), then
// converted to MT.
template <typename T, typename MT, int HD>
static __device__ __forceinline__ void rope_q_frag(uint32_t qf[HD / 16][4], const float *__restrict__ tab, float mscale,
						   int lane)
{
	const int c2 = (lane & 3) * 2;
#pragma unroll
	for (int kk = 0; kk < HD / 32; kk++) {
#pragma unroll
		for (int h = 0; h < 2; h++) {
			float cs[2], sn[2];
#pragma unroll
			for (int j = 0; j < 2; j++) {
				cs[j] = tab[kk * 16 + h * 8 + c2 + j] * mscale;
				sn[j] = tab[HD / 2 + kk * 16 + h * 8 + c2 + j] * mscale;
			}
#pragma unroll
			for (int rs = 0; rs < 2; rs++) {
				const int e = h * 2 + rs;
				uint32_t &ulo = qf[kk][e], &uhi = qf[kk + HD / 32][e];
				const T *plo = (const T *)&ulo, *phi = (const T *)&uhi;
				float lo[2], hi[2];
#pragma unroll
				for (int j = 0; j < 2; j++) {
					const float x1 = act<T>::to_f(plo[j]), x2 = act<T>::to_f(phi[j]);
					lo[j] = __fsub_rn(__fmul_rn(x1, cs[j]), __fmul_rn(x2, sn[j]));
					hi[j] = __fadd_rn(__fmul_rn(x2, cs[j]), __fmul_rn(x1, sn[j]));
				}
				ulo = act<T>::pack(lo[0], lo[1]);
				uhi = act<T>::pack(hi[0], hi[1]);
			}
		}
	}
	if constexpr (!std::is_same<T, MT>::value) { // bf16 q for an fp16 (quantized) cache
#pragma unroll
		for (int kk = 0; kk < HD / 16; kk++)
#pragma unroll
			for (int e = 0; e < 4; e++) {
				half2 hv = __float22half2_rn(__bfloat1622float2(*(__nv_bfloat162 *)&qf[kk][e]));
				qf[kk][e] = *(uint32_t *)&hv;
			}
	}
}

// S[NT][4] = Q K^T for the NT * 8 keys at rows k0.. of the K tile (row stride LD)
template <typename MT, int HD, int NT, int LD>
static __device__ __forceinline__ void qk(float S[NT][4], const uint32_t qf[HD / 16][4], const MT *kt, int k0,
					  int lane)
{
#pragma unroll
	for (int j = 0; j < NT; j++) S[j][0] = S[j][1] = S[j][2] = S[j][3] = 0.f;
	const int mi = lane >> 3;
#pragma unroll
	for (int kk = 0; kk < HD / 16; kk++) {
#pragma unroll
		for (int j = 0; j < NT; j += 2) {
			uint32_t b[4];
			ldsm_x4(b, kt + (k0 + 8 * (j + (mi >> 1)) + (lane & 7)) * LD + 16 * kk + 8 * (mi & 1));
			mma<MT>::run(S[j], qf[kk], b[0], b[1]);
			mma<MT>::run(S[j + 1], qf[kk], b[2], b[3]);
		}
	}
}

// O += P V for the KC * 16 keys at rows k0.. of the V tile
template <typename MT, int HD, int KC, int LD>
static __device__ __forceinline__ void pv(float O[HD / 8][4], const uint32_t pf[KC][4], const MT *vt, int k0,
					  int lane)
{
	const int mi = lane >> 3;
#pragma unroll
	for (int kc = 0; kc < KC; kc++) {
#pragma unroll
		for (int j = 0; j < HD / 8; j += 2) {
			uint32_t b[4];
			ldsm_x4_t(b, vt + (k0 + 16 * kc + 8 * (mi & 1) + (lane & 7)) * LD + 8 * j + 8 * (mi >> 1));
			mma<MT>::run(O[j], pf[kc], b[0], b[1]);
			mma<MT>::run(O[j + 1], pf[kc], b[2], b[3]);
		}
	}
}

// Online softmax over one tile of scores: scale to log2 units, mask keys > lim[row], update the running
// max m and (thread-partial) sum l of rows g and g+8, rescale O, and leave P as mma A fragments.
template <typename MT, int HD, int NT>
static __device__ __forceinline__ void softmax_tile(float S[NT][4], float m[2], float l[2], float O[HD / 8][4],
						    uint32_t pf[NT / 2][4], int key0, const int lim[2], bool mask,
						    float sl2, int lane)
{
	const int c2 = (lane & 3) * 2;
	float mx[2] = {NEG_INF, NEG_INF};
#pragma unroll
	for (int j = 0; j < NT; j++) {
#pragma unroll
		for (int e = 0; e < 4; e++) {
			float s = S[j][e] * sl2;
			if (mask && key0 + 8 * j + c2 + (e & 1) > lim[e >> 1]) s = NEG_INF;
			S[j][e] = s;
			mx[e >> 1] = fmaxf(mx[e >> 1], s);
		}
	}
	float base[2];
#pragma unroll
	for (int r = 0; r < 2; r++) {
		mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 1));
		mx[r] = fmaxf(mx[r], __shfl_xor_sync(0xffffffffu, mx[r], 2));
		const float mn = fmaxf(m[r], mx[r]);
		base[r] = mn == NEG_INF ? 0.f : mn;
		const float alpha = exp2f(m[r] - base[r]);
		m[r] = mn;
		l[r] *= alpha;
#pragma unroll
		for (int j = 0; j < HD / 8; j++) {
			O[j][2 * r] *= alpha;
			O[j][2 * r + 1] *= alpha;
		}
	}
#pragma unroll
	for (int j = 0; j < NT; j++) {
#pragma unroll
		for (int e = 0; e < 4; e++) {
			S[j][e] = exp2f(S[j][e] - base[e >> 1]);
			l[e >> 1] += S[j][e];
		}
	}
#pragma unroll
	for (int kc = 0; kc < NT / 2; kc++) {
		pf[kc][0] = act<MT>::pack(S[2 * kc][0], S[2 * kc][1]);
		pf[kc][1] = act<MT>::pack(S[2 * kc][2], S[2 * kc][3]);
		pf[kc][2] = act<MT>::pack(S[2 * kc + 1][0], S[2 * kc + 1][1]);
		pf[kc][3] = act<MT>::pack(S[2 * kc + 1][2], S[2 * kc + 1][3]);
	}
}

// ---- prefill ----------------------------------------------------------------------------------------------

template <typename T, int HD, int POLICY> struct prefill_cfg {
	using C = tcfg<T, HD, POLICY>;
	static constexpr int BM = 64, BN = 64;
	static constexpr int smem = 2 * C::stage_bytes(BN) + C::conv_bytes(BN);
};

// grid (ceil(rows / 64), nkv); rows = n * group
template <typename T, int HD, int POLICY>
__global__ void __launch_bounds__(128) prefill_kernel(T *__restrict__ out, const T *__restrict__ qkv,
						      const uint8_t *__restrict__ pool, struct kv_geom g, int layer,
						      int nh, int n, const int32_t *__restrict__ pos0p,
						      const int32_t *__restrict__ blocks, float sl2)
{
	pdl_wait_trigger();
	using C = tcfg<T, HD, POLICY>;
	using MT = typename C::MT;
	using PC = prefill_cfg<T, HD, POLICY>;
	constexpr int BN = PC::BN, NT = BN / 8, LD = C::LD, SB = C::stage_bytes(BN);
	extern __shared__ uint4 smem_u4[];
	uint8_t *smem = (uint8_t *)smem_u4;
	half *conv = (half *)(smem + 2 * SB);

	const int nkv = g.n_kv_heads, group = nh / nkv, H = nh + 2 * nkv, rows = n * group;
	const int kvh = blockIdx.y;
	const int r0 = (gridDim.x - 1 - blockIdx.x) * PC::BM; // the longest rows first
	const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
	const int pos0 = *pos0p;
	const int ctx_end = pos0 + (min(r0 + PC::BM, rows) - 1) / group + 1;

	const int wr0 = r0 + warp * 16;
	const int rowA = wr0 + (lane >> 2), rowB = rowA + 8;
	const int lim[2] = {pos0 + min(rowA, rows - 1) / group, pos0 + min(rowB, rows - 1) / group};
	const int wlo = pos0 + min(wr0, rows - 1) / group;          // keys <= wlo need no mask in this warp
	const int wend = pos0 + min(wr0 + 15, rows - 1) / group + 1; // keys this warp needs
	const bool wlive = wr0 < rows;

	uint32_t qf[HD / 16][4];
	load_q<T, MT, HD>(qf, qkv, rowA, rowB, rows, group, kvh, H, lane);
	float O[HD / 8][4];
#pragma unroll
	for (int j = 0; j < HD / 8; j++) O[j][0] = O[j][1] = O[j][2] = O[j][3] = 0.f;
	float m[2] = {NEG_INF, NEG_INF}, l[2] = {0.f, 0.f};

	const int ntiles = (ctx_end + BN - 1) / BN;
	load_raw<C, BN, 128>(smem, pool, g, layer, kvh, blocks, 0, ctx_end, tid);
	cp_async_commit();
	if (ntiles > 1) load_raw<C, BN, 128>(smem + SB, pool, g, layer, kvh, blocks, BN, ctx_end, tid);
	cp_async_commit();

	for (int it = 0; it < ntiles; it++) {
		const int tok0 = it * BN;
		uint8_t *st = smem + (it & 1) * SB;
		cp_async_wait<1>();
		__syncthreads();
		const MT *kt, *vt;
		if constexpr (POLICY != 0) {
			dequant<C, BN, 128>(conv, st, tok0, ctx_end, tid);
			__syncthreads();
			if (it + 2 < ntiles)
				load_raw<C, BN, 128>(st, pool, g, layer, kvh, blocks, tok0 + 2 * BN, ctx_end, tid);
			cp_async_commit();
			kt = (const MT *)conv;
			vt = kt + BN * LD;
		} else {
			kt = (const MT *)st;
			vt = kt + BN * LD;
		}
		if (wlive && tok0 < wend) {
			float S[NT][4];
			uint32_t pf[NT / 2][4];
			qk<MT, HD, NT, LD>(S, qf, kt, 0, lane);
			softmax_tile<MT, HD, NT>(S, m, l, O, pf, tok0, lim, tok0 + BN - 1 > wlo, sl2, lane);
			pv<MT, HD, NT / 2, LD>(O, pf, vt, 0, lane);
		}
		__syncthreads();
		if constexpr (POLICY == 0) {
			if (it + 2 < ntiles)
				load_raw<C, BN, 128>(st, pool, g, layer, kvh, blocks, tok0 + 2 * BN, ctx_end, tid);
			cp_async_commit();
		}
	}
	cp_async_wait<0>();

	const int c2 = (lane & 3) * 2;
#pragma unroll
	for (int r = 0; r < 2; r++) {
		float lt = l[r];
		lt += __shfl_xor_sync(0xffffffffu, lt, 1);
		lt += __shfl_xor_sync(0xffffffffu, lt, 2);
		const int row = r ? rowB : rowA;
		if (row >= rows) continue;
		const float inv = 1.f / lt;
		T *o = out + ((size_t)(row / group) * nh + kvh * group + row % group) * HD + c2;
#pragma unroll
		for (int j = 0; j < HD / 8; j++)
			*(uint32_t *)(o + 8 * j) = act<T>::pack(O[j][2 * r] * inv, O[j][2 * r + 1] * inv);
	}
}

// ---- decode -----------------------------------------------------------------------------------------------

// out[row] = sum_s 2^(m_s - M) O_s / sum_s 2^(m_s - M) l_s; one warp per [n][nh] row.
// The lanes read the splits' (max, sum) pairs in parallel and leave the weights in shared memory (wts, one
// float per split), so the loop over the partial outputs has no load that waits on another (a serial walk
// over the splits, two dependent L2 round trips per split, cost about 0.4 us per split on the H200). The
// partials are read through L2 (__ldcg): in the fused path other blocks of the same grid wrote them.
template <typename T, int HD>
static __device__ __forceinline__ void combine_row(T *__restrict__ out, const float *__restrict__ ws_o,
						   const float2 *__restrict__ ws_ml, int NR, int nsplit, int row,
						   float *wts, int lane)
{
	constexpr int E = HD / 32;
	float M = NEG_INF;
	for (int s = lane; s < nsplit; s += 32) M = fmaxf(M, __ldcg(&ws_ml[(size_t)s * NR + row]).x);
	M = warp_max(M); // finite: every row has at least one key in some split
	float L = 0.f;
	for (int s = lane; s < nsplit; s += 32) {
		const float2 ml = __ldcg(&ws_ml[(size_t)s * NR + row]);
		const float wt = ml.x == NEG_INF ? 0.f : exp2f(ml.x - M); // empty split: weight 0 (its O is 0)
		wts[s] = wt;
		L += wt * ml.y;
	}
	L = warp_sum(L);
	__syncwarp();
	float acc[E] = {};
#pragma unroll 4
	for (int s = 0; s < nsplit; s++) {
		const float wt = wts[s];
		const float *src = ws_o + ((size_t)s * NR + row) * HD + lane * E;
		if constexpr (E == 4) {
			const float4 v = __ldcg((const float4 *)src);
			acc[0] += wt * v.x;
			acc[1] += wt * v.y;
			acc[2] += wt * v.z;
			acc[3] += wt * v.w;
		} else {
			const float2 v = __ldcg((const float2 *)src);
			acc[0] += wt * v.x;
			acc[1] += wt * v.y;
		}
	}
	__syncwarp(); // wts is reused by the warp's next row
	const float inv = 1.f / L;
	T *o = out + (size_t)row * HD + lane * E;
#pragma unroll
	for (int e = 0; e < E; e += 2) *(uint32_t *)(o + e) = act<T>::pack(acc[e] * inv, acc[e + 1] * inv);
}

template <typename T, int HD, int POLICY> struct decode_cfg {
	using C = tcfg<T, HD, POLICY>;
	static constexpr int R = 16, STAGES = 3, WARPS = 4;
	static constexpr int warp_bytes = STAGES * C::stage_bytes(R) + C::conv_bytes(R);
	// the warps' O rows in the merge area are MO_LD floats apart: with HD, the 8 rows of a warp's fragment
	// store (64-bit, lanes 4 apart on one row) fell on the same banks, an 8-way conflict on every store
	static constexpr int MO_LD = HD + 8;
	static constexpr int merge_bytes = WARPS * 16 * MO_LD * 4 + WARPS * 16 * 8;
	// a clustered launch's CTA result after the merge area: O [16][HD] and (m, l) [16]
	static constexpr int merged_bytes = merge_bytes + 16 * HD * 4 + 16 * 8;
	static constexpr int smem = WARPS * warp_bytes > merged_bytes ? WARPS * warp_bytes : merged_bytes;
	// the pushed combine (cluster_mode): every CTA's share of the splits' results, written there by the
	// others while it may still be in its main loop, so after everything else: O [nsplit][16 HD / nsplit] and
	// (m, l) [MAX_CLUSTER][16]
	static constexpr int recv_bytes = 16 * HD * 4 + MAX_CLUSTER * 16 * 8;
	static constexpr int smem_push = smem + recv_bytes;
};

// barrier.cluster in its two halves (cg's sync is both at once): the pushed combine arrives at its start and
// waits before its first remote store (every CTA of the cluster has then started), and its second phase
// releases the stores to the CTA that combines them
static __device__ __forceinline__ void cluster_arrive_relaxed() { asm volatile("barrier.cluster.arrive.relaxed.aligned;" ::: "memory"); }
static __device__ __forceinline__ void cluster_arrive() { asm volatile("barrier.cluster.arrive.release.aligned;" ::: "memory"); }
static __device__ __forceinline__ void cluster_wait() { asm volatile("barrier.cluster.wait.acquire.aligned;" ::: "memory"); }

// The mbarrier form of the pushed combine (clustered == 3): each split's results go to their CTA by st.async,
// which counts their bytes on that CTA's mbarrier; the CTA waits for its own bytes only (no cluster barrier).
static __device__ __forceinline__ uint32_t smem_u32(const void *p) { return (uint32_t)__cvta_generic_to_shared(p); }
static __device__ __forceinline__ uint32_t cluster_addr(uint32_t a, int rank)
{
	uint32_t r;
	asm volatile("mapa.shared::cluster.u32 %0, %1, %2;" : "=r"(r) : "r"(a), "r"(rank));
	return r;
}
static __device__ __forceinline__ void st_async(uint32_t a, float4 v, uint32_t bar)
{
	asm volatile("st.async.shared::cluster.mbarrier::complete_tx::bytes.v4.f32 [%0], {%1, %2, %3, %4}, [%5];" ::"r"(a),
		     "f"(v.x), "f"(v.y), "f"(v.z), "f"(v.w), "r"(bar)
		     : "memory");
}
static __device__ __forceinline__ void st_async(uint32_t a, float2 v, uint32_t bar)
{
	asm volatile("st.async.shared::cluster.mbarrier::complete_tx::bytes.v2.f32 [%0], {%1, %2}, [%3];" ::"r"(a), "f"(v.x),
		     "f"(v.y), "r"(bar)
		     : "memory");
}
// one arrival (this thread's, with the bytes to expect), so the phase ends when those bytes have landed
static __device__ __forceinline__ void mbar_init_expect(uint64_t *bar, uint32_t bytes)
{
	asm volatile("mbarrier.init.shared::cta.b64 [%0], 1;" ::"r"(smem_u32(bar)) : "memory");
	asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;" ::"r"(smem_u32(bar)), "r"(bytes) : "memory");
	asm volatile("fence.mbarrier_init.release.cluster;" ::: "memory");
}
static __device__ __forceinline__ void mbar_wait0(uint64_t *bar)
{
	uint32_t done;
	do {
		asm volatile("{ .reg .pred p; mbarrier.try_wait.parity.acquire.cluster.shared::cta.b64 p, [%1], 0; "
			     "selp.u32 %0, 1, 0, p; }"
			     : "=r"(done)
			     : "r"(smem_u32(bar))
			     : "memory");
	} while (!done);
}

// out's row orow, columns d and d + 1, from nsplit splits' (max, sum) ml and unnormalized pairs v
template <typename T, int HD>
static __device__ __forceinline__ void combine_pair(T *__restrict__ out, const float2 ml[MAX_CLUSTER],
						    const float2 v[MAX_CLUSTER], int nsplit, int orow, int d)
{
	float Mx = NEG_INF;
#pragma unroll
	for (int q = 0; q < MAX_CLUSTER; q++)
		if (q < nsplit) Mx = fmaxf(Mx, ml[q].x);
	float ax = 0.f, ay = 0.f, L = 0.f;
#pragma unroll
	for (int q = 0; q < MAX_CLUSTER; q++) {
		if (q >= nsplit) break;
		const float wt = ml[q].x == NEG_INF ? 0.f : exp2f(ml[q].x - Mx); // an empty split weighs 0
		ax += wt * v[q].x;
		ay += wt * v[q].y;
		L += wt * ml[q].y;
	}
	const float inv = 1.f / L;
	*(uint32_t *)(out + (size_t)orow * HD + d) = act<T>::pack(ax * inv, ay * inv);
}

// grid (nsplit, nkv, ceil(rows / 16)). Writes the split's unnormalized O and its (max, sum) to the workspace,
// or, with one split, the final output. clustered: 0 no cluster, 1 the pulled combine, 2 the pushed one, 3
// pushed with st.async (cluster_mode).
// ROPE (a decode step of one token): qkv holds q, k and v as the projection left them (rope_kv not run).
// Each warp rotates its Q fragments in registers (rope_q_frag) while its first cache loads are in flight. The warp
// whose sub-tile holds the new token's position computes its k and v, stores them into the cache (for the
// steps to come) and writes them into its own raw stage once the cp.async of that stage has landed (the
// copy brought the slot's stale bytes), so no rope_kv kernel, and no launch gap, precedes this one.
template <typename T, int HD, int POLICY, bool ROPE>
__global__ void __launch_bounds__(128) decode_kernel(T *__restrict__ out, float *__restrict__ ws_o,
						     float2 *__restrict__ ws_ml, const T *__restrict__ qkv,
						     uint8_t *__restrict__ pool, struct kv_geom g, int layer,
						     int nh, int n, const int32_t *__restrict__ pos0p,
						     const int32_t *__restrict__ blocks, float sl2,
						     unsigned *__restrict__ tickets, const float *__restrict__ rope_cs,
						     float mscale, int clustered)
{
	TRACE_SCOPE;
	__shared__ uint64_t rx_bar; // clustered == 3: the bytes of this CTA's share, from every split
	if (clustered == 3 && threadIdx.x == 0) // every split sends every row of the share, valid or not
		mbar_init_expect(&rx_bar, gridDim.x * (16 * HD / gridDim.x * 4 + 16 / gridDim.x * 8));
	if (clustered >= 2) cluster_arrive_relaxed(); // (after the mbarrier's init: the others store to it)
	// ROPE: this kernel writes the step's only new slot itself, so the cached keys it reads were written by
	// earlier steps: its first stages are loaded before waiting for the projection (PDL), and only q waits.
	if (ROPE) pdl_launch_dependents();
	else pdl_wait_trigger();
	using C = tcfg<T, HD, POLICY>;
	using MT = typename C::MT;
	using DC = decode_cfg<T, HD, POLICY>;
	constexpr int R = DC::R, ST = DC::STAGES, LD = C::LD, SB = C::stage_bytes(R);
	extern __shared__ uint4 smem_u4[];
	uint8_t *smem = (uint8_t *)smem_u4;

	const int nkv = g.n_kv_heads, group = nh / nkv, H = nh + 2 * nkv, rows = n * group, NR = n * nh;
	const int split = blockIdx.x, nsplit = gridDim.x, kvh = blockIdx.y, r0 = blockIdx.z * 16;
	const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
	const int pos0 = *pos0p;
	const int ctx_end = pos0 + (min(r0 + 16, rows) - 1) / group + 1;
	const int rowA = r0 + (lane >> 2), rowB = rowA + 8;
	const int lim[2] = {pos0 + min(rowA, rows - 1) / group, pos0 + min(rowB, rows - 1) / group};
	const int lo = pos0 + r0 / group; // keys <= lo need no mask

	// this split's keys, in 16-token sub-tiles; warp w takes sub-tiles w, w + 4, ...
	const int chunk = ((ctx_end + nsplit - 1) / nsplit + 15) & ~15;
	const int kbeg = split * chunk, kend = min(ctx_end, kbeg + chunk);
	const int nsub = kbeg < kend ? (kend - kbeg + R - 1) / R : 0;
	const int mine = nsub > warp ? (nsub - warp + DC::WARPS - 1) / DC::WARPS : 0;

	uint8_t *wbase = smem + warp * DC::warp_bytes;
	half *conv = (half *)(wbase + ST * SB);

	uint32_t qf[HD / 16][4]; // ROPE: T pairs as stored, rotated and converted below
	if (!ROPE) load_q<T, MT, HD>(qf, qkv, rowA, rowB, rows, group, kvh, H, lane);
	float O[HD / 8][4];
#pragma unroll
	for (int j = 0; j < HD / 8; j++) O[j][0] = O[j][1] = O[j][2] = O[j][3] = 0.f;
	float m[2] = {NEG_INF, NEG_INF}, l[2] = {0.f, 0.f};
	constexpr int E = HD / 32;
	// ROPE: the new token's k and v (lane's E elements), held by the warp whose sub-tile i_new has them
	const int s_new = ROPE && kbeg <= pos0 && pos0 < kend ? (pos0 - kbeg) / R : -1;
	const bool own = s_new >= 0 && s_new % DC::WARPS == warp;
	const int i_new = own ? s_new / DC::WARPS : -1;
	float kn[ROPE ? E : 1], vn[ROPE ? E : 1];

#pragma unroll
	for (int s = 0; s < ST - 1; s++) {
		if (s < mine)
			load_raw<C, R, 32>(wbase + s * SB, pool, g, layer, kvh, blocks,
					   kbeg + (warp + s * DC::WARPS) * R, kend, lane);
		cp_async_commit();
	}
	if constexpr (ROPE) {
		pdl_wait();
		load_q<T, T, HD>(qf, qkv, rowA, rowB, rows, group, kvh, H, lane);
		rope_q_frag<T, MT, HD>(qf, rope_cs, mscale, lane);
		TRACE_MARK(1);
		if (own) {
			vec_io<T, E>::load(kn, qkv + ((size_t)nh + kvh) * HD + lane * E);
			vec_io<T, E>::load(vn, qkv + ((size_t)nh + nkv + kvh) * HD + lane * E);
			rope_rotate_tab<T, HD>(kn, rope_cs, mscale, lane);
			kv_store_row<T, HD, POLICY>(kn, pool, g, layer, blocks, pos0, kvh, 0, lane);
			kv_store_row<T, HD, POLICY>(vn, pool, g, layer, blocks, pos0, kvh, 1, lane);
		}
	}

	for (int i = 0; i < mine; i++) {
		const int tok0 = kbeg + (warp + i * DC::WARPS) * R;
		cp_async_wait<ST - 2>();
		__syncwarp();
		if (ROPE && i == i_new) { // the new token's slot in this stage: its k and v instead of stale bytes
			uint8_t *stg = wbase + (i % ST) * SB;
			const int r = pos0 - tok0;
#pragma unroll
			for (int kv = 0; kv < 2; kv++)
				store_row<T, HD, POLICY>(kv ? vn : kn, stg + (kv * R + r) * C::RAW_ROW,
							 (half2 *)(stg + 2 * R * C::RAW_ROW) + kv * R + r, lane);
			__syncwarp();
		}
		// the stage consumed last iteration is free: refill it
		if (i + ST - 1 < mine)
			load_raw<C, R, 32>(wbase + ((i + ST - 1) % ST) * SB, pool, g, layer, kvh, blocks,
					   kbeg + (warp + (i + ST - 1) * DC::WARPS) * R, kend, lane);
		cp_async_commit();
		const uint8_t *st = wbase + (i % ST) * SB;
		const MT *kt, *vt;
		if constexpr (POLICY != 0) {
			dequant<C, R, 32>(conv, st, tok0, kend, lane);
			__syncwarp();
			kt = (const MT *)conv;
		} else {
			kt = (const MT *)st;
		}
		vt = kt + R * LD;
		float S[2][4];
		uint32_t pf[1][4];
		qk<MT, HD, 2, LD>(S, qf, kt, 0, lane);
		softmax_tile<MT, HD, 2>(S, m, l, O, pf, tok0, lim, tok0 + R - 1 > lo, sl2, lane);
		pv<MT, HD, 1, LD>(O, pf, vt, 0, lane);
	}
	TRACE_MARK(2);
	cp_async_wait<0>();
	__syncthreads();
	TRACE_MARK(3);

	// merge the warps: O [warp][16][MO_LD], (m, l) [warp][16]
	float *mo = (float *)smem;
	float2 *mml = (float2 *)(smem + DC::WARPS * 16 * DC::MO_LD * 4);
	const int c2 = (lane & 3) * 2, g8 = lane >> 2;
#pragma unroll
	for (int r = 0; r < 2; r++) {
		float lt = l[r];
		lt += __shfl_xor_sync(0xffffffffu, lt, 1);
		lt += __shfl_xor_sync(0xffffffffu, lt, 2);
		const int rr = g8 + 8 * r;
		if ((lane & 3) == 0) mml[warp * 16 + rr] = make_float2(m[r], lt);
#pragma unroll
		for (int j = 0; j < HD / 8; j++)
			*(float2 *)(mo + (warp * 16 + rr) * DC::MO_LD + 8 * j + c2) = make_float2(O[j][2 * r], O[j][2 * r + 1]);
	}
	__syncthreads();
	// pushed combine: rank q's share is the rows [q S / HD, (q + 1) S / HD) (S = 16 HD / nsplit elements, whole
	// rows: nsplit <= MAX_CLUSTER), stored by every split straight into q's receive area
	const int S = 16 * HD / nsplit;
	float *recv_o = (float *)(smem + DC::smem);
	float2 *recv_ml = (float2 *)(smem + DC::smem + 16 * HD * 4);
	if (clustered >= 2) cluster_wait(); // every CTA of the cluster has started (arrived at its start)
	// 8 threads per row, each with the row's warp weights computed once and HD / 32 float4 columns, the 8
	// threads of a row on 128 contiguous bytes (no bank conflict); every load of a thread is independent.
	// (One element per thread per iteration, the weights recomputed for each, was 16 dependent rounds.)
	{
		constexpr int TPR = 128 / 16, NJ = HD / (4 * TPR);
		const int rr = tid / TPR, t8 = tid % TPR, row = r0 + rr;
		float wt[DC::WARPS], M = NEG_INF, L = 0.f;
#pragma unroll
		for (int w = 0; w < DC::WARPS; w++) M = fmaxf(M, mml[w * 16 + rr].x);
#pragma unroll
		for (int w = 0; w < DC::WARPS; w++) {
			const float2 ml = mml[w * 16 + rr];
			wt[w] = M == NEG_INF ? 0.f : exp2f(ml.x - M); // 0 for an empty warp (m = -inf)
			L += wt[w] * ml.y;
		}
		const int orow = (row / group) * nh + kvh * group + row % group; // [n][nh] row of out
#pragma unroll
		for (int j = 0; j < NJ; j++) {
			const int d = (j * TPR + t8) * 4;
			float4 acc = make_float4(0.f, 0.f, 0.f, 0.f);
#pragma unroll
			for (int w = 0; w < DC::WARPS; w++) {
				const float4 v = *(const float4 *)(mo + (w * 16 + rr) * DC::MO_LD + d);
				acc.x += wt[w] * v.x;
				acc.y += wt[w] * v.y;
				acc.z += wt[w] * v.z;
				acc.w += wt[w] * v.w;
			}
			// pushed: to rank q, at this split's slot of q's share
			const int e = rr * HD + d, q = e / S;
			float *const slot = recv_o + split * S + e % S;
			if (clustered == 3) { // every row (the receiver counts bytes); it skips those past rows
				st_async(cluster_addr(smem_u32(slot), q), acc, cluster_addr(smem_u32(&rx_bar), q));
				continue;
			}
			if (row >= rows) continue;
			if (clustered == 2) {
				*(float4 *)cg::this_cluster().map_shared_rank(slot, q) = acc;
			} else if (clustered) {
				float *co = (float *)(smem + DC::merge_bytes);
				*(float4 *)(co + rr * HD + d) = acc;
			} else if (nsplit == 1) {
				const float inv = 1.f / L;
				*(uint2 *)(out + (size_t)orow * HD + d) =
					make_uint2(act<T>::pack(acc.x * inv, acc.y * inv), act<T>::pack(acc.z * inv, acc.w * inv));
			} else {
				*(float4 *)(ws_o + ((size_t)split * NR + orow) * HD + d) = acc;
			}
		}
		if (clustered == 3 && t8 == 0) {
			const int q = rr * HD / S;
			st_async(cluster_addr(smem_u32(recv_ml + split * 16 + rr), q), make_float2(M, L),
				 cluster_addr(smem_u32(&rx_bar), q));
		} else if (row < rows && t8 == 0) {
			if (clustered == 2)
				cg::this_cluster().map_shared_rank(recv_ml, rr * HD / S)[split * 16 + rr] = make_float2(M, L);
			else if (clustered)
				((float2 *)(smem + DC::merge_bytes + 16 * HD * 4))[rr] = make_float2(M, L);
			else if (nsplit > 1)
				ws_ml[(size_t)split * NR + orow] = make_float2(M, L);
		}
	}
	if (clustered >= 2) {
		// The pushed combine: one barrier phase (the stores above released to their readers), or with
		// st.async the wait for this CTA's own bytes, then each CTA combines its own rows from its own
		// shared memory. No CTA reads another's memory after that, so none waits for the others before it
		// exits (the pulled combine's second barrier).
		if (clustered == 3) {
			mbar_wait0(&rx_bar);
			TRACE_MARK(4);
		} else {
			cluster_arrive();
			cluster_wait();
		}
		const int rank = split;
		for (int i = 2 * tid; i < S; i += 256) {
			const int e = rank * S + i, rr = e / HD, d = e % HD, row = r0 + rr;
			if (row >= rows) continue;
			float2 ml[MAX_CLUSTER], v[MAX_CLUSTER];
#pragma unroll
			for (int q = 0; q < MAX_CLUSTER; q++) {
				if (q >= nsplit) break;
				ml[q] = recv_ml[q * 16 + rr];
				v[q] = *(const float2 *)(recv_o + q * S + i);
			}
			combine_pair<T, HD>(out, ml, v, nsplit, (row / group) * nh + kvh * group + row % group, d);
		}
		return;
	}
	if (clustered) {
		// The splits of this (kv head, row tile) are one cluster: after a cluster barrier each CTA combines
		// a share of the outputs from every CTA's shared memory (DSMEM), so no partials go through global
		// memory, no fence, no ticket. The second barrier keeps every CTA's shared memory alive until the
		// others have read it. A thread takes two columns of one row and reads every split's (m, l) and
		// values with independent loads (unrolled over MAX_CLUSTER), so the remote reads overlap: walking
		// the splits one load after another cost a DSMEM round trip each.
		cg::cluster_group cl = cg::this_cluster();
		cl.sync();
		const int rank = (int)cl.block_rank();
		const float *mine_o = (const float *)(smem + DC::merge_bytes);
		for (int e = rank * 128 + tid; e < 16 * HD / 2; e += nsplit * 128) {
			const int rr = e / (HD / 2), d = (e % (HD / 2)) * 2, row = r0 + rr;
			if (row >= rows) continue;
			float2 ml[MAX_CLUSTER], v[MAX_CLUSTER];
#pragma unroll
			for (int q = 0; q < MAX_CLUSTER; q++) {
				if (q >= nsplit) break;
				const float *po = cl.map_shared_rank(mine_o, q);
				ml[q] = ((const float2 *)(po + 16 * HD))[rr];
				v[q] = *(const float2 *)(po + rr * HD + d);
			}
			combine_pair<T, HD>(out, ml, v, nsplit, (row / group) * nh + kvh * group + row % group, d);
		}
		cl.sync();
		return;
	}
	if (nsplit == 1 || !tickets) return;
	// The last split of this (kv head, row block) to finish combines them (a ticket counter it resets), so no
	// combine kernel, and no launch gap before it, is needed.
	__shared__ bool last;
	__syncthreads();
	const int tix = blockIdx.y * gridDim.z + blockIdx.z;
	if (tid == 0) {
		__threadfence();
		last = atomicAdd(&tickets[tix], 1u) == (unsigned)nsplit - 1;
	}
	__syncthreads();
	if (!last) return;
	__threadfence();
	float *wts = (float *)smem + warp * MAX_SPLITS; // the merge area is free again
	for (int rr = warp; rr < 16; rr += DC::WARPS) {
		const int row = r0 + rr;
		if (row >= rows) break;
		const int orow = (row / group) * nh + kvh * group + row % group;
		combine_row<T, HD>(out, ws_o, ws_ml, NR, nsplit, orow, wts, lane);
	}
	if (tid == 0) tickets[tix] = 0u;
}

template <typename T, int HD>
__global__ void __launch_bounds__(128) combine_kernel(T *__restrict__ out, const float *__restrict__ ws_o,
						      const float2 *__restrict__ ws_ml, int NR, int nsplit)
{
	pdl_wait_trigger();
	__shared__ float wts[4][MAX_SPLITS];
	const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
	const int row = blockIdx.x * 4 + warp;
	if (row >= NR) return; // whole warps only: no block-wide barrier below
	combine_row<T, HD>(out, ws_o, ws_ml, NR, nsplit, row, wts[warp], lane);
}

// ---- host launchers ---------------------------------------------------------------------------------------

static int sm_count(void)
{
	static int sms; // written once; a race writes the same value
	if (!sms) {
		int dev = 0, v = 0;
		if (cudaGetDevice(&dev) == cudaSuccess &&
		    cudaDeviceGetAttribute(&v, cudaDevAttrMultiProcessorCount, dev) == cudaSuccess && v > 0)
			sms = v;
		else
			sms = 132;
	}
	return sms;
}

static int max_splits(int max_ctx)
{
	int s = (max_ctx + MIN_SPLIT_KEYS - 1) / MIN_SPLIT_KEYS;
	return s < 1 ? 1 : s > MAX_SPLITS ? MAX_SPLITS : s;
}

// The splits of a decode launch as one thread-block cluster, combined through distributed shared memory
// (decode_kernel), where the split count would be at most 2 MAX_CLUSTER: it is then cut to a power of two
// up to MAX_CLUSTER (the portable cluster size). Longer contexts keep more splits and the global-memory
// combine: clusters of 8 or 16 splits at a 4096-token context made policy 0 faster but the int8/int4 caches
// slower than it (H200, 2026-12-04: 241.3 tokens/s against 236.8 and 238.6), as 8 splits at 545 tokens
// gained 0.76 us per layer (8.10 against 8.86 us). LMTERM_ATTN_CLUSTER=0 combines through global memory
// always (the last split to finish; measurement).
static bool cluster_on(void)
{
	static const bool on = !env_is("LMTERM_ATTN_CLUSTER", "0");
	return on;
}

// The clustered combine pushed: each split stores its share of results into the CTA that combines it, by
// st.async counted on that CTA's mbarrier, and each CTA waits for its own bytes only. Pulled (a cluster
// barrier, each CTA reads the others' results, a second barrier so that none exits while read), the 7B AWQ
// step at 545 tokens took 2.093-2.118 ms on the H100; pushed with one cluster barrier phase 2.071-2.084;
// pushed by st.async 2.038-2.082 (2026-12-05, the same call, docs/PERFORMANCE.md). LMTERM_ATTN_PUSH=0
// pulls, =1 pushes with the barrier (measurement). Returns the kernel's `clustered`.
static int cluster_mode(void)
{
	static const int mode = env_is("LMTERM_ATTN_PUSH", "0") ? 1 : env_is("LMTERM_ATTN_PUSH", "1") ? 2 : 3;
	return mode;
}

// Splits for a decode launch: about two CTAs per multiprocessor, each split at least MIN_SPLIT_KEYS keys of
// max_ctx, at most MAX_CLUSTER with the clustered combine. LMTERM_ATTN_SPLITS overrides it (tuning).
static int decode_splits(int ctas_per_split, int max_ctx)
{
	int cap = max_splits(max_ctx);
	const char *e = getenv("LMTERM_ATTN_SPLITS");
	int s = e && atoi(e) > 0 ? atoi(e) : (2 * sm_count() + ctas_per_split - 1) / ctas_per_split;
	s = s < 1 ? 1 : s > cap ? cap : s;
	if (cluster_on() && s <= 2 * MAX_CLUSTER) { // a power of two up to MAX_CLUSTER
		if (s > MAX_CLUSTER) s = MAX_CLUSTER;
		while (s & (s - 1)) s &= s - 1;
	}
	return s;
}

template <typename T, int HD> static size_t decode_smem_p(int policy)
{
	return policy == 8 ? decode_cfg<T, HD, 8>::smem_push
	       : policy == 4 ? decode_cfg<T, HD, 4>::smem_push
			     : decode_cfg<T, HD, 0>::smem_push;
}

extern "C" size_t attn_decode_cta_smem(const struct kv_cache *kv, enum dtype act_dt)
{
	if (act_dt == DT_F16) return kv->head_dim == 64 ? decode_smem_p<half, 64>(kv->policy) : decode_smem_p<half, 128>(kv->policy);
	return kv->head_dim == 64 ? decode_smem_p<bf16, 64>(kv->policy) : decode_smem_p<bf16, 128>(kv->policy);
}

extern "C" size_t attn_workspace_bytes(int n_heads, int head_dim, int n, int max_ctx)
{
	return (size_t)max_splits(max_ctx) * n * n_heads * ((size_t)head_dim * 4 + 8);
}

template <typename K> static cudaError_t allow_smem(K kernel, int bytes)
{
	return bytes > 48 * 1024 ? cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes)
				 : cudaSuccess;
}

struct attn_args {
	void *out;
	const void *qkv;
	const uint8_t *pool;
	struct kv_geom g;
	int layer, nh;
	const struct attn_step *st;
	float *ws_o;
	float2 *ws_ml;
	int nsplit;
	bool rope; // decode: RoPE and the cache write folded in (attn_launch_rope_attention)
	cudaStream_t s;
};

template <typename T, int HD, int P> static cudaError_t run_prefill(const attn_args &a)
{
	using PC = prefill_cfg<T, HD, P>;
	static bool ready;
	if (!ready) {
		cudaError_t e = allow_smem(prefill_kernel<T, HD, P>, PC::smem);
		if (e != cudaSuccess) return e;
		ready = true;
	}
	const int rows = a.st->n * (a.nh / a.g.n_kv_heads);
	dim3 grid((rows + PC::BM - 1) / PC::BM, a.g.n_kv_heads);
	const float sl2 = 1.4426950408889634f / sqrtf((float)HD);
	return klaunch(prefill_kernel<T, HD, P>, grid, 128, PC::smem, a.s, (T *)a.out, (const T *)a.qkv, a.pool, a.g,
		       a.layer, a.nh, a.st->n, a.st->pos0, a.st->blocks, sl2);
}

template <typename T, int HD, int P, bool ROPE> static cudaError_t run_decode(const attn_args &a)
{
	using DC = decode_cfg<T, HD, P>;
	static bool ready;
	if (!ready) {
		cudaError_t e = allow_smem(decode_kernel<T, HD, P, ROPE>, DC::smem_push);
		if (e != cudaSuccess) return e;
		ready = true;
	}
	const int rows = a.st->n * (a.nh / a.g.n_kv_heads);
	dim3 grid(a.nsplit, a.g.n_kv_heads, (rows + 15) / 16);
	const float sl2 = 1.4426950408889634f / sqrtf((float)HD);
	if (a.nsplit > 1 && a.nsplit <= MAX_CLUSTER && cluster_on()) {
		const int mode = cluster_mode();
		const bool push = mode >= 2;
		return klaunch_cluster(decode_kernel<T, HD, P, ROPE>, grid, 128, push ? DC::smem_push : DC::smem, a.s,
				       a.nsplit, (T *)a.out, a.ws_o, a.ws_ml, (const T *)a.qkv, (uint8_t *)a.pool, a.g,
				       a.layer, a.nh, a.st->n, a.st->pos0, a.st->blocks, sl2, (unsigned *)nullptr,
				       a.st->rope_cs, a.st->rope_mscale, mode);
	}
	// the combine fused into the last split needs a ticket per (kv head, row block): a fixed pool (the split
	// path is taken only for small grids); beyond it, the combine kernel
	unsigned *tickets = nullptr;
	static const bool combine_kernel_only = getenv("LMTERM_ATTN_COMBINE_KERNEL") != nullptr; // measurement
	if (a.nsplit > 1 && (int)(grid.y * grid.z) <= MAX_TICKETS && !combine_kernel_only) {
		cudaError_t e = cudaGetSymbolAddress((void **)&tickets, g_tickets);
		if (e != cudaSuccess) return e;
	}
	cudaError_t e = klaunch(decode_kernel<T, HD, P, ROPE>, grid, 128, DC::smem, a.s, (T *)a.out, a.ws_o,
				a.ws_ml, (const T *)a.qkv, (uint8_t *)a.pool, a.g, a.layer, a.nh, a.st->n, a.st->pos0,
				a.st->blocks, sl2, tickets, a.st->rope_cs, a.st->rope_mscale, 0);
	if (e != cudaSuccess || tickets || a.nsplit == 1) return e;
	const int NR = a.st->n * a.nh;
	return klaunch(combine_kernel<T, HD>, (NR + 3) / 4, 128, 0, a.s, (T *)a.out, (const float *)a.ws_o,
		       (const float2 *)a.ws_ml, NR, a.nsplit);
}

template <typename T, int HD> static cudaError_t dispatch_p(const attn_args &a, bool decode)
{
	switch (a.g.policy) {
	case 8: return !decode ? run_prefill<T, HD, 8>(a) : a.rope ? run_decode<T, HD, 8, true>(a) : run_decode<T, HD, 8, false>(a);
	case 4: return !decode ? run_prefill<T, HD, 4>(a) : a.rope ? run_decode<T, HD, 4, true>(a) : run_decode<T, HD, 4, false>(a);
	default: return !decode ? run_prefill<T, HD, 0>(a) : a.rope ? run_decode<T, HD, 0, true>(a) : run_decode<T, HD, 0, false>(a);
	}
}

static int run(const attn_args &a, enum dtype act_dt, bool decode, const char *what)
{
	cudaError_t e;
	if (act_dt == DT_F16)
		e = a.g.head_dim == 64 ? dispatch_p<half, 64>(a, decode) : dispatch_p<half, 128>(a, decode);
	else
		e = a.g.head_dim == 64 ? dispatch_p<bf16, 64>(a, decode) : dispatch_p<bf16, 128>(a, decode);
	if (e != cudaSuccess) return lm_err("%s: kernel launch failed: %s", what, cudaGetErrorString(e));
	return LM_OK;
}

static int check_args(const struct kv_cache *kv, enum dtype act_dt, int layer, int n_heads,
		      const struct attn_step *st, const char *what)
{
	if (attn_kv_check(kv, act_dt)) return LM_ERR;
	if (layer < 0 || layer >= kv->n_layers || n_heads <= 0 || n_heads % kv->n_kv_heads)
		return lm_err("%s: bad layer %d or head count %d (kv heads %d)", what, layer, n_heads,
			      kv->n_kv_heads);
	if (st->n < 0 || !st->pos0 || !st->blocks) return lm_err("%s: step state is not set", what);
	return LM_OK;
}

static attn_args make_args(void *out, const void *qkv, const struct kv_cache *kv, int layer, int n_heads,
			   const struct attn_step *st, cudaStream_t s)
{
	attn_args a = {};
	a.out = out;
	a.qkv = qkv;
	a.pool = (const uint8_t *)kv->pool;
	a.g = kv_geom_make(kv->n_layers, kv->n_kv_heads, kv->head_dim, kv->block_len, kv->n_blocks, kv->policy);
	a.layer = layer;
	a.nh = n_heads;
	a.st = st;
	a.s = s;
	return a;
}

extern "C" int attn_launch_prefill(void *out, const void *qkv, enum dtype act_dt, const struct kv_cache *kv,
				   int layer, int n_heads, const struct attn_step *st, cudaStream_t s)
{
	if (check_args(kv, act_dt, layer, n_heads, st, "attention")) return LM_ERR;
	if (st->n == 0) return LM_OK;
	return run(make_args(out, qkv, kv, layer, n_heads, st, s), act_dt, false, "attention (prefill)");
}

static int launch_decode(void *out, const void *qkv, enum dtype act_dt, const struct kv_cache *kv, int layer,
			 int n_heads, const struct attn_step *st, void *workspace, size_t workspace_bytes, bool rope,
			 cudaStream_t s)
{
	if (check_args(kv, act_dt, layer, n_heads, st, "attention")) return LM_ERR;
	if (st->n == 0) return LM_OK;
	if (st->max_ctx < st->n)
		return lm_err("attention (decode): max_ctx %d is less than the step's %d tokens (set it to the longest "
			      "context the step, or a captured graph, will see)", st->max_ctx, st->n);
	attn_args a = make_args(out, qkv, kv, layer, n_heads, st, s);
	const int rows = st->n * (n_heads / kv->n_kv_heads);
	const size_t per_split = (size_t)st->n * n_heads * ((size_t)kv->head_dim * 4 + 8);
	int ns = decode_splits(kv->n_kv_heads * ((rows + 15) / 16), st->max_ctx);
	if (!workspace) ns = 1;
	if ((size_t)ns * per_split > workspace_bytes) ns = (int)(workspace_bytes / per_split);
	if (ns < 1) ns = 1; // one split writes the output directly and needs no workspace
	a.nsplit = ns;
	a.rope = rope;
	a.ws_o = (float *)workspace;
	a.ws_ml = (float2 *)((uint8_t *)workspace + (size_t)ns * st->n * n_heads * kv->head_dim * 4);
	return run(a, act_dt, true, "attention (decode)");
}

extern "C" int attn_launch_decode(void *out, const void *qkv, enum dtype act_dt, const struct kv_cache *kv,
				  int layer, int n_heads, const struct attn_step *st, void *workspace,
				  size_t workspace_bytes, cudaStream_t s)
{
	return launch_decode(out, qkv, act_dt, kv, layer, n_heads, st, workspace, workspace_bytes, false, s);
}

// split-K pays off while the prefill grid (64-row tiles per kv head) leaves most multiprocessors idle
static bool use_decode(const struct kv_cache *kv, int n_heads, const struct attn_step *st, const void *workspace)
{
	const int rows = st->n * (n_heads / kv->n_kv_heads);
	const int prefill_ctas = (rows + 63) / 64 * kv->n_kv_heads;
	return workspace && 2 * prefill_ctas < sm_count();
}

extern "C" int attn_launch_attention(void *out, const void *qkv, enum dtype act_dt, const struct kv_cache *kv,
				     int layer, int n_heads, const struct attn_step *st, void *workspace,
				     size_t workspace_bytes, cudaStream_t s)
{
	if (check_args(kv, act_dt, layer, n_heads, st, "attention")) return LM_ERR;
	if (use_decode(kv, n_heads, st, workspace))
		return attn_launch_decode(out, qkv, act_dt, kv, layer, n_heads, st, workspace, workspace_bytes, s);
	return attn_launch_prefill(out, qkv, act_dt, kv, layer, n_heads, st, s);
}

extern "C" int attn_launch_rope_attention(void *out, void *qkv, enum dtype act_dt, const struct kv_cache *kv,
					  int layer, int n_heads, const struct attn_step *st, void *workspace,
					  size_t workspace_bytes, cudaStream_t s)
{
	if (check_args(kv, act_dt, layer, n_heads, st, "attention")) return LM_ERR;
	if (st->n == 1 && st->rope_cs && use_decode(kv, n_heads, st, workspace))
		return launch_decode(out, qkv, act_dt, kv, layer, n_heads, st, workspace, workspace_bytes, true, s);
	if (attn_launch_rope_kv(qkv, act_dt, kv, layer, n_heads, st, s)) return LM_ERR;
	return attn_launch_attention(out, qkv, act_dt, kv, layer, n_heads, st, workspace, workspace_bytes, s);
}
