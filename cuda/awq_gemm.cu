// awq_gemm.cu: W4A16 (AWQ, 4-bit weights with an fp16 scale and zero per group of `group` inputs).
//
// Two layouts, both made once at load from AutoAWQ's gemm layout (awq_repack_tiled, awq_repack); which
// one a weight gets follows from its shape and group (awq_tiled_layout), so no flag travels with it.
//
// - Tiled (N % 16 == 0, K % 64 == 0, group 64 or 128: every real checkpoint). Decode (batch 1..8) on the
//   tensor cores: the weights are the A operand of mma.m16n8k16 (16 output rows), the batch the n8
//   columns, so batch 8 costs what batch 1 costs and nothing is left to the CUDA cores but the dequant:
//   one shift, four LOP3 and four HSUB2 per 8 weights (the layout is described below, before the
//   kernels). Every lane issues 16-byte loads of its own fragments (coalesced: a warp reads 512
//   contiguous bytes per instruction), ld.global.nc.L1::no_allocate so that x stays in L1, scale and zero
//   read once per group and row.
// - Row (anything else): qw uint32 [N][K/8], each output row's K inputs contiguous; nibble i of a word
//   holds input 8c + {0,2,4,6,1,3,5,7}[i], so (word >> 4j) & 0x000f000f is the pair of inputs (2j, 2j+1)
//   in the two halves of a 32-bit register; OR-ing in the exponent of 1024 (fp16, 0x6400) or 128 (bf16,
//   0x4300) turns each half into 1024 + q (128 + q) exactly. Decode by HFMA2 on the CUDA cores, a warp
//   per R rows. sz half2 [N][K/group] = (scale, zero).
//
// Prefill (batch > 8): dequantize a slab of rows to fp16/bf16 (k_awq_dequant, at the write bandwidth)
// and let cuBLAS multiply it (tensor cores, fp32 accumulation); the backend works through the rows slab
// by slab. Measured against a fused kernel's alternative in docs/PERFORMANCE.md (AWQ section).
#define PDL_FAMILY "awq" // LMTERM_PDL=awq,... (cuda/pdl.cuh)
#include "config.h"
#include "kernels.h"
#include "ops_common.cuh"
#include "cp_async.cuh"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <type_traits>

static __device__ __forceinline__ uint4 ld_stream4(const uint4 *p)
{
	uint4 v;
	asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0, %1, %2, %3}, [%4];"
		     : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
		     : "l"(p));
	return v;
}

static __device__ __forceinline__ uint32_t lop_or(uint32_t w, int sh, uint32_t magic)
{
	return ((w >> sh) & 0x000f000fu) | magic;
}

enum { AWQ_WARPS = 4 };

// partial dot product of one 32-bit word (8 weights, minus zero) with 8 activations, in float, unscaled
template <typename T> struct awq_dot;
template <> struct awq_dot<half> {
	static __device__ __forceinline__ float word(uint32_t w, uint32_t zz, const uint4 &xv)
	{
		const uint32_t xs[4] = { xv.x, xv.y, xv.z, xv.w };
		half2 acc = __float2half2_rn(0.f);
#pragma unroll
		for (int j = 0; j < 4; j++) {
			uint32_t q = lop_or(w, 4 * j, 0x64006400u);
			half2 d = __hsub2(*(half2 *)&q, *(const half2 *)&zz);
			acc = __hfma2(d, *(const half2 *)&xs[j], acc);
		}
		float2 f = __half22float2(acc);
		return f.x + f.y;
	}
	static __device__ __forceinline__ uint32_t zero_pair(half2 sz)
	{
		half z = __high2half(sz);
		half2 zz = __halves2half2(__hadd(z, __float2half(1024.f)), __hadd(z, __float2half(1024.f)));
		return *(uint32_t *)&zz;
	}
};
template <> struct awq_dot<bf16_t> {
	static __device__ __forceinline__ float word(uint32_t w, uint32_t zz, const uint4 &xv)
	{
		const uint32_t xs[4] = { xv.x, xv.y, xv.z, xv.w };
		const float zf = __uint_as_float(zz << 16); // 128 + z, as float
		float acc = 0.f;
#pragma unroll
		for (int j = 0; j < 4; j++) {
			uint32_t q = lop_or(w, 4 * j, 0x43004300u);
			float q0 = __uint_as_float(q << 16) - zf, q1 = __uint_as_float(q & 0xffff0000u) - zf;
			float x0 = __uint_as_float(xs[j] << 16), x1 = __uint_as_float(xs[j] & 0xffff0000u);
			acc = fmaf(q0, x0, fmaf(q1, x1, acc));
		}
		return acc;
	}
	static __device__ __forceinline__ uint32_t zero_pair(half2 sz)
	{
		// 128 + z as a bf16 in the low half (z is an integer 0..15: exact)
		bf16_t b = __float2bfloat16_rn(128.f + __high2float(sz));
		return (uint32_t) * (uint16_t *)&b;
	}
};

