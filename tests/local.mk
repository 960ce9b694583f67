# tests/: `make check`. C tests link liblmterm; GPU tests exit 77 (skip) where no GPU is present.
# Test data copied from ../shared lives in tests/data (big files xz-compressed; tests/data.sh unpacks them).
AM_TESTS_ENVIRONMENT = top_srcdir='$(abs_top_srcdir)' top_builddir='$(abs_top_builddir)' \
	LMTERM='$(abs_top_builddir)/lmterm' TESTDATA='$(abs_top_builddir)/tests/data-unpacked' \
	pkgdatadir='$(pkgdatadir)' NVCC='$(NVCC)' NVCC_FLAGS='$(NVCC_FLAGS)'; \
	export top_srcdir top_builddir LMTERM TESTDATA pkgdatadir NVCC NVCC_FLAGS;
EXTRA_DIST += tests/lib.sh tests/unpack-data.sh

# unpack xz test data once, before any test runs
check_DATA = tests/data-unpacked/.stamp
tests/data-unpacked/.stamp: $(srcdir)/tests/unpack-data.sh
	$(AM_V_GEN)XZ='$(XZ)' sh $(srcdir)/tests/unpack-data.sh $(srcdir)/tests/data tests/data-unpacked
# what make dist copies (automake's DISTFILES), relative to the source tree, for tests/test_dist.sh
check_DATA += tests/distfiles.list
tests/distfiles.list: Makefile
	$(AM_V_GEN)$(MKDIR_P) tests && for f in $(DISTFILES) $(DIST_SUBDIRS); do echo "$${f#$(srcdir)/}"; done > $@
CLEANFILES += tests/distfiles.list
TESTS += tests/test_dist.sh
EXTRA_DIST += tests/test_dist.sh
TESTS += tests/test_xz.sh
EXTRA_DIST += tests/test_xz.sh
TESTS += tests/test_installed_paths.sh
EXTRA_DIST += tests/test_installed_paths.sh
clean-local: clean-local-testdata
clean-local-testdata:
	rm -rf tests/data-unpacked

include tests/core.mk
include tests/tok.mk
include tests/model.mk
include tests/engine.mk
include tests/ui.mk
include tests/cuda.mk
include tests/awq.mk
