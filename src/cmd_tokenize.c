/* lmterm tokenize MODEL [TEXT] [--json]: print the ids of TEXT (or of all of stdin) space-separated, without
 * BOS, with added tokens written in the text matched as the format's library does. --json reads a JSON array
 * of strings on stdin and prints a JSON array of id arrays. MODEL is a model directory or a tokenizer file. */
#include "config.h"
#include "cmds.h"
#include "i18n.h"
#include "opts.h"
#include "tok.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int read_stdin(char **buf, size_t *len)
{
	size_t cap = 65536, n = 0;
	char *p = malloc(cap);
	if (!p) return LM_ERR;
	for (;;) {
		if (n + 4096 + 1 > cap) {
			char *q = realloc(p, cap *= 2);
			if (!q) {
				free(p);
				return LM_ERR;
			}
			p = q;
		}
		size_t k = fread(p + n, 1, cap - n - 1, stdin);
		n += k;
		if (k == 0) break;
	}
	if (ferror(stdin)) {
		free(p);
		return LM_ERR;
	}
	p[n] = 0;
	*buf = p;
	*len = n;
	return LM_OK;
}

static void print_ids(FILE *f, const int32_t *ids, int n, const char *sep)
{
	for (int i = 0; i < n; i++) fprintf(f, "%s%d", i ? sep : "", ids[i]);
}

static int usage(void)
{
	fprintf(stderr, _("usage: lmterm tokenize MODEL [TEXT] [--json]\n"));
	return 2;
}

int cmd_tokenize(int argc, char **argv)
{
	const char *model = NULL, *text = NULL;
	bool json = false;
	struct opt_iter it;
	opt_iter_init(&it, argc, argv);
	while (opt_next(&it)) {
		if (!it.name) {
			if (!model) model = it.arg;
			else if (!text) text = it.arg;
			else {
				fprintf(stderr, _("lmterm: tokenize: unexpected argument '%s'\n"), it.arg);
				return usage();
			}
		} else if (!strcmp(it.name, "json")) {
			if (it.value) {
				fprintf(stderr, _("lmterm: --json takes no value\n"));
				return 2;
			}
			json = true;
		} else if (!strcmp(it.name, "help")) {
			usage();
			return 0;
		} else {
			fprintf(stderr, _("lmterm: tokenize: unknown option '%s'\n"), it.arg);
			return usage();
		}
	}
	if (!model) return usage();
	if (json && text) {
		fprintf(stderr, _("lmterm: tokenize: --json reads its texts from stdin; drop the TEXT argument\n"));
		return 2;
	}

	struct tokenizer *t;
	struct stat st;
	int rc = stat(model, &st) == 0 && S_ISDIR(st.st_mode) ? tok_load_dir(&t, model) : tok_load_file(&t, model);
	if (rc) {
		fprintf(stderr, "lmterm: %s\n", lm_errmsg());
		return 1;
	}

	char *in = NULL;
	size_t len = 0;
	if (!text) {
		if (read_stdin(&in, &len)) {
			fprintf(stderr, _("lmterm: cannot read stdin\n"));
			tok_free(t);
			return 1;
		}
	}
	int status = 0;
	if (!json) {
		const char *s = text ? text : in;
		size_t n = text ? strlen(text) : len;
		int32_t *ids;
		int nid;
		if (tok_encode(t, s, n, true, &ids, &nid)) {
			fprintf(stderr, "lmterm: %s\n", lm_errmsg());
			status = 1;
		} else {
			print_ids(stdout, ids, nid, " ");
			putchar('\n');
			free(ids);
		}
	} else {
		cJSON *arr = cJSON_ParseWithLength(in, len);
		if (!cJSON_IsArray(arr)) {
			fprintf(stderr, _("lmterm: stdin: expected a JSON array of strings\n"));
			status = 1;
		} else {
			const cJSON *e;
			int i = 0;
			cJSON_ArrayForEach(e, arr) {
				if (!cJSON_IsString(e)) {
					fprintf(stderr, _("lmterm: stdin: element %d of the JSON array is not a string\n"), i);
					status = 1;
					break;
				}
				i++;
			}
			/* all checked first, so a bad element prints nothing half-done */
			if (!status) {
				putchar('[');
				i = 0;
				cJSON_ArrayForEach(e, arr) {
					int32_t *ids;
					int nid;
					if (tok_encode(t, e->valuestring, strlen(e->valuestring), true, &ids, &nid)) {
						fprintf(stderr, "lmterm: %s\n", lm_errmsg());
						status = 1;
						break;
					}
					printf(i++ ? ", [" : "[");
					print_ids(stdout, ids, nid, ", ");
					putchar(']');
					free(ids);
				}
				printf("]\n");
			}
		}
		cJSON_Delete(arr);
	}
	free(in);
	tok_free(t);
	if (fflush(stdout) != 0) status = 1;
	return status;
}