template <typename T, int NB, int R, int U>
__global__ void __launch_bounds__(AWQ_WARPS * 32)
	awq_gemv_kernel(T *__restrict__ y, const uint16_t *__restrict__ x, const uint32_t *__restrict__ qw,
			const half2 *__restrict__ sz, const float *__restrict__ bias, int N, int K, int group)
{
	pdl_wait_trigger();
	const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
	const int row0 = (blockIdx.x * AWQ_WARPS + warp) * R;
	if (row0 >= N) return;
	const int kv = K / 32; // 16-byte chunks (32 weights) per row
	const int G = K / group, cpg = group / 32;
	int rows[R];
#pragma unroll
	for (int r = 0; r < R; r++) rows[r] = min(row0 + r, N - 1);
	float acc[NB][R];
#pragma unroll
	for (int b = 0; b < NB; b++)
#pragma unroll
		for (int r = 0; r < R; r++) acc[b][r] = 0.f;

	for (int c0 = lane; c0 < kv; c0 += 32 * U) {
		uint4 wv[U][R];
		half2 s2[U][R];
#pragma unroll
		for (int u = 0; u < U; u++)
#pragma unroll
			for (int r = 0; r < R; r++) {
				const int c = c0 + 32 * u;
				if (c < kv) {
					wv[u][r] = ld_stream4((const uint4 *)(qw + (size_t)rows[r] * (K / 8)) + c);
					s2[u][r] = __ldg(sz + (size_t)rows[r] * G + c / cpg);
				} else {
					wv[u][r] = make_uint4(0, 0, 0, 0);
					s2[u][r] = __float2half2_rn(0.f);
				}
			}
#pragma unroll
		for (int u = 0; u < U; u++) {
			const int c = c0 + 32 * u;
			if (c >= kv) break;
			uint32_t zz[R];
			float sc[R];
#pragma unroll
			for (int r = 0; r < R; r++) {
				zz[r] = awq_dot<T>::zero_pair(s2[u][r]);
				sc[r] = __low2float(s2[u][r]);
			}
#pragma unroll
			for (int b = 0; b < NB; b++) {
				const uint4 *xp = (const uint4 *)(x + (size_t)b * K) + 4 * c;
				const uint4 x0 = __ldg(xp), x1 = __ldg(xp + 1), x2 = __ldg(xp + 2), x3 = __ldg(xp + 3);
#pragma unroll
				for (int r = 0; r < R; r++) {
					float p = awq_dot<T>::word(wv[u][r].x, zz[r], x0) +
						  awq_dot<T>::word(wv[u][r].y, zz[r], x1) +
						  awq_dot<T>::word(wv[u][r].z, zz[r], x2) +
						  awq_dot<T>::word(wv[u][r].w, zz[r], x3);
					acc[b][r] = fmaf(p, sc[r], acc[b][r]);
				}
			}
		}
	}
#pragma unroll
	for (int b = 0; b < NB; b++)
#pragma unroll
		for (int r = 0; r < R; r++) acc[b][r] = warp_sum_f(acc[b][r]);
	if (lane == 0) {
#pragma unroll
		for (int r = 0; r < R; r++) {
			const int row = row0 + r;
			if (row >= N) break;
			const float bv = bias ? bias[row] : 0.f;
#pragma unroll
			for (int b = 0; b < NB; b++) y[(size_t)b * N + row] = from_f<T>(acc[b][r] + bv);
		}
	}
}

template <typename T, int NB>
static void awq_launch_nb(void *y, const void *x, const uint32_t *qw, const void *sz, const float *bias, int N, int K,
			  int group, cudaStream_t s)
{
	constexpr int R = NB <= 2 ? 1 : NB <= 4 ? 2 : 4;
	constexpr int U = NB <= 2 ? 2 : 1;
	const int rows_per_block = AWQ_WARPS * R;
	klaunch(awq_gemv_kernel<T, NB, R, U>, (N + rows_per_block - 1) / rows_per_block, AWQ_WARPS * 32, 0, s, (T *)y,
		(const uint16_t *)x, qw, (const half2 *)sz, bias, N, K, group);
}

template <typename T>
static void awq_launch_t(void *y, const void *x, const uint32_t *qw, const void *sz, const float *bias, int n, int N,
			 int K, int group, cudaStream_t s)
{
	for_batch(n, [&](auto nb) { awq_launch_nb<T, decltype(nb)::value>(y, x, qw, sz, bias, N, K, group, s); });
}

// one thread per word: 8 weights of row r, inputs 8c..8c+7, written as one 16-byte vector
template <typename T>
__global__ void awq_dequant_kernel(uint16_t *dst, const uint32_t *qw, const half2 *sz, int r0, int rows, int K,
				   int group)
{
	const int kw = K / 8, G = K / group;
	const size_t total = (size_t)rows * kw;
	for (size_t t = (size_t)blockIdx.x * blockDim.x + threadIdx.x; t < total; t += (size_t)gridDim.x * blockDim.x) {
		const size_t r = t / kw;
		const int c = (int)(t % kw);
		const uint32_t w = qw[(r0 + r) * kw + c];
		const half2 p = sz[(r0 + r) * G + (size_t)c * 8 / group];
		const float s = __low2float(p), z = __high2float(p);
		vec8 o;
#pragma unroll
		for (int j = 0; j < 4; j++) {
			set_elem<T>(o, 2 * j, ((float)((w >> (4 * j)) & 15u) - z) * s);
			set_elem<T>(o, 2 * j + 1, ((float)((w >> (4 * j + 16)) & 15u) - z) * s);
		}
		((uint4 *)dst)[t] = o.u;
	}
}

// AutoAWQ packs output columns 8c..8c+7 of one int32 in this nibble order; ours packs inputs the same way
static const int awq_order[8] = { 0, 2, 4, 6, 1, 3, 5, 7 };

extern "C" void awq_repack(uint32_t *qw, uint16_t *sz, const int32_t *qweight, const int32_t *qzeros,
			   const uint16_t *scales, int N, int K, int group)
{
	const int N8 = N / 8, K8 = K / 8, G = K / group;
	int nib_of_col[8]; // AutoAWQ: which nibble holds column 8c + j
	for (int i = 0; i < 8; i++) nib_of_col[awq_order[i]] = i;
	// 8 input rows at a time: each AutoAWQ word (k, c) feeds 8 output rows' words (n = 8c + j, kw)
	for (int kw = 0; kw < K8; kw++)
		for (int c = 0; c < N8; c++) {
			uint32_t in[8], out[8] = { 0 };
			for (int i = 0; i < 8; i++) in[i] = (uint32_t)qweight[(size_t)(8 * kw + i) * N8 + c];
			for (int j = 0; j < 8; j++)
				for (int i = 0; i < 8; i++) { // our nibble i holds input 8kw + awq_order[i]
					uint32_t q = (in[awq_order[i]] >> (4 * nib_of_col[j])) & 15u;
					out[j] |= q << (4 * i);
				}
			for (int j = 0; j < 8; j++) qw[(size_t)(8 * c + j) * K8 + kw] = out[j];
		}
	for (int g = 0; g < G; g++)
		for (int n = 0; n < N; n++) {
			uint32_t zw = (uint32_t)qzeros[(size_t)g * N8 + n / 8];
			float z = (float)((zw >> (4 * nib_of_col[n % 8])) & 15u);
			sz[((size_t)n * G + g) * 2] = scales[(size_t)g * N + n];
			sz[((size_t)n * G + g) * 2 + 1] = f32_to_f16(z);
		}
}

