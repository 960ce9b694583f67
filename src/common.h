/* common.h: status codes, the per-thread error message, dtypes and half-precision conversions.
 * Errors are returned, never exit()ed: a failing function calls lm_err() (which records one clear message
 * naming the file, tensor or option at fault) and returns LM_ERR; the caller may prefix context with
 * lm_err_prefix() and pass the status up. Only main() and the UI turn a status into an exit code. */
#ifndef LMTERM_COMMON_H
#define LMTERM_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
extern "C" {
#endif

enum { LM_OK = 0, LM_ERR = -1 };

/* Record the calling thread's error message (printf format); returns LM_ERR so that `return lm_err(...)` works. */
int lm_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prepend context ("model.safetensors: ") to the current message; returns LM_ERR. */
int lm_err_prefix(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *lm_errmsg(void); /* "" when none */
void lm_err_clear(void);

enum dtype {
	DT_F32, DT_F16, DT_BF16, DT_F64, DT_I64, DT_I32, DT_I16, DT_I8, DT_U8, DT_BOOL,
	DT_Q4, /* AWQ 4-bit: qweight/qzeros/scales, see struct weight */
	DT_COUNT
};
size_t dtype_size(enum dtype dt);        /* bytes per element; 0 for DT_Q4 */
const char *dtype_name(enum dtype dt);   /* "F32", "BF16", ... as safetensors spells them */
int dtype_from_name(const char *name, enum dtype *out); /* safetensors names; LM_ERR if unknown (no message) */

static inline float bf16_to_f32(uint16_t h)
{
	uint32_t u = (uint32_t)h << 16;
	float f;
	memcpy(&f, &u, 4);
	return f;
}
static inline uint16_t f32_to_bf16(float f) /* round to nearest even, NaN kept quiet */
{
	uint32_t u;
	memcpy(&u, &f, 4);
	if ((u & 0x7fffffff) > 0x7f800000) return (uint16_t)((u >> 16) | 0x40);
	return (uint16_t)((u + 0x7fff + ((u >> 16) & 1)) >> 16);
}
float f16_to_f32(uint16_t h);
uint16_t f32_to_f16(float f); /* round to nearest even */
/* Convert n elements of src (F32/F16/BF16) to float. */
void to_f32(float *dst, const void *src, enum dtype dt, size_t n);

/* Wall clock in seconds (CLOCK_MONOTONIC). */
double now_s(void);
/* Seconds on a clock that stands still while the process is stopped between run_clock_pause() and
 * run_clock_resume() (the chat screen's Ctrl-Z until fg): a reply's tokens/s leaves out the time it was stopped,
 * which CLOCK_MONOTONIC counts. Any thread may read it; one at a time may pause and resume it. */
double now_run_s(void);
void run_clock_pause(void);
void run_clock_resume(void);
/* a sampler seed when none is given: the wall clock in nanoseconds and the process id, so that runs started in
 * the same second differ */
uint64_t seed_from_clock(void);

/* fn(ud, begin, end) over contiguous ranges that cover [0, n), on up to n_threads threads (the caller's among
 * them); a thread that cannot be started has its range run by the caller. */
void lm_parallel(int n_threads, int n, void (*fn)(void *ud, int begin, int end), void *ud);
/* the processors this process may run on (its affinity mask; at least 1) */
int lm_cpu_count(void);

/* fd is a terminal that erases the rest of a line with ESC [ K: a progress line can rewrite itself in place
 * ("\r...\033[K"). Not under TERM=dumb or without TERM, where that escape is printed as text. */
bool term_erases_line(int fd);

/* Read a whole file into a NUL-terminated buffer; *len gets its size. LM_ERR with a message naming path. */
int read_file(const char *path, char **buf, size_t *len);
/* path join into a caller buffer: "dir/name" */
void path_join(char *out, size_t n, const char *dir, const char *name);
bool file_exists(const char *path);
bool ends_with(const char *s, const char *suffix);
/* whether the environment variable name is set to exactly val (the measurement switches; callers cache it) */
bool env_is(const char *name, const char *val);

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
#define MIN(a, b) ((a) < (b) ? (a) : (b))
#define MAX(a, b) ((a) > (b) ? (a) : (b))

#ifdef __cplusplus
}
#endif
#endif
