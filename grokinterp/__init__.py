"""grokinterp."""
