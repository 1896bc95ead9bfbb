"""Voice: voice messages in the widget and phone calls (transcription, speech, turn-taking)."""
