#include "config.h"
#include "common.h"
#include "i18n.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static _Thread_local char errbuf[1600];

int lm_err(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(errbuf, sizeof errbuf, fmt, ap);
	va_end(ap);
	return LM_ERR;
}

int lm_err_prefix(const char *fmt, ...)
{
	char pre[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(pre, sizeof pre, fmt, ap);
	va_end(ap);
	/* pre + the message so far, whose end is cut if both do not fit */
	size_t np = strlen(pre), no = strlen(errbuf);
	if (np > sizeof errbuf - 1) np = sizeof errbuf - 1;
	if (no > sizeof errbuf - 1 - np) no = sizeof errbuf - 1 - np;
	memmove(errbuf + np, errbuf, no);
	memcpy(errbuf, pre, np);
	errbuf[np + no] = 0;
	return LM_ERR;
}

const char *lm_errmsg(void) { return errbuf; }
void lm_err_clear(void) { errbuf[0] = 0; }

const char *lm_cgettext(const char *msgid)
{
#if ENABLE_NLS
	const char *t = gettext(msgid);
#else
	const char *t = msgid;
#endif
	if (t == msgid) { /* untranslated: drop the "context|" prefix */
		const char *bar = strchr(msgid, '|');
		return bar ? bar + 1 : msgid;
	}
	return t;
}

static const struct { const char *name; size_t size; } dtypes[DT_COUNT] = {
	[DT_F32] = { "F32", 4 }, [DT_F16] = { "F16", 2 }, [DT_BF16] = { "BF16", 2 }, [DT_F64] = { "F64", 8 },
	[DT_I64] = { "I64", 8 }, [DT_I32] = { "I32", 4 }, [DT_I16] = { "I16", 2 }, [DT_I8] = { "I8", 1 },
	[DT_U8] = { "U8", 1 }, [DT_BOOL] = { "BOOL", 1 }, [DT_Q4] = { "Q4", 0 },
};

size_t dtype_size(enum dtype dt) { return dt < DT_COUNT ? dtypes[dt].size : 0; }
const char *dtype_name(enum dtype dt) { return dt < DT_COUNT ? dtypes[dt].name : "?"; }

int dtype_from_name(const char *name, enum dtype *out)
{
	for (int i = 0; i < DT_COUNT; i++)
		if (i != DT_Q4 && strcmp(name, dtypes[i].name) == 0) {
			*out = (enum dtype)i;
			return LM_OK;
		}
	return LM_ERR;
}

float f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000) << 16, exp = (h >> 10) & 0x1f, man = h & 0x3ff, u;
	if (exp == 0) {
		if (man == 0) {
			u = sign;
		} else { /* subnormal: normalize */
			int e = -1;
			do { e++; man <<= 1; } while (!(man & 0x400));
			u = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
		}
	} else if (exp == 31) {
		u = sign | 0x7f800000 | (man << 13);
	} else {
		u = sign | ((exp + 127 - 15) << 23) | (man << 13);
	}
	union { uint32_t u; float f; } v = { .u = u };
	return v.f;
}

uint16_t f32_to_f16(float f)
{
	union { uint32_t u; float f; } v = { .f = f };
	uint32_t u = v.u, sign = (u >> 16) & 0x8000;
	uint32_t a = u & 0x7fffffff;
	if (a > 0x7f800000) return (uint16_t)(sign | 0x7e00);
	if (a >= 0x477ff000) return (uint16_t)(sign | 0x7c00); /* overflow (rounds to inf) */
	if (a < 0x38800000) { /* subnormal or zero in f16 */
		if (a < 0x33000000) return (uint16_t)sign;
		uint32_t man = (a & 0x7fffff) | 0x800000;
		int shift = 126 - (int)(a >> 23); /* 14..24 */
		uint32_t r = man >> shift, rem = man & ((1u << shift) - 1), half = 1u << (shift - 1);
		if (rem > half || (rem == half && (r & 1))) r++;
		return (uint16_t)(sign | r);
	}
	uint32_t r = ((a >> 13) - ((127 - 15) << 10));
	uint32_t rem = a & 0x1fff;
	if (rem > 0x1000 || (rem == 0x1000 && (r & 1))) r++;
	return (uint16_t)(sign | r);
}

void to_f32(float *dst, const void *src, enum dtype dt, size_t n)
{
	switch (dt) {
	case DT_F32: memcpy(dst, src, n * 4); break;
	case DT_F16: for (size_t i = 0; i < n; i++) dst[i] = f16_to_f32(((const uint16_t *)src)[i]); break;
	case DT_BF16: for (size_t i = 0; i < n; i++) dst[i] = bf16_to_f32(((const uint16_t *)src)[i]); break;
	default: for (size_t i = 0; i < n; i++) dst[i] = NAN; break;
	}
}