// ------------------------------------------------------------------------------------------------------
// Tiled layout (tensor cores, batch 1..8): row tiles of 16 outputs, K in chunks of 64 inputs. One chunk
// of one tile is 512 bytes: lane l (g = l / 4, t = l % 4) owns the 16-byte vector at offset 16 l, which
// holds its mma.m16n8k16 A fragments for the chunk's four k-steps s = 0..3, one 32-bit word each:
// rows g and g + 8, inputs 64 kc + 16 t + 4 s + {0, 1, 2, 3}. Inside the mma the k order is permuted
// (logical k 2t + {0,1} is input 4s + {0,1}, logical 2t + 8 + {0,1} is input 4s + {2,3}), the same for
// A and B, so that a lane's B fragments (x) for the whole chunk are the 16 contiguous activations
// 64 kc + 16 t + [0, 16): two 16-byte loads. Word s: element i (a_i of the fragment) sits at bits
// 16 (i & 1) + 4 (i >> 1): the pair j = (a_2j, a_2j+1) is (w >> 4j) & 0x000f000f, as in the row layout,
// so OR-ing the fp16 exponent of 1024 (0x6400) makes 1024 + q of pair 0, and the unshifted mask
// 0x00f000f0 under the exponent of 64 (0x5400) makes 64 + q of pair 1: four LOP3, one shift and four
// HSUB2 (which also take the zero off) turn one word into the four A registers; bf16 (7 mantissa bits)
// uses one shift per pair.
// sz: half2 (scale, zero) [N/16][K/group][8][2]: lane g reads rows g and g + 8 of its tile as 8 bytes.
// A warp multiplies one group (128 inputs: 8 mma) with the fp32 accumulator started at zero, then adds
// it times the rows' scales: (q - z) and x are exact fp16, so only the fp32 sums round.
// A block is one row tile; its W warps split K (warp w takes groups w, w + W, ...), TILE_UG groups
// in flight per warp, and add their partial sums through shared memory at the end.

enum { TILE_MAX_WARPS = 16, TILE_UG = 2, TILE_REGS = 56 };

extern "C" bool awq_tiled_layout(int N, int K, int group)
{
	// LMTERM_AWQ_LAYOUT=row: the row layout everywhere (A/B measurements)
	static const bool row_forced = env_is("LMTERM_AWQ_LAYOUT", "row");
	return !row_forced && N > 0 && N % 16 == 0 && K > 0 && K % 64 == 0 && (group == 64 || group == 128) &&
	       K % group == 0;
}

static __device__ __forceinline__ uint32_t h2u(half2 h) { return *(uint32_t *)&h; }
static __device__ __forceinline__ half2 u2h(uint32_t u) { return *(half2 *)&u; }
static __device__ __forceinline__ uint32_t b2u(__nv_bfloat162 h) { return *(uint32_t *)&h; }
static __device__ __forceinline__ __nv_bfloat162 u2b(uint32_t u) { return *(__nv_bfloat162 *)&u; }

// (w & MASK) | MAGIC in one LOP3: written in C, ptxas emits an AND then an OR (two ALU instructions per
// register; both constants are immediates and LOP3 takes one), which made the dequant ALU-bound (ncu, 2026-12-05)
template <uint32_t MASK, uint32_t MAGIC> static __device__ __forceinline__ uint32_t and_or(uint32_t w)
{
	uint32_t r;
	asm("lop3.b32 %0, %1, %2, %3, 0xea;" : "=r"(r) : "r"(w), "n"(MASK), "n"(MAGIC));
	return r;
}

