/* i18n.h: gettext macros. Every user-facing string goes through _() (or N_() where it is translated later).
 * Width-limited labels use C_("ctx|label") style context through pgettext-like CTX_ so translators know. */
#ifndef LMTERM_I18N_H
#define LMTERM_I18N_H
#include "config.h"
#if ENABLE_NLS
#include <libintl.h>
#define _(s) gettext(s)
/* Context-qualified message: the context is part of the msgid, separated by '|', and stripped if untranslated. */
const char *lm_cgettext(const char *msgid);
#define C_(s) lm_cgettext(s)
#else
#define _(s) (s)
const char *lm_cgettext(const char *msgid);
#define C_(s) lm_cgettext(s)
#endif
#define N_(s) (s)
#endif
