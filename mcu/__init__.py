"""Conference engine: rooms, participants, chair control, audio mixer, video compositor, encoders."""
