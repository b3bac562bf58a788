"""The web pages of generations (the API is generations/api/)."""