double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* While running, now_run_s() is the monotonic clock less run_offset_ns (the time spent stopped so far); while
 * paused it reads run_frozen_ns, its value at the pause. Frozen before the process stops, so that a thread that
 * wakes at SIGCONT before the pausing one has called run_clock_resume() still does not count the stop. */
static _Atomic int64_t run_offset_ns, run_frozen_ns; /* run_frozen_ns 0: running */

static int64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

double now_run_s(void)
{
	int64_t f = atomic_load(&run_frozen_ns);
	return (f ? f : mono_ns() - atomic_load(&run_offset_ns)) * 1e-9;
}

void run_clock_pause(void)
{
	atomic_store(&run_frozen_ns, mono_ns() - atomic_load(&run_offset_ns));
}

void run_clock_resume(void)
{
	int64_t f = atomic_load(&run_frozen_ns);
	if (!f) return;
	atomic_store(&run_offset_ns, mono_ns() - f); /* the clock goes on from where it stood */
	atomic_store(&run_frozen_ns, 0);
}

uint64_t seed_from_clock(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (uint64_t)ts.tv_sec * 1000000007ull ^ (uint64_t)ts.tv_nsec ^ (uint64_t)getpid();
}

bool term_erases_line(int fd)
{
	const char *term = getenv("TERM");
	return isatty(fd) && term && *term && strcmp(term, "dumb") != 0;
}

int read_file(const char *path, char **buf, size_t *len)
{
	/* O_NONBLOCK: opening a FIFO must not wait for a writer; it is refused below like any non-regular file */
	int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) return lm_err(_("%s: cannot open: %s"), path, strerror(errno));
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return lm_err(_("%s: not a regular file"), path);
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
	FILE *f = fdopen(fd, "rb");
	if (!f) {
		close(fd);
		return lm_err(_("%s: cannot open: %s"), path, strerror(errno));
	}
	char *b = malloc((size_t)st.st_size + 1);
	if (!b) {
		fclose(f);
		return lm_err(_("%s: out of memory reading %lld bytes"), path, (long long)st.st_size);
	}
	size_t n = fread(b, 1, (size_t)st.st_size, f);
	int bad = ferror(f);
	fclose(f);
	if (bad || n != (size_t)st.st_size) {
		free(b);
		return lm_err(_("%s: read error"), path);
	}
	b[n] = 0;
	*buf = b;
	if (len) *len = n;
	return LM_OK;
}

void path_join(char *out, size_t n, const char *dir, const char *name)
{
	size_t l = strlen(dir);
	snprintf(out, n, "%s%s%s", dir, (l && dir[l - 1] == '/') ? "" : "/", name);
}

bool ends_with(const char *s, const char *suffix)
{
	size_t a = strlen(s), b = strlen(suffix);
	return a >= b && strcmp(s + a - b, suffix) == 0;
}

bool env_is(const char *name, const char *val)
{
	const char *e = getenv(name);
	return e && strcmp(e, val) == 0;
}

bool file_exists(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0;
}

struct job {
	void (*fn)(void *, int, int);
	void *ud;
	int begin, end;
};

static void *job_main(void *p)
{
	struct job *j = p;
	j->fn(j->ud, j->begin, j->end);
	return NULL;
}

void lm_parallel(int n_threads, int n, void (*fn)(void *ud, int begin, int end), void *ud)
{
	if (n_threads > 64) n_threads = 64;
	if (n_threads > n) n_threads = n;
	if (n_threads <= 1) {
		if (n > 0) fn(ud, 0, n);
		return;
	}
	struct job jobs[64];
	pthread_t th[64];
	bool started[64] = { 0 };
	for (int t = 0; t < n_threads; t++) {
		jobs[t] = (struct job){ fn, ud, (int)((long)n * t / n_threads), (int)((long)n * (t + 1) / n_threads) };
		if (t > 0) started[t] = pthread_create(&th[t], NULL, job_main, &jobs[t]) == 0;
	}
	job_main(&jobs[0]);
	for (int t = 1; t < n_threads; t++) {
		if (started[t]) pthread_join(th[t], NULL);
		else job_main(&jobs[t]); /* could not start a thread: do its share here */
	}
}

int lm_cpu_count(void)
{
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0) return CPU_COUNT(&set);
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (int)n : 1;
}
