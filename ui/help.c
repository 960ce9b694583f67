/* help.c: F1 lists every key. The list scrolls with Up/Down/PgUp/PgDn when the window is short. */
#include "config.h"
#include "i18n.h"
#include "ui_int.h"

#include <stdlib.h>
#include <string.h>

static const struct { const char *key, *what; } keys[] = {
	{ N_("Enter"), N_("send the message") },
	{ N_("Alt-Enter, Ctrl-J"), N_("new line in the message") },
	{ N_("Left, Right"), N_("move by one character") },
	{ N_("Ctrl-Left/Right, Alt-B/F"), N_("move by one word") },
	{ N_("Home, End, Ctrl-A/E"), N_("start / end of the line") },
	{ N_("Backspace, Delete"), N_("delete a character") },
	{ N_("Ctrl-W, Alt-D"), N_("delete a word before / after the cursor") },
	{ N_("Ctrl-U, Ctrl-K"), N_("delete to the start / end of the line") },
	{ N_("Up, Down"), N_("move between lines; earlier messages (history, kept across sessions)") },
	{ N_("PgUp, PgDn, wheel"), N_("scroll the conversation") },
	{ N_("Ctrl-C"), N_("stop the reply being generated") },
	{ N_("F1, Alt-H"), N_("this help") },
	{ N_("F2, Alt-S"), N_("settings: KV cache size and policy, sampling") },
	{ N_("F3, Alt-M"), N_("show or hide the memory panel") },
	{ N_("F5, Alt-N"), N_("new conversation (clears the context)") },
	{ N_("Ctrl-L"), N_("redraw the screen") },
	{ N_("Ctrl-Z"), N_("suspend to the shell (fg resumes)") },
	{ N_("F10, Ctrl-Q"), N_("quit (asks first while a reply is streaming)") },
	{ N_("/reset, /quit"), N_("typed as a message: new conversation, quit") },
	{ N_("/save [FILE]"), N_("typed as a message: save the conversation as Markdown (default: "
				 "lmterm-chat-DATE-TIME.md here)") },
};

void panel_help_draw(WINDOW *w, int *scroll)
{
	int h = getmaxy(w), wd = getmaxx(w);
	werase(w);
	draw_box(w, C_("help|Keys"), col(COL_BORDER));
	int x = 2, iw = wd - 4, rows = h - 3;
	if (iw < 8 || rows < 1) return;
	int n = (int)(sizeof keys / sizeof *keys);
	int kw = 0;
	for (int i = 0; i < n; i++) kw = MAX(kw, str_cols(_(keys[i].key)));
	kw = MIN(kw + 2, iw / 2);
	int dw = iw - kw;
	/* every key and description wrapped to its column (a key keeps a column before its description), as many
	 * lines as the longer of the two; count the lines, then draw from *scroll. A narrow window kept 8 lines of a
	 * description and the first columns of a key ("/save [FIL"), so the end of the list could not be read. */
	int total = 0;
	for (int i = 0; i < n; i++)
		total += MAX(text_wrap(_(keys[i].key), (int)strlen(_(keys[i].key)), kw - 1, true, NULL, 0),
			     text_wrap(_(keys[i].what), (int)strlen(_(keys[i].what)), dw, true, NULL, 0));
	if (*scroll > total - rows) *scroll = total - rows;
	if (*scroll < 0) *scroll = 0;
	int line = 0, y = 1;
	for (int i = 0; i < n && y < 1 + rows; i++) {
		const char *key = _(keys[i].key), *what = _(keys[i].what);
		int nk = text_wrap(key, (int)strlen(key), kw - 1, true, NULL, 0);
		int nd = text_wrap(what, (int)strlen(what), dw, true, NULL, 0);
		struct wrap_line *kl = malloc((nk + nd) * sizeof *kl), *dl = kl + nk;
		if (!kl) return;
		text_wrap(key, (int)strlen(key), kw - 1, true, kl, nk);
		text_wrap(what, (int)strlen(what), dw, true, dl, nd);
		for (int j = 0; j < MAX(nk, nd) && y < 1 + rows; j++, line++) {
			if (line < *scroll) continue;
			if (j < nk) draw_text(w, y, x, kw - 1, key + kl[j].start, kl[j].end - kl[j].start, col(COL_TITLE));
			if (j < nd) draw_text(w, y, x + kw, dw, what + dl[j].start, dl[j].end - dl[j].start, col(COL_NORMAL));
			y++;
		}
		free(kl);
	}
	const char *foot = total > rows ? _("Up/Down: scroll  Esc or any other key: close") : _("Esc or any key: close");
	/* a narrow window: the short form rather than a cut one (measured in columns, as Chinese takes two) */
	if (str_cols(foot) > iw) foot = total > rows ? _("Up/Down: scroll  Esc: close") : _("Esc: close");
	draw_str(w, h - 2, x, iw, foot, col(COL_DIM));
}
