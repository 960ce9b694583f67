/* cmds.h: the subcommands. Each returns the process exit status (0 ok, 1 failure, 2 usage error);
 * argv[0] is the subcommand's first argument (not its name). */
#ifndef LMTERM_CMDS_H
#define LMTERM_CMDS_H

int cmd_chat(int argc, char **argv);
int cmd_generate(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_ppl(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_lite(int argc, char **argv);

#endif
