/* histfile.c: the input history file (format and locking in histfile.h). */
#include "config.h"
#include "histfile.h"
#include "common.h"
#include "i18n.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

int histfile_path(char **path)
{
	*path = NULL;
	const char *v = getenv("LMTERM_HISTFILE");
	if (v) {
		if (!*v) return LM_OK; /* set and empty: no history file */
		*path = strdup(v);
	} else {
		const char *x = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
		int k;
		if (x && x[0] == '/') k = asprintf(path, "%s/lmterm/history", x);
		else if (home && *home) k = asprintf(path, "%s/.local/state/lmterm/history", home);
		else return lm_err("%s", _("the input history is not kept: HOME is not set (LMTERM_HISTFILE can name a file)"));
		if (k < 0) *path = NULL;
	}
	return *path ? LM_OK : lm_err("%s", _("out of memory"));
}

/* the escaped entry, with a newline at its end when nl */
static char *escape(const char *s, bool nl, size_t *len)
{
	size_t n = 0;
	for (const char *p = s; *p; p++) n += *p == '\n' || *p == '\\' ? 2 : 1;
	char *o = malloc(n + 2), *q = o;
	if (!o) return NULL;
	for (const char *p = s; *p; p++) {
		if (*p == '\n') { *q++ = '\\'; *q++ = 'n'; }
		else if (*p == '\\') { *q++ = '\\'; *q++ = '\\'; }
		else *q++ = *p;
	}
	if (nl) *q++ = '\n';
	*q = 0;
	if (len) *len = (size_t)(q - o);
	return o;
}

char *histfile_escape(const char *s) { return escape(s, false, NULL); }

void histfile_unescape(char *s)
{
	char *o = s;
	for (char *p = s; *p; p++) {
		if (p[0] == '\\' && (p[1] == 'n' || p[1] == '\\')) {
			*o++ = p[1] == 'n' ? '\n' : '\\';
			p++;
		} else {
			*o++ = *p;
		}
	}
	*o = 0;
}

/* the directories above the file, as mkdir -p (mode 0700: what was typed is private) */
static int mkdirs(const char *path)
{
	char *d = strdup(path);
	if (!d) return -1;
	for (char *s = d + 1; *s; s++) {
		if (*s != '/') continue;
		*s = 0;
		if (mkdir(d, 0700) != 0 && errno != EEXIST) {
			int err = errno;
			free(d);
			errno = err;
			return -1;
		}
		*s = '/';
	}
	free(d);
	return 0;
}

/* the last EDIT_HIST_MAX entries of a file, oldest at e[head] */
struct ring {
	char *e[EDIT_HIST_MAX];
	int head, n;
	int lines;        /* the file's non-empty lines */
};

static char *ring_at(struct ring *r, int i) { return r->e[(r->head + i) % EDIT_HIST_MAX]; }

static void ring_free(struct ring *r)
{
	for (int i = 0; i < r->n; i++) free(ring_at(r, i));
	r->n = 0;
}

/* 0, or an errno */
static int read_entries(FILE *f, struct ring *r)
{
	struct edit tmp;
	if (!edit_init(&tmp)) return ENOMEM;
	char *line = NULL;
	size_t cap = 0;
	ssize_t k;
	int err = 0;
	errno = 0;
	while ((k = getline(&line, &cap, f)) >= 0) {
		if (k > 0 && line[k - 1] == '\n') line[--k] = 0;
		/* a CR before it (a file that went through Windows): not part of the entry, where the editor would
		 * make it a new line and every entry recalled ended in an empty one (lmterm never writes a CR) */
		if (k > 0 && line[k - 1] == '\r') line[--k] = 0;
		if (k == 0) continue;
		r->lines++;
		if (k > INT_MAX / 8) continue; /* not an entry the editor could hold */
		histfile_unescape(line);
		/* what the editor would have made of it (a file edited by hand may hold anything): valid UTF-8,
		 * no control characters but newlines */
		edit_clear(&tmp);
		if (!edit_insert(&tmp, line, (int)strlen(line))) { err = ENOMEM; break; }
		if (edit_blank(&tmp) || (r->n > 0 && strcmp(ring_at(r, r->n - 1), tmp.buf) == 0)) continue;
		char *c = strdup(tmp.buf);
		if (!c) { err = ENOMEM; break; }
		if (r->n == EDIT_HIST_MAX) { /* the oldest goes */
			free(r->e[r->head]);
			r->e[r->head] = c;
			r->head = (r->head + 1) % EDIT_HIST_MAX;
		} else {
			r->e[(r->head + r->n++) % EDIT_HIST_MAX] = c;
		}
		errno = 0;
	}
	if (!err && ferror(f)) err = errno ? errno : EIO;
	free(line);
	edit_free(&tmp);
	return err;
}

/* Replace the file by r's entries: a temporary file beside it, renamed over it (a symbolic link stays one:
 * its target is replaced). The caller holds the lock. */
