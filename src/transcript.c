/* transcript.c: /save (the file's form in transcript.h). */
#include "config.h"
#include "transcript.h"
#include "common.h"
#include "i18n.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------------ a conversation kept by the REPL */

void transcript_add(struct transcript *t, enum tr_role r, const char *text, size_t len)
{
	if (t->n == t->cap) {
		int cap = t->cap ? 2 * t->cap : 16;
		struct tr_msg *m = realloc(t->m, cap * sizeof *m);
		if (!m) { t->oom = true; return; }
		t->m = m;
		t->cap = cap;
	}
	struct tr_msg *m = &t->m[t->n];
	memset(m, 0, sizeof *m);
	m->role = r;
	m->text = malloc(len + 1);
	if (!m->text) { t->oom = true; return; }
	memcpy(m->text, text, len);
	m->text[len] = 0;
	m->len = len;
	t->n++;
}

void transcript_append(struct transcript *t, const char *text, size_t len)
{
	if (t->n == 0) return;
	struct tr_msg *m = &t->m[t->n - 1];
	char *p = realloc(m->text, m->len + len + 1);
	if (!p) { t->oom = true; return; }
	memcpy(p + m->len, text, len);
	m->len += len;
	p[m->len] = 0;
	m->text = p;
}

void transcript_drop_empty(struct transcript *t)
{
	if (t->n > 0 && t->m[t->n - 1].len == 0) free(t->m[--t->n].text);
}

void transcript_clear(struct transcript *t)
{
	for (int i = 0; i < t->n; i++) free(t->m[i].text);
	t->n = 0;
	t->oom = false;
}

void transcript_free(struct transcript *t)
{
	transcript_clear(t);
	free(t->m);
	memset(t, 0, sizeof *t);
}

/* ------------------------------------------------------------------ /save */

bool transcript_is_save(const char *text, const char **arg)
{
	if (strncmp(text, "/save", 5) != 0) return false;
	const char *p = text + 5;
	if (*p && *p != ' ' && *p != '\t' && *p != '\n') return false; /* "/saved" is a message */
	while (*p == ' ' || *p == '\t') p++;
	*arg = p;
	return true;
}

#define DEFAULT_FMT "lmterm-chat-%Y%m%d-%H%M%S.md"

/* The file that arg names (malloc'd); *dflt: the default name was used. NULL with a message: a bad name. */
static char *resolve(const char *arg, const struct tm *now, bool *dflt)
{
	size_t n = strlen(arg);
	while (n > 0 && (arg[n - 1] == ' ' || arg[n - 1] == '\t' || arg[n - 1] == '\n')) n--;
	if (memchr(arg, '\n', n)) {
		lm_err("%s", _("/save: the file name must be on one line"));
		return NULL;
	}
	if (n >= 2 && (arg[0] == '"' || arg[0] == '\'') && arg[n - 1] == arg[0]) { /* "my notes.md" */
		arg++;
		n -= 2;
	}
	char name[64];
	strftime(name, sizeof name, DEFAULT_FMT, now);
	*dflt = n == 0;
	const char *home = "";
	if (n >= 1 && arg[0] == '~' && (n == 1 || arg[1] == '/')) {
		home = getenv("HOME");
		if (!home || !*home) {
			lm_err(_("/save: cannot expand ~: HOME is not set"));
			return NULL;
		}
		arg++;
		n--;
	}
	char *path;
	struct stat st;
	if (asprintf(&path, "%s%.*s", home, (int)n, arg) < 0) path = NULL;
	if (path && !*dflt && (path[strlen(path) - 1] == '/' || (stat(path, &st) == 0 && S_ISDIR(st.st_mode)))) {
		/* a directory: the default name in it */
		char *p;
		const char *sep = path[strlen(path) - 1] == '/' ? "" : "/";
		if (asprintf(&p, "%s%s%s", path, sep, name) < 0) p = NULL;
		free(path);
		path = p;
		*dflt = true;
	} else if (path && *dflt) {
		free(path);
		path = strdup(name);
	}
	if (!path) lm_err("%s", _("out of memory"));
	return path;
}

/* path with "-k" before its extension: notes.md -> notes-1.md, notes -> notes-1 (malloc'd) */
static char *numbered(const char *path, int k)
{
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	const char *dot = strrchr(base, '.');
	if (!dot || dot == base) dot = path + strlen(path);
	char *p;
	if (asprintf(&p, "%.*s-%d%s", (int)(dot - path), path, k, dot) < 0) return NULL;
	return p;
}