template <typename T> struct tile_ops;
template <> struct tile_ops<half> {
	// per group: k0 = (1024 + z_g) twice (pairs 0, 2: row g), k1 = (64 + z_g+8) twice (pairs 1, 3)
	static __device__ __forceinline__ void zeros(uint2 s, uint32_t &k0, uint32_t &k1)
	{
		const half zl = __high2half(u2h(s.x)), zh = __high2half(u2h(s.y));
		const half a = __hadd(zl, __float2half(1024.f)), b = __hadd(zh, __float2half(64.f));
		k0 = h2u(__halves2half2(a, a));
		k1 = h2u(__halves2half2(b, b));
	}
	// pairs 0 and 2 (bits 0..3 of each half) read 1024 + q under the exponent of 1024 (0x6400), pairs 1 and 3
	// (bits 4..7) 64 + q under the exponent of 64 (0x5400): one LOP3 each, then the exact (q - z)
	static __device__ __forceinline__ void dequant(uint32_t w, uint32_t k0, uint32_t k1, uint32_t a[4])
	{
		const uint32_t w8 = w >> 8;
		a[0] = h2u(__hsub2(u2h(and_or<0x000f000fu, 0x64006400u>(w)), u2h(k0)));
		a[1] = h2u(__hsub2(u2h(and_or<0x00f000f0u, 0x54005400u>(w)), u2h(k1)));
		a[2] = h2u(__hsub2(u2h(and_or<0x000f000fu, 0x64006400u>(w8)), u2h(k0)));
		a[3] = h2u(__hsub2(u2h(and_or<0x00f000f0u, 0x54005400u>(w8)), u2h(k1)));
	}
	static __device__ __forceinline__ void mma(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1)
	{
		asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
		    "{%0, %1, %2, %3};"
		    : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
		    : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
	}
};
template <> struct tile_ops<bf16_t> {
	// k0 = 128 + z_g, k1 = 128 + z_g+8, as bf16 pairs (z is an integer 0..15: exact)
	static __device__ __forceinline__ void zeros(uint2 s, uint32_t &k0, uint32_t &k1)
	{
		const bf16_t a = __float2bfloat16_rn(128.f + __high2float(u2h(s.x)));
		const bf16_t b = __float2bfloat16_rn(128.f + __high2float(u2h(s.y)));
		k0 = b2u(__halves2bfloat162(a, a));
		k1 = b2u(__halves2bfloat162(b, b));
	}
	static __device__ __forceinline__ void dequant(uint32_t w, uint32_t k0, uint32_t k1, uint32_t a[4])
	{
#pragma unroll
		for (int j = 0; j < 4; j++)
			a[j] = b2u(__hsub2(u2b(and_or<0x000f000fu, 0x43004300u>(w >> (4 * j))), u2b(j & 1 ? k1 : k0)));
	}
	static __device__ __forceinline__ void mma(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1)
	{
		asm("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
		    "{%0, %1, %2, %3};"
		    : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
		    : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
	}
};

// The folded norms (backend.h, matmul_residual and norm_matmul): what the kernel does with a tile's sums.
//   EPI_PLAIN: y = acc + bias.
//   EPI_RESID (wo, w2; y unused): d = act(acc + bias) as the plain kernel stores it, then, as add_rmsnorm
//     would: x = act(x + d) in place, xw = act(x * nw) and part[b][tile] = the sum of x^2 over the tile's 16
//     rows (in a fixed order: the norm's scale comes out the same in every block that reads it).
//   EPI_NORM (wqkv): rstd_b = rsqrt(sum of part[b][0 .. K/16) / K + eps), summed in the same order by every
//     block; y = act(rstd * acc + bias).
//   EPI_NORM_SWIGLU (w13 with its rows interleaved at load: tile rows 0-7 gate rows 8 rt .. 8 rt + 7, rows
//     8-15 the same rows of up): gate and up as EPI_NORM rounds them, y[b][8 rt + g] = act(silu(gate) up),
//     y of width N / 2.
// The epilogue's inputs (the partial sums, or x's and nw's 16 rows) are copied into shared memory by
// cp.async at the start, after pdl_wait: in flight during the main loop, in no register.
enum { EPI_PLAIN, EPI_RESID, EPI_NORM, EPI_NORM_SWIGLU };
struct tile_epi {
	int kind;          // EPI_*
	uint16_t *res;     // RESID: x [n][N], updated in place
	uint16_t *xw;      // RESID: x * nw [n][N]
	const float *nw;   // RESID: the next norm's weight [N]
	float *part;       // RESID: written [n][N / 16]; NORM: read [n][K / 16]
	float eps;         // NORM
};

// dynamic shared memory an epilogue needs: RESID 16 floats of nw, then NB x 16 activations of x
static size_t tile_epi_smem(int kind, int NB, int K)
{
	return kind == EPI_RESID ? 64 + 32 * (size_t)NB : kind == EPI_PLAIN ? 0 : (size_t)NB * (K / 16) * sizeof(float);
}

// CPG = chunks of 64 inputs per group (1 or 2); NB = batch (columns of the n8 tile that are used); FOLD: the
// kernel with the epilogues of tile_epi (a second instance, so that the plain one stays the code measured).
// 56 registers (the most ptxas used before the LOP3 fix): two 512-thread blocks or nine 128-thread blocks
// per multiprocessor; without the cap, ptxas may take 80 and halve the warps that keep loads in flight.
template <typename T, int NB, int CPG, bool FOLD>
__global__ void __maxnreg__(TILE_REGS)
	awq_tile_gemv_kernel(T *__restrict__ y, const uint16_t *__restrict__ x, const uint4 *__restrict__ qw,
			     const uint2 *__restrict__ sz, const float *__restrict__ bias, int N, int K, tile_epi e, bool pre)
{
	TRACE_SCOPE;
	__shared__ float4 red[TILE_MAX_WARPS][32];
	extern __shared__ float4 epi_sm[];
	const int W = blockDim.x >> 5, warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
	const int g = lane >> 2, t = lane & 3, rt = blockIdx.x;
	const int KC = K / 64, G = KC / CPG;
	const uint4 *qt = qw + (size_t)rt * KC * 32 + lane; // chunk c of this tile: qt[32 c]
	const uint2 *st = sz + (size_t)rt * G * 8 + g;      // group gi: st[8 gi]
	const bool xon = g < NB;                            // lane g supplies column n = g of B
	const uint4 *xr = (const uint4 *)(x + (size_t)(xon ? g : 0) * K + 16 * t); // chunk c: xr + 8 c
	float acc[4] = { 0.f, 0.f, 0.f, 0.f };
	uint4 wq[TILE_UG][CPG];
	uint2 s2[TILE_UG];
	// the codes and scales of the pass starting at group g0 (x is loaded at the top of the pass)
	auto load_w = [&](int g0) {
#pragma unroll
		for (int u = 0; u < TILE_UG; u++) {
			const int gi = g0 + W * u;
			const bool ok = gi < G;
#pragma unroll
			for (int c = 0; c < CPG; c++)
				wq[u][c] = ok ? ld_stream4(qt + (size_t)(gi * CPG + c) * 32) : make_uint4(0, 0, 0, 0);
			s2[u] = ok ? __ldg(st + 8 * gi) : make_uint2(0, 0);
		}
	};
	// pre: the first pass's weights are asked for before waiting for the kernel that writes x (PDL), so
	// they are in flight during that kernel's tail (the weights are written by no kernel of the step)
	pdl_launch_dependents();
	if (pre) load_w(warp);
	pdl_wait();
	if (!pre) load_w(warp);
	if constexpr (FOLD) {
		if (e.kind == EPI_RESID) { // 4 pieces of nw's 16 floats, then 2 of x's 16 activations per token
			for (int i = threadIdx.x; i < 4 + 2 * NB; i += blockDim.x)
				cp_async16(epi_sm + i,
					   i < 4 ? (const void *)(e.nw + 16 * rt + 4 * i)
						 : (const void *)(e.res + (size_t)((i - 4) >> 1) * N + 16 * rt + 8 * ((i - 4) & 1)),
					   16);
		} else {
			for (int i = threadIdx.x; i < NB * (K / 64); i += blockDim.x)
				cp_async16(epi_sm + i, (const float4 *)e.part + i, 16);
		}
		cp_async_commit();
	}

	// one pass: x's chunks of groups g0 + W u, then the products with the codes in wq and s2
	auto pass = [&](int g0) {
		uint4 xv[TILE_UG][CPG][2];
#pragma unroll
		for (int u = 0; u < TILE_UG; u++) {
			const bool ok = g0 + W * u < G && xon;
#pragma unroll
			for (int c = 0; c < CPG; c++) {
				const int ch = (g0 + W * u) * CPG + c;
				xv[u][c][0] = ok ? __ldg(xr + 8 * ch) : make_uint4(0, 0, 0, 0);
				xv[u][c][1] = ok ? __ldg(xr + 8 * ch + 1) : make_uint4(0, 0, 0, 0);
			}
		}
#pragma unroll
		for (int u = 0; u < TILE_UG; u++) {
			if (g0 + W * u >= G) break;
			uint32_t k0, k1;
			tile_ops<T>::zeros(s2[u], k0, k1);
			float part[4] = { 0.f, 0.f, 0.f, 0.f };
#pragma unroll
			for (int c = 0; c < CPG; c++) {
				const uint32_t wv[4] = { wq[u][c].x, wq[u][c].y, wq[u][c].z, wq[u][c].w };
				const uint32_t xb[8] = { xv[u][c][0].x, xv[u][c][0].y, xv[u][c][0].z, xv[u][c][0].w,
							 xv[u][c][1].x, xv[u][c][1].y, xv[u][c][1].z, xv[u][c][1].w };
#pragma unroll
				for (int s = 0; s < 4; s++) {
					uint32_t a[4];
					tile_ops<T>::dequant(wv[s], k0, k1, a);
					tile_ops<T>::mma(part, a, xb[2 * s], xb[2 * s + 1]);
				}
			}
			const float sl = __low2float(u2h(s2[u].x)), sh = __low2float(u2h(s2[u].y));
			acc[0] = fmaf(part[0], sl, acc[0]);
			acc[1] = fmaf(part[1], sl, acc[1]);
			acc[2] = fmaf(part[2], sh, acc[2]);
			acc[3] = fmaf(part[3], sh, acc[3]);
		}
	};
	if (warp < G) pass(warp); // its codes were loaded above
	TRACE_MARK(1);
	for (int g0 = warp + W * TILE_UG; g0 < G; g0 += W * TILE_UG) {
		load_w(g0);
		pass(g0);
	}
	TRACE_MARK(2);
	if constexpr (FOLD) {
		cp_async_wait<0>();
		if (W == 1) __syncthreads(); // the other lanes' copies (with W > 1, the barrier below)
	}
	if (W > 1) {
		red[warp][lane] = make_float4(acc[0], acc[1], acc[2], acc[3]);
		__syncthreads();
		if (warp) return;
		for (int w = 1; w < W; w++) {
			const float4 p = red[w][lane];
			acc[0] += p.x, acc[1] += p.y, acc[2] += p.z, acc[3] += p.w;
		}
	}
	TRACE_MARK(3);
	// D fragment: acc[0], acc[1] = row g, columns 2t, 2t + 1; acc[2], acc[3] = row g + 8
	const int r0 = 16 * rt + g, r1 = r0 + 8;
	const float b0 = bias ? bias[r0] : 0.f, b1 = bias ? bias[r1] : 0.f;
	if (!FOLD || e.kind == EPI_PLAIN) {
		if (2 * t < NB) {
			y[(size_t)(2 * t) * N + r0] = from_f<T>(acc[0] + b0);
			y[(size_t)(2 * t) * N + r1] = from_f<T>(acc[2] + b1);
		}
		if (2 * t + 1 < NB) {
			y[(size_t)(2 * t + 1) * N + r0] = from_f<T>(acc[1] + b0);
			y[(size_t)(2 * t + 1) * N + r1] = from_f<T>(acc[3] + b1);
		}
		return;
	}
	if (e.kind == EPI_RESID) {
		const float *nws = (const float *)epi_sm;
		const T *xs = (const T *)(epi_sm + 4); // [NB][16]
		const float w0 = nws[g], w1 = nws[g + 8];
		float ss[2];
#pragma unroll
		for (int j = 0; j < 2; j++) { // column (token) 2t + j
			const int c = 2 * t + j;
			ss[j] = 0.f;
			if (c < NB) {
				const float d0 = to_f(from_f<T>(acc[j] + b0)), d1 = to_f(from_f<T>(acc[2 + j] + b1));
				const T x0 = from_f<T>(to_f(xs[16 * c + g]) + d0), x1 = from_f<T>(to_f(xs[16 * c + g + 8]) + d1);
				T *xr0 = (T *)e.res + (size_t)c * N, *xw0 = (T *)e.xw + (size_t)c * N;
				xr0[r0] = x0;
				xr0[r1] = x1;
				xw0[r0] = from_f<T>(to_f(x0) * w0);
				xw0[r1] = from_f<T>(to_f(x1) * w1);
				ss[j] = to_f(x0) * to_f(x0) + to_f(x1) * to_f(x1);
			}
		}
		// the tile's 16 rows: the 8 lanes of this t (g = lane >> 2), in a fixed order
#pragma unroll
		for (int o = 4; o < 32; o <<= 1) {
			ss[0] += __shfl_xor_sync(0xffffffffu, ss[0], o);
			ss[1] += __shfl_xor_sync(0xffffffffu, ss[1], o);
		}
		if (g == 0) {
			if (2 * t < NB) e.part[(size_t)(2 * t) * (N / 16) + rt] = ss[0];
			if (2 * t + 1 < NB) e.part[(size_t)(2 * t + 1) * (N / 16) + rt] = ss[1];
		}
		return;
	}
	// EPI_NORM, EPI_NORM_SWIGLU: the norm's scale of tokens 2t and 2t + 1
	const float *ps = (const float *)epi_sm;
	const int P = K / 16;
	float rs[2] = { 0.f, 0.f };
#pragma unroll
	for (int b = 0; b < NB; b++) {
		float v = 0.f;
		for (int i = lane; i < P; i += 32) v += ps[b * P + i];
		v = rsqrtf(warp_sum_f(v) / K + e.eps);
		if (b == 2 * t) rs[0] = v;
		if (b == 2 * t + 1) rs[1] = v;
	}
#pragma unroll
	for (int j = 0; j < 2; j++) {
		const int c = 2 * t + j;
		if (c >= NB) break;
		const T o0 = from_f<T>(acc[j] * rs[j] + b0), o1 = from_f<T>(acc[2 + j] * rs[j] + b1);
		if (e.kind == EPI_NORM) {
			y[(size_t)c * N + r0] = o0;
			y[(size_t)c * N + r1] = o1;
		} else {
			y[(size_t)c * (N / 2) + 8 * rt + g] = from_f<T>(silu_f(to_f(o0)) * to_f(o1));
		}
	}
}

// Warps per block: enough warps on the whole GPU to keep the loads in flight (about 32 per SM), then fewer if
// that alone puts the grid in one wave instead of part of a second: wqkv (384 tiles) at 16 warps runs 264
// blocks, then 120; at 8 warps all 384 at once, each warp making two passes (6.75 against 7.37 us alone,
// H200, 2026-12-05). Not below 8: w13 at 2 warps (one wave) took 23.8 us against 19.5 at 4 (1.5 waves).
// LMTERM_AWQ_W=1..16 sets it for every shape (measurement).
static int tile_warps(int N, int K, int G)
{
	static int w_env = -1, sms = 0;
	if (w_env < 0) {
		const char *e = getenv("LMTERM_AWQ_W");
		w_env = e && atoi(e) >= 1 && atoi(e) <= TILE_MAX_WARPS ? atoi(e) : 0;
		int dev = 0;
		if (cudaGetDevice(&dev) != cudaSuccess ||
		    cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess || sms < 1)
			sms = 132;
	}
	if (w_env) return w_env < G ? w_env : G;
	// LMTERM_AWQ_WN=N:W[,N:W...]: W warps for the matrices of N rows only, NxK:W of N rows and K inputs
	// (measurement)
	static char wn[128];
	static int wn_read;
	if (!wn_read) {
		const char *e = getenv("LMTERM_AWQ_WN");
		if (e) snprintf(wn, sizeof wn, "%s", e);
		wn_read = 1;
	}
	for (const char *p = wn; *p;) {
		int n = 0, k = 0, w = 0;
		const bool nk = sscanf(p, "%dx%d:%d", &n, &k, &w) == 3;
		if ((nk || sscanf(p, "%d:%d", &n, &w) == 2) && n == N && (!nk || k == K) && w >= 1 && w <= TILE_MAX_WARPS)
			return w < G ? w : G;
		p = strchr(p, ',');
		if (!p) break;
		p++;
	}
	const int tiles = N / 16, want = sms * 32;
	int w = 1;
	while (w < TILE_MAX_WARPS && tiles * w < want) w *= 2;
	while (w > 1 && w > G) w /= 2;
	// blocks that fit on one multiprocessor at w warps (registers; 2048 threads)
	auto per_sm = [](int w) { return MIN(65536 / (TILE_REGS * 32 * w), 64 / w); };
	if (w >= 16 && tiles > sms * per_sm(w) && tiles <= sms * per_sm(w / 2) && w / 2 <= G / TILE_UG) w /= 2;
	return w;
}

// Whether each warp's first pass of weights is loaded before pdl_wait (the kernel's `pre`): by default yes.
// Under PDL the blocks of a GEMV become resident while the kernel before it drains (its last wave, the
// attention's merge), and their loads keep the memory busy there: 459-463 -> 477-480 tokens/s for the 7B AWQ
// step on the H100 (2026-12-05, docs/PERFORMANCE.md). wo's whole matrix (one pass per warp) is then read
// during the attention. LMTERM_AWQ_PRE=0: after the wait (measurement).
static bool tile_pre(void)
{
	static const bool pre = !env_is("LMTERM_AWQ_PRE", "0");
	return pre;
}

template <typename T, int NB>
static void tile_launch_nb(void *y, const void *x, const void *qw, const void *sz, const float *bias, int N, int K,
			   int group, const tile_epi &e, cudaStream_t s)
{
	const int G = K / group, W = tile_warps(N, K, G);
	auto kern = e.kind == EPI_PLAIN ? (group == 64 ? awq_tile_gemv_kernel<T, NB, 1, false> : awq_tile_gemv_kernel<T, NB, 2, false>)
					: (group == 64 ? awq_tile_gemv_kernel<T, NB, 1, true> : awq_tile_gemv_kernel<T, NB, 2, true>);
	klaunch(kern, N / 16, W * 32, tile_epi_smem(e.kind, NB, K), s, (T *)y, (const uint16_t *)x, (const uint4 *)qw,
		(const uint2 *)sz, bias, N, K, e, tile_pre());
}

template <typename T>
static void tile_launch_t(void *y, const void *x, const void *qw, const void *sz, const float *bias, int n, int N,
			  int K, int group, const tile_epi &e, cudaStream_t s)
{
	for_batch(n, [&](auto nb) { tile_launch_nb<T, decltype(nb)::value>(y, x, qw, sz, bias, N, K, group, e, s); });
}

// prefill: one thread per 16-byte vector of the tiled layout = rows g, g + 8 of a tile, 16 inputs each
template <typename T>
__global__ void awq_tile_dequant_kernel(uint16_t *dst, const uint4 *qw, const uint2 *sz, int rt0, int tiles, int K,
					int group)
{
	const int KC = K / 64, G = K / group;
	const size_t total = (size_t)tiles * KC * 32;
	for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += (size_t)gridDim.x * blockDim.x) {
		const int lane = (int)(i & 31), g = lane >> 2, t = lane & 3;
		const size_t ch = i >> 5; // chunk within the slab
		const int rt = (int)(ch / KC), kc = (int)(ch % KC);
		const uint4 w4 = qw[((size_t)rt0 * KC) * 32 + i];
		const uint2 s2 = sz[((size_t)(rt0 + rt) * G + (size_t)kc * 64 / group) * 8 + g];
		const float sl = __low2float(u2h(s2.x)), zl = __high2float(u2h(s2.x));
		const float sh = __low2float(u2h(s2.y)), zh = __high2float(u2h(s2.y));
		const uint32_t wv[4] = { w4.x, w4.y, w4.z, w4.w };
		vec8 lo[2], hi[2]; // rows g and g + 8, inputs 16 t + [0, 16)
		if constexpr (sizeof(T) == 2 && std::is_same<T, half>::value) {
			// (q - z) exact from the decode kernel's LOP3 trick, then one HMUL2 by the scale: the exact
			// product rounded once, as the float path below
			uint32_t k0, k1, lw[8], hw[8];
			tile_ops<half>::zeros(s2, k0, k1);
			const half2 sl2 = __low2half2(u2h(s2.x)), sh2 = __low2half2(u2h(s2.y));
#pragma unroll
			for (int s = 0; s < 4; s++) {
				uint32_t a[4];
				tile_ops<half>::dequant(wv[s], k0, k1, a);
				lw[2 * s] = h2u(__hmul2(u2h(a[0]), sl2));     // row g, inputs 4s + {0, 1}
				lw[2 * s + 1] = h2u(__hmul2(u2h(a[2]), sl2)); // row g, inputs 4s + {2, 3}
				hw[2 * s] = h2u(__hmul2(u2h(a[1]), sh2));     // row g + 8
				hw[2 * s + 1] = h2u(__hmul2(u2h(a[3]), sh2));
			}
			lo[0].u = make_uint4(lw[0], lw[1], lw[2], lw[3]);
			lo[1].u = make_uint4(lw[4], lw[5], lw[6], lw[7]);
			hi[0].u = make_uint4(hw[0], hw[1], hw[2], hw[3]);
			hi[1].u = make_uint4(hw[4], hw[5], hw[6], hw[7]);
		} else
#pragma unroll
		for (int s = 0; s < 4; s++)
#pragma unroll
			for (int i8 = 0; i8 < 8; i8++) { // element i8 of word s
				const float q = (float)((wv[s] >> (16 * (i8 & 1) + 4 * (i8 >> 1))) & 15u);
				const int k = 4 * s + 2 * (i8 >> 2) + (i8 & 1);
				if ((i8 >> 1) & 1) set_elem<T>(hi[k >> 3], k & 7, (q - zh) * sh);
				else set_elem<T>(lo[k >> 3], k & 7, (q - zl) * sl);
			}
		uint16_t *o = dst + ((size_t)(16 * rt + g) * K + (size_t)kc * 64 + 16 * t);
		((uint4 *)o)[0] = lo[0].u;
		((uint4 *)o)[1] = lo[1].u;
		((uint4 *)(o + (size_t)8 * K))[0] = hi[0].u;
		((uint4 *)(o + (size_t)8 * K))[1] = hi[1].u;
	}
}

