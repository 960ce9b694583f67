/* transcript.h: /save, the conversation written as Markdown, for both chat front ends (the full screen in
 * ui/ui.c, the REPL in src/cmd_chat.c). Each keeps its conversation as it shows it and hands the user's
 * messages and the replies (not its notes and errors) to transcript_save.
 *
 * The file: "# lmterm chat", a list with the model's name and the date, then per message a heading
 * "## User" or "## Assistant" and the text verbatim. A reply stopped with Ctrl-C is headed
 * "## Assistant (stopped)", one still being generated or cut short (by the session's end or an error)
 * "## Assistant (incomplete)": /save during a reply saves what has arrived. The labels are English in every locale, so that the file reads the same to a script. */
#ifndef LMTERM_TRANSCRIPT_H
#define LMTERM_TRANSCRIPT_H

#include <stdbool.h>
#include <stddef.h>

enum tr_role { TR_USER, TR_ASSISTANT };
enum tr_state { TR_WHOLE, TR_STOPPED, TR_INCOMPLETE };

struct tr_msg {
	enum tr_role role;
	enum tr_state state;
	char *text;
	size_t len;
};

/* A conversation kept by the caller (the REPL's). Out of memory sets oom: transcript_save is then refused
 * rather than writing a conversation with a hole in it. */
struct transcript {
	struct tr_msg *m;
	int n, cap;
	bool oom;
};
void transcript_add(struct transcript *t, enum tr_role r, const char *text, size_t len);
void transcript_append(struct transcript *t, const char *text, size_t len); /* to the last message */
void transcript_drop_empty(struct transcript *t);  /* the last message, if it is empty */
void transcript_clear(struct transcript *t);
void transcript_free(struct transcript *t);

/* text is the command "/save" or "/save ARG": true, and *arg is what follows it (may be "") */
bool transcript_is_save(const char *text, const char **arg);

/* Save m[0..n) as /save ARG does. ARG: a file name (spaces and all, "my notes.md"; quotes around it are
 * removed; ~/ is $HOME), a directory (the default name in it), or nothing: lmterm-chat-YYYYMMDD-HHMMSS.md in
 * the current directory. An existing file is never replaced: LM_ERR with a message that suggests a free name
 * (the default name takes the free one itself). Empty messages are left out and consecutive assistant parts
 * are one reply. The file is written to a temporary file beside it and then linked into place, so a failure
 * leaves nothing half written. LM_OK: *path (malloc'd) and *n_saved say what was written. */
int transcript_save(const char *arg, const char *model, const struct tr_msg *m, int n, char **path, int *n_saved);

#endif
