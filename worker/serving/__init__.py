"""The built-in serving engine: vLLM's OpenAI server protocol with dynamic LoRA, on transformers + PEFT.

A torch process beside the training worker; the API reaches it only over HTTP."""
