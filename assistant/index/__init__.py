"""Reading the articles in, offline: the corpus (corpus, ingest), the embedding model and the Chroma index
(embedding, indexing), and the model files they and the chat model need (models)."""
