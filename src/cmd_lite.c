#include "config.h"
#include "cmds.h"
#include "i18n.h"

#include <stdio.h>

int cmd_lite(int argc, char **argv)
{
	fprintf(stderr, _("lmterm: '%s' is not available in this build yet\n"), "lite");
	return 2;
}
