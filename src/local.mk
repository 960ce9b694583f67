# src/: everything but the CUDA kernels and the curses front end, as one static library that lmterm and the
# tests link. Each area keeps its sources in its own fragment, so parallel work does not collide here.
noinst_LIBRARIES += src/liblmterm.a
src_liblmterm_a_SOURCES = src/common.c src/common.h src/i18n.h src/opts.c src/opts.h \
	src/backend.c src/backend_weight.c src/backend.h src/cmds.h src/progress.c src/progress.h \
	src/model.h src/forward.h src/tok.h src/engine.h src/safetensors.h src/sampler.h
include src/tok.mk
include src/model.mk
include src/engine.mk
include src/awq.mk
include src/bench.mk

bin_PROGRAMS += lmterm
lmterm_SOURCES = src/main.c
# ui and cuda libraries call into liblmterm and it into them (backend_create, the chat screen): listed twice.
lmterm_LDADD = $(UI_LIB) $(CUDA_LIB) src/liblmterm.a $(UI_LIB) $(CUDA_LIB) src/liblmterm.a $(NCURSES_LIBS) $(CJSON_LIBS) $(UTF8PROC_LIBS) $(LIBINTL) \
	$(CUDA_LIBS) -lm
# What tests link: the library, the CUDA backend where built, and the libraries.
LMTERM_TEST_LIBS = $(CUDA_LIB) src/liblmterm.a $(CUDA_LIB) src/liblmterm.a $(CJSON_LIBS) $(UTF8PROC_LIBS) $(LIBINTL) $(CUDA_LIBS) -lm
