# model area: add sources with src_liblmterm_a_SOURCES += ...
src_liblmterm_a_SOURCES += src/cmd_generate.c
# loading: safetensors (mmap, validated header, sharded sets, writing), config.json and RoPE, model weights
src_liblmterm_a_SOURCES += src/safetensors.c src/config.c src/model.c
# cpu backend and the forward pass (branch cpu)
src_liblmterm_a_SOURCES += src/backend_cpu.c src/forward.c src/kvquant.c src/kvquant.h
