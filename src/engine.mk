# engine area: rings, sampling, chat templates, KV cache manager, the engine thread, chat and ppl commands
src_liblmterm_a_SOURCES += src/ring.c src/ring.h src/sampler.c src/template.c src/template.h \
	src/kvmgr.c src/kvmgr.h src/engine.c src/jinja.c src/jinja.h
src_liblmterm_a_SOURCES += src/cmd_chat.c src/transcript.c src/transcript.h
src_liblmterm_a_SOURCES += src/cmd_ppl.c
