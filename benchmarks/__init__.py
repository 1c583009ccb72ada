"""Benchmarks: this project's pipeline side by side with LangChain's RAG tutorial pipeline (python -m benchmarks)."""
