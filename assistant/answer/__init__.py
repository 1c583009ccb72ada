"""Answering one question: the typed state (state), the components every stage uses (parts), and the stages in the
order pipeline.run applies them, one module each."""
