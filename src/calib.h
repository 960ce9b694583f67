/* calib.h: calibration datasets for AWQ: finding them, reading raw text (.txt or .jsonl with a "text" field
 * per line), tokenizing it, and drawing windows of seqlen tokens with a fixed seed (LMDeploy's scheme:
 * random start positions in the tokenized text). */
#ifndef LMTERM_CALIB_H
#define LMTERM_CALIB_H

#include "common.h"

struct tokenizer;

/* A named dataset (ptb, wikitext2, c4, pileval) or a PATH. Named ones are looked up as their file
 * (ptb.train.txt, wiki.train.raw, c4.jsonl, pileval.jsonl) in $LMTERM_DATA, then in
 * $XDG_CACHE_HOME/lmterm/datasets (default ~/.cache/lmterm/datasets). On failure the message says which file
 * to put where and where to download it. out gets the file's path. */
int calib_resolve(const char *name_or_path, char *out, size_t n);

/* Read a dataset file into one malloc'd text: .jsonl files join their records' "text" fields with "\n\n";
 * anything else is read as it is. At most max_bytes of text are kept (0 = no limit). */
int calib_read_text(const char *path, size_t max_bytes, char **text, size_t *len);

/* Tokenize text (in pieces split at line ends, so no piece is huge) and draw n_samples windows of seqlen
 * tokens at random starts (fixed seed). ids gets [n_samples][seqlen] (malloc'd). Fails with a message naming
 * path when the text has fewer than n_samples * seqlen tokens. */
int calib_windows(const struct tokenizer *t, const char *text, size_t len, const char *path, int n_samples,
		  int seqlen, uint64_t seed, int32_t **ids);

#endif
