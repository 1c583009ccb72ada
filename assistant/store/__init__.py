"""What is kept: one chat turn (turn), the conversations on disk (conversations), and their Markdown export
(transcript)."""
