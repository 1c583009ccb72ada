"""The model reading an article's whole text into a saved state (reader), giving way to questions in flight
(priority)."""