static int rewrite(struct histfile *h, struct ring *r)
{
	char *target = NULL, *tmp = NULL;
	struct stat st;
	if (lstat(h->path, &st) == 0 && S_ISLNK(st.st_mode)) target = realpath(h->path, NULL);
	const char *dst = target ? target : h->path;
	int err = 0, fd = -1;
	FILE *f = NULL;
	if (asprintf(&tmp, "%s.tmp-%ld", dst, (long)getpid()) < 0) { tmp = NULL; err = ENOMEM; goto out; }
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 && errno == EEXIST && unlink(tmp) == 0) /* left by a session of this pid that was killed */
		fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0 || !(f = fdopen(fd, "w"))) { err = errno; goto out; }
	fd = -1;
	for (int i = 0; i < r->n && !err; i++) {
		size_t n;
		char *l = escape(ring_at(r, i), true, &n);
		if (!l) err = ENOMEM;
		else if (fwrite(l, 1, n, f) != n) err = errno ? errno : EIO;
		free(l);
	}
	if (!err && (fflush(f) != 0 || fsync(fileno(f)) != 0)) err = errno;
	if (fclose(f) != 0 && !err) err = errno;
	f = NULL;
	if (!err && rename(tmp, dst) != 0) err = errno;
out:
	if (fd >= 0) close(fd);
	if (err && tmp) unlink(tmp);
	free(tmp);
	free(target);
	if (err) return lm_err(_("cannot write the input history %s: %s"), h->path, strerror(err));
	h->lines = r->n;
	return LM_OK;
}

/* read the file (into e's history unless e is NULL) and trim it if it holds more than EDIT_HIST_MAX */
static int load_trim(struct histfile *h, struct edit *e)
{
	/* O_NONBLOCK: a FIFO (or a device) named by LMTERM_HISTFILE must not hang the start; only a regular file
	 * is read (the flag does nothing to one) */
	int fd = open(h->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		if (errno == ENOENT) {
			h->lines = 0;
			return LM_OK;
		}
		return lm_err(_("cannot read the input history %s: %s"), h->path, strerror(errno));
	}
	struct stat st = { 0 };
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return lm_err(_("cannot read the input history %s: %s"), h->path,
			      S_ISDIR(st.st_mode) ? strerror(EISDIR) : _("not a regular file"));
	}
	/* exclusive: a trim may follow, and no append may come between the reading and the rename */
	flock(fd, LOCK_EX);
	FILE *f = fdopen(fd, "r");
	if (!f) {
		int err = errno;
		close(fd);
		return lm_err(_("cannot read the input history %s: %s"), h->path, strerror(err));
	}
	struct ring *r = calloc(1, sizeof *r);
	if (!r) {
		fclose(f);
		return lm_err("%s", _("out of memory"));
	}
	int err = read_entries(f, r), rc = LM_OK;
	if (e) {
		for (int i = 0; i < r->n; i++) edit_hist_add(e, ring_at(r, i));
		e->hist_pos = e->n_hist;
	}
	h->lines = r->lines;
	if (err) rc = lm_err(_("cannot read the input history %s: %s"), h->path, strerror(err));
	else if (r->lines > EDIT_HIST_MAX) rc = rewrite(h, r);
	fclose(f); /* and the lock */
	ring_free(r);
	free(r);
	return rc;
}

int histfile_load(struct histfile *h, struct edit *e) { return load_trim(h, e); }

int histfile_append(struct histfile *h, const char *entry)
{
	size_t n;
	char *l = escape(entry, true, &n);
	if (!l) return lm_err("%s", _("out of memory"));
	int fd = -1, err = 0;
	for (int tries = 0;; tries++) {
		fd = open(h->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0600);
		if (fd < 0 && errno == ENOENT && mkdirs(h->path) == 0)
			fd = open(h->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0600);
		if (fd < 0) { err = errno; break; }
		struct stat rs;
		if (fstat(fd, &rs) == 0 && !S_ISREG(rs.st_mode)) { err = EINVAL; break; } /* a FIFO: never block on it */
		if (flock(fd, LOCK_EX) != 0) break; /* no locks here (some network file systems): append all the same */
		/* another session's trim renamed a new file over the one opened: append to the new one */
		struct stat a, b;
		if (tries < 5 && fstat(fd, &a) == 0 && stat(h->path, &b) == 0 && (a.st_dev != b.st_dev || a.st_ino != b.st_ino)) {
			close(fd);
			continue;
		}
		break;
	}
	for (size_t off = 0; !err && off < n;) {
		ssize_t k = write(fd, l + off, n - off);
		if (k < 0 && errno == EINTR) continue;
		if (k <= 0) err = k < 0 ? errno : EIO;
		else off += (size_t)k;
	}
	if (fd >= 0 && close(fd) != 0 && !err) err = errno;
	free(l);
	if (err) return lm_err(_("cannot write the input history %s: %s"), h->path, strerror(err));
	if (++h->lines > EDIT_HIST_MAX + HISTFILE_SLACK) return load_trim(h, NULL);
	return LM_OK;
}

void histfile_free(struct histfile *h)
{
	free(h->path);
	h->path = NULL;
}
