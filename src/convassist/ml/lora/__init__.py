"""LoRA training on the served GGUF model, export to llama.cpp's adapter format, evaluation.

`dataset` turns samples into token sequences (with llama.cpp's own tokenizer, so training
sees exactly the tokens inference sees), `trainer` fits a peft LoRA on the dequantized GGUF
weights, `export` writes the adapter as a llama.cpp GGUF LoRA, `evaluate` measures held-out
NLL with llama.cpp, `adapters` is the adapter store, and `runner`/`jobs` run training jobs
in a separate process. torch, transformers and peft (the `train` extra) are imported only by
`trainer` and `export`, so the ML service itself starts without them.
"""
