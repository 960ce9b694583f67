man_MANS = man/lmterm.1
EXTRA_DIST += man/lmterm.1.in
