"""Sans-I/O protocol sessions: take messages in, return messages to send."""
