/* lmterm: run large language models on your own GPU from a terminal.
 * main: locale and gettext, then one subcommand. */
#include "config.h"
#include "backend.h"
#include "cmds.h"
#include "common.h"
#include "i18n.h"
#include "template.h"

#include <errno.h>
#include <fcntl.h>
#include <locale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void usage(FILE *f)
{
	fprintf(f, _("Usage: lmterm COMMAND [MODEL] [OPTIONS]\n"
		     "\n"
		     "Commands:\n"
		     "  chat [MODEL]           chat with a model (the bundled demo model if none is given)\n"
		     "  generate MODEL         continue a prompt (-p TEXT or --ids \"1 2 3\")\n"
		     "  tokenize MODEL [TEXT]  print token ids (TEXT or stdin; --json: JSON arrays in and out)\n"
		     "  ppl MODEL --file F     perplexity of a text file\n"
		     "  bench MODEL|CONFIG     prefill and decode speed, memory, roofline ratio\n"
		     "  lite auto_awq MODEL    quantize weights to 4 bits (AWQ)\n"
		     "  list                   the built-in chat templates (for --chat-template)\n"
		     "\n"
		     "Run 'man lmterm' for every option. Option names follow LMDeploy's.\n"));
}

/* lmterm list: LMDeploy's `lmdeploy list`, the names --chat-template takes */
static int cmd_list(int argc, char **argv)
{
	if (argc > 0 && strcmp(argv[0], "--help") && strcmp(argv[0], "-h")) {
		fprintf(stderr, _("lmterm: list: unexpected argument '%s'\n"), argv[0]);
		return 2;
	}
	printf(_("The built-in chat templates (--chat-template NAME; by default the model's own template is used):\n"));
	for (int i = 0; tmpl_builtin_names[i]; i++) printf("%s\n", tmpl_builtin_names[i]);
	return 0;
}

/* A closed stdin, stdout or stderr would be taken by the next open() or pipe(): the chat REPL would then wait on
 * its own signal pipe for ever, and a file written later could receive what printf meant for the terminal. Each
 * closed one gets /dev/null opened the other way round (gnulib's stdopen), so that using it fails as before. */
static void std_fds_open(void)
{
	for (int fd = 0; fd < 3; fd++)
		if (fcntl(fd, F_GETFD) < 0 && errno == EBADF) {
			int n = open("/dev/null", fd == 0 ? O_WRONLY : O_RDONLY);
			if (n >= 0 && n != fd) {
				dup2(n, fd);
				close(n);
			}
		}
}

/* A command that succeeded but whose output could not be written (a full disk, a closed pipe with SIGPIPE
 * ignored, a closed stdout) fails. */
static int check_stdout(int rc)
{
	errno = 0;
	if (fflush(stdout) == 0 && !ferror(stdout)) return rc;
	if (rc == 0)
		fprintf(stderr, _("lmterm: cannot write to standard output: %s\n"),
			errno ? strerror(errno) : _("write error"));
	return rc ? rc : 1;
}

int main(int argc, char **argv)
{
	std_fds_open();
	setlocale(LC_ALL, "");
#if ENABLE_NLS
	/* LMTERM_LOCALEDIR: translations from a build tree (tests), before they are installed */
	const char *localedir = getenv("LMTERM_LOCALEDIR");
	bindtextdomain(PACKAGE, localedir && *localedir ? localedir : LOCALEDIR);
	textdomain(PACKAGE);
#endif
	if (argc < 2) return check_stdout(cmd_chat(0, argv + argc));
	const char *c = argv[1];
	static const struct { const char *name; int (*fn)(int, char **); } cmds[] = {
		{ "chat", cmd_chat }, { "generate", cmd_generate }, { "tokenize", cmd_tokenize },
		{ "ppl", cmd_ppl }, { "bench", cmd_bench }, { "lite", cmd_lite }, { "list", cmd_list },
	};
	for (size_t i = 0; i < ARRAY_SIZE(cmds); i++)
		if (strcmp(c, cmds[i].name) == 0) return check_stdout(cmds[i].fn(argc - 2, argv + 2));
	if (strcmp(c, "--help") == 0 || strcmp(c, "-h") == 0 || strcmp(c, "help") == 0) {
		usage(stdout);
		return check_stdout(0);
	}
	if (strcmp(c, "--version") == 0 || strcmp(c, "-V") == 0) {
		printf("lmterm %s\n", PACKAGE_VERSION);
		/* what LMDeploy's check_env would be asked for: whether this build can use the GPU, and which */
#if HAVE_CUDA
		char d[512];
		backend_cuda_describe(d, sizeof d);
		printf(_("CUDA backend: built; %s\n"), d);
#else
		printf(_("CUDA backend: not built (configure --with-cuda, with the CUDA toolkit installed)\n"));
#endif
		return check_stdout(0);
	}
	/* no command: "lmterm [chat] [MODEL] [OPTIONS]", so options or a model first are chat's: a directory, or
	 * anything with a slash (a path, or a Hugging Face id, which chat explains how to download) */
	struct stat st;
	if (c[0] == '-' || strchr(c, '/') || (stat(c, &st) == 0 && S_ISDIR(st.st_mode)))
		return check_stdout(cmd_chat(argc - 1, argv + 1));
	fprintf(stderr, _("lmterm: unknown command '%s'\n\n"), c);
	usage(stderr);
	return 2;
}