struct repack_job {
	uint32_t *qw;
	uint16_t *sz;
	const int32_t *qweight, *qzeros;
	const uint16_t *scales;
	int N, K, group;
	bool gate_up;
};

// row tiles [rt0, rt1) of awq_repack_tiled
static void repack_tiles(void *ud, int rt0, int rt1)
{
	const repack_job *j = (const repack_job *)ud;
	const int N = j->N, K = j->K, N8 = N / 8, KC = K / 64, G = K / j->group;
	int nib_of_col[8]; // AutoAWQ: which nibble holds column 8c + j
	for (int i = 0; i < 8; i++) nib_of_col[awq_order[i]] = i;
	// the AutoAWQ word column (8 output rows) of tile rt's rows 8 h .. 8 h + 7: the next two in order, or with
	// gate_up (EPI_NORM_SWIGLU) gate rows 8 rt .. 8 rt + 7 and then the same rows of up
	auto col8 = [&](int rt, int h) { return j->gate_up ? h * (N8 / 2) + rt : 2 * rt + h; };
	uint8_t tile[16][64];
	for (int kc = 0; kc < KC; kc++)
		for (int rt = rt0; rt < rt1; rt++) {
			for (int kk = 0; kk < 64; kk++)
				for (int h = 0; h < 2; h++) {
					const uint32_t wd = (uint32_t)j->qweight[(size_t)(64 * kc + kk) * N8 + col8(rt, h)];
					for (int c = 0; c < 8; c++) tile[8 * h + c][kk] = (wd >> (4 * nib_of_col[c])) & 15u;
				}
			uint32_t *o = j->qw + ((size_t)rt * KC + kc) * 128;
			for (int lane = 0; lane < 32; lane++) {
				const int g = lane >> 2, t = lane & 3;
				for (int s = 0; s < 4; s++) {
					uint32_t word = 0;
					for (int i = 0; i < 8; i++) {
						const int row = g + 8 * ((i >> 1) & 1), k = 16 * t + 4 * s + 2 * (i >> 2) + (i & 1);
						word |= (uint32_t)tile[row][k] << (16 * (i & 1) + 4 * (i >> 1));
					}
					o[lane * 4 + s] = word;
				}
			}
		}
	for (int rt = rt0; rt < rt1; rt++)
		for (int gi = 0; gi < G; gi++)
			for (int g = 0; g < 8; g++)
				for (int h = 0; h < 2; h++) {
					const int n = 8 * col8(rt, h) + g; // the AutoAWQ row
					const uint32_t zw = (uint32_t)j->qzeros[(size_t)gi * N8 + n / 8];
					const size_t o = (((size_t)rt * G + gi) * 8 + g) * 2 + h;
					j->sz[2 * o] = j->scales[(size_t)gi * N + n];
					j->sz[2 * o + 1] = f32_to_f16((float)((zw >> (4 * nib_of_col[n % 8])) & 15u));
				}
}

