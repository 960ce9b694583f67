# tok area: tokenizers (SentencePiece .model and tokenizer.json) and the tokenize command
src_liblmterm_a_SOURCES += src/tok.c src/tok_impl.h src/tok_spm.c src/tok_hf.c src/cmd_tokenize.c
