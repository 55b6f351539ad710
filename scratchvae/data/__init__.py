"""CarRacing frames: preprocessing, episode files, parallel collection and a streaming loader."""
from .episodes import DataError, read_episode, write_episode
from .preprocess import preprocess

__all__ = ["DataError", "preprocess", "read_episode", "write_episode"]