// At load, on the host: single-threaded it took 0.12 s for a w13 of 28672 x 4096 (7 s for a 7B model, more
// than reading and uploading its 3.9 GB), so the row tiles are shared out over the processors (at most 16).
extern "C" void awq_repack_tiled(uint32_t *qw, uint16_t *sz, const int32_t *qweight, const int32_t *qzeros,
				 const uint16_t *scales, int N, int K, int group, bool gate_up)
{
	repack_job j = { qw, sz, qweight, qzeros, scales, N, K, group, gate_up };
	const int NT = N / 16;
	lm_parallel(NT >= 64 ? MIN(lm_cpu_count(), 16) : 1, NT, repack_tiles, &j); // small ones: no threads
}

// ------------------------------------------------------------------------------------------------------
// entry points: the layout follows from the shape and group (awq_tiled_layout), as at load

extern "C" bool k_awq_gemv_supported(int n, int N, int K, int group)
{
	if (n < 1 || n > 8 || group <= 0 || K % group) return false;
	return awq_tiled_layout(N, K, group) || group % 32 == 0;
}

extern "C" int k_awq_gemv(void *y, const void *x, const uint32_t *qw, const void *sz, const float *bias, int n, int N,
			  int K, int group, enum dtype act, cudaStream_t s)
{
	if (!k_awq_gemv_supported(n, N, K, group))
		return lm_err("AWQ gemv: unsupported shape (batch %d, K %d, group %d)", n, K, group);
	if (N <= 0) return LM_OK;
	if (awq_tiled_layout(N, K, group)) {
		const tile_epi e = { EPI_PLAIN, nullptr, nullptr, nullptr, nullptr, 0.f };
		if (act == DT_BF16) tile_launch_t<bf16_t>(y, x, qw, sz, bias, n, N, K, group, e, s);
		else tile_launch_t<half>(y, x, qw, sz, bias, n, N, K, group, e, s);
	} else {
		if (act == DT_BF16) awq_launch_t<bf16_t>(y, x, qw, sz, bias, n, N, K, group, s);
		else awq_launch_t<half>(y, x, qw, sz, bias, n, N, K, group, s);
	}
	LAUNCHED("AWQ gemv");
}

