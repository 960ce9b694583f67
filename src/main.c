/* lmterm: run large language models on your own GPU from a terminal.
 * main: locale and gettext, then one subcommand. */
#include "config.h"
#include "cmds.h"
#include "common.h"
#include "i18n.h"

#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(FILE *f)
{
	fprintf(f, _("Usage: lmterm COMMAND [MODEL] [OPTIONS]\n"
		     "\n"
		     "Commands:\n"
		     "  chat [MODEL]         chat with a model (the bundled demo model if none is given)\n"
		     "  generate MODEL       continue a prompt (-p TEXT or --ids \"1 2 3\")\n"
		     "  tokenize MODEL TEXT  print token ids (--json: JSON array of strings on stdin)\n"
		     "  ppl MODEL --file F   perplexity of a text file\n"
		     "  bench MODEL|CONFIG   prefill and decode speed, memory, roofline ratio\n"
		     "  lite auto_awq MODEL  quantize weights to 4 bits (AWQ)\n"
		     "\n"
		     "Run 'man lmterm' for every option. Option names follow LMDeploy's.\n"));
}

int main(int argc, char **argv)
{
	setlocale(LC_ALL, "");
#if ENABLE_NLS
	/* LMTERM_LOCALEDIR: translations from a build tree (tests), before they are installed */
	const char *localedir = getenv("LMTERM_LOCALEDIR");
	bindtextdomain(PACKAGE, localedir && *localedir ? localedir : LOCALEDIR);
	textdomain(PACKAGE);
#endif
	if (argc < 2) return cmd_chat(0, argv + argc);
	const char *c = argv[1];
	static const struct { const char *name; int (*fn)(int, char **); } cmds[] = {
		{ "chat", cmd_chat }, { "generate", cmd_generate }, { "tokenize", cmd_tokenize },
		{ "ppl", cmd_ppl }, { "bench", cmd_bench }, { "lite", cmd_lite },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cmds); i++)
		if (strcmp(c, cmds[i].name) == 0) return cmds[i].fn(argc - 2, argv + 2);
	if (strcmp(c, "--help") == 0 || strcmp(c, "-h") == 0 || strcmp(c, "help") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(c, "--version") == 0 || strcmp(c, "-V") == 0) {
		printf("lmterm %s\n", PACKAGE_VERSION);
		return 0;
	}
	fprintf(stderr, _("lmterm: unknown command '%s'\n\n"), c);
	usage(stderr);
	return 2;
}
