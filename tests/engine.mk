# engine tests
check_PROGRAMS += tests/test_ring
TESTS += tests/test_ring
tests_test_ring_LDADD = $(LMTERM_TEST_LIBS)

# the same stress test under ThreadSanitizer (its own objects: the ring compiled with -fsanitize=thread)
if HAVE_TSAN
check_PROGRAMS += tests/test_ring_tsan
TESTS += tests/test_ring_tsan
tests_test_ring_tsan_SOURCES = tests/test_ring.c src/ring.c src/common.c
tests_test_ring_tsan_CFLAGS = $(AM_CFLAGS) -fsanitize=thread -O1 -g -DRING_N=1000000ull
tests_test_ring_tsan_LDFLAGS = $(AM_LDFLAGS) -fsanitize=thread
tests_test_ring_tsan_LDADD = $(LIBINTL) -lm
endif

check_PROGRAMS += tests/test_sampler
TESTS += tests/test_sampler
tests_test_sampler_LDADD = $(LMTERM_TEST_LIBS)

check_PROGRAMS += tests/test_template
TESTS += tests/test_template
tests_test_template_LDADD = $(LMTERM_TEST_LIBS)

check_PROGRAMS += tests/test_kvmgr
TESTS += tests/test_kvmgr
tests_test_kvmgr_LDADD = $(LMTERM_TEST_LIBS)

# end to end on the demo model (loader, cpu backend, tokenizer)
check_PROGRAMS += tests/test_engine
TESTS += tests/test_engine
tests_test_engine_LDADD = $(LMTERM_TEST_LIBS)
TESTS += tests/test_chat_repl.sh tests/test_chat_pty.sh tests/test_ppl.sh
EXTRA_DIST += tests/test_chat_repl.sh tests/test_chat_pty.sh tests/test_chat_pty.py tests/test_ppl.sh

check_PROGRAMS += tests/test_jinja
TESTS += tests/test_jinja
tests_test_jinja_LDADD = $(LMTERM_TEST_LIBS)
EXTRA_DIST += tests/json_file.h

# libFuzzer target for the chat-template interpreter (needs clang; not part of make check):
#   make fuzz-jinja && ./tests/fuzz-jinja -max_total_time=300 -max_len=8192 CORPUS
# (a corpus: each template of tests/data/templates/extra.json and snippet_goldens.json in a file of its own)
EXTRA_DIST += tests/fuzz_jinja.c
fuzz-jinja: tests/fuzz-jinja
tests/fuzz-jinja: $(srcdir)/tests/fuzz_jinja.c $(srcdir)/src/jinja.c $(srcdir)/src/jinja.h $(srcdir)/src/common.c
	$(AM_V_CC)$(FUZZ_CC) -g -O1 -fsanitize=fuzzer,address,undefined $(DEFS) -I$(top_builddir) -I$(srcdir)/src \
		$(CJSON_CFLAGS) $(UTF8PROC_CFLAGS) -DLOCALEDIR=\"$(localedir)\" -o $@ $(srcdir)/tests/fuzz_jinja.c \
		$(srcdir)/src/jinja.c $(srcdir)/src/common.c $(CJSON_LIBS) $(UTF8PROC_LIBS) $(LIBINTL) -lm
CLEANFILES += tests/fuzz-jinja
.PHONY: fuzz-jinja
