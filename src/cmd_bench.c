#include "config.h"
#include "cmds.h"
#include "i18n.h"

#include <stdio.h>

int cmd_bench(int argc, char **argv)
{
	fprintf(stderr, _("lmterm: '%s' is not available in this build yet\n"), "bench");
	return 2;
}
