# tok tests: tokenizers against their libraries' goldens, also built with AddressSanitizer/UBSan
check_PROGRAMS += tests/test_tok
TESTS += tests/test_tok tests/test_tokenize_cmd.sh
EXTRA_DIST += tests/test_tokenize_cmd.sh
tests_test_tok_LDADD = $(LMTERM_TEST_LIBS)
if HAVE_ASAN
# the same test compiled together with the tokenizer sources under the sanitizers
check_PROGRAMS += tests/test_tok_asan
TESTS += tests/test_tok_asan
tests_test_tok_asan_SOURCES = tests/test_tok.c src/tok.c src/tok_spm.c src/tok_hf.c src/tok_impl.h src/common.c
tests_test_tok_asan_CFLAGS = $(AM_CFLAGS) -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
tests_test_tok_asan_LDFLAGS = $(AM_LDFLAGS) -fsanitize=address,undefined
tests_test_tok_asan_LDADD = $(CJSON_LIBS) $(UTF8PROC_LIBS) $(LIBINTL) -lm
endif

# libFuzzer target for the tokenizer.model parser (needs clang; not run by make check)
EXTRA_DIST += tests/fuzz_tok_model.c tests/gen_tok_random_goldens.py
FUZZ_CC = clang
tests/fuzz-tok-model: $(srcdir)/tests/fuzz_tok_model.c $(srcdir)/src/tok.c $(srcdir)/src/tok_spm.c $(srcdir)/src/tok_hf.c \
		$(srcdir)/src/common.c $(srcdir)/src/tok_impl.h $(srcdir)/src/tok.h
	$(FUZZ_CC) -g -O1 -fsanitize=fuzzer,address,undefined $(DEFS) -I$(top_builddir) -I$(srcdir)/src \
		$(CJSON_CFLAGS) $(UTF8PROC_CFLAGS) -DLOCALEDIR=\"$(localedir)\" -o $@ \
		$(srcdir)/tests/fuzz_tok_model.c $(srcdir)/src/tok.c $(srcdir)/src/tok_spm.c $(srcdir)/src/tok_hf.c \
		$(srcdir)/src/common.c $(CJSON_LIBS) $(UTF8PROC_LIBS) $(LIBINTL) -lm
CLEANFILES += tests/fuzz-tok-model
fuzz-tok-model: tests/fuzz-tok-model
.PHONY: fuzz-tok-model