/* Write buf to a new file at path: 0, EEXIST (nothing written), or another errno (nothing left behind). */
static int write_new(const char *path, const char *buf, size_t len)
{
	if (access(path, F_OK) == 0) return EEXIST; /* checked first, so that nothing is written for nothing */
	const char *slash = strrchr(path, '/');
	int dlen = slash ? (int)(slash - path + 1) : 0;
	char *tmp = NULL;
	int fd = -1, err = 0;
	for (int i = 0; i < 100 && fd < 0; i++) {
		free(tmp);
		if (asprintf(&tmp, "%.*s.lmterm-save-%ld-%d.tmp", dlen, path, (long)getpid(), i) < 0) {
			tmp = NULL;
			err = ENOMEM;
			break;
		}
		/* mode 0666 less the umask, as any new file the user makes */
		fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
		if (fd < 0 && errno != EEXIST) { err = errno; break; }
	}
	if (fd < 0) {
		free(tmp);
		return err ? err : EEXIST;
	}
	for (size_t off = 0; !err && off < len;) {
		ssize_t k = write(fd, buf + off, len - off);
		if (k < 0 && errno == EINTR) continue;
		if (k <= 0) err = k < 0 ? errno : EIO;
		else off += (size_t)k;
	}
	if (!err && fsync(fd) != 0 && errno != EINVAL) err = errno;
	if (close(fd) != 0 && !err) err = errno;
	/* link() never replaces what is there (a file made meanwhile, a symbolic link) */
	if (!err && link(tmp, path) != 0) {
		err = errno;
		if (err != EEXIST) {
			/* a file system without hard links (vfat, some FUSE ones): check, then rename */
			if (access(path, F_OK) == 0) err = EEXIST;
			else if (errno != ENOENT) err = errno;
			else err = rename(tmp, path) == 0 ? 0 : errno;
			if (!err) { free(tmp); return 0; }
		}
	}
	unlink(tmp);
	free(tmp);
	return err;
}

/* the Markdown (malloc'd in *buf); the number of messages written */
static int render(const char *model, const struct tr_msg *m, int n, const struct tm *now, char **buf, size_t *len)
{
	FILE *f = open_memstream(buf, len);
	if (!f) return -1;
	char date[64];
	strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S %z", now);
	fprintf(f, "# lmterm chat\n\n- Model: %s\n- Date: %s\n", model && *model ? model : "?", date);
	int count = 0;
	for (int i = 0; i < n; i++) {
		if (m[i].len == 0) continue;
		/* a reply that a note split into parts (see ui.c's note()) is one reply, as incomplete as its worst
		 * part (enum tr_state is in that order) */
		int j = i;
		enum tr_state st = m[i].state;
		if (m[i].role == TR_ASSISTANT)
			for (int k = i + 1; k < n && m[k].role == TR_ASSISTANT; k++) {
				j = k;
				st = MAX(st, m[k].state);
			}
		static const char *const label[] = { [TR_USER] = "User", [TR_ASSISTANT] = "Assistant" };
		fprintf(f, "\n## %s%s\n\n", label[m[i].role],
			st == TR_STOPPED ? " (stopped)" : st == TR_INCOMPLETE ? " (incomplete)" : "");
		char last = 0;
		for (int k = i; k <= j; k++)
			if (m[k].len) {
				fwrite(m[k].text, 1, m[k].len, f);
				last = m[k].text[m[k].len - 1];
			}
		if (last != '\n') fputc('\n', f);
		count++;
		i = j;
	}
	if (fclose(f) != 0) {
		free(*buf);
		*buf = NULL;
		return -1;
	}
	return count;
}

int transcript_save(const char *arg, const char *model, const struct tr_msg *m, int n, char **path, int *n_saved)
{
	*path = NULL;
	*n_saved = 0;
	int count = 0;
	for (int i = 0; i < n; i++) count += m[i].len > 0;
	if (count == 0) return lm_err("%s", _("nothing to save yet: the conversation is empty"));
	time_t t = time(NULL);
	struct tm now;
	localtime_r(&t, &now);
	bool dflt;
	char *p = resolve(arg ? arg : "", &now, &dflt);
	if (!p) return LM_ERR;
	char *buf = NULL;
	size_t len = 0;
	count = render(model, m, n, &now, &buf, &len);
	if (count < 0) {
		free(p);
		return lm_err("%s", _("out of memory"));
	}
	int err = write_new(p, buf, len);
	/* the default name, taken already (two saves in one second): the next free one */
	for (int k = 1; err == EEXIST && dflt && k < 100; k++) {
		char *q = numbered(p, k);
		if (!q) { err = ENOMEM; break; }
		err = write_new(q, buf, len);
		if (err == 0 || err != EEXIST) { free(p); p = q; }
		else free(q);
	}
	free(buf);
	if (err == EEXIST) {
		char *q = NULL;
		for (int k = 1; k < 1000; k++) {
			free(q);
			q = numbered(p, k);
			if (!q || access(q, F_OK) != 0) break;
		}
		lm_err(_("%s exists (not overwritten); try /save %s"), p, q ? q : "");
		free(q);
		free(p);
		return LM_ERR;
	}
	if (err) {
		lm_err(_("cannot save to %s: %s"), p, strerror(err));
		free(p);
		return LM_ERR;
	}
	*path = p;
	*n_saved = count;
	return LM_OK;
}