// the folded norms (struct tile_epi): whether this weight's GEMV at batch n can carry them
extern "C" bool k_awq_fold_supported(int n, int N, int K, int group)
{
	// shared memory: the 8 KB of red[] and the epilogue's must stay under the 48 KB a block gets without opting in
	return n >= 1 && n <= 8 && awq_tiled_layout(N, K, group) && tile_epi_smem(EPI_NORM, n, K) <= 32 * 1024;
}

// x += a . W^T (+ bias), xw = x * nw, part = the sums of x^2 per row tile (EPI_RESID)
extern "C" int k_awq_gemv_residual(void *x, void *xw, float *part, const void *a, const uint32_t *qw, const void *sz,
				   const float *bias, const float *nw, int n, int N, int K, int group, enum dtype act,
				   cudaStream_t s)
{
	if (!k_awq_fold_supported(n, N, K, group))
		return lm_err("AWQ gemv + residual: unsupported shape (batch %d, %d x %d, group %d)", n, N, K, group);
	const tile_epi e = { EPI_RESID, (uint16_t *)x, (uint16_t *)xw, nw, part, 0.f };
	if (act == DT_BF16) tile_launch_t<bf16_t>(nullptr, a, qw, sz, bias, n, N, K, group, e, s);
	else tile_launch_t<half>(nullptr, a, qw, sz, bias, n, N, K, group, e, s);
	LAUNCHED("AWQ gemv + residual");
}

