/* i18n.h: gettext macros. Every user-facing string goes through _() (or N_() where it is translated later).
 * Width-limited labels use C_("ctx|label") style context through pgettext-like CTX_ so translators know.
 * A message whose noun follows a count goes through P_(singular, plural, n), so "1 token" is not "1 tokens"
 * and each language chooses its own form (xgettext: --keyword=P_:1,2). */
#ifndef LMTERM_I18N_H
#define LMTERM_I18N_H
#include "config.h"
#if ENABLE_NLS
#include <libintl.h>
#define _(s) gettext(s)
/* Context-qualified message: the context is part of the msgid, separated by '|', and stripped if untranslated. */
const char *lm_cgettext(const char *msgid);
#define C_(s) lm_cgettext(s)
#define P_(s, p, n) ngettext(s, p, n)
#else
#define _(s) (s)
const char *lm_cgettext(const char *msgid);
#define C_(s) lm_cgettext(s)
#define P_(s, p, n) ((n) == 1 ? (s) : (p))
#endif
#define N_(s) (s)
#endif
