# awq area: the quantizer (lmterm lite auto_awq)
src_liblmterm_a_SOURCES += src/cmd_lite.c src/awq.c src/awq.h src/awq_dev.h src/awq_ops.c src/awq_ops.h src/calib.c \
	src/calib.h