// y = rmsnorm(x) . W^T (+ bias) from xw = x * nw and the sums of x^2 (EPI_NORM); with swiglu, W's rows
// interleaved by awq_repack_tiled(gate_up) and y = swiglu of that, [n][N / 2] (EPI_NORM_SWIGLU)
extern "C" int k_awq_gemv_norm(void *y, const void *xw, const float *part, float eps, bool swiglu, const uint32_t *qw,
			       const void *sz, const float *bias, int n, int N, int K, int group, enum dtype act,
			       cudaStream_t s)
{
	if (!k_awq_fold_supported(n, N, K, group))
		return lm_err("AWQ gemv + norm: unsupported shape (batch %d, %d x %d, group %d)", n, N, K, group);
	const tile_epi e = { swiglu ? EPI_NORM_SWIGLU : EPI_NORM, nullptr, nullptr, nullptr, (float *)part, eps };
	if (act == DT_BF16) tile_launch_t<bf16_t>(y, xw, qw, sz, bias, n, N, K, group, e, s);
	else tile_launch_t<half>(y, xw, qw, sz, bias, n, N, K, group, e, s);
	LAUNCHED("AWQ gemv + norm");
}

extern "C" int k_awq_dequant(void *dst, const uint32_t *qw, const void *sz, int r0, int rows, int N, int K, int group,
			     enum dtype act, cudaStream_t s)
{
	if (K % 8 || group <= 0 || group % 8 || K % group) return lm_err("AWQ dequant: K %d, group %d", K, group);
	const size_t total = (size_t)rows * (K / 8);
	if (!total) return LM_OK;
	const int blocks = (int)MIN((total + 255) / 256, (size_t)65535);
	if (awq_tiled_layout(N, K, group)) {
		if (r0 % 16 || rows % 16) return lm_err("AWQ dequant: rows %d..%d are not whole tiles", r0, r0 + rows);
		const int tb = (int)MIN((total / 4 + 255) / 256, (size_t)65535); // a thread per 32 weights
		if (act == DT_BF16)
			awq_tile_dequant_kernel<bf16_t><<<tb, 256, 0, s>>>((uint16_t *)dst, (const uint4 *)qw,
									       (const uint2 *)sz, r0 / 16, rows / 16, K, group);
		else
			awq_tile_dequant_kernel<half><<<tb, 256, 0, s>>>((uint16_t *)dst, (const uint4 *)qw,
									     (const uint2 *)sz, r0 / 16, rows / 16, K, group);
	} else if (act == DT_BF16)
		awq_dequant_kernel<bf16_t><<<blocks, 256, 0, s>>>((uint16_t *)dst, qw, (const half2 *)sz, r0, rows, K, group);
	else
		awq_dequant_kernel<half><<<blocks, 256, 0, s>>>((uint16_t *)dst, qw, (const half2 *)sz, r0, rows, K, group);
	LAUNCHED("AWQ dequant");
}
