man_MANS = man/lmterm.1
EXTRA_DIST += man/lmterm.1.in
# Substituted by make, not config.status, so that FILES names the directories the program was built with
# (config.status leaves ${datarootdir} in them unexpanded; --datadir and make datadir=... are honoured).
man/lmterm.1: man/lmterm.1.in Makefile
	$(AM_V_GEN)$(MKDIR_P) man && $(SED) -e 's|@VERSION[@]|$(VERSION)|g' -e 's|@pkgdatadir[@]|$(pkgdatadir)|g' \
		-e 's|@localedir[@]|$(localedir)|g' $(srcdir)/man/lmterm.1.in > $@.tmp && mv $@.tmp $@
CLEANFILES += man/lmterm.1
