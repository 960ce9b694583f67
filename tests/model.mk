# model tests: check_PROGRAMS += tests/xxx ; TESTS += tests/xxx ; tests_xxx_LDADD = $(LMTERM_TEST_LIBS)
check_PROGRAMS += tests/test_kvquant
TESTS += tests/test_kvquant
tests_test_kvquant_LDADD = $(LMTERM_TEST_LIBS)
check_PROGRAMS += tests/test_golden tests/st_tool
TESTS += tests/test_golden tests/test_generate.sh
EXTRA_DIST += tests/test_generate.sh
tests_test_golden_LDADD = $(LMTERM_TEST_LIBS)
tests_st_tool_LDADD = $(LMTERM_TEST_LIBS)

# loader: safetensors, config.json, RoPE, fused weights, bad input
check_PROGRAMS += tests/test_loader
TESTS += tests/test_loader
tests_test_loader_LDADD = $(LMTERM_TEST_LIBS)

# the same test with AddressSanitizer and UBSan, built from the loader's sources directly
if HAVE_ASAN
check_PROGRAMS += tests/test_loader_asan
TESTS += tests/test_loader_asan
tests_test_loader_asan_SOURCES = tests/test_loader.c src/safetensors.c src/config.c src/model.c src/common.c
tests_test_loader_asan_CFLAGS = $(AM_CFLAGS) -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
	-fno-sanitize-recover=undefined
tests_test_loader_asan_LDFLAGS = $(AM_LDFLAGS) -fsanitize=address,undefined
tests_test_loader_asan_LDADD = $(CJSON_LIBS) $(LIBINTL) -lm
endif
